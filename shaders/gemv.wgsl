// Split-K matrix-vector product for a few rows of x against a weight stored [N, K] (nn.Linear's
// layout): one workgroup per weight row n; its WG threads stream the row with coalesced (vec4) loads,
// each keeps GM partial sums, and a workgroup-memory tree reduces them. The shape for discrete GPUs;
// CPU adapters use matmul.wgsl with one weight row per thread instead.
//
//   out[b, m, n] = alpha * sum_k x[b, m, k] * w[b, n, k] + bias[n]
//
// Bindings (x, w and bias are declared by the Rust side with generated accessors):
//   params               uniform
//   a:    [batch, M, K]  f32       binding 1 (x; vec4 declaration when VK == 1)
//   b:    [batch|1, N, K] f32|f16  binding 2 (w; vec4 declaration when VK == 1)
//   out:  [batch, M, N]  f32       binding 3
//   bias: [N]            f32|f16   binding 4, only when the op has one (`bias_value(n)` is generated)
//
// Constants from the Rust side: WG (threads per workgroup, a power of two), GM (rows of x per
// workgroup), VK (K % 4 == 0).
// Grid: N * tiles_m * batch workgroups (tiles_n = N), split into (x, y) when over the per-dim limit.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_bs: u32,
    b_bs: u32,
    o_bs: u32,
    tiles_n: u32,
    tiles_m: u32,
    alpha: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, GM * WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let col = g % p.tiles_n;
    let rest = g / p.tiles_n;
    let gm = rest % p.tiles_m;
    // Workgroups past the batch (grid padding) take part in nothing; the test is uniform.
    let gb = min(rest / p.tiles_m, p.batch);
    let live = gb < p.batch;
    let m0 = gm * GM;
    let w_off = gb * p.b_bs + col * p.k;
    var x_off: array<u32, GM>;
    for (var i = 0u; i < GM; i++) {
        x_off[i] = gb * p.a_bs + min(m0 + i, p.m - 1u) * p.k;
    }
    var acc: array<vec4<f32>, GM>;
    let k_end = select(0u, p.k, live);
    if (VK == 1u) {
        for (var kk = lid * 4u; kk < k_end; kk += WG * 4u) {
            let wv = b_at4(w_off + kk);
            for (var i = 0u; i < GM; i++) {
                acc[i] = fma(a_at4(x_off[i] + kk), wv, acc[i]);
            }
        }
    } else {
        for (var kk = lid; kk < k_end; kk += WG) {
            let wv = b_at(w_off + kk);
            for (var i = 0u; i < GM; i++) {
                acc[i].x = fma(a_at(x_off[i] + kk), wv, acc[i].x);
            }
        }
    }
    for (var i = 0u; i < GM; i++) {
        let s = acc[i];
        red[i * WG + lid] = (s.x + s.y) + (s.z + s.w);
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var i = 0u; i < GM; i++) {
                red[i * WG + lid] += red[i * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (live && lid < GM) {
        let row = m0 + lid;
        if (row < p.m) {
            out[gb * p.o_bs + row * p.n + col] = p.alpha * red[lid * WG] + bias_value(col);
        }
    }
}
