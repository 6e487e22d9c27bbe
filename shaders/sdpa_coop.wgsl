// Flash attention on cooperative matrices (tensor cores; wgpu's experimental
// `wgpu_cooperative_matrix`): same bindings, parameters and results as sdpa.wgsl (see there).
//
//   q: [B, H, Tq, D] f32, k: [B, H, Tk, D] f32, v: [B, H, Tk, Dv] f32 (bindings 1-3, strided)
//   mask (binding 4), out (binding 5: the output view), stats (binding 6: the log-sum-exp per row
//   when flags bit 0) as in sdpa.wgsl; no key splits (p.nsplit == 1).
//
// Grid: x = row_blocks (heaviest causal row blocks first), y = B*H. A workgroup of NS subgroups
// owns BQ = 16 * NS consecutive query rows, 16 per subgroup, and walks its keys in tiles of
// BKT = 16 * NKF. Per tile:
//   1. the workgroup stages the tile's k and v rows in workgroup memory;
//   2. each subgroup multiplies its 16 x DP block of q (held in registers as DP / 16 A fragments)
//      by the tile's keys: S = Q K^T, NKF 16 x 16 fragments, stored to s_s;
//   3. lanes run the online softmax over their rows of s_s (mask, causal end, running max and
//      sum) and write the probabilities P to p_s and the rescale factor of each row;
//   4. lanes rescale the subgroup's output rows in o_s (f32, workgroup memory: a cooperative
//      matrix is opaque, so a per-row factor cannot be applied to it in registers);
//   5. each subgroup adds P V into o_s, one 16 x 16 output fragment at a time.
// Finally lanes divide by the row sums and store.
//
// Precision: q, k, v and P are f32; each is split into hi + lo f16 halves (hi: the mantissa cut to
// f16's 10 bits, lo: f16 of the rest, as in matmul_coop.wgsl) and a product x y is taken as
// x_lo y_hi + x_hi y_lo + x_hi y_hi (three tensor-core products), so scores and outputs keep about
// 21 bits instead of f16's 11, accumulated in f32. Values beyond f16's range (|q * scale|, |k|,
// |v| > 65504) are clamped there.
//
// The `{{NAME}}` markers are filled by src/kernels/sdpa/coop.rs with the fragment code, its
// instructions spelled either as the cooperative-matrix builtins (the hardware form) or as calls
// of functions with the same meaning (the emulated form, for adapters without cooperative
// matrices: it tests this kernel's tiling, staging, fragment offsets and layouts, softmax and
// stores anywhere). Constants: SG (lanes per subgroup), NS, NKF, D, DV, DP / DVP (D / DV rounded
// up to 16), D4 / DV4, VEC, WG = NS * SG.

const BQ: u32 = NS * 16u;
const BKT: u32 = NKF * 16u;
const DP4: u32 = DP / 4u;
const DVP4: u32 = DVP / 4u;
// Row strides of the staged halves, padded by 8 elements (16 bytes) so that the rows a fragment
// load reads fall in distinct banks, and of the f32 tiles.
const LDQ: u32 = DP + 8u;
const LDK: u32 = DP + 8u;
const LDV: u32 = DVP + 8u;
const LDP: u32 = BKT + 8u;
const LDO: u32 = DVP + 4u;
const F16_MAX: f32 = 65504.0;

// `H`, the element type of the staged halves (f16 in the hardware form), and `half(x)`, x rounded
// to f16 and held as an H.
{{HALF}}

// workgroup-init: self -- q_hi/q_lo are written whole (zeros outside the problem) before the
// barrier that precedes their reads; k/v halves are written whole every tile before the barrier
// that precedes the products; s_s and p halves of a subgroup's rows are written whole (every key of
// the tile) before the barriers that precede their reads; o_s, m_s and l_s are set before the
// first barrier; c_s is written for every row before the barrier that precedes its reads.
var<workgroup> q_hi: array<H, BQ * LDQ>; // [BQ, LDQ] row-major, q * scale
var<workgroup> q_lo: array<H, BQ * LDQ>;
var<workgroup> k_hi: array<H, BKT * LDK>; // [BKT, LDK]: key-major
var<workgroup> k_lo: array<H, BKT * LDK>;
var<workgroup> v_hi: array<H, BKT * LDV>; // [BKT, LDV]: key-major
var<workgroup> v_lo: array<H, BKT * LDV>;
var<workgroup> p_hi: array<H, BQ * LDP>; // [BQ, LDP] probabilities of the tile
var<workgroup> p_lo: array<H, BQ * LDP>;
var<workgroup> s_s: array<f32, BQ * BKT>; // [BQ, BKT] scores of the tile
var<workgroup> o_s: array<f32, BQ * LDO>; // [BQ, LDO] unnormalized outputs
var<workgroup> m_s: array<f32, BQ>; // running max per row
var<workgroup> l_s: array<f32, BQ>; // running sum per row
var<workgroup> c_s: array<f32, BQ>; // this tile's rescale factor per row

// The hi half of v: its mantissa cut to f16's 10 bits by masking (a compiler may fold f32(f16(v))
// into v), after clamping to f16's range.
fn hi_of(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(clamp(v, -F16_MAX, F16_MAX)) & 0xffffe000u);
}

