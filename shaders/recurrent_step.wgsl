// Per-step fused recurrent kernel: one dispatch advances every sequence, unit and direction by one
// timestep (recurrent product W_hh h_{t-1}, gate activations and state update in one invocation).
// Composed after recurrent_cell.wgsl (bindings, Params and cell_step live there).
//
// Grid: (ceil(ceil(H / BU) / WG), ceil(B / BB), D). Invocation (x, y, z) owns units
// j0 .. j0+BU (j0 = (x*WG + lid) * BU) of batch rows y*BB .. y*BB+BB in direction z, for all G gates
// of those units, so the gate nonlinearity and the state update need no second dispatch; the block
// reuses each weight load for BB rows and each h load for G*BU outputs. Steps t = 0..T-1 are recorded back to back in one
// submission; h_{t-1} comes from the ping-pong half (t & 1) of `hs`, never from the CPU.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Static use of every binding (auto layout keeps only bindings main reaches).
    _ = cs[0];
    cell_step(p.step, wid.z, wid.y * BB, (wid.x * WG + lid) * BU);
}
