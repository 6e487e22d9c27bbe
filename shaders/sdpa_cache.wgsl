// Flash-decoding over a KV cache whose length lives on the GPU: one query per (row, head) attends
// to cache positions 0 ..= s, where s = step[0] (the loop runtime's step index), so one recorded
// step serves every step of a run and costs O(s), not O(T). First pass (CPU adapters): each
// invocation runs one chunk of one (row, head)'s keys with an online softmax and writes its
// partial (running max, sum, Dh accumulator); sdpa_cache_merge.wgsl combines the live chunks.
// Chunks past s write (NEG, 0) and no work. With one chunk per (row, head) (DIRECT = 1) the
// invocation writes the normalized row itself (`part` is then the output [R, E], which has the
// partials' layout [R*H, 1, DH]) and there is no merge pass. Every lane of a SIMD group runs the
// same key count (the step is uniform), so lanes do not wait on each other.
//
// Bindings (generated from `CacheAttnBindings` in src/kernels/kv_cache/mod.rs):
//   p      uniform Params
//   q:     [R, C] f32, E columns from p.q_col (head h at q_col + h*DH ..), row stride p.src_stride = C
//                                                      binding 1
//   kv:    [2L, R, T, E] f32 cache planes              binding 2 (keys at p.k_off, values p.v_off)
//   step:  [1] u32                                     binding 3
//   part:  [R*H, nsplit, DH] f32 partial accumulators  binding 4
//   stats: [R*H, nsplit, 2] f32 partial (max, sum)     binding 5 (unused when DIRECT)
//
// With APPEND = 1 the step's keys and values are columns p.k_col and p.v_col of q's rows (a
// fused q/k/v projection) and the invocation whose chunk holds position s first writes its head's
// slice of them to the cache (kv then read-write; `append_kv` is generated in
// src/kernels/kv_cache/mod.rs, empty without APPEND), so no separate kv_write pass runs; the
// other chunks never read position s.
//
// Constants: WG, DH (head width), DIRECT, APPEND. Grid: ceil(R * H * nsplit / WG) workgroups, linear index
// wid.x + wid.y * nwg.x; invocation g takes (row, head) g / nsplit and chunk g % nsplit.

const NEG: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = (wid.x + wid.y * nwg.x) * WG + lid;
    if (g >= p.rows * p.heads * p.nsplit) {
        return;
    }
    let rh = g / p.nsplit;
    let split = g - rh * p.nsplit;
    let r = rh / p.heads;
    let h = rh - r * p.heads;
    let s = step[0];
    let n = min(s + 1u, p.t);
    let ks = split * p.chunk;
    let ke = min(n, ks + p.chunk);
    if (APPEND == 1u && s < p.t && s >= ks && s - ks < p.chunk) {
        append_kv(r, h, s, 0u, 1u);
    }
    var m = NEG;
    var l = 0.0;
    var acc: array<f32, DH>;
    let qb = r * p.src_stride + p.q_col + h * DH;
    for (var j = ks; j < ke; j++) {
        let kb = p.k_off + (r * p.t + j) * p.e + h * DH;
        var sc = 0.0;
        for (var c = 0u; c < DH; c++) {
            sc += q[qb + c] * kv[kb + c];
        }
        sc *= p.scale;
        let mn = max(m, sc);
        let corr = exp(m - mn);
        let pj = exp(sc - mn);
        l = l * corr + pj;
        let vb = p.v_off + (r * p.t + j) * p.e + h * DH;
        for (var c = 0u; c < DH; c++) {
            acc[c] = acc[c] * corr + pj * kv[vb + c];
        }
        m = mn;
    }
    let pr = rh * p.nsplit + split;
    if (DIRECT == 1u) {
        // What the merge computes for one chunk (its weight exp(m - m) is 1).
        for (var c = 0u; c < DH; c++) {
            part[pr * DH + c] = select(0.0, acc[c] / l, l > 0.0);
        }
        return;
    }
    for (var c = 0u; c < DH; c++) {
        part[pr * DH + c] = acc[c];
    }
    stats[2u * pr] = m;
    stats[2u * pr + 1u] = l;
}
