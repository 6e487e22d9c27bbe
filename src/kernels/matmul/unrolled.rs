//! The unrolled register-tile kernel ([`MatmulKernel::Unrolled`](super::MatmulKernel::Unrolled)):
//! WGSL generated here as straight-line code over named registers, for CPU adapters.
//!
//! lavapipe turns a private array indexed by a loop variable (the `acc`, `a_off` and `av` arrays of
//! `shaders/matmul.wgsl`) into per-lane scratch memory, so every FMA of the blocked kernel also
//! loads and stores its accumulator. Here every accumulator, row offset and loaded vector is its
//! own `let`/`var` and the loops over the tile are unrolled in Rust, so they stay in SIMD
//! registers; only the loop over K remains, stepping 4 at a time with vec4 loads of both operands.
//!
//! Lanes run along N, so the rows of `a` a workgroup reads are the same in every lane: uniform
//! loads, a scalar load and a broadcast on lavapipe. With `b [N, K]` the `TN` columns of a lane
//! are `WG` apart (lane `l` of a workgroup whose block starts at column `c` takes `c + l + WG * j`),
//! so each gather of a weight row's k step reads `WG` consecutive rows and the stores of a
//! register are consecutive: against `TN` adjacent rows per lane, lavapipe at f16 weights, one
//! run each way alternated twice, 4 x 512 -> 65 001 (a beam-4 output layer) 10.5-11.6 against
//! 12.1-13.5 ms and 128 x 512 -> 2048 4.74-4.77 against 4.98-5.02 ms, the other linears within
//! their noise. With `b [K, N]` a lane takes `TN` adjacent columns (its vec4 loads along N).
//! Only `b` is gathered per lane, and each gathered element serves `TM` FMAs. With f16
//! `b [N, K]` read packed (`vec2<u32>` per 4 values), one 4-wide step gathers two 32-bit words
//! per weight row. Workgroups walk M fastest, so consecutive workgroups (on the same or the other
//! CPU thread) reuse the same `WG * TN` columns of `b` from cache.
//!
//! On subgroups of 8 lanes (lavapipe) the loads of `a` are shared over the subgroup ([`ShareA`]):
//! every lane loads part of the block of `a` a k step needs and `subgroupBroadcast` hands each
//! element to all lanes. The k loop steps 8 at a time where a load brings 8 k (one element per
//! lane, or 8 packed f16 weights) and 4 at a time where lanes load their rows of `a` as vec4s
//! against f32 or 4-value weight loads ([`k_quads`]). Every storage load inside a loop costs
//! llvmpipe a mask test per lane and a bounds check, a branch and an insert per lane and per
//! 32-bit component, so the fewer components per FMA, the closer the kernel runs to its FMAs:
//! `ShareA::Rows` loads each lane's own rows of `a` as vec4s (2 loads per row per 8 k against 8
//! scalar ones for `ShareA::Elements`), and packed f16 weights are read 8 values per
//! `vec4<u32>` (`b8`). Together with 16-row tiles this took the BERT and Marian f16 linears on
//! lavapipe from about 32 to 52-60 GFLOP/s (BENCHMARKS.md). With f32 weights an 8-k step was a
//! loop body of 38 KB of JIT code, larger than the CPU's L1 instruction cache; the 4-k step halves
//! it and took the f32 matmul from about 33 to 45-50 GFLOP/s, and leaves room for 24-row tiles
//! with `b [K, N]`, whose extra rows share each lane's loads of `b`
//! (`MatmulTuning::unrolled_rows_f32`: 1024^3 about 8% faster again).
//!
//! Three layouts of `b`, each with its own body:
//! - `Bt`: `b [N, K]` (linear, matmul_bt): a scalar accumulator per output, 4 FMAs per output per
//!   4-wide k step from `a` and `b` vec4s.
//! - `Vec`: `b [K, N]`, `N % 4 == 0`, `TN % 4 == 0`: vec4 accumulators along N, `a` broadcast.
//! - `Scalar`: `b [K, N]`, any N: scalar loads of `b`.

use std::fmt::Write;

/// Which body the generator writes, from the layout of `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Layout {
    /// `b [N, K]`.
    Bt,
    /// `b [K, N]` with `N % 4 == 0` and `TN % 4 == 0`: vec4 loads along N.
    Vec,
    /// `b [K, N]`, scalar loads.
    Scalar,
}

