// Shared body of the recurrent kernels (LSTM / GRU / RNN): bindings, gate math and one cell update.
// The Rust side composes it in front of an entry point (recurrent_step.wgsl: one dispatch per
// timestep; recurrent_persistent.wgsl: one workgroup loops over all timesteps).
//
// Dimension legend: B batch, T steps, H hidden size, D directions (1|2; z of the grid or part of the
// item index), G gates (4 LSTM i,f,g,o; 3 GRU r,z,n; 1 RNN), GH = G*H, BB batch rows and BU
// units per invocation.
//
// Constants prepended by Rust: CELL (0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu), G, BB (batch rows per
// invocation), BU (units per invocation), WG, HU (1: h_{t-1} is read from a uniform copy). Generated
// by Rust: the block body of `cell_step`, `fn load_h(i: u32) -> f32` (reads hs, or with HU == 1
// the uniform copy `hu` of half t & 1, [D, B, H] f32 at the binding after the storage ones, made
// by a buffer copy before each step: on lavapipe a uniform load at a workgroup-uniform address is one scalar load, while
// every storage load is a per-lane loop), and the dtype-dependent weight declarations:
//   whh: [D, KP, GH, 2] f32|f16 weight_hh in k-pairs, k-major: whh[d][k2][r][e] =
//                            weight_hh[r][2*k2 + e] (zero for k >= H), read by `wpair(i)` ->
//                            vec2<f32> with i = (d*KP + k2)*GH + r, KP = ceil(H/2). Adjacent units j
//                            read adjacent pairs (coalesced on GPUs); an f16 pair is one u32 load
//                            (lavapipe pays per 32-bit load).
//   bhh: [D, GH]    f32|f16  bias_hh (zeros without bias)
//
// Variable lengths: a sequence b is active at step t when t < lengths[b]. The forward direction then
// processes position t, the reverse direction position lengths[b]-1-t, so it starts at the sequence's
// own last step. Inactive steps write a zero output at position t (a padded position in both
// directions) and copy the state through unchanged, so the final state is the state at the
// sequence's own end, as pad_packed_sequence gives.

// Storage bindings, declared by the Rust side in binding order (RecurrentBindings in
// src/kernels/recurrent/source.rs):
//   xp:      [B, T, D*GH] f32  input projections W_ih x_t + b_ih of all steps, both directions
//   lengths: [B] u32           valid steps per sequence, 1..=T
//   hs:      [2, D, B, H] f32  hidden state ping-pong: step t reads half (t & 1), writes the other
//   cs:      [2, D, B, H] f32  LSTM cell state, same ping-pong (a 4-element dummy for GRU/RNN)
//   out:     [B, T, D*H] f32   per-step hidden states, zero past each sequence's length
//   whh, bhh: as above.

fn sigmoid(x: f32) -> f32 {
    // Split by sign so exp never overflows.
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn tanh_s(x: f32) -> f32 {
    // Some drivers return NaN from tanh for large |x|; tanh is +-1 in f32 beyond 15.
    return tanh(clamp(x, -15.0, 15.0));
}

// Gate pre-activation sums `a` (x, y, z, w = gates 0..G-1; W_hh h_{t-1} only) of unit j, batch row b
// in direction `dir` -> gates, state update and output of step t. Callers pass valid b < B, j < H.
fn cell_finish(t: u32, dir: u32, b: u32, j: u32, a: vec4<f32>) {
    let H = p.h;
    let B = p.b;
    let D = p.d;
    let GH = G * H;
    let src = t & 1u;
    let dst = src ^ 1u;
    let bias = dir * GH + j;
    let len = lengths[b];
    let live = t < len;
    let s_prev = ((src * D + dir) * B + b) * H + j;
    let s_next = ((dst * D + dir) * B + b) * H + j;
    let h_prev = hs[s_prev];
    var h_new = h_prev;
    if (live) {
        let pos = select(t, len - 1u - t, dir == 1u);
        let x = (b * p.t_len + pos) * (D * GH) + dir * GH + j;
        if (CELL == 0u) {
            let i_g = sigmoid(xp[x] + a.x + bhh_at(bias));
            let f_g = sigmoid(xp[x + H] + a.y + bhh_at(bias + H));
            let g_g = tanh_s(xp[x + 2u * H] + a.z + bhh_at(bias + 2u * H));
            let o_g = sigmoid(xp[x + 3u * H] + a.w + bhh_at(bias + 3u * H));
            let c_new = f_g * cs[s_prev] + i_g * g_g;
            cs[s_next] = c_new;
            h_new = o_g * tanh_s(c_new);
        } else if (CELL == 1u) {
            let r_g = sigmoid(xp[x] + a.x + bhh_at(bias));
            let z_g = sigmoid(xp[x + H] + a.y + bhh_at(bias + H));
            // b_hn stays inside the reset product, as in PyTorch.
            let n_g = tanh_s(xp[x + 2u * H] + r_g * (a.z + bhh_at(bias + 2u * H)));
            h_new = (1.0 - z_g) * n_g + z_g * h_prev;
        } else if (CELL == 2u) {
            h_new = tanh_s(xp[x] + a.x + bhh_at(bias));
        } else {
            h_new = max(xp[x] + a.x + bhh_at(bias), 0.0);
        }
        out[(b * p.t_len + pos) * (D * H) + dir * H + j] = h_new;
    } else {
        if (CELL == 0u) {
            cs[s_next] = cs[s_prev];
        }
        out[(b * p.t_len + t) * (D * H) + dir * H + j] = 0.0;
    }
    hs[s_next] = h_new;
}

// Advances units j0..j0+BU of batch rows b0..b0+BB in direction `dir` by step `t`: a register block
// of BU units x BB rows x G gates. Units past H and rows past B read clamped addresses (so every lane
// runs the same loop) and write nothing.
fn cell_step(t: u32, dir: u32, b0: u32, j0: u32) {
    let H = p.h;
    let B = p.b;
    let D = p.d;
    let GH = G * H;
    // Row base of h_{t-1} for this direction: in hs (half t & 1), or in the staged copy of that half
    // ([D, B, H], see `load_h`).
    let hb = select(((t & 1u) * D + dir) * B, dir * B, HU == 1u);
    // Recurrent products W_hh[g*H + j, :] . h_{t-1}[b, :] for every gate g, unit j and row b of the
    // block. The body is generated by Rust (kernels/recurrent.rs `block`, fully unrolled over gates,
    // units and rows): it walks k in pairs; per pair it loads the BB rows' h pairs once (2*BB
    // loads) and each gate's and unit's weight pair once (G*BU loads; one u32 for f16 weights), for
    // 2*G*BU*BB FMAs. For odd H the last pair's second weight is zero and its h index is clamped.
    // It ends with one cell_finish call per valid (unit, row).
    {{BLOCK_BODY}}
}
