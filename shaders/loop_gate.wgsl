// Loop gate: run before each step of a gated loop (src/graph/runtime.rs). While the stop rule does
// not hold, the step's dispatches get their full grids; once it holds (on the GPU, mid-chunk), they
// get zero workgroups, so the steps left in the submission cost almost nothing.
//
// Bindings (declared by the Rust side in this order, LoopGateBindings in src/kernels/loop_gate.rs):
//   params             uniform: stride, word, rows, n
//   status: [..] u32   the stop rule's status words; row i's flag is status[i * stride + word]
//                                                                                       (binding 1)
//   full:   [D, 3] u32 each gated dispatch's grid (x, y, z), n = 3 D words              (binding 2)
//   live:   [D, 3] u32 the grids the gated dispatches read: full, or 0 once every row's flag is
//                      non-zero                                                          (binding 3)
//
// One workgroup. Every invocation checks the rows itself (a few hundred words at most), so no
// workgroup memory or barrier is needed.

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    var done = true;
    for (var i = 0u; i < p.rows; i++) {
        if (status[i * p.stride + p.word] == 0u) {
            done = false;
            break;
        }
    }
    for (var j = lid; j < p.n; j += WG) {
        live[j] = select(full[j], 0u, done);
    }
}
