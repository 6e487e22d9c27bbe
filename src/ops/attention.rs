//! Attention ops: scaled dot-product attention ([`sdpa`], with weights on request
//! [`sdpa_with_weights`]), multi-head attention ([`mha`]) and the RNN-decoder attentions over
//! encoder memory ([`additive_attention`], [`dot_attention`], [`general_attention`]).
//!
//! ```no_run
//! use heedful::{ops, Gpu, Tensor};
//! let gpu = Gpu::shared()?;
//! let (b, h, t, d) = (1, 2, 5, 8);
//! let q = Tensor::from_f32(&gpu, &vec![0.1; b * h * t * d], &[b, h, t, d])?;
//! let opts = ops::SdpaOptions { causal: ops::Causal::TopLeft, ..Default::default() };
//! let y = ops::sdpa(&gpu, &q, &q, &q, &opts)?; // [1, 2, 5, 8]
//! assert_eq!(y.shape(), &[1, 2, 5, 8]);
//! # Ok::<(), heedful::Error>(())
//! ```
//!
//! Masks follow PyTorch: a boolean mask (u32 0/1 on the GPU) says which keys a query may attend
//! ([`MaskKind::Keep`]), an additive mask (f32) is added to the scores, and both broadcast to
//! `[B, H, Tq, Tk]`. A query row whose keys are all masked gives zeros (PyTorch gives NaN).

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::attention_probs::record_attention_probs;
use crate::kernels::memory_attention::{record_memory_attention, Score};
use crate::kernels::sdpa::{record_sdpa, AttnDims, Heads, MaskView, SdpaArgs};
use crate::ops::run;
use crate::tensor::{DType, Tensor};

pub use crate::kernels::sdpa::{Causal, MaskKind};

/// An attention mask and how to read it.
#[derive(Clone, Copy, Debug)]
pub struct AttnMask<'a> {
    /// u32 (bool 0/1) for [`MaskKind::Keep`] and [`MaskKind::Ignore`], f32 for [`MaskKind::Additive`].
    pub tensor: &'a Tensor,
    /// How the values are read.
    pub kind: MaskKind,
}

impl<'a> AttnMask<'a> {
    /// A boolean mask, non-zero = may attend (PyTorch's bool `attn_mask`).
    pub fn keep(tensor: &'a Tensor) -> Self {
        AttnMask {
            tensor,
            kind: MaskKind::Keep,
        }
    }

    /// An additive f32 mask (`-inf` masks a key out).
    pub fn additive(tensor: &'a Tensor) -> Self {
        AttnMask {
            tensor,
            kind: MaskKind::Additive,
        }
    }
}

/// Options of [`sdpa`]: PyTorch's `attn_mask`, `is_causal` and `scale`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SdpaOptions<'a> {
    /// Optional mask broadcastable to `[B, H, Tq, Tk]`.
    pub mask: Option<AttnMask<'a>>,
    /// Causal masking; [`Causal::TopLeft`] is PyTorch's `is_causal=True`.
    pub causal: Causal,
    /// Score scale; `None` = `1 / sqrt(D)`.
    pub scale: Option<f32>,
}

/// Validates q `[B,H,Tq,D]`, k `[B,H,Tk,D]`, v `[B,H,Tk,Dv]` and returns the dims.
fn sdpa_dims(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<AttnDims> {
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    if qs.len() != 4 || ks.len() != 4 || vs.len() != 4 {
        return Err(Error::shape(
            "sdpa",
            format!("q {qs:?}, k {ks:?}, v {vs:?} must all be 4-D [B, H, T, D]"),
        ));
    }
    if ks[..2] != qs[..2] || vs[..2] != qs[..2] || ks[3] != qs[3] || vs[2] != ks[2] {
        return Err(Error::shape(
            "sdpa",
            format!(
                "q {qs:?}, k {ks:?}, v {vs:?}: expected q [B,H,Tq,D], k [B,H,Tk,D], v [B,H,Tk,Dv]"
            ),
        ));
    }
    Ok(AttnDims {
        b: qs[0],
        h: qs[1],
        tq: qs[2],
        tk: ks[2],
        d: qs[3],
        dv: vs[3],
    })
}

fn mask_view<'a>(m: &AttnMask<'a>, dims: &AttnDims) -> Result<MaskView<'a>> {
    MaskView::broadcast("sdpa", m.tensor, m.kind, [dims.b, dims.h, dims.tq, dims.tk])
}

