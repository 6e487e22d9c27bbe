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
use crate::gpu::Gpu;
use crate::graph::{Dim, Graph, HostInput, Session, Value};
use crate::ops::Activation;
use crate::tensor::{DType, Tensor};
use crate::weights::{Hold, UploadOptions, WeightFile, WeightsErrorKind};

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

/// Largest size a BERT config may give (the GPU kernels index with 32-bit integers).
pub const MAX_SIZE: usize = i32::MAX as usize;

impl BertConfig {
    /// Parses and checks a `config.json` text: a pure function of the string that never panics
    /// (fuzzed by `fuzz/fuzz_targets/bert_config.rs`). Errors name the field: sizes must be at
    /// least 1 and at most [`MAX_SIZE`], the per-layer and embedding parameter counts must not
    /// overflow, heads must divide the width, the activation must be known and `layer_norm_eps`
    /// finite and positive. Checking happens before any tensor is read or allocated.
    pub fn from_json_str(s: &str) -> Result<BertConfig> {
        let c: BertConfig =
            serde_json::from_str(s).map_err(|e| Error::invalid(OP, format!("config.json: {e}")))?;
        c.check()?;
        Ok(c)
    }

    /// The checks of [`BertConfig::from_json_str`] on an already parsed config.
    pub fn check(&self) -> Result<()> {
        for (what, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 || v > MAX_SIZE {
                return Err(Error::invalid(
                    OP,
                    format!("config.json: {what} = {v} must be between 1 and {MAX_SIZE}"),
                ));
            }
        }
        let e = self.hidden_size;
        let over = |what: &str| {
            Error::invalid(
                OP,
                format!("config.json: {what} makes a tensor size overflow (hidden_size {e})"),
            )
        };
        for (what, rows) in [
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("intermediate_size", self.intermediate_size),
            (
                "hidden_size",
                e.checked_mul(3).ok_or_else(|| over("hidden_size"))?,
            ),
        ] {
            rows.checked_mul(e)
                .and_then(|n| n.checked_mul(4))
                .ok_or_else(|| over(what))?;
        }
        if !e.is_multiple_of(self.num_attention_heads) {
            return Err(Error::invalid(
                OP,
                format!(
                    "config.json: hidden_size {e} is not a multiple of num_attention_heads {}",
                    self.num_attention_heads
                ),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Error::invalid(
                OP,
                format!(
                    "config.json: layer_norm_eps = {} must be finite and > 0",
                    self.layer_norm_eps
                ),
            ));
        }
        self.activation()?;
        Ok(())
    }

    /// The FFN activation named by `hidden_act`.
    pub fn activation(&self) -> Result<Activation> {
        Ok(match self.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(Error::Unsupported(format!("BERT hidden_act {other:?}"))),
        })
    }

    /// Every tensor this config implies under `prefix` (`""` or `"bert."`), with its shape, in
    /// load order (biases included: BERT's linears and layer norms all have them). Private: the
    /// list has 16 entries per layer, so [`BertConfig::check_file`] first bounds the layer count
    /// by the file's tensor count.
    fn expected_tensors(&self, prefix: &str) -> Vec<(String, Vec<usize>)> {
        let (e, ff) = (self.hidden_size, self.intermediate_size);
        let mut out = vec![
            (
                "embeddings.word_embeddings.weight".to_string(),
                vec![self.vocab_size, e],
            ),
            (
                "embeddings.position_embeddings.weight".to_string(),
                vec![self.max_position_embeddings, e],
            ),
            (
                "embeddings.token_type_embeddings.weight".to_string(),
                vec![self.type_vocab_size, e],
            ),
            ("embeddings.LayerNorm.weight".to_string(), vec![e]),
            ("embeddings.LayerNorm.bias".to_string(), vec![e]),
        ];
        for l in 0..self.num_hidden_layers {
            let at = format!("encoder.layer.{l}.attention");
            for n in ["query", "key", "value"] {
                out.push((format!("{at}.self.{n}.weight"), vec![e, e]));
                out.push((format!("{at}.self.{n}.bias"), vec![e]));
            }
            out.push((format!("{at}.output.dense.weight"), vec![e, e]));
            out.push((format!("{at}.output.dense.bias"), vec![e]));
            out.push((format!("{at}.output.LayerNorm.weight"), vec![e]));
            out.push((format!("{at}.output.LayerNorm.bias"), vec![e]));
            let lay = format!("encoder.layer.{l}");
            out.push((format!("{lay}.intermediate.dense.weight"), vec![ff, e]));
            out.push((format!("{lay}.intermediate.dense.bias"), vec![ff]));
            out.push((format!("{lay}.output.dense.weight"), vec![e, ff]));
            out.push((format!("{lay}.output.dense.bias"), vec![e]));
            out.push((format!("{lay}.output.LayerNorm.weight"), vec![e]));
            out.push((format!("{lay}.output.LayerNorm.bias"), vec![e]));
        }
        out.into_iter()
            .map(|(n, s)| (format!("{prefix}{n}"), s))
            .collect()
    }

