//! The flash kernel on cooperative matrices ([`Plan::FlashCoop`](super::Plan::FlashCoop)):
//! `shaders/sdpa_coop.wgsl` with its markers filled, its block chosen to fit the device, and its
//! dispatch.
//!
//! Two forms share the template. The hardware form issues `coopLoad` / `coopMultiplyAdd` /
//! `coopStore` on 16 x 16 f16 fragments with f32 accumulators (adapters with
//! [`Caps::coop_f16`]). The emulated form computes the same products from the same staged f16
//! halves with plain loops, in "subgroups" of [`EMULATED_SG`] invocations that share workgroup
//! memory, on any adapter: it is slow, and exists so that the kernel's staging, masking, online
//! softmax and stores are tested on every machine, lavapipe included, while only the fragment
//! instructions need an adapter that has them.

use super::{
    attn_bindings, loader, params_prologue, AttnDims, Heads, Params, MASK_SRC, MAX_HEAD_DIM,
};
use crate::error::{Error, Result};
use crate::gpu::spec::Bindings;
pub use crate::gpu::CoopAttnTile;
use crate::gpu::{compose, Caps, Gpu, Recorder};
use crate::tensor::{DType, Tensor};
use std::fmt::Write;

const TEMPLATE: &str = include_str!("../../../shaders/sdpa_coop.wgsl");

/// Invocations per emulated subgroup: the width of NVIDIA's subgroups, so that the lanes' row and
/// element loops run as they do there (16 rows over 32 lanes: half the lanes idle in the softmax).
pub const EMULATED_SG: u32 = 32;

/// Blocks tried, largest first, where the tuning table names none.
const TILES: [CoopAttnTile; 4] = [
    CoopAttnTile { ns: 4, nkf: 2 },
    CoopAttnTile { ns: 2, nkf: 2 },
    CoopAttnTile { ns: 2, nkf: 1 },
    CoopAttnTile { ns: 1, nkf: 1 },
];

/// `n` rounded up to a multiple of 16 (a fragment's side).
fn pad16(n: usize) -> u32 {
    n.div_ceil(16) as u32 * 16
}

/// Workgroup memory of the kernel in bytes for `tile`, head dims `d` and `dv`, staged halves of
/// `half_bytes` bytes (2 for f16, 4 where the emulated form stages f32). Saturates instead of
/// overflowing, so any block or head dim a caller passes compares as too large.
pub fn workgroup_bytes(tile: CoopAttnTile, d: usize, dv: usize, half_bytes: u32) -> u64 {
    let pad = |n: usize| (n as u64).div_ceil(16).saturating_mul(16);
    let (dp, dvp) = (pad(d), pad(dv));
    let (bq, bkt) = (u64::from(tile.ns) * 16, u64::from(tile.nkf) * 16);
    let rows = |n: u64, len: u64| n.saturating_mul(len.saturating_add(8));
    let halves = rows(bq, dp)
        .saturating_add(rows(bkt, dp))
        .saturating_add(rows(bkt, dvp))
        .saturating_add(rows(bq, bkt))
        .saturating_mul(2);
    let floats = bq
        .saturating_mul(bkt)
        .saturating_add(bq.saturating_mul(dvp.saturating_add(4)))
        .saturating_add(3 * bq);
    halves
        .saturating_mul(u64::from(half_bytes))
        .saturating_add(floats.saturating_mul(4))
}

/// How the kernel runs on `caps`: the hardware form with the device's subgroup width where the
/// adapter offers 16x16x16 f16 cooperative matrices, else the emulated form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopForm {
    /// Cooperative-matrix instructions (else plain loops).
    pub hardware: bool,
    /// Lanes per subgroup.
    pub sg: u32,
    /// Staged halves are f16 (else f32 values rounded to f16: adapters without shader f16).
    pub f16: bool,
}

impl CoopForm {
    /// The form `caps` runs.
    pub fn for_caps(caps: &Caps) -> CoopForm {
        if caps.coop_f16 {
            CoopForm {
                hardware: true,
                sg: caps.subgroup_max_size,
                f16: true,
            }
        } else {
            CoopForm {
                hardware: false,
                sg: EMULATED_SG,
                f16: caps.native_f16,
            }
        }
    }

    fn half_bytes(self) -> u32 {
        if self.f16 {
            2
        } else {
            4
        }
    }
}

