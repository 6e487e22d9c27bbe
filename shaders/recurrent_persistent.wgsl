// Persistent recurrent kernel: ONE workgroup loops over all T timesteps inside a single dispatch.
// Composed after recurrent_cell.wgsl (bindings, Params and cell_step live there).
//
// Why one workgroup: WGSL has no portable grid-wide barrier, so only the invocations of a single
// workgroup can hand h_t to each other between steps (storageBarrier orders the storage writes of
// step t before the reads of step t+1 within the workgroup). That caps the parallelism at one
// workgroup (one compute unit; on llvmpipe one CPU thread), so this path wins only when D*B*H is
// small and the per-dispatch cost of the per-step kernel dominates.
//
// Items: D * ceil(B/BB) * ceil(H/BU) register blocks (see cell_step), unit block fastest so adjacent
// invocations read adjacent weights; each invocation strides over items by WG. Grid: (1, 1, 1).

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    _ = cs[0];
    let per_dir = p.nb * p.nu;
    let n = p.d * per_dir;
    for (var t = 0u; t < p.t_len; t += 1u) {
        for (var it = lid; it < n; it += WG) {
            let dir = it / per_dir;
            let rem = it - dir * per_dir;
            let blk = rem / p.nu;
            let ju = rem - blk * p.nu;
            cell_step(t, dir, blk * BB, ju * BU);
        }
        // Step t's writes (half (t+1)&1) before step t+1 reads them; step t's reads of half t&1
        // before step t+1 overwrites it.
        storageBarrier();
    }
}
