// Copy bandwidth: dst[i] = src[i] over vec4 elements; bytes moved = 2 * 16 * n (read + write).
//
// Bindings:
//   params           uniform
//   src: [n] vec4<f32>
//   dst: [n] vec4<f32>
//
// Constants from the Rust side: WG (threads per workgroup), PER (vec4 elements per thread, strided
// by the grid so neighbouring threads touch neighbouring elements).
// Grid: ceil(n / (WG * PER)) workgroups, split into (x, y) when over the per-dim limit.

@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = (wid.x + wid.y * nwg.x) * WG + lid;
    if (t >= p.stride) {
        return; // grid padding
    }
    for (var r = 0u; r < PER; r++) {
        let i = t + r * p.stride;
        if (i < p.n) {
            dst[i] = src[i];
        }
    }
}