    /// Checks `file` against this config before anything is uploaded: every tensor present, a
    /// float and of exactly the implied shape, and no `encoder.layer.N` with N at or beyond
    /// `num_hidden_layers` (running fewer layers than the file holds gives wrong embeddings
    /// silently).
    pub fn check_file(&self, file: &WeightFile, prefix: &str) -> Result<()> {
        let layers = self.num_hidden_layers;
        if layers > file.len() {
            let name = format!(
                "{prefix}encoder.layer.{}.attention.self.query.weight",
                file.len()
            );
            return Err(file.config_error(
                &name,
                WeightsErrorKind::MissingTensor,
                format!(
                    "config.json: num_hidden_layers = {layers} needs it, but the file holds only \
                     {} tensors",
                    file.len()
                ),
            ));
        }
        for (name, shape) in self.expected_tensors(prefix) {
            file.expect_float(&name, &shape)?;
        }
        let layer_prefix = format!("{prefix}encoder.layer.");
        for name in file.names() {
            let Some(rest) = name.strip_prefix(&layer_prefix) else {
                continue;
            };
            let idx = rest.split('.').next().and_then(|d| d.parse::<usize>().ok());
            if idx.is_some_and(|i| i >= layers) {
                return Err(file.config_error(
                    name,
                    WeightsErrorKind::ShapeMismatch,
                    format!(
                        "is in the file but config.json has num_hidden_layers = {layers}; running \
                         fewer layers than the file holds would give wrong embeddings"
                    ),
                ));
            }
        }
        Ok(())
    }
}

const OP: &str = "bert";

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
    /// Tensors (full names as in the file) held in f32 even when `hold` is f16: the way to load
    /// a checkpoint whose values lie outside f16's range (the upload refuses them otherwise, see
    /// [`UploadOptions::keep_f32`]). The query, key and value of a layer are stacked into one
    /// tensor, so naming one of them keeps all three in f32.
    pub keep_f32: Vec<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            hold: Hold::F16,
            weights: None,
            keep_f32: Vec::new(),
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

/// Parses `config.json` (its bytes), errors naming `config_path`.
fn parse_config(config_path: &Path, bytes: &[u8]) -> Result<BertConfig> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::file(config_path, format!("not UTF-8: {e}")))?;
    BertConfig::from_json_str(text).map_err(|e| match e {
        Error::Invalid { detail, .. } => Error::file(
            config_path,
            detail.trim_start_matches("config.json: ").to_string(),
        ),
        other => other,
    })
}