/// `F.scaled_dot_product_attention(q, k, v, attn_mask, is_causal, scale)`: y `[B, H, Tq, Dv]`.
///
/// Flash kernel: memory beyond q, k, v and y is O(B·H·Tq·Dv) at most (key-split partials), never
/// O(Tq·Tk). Fully masked rows give zeros.
pub fn sdpa(gpu: &Gpu, q: &Tensor, k: &Tensor, v: &Tensor, opts: &SdpaOptions) -> Result<Tensor> {
    let (dims, args, out) = sdpa_setup(gpu, q, k, v, opts)?;
    run(gpu, |rec| {
        record_sdpa(
            rec,
            &dims,
            Heads::dense(q),
            Heads::dense(k),
            Heads::dense(v),
            Heads::dense(&out),
            &args,
            None,
        )
    })?;
    Ok(out)
}

/// Dims, kernel arguments and the output `[B, H, Tq, Dv]` of an eager sdpa call.
fn sdpa_setup<'a>(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &'a SdpaOptions,
) -> Result<(AttnDims, SdpaArgs<'a>, Tensor)> {
    let dims = sdpa_dims(q, k, v)?;
    let mask = opts
        .mask
        .as_ref()
        .map(|m| mask_view(m, &dims))
        .transpose()?;
    let out = Tensor::zeros(gpu, &[dims.b, dims.h, dims.tq, dims.dv], DType::F32)?;
    let args = SdpaArgs {
        mask,
        causal: opts.causal,
        scale: opts.scale,
        plan: None,
        rows: None,
    };
    Ok((dims, args, out))
}

/// [`sdpa`] plus the attention weights `[B, H, Tq, Tk]` (`need_weights`), from a separate pass.
pub fn sdpa_with_weights(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &SdpaOptions,
) -> Result<(Tensor, Tensor)> {
    let (dims, args, out) = sdpa_setup(gpu, q, k, v, opts)?;
    let probs = Tensor::zeros(gpu, &[dims.b, dims.h, dims.tq, dims.tk], DType::F32)?;
    let lse = Tensor::zeros(gpu, &[dims.b * dims.h * dims.tq], DType::F32)?;
    run(gpu, |rec| {
        let (qh, kh) = (Heads::dense(q), Heads::dense(k));
        record_sdpa(
            rec,
            &dims,
            qh,
            kh,
            Heads::dense(v),
            Heads::dense(&out),
            &args,
            Some(&lse),
        )?;
        record_attention_probs(
            rec,
            &dims,
            qh,
            kh,
            &lse,
            args.mask.as_ref(),
            opts.causal,
            opts.scale,
            &probs,
            false,
        )
    })?;
    Ok((out, probs))
}

/// Weights of additive (Bahdanau) attention: `score_t = v . tanh(W_q q + W_k k_t + b)`.
#[derive(Clone, Copy, Debug)]
pub struct AdditiveWeights<'a> {
    /// `W_q [A, Dq]`, f32 or f16.
    pub w_q: &'a Tensor,
    /// `W_k [A, Dk]`, f32 or f16.
    pub w_k: &'a Tensor,
    /// `v [A]`, f32 or f16.
    pub v: &'a Tensor,
    /// `b [A]`, f32 or f16.
    pub b: &'a Tensor,
}

/// The once-per-sequence part of additive attention: `keys W_k^T`, `[B, T, A]`. Pass it to every
/// [`additive_attention_step`] of the decoder.
pub fn additive_attention_keys(gpu: &Gpu, keys: &Tensor, w_k: &Tensor) -> Result<Tensor> {
    let ks = keys.shape();
    let a = w_k.shape().first().copied().unwrap_or(0);
    if ks.len() != 3 {
        return Err(Error::shape(
            "additive_attention",
            format!("keys {ks:?} must be [B, T, Dk]"),
        ));
    }
    let out = Tensor::zeros(gpu, &[ks[0], ks[1], a], DType::F32)?;
    run(gpu, |rec| {
        crate::kernels::memory_attention::record_project(rec, keys, w_k, &out)
    })?;
    Ok(out)
}

