// Workgroup-memory tiled matmul (the usual shape for discrete GPUs): a workgroup of 16 x 16 threads
// computes a BM x BN = 64 x 64 output tile, staging BK-deep slices of a and b in workgroup memory;
// thread (tx, ty) accumulates the 4 x 4 block at rows 4 ty .. 4 ty + 3 and columns 4 tx .. 4 tx + 3
// in four vec4 registers, reading one vec4 of a's tile (4 rows) and one of b's (4 columns) per k.
// No loop-indexed private arrays: GPU compilers (NVIDIA's from naga's SPIR-V among them) can put
// those in local memory, which made an earlier 4 x 4-array version run at ~1% of an H200's FP32
// peak (see BENCHMARKS.md).
//
//   out[b, m, n] = alpha * sum_k a[b, m, k] * B(b, k, n) + bias[n]
//
// Bindings (a, b and bias are declared by the Rust side with generated accessors a_at, b_at, ...):
//   params               uniform
//   a:    [batch, M, K]  f32       binding 1
//   b:    [batch|1, K, N] f32|f16 when BT == 0, [batch|1, N, K] when BT == 1; binding 2
//   out:  [batch, M, N]  f32       binding 3
//   bias: [N]            f32|f16   binding 4, only when the op has one (`bias_value(n)` and the store's
//                                  `epilogue(v, col)`: alpha, bias, a linear's activation, are generated)
//
// Constants from the Rust side: BT (b transposed). Tile sizes are fixed below.
// Grid: tiles_n * tiles_m * batch workgroups, split into (x, y) when over the per-dim limit.
// Loads outside M, N or K read zeros, so any shape works.

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const THREADS: u32 = 256u;

// Generated prologue (src/kernels/matmul/problem.rs: `Params`, `MatmulBindings`): uniform `p`
// (m, n, k, batch, a_bs, b_bs, o_bs, tiles_n, tiles_m, alpha), a (1), b (2), out (3), bias (4).

// workgroup-init: self -- each k step writes all 256 vec4 (1024 scalars) of both tiles (e = lid + r * 256, r < 4, one component each) before the barrier that precedes the reads.
var<workgroup> a_tile: array<vec4<f32>, 256>; // [BK, BM / 4]: rows 4i..4i+3 of one k
var<workgroup> b_tile: array<vec4<f32>, 256>; // [BK, BN / 4]: columns 4j..4j+3 of one k

// Stores the 4 outputs of `acc` at `row`, columns col..col+3 (those inside M and N).
fn store4(o_base: u32, row: u32, col: u32, acc: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (col + j < p.n) {
            out[o_base + row * p.n + col + j] = epilogue(acc[j], col + j);
        }
    }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let gn = g % p.tiles_n;
    let rest = g / p.tiles_n;
    let gm = rest % p.tiles_m;
    // Whole workgroups past the batch exit together (uniform), before any barrier.
    let gb = min(rest / p.tiles_m, p.batch);
    let live = gb < p.batch;
    let tx = lid3.x;
    let ty = lid3.y;
    let m0 = gm * BM;
    let n0 = gn * BN;
    let a_base = gb * p.a_bs;
    let b_base = gb * p.b_bs;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let k_tiles = select(0u, (p.k + BK - 1u) / BK, live);
    for (var t = 0u; t < k_tiles; t++) {
        let k0 = t * BK;
        for (var r = 0u; r < 4u; r++) {
            let e = lid + r * THREADS;
            // a tile: consecutive threads along k (a's contiguous dim).
            let am = e / BK;
            let ak = e % BK;
            let row = m0 + am;
            let ka = k0 + ak;
            var av = 0.0;
            if (row < p.m && ka < p.k) {
                av = a_at(a_base + row * p.k + ka);
            }
            a_tile[ak * (BM / 4u) + am / 4u][am % 4u] = av;
            // b tile: consecutive threads along b's contiguous dim.
            var bk: u32;
            var bn: u32;
            if (BT == 1u) {
                bn = e / BK;
                bk = e % BK;
            } else {
                bk = e / BN;
                bn = e % BN;
            }
            let col = n0 + bn;
            let kb = k0 + bk;
            var bv = 0.0;
            if (col < p.n && kb < p.k) {
                if (BT == 1u) {
                    bv = b_at(b_base + col * p.k + kb);
                } else {
                    bv = b_at(b_base + kb * p.n + col);
                }
            }
            b_tile[bk * (BN / 4u) + bn / 4u][bn % 4u] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a4 = a_tile[kk * (BM / 4u) + ty];
            let b4 = b_tile[kk * (BN / 4u) + tx];
            acc0 = fma(vec4<f32>(a4.x), b4, acc0);
            acc1 = fma(vec4<f32>(a4.y), b4, acc1);
            acc2 = fma(vec4<f32>(a4.z), b4, acc2);
            acc3 = fma(vec4<f32>(a4.w), b4, acc3);
        }
        workgroupBarrier();
    }
    if (!live) {
        return;
    }
    let o_base = gb * p.o_bs;
    let row = m0 + 4u * ty;
    let col = n0 + 4u * tx;
    store4(o_base, row, col, acc0);
    store4(o_base, row + 1u, col, acc1);
    store4(o_base, row + 2u, col, acc2);
    store4(o_base, row + 3u, col, acc3);
}
