// Top-k of each row of logits, with log-softmax values: the greedy argmax (K = 1) and the beam's
// per-hypothesis candidates of a decoder step, computed on the GPU so the chosen ids can feed the
// next step's embedding lookup without a readback.
//
// Bindings:
//   p       uniform Params
//   logits: [R, V] f32  binding 1
//   ids:    [R, K] u32  binding 2 (best first; ties keep the lower index, as torch.argmax)
//   logp:   [R, K] f32  binding 3 (log_softmax(logits)[ids])
//
// Constants from the Rust side: WG (threads per workgroup), K (candidates per row, 1..=16).
//
// One thread per row: rows are few (batch x beam) and V is a vocabulary of tens to thousands, so a
// sequential scan with an online log-sum-exp and a K-slot insertion list is cheap and needs no
// barriers. NaN logits are skipped.
//
// Grid: 1-D over R rows, linear index (wid.x + wid.y * nwg.x) * WG + lid.

// neg_infinity and is_nan: shaders/common/float_order.wgsl.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = (wid.x + wid.y * nwg.x) * WG + lid;
    if (row >= p.rows) {
        return;
    }
    var best_v: array<f32, K>;
    var best_i: array<u32, K>;
    let neg_inf = neg_infinity();
    for (var k = 0u; k < K; k++) {
        best_v[k] = neg_inf;
        best_i[k] = 0u;
    }
    var m = neg_inf;
    var s = 0.0;
    let base = row * p.v;
    for (var j = 0u; j < p.v; j++) {
        let x = logits[base + j];
        if (is_nan(x)) {
            continue;
        }
        if (x > m) {
            s = s * exp(m - x) + 1.0;
            m = x;
        } else {
            s += exp(x - m);
        }
        if (x > best_v[K - 1u]) {
            var k = K - 1u;
            while (k > 0u && x > best_v[k - 1u]) {
                best_v[k] = best_v[k - 1u];
                best_i[k] = best_i[k - 1u];
                k -= 1u;
            }
            best_v[k] = x;
            best_i[k] = j;
        }
    }
    let lse = m + log(s);
    for (var k = 0u; k < K; k++) {
        ids[row * K + k] = best_i[k];
        logp[row * K + k] = best_v[k] - lse;
    }
}