/// How the kernel loads `a`, whose elements every lane of a workgroup needs (lanes run along N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum ShareA {
    /// Every lane loads every element it uses (4-wide k steps): any adapter.
    Off,
    /// 8-wide k steps; lane `sid` loads element `kk + sid` of every row. Subgroups of exactly 8.
    Elements,
    /// Lane `sid` loads rows `m0 + sid + 8q` (`q < TM / 8`) as one vec4 per 4 k (4- or 8-wide
    /// steps, see [`k_quads`]). Subgroups of exactly 8, `TM % 8 == 0`, `K % 4 == 0` and `a`
    /// bound in vec4 units.
    Rows,
}

const LANES: [&str; 4] = ["x", "y", "z", "w"];

/// 4-wide groups of k per step of the subgroup forms' k loop: 2 (8-wide steps) where one load
/// brings 8 k (`ShareA::Elements`: element `kk + sid` per lane; `b8`: 8 packed f16 weights), else
/// 1 (`ShareA::Rows` with 4-value loads of `b`). The shorter step keeps the unrolled loop body
/// inside the L1 instruction cache: llvmpipe expands every load lane by lane and component by
/// component, and the 8-k step of a 16 x 4 tile with f32 weights compiled to 8 476 instructions
/// (38 KB); lavapipe, f32 matmul 1024^3: 43-48 against 64 ms.
pub(super) fn k_quads(share: ShareA, b8: bool) -> usize {
    if share == ShareA::Rows && !b8 {
        1
    } else {
        2
    }
}

/// Accessors of `b` bound as `array<vec4<u32>>` of packed f16, 8 values per unit (`b8`): the
/// 8-wide loop reads the units directly; these serve the tail loops.
const B8_ACCESSORS: &str = "\
fn b_at(i: u32) -> f32 { return unpack2x16float(b[i >> 3u][(i >> 1u) & 3u])[i & 1u]; }
fn b_at4(i: u32) -> vec4<f32> {
    let u = b[i >> 3u];
    let h = (i >> 2u) & 1u;
    return vec4<f32>(unpack2x16float(u[2u * h]), unpack2x16float(u[2u * h + 1u]));
}
";

