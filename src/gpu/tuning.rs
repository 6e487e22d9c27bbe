//! The one tuning table: every per-adapter decision of the kernels, the ops and the benches, built
//! once per device beside [`Caps`] and read through [`Gpu::tuning`](super::Gpu::tuning).
//!
//! What is fast differs by adapter class: on a CPU adapter (Mesa's lavapipe, SwiftShader) a
//! workgroup barrier costs far more than on a GPU and workgroup memory is ordinary cache, so
//! register-blocked kernels without shared memory and small (one-SIMD-vector) workgroups win there;
//! GPUs want coalesced loads, workgroup-memory tiles and many workgroups in flight. Kernels ask the
//! table instead of testing the device type, so a new class (or a measured change) is one edit here.
//!
//! ```
//! use heedful::gpu::{AdapterClass, Tuning};
//! use heedful::kernels::matmul::MatmulKernel;
//! # fn caps() -> heedful::Caps { heedful::Gpu::shared().unwrap().caps().clone() }
//! let caps = caps();
//! let cpu = Tuning::for_class(AdapterClass::Cpu, &caps);
//! assert_eq!(cpu.matmul.large_bt, MatmulKernel::Unrolled);
//! ```

use super::caps::Caps;
use super::env::{EnvError, TuningOverrides};
use crate::kernels::matmul::{MatmulKernel, GEMV_MAX_M};

/// The kind of adapter, as far as kernel choice is concerned. Derived once from the adapter's device
/// type and limits by [`AdapterClass::of`]. (Subgroup sizes are in [`Caps`] but no decision depends
/// on them yet: no kernel uses subgroup operations.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterClass {
    /// A software rasterizer on the CPU (`DeviceType::Cpu`: lavapipe/llvmpipe, SwiftShader, WARP).
    Cpu,
    /// A GPU (discrete, integrated, virtual or other) with the limits the workgroup-tiled matmul
    /// needs: 256 invocations and 8 KiB of workgroup memory per workgroup (WebGPU's defaults
    /// exceed both).
    Gpu,
    /// A GPU under those limits (downlevel GL / WebGL2-class devices): no workgroup-memory tiles.
    LimitedGpu,
}

impl AdapterClass {
    /// The class of an adapter with `caps`.
    pub fn of(caps: &Caps) -> AdapterClass {
        if caps.device_type == wgpu::DeviceType::Cpu {
            AdapterClass::Cpu
        } else if caps.max_invocations >= 256 && caps.max_workgroup_storage >= 8192 {
            // The tiled matmul needs 256 invocations and 8 KiB of workgroup memory.
            AdapterClass::Gpu
        } else {
            AdapterClass::LimitedGpu
        }
    }
}

