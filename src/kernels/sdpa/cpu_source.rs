//! Generates the straight-line CPU-adapter flash kernel (`shaders/sdpa_cpu.wgsl` with its markers
//! filled): named registers instead of indexed private arrays, which lavapipe keeps in scratch.

use super::FLASH_CPU_SRC;
use crate::gpu::pipeline::fill_template;

/// `shaders/sdpa_cpu.wgsl` with its markers filled by straight-line code for `r` query rows per
/// invocation, `kt` keys per tile, `d4` / `dv4` vec4 chunks of the q/k and v head dims.
pub(super) fn unrolled_flash_source(r: usize, kt: usize, d4: usize, dv4: usize) -> String {
    use std::fmt::Write;
    let mut init = String::new();
    for i in 0..r {
        let _ = writeln!(
            init,
            "    let qi{i} = min(i0 + lid + {i}u * WG, p.tq - 1u);"
        );
        let _ = writeln!(init, "    let e{i} = causal_end(qi{i}, ke);");
        let _ = writeln!(
            init,
            "    let mb{i} = p.m.x + b * p.m.y + h * p.m.z + qi{i} * p.m.w;"
        );
        let _ = writeln!(
            init,
            "    let qb{i} = p.q.x + b * p.q.y + h * p.q.z + qi{i} * p.q.w;"
        );
        for c in 0..d4 {
            let _ = writeln!(init, "    let q{i}_{c} = ld_q(qb{i}, {c}u) * p.scale;");
        }
        let _ = writeln!(init, "    var m{i} = NEG;\n    var l{i} = 0.0;");
        for c in 0..dv4 {
            let _ = writeln!(init, "    var a{i}_{c} = vec4<f32>(0.0);");
        }
    }
    let mut tile = String::new();
    for t in 0..kt {
        let _ = writeln!(
            tile,
            "        let kr{t} = kb + min(j0 + {t}u, p.tk - 1u) * p.k.w;\n        \
             let vr{t} = vb + min(j0 + {t}u, p.tk - 1u) * p.v.w;"
        );
    }
    // Scores: every k chunk loaded once serves the R rows.
    for t in 0..kt {
        for i in 0..r {
            let _ = writeln!(tile, "        var s{i}_{t} = vec4<f32>(0.0);");
        }
        for c in 0..d4 {
            let _ = write!(tile, "        {{ let kc = ld_k(kr{t}, {c}u);");
            for i in 0..r {
                let _ = write!(tile, " s{i}_{t} = fma(q{i}_{c}, kc, s{i}_{t});");
            }
            let _ = writeln!(tile, " }}");
        }
    }
    // Online softmax per row: rescale what was summed under the old max (exp(NEG - x) == 0).
    for i in 0..r {
        for t in 0..kt {
            let _ = writeln!(
                tile,
                "        let x{i}_{t} = masked(mb{i}, j0 + {t}u, e{i}, \
                 s{i}_{t}.x + s{i}_{t}.y + s{i}_{t}.z + s{i}_{t}.w);"
            );
        }
        let mut mx = format!("x{i}_0");
        for t in 1..kt {
            mx = format!("max({mx}, x{i}_{t})");
        }
        let _ = writeln!(tile, "        let mn{i} = max(m{i}, {mx});");
        let _ = writeln!(tile, "        let corr{i} = exp(m{i} - mn{i});");
        let _ = writeln!(tile, "        m{i} = mn{i};");
        let mut sum = String::from("0.0");
        for t in 0..kt {
            let _ = writeln!(
                tile,
                "        let p{i}_{t} = select(0.0, exp(x{i}_{t} - mn{i}), x{i}_{t} > NEG);"
            );
            sum = format!("{sum} + p{i}_{t}");
        }
        let _ = writeln!(tile, "        l{i} = l{i} * corr{i} + ({sum});");
    }
    // P·V: every v chunk loaded once serves the R rows.
    for c in 0..dv4 {
        for i in 0..r {
            let _ = writeln!(tile, "        a{i}_{c} = a{i}_{c} * corr{i};");
        }
        for t in 0..kt {
            let _ = write!(tile, "        {{ let vc = ld_v(vr{t}, {c}u);");
            for i in 0..r {
                let _ = write!(tile, " a{i}_{c} = fma(vec4<f32>(p{i}_{t}), vc, a{i}_{c});");
            }
            let _ = writeln!(tile, " }}");
        }
    }
    let mut store = String::new();
    for i in 0..r {
        let _ = writeln!(
            store,
            "    {{ let ii = i0 + lid + {i}u * WG;\n    if (ii < p.tq) {{"
        );
        let _ = writeln!(
            store,
            "        let row = bh * p.tq + ii;\n        if (p.nsplit > 1u) {{"
        );
        let _ = writeln!(store, "            let pr = row * p.nsplit + split;");
        for c in 0..dv4 {
            let _ = writeln!(store, "            st4(pr * DV, {c}u, a{i}_{c});");
        }
        let _ = writeln!(
            store,
            "            stats[2u * pr] = m{i};\n            stats[2u * pr + 1u] = l{i};\n        \
             }} else {{"
        );
        let _ = writeln!(
            store,
            "            let inv = select(0.0, 1.0 / l{i}, l{i} > 0.0);\n            \
             let ob = p.o.x + b * p.o.y + h * p.o.z + ii * p.o.w;"
        );
        for c in 0..dv4 {
            let _ = writeln!(store, "            st4(ob, {c}u, a{i}_{c} * inv);");
        }
        let _ = writeln!(
            store,
            "            if ((p.flags & 1u) != 0u) {{ \
             stats[row] = select(NEG, m{i} + log(l{i}), l{i} > 0.0); }}"
        );
        let _ = writeln!(store, "        }}\n    }} }}");
    }
    fill_template(
        FLASH_CPU_SRC,
        &[("INIT", &init), ("TILE", &tile), ("STORE", &store)],
    )
}
