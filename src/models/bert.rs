//! BERT encoders (Hugging Face `BertModel` weight names and `config.json`) with the
//! sentence-transformers head: mean pooling over tokens and L2 normalization.
//!
//! The model is built as a [`Graph`]: embeddings (word + position + token type) and layer norm, then
//! per layer a fused QKV projection, flash attention reading the heads straight out of the packed
//! `[B, T, 3E]` projection (no transposes), output projection, residual + layer norm, GELU FFN,
//! residual + layer norm; finally masked mean pooling and normalization. One session run is one
//! submission.
//!
//! ```no_run
//! use heedful::models::bert::{BertEncoder, LoadOptions};
//! let gpu = heedful::Gpu::shared()?;
//! let model = BertEncoder::load(&gpu, "path/to/all-MiniLM-L6-v2".as_ref(), &LoadOptions::default())?;
//! let session = model.session();
//! let emb = model.embed(&session, &["Hello world", "Attention is all you need"])?;
//! assert_eq!(emb[0].len(), 384);
//! # Ok::<(), heedful::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::graph::{Dim, Graph, HostInput, Session, Value};
use crate::ops::Activation;
use crate::tensor::{DType, Tensor};
use crate::weights::{Hold, WeightFile};

/// The fields of a Hugging Face BERT `config.json` heedful uses.
#[derive(Clone, Debug, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size V.
    pub vocab_size: usize,
    /// Model width E.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads H (E / H = head dim).
    pub num_attention_heads: usize,
    /// FFN width.
    pub intermediate_size: usize,
    /// Positions the position embedding covers.
    pub max_position_embeddings: usize,
    /// Token type vocabulary (segment ids).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Layer norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// FFN activation: `gelu` (erf), `gelu_new`/`gelu_pytorch_tanh` (tanh form) or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// How weights are held on the GPU (f16 by default; F32 checkpoints are converted on upload).
    pub hold: Hold,
    /// A weights file to use instead of the folder's `model.safetensors` (for example one written by
    /// `heedful convert`).
    pub weights: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            hold: Hold::F16,
            weights: None,
        }
    }
}

/// A BERT sentence encoder ready to run.
pub struct BertEncoder {
    gpu: Gpu,
    /// The model's configuration.
    pub config: BertConfig,
    graph: Arc<Graph>,
    tokenizer: tokenizers::Tokenizer,
    /// Longest input in tokens (sentence-transformers' `max_seq_length`, else the position limit).
    pub max_seq_len: usize,
    /// Padded tokens (rows x longest row) one graph run may hold; [`BertEncoder::embed`] splits a
    /// larger batch into runs so that one submission stays bounded (see [`BertEncoder::runs`]).
    tokens_per_run: usize,
}

/// Default padded tokens per run: a few milliseconds of work on a GPU; on a CPU adapter (lavapipe,
/// about 20 MFLOP per MiniLM token at a few GFLOP/s) a few hundred, so that another thread's work
/// waits about a second at most behind one run. (A tuning decision: it belongs in the adapter's
/// tuning table once that exists.)
fn default_tokens_per_run(gpu: &Gpu) -> usize {
    match gpu.caps().device_type {
        wgpu::DeviceType::Cpu => 256,
        _ => 8192,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))
}

