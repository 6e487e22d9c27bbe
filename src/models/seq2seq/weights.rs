//! How a seq2seq model holds its recurrent weights: the PyTorch names of its file mapped to typed
//! weights ([`crate::weights::pack`]), and the two copies the kernels read, uploaded only when a
//! decode needs them.
//!
//! - Fused copies: the encoder's and the decoder's blobs for the fused kernels
//!   ([`crate::kernels::encoder_loop`], [`crate::kernels::decoder_loop`]), packed from views of
//!   the mapped file and streamed in bounded chunks.
//! - Per-op copies: the embeddings and the [`RecurrentLayer`] / [`RecurrentCell`]s of the per-op
//!   encoder and decoder.
//!
//! At load the copy [`DecodeKernel::Auto`](super::DecodeKernel::Auto) runs is uploaded (fused
//! where the architecture and the device allow it, per side); the other one is built from the
//! still-mapped file the first time a decode asks for it, and kept. Every tensor's shape is
//! checked at load either way, so a wrong file fails there, not at a later decode.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::config::{self, Config};
use super::{AttentionKind, AttentionOrder, Seq2Seq, OP};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::decoder_loop::{DecoderBlob, DecoderLoopDims};
use crate::kernels::encoder_loop::{EncoderBlob, EncoderLayout};
use crate::ops::{RecurrentCell, RecurrentLayer, RecurrentSpec};
use crate::tensor::{DType, Tensor};
use crate::weights::pack::{
    AttentionWeights, DecoderWeights, EncoderWeights, RecurrentLayerWeights, Weight,
};
use crate::weights::{Hold, TensorView, WeightFile};

/// The per-op encoder's weights.
#[derive(Debug)]
pub(super) struct PerOpEncoder {
    /// `[V_src, E]` f16.
    pub(super) src_emb: Tensor,
    /// The recurrent stack.
    pub(super) encoder: RecurrentLayer,
}

/// The per-op decoder's recurrent weights.
#[derive(Debug)]
pub(super) struct PerOpDecoder {
    /// `[V_tgt, E]` f16.
    pub(super) dec_emb: Tensor,
    /// One cell per layer.
    pub(super) cells: Vec<RecurrentCell>,
}

/// The copies of the recurrent weights, each uploaded at most once.
#[derive(Debug, Default)]
pub(super) struct Copies {
    pub(super) enc_blob: OnceLock<EncoderBlob>,
    pub(super) dec_blob: OnceLock<DecoderBlob>,
    per_op_enc: OnceLock<PerOpEncoder>,
    per_op_dec: OnceLock<PerOpDecoder>,
}

/// Which copies of a model's recurrent weights are on the GPU ([`Seq2Seq::weight_copies`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightCopies {
    /// The fused encoder's blob.
    pub fused_encoder: bool,
    /// The fused decoder's blob.
    pub fused_decoder: bool,
    /// The per-op encoder's embedding and recurrent layers.
    pub per_op_encoder: bool,
    /// The per-op decoder's embedding and cells.
    pub per_op_decoder: bool,
}

