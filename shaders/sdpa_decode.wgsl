// Flash-decoding, first pass: few query rows (typically Tq = 1 with a long key cache). The keys of
// each row are cut into `nsplit` chunks of `chunk` keys; each invocation computes the partial
// softmax of one (query row, chunk) pair (running max, sum, unnormalized Dv accumulator) and
// sdpa_merge.wgsl combines the chunks. So one query row still keeps every workgroup and SIMD lane
// busy, where the one-row-per-invocation flash kernel (sdpa.wgsl) would run a single invocation
// per head. With nsplit = 1 (rows enough to fill the lanes) each invocation owns a whole row and
// writes the normalized output and its log-sum-exp itself, as sdpa.wgsl does.
//
// Bindings, generated from `AttnBindings` in src/kernels/sdpa/mod.rs (loaders ld_q/ld_k/ld_v):
//   p:     Params uniform (src/kernels/sdpa/params.rs)
//   q:     [B, H, Tq, D]  f32 (strided, binding 1)
//   k:     [B, H, Tk, D]  f32 (strided, binding 2)
//   v:     [B, H, Tk, Dv] f32 (strided, binding 3)
//   mask:  broadcast to [B, H, Tq, Tk] (binding 4)
//   out:   [B*H*Tq, nsplit, Dv] f32 partial accumulators (binding 5; `part` on the Rust side), or
//          with nsplit = 1 the output view (p.o, as in sdpa.wgsl)
//   stats: [B*H*Tq, nsplit, 2] f32 partial (max, sum) (binding 6), or with nsplit = 1 the per-row
//          log-sum-exp when flags bit 0
//
// Constants: WG, D, DV, D4, DV4, KT, VEC as in sdpa.wgsl.
// Grid: ceil(p.rows * nsplit / WG) workgroups, linear index wid.x + wid.y * nwg.x; invocation g
// takes query row g / nsplit and chunk g % nsplit. Lanes past the last pair run no keys.


@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let pairs = p.rows * p.nsplit;
    let g0 = (wid.x + wid.y * nwg.x) * WG + lid;
    let live = g0 < pairs;
    // Lanes past the last pair read the last pair's row (loads stay in bounds) and run no keys.
    let g = min(g0, pairs - 1u);
    let r = g / p.nsplit;
    let split = g - r * p.nsplit;
    let bh = r / p.tq;
    let i = r % p.tq;
    let b = bh / p.heads;
    let h = bh % p.heads;

    let ks = split * p.chunk;
    let my_end = causal_end(i, min(p.tk, ks + p.chunk));

    var qv: array<vec4<f32>, D4>;
    let qb = p.q.x + b * p.q.y + h * p.q.z + i * p.q.w;
    for (var c = 0u; c < D4; c++) {
        qv[c] = ld_q(qb, c) * p.scale;
    }
    let kb = p.k.x + b * p.k.y + h * p.k.z;
    let vb = p.v.x + b * p.v.y + h * p.v.z;
    let mb = p.m.x + b * p.m.y + h * p.m.z + i * p.m.w;

    var m = NEG;
    var l = 0.0;
    var acc: array<vec4<f32>, DV4>;
    // This chunk's keys: none for the lanes past the last chunk (their workgroup's other lanes
    // may be live) or past the causal end, so they skip the loop instead of scoring clamped keys.
    let n_keys = select(0u, min(p.chunk, my_end - ks), live && my_end > ks);
    for (var j0 = 0u; j0 < n_keys; j0 += KT) {
        // Scores of KT keys: q chunk loaded once, reused for every key of the tile.
        // Zeroed by hand every tile: WGSL zero-initializes a var each time its declaration runs,
        // but in Chromium's WebGPU (Tint on SwiftShader) the scores of a chunk of 2+ tiles came
        // out wrong without this loop (attention rows not summing to 1 over 16+ keys).
        var s: array<f32, KT>;
        for (var t = 0u; t < KT; t++) {
            s[t] = 0.0;
        }
        for (var c = 0u; c < D4; c++) {
            let qc = qv[c];
            for (var t = 0u; t < KT; t++) {
                let j = min(ks + j0 + t, p.tk - 1u);
                s[t] += dot(qc, ld_k(kb + j * p.k.w, c));
            }
        }
        var tmax = NEG;
        for (var t = 0u; t < KT; t++) {
            let j = ks + j0 + t;
            var sc = NEG;
            if (j0 + t < p.chunk && j < my_end) {
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
                let j = min(ks + j0 + t, p.tk - 1u);
                a += s[t] * ld_v(vb + j * p.v.w, c);
            }
            acc[c] = a;
        }
    }
    if (!live) {
        return;
    }
    if (p.nsplit == 1u) {
        // The whole row: normalized output, and its log-sum-exp when asked (rows whose keys are
        // all masked give zeros, as the merge does).
        let inv = select(0.0, 1.0 / l, l > 0.0);
        let ob = p.o.x + b * p.o.y + h * p.o.z + i * p.o.w;
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
        return;
    }
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
}
