//! The flash kernel on cooperative matrices ([`Plan::FlashCoop`](super::Plan::FlashCoop)):
//! `shaders/sdpa_coop.wgsl` with its markers filled, its block chosen to fit the device, and its
//! dispatch.
//!
//! Two forms share the template and the code generated here. The hardware form issues
//! `coopLoad` / `coopMultiplyAdd` / `coopStore` on 16 x 16 f16 fragments with f32 accumulators
//! (adapters with [`Caps::coop_f16`]). The emulated form is the same generated code with each of
//! those instructions spelled as a call of a function with the same meaning ([`Frags`]), in
//! "subgroups" of [`EMULATED_SG`] invocations that share workgroup memory: it runs on any adapter,
//! so the kernel's staging, fragment offsets, strides and layouts, product order, masking, online
//! softmax and stores are tested on every machine, lavapipe included; only the instructions
//! themselves need an adapter that has them. Their meaning is taken from the tensor-core matmul
//! (`shaders/matmul_coop.wgsl`), whose reference tests passed on an H200: `coopLoadT` reads a
//! fragment row-major (element (r, c) at `offset + r * stride + c`), `coopLoad` column-major
//! (`offset + c * stride + r`), `coopStoreT` writes row-major.

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

/// Workgroup memory of the kernel in bytes for `tile`, head dims `d` and `dv`, in `form` (staged
/// halves of 2 bytes, or 4 where the emulated form stages f32; the emulated form's `frag_side`
/// word). Saturates instead of overflowing, so any block or head dim a caller passes compares as
/// too large.
pub fn workgroup_bytes(tile: CoopAttnTile, d: usize, dv: usize, form: CoopForm) -> u64 {
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
    let words = floats.saturating_add(u64::from(!form.hardware));
    halves
        .saturating_mul(u64::from(form.half_bytes()))
        .saturating_add(words.saturating_mul(4))
}

/// How the kernel runs on `caps`: the hardware form with the device's subgroup width where the
/// adapter offers 16x16x16 f16 cooperative matrices, else the emulated form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopForm {
    /// Cooperative-matrix instructions (else the same code with them emulated).
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
        && workgroup_bytes(tile, d, dv, form) <= u64::from(caps.max_workgroup_storage)
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
    let frags = if form.hardware {
        Frags::Hardware
    } else {
        Frags::Emulated
    };
    let (args, lanes, emulated);
    if form.hardware {
        args = ", @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32";
        lanes = String::new();
        emulated = String::new();
    } else {
        args = "";
        // `frag_side` is read back after the first barrier (see `emulated_fragments`).
        lanes = "    let sg = lid / SG;\n    let lane = lid % SG;\n    \
                 if (lid == 0u) {\n        frag_side = 16u;\n    }"
            .to_string();
        emulated = emulated_fragments();
    }
    let qfrag = q_fragments(frags, dc);
    let scores = score_fragments(frags, dc, nkf);
    let pv = pv_fragments(frags, jc, nkf);
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

/// How the generated code spells the fragment instructions: wgpu's cooperative-matrix builtins,
/// or calls of the emulated form's functions of the same meaning ([`emulated_fragments`]). Both
/// forms are written by the same generators below, so they differ only here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frags {
    Hardware,
    Emulated,
}

impl Frags {
    /// `let {name} =` the 16 x 16 f16 fragment of `role` (`A` or `B`) at element `offset` of the
    /// workgroup array `arr` (row stride `ld`), row-major or column-major. Emulated: a reference
    /// to those elements (offset and the strides of a row and a column), read by the products;
    /// the arrays a fragment is loaded from are not written before its last product.
    fn load(
        self,
        s: &mut String,
        name: &str,
        (arr, role): (&str, &str),
        row_major: bool,
        offset: &str,
        ld: &str,
    ) {
        let _ = match self {
            Frags::Hardware => {
                let load = if row_major { "coopLoadT" } else { "coopLoad" };
                writeln!(
                    s,
                    "        let {name} = {load}<coop_mat16x16<f16, {role}>>(&{arr}[{offset}], {ld});"
                )
            }
            Frags::Emulated => {
                let (rs, cs) = if row_major { (ld, "1u") } else { ("1u", ld) };
                writeln!(s, "        let {name} = Frag({offset}, {rs}, {cs});")
            }
        };
    }