/// `cell`'s value, built by `build` the first time (a racing second build is dropped).
/// A weight read on the CPU for packing, checked as an upload would be: NaN, infinities and values
/// past f16's range are refused with the tensor's name and the first bad index.
fn checked(t: TensorView<'_>) -> Result<Weight<'_>> {
    t.check_values(Hold::F16)?;
    Ok(Weight::View(t))
}

fn once<T>(cell: &OnceLock<T>, build: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let _ = cell.set(build()?);
    cell.get()
        .ok_or_else(|| Error::invalid(OP, "a weight copy was not kept"))
}

/// The encoder's hyper-parameters.
pub(super) fn encoder_spec(cfg: &Config) -> Result<RecurrentSpec> {
    let e = &cfg.encoder;
    Ok(RecurrentSpec {
        kind: config::cell_kind(&e.cell)?,
        input_size: e.emb,
        hidden_size: e.hidden,
        num_layers: e.layers,
        bidirectional: e.bidirectional,
    })
}

/// One recurrent layer's weights `{prefix}{weight_ih,weight_hh,bias_ih,bias_hh}{sfx}` of `f`, shapes
/// checked (biases may be absent).
fn layer_weights<'f>(
    f: &'f WeightFile,
    prefix: &str,
    sfx: &str,
    gh: usize,
    input: usize,
    hidden: usize,
) -> Result<RecurrentLayerWeights<'f>> {
    let bias = |n: &str| -> Result<Weight<'f>> {
        let name = format!("{prefix}{n}{sfx}");
        Ok(if f.contains(&name) {
            checked(f.expect_shape(&name, &[gh])?)?
        } else {
            Weight::Absent
        })
    };
    Ok(RecurrentLayerWeights {
        w_ih: checked(f.expect_shape(&format!("{prefix}weight_ih{sfx}"), &[gh, input])?)?,
        w_hh: checked(f.expect_shape(&format!("{prefix}weight_hh{sfx}"), &[gh, hidden])?)?,
        b_ih: bias("bias_ih")?,
        b_hh: bias("bias_hh")?,
    })
}

/// The encoder's weights of `f` (`encoder.emb.weight`, `encoder.rnn.*`), shapes checked.
pub(super) fn encoder_weights<'f>(f: &'f WeightFile, cfg: &Config) -> Result<EncoderWeights<'f>> {
    let spec = encoder_spec(cfg)?;
    let (h, dirs) = (spec.hidden_size, spec.directions());
    let gh = spec.kind.gates() * h;
    let mut layers = Vec::new();
    for l in 0..spec.num_layers {
        let input = if l == 0 { spec.input_size } else { dirs * h };
        for d in 0..dirs {
            let sfx = format!("_l{l}{}", if d == 1 { "_reverse" } else { "" });
            layers.push(layer_weights(f, "encoder.rnn.", &sfx, gh, input, h)?);
        }
    }
    Ok(EncoderWeights {
        emb: checked(f.expect_shape("encoder.emb.weight", &[cfg.src_vocab, spec.input_size])?)?,
        layers,
    })
}

/// The decoder cells' input width per layer.
fn cell_inputs(cfg: &Config) -> Result<Vec<usize>> {
    let (d, kind) = (&cfg.decoder, cfg.attention()?);
    let feeding = d.input_feeding && kind != AttentionKind::None && kind != AttentionKind::Tutorial;
    let bahdanau = cfg.attention_order()? == AttentionOrder::Bahdanau;
    Ok((0..d.layers)
        .map(|l| {
            if l > 0 {
                d.hidden
            } else if feeding || bahdanau {
                d.emb + cfg.ctx_dim()
            } else {
                d.emb
            }
        })
        .collect())
}

/// The decoder cells' weights of `f` (`decoder.rnn.*_l{k}`), shapes checked.
fn decoder_cells<'f>(f: &'f WeightFile, cfg: &Config) -> Result<Vec<RecurrentLayerWeights<'f>>> {
    let h = cfg.decoder.hidden;
    let gh = config::cell_kind(&cfg.decoder.cell)?.gates() * h;
    cell_inputs(cfg)?
        .into_iter()
        .enumerate()
        .map(|(l, input)| layer_weights(f, "decoder.rnn.", &format!("_l{l}"), gh, input, h))
        .collect()
}

