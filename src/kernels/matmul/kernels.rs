//! Dispatch of the register-blocked (`shaders/matmul.wgsl`), workgroup-tiled
//! (`shaders/matmul_tiled.wgsl`) and cooperative-matrix (`shaders/matmul_coop.wgsl`) kernels for a
//! validated [`Problem`].

use super::problem::{grid, MatmulBindings, Problem};
use crate::error::{Error, Result};
use crate::gpu::spec::Bindings;
use crate::gpu::{compose, Elem, Recorder};

const SRC_BLOCKED: &str = include_str!("../../../shaders/matmul.wgsl");
const SRC_TILED: &str = include_str!("../../../shaders/matmul_tiled.wgsl");
const SRC_COOP: &str = include_str!("../../../shaders/matmul_coop.wgsl");

/// Pipeline key of the register-blocked kernel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BlockedKey {
    tm: u32,
    tn: u32,
    wg: u32,
    bt: bool,
    vk: bool,
    vn: bool,
    b: Elem,
    bias: Option<Elem>,
}

/// The register tile (rows x columns of outputs per thread) for a problem.
///
/// Measured on lavapipe (llvmpipe, 8 lanes), 1024^3 f32 as a share of the FMA peak shader (CPU time
/// of both, so other load on the machine cancels out): with `b [K, N]` and N % 4 == 0 an 8 x 16
/// tile ran at about 40% (4 x 4: 19%, 8 x 8: 32%; over 128 outputs per thread falls off a cliff to
/// about 12%); with `b [N, K]` 8 x 4 and 4 x 8 tie at about 31%; the scalar path (N % 4 != 0) is
/// best at 4 x 8 (about 16%). Other adapters only get this kernel when it is forced: 4 x 4. The
/// tiles live in the tuning table ([`MatmulTuning`](crate::gpu::MatmulTuning)).
pub(super) fn blocked_tile(rec: &Recorder, p: &Problem) -> (u32, u32) {
    rec.gpu().tuning().blocked_tile(p.bt, p.n.is_multiple_of(4))
}

/// Register-blocked kernel with a `tm x tn` tile per thread. `prefer_packed` reads f16 `b` as packed
/// u32 even where the device reads f16 natively (faster for the CPU GEMV: 32-bit gathers).
pub(super) fn record_blocked(
    rec: &mut Recorder,
    p: &Problem,
    (tm, tn): (u32, u32),
    prefer_packed: bool,
) -> Result<()> {
    if tm == 0 || tn == 0 || tm > 16 || tn > 16 || tm * tn > 128 {
        return Err(Error::invalid(
            p.op,
            format!("register tile {tm}x{tn}: each side must be 1..=16 with at most 128 outputs"),
        ));
    }
    let gpu = rec.gpu().clone();
    let vk = p.k.is_multiple_of(4);
    let vn = !p.bt && p.n.is_multiple_of(4) && tn.is_multiple_of(4);
    let mut b = p.b_elem(rec)?;
    if prefer_packed && b == Elem::F16 {
        b = Elem::F16Packed;
    }
    // Threads per workgroup, all along N: a power of two from 8 (one SIMD batch on lavapipe) to 64
    // that covers N without a mostly idle second workgroup.
    let wg = (p.n.div_ceil(tn as usize).next_power_of_two() as u32).clamp(8, 64);
    let key = BlockedKey {
        tm,
        tn,
        wg,
        bt: p.bt,
        vk,
        vn,
        b,
        bias: p.bias_elem(rec)?,
    };
    let binds = p.bindings(
        key.vk,
        key.b,
        if key.bt { key.vk } else { key.vn },
        key.bias,
    );
    let pipeline = gpu.pipeline("matmul", &key, || {
        compose(
            SRC_BLOCKED,
            binds.needs_f16(),
            &[
                ("TM", key.tm),
                ("TN", key.tn),
                ("TN4", (key.tn / 4).max(1)),
                ("WG", key.wg),
                ("BT", key.bt as u32),
                ("VK", key.vk as u32),
                ("VN", key.vn as u32),
            ],
            &binds.prologue(),
        )
    })?;
    let tiles_n = p.n.div_ceil((key.wg * key.tn) as usize);
    let tiles_m = p.m.div_ceil(key.tm as usize);
    let groups = tiles_n * tiles_m * p.batch;
    let params = p.params(tiles_n, tiles_m);
    let d = gpu.dispatch(
        "matmul",
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        grid(rec, p.op, groups)?,
    )?;
    rec.push(d);
    Ok(())
}