/// The kernel body (after the generated prologue of `MatmulBindings`) for a `tm x tn` tile per
/// invocation and `wg` invocations per workgroup. Reads `p` (`Params`), `a_at`/`a_at4`,
/// `b_at`/`b_at4` (with `b8`: `b` itself, bound as `array<vec4<u32>>`, and the accessors written
/// here), `bias_value` and writes `out`. `b8` applies to [`Layout::Bt`] with a shared `a` only.
/// `norm` (a [`Layout::Bt`] form whose workgroup covers whole rows, `wg * tn >= N`) stores
/// `LayerNorm(product + bias + residual)` instead (see [`norm_epilogue`]).
pub(super) fn unrolled_source(
    tm: usize,
    tn: usize,
    wg: u32,
    layout: Layout,
    share: ShareA,
    b8: bool,
    norm: bool,
) -> String {
    assert!(
        share != ShareA::Rows || tm.is_multiple_of(8),
        "ShareA::Rows needs whole subgroup rows"
    );
    assert!(
        !b8 || (layout == Layout::Bt && share != ShareA::Off),
        "b8 is a Bt subgroup form"
    );
    assert!(!norm || layout == Layout::Bt, "the norm form is a Bt form");
    let sg = share != ShareA::Off;
    // First column of this invocation; its others are `WG` apart with `b [N, K]` (see the
    // module doc), adjacent otherwise.
    let n0 = if layout == Layout::Bt {
        format!("gn * {}u + lid", wg as usize * tn)
    } else {
        format!("(gn * {wg}u + lid) * {tn}u")
    };
    let mut s = String::new();
    if b8 {
        s.push_str(B8_ACCESSORS);
    }
    if norm {
        // Per row of the tile, one partial sum per invocation. Every invocation writes its own
        // element of every row before the barrier that precedes any read (`norm_epilogue`), so
        // the pipeline needs no zero initialization (naga's GLSL form of it is slow to compile).
        let _ = writeln!(
            s,
            "{}\nvar<workgroup> ln_part: array<f32, {}>;",
            crate::gpu::pipeline::WORKGROUP_SELF_INIT,
            tm * wg as usize
        );
    }
    let sid = if sg {
        ", @builtin(subgroup_invocation_id) sid: u32"
    } else {
        ""
    };
    if layout == Layout::Vec {
        // `out` in vec4 units (N % 4 == 0, columns 4-aligned): one store per 4 columns, where
        // llvmpipe pays a mask test and a descriptor reload per lane and store.
        s.push_str(
            "fn store4(base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row < p.m && col < p.n) {
        out[(base + row * p.n + col) >> 2u] = vec4<f32>(epilogue(v.x, col),
            epilogue(v.y, col + 1u), epilogue(v.z, col + 2u), epilogue(v.w, col + 3u));
    }
}
",
        );
    } else {
        s.push_str(
            "fn store(base: u32, row: u32, col: u32, v: f32) {
    if (row < p.m && col < p.n) {
        out[base + row * p.n + col] = epilogue(v, col);
    }
}
",
        );
    }
    let _ = write!(
        s,
        "
@compute @workgroup_size({wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32{sid}) {{
    let g = wid.x + wid.y * nwg.x;
    let gm = g % p.tiles_m;
    let rest = g / p.tiles_m;
    let gn = rest % p.tiles_n;
    let gb = rest / p.tiles_n;
    if (gb >= p.batch) {{
        return;
    }}
    // No early return for invocations past N: it would make the rest of the kernel divergent
    // control flow, and llvmpipe then loads even uniform addresses lane by lane. Their column
    // offsets are clamped below and `store` skips them.
    let n0 = {n0};
    let m0 = gm * {tm}u;
    let a_base = gb * p.a_bs;
    let b_base = gb * p.b_bs;
    let o_base = gb * p.o_bs;
"
    );
    // Row offsets of a, clamped so edge invocations read valid memory (their stores are skipped).
    for i in 0..tm {
        let _ = writeln!(
            s,
            "    let ar{i} = a_base + min(m0 + {i}u, p.m - 1u) * p.k;"
        );
    }
    match layout {
        Layout::Bt => bt_body(&mut s, tm, tn, wg as usize, share, b8, norm),
        Layout::Vec => vec_body(&mut s, tm, tn / 4, share),
        Layout::Scalar => scalar_body(&mut s, tm, tn),
    }
    s.push_str("}\n");
    s
}

/// Opens the k loop of the subgroup form (`4 * quads` wide, see [`k_quads`]) with this lane's share
/// of the block of `a` (see [`ShareA`]): `av{i}` (row i at `kk + sid`) or `al{q}_{h}` (row
/// `m0 + sid + 8q` at `kk + 4h ..+4`, `h < quads`). One load per lane where every lane loading
/// every element would cost 8: llvmpipe loads storage lane by lane even at uniform addresses. The
/// loop is closed by the caller.
fn subgroup_a_loads(s: &mut String, tm: usize, share: ShareA, quads: usize) {
    if share == ShareA::Rows {
        for q in 0..tm / 8 {
            let _ = writeln!(
                s,
                "    let arl{q} = a_base + min(m0 + sid + {}u, p.m - 1u) * p.k;",
                8 * q
            );
        }
    }
    let step = 4 * quads;
    let _ = writeln!(s, "    for (; kk + {step}u <= p.k; kk += {step}u) {{");
    match share {
        ShareA::Rows => {
            for q in 0..tm / 8 {
                for h in 0..quads {
                    let _ = writeln!(
                        s,
                        "        let al{q}_{h} = a[(arl{q} + kk + {}u) >> 2u];",
                        4 * h
                    );
                }
            }
        }
        _ => {
            for i in 0..tm {
                let _ = writeln!(s, "        let av{i} = a_at(ar{i} + kk + sid);");
            }
        }
    }
}

/// `a{i}_{h}`: row i of `a` at `kk + 4h ..+4`, gathered from the subgroup with
/// `subgroupBroadcast` (an extract and a splat on lavapipe).
fn subgroup_a_broadcast(s: &mut String, i: usize, share: ShareA, h: usize) {
    let b: Vec<String> = (0..4)
        .map(|t| match share {
            ShareA::Rows => format!(
                "subgroupBroadcast(al{}_{h}.{}, {}u)",
                i / 8,
                LANES[t],
                i % 8
            ),
            _ => format!("subgroupBroadcast(av{i}, {}u)", 4 * h + t),
        })
        .collect();
    let _ = writeln!(s, "        let a{i}_{h} = vec4<f32>({});", b.join(", "));
}

/// `b [N, K]`: `c{i}_{j}` accumulates row `m0 + i` against weight row `n0 + wg * j`.
fn bt_body(s: &mut String, tm: usize, tn: usize, wg: usize, share: ShareA, b8: bool, norm: bool) {
    for j in 0..tn {
        let _ = writeln!(
            s,
            "    let br{j} = b_base + min(n0 + {}u, p.n - 1u) * p.k;",
            wg * j
        );
    }
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(s, "    var c{i}_{j} = 0.0;");
        }
    }
    s.push_str("    var kk = 0u;\n");
    if share != ShareA::Off {
        let quads = k_quads(share, b8);
        subgroup_a_loads(s, tm, share, quads);
        // Per 4-wide group of the step: the weights first, then row by row the broadcast of a and
        // its FMAs, so only one row's broadcast values are live at a time (broadcasting every
        // row up front spilled them: 45 against 56 GFLOP/s at 16 x 4 on lavapipe).
        for h in 0..quads {
            for j in 0..tn {
                if !b8 {
                    let _ = writeln!(s, "        let b{j}_{h} = b_at4(br{j} + kk + {}u);", 4 * h);
                } else if h == 0 {
                    let _ = writeln!(s, "        let bq{j} = b[(br{j} + kk) >> 3u];");
                    let _ = writeln!(
                        s,
                        "        let b{j}_0 = vec4<f32>(unpack2x16float(bq{j}.x), unpack2x16float(bq{j}.y));"
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "        let b{j}_1 = vec4<f32>(unpack2x16float(bq{j}.z), unpack2x16float(bq{j}.w));"
                    );
                }
            }
            for i in 0..tm {
                subgroup_a_broadcast(s, i, share, h);
                for j in 0..tn {
                    let _ = writeln!(
                        s,
                        "        c{i}_{j} = fma(a{i}_{h}.w, b{j}_{h}.w, fma(a{i}_{h}.z, b{j}_{h}.z, \
                         fma(a{i}_{h}.y, b{j}_{h}.y, fma(a{i}_{h}.x, b{j}_{h}.x, c{i}_{j}))));"
                    );
                }
            }
        }
        s.push_str("    }\n");
    } else {
        four_wide_bt(s, tm, tn);
    }
    s.push_str("    for (; kk < p.k; kk++) {\n");
    for i in 0..tm {
        let _ = writeln!(s, "        let a{i} = a_at(ar{i} + kk);");
    }
    for j in 0..tn {
        let _ = writeln!(s, "        let b{j} = b_at(br{j} + kk);");
        for i in 0..tm {
            let _ = writeln!(s, "        c{i}_{j} = fma(a{i}, b{j}, c{i}_{j});");
        }
    }
    s.push_str("    }\n");
    if norm {
        norm_epilogue(s, tm, tn, wg);
        return;
    }
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(
                s,
                "    store(o_base, m0 + {i}u, n0 + {}u, c{i}_{j});",
                wg * j
            );
        }
    }
}