/// The files of a Hugging Face BERT model folder, held in memory ([`BertEncoder::from_files`]).
pub struct BertFiles {
    /// `config.json`.
    pub config_json: Vec<u8>,
    /// `tokenizer.json`.
    pub tokenizer_json: Vec<u8>,
    /// `sentence_bert_config.json`, when the folder has one (its `max_seq_length` caps the
    /// tokenizer's truncation).
    pub sentence_config_json: Option<Vec<u8>>,
    /// `model.safetensors` (for example [`WeightFile::from_bytes`]).
    pub weights: WeightFile,
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
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| Error::Io { path, source })
        };
        let weights_path = opts
            .weights
            .clone()
            .unwrap_or_else(|| dir.join("model.safetensors"));
        // Each file is read when its check comes (config, tokenizer, sentence config, weights),
        // so a folder with several faults reports the first as it always did.
        Self::from_parts(
            gpu,
            dir,
            || read("config.json"),
            || {
                let tok_path = dir.join("tokenizer.json");
                std::fs::read(&tok_path)
                    .map_err(|e| Error::file(&tok_path, format!("cannot load tokenizer: {e}")))
            },
            || {
                let st = dir.join("sentence_bert_config.json");
                st.exists()
                    .then(|| read("sentence_bert_config.json"))
                    .transpose()
            },
            || WeightFile::open(&weights_path),
            opts,
        )
    }

    /// [`BertEncoder::load`] from the folder's files held in memory (the browser, which fetches
    /// them); `dir` names the folder in errors. `opts.weights` is not read: `files.weights` is the
    /// weight file.
    pub fn from_files(
        gpu: &Gpu,
        dir: &Path,
        files: BertFiles,
        opts: &LoadOptions,
    ) -> Result<BertEncoder> {
        let BertFiles {
            config_json,
            tokenizer_json,
            sentence_config_json,
            weights,
        } = files;
        Self::from_parts(
            gpu,
            dir,
            || Ok(config_json),
            || Ok(tokenizer_json),
            || Ok(sentence_config_json),
            || Ok(weights),
            opts,
        )
    }

    /// The one loader: each part is fetched (read, or handed over) just before its checks.
    fn from_parts(
        gpu: &Gpu,
        dir: &Path,
        config_json: impl FnOnce() -> Result<Vec<u8>>,
        tokenizer_json: impl FnOnce() -> Result<Vec<u8>>,
        sentence_config_json: impl FnOnce() -> Result<Option<Vec<u8>>>,
        weights: impl FnOnce() -> Result<WeightFile>,
        opts: &LoadOptions,
    ) -> Result<BertEncoder> {
        let config = parse_config(&dir.join("config.json"), &config_json()?)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json()?)
            .map_err(|e| Error::file(&tok_path, format!("cannot load tokenizer: {e}")))?;
        #[derive(Deserialize)]
        struct StConfig {
            max_seq_length: usize,
        }
        let st = dir.join("sentence_bert_config.json");
        let max_seq_len = if let Some(bytes) = sentence_config_json()? {
            let m = serde_json::from_slice::<StConfig>(&bytes)
                .map_err(|e| Error::file(&st, format!("invalid JSON: {e}")))?
                .max_seq_length;
            // 0 would leave the tokenizer's truncation with no limit: refuse it rather than let
            // long inputs run past the position table.
            if m == 0 {
                return Err(Error::file(
                    &st,
                    "max_seq_length = 0 would switch truncation off; it must be at least 1",
                ));
            }
            m
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

        let graph = build_graph(gpu, &config, &weights()?, opts)?;
        Ok(BertEncoder {
            gpu: gpu.clone(),
            config,
            graph: Arc::new(graph),
            tokenizer,
            max_seq_len,
            tokens_per_run: gpu.tuning().encoder_tokens_per_run,
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
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::invalid("tokenize", e.to_string()))?;
        self.check_ids(&enc)?;
        Ok(enc)
    }

    /// The GPU gather gives a zero row for an id past the table (a kernel cannot raise an error),
    /// so ids from the tokenizer are checked here, as PyTorch's IndexError.
    fn check_ids(&self, enc: &[tokenizers::Encoding]) -> Result<()> {
        let cfg = &self.config;
        for (r, e) in enc.iter().enumerate() {
            for (c, (&id, &ty)) in e.get_ids().iter().zip(e.get_type_ids()).enumerate() {
                let tables = [
                    (
                        id,
                        "ids",
                        "embeddings.word_embeddings.weight",
                        cfg.vocab_size,
                    ),
                    (
                        ty,
                        "type_ids",
                        "embeddings.token_type_embeddings.weight",
                        cfg.type_vocab_size,
                    ),
                ];
                for (v, what, table, rows) in tables {
                    if v as usize >= rows {
                        return Err(id_error(r, c, v, what, table, rows, cfg.hidden_size));
                    }
                }
            }
        }
        Ok(())
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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed(&self, session: &Session, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.embed_async(session, texts))
    }

    /// [`BertEncoder::embed`] without blocking on the readbacks (the one implementation; the
    /// browser's).
    pub async fn embed_async(&self, session: &Session, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let enc = self.tokenize(texts)?;
        let lens: Vec<usize> = enc.iter().map(|e| e.len()).collect();
        let e = self.config.hidden_size;
        let mut out = Vec::with_capacity(texts.len());
        for run in split_runs(&lens, self.tokens_per_run) {
            let inputs = batch_inputs(&enc[run]);
            let res = session.run_async(&inputs).await?;
            let emb = &res["embeddings"];
            out.extend(emb.data.chunks(e).map(|c| c.to_vec()));
        }
        Ok(out)
    }
}

