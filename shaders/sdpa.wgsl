// Flash-style scaled dot-product attention: y = softmax(q k^T * scale + mask) v, without ever
// materializing the [Tq, Tk] score matrix.
//
// Bindings (q, k, v declared by the Rust side with loaders ld_q/ld_k/ld_v(row_base, c) that return
// elements 4c..4c+3 of a row, zero past the row's end):
//   p:     Params uniform (sdpa_params.wgsl)
//   q:     [B, H, Tq, D]  f32 (strided, binding 1)
//   k:     [B, H, Tk, D]  f32 (strided, binding 2)
//   v:     [B, H, Tk, Dv] f32 (strided, binding 3)
//   mask:  broadcast to [B, H, Tq, Tk] (binding 4, sdpa_mask.wgsl)
//   out:   [B, H, Tq, Dv] f32 (strided) when nsplit == 1; else partial accumulators
//          [B*H*Tq, nsplit, Dv] for sdpa_merge.wgsl
//   stats: [B*H*Tq] log-sum-exp per row (when flags bit 0; for attention_probs.wgsl), or partial
//          (max, sum) pairs [B*H*Tq, nsplit, 2] when nsplit > 1
//
// Compile-time constants: WG (query rows per workgroup), D, DV, D4 = ceil(D/4), DV4 = ceil(DV/4),
// KT (keys per tile), VEC (1 when every row start is 4-aligned so rows load as vec4).
//
// Grid: x = row_blocks * nsplit (row block fastest), y = B*H.
//
// Design (chosen for lavapipe, where a workgroup runs on one CPU core with SIMD across invocations
// and barriers are costly): each invocation owns one query row and walks the keys of its split in
// tiles of KT. All invocations of a workgroup share (b, h) and visit the same key at the same time,
// so the k/v loads are uniform (one scalar load broadcast to the SIMD lanes) and no workgroup memory
// or barrier is needed. Per tile, q is read once per 4 dims for all KT keys (scores in KT
// registers), the running max is updated once, the accumulator rescaled once and then updated with
// KT probabilities per loaded accumulator chunk. q (pre-multiplied by the scale) and the Dv
// accumulator live in named registers q0.., a0.. (vec4 chunks of the exact head dims): the
// `{{NAME}}` markers are filled with straight-line code by src/kernels/sdpa_gen.rs, because
// lavapipe turns loop-indexed private arrays into per-lane scratch memory (gathers/scatters). Extra memory: none (or O(B*H*Tq*Dv*nsplit) partials when the keys are split).

@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let rb = wid.x % p.row_blocks;
    let split = wid.x / p.row_blocks;
    let bh = wid.y;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let i0 = rb * WG;
    let live = i0 + lid < p.tq;
    // Inactive invocations shadow the last row so every load stays in bounds; they never write.
    let i = min(i0 + lid, p.tq - 1u);

    // Keys of this split, cut by the causal limit: per row (my_end) and for the workgroup (wg_end,
    // the limit of its last row, which sees the most keys).
    let ks = split * p.chunk;
    let ke = min(p.tk, ks + p.chunk);
    let my_end = causal_end(i, ke);
    let wg_end = causal_end(min(i0 + WG - 1u, p.tq - 1u), ke);

    var qv: array<vec4<f32>, D4>;
    let qb = p.q_off + b * p.q_sb + h * p.q_sh + i * p.q_st;
    for (var c = 0u; c < D4; c++) {
        qv[c] = ld_q(qb, c) * p.scale;
    }
    let kb = p.k_off + b * p.k_sb + h * p.k_sh;
    let vb = p.v_off + b * p.v_sb + h * p.v_sh;
    let mb = p.m_off + b * p.m_sb + h * p.m_sh + i * p.m_si;

    var m = NEG;
    var l = 0.0;
    var acc: array<vec4<f32>, DV4>;
    for (var j0 = ks; j0 < wg_end; j0 += KT) {
        // Scores of KT keys: q chunk loaded once, reused for every key of the tile.
        var s: array<f32, KT>;
        for (var c = 0u; c < D4; c++) {
            let qc = qv[c];
            for (var t = 0u; t < KT; t++) {
                let j = min(j0 + t, p.tk - 1u);
                s[t] += dot(qc, ld_k(kb + j * p.k_st, c));
            }
        }
        var tmax = NEG;
        for (var t = 0u; t < KT; t++) {
            let j = j0 + t;
            var sc = NEG;
            if (j < my_end) {
                sc = apply_mask(mb, j, s[t]);
            }
            s[t] = sc;
            tmax = max(tmax, sc);
        }
        // Online softmax: rescale what was summed under the old max (exp(NEG - x) == 0).
        let mn = max(m, tmax);
        let corr = exp(m - mn);
        m = mn;
        l *= corr;
        for (var t = 0u; t < KT; t++) {
            let pt = select(0.0, exp(s[t] - mn), s[t] > NEG);
            s[t] = pt;
            l += pt;
        }
        for (var c = 0u; c < DV4; c++) {
            var a = acc[c] * corr;
            for (var t = 0u; t < KT; t++) {
                let j = min(j0 + t, p.tk - 1u);
                a += s[t] * ld_v(vb + j * p.v_st, c);
            }
            acc[c] = a;
        }
    }
    if (!live) {
        return;
    }

    let r = bh * p.tq + i;
    if (p.nsplit > 1u) {
        // Partial result for sdpa_merge.wgsl: unnormalized accumulator, max and sum.
        let pr = r * p.nsplit + split;
        for (var c = 0u; c < DV4; c++) {
            let a = acc[c] * 1.0;
            for (var e = 0u; e < 4u; e++) {
                let d = 4u * c + e;
                if (d < DV) {
                    out[pr * DV + d] = a[e];
                }
            }
        }
        stats[2u * pr] = m;
        stats[2u * pr + 1u] = l;
        return;
    }
    // A row with no visible key (fully masked) gives zeros.
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let ob = p.o_off + b * p.o_sb + h * p.o_sh + i * p.o_st;
        for (var c = 0u; c < DV4; c++) {
            let a = acc[c] * inv;
            for (var e = 0u; e < 4u; e++) {
                let d = 4u * c + e;
                if (d < DV) {
                    out[ob + d] = a[e];
                }
            }
        }
    if ((p.flags & 1u) != 0u) {
        stats[r] = select(NEG, m + log(l), l > 0.0);
    }
}