/// Matmul kernel choice for [`MatmulKernel::Auto`] and the register tiles of the blocked kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulTuning {
    /// The kernel for few rows (`m <= gemv_max_m`) against `b` stored `[N, K]` (linear layers at
    /// decode time). CPU: [`MatmulKernel::Unrolled`], whose tile then has exactly `m` rows (see
    /// [`Tuning::unrolled_tile`]; lavapipe, one run against [`MatmulKernel::GemvRows`], the
    /// blocked kernel with all rows in one thread: f16 4x512->65001 17.5 vs 33.3 ms, 1x512->65001
    /// 9.9 vs 11.2, 1x4096->4096 4.9 vs 5.1, 4x512->2048 0.86 vs 1.70; f32 5.5 vs 6.2 at
    /// 1x4096->4096, 0.68 vs 1.02 at 4x512->2048); GPUs: [`MatmulKernel::GemvSplitK`] (a
    /// workgroup reduces K in workgroup memory, so few rows still fill the lanes).
    pub gemv: MatmulKernel,
    /// Most rows that take [`MatmulTuning::gemv`] (at most [`GEMV_MAX_M`], what both GEMV kernels
    /// hold). 4 on every class.
    pub gemv_max_m: usize,
    /// The kernel for everything else with `b [K, N]` (matmul). CPU: [`MatmulKernel::Unrolled`]
    /// (lavapipe 1024^3 f32, one run on a loaded machine: 35-42% of the FMA peak against 28% for
    /// [`MatmulKernel::Blocked`] and 4% for the workgroup tile, whose barriers are costly there);
    /// GPUs: [`MatmulKernel::Tiled`]; limited GPUs: `Blocked` (the tile does not fit their limits).
    pub large: MatmulKernel,
    /// The kernel for more than `gemv_max_m` rows against `b [N, K]` (linear, matmul_bt). CPU:
    /// [`MatmulKernel::Unrolled`] (lavapipe, f16 weights at 128 tokens: about 35-40% of the FMA
    /// peak against 16-18% for the blocked kernel in the same runs); GPUs and limited GPUs: as
    /// `large`.
    pub large_bt: MatmulKernel,
    /// Register tile `(rows, cols)` per thread of the blocked kernel with `b [N, K]`. CPU: 8 x 4
    /// (about 31% of the FMA peak on lavapipe, tied with 4 x 8); GPUs (blocked only when forced or
    /// limited): 4 x 4.
    pub tile_bt: (u32, u32),
    /// Register tile with `b [K, N]` and `N % 4 == 0` (vec4 loads along N). CPU: 8 x 16 (about 40%
    /// of the FMA peak on lavapipe; 4 x 4: 19%, 8 x 8: 32%, over 128 outputs a cliff to 12%);
    /// GPUs: 4 x 4.
    pub tile_vec: (u32, u32),
    /// Register tile with `b [K, N]` and `N % 4 != 0` (scalar loads). CPU: 4 x 8 (about 16%);
    /// GPUs: 4 x 4.
    pub tile_scalar: (u32, u32),
    /// [`MatmulKernel::GemvRows`] reads f16 `b` as packed `u32` even where the device reads f16
    /// natively. CPU: yes (32-bit gathers are faster on lavapipe); GPUs: no.
    pub gemv_rows_packed_f16: bool,
    /// [`MatmulKernel::Auto`] takes the cooperative-matrix kernel ([`MatmulKernel::Coop`]) for f16
    /// weights where the adapter offers it ([`Caps::coop_f16`](super::Caps::coop_f16)) instead of
    /// `large`. GPUs: yes (an H200, 2026-12-04, BENCHMARKS.md: f16 linears 3.2x-3.4x the tiled
    /// kernel, 52 TFLOP/s at 4096^3 against 15.3); CPU: no (lavapipe offers no cooperative
    /// matrices through wgpu).
    pub coop_auto: bool,
    /// Block of the cooperative-matrix kernel: subgroups per workgroup and 16 x 16 fragments per
    /// subgroup ([`CoopTile`]). GPUs: 4 x 4 subgroups of 2 x 2 fragments, a 128 x 128 tile of 512
    /// invocations (an H200, f16 linear 4096^3, before the register prefetch: 43.4 TFLOP/s, 52.4
    /// with it; before it, against 22.0 for 2 x 2 x 2 x 4,
    /// 19.2 for 2 x 4 x 2 x 2, 16.5 for 2 x 2 x 2 x 2 and 5.9 for one subgroup of 2 x 2; MiniLM's
    /// 4096 x 384 -> 1536: 44.6 against 26.5 at best); CPU: unused.
    pub coop_tile: CoopTile,
    /// The block for products whose grid of [`MatmulTuning::coop_tile`] blocks would have fewer
    /// than [`MatmulTuning::coop_min_groups`] workgroups (a decode step's 128 x 512 linear makes one
    /// row of 128 x 128 blocks, too few to fill a large GPU). GPUs: 2 x 2 subgroups of one
    /// fragment, 32 x 32 (an H200, 128 x 512 -> 2048: 8.8 TFLOP/s against 5.8 for the large block
    /// and 3.5 for the tiled kernel).
    pub coop_tile_small: CoopTile,
    /// See [`MatmulTuning::coop_tile_small`]. GPUs: 264 (two per SM of an H200's 132).
    pub coop_min_groups: usize,
    /// Register tile `(rows, cols)` per invocation of [`MatmulKernel::Unrolled`] with `b [N, K]`
    /// (problems with fewer rows take fewer: see [`Tuning::unrolled_tile`]). CPU: 16 x 4
    /// (lavapipe, f16 weights, workgroups of 8, the subgroup form reading rows of a, one run:
    /// 128x384->1152 16x4 52.6 GFLOP/s, 16x3 48.2, 8x4 43.3, 16x8 36.8; 128x2048->512 57.8,
    /// 51.5, 45.4, 47.6); GPUs (only when forced): 4 x 4.
    pub unrolled_bt: (u32, u32),
    /// Unrolled tile with `b [K, N]` and `N % 4 == 0` (the columns must be a multiple of 4 for
    /// the vec4 loads along N). CPU: 16 x 4 (1024^3 f32, workgroups of 8, the subgroup form
    /// reading rows of a in 4-k steps, two runs: 16x4 45.6-50.1 GFLOP/s, 8x4 36.8-37.3, 16x8
    /// 33.3-33.9, 8x8 35.3-36.1); GPUs: 4 x 4.
    pub unrolled_vec: (u32, u32),
    /// Unrolled tile with `b [K, N]` and `N % 4 != 0` (not measured; 4 x 4 everywhere).
    pub unrolled_scalar: (u32, u32),
    /// Rows of the unrolled tile, in place of `unrolled_vec`'s, where `b` is f32 `[K, N]`, the
    /// kernel shares `a` over subgroups of 8 (`unrolled_subgroup_a`), `K % 4 == 0` and the extra
    /// padded rows stay within 5% (see [`Tuning::unrolled_tile`]). There the subgroup
    /// form steps 4 k at a time, and its loop body
    /// has room for more rows than the 8-k step of packed f16 weights; every row added shares
    /// the per-lane loads of `b`, which cost llvmpipe far more than the FMAs. CPU: 24 (lavapipe,
    /// scratch probe, wall time, best of 20, alternated four times: 1024^3 39.0-40.4 ms for 24
    /// rows, 42.5-44.0 for 16, 41.0-42.9 for 32; 1040^3 39.2-39.4 against 42.3-43.1; 2048^3
    /// 313-341 against 349-358; `heedful bench`, 1024^3 39.0-40.7 against 44.0-44.1). Not for
    /// `b [N, K]`: there each k step also reads 32 weight rows 4 KiB apart, and 24 rows were
    /// faster in one program (1024 x 1024 -> 1024 f32 39.7 against 43.0 ms) and slower in
    /// another (56-58 against 43-44 in `heedful bench`), so they depend on where the buffers
    /// lie; with packed f16 weights 24 rows were 25-35% slower. GPUs: none.
    pub unrolled_rows_f32: Option<u32>,
    /// More columns per invocation of the unrolled kernel for one row of `a` against a short and
    /// wide `[N, K]` weight (a decode step's output layer over a vocabulary), in place of
    /// `unrolled_bt`'s. CPU: 8 columns up to K = 512 from N = 8192 (lavapipe, f16 weights,
    /// `heedful bench --filter gemv`, 8 against 4 columns in workgroups of 8, two runs: 1 x 512
    /// -> 65 001 7.2-7.5 against 10.3-11.4 ms, -> 16 384 2.0-2.1 against 2.7-2.9, -> 8192
    /// 1.13-1.15 against 1.35-1.56, 1 x 256 -> 65 536 4.8-5.2 against 5.3-5.7; at K = 768 to
    /// 4096, or N = 4497 and under, 8 columns were 1-40% slower); GPUs: none (their GEMV is
    /// another kernel).
    pub wide_gemv: Option<WideGemv>,
    /// Invocations per workgroup of the unrolled kernel (0: the power of two from 8 to 64 that
    /// covers N, as the blocked kernel). CPU: 8, one SIMD vector of lavapipe (linear 128x384->1536,
    /// 4x4: 35% against 30% with 64; the 8 x 4 columns of `b` a workgroup reads stay in cache while
    /// consecutive workgroups walk M); GPUs: 0.
    pub unrolled_wg: u32,
    /// [`MatmulKernel::Unrolled`] reads f16 `b` as packed `u32` pairs (`vec2<u32>` per 4 values,
    /// `vec4<u32>` per 8 in the subgroup form) even where the device reads f16 natively. CPU: yes
    /// (half the gathers of per-element f16 loads, as for the GEMV); GPUs: no.
    pub unrolled_packed_f16: bool,
    /// [`MatmulKernel::Unrolled`] shares each load of `a` across an 8-lane subgroup with
    /// `subgroupBroadcast` (8-wide k steps), where the device has subgroups of exactly 8 lanes:
    /// each lane loads its own rows of `a` as vec4s where tiles have whole subgroup rows and K % 4
    /// == 0, single elements otherwise, and packed f16 weights 8 per `vec4<u32>` where K % 8 ==
    /// 0. CPU: yes (llvmpipe loads storage lane by lane even at uniform addresses, with a cost
    /// per lane and per component; see `src/kernels/matmul/unrolled.rs`); GPUs: no.
    pub unrolled_subgroup_a: bool,
    /// Where a linear followed by a residual add and LayerNorm (a post-LN block) runs as one
    /// dispatch of the unrolled kernel (`src/kernels/matmul/linear_norm.rs`). CPU: up to 8 rows
    /// against weights of up to 65 536 elements, 4 rows per workgroup, 8 columns per invocation
    /// (lavapipe, `heedful bench --filter linear_norm`, f16 weights, fused against the separate
    /// linear and norm, two runs: 1 x 128 -> 128 0.06-0.10 against 0.12-0.17 ms, 4 x 128 -> 128
    /// 0.08-0.09 against 0.13-0.15, 1 x 512 -> 128 0.10-0.12 against 0.15-0.17, 1 x 256 -> 256
    /// 0.10-0.12 against 0.13-0.16, 4 x 256 -> 256 0.15-0.19 against 0.15-0.18; larger weights
    /// lose, one workgroup being one CPU thread: 1 x 1024 -> 256 0.30-0.31 against 0.17-0.20,
    /// 1 x 512 -> 512 0.28-0.34 against 0.18-0.21, 1 x 2048 -> 512 0.62 against 0.35-0.37);
    /// GPUs: none (not measured there; the separate linear and norm run).
    pub linear_norm: Option<LinearNorm>,
}

/// The rule of [`MatmulTuning::linear_norm`]: products of at most `max_rows` rows against at
/// most `max_weights` weight elements (N * K) fuse, each workgroup taking `rows_per_group` rows
/// and whole rows of columns, each invocation at most `max_cols` of them (the workgroup is the
/// power of two from 8 that covers N so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearNorm {
    /// Most rows fused.
    pub max_rows: usize,
    /// Most weight elements (N * K) fused: one workgroup reads them all.
    pub max_weights: usize,
    /// Rows per workgroup (every weight is read once per workgroup).
    pub rows_per_group: u32,
    /// Most columns per invocation (1..=16).
    pub max_cols: u32,
}

impl LinearNorm {
    /// The rule tests and forced fusion use where the table has none.
    pub const PORTABLE: LinearNorm = LinearNorm {
        max_rows: usize::MAX,
        max_weights: usize::MAX,
        rows_per_group: 1,
        max_cols: 8,
    };

    /// The unrolled kernel's `(rows, columns, invocations)` for `m x n` outputs over `k`, or
    /// `None` where the rule does not fuse them (over `max_rows` rows or `max_weights` weights,
    /// or N wider than `max_invocations` invocations of `max_cols` columns).
    pub fn tile(
        &self,
        m: usize,
        k: usize,
        n: usize,
        max_invocations: u32,
    ) -> Option<(u32, u32, u32)> {
        if m > self.max_rows || n.saturating_mul(k) > self.max_weights {
            return None;
        }
        self.tile_any_rows(m, n, max_invocations)
    }

    /// [`LinearNorm::tile`] without the row bound.
    pub fn tile_any_rows(
        &self,
        m: usize,
        n: usize,
        max_invocations: u32,
    ) -> Option<(u32, u32, u32)> {
        let max_cols = self.max_cols.clamp(1, 16) as usize;
        let wg = n.div_ceil(max_cols).next_power_of_two().max(8);
        if wg > max_invocations as usize {
            return None;
        }
        let tn = n.div_ceil(wg).max(1) as u32;
        let tm = (self.rows_per_group.max(1) as usize).min(m.max(1)) as u32;
        // The unrolled kernel's tile bound: at most 128 outputs per invocation.
        let tm = tm.min(128 / tn).max(1);
        Some((tm, tn, wg as u32))
    }
}

