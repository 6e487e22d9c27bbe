// Copy bandwidth: dst[i] = src[i] over vec4 elements; bytes moved = 2 * 16 * n (read + write).
//
// Bindings (declared by the Rust side in this order, CopyBindings in src/bench/roofline.rs):
//   params           uniform
//   src: [n] vec4<f32>   (binding 1)
//   dst: [n] vec4<f32>   (binding 2)
//
// Constants from the Rust side: WG (threads per workgroup), PER (vec4 elements per thread, strided
// by the grid so neighbouring threads touch neighbouring elements).
// Grid: ceil(n / (WG * PER)) workgroups, split into (x, y) when over the per-dim limit.

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
