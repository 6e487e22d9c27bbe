//! Multi-head attention with `nn.MultiheadAttention(batch_first=True)` semantics and weight names.
//!
//! In-projection (one fused `[*, 3E]` linear for self-attention, three for cross-attention), the
//! flash kernel reading the heads straight out of the projections through strided views (no
//! transposes), and the out-projection. Weights are f32 or f16.
//!
//! ```no_run
//! use heedful::{ops, Gpu, Tensor};
//! let gpu = Gpu::shared()?;
//! let (b, t, e) = (1, 4, 8);
//! let x = Tensor::from_f32(&gpu, &vec![0.1; b * t * e], &[b, t, e])?;
//! let w_in = Tensor::from_f32_as_f16(&gpu, &vec![0.01; 3 * e * e], &[3 * e, e])?;
//! let b_in = Tensor::from_f32(&gpu, &vec![0.0; 3 * e], &[3 * e])?;
//! let w_out = Tensor::from_f32_as_f16(&gpu, &vec![0.01; e * e], &[e, e])?;
//! let b_out = Tensor::from_f32(&gpu, &vec![0.0; e], &[e])?;
//! let w = ops::MhaWeights { in_proj_weight: &w_in, in_proj_bias: Some(&b_in),
//!     out_proj_weight: &w_out, out_proj_bias: Some(&b_out) };
//! let out = ops::mha(&gpu, &x, &x, &x, &w, 2, &ops::MhaOptions { need_weights: true, ..Default::default() })?;
//! assert_eq!(out.attn_weights.unwrap().shape(), &[1, 4, 4]);
//! # Ok::<(), heedful::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::kernels::attention_probs::record_attention_probs;
use crate::kernels::matmul::record_linear;
use crate::kernels::sdpa::{record_sdpa, AttnDims, Causal, Heads, MaskKind, MaskView, SdpaArgs};
use crate::ops::run;
use crate::tensor::{DType, Tensor};

/// Weights of `nn.MultiheadAttention` (PyTorch `state_dict` names).
#[derive(Clone, Copy, Debug)]
pub struct MhaWeights<'a> {
    /// `in_proj_weight [3E, E]`: rows 0..E project the query, E..2E the key, 2E..3E the value.
    pub in_proj_weight: &'a Tensor,
    /// `in_proj_bias [3E]`.
    pub in_proj_bias: Option<&'a Tensor>,
    /// `out_proj.weight [E, E]`.
    pub out_proj_weight: &'a Tensor,
    /// `out_proj.bias [E]`.
    pub out_proj_bias: Option<&'a Tensor>,
}

/// Options of [`mha`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MhaOptions<'a> {
    /// `key_padding_mask [B, Tk]` u32: non-zero = ignore that key (PyTorch's bool convention).
    pub key_padding_mask: Option<&'a Tensor>,
    /// Causal masking of the scores (`is_causal` / a causal `attn_mask`).
    pub causal: Causal,
    /// Also return the attention weights averaged over heads (`need_weights=True`).
    pub need_weights: bool,
}

/// Result of [`mha`].
#[derive(Clone, Debug)]
pub struct MhaOutput {
    /// `[B, Tq, E]`.
    pub y: Tensor,
    /// `[B, Tq, Tk]`, averaged over heads, when asked for.
    pub attn_weights: Option<Tensor>,
}

/// Rows `r0..r0+n` of a `[R, C]` (or `[R]`) tensor as a new tensor, by a buffer copy; `None`
/// when the byte offsets are not 4-aligned (f16 with an odd row count).
fn rows(gpu: &Gpu, rec: &mut Recorder, t: &Tensor, r0: usize, n: usize) -> Result<Option<Tensor>> {
    let row: usize = t.shape()[1..].iter().product();
    let bytes = |r: usize| (r * row * t.dtype().size()) as u64;
    if bytes(r0) % 4 != 0 || bytes(n) % 4 != 0 {
        return Ok(None);
    }
    let mut shape = t.shape().to_vec();
    shape[0] = n;
    let out = Tensor::zeros(gpu, &shape, t.dtype())?;
    rec.copy(t.buffer(), bytes(r0), out.buffer(), 0, bytes(n));
    Ok(Some(out))
}