    /// `var {name} =` a zero f32 accumulator fragment.
    fn zero(self, s: &mut String, name: &str) {
        let ty = match self {
            Frags::Hardware => "coop_mat16x16<f32, C>",
            Frags::Emulated => "Acc",
        };
        let _ = writeln!(s, "        var {name} = {ty}();");
    }

    /// `var {name} =` the f32 accumulator fragment at element `offset` of `arr`, row-major.
    fn load_acc(self, s: &mut String, name: &str, arr: &str, offset: &str, ld: &str) {
        let _ = match self {
            Frags::Hardware => writeln!(
                s,
                "        var {name} = coopLoadT<coop_mat16x16<f32, C>>(&{arr}[{offset}], {ld});"
            ),
            Frags::Emulated => writeln!(
                s,
                "        var {name} = acc_load_{arr}(lane, {offset}, {ld});"
            ),
        };
    }

    /// Stores the accumulator `name` at element `offset` of `arr`, row-major.
    fn store_acc(self, s: &mut String, name: &str, arr: &str, offset: &str, ld: &str) {
        let _ = match self {
            Frags::Hardware => writeln!(s, "        coopStoreT({name}, &{arr}[{offset}], {ld});"),
            Frags::Emulated => {
                writeln!(s, "        acc_store_{arr}({name}, lane, {offset}, {ld});")
            }
        };
    }

    /// `acc += x y` for fragments `x` (A, loaded from `x_arr`) and `y` (B, from `y_arr`).
    fn mad(self, s: &mut String, acc: &str, (x, x_arr): (&str, &str), (y, y_arr): (&str, &str)) {
        let _ = match self {
            Frags::Hardware => writeln!(s, "        {acc} = coopMultiplyAdd({x}, {y}, {acc});"),
            Frags::Emulated => writeln!(
                s,
                "        {acc} = mad_{x_arr}_{y_arr}({x}, {y}, {acc}, lane);"
            ),
        };
    }
}

/// The emulated form's fragment functions. An f16 fragment is a reference `Frag` into workgroup
/// memory; an accumulator is spread over the subgroup as the hardware spreads it: lane `l` holds
/// elements `l, l + SG, ..` of the 16 x 16 matrix (row-major numbering), so loads and stores touch
/// only the lane's own elements. A product sums its 16 terms in k order. The loops run to
/// `frag_side`, a fragment's side (16) read from workgroup memory: with constant bounds the
/// shader compiler unrolled every inlined product, and lavapipe took minutes to compile the
/// kernel.
fn emulated_fragments() -> String {
    let mut s = String::from(
        "
const FE: u32 = 256u / SG;
alias Acc = array<f32, FE>;
// Element (r, c) of a fragment lies at off + r * rs + c * cs of the array it was loaded from.
struct Frag { off: u32, rs: u32, cs: u32 }
// 16, written by invocation 0 before the first barrier (workgroup-init: self).
var<workgroup> frag_side: u32;
",
    );
    for arr in ["s_s", "o_s"] {
        let _ = write!(
            s,
            "
fn acc_load_{arr}(lane: u32, off: u32, ld: u32) -> Acc {{
    var a = Acc();
    let fe = frag_side * frag_side / SG;
    for (var i = 0u; i < fe; i++) {{
        let e = lane + SG * i;
        a[i] = {arr}[off + (e / 16u) * ld + e % 16u];
    }}
    return a;
}}
fn acc_store_{arr}(a: Acc, lane: u32, off: u32, ld: u32) {{
    let fe = frag_side * frag_side / SG;
    for (var i = 0u; i < fe; i++) {{
        let e = lane + SG * i;
        {arr}[off + (e / 16u) * ld + e % 16u] = a[i];
    }}
}}
"
        );
    }
    for (x, y) in [("q", "k"), ("p", "v")] {
        for xs in ["hi", "lo"] {
            for ys in ["hi", "lo"] {
                let _ = write!(
                    s,
                    "
fn mad_{x}_{xs}_{y}_{ys}(a: Frag, b: Frag, c: Acc, lane: u32) -> Acc {{
    var o = c;
    let side = frag_side;
    let fe = side * side / SG;
    // One loop over (element, k), k fastest: each element's terms are added in k order.
    for (var t = 0u; t < fe * side; t++) {{
        let i = t / side;
        let k = t % side;
        let e = lane + SG * i;
        let r = e / side;
        let col = e % side;
        o[i] += f32({x}_{xs}[a.off + r * a.rs + k * a.cs]) * f32({y}_{ys}[b.off + k * b.rs + col * b.cs]);
    }}
    return o;
}}
"
                );
            }
        }
    }
    s
}