/// The fused decoder's weights of `f` for `dims` (the attention's, `W_c` and the output's shapes
/// are checked by the per-op loader).
pub(super) fn decoder_weights<'f>(
    f: &'f WeightFile,
    cfg: &Config,
    dims: &DecoderLoopDims,
) -> Result<DecoderWeights<'f>> {
    let get = |name: &str| -> Result<Weight<'f>> {
        Ok(if f.contains(name) {
            checked(f.tensor(name)?)?
        } else {
            Weight::Absent
        })
    };
    let attention = match cfg.attention()? {
        AttentionKind::General => AttentionWeights::General {
            w: get("decoder.attention.w.weight")?,
        },
        AttentionKind::Additive => AttentionWeights::Additive {
            w_q: get("decoder.attention.w_q.weight")?,
            b_k: get("decoder.attention.w_k.bias")?,
            v: get("decoder.attention.v.weight")?,
        },
        _ => AttentionWeights::None,
    };
    Ok(DecoderWeights {
        emb: checked(f.expect_shape("decoder.emb.weight", &[dims.vocab, dims.emb])?)?,
        cells: decoder_cells(f, cfg)?,
        attention,
        w_c: if dims.attn_layer {
            get("decoder.w_c.weight")?
        } else {
            Weight::Absent
        },
        out_w: get("decoder.out.weight")?,
        out_b: get("decoder.out.bias")?,
    })
}

/// The state_dict-named f32 map [`RecurrentLayer`] / [`RecurrentCell`] take, from typed weights.
fn named(
    layers: &[RecurrentLayerWeights],
    name: impl Fn(&str, usize) -> String,
) -> Result<HashMap<String, Vec<f32>>> {
    let mut m = HashMap::new();
    for (i, w) in layers.iter().enumerate() {
        for (n, v) in [
            ("weight_ih", &w.w_ih),
            ("weight_hh", &w.w_hh),
            ("bias_ih", &w.b_ih),
            ("bias_hh", &w.b_hh),
        ] {
            if let Weight::View(t) = v {
                m.insert(name(n, i), t.to_f32_vec()?);
            }
        }
    }
    Ok(m)
}

impl Copies {
    /// Checks every recurrent weight's shape in `f` and uploads the copies `Auto` decodes run on
    /// `gpu`.
    pub(super) fn load(
        gpu: &Gpu,
        f: &WeightFile,
        cfg: &Config,
        dec_dims: Option<&DecoderLoopDims>,
    ) -> Result<Copies> {
        let c = Copies::default();
        encoder_weights(f, cfg)?;
        decoder_cells(f, cfg)?;
        f.expect_shape("decoder.emb.weight", &[cfg.tgt_vocab, cfg.decoder.emb])?;
        if encoder_fits(gpu, cfg)? {
            once(&c.enc_blob, || build_enc_blob(gpu, f, cfg))?;
        } else {
            once(&c.per_op_enc, || build_per_op_enc(gpu, f, cfg))?;
        }
        match dec_dims {
            // Inputs longer than one position may still not fit; those decode per-op.
            Some(d) if d.check(gpu, 1).is_ok() => {
                once(&c.dec_blob, || build_dec_blob(gpu, f, cfg, d))?;
            }
            _ => {
                once(&c.per_op_dec, || build_per_op_dec(gpu, f, cfg))?;
            }
        }
        Ok(c)
    }
}

/// Whether the fused encoder kernel runs `cfg`'s encoder on `gpu` (from its layout: nothing is
/// packed).
fn encoder_fits(gpu: &Gpu, cfg: &Config) -> Result<bool> {
    let spec = encoder_spec(cfg)?;
    let layout = EncoderLayout::new(
        spec,
        cfg.src_vocab,
        EncoderLayout::folds(&spec, cfg.src_vocab),
    )?;
    Ok(layout.check(gpu).is_ok())
}

fn build_enc_blob(gpu: &Gpu, f: &WeightFile, cfg: &Config) -> Result<EncoderBlob> {
    encoder_weights(f, cfg)?.pack(gpu, encoder_spec(cfg)?, cfg.src_vocab)
}

fn build_dec_blob(
    gpu: &Gpu,
    f: &WeightFile,
    cfg: &Config,
    dims: &DecoderLoopDims,
) -> Result<DecoderBlob> {
    decoder_weights(f, cfg, dims)?.pack(gpu, *dims)
}