/// Whether `tile`'s workgroup fits `caps` for head dims `d`, `dv` in `form`.
pub fn coop_attn_fits(
    caps: &Caps,
    form: CoopForm,
    tile: CoopAttnTile,
    d: usize,
    dv: usize,
) -> bool {
    tile.is_valid()
        && d <= MAX_HEAD_DIM
        && dv <= MAX_HEAD_DIM
        && tile.ns * form.sg <= caps.max_invocations
        && workgroup_bytes(tile, d, dv, form.half_bytes()) <= u64::from(caps.max_workgroup_storage)
}

/// The block for head dims `d`, `dv` in `form`: `wanted` (the tuning table's,
/// [`AttnTuning::coop_tile`](crate::gpu::AttnTuning::coop_tile)) if it fits, else, where none is
/// wanted, the largest of 4x2, 2x2, 2x1 and 1x1 that fits; `None` when nothing fits.
pub fn coop_attn_tile(
    caps: &Caps,
    form: CoopForm,
    d: usize,
    dv: usize,
    wanted: Option<CoopAttnTile>,
) -> Option<CoopAttnTile> {
    match wanted {
        Some(t) => coop_attn_fits(caps, form, t, d, dv).then_some(t),
        None => TILES
            .into_iter()
            .find(|&t| coop_attn_fits(caps, form, t, d, dv)),
    }
}

/// `shaders/sdpa_coop.wgsl` with its markers filled for `tile`, head dims `d` and `dv`, in
/// `form` (the body after the generated declarations; see [`coop_flash_wgsl`]).
pub fn coop_flash_body(tile: CoopAttnTile, d: usize, dv: usize, form: CoopForm) -> String {
    let (dc, jc, nkf) = (
        pad16(d) as usize / 16,
        pad16(dv) as usize / 16,
        tile.nkf as usize,
    );
    let half = if form.f16 {
        "alias H = f16;\nfn half(x: f32) -> H { return H(x); }"
    } else {
        "alias H = f32;\nfn half(x: f32) -> H { return quantizeToF16(x); }"
    };
    let (args, lanes, qfrag, scores, pv, emulated);
    if form.hardware {
        args = ", @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32";
        lanes = String::new();
        qfrag = hardware_q_fragments(dc);
        scores = hardware_scores(dc, nkf);
        pv = hardware_pv(jc, nkf);
        emulated = String::new();
    } else {
        args = "";
        lanes = "    let sg = lid / SG;\n    let lane = lid % SG;".to_string();
        qfrag = String::new();
        scores = "        scores_emulated(sg, lane);".to_string();
        pv = "        pv_emulated(sg, lane);".to_string();
        emulated = EMULATED_PRODUCTS.to_string();
    }
    crate::gpu::pipeline::fill_template(
        TEMPLATE,
        &[
            ("HALF", half),
            ("PUT", &put_functions()),
            ("EMULATED", &emulated),
            ("ARGS", args),
            ("LANES", &lanes),
            ("QFRAG", &qfrag),
            ("SCORES", &scores),
            ("PV", &pv),
        ],
    )
}

/// `put_q`, `put_k` and `put_v`: the hi and lo halves of 4 values into the staged q, k or v (WGSL
/// cannot pass a workgroup array of one size or another to one function).
fn put_functions() -> String {
    let mut s = String::new();
    for arr in ["q", "k", "v"] {
        let _ = writeln!(
            s,
            "fn put_{arr}(o: u32, v: vec4<f32>) {{
    for (var e = 0u; e < 4u; e++) {{
        let h = hi_of(v[e]);
        {arr}_hi[o + e] = half(h);
        {arr}_lo[o + e] = half(clamp(v[e], -F16_MAX, F16_MAX) - h);
    }}
}}"
        );
    }
    s
}

/// The products of the emulated form: each lane takes elements `lane, lane + SG, ..` of the
/// subgroup's 16-row block and sums over the same halves and in the same three terms as the
/// fragment instructions.
const EMULATED_PRODUCTS: &str = "
// S = Q K^T for subgroup sg's rows (what the hardware form's fragments compute).
fn scores_emulated(sg: u32, lane: u32) {
    for (var e = lane; e < 16u * BKT; e += SG) {
        let r = sg * 16u + e / BKT;
        let t = e % BKT;
        var acc = 0.0;
        for (var d = 0u; d < DP; d++) {
            let qh = f32(q_hi[r * LDQ + d]);
            let ql = f32(q_lo[r * LDQ + d]);
            let kh = f32(k_hi[t * LDK + d]);
            let kl = f32(k_lo[t * LDK + d]);
            acc += ql * kh + qh * kl + qh * kh;
        }
        s_s[r * BKT + t] = acc;
    }
}

