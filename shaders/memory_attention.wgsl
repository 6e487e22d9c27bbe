// Attention over encoder memory for RNN decoders, one fused kernel per decoder step: projection of
// the query, scores, masked softmax and the context sum. One workgroup per batch row.
//
//   mode 0, additive (Bahdanau): score_t = v . tanh(W_q q + b + kp_t), kp = keys W_k^T precomputed
//           once per sequence (attention_project.wgsl); context = sum_t w_t keys_t
//   mode 1, dot (Luong):          score_t = q . k_t;                  context = sum_t w_t values_t
//   mode 2, general (Luong):      score_t = q . (W k_t) = (W^T q) . k_t, so each step projects the
//           query once (a GEMV of Dq x Dk) instead of every key;     context = sum_t w_t values_t
//
// Bindings, declared by the Rust side in binding order (MemoryAttentionBindings in
// src/kernels/memory_attention.rs; w, vv, bias as f32 / f16 / packed f16 with w_at, vv_at, bias_at,
// the others as plain arrays):
//   p:        Params uniform
//   query:    [B, Dq] f32                                   (binding 1)
//   src:      [B, T, S] f32: kp (S = A) in mode 0, keys (S = Dk) otherwise (binding 2)
//   values:   [B, T, Dv] f32: keys (Dv = Dk) in mode 0      (binding 3)
//   w:        [A, Dq] W_q in mode 0, [Dq, Dk] W in mode 2   (binding 4; a dummy in mode 1)
//   vv:       [A] v (mode 0)                                (binding 5)
//   bias:     [A] b (mode 0)                                (binding 6)
//   mask:     [B, T] u32, non-zero = valid (when has_mask)  (binding 7)
//   ctx:      [B, Dv] f32 context                           (binding 8)
//   weights:  [B, T] f32 attention weights                  (binding 9)
//   qproj:    [B, S] f32 scratch: W_q q + b (mode 0) or W^T q (mode 2) (binding 10)
//
// Constants: WG. Grid: x = B. Rows whose keys are all masked give zero weights and context.

const NEG: f32 = -3.0e38;

var<workgroup> red: array<f32, WG>;

// Workgroup max (is_max) or sum of one value per invocation; every invocation gets the result.
fn reduce(x: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = x;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) {
            let o = red[lid + w];
            red[lid] = select(red[lid] + o, max(red[lid], o), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn score(b: u32, t: u32) -> f32 {
    let row = (b * p.t + t) * p.s;
    var s = 0.0;
    if (p.mode == 0u) {
        for (var a = 0u; a < p.s; a++) {
            s += vv_at(a) * tanh(clamp(qproj[b * p.s + a] + src[row + a], -15.0, 15.0));
        }
    } else if (p.mode == 1u) {
        for (var d = 0u; d < p.s; d++) {
            s += query[b * p.dq + d] * src[row + d];
        }
    } else {
        for (var d = 0u; d < p.s; d++) {
            s += qproj[b * p.s + d] * src[row + d];
        }
    }
    return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    // Phase 0: project the query once for this step.
    if (p.mode == 0u) {
        // qproj[a] = sum_d W_q[a, d] q[d] + b[a]
        for (var a = lid; a < p.s; a += WG) {
            var acc = bias_at(a);
            for (var d = 0u; d < p.dq; d++) {
                acc += w_at(a * p.dq + d) * query[b * p.dq + d];
            }
            qproj[b * p.s + a] = acc;
        }
    } else if (p.mode == 2u) {
        // qproj[k] = sum_d W[d, k] q[d]  (W^T q)
        for (var k = lid; k < p.s; k += WG) {
            var acc = 0.0;
            for (var d = 0u; d < p.dq; d++) {
                acc += w_at(d * p.s + k) * query[b * p.dq + d];
            }
            qproj[b * p.s + k] = acc;
        }
    }
    storageBarrier();

    // Phase 1: masked scores into `weights`, and their max.
    var mx = NEG;
    for (var t = lid; t < p.t; t += WG) {
        var s = NEG;
        if (p.has_mask == 0u || mask[b * p.t + t] != 0u) {
            s = score(b, t);
        }
        weights[b * p.t + t] = s;
        mx = max(mx, s);
    }
    mx = reduce(mx, lid, true);

    // Phase 2: exponentials (each invocation revisits its own entries) and their sum.
    var sum = 0.0;
    for (var t = lid; t < p.t; t += WG) {
        let s = weights[b * p.t + t];
        let e = select(0.0, exp(s - mx), s > NEG);
        weights[b * p.t + t] = e;
        sum += e;
    }
    sum = reduce(sum, lid, false);
    let inv = select(0.0, 1.0 / sum, sum > 0.0);
    for (var t = lid; t < p.t; t += WG) {
        weights[b * p.t + t] *= inv;
    }
    storageBarrier();

    // Phase 3: context, one column per invocation; the weights are the same for all (uniform).
    for (var c = lid; c < p.dv; c += WG) {
        var acc = 0.0;
        for (var t = 0u; t < p.t; t++) {
            acc += weights[b * p.t + t] * values[(b * p.t + t) * p.dv + c];
        }
        ctx[b * p.dv + c] = acc;
    }
}
