// Decoding of an RNN decoder with attention, fused: one workgroup per sequence runs whole decoder
// steps (embedding, cell stack, attention, attentional layer, output projection, argmax and
// log-softmax) until the chunk's stop step in one dispatch, feeding each step's argmax to the next
// step's embedding lookup. A sequence stops at its end token or at `max_len` steps; its workgroup
// then returns, so steps past the end cost nothing. In beam mode (below) a dispatch runs one step
// of every hypothesis row instead.
//
// Dimension legend: R rows (sequences), T encoder positions (padded), M memory width, E embedding,
// H hidden, L layers, G gates (4 LSTM i,f,g,o; 3 GRU r,z,n; 1 RNN), C context width (M, or 0 without
// attention), A additive score width, V target vocabulary, IN0 = E (+ C with input feeding).
//
// Constants prepended by Rust (decoder_loop.rs):
//   CELL (0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu), G, L, E, H, C, M, A, V, FEED (input feeding),
//   ATTN (0 none, 1 dot, 2 general, 3 additive), ATTN_LAYER (Luong tanh(W_c [ctx; h])), BAHDANAU
//   (1: Bahdanau order: attention with the previous top h before the cells, cell input
//   [emb | ctx], output layer on [h | ctx | emb]; else Luong order), BEAM (1: one beam-search step
//   per dispatch, below), WG, TMAX
//   (T rounded up; shared weights row), P8(x) = x rounded up to 8 as E8, C8, H8, the padded input
//   widths IN0 (P8(E) + P8(C) with feeding, else P8(E)) and OUT_IN, the shared-vector offsets SV_*
//   and size NV4 (vec4s), and the blob offsets O_* with leading dimensions LD_* (below).
//
// Every vector a matrix multiplies is a sequence of segments each padded with zeros to a multiple
// of 8 floats in the shared vector (the input [emb | ctx], [ctx | h]), and the matching weight
// columns are padded the same way in the blob, so the products run over whole vec4 pairs.
//
// blob (binding 1): every decoder weight in one array of f16 (8 per vec4<u32>: a lane's load brings
//   8 weights; on CPU drivers the count of per-lane loads bounds the matrix products), each matrix
//   [rows, cols] row-major with rows padded to LD = cols rounded up to 8 (zeros), every tensor
//   starting at a multiple of 8:
//   O_EMB [V, E] (absent when TABLE == 1, except in Bahdanau order); TABLE == 1: the embedding
//   folded into layer 0's input projection, O_TAB [V, G*H] f32 (two slots each, row stride LD_TAB
//   slots) = W_ih[:, :E] emb[v] + b_ih, and layer 0's W_ih holds only the context columns;
//   per layer l: O_WIH + l*S_WIH [G*H, IN_l] (LD_WIH), O_WHH + l*S_WHH [G*H, H]
//   (LD_WHH = H8), O_BIH + l*S_B and O_BHH + l*S_B [G*H]; general: O_WG [M, H] = W^T (H8);
//   additive: O_WQ [A, H] (H8), O_BK [A] (bias of W_k), O_V [A]; attentional layer: O_WC
//   [H, C | H] (C8 + H8); output: O_OUT [V, OUT_IN] (OUT_IN), O_BOUT [V].
//
// Per-sequence buffers:
//   mem:   [R, T, M] f32   encoder states                                    (binding 2)
//   kp:    [R, T, A] f32   additive: keys W_k^T, once per sequence (dummy otherwise) (binding 3)
//   state: f32             h [L, R, H] at 0, LSTM c [L, R, H] at p.c_base, context [R, C] at
//                          p.ctx_base: read at the start of a dispatch, written back at its end
//                          (binding 4)
//   ctl:   [R + 1, 4] u32  per sequence (current input token, done, input length, steps taken);
//                          row R: (stop, -, -, -): this dispatch runs steps up to, not including,
//                          step `stop` (written by the host before each submission, so one
//                          dispatch serves every chunk size)                  (binding 5)
//   toks:  [max_len, R] u32  chosen token of each step                        (binding 6)
//   logps: [max_len, R] f32  its log-probability                              (binding 7)
//   attn:  [max_len, R, T] f32 attention weights of each step when p.keep_attn, else a dummy
//                          (binding 8)
//
// Beam mode (BEAM == 1, one step per dispatch; see beam_step): state holds two halves of the
// layout above (ping-pong, at p.in_half and p.out_half) and the rows' input lengths [R] (u32 bits,
// at p.len_base); ctl is the beam's parent rows [R], toks its tokens [R], logps the logits [R, V],
// attn the step's attention weights [R, T].

// Every binding is declared by the Rust side in binding order (DecoderLoopBindings in
// src/kernels/decoder_loop/mod.rs); mem and kp are real inputs (vec4 arrays when M, resp. A, is a
// multiple of 4) with the accessors mem_at / mem_at4 and kp_at / kp_at4.

