//! A post-LN block's output projection in one dispatch: `out = LayerNorm(x @ w^T + bias +
//! residual)`, the unrolled kernel with the LayerNorm as its store (`unrolled.rs`,
//! `norm_epilogue`), where the tuning table fuses it ([`LinearNorm`]); elsewhere the linear into a
//! scratch tensor and then `add_layer_norm`, as before.
//!
//! One workgroup holds whole rows (its invocations' columns cover N), so the row statistics are a
//! reduction through workgroup memory and the normalized values are stored from registers: no
//! `[R, N]` round trip and one dispatch fewer per block. Every weight is read once per workgroup
//! of rows, so the form is for few rows (a decoder step at small batch), where the dispatch it
//! saves is most of the block's time on CPU adapters.

use super::kernels::{record_unrolled_form, NormArgs};
use super::linear_problem;
use crate::error::{Error, Result};
use crate::gpu::{LinearNorm, Recorder};
use crate::kernels::check_dtype;
use crate::kernels::layer_norm::record_add_layer_norm;
use crate::tensor::{DType, Tensor};

const OP: &str = "linear_add_layer_norm";

/// The residual and LayerNorm that follow a linear in a post-LN block (BERT, Marian).
#[derive(Clone, Copy, Debug)]
pub struct ResidualNorm<'a> {
    /// Added to the linear's output before the norm: `[*, N]` f32, the output's shape.
    pub residual: &'a Tensor,
    /// The norm's weight `[N]` f32 or f16.
    pub weight: &'a Tensor,
    /// The norm's bias `[N]` f32 or f16.
    pub bias: &'a Tensor,
    /// The norm's epsilon (finite, >= 0).
    pub eps: f32,
}

/// Whether [`record_linear_add_layer_norm_with`] fuses the linear and the norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormFusion {
    /// The tuning table's choice ([`MatmulTuning::linear_norm`](crate::gpu::MatmulTuning::linear_norm)).
    Auto,
    /// One dispatch (an error where N is too wide for one workgroup's columns).
    Fused,
    /// The linear into `scratch`, then `add_layer_norm`.
    Separate,
}

/// Records `out = LayerNorm(x @ w^T + bias + residual)` as the tuning table chooses: `x [*, K]`
/// f32, `w [N, K]` f32 or f16, `bias [N]`, `out` and `scratch` `[*, N]` f32 (`scratch` holds the
/// linear's output when the two run separately).
pub fn record_linear_add_layer_norm(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    norm: &ResidualNorm,
    scratch: &Tensor,
    out: &Tensor,
) -> Result<()> {
    record_linear_add_layer_norm_with(rec, x, w, bias, norm, scratch, out, NormFusion::Auto)
}

/// [`record_linear_add_layer_norm`] with the fusion chosen.
#[allow(clippy::too_many_arguments)]
pub fn record_linear_add_layer_norm_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    norm: &ResidualNorm,
    scratch: &Tensor,
    out: &Tensor,
    fusion: NormFusion,
) -> Result<()> {
    let p = linear_problem(x, w, bias, out)?;
    let p = super::Problem { op: OP, ..p };
    super::check_u32_operands(&p)?;
    check_norm_operands(norm, scratch, x, out, p.n)?;
    let gpu = rec.gpu().clone();
    // The unrolled kernel's workgroups go up to 256 invocations.
    let max_wg = gpu.caps().max_invocations.min(256);
    let tile = match fusion {
        NormFusion::Auto => gpu
            .tuning()
            .matmul
            .linear_norm
            .and_then(|rule| rule.tile(p.m, p.k, p.n, max_wg)),
        NormFusion::Fused => Some(
            gpu.tuning()
                .matmul
                .linear_norm
                .unwrap_or(LinearNorm::PORTABLE)
                .tile_any_rows(p.m, p.n, max_wg)
                .ok_or_else(|| {
                    Error::invalid(
                        OP,
                        format!(
                            "N = {} is too wide for one workgroup's columns on this device \
                             ({max_wg} invocations)",
                            p.n
                        ),
                    )
                })?,
        ),
        NormFusion::Separate => None,
    };
    if p.m == 0 || p.n == 0 {
        return Ok(());
    }
    match tile {
        Some(tile) => {
            let args = NormArgs {
                residual: norm.residual,
                weight: norm.weight,
                bias: norm.bias,
                eps: norm.eps,
            };
            record_unrolled_form(rec, &p, tile, Some(args))
        }
        None => {
            super::record_linear(rec, x, w, bias, scratch)?;
            record_add_layer_norm(
                rec,
                scratch,
                norm.residual,
                norm.weight,
                norm.bias,
                out,
                norm.eps,
            )
        }
    }
}

/// The norm's operands and the scratch tensor against the linear's output `out` (`[*, N]`).
fn check_norm_operands(
    norm: &ResidualNorm,
    scratch: &Tensor,
    x: &Tensor,
    out: &Tensor,
    n: usize,
) -> Result<()> {
    check_dtype(OP, "residual", norm.residual, &[DType::F32])?;
    check_dtype(OP, "scratch", scratch, &[DType::F32])?;
    check_dtype(OP, "norm weight", norm.weight, &[DType::F32, DType::F16])?;
    check_dtype(OP, "norm bias", norm.bias, &[DType::F32, DType::F16])?;
    for (name, t) in [("residual", norm.residual), ("scratch", scratch)] {
        if t.shape() != out.shape() {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} {:?} does not match the output {:?}",
                    t.shape(),
                    out.shape()
                ),
            ));
        }
    }
    for (name, t) in [("norm weight", norm.weight), ("norm bias", norm.bias)] {
        if t.shape() != [n] {
            return Err(Error::shape(
                OP,
                format!("{name} {:?} must be [N] = [{n}]", t.shape()),
            ));
        }
    }
    for (name, t) in [("x", x), ("residual", norm.residual), ("scratch", scratch)] {
        if t.buffer() == out.buffer() {
            return Err(Error::invalid(
                OP,
                format!("out shares its buffer with {name}; write the result to another tensor"),
            ));
        }
    }
    if !(norm.eps.is_finite() && norm.eps >= 0.0) {
        return Err(Error::invalid(
            OP,
            format!("eps {} must be finite and >= 0", norm.eps),
        ));
    }
    Ok(())
}
