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
    };
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

/// [`sdpa`] plus the attention weights `[B, H, Tq, Tk]` (`need_weights`), from a separate pass.
pub fn sdpa_with_weights(
    gpu: &Gpu,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    opts: &SdpaOptions,
) -> Result<(Tensor, Tensor)> {
    let dims = sdpa_dims(q, k, v)?;
    let mask = opts
        .mask
        .as_ref()
        .map(|m| mask_view(m, &dims))
        .transpose()?;
    let out = Tensor::zeros(gpu, &[dims.b, dims.h, dims.tq, dims.dv], DType::F32)?;
    let probs = Tensor::zeros(gpu, &[dims.b, dims.h, dims.tq, dims.tk], DType::F32)?;
    let lse = Tensor::zeros(gpu, &[dims.b * dims.h * dims.tq], DType::F32)?;
    let args = SdpaArgs {
        mask,
        causal: opts.causal,
        scale: opts.scale,
        plan: None,
    };
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
            mask.as_ref(),
            opts.causal,
            opts.scale,
            &probs,
            false,
        )
    })?;
    Ok((out, probs))
}
