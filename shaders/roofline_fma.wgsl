// FMA peak: every thread runs CHAINS independent vec4 FMA chains for p.iters iterations (no memory
// traffic in the loop), then writes one value so the work cannot be removed.
//
// Bindings (declared by the Rust side, FmaBindings in src/bench/roofline.rs):
//   params           uniform
//   out: [threads]   f32   (sum of the chains per thread) (binding 1)
//
// Constants from the Rust side: WG (threads per workgroup), CHAINS (independent vec4 chains).
// Flops per thread: iters * CHAINS * 4 lanes * 2.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let m = vec4<f32>(p.mul);
    let a = vec4<f32>(p.add);
    var x: array<vec4<f32>, CHAINS>;
    for (var c = 0u; c < CHAINS; c++) {
        x[c] = vec4<f32>(f32(i), f32(c), 1.0, 2.0);
    }
    for (var it = 0u; it < p.iters; it++) {
        for (var c = 0u; c < CHAINS; c++) {
            x[c] = fma(x[c], m, a);
        }
    }
    var s = vec4<f32>(0.0);
    for (var c = 0u; c < CHAINS; c++) {
        s += x[c];
    }
    out[i] = s.x + s.y + s.z + s.w;
}