/// The rule of [`MatmulTuning::wide_gemv`]: one row of `a` against an `[N, K]` weight with
/// `K <= max_k` and `N >= min_n` takes `tn` columns per invocation of the unrolled kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WideGemv {
    /// Columns per invocation.
    pub tn: u32,
    /// Largest K the rule covers.
    pub max_k: usize,
    /// Smallest N the rule covers.
    pub min_n: usize,
}

/// The block of [`MatmulKernel::Coop`] (`shaders/matmul_coop.wgsl`): a workgroup of `wm x wn`
/// subgroups, each computing `fm x fn_` fragments of 16 x 16 outputs, so the workgroup's output
/// tile is `(wm * fm * 16) x (wn * fn_ * 16)`; each staged slice of K is `kf * 16` deep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopTile {
    /// Subgroups along M.
    pub wm: u32,
    /// Subgroups along N.
    pub wn: u32,
    /// 16-row fragments per subgroup.
    pub fm: u32,
    /// 16-column fragments per subgroup.
    pub fn_: u32,
    /// 16-deep fragments per staged slice of K (1..=4; 2 is a 32-deep slice). Deeper slices mean
    /// fewer global-memory round trips per workgroup, which bounds small-M products.
    pub kf: u32,
}

impl CoopTile {
    /// Output rows per workgroup.
    pub fn bm(self) -> u32 {
        self.wm * self.fm * 16
    }

    /// Output columns per workgroup.
    pub fn bn(self) -> u32 {
        self.wn * self.fn_ * 16
    }

    /// Depth of a staged slice of K.
    pub fn bk(self) -> u32 {
        self.kf * 16
    }

    /// Subgroup and fragment counts in 1..=8, `kf` in 1..=4: the blocks the kernel is generated
    /// for (and whose sizes cannot overflow).
    pub fn is_valid(self) -> bool {
        [self.wm, self.wn, self.fm, self.fn_]
            .iter()
            .all(|v| (1..=8).contains(v))
            && (1..=4).contains(&self.kf)
    }

    /// Parses `WMxWNxFMxFN` (e.g. `2x2x2x4`, 32-deep slices) or `WMxWNxFMxFNxKF`, each of the
    /// first four 1..=8 and KF 1..=4; `None` when malformed.
    pub fn parse(s: &str) -> Option<CoopTile> {
        let v: Vec<u32> = s
            .split('x')
            .map(|p| p.trim().parse().ok().filter(|n| (1..=8).contains(n)))
            .collect::<Option<_>>()?;
        let t = match v[..] {
            [wm, wn, fm, fn_] => CoopTile {
                wm,
                wn,
                fm,
                fn_,
                kf: 2,
            },
            [wm, wn, fm, fn_, kf] => CoopTile {
                wm,
                wn,
                fm,
                fn_,
                kf,
            },
            _ => return None,
        };
        t.is_valid().then_some(t)
    }
}

/// The block of the cooperative-matrix flash kernel (`shaders/sdpa_coop.wgsl`): a workgroup of
/// `ns` subgroups of 16 query rows each, walking the keys in tiles of `16 * nkf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopAttnTile {
    /// Subgroups per workgroup (16 query rows each), 1..=8.
    pub ns: u32,
    /// 16-key fragments per key tile, 1..=4.
    pub nkf: u32,
}

impl CoopAttnTile {
    /// `ns` in 1..=8 and `nkf` in 1..=4: the blocks the kernel is generated for.
    pub fn is_valid(self) -> bool {
        (1..=8).contains(&self.ns) && (1..=4).contains(&self.nkf)
    }

    /// Parses `NSxNKF` (e.g. `2x2`: 32 query rows per workgroup, 32-key tiles); `None` when
    /// malformed or out of range.
    pub fn parse(s: &str) -> Option<CoopAttnTile> {
        let (ns, nkf) = s.split_once('x')?;
        let t = CoopAttnTile {
            ns: ns.trim().parse().ok()?,
            nkf: nkf.trim().parse().ok()?,
        };
        t.is_valid().then_some(t)
    }
}

impl std::fmt::Display for CoopAttnTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.ns, self.nkf)
    }
}

impl std::fmt::Display for CoopTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}x{}", self.wm, self.wn, self.fm, self.fn_)?;
        if self.kf != 2 {
            write!(f, "x{}", self.kf)?;
        }
        Ok(())
    }
}

/// Row schedule of the row-wise kernels (softmax, layer norm) for
/// [`RowSchedule::Auto`](crate::kernels::softmax::RowSchedule::Auto). Workgroup sizes are already
/// clamped to the device's invocations per workgroup (the largest power of two not above it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowTuning {
    /// Rows of at most this many elements run one thread per row everywhere (32).
    pub short_n: usize,
    /// Workgroup size for those short rows (64).
    pub short_wg: u32,
    /// From this many rows on, longer rows also run one thread per row. CPU: 8 (measured 1.5-6x
    /// faster than a workgroup per row for 8..4096 rows of 768..30522: no barriers); GPUs: never
    /// (`usize::MAX`: a workgroup per row coalesces the loads).
    pub thread_per_row_min_rows: usize,
    /// Workgroup size (rows per workgroup) of that thread-per-row schedule. CPU: 8 (one SIMD vector
    /// of lavapipe); GPUs: unused (64).
    pub thread_per_row_wg: u32,
    /// Workgroup per row, rows of up to [`RowTuning::large_n`] elements. CPU: 8 (few rows still
    /// spread over the cores); GPUs: 64.
    pub wg_small: u32,
    /// Workgroup per row, longer rows. CPU: 8; GPUs: 256.
    pub wg_large: u32,
    /// Row length above which [`RowTuning::wg_large`] applies (1024).
    pub large_n: usize,
}

/// Attention (sdpa) kernels and plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttnTuning {
    /// Invocations (query rows, or key chunks when decoding) per workgroup (64 everywhere).
    pub wg: u32,
    /// Keys per tile (8 everywhere).
    pub kt: u32,
    /// Workgroups wanted in flight to fill the device. CPU: 4 per core thread (lavapipe runs one
    /// workgroup per thread; a few per thread balance causal rows); GPUs: 1024.
    pub target_groups: usize,
    /// Flash kernel stages K/V tiles in workgroup memory. CPU: no (uniform loads straight from the
    /// storage buffers measured faster than tiles behind barriers); GPUs: no since the H200 run
    /// below (the shared-memory variant stays selectable, `HEEDFUL_ATTN_SHARED=1`, and tested).
    pub shared: bool,
    /// Query rows per invocation of the flash kernel (each k/v load serves R rows). CPU: 4
    /// (T = 2048, D = 64: about 2x R = 1; R = 8 no better); GPUs: 1.
    pub rows: u32,
    /// The flash kernel with straight-line code over named registers (`shaders/sdpa_cpu.wgsl`)
    /// for head dims up to [`UNROLLED_MAX_D`](crate::kernels::sdpa::UNROLLED_MAX_D). CPU: yes
    /// (T = 2048, D = 64: about 2.3x the loop kernel, 1.4x the materialized path); GPUs: yes (an
    /// H200, 2026-12-04, B1 H8 D64 f32: T = 2048 8.8 TFLOP/s against 1.4 for the shared-memory loop
    /// kernel, whose loop-indexed private arrays NVIDIA keeps in local memory; T = 8192 8.9 vs 1.5).
    pub unrolled: bool,
    /// Query rows per invocation of the unrolled variant. CPU: 8 (about 1.5x R = 4); GPUs: 1.
    pub unrolled_rows: u32,
    /// Keys per tile of the unrolled variant. CPU: 4 (with the scalar score chains, R = 4 or 8
    /// with KT = 8 did not finish compiling in lavapipe within 300 s); GPUs: 8.
    pub unrolled_kt: u32,
    /// Split-key decoding (few query rows, many keys) runs the workgroup-per-chunk kernel
    /// (`shaders/sdpa_decode_wg.wgsl`: a workgroup shares each chunk's scores, softmax and P·V)
    /// instead of one invocation per chunk (`shaders/sdpa_decode.wgsl`). CPU: no (barriers are
    /// costly on lavapipe); GPUs: yes (an H200, 2026-12-04, B1 H8 D64 Tq = 1: 1024 keys 0.020 ms
    /// against 0.143 with one invocation per chunk, 16384 keys 0.080 against 0.509).
    pub decode_workgroup: bool,
    /// Invocations per workgroup of the one-invocation-per-chunk decoding kernels
    /// (`shaders/sdpa_decode.wgsl`, `shaders/sdpa_cache.wgsl`), whose lanes take (query row,
    /// key chunk) pairs. CPU: 8, one SIMD group of lavapipe (a workgroup runs on one CPU thread,
    /// so a few rows still make a workgroup per thread); GPUs: 64.
    pub decode_wg: u32,
    /// Fewest cache positions per chunk of the one-invocation cache attention
    /// (`shaders/sdpa_cache.wgsl`): a cache is split over more invocations (and merged by one more
    /// dispatch) only into chunks at least this long. CPU: 256 (lavapipe, bundled Marian at batch
    /// 1, one chunk against chunks of at least 16 positions, alternated three times, best of
    /// three: beam 4 119 against 147 ms, greedy 32 tokens 643 against 673 ms, per token at step
    /// 100 2.0 against 2.4 ms: the merge's dispatch costs more than the split saves on short
    /// caches); GPUs: 16 (they run the workgroup kernel, whose chunks are its workgroup).
    pub cache_min_chunk: usize,
    /// Invocations per workgroup of the unrolled variant. CPU: 8, one SIMD group of lavapipe, so
    /// that a workgroup's 8R rows are consecutive and its key loop stops at their causal end,
    /// and short sequences still make enough workgroups; GPUs: 64.
    pub unrolled_wg: u32,
    /// The unrolled variant loads each k and v row once per subgroup (one vec4 per lane per whole
    /// 32 elements of aligned rows, else one element per lane per 8, spread with
    /// `subgroupBroadcast`) where subgroups are exactly 8 lanes. CPU: yes (llvmpipe
    /// loads storage lane by lane inside loops even where every lane reads the same address, so
    /// the plain form loads each row 8 times); GPUs: no (their subgroups are wider, and they load
    /// a shared address once).
    pub unrolled_subgroup: bool,
    /// Full-sequence attention (more than a few query rows) runs the cooperative-matrix flash
    /// kernel ([`Plan::FlashCoop`](crate::kernels::sdpa::Plan::FlashCoop)) where the adapter
    /// offers cooperative matrices and its block fits. Everywhere: no, until it has been measured
    /// against the unrolled kernel on such an adapter (none was lent since it was written);
    /// `HEEDFUL_ATTN_COOP=1` turns it on for a benchmark or a check.
    pub coop: bool,
    /// Block of that kernel; `None` (everywhere): the largest of 4x2, 2x2, 2x1, 1x1 that fits the
    /// device's workgroup memory and invocations. `HEEDFUL_ATTN_COOP_TILE=NSxNKF` sets one.
    pub coop_tile: Option<CoopAttnTile>,
}

