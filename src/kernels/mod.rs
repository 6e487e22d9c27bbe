//! GPU kernels: one unit per kernel (its WGSL in `shaders/`, everything Rust of it here).
//!
//! Each module defines the `Params` struct that mirrors its WGSL uniform, the variants it compiles,
//! and `record_*` functions that validate shapes and dtypes and append a [`crate::gpu::Dispatch`]
//! to a [`crate::gpu::Recorder`]. The eager ops in [`crate::ops`] and the graph executor both call
//! these, so each kernel has exactly one dispatch path.

pub mod attention_probs;
pub mod elementwise;
pub mod embedding;
pub mod gemv;
pub mod kv_cache;
pub mod layer_norm;
pub mod layout;
pub mod loop_gate;
pub mod matmul;
pub mod memory_attention;
pub mod op;
pub mod pooling;
pub mod recurrent;
pub mod sdpa;
pub mod search;
pub mod softmax;

use crate::error::{Error, Result};
use crate::kernels::op::OpEntry;

/// The op registry: one line per op that the conformance runner and the bench suites derive from
/// its kernel unit (see [`op`]). A new op adds its unit's `ENTRY` here.
pub const REGISTRY: &[OpEntry] = &[
    elementwise::ACTIVATION_ENTRY,
    layer_norm::ENTRY,
    matmul::LINEAR_ENTRY,
    matmul::MATMUL_ENTRY,
    softmax::ENTRY,
];
use crate::gpu::Gpu;
use crate::tensor::{DType, Tensor};

/// `shaders/common/workgroup_reduce.wgsl`: `workgroup_max` / `workgroup_sum` over a workgroup of
/// `WG` invocations, for kernels that reduce across their workgroup (the decoding attentions).
pub(crate) const WORKGROUP_REDUCE_SRC: &str =
    include_str!("../../shaders/common/workgroup_reduce.wgsl");

/// `shaders/common/float_order.wgsl`: run-time infinities, a NaN test on the bits and torch's
/// order (`better`), for the decoding-search kernels.
pub(crate) const FLOAT_ORDER_SRC: &str = include_str!("../../shaders/common/float_order.wgsl");

/// Checks that `t` has one of the `allowed` dtypes.
pub(crate) fn check_dtype(op: &str, operand: &str, t: &Tensor, allowed: &[DType]) -> Result<()> {
    if allowed.contains(&t.dtype()) {
        Ok(())
    } else {
        Err(Error::DType {
            op: op.into(),
            operand: operand.into(),
            got: t.dtype().to_string(),
            expected: allowed
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }
}

/// A 1-D grid of `ceil(n / per_group)` workgroups, split to fit the per-dimension limit.
pub(crate) fn grid_1d(gpu: &Gpu, n: usize, per_group: u32) -> Result<[u32; 3]> {
    let groups = n.div_ceil(per_group as usize);
    let groups = u32::try_from(groups).map_err(|_| Error::Limit {
        what: format!("dispatch over {n} elements"),
        needed: groups as u64,
        limit_name: "max_compute_workgroups_per_dimension (squared)",
        limit: u32::MAX as u64,
    })?;
    Ok(gpu.grid(groups))
}
pub mod beam;
pub mod concat;
pub mod decoder_loop;
pub mod encoder_loop;
pub(crate) mod rnn_fused;
pub mod topk;
