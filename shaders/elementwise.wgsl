// Elementwise ops over flat f32 arrays: activations (unary) and add/mul with broadcasting of `b`
// over the leading dims (b's element count divides a's; b repeats every `n_b` elements).
//
// Generated prologue (src/kernels/elementwise.rs: `Params`, `ElementwiseBindings`):
//   p                 uniform { n, n_b, op }
//   a:   [N]    f32      binding 1
//   out: [N]    f32      binding 2
//   b:   [N_b]  f32|f16  binding 3, read with b_at (unary ops bind a again)
//
// Grid: 1-D over N in workgroups of WG, split into (x, y) when N/WG exceeds the per-dim limit.
// The activations (`unary`) live in shaders/common/activation.wgsl, composed in front.

const OP_RELU: u32 = 0u;
const OP_TANH: u32 = 1u;
const OP_SIGMOID: u32 = 2u;
const OP_SILU: u32 = 3u;
const OP_GELU: u32 = 4u;
const OP_GELU_TANH: u32 = 5u;
const OP_ADD: u32 = 16u;
const OP_MUL: u32 = 17u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let x = a[i];
    if (p.op < 16u) {
        out[i] = unary(p.op, x);
    } else {
        let y = b_at(i % p.n_b);
        out[i] = select(x * y, x + y, p.op == OP_ADD);
    }
}
