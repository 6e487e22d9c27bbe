// Flash-decoding, first pass, for GPUs: one workgroup per (query row, key chunk). Few query rows
// (typically Tq = 1) against many keys; the chunk's WG invocations share the work three ways:
//   1. scores: one key per invocation at a time (a D-long dot product each), kept in workgroup
//      memory; the chunk's max by a tree reduction (shaders/common/workgroup_reduce.wgsl);
//   2. probabilities exp(s - max) of each invocation's own keys, and their sum by a reduction;
//   3. P·V: invocation (c, g) = (lid % DV4, lid / DV4) sums the keys g, g + G, g + 2G, ... of the
//      Dv chunk c (G = WG / DV4 key groups, so neighbouring invocations read neighbouring v
//      elements), and the G partial sums are added in workgroup memory.
// It writes the chunk's partial (max, sum, unnormalized Dv accumulator) like sdpa_decode.wgsl, and
// sdpa_merge.wgsl combines the chunks. Where sdpa_decode.wgsl runs a whole chunk in one invocation
// (scores, softmax and accumulator in private arrays: fine on a CPU adapter, but a long serial
// chain per invocation and arrays that NVIDIA's compiler keeps in local memory), here every key's
// work is spread over the workgroup and nothing is held in an indexed private array.
//
// Bindings, generated from `AttnBindings` in src/kernels/sdpa/mod.rs (loaders ld_q/ld_k/ld_v):
//   p:     Params uniform (src/kernels/sdpa/params.rs; nsplit, chunk)
//   q:     [B, H, Tq, D]  f32 (strided, binding 1)
//   k:     [B, H, Tk, D]  f32 (strided, binding 2)
//   v:     [B, H, Tk, Dv] f32 (strided, binding 3)
//   mask:  broadcast to [B, H, Tq, Tk] (binding 4)
//   out:   [B*H*Tq, nsplit, Dv] f32 partial accumulators (binding 5)
//   stats: [B*H*Tq, nsplit, 2] f32 partial (max, sum) (binding 6)
//
// Constants: WG (a power of two, at least DV4), D, DV, D4, DV4, VEC as in sdpa.wgsl, G = WG / DV4,
// MAXC (the largest chunk: the scores' workgroup array). Grid: x = nsplit, y = B*H*Tq.

// workgroup-init: self -- sc[t] is written for every t < n (the chunk's keys) in the score loop
// before the barrier that precedes any read, and only t < n is read; accs is written by every
// invocation before the barrier that precedes its reads. (`red` and the reductions
// workgroup_max / workgroup_sum: shaders/common/workgroup_reduce.wgsl.)
var<workgroup> sc: array<f32, MAXC>;
var<workgroup> accs: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.y;
    let bh = r / p.tq;
    let i = r % p.tq;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let split = wid.x;
    let ks = split * p.chunk;
    // Keys of this chunk (the plan makes every split start inside Tk), and one past the last key
    // this row may see.
    let n = min(p.chunk, p.tk - min(ks, p.tk));
    let ke = causal_end(i, ks + n);
    let qb = p.q.x + b * p.q.y + h * p.q.z + i * p.q.w;
    let kb = p.k.x + b * p.k.y + h * p.k.z;
    let vb = p.v.x + b * p.v.y + h * p.v.z;
    let mb = p.m.x + b * p.m.y + h * p.m.z + i * p.m.w;

    // 1. Scores and the chunk's max.
    var tmax = NEG;
    for (var t = lid; t < n; t += WG) {
        let j = ks + t;
        var s = NEG;
        if (j < ke) {
            var dotp = 0.0;
            for (var c = 0u; c < D4; c++) {
                dotp += dot(ld_q(qb, c), ld_k(kb + j * p.k.w, c));
            }
            s = apply_mask(mb, j, dotp * p.scale);
        }
        sc[t] = s;
        tmax = max(tmax, s);
    }
    let m = workgroup_max(lid, tmax);

    // 2. Probabilities of this invocation's keys (masked ones 0: exp(NEG - m) would be too) and
    // the chunk's sum.
    var lsum = 0.0;
    for (var t = lid; t < n; t += WG) {
        let s = sc[t];
        let pt = select(0.0, exp(s - m), s > NEG);
        sc[t] = pt;
        lsum += pt;
    }
    // The sum's barriers also publish the probabilities in `sc` for step 3.
    let l = workgroup_sum(lid, lsum);

    // 3. P·V over key groups, then the groups' sums.
    let c = lid % DV4;
    let g = lid / DV4;
    var a = vec4<f32>(0.0);
    if (g < G) {
        for (var t = g; t < min(n, ke - min(ke, ks)); t += G) {
            a += sc[t] * ld_v(vb + (ks + t) * p.v.w, c);
        }
    }
    accs[lid] = a;
    workgroupBarrier();
    let pr = r * p.nsplit + split;
    if (lid < DV4) {
        var tot = accs[lid];
        for (var gg = 1u; gg < G; gg++) {
            tot += accs[lid + gg * DV4];
        }
        for (var e = 0u; e < 4u; e++) {
            let d = 4u * c + e;
            if (d < DV) {
                out[pr * DV + d] = tot[e];
            }
        }
    }
    if (lid == 0u) {
        stats[2u * pr] = m;
        stats[2u * pr + 1u] = l;
    }
}
