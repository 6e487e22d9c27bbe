// FMA peak: every thread runs CHAINS independent vec4 FMA chains for p.iters iterations (no memory
// traffic in the loop), then writes one value so the work cannot be removed.
//
// Bindings (declared by the Rust side, FmaBindings in src/bench/roofline.rs):
//   params           uniform
//   out: [threads]   f32   (sum of the chains per thread) (binding 1)
//
// Constants from the Rust side: WG (threads per workgroup). The CHAINS independent vec4 chains are
// named registers x0, x1, ... written out by `fma_source` in src/bench/roofline.rs (the `{{...}}`
// markers): a loop-indexed private array is what GPU compilers may put in local memory (NVIDIA's
// did, measuring a third of an H200's FP32 peak at 4 chains and less with more), and lavapipe in
// per-lane scratch, so the array would measure memory, not the FMA units.
// Flops per thread: iters * CHAINS * 4 lanes * 2.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    let m = vec4<f32>(p.mul);
    let a = vec4<f32>(p.add);
{{INIT}}
    for (var it = 0u; it < p.iters; it++) {
{{STEP}}
    }
    var s = vec4<f32>(0.0);
{{SUM}}
    out[i] = s.x + s.y + s.z + s.w;
}
