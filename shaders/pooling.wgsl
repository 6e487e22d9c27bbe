// Sentence-embedding pooling: masked mean over tokens, then optional L2 normalization.
//   out[b, e] = sum_t mask[b, t] * x[b, t, e] / max(sum_t mask[b, t], 1e-9)
//   if normalize: out[b, :] /= max(||out[b, :]||_2, 1e-12)      (F.normalize)
//
// Bindings:
//   params              uniform
//   x:    [B, T, E] f32
//   mask: [B, T]    i32 (1 = token, 0 = padding)
//   out:  [B, E]    f32
// Grid: one workgroup of WG invocations per batch row; each invocation owns E/WG columns and the
// workgroup reduces the squared norm through workgroup memory.

// workgroup-init: self -- partial[lid] is written by every invocation before the barrier that precedes any read.
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    var count = 0.0;
    for (var t = 0u; t < p.t; t++) {
        count += f32(mask[b * p.t + t] != 0);
    }
    let denom = max(count, 1e-9);
    var sq = 0.0;
    for (var e = lid; e < p.e; e += WG) {
        var s = 0.0;
        for (var t = 0u; t < p.t; t++) {
            if (mask[b * p.t + t] != 0) {
                s += x[(b * p.t + t) * p.e + e];
            }
        }
        let m = s / denom;
        out[b * p.e + e] = m;
        sq += m * m;
    }
    partial[lid] = sq;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (p.normalize != 0u) {
        let inv = 1.0 / max(sqrt(partial[0]), 1e-12);
        for (var e = lid; e < p.e; e += WG) {
            out[b * p.e + e] *= inv;
        }
    }
}