/// Recurrent (RNN/LSTM/GRU) layer kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecurrentTuning {
    /// The per-step kernel reads `h_{t-1}` from a uniform copy (one buffer copy per step) where the
    /// state fits the staging buffer. CPU: yes (llvmpipe's uniform loads are faster than storage
    /// gathers); GPUs: no.
    pub stage_h: bool,
    /// Register block `(units, rows)` per thread of the per-step kernel, as `(min batch, block)`:
    /// the entry with the largest minimum batch not above the batch applies (the last entry for
    /// batch 0). CPU: batch 1 (1, 1), 2..=7 (2, 4), 8.. (2, 8); GPUs: 1..=3 (1, 1), 4.. (1, 4)
    /// (more invocations to fill the device; not yet measured there).
    ///
    /// On lavapipe a step is bound by storage loads (each 32-bit load costs far more than an FMA),
    /// and per k pair a block does `2*rows + G*units` loads for `2*G*units*rows` FMAs; larger blocks
    /// run out of registers. Measured (lavapipe, LSTM H = 512, B = 32, T = 16, process CPU ms
    /// including the shared 250 ms input projection): 1x4 (the old kernel) 430 from storage / 390
    /// with staged h, staged: 2x4 360, 4x4 350, 1x8 360, 2x8 340, 1x16 360, 2x16 360; 4x8 from
    /// storage 390 vs 2x8 370. B = 1 keeps one unit per invocation so small H still spreads over
    /// several workgroups.
    pub step_blocks: &'static [(usize, (u32, u32))],
    /// [`RecurrentPath::Auto`](crate::ops::RecurrentPath::Auto) picks the persistent
    /// kernel (one workgroup loops over all steps) when `D*B*H <= persistent_max_items` and
    /// `D*H < persistent_max_units`. CPU: 128 and 256 (measured on lavapipe, LSTM f16 T = 256: B = 1,
    /// H = 64 11.7 ms persistent vs 34 per-step; H = 128 streamed 30 vs 26, since persistent runs on
    /// one CPU thread, but the resident kernel 31 vs 41 per-step interleaved on a loaded machine);
    /// GPUs: 256 and no unit limit (an H200, f16, T = 256: LSTM B = 1 H = 128 (128 items)
    /// persistent 1.45 ms against 3.93 per-step, H = 512 (512 items) 26.4 against 13.8; GRU 1.79
    /// against 3.81 and 45.2 against 13.5).
    pub persistent_max_items: usize,
    /// See [`RecurrentTuning::persistent_max_items`].
    pub persistent_max_units: usize,
    /// Also persistent for sequences of at most this many steps with `D*B*H <=
    /// persistent_short_max_items`. CPU: 32 steps, 512 items (a per-step dispatch costs ~30 us on
    /// lavapipe, more than a short step's work: the G2P encoder was 0.25 ms per word faster);
    /// GPUs: 0 (off).
    pub persistent_short_steps: usize,
    /// See [`RecurrentTuning::persistent_short_steps`].
    pub persistent_short_max_items: usize,
    /// The persistent path runs the resident kernel (each invocation holds its unit's `weight_hh`
    /// across all steps, `shaders/recurrent_resident.wgsl`) when one workgroup fits `D*H`
    /// invocations and each holds at most this many 32-bit words (`G*ceil(H/2)` for f16 weights,
    /// twice that for f32); 0 never. CPU: 512 (lavapipe, LSTM f16 H = 128 B = 1 T = 256, interleaved
    /// on a loaded machine: resident 1.4x the streamed kernel; holding the weights unpacked to f32
    /// instead was only 1.2x); GPUs: 0 (registers are a few hundred words per thread there; not
    /// measured).
    pub resident_max_words: usize,
    /// The resident kernel loads `h_{t-1}` once per subgroup (one element per lane, spread with
    /// `subgroupBroadcast`) where subgroups are exactly 8 lanes and `H % 8 == 0`. CPU: yes (llvmpipe
    /// loads storage lane by lane inside the step loop even at an address every lane shares);
    /// GPUs: no (they do not run the resident kernel).
    pub resident_subgroup: bool,
    /// [`RecurrentPath::Auto`](crate::ops::RecurrentPath::Auto) also picks the persistent kernel
    /// when it would run resident in its subgroup form and `D*B*H <= resident_max_items`. CPU:
    /// 1024 (lavapipe, LSTM f16 T = 256, resident vs per-step, one run: H128 B2 13.9 vs 32.1 ms,
    /// B4 23.4 vs 37.5, B8 44.0 vs 55.4, H64 B8 15.7 vs 36.3, H256 B1 25.3 vs 48.8; at B32 (4096
    /// items) 166.9 vs 172.7, a tie); GPUs: 0.
    pub resident_max_items: usize,
}

/// Sizes of the benchmark suites that would run far too long on a CPU adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BenchTuning {
    /// Workgroups (of 64) of the FMA-peak shader. CPU: 256; GPUs: 16384 (enough to fill the device).
    pub fma_groups: u32,
    /// FMA iterations per thread (split over the chains). CPU: 8192; GPUs: 32768 (several ms).
    pub fma_chain_iters: u32,
    /// Bytes copied by the copy-bandwidth shader (clamped to the storage binding limit). CPU:
    /// 32 MiB; GPUs: 512 MiB.
    pub copy_bytes: usize,
    /// Repetitions of the 2048^3 matmul. CPU: 2 (over a second per run); GPUs: `None` (the
    /// suite's default).
    pub matmul_2048_reps: Option<usize>,
}

