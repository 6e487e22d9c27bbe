// Projection of encoder states for additive attention, once per sequence: out = x W^T.
//
// Bindings, declared by the Rust side in binding order (ProjectBindings in
// src/kernels/memory_attention.rs; w as f32 / f16 / packed f16 with w_at):
//   p:    Params uniform
//   x:    [R, K] f32   (R = B*T encoder states)      (binding 1)
//   out:  [R, N] f32                                 (binding 2)
//   w:    [N, K] f32|f16                             (binding 3)
//
// Constants: WG, RB (rows per invocation). Grid: x = ceil(N / WG), y = ceil(R / RB).
// Each invocation computes RB rows of one output column, so every weight it loads serves RB rows;
// the x values are the same for the whole workgroup (uniform loads).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let col = wid.x * WG + lid;
    let cc = min(col, p.n - 1u);
    let r0 = wid.y * RB;
    var acc: array<f32, RB>;
    for (var k = 0u; k < p.k; k++) {
        let wv = w_at(cc * p.k + k);
        for (var i = 0u; i < RB; i++) {
            let r = min(r0 + i, p.r - 1u);
            acc[i] += wv * x[r * p.k + k];
        }
    }
    if (col >= p.n) {
        return;
    }
    for (var i = 0u; i < RB; i++) {
        if (r0 + i < p.r) {
            out[(r0 + i) * p.n + col] = acc[i];
        }
    }
}
