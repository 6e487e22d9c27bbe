//! RNN encoder-decoders with attention (the seq2seq family of the attention literature), configured
//! entirely from an exported file's `heedful.config` (see `weights/seq2seq.py` for the reference
//! PyTorch modules and the config keys), so a user's own PyTorch model of this family runs without
//! Rust code.
//!
//! - Encoder: embedding, then an LSTM / GRU / RNN stack (layers, bidirectional) over a
//!   variable-length batch ([`crate::ops::RecurrentLayer`]).
//! - Decoder: embedding, a stack of LSTM / GRU / RNN cells ([`crate::ops::RecurrentCell`]),
//!   attention over the encoder states (dot, general, additive, multi-head, or the PyTorch
//!   tutorial's Linear over `[emb; h]` onto `max_length` positions), input feeding and the Luong
//!   attentional layer as options, output projection. Two step orders (`decoder.attention_order`, see
//!   [`AttentionOrder`]): Luong (cell, then attention with the new state) and Bahdanau
//!   (attention with the previous state, then the cell on `[emb; ctx]`, output from
//!   `[h; ctx; emb]`).
//! - Decoding ([`Seq2Seq::decode`]): greedy or beam search. One decoder step is recorded once;
//!   a chunk of `steps_per_submit` steps is then one submission, in which each step's top-k feeds
//!   the next step's embedding lookup on the GPU (and the beam's selection and state reordering
//!   run there too). The CPU reads the chosen tokens back once per chunk, to stop when every
//!   sequence has ended. `steps_per_submit = 1` is the classic one-submission-per-step loop.
//! - Weights (`weights.rs`): the file's PyTorch names map to typed weights there and nowhere else;
//!   the recurrent weights have a fused copy (blobs packed by [`crate::weights::pack`]) and a
//!   per-op copy, and a model uploads at load only the one `DecodeKernel::Auto` runs, the other
//!   when a decode first asks for it ([`Seq2Seq::weight_copies`]).
//!
//! ```no_run
//! use heedful::models::seq2seq::{DecodeOptions, Seq2Seq};
//! let gpu = heedful::Gpu::shared()?;
//! let model = Seq2Seq::load(&gpu, "weights/g2p_gru_tutorial.safetensors".as_ref())?;
//! let out = model.decode(&gpu, &[model.encode_text("hello")?], &DecodeOptions::default())?;
//! println!("{}", model.target_text(&out[0].tokens));
//! # Ok::<(), heedful::Error>(())
//! ```

mod beam;
pub mod config;
mod decode;
mod fused;
mod plan;
mod step;
mod weights;

use std::path::Path;
use std::sync::Mutex;

use crate::kernels::decoder_loop::DecoderLoopDims;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::graph::{LoopBuilder, PlanCache, Writes};
use crate::kernels::{concat, embedding, encoder_loop};
use crate::ops::{CellKind, RecurrentOutput, RecurrentSpec};
use crate::tensor::{DType, Tensor};
use crate::weights::{Hold, WeightFile};

pub use config::{AttentionKind, AttentionOrder, Config};
pub use decode::{DecodeKernel, DecodeOptions, Decoded};
pub use weights::WeightCopies;

const OP: &str = "seq2seq";

/// Linear layer weights on the GPU.
#[derive(Debug)]
struct Linear {
    w: Tensor,
    b: Option<Tensor>,
}

/// Attention parameters by kind.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum AttnParams {
    None,
    Dot,
    General {
        w: Linear,
    },
    Additive {
        w_q: Tensor,
        w_k: Linear,
        v: Tensor,
    },
    MultiHead {
        q: Linear,
        k: Linear,
        v: Linear,
        o: Linear,
        heads: usize,
    },
    Tutorial {
        attn: Linear,
        combine: Linear,
        max_length: usize,
    },
}

