// Flash-style scaled dot-product attention: y = softmax(q k^T * scale + mask) v, without ever
// materializing the [Tq, Tk] score matrix.
//
// Bindings (q, k, v declared by the Rust side with loaders ld_q/ld_k/ld_v(row_base, c) that return
// elements 4c..4c+3 of a row, zero past the row's end):
//   p:     Params uniform (src/kernels/sdpa/params.rs)
//   q:     [B, H, Tq, D]  f32 (strided, binding 1)
//   k:     [B, H, Tk, D]  f32 (strided, binding 2)
//   v:     [B, H, Tk, Dv] f32 (strided, binding 3)
//   mask:  broadcast to [B, H, Tq, Tk] (binding 4, sdpa_mask.wgsl)
//   out:   [B, H, Tq, Dv] f32 (strided) when nsplit == 1; else partial accumulators
//          [B*H*Tq, nsplit, Dv] for sdpa_merge.wgsl
//   stats: [B*H*Tq] log-sum-exp per row (when flags bit 0; for attention_probs.wgsl), or partial
//          (max, sum) pairs [B*H*Tq, nsplit, 2] when nsplit > 1
//
// Compile-time constants: WG (invocations per workgroup), R (query rows per invocation), D, DV, D4 = ceil(D/4), DV4 = ceil(DV/4),
// KT (keys per tile), VEC (1 when every row start is 4-aligned so rows load as vec4), SHARED (1:
// stage each K/V tile in workgroup memory, the usual design on discrete GPUs).
//
// Grid: x = row_blocks * nsplit (row block fastest), y = B*H.
//
// Design (chosen for lavapipe, where a workgroup runs on one CPU core with SIMD across invocations
// and barriers are costly): each invocation owns R query rows and walks the keys of its split in
// tiles of KT. All invocations of a workgroup share (b, h) and visit the same key at the same time,
// so the k/v loads are uniform (one scalar load broadcast to the SIMD lanes) and no workgroup memory
// or barrier is needed. Per tile, q is read once per 4 dims for all KT keys (scores in KT
// registers), the running max is updated once, the accumulator rescaled once and then updated with
// KT probabilities per loaded accumulator chunk. On CPU adapters with head dims <= 64 the
// straight-line variant shaders/sdpa_cpu.wgsl (named registers instead of the loop-indexed private
// arrays below, which lavapipe keeps in per-lane scratch memory) runs instead. Extra memory: none
// (or O(B*H*Tq*Dv*nsplit) partials when the keys are split).

