// Matmul on cooperative matrices (tensor cores; wgpu's experimental `wgpu_cooperative_matrix`), for
// f16 weights. A workgroup of WM x WN subgroups computes a BM x BN output tile; each subgroup owns
// an (FM * 16) x (FN * 16) block of it as FM x FN coop_mat16x16<f32, C> accumulators in named
// registers (the `{{...}}` markers are filled with straight-line code by
// src/kernels/matmul/coop.rs). Every BK = KF * 16 deep slice of a and b is staged once in workgroup
// memory as f16 by the whole workgroup (vec4 global reads where the shape allows) and read from
// there by all subgroups, so each global element serves WN (a) or WM (b) subgroups.
//
//   out[b, m, n] = alpha * sum_k a[b, m, k] * B(b, k, n) + bias[n]
//
// Precision: b is f16 already (exact in f16). a is f32; it is split as a = hi + lo with hi = a with
// its mantissa truncated to f16's 10 bits and lo = f16(a - hi), and both halves are multiplied (two
// tensor-core products per fragment), so the product keeps about 21 bits of a instead of f16's 11
// and the accumulation is f32: results match the f32 kernels to ~1e-6 relative instead of ~1e-3.
// Values of a beyond f16's range (|a| > 65504) are clamped there (hi), which no activation of the
// models heedful runs reaches.
//
// Bindings (a, b and bias are declared by the Rust side with generated accessors a_at, b_at4, ...):
//   params               uniform
//   a:    [batch, M, K]  f32       binding 1 (vec4 units when VA == 1: K % 4 == 0)
//   b:    [batch|1, K, N] f16 when BT == 0, [batch|1, N, K] when BT == 1; binding 2 (vec4 units
//                                  when VB == 1: K % 4 == 0 with BT, N % 4 == 0 without)
//   out:  [batch, M, N]  f32       binding 3
//   bias: [N]            f32|f16   binding 4, only when the op has one (`bias_value(n)` and the store's
//                                  `epilogue(v, col)`: alpha, bias, a linear's activation, are generated)
//
// Constants from the Rust side: BT, VA, VB, SG (the adapter's fixed subgroup size), WM, WN, FM, FN, KF,
// B_LEN (the staged b's length, the larger of its two layouts); NA and NB, the chunks of a and b
// per invocation, are unrolled into the DECL / PUT / LOAD markers.
// Grid: tiles_n * tiles_m * batch workgroups (BM x BN tiles, N fastest so that neighbouring
// workgroups share rows of a in cache), split into (x, y) when over the per-dim limit. Loads
// outside M, N or K stage zeros and stores outside M and N are skipped, so any shape works; the
// cooperative loads and stores touch only workgroup memory (always in bounds).

// `enable wgpu_cooperative_matrix;` (and `enable f16;`) are put first by the Rust side: WGSL wants
// every enable directive before the generated constants and declarations.

const BM: u32 = WM * FM * 16u;
const BN: u32 = WN * FN * 16u;
const BK: u32 = KF * 16u;
const WG: u32 = WM * WN * SG;
// Row strides of the staged tiles, in f16 elements, padded by 8 (16 bytes): with 32 + 8 (or 64 + 8)
// the eight 16-byte rows a tensor-core fragment load reads at a time fall in distinct banks.
const LDA: u32 = BK + 8u;
// b staged n-major ([BN, LDB], element (k, n) at n * LDB + k) when BT == 1, k-major ([BK, LDBN])
// when BT == 0: both keep the global reads contiguous.
const LDB: u32 = BK + 8u;
const LDBN: u32 = BN + 8u;
const F16_MAX: f32 = 65504.0;

// Generated prologue (src/kernels/matmul/problem.rs: `Params`, `MatmulBindings`): uniform `p`
// (m, n, k, batch, a_bs, b_bs, o_bs, tiles_n, tiles_m, alpha), a (1), b (2), out (3), bias (4).

// workgroup-init: self -- every k step writes all BM*BK (a_hi, a_lo) and BN*BK (b_s, in the layout
// BT selects) staged elements (put_a / put_b over chunks lid + i * WG, i < NA / NB, cover every
// chunk), zeros outside the problem, before the barrier that precedes the cooperative loads; each c_s fragment is written whole by a cooperative store before the barrier
// that precedes its reads.
var<workgroup> a_hi: array<f16, BM * LDA>; // [BM, LDA] row-major
var<workgroup> a_lo: array<f16, BM * LDA>;
var<workgroup> b_s: array<f16, B_LEN>;
var<workgroup> c_s: array<f32, WM * WN * 256u>; // one 16 x 16 fragment per subgroup, row-major

// Staging is split into a global load (into registers) and a workgroup-memory store, so that the
// next slice's loads are issued before the current slice's multiply-adds and their latency hides
// behind them (the kernel's main loop holds NA + NB vec4 registers of the next slice). Chunk c
// (0 <= c < BM * BK / 4 for a, BN * BK / 4 for b) is 4 consecutive elements along the operand's
// contiguous dim; each invocation owns chunks lid, lid + WG, ...