/// The store of the fused linear + residual + LayerNorm form: the workgroup holds whole rows
/// (`gn == 0`, lane `l` has columns `l + wg * j`), so each row's mean and variance are reduced
/// through workgroup memory (one partial per invocation and row, every lane then summing the
/// `wg` partials in the same order) and the normalized values stored from registers. Two passes
/// over the registers (mean, then squared deviations from it), as exact as the Welford form of
/// `shaders/layer_norm.wgsl` without its shift; `v = epilogue(acc) + residual` rounds as the
/// separate linear and add would. Reads `residual_at`, `ln_w_at`, `ln_b_at`, `p.eps`.
fn norm_epilogue(s: &mut String, tm: usize, tn: usize, wg: usize) {
    s.push_str("    let ln_n = f32(p.n);\n");
    for i in 0..tm {
        let _ = writeln!(
            s,
            "    let lr{i} = o_base + min(m0 + {i}u, p.m - 1u) * p.n;"
        );
    }
    for j in 0..tn {
        let _ = writeln!(s, "    let lc{j} = n0 + {}u;", wg * j);
        let _ = writeln!(s, "    let lk{j} = min(lc{j}, p.n - 1u);");
        let _ = writeln!(s, "    let lo{j} = lc{j} < p.n;");
    }
    let sum_over_cols = |s: &mut String, i: usize, term: &dyn Fn(usize) -> String| {
        let terms: Vec<String> = (0..tn)
            .map(|j| format!("select(0.0, {}, lo{j})", term(j)))
            .collect();
        let _ = writeln!(s, "    ln_part[{}u + lid] = {};", i * wg, terms.join(" + "));
    };
    // Sums every row's partials in lane order (the same order in every lane).
    let reduce = |s: &mut String, name: &str| {
        s.push_str("    workgroupBarrier();\n");
        for i in 0..tm {
            let _ = writeln!(s, "    var {name}{i} = 0.0;");
        }
        let _ = writeln!(s, "    for (var l = 0u; l < {wg}u; l++) {{");
        for i in 0..tm {
            let _ = writeln!(s, "        {name}{i} += ln_part[{}u + l];", i * wg);
        }
        s.push_str("    }\n    workgroupBarrier();\n");
    };
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(
                s,
                "    let v{i}_{j} = epilogue(c{i}_{j}, lk{j}) + residual_at(lr{i} + lk{j});"
            );
        }
        sum_over_cols(s, i, &|j| format!("v{i}_{j}"));
    }
    reduce(s, "ls");
    for i in 0..tm {
        let _ = writeln!(s, "    let mean{i} = ls{i} / ln_n;");
        sum_over_cols(s, i, &|j| {
            format!("(v{i}_{j} - mean{i}) * (v{i}_{j} - mean{i})")
        });
    }
    reduce(s, "lq");
    for i in 0..tm {
        let _ = writeln!(s, "    let rstd{i} = inverseSqrt(lq{i} / ln_n + p.eps);");
        let _ = writeln!(s, "    if (m0 + {i}u < p.m) {{");
        for j in 0..tn {
            let _ = writeln!(
                s,
                "        if (lo{j}) {{ out[lr{i} + lc{j}] = (v{i}_{j} - mean{i}) * rstd{i} * ln_w_at(lk{j}) + ln_b_at(lk{j}); }}"
            );
        }
        s.push_str("    }\n");
    }
}

