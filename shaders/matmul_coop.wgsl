// Matmul on cooperative matrices (tensor cores; wgpu's experimental `wgpu_cooperative_matrix`), for
// f16 weights: one subgroup per workgroup (WG = the adapter's fixed subgroup size) computes a
// BM x BN = 32 x 32 output tile as 2 x 2 coop_mat16x16<f32, C> accumulators, staging BK = 16 deep
// slices of a and b in workgroup memory as f16.
//
//   out[b, m, n] = alpha * sum_k a[b, m, k] * B(b, k, n) + bias[n]
//
// Precision: b is f16 already (exact in f16). a is f32; it is split as a = hi + lo with
// hi = a with its mantissa truncated to f16's 10 bits and lo = f16(a - hi), and both halves are multiplied (two tensor-core products per
// slice), so the product keeps about 21 bits of a instead of f16's 11 and the accumulation is f32:
// results match the f32 kernels to ~1e-6 relative instead of ~1e-3. Values of a beyond f16's range
// (|a| > 65504) are clamped there (hi), which no activation of the models heedful runs reaches.
//
// Bindings (a, b and bias are declared by the Rust side with generated accessors a_at, b_at, ...):
//   params               uniform
//   a:    [batch, M, K]  f32       binding 1
//   b:    [batch|1, K, N] f16 when BT == 0, [batch|1, N, K] when BT == 1; binding 2
//   out:  [batch, M, N]  f32       binding 3
//   bias: [N]            f32|f16   binding 4, only when the op has one (`bias_value(n)` and the store's
//                                  `epilogue(v, col)`: alpha, bias, a linear's activation, are generated)
//
// Constants from the Rust side: BT (b transposed), WG (subgroup size).
// Grid: tiles_n * tiles_m * batch workgroups (32 x 32 tiles), split into (x, y) when over the
// per-dim limit. Loads outside M, N or K stage zeros and stores outside M and N are skipped, so any
// shape works; the cooperative loads and stores touch only the workgroup tiles (always in bounds).

// `enable wgpu_cooperative_matrix;` (and `enable f16;`) are put first by the Rust side: WGSL wants
// every enable directive before the generated constants and declarations.

const BM: u32 = 32u;
const BN: u32 = 32u;
const BK: u32 = 16u;
const F16_MAX: f32 = 65504.0;

// Generated prologue (src/kernels/matmul/problem.rs: `Params`, `MatmulBindings`): uniform `p`
// (m, n, k, batch, a_bs, b_bs, o_bs, tiles_n, tiles_m, alpha), a (1), b (2), out (3), bias (4).

// workgroup-init: self -- every k step writes all BM*BK (BN*BK) elements of a_hi, a_lo and b_t (e = lid + WG * i covers 0..512) before the barrier that precedes the cooperative loads; c_t is written whole by the four cooperative stores before the barrier that precedes its reads.
var<workgroup> a_hi: array<f16, 512>; // [BM, BK] row-major
var<workgroup> a_lo: array<f16, 512>; // [BM, BK] row-major
var<workgroup> b_t: array<f16, 512>; // [BN, BK]: element (k, n) at n * BK + k (column-major B)
var<workgroup> c_t: array<f32, 1024>; // [BM, BN] row-major

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let gn = g % p.tiles_n;
    let rest = g / p.tiles_n;
    let gm = rest % p.tiles_m;
    // Whole workgroups past the batch exit together (uniform), before any barrier.
    let gb = min(rest / p.tiles_m, p.batch);
    let live = gb < p.batch;
    let m0 = gm * BM;
    let n0 = gn * BN;
    let a_base = gb * p.a_bs;
    let b_base = gb * p.b_bs;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    let k_tiles = select(0u, (p.k + BK - 1u) / BK, live);
    for (var t = 0u; t < k_tiles; t++) {
        let k0 = t * BK;
        for (var e = lid; e < BM * BK; e += WG) {
            let r = e / BK;
            let kk = e % BK;
            let ka = k0 + kk;
            // a: row m0 + r.
            var av = 0.0;
            if (m0 + r < p.m && ka < p.k) {
                av = clamp(a_at(a_base + (m0 + r) * p.k + ka), -F16_MAX, F16_MAX);
            }
            // hi: av with its mantissa cut to f16's 10 bits, by masking the bits (a compiler may
            // fold f32(f16(av)) into av, which made lo zero on an H200); lo: the exact rest.
            let hi = bitcast<f32>(bitcast<u32>(av) & 0xffffe000u);
            a_hi[e] = f16(hi);
            a_lo[e] = f16(av - hi);
            // b: column n0 + r (BN == BM), stored n-major so B loads column-major.
            let col = n0 + r;
            var bv = 0.0;
            if (col < p.n && ka < p.k) {
                if (BT == 1u) {
                    bv = b_at(b_base + col * p.k + ka);
                } else {
                    bv = b_at(b_base + ka * p.n + col);
                }
            }
            b_t[e] = f16(bv);
        }
        workgroupBarrier();
        let h0 = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[0], BK);
        let h1 = coopLoadT<coop_mat16x16<f16, A>>(&a_hi[16u * BK], BK);
        let l0 = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[0], BK);
        let l1 = coopLoadT<coop_mat16x16<f16, A>>(&a_lo[16u * BK], BK);
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&b_t[0], BK);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&b_t[16u * BK], BK);
        c00 = coopMultiplyAdd(l0, b0, c00);
        c00 = coopMultiplyAdd(h0, b0, c00);
        c01 = coopMultiplyAdd(l0, b1, c01);
        c01 = coopMultiplyAdd(h0, b1, c01);
        c10 = coopMultiplyAdd(l1, b0, c10);
        c10 = coopMultiplyAdd(h1, b0, c10);
        c11 = coopMultiplyAdd(l1, b1, c11);
        c11 = coopMultiplyAdd(h1, b1, c11);
        workgroupBarrier();
    }
    coopStoreT(c00, &c_t[0], BN);
    coopStoreT(c01, &c_t[16u], BN);
    coopStoreT(c10, &c_t[16u * BN], BN);
    coopStoreT(c11, &c_t[16u * BN + 16u], BN);
    workgroupBarrier();
    if (!live) {
        return;
    }
    let o_base = gb * p.o_bs;
    for (var e = lid; e < BM * BN; e += WG) {
        let row = m0 + e / BN;
        let col = n0 + e % BN;
        if (row < p.m && col < p.n) {
            out[o_base + row * p.n + col] = epilogue(c_t[e], col);
        }
    }
}
