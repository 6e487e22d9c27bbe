//! The cooperative-matrix kernel ([`MatmulKernel::Coop`](super::MatmulKernel::Coop)):
//! `shaders/matmul_coop.wgsl` with its markers filled by straight-line code for a [`CoopTile`].
//!
//! Each subgroup keeps its `FM x FN` accumulators as named `coop_mat16x16<f32, C>` values (a
//! loop-indexed array of them would be the local-memory hazard ARCHITECTURE.md describes), and per
//! staged slice (`KF` 16-deep fragments) loads `FM` hi and `FM` lo fragments of `a` and `FN`
//! fragments of `b` for each 16-deep part, then issues `2 * FM * FN` multiply-adds.

use crate::gpu::pipeline::fill_template;
use crate::gpu::CoopTile;
use std::fmt::Write;

/// Shared-memory bytes of the kernel for `tile`: a's hi and lo halves, b in the larger of its
/// two layouts, and one f32 fragment per subgroup for the epilogue.
pub(crate) fn coop_workgroup_bytes(tile: CoopTile) -> u32 {
    let a = 2 * tile.bm() * (tile.bk() + 8) * 2;
    let b = b_len(tile) * 2;
    let c = tile.wm * tile.wn * 256 * 4;
    a + b + c
}

/// Length in f16 elements of the staged b: `[BN, BK + 8]` (b `[N, K]`) or `[BK, BN + 8]` (b
/// `[K, N]`).
pub(crate) fn b_len(tile: CoopTile) -> u32 {
    let (bn, bk) = (tile.bn(), tile.bk());
    (bn * (bk + 8)).max(bk * (bn + 8))
}

/// `shaders/matmul_coop.wgsl` (`template`) with the accumulators, the multiply-adds and the
/// fragment stores of `tile` written out, for b `[N, K]` when `bt`, on subgroups of `subgroup`
/// invocations (the staging's chunks per invocation depend on the workgroup size).
pub(super) fn coop_body(template: &str, tile: CoopTile, bt: bool, subgroup: u32) -> String {
    let (fm, fnn) = (tile.fm, tile.fn_);
    let mut acc = String::new();
    for i in 0..fm {
        for j in 0..fnn {
            let _ = writeln!(acc, "    var c{i}_{j} = coop_mat16x16<f32, C>();");
        }
    }
    let mut mma = String::new();
    for kk in 0..tile.kf {
        let _ = writeln!(mma, "        {{");
        for i in 0..fm {
            let off = format!("(sm * {} + {}u) * LDA + {}u", fm * 16, i * 16, kk * 16);
            let _ = writeln!(
                mma,
                "        let h{i} = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[{off}], LDA);\n        \
                 let l{i} = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[{off}], LDA);"
            );
        }
        for j in 0..fnn {
            // b [N, K] is staged n-major (a column-major B), b [K, N] k-major (row-major).
            let load = if bt {
                format!(
                    "coopLoad<coop_mat16x16<f16, B>>(&b_s[(sn * {c} + {o}u) * LDB + {k}u], LDB)",
                    c = fnn * 16,
                    o = j * 16,
                    k = kk * 16
                )
            } else {
                format!(
                    "coopLoadT<coop_mat16x16<f16, B>>(&b_s[{k}u * LDBN + sn * {c} + {o}u], LDBN)",
                    c = fnn * 16,
                    o = j * 16,
                    k = kk * 16
                )
            };
            let _ = writeln!(mma, "        let b{j} = {load};");
        }
        // The small lo products first, then hi: the accumulator adds the larger terms last.
        for i in 0..fm {
            for j in 0..fnn {
                let _ = writeln!(
                    mma,
                    "        c{i}_{j} = coopMultiplyAdd(l{i}, b{j}, c{i}_{j});\n        \
                     c{i}_{j} = coopMultiplyAdd(h{i}, b{j}, c{i}_{j});"
                );
            }
        }
        let _ = writeln!(mma, "        }}");
    }
    let mut store = String::new();
    for i in 0..fm {
        for j in 0..fnn {
            let _ = writeln!(
                store,
                "    coopStoreT(c{i}_{j}, &c_s[sg * 256u], 16u);\n    workgroupBarrier();\n    \
                 store_fragment(sg, lane, live, o_base, m0 + sm * {} + {}u, n0 + sn * {} + {}u);\n    \
                 workgroupBarrier();",
                fm * 16,
                i * 16,
                fnn * 16,
                j * 16
            );
        }
    }
    // Chunks of 4 elements per invocation and slice: a's BM x BK and b's BN x BK over WG
    // invocations (the last ones may own one chunk fewer: put/load skip chunks past the slice).
    let wg = tile.wm * tile.wn * subgroup;
    let na = (tile.bm() * tile.bk() / 4).div_ceil(wg);
    let nb = (tile.bn() * tile.bk() / 4).div_ceil(wg);
    let (mut decl, mut put, mut load) = (String::new(), String::new(), String::new());
    for (name, n, f) in [("pa", na, "a"), ("pb", nb, "b")] {
        let base = if f == "a" { "a_base, m0" } else { "b_base, n0" };
        for i in 0..n {
            let c = format!("lid + {}u", i * wg);
            let _ = writeln!(decl, "    var {name}{i} = vec4<f32>(0.0);");
            let _ = writeln!(put, "        put_{f}({c}, {name}{i});");
            let _ = writeln!(load, "            {name}{i} = load_{f}({base}, k0, {c});");
        }
    }
    fill_template(
        template,
        &[
            ("ACC", &acc),
            ("DECL", &decl),
            ("PUT", &put),
            ("LOAD", &load),
            ("MMA", &mma),
            ("STORE", &store),
        ],
    )
}