/// The 4-wide k loop of the plain form. The subgroup forms have none (their tail is scalar):
/// a second unrolled loop over the whole tile changed LLVM's register allocation of the main
/// loop (lavapipe, linear 128x384->1536 f16 at 16 x 4: 42 GFLOP/s with it, 53 without).
fn four_wide_bt(s: &mut String, tm: usize, tn: usize) {
    s.push_str("    for (; kk + 4u <= p.k; kk += 4u) {\n");
    for i in 0..tm {
        let _ = writeln!(s, "        let a{i} = a_at4(ar{i} + kk);");
    }
    for j in 0..tn {
        let _ = writeln!(s, "        let b{j} = b_at4(br{j} + kk);");
        for i in 0..tm {
            let _ = writeln!(
                s,
                "        c{i}_{j} = fma(a{i}.w, b{j}.w, fma(a{i}.z, b{j}.z, \
                 fma(a{i}.y, b{j}.y, fma(a{i}.x, b{j}.x, c{i}_{j}))));"
            );
        }
    }
    s.push_str("    }\n");
}

/// `b [K, N]`, N % 4 == 0: `c{i}_{q}` holds columns `n0 + 4q ..+4` of row `m0 + i`.
fn vec_body(s: &mut String, tm: usize, tn4: usize, share: ShareA) {
    for q in 0..tn4 {
        let _ = writeln!(
            s,
            "    let bc{q} = b_base + min(n0 + {}u, p.n - 4u);",
            4 * q
        );
    }
    for i in 0..tm {
        for q in 0..tn4 {
            let _ = writeln!(s, "    var c{i}_{q} = vec4<f32>(0.0);");
        }
    }
    s.push_str("    var kk = 0u;\n");
    if share != ShareA::Off {
        let quads = k_quads(share, false);
        subgroup_a_loads(s, tm, share, quads);
        // As in `bt_body`: the weights of each 4-wide group first, then row by row.
        for h in 0..quads {
            for t in 0..4 {
                let _ = writeln!(s, "        let kr{h}_{t} = (kk + {}u) * p.n;", 4 * h + t);
                for q in 0..tn4 {
                    let _ = writeln!(s, "        let b{h}_{t}_{q} = b_at4(bc{q} + kr{h}_{t});");
                }
            }
            for i in 0..tm {
                subgroup_a_broadcast(s, i, share, h);
                for (t, lane) in LANES.iter().enumerate() {
                    for q in 0..tn4 {
                        let _ = writeln!(
                            s,
                            "        c{i}_{q} = fma(vec4<f32>(a{i}_{h}.{lane}), b{h}_{t}_{q}, c{i}_{q});"
                        );
                    }
                }
            }
        }
        s.push_str("    }\n");
    } else {
        four_wide_vec(s, tm, tn4);
    }
    s.push_str("    for (; kk < p.k; kk++) {\n        let kr = kk * p.n;\n");
    for q in 0..tn4 {
        let _ = writeln!(s, "        let b{q} = b_at4(bc{q} + kr);");
    }
    for i in 0..tm {
        let _ = writeln!(s, "        let a{i} = vec4<f32>(a_at(ar{i} + kk));");
        for q in 0..tn4 {
            let _ = writeln!(s, "        c{i}_{q} = fma(a{i}, b{q}, c{i}_{q});");
        }
    }
    s.push_str("    }\n");
    for i in 0..tm {
        for q in 0..tn4 {
            let _ = writeln!(
                s,
                "    store4(o_base, m0 + {i}u, n0 + {}u, c{i}_{q});",
                4 * q
            );
        }
    }
}

