// Flash-decoding over a KV cache, first pass, for GPUs: one workgroup per (row, head, chunk of
// p.chunk = WG positions). The cache length lives on the GPU (s = step[0]): chunks past s exit at
// once, so one recorded step serves every step of a run. Like sdpa_decode_wg.wgsl, the chunk's
// work is spread over the workgroup: one position's score per invocation, the max and the sum by
// tree reductions, then P·V with invocation (c, g) = (lid % LG, lid / LG) summing positions g,
// g + G, ... of head dims c, c + LG, ... (LG = min(DH, WG) lanes per group, G = WG / LG groups),
// the groups added in workgroup memory. It writes the same partials as sdpa_cache.wgsl (one
// invocation per chunk, the CPU-adapter kernel) for sdpa_cache_merge.wgsl.
//
// Bindings (generated from `CacheAttnBindings` in src/kernels/kv_cache/mod.rs):
//   p      uniform Params
//   q:     [R, C] f32, E columns from p.q_col (head h at q_col + h*DH ..), row stride p.src_stride = C
//                                                      binding 1
//   kv:    [2L, R, T, E] f32 cache planes              binding 2 (keys at p.k_off, values p.v_off)
//   step:  [1] u32                                     binding 3
//   part:  [R*H, nsplit, DH] f32 partial accumulators  binding 4
//   stats: [R*H, nsplit, 2] f32 partial (max, sum)     binding 5
//
// With APPEND = 1 the step's keys and values are columns p.k_col and p.v_col of q's rows (a
// fused q/k/v projection): the workgroup whose chunk holds position s first writes its head's
// slice of them to the cache (kv then read-write; `append_kv` is generated in
// src/kernels/kv_cache/mod.rs) and a storage barrier makes them visible to the
// workgroup's other invocations before any reads; no separate kv_write pass runs.
//
// Constants: WG (a power of two; p.chunk == WG), DH (head width), LG, G, ACCN = G * DH, APPEND.
// Grid: x = nsplit = ceil(T / WG), y = R * H.

const NEG: f32 = -3.0e38;

// workgroup-init: self -- sc[t] is written by invocation t for every t < WG before the barrier
// that precedes its reads; accs[g * DH + c] is written for every g < G, c < DH (the P·V loop's
// (c, g) pairs cover them) before the barrier that precedes the final sums, which read only those.
// (`red` and the reductions: shaders/common/workgroup_reduce.wgsl.)
var<workgroup> sc: array<f32, WG>;
var<workgroup> accs: array<f32, ACCN>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = wid.x;
    let rh = wid.y;
    let st = step[0];
    let n = min(st + 1u, p.t);
    let ks = split * WG;
    // Chunks past the cache length do nothing (uniform: the whole workgroup leaves).
    if (ks >= n) {
        return;
    }
    let ke = min(n, ks + WG);
    let r = rh / p.heads;
    let h = rh - r * p.heads;
    if (APPEND == 1u) {
        if (st < p.t && st >= ks && st - ks < WG) {
            append_kv(r, h, st, lid, WG);
        }
        storageBarrier();
    }
    let qb = r * p.src_stride + p.q_col + h * DH;

    // 1. This invocation's score and the chunk's max.
    let j = ks + lid;
    var s = NEG;
    if (j < ke) {
        let kb = p.k_off + (r * p.t + j) * p.e + h * DH;
        var dotp = 0.0;
        for (var c = 0u; c < DH; c++) {
            dotp += q[qb + c] * kv[kb + c];
        }
        s = dotp * p.scale;
    }
    let m = workgroup_max(lid, s);

    // 2. Its probability and the chunk's sum.
    let pt = select(0.0, exp(s - m), j < ke);
    sc[lid] = pt;
    // The sum's barriers also publish the probabilities in `sc` for step 3.
    let l = workgroup_sum(lid, pt);

    // 3. P·V: dims c0, c0 + LG, ... over positions g, g + G, ...
    let c0 = lid % LG;
    let g = lid / LG;
    if (g < G) {
        for (var c = c0; c < DH; c += LG) {
            var a = 0.0;
            for (var t = g; ks + t < ke; t += G) {
                a += sc[t] * kv[p.v_off + (r * p.t + ks + t) * p.e + h * DH + c];
            }
            accs[g * DH + c] = a;
        }
    }
    workgroupBarrier();
    let pr = rh * p.nsplit + split;
    for (var c = lid; c < DH; c += WG) {
        var tot = 0.0;
        for (var gg = 0u; gg < G; gg++) {
            tot += accs[gg * DH + c];
        }
        part[pr * DH + c] = tot;
    }
    if (lid == 0u) {
        stats[2u * pr] = m;
        stats[2u * pr + 1u] = l;
    }
}
