// Shared body of the fused RNN kernels (decoder_loop.wgsl, encoder_loop.wgsl; prepended by Rust):
// the weight blob, the shared vector, vec4 matrix-vector products and the LSTM / GRU / RNN cell
// update, for one workgroup working on one sequence.
//
// Constants prepended by Rust: CELL (0 LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu), G (gates), H (hidden
// units), H8 (H rounded up to 8), WG (invocations), NV4 (vec4s of the shared vector). Each kernel's
// uniform `p` has a field `gates` (= G).
//
// blob (the first storage binding, declared by each kernel's Rust bindings): f16 weights, 8 per vec4<u32> (a lane's load brings 8 weights; on CPU drivers
//   the count of per-lane loads bounds the matrix products), every matrix row-major with rows
//   padded with zeros to a multiple of 8 and every tensor starting at a multiple of 8. A vector a
//   matrix multiplies lies in `sv` as segments each padded with zeros to a multiple of 8 floats,
//   and the matrix's columns are padded the same way, so the products run over whole vec4 pairs.

// workgroup-init: self -- sv is zeroed by the including kernel (encoder_loop main, decoder_loop load_state) before any read.
var<workgroup> sv: array<vec4<f32>, NV4>;

fn sigmoid(x: f32) -> f32 {
    // exp of a non-positive argument never overflows: sigmoid(x) = 1 / (1 + e^-x) for x >= 0,
    // e^x / (1 + e^x) below.
    let e = exp(-abs(x));
    return select(e, 1.0, x >= 0.0) / (1.0 + e);
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

// The f32 stored in slots i, i + 1 (i even) by Packer::table_f32.
fn blob_f32(i: u32) -> f32 {
    return bitcast<f32>(blob[i >> 3u][(i >> 1u) & 3u]);
}

// The f32 table values at slots tab + 2 rows.
fn table4(tab: u32, rows: vec4<u32>) -> vec4<f32> {
    let s = vec4<u32>(tab) + 2u * rows;
    return vec4<f32>(blob_f32(s.x), blob_f32(s.y), blob_f32(s.z), blob_f32(s.w));
}

// tab argument of cell_update: no folded embedding table.
const NO_TABLE: u32 = 0xffffffffu;

// blob[i..i + 4] for i a multiple of 4.
fn blob4(i: u32) -> vec4<f32> {
    let q = blob[i >> 3u];
    let pair = select(q.xy, q.zw, (i & 4u) != 0u);
    return vec4<f32>(unpack2x16float(pair.x), unpack2x16float(pair.y));
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

// One cell update of units [0, H): input x at sv[x_off..x_off + n_in] (n_in padded), state h at
// sv[h_off..] and (LSTM) c at sv[c_off..], both updated in place; sv[gates_off..] ([2, G, H8]) is
// scratch for the gate pre-activations W_ih x + b_ih and W_hh h + b_hh. Weights: W_ih [G*H, n_in]
// at w_ih (row stride ld_ih), W_hh [G*H, H8] at w_hh, biases [G*H] at b_ih and b_hh; gate g of
// unit j is row g H + j. With a folded embedding (tab != NO_TABLE) the f32 row at slot tab
// ([G*H]: W_ih[:, :E] emb + b_ih) replaces b_ih and the embedding's columns: x and W_ih then hold
// only the rest of the input (n_in may be 0). Starts and ends with a barrier-separated phase.
//
// The products run first (one copy of each in the compiled code: the uniform loop bound p.gates
// == G keeps the compiler from unrolling the gate loop; this bounds code size, it did not change
// lavapipe's compile time, which stays several seconds for LSTM kernels), then the gates, unit by
// unit, once every read of the old h is done.
fn cell_update(w_ih: u32, ld_ih: u32, w_hh: u32, b_ih: u32, b_hh: u32, tab: u32, x_off: u32,
               n_in: u32, h_off: u32, c_off: u32, gates_off: u32, lid: u32) {
    for (var base = lid; base < H; base += 4u * WG) {
        for (var g = 0u; g < p.gates; g++) {
            let rows = vec4<u32>(g * H) + rows4(base, H);
            var bx: vec4<f32>;
            if (tab == NO_TABLE) {
                bx = vec4<f32>(blob_at(b_ih + rows.x), blob_at(b_ih + rows.y), blob_at(b_ih + rows.z), blob_at(b_ih + rows.w));
            } else {
                bx = table4(tab, rows);
            }
            let bh = vec4<f32>(blob_at(b_hh + rows.x), blob_at(b_hh + rows.y), blob_at(b_hh + rows.z), blob_at(b_hh + rows.w));
            store4(gates_off + g * H8, base, H, dot4(vec4<u32>(w_ih) + rows * ld_ih, x_off, n_in) + bx);
            store4(gates_off + (G + g) * H8, base, H, dot4(vec4<u32>(w_hh) + rows * H8, h_off, H8) + bh);
        }
    }
    workgroupBarrier();
    let gx = gates_off;
    let gh = gates_off + G * H8;
    for (var j = lid; j < H; j += WG) {
        var h_new: f32;
        if (CELL == 0u) {
            let i_g = sigmoid(sv_get(gx + j) + sv_get(gh + j));
            let f_g = sigmoid(sv_get(gx + H8 + j) + sv_get(gh + H8 + j));
            let g_g = tanh_s(sv_get(gx + 2u * H8 + j) + sv_get(gh + 2u * H8 + j));
            let o_g = sigmoid(sv_get(gx + 3u * H8 + j) + sv_get(gh + 3u * H8 + j));
            let c_new = f_g * sv_get(c_off + j) + i_g * g_g;
            sv_set(c_off + j, c_new);
            h_new = o_g * tanh_s(c_new);
        } else if (CELL == 1u) {
            let r_g = sigmoid(sv_get(gx + j) + sv_get(gh + j));
            let z_g = sigmoid(sv_get(gx + H8 + j) + sv_get(gh + H8 + j));
            // b_hn stays inside the reset product, as in PyTorch.
            let n_g = tanh_s(sv_get(gx + 2u * H8 + j) + r_g * sv_get(gh + 2u * H8 + j));
            h_new = (1.0 - z_g) * n_g + z_g * sv_get(h_off + j);
        } else if (CELL == 2u) {
            h_new = tanh_s(sv_get(gx + j) + sv_get(gh + j));
        } else {
            h_new = max(sv_get(gx + j) + sv_get(gh + j), 0.0);
        }
        sv_set(h_off + j, h_new);
    }
    workgroupBarrier();
}