// o_s += P V for subgroup sg's rows.
fn pv_emulated(sg: u32, lane: u32) {
    for (var e = lane; e < 16u * DVP; e += SG) {
        let r = sg * 16u + e / DVP;
        let c = e % DVP;
        var acc = o_s[r * LDO + c];
        for (var t = 0u; t < BKT; t++) {
            let ph = f32(p_hi[r * LDP + t]);
            let pl = f32(p_lo[r * LDP + t]);
            let vh = f32(v_hi[t * LDV + c]);
            let vl = f32(v_lo[t * LDV + c]);
            acc += pl * vh + ph * vl + ph * vh;
        }
        o_s[r * LDO + c] = acc;
    }
}
";

/// `let {arr}h{i}` and `let {arr}l{i}`: the hi and lo fragments of `role` (`A` or `B`) at element
/// `offset` of the staged halves `{arr}_hi` / `{arr}_lo` (row stride `ld`), loaded row-major
/// (`coopLoadT`) or column-major (`coopLoad`).
fn load_halves(
    s: &mut String,
    (arr, i): (&str, usize),
    role: &str,
    row_major: bool,
    offset: &str,
    ld: &str,
) {
    let load = if row_major { "coopLoadT" } else { "coopLoad" };
    for (half, suffix) in [("h", "hi"), ("l", "lo")] {
        let _ = writeln!(
            s,
            "        let {arr}{half}{i} = {load}<coop_mat16x16<f16, {role}>>(&{arr}_{suffix}[{offset}], {ld});"
        );
    }
}

/// `acc += x y` for the split operands loaded by [`load_halves`] as `x` and `y`: three fragment
/// products, the small terms first (`x_lo y_hi`, `x_hi y_lo`, then `x_hi y_hi`), so the
/// accumulator adds the largest term last.
fn split_products(s: &mut String, acc: &str, (x, i): (&str, usize), (y, j): (&str, usize)) {
    for (a, b) in [("l", "h"), ("h", "l"), ("h", "h")] {
        let _ = writeln!(
            s,
            "        {acc} = coopMultiplyAdd({x}{a}{i}, {y}{b}{j}, {acc});"
        );
    }
}

/// The subgroup's q block as `dc` hi and lo A fragments (row-major in q_hi / q_lo), loaded once.
fn hardware_q_fragments(dc: usize) -> String {
    let mut s = String::new();
    for c in 0..dc {
        let offset = format!("sg * 16u * LDQ + {}u", 16 * c);
        load_halves(&mut s, ("q", c), "A", true, &offset, "LDQ");
    }
    s
}

/// S = Q K^T: per 16-key fragment, the keys as B fragments (k staged key-major is a column-major
/// K^T), three products per 16 dims, stored row-major to s_s.
fn hardware_scores(dc: usize, nkf: usize) -> String {
    let mut s = String::new();
    for f in 0..nkf {
        let _ = writeln!(s, "        {{\n        var s{f} = coop_mat16x16<f32, C>();");
        for c in 0..dc {
            let offset = format!("{}u * LDK + {}u", 16 * f, 16 * c);
            load_halves(&mut s, ("k", c), "B", false, &offset, "LDK");
            split_products(&mut s, &format!("s{f}"), ("q", c), ("k", c));
        }
        let _ = writeln!(
            s,
            "        coopStoreT(s{f}, &s_s[sg * 16u * BKT + {}u], BKT);\n        }}",
            16 * f
        );
    }
    s
}

/// o_s += P V: the subgroup's P as A fragments (row-major), v staged key-major as row-major B
/// fragments, each 16-column output fragment loaded from o_s, updated and stored back.
fn hardware_pv(jc: usize, nkf: usize) -> String {
    let mut s = String::new();
    for f in 0..nkf {
        let offset = format!("sg * 16u * LDP + {}u", 16 * f);
        load_halves(&mut s, ("p", f), "A", true, &offset, "LDP");
    }
    for j in 0..jc {
        let _ = writeln!(
            s,
            "        {{\n        var o{j} = coopLoadT<coop_mat16x16<f32, C>>(&o_s[sg * 16u * LDO + {}u], LDO);",
            16 * j
        );
        for f in 0..nkf {
            let offset = format!("{}u * LDV + {}u", 16 * f, 16 * j);
            load_halves(&mut s, ("v", f), "B", true, &offset, "LDV");
            split_products(&mut s, &format!("o{j}"), ("p", f), ("v", f));
        }
        let _ = writeln!(
            s,
            "        coopStoreT(o{j}, &o_s[sg * 16u * LDO + {}u], LDO);\n        }}",
            16 * j
        );
    }
    s
}