// a chunk c of the slice at k0: 4 consecutive k of one row, zeros outside the problem.
fn load_a(a_base: u32, m0: u32, k0: u32, c: u32) -> vec4<f32> {
    let r = c / (BK / 4u);
    let kq = (c % (BK / 4u)) * 4u;
    let row = m0 + r;
    let ka = k0 + kq;
    var v = vec4<f32>(0.0);
    if (c < BM * BK / 4u && row < p.m) {
        let base = a_base + row * p.k + ka;
        if (VA == 1u) {
            if (ka < p.k) {
                v = a_at4(base);
            }
        } else {
            for (var e = 0u; e < 4u; e++) {
                if (ka + e < p.k) {
                    v[e] = a_at(base + e);
                }
            }
        }
    }
    return v;
}

// Stores a chunk of a as hi and lo f16 halves.
fn put_a(c: u32, v_in: vec4<f32>) {
    if (c >= BM * BK / 4u) {
        return;
    }
    let v = clamp(v_in, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX));
    // hi: v with its mantissa cut to f16's 10 bits, by masking the bits (a compiler may fold
    // f32(f16(v)) into v, which made lo zero on an H200); lo: the exact rest.
    let hi = bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) & vec4<u32>(0xffffe000u));
    let lo = v - hi;
    let o = (c / (BK / 4u)) * LDA + (c % (BK / 4u)) * 4u;
    a_hi[o] = f16(hi.x);
    a_hi[o + 1u] = f16(hi.y);
    a_hi[o + 2u] = f16(hi.z);
    a_hi[o + 3u] = f16(hi.w);
    a_lo[o] = f16(lo.x);
    a_lo[o + 1u] = f16(lo.y);
    a_lo[o + 2u] = f16(lo.z);
    a_lo[o + 3u] = f16(lo.w);
}

// b chunk c of the slice at k0: 4 consecutive k of one column (BT == 1) or 4 consecutive columns
// of one k (BT == 0), zeros outside the problem.
fn load_b(b_base: u32, n0: u32, k0: u32, c: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (c >= BN * BK / 4u) {
        return v;
    }
    if (BT == 1u) {
        let col = n0 + c / (BK / 4u);
        let kb = k0 + (c % (BK / 4u)) * 4u;
        if (col < p.n) {
            let base = b_base + col * p.k + kb;
            if (VB == 1u) {
                if (kb < p.k) {
                    v = b_at4(base);
                }
            } else {
                for (var e = 0u; e < 4u; e++) {
                    if (kb + e < p.k) {
                        v[e] = b_at(base + e);
                    }
                }
            }
        }
    } else {
        let kb = k0 + c / (BN / 4u);
        let col = n0 + (c % (BN / 4u)) * 4u;
        if (kb < p.k) {
            let base = b_base + kb * p.n + col;
            if (VB == 1u) {
                if (col < p.n) {
                    v = b_at4(base);
                }
            } else {
                for (var e = 0u; e < 4u; e++) {
                    if (col + e < p.n) {
                        v[e] = b_at(base + e);
                    }
                }
            }
        }
    }
    return v;
}

// Stores a chunk of b in the layout BT selects: n-major [BN, LDB] or k-major [BK, LDBN].
fn put_b(c: u32, v: vec4<f32>) {
    if (c >= BN * BK / 4u) {
        return;
    }
    var o: u32;
    if (BT == 1u) {
        o = (c / (BK / 4u)) * LDB + (c % (BK / 4u)) * 4u;
    } else {
        o = (c / (BN / 4u)) * LDBN + (c % (BN / 4u)) * 4u;
    }
    b_s[o] = f16(v.x);
    b_s[o + 1u] = f16(v.y);
    b_s[o + 2u] = f16(v.z);
    b_s[o + 3u] = f16(v.w);
}

// The subgroup's fragment in c_s (rows row0.., columns col0..) through the epilogue to `out`.
fn store_fragment(s: u32, lane: u32, live: bool, o_base: u32, row0: u32, col0: u32) {
    if (!live) {
        return;
    }
    for (var e = lane; e < 256u; e += SG) {
        let row = row0 + e / 16u;
        let col = col0 + e % 16u;
        if (row < p.m && col < p.n) {
            out[o_base + row * p.n + col] = epilogue(c_s[s * 256u + e], col);
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    let g = wid.x + wid.y * nwg.x;
    let gn = g % p.tiles_n;
    let rest = g / p.tiles_n;
    let gm = rest % p.tiles_m;
    // Whole workgroups past the batch skip their loads and stores together (uniform) but still
    // reach every barrier.
    let gb = min(rest / p.tiles_m, p.batch);
    let live = gb < p.batch;
    let m0 = gm * BM;
    let n0 = gn * BN;
    let a_base = gb * p.a_bs;
    let b_base = gb * p.b_bs;
    // This subgroup's block of the tile: rows sm * FM * 16.., columns sn * FN * 16...
    let sm = sg / WN;
    let sn = sg % WN;
{{ACC}}
    let k_tiles = select(0u, (p.k + BK - 1u) / BK, live);
    // The first slice's chunks (none for workgroups past the batch), then per slice: store,
    // barrier, load the next slice, multiply.
{{DECL}}
    if (k_tiles > 0u) {
        let k0 = 0u;
{{LOAD}}
    }
    for (var t = 0u; t < k_tiles; t++) {
{{PUT}}
        workgroupBarrier();
        if (t + 1u < k_tiles) {
            let k0 = (t + 1u) * BK;
{{LOAD}}
        }
{{MMA}}
        workgroupBarrier();
    }
    let o_base = gb * p.o_bs;
{{STORE}}
}
