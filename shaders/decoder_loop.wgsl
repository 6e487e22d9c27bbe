// Greedy decoding of an RNN decoder with attention, fused: one workgroup per sequence runs whole
// decoder steps (embedding, cell stack, attention, attentional layer, output projection, argmax
// and log-softmax) until the chunk's stop step in one dispatch, feeding each step's argmax to the
// next step's embedding lookup. A sequence stops at its end token or at `max_len` steps; its
// workgroup then returns, so steps past the end cost nothing.
//
// Dimension legend: R rows (sequences), T encoder positions (padded), M memory width, E embedding,
// H hidden, L layers, G gates (4 LSTM i,f,g,o; 3 GRU r,z,n; 1 RNN), C context width (M, or 0 without
// attention), A additive score width, V target vocabulary, IN0 = E (+ C with input feeding).
//
// Constants prepended by Rust (decoder_loop.rs):
//   CELL (0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu), G, L, E, H, C, M, A, V, FEED (input feeding),
//   ATTN (0 none, 1 dot, 2 general, 3 additive), ATTN_LAYER (Luong tanh(W_c [ctx; h])), WG, TMAX
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
//   O_EMB [V, E]; per layer l: O_WIH + l*S_WIH [G*H, IN_l] (LD_WIH), O_WHH + l*S_WHH [G*H, H]
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

struct Params {
    r: u32,          // R
    t: u32,          // T
    max_len: u32,    // steps a sequence may take in all
    _pad0: u32,
    eos: u32,        // end token
    keep_attn: u32,  // 1: write attention weights to `attn`
    c_base: u32,
    ctx_base: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> blob: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> mem: array<f32>;
@group(0) @binding(3) var<storage, read> kp: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> ctl: array<u32>;
@group(0) @binding(6) var<storage, read_write> toks: array<u32>;
@group(0) @binding(7) var<storage, read_write> logps: array<f32>;
@group(0) @binding(8) var<storage, read_write> attn: array<f32>;

// The vectors every invocation reads (float offsets SV_*, multiples of 8, padding zero): input
// [emb | ctx] (IN0), h per layer (L x H8), LSTM c per layer (L x H8), the new hidden state (H8),
// [context | top h] (C8 + H8), query projection (P8(max(M, A))), attentional-layer output (H8).
var<workgroup> sv: array<vec4<f32>, NV4>;
// Attention weights of the current step.
var<workgroup> wsh: array<f32, TMAX>;
var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_s: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> w_tok: u32;
var<workgroup> w_run: u32;

const NEG: f32 = -3.0e38;

fn sigmoid(x: f32) -> f32 {
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

fn sv_get(i: u32) -> f32 {
    return sv[i >> 2u][i & 3u];
}

fn sv_set(i: u32, v: f32) {
    sv[i >> 2u][i & 3u] = v;
}

fn blob_at(i: u32) -> f32 {
    return unpack2x16float(blob[i >> 3u][(i >> 1u) & 3u])[i & 1u];
}

fn hsum(a: vec4<f32>) -> f32 {
    return (a.x + a.y) + (a.z + a.w);
}

// 8 weights from blob[i..i + 8] (i a multiple of 8) times xa (first 4) and xb (last 4).
fn dot8(i: u32, xa: vec4<f32>, xb: vec4<f32>) -> vec4<f32> {
    let q = blob[i >> 3u];
    return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)) * xa
        + vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)) * xb;
}

// Four dot products sum_i blob[w[r] + i] * sv[x + i] for i < n; every w[r], x and n are multiples
// of 8. Four rows share each load of x, and every load is a whole vec4: on CPU drivers the count
// of per-lane loads, not arithmetic, bounds this loop.
fn dot4(w: vec4<u32>, x: u32, n: u32) -> vec4<f32> {
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let xv = x >> 2u;
    for (var i = 0u; i < n; i += 8u) {
        let xa = sv[xv + (i >> 2u)];
        let xb = sv[xv + (i >> 2u) + 1u];
        a0 += dot8(w.x + i, xa, xb);
        a1 += dot8(w.y + i, xa, xb);
        a2 += dot8(w.z + i, xa, xb);
        a3 += dot8(w.w + i, xa, xb);
    }
    return vec4<f32>(hsum(a0), hsum(a1), hsum(a2), hsum(a3));
}

