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

/// Writes chunk c of the output row at element `base` (elements past DV are skipped).
const ST4_SCALAR: &str = "fn st4(base: u32, c: u32, a: vec4<f32>) {
    if (4u * c < DV) { out[base + 4u * c] = a.x; }
    if (4u * c + 1u < DV) { out[base + 4u * c + 1u] = a.y; }
    if (4u * c + 2u < DV) { out[base + 4u * c + 2u] = a.z; }
    if (4u * c + 3u < DV) { out[base + 4u * c + 3u] = a.w; }
}";

/// The same with `out` in vec4 units (`base` and DV multiples of 4): one store per chunk.
const ST4_VEC: &str = "fn st4(base: u32, c: u32, a: vec4<f32>) { out[(base >> 2u) + c] = a; }";

/// The code-shaping choices of one unrolled flash variant (see [`unrolled_flash_source`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct FlashForm {
    /// Subgroups of exactly 8 lanes share each k and v row's loads through `subgroupBroadcast`:
    /// llvmpipe loads storage lane by lane inside any loop, even at an address every lane shares,
    /// so a row loaded by every lane costs 8x the loads.
    pub sg: bool,
    /// k and v are declared in vec4 units (rows aligned to 4 elements): the subgroup form then
    /// loads each whole 32 elements of a row as one vec4 per lane (a load costs llvmpipe a mask
    /// test per lane on top of its per-element work, so 4 elements per load halve the load
    /// instructions; lavapipe, B1 H8 D64 T512: 10.4-13 against 15-16 ms), and the rest of the row
    /// one element per lane.
    pub vec: bool,
    /// `out` is declared in vec4 units (output rows and Dv aligned to 4): each output chunk is
    /// one store instead of four.
    pub vec_out: bool,
    /// Generates the mask lookup (`mask_score`); without it the scores past the causal or key
    /// end are cut by a select alone.
    pub masked: bool,
}

