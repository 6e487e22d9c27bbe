//! Attention weights on request (`shaders/attention_probs.wgsl`): the softmax probabilities of
//! scaled dot-product attention, `[B, H, Tq, Tk]`, or their mean over heads `[B, Tq, Tk]`
//! (`nn.MultiheadAttention`'s `average_attn_weights=True`).
//!
//! A separate pass after [`crate::kernels::sdpa::record_sdpa`] with `lse`: the flash kernel writes
//! one log-sum-exp per row, and this pass recomputes each score and writes `exp(score - lse)`.
//! The fast path pays nothing (one unused uniform flag) when nobody asks for the weights.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings};
use crate::gpu::Elem;
use crate::gpu::Recorder;
use crate::kernels::check_dtype;
use crate::kernels::sdpa::{
    base_params, check_dims, check_mask, qkv_pipeline, tuning, AttnDims, Causal, Heads, MaskView,
};
use crate::tensor::{DType, Tensor};

crate::wgsl_bindings! {
    /// Storage bindings in `@binding` order: the q and k views (f32), the per-row log-sum-exp
    /// `[B*H*Tq]` f32 from the sdpa pass, the mask (u32; a dummy when unmasked), out
    /// `[B, H, Tq, Tk]` (or `[B, Tq, Tk]` averaged over heads) f32.
    struct ProbsBindings { q, k, lse, mask, out }
}

const SRC: &str = include_str!("../../shaders/attention_probs.wgsl");

/// Records `out[b, h, i, j] = softmax_j(q_i . k_j * scale + mask)` from the row log-sum-exps `lse`
/// (`[B*H*Tq]`, from [`crate::kernels::sdpa::record_sdpa`] with the same q, k, mask, causal and
/// scale). `out` is `[B, H, Tq, Tk]`, or `[B, Tq, Tk]` with `average_heads`.
#[allow(clippy::too_many_arguments)]
pub fn record_attention_probs(
    rec: &mut Recorder,
    dims: &AttnDims,
    q: Heads,
    k: Heads,
    lse: &Tensor,
    mask: Option<&MaskView>,
    causal: Causal,
    scale: Option<f32>,
    out: &Tensor,
    average_heads: bool,
) -> Result<()> {
    const OP: &str = "attention_probs";
    // The weights pass reads no v; Dv only has to be valid for the shared checks.
    let dims = AttnDims { dv: 1, ..*dims };
    check_dims(OP, &dims)?;
    let AttnDims {
        b, h, tq, tk, d, ..
    } = dims;
    q.check(OP, "q", [b, h, tq, d])?;
    k.check(OP, "k", [b, h, tk, d])?;
    if let Some(m) = mask {
        check_mask(OP, m, &dims)?;
    }
    check_dtype(OP, "lse", lse, &[DType::F32])?;
    check_dtype(OP, "out", out, &[DType::F32])?;
    if lse.numel() < b * h * tq {
        return Err(Error::shape(
            OP,
            format!(
                "lse {:?} must hold B*H*Tq = {} values",
                lse.shape(),
                b * h * tq
            ),
        ));
    }
    let want: Vec<usize> = if average_heads {
        vec![b, tq, tk]
    } else {
        vec![b, h, tq, tk]
    };
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            OP,
            format!("out {:?} must be {want:?}", out.shape()),
        ));
    }
    if out.numel() == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let tu = tuning(&gpu);
    let vec = d % 4 == 0 && q.aligned() && k.aligned();
    let scale = scale.unwrap_or(1.0 / (d as f32).sqrt());
    let mut p = base_params(&dims, &q, &k, mask, causal, scale);
    p.flags = average_heads as u32;
    let dummy;
    let mask_t = match mask {
        Some(m) => m.tensor,
        None => {
            dummy = Tensor::zeros(&gpu, &[4], DType::U32)?;
            &dummy
        }
    };
    let binds = ProbsBindings {
        q: Bind::input(q.tensor, Elem::F32, vec),
        k: Bind::input(k.tensor, Elem::F32, vec),
        lse: Bind::read(lse, "f32"),
        mask: Bind::read(mask_t, "u32"),
        out: Bind::read_write(out, "f32"),
    };
    let pipe = qkv_pipeline(
        &gpu,
        "attention_probs",
        SRC,
        &binds,
        &tu,
        &dims,
        vec,
        false,
        false,
        1,
        mask.is_some(),
    )?;
    let z = if average_heads { b } else { b * h };
    let disp = gpu.dispatch(
        "attention_probs",
        &pipe,
        bytemuck::bytes_of(&p),
        &binds.buffers(),
        [
            tk.div_ceil(tu.wg as usize) as u32,
            u32::try_from(tq).unwrap_or(u32::MAX),
            u32::try_from(z).unwrap_or(u32::MAX),
        ],
    )?;
    rec.push(disp);
    Ok(())
}