// sv (rnn_fused.wgsl) holds the vectors every invocation reads (float offsets SV_*, multiples of
// 8, padding zero): input [emb | ctx] (IN0), h per layer (L x H8), LSTM c per layer (L x H8), the
// gate pre-activations (2 G H8), [context | top h] (C8 + H8), query projection (P8(max(M, A))),
// attentional-layer output (H8), or in Bahdanau order the output layer's input
// [h | ctx | emb] (H8 + C8 + E8).
// Attention weights of the current step.
// workgroup-init: self -- load_state zeroes sv before any read; w_tok/w_run/w_len are written by invocation 0 before workgroupUniformLoad reads them; wsh[t] is written for every t < p.t before reads of t < len <= p.t; red_* as in reduce.
var<workgroup> wsh: array<f32, TMAX>;
var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> w_tok: u32;
var<workgroup> w_run: u32;
var<workgroup> w_len: u32;

const NEG: f32 = -3.0e38;

// Workgroup max (is_max) or sum; every invocation gets the result.
fn reduce(x: f32, lid: u32, is_max: bool) -> f32 {
    red_m[lid] = x;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) {
            let o = red_m[lid + w];
            red_m[lid] = select(red_m[lid] + o, max(red_m[lid], o), is_max);
        }
        workgroupBarrier();
    }
    let r = red_m[0];
    workgroupBarrier();
    return r;
}

// Layer l of the cell stack, input at sv[x_off..x_off + n_in] (n_in padded) and the folded
// embedding's table row at slot tab (or NO_TABLE): h of layer l and LSTM c updated in place.
fn cell_layer(l: u32, tab: u32, x_off: u32, n_in: u32, lid: u32) {
    cell_update(O_WIH + l * S_WIH, LD_WIH, O_WHH + l * S_WHH, O_BIH + l * S_B, O_BHH + l * S_B,
        tab, x_off, n_in, SV_H + l * H8, SV_C + l * H8, SV_GATES, lid);
}

// Attention of row r with the top hidden state as query: weights into wsh, context into SV_CTX.
fn attend(r: u32, len: u32, lid: u32) {
    let q = SV_H + (L - 1u) * H8;
    if (ATTN == 2u) {
        // General: q . (W k_t) = (W^T q) . k_t; the blob holds W^T [M, H].
        for (var base = lid; base < M; base += 4u * WG) {
            store4(SV_QP, base, M, gemv4(O_WG, H8, base, M, q, H8));
        }
        workgroupBarrier();
    } else if (ATTN == 3u) {
        for (var base = lid; base < A; base += 4u * WG) {
            let rows = rows4(base, A);
            let b = vec4<f32>(blob_at(O_BK + rows.x), blob_at(O_BK + rows.y), blob_at(O_BK + rows.z), blob_at(O_BK + rows.w));
            store4(SV_QP, base, A, gemv4(O_WQ, H8, base, A, q, H8) + b);
        }
        workgroupBarrier();
    }
    var mx = NEG;
    for (var t = lid; t < p.t; t += WG) {
        var s = NEG;
        if (t < len) {
            s = 0.0;
            let row = (r * p.t + t);
            // Whole vec4 loads where the widths allow (a constant condition).
            if (ATTN == 3u && A % 4u == 0u) {
                for (var a = 0u; a < A; a += 4u) {
                    let e = tanh4(sv[(SV_QP + a) >> 2u] + kp_at4(row * A + a));
                    s += dot(blob4(O_V + a), e);
                }
            } else if (ATTN == 3u) {
                for (var a = 0u; a < A; a++) {
                    s += blob_at(O_V + a) * tanh_s(sv_get(SV_QP + a) + kp_at(row * A + a));
                }
            } else if (M % 4u == 0u) {
                let src = select(q, SV_QP, ATTN == 2u);
                for (var d = 0u; d < M; d += 4u) {
                    s += dot(sv[(src + d) >> 2u], mem_at4(row * M + d));
                }
            } else {
                let src = select(q, SV_QP, ATTN == 2u);
                for (var d = 0u; d < M; d++) {
                    s += sv_get(src + d) * mem_at(row * M + d);
                }
            }
        }
        wsh[t] = s;
        mx = max(mx, s);
    }
    mx = reduce(mx, lid, true);
    var sum = 0.0;
    for (var t = lid; t < p.t; t += WG) {
        let e = select(0.0, exp(wsh[t] - mx), t < len);
        wsh[t] = e;
        sum += e;
    }
    sum = reduce(sum, lid, false);
    let inv = 1.0 / sum;
    for (var t = lid; t < p.t; t += WG) {
        wsh[t] *= inv;
    }
    workgroupBarrier();
    if (M % 4u == 0u) {
        for (var c = 4u * lid; c < M; c += 4u * WG) {
            var acc = vec4<f32>(0.0);
            for (var t = 0u; t < len; t++) {
                acc += wsh[t] * mem_at4((r * p.t + t) * M + c);
            }
            sv[(SV_CTX + c) >> 2u] = acc;
        }
    } else {
        for (var c = lid; c < M; c += WG) {
            var acc = 0.0;
            for (var t = 0u; t < len; t++) {
                acc += wsh[t] * mem_at((r * p.t + t) * M + c);
            }
            sv_set(SV_CTX + c, acc);
        }
    }
    // [context | h] for the output layers.
    for (var j = lid; j < H; j += WG) {
        sv_set(SV_CTX + C8 + j, sv_get(q + j));
    }
    workgroupBarrier();
}

