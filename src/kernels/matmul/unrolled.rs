//! The unrolled register-tile kernel ([`MatmulKernel::Unrolled`](super::MatmulKernel::Unrolled)):
//! WGSL generated here as straight-line code over named registers, for CPU adapters.
//!
//! lavapipe turns a private array indexed by a loop variable (the `acc`, `a_off` and `av` arrays of
//! `shaders/matmul.wgsl`) into per-lane scratch memory, so every FMA of the blocked kernel also
//! loads and stores its accumulator. Here every accumulator, row offset and loaded vector is its
//! own `let`/`var` and the loops over the tile are unrolled in Rust, so they stay in SIMD
//! registers; only the loop over K remains, stepping 4 at a time with vec4 loads of both operands.
//!
//! Lanes run along N (consecutive invocations take consecutive `TN`-column blocks), so the rows of
//! `a` a workgroup reads are the same in every lane: uniform loads, a scalar load and a broadcast
//! on lavapipe. Only `b` is gathered per lane, and each gathered element serves `TM` FMAs. With
//! f16 `b [N, K]` read packed (`vec2<u32>` per 4 values), one 4-wide step gathers two 32-bit words
//! per weight row. Workgroups walk M fastest, so consecutive workgroups (on the same or the other
//! CPU thread) reuse the same `WG * TN` columns of `b` from cache.
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

const LANES: [&str; 4] = ["x", "y", "z", "w"];

/// The kernel body (after the generated prologue of `MatmulBindings`) for a `tm x tn` tile per
/// invocation and `wg` invocations per workgroup. Reads `p` (`Params`), `a_at`/`a_at4`,
/// `b_at`/`b_at4`, `bias_value` and writes `out`.
pub(super) fn unrolled_source(tm: usize, tn: usize, wg: u32, layout: Layout, sg: bool) -> String {
    let mut s = String::new();
    let sid = if sg {
        ", @builtin(subgroup_invocation_id) sid: u32"
    } else {
        ""
    };
    let _ = write!(
        s,
        "\
fn store(base: u32, row: u32, col: u32, v: f32) {{
    if (row < p.m && col < p.n) {{
        out[base + row * p.n + col] = epilogue(v, col);
    }}
}}

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
    let n0 = (gn * {wg}u + lid) * {tn}u;
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
        Layout::Bt => bt_body(&mut s, tm, tn, sg),
        Layout::Vec => vec_body(&mut s, tm, tn / 4, sg),
        Layout::Scalar => scalar_body(&mut s, tm, tn),
    }
    s.push_str("}\n");
    s
}

/// Opens the 8-wide k loop of the subgroup form: each lane loads one element of each row of `a`
/// (`av{i}` = row i at `kk + sid`, one load where the 4-wide step costs 4 per lane: llvmpipe loads
/// storage lane by lane even at uniform addresses), and `a{i}_{h}` gathers `kk + 4h ..+4` from the
/// subgroup with `subgroupBroadcast` (an extract and a splat on lavapipe). Needs a subgroup of
/// exactly 8 lanes; the loop is closed by the caller.
fn subgroup_a(s: &mut String, tm: usize) {
    s.push_str("    for (; kk + 8u <= p.k; kk += 8u) {\n");
    for i in 0..tm {
        let _ = writeln!(s, "        let av{i} = a_at(ar{i} + kk + sid);");
    }
    for h in 0..2u32 {
        for i in 0..tm {
            let b: Vec<String> = (0..4)
                .map(|t| format!("subgroupBroadcast(av{i}, {}u)", 4 * h + t))
                .collect();
            let _ = writeln!(s, "        let a{i}_{h} = vec4<f32>({});", b.join(", "));
        }
    }
}

/// `b [N, K]`: `c{i}_{j}` accumulates row `m0 + i` against weight row `n0 + j`.
fn bt_body(s: &mut String, tm: usize, tn: usize, sg: bool) {
    for j in 0..tn {
        let _ = writeln!(
            s,
            "    let br{j} = b_base + min(n0 + {j}u, p.n - 1u) * p.k;"
        );
    }
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(s, "    var c{i}_{j} = 0.0;");
        }
    }
    s.push_str("    var kk = 0u;\n");
    if sg {
        subgroup_a(s, tm);
        for h in 0..2 {
            for j in 0..tn {
                let _ = writeln!(s, "        let b{j}_{h} = b_at4(br{j} + kk + {}u);", 4 * h);
                for i in 0..tm {
                    let _ = writeln!(
                        s,
                        "        c{i}_{j} = fma(a{i}_{h}.w, b{j}_{h}.w, fma(a{i}_{h}.z, b{j}_{h}.z, \
                         fma(a{i}_{h}.y, b{j}_{h}.y, fma(a{i}_{h}.x, b{j}_{h}.x, c{i}_{j}))));"
                    );
                }
            }
        }
        s.push_str("    }\n");
    }
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
    s.push_str("    }\n    for (; kk < p.k; kk++) {\n");
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
    for i in 0..tm {
        for j in 0..tn {
            let _ = writeln!(s, "    store(o_base, m0 + {i}u, n0 + {j}u, c{i}_{j});");
        }
    }
}

/// `b [K, N]`, N % 4 == 0: `c{i}_{q}` holds columns `n0 + 4q ..+4` of row `m0 + i`.
fn vec_body(s: &mut String, tm: usize, tn4: usize, sg: bool) {
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
    if sg {
        subgroup_a(s, tm);
        for h in 0..2 {
            for (t, lane) in LANES.iter().enumerate() {
                let _ = writeln!(s, "        let kr{h}_{t} = (kk + {}u) * p.n;", 4 * h + t);
                for q in 0..tn4 {
                    let _ = writeln!(s, "        let b{h}_{t}_{q} = b_at4(bc{q} + kr{h}_{t});");
                }
                for i in 0..tm {
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
    }
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
    s.push_str("    }\n    for (; kk < p.k; kk++) {\n        let kr = kk * p.n;\n");
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
            for (l, lane) in LANES.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "    store(o_base, m0 + {i}u, n0 + {}u, c{i}_{q}.{lane});",
                    4 * q + l
                );
            }
        }
    }
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

    /// One guarded store per output, no arrays at all (the point of the variant), the subgroup
    /// form only where asked; that the sources compile and compute the product is checked on the
    /// device by tests/matmul.rs.
    #[test]
    fn sources_have_one_store_per_output_and_no_arrays() {
        for (tm, tn, layout) in [
            (1, 1, Layout::Bt),
            (3, 5, Layout::Bt),
            (8, 4, Layout::Bt),
            (2, 8, Layout::Vec),
            (3, 5, Layout::Scalar),
        ] {
            for sg in [false, true] {
                let src = unrolled_source(tm, tn, 8, layout, sg);
                let stores = src.matches("    store(o_base").count();
                assert_eq!(stores, tm * tn, "{layout:?}");
                assert!(!src.contains("array<"), "{layout:?}");
                assert!(src.contains("@workgroup_size(8)"), "{layout:?}");
                let shared = layout != Layout::Scalar && sg;
                assert_eq!(src.contains("subgroupBroadcast"), shared, "{layout:?} {sg}");
            }
        }
    }
}
