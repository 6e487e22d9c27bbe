//! WGSL source of the recurrent kernels' pipeline variants: the cell body composed with the
//! per-step or persistent entry point, and the unrolled register block generated per variant.

use super::{CellKind, CELL_SRC, PERSISTENT_SRC, STAGE_BYTES, STEP_SRC};
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

/// The composed WGSL of variant `v` with its bindings `binds` (the uniform stage `hu`, when the
/// variant reads it, is the binding after them).
pub(super) fn source(v: &Variant, binds: &RecurrentBindings<'_>) -> String {
    let entry = if v.persistent {
        PERSISTENT_SRC
    } else {
        STEP_SRC
    };
    let block = block(v.kind.gates(), v.bu as usize, v.bb as usize);
    let body = fill_template(&format!("{CELL_SRC}\n{entry}"), &[("BLOCK_BODY", &block)]);
    let wpair = match v.whh {
        Elem::F32 => "fn wpair(i: u32) -> vec2<f32> { return whh[i]; }\n",
        _ => "fn wpair(i: u32) -> vec2<f32> { return unpack2x16float(whh[i]); }\n",
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
        ],
        &[
            vec![super::Params::wgsl()],
            binds.wgsl(),
            vec![load_h, wpair.to_string()],
        ]
        .concat(),
    )
}