/// Pipeline key of the tiled kernel.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TiledKey {
    bt: bool,
    b: Elem,
    bias: Option<Elem>,
}

pub(super) fn record_tiled(rec: &mut Recorder, p: &Problem) -> Result<()> {
    let gpu = rec.gpu().clone();
    let key = TiledKey {
        bt: p.bt,
        b: p.b_elem(rec)?,
        bias: p.bias_elem(rec)?,
    };
    let binds = p.bindings(false, key.b, false, key.bias);
    let pipeline = gpu.pipeline("matmul_tiled", &key, || {
        compose(
            SRC_TILED,
            binds.needs_f16(),
            &[("BT", key.bt as u32)],
            &binds.prologue(),
        )
    })?;
    push_tiles(rec, p, "matmul_tiled", &pipeline, &binds, 64)
}

/// Records one workgroup per `tile x tile` block of the output (per batch item) with the matmul
/// family's `Params`: the grid of the tiled and cooperative-matrix kernels.
fn push_tiles(
    rec: &mut Recorder,
    p: &Problem,
    label: &'static str,
    pipeline: &wgpu::ComputePipeline,
    binds: &MatmulBindings<'_>,
    tile: usize,
) -> Result<()> {
    let (tiles_n, tiles_m) = (p.n.div_ceil(tile), p.m.div_ceil(tile));
    let params = p.params(tiles_n, tiles_m);
    let d = rec.gpu().dispatch(
        label,
        pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        grid(rec, p.op, tiles_n * tiles_m * p.batch)?,
    )?;
    rec.push(d);
    Ok(())
}

/// The cooperative-matrix kernel's full WGSL for `p` on a subgroup of `subgroup` invocations
/// (whether or not the adapter offers the feature: the tests validate it with naga everywhere).
pub(super) fn coop_source(rec: &Recorder, p: &Problem, subgroup: u32) -> Result<String> {
    let (b, bias) = (p.b_elem(rec)?, p.bias_elem(rec)?);
    Ok(coop_wgsl(
        &p.bindings(false, b, false, bias),
        p.bt,
        subgroup,
    ))
}

/// [`coop_source`] from the bindings already made (the pipeline cache calls it on a miss only).
fn coop_wgsl(binds: &MatmulBindings<'_>, bt: bool, subgroup: u32) -> String {
    format!(
        "enable wgpu_cooperative_matrix;\n{}",
        compose(
            SRC_COOP,
            true,
            &[("BT", bt as u32), ("WG", subgroup)],
            &binds.prologue()
        )
    )
}

/// Cooperative-matrix kernel (tensor cores): 32 x 32 output tiles, one subgroup per workgroup.
/// Only for adapters with [`Caps::coop_f16`](crate::gpu::Caps::coop_f16) and f16 `b`.
pub(super) fn record_coop(rec: &mut Recorder, p: &Problem) -> Result<()> {
    let gpu = rec.gpu().clone();
    let caps = gpu.caps();
    let key = TiledKey {
        bt: p.bt,
        b: p.b_elem(rec)?,
        bias: p.bias_elem(rec)?,
    };
    if !caps.coop_f16 || key.b != Elem::F16 {
        return Err(Error::invalid(
            p.op,
            format!(
                "the cooperative-matrix kernel needs an adapter with 16x16x16 f16 cooperative \
                 matrices (this one: {}) and f16 b (b is {:?})",
                if caps.coop_f16 { "yes" } else { "no" },
                key.b
            ),
        ));
    }
    let subgroup = caps.subgroup_max_size;
    let binds = p.bindings(false, key.b, false, key.bias);
    let pipeline = gpu.pipeline("matmul_coop", &(key.clone(), subgroup), || {
        coop_wgsl(&binds, key.bt, subgroup)
    })?;
    push_tiles(rec, p, "matmul_coop", &pipeline, &binds, 32)
}
