//! Per-adapter tuning of the attention kernels and the per-call plan (flash, flash with split
//! keys, or split-key decoding).

use super::{AttnDims, DECODE_MAX_TQ};
use crate::gpu::Gpu;

/// Tuning of the attention kernels for one adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Tuning {
    /// Invocations (query rows, or key chunks when decoding) per workgroup.
    pub wg: u32,
    /// Keys per tile.
    pub kt: u32,
    /// Workgroups wanted in flight to fill the device.
    pub target_groups: usize,
    /// Flash kernel stages K/V tiles in workgroup memory.
    pub shared: bool,
    /// Query rows per invocation in the flash kernel (register blocking: each k/v load serves R
    /// rows).
    pub rows: u32,
    /// Flash kernel with straight-line code over named registers (`shaders/sdpa_cpu.wgsl`) for
    /// head dims up to [`UNROLLED_MAX_D`].
    pub unrolled: bool,
    /// Query rows per invocation of the unrolled variant.
    pub unrolled_rows: u32,
    /// Keys per tile of the unrolled variant.
    pub unrolled_kt: u32,
}

/// Largest head dim (of q/k and of v) the unrolled CPU flash variant is generated for (its code
/// grows with R * KT * D / 4).
pub const UNROLLED_MAX_D: usize = 64;

/// Per-adapter tuning. On CPU adapters (lavapipe) the flash kernel reads k/v straight from the
/// storage buffers (uniform loads; staging tiles in workgroup memory behind barriers measured
/// slower there) with R = 4 query rows per invocation (measured at T = 2048, D = 64: about 2x
/// R = 1; R = 8 was no better). For head dims up to [`UNROLLED_MAX_D`] the unrolled variant
/// (`shaders/sdpa_cpu.wgsl`, R = 8, KT = 4) runs instead: at T = 2048, D = 64 about 2.3x the loop
/// kernel and 1.4x the materialized path (2.8x causal). Discrete GPUs stage K/V tiles in workgroup
/// memory.
///
/// Benchmarks may override the CPU choice with `HEEDFUL_ATTN_R`, `HEEDFUL_ATTN_KT`,
/// `HEEDFUL_ATTN_WG`, `HEEDFUL_ATTN_SHARED=1` and `HEEDFUL_ATTN_UNROLL=0` (loop kernel only).
pub(crate) fn tuning(gpu: &Gpu) -> Tuning {
    if gpu.caps().is_cpu() {
        // lavapipe runs one workgroup per core thread; a few per thread balance causal rows.
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let kt = std::env::var("HEEDFUL_ATTN_KT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        let wg = std::env::var("HEEDFUL_ATTN_WG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64);
        let shared = std::env::var("HEEDFUL_ATTN_SHARED").is_ok_and(|v| v == "1");
        let env_r = std::env::var("HEEDFUL_ATTN_R")
            .ok()
            .and_then(|v| v.parse().ok());
        let env_kt = std::env::var("HEEDFUL_ATTN_KT")
            .ok()
            .and_then(|v| v.parse().ok());
        Tuning {
            wg,
            kt,
            target_groups: 4 * threads,
            shared,
            rows: env_r.unwrap_or(4),
            unrolled: !std::env::var("HEEDFUL_ATTN_UNROLL").is_ok_and(|v| v == "0"),
            // Measured at T = 2048, D = 64: R = 8 about 1.5x R = 4; KT = 4 as fast as KT = 8 with
            // half the code (KT = 16 much slower: spills).
            unrolled_rows: env_r.unwrap_or(8),
            unrolled_kt: env_kt.unwrap_or(4),
        }
    } else {
        Tuning {
            wg: 64,
            kt: 8,
            target_groups: 1024,
            shared: true,
            rows: 1,
            unrolled: false,
            unrolled_rows: 1,
            unrolled_kt: 8,
        }
    }
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
    while r > 1 {
        let groups = dims.b * dims.h * dims.tq.div_ceil((tu.wg * r) as usize);
        if dims.tq >= (tu.wg * r) as usize && groups >= tu.target_groups {
            return r;
        }
        r /= 2;
    }
    1
}

/// Whether the flash kernel for `dims` is the unrolled CPU variant (`shaders/sdpa_cpu.wgsl`).
pub(super) fn unrolled_applies(tu: &Tuning, dims: &AttnDims) -> bool {
    tu.unrolled && !tu.shared && dims.d <= UNROLLED_MAX_D && dims.dv <= UNROLLED_MAX_D
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
    /// The decode kernel over `nsplit` key chunks per row, then the merge kernel.
    Decode {
        /// Key chunks per row.
        nsplit: usize,
        /// Keys per chunk.
        chunk: usize,
    },
}

/// The plan [`record_sdpa`](super::record_sdpa) uses for `dims` on `gpu` (exposed for benchmarks and tests).
pub fn plan(gpu: &Gpu, dims: &AttnDims) -> Plan {
    let tu = tuning(gpu);
    let kt = tu.kt as usize;
    let rows = dims.b * dims.h * dims.tq;
    if dims.tk == 0 || rows == 0 {
        return Plan::Flash;
    }
    if dims.tq <= DECODE_MAX_TQ && dims.tk >= 2 * kt {
        // Enough chunks for every lane of target_groups workgroups, at least 2 tiles per chunk.
        let lanes = tu.target_groups * tu.wg as usize;
        let chunk = (dims.tk * rows)
            .div_ceil(lanes)
            .max(2 * kt)
            .next_multiple_of(kt);
        return Plan::Decode {
            nsplit: dims.tk.div_ceil(chunk),
            chunk,
        };
    }
    let rows = flash_rows(&tu, dims);
    let groups = dims.b * dims.h * dims.tq.div_ceil((tu.wg * rows) as usize);
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
