// Split-K matrix-vector product for a few rows of x against a weight stored [N, K] (nn.Linear's
// layout), the decoding-size linear on GPUs: each workgroup owns RN weight rows and GM rows of x; its
// WG threads split K, streaming their share with coalesced vec4 loads and keeping GM x RN partial
// sums, which a workgroup-memory tree then reduces. (CPU adapters use matmul.wgsl with several weight
// rows per thread instead: barriers are costly there.)
//
//   out[b, m, n] = alpha * sum_k x[b, m, k] * w[b, n, k] + bias[n]
//
// Bindings (x, w and bias are declared by the Rust side with generated accessors):
//   params               uniform
//   a:    [batch, M, K]  f32       binding 1 (x; vec4 declaration when VK == 1)
//   b:    [batch|1, N, K] f32|f16  binding 2 (w; vec4 declaration when VK == 1)
//   out:  [batch, M, N]  f32       binding 3
//   bias: [N]            f32|f16   binding 4, only when the op has one (`bias_value(n)` and the store's
//                                  `epilogue(v, col)`: alpha, bias, a linear's activation, are generated)
//
// Constants from the Rust side: WG (threads per workgroup, a power of two >= GM * RN), GM (rows of x
// per workgroup), RN (weight rows per workgroup), VK (K % 4 == 0).
// Grid: tiles_n * tiles_m * batch workgroups (tiles_n = ceil(N / RN)), split into (x, y) when over
// the per-dim limit.

// Generated prologue (src/kernels/matmul/problem.rs: `Params`, `MatmulBindings`): uniform `p`
// (m, n, k, batch, a_bs, b_bs, o_bs, tiles_n, tiles_m, alpha), a (1), b (2), out (3), bias (4).

// workgroup-init: self -- every invocation writes red[(i * RN + j) * WG + lid] for all i, j before the barrier that precedes any read.
var<workgroup> red: array<f32, GM * RN * WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let gn = g % p.tiles_n;
    let rest = g / p.tiles_n;
    let gm = rest % p.tiles_m;
    // Workgroups past the batch (grid padding) take part in nothing; the test is uniform.
    let gb = min(rest / p.tiles_m, p.batch);
    let live = gb < p.batch;
    let m0 = gm * GM;
    let n0 = gn * RN;
    var w_off: array<u32, RN>;
    for (var j = 0u; j < RN; j++) {
        w_off[j] = gb * p.b_bs + min(n0 + j, p.n - 1u) * p.k;
    }
    var x_off: array<u32, GM>;
    for (var i = 0u; i < GM; i++) {
        x_off[i] = gb * p.a_bs + min(m0 + i, p.m - 1u) * p.k;
    }
    var acc: array<array<vec4<f32>, RN>, GM>;
    let k_end = select(0u, p.k, live);
    if (VK == 1u) {
        for (var kk = lid * 4u; kk < k_end; kk += WG * 4u) {
            var xv: array<vec4<f32>, GM>;
            for (var i = 0u; i < GM; i++) {
                xv[i] = a_at4(x_off[i] + kk);
            }
            for (var j = 0u; j < RN; j++) {
                let wv = b_at4(w_off[j] + kk);
                for (var i = 0u; i < GM; i++) {
                    acc[i][j] = fma(xv[i], wv, acc[i][j]);
                }
            }
        }
    } else {
        for (var kk = lid; kk < k_end; kk += WG) {
            for (var j = 0u; j < RN; j++) {
                let wv = b_at(w_off[j] + kk);
                for (var i = 0u; i < GM; i++) {
                    acc[i][j].x = fma(a_at(x_off[i] + kk), wv, acc[i][j].x);
                }
            }
        }
    }
    for (var i = 0u; i < GM; i++) {
        for (var j = 0u; j < RN; j++) {
            let s = acc[i][j];
            red[(i * RN + j) * WG + lid] = (s.x + s.y) + (s.z + s.w);
        }
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var r = 0u; r < GM * RN; r++) {
                red[r * WG + lid] += red[r * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (live && lid < GM * RN) {
        let row = m0 + lid / RN;
        let col = n0 + lid % RN;
        if (row < p.m && col < p.n) {
            out[gb * p.o_bs + row * p.n + col] = epilogue(red[lid * WG], col);
        }
    }
}