/// The whole WGSL of the kernel: enables, constants, the generated declarations of `binds`
/// (q, k, v read in vec4 units when `vec`), the loaders, the mask fragment and the body.
pub fn coop_flash_wgsl(
    binds: &dyn Bindings,
    tile: CoopAttnTile,
    dims: &AttnDims,
    vec: bool,
    form: CoopForm,
) -> String {
    let mut decls = vec![params_prologue()];
    decls.extend(binds.wgsl());
    decls.push(loader("q", "D"));
    decls.push(loader("k", "D"));
    decls.push(loader("v", "DV"));
    decls.push(MASK_SRC.to_string());
    let composed = compose(
        &coop_flash_body(tile, dims.d, dims.dv, form),
        form.f16,
        &[
            ("SG", form.sg),
            ("NS", tile.ns),
            ("NKF", tile.nkf),
            ("WG", tile.ns * form.sg),
            ("D", dims.d as u32),
            ("DV", dims.dv as u32),
            ("DP", pad16(dims.d)),
            ("DVP", pad16(dims.dv)),
            ("D4", dims.d.div_ceil(4) as u32),
            ("DV4", dims.dv.div_ceil(4) as u32),
            ("VEC", vec as u32),
        ],
        &decls,
    );
    if form.hardware {
        format!("enable wgpu_cooperative_matrix;\n{composed}")
    } else {
        composed
    }
}

/// Records the cooperative-matrix flash kernel for a call [`record_sdpa`](super::record_sdpa)
/// has checked: `p` holds the sizes, views, mask, causal rule and scale; `mask` is the mask tensor
/// (a dummy when none); `lse` receives each row's log-sum-exp when given.
#[allow(clippy::too_many_arguments)]
pub(super) fn record_flash_coop(
    rec: &mut Recorder,
    dims: &AttnDims,
    qkvm: [&Tensor; 4],
    out: &Heads,
    mut p: Params,
    vec: bool,
    lse: Option<&Tensor>,
    op: &str,
) -> Result<()> {
    let gpu: Gpu = rec.gpu().clone();
    let caps = gpu.caps();
    let form = CoopForm::for_caps(caps);
    let wanted = gpu.tuning().attn.coop_tile;
    let tile = coop_attn_tile(caps, form, dims.d, dims.dv, wanted).ok_or_else(|| {
        // The block that was wanted, or the smallest there is.
        let t = wanted.unwrap_or(TILES[TILES.len() - 1]);
        Error::invalid(
            op,
            format!(
                "the cooperative-matrix flash kernel does not fit this device for head dims {} and \
                 {}: block {t} needs {} invocations and {} B of workgroup memory, the device \
                 allows {} and {} B",
                dims.d,
                dims.dv,
                u64::from(t.ns) * u64::from(form.sg),
                workgroup_bytes(t, dims.d, dims.dv, form.half_bytes()),
                caps.max_invocations,
                caps.max_workgroup_storage
            ),
        )
    })?;
    let stats = match lse {
        Some(l) => l.clone(),
        None => Tensor::zeros(&gpu, &[4], DType::F32)?,
    };
    let binds = attn_bindings(qkvm, out.tensor, &stats, vec, false);
    let variant = (tile, form, dims.d, dims.dv, vec);
    let pipe = gpu.pipeline("sdpa_coop", &variant, || {
        coop_flash_wgsl(&binds, tile, dims, vec, form)
    })?;
    let bq = (tile.ns * 16) as usize;
    p.nsplit = 1;
    p.row_blocks = u32::try_from(dims.tq.div_ceil(bq))
        .map_err(|_| Error::invalid(op, format!("{} query rows", dims.tq)))?;
    let bh = u32::try_from(dims.b * dims.h).unwrap_or(u32::MAX);
    let disp = gpu.dispatch(
        "sdpa_coop",
        &pipe,
        bytemuck::bytes_of(&p),
        &binds.buffers(),
        [p.row_blocks, bh, 1],
    )?;
    rec.push(disp);
    Ok(())
}