/// `{arr}h{i}` and `{arr}l{i}`: the hi and lo fragments of `role` (`A` or `B`) at element
/// `offset` of the staged halves `{arr}_hi` / `{arr}_lo` (row stride `ld`), loaded row-major
/// (`coopLoadT`) or column-major (`coopLoad`).
fn load_halves(
    s: &mut String,
    frags: Frags,
    (arr, i): (&str, usize),
    role: &str,
    row_major: bool,
    offset: &str,
    ld: &str,
) {
    for (half, suffix) in [("h", "hi"), ("l", "lo")] {
        frags.load(
            s,
            &format!("{arr}{half}{i}"),
            (&format!("{arr}_{suffix}"), role),
            row_major,
            offset,
            ld,
        );
    }
}

/// `acc += x y` for the split operands loaded by [`load_halves`] as `x` and `y`: three fragment
/// products, the small terms first (`x_lo y_hi`, `x_hi y_lo`, then `x_hi y_hi`), so the
/// accumulator adds the largest term last.
fn split_products(
    s: &mut String,
    frags: Frags,
    acc: &str,
    (x, i): (&str, usize),
    (y, j): (&str, usize),
) {
    let half = |h: &str| if h == "h" { "hi" } else { "lo" };
    for (a, b) in [("l", "h"), ("h", "l"), ("h", "h")] {
        frags.mad(
            s,
            acc,
            (&format!("{x}{a}{i}"), &format!("{x}_{}", half(a))),
            (&format!("{y}{b}{j}"), &format!("{y}_{}", half(b))),
        );
    }
}

/// The subgroup's q block as `dc` hi and lo A fragments (row-major in q_hi / q_lo), loaded once.
fn q_fragments(frags: Frags, dc: usize) -> String {
    let mut s = String::new();
    for c in 0..dc {
        let offset = format!("sg * 16u * LDQ + {}u", 16 * c);
        load_halves(&mut s, frags, ("q", c), "A", true, &offset, "LDQ");
    }
    s
}

/// S = Q K^T: per 16-key fragment, the keys as B fragments (k staged key-major is a column-major
/// K^T), three products per 16 dims, stored row-major to s_s.
fn score_fragments(frags: Frags, dc: usize, nkf: usize) -> String {
    let mut s = String::new();
    for f in 0..nkf {
        s.push_str("        {\n");
        frags.zero(&mut s, &format!("s{f}"));
        for c in 0..dc {
            let offset = format!("{}u * LDK + {}u", 16 * f, 16 * c);
            load_halves(&mut s, frags, ("k", c), "B", false, &offset, "LDK");
            split_products(&mut s, frags, &format!("s{f}"), ("q", c), ("k", c));
        }
        let offset = format!("sg * 16u * BKT + {}u", 16 * f);
        frags.store_acc(&mut s, &format!("s{f}"), "s_s", &offset, "BKT");
        s.push_str("        }\n");
    }
    s
}

/// o_s += P V: the subgroup's P as A fragments (row-major), v staged key-major as row-major B
/// fragments, each 16-column output fragment loaded from o_s, updated and stored back.
fn pv_fragments(frags: Frags, jc: usize, nkf: usize) -> String {
    let mut s = String::new();
    for f in 0..nkf {
        let offset = format!("sg * 16u * LDP + {}u", 16 * f);
        load_halves(&mut s, frags, ("p", f), "A", true, &offset, "LDP");
    }
    for j in 0..jc {
        let o_offset = format!("sg * 16u * LDO + {}u", 16 * j);
        s.push_str("        {\n");
        frags.load_acc(&mut s, &format!("o{j}"), "o_s", &o_offset, "LDO");
        for f in 0..nkf {
            let offset = format!("{}u * LDV + {}u", 16 * f, 16 * j);
            load_halves(&mut s, frags, ("v", f), "B", true, &offset, "LDV");
            split_products(&mut s, frags, &format!("o{j}"), ("p", f), ("v", f));
        }
        frags.store_acc(&mut s, &format!("o{j}"), "o_s", &o_offset, "LDO");
        s.push_str("        }\n");
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
                workgroup_bytes(t, dims.d, dims.dv, form),
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