// The rows base, base + WG, base + 2 WG, base + 3 WG of a `count`-row matrix, clamped to the last
// row (every lane runs the same loop; results of rows >= count are dropped by the caller).
fn rows4(base: u32, count: u32) -> vec4<u32> {
    return min(vec4<u32>(base) + vec4<u32>(0u, WG, 2u * WG, 3u * WG), vec4<u32>(count - 1u));
}

// The products of W [count, n] (offset w, row stride ld; n and ld multiples of 8) with sv[x..x + n]
// for the rows
// rows4(base, count).
fn gemv4(w: u32, ld: u32, base: u32, count: u32, x: u32, n: u32) -> vec4<f32> {
    return dot4(vec4<u32>(w) + rows4(base, count) * ld, x, n);
}

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

fn sigmoid4(x: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(sigmoid(x.x), sigmoid(x.y), sigmoid(x.z), sigmoid(x.w));
}

fn tanh4(x: vec4<f32>) -> vec4<f32> {
    return tanh(clamp(x, vec4<f32>(-15.0), vec4<f32>(15.0)));
}

// sv[at + row] = v[i] for the rows rows4(base, count) that exist.
fn store4(at: u32, base: u32, count: u32, v: vec4<f32>) {
    for (var i = 0u; i < 4u; i++) {
        let row = base + i * WG;
        if (row < count) {
            sv_set(at + row, v[i]);
        }
    }
}

// sv[at + row] for the rows rows4(base, count) (clamped).
fn load4(at: u32, base: u32, count: u32) -> vec4<f32> {
    let r = vec4<u32>(at) + rows4(base, count);
    return vec4<f32>(sv_get(r.x), sv_get(r.y), sv_get(r.z), sv_get(r.w));
}

