//! Eager layout and pooling ops.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{layout, pooling};
use crate::ops::run;
use crate::tensor::{DType, Tensor};

/// `x.transpose(1, 2)` of a 4-D tensor: `[A, B, C, D] -> [A, C, B, D]`.
pub fn transpose12(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    let [a, b, c, d] = *x.shape() else {
        return Err(Error::shape(
            "transpose12",
            format!("x must be 4-D, got {:?}", x.shape()),
        ));
    };
    let out = Tensor::zeros(gpu, &[a, c, b, d], DType::F32)?;
    run(gpu, |rec| layout::record_transpose12(rec, x, &out))?;
    Ok(out)
}

/// Masked mean over tokens, L2-normalized when `normalize`: x `[B, T, E]`, mask `[B, T]` i32
/// (1 = token) -> `[B, E]`.
pub fn mean_pool(gpu: &Gpu, x: &Tensor, mask: &Tensor, normalize: bool) -> Result<Tensor> {
    let [b, _, e] = *x.shape() else {
        return Err(Error::shape(
            "mean_pool",
            format!("x must be [B, T, E], got {:?}", x.shape()),
        ));
    };
    let out = Tensor::zeros(gpu, &[b, e], DType::F32)?;
    run(gpu, |rec| {
        pooling::record_mean_pool(rec, x, mask, &out, normalize)
    })?;
    Ok(out)
}