fn build_per_op_enc(gpu: &Gpu, f: &WeightFile, cfg: &Config) -> Result<PerOpEncoder> {
    let spec = encoder_spec(cfg)?;
    let w = encoder_weights(f, cfg)?;
    let dirs = spec.directions();
    let map = named(&w.layers, |n, i| {
        let sfx = if i % dirs == 1 { "_reverse" } else { "" };
        format!("{n}_l{}{sfx}", i / dirs)
    })?;
    Ok(PerOpEncoder {
        src_emb: f.upload(gpu, "encoder.emb.weight", Hold::F16)?,
        encoder: RecurrentLayer::new(gpu, spec, &map, DType::F16)?,
    })
}

fn build_per_op_dec(gpu: &Gpu, f: &WeightFile, cfg: &Config) -> Result<PerOpDecoder> {
    let d = &cfg.decoder;
    let kind = config::cell_kind(&d.cell)?;
    let cells = decoder_cells(f, cfg)?;
    let inputs = cell_inputs(cfg)?;
    let mut out = Vec::with_capacity(cells.len());
    for (c, input) in cells.iter().zip(inputs) {
        let map = named(std::slice::from_ref(c), |n, _| n.to_string())?;
        out.push(RecurrentCell::new(
            gpu,
            kind,
            input,
            d.hidden,
            &map,
            DType::F16,
        )?);
    }
    f.expect_shape("decoder.emb.weight", &[cfg.tgt_vocab, d.emb])?;
    Ok(PerOpDecoder {
        dec_emb: f.upload(gpu, "decoder.emb.weight", Hold::F16)?,
        cells: out,
    })
}

impl Seq2Seq {
    /// Which copies of the recurrent weights are on the GPU now: at load, the fused kernels' blobs
    /// where [`DecodeKernel::Auto`](super::DecodeKernel::Auto) runs them and the per-op weights
    /// elsewhere; the other copy appears after the first decode that needs it.
    pub fn weight_copies(&self) -> WeightCopies {
        let c = &self.copies;
        WeightCopies {
            fused_encoder: c.enc_blob.get().is_some(),
            fused_decoder: c.dec_blob.get().is_some(),
            per_op_encoder: c.per_op_enc.get().is_some(),
            per_op_decoder: c.per_op_dec.get().is_some(),
        }
    }

    /// Whether the fused encoder kernel runs this model's encoder on `gpu`.
    pub(super) fn fused_encoder_fits(&self, gpu: &Gpu) -> bool {
        encoder_fits(gpu, &self.cfg).unwrap_or(false)
    }

    /// The fused encoder's blob (packed and uploaded on first use).
    pub(super) fn encoder_blob(&self, gpu: &Gpu) -> Result<&EncoderBlob> {
        once(&self.copies.enc_blob, || {
            build_enc_blob(gpu, &self.file, &self.cfg)
        })
    }

    /// The fused decoder's blob (packed and uploaded on first use), or `None` when the fused
    /// decoder does not run this architecture.
    pub(super) fn decoder_blob(&self, gpu: &Gpu) -> Result<Option<&DecoderBlob>> {
        let Some(dims) = &self.dec_dims else {
            return Ok(None);
        };
        once(&self.copies.dec_blob, || {
            build_dec_blob(gpu, &self.file, &self.cfg, dims)
        })
        .map(Some)
    }

    /// The per-op encoder's weights (uploaded on first use).
    pub(super) fn per_op_encoder(&self, gpu: &Gpu) -> Result<&PerOpEncoder> {
        once(&self.copies.per_op_enc, || {
            build_per_op_enc(gpu, &self.file, &self.cfg)
        })
    }

    /// The per-op decoder's recurrent weights (uploaded on first use).
    pub(super) fn per_op_decoder(&self, gpu: &Gpu) -> Result<&PerOpDecoder> {
        once(&self.copies.per_op_dec, || {
            build_per_op_dec(gpu, &self.file, &self.cfg)
        })
    }
}