// One decoder step of row r (input token w_tok, state in sv) up to the output layer's input:
// returns its offset in sv (OUT_IN floats). Attention weights go to attn[attn_at..] when kept.
fn step_body(r: u32, len: u32, lid: u32, attn_at: u32) -> u32 {
    // Input: embedding of the current token (+ the previous context with input feeding, or
    // this step's context in Bahdanau order).
    let y = w_tok;
    if (TABLE == 0u || BAHDANAU == 1u) {
        for (var i = lid; i < E; i += WG) {
            sv_set(SV_X + i, blob_at(O_EMB + y * LD_EMB + i));
        }
    }
    if (BAHDANAU == 1u) {
        // Attention with the previous top hidden state as query, before the cells.
        attend(r, len, lid);
        for (var i = lid; i < C; i += WG) {
            sv_set(SV_X + E8 + i, sv_get(SV_CTX + i));
        }
    } else if (FEED == 1u) {
        for (var i = lid; i < C; i += WG) {
            sv_set(SV_X + E8 + i, sv_get(SV_CTX + i));
        }
    }
    workgroupBarrier();
    if (TABLE == 1u) {
        // The embedding's part of layer 0's input comes from the table; the context's part
        // (input feeding, Bahdanau) stays a product.
        cell_layer(0u, O_TAB + y * LD_TAB, SV_X + E8, IN0 - E8, lid);
    } else {
        cell_layer(0u, NO_TABLE, SV_X, IN0, lid);
    }
    for (var l = 1u; l < L; l++) {
        cell_layer(l, NO_TABLE, SV_H + (l - 1u) * H8, H8, lid);
    }
    var out_in = SV_H + (L - 1u) * H8;
    if (BAHDANAU == 1u) {
        // The output layer reads [h | context | embedding].
        for (var j = lid; j < H; j += WG) {
            sv_set(SV_O + j, sv_get(out_in + j));
        }
        for (var i = lid; i < C; i += WG) {
            sv_set(SV_O + H8 + i, sv_get(SV_CTX + i));
        }
        for (var i = lid; i < E; i += WG) {
            sv_set(SV_O + H8 + C8 + i, sv_get(SV_X + i));
        }
        workgroupBarrier();
        out_in = SV_O;
    } else if (ATTN != 0u) {
        attend(r, len, lid);
        out_in = SV_CTX;
        if (ATTN_LAYER == 1u) {
            for (var base = lid; base < H; base += 4u * WG) {
                store4(SV_O, base, H, tanh4(gemv4(O_WC, C8 + H8, base, H, SV_CTX, C8 + H8)));
            }
            workgroupBarrier();
            out_in = SV_O;
        }
    }
    if (ATTN != 0u && p.keep_attn == 1u) {
        for (var t = lid; t < p.t; t += WG) {
            attn[attn_at + t] = wsh[t];
        }
    }
    return out_in;
}

// The state of row `row` of the state half at `base` into sv (after zeroing sv's padding).
fn load_state(base: u32, row: u32, lid: u32) {
    for (var i = lid; i < NV4; i += WG) {
        sv[i] = vec4<f32>(0.0);
    }
    workgroupBarrier();
    for (var i = lid; i < L * H; i += WG) {
        let l = i / H;
        let j = i % H;
        sv_set(SV_H + l * H8 + j, state[base + (l * p.r + row) * H + j]);
        if (CELL == 0u) {
            sv_set(SV_C + l * H8 + j, state[base + p.c_base + (l * p.r + row) * H + j]);
        }
    }
    for (var i = lid; i < C; i += WG) {
        sv_set(SV_CTX + i, state[base + p.ctx_base + row * C + i]);
    }
}

// sv's state into row `row` of the state half at `base`.
fn store_state(base: u32, row: u32, lid: u32) {
    workgroupBarrier();
    for (var i = lid; i < L * H; i += WG) {
        let l = i / H;
        let j = i % H;
        state[base + (l * p.r + row) * H + j] = sv_get(SV_H + l * H8 + j);
        if (CELL == 0u) {
            state[base + p.c_base + (l * p.r + row) * H + j] = sv_get(SV_C + l * H8 + j);
        }
    }
    for (var i = lid; i < C; i += WG) {
        state[base + p.ctx_base + row * C + i] = sv_get(SV_CTX + i);
    }
}

