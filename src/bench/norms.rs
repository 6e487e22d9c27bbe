//! The `norms` suite: softmax and layer norm over the last dim, memory-bound.
//!
//! Bytes counted are the minimum traffic (each input element read once, each output written once,
//! plus the weights for layer norm); the kernels read each row twice (statistics, then output), so a
//! share of the copy bandwidth near 100% means the second read hit the cache.

use crate::bench::{BenchCtx, Bound};
use crate::error::Result;
use crate::gpu::Recorder;
use crate::kernels::{layer_norm, softmax};
use crate::tensor::{DType, Tensor};

/// Deterministic values in [-4, 4).
fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 2654435761) % 1000) as f32 / 125.0 - 4.0)
        .collect()
}

/// Softmax rows x N: attention scores (8 heads x 512 queries over 512 keys), a long row, a vocabulary.
const SOFTMAX: [(usize, usize); 4] = [(4096, 128), (4096, 512), (1024, 4096), (64, 30522)];
/// Layer norm rows x D: MiniLM and BERT-base widths at 32 x 128 tokens, a wide model.
const LAYER_NORM: [(usize, usize); 3] = [(4096, 384), (4096, 768), (1024, 4096)];

/// Runs the suite.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    let gpu = ctx.gpu.clone();
    for (rows, n) in SOFTMAX {
        let shape = format!("{rows}x{n}");
        if !ctx.wants("softmax", &shape) {
            continue;
        }
        let x = Tensor::from_f32(&gpu, &values(rows * n), &[rows, n])?;
        let y = Tensor::zeros(&gpu, &[rows, n], DType::F32)?;
        let mut rec = Recorder::new(&gpu);
        softmax::record_softmax(&mut rec, &x, &y)?;
        let t = ctx.time_against(&rec, Bound::Memory)?;
        let bytes = 2.0 * (rows * n * 4) as f64;
        ctx.push_memory(
            "softmax",
            &shape,
            "f32",
            t,
            bytes,
            vec![("bytes".into(), "x read + y written once".into())],
        );
    }
    for (rows, d) in LAYER_NORM {
        let shape = format!("{rows}x{d}");
        if !ctx.wants("layer_norm", &shape) {
            continue;
        }
        let x = Tensor::from_f32(&gpu, &values(rows * d), &[rows, d])?;
        let w = Tensor::from_f32_as_f16(&gpu, &vec![1.0; d], &[d])?;
        let b = Tensor::from_f32_as_f16(&gpu, &vec![0.0; d], &[d])?;
        let y = Tensor::zeros(&gpu, &[rows, d], DType::F32)?;
        let mut rec = Recorder::new(&gpu);
        layer_norm::record_layer_norm(&mut rec, &x, &w, &b, &y, 1e-12)?;
        let t = ctx.time_against(&rec, Bound::Memory)?;
        let bytes = 2.0 * (rows * d * 4) as f64 + (2 * d * 2) as f64;
        ctx.push_memory(
            "layer_norm",
            &shape,
            "f32 x f16",
            t,
            bytes,
            vec![("bytes".into(), "x read + y written once".into())],
        );
    }
    Ok(())
}