impl BertEncoder {
    /// Loads a Hugging Face model folder (`config.json`, `tokenizer.json`, `model.safetensors`; the
    /// sentence-transformers `sentence_bert_config.json` when present).
    pub fn load(gpu: &Gpu, dir: &Path, opts: &LoadOptions) -> Result<BertEncoder> {
        if !dir.is_dir() {
            return Err(Error::file(
                dir,
                "not a model folder (expected config.json, tokenizer.json, model.safetensors)",
            ));
        }
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(Error::file(
                dir.join("config.json"),
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    config.hidden_size, config.num_attention_heads
                ),
            ));
        }
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::file(&tok_path, format!("cannot load tokenizer: {e}")))?;
        #[derive(Deserialize)]
        struct StConfig {
            max_seq_length: usize,
        }
        let st = dir.join("sentence_bert_config.json");
        let max_seq_len = if st.exists() {
            read_json::<StConfig>(&st)?.max_seq_length
        } else {
            config.max_position_embeddings
        }
        .min(config.max_position_embeddings);
        // Truncate to the model's limit ourselves; pad per batch to the longest sentence.
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_seq_len,
                ..Default::default()
            }))
            .map_err(|e| Error::file(&tok_path, format!("cannot set truncation: {e}")))?;
        tokenizer.with_padding(None);

        let weights_path = opts
            .weights
            .clone()
            .unwrap_or_else(|| dir.join("model.safetensors"));
        let file = WeightFile::open(&weights_path)?;
        let graph = build_graph(gpu, &config, &file, opts.hold)?;
        Ok(BertEncoder {
            gpu: gpu.clone(),
            config,
            graph: Arc::new(graph),
            tokenizer,
            max_seq_len,
            tokens_per_run: default_tokens_per_run(gpu),
        })
    }

    /// The model's graph.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// A session to run the model (one per thread, or shared).
    pub fn session(&self) -> Session {
        Session::new(&self.gpu, self.graph.clone())
    }

    /// Padded tokens (rows x longest row) one run of [`BertEncoder::embed`] may hold.
    pub fn tokens_per_run(&self) -> usize {
        self.tokens_per_run
    }

    /// Sets the padded tokens per run (at least one text always goes in a run, whatever its
    /// length). Smaller runs let other threads' GPU work in sooner; larger ones use a big GPU
    /// better.
    pub fn set_tokens_per_run(&mut self, tokens: usize) {
        self.tokens_per_run = tokens.max(1);
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<tokenizers::Encoding>> {
        self.tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::invalid("tokenize", e.to_string()))
    }

    /// How [`BertEncoder::embed`] splits `texts` into runs (ranges of `texts`, in order): each run
    /// takes texts while its rows times its longest row stays within
    /// [`BertEncoder::tokens_per_run`], and holds at least one text.
    pub fn runs(&self, texts: &[&str]) -> Result<Vec<std::ops::Range<usize>>> {
        let lens: Vec<usize> = self.tokenize(texts)?.iter().map(|e| e.len()).collect();
        Ok(split_runs(&lens, self.tokens_per_run))
    }

    /// Tokenizes `texts` into the graph inputs of one padded batch: ids, token types, positions and
    /// the attention mask, each `[B, T]`.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<(&'static str, HostInput)>> {
        Ok(batch_inputs(&self.tokenize(texts)?))
    }

    /// Embeds `texts`: one L2-normalized vector per text, in order. The texts go to the GPU in runs
    /// of at most [`BertEncoder::tokens_per_run`] padded tokens, one submission each, so that a
    /// long batch does not hold the device for one unbounded submission (other threads' work goes
    /// in between runs) and its buffers stay bounded too.
    pub fn embed(&self, session: &Session, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let enc = self.tokenize(texts)?;
        let lens: Vec<usize> = enc.iter().map(|e| e.len()).collect();
        let e = self.config.hidden_size;
        let mut out = Vec::with_capacity(texts.len());
        for run in split_runs(&lens, self.tokens_per_run) {
            let inputs = batch_inputs(&enc[run]);
            let res = session.run(&inputs)?;
            let emb = &res["embeddings"];
            out.extend(emb.data.chunks(e).map(|c| c.to_vec()));
        }
        Ok(out)
    }
}

/// Splits texts of `lens` tokens into consecutive runs whose rows x longest row stays within
/// `budget` (a run holds at least one text).
fn split_runs(lens: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut longest) = (0, 0);
    for (i, &l) in lens.iter().enumerate() {
        let l = l.max(1);
        let rows = i - start + 1;
        if i > start && rows * longest.max(l) > budget {
            runs.push(start..i);
            (start, longest) = (i, l);
        } else {
            longest = longest.max(l);
        }
    }
    if start < lens.len() {
        runs.push(start..lens.len());
    }
    runs
}

