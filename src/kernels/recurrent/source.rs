//! WGSL source of the recurrent kernels' pipeline variants: the cell body composed with the
//! per-step or persistent entry point, and the unrolled register block generated per variant.

use super::{CellKind, CELL_SRC, PERSISTENT_SRC, RESIDENT_SRC, STAGE_BYTES, STEP_SRC};
use crate::gpu::pipeline::fill_template;
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Elem};

crate::wgsl_bindings! {
    /// The storage bindings of the recurrent kernels in binding order (layouts in
    /// `shaders/recurrent_cell.wgsl`): xp, lengths, hs, cs, out, whh (k-pairs: `vec2<f32>` for f32
    /// weights, one `u32` per f16 pair), bhh. The per-step kernel's uniform stage `hu` follows them.
    pub(super) struct RecurrentBindings { xp, lengths, hs, cs, out, whh, bhh }
}

impl<'a> RecurrentBindings<'a> {
    /// The bindings of `bufs` as variant `v` reads them.
    pub(super) fn new(v: &Variant, bufs: &super::StepBuffers<'a>) -> RecurrentBindings<'a> {
        RecurrentBindings {
            xp: Bind::read(bufs.xp, "f32"),
            lengths: Bind::read(bufs.lengths, "u32"),
            hs: Bind::read_write(bufs.hs, "f32"),
            cs: Bind::read_write(bufs.cs, "f32"),
            out: Bind::read_write(bufs.out, "f32"),
            whh: Bind::read(bufs.whh_t, whh_type(v.whh)),
            bhh: Bind::input(bufs.bhh, v.bhh, false),
        }
    }
}

/// The WGSL element type of the `whh` array: f32 pairs, or f16 pairs packed in one u32 (always
/// unpacked with `unpack2x16float`, core WGSL, no feature needed).
fn whh_type(e: Elem) -> &'static str {
    match e {
        Elem::F32 => "vec2<f32>",
        _ => "u32",
    }
}

/// One pipeline variant (the pipeline cache key): cell, weight element types, register block,
/// workgroup width and entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Variant {
    /// The recurrence.
    pub(super) kind: CellKind,
    /// Element type of `weight_hh` (f32, or f16 read as u32 pairs).
    pub(super) whh: Elem,
    /// Element type of `bias_hh`.
    pub(super) bhh: Elem,
    /// Batch rows per invocation.
    pub(super) bb: u32,
    /// Units per invocation.
    pub(super) bu: u32,
    /// Invocations per workgroup.
    pub(super) wg: u32,
    /// The persistent kernel (all timesteps in one dispatch) rather than the per-step one.
    pub(super) persistent: bool,
    /// h_{t-1} from the uniform stage (per-step only).
    pub(super) hu: bool,
    /// The resident persistent kernel (recurrent_resident.wgsl): `Some((H, D))`, baked into its
    /// unrolled code; `None` for the streamed kernels.
    pub(super) resident: Option<(u32, u32)>,
    /// The resident kernel shares each `h_{t-1}` load over an 8-lane subgroup (needs `H % 8 ==
    /// 0`, so that a subgroup never straddles the two directions).
    pub(super) subgroup: bool,
}

