//! Row-wise and lookup ops: softmax, embedding (layer norm's eager op lives in its kernel unit).
//!
//! ```no_run
//! use heedful::{ops, Gpu, Tensor};
//! let gpu = Gpu::shared()?;
//! let x = Tensor::from_f32(&gpu, &[0.0, f32::NEG_INFINITY, 0.0], &[1, 3])?;
//! assert_eq!(ops::softmax(&gpu, &x)?.to_vec_f32(&gpu)?, vec![0.5, 0.0, 0.5]);
//! let table = Tensor::from_f32_as_f16(&gpu, &[1.0, 2.0, 3.0, 4.0], &[2, 2])?; // [V=2, D=2]
//! let rows = ops::embedding_ids(&gpu, &[1, 0], &[2], &table)?;
//! assert_eq!(rows.to_vec_f32(&gpu)?, vec![3.0, 4.0, 1.0, 2.0]);
//! # Ok::<(), heedful::Error>(())
//! ```

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::op::eager1;
use crate::kernels::{embedding, softmax};
use crate::ops::run;
use crate::tensor::{numel, DType, Tensor};

pub use crate::kernels::softmax::RowSchedule;

/// Softmax over the last dim of x `[*, N]` f32 (a scalar counts as `[1]`), as `torch.softmax(x, -1)`.
///
/// Computed with a running max in f32, so large logits (up to +-3e38) do not overflow. `-inf`
/// entries get probability 0, and a row that is entirely `-inf` yields **all zeros** (PyTorch gives
/// NaN there; zeros are what a fully masked attention row should contribute).
pub fn softmax(gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
    eager1(gpu, &softmax::Softmax, &[x])
}

/// Embedding lookup of GPU ids `[*]` (i32 or u32) in weight `[V, D]` (f32 or f16): out `[*, D]` f32.
///
/// The GPU cannot raise an error, so an id outside `[0, V)` (a negative i32 included) yields a row of
/// **zeros**. Use [`embedding_ids`] to have ids checked on the CPU instead.
pub fn embedding(gpu: &Gpu, ids: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let d = match weight.shape() {
        &[_, d] => d,
        s => {
            return Err(Error::shape(
                "embedding",
                format!("weight {s:?} must be [V, D]"),
            ))
        }
    };
    let mut shape = ids.shape().to_vec();
    shape.push(d);
    let out = Tensor::zeros(gpu, &shape, DType::F32)?;
    run(gpu, |rec| {
        embedding::record_embedding(rec, ids, weight, &out)
    })?;
    Ok(out)
}

/// Embedding lookup of host ids of `shape` (i64, as PyTorch holds them) in weight `[V, D]`.
///
/// Every id is checked on the CPU before anything is uploaded: the first id outside `[0, V)` is an
/// [`Error::Invalid`] naming the id, its position and V.
pub fn embedding_ids(gpu: &Gpu, ids: &[i64], shape: &[usize], weight: &Tensor) -> Result<Tensor> {
    let v = match weight.shape() {
        &[v, _] => v,
        s => {
            return Err(Error::shape(
                "embedding",
                format!("weight {s:?} must be [V, D]"),
            ))
        }
    };
    if numel(shape)? != ids.len() {
        return Err(Error::shape(
            "embedding",
            format!("{} ids given for ids shape {shape:?}", ids.len()),
        ));
    }
    let mut host = Vec::with_capacity(ids.len());
    for (pos, &id) in ids.iter().enumerate() {
        match u32::try_from(id) {
            Ok(u) if (u as usize) < v => host.push(u),
            _ => {
                return Err(Error::invalid(
                    "embedding",
                    format!(
                        "id {id} at position {pos} (index {:?} of ids {shape:?}) is outside [0, V) \
                         for weight {:?} (V = {v})",
                        unravel(pos, shape),
                        weight.shape()
                    ),
                ))
            }
        }
    }
    let ids_t = Tensor::from_u32(gpu, &host, shape)?;
    embedding(gpu, &ids_t, weight)
}

/// The multi-index of flat position `pos` in `shape` (row-major).
fn unravel(mut pos: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = pos % d;
            pos /= d;
        }
    }
    idx
}
