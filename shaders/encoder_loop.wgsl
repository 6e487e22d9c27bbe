// One layer of an LSTM / GRU / RNN encoder, fused: one workgroup per (sequence, direction) runs all
// of the sequence's timesteps (embedding lookup or the previous layer's output, input and
// recurrent products, gates) in one dispatch. Directions are independent, so they run side by side.
// Follows pack_padded_sequence / pad_packed_sequence: a sequence of length len runs steps
// 0..len (the reverse direction from position len - 1 down), outputs past len are zero, and the
// final state is the state after the sequence's own last step. Initial states are zero.
//
// Dimension legend: R rows (sequences), T positions (padded), D directions, H hidden, IN input width
// (E for layer 0, D*H above), IN8 its padded width.
//
// Constants prepended by Rust (encoder_loop.rs): rnn_fused.wgsl's (CELL, G, H, H8, WG, NV4), D, IN,
// IN8, FIRST (1: the input is the embedding of ids), O_EMB and LD_EMB (embedding [V, E] in the
// blob), per direction d the weights at O_WIH + d*S_DIR (W_ih [G*H, IN], row stride IN8), O_WHH +
// d*S_DIR (W_hh [G*H, H], H8), O_BIH + d*S_DIR and O_BHH + d*S_DIR ([G*H]), and the shared-vector
// offsets SV_X (IN8), SV_H, SV_C (H8 each), SV_GATES (2 G H8). TABLE (layer 0 only): 1 when the
// embedding is folded into the input projection: the f32 table [V, G*H] of W_ih emb + b_ih at
// O_TAB + d*S_DIR (row stride LD_TAB slots) replaces W_ih, b_ih and the embedding lookup.
//
// Bindings, declared by the Rust side in binding order (EncoderLoopBindings in
// src/kernels/encoder_loop.rs):
//   blob:    f16 weights (rnn_fused.wgsl)                            (binding 1)
//   ids:     [R, T] u32   input ids (layer 0; a dummy above)         (binding 2)
//   lengths: [R] u32      valid positions, 1..=T                     (binding 3)
//   x:       [R, T, IN] f32 the previous layer's output (a dummy at layer 0) (binding 4)
//   out:     [R, T, D*H] f32 this layer's output                     (binding 5)
//   h_n:     [L*D, R, H] f32 final hidden states; this layer writes rows p.layer*D + d (binding 6)
//   c_n:     [L*D, R, H] f32 final LSTM cell states (a dummy otherwise) (binding 7)

// workgroup-init: self -- sv is zeroed by the loop at the top of main and w_len written by invocation 0 before workgroupUniformLoad (a barrier) reads it.
var<workgroup> w_len: u32;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let item = wid.x + wid.y * nwg.x;
    if (item >= p.r * D) {
        return;
    }
    let r = item / D;
    let dir = item % D;
    for (var i = lid; i < NV4; i += WG) {
        sv[i] = vec4<f32>(0.0);
    }
    if (lid == 0u) {
        w_len = min(lengths[r], p.t);
    }
    // Uniform for the step loop (its body has barriers).
    let len = workgroupUniformLoad(&w_len);
    let w_off = dir * S_DIR;
    for (var t = 0u; t < len; t++) {
        let pos = select(t, len - 1u - t, dir == 1u);
        var tab = NO_TABLE;
        if (TABLE == 1u) {
            tab = O_TAB + w_off + ids[r * p.t + pos] * LD_TAB;
        } else if (FIRST == 1u) {
            let id = ids[r * p.t + pos];
            for (var i = lid; i < IN; i += WG) {
                sv_set(SV_X + i, blob_at(O_EMB + id * LD_EMB + i));
            }
        } else {
            for (var i = lid; i < IN; i += WG) {
                sv_set(SV_X + i, x[(r * p.t + pos) * IN + i]);
            }
        }
        workgroupBarrier();
        cell_update(O_WIH + w_off, IN8, O_WHH + w_off, O_BIH + w_off, O_BHH + w_off, tab, SV_X,
            select(IN8, 0u, TABLE == 1u), SV_H, SV_C, SV_GATES, lid);
        for (var j = lid; j < H; j += WG) {
            out[(r * p.t + pos) * (D * H) + dir * H + j] = sv_get(SV_H + j);
        }
    }
    for (var pos = len; pos < p.t; pos++) {
        for (var j = lid; j < H; j += WG) {
            out[(r * p.t + pos) * (D * H) + dir * H + j] = 0.0;
        }
    }
    let state = ((p.layer * D + dir) * p.r + r) * H;
    for (var j = lid; j < H; j += WG) {
        h_n[state + j] = sv_get(SV_H + j);
        if (CELL == 0u) {
            c_n[state + j] = sv_get(SV_C + j);
        }
    }
}