/// The error for token id `id` at `[row, col]` of input `what` that lies outside table `table`
/// `[rows, e]`.
fn id_error(
    row: usize,
    col: usize,
    id: u32,
    what: &str,
    table: &str,
    rows: usize,
    e: usize,
) -> Error {
    Error::invalid(
        "bert embed",
        format!(
            "{what}[{row}, {col}] = {id} is out of range for the embedding table {table} \
             [{rows}, {e}] (the tokenizer's vocabulary is larger than config.json's)"
        ),
    )
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

fn build_graph(
    gpu: &Gpu,
    cfg: &BertConfig,
    file: &WeightFile,
    opts: &LoadOptions,
) -> Result<Graph> {
    let p = prefix(file);
    cfg.check()?;
    // Every tensor's presence, dtype and exact shape, and no unused layers, before any upload.
    cfg.check_file(file, p)?;
    let (e, ff, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let heads = cfg.num_attention_heads;
    let eps = cfg.layer_norm_eps as f32;
    let act = cfg.activation()?;
    let up = UploadOptions::new(opts.hold).keep_f32(opts.keep_f32.iter().cloned());
    let mut g = Graph::new();
    let w = |g: &mut Graph, name: &str, shape: &[usize]| -> Result<Value> {
        let full = format!("{p}{name}");
        file.expect_float(&full, shape)?;
        Ok(g.weight(file.upload_with(gpu, &full, &up)?))
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
    // Word plus position rows in one lookup, then the token-type rows added inside the norm.
    let x = g.embedding_positioned(ids, word, 1.0, positions, pos);
    let te = g.embedding(type_ids, typ);
    let mut x = g.add_layer_norm(x, te, ln_w, ln_b, eps);

    for l in 0..cfg.num_hidden_layers {
        let at = format!("encoder.layer.{l}.attention");
        // Fused QKV: [3E, E] weight and [3E] bias, rows q, k, v.
        let mut parts_w = Vec::new();
        let mut parts_b = Vec::new();
        let names: Vec<[String; 2]> = ["query", "key", "value"]
            .iter()
            .map(|n| {
                [
                    format!("{p}{at}.self.{n}.weight"),
                    format!("{p}{at}.self.{n}.bias"),
                ]
            })
            .collect();
        // The three parts are stacked into one tensor, so they share a dtype: when one of them
        // is to be kept in f32, all of them are.
        let mut qkv = up.clone();
        if names.iter().flatten().any(|n| up.keeps_f32(n)) {
            qkv.hold = Hold::F32;
        }
        for [wn, bn] in &names {
            file.expect_float(wn, &[e, e])?;
            file.expect_float(bn, &[e])?;
            parts_w.push(file.upload_with(gpu, wn, &qkv)?);
            parts_b.push(file.upload_with(gpu, bn, &qkv)?);
        }
        let wqkv = g.weight(Tensor::concat_rows(gpu, &parts_w)?);
        let bqkv = g.weight(Tensor::concat_rows(gpu, &parts_b)?);
        let qkv = g.linear(x, wqkv, Some(bqkv));
        let ctx = g.self_attention_packed(qkv, mask, heads);
        let wo = w(&mut g, &format!("{at}.output.dense.weight"), &[e, e])?;
        let bo = w(&mut g, &format!("{at}.output.dense.bias"), &[e])?;
        let a = g.linear(ctx, wo, Some(bo));
        let lw = w(&mut g, &format!("{at}.output.LayerNorm.weight"), &[e])?;
        let lb = w(&mut g, &format!("{at}.output.LayerNorm.bias"), &[e])?;
        // Post-LN: LayerNorm(a + x) in one dispatch.
        x = g.add_layer_norm(a, x, lw, lb, eps);

        let lay = format!("encoder.layer.{l}");
        let w1 = w(
            &mut g,
            &format!("{lay}.intermediate.dense.weight"),
            &[ff, e],
        )?;
        let b1 = w(&mut g, &format!("{lay}.intermediate.dense.bias"), &[ff])?;
        let w2 = w(&mut g, &format!("{lay}.output.dense.weight"), &[e, ff])?;
        let b2 = w(&mut g, &format!("{lay}.output.dense.bias"), &[e])?;
        let h = g.linear_act(x, w1, Some(b1), act);
        let h = g.linear(h, w2, Some(b2));
        let lw = w(&mut g, &format!("{lay}.output.LayerNorm.weight"), &[e])?;
        let lb = w(&mut g, &format!("{lay}.output.LayerNorm.bias"), &[e])?;
        x = g.add_layer_norm(h, x, lw, lb, eps);
    }
    let pooled = g.mean_pool(x, mask, true);
    g.output("embeddings", pooled);
    Ok(g)
}