// put_q, put_k, put_v (o: u32, v: vec4<f32>): v's hi and lo halves at elements o..o+3 of the
// staged q, k or v (generated, one per array).
{{PUT}}

// Probabilities lie in [0, 1]: no clamp needed.
fn put_p(o: u32, x: f32) {
    let h = bitcast<f32>(bitcast<u32>(x) & 0xffffe000u);
    p_hi[o] = half(h);
    p_lo[o] = half(x - h);
}
{{EMULATED}}
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32{{ARGS}}) {
    // Keeps the mask binding in the pipeline layout of calls without a mask.
    _ = &mask;
{{LANES}}
    var rb = wid.x % p.row_blocks;
    if (p.causal != 0u) {
        // Later rows see more keys: dispatch them first so the light blocks fill the tail.
        rb = p.row_blocks - 1u - rb;
    }
    let bh = wid.y;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let i0 = rb * BQ;
    let ke = p.tk;
    // The workgroup's last row bounds its key loop (uniform, so every barrier below is reached by
    // the whole workgroup).
    let wg_end = causal_end(min(i0 + BQ - 1u, p.tq - 1u), ke);
    let kb = p.k.x + b * p.k.y + h * p.k.z;
    let vb = p.v.x + b * p.v.y + h * p.v.z;

    // q * scale, zeros past Tq and past D.
    for (var x = lid; x < BQ * DP4; x += WG) {
        let r = x / DP4;
        let c = x % DP4;
        let i = i0 + r;
        var v = vec4<f32>(0.0);
        if (i < p.tq && 4u * c < D) {
            v = ld_q(p.q.x + b * p.q.y + h * p.q.z + i * p.q.w, c) * p.scale;
        }
        put_q(r * LDQ + 4u * c, v);
    }
    for (var x = lid; x < BQ * LDO; x += WG) {
        o_s[x] = 0.0;
    }
    for (var r = lid; r < BQ; r += WG) {
        m_s[r] = NEG;
        l_s[r] = 0.0;
    }
    workgroupBarrier();
{{QFRAG}}
    for (var j0 = 0u; j0 < wg_end; j0 += BKT) {
        // The tile's keys and values, zeros past Tk and past D / Dv.
        for (var x = lid; x < BKT * DP4; x += WG) {
            let t = x / DP4;
            let c = x % DP4;
            let j = j0 + t;
            var v = vec4<f32>(0.0);
            if (j < ke && 4u * c < D) {
                v = ld_k(kb + j * p.k.w, c);
            }
            put_k(t * LDK + 4u * c, v);
        }
        for (var x = lid; x < BKT * DVP4; x += WG) {
            let t = x / DVP4;
            let c = x % DVP4;
            let j = j0 + t;
            var v = vec4<f32>(0.0);
            if (j < ke && 4u * c < DV) {
                v = ld_v(vb + j * p.v.w, c);
            }
            put_v(t * LDV + 4u * c, v);
        }
        workgroupBarrier();
        // S = Q K^T for the subgroup's 16 rows into s_s.
{{SCORES}}
        workgroupBarrier();
        // Online softmax, one lane per row: mask, running max, rescale factor, P.
        for (var r = lane; r < 16u; r += SG) {
            let row = sg * 16u + r;
            let i = min(i0 + row, p.tq - 1u);
            let end = causal_end(i, ke);
            let mb = p.m.x + b * p.m.y + h * p.m.z + i * p.m.w;
            var tmax = NEG;
            for (var t = 0u; t < BKT; t++) {
                let j = j0 + t;
                var x = NEG;
                if (j < end) {
                    x = apply_mask(mb, j, s_s[row * BKT + t]);
                }
                s_s[row * BKT + t] = x;
                tmax = max(tmax, x);
            }
            let mo = m_s[row];
            let mn = max(mo, tmax);
            var sum = 0.0;
            for (var t = 0u; t < BKT; t++) {
                let x = s_s[row * BKT + t];
                let pr = select(0.0, exp(x - mn), x > NEG);
                sum += pr;
                put_p(row * LDP + t, pr);
            }
            // What was summed under the old max is rescaled (exp(NEG - x) == 0).
            let corr = exp(mo - mn);
            c_s[row] = corr;
            l_s[row] = l_s[row] * corr + sum;
            m_s[row] = mn;
        }
        workgroupBarrier();
        for (var e = lane; e < 16u * DVP; e += SG) {
            let row = sg * 16u + e / DVP;
            let o = row * LDO + e % DVP;
            o_s[o] = o_s[o] * c_s[row];
        }
        workgroupBarrier();
        // o_s += P V for the subgroup's rows.
{{PV}}
        workgroupBarrier();
    }

    for (var r = lane; r < 16u; r += SG) {
        let row = sg * 16u + r;
        let ii = i0 + row;
        if (ii < p.tq) {
            // A row with no visible key (fully masked) gives zeros.
            let l = l_s[row];
            let inv = select(0.0, 1.0 / l, l > 0.0);
            let ob = p.o.x + b * p.o.y + h * p.o.z + ii * p.o.w;
            for (var d = 0u; d < DV; d++) {
                out[ob + d] = o_s[row * LDO + d] * inv;
            }
            if ((p.flags & 1u) != 0u) {
                stats[bh * p.tq + ii] = select(NEG, m_s[row] + log(l), l > 0.0);
            }
        }
    }
}
