//! Per-adapter tuning of the attention kernels and the per-call plan (flash, flash with split
//! keys, or split-key decoding).

use super::{AttnDims, DECODE_MAX_TQ};
use crate::gpu::{AttnTuning, Gpu};

/// Tuning of the attention kernels for one adapter: the tuning table's [`AttnTuning`] (documented
/// there, field by field).
pub(crate) type Tuning = AttnTuning;

/// Largest head dim (of q/k and of v) the unrolled CPU flash variant is generated for (its code
/// grows with R * KT * D / 4).
pub const UNROLLED_MAX_D: usize = 64;

/// The attention part of the adapter's tuning table ([`Gpu::tuning`]). On CPU adapters (lavapipe)
/// the flash kernel reads k/v straight from the storage buffers with R = 4 query rows per
/// invocation, and for head dims up to [`UNROLLED_MAX_D`] the unrolled variant
/// (`shaders/sdpa_cpu.wgsl`, R = 8, KT = 4, workgroups of 8) runs instead; discrete GPUs stage K/V tiles in
/// workgroup memory. The measurements are in [`AttnTuning`]'s field docs.
///
/// Benchmarks override the table with `HEEDFUL_ATTN_R`, `HEEDFUL_ATTN_KT`, `HEEDFUL_ATTN_WG`,
/// `HEEDFUL_ATTN_SHARED=0|1` and `HEEDFUL_ATTN_UNROLL=0|1`, read once when the options are built
/// ([`crate::gpu::EnvConfig`]).
pub(crate) fn tuning(gpu: &Gpu) -> Tuning {
    gpu.tuning().attn
}

/// Query rows per invocation of the flash kernel for `dims`: the tuned R where the query rows fill
/// R-row invocations and enough workgroups, else 1 (short sequences keep their lanes busy).
/// Falls back to fewer rows (halving) where the tuned R would leave the device underfilled.
pub(crate) fn flash_rows(tu: &Tuning, dims: &AttnDims) -> u32 {
    let mut r = if unrolled_applies(tu, dims) {
        tu.unrolled_rows
    } else {
        tu.rows
    }
    .max(1);
    let wg = flash_wg(tu, dims);
    while r > 1 {
        let groups = dims.b * dims.h * dims.tq.div_ceil((wg * r) as usize);
        if dims.tq >= (wg * r) as usize && groups >= tu.target_groups {
            return r;
        }
        r /= 2;
    }
    1
}

/// Invocations per workgroup of the flash kernel for `dims`.
pub(crate) fn flash_wg(tu: &Tuning, dims: &AttnDims) -> u32 {
    if unrolled_applies(tu, dims) {
        tu.unrolled_wg
    } else {
        tu.wg
    }
    .max(1)
}

/// Whether the flash kernel for `dims` is the unrolled CPU variant (`shaders/sdpa_cpu.wgsl`).
pub(super) fn unrolled_applies(tu: &Tuning, dims: &AttnDims) -> bool {
    tu.unrolled && !tu.shared && dims.d <= UNROLLED_MAX_D && dims.dv <= UNROLLED_MAX_D
}

/// Whether the unrolled flash kernel shares each k/v row's loads over a subgroup: where the
/// table asks for it, the device's subgroups are exactly 8 lanes (lavapipe at 256 bits) and the
/// workgroup is whole subgroups (a broadcast from a lane past a partial subgroup's end would
/// read nothing defined).
pub(super) fn flash_subgroup(gpu: &Gpu, tu: &Tuning, dims: &AttnDims) -> bool {
    unrolled_applies(tu, dims)
        && tu.unrolled_subgroup
        && flash_wg(tu, dims).is_multiple_of(8)
        && gpu.caps().subgroups_of_exactly(8)
}

/// Which kernels a call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// One flash dispatch writing the output.
    Flash,
    /// Flash over `nsplit` key splits of `chunk` keys, then the merge kernel.
    FlashSplit {
        /// Key splits per row.
        nsplit: usize,
        /// Keys per split.
        chunk: usize,
    },
    /// The decode kernel over `nsplit` key chunks per row (one invocation each), then the merge
    /// kernel.
    Decode {
        /// Key chunks per row.
        nsplit: usize,
        /// Keys per chunk.
        chunk: usize,
    },
    /// The flash kernel on cooperative matrices (`shaders/sdpa_coop.wgsl`): 16-row blocks of q
    /// per subgroup, Q K^T and P V as 16 x 16 x 16 f16 tensor-core products (each operand split
    /// into hi and lo halves, f32 accumulation), no key splits. The hardware form runs where the
    /// adapter offers cooperative matrices; elsewhere a forced `FlashCoop` runs the emulated form
    /// (the same code with the fragment instructions emulated: slow, for tests). [`plan`] picks it where the tuning
    /// table says so ([`AttnTuning::coop`]).
    FlashCoop,
    /// The workgroup-per-chunk decode kernel (`shaders/sdpa_decode_wg.wgsl`) over `nsplit` key
    /// chunks per row, then the merge kernel; `chunk` at most [`DECODE_WG_MAX_CHUNK`].
    DecodeWorkgroup {
        /// Key chunks per row (one workgroup each).
        nsplit: usize,
        /// Keys per chunk.
        chunk: usize,
    },
}

