//! Row-wise top-k with log-softmax values (`shaders/topk.wgsl`): the greedy argmax (k = 1) and the
//! beam's per-hypothesis candidates of a decoder step, on the GPU, so the chosen ids feed the next
//! step's embedding lookup without a readback.
//!
//! Shapes: logits `[R, V]` f32 -> ids `[R, K]` u32 (best first, ties to the lower index),
//! logp `[R, K]` f32 (`log_softmax(logits)` at those ids). K is 1..=16.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Recorder};
use crate::kernels::{check_dtype, grid_1d};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/topk.wgsl");
const WG: u32 = 64;

/// The largest K the kernel keeps per row.
pub const MAX_K: usize = 16;

crate::wgsl_params! {
    struct Params {
        rows: u32,
        v: u32,
        _pad: [u32; 2],
    }
}

crate::wgsl_bindings! {
    /// logits `[R, V]` f32, ids `[R, K]` u32, logp `[R, K]` f32.
    struct TopkBindings { logits, ids, logp }
}

/// Records the top-k of each row of `logits [R, V]` into `ids [R, K]` (u32) and `logp [R, K]`
/// (f32 log-softmax values). K is taken from `ids`' shape.
pub fn record_topk(rec: &mut Recorder, logits: &Tensor, ids: &Tensor, logp: &Tensor) -> Result<()> {
    const OP: &str = "topk";
    check_dtype(OP, "logits", logits, &[DType::F32])?;
    check_dtype(OP, "ids", ids, &[DType::U32])?;
    check_dtype(OP, "logp", logp, &[DType::F32])?;
    let &[r, v] = logits.shape() else {
        return Err(Error::shape(
            OP,
            format!("logits {:?} must be [R, V]", logits.shape()),
        ));
    };
    let k = match ids.shape() {
        &[rr, k] if rr == r && (1..=MAX_K).contains(&k) && k <= v => k,
        s => {
            return Err(Error::shape(
                OP,
                format!(
                    "ids {s:?} must be [R, K] = [{r}, K] with 1 <= K <= min(V, {MAX_K}) for logits {:?}",
                    logits.shape()
                ),
            ))
        }
    };
    if logp.shape() != ids.shape() {
        return Err(Error::shape(
            OP,
            format!("logp {:?} must match ids {:?}", logp.shape(), ids.shape()),
        ));
    }
    if r == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let binds = TopkBindings {
        logits: Bind::read(logits, "f32"),
        ids: Bind::read_write(ids, "u32"),
        logp: Bind::read_write(logp, "f32"),
    };
    let pipeline = gpu.pipeline(OP, &k, || {
        compose(
            SRC,
            false,
            &[("WG", WG), ("K", k as u32)],
            &[
                vec![Params::wgsl(), super::FLOAT_ORDER_SRC.into()],
                binds.wgsl(),
            ]
            .concat(),
        )
    })?;
    let params = Params {
        rows: r as u32,
        v: v as u32,
        _pad: [0; 2],
    };
    rec.push(gpu.dispatch(
        OP,
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        grid_1d(&gpu, r, WG)?,
    )?);
    Ok(())
}