/// Every per-adapter decision, one table per [`AdapterClass`] ([`Tuning::for_class`]) with the
/// benchmark overrides applied ([`Tuning::with_overrides`]). Built once when the [`Gpu`] is created.
///
/// [`Gpu`]: super::Gpu
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuning {
    /// The class the table was built for.
    pub class: AdapterClass,
    /// Matmul / linear kernels.
    pub matmul: MatmulTuning,
    /// Row schedules of softmax and layer norm.
    pub rows: RowTuning,
    /// Attention.
    pub attn: AttnTuning,
    /// Recurrent layers.
    pub recurrent: RecurrentTuning,
    /// Invocations per workgroup of the fused RNN loops (`decoder_loop`, `encoder_loop`). CPU: 8
    /// (one SIMD vector; lavapipe switches vectors at every barrier: G2P rnn_dot step 105 us at 8,
    /// 115 at 16, 154 at 32, 244 at 64); GPUs: 64 (hidden sizes of a few hundred fill the lanes;
    /// not yet measured).
    pub rnn_fused_wg: u32,
    /// Threads per row of the decode search's row kernel (`search_row`: log-softmax, logits
    /// processors and the row's top candidates over the vocabulary; a power of two, lowered by
    /// `kernels::search` until its workgroup arrays fit the device). CPU: 8, one SIMD group of
    /// lavapipe (a workgroup runs on one CPU thread, so more threads per row only add barriers
    /// between SIMD groups, about 0.7 us each; with 64 the row kernel took 2.4x as long on the
    /// bundled model's beam-4 batch-32 decode); GPUs: 1024 (512 for
    /// beam 4's 8 candidates in 48 KiB; an H200 profile of opus-mt-sized beam 4 had 64 threads
    /// spend 1.4 ms per row pass on a 65 001 vocabulary and 256 threads 0.39-0.47 ms: each
    /// thread's serial loads are latency-bound, one workgroup per row).
    pub search_row_wg: u32,
    /// Padded tokens (rows x longest row) one BERT graph run holds by default, so that one
    /// submission stays bounded (`BertEncoder::embed` splits larger batches). GPUs: 8192, a few
    /// milliseconds of work; CPU: 256 (about 20 MFLOP per MiniLM token at a few GFLOP/s), so
    /// another thread's work waits about a second at most behind one run.
    pub encoder_tokens_per_run: usize,
    /// Benchmark sizes.
    pub bench: BenchTuning,
}

/// Largest power of two not above `x` (1 for 0).
fn prev_pow2(x: u32) -> u32 {
    if x == 0 {
        1
    } else {
        1 << (31 - x.leading_zeros())
    }
}

impl Tuning {
    /// The table of the adapter with `caps` (its [`AdapterClass::of`]).
    pub fn for_caps(caps: &Caps) -> Tuning {
        Self::for_class(AdapterClass::of(caps), caps)
    }

    /// The table of `class`; `caps` supplies the limits that clamp workgroup sizes.
    pub fn for_class(class: AdapterClass, caps: &Caps) -> Tuning {
        let fit = |wg: u32| wg.min(prev_pow2(caps.max_invocations));
        let gpu_rows = RowTuning {
            short_n: 32,
            short_wg: fit(64),
            thread_per_row_min_rows: usize::MAX,
            thread_per_row_wg: fit(64),
            wg_small: fit(64),
            wg_large: fit(256),
            large_n: 1024,
        };
        let gpu_attn = AttnTuning {
            wg: 64,
            kt: 8,
            target_groups: 1024,
            shared: false,
            rows: 1,
            unrolled: true,
            unrolled_rows: 1,
            unrolled_kt: 8,
            unrolled_wg: 64,
            decode_workgroup: true,
            decode_wg: 64,
            cache_min_chunk: 16,
            unrolled_subgroup: false,
            coop: false,
            coop_tile: None,
        };
        let gpu_recurrent = RecurrentTuning {
            stage_h: false,
            step_blocks: &[(1, (1, 1)), (4, (1, 4))],
            persistent_max_items: 256,
            persistent_max_units: usize::MAX,
            persistent_short_steps: 0,
            persistent_short_max_items: 0,
            resident_max_words: 0,
            resident_subgroup: false,
            resident_max_items: 0,
        };
        let gpu_bench = BenchTuning {
            fma_groups: 16384,
            fma_chain_iters: 32768,
            copy_bytes: 512 << 20,
            matmul_2048_reps: None,
        };
        let gpu_matmul = |large| MatmulTuning {
            gemv: MatmulKernel::GemvSplitK,
            gemv_max_m: GEMV_MAX_M,
            large,
            large_bt: large,
            tile_bt: (4, 4),
            tile_vec: (4, 4),
            tile_scalar: (4, 4),
            gemv_rows_packed_f16: false,
            coop_auto: true,
            coop_tile: CoopTile {
                wm: 4,
                wn: 4,
                fm: 2,
                fn_: 2,
                kf: 2,
            },
            coop_tile_small: CoopTile {
                wm: 2,
                wn: 2,
                fm: 1,
                fn_: 1,
                kf: 2,
            },
            coop_min_groups: 264,
            unrolled_bt: (4, 4),
            unrolled_vec: (4, 4),
            unrolled_scalar: (4, 4),
            unrolled_rows_f32: None,
            wide_gemv: None,
            linear_norm: None,
            unrolled_wg: 0,
            unrolled_packed_f16: false,
            unrolled_subgroup_a: false,
        };
        match class {
            AdapterClass::Cpu => {
                let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
                Tuning {
                    class,
                    matmul: MatmulTuning {
                        gemv: MatmulKernel::Unrolled,
                        gemv_max_m: GEMV_MAX_M,
                        large: MatmulKernel::Unrolled,
                        large_bt: MatmulKernel::Unrolled,
                        tile_bt: (8, 4),
                        tile_vec: (8, 16),
                        tile_scalar: (4, 8),
                        gemv_rows_packed_f16: true,
                        coop_auto: false,
                        coop_tile: CoopTile {
                            wm: 1,
                            wn: 1,
                            fm: 2,
                            fn_: 2,
                            kf: 2,
                        },
                        coop_tile_small: CoopTile {
                            wm: 1,
                            wn: 1,
                            fm: 2,
                            fn_: 2,
                            kf: 2,
                        },
                        coop_min_groups: 0,
                        unrolled_bt: (16, 4),
                        unrolled_vec: (16, 4),
                        unrolled_scalar: (4, 4),
                        unrolled_rows_f32: Some(24),
                        wide_gemv: Some(WideGemv {
                            tn: 8,
                            max_k: 512,
                            min_n: 8192,
                        }),
                        linear_norm: Some(LinearNorm {
                            max_rows: 8,
                            max_weights: 65_536,
                            rows_per_group: 4,
                            max_cols: 8,
                        }),
                        unrolled_wg: 8,
                        unrolled_packed_f16: true,
                        unrolled_subgroup_a: true,
                    },
                    rows: RowTuning {
                        short_n: 32,
                        short_wg: fit(64),
                        thread_per_row_min_rows: 8,
                        thread_per_row_wg: fit(8),
                        wg_small: fit(8),
                        wg_large: fit(8),
                        large_n: 1024,
                    },
                    attn: AttnTuning {
                        wg: 64,
                        kt: 8,
                        target_groups: 4 * threads,
                        shared: false,
                        rows: 4,
                        unrolled: true,
                        unrolled_rows: 8,
                        unrolled_kt: 4,
                        unrolled_wg: 8,
                        decode_workgroup: false,
                        decode_wg: 8,
                        cache_min_chunk: 256,
                        unrolled_subgroup: true,
                        coop: false,
                        coop_tile: None,
                    },
                    recurrent: RecurrentTuning {
                        stage_h: true,
                        step_blocks: &[(1, (1, 1)), (2, (2, 4)), (8, (2, 8))],
                        persistent_max_items: 128,
                        persistent_max_units: 256,
                        persistent_short_steps: 32,
                        persistent_short_max_items: 512,
                        resident_max_words: 512,
                        resident_subgroup: true,
                        resident_max_items: 1024,
                    },
                    rnn_fused_wg: 8,
                    search_row_wg: 8,
                    encoder_tokens_per_run: 256,
                    bench: BenchTuning {
                        fma_groups: 256,
                        fma_chain_iters: 8192,
                        copy_bytes: 32 << 20,
                        matmul_2048_reps: Some(2),
                    },
                }
            }
            AdapterClass::Gpu => Tuning {
                class,
                matmul: gpu_matmul(MatmulKernel::Tiled),
                rows: gpu_rows,
                attn: gpu_attn,
                recurrent: gpu_recurrent,
                rnn_fused_wg: 64,
                search_row_wg: fit(1024),
                encoder_tokens_per_run: 8192,
                bench: gpu_bench,
            },
            AdapterClass::LimitedGpu => Tuning {
                class,
                matmul: gpu_matmul(MatmulKernel::Blocked),
                rows: gpu_rows,
                attn: gpu_attn,
                recurrent: gpu_recurrent,
                rnn_fused_wg: 64,
                search_row_wg: fit(64),
                encoder_tokens_per_run: 8192,
                bench: gpu_bench,
            },
        }
    }