/// Largest chunk of the workgroup decode kernel (its scores live in workgroup memory: 4 KiB).
pub const DECODE_WG_MAX_CHUNK: usize = 1024;

/// Invocations per workgroup of the workgroup decode kernel: the tuned attention workgroup as a
/// power of two, at least 64 (each invocation of the P·V step owns one vec4 of Dv <= 256).
pub(crate) fn decode_wg_size(tu: &Tuning) -> u32 {
    tu.wg.next_power_of_two().max(64)
}

/// The split-key decode plan for `dims` on `gpu` with the workgroup-per-chunk kernel
/// (`workgroup`) or one invocation per chunk, `None` where `dims` is not a decode shape (more than
/// [`DECODE_MAX_TQ`] query rows, or no keys; under 2 keys for the workgroup kernel; one chunk
/// for fewer rows than a quarter of the lanes the one-invocation kernel wants). [`plan`] takes
/// the kind the tuning table names; benchmarks compare both.
pub fn decode_plan(gpu: &Gpu, dims: &AttnDims, workgroup: bool) -> Option<Plan> {
    let tu = tuning(gpu);
    let kt = tu.kt as usize;
    let rows = dims.b * dims.h * dims.tq;
    if rows == 0 || dims.tq > DECODE_MAX_TQ {
        return None;
    }
    if workgroup && dims.tk >= 2 {
        // Enough workgroups (one per row and chunk) to fill the device, chunks of whole
        // workgroups' worth of keys.
        let wg = decode_wg_size(&tu) as usize;
        let want = tu.target_groups.div_ceil(rows).max(1);
        let chunk = dims
            .tk
            .div_ceil(want)
            .next_multiple_of(wg)
            .min(DECODE_WG_MAX_CHUNK);
        return Some(Plan::DecodeWorkgroup {
            nsplit: dims.tk.div_ceil(chunk),
            chunk,
        });
    }
    if !workgroup && dims.tk >= 1 {
        // Lanes take (query row, chunk) pairs: keys are split only while the rows are too few for
        // the lanes of target_groups workgroups, into chunks of at least 2 tiles. One chunk (rows
        // enough, or few keys) writes the output in the same pass, with no merge pass.
        let lanes = tu.target_groups * tu.decode_wg as usize;
        let splits = lanes.div_ceil(rows).min(dims.tk / (2 * kt)).max(1);
        let chunk = dims.tk.div_ceil(splits).next_multiple_of(kt);
        let nsplit = dims.tk.div_ceil(chunk);
        // A few rows in one chunk are a workgroup or two, on one or two CPU threads; the flash
        // kernel runs a workgroup per (b, h) and spreads them (lavapipe, Marian batch 1: the
        // one-chunk pass took 0.05-0.1 ms longer per call than the flash kernel).
        if nsplit > 1 || 4 * rows >= lanes {
            return Some(Plan::Decode { nsplit, chunk });
        }
    }
    None
}

/// The plan [`record_sdpa`](super::record_sdpa) uses for `dims` on `gpu` (exposed for benchmarks and tests).
pub fn plan(gpu: &Gpu, dims: &AttnDims) -> Plan {
    let tu = tuning(gpu);
    let kt = tu.kt as usize;
    let rows = dims.b * dims.h * dims.tq;
    if dims.tk == 0 || rows == 0 {
        return Plan::Flash;
    }
    if let Some(p) = decode_plan(gpu, dims, tu.decode_workgroup) {
        return p;
    }
    let caps = gpu.caps();
    if tu.coop && caps.coop_f16 {
        let form = super::CoopForm::for_caps(caps);
        if super::coop_attn_tile(caps, form, dims.d, dims.dv, tu.coop_tile).is_some() {
            return Plan::FlashCoop;
        }
    }
    let rows = flash_rows(&tu, dims);
    let groups = dims.b * dims.h * dims.tq.div_ceil((flash_wg(&tu, dims) * rows) as usize);
    let min_chunk = 256;
    if groups < tu.target_groups && dims.tk >= 2 * min_chunk {
        let want = tu.target_groups.div_ceil(groups);
        let chunk = dims.tk.div_ceil(want).max(min_chunk).next_multiple_of(kt);
        let nsplit = dims.tk.div_ceil(chunk);
        if nsplit > 1 {
            return Plan::FlashSplit { nsplit, chunk };
        }
    }
    Plan::Flash
}