/// The graph inputs of one padded batch of tokenized texts: ids, token types, positions and the
/// attention mask, each `[B, T]` with T the longest text.
fn batch_inputs(enc: &[tokenizers::Encoding]) -> Vec<(&'static str, HostInput)> {
    let b = enc.len();
    let t = enc
        .iter()
        .map(|e| e.get_ids().len())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut ids = vec![0i32; b * t];
    let mut types = vec![0i32; b * t];
    let mut mask = vec![0u32; b * t];
    let positions: Vec<i32> = (0..b * t).map(|i| (i % t) as i32).collect();
    for (r, e) in enc.iter().enumerate() {
        for (c, (&id, &ty)) in e.get_ids().iter().zip(e.get_type_ids()).enumerate() {
            ids[r * t + c] = id as i32;
            types[r * t + c] = ty as i32;
            mask[r * t + c] = 1;
        }
    }
    vec![
        ("ids", HostInput::i32(ids, &[b, t])),
        ("type_ids", HostInput::i32(types, &[b, t])),
        ("positions", HostInput::i32(positions, &[b, t])),
        ("mask", HostInput::u32(mask, &[b, t])),
    ]
}

/// Finds the prefix under which the checkpoint stores the encoder (`""` or `"bert."`).
fn prefix(file: &WeightFile) -> &'static str {
    if file.contains("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    }
}

