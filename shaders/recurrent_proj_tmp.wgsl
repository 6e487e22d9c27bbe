// TEMPORARY input projection y = x W^T + b until kernels::matmul::record_linear lands; delete then.
// x: [M, K] f32 (binding 1), y: [M, N] f32 (binding 2), w: [N, K] f32|f16 (binding 3, generated
// w_at), bias: [N] f32|f16 (binding 4, generated bias_at). One invocation per output element.
struct Params { m: u32, n: u32, k: u32, _p: u32, }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= p.m * p.n) {
        return;
    }
    let m = i / p.n;
    let n = i - m * p.n;
    var acc = bias_at(n);
    for (var k = 0u; k < p.k; k += 1u) {
        acc += x[m * p.k + k] * w_at(n * p.k + k);
    }
    y[i] = acc;
}