    /// The table with the benchmark overrides applied; an attention workgroup larger than the
    /// device's `max_invocations` is an error naming `HEEDFUL_ATTN_WG`.
    pub fn with_overrides(mut self, o: &TuningOverrides, caps: &Caps) -> Result<Tuning, EnvError> {
        if let Some(r) = o.attn_rows {
            self.attn.rows = r;
            self.attn.unrolled_rows = r;
        }
        if let Some(kt) = o.attn_kt {
            self.attn.kt = kt;
            self.attn.unrolled_kt = kt;
        }
        if let Some(wg) = o.attn_wg {
            if wg > caps.max_invocations {
                return Err(EnvError {
                    var: "HEEDFUL_ATTN_WG",
                    value: wg.to_string(),
                    problem: "over the device's invocations per workgroup".into(),
                    accepted: format!(
                        "1..={} (the device's invocations per workgroup)",
                        caps.max_invocations
                    ),
                });
            }
            self.attn.wg = wg;
            self.attn.unrolled_wg = wg;
        }
        if let Some(s) = o.attn_shared {
            self.attn.shared = s;
        }
        if let Some(u) = o.attn_unrolled {
            self.attn.unrolled = u;
        }
        if let Some(s) = o.attn_subgroup {
            self.attn.unrolled_subgroup = s;
        }
        if let Some(c) = o.attn_coop {
            self.attn.coop = c;
        }
        if let Some(t) = o.attn_coop_tile {
            self.attn.coop_tile = Some(t);
        }
        if let Some(d) = o.attn_decode_workgroup {
            self.attn.decode_workgroup = d;
        }
        if let Some(c) = o.coop_auto {
            self.matmul.coop_auto = c;
        }
        if let Some(t) = o.coop_tile {
            self.matmul.coop_tile = t;
        }
        if let Some(t) = o.coop_tile_small {
            self.matmul.coop_tile_small = t;
        }
        Ok(self)
    }

    /// The cooperative-matrix block for an `m x n` product over `batch` items:
    /// [`MatmulTuning::coop_tile`], or [`MatmulTuning::coop_tile_small`] where the first would
    /// make fewer than [`MatmulTuning::coop_min_groups`] workgroups.
    pub fn coop_tile_for(&self, batch: usize, m: usize, n: usize) -> CoopTile {
        let t = self.matmul.coop_tile;
        let groups = batch * m.div_ceil(t.bm() as usize) * n.div_ceil(t.bn() as usize);
        if groups < self.matmul.coop_min_groups {
            self.matmul.coop_tile_small
        } else {
            t
        }
    }

    /// The per-step recurrent kernel's register block `(units, rows)` for `batch` rows.
    pub fn step_block(&self, batch: usize) -> (u32, u32) {
        let blocks = self.recurrent.step_blocks;
        blocks
            .iter()
            .rev()
            .find(|(min, _)| *min <= batch)
            .or(blocks.last())
            .map_or((1, 1), |&(_, b)| b)
    }

    /// Whether a recurrent layer of `dirs` directions, `batch` rows, `hidden` units and `steps`
    /// steps runs the persistent kernel (one workgroup loops over all steps) rather than one
    /// dispatch per step (the thresholds of [`RecurrentTuning`]).
    pub fn persistent_pays(&self, dirs: usize, batch: usize, hidden: usize, steps: usize) -> bool {
        let t = &self.recurrent;
        let items = dirs * batch * hidden;
        (items <= t.persistent_max_items && dirs * hidden < t.persistent_max_units)
            || (steps <= t.persistent_short_steps && items <= t.persistent_short_max_items)
    }

    /// Whether the persistent path runs the resident kernel for `lanes = D*H` invocations holding
    /// `words` 32-bit words of weights each, in a workgroup of at most `max_wg` invocations (see
    /// [`RecurrentTuning::resident_max_words`]).
    pub fn resident_fits(&self, lanes: usize, words: usize, max_wg: u32) -> bool {
        lanes <= max_wg as usize && words <= self.recurrent.resident_max_words
    }

    /// The unrolled matmul's register tile for `[m, k] x [k, n]` with `b` stored `[N, K]` (`bt`)
    /// or `[K, N]`. Where the table's rows are a multiple of 8 (the CPU's, for the subgroup form
    /// that loads whole rows of a), a problem with fewer rows gets fewer: `m` itself below 8 (a
    /// decode step's 1-4 rows; every extra row repeats the FMAs over all of `b`), else `m`
    /// rounded up to whole subgroup rows. One row against a short, wide `[N, K]` weight takes
    /// [`MatmulTuning::wide_gemv`]'s columns where the table has that rule. With f32 `b [K, N]`
    /// in the subgroup form (`f32_shared_a`), `K % 4 == 0` and `N % 4 == 0`, a problem takes
    /// [`MatmulTuning::unrolled_rows_f32`] rows where they pad `m` to at most 5% more rows than
    /// the table's tile does (1024 rows: 1032 against 1024, taken; 128: 144 against 128, not).
    pub fn unrolled_tile(
        &self,
        m: usize,
        k: usize,
        n: usize,
        bt: bool,
        f32_shared_a: bool,
    ) -> (u32, u32) {
        let t = &self.matmul;
        let (tm, tn) = match (bt, n.is_multiple_of(4)) {
            (true, _) => t.unrolled_bt,
            (false, true) => t.unrolled_vec,
            (false, false) => t.unrolled_scalar,
        };
        let tn = match t.wide_gemv {
            Some(w) if bt && m == 1 && k <= w.max_k && n >= w.min_n => w.tn,
            _ => tn,
        };
        if !tm.is_multiple_of(8) {
            return (tm, tn);
        }
        let rows = if m < 8 {
            m.max(1)
        } else {
            m.checked_next_multiple_of(8).unwrap_or(usize::MAX)
        };
        let tm = tm.min(u32::try_from(rows).unwrap_or(u32::MAX));
        match t.unrolled_rows_f32 {
            Some(tall)
                if f32_shared_a
                    && !bt
                    && m >= 8
                    && k.is_multiple_of(4)
                    && n.is_multiple_of(4)
                    && tall.is_multiple_of(8) =>
            {
                let padded = |r: u32| m.div_ceil(r as usize).saturating_mul(r as usize);
                if padded(tall).saturating_mul(20) <= padded(tm).saturating_mul(21) {
                    (tall, tn)
                } else {
                    (tm, tn)
                }
            }
            _ => (tm, tn),
        }
    }

