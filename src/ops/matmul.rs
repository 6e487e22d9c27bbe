//! Eager matrix products: [`matmul`], [`matmul_bt`], [`linear`] (and `_with` forms that force a
//! kernel, for tests and benchmarks).

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::matmul::{self as k, MatmulKernel};
use crate::ops::run;
use crate::tensor::{DType, Tensor};

/// Output shape `[*a_batch, M, N]` of a product, or an empty shape when the operands are malformed
/// (the kernel's validation then reports the error with the real shapes).
fn product_shape(a: &Tensor, b: &Tensor, bt: bool) -> Vec<usize> {
    let (as_, bs) = (a.shape(), b.shape());
    if as_.len() < 2 || bs.len() < 2 {
        return vec![0];
    }
    let n = if bt {
        bs[bs.len() - 2]
    } else {
        bs[bs.len() - 1]
    };
    let mut s = as_[..as_.len() - 1].to_vec();
    s.push(n);
    s
}

/// `a @ b` (`torch.matmul`): `a [*, M, K]` f32, `b [*, K, N]` or `[K, N]` f32/f16 -> `[*, M, N]`.
pub fn matmul(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_with(gpu, a, b, MatmulKernel::Auto)
}

/// [`matmul`] with a chosen kernel.
pub fn matmul_with(gpu: &Gpu, a: &Tensor, b: &Tensor, kernel: MatmulKernel) -> Result<Tensor> {
    let out = Tensor::zeros(gpu, &product_shape(a, b, false), DType::F32)?;
    run(gpu, |rec| k::record_matmul_with(rec, a, b, &out, kernel))?;
    Ok(out)
}

/// `alpha * a @ b^T`: `a [*, M, K]` f32, `b [*, N, K]` or `[N, K]` f32/f16 -> `[*, M, N]`.
pub fn matmul_bt(gpu: &Gpu, a: &Tensor, b: &Tensor, alpha: f32) -> Result<Tensor> {
    matmul_bt_with(gpu, a, b, alpha, MatmulKernel::Auto)
}

/// [`matmul_bt`] with a chosen kernel.
pub fn matmul_bt_with(
    gpu: &Gpu,
    a: &Tensor,
    b: &Tensor,
    alpha: f32,
    kernel: MatmulKernel,
) -> Result<Tensor> {
    let out = Tensor::zeros(gpu, &product_shape(a, b, true), DType::F32)?;
    run(gpu, |rec| {
        k::record_matmul_bt_with(rec, a, b, &out, alpha, kernel)
    })?;
    Ok(out)
}

/// `x @ w^T + bias` (`nn.Linear`): `x [*, K]` f32, `w [N, K]` f32/f16, `bias [N]` -> `[*, N]`.
pub fn linear(gpu: &Gpu, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    linear_with(gpu, x, w, bias, MatmulKernel::Auto)
}

/// A linear's output `[*, N]` for `x [*, K]` and `w [N, K]` (`[0]` when the shapes are not those of
/// a linear: the record call then names the problem).
fn linear_out(gpu: &Gpu, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    match (shape.last_mut(), w.shape().first()) {
        (Some(last), Some(&n)) if w.shape().len() == 2 => *last = n,
        _ => shape = vec![0],
    }
    Tensor::zeros(gpu, &shape, DType::F32)
}

/// `act(x @ w^T + bias)` in one dispatch (the activation applied in the product's store); shapes
/// as [`linear`].
pub fn linear_act_with(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: crate::ops::Activation,
    kernel: MatmulKernel,
) -> Result<Tensor> {
    let out = linear_out(gpu, x, w)?;
    run(gpu, |rec| {
        k::record_linear_act_with(rec, x, w, bias, act, &out, kernel)
    })?;
    Ok(out)
}

/// [`linear`] with a chosen kernel.
pub fn linear_with(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    kernel: MatmulKernel,
) -> Result<Tensor> {
    let out = linear_out(gpu, x, w)?;
    run(gpu, |rec| {
        k::record_linear_with(rec, x, w, bias, &out, kernel)
    })?;
    Ok(out)
}

/// `LayerNorm(x @ w^T + bias + residual)` (a post-LN block's output projection, residual and
/// norm), in one dispatch where the tuning table fuses them; shapes as [`linear`], the residual
/// `[*, N]` and the norm's weight and bias `[N]`.
pub fn linear_add_layer_norm(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    norm: &k::ResidualNorm,
) -> Result<Tensor> {
    linear_add_layer_norm_with(gpu, x, w, bias, norm, k::NormFusion::Auto)
}

/// [`linear_add_layer_norm`], fused into one dispatch or not as `fusion` says.
pub fn linear_add_layer_norm_with(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    norm: &k::ResidualNorm,
    fusion: k::NormFusion,
) -> Result<Tensor> {
    let out = linear_out(gpu, x, w)?;
    let scratch = linear_out(gpu, x, w)?;
    run(gpu, |rec| {
        k::record_linear_add_layer_norm_with(rec, x, w, bias, norm, &scratch, &out, fusion)
    })?;
    Ok(out)
}