/// A loaded seq2seq model.
#[derive(Debug)]
pub struct Seq2Seq {
    cfg: Config,
    kind: AttentionKind,
    order: AttentionOrder,
    /// The mapped file: the weight copies not uploaded at load are built from it on demand.
    file: WeightFile,
    /// The encoder's hyper-parameters.
    enc_spec: RecurrentSpec,
    /// The fused decoder's sizes, when it runs this architecture.
    dec_dims: Option<DecoderLoopDims>,
    /// The recurrent weights' fused and per-op copies, each uploaded when first needed.
    copies: weights::Copies,
    dec_kind: CellKind,
    attn: AttnParams,
    w_c: Option<Linear>,
    out: Linear,
    /// Prepared decoders by batch shape (least recently used out first), run by later `decode`
    /// calls.
    plans: PlanCache<plan::PlanKey, Mutex<plan::Plan>>,
}

fn load_linear(
    f: &WeightFile,
    gpu: &Gpu,
    prefix: &str,
    shape: [usize; 2],
    bias: bool,
) -> Result<Linear> {
    let wn = format!("{prefix}.weight");
    f.expect_shape(&wn, &shape)?;
    let w = f.upload(gpu, &wn, Hold::F16)?;
    let b = if bias {
        let bn = format!("{prefix}.bias");
        f.expect_shape(&bn, &[shape[0]])?;
        Some(f.upload(gpu, &bn, Hold::F16)?)
    } else {
        None
    };
    Ok(Linear { w, b })
}

impl Seq2Seq {
    /// Loads an exported seq2seq file (arch "seq2seq"); weights are held in f16.
    pub fn load(gpu: &Gpu, path: &Path) -> Result<Seq2Seq> {
        Self::from_weights(gpu, WeightFile::open(path)?)
    }

    /// [`Seq2Seq::load`] from the file's bytes (the browser, where there is no file to map: the
    /// page fetches the `.safetensors` file); `label` names it in errors.
    pub fn from_bytes(gpu: &Gpu, bytes: Vec<u8>, label: &str) -> Result<Seq2Seq> {
        Self::from_weights(gpu, WeightFile::from_bytes(bytes, label)?)
    }