// Beam search step (BEAM == 1): row r continues hypothesis parent[r] (ctl) with token tokens[r]
// (toks): its state is read from the input half at row parent[r], the step's logits [V] go to
// logits[r] (logps), the new state to the output half at row r. Top-k and the beam's selection run
// as separate kernels (topk.wgsl, beam_select.wgsl).
fn beam_step(r: u32, lid: u32) {
    if (lid == 0u) {
        w_tok = toks[r];
        w_len = bitcast<u32>(state[p.len_base + r]);
    }
    // beam_select.wgsl feeds the end token to the rows of finished items and to dead rows; nothing
    // reads their results, so they skip the step (steps past the end of a batch cost nothing).
    if (p.skip_eos == 1u && workgroupUniformLoad(&w_tok) == p.eos) {
        return;
    }
    load_state(p.in_half, ctl[r], lid);
    let len = workgroupUniformLoad(&w_len);
    let out_in = step_body(r, len, lid, r * p.t);
    for (var base = lid; base < V; base += 4u * WG) {
        let zs = gemv4(O_OUT, OUT_IN, base, V, out_in, OUT_IN);
        for (var i = 0u; i < 4u; i++) {
            let v = base + i * WG;
            if (v < V) {
                logps[r * V + v] = blob_at(O_BOUT + v) + zs[i];
            }
        }
    }
    store_state(p.out_half, r, lid);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    // Uniform per workgroup: r does not depend on the invocation.
    if (r >= p.r) {
        return;
    }
    if (BEAM == 1u) {
        beam_step(r, lid);
        return;
    }
    let len = ctl[r * 4u + 2u];
    // Steps this sequence has taken before this dispatch (read before the first barrier; only
    // invocation 0 writes the counter, after it).
    let step0 = ctl[r * 4u + 3u];
    let stop = min(ctl[p.r * 4u], p.max_len);
    if (lid == 0u) {
        w_tok = ctl[r * 4u];
        w_run = select(1u, 0u, ctl[r * 4u + 1u] != 0u || step0 >= stop);
    }
    load_state(0u, r, lid);
    if (workgroupUniformLoad(&w_run) == 0u) {
        return;
    }
    // w_run (uniform: loaded through workgroupUniformLoad) ends the loop at the end token or the
    // stop step.
    for (var s = 0u; ; s++) {
        if (workgroupUniformLoad(&w_run) == 0u) {
            break;
        }
        let step = step0 + s;
        let out_in = step_body(r, len, lid, (step * p.r + r) * p.t);
        // Output projection with a running (max, sum of exp, argmax) per invocation.
        var m = NEG;
        var se = 0.0;
        var best = 0u;
        for (var base = lid; base < V; base += 4u * WG) {
            let zs = gemv4(O_OUT, OUT_IN, base, V, out_in, OUT_IN);
            for (var i = 0u; i < 4u; i++) {
                let v = base + i * WG;
                if (v < V) {
                    let z = blob_at(O_BOUT + v) + zs[i];
                    if (z > m) {
                        se = se * exp(m - z) + 1.0;
                        m = z;
                        best = v;
                    } else {
                        se += exp(z - m);
                    }
                }
            }
        }
        red_m[lid] = m;
        red_s[lid] = se;
        red_i[lid] = best;
        workgroupBarrier();
        for (var w = WG / 2u; w > 0u; w >>= 1u) {
            if (lid < w) {
                let m1 = red_m[lid];
                let m2 = red_m[lid + w];
                let mm = max(m1, m2);
                red_s[lid] = red_s[lid] * exp(m1 - mm) + red_s[lid + w] * exp(m2 - mm);
                // Ties go to the lower token id, as torch.argmax.
                if (m2 > m1 || (m2 == m1 && red_i[lid + w] < red_i[lid])) {
                    red_i[lid] = red_i[lid + w];
                }
                red_m[lid] = mm;
            }
            workgroupBarrier();
        }
        if (lid == 0u) {
            let tok = red_i[0];
            toks[step * p.r + r] = tok;
            logps[step * p.r + r] = -log(red_s[0]);
            w_tok = tok;
            w_run = select(1u, 0u, tok == p.eos || step + 1u >= stop);
            ctl[r * 4u + 3u] = step + 1u;
        }
    }
    // State back to storage for the next dispatch.
    store_state(0u, r, lid);
    if (lid == 0u) {
        ctl[r * 4u] = w_tok;
        ctl[r * 4u + 1u] = select(1u, 0u, w_tok != p.eos);
    }
}
