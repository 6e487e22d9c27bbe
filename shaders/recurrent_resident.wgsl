// Resident persistent recurrent kernel: ONE workgroup loops over all T timesteps inside a single
// dispatch (as recurrent_persistent.wgsl, for the same reason: only one workgroup can hand h_t to
// itself between steps), but each invocation loads its weights ONCE, before the time loop, into
// named values and keeps them for all steps. Composed after recurrent_cell.wgsl (bindings, Params,
// cell_finish live there).
//
// Why: on lavapipe every storage load at a per-invocation address is a per-lane loop, and the
// streamed kernel re-reads all of weight_hh each step that way (LSTM H = 128: 32K u32 loads per
// step, ~84 us). Values that live across the step loop's barrier are kept by llvmpipe in the
// coroutine frame of the SIMD group as whole vectors, so a step re-reads them as contiguous vector
// loads instead, and h_{t-1} is read at workgroup-uniform addresses (one scalar load each).
//
// Constants (besides those of recurrent_cell.wgsl): RH (H), RD (D), baked in because the weight
// loads and the dot products are generated unrolled over all H of k by Rust
// (kernels/recurrent/source.rs `resident_load` / `resident_dot`).
//
// Invocation lid < D*H owns unit j = lid % H of direction dir = lid / H: all G gates, all k, for every
// batch row b (a uniform loop, so h addresses stay uniform; with D = 2 both directions' h are
// loaded and selected, which keeps them uniform too). Grid: (1, 1, 1), WG = D*H.

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    _ = cs[0];
    let H = p.h;
    let B = p.b;
    let GH = G * H;
    let dir = lid / RH;
    let j = lid - dir * RH;
    // Weight base of this invocation: whh[dir][k2][g*H + j] is wb + k2*GH + g*H.
    let wb = dir * p.kp * GH + j;
    // Generated: `let w{g}_{k2} = wpair_raw(wb + k2 * GH + g * H);` for every gate and k pair.
    {{RESIDENT_LOAD}}
    for (var t = 0u; t < p.t_len; t += 1u) {
        let half = t & 1u;
        for (var b = 0u; b < B; b += 1u) {
            // Row bases of h_{t-1}[dir][b] in hs for direction 0 and (with RD = 2) 1.
            let hb0 = ((half * RD) * B + b) * H;
            let hb1 = ((half * RD + RD - 1u) * B + b) * H;
            // Generated: per k pair, the uniform h loads (hk{e}) and two FMA chains per gate
            // (even and odd k) from the held weights; ends with `a{g}` = sum of both chains.
            {{RESIDENT_DOT}}
            cell_finish(t, dir, b, j, vec4<f32>(a0, a1, a2, a3));
        }
        // Step t's writes (half (t+1)&1) before step t+1 reads them; step t's reads of half t&1
        // before step t+1 overwrites it.
        storageBarrier();
    }
}