    /// [`Seq2Seq::load`] from an opened (mapped or in-memory) weight file.
    pub fn from_weights(gpu: &Gpu, f: WeightFile) -> Result<Seq2Seq> {
        let path = f.path().to_path_buf();
        let path = path.as_path();
        match f.architecture() {
            Some("seq2seq") => {}
            other => {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "{}: heedful.arch is {other:?}, not \"seq2seq\" (export with weights/seq2seq.py)",
                        path.display()
                    ),
                ))
            }
        }
        let cfg_json = f.config_json().ok_or_else(|| {
            Error::invalid(
                OP,
                format!("{}: no heedful.config metadata", path.display()),
            )
        })?;
        // Config errors name the file they came from.
        let cfg = Config::from_json(cfg_json).map_err(|e| match e {
            Error::Invalid { detail, .. } => Error::file(path, detail),
            other => other,
        })?;
        Self::from_file(gpu, f, cfg)
    }

    fn from_file(gpu: &Gpu, file: WeightFile, cfg: Config) -> Result<Seq2Seq> {
        // Every tensor's presence, dtype and exact shape, and no unused layers, before any upload.
        cfg.check_file(&file)?;
        let f = &file;
        let kind = cfg.attention()?;
        let order = cfg.attention_order()?;
        let bahdanau = order == AttentionOrder::Bahdanau;
        let d = &cfg.decoder;
        let mem = cfg.mem_dim();
        let ctx = cfg.ctx_dim();
        let hid = d.hidden;
        let dec_kind = config::cell_kind(&d.cell)?;
        let enc_spec = weights::encoder_spec(&cfg)?;
        let dec_dims = fused::loop_dims(&cfg)?;
        let attn = match kind {
            AttentionKind::None => AttnParams::None,
            AttentionKind::Dot => AttnParams::Dot,
            AttentionKind::General => AttnParams::General {
                w: load_linear(f, gpu, "decoder.attention.w", [hid, mem], false)?,
            },
            AttentionKind::Additive => {
                let a = d.attn_dim.unwrap_or(hid);
                let w_q = load_linear(f, gpu, "decoder.attention.w_q", [a, hid], false)?.w;
                let w_k = load_linear(f, gpu, "decoder.attention.w_k", [a, mem], true)?;
                let v = load_linear(f, gpu, "decoder.attention.v", [1, a], false)?
                    .w
                    .reshape(&[a])?;
                AttnParams::Additive { w_q, w_k, v }
            }
            AttentionKind::MultiHead => AttnParams::MultiHead {
                q: load_linear(f, gpu, "decoder.attention.w_q", [ctx, hid], true)?,
                k: load_linear(f, gpu, "decoder.attention.w_k", [ctx, mem], true)?,
                v: load_linear(f, gpu, "decoder.attention.w_v", [ctx, mem], true)?,
                o: load_linear(f, gpu, "decoder.attention.w_o", [ctx, ctx], true)?,
                heads: d.heads.unwrap_or(1),
            },
            AttentionKind::Tutorial => {
                let ml = d.max_length.unwrap_or(1);
                AttnParams::Tutorial {
                    attn: load_linear(f, gpu, "decoder.attn", [ml, d.emb + hid], true)?,
                    combine: load_linear(f, gpu, "decoder.combine", [d.emb, d.emb + mem], true)?,
                    max_length: ml,
                }
            }
        };
        let attn_layer =
            d.attn_layer && kind != AttentionKind::None && kind != AttentionKind::Tutorial;
        let w_c = if attn_layer {
            Some(load_linear(f, gpu, "decoder.w_c", [hid, ctx + hid], false)?)
        } else {
            None
        };
        let out_in = if bahdanau {
            hid + ctx + d.emb
        } else if kind == AttentionKind::None || kind == AttentionKind::Tutorial || attn_layer {
            hid
        } else {
            ctx + hid
        };
        let out = load_linear(f, gpu, "decoder.out", [cfg.tgt_vocab, out_in], true)?;
        let copies = weights::Copies::load(gpu, f, &cfg, dec_dims.as_ref())?;
        Ok(Seq2Seq {
            file,
            cfg,
            kind,
            order,
            enc_spec,
            dec_dims,
            copies,
            dec_kind,
            attn,
            w_c,
            out,
            plans: PlanCache::new(plan::MAX_PLANS),
        })
    }

    /// The parsed config.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The attention kind.
    pub fn attention(&self) -> AttentionKind {
        self.kind
    }

    /// The decoder step order.
    pub fn attention_order(&self) -> AttentionOrder {
        self.order
    }

    /// Input ids of `text` by the config's `src_tokens` (one symbol per character; unknown ones
    /// become `src_unk_id`, see [`Seq2Seq::unknown_chars`]). Characters are lower-cased when the
    /// vocabulary has no upper case.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        if self.cfg.src_tokens.is_empty() {
            return Err(Error::invalid(OP, "the model's config has no src_tokens"));
        }
        let mut ids = Vec::new();
        for ch in text.chars() {
            match (self.symbol_id(ch), self.cfg.src_unk_id) {
                (Some(i), _) => ids.push(i as u32),
                (None, Some(u)) => ids.push(u as u32),
                (None, None) => {
                    return Err(Error::invalid(
                        OP,
                        format!("{ch:?} is not in the input vocabulary and there is no src_unk_id"),
                    ))
                }
            }
        }
        if ids.is_empty() {
            return Err(Error::invalid(OP, "empty input"));
        }
        Ok(ids)
    }

    /// The characters of `text` that are not in the input vocabulary (in order, each once):
    /// [`Seq2Seq::encode_text`] reads them as `src_unk_id`.
    pub fn unknown_chars(&self, text: &str) -> Vec<char> {
        let mut out: Vec<char> = Vec::new();
        for ch in text.chars() {
            if self.symbol_id(ch).is_none() && !out.contains(&ch) {
                out.push(ch);
            }
        }
        out
    }

    /// Index of `ch` in `src_tokens`, lower-cased first when the vocabulary has no upper case.
    fn symbol_id(&self, ch: char) -> Option<usize> {
        let toks = &self.cfg.src_tokens;
        let lower = !toks.iter().any(|t| t.chars().any(|c| c.is_uppercase()));
        let ch = if lower {
            ch.to_lowercase().next().unwrap_or(ch)
        } else {
            ch
        };
        let s = ch.to_string();
        toks.iter().position(|t| *t == s)
    }

    /// Output symbols of `tokens`, space-separated.
    pub fn target_text(&self, tokens: &[u32]) -> String {
        tokens
            .iter()
            .map(|&t| {
                self.cfg
                    .tgt_tokens
                    .get(t as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("#{t}"))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Checks a batch of inputs and appends `src_eos_id`: the sequences the encoder reads.
    fn source_seqs(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<u32>>> {
        if inputs.is_empty() {
            return Err(Error::invalid(OP, "empty batch"));
        }
        let mut seqs = Vec::with_capacity(inputs.len());
        for (i, s) in inputs.iter().enumerate() {
            let mut s = s.clone();
            if let Some(e) = self.cfg.src_eos_id {
                s.push(e as u32);
            }
            if s.is_empty() {
                return Err(Error::invalid(OP, format!("input {i} is empty")));
            }
            // The tutorial attention scores a fixed `max_length` positions: a longer input would
            // be cut silently, so it is refused.
            if let (AttentionKind::Tutorial, Some(ml)) = (self.kind, self.cfg.decoder.max_length) {
                if s.len() > ml {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "input {i}: {} ids{} but the tutorial attention covers \
                             decoder.max_length = {ml} positions",
                            s.len(),
                            if self.cfg.src_eos_id.is_some() {
                                " (with src_eos_id)"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
            if let Some(&bad) = s.iter().find(|&&t| t as usize >= self.cfg.src_vocab) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "input {i}: id {bad} outside the vocabulary of {}",
                        self.cfg.src_vocab
                    ),
                ));
            }
            seqs.push(s);
        }
        Ok(seqs)
    }

    /// Declares and records (into the plan's init work) the encoder for `b` sequences padded to `t`
    /// ids: the recording reads `src.ids [B, T]` and `src.lengths [B]` (written per call, see
    /// [`Encoded::write`]) and leaves the memory
    /// `[B, T, M]` and the initial decoder states per layer (h `[B, H]`, and c for the LSTM). It
    /// starts from zero encoder states of its own, so it can be replayed.
    ///
    /// With `fused`, the fused encoder kernel runs (one dispatch per layer, embedding included)
    /// instead of the embedding, input-projection and recurrence kernels.
    fn record_encoder(
        &self,
        bld: &mut LoopBuilder,
        b: usize,
        t: usize,
        fused: bool,
    ) -> Result<Encoded> {
        let ids = bld.named("src.ids", &[b, t], DType::U32)?;
        let gpu = bld.gpu().clone();
        let mut rec = Recorder::new(&gpu);
        let spec = &self.enc_spec;
        let state = [spec.num_layers * spec.directions(), b, spec.hidden_size];
        let lstm_encoder = spec.kind == CellKind::Lstm;
        let (out, lengths) = match fused {
            true => {
                let blob = self.encoder_blob(&gpu)?;
                let lengths = bld.named("src.lengths", &[b], DType::U32)?;
                let mut outputs = Vec::new();
                for _ in 0..spec.num_layers {
                    outputs.push(
                        bld.buffer(&[b, t, spec.directions() * spec.hidden_size], DType::F32)?,
                    );
                }
                let h_n = bld.buffer(&state, DType::F32)?;
                let c_n = if lstm_encoder {
                    Some(bld.buffer(&state, DType::F32)?)
                } else {
                    None
                };
                let bufs = encoder_loop::EncoderBuffers {
                    ids: &ids,
                    lengths: &lengths,
                    outputs: &outputs,
                    h_n: &h_n,
                    c_n: c_n.as_ref(),
                };
                encoder_loop::record(&mut rec, blob, &bufs)?;
                let output = outputs
                    .pop()
                    .ok_or_else(|| Error::invalid(OP, "no encoder layers"))?;
                (RecurrentOutput { output, h_n, c_n }, lengths)
            }
            false => {
                let per_op = self.per_op_encoder(&gpu)?;
                let x = bld.buffer(&[b, t, self.cfg.encoder.emb], DType::F32)?;
                embedding::record_embedding(&mut rec, &ids, &per_op.src_emb, &x)?;
                let z_h = bld.buffer(&state, DType::F32)?;
                let z_c = if lstm_encoder {
                    Some(bld.buffer(&state, DType::F32)?)
                } else {
                    None
                };
                let prep = per_op.encoder.prepare(
                    &gpu,
                    &x,
                    Some(&z_h),
                    z_c.as_ref(),
                    Some(&vec![t; b]),
                )?;
                rec.extend(prep.recorder);
                bld.name("src.lengths", &prep.lengths)?;
                (prep.output, prep.lengths)
            }
        };
        let d = &self.cfg.decoder;
        let mut h0 = Vec::new();
        let mut c0 = Vec::new();
        let lstm = self.dec_kind == CellKind::Lstm;
        for _ in 0..d.layers {
            h0.push(bld.buffer(&[b, d.hidden], DType::F32)?);
            if lstm {
                c0.push(bld.buffer(&[b, d.hidden], DType::F32)?);
            }
        }
        if self.cfg.bridge == "final" {
            let (dirs, eh) = (self.cfg.dirs(), self.cfg.encoder.hidden);
            let bytes = (b * eh * 4) as u64;
            let mut bridge = |src: &Tensor,
                              dst: &Tensor,
                              l: usize,
                              rec: &mut Recorder|
             -> Result<()> {
                if dirs == 1 {
                    rec.copy(
                        src.buffer(),
                        (l * b * eh * 4) as u64,
                        dst.buffer(),
                        0,
                        bytes,
                    );
                    return Ok(());
                }
                if b <= 8 {
                    // Row by row: a few buffer copies cost less than a dispatch (~30 us on
                    // lavapipe), which matters for one-word decodes.
                    let row = (eh * 4) as u64;
                    for i in 0..b as u64 {
                        for dir in 0..2u64 {
                            let from = ((2 * l as u64 + dir) * b as u64 + i) * row;
                            rec.copy(src.buffer(), from, dst.buffer(), (2 * i + dir) * row, row);
                        }
                    }
                    return Ok(());
                }
                let f = bld.buffer(&[b, eh], DType::F32)?;
                let r = bld.buffer(&[b, eh], DType::F32)?;
                rec.copy(
                    src.buffer(),
                    (2 * l * b * eh * 4) as u64,
                    f.buffer(),
                    0,
                    bytes,
                );
                rec.copy(
                    src.buffer(),
                    ((2 * l + 1) * b * eh * 4) as u64,
                    r.buffer(),
                    0,
                    bytes,
                );
                concat::record_concat(rec, &f, &r, dst)
            };
            for l in 0..d.layers {
                bridge(&out.h_n, &h0[l], l, &mut rec)?;
                if lstm {
                    if let Some(c_n) = &out.c_n {
                        bridge(c_n, &c0[l], l, &mut rec)?;
                    }
                }
            }
        }
        // `ids` and `lengths` are written per call through their names (`src.ids`, `src.lengths`).
        let _ = (ids, lengths);
        bld.init().extend(rec);
        Ok(Encoded {
            mem: out.output,
            h0,
            c0,
            b,
            t,
        })
    }
}

/// The recorded encoder of a batch shape: where its results live (its inputs are the plan's
/// `src.ids` and `src.lengths`).
#[derive(Debug)]
struct Encoded {
    /// `[B, T, M]`.
    mem: Tensor,
    /// Initial decoder states per layer `[B, H]` (all zeros unless the bridge is "final").
    h0: Vec<Tensor>,
    c0: Vec<Tensor>,
    b: usize,
    t: usize,
}

impl Encoded {
    /// The writes of a batch's inputs (`seqs.len()` == B, each at most `t` long, padded with
    /// `pad`).
    fn write(w: &mut Writes, t: usize, pad: u32, seqs: &[Vec<u32>]) {
        let mut ids = vec![pad; seqs.len() * t];
        for (i, s) in seqs.iter().enumerate() {
            ids[i * t..i * t + s.len()].copy_from_slice(s);
        }
        let lens: Vec<u32> = seqs.iter().map(|s| s.len() as u32).collect();
        w.u32s("src.ids", &ids);
        w.u32s("src.lengths", &lens);
    }
}