fn build_graph(gpu: &Gpu, cfg: &BertConfig, file: &WeightFile, hold: Hold) -> Result<Graph> {
    let p = prefix(file);
    let (e, ff, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let heads = cfg.num_attention_heads;
    let eps = cfg.layer_norm_eps as f32;
    let act = match cfg.hidden_act.as_str() {
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "relu" => Activation::Relu,
        other => return Err(Error::Unsupported(format!("BERT hidden_act {other:?}"))),
    };
    let mut g = Graph::new();
    let w = |g: &mut Graph, name: &str, shape: &[usize]| -> Result<Value> {
        let full = format!("{p}{name}");
        file.expect_shape(&full, shape)?;
        Ok(g.weight(file.upload(gpu, &full, hold)?))
    };
    let (bd, td) = (Dim::sym("batch"), Dim::sym("seq"));
    let ids = g.input("ids", &[bd.clone(), td.clone()], DType::I32);
    let type_ids = g.input("type_ids", &[bd.clone(), td.clone()], DType::I32);
    let positions = g.input("positions", &[bd.clone(), td.clone()], DType::I32);
    let mask = g.input("mask", &[bd, td], DType::U32);

    let word = w(&mut g, "embeddings.word_embeddings.weight", &[v, e])?;
    let pos = w(
        &mut g,
        "embeddings.position_embeddings.weight",
        &[cfg.max_position_embeddings, e],
    )?;
    let typ = w(
        &mut g,
        "embeddings.token_type_embeddings.weight",
        &[cfg.type_vocab_size, e],
    )?;
    let ln_w = w(&mut g, "embeddings.LayerNorm.weight", &[e])?;
    let ln_b = w(&mut g, "embeddings.LayerNorm.bias", &[e])?;
    let x = g.embedding(ids, word);
    let pe = g.embedding(positions, pos);
    let te = g.embedding(type_ids, typ);
    let x = g.add(x, pe);
    let x = g.add(x, te);
    let mut x = g.layer_norm(x, ln_w, ln_b, eps);

    for l in 0..cfg.num_hidden_layers {
        let at = format!("encoder.layer.{l}.attention");
        // Fused QKV: [3E, E] weight and [3E] bias, rows q, k, v.
        let mut parts_w = Vec::new();
        let mut parts_b = Vec::new();
        for n in ["query", "key", "value"] {
            let wn = format!("{p}{at}.self.{n}.weight");
            let bn = format!("{p}{at}.self.{n}.bias");
            file.expect_shape(&wn, &[e, e])?;
            file.expect_shape(&bn, &[e])?;
            parts_w.push(file.upload(gpu, &wn, hold)?);
            parts_b.push(file.upload(gpu, &bn, hold)?);
        }
        let wqkv = g.weight(concat_rows(gpu, &parts_w)?);
        let bqkv = g.weight(concat_rows(gpu, &parts_b)?);
        let qkv = g.linear(x, wqkv, Some(bqkv));
        let ctx = g.self_attention_packed(qkv, mask, heads);
        let wo = w(&mut g, &format!("{at}.output.dense.weight"), &[e, e])?;
        let bo = w(&mut g, &format!("{at}.output.dense.bias"), &[e])?;
        let a = g.linear(ctx, wo, Some(bo));
        let a = g.add(a, x);
        let lw = w(&mut g, &format!("{at}.output.LayerNorm.weight"), &[e])?;
        let lb = w(&mut g, &format!("{at}.output.LayerNorm.bias"), &[e])?;
        x = g.layer_norm(a, lw, lb, eps);

        let lay = format!("encoder.layer.{l}");
        let w1 = w(
            &mut g,
            &format!("{lay}.intermediate.dense.weight"),
            &[ff, e],
        )?;
        let b1 = w(&mut g, &format!("{lay}.intermediate.dense.bias"), &[ff])?;
        let w2 = w(&mut g, &format!("{lay}.output.dense.weight"), &[e, ff])?;
        let b2 = w(&mut g, &format!("{lay}.output.dense.bias"), &[e])?;
        let h = g.linear(x, w1, Some(b1));
        let h = g.activation(h, act);
        let h = g.linear(h, w2, Some(b2));
        let h = g.add(h, x);
        let lw = w(&mut g, &format!("{lay}.output.LayerNorm.weight"), &[e])?;
        let lb = w(&mut g, &format!("{lay}.output.LayerNorm.bias"), &[e])?;
        x = g.layer_norm(h, lw, lb, eps);
    }
    let pooled = g.mean_pool(x, mask, true);
    g.output("embeddings", pooled);
    Ok(g)
}

/// Stacks tensors of equal dtype along their first dim on the GPU (`[n_i, *] -> [sum n_i, *]`).
fn concat_rows(gpu: &Gpu, parts: &[Tensor]) -> Result<Tensor> {
    let first = parts
        .first()
        .ok_or_else(|| Error::invalid("concat_rows", "no parts"))?;
    let dtype = first.dtype();
    let tail = &first.shape()[1..];
    let mut rows = 0;
    for t in parts {
        if t.dtype() != dtype || &t.shape()[1..] != tail {
            return Err(Error::shape(
                "concat_rows",
                format!(
                    "{}{:?} does not stack with {}{:?}",
                    t.dtype(),
                    t.shape(),
                    dtype,
                    first.shape()
                ),
            ));
        }
        rows += t.shape()[0];
    }
    let mut shape = vec![rows];
    shape.extend_from_slice(tail);
    let out = Tensor::zeros(gpu, &shape, dtype)?;
    if parts.iter().all(|t| t.byte_len() % 4 == 0) {
        let mut rec = Recorder::new(gpu);
        let mut offset = 0;
        for t in parts {
            rec.copy(t.buffer(), 0, out.buffer(), offset, t.byte_len());
            offset += t.byte_len();
        }
        rec.submit()?;
    } else {
        let mut bytes = Vec::with_capacity(out.byte_len() as usize);
        for t in parts {
            bytes.extend_from_slice(&t.to_bytes(gpu)?);
        }
        out.write_bytes(gpu, 0, &bytes);
    }
    Ok(out)
}