/// The generated block body of `cell_step` (see recurrent_cell.wgsl) for `gates` gates, `bu` units
/// and `bb` batch rows per invocation, fully unrolled: accumulator `a{g}_{u}_{r}` holds gate g of
/// unit j0+u for row b0+r. Per k pair it loads each row's h pair once and each gate's and unit's
/// weight pair once (`wpair`, one u32 for f16 weights), then ends with a `cell_finish` per valid
/// (unit, row).
fn block(gates: usize, bu: usize, bb: usize) -> String {
    let mut s = String::new();
    for r in 0..bb {
        s.push_str(&format!("let h{r} = (hb + min(b0 + {r}u, B - 1u)) * H;\n"));
    }
    for u in 0..bu {
        s.push_str(&format!(
            "let w{u} = dir * p.kp * GH + min(j0 + {u}u, H - 1u);\n"
        ));
    }
    for g in 0..gates {
        for u in 0..bu {
            for r in 0..bb {
                s.push_str(&format!("var a{g}_{u}_{r} = 0.0;\n"));
            }
        }
    }
    s.push_str(
        "var wk = 0u;\n\
         for (var k = 0u; k < H; k += 2u) {\n\
         let ko = min(k + 1u, H - 1u);\n",
    );
    for r in 0..bb {
        s.push_str(&format!(
            "let e{r} = load_h(h{r} + k);\nlet o{r} = load_h(h{r} + ko);\n"
        ));
    }
    for g in 0..gates {
        for u in 0..bu {
            s.push_str(&format!("let q{g}_{u} = wpair(w{u} + wk + {g}u * H);\n"));
            for r in 0..bb {
                s.push_str(&format!(
                    "a{g}_{u}_{r} = fma(q{g}_{u}.y, o{r}, fma(q{g}_{u}.x, e{r}, a{g}_{u}_{r}));\n"
                ));
            }
        }
    }
    s.push_str("wk += GH;\n}\n");
    for u in 0..bu {
        for r in 0..bb {
            let acc: Vec<String> = (0..4)
                .map(|g| {
                    if g < gates {
                        format!("a{g}_{u}_{r}")
                    } else {
                        "0.0".to_string()
                    }
                })
                .collect();
            s.push_str(&format!(
                "if (j0 + {u}u < H && b0 + {r}u < B) {{ cell_finish(t, dir, b0 + {r}u, j0 + {u}u, vec4<f32>({})); }}\n",
                acc.join(", ")
            ));
        }
    }
    s
}

/// The block of the persistent kernel: one unit, 4 rows once the batch fills them.
pub(super) fn persistent_block(batch: usize) -> (u32, u32) {
    if batch >= 4 {
        (1, 4)
    } else {
        (1, 1)
    }
}

/// The resident kernel's weight loads: `w{g}_{k2}` = the raw `whh` element (one u32 f16 pair or a
/// `vec2<f32>`) of gate g, k pair k2 of the invocation's unit, for all `gates` x `kp` (see
/// recurrent_resident.wgsl).
fn resident_load(gates: usize, kp: usize) -> String {
    let mut s = String::new();
    for k2 in 0..kp {
        for g in 0..gates {
            s.push_str(&format!(
                "let w{g}_{k2} = whh[wb + {k2}u * GH + {g}u * H];\n"
            ));
        }
    }
    s
}

/// The resident kernel's dot products for one batch row: per k pair the h values at uniform
/// addresses (both directions' rows then a select when `dirs == 2`), and per gate two FMA chains
/// (even k, odd k; twice the independent chains of one) over the held weights, summed into `a{g}`
/// (`a{g}` = 0 for the unused gates past `gates`). For odd `hidden` the last pair has no odd k.
///
/// With `subgroup` (`hidden % 8 == 0`, 8-lane subgroups) lane `sid` loads element `8i + sid` of
/// the row once per 8 k and `subgroupBroadcast` hands each element to every lane: llvmpipe loads
/// storage lane by lane inside the step loop, so the plain form loads every h value 8 times.
fn resident_dot(gates: usize, hidden: usize, dirs: u32, subgroup: bool) -> String {
    let mut s = String::new();
    for g in 0..gates {
        s.push_str(&format!("var a{g}e = 0.0;\nvar a{g}o = 0.0;\n"));
    }
    let hload = |k: &str| {
        if dirs == 2 {
            format!("select(hs[hb0 + {k}], hs[hb1 + {k}], dir == 1u)")
        } else {
            format!("hs[hb0 + {k}]")
        }
    };
    let h_at = |k: usize| {
        if subgroup {
            format!("subgroupBroadcast(hl{}, {}u)", k / 8, k % 8)
        } else {
            hload(&format!("{k}u"))
        }
    };
    for k2 in 0..hidden.div_ceil(2) {
        let odd = 2 * k2 + 1 < hidden;
        if subgroup && (2 * k2) % 8 == 0 {
            let i = 2 * k2 / 8;
            s.push_str(&format!(
                "let hl{i} = {};\n",
                hload(&format!("{}u + sid", 8 * i))
            ));
        }
        s.push_str(&format!("let he{k2} = {};\n", h_at(2 * k2)));
        if odd {
            s.push_str(&format!("let ho{k2} = {};\n", h_at(2 * k2 + 1)));
        }
        for g in 0..gates {
            s.push_str(&format!("let q{g}_{k2} = wunpack(w{g}_{k2});\n"));
            s.push_str(&format!("a{g}e = fma(q{g}_{k2}.x, he{k2}, a{g}e);\n"));
            if odd {
                s.push_str(&format!("a{g}o = fma(q{g}_{k2}.y, ho{k2}, a{g}o);\n"));
            }
        }
    }
    for g in 0..4 {
        if g < gates {
            s.push_str(&format!("let a{g} = a{g}e + a{g}o;\n"));
        } else {
            s.push_str(&format!("let a{g} = 0.0;\n"));
        }
    }
    s
}

