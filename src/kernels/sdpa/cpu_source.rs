//! Generates the straight-line CPU-adapter flash kernel (`shaders/sdpa_cpu.wgsl` with its markers
//! filled): named registers instead of indexed private arrays, which lavapipe keeps in scratch.
//!
//! Blocking, per invocation and key tile (lavapipe holds each per-lane value in one 8-wide SIMD
//! register, a vec4 in four): the R x KT scores are scalar FMA chains ordered so that each k
//! element, loaded once, feeds R independent chains (R accumulators live at a time instead of
//! 4R for vec4 sums); the online softmax runs in base 2 on log2(e)-prescaled scores and rescales
//! once per tile; each output chunk's accumulator then takes the tile's KT keys as one chain
//! (rescale folded in), every v chunk loaded once serving R rows.

use super::FLASH_CPU_SRC;
use crate::gpu::pipeline::fill_template;
use std::fmt::Write;

const COMP: [&str; 4] = ["x", "y", "z", "w"];

/// `shaders/sdpa_cpu.wgsl` with its markers filled by straight-line code for `r` query rows per
/// invocation, `kt` keys per tile, `d4` / `dv4` vec4 chunks of the q/k and v head dims.
pub(super) fn unrolled_flash_source(r: usize, kt: usize, d4: usize, dv4: usize) -> String {
    fill_template(
        FLASH_CPU_SRC,
        &[
            ("INIT", &init(r, d4, dv4)),
            ("TILE", &tile(r, kt, d4, dv4)),
            ("STORE", &store(r, dv4)),
        ],
    )
}

/// Per row i: its index (clamped, so that loads stay in bounds), causal end, mask and q bases,
/// q chunks times scale * log2(e), running max / sum and accumulators.
fn init(r: usize, d4: usize, dv4: usize) -> String {
    let mut s = String::new();
    for i in 0..r {
        let _ = writeln!(s, "    let qi{i} = min(i0 + lid + {i}u * WG, p.tq - 1u);");
        let _ = writeln!(s, "    let e{i} = causal_end(qi{i}, ke);");
        let _ = writeln!(
            s,
            "    let mb{i} = p.m.x + b * p.m.y + h * p.m.z + qi{i} * p.m.w;"
        );
        let _ = writeln!(
            s,
            "    let qb{i} = p.q.x + b * p.q.y + h * p.q.z + qi{i} * p.q.w;"
        );
        for c in 0..d4 {
            let _ = writeln!(s, "    let q{i}_{c} = ld_q(qb{i}, {c}u) * qs;");
        }
        let _ = writeln!(s, "    var m{i} = NEG;\n    var l{i} = 0.0;");
        for c in 0..dv4 {
            let _ = writeln!(s, "    var a{i}_{c} = vec4<f32>(0.0);");
        }
    }
    s
}

/// One key tile: scores, online softmax (base 2), P·V.
fn tile(r: usize, kt: usize, d4: usize, dv4: usize) -> String {
    let mut s = String::new();
    for t in 0..kt {
        let _ = writeln!(
            s,
            "        let kr{t} = kb + min(j0 + {t}u, p.tk - 1u) * p.k.w;\n        \
             let vr{t} = vb + min(j0 + {t}u, p.tk - 1u) * p.v.w;"
        );
    }
    // Scores: key t's chunk c loaded once, each element feeding the R rows' chains.
    for t in 0..kt {
        for i in 0..r {
            let _ = writeln!(s, "        var s{i}_{t} = 0.0;");
        }
        for c in 0..d4 {
            let _ = writeln!(s, "        {{ let kc = ld_k(kr{t}, {c}u);");
            for e in COMP {
                let _ = write!(s, "           ");
                for i in 0..r {
                    let _ = write!(s, " s{i}_{t} = fma(q{i}_{c}.{e}, kc.{e}, s{i}_{t});");
                }
                let _ = writeln!(s);
            }
            let _ = writeln!(s, "        }}");
        }
    }
    // Online softmax per row, base 2: what was summed under the old max is rescaled by corr
    // (exp2(NEG - x) == 0; a row with no visible key yet keeps l = 0 through the select).
    for i in 0..r {
        for t in 0..kt {
            let _ = writeln!(
                s,
                "        let x{i}_{t} = masked2(mb{i}, j0 + {t}u, e{i}, s{i}_{t});"
            );
        }
        let mut mx = format!("x{i}_0");
        for t in 1..kt {
            mx = format!("max({mx}, x{i}_{t})");
        }
        let _ = writeln!(s, "        let mn{i} = max(m{i}, {mx});");
        let _ = writeln!(s, "        let corr{i} = exp2(m{i} - mn{i});");
        let _ = writeln!(s, "        m{i} = mn{i};");
        let mut sum = String::from("0.0");
        for t in 0..kt {
            let _ = writeln!(
                s,
                "        let p{i}_{t} = select(0.0, exp2(x{i}_{t} - mn{i}), x{i}_{t} > NEG);"
            );
            sum = format!("{sum} + p{i}_{t}");
        }
        let _ = writeln!(s, "        l{i} = l{i} * corr{i} + ({sum});");
    }
    // P·V: the tile's v chunks loaded once, then one chain per row's accumulator chunk.
    for c in 0..dv4 {
        let _ = write!(s, "        {{");
        for t in 0..kt {
            let _ = write!(s, " let vc{t} = ld_v(vr{t}, {c}u);");
        }
        let _ = writeln!(s);
        for i in 0..r {
            let _ = write!(s, "            a{i}_{c} = a{i}_{c} * corr{i};");
            for t in 0..kt {
                let _ = write!(s, " a{i}_{c} = fma(vec4<f32>(p{i}_{t}), vc{t}, a{i}_{c});");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "        }}");
    }
    s
}

/// Per row: the split's partial (unnormalized sum, natural-log max, sum) or the normalized row
/// and its log-sum-exp.
fn store(r: usize, dv4: usize) -> String {
    let mut s = String::new();
    for i in 0..r {
        let _ = writeln!(
            s,
            "    {{ let ii = i0 + lid + {i}u * WG;\n    if (ii < p.tq) {{"
        );
        let _ = writeln!(
            s,
            "        let row = bh * p.tq + ii;\n        if (p.nsplit > 1u) {{"
        );
        let _ = writeln!(s, "            let pr = row * p.nsplit + split;");
        for c in 0..dv4 {
            let _ = writeln!(s, "            st4(pr * DV, {c}u, a{i}_{c});");
        }
        let _ = writeln!(
            s,
            "            stats[2u * pr] = select(NEG, m{i} * LN2, m{i} > NEG);\n            \
             stats[2u * pr + 1u] = l{i};\n        }} else {{"
        );
        let _ = writeln!(
            s,
            "            let inv = select(0.0, 1.0 / l{i}, l{i} > 0.0);\n            \
             let ob = p.o.x + b * p.o.y + h * p.o.z + ii * p.o.w;"
        );
        for c in 0..dv4 {
            let _ = writeln!(s, "            st4(ob, {c}u, a{i}_{c} * inv);");
        }
        let _ = writeln!(
            s,
            "            if ((p.flags & 1u) != 0u) {{ \
             stats[row] = select(NEG, m{i} * LN2 + log(l{i}), l{i} > 0.0); }}"
        );
        let _ = writeln!(s, "        }}\n    }} }}");
    }
    s
}