/// `nn.MultiheadAttention(embed_dim=E, num_heads, batch_first=True)` forward: query `[B, Tq, E]`,
/// key `[B, Tk, E]`, value `[B, Tk, E]`. With `need_weights`, the weights are averaged over heads
/// (`average_attn_weights=True`) and computed by a separate pass. Query rows whose keys are all
/// padded give zeros before the out-projection (PyTorch gives NaN).
pub fn mha(
    gpu: &Gpu,
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    w: &MhaWeights,
    num_heads: usize,
    opts: &MhaOptions,
) -> Result<MhaOutput> {
    const OP: &str = "mha";
    let (qs, ks, vs) = (query.shape(), key.shape(), value.shape());
    if qs.len() != 3 || ks.len() != 3 || vs != ks || ks[0] != qs[0] || ks[2] != qs[2] {
        return Err(Error::shape(
            OP,
            format!("query {qs:?}, key {ks:?}, value {vs:?}: expected [B, Tq, E], [B, Tk, E], [B, Tk, E]"),
        ));
    }
    let (b, tq, tk, e) = (qs[0], qs[1], ks[1], qs[2]);
    if num_heads == 0 || e % num_heads != 0 {
        return Err(Error::shape(
            OP,
            format!("embed dim {e} is not divisible by num_heads {num_heads}"),
        ));
    }
    let dh = e / num_heads;
    if w.in_proj_weight.shape() != [3 * e, e] || w.out_proj_weight.shape() != [e, e] {
        return Err(Error::shape(
            OP,
            format!(
                "in_proj_weight {:?} must be [{}, {e}] and out_proj.weight {:?} [{e}, {e}]",
                w.in_proj_weight.shape(),
                3 * e,
                w.out_proj_weight.shape()
            ),
        ));
    }
    if let Some(bias) = w.in_proj_bias {
        if bias.shape() != [3 * e] {
            return Err(Error::shape(
                OP,
                format!("in_proj_bias {:?} must be [{}]", bias.shape(), 3 * e),
            ));
        }
    }
    let dims = AttnDims {
        b,
        h: num_heads,
        tq,
        tk,
        d: dh,
        dv: dh,
    };
    let mask = opts
        .key_padding_mask
        .map(|m| MaskView::per_key(OP, m, MaskKind::Ignore, b, tk))
        .transpose()?;
    let self_attn = query.buffer() == key.buffer() && key.buffer() == value.buffer() && qs == ks;
    let ctx = Tensor::zeros(gpu, &[b, tq, e], DType::F32)?;
    let y = Tensor::zeros(gpu, &[b, tq, e], DType::F32)?;
    let probs = if opts.need_weights {
        Some(Tensor::zeros(gpu, &[b, tq, tk], DType::F32)?)
    } else {
        None
    };
    let lse = Tensor::zeros(gpu, &[(b * num_heads * tq).max(1)], DType::F32)?;
    run(gpu, |rec| {
        // Projections: (tensor, row width, column of the first head) for q, k, v.
        let mut keep = Vec::new();
        let views: [(Tensor, usize, usize); 3] = if self_attn {
            let qkv = Tensor::zeros(gpu, &[b, tq, 3 * e], DType::F32)?;
            record_linear(rec, query, w.in_proj_weight, w.in_proj_bias, &qkv)?;
            [
                (qkv.clone(), 3 * e, 0),
                (qkv.clone(), 3 * e, e),
                (qkv, 3 * e, 2 * e),
            ]
        } else {
            let mut out: Vec<(Tensor, usize, usize)> = Vec::new();
            for (i, x) in [query, key, value].into_iter().enumerate() {
                let t = x.shape()[1];
                let ws = rows(gpu, rec, w.in_proj_weight, i * e, e)?;
                let bs = match w.in_proj_bias {
                    Some(bias) => rows(gpu, rec, bias, i * e, e)?.map(Some),
                    None => Some(None),
                };
                match (ws, bs) {
                    (Some(ws), Some(bs)) => {
                        let p = Tensor::zeros(gpu, &[b, t, e], DType::F32)?;
                        record_linear(rec, x, &ws, bs.as_ref(), &p)?;
                        keep.push((ws, bs));
                        out.push((p, e, 0));
                    }
                    _ => {
                        // Unaligned f16 slices: project with all 3E rows and use this part.
                        let p = Tensor::zeros(gpu, &[b, t, 3 * e], DType::F32)?;
                        record_linear(rec, x, w.in_proj_weight, w.in_proj_bias, &p)?;
                        out.push((p, 3 * e, i * e));
                    }
                }
            }
            let mut it = out.into_iter();
            let (q, k, v) = (it.next(), it.next(), it.next());
            match (q, k, v) {
                (Some(q), Some(k), Some(v)) => [q, k, v],
                _ => return Err(Error::invalid(OP, "projection bookkeeping")),
            }
        };
        let [(qt, qw, qc), (kt, kw, kc), (vt, vw, vc)] = &views;
        let qh = Heads::interleaved(qt, tq, *qw, *qc, dh);
        let kh = Heads::interleaved(kt, tk, *kw, *kc, dh);
        let vh = Heads::interleaved(vt, tk, *vw, *vc, dh);
        let args = SdpaArgs {
            mask,
            causal: opts.causal,
            scale: None,
            plan: None,
            rows: None,
        };
        let oh = Heads::interleaved(&ctx, tq, e, 0, dh);
        record_sdpa(
            rec,
            &dims,
            qh,
            kh,
            vh,
            oh,
            &args,
            probs.as_ref().map(|_| &lse),
        )?;
        if let Some(p) = &probs {
            record_attention_probs(
                rec,
                &dims,
                qh,
                kh,
                &lse,
                mask.as_ref(),
                opts.causal,
                None,
                p,
                true,
            )?;
        }
        record_linear(rec, &ctx, w.out_proj_weight, w.out_proj_bias, &y)
    })?;
    Ok(MhaOutput {
        y,
        attn_weights: probs,
    })
}