fn memory_outputs(gpu: &Gpu, keys: &Tensor, dv: usize) -> Result<(Tensor, Tensor)> {
    let ks = keys.shape();
    let (b, t) = (
        ks.first().copied().unwrap_or(0),
        ks.get(1).copied().unwrap_or(0),
    );
    Ok((
        Tensor::zeros(gpu, &[b, dv], DType::F32)?,
        Tensor::zeros(gpu, &[b, t], DType::F32)?,
    ))
}

/// One decoder step of additive attention with the keys already projected
/// ([`additive_attention_keys`]): returns (context `[B, Dk]`, weights `[B, T]`).
/// query `[B, Dq]`, keys `[B, T, Dk]`, mask `[B, T]` u32 (non-zero = valid).
pub fn additive_attention_step(
    gpu: &Gpu,
    query: &Tensor,
    keys: &Tensor,
    keys_proj: &Tensor,
    w: &AdditiveWeights,
    mask: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let score = Score::Additive {
        w_q: w.w_q,
        v: w.v,
        b: w.b,
        keys_proj,
    };
    let a = w.w_q.shape().first().copied().unwrap_or(0);
    memory_attention(gpu, score, query, keys, keys, mask, a)
}

/// Allocates the context, weights and `[B, scratch_cols]` scratch of a memory-attention step and
/// runs it: the shared body of the additive, dot and general ops.
#[allow(clippy::too_many_arguments)]
fn memory_attention(
    gpu: &Gpu,
    score: Score,
    query: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    mask: Option<&Tensor>,
    scratch_cols: usize,
) -> Result<(Tensor, Tensor)> {
    let dv = values.shape().last().copied().unwrap_or(0);
    let (ctx, weights) = memory_outputs(gpu, keys, dv)?;
    let rows = query.shape().first().copied().unwrap_or(0);
    let scratch = Tensor::zeros(gpu, &[rows.max(1), scratch_cols.max(4)], DType::F32)?;
    run(gpu, |rec| {
        record_memory_attention(
            rec, score, query, keys, values, mask, &ctx, &weights, &scratch,
        )
    })?;
    Ok((ctx, weights))
}

/// Additive (Bahdanau) attention: `score_t = v . tanh(W_q q + W_k k_t + b)`,
/// `weights = softmax_t(score)` over valid keys, `context = sum_t weights_t k_t`.
/// query `[B, Dq]`, keys `[B, T, Dk]`, mask `[B, T]` u32 (non-zero = valid). Returns (context
/// `[B, Dk]`, weights `[B, T]`). A decoder calls [`additive_attention_keys`] once per sequence and
/// [`additive_attention_step`] per step instead.
pub fn additive_attention(
    gpu: &Gpu,
    query: &Tensor,
    keys: &Tensor,
    w: &AdditiveWeights,
    mask: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let kp = additive_attention_keys(gpu, keys, w.w_k)?;
    additive_attention_step(gpu, query, keys, &kp, w, mask)
}

/// Luong dot attention: `score_t = q . k_t`; query `[B, D]`, keys `[B, T, D]`, values
/// `[B, T, Dv]`, mask `[B, T]` u32 (non-zero = valid). Returns (context `[B, Dv]`, weights `[B, T]`).
pub fn dot_attention(
    gpu: &Gpu,
    query: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    mask: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    memory_attention(gpu, Score::Dot, query, keys, values, mask, 0)
}

/// Luong general attention: `score_t = q . (W k_t)` with `W [Dq, Dk]` (f32 or f16), computed as
/// `(W^T q) . k_t` (one GEMV per step instead of one per key). query `[B, Dq]`, keys `[B, T, Dk]`,
/// values `[B, T, Dv]`, mask `[B, T]` u32. Returns (context `[B, Dv]`, weights `[B, T]`).
pub fn general_attention(
    gpu: &Gpu,
    query: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    w: &Tensor,
    mask: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let dk = keys.shape().last().copied().unwrap_or(0);
    memory_attention(gpu, Score::General { w }, query, keys, values, mask, dk)
}