    /// The blocked matmul's register tile for `b` stored `[N, K]` (`bt`) or `[K, N]` with
    /// `n_vec4` (`N % 4 == 0`).
    pub fn blocked_tile(&self, bt: bool, n_vec4: bool) -> (u32, u32) {
        match (bt, n_vec4) {
            (true, _) => self.matmul.tile_bt,
            (false, true) => self.matmul.tile_vec,
            (false, false) => self.matmul.tile_scalar,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(device_type: wgpu::DeviceType, invocations: u32, wg_storage: u32) -> Caps {
        Caps {
            adapter_name: "test".into(),
            backend: wgpu::Backend::Vulkan,
            device_type,
            driver: String::new(),
            shader_f16: true,
            native_f16: true,
            subgroups: true,
            subgroup_min_size: 8,
            subgroup_max_size: 8,
            timestamps: false,
            timestamp_period_ns: 1.0,
            pipeline_cache: false,
            max_storage_binding: 1 << 30,
            max_buffer_size: 1 << 30,
            max_workgroup_storage: wg_storage,
            max_invocations: invocations,
            max_workgroups_per_dim: 65535,
            max_storage_buffers: 8,
            indirect_dispatch: true,
            coop_f16: false,
        }
    }

    /// The step block the code chose before the table (`step_block(batch, cpu)` in
    /// kernels/recurrent/source.rs).
    fn old_step_block(batch: usize, cpu: bool) -> (u32, u32) {
        match (batch, cpu) {
            (1, _) => (1, 1),
            (2..=3, false) => (1, 1),
            (_, false) => (1, 4),
            (2..=7, true) => (2, 4),
            (_, true) => (2, 8),
        }
    }

    /// The recurrent path rule before the table (`auto_path` in ops/recurrent/layer.rs), with the
    /// CPU unit limit raised from 128 to 256 for the resident kernel.
    fn old_persistent(cpu: bool, dirs: usize, batch: usize, hidden: usize, steps: usize) -> bool {
        let items = dirs * batch * hidden;
        if cpu {
            (items <= 128 && dirs * hidden < 256) || (steps <= 32 && items <= 512)
        } else {
            // 512 until the H200 measurement (BENCHMARKS.md, 2026-12-04) showed per-step faster.
            items <= 256
        }
    }

    #[test]
    fn recurrent_path_matches_the_old_rule() {
        let cpu = Tuning::for_caps(&caps(wgpu::DeviceType::Cpu, 1024, 32768));
        let gpu = Tuning::for_caps(&caps(wgpu::DeviceType::DiscreteGpu, 1024, 32768));
        let mut persistent = [0; 2];
        for dirs in 1..=2 {
            for batch in [0, 1, 2, 3, 4, 8, 16] {
                for hidden in [0, 1, 16, 32, 63, 64, 96, 127, 128, 256, 512, 513] {
                    for steps in [0, 1, 10, 32, 33, 256] {
                        let args = (dirs, batch, hidden, steps);
                        for (i, (t, is_cpu)) in [(&cpu, true), (&gpu, false)].iter().enumerate() {
                            let got = t.persistent_pays(dirs, batch, hidden, steps);
                            assert_eq!(
                                got,
                                old_persistent(*is_cpu, dirs, batch, hidden, steps),
                                "{args:?}"
                            );
                            persistent[i] += got as usize;
                        }
                    }
                }
            }
        }
        // Both outcomes occur on both classes, and the classes differ.
        assert!(
            persistent.iter().all(|&p| p > 0 && p < 2 * 7 * 12 * 6),
            "{persistent:?}"
        );
        assert_ne!(persistent[0], persistent[1]);
    }

    /// The large block where its grid fills the device, the small one below that; a shape at the
    /// boundary takes the large one.
    #[test]
    fn coop_block_follows_the_grid_size() {
        let t = Tuning::for_caps(&caps(wgpu::DeviceType::DiscreteGpu, 1024, 49152));
        let (large, small) = (t.matmul.coop_tile, t.matmul.coop_tile_small);
        assert_ne!(large, small);
        // A decode step's linear (128 x 512) and one batch-32 MiniLM FFN (4096 x 1536).
        assert_eq!(t.coop_tile_for(1, 128, 512), small);
        assert_eq!(t.coop_tile_for(1, 4096, 1536), large);
        let (bm, bn) = (large.bm() as usize, large.bn() as usize);
        let min = t.matmul.coop_min_groups;
        assert_eq!(t.coop_tile_for(min, bm, bn), large);
        assert_eq!(t.coop_tile_for(min - 1, bm, bn), small);
        assert_eq!(t.coop_tile_for(min - 1, bm + 1, bn), large);
        assert_eq!(CoopTile::parse(&large.to_string()), Some(large));
        // Counts an embedder could set directly: outside the ranges, never valid (so no size
        // arithmetic on them overflows).
        assert!(large.is_valid() && small.is_valid());
        for bad in [
            CoopTile {
                wm: u32::MAX,
                ..large
            },
            CoopTile { fm: 0, ..large },
            CoopTile { kf: 5, ..large },
            CoopTile { fn_: 9, ..small },
        ] {
            assert!(!bad.is_valid(), "{bad:?}");
        }
    }

    #[test]
    fn classes_follow_device_type_and_limits() {
        use wgpu::DeviceType as D;
        assert_eq!(
            AdapterClass::of(&caps(D::Cpu, 1024, 32768)),
            AdapterClass::Cpu
        );
        assert_eq!(AdapterClass::of(&caps(D::Cpu, 64, 4096)), AdapterClass::Cpu);
        for t in [D::DiscreteGpu, D::IntegratedGpu, D::VirtualGpu, D::Other] {
            assert_eq!(AdapterClass::of(&caps(t, 1024, 32768)), AdapterClass::Gpu);
            assert_eq!(
                AdapterClass::of(&caps(t, 128, 32768)),
                AdapterClass::LimitedGpu
            );
            assert_eq!(
                AdapterClass::of(&caps(t, 256, 4096)),
                AdapterClass::LimitedGpu
            );
        }
    }

    #[test]
    fn cpu_table_matches_the_old_choices() {
        let c = caps(wgpu::DeviceType::Cpu, 1024, 32768);
        let t = Tuning::for_caps(&c);
        assert_eq!(t.class, AdapterClass::Cpu);
        // Matmul: unrolled kernel and the CPU GEMV, lavapipe's tiles, packed f16 GEMV.
        assert_eq!(t.matmul.large, MatmulKernel::Unrolled);
        assert_eq!(t.matmul.large_bt, MatmulKernel::Unrolled);
        assert_eq!(t.unrolled_tile(1024, 1024, 1024, false, false), (16, 4));
        assert!(t.matmul.unrolled_subgroup_a && t.matmul.unrolled_packed_f16);
        assert_eq!(t.unrolled_tile(128, 384, 1152, true, false), (16, 4));
        // Fewer rows than the tile: exactly m below 8, else whole subgroup rows.
        assert_eq!(t.unrolled_tile(1, 384, 1152, true, false), (1, 4));
        assert_eq!(t.unrolled_tile(4, 64, 64, false, false), (4, 4));
        assert_eq!(t.unrolled_tile(0, 64, 64, true, false), (1, 4));
        assert_eq!(t.unrolled_tile(8, 64, 64, true, false), (8, 4));
        assert_eq!(t.unrolled_tile(9, 64, 64, true, false), (16, 4));
        assert_eq!(t.unrolled_tile(5, 64, 63, false, false), (4, 4));
        // One row against a wide, short [N, K] weight (an output layer): 8 columns.
        assert_eq!(t.unrolled_tile(1, 512, 65001, true, false), (1, 8));
        assert_eq!(t.unrolled_tile(1, 512, 8192, true, false), (1, 8));
        assert_eq!(t.unrolled_tile(1, 512, 8191, true, false), (1, 4));
        assert_eq!(t.unrolled_tile(1, 513, 65001, true, false), (1, 4));
        assert_eq!(t.unrolled_tile(2, 512, 65001, true, false), (2, 4));
        assert_eq!(t.unrolled_tile(1, 512, 65536, false, false), (1, 4));
        // f32 b [K, N]: 24 rows where they pad m by at most 5% more than 16 do, K % 4 == 0 and
        // vec4 columns (the 4-k subgroup form); 16 for b [N, K] and packed f16 weights.
        assert_eq!(t.unrolled_tile(1024, 1024, 1024, false, true), (24, 4));
        assert_eq!(t.unrolled_tile(1024, 1024, 1024, true, true), (16, 4));
        assert_eq!(t.unrolled_tile(200, 300, 400, false, true), (24, 4));
        assert_eq!(t.unrolled_tile(17, 64, 64, false, true), (24, 4));
        assert_eq!(t.unrolled_tile(128, 512, 512, false, true), (16, 4));
        assert_eq!(t.unrolled_tile(16, 64, 64, false, true), (16, 4));
        assert_eq!(t.unrolled_tile(4, 64, 64, false, true), (4, 4));
        assert_eq!(t.unrolled_tile(1024, 1022, 1024, false, true), (16, 4));
        assert_eq!(t.unrolled_tile(1024, 1024, 1022, false, true), (4, 4));
        assert_eq!(
            t.unrolled_tile(usize::MAX, 1024, 1024, false, true),
            (24, 4)
        );
        assert_eq!(t.matmul.unrolled_wg, 8);
        // Decode-size linears too take the unrolled kernel (with exactly m rows per tile).
        assert_eq!(t.matmul.gemv, MatmulKernel::Unrolled);
        assert_eq!(t.matmul.gemv_max_m, 4);
        let auto = |m, bt| crate::kernels::matmul::auto_kernel(&t, m, bt);
        for m in [1, 4, 5, 128] {
            assert_eq!(auto(m, true), MatmulKernel::Unrolled);
            assert_eq!(auto(m, false), MatmulKernel::Unrolled);
        }
        assert_eq!(t.blocked_tile(true, true), (8, 4));
        assert_eq!(t.blocked_tile(true, false), (8, 4));
        assert_eq!(t.blocked_tile(false, true), (8, 16));
        assert_eq!(t.blocked_tile(false, false), (4, 8));
        assert!(t.matmul.gemv_rows_packed_f16);
        // Rows: thread per row from 8 rows, workgroups of 8.
        assert_eq!(
            (t.rows.thread_per_row_min_rows, t.rows.thread_per_row_wg),
            (8, 8)
        );
        assert_eq!(
            (t.rows.wg_small, t.rows.wg_large, t.rows.short_wg),
            (8, 8, 64)
        );
        // Attention: no shared tiles, R = 4, unrolled R = 8 KT = 4 in workgroups of 8.
        let a = t.attn;
        assert_eq!((a.wg, a.kt, a.shared, a.rows), (64, 8, false, 4));
        assert_eq!(
            (a.unrolled, a.unrolled_rows, a.unrolled_kt, a.unrolled_wg),
            (true, 8, 4, 8)
        );
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        assert_eq!(a.target_groups, 4 * threads);
        // Recurrent.
        assert!(t.recurrent.stage_h);
        for b in 0..20 {
            assert_eq!(t.step_block(b), old_step_block(b, true), "batch {b}");
        }
        assert_eq!(t.rnn_fused_wg, 8);
        assert_eq!(t.encoder_tokens_per_run, 256);
        assert_eq!((t.bench.fma_groups, t.bench.fma_chain_iters), (256, 8192));
        assert_eq!(t.bench.copy_bytes, 32 << 20);
        assert_eq!(t.bench.matmul_2048_reps, Some(2));
    }

    #[test]
    fn subgroups_of_exactly_needs_the_feature_and_one_size() {
        let mut c = caps(wgpu::DeviceType::Cpu, 1024, 32768);
        assert!(c.subgroups_of_exactly(8) && !c.subgroups_of_exactly(16));
        c.subgroup_max_size = 16;
        assert!(!c.subgroups_of_exactly(8));
        c.subgroup_max_size = 8;
        c.subgroups = false;
        assert!(!c.subgroups_of_exactly(8));
    }

    #[test]
    fn gpu_table_matches_the_old_choices() {
        let c = caps(wgpu::DeviceType::DiscreteGpu, 1024, 32768);
        let t = Tuning::for_caps(&c);
        assert_eq!(t.class, AdapterClass::Gpu);
        assert_eq!(t.matmul.large, MatmulKernel::Tiled);
        assert_eq!(t.matmul.large_bt, MatmulKernel::Tiled);
        assert_eq!(t.matmul.gemv, MatmulKernel::GemvSplitK);
        let auto = |m| crate::kernels::matmul::auto_kernel(&t, m, true);
        assert_eq!(auto(1), MatmulKernel::GemvSplitK);
        assert_eq!(auto(4), MatmulKernel::GemvSplitK);
        assert_eq!(auto(5), MatmulKernel::Tiled);
        for (bt, v) in [(true, true), (false, true), (false, false)] {
            assert_eq!(t.blocked_tile(bt, v), (4, 4));
        }
        assert!(!t.matmul.gemv_rows_packed_f16);
        assert_eq!(t.rows.thread_per_row_min_rows, usize::MAX);
        assert_eq!(
            (t.rows.wg_small, t.rows.wg_large, t.rows.large_n),
            (64, 256, 1024)
        );
        let a = t.attn;
        assert_eq!(
            (a.wg, a.kt, a.target_groups, a.shared, a.unrolled),
            (64, 8, 1024, false, true)
        );
        assert_eq!((a.rows, a.unrolled_rows, a.unrolled_kt), (1, 1, 8));
        assert!(!t.recurrent.stage_h);
        for b in 0..20 {
            assert_eq!(t.step_block(b), old_step_block(b, false), "batch {b}");
        }
        assert_eq!(t.rnn_fused_wg, 64);
        assert_eq!(t.encoder_tokens_per_run, 8192);
        assert_eq!(
            (t.bench.fma_groups, t.bench.fma_chain_iters),
            (16384, 32768)
        );
        assert_eq!(t.bench.matmul_2048_reps, None);
        // A GPU under the tiled kernel's limits gets the blocked kernel and clamped row workgroups.
        let small = Tuning::for_caps(&caps(wgpu::DeviceType::IntegratedGpu, 128, 32768));
        assert_eq!(small.class, AdapterClass::LimitedGpu);
        assert_eq!(small.matmul.large, MatmulKernel::Blocked);
        assert_eq!(small.matmul.large_bt, MatmulKernel::Blocked);
        assert_eq!(small.matmul.gemv, MatmulKernel::GemvSplitK);
        assert_eq!((small.rows.wg_small, small.rows.wg_large), (64, 128));
    }

    /// The fused linear + norm rule: its row and weight bounds, the workgroup that covers N with
    /// at most `max_cols` columns per invocation, the rows per workgroup never over M, and none
    /// where N is too wide for the device's invocations.
    #[test]
    fn linear_norm_tiles() {
        let cpu = Tuning::for_caps(&caps(wgpu::DeviceType::Cpu, 256, 32768));
        let gpu = Tuning::for_caps(&caps(wgpu::DeviceType::DiscreteGpu, 1024, 49152));
        assert_eq!(gpu.matmul.linear_norm, None);
        let rule = cpu.matmul.linear_norm.unwrap();
        assert_eq!(rule.tile(1, 128, 128, 256), Some((1, 8, 16)));
        assert_eq!(rule.tile(4, 512, 128, 256), Some((4, 8, 16)));
        assert_eq!(rule.tile(8, 256, 256, 256), Some((4, 8, 32)));
        assert_eq!(rule.tile(2, 8, 3, 256), Some((2, 1, 8)));
        assert_eq!(rule.tile(9, 128, 128, 256), None);
        assert_eq!(rule.tile(1, 1024, 128, 256), None);
        assert_eq!(rule.tile(1, 512, 512, 256), None);
        let any = LinearNorm::PORTABLE;
        assert_eq!(any.tile(100, 4096, 1000, 256), Some((1, 8, 128)));
        assert_eq!(any.tile(1, 8, 2048, 256), Some((1, 8, 256)));
        assert_eq!(any.tile(1, 8, 2049, 256), None);
    }

    #[test]
    fn overrides_apply_and_check_the_workgroup_limit() {
        let c = caps(wgpu::DeviceType::Cpu, 256, 32768);
        let base = Tuning::for_caps(&c);
        assert_eq!(
            base.with_overrides(&TuningOverrides::default(), &c),
            Ok(base)
        );
        let o = TuningOverrides {
            attn_rows: Some(2),
            attn_kt: Some(16),
            attn_wg: Some(32),
            attn_shared: Some(true),
            attn_unrolled: Some(false),
            coop_auto: Some(true),
            coop_tile: CoopTile::parse("4x1x1x2"),
            coop_tile_small: CoopTile::parse("1x1x1x1x4"),
            attn_decode_workgroup: Some(true),
            attn_subgroup: Some(false),
            attn_coop: Some(true),
            attn_coop_tile: CoopAttnTile::parse("4x1"),
        };
        let t = base.with_overrides(&o, &c).unwrap();
        assert!(t.matmul.coop_auto && t.attn.decode_workgroup && !t.attn.unrolled_subgroup);
        assert!(t.attn.coop);
        assert_eq!(t.attn.coop_tile, Some(CoopAttnTile { ns: 4, nkf: 1 }));
        assert_eq!(
            (Some(t.matmul.coop_tile), Some(t.matmul.coop_tile_small)),
            (CoopTile::parse("4x1x1x2"), CoopTile::parse("1x1x1x1x4"))
        );
        let a = t.attn;
        assert_eq!(
            (a.rows, a.unrolled_rows, a.kt, a.unrolled_kt),
            (2, 2, 16, 16)
        );
        assert_eq!(
            (a.wg, a.unrolled_wg, a.shared, a.unrolled),
            (32, 32, true, false)
        );
        let too_big = TuningOverrides {
            attn_wg: Some(512),
            ..Default::default()
        };
        let e = base.with_overrides(&too_big, &c).unwrap_err();
        assert_eq!(e.var, "HEEDFUL_ATTN_WG");
        assert!(e.to_string().contains("1..=256"), "{e}");
    }
}
