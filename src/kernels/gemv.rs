//! Split-K GEMV (`shaders/gemv.wgsl`): a few rows of `x` against a weight stored `[N, K]`, one
//! workgroup per one or two weight rows with its threads reducing over K in workgroup memory.
//!
//! This is [`MatmulKernel::GemvSplitK`](crate::kernels::matmul::MatmulKernel::GemvSplitK), the
//! decoding-size `linear` on GPUs; it is reached through the `record_*` functions of
//! [`crate::kernels::matmul`]. On CPU adapters the unrolled kernel with exactly the problem's rows
//! per tile is used instead (its subgroup form shares each load of `x` over the lanes; the
//! register-blocked [`MatmulKernel::GemvRows`](crate::kernels::matmul::MatmulKernel::GemvRows)
//! stays for benchmarks and tests).

use crate::error::Result;
use crate::gpu::spec::Bindings;
use crate::gpu::{compose, Elem, Recorder};
use crate::kernels::matmul::{grid, Problem, GEMV_MAX_M};

const SRC: &str = include_str!("../../shaders/gemv.wgsl");

/// Threads per workgroup (a power of two, at least GEMV_MAX_M * 2).
const WG: u32 = 64;

/// Pipeline key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    wg: u32,
    rn: u32,
    gm: u32,
    vk: bool,
    b: Elem,
    bias: Option<Elem>,
}

/// Records the split-K GEMV for a validated problem with `b` stored `[N, K]`.
pub(crate) fn record_split_k(rec: &mut Recorder, p: &Problem) -> Result<()> {
    let gpu = rec.gpu().clone();
    let gm = p.m.min(GEMV_MAX_M);
    // Two weight rows per workgroup for a single row of x (halves the reductions per weight byte).
    let rn = if gm == 1 { 2 } else { 1 };
    let key = Key {
        wg: WG,
        rn,
        gm: gm as u32,
        vk: p.k.is_multiple_of(4),
        b: p.b_elem(rec)?,
        bias: p.bias_elem(rec)?,
    };
    let binds = p.bindings(key.vk, key.b, key.vk, key.bias);
    let pipeline = gpu.pipeline("gemv", &(key.clone(), p.act), || {
        compose(
            SRC,
            binds.needs_f16(),
            &[
                ("WG", key.wg),
                ("RN", key.rn),
                ("GM", key.gm),
                ("VK", key.vk as u32),
            ],
            &binds.prologue(),
        )
    })?;
    let tiles_m = p.m.div_ceil(gm);
    let tiles_n = p.n.div_ceil(key.rn as usize);
    let params = p.params(tiles_n, tiles_m);
    let d = gpu.dispatch(
        "gemv",
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        grid(rec, p.op, tiles_n * tiles_m * p.batch)?,
    )?;
    rec.push(d);
    Ok(())
}