/// `shaders/sdpa_cpu.wgsl` with its markers filled by straight-line code for `r` query rows per
/// invocation, `kt` keys per tile, head dims `d` (q/k) and `dv` (v), in the form `f`.
pub(super) fn unrolled_flash_source(
    r: usize,
    kt: usize,
    d: usize,
    dv: usize,
    f: FlashForm,
) -> String {
    let FlashForm {
        sg,
        vec,
        vec_out,
        masked,
    } = f;
    let (d4, dv4) = (d.div_ceil(4), dv.div_ceil(4));
    let tile = if sg {
        tile_subgroup(r, kt, d, dv, vec, masked)
    } else {
        tile(r, kt, d4, dv4, masked)
    };
    let args = if sg {
        ", @builtin(subgroup_invocation_id) sid: u32"
    } else {
        ""
    };
    fill_template(
        FLASH_CPU_SRC,
        &[
            ("ARGS", args),
            ("ST4", if vec_out { ST4_VEC } else { ST4_SCALAR }),
            ("INIT", &init(r, d4, dv4)),
            ("TILE", &tile),
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
fn tile(r: usize, kt: usize, d4: usize, dv4: usize, masked: bool) -> String {
    let mut s = String::new();
    key_rows(&mut s, kt);
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
    softmax(&mut s, r, kt, masked);
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

/// Row offsets of the tile's keys in k and v (clamped to the last key: past-the-end keys are
/// masked, their loads only have to stay in bounds).
fn key_rows(s: &mut String, kt: usize) {
    for t in 0..kt {
        let _ = writeln!(
            s,
            "        let kr{t} = kb + min(j0 + {t}u, p.tk - 1u) * p.k.w;\n        \
             let vr{t} = vb + min(j0 + {t}u, p.tk - 1u) * p.v.w;"
        );
    }
}

/// One subgroup lane's element `8g + sid` of the row at `base` of `name` (`len` elements; 0 past
/// them, read from a clamped index so the load stays in bounds and the lanes stay converged).
fn lane_load(name: &str, base: &str, g: usize, len: usize) -> String {
    if (8 * g + 8) <= len {
        format!("{name}_at({base} + {}u + sid)", 8 * g)
    } else {
        format!(
            "select(0.0, {name}_at({base} + min({}u + sid, {}u)), {}u + sid < {len}u)",
            8 * g,
            len - 1,
            8 * g
        )
    }
}

/// The online softmax of one tile, shared by both tile forms (see [`tile`]). Keys past the row's
/// causal end (or Tk) are cut with a select, not an `if`: a branch on the row's end is divergent,
/// and llvmpipe then pays its mask bookkeeping (and the per-lane loop of any load inside) on
/// every score of every tile, masked call or not (lavapipe, B1 H8 D64 T512: 10.2 against 9.1 ms).
fn softmax(s: &mut String, r: usize, kt: usize, masked: bool) {
    for i in 0..r {
        for t in 0..kt {
            let score = if masked {
                format!("mask_score(mb{i}, min(j0 + {t}u, p.tk - 1u), s{i}_{t})")
            } else {
                format!("s{i}_{t}")
            };
            let _ = writeln!(
                s,
                "        let x{i}_{t} = select(NEG, {score}, j0 + {t}u < e{i});"
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
}

/// Whether 8-element group `g` of a row of `len` elements lies in a whole 32-element block that
/// the subgroup loads as one vec4 per lane (lane `l` holds elements `4l ..+4` of the block).
fn in_wide_block(vec: bool, g: usize, len: usize) -> bool {
    vec && 32 * (g / 4 + 1) <= len
}

/// The broadcast of element `8g + e` of a row whose lane values are `wide` (vec4s, one per 32
/// elements, for groups in a whole block) or `narrow` (one element per lane).
fn row_element(wide: &str, narrow: &str, is_wide: bool, g: usize, e: usize) -> String {
    if is_wide {
        let w = 8 * (g % 4) + e;
        format!(
            "subgroupBroadcast({wide}_{}.{}, {}u)",
            g / 4,
            COMP[w % 4],
            w / 4
        )
    } else {
        format!("subgroupBroadcast({narrow}, {e}u)")
    }
}

/// One key tile with k and v rows shared over the 8-lane subgroup: each lane loads one element of
/// every 8 (`8g + sid`) or, with `vec`, one vec4 of every whole 32 (`32b + 4 sid ..+4`), and
/// `subgroupBroadcast` hands every element to every lane (an extract and a splat on lavapipe).
/// Same arithmetic, in the same order, as [`tile`].
fn tile_subgroup(r: usize, kt: usize, d: usize, dv: usize, vec: bool, masked: bool) -> String {
    let mut s = String::new();
    key_rows(&mut s, kt);
    for t in 0..kt {
        for i in 0..r {
            let _ = writeln!(s, "        var s{i}_{t} = 0.0;");
        }
        for g in 0..d.div_ceil(8) {
            let wide = in_wide_block(vec, g, d);
            if wide && g % 4 == 0 {
                let _ = writeln!(
                    s,
                    "        let kw{t}_{} = k_at4(kr{t} + {}u + 4u * sid);",
                    g / 4,
                    8 * g
                );
            }
            if wide {
                let _ = writeln!(s, "        {{");
            } else {
                let _ = writeln!(
                    s,
                    "        {{ let kl = {};",
                    lane_load("k", &format!("kr{t}"), g, d)
                );
            }
            for e in 0..8.min(d - 8 * g) {
                let (c, comp) = ((8 * g + e) / 4, COMP[(8 * g + e) % 4]);
                let bcast = row_element(&format!("kw{t}"), "kl", wide, g, e);
                let _ = write!(s, "            let kc{e} = {bcast};");
                for i in 0..r {
                    let _ = write!(s, " s{i}_{t} = fma(q{i}_{c}.{comp}, kc{e}, s{i}_{t});");
                }
                let _ = writeln!(s);
            }
            let _ = writeln!(s, "        }}");
        }
    }
    softmax(&mut s, r, kt, masked);
    for g in 0..dv.div_ceil(8) {
        let wide = in_wide_block(vec, g, dv);
        if wide && g % 4 == 0 {
            for t in 0..kt {
                let _ = writeln!(
                    s,
                    "        let vw{t}_{} = v_at4(vr{t} + {}u + 4u * sid);",
                    g / 4,
                    8 * g
                );
            }
        }
        let _ = write!(s, "        {{");
        for t in (0..kt).filter(|_| !wide) {
            let _ = write!(
                s,
                " let vl{t} = {};",
                lane_load("v", &format!("vr{t}"), g, dv)
            );
        }
        let _ = writeln!(s);
        for c in 2 * g..(2 * g + 2).min(dv.div_ceil(4)) {
            let e0 = 4 * (c - 2 * g);
            for t in 0..kt {
                let b: Vec<String> = (0..4)
                    .map(|e| row_element(&format!("vw{t}"), &format!("vl{t}"), wide, g, e0 + e))
                    .collect();
                let _ = writeln!(
                    s,
                    "            let vc{t}_{c} = vec4<f32>({});",
                    b.join(", ")
                );
            }
            for i in 0..r {
                let _ = write!(s, "            a{i}_{c} = a{i}_{c} * corr{i};");
                for t in 0..kt {
                    let _ = write!(
                        s,
                        " a{i}_{c} = fma(vec4<f32>(p{i}_{t}), vc{t}_{c}, a{i}_{c});"
                    );
                }
                let _ = writeln!(s);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn form(sg: bool, vec: bool, masked: bool) -> FlashForm {
        FlashForm {
            sg,
            vec,
            vec_out: false,
            masked,
        }
    }

    /// The subgroup form loads each k and v row once per subgroup: one element per lane per 8
    /// (`k_at`), or with vec4 rows one vec4 per lane per whole 32 elements (`k_at4`) and single
    /// elements for the rest; every element is spread with one broadcast. The plain form loads
    /// vec4 chunks in every lane. That all forms compute the attention is checked on the device
    /// by tests/attention.rs.
    #[test]
    fn subgroup_form_loads_each_row_element_once_per_subgroup() {
        for (r, kt, d, dv) in [
            (8, 4, 64, 64),
            (2, 3, 13, 5),
            (1, 1, 40, 24),
            (2, 2, 36, 72),
        ] {
            for vec in [false, true] {
                let what = format!("r{r} kt{kt} d{d} dv{dv} vec={vec}");
                let sg = unrolled_flash_source(r, kt, d, dv, form(true, vec, false));
                assert!(sg.contains("@builtin(subgroup_invocation_id) sid: u32"));
                // Whole 32-element blocks as vec4 loads (with vec4 rows), the rest per 8.
                let wide = |len: usize| if vec { len / 32 } else { 0 };
                let narrow = |len: usize| len.div_ceil(8) - 4 * wide(len);
                assert_eq!(sg.matches("k_at4(").count(), kt * wide(d), "{what}");
                assert_eq!(sg.matches("k_at(").count(), kt * narrow(d), "{what}");
                assert_eq!(sg.matches("v_at4(").count(), kt * wide(dv), "{what}");
                assert_eq!(sg.matches("v_at(").count(), kt * narrow(dv), "{what}");
                let bcast = kt * (d + 4 * dv.div_ceil(4));
                assert_eq!(sg.matches("subgroupBroadcast(").count(), bcast, "{what}");
                assert!(!sg.contains("ld_k(") && !sg.contains("array<"));
                let plain = unrolled_flash_source(r, kt, d, dv, form(false, vec, false));
                assert!(!plain.contains("subgroupBroadcast(") && !plain.contains("sid: u32"));
                assert_eq!(plain.matches("ld_k(").count(), kt * d.div_ceil(4));
            }
        }
    }

    /// Every score of a tile is cut at the row's end by a select (no branch on the row's end),
    /// and only the variants generated for a mask look it up, once per score. That masks,
    /// causal ends and ragged tails give the right attention is checked on the device by
    /// tests/attention.rs.
    #[test]
    fn mask_lookup_only_in_masked_variants_and_ends_cut_by_select() {
        let (r, kt) = (3, 5);
        for sg in [false, true] {
            for masked in [false, true] {
                let src = unrolled_flash_source(r, kt, 16, 16, form(sg, true, masked));
                let what = format!("sg={sg} masked={masked}");
                assert_eq!(
                    src.matches("select(NEG, mask_score(").count(),
                    r * kt * masked as usize,
                    "{what}"
                );
                for (i, t) in (0..r).flat_map(|i| (0..kt).map(move |t| (i, t))) {
                    let cut = format!("let x{i}_{t} = select(NEG, ");
                    assert_eq!(src.matches(&cut).count(), 1, "{what}: {cut}");
                    assert!(src.contains(&format!("j0 + {t}u < e{i});")), "{what}");
                }
                assert!(!src.contains("if (j0"), "{what}");
            }
        }
    }

    /// With `out` in vec4 units each output chunk is one store (the split partials and the
    /// normalized rows alike); without, four guarded scalar stores. That both write the right
    /// rows is checked on the device by tests/attention.rs (dense outputs take the vec4 form,
    /// head dims off 4 and unaligned views the scalar one).
    #[test]
    fn vec4_output_stores_one_chunk_per_store() {
        let (r, dv) = (2, 24);
        for vec_out in [false, true] {
            let f = FlashForm {
                vec_out,
                ..form(true, true, false)
            };
            let src = unrolled_flash_source(r, 4, 16, dv, f);
            // Per row: its chunks as partials, and as the normalized row.
            assert_eq!(src.matches("st4(pr * DV, ").count(), r * dv / 4);
            assert_eq!(src.matches("st4(ob, ").count(), r * dv / 4);
            assert_eq!(
                src.contains("out[(base >> 2u) + c] = a;"),
                vec_out,
                "vec_out={vec_out}"
            );
            assert_eq!(src.contains("out[base + 4u * c + 3u]"), !vec_out);
        }
    }
}