// K/V tile staging (SHARED == 1; KT is then sized so both fit the workgroup memory limit).
// workgroup-init: self -- each key tile writes k_tile[0..KT * D4] and v_tile[0..KT * DV4] (rows clamped to tk - 1) before the barrier that precedes the reads.
var<workgroup> k_tile: array<vec4<f32>, KT * D4>;
var<workgroup> v_tile: array<vec4<f32>, KT * DV4>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let rb = wid.x % p.row_blocks;
    let split = wid.x / p.row_blocks;
    let bh = wid.y;
    let b = bh / p.heads;
    let h = bh % p.heads;
    // This invocation owns rows i0 + lid + r*WG, r < R (strided so that each of the R passes
    // covers WG consecutive rows).
    let i0 = rb * WG * R;

    // Keys of this split, cut by the causal limit: per row (my_end) and for the workgroup (wg_end,
    // the limit of its last row, which sees the most keys).
    let ks = split * p.chunk;
    let ke = min(p.tk, ks + p.chunk);
    let wg_end = causal_end(min(i0 + WG * R - 1u, p.tq - 1u), ke);

    var qv: array<vec4<f32>, D4 * R>;
    var my_end: array<u32, R>;
    var mb: array<u32, R>;
    for (var r = 0u; r < R; r++) {
        // Rows past Tq shadow the last row so every load stays in bounds; they never write.
        let i = min(i0 + lid + r * WG, p.tq - 1u);
        my_end[r] = causal_end(i, ke);
        mb[r] = p.m.x + b * p.m.y + h * p.m.z + i * p.m.w;
        let qb = p.q.x + b * p.q.y + h * p.q.z + i * p.q.w;
        for (var c = 0u; c < D4; c++) {
            qv[r * D4 + c] = ld_q(qb, c) * p.scale;
        }
    }
    let kb = p.k.x + b * p.k.y + h * p.k.z;
    let vb = p.v.x + b * p.v.y + h * p.v.z;

    var m: array<f32, R>;
    var l: array<f32, R>;
    var corr: array<f32, R>;
    for (var r = 0u; r < R; r++) {
        m[r] = NEG;
    }
    var acc: array<vec4<f32>, DV4 * R>;
    for (var j0 = ks; j0 < wg_end; j0 += KT) {
        if (SHARED == 1u) {
            // Stage the tile's keys and values in workgroup memory (each invocation loads a
            // share), so the compute below reads them at addresses uniform across invocations.
            for (var x = lid; x < KT * D4; x += WG) {
                let j = min(j0 + x / D4, p.tk - 1u);
                k_tile[x] = ld_k(kb + j * p.k.w, x % D4);
            }
            for (var x = lid; x < KT * DV4; x += WG) {
                let j = min(j0 + x / DV4, p.tk - 1u);
                v_tile[x] = ld_v(vb + j * p.v.w, x % DV4);
            }
            workgroupBarrier();
        }
        // Scores of KT keys for R rows: every k chunk loaded once serves R rows.
        // Zeroed by hand every tile (see sdpa_decode.wgsl: a browser scored later tiles wrong).
        var s: array<f32, KT * R>;
        for (var t = 0u; t < KT * R; t++) {
            s[t] = 0.0;
        }
        for (var c = 0u; c < D4; c++) {
            for (var t = 0u; t < KT; t++) {
                var kc: vec4<f32>;
                if (SHARED == 1u) {
                    kc = k_tile[t * D4 + c];
                } else {
                    kc = ld_k(kb + min(j0 + t, p.tk - 1u) * p.k.w, c);
                }
                for (var r = 0u; r < R; r++) {
                    s[r * KT + t] += dot(qv[r * D4 + c], kc);
                }
            }
        }
        for (var r = 0u; r < R; r++) {
            var tmax = NEG;
            for (var t = 0u; t < KT; t++) {
                let j = j0 + t;
                var sc = NEG;
                if (j < my_end[r]) {
                    sc = apply_mask(mb[r], j, s[r * KT + t]);
                }
                s[r * KT + t] = sc;
                tmax = max(tmax, sc);
            }
            // Online softmax: rescale what was summed under the old max (exp(NEG - x) == 0).
            let mn = max(m[r], tmax);
            corr[r] = exp(m[r] - mn);
            m[r] = mn;
            var lr = l[r] * corr[r];
            for (var t = 0u; t < KT; t++) {
                let sc = s[r * KT + t];
                let pt = select(0.0, exp(sc - mn), sc > NEG);
                s[r * KT + t] = pt;
                lr += pt;
            }
            l[r] = lr;
        }
        for (var c = 0u; c < DV4; c++) {
            var a: array<vec4<f32>, R>;
            for (var r = 0u; r < R; r++) {
                a[r] = acc[r * DV4 + c] * corr[r];
            }
            for (var t = 0u; t < KT; t++) {
                var vc: vec4<f32>;
                if (SHARED == 1u) {
                    vc = v_tile[t * DV4 + c];
                } else {
                    vc = ld_v(vb + min(j0 + t, p.tk - 1u) * p.v.w, c);
                }
                for (var r = 0u; r < R; r++) {
                    a[r] += s[r * KT + t] * vc;
                }
            }
            for (var r = 0u; r < R; r++) {
                acc[r * DV4 + c] = a[r];
            }
        }
        if (SHARED == 1u) {
            workgroupBarrier();
        }
    }

    for (var r = 0u; r < R; r++) {
        let ii = i0 + lid + r * WG;
        if (ii >= p.tq) {
            break;
        }
        let row = bh * p.tq + ii;
        if (p.nsplit > 1u) {
            // Partial result for sdpa_merge.wgsl: unnormalized accumulator, max and sum.
            let pr = row * p.nsplit + split;
            for (var c = 0u; c < DV4; c++) {
                let a = acc[r * DV4 + c];
                for (var e = 0u; e < 4u; e++) {
                    let d = 4u * c + e;
                    if (d < DV) {
                        out[pr * DV + d] = a[e];
                    }
                }
            }
            stats[2u * pr] = m[r];
            stats[2u * pr + 1u] = l[r];
            continue;
        }
        // A row with no visible key (fully masked) gives zeros.
        let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
        let ob = p.o.x + b * p.o.y + h * p.o.z + ii * p.o.w;
        for (var c = 0u; c < DV4; c++) {
            let a = acc[r * DV4 + c] * inv;
            for (var e = 0u; e < 4u; e++) {
                let d = 4u * c + e;
                if (d < DV) {
                    out[ob + d] = a[e];
                }
            }
        }
        if ((p.flags & 1u) != 0u) {
            stats[row] = select(NEG, m[r] + log(l[r]), l[r] > 0.0);
        }
    }
}