/// The 4-wide k loop of the plain form with `b [K, N]` in vec4s along N (none in the subgroup
/// forms, see [`four_wide_bt`]).
fn four_wide_vec(s: &mut String, tm: usize, tn4: usize) {
    s.push_str("    for (; kk + 4u <= p.k; kk += 4u) {\n");
    for i in 0..tm {
        let _ = writeln!(s, "        let a{i} = a_at4(ar{i} + kk);");
    }
    for (t, lane) in LANES.iter().enumerate() {
        let _ = writeln!(s, "        let kr{t} = (kk + {t}u) * p.n;");
        for q in 0..tn4 {
            let _ = writeln!(s, "        let b{t}_{q} = b_at4(bc{q} + kr{t});");
        }
        for i in 0..tm {
            for q in 0..tn4 {
                let _ = writeln!(
                    s,
                    "        c{i}_{q} = fma(vec4<f32>(a{i}.{lane}), b{t}_{q}, c{i}_{q});"
                );
            }
        }
    }
    s.push_str("    }\n");
}

/// `b [K, N]`, any N: `c{i}_{j}` accumulates row `m0 + i`, column `n0 + j`.
fn scalar_body(s: &mut String, tm: usize, tn: usize) {
    for j in 0..tn {
        let _ = writeln!(s, "    let bc{j} = b_base + min(n0 + {j}u, p.n - 1u);");
    }
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(s, "    var c{i}_{j} = 0.0;");
        }
    }
    s.push_str("    var kk = 0u;\n    for (; kk + 4u <= p.k; kk += 4u) {\n");
    for i in 0..tm {
        let _ = writeln!(s, "        let a{i} = a_at4(ar{i} + kk);");
    }
    for (t, lane) in LANES.iter().enumerate() {
        let _ = writeln!(s, "        let kr{t} = (kk + {t}u) * p.n;");
        for j in 0..tn {
            let _ = writeln!(s, "        let b{t}_{j} = b_at(bc{j} + kr{t});");
        }
        for i in 0..tm {
            for j in 0..tn {
                let _ = writeln!(
                    s,
                    "        c{i}_{j} = fma(a{i}.{lane}, b{t}_{j}, c{i}_{j});"
                );
            }
        }
    }
    s.push_str("    }\n    for (; kk < p.k; kk++) {\n        let kr = kk * p.n;\n");
    for j in 0..tn {
        let _ = writeln!(s, "        let b{j} = b_at(bc{j} + kr);");
    }
    for i in 0..tm {
        let _ = writeln!(s, "        let a{i} = a_at(ar{i} + kk);");
        for j in 0..tn {
            let _ = writeln!(s, "        c{i}_{j} = fma(a{i}, b{j}, c{i}_{j});");
        }
    }
    s.push_str("    }\n");
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(s, "    store(o_base, m0 + {i}u, n0 + {j}u, c{i}_{j});");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused LayerNorm form: no plain stores, one guarded LayerNorm store per output, a
    /// workgroup array of one partial per invocation and row, and the four barriers of its two
    /// reductions.
    #[test]
    fn norm_form_stores_through_the_layer_norm() {
        for (tm, tn, wg, share, b8) in [
            (1, 8, 16, ShareA::Elements, true),
            (4, 8, 64, ShareA::Elements, false),
            (3, 1, 8, ShareA::Off, false),
        ] {
            let what = format!("{tm}x{tn} wg {wg} {share:?} b8={b8}");
            let src = unrolled_source(tm, tn, wg, Layout::Bt, share, b8, true);
            assert_eq!(src.matches("    store(o_base").count(), 0, "{what}");
            assert_eq!(src.matches("out[lr").count(), tm * tn, "{what}");
            assert!(
                src.contains(&format!(
                    "var<workgroup> ln_part: array<f32, {}>;",
                    tm * wg as usize
                )),
                "{what}"
            );
            assert_eq!(src.matches("workgroupBarrier();").count(), 4, "{what}");
            assert_eq!(src.matches("residual_at(").count(), tm * tn, "{what}");
        }
    }

    /// One guarded store per output, no arrays at all (the point of the variant), the subgroup
    /// form only where asked; that the sources compile and compute the product is checked on the
    /// device by tests/matmul.rs.
    #[test]
    fn sources_have_one_store_per_output_and_no_arrays() {
        for (tm, tn, layout) in [
            (1, 1, Layout::Bt),
            (3, 5, Layout::Bt),
            (8, 4, Layout::Bt),
            (16, 3, Layout::Bt),
            (2, 8, Layout::Vec),
            (16, 8, Layout::Vec),
            (3, 5, Layout::Scalar),
        ] {
            for share in [ShareA::Off, ShareA::Elements, ShareA::Rows] {
                if layout == Layout::Scalar && share != ShareA::Off
                    || share == ShareA::Rows && tm % 8 != 0
                {
                    continue;
                }
                let b8s: &[bool] = match (layout, share) {
                    (Layout::Bt, ShareA::Elements | ShareA::Rows) => &[false, true],
                    _ => &[false],
                };
                for &b8 in b8s {
                    let what = format!("{tm}x{tn} {layout:?} {share:?} b8={b8}");
                    let src = unrolled_source(tm, tn, 8, layout, share, b8, false);
                    // The vec4 layout stores 4 adjacent columns at once (`out` in vec4 units).
                    let stores = src.matches("    store(o_base").count();
                    let stores4 = src.matches("    store4(o_base").count();
                    if layout == Layout::Vec {
                        assert_eq!((stores, 4 * stores4), (0, tm * tn), "{what}");
                    } else {
                        assert_eq!((stores, stores4), (tm * tn, 0), "{what}");
                    }
                    assert!(!src.contains("array<"), "{what}");
                    assert!(src.contains("@workgroup_size(8)"), "{what}");
                    let broadcasts = src.matches("subgroupBroadcast(").count();
                    // Each of the 4 * quads x tm elements of a in the step, once: 8-wide steps
                    // for single elements and packed weights, 4-wide for rows of a.
                    let quads = k_quads(share, b8);
                    assert_eq!(quads, if share == ShareA::Rows && !b8 { 1 } else { 2 });
                    let step = format!("kk + {}u <= p.k; kk += {}u", 4 * quads, 4 * quads);
                    assert_eq!(src.contains(&step), share != ShareA::Off, "{what}");
                    let expect = if share == ShareA::Off {
                        0
                    } else {
                        4 * quads * tm
                    };
                    assert_eq!(broadcasts, expect, "{what}");
                    // Rows: one vec4 load of a per lane per 4 k for every 8 rows; elements: one
                    // scalar load per row.
                    let a_loads = src.matches("let al").count() + src.matches("let av").count();
                    let expect = match share {
                        ShareA::Off => 0,
                        ShareA::Elements => tm,
                        ShareA::Rows => quads * tm / 8,
                    };
                    assert_eq!(a_loads, expect, "{what}");
                    // b8: one vec4<u32> load per weight row per 8 k, and the tail accessors.
                    assert_eq!(
                        src.matches("let bq").count(),
                        if b8 { tn } else { 0 },
                        "{what}"
                    );
                    assert_eq!(src.contains("fn b_at4"), b8, "{what}");
                }
            }
        }
    }
}