/// 32-bit words of `weight_hh` one invocation of the resident kernel holds: G gates x KP pairs,
/// one word per f16 pair, two per f32 pair.
pub(super) fn resident_words(gates: usize, hidden: usize, whh: Elem) -> usize {
    let per_pair = if whh == Elem::F32 { 2 } else { 1 };
    gates * hidden.div_ceil(2) * per_pair
}

/// The composed WGSL of variant `v` with its bindings `binds` (the uniform stage `hu`, when the
/// variant reads it, is the binding after them).
pub(super) fn source(v: &Variant, binds: &RecurrentBindings<'_>) -> String {
    let gates = v.kind.gates();
    let entry = match (v.resident, v.persistent) {
        (Some(_), _) => RESIDENT_SRC,
        (None, true) => PERSISTENT_SRC,
        (None, false) => STEP_SRC,
    };
    let block = block(gates, v.bu as usize, v.bb as usize);
    let (h, d) = v.resident.unwrap_or((0, 1));
    let (load, dot) = match v.resident {
        Some(_) => (
            resident_load(gates, (h as usize).div_ceil(2)),
            resident_dot(gates, h as usize, d, v.subgroup),
        ),
        None => (String::new(), String::new()),
    };
    let args = if v.subgroup {
        ", @builtin(subgroup_invocation_id) sid: u32"
    } else {
        ""
    };
    let body = fill_template(
        &format!("{CELL_SRC}\n{entry}"),
        &[
            ("BLOCK_BODY", &block),
            ("RESIDENT_LOAD", &load),
            ("RESIDENT_DOT", &dot),
            ("ARGS", args),
        ],
    );
    let wpair = match v.whh {
        Elem::F32 => {
            "fn wpair(i: u32) -> vec2<f32> { return whh[i]; }\n\
             fn wunpack(w: vec2<f32>) -> vec2<f32> { return w; }\n"
        }
        _ => {
            "fn wpair(i: u32) -> vec2<f32> { return unpack2x16float(whh[i]); }\n\
             fn wunpack(w: u32) -> vec2<f32> { return unpack2x16float(w); }\n"
        }
    };
    let hu_slot = binds.binds().len() + 1;
    let load_h = if v.hu {
        format!(
            "@group(0) @binding({hu_slot}) var<uniform> hu: array<vec4<f32>, {}>;\n\
             fn load_h(i: u32) -> f32 {{ return hu[i >> 2u][i & 3u]; }}\n",
            STAGE_BYTES / 16
        )
    } else {
        "fn load_h(i: u32) -> f32 { return hs[i]; }\n".to_string()
    };
    compose(
        &body,
        binds.needs_f16(),
        &[
            ("CELL", v.kind.code()),
            ("G", v.kind.gates() as u32),
            ("BB", v.bb),
            ("BU", v.bu),
            ("HU", v.hu as u32),
            ("WG", v.wg),
            ("RH", h),
            ("RD", d),
        ],
        &[
            vec![super::Params::wgsl()],
            binds.wgsl(),
            vec![load_h, wpair.to_string()],
        ]
        .concat(),
    )
}