// Layer l of the cell stack, input at sv[x_off..x_off + n_in] (n_in padded): new h into SV_NEW,
// LSTM c in place.
// Each invocation advances units base + {0, 1, 2, 3} WG: gate g of unit j is row g H + j of
// W_ih and W_hh.
fn cell_layer(l: u32, x_off: u32, n_in: u32, lid: u32) {
    let w_ih = O_WIH + l * S_WIH;
    let w_hh = O_WHH + l * S_WHH;
    let b_ih = O_BIH + l * S_B;
    let b_hh = O_BHH + l * S_B;
    let h_off = SV_H + l * H8;
    for (var base = lid; base < H; base += 4u * WG) {
        var xi: array<vec4<f32>, 4>;
        var hh: array<vec4<f32>, 4>;
        for (var g = 0u; g < G; g++) {
            let rows = vec4<u32>(g * H) + rows4(base, H);
            xi[g] = dot4(vec4<u32>(w_ih) + rows * LD_WIH, x_off, n_in)
                + vec4<f32>(blob_at(b_ih + rows.x), blob_at(b_ih + rows.y), blob_at(b_ih + rows.z), blob_at(b_ih + rows.w));
            hh[g] = dot4(vec4<u32>(w_hh) + rows * H8, h_off, H8)
                + vec4<f32>(blob_at(b_hh + rows.x), blob_at(b_hh + rows.y), blob_at(b_hh + rows.z), blob_at(b_hh + rows.w));
        }
        var h_new: vec4<f32>;
        if (CELL == 0u) {
            let c_new = sigmoid4(xi[1] + hh[1]) * load4(SV_C + l * H8, base, H)
                + sigmoid4(xi[0] + hh[0]) * tanh4(xi[2] + hh[2]);
            store4(SV_C + l * H8, base, H, c_new);
            h_new = sigmoid4(xi[3] + hh[3]) * tanh4(c_new);
        } else if (CELL == 1u) {
            let r_g = sigmoid4(xi[0] + hh[0]);
            let z_g = sigmoid4(xi[1] + hh[1]);
            // b_hn stays inside the reset product, as in PyTorch.
            let n_g = tanh4(xi[2] + r_g * hh[2]);
            h_new = (1.0 - z_g) * n_g + z_g * load4(h_off, base, H);
        } else if (CELL == 2u) {
            h_new = tanh4(xi[0] + hh[0]);
        } else {
            h_new = max(xi[0] + hh[0], vec4<f32>(0.0));
        }
        store4(SV_NEW, base, H, h_new);
    }
    workgroupBarrier();
    for (var j = lid; j < H; j += WG) {
        sv_set(h_off + j, sv_get(SV_NEW + j));
    }
    workgroupBarrier();
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
            if (ATTN == 3u) {
                for (var a = 0u; a < A; a++) {
                    s += blob_at(O_V + a) * tanh_s(sv_get(SV_QP + a) + kp[row * A + a]);
                }
            } else {
                let src = select(q, SV_QP, ATTN == 2u);
                for (var d = 0u; d < M; d++) {
                    s += sv_get(src + d) * mem[row * M + d];
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
    for (var c = lid; c < M; c += WG) {
        var acc = 0.0;
        for (var t = 0u; t < len; t++) {
            acc += wsh[t] * mem[(r * p.t + t) * M + c];
        }
        sv_set(SV_CTX + c, acc);
    }
    // [context | h] for the output layers.
    for (var j = lid; j < H; j += WG) {
        sv_set(SV_CTX + C8 + j, sv_get(q + j));
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * nwg.x;
    // Uniform per workgroup: r does not depend on the invocation.
    if (r >= p.r) {
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
    // Zero padding, then the state into shared memory.
    for (var i = lid; i < NV4; i += WG) {
        sv[i] = vec4<f32>(0.0);
    }
    workgroupBarrier();
    for (var i = lid; i < L * H; i += WG) {
        let l = i / H;
        let j = i % H;
        sv_set(SV_H + l * H8 + j, state[(l * p.r + r) * H + j]);
        if (CELL == 0u) {
            sv_set(SV_C + l * H8 + j, state[p.c_base + (l * p.r + r) * H + j]);
        }
    }
    for (var i = lid; i < C; i += WG) {
        sv_set(SV_CTX + i, state[p.ctx_base + r * C + i]);
    }
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
        // Input: embedding of the current token (+ the previous context with input feeding).
        let y = w_tok;
        for (var i = lid; i < E; i += WG) {
            sv_set(SV_X + i, blob_at(O_EMB + y * LD_EMB + i));
        }
        if (FEED == 1u) {
            for (var i = lid; i < C; i += WG) {
                sv_set(SV_X + E8 + i, sv_get(SV_CTX + i));
            }
        }
        workgroupBarrier();
        for (var l = 0u; l < L; l++) {
            let x_off = select(SV_H + (l - 1u) * H8, SV_X, l == 0u);
            let n_in = select(H8, IN0, l == 0u);
            cell_layer(l, x_off, n_in, lid);
        }
        var out_in = SV_H + (L - 1u) * H8;
        if (ATTN != 0u) {
            attend(r, len, lid);
            out_in = SV_CTX;
            if (ATTN_LAYER == 1u) {
                for (var base = lid; base < H; base += 4u * WG) {
                    store4(SV_O, base, H, tanh4(gemv4(O_WC, C8 + H8, base, H, SV_CTX, C8 + H8)));
                }
                workgroupBarrier();
                out_in = SV_O;
            }
            if (p.keep_attn == 1u) {
                for (var t = lid; t < p.t; t += WG) {
                    attn[(step * p.r + r) * p.t + t] = wsh[t];
                }
            }
        }
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
    workgroupBarrier();
    for (var i = lid; i < L * H; i += WG) {
        let l = i / H;
        let j = i % H;
        state[(l * p.r + r) * H + j] = sv_get(SV_H + l * H8 + j);
        if (CELL == 0u) {
            state[p.c_base + (l * p.r + r) * H + j] = sv_get(SV_C + l * H8 + j);
        }
    }
    for (var i = lid; i < C; i += WG) {
        state[p.ctx_base + r * C + i] = sv_get(SV_CTX + i);
    }
    if (lid == 0u) {
        ctl[r * 4u] = w_tok;
        ctl[r * 4u + 1u] = select(1u, 0u, w_tok != p.eos);
    }
}
