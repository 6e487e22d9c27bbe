// Register-blocked matmul without workgroup memory (the fast shape on CPU adapters such as lavapipe,
// where barriers are costly): every thread computes a TM x TN block of outputs from its own loads.
//
//   out[b, m, n] = alpha * sum_k a[b, m, k] * B(b, k, n) + bias[n]
//
// Bindings (a, b and bias are declared by the Rust side with generated accessors a_at/a_at4, ...):
//   params               uniform
//   a:    [batch, M, K]  f32       binding 1 (vec4 declaration when VK == 1)
//   b:    [batch|1, K, N] f32|f16 when BT == 0 (B(k, n) = b[k, n]; vec4 along n when VN == 1)
//         [batch|1, N, K] f32|f16 when BT == 1 (B(k, n) = b[n, k]; vec4 along k when VK == 1)
//                                  binding 2; batch stride 0 when b is shared across the batch
//   out:  [batch, M, N]  f32       binding 3
//   bias: [N]            f32|f16   binding 4, only when the op has one; `bias_value(n)` and the store's
//                                  `epilogue(v, col)` (alpha, bias, a linear's activation) are generated
//                                  (returns 0 without a bias)
//
// Constants from the Rust side: TM, TN (outputs per thread along M and N), TN4 = max(TN / 4, 1),
// WG (threads per workgroup, all along N so a workgroup shares its rows of `a` and those loads are
// uniform), BT (b transposed), VK (K % 4 == 0), VN (N % 4 == 0 and TN % 4 == 0, only with BT == 0).
//
// Grid: tiles_n * tiles_m * batch workgroups, split into (x, y) when over the per-dim limit.
// Threads past the edge of M or N read clamped (valid) rows and columns and skip their stores.

// Generated prologue (src/kernels/matmul/problem.rs: `Params`, `MatmulBindings`): uniform `p`
// (m, n, k, batch, a_bs, b_bs, o_bs, tiles_n, tiles_m, alpha), a (1), b (2), out (3), bias (4).

fn store(base: u32, row: u32, col: u32, v: f32) {
    if (row < p.m && col < p.n) {
        out[base + row * p.n + col] = epilogue(v, col);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let gn = g % p.tiles_n;
    let rest = g / p.tiles_n;
    let gm = rest % p.tiles_m;
    let gb = rest / p.tiles_m;
    if (gb >= p.batch) {
        return;
    }
    let n0 = (gn * WG + lid) * TN;
    let m0 = gm * TM;
    if (n0 >= p.n) {
        return;
    }
    let a_base = gb * p.a_bs;
    let b_base = gb * p.b_bs;
    let o_base = gb * p.o_bs;
    // Row offsets into a, clamped to the last row so edge threads read valid memory.
    var a_off: array<u32, TM>;
    for (var i = 0u; i < TM; i++) {
        a_off[i] = a_base + min(m0 + i, p.m - 1u) * p.k;
    }

    if (BT == 1u) {
        // b: [N, K]. Both operands are contiguous along k: vec4 loads over k, one scalar
        // accumulator per output (TM * TN independent FMA chains).
        var b_off: array<u32, TN>;
        for (var j = 0u; j < TN; j++) {
            b_off[j] = b_base + min(n0 + j, p.n - 1u) * p.k;
        }
        var acc: array<array<f32, TN>, TM>;
        var kk = 0u;
        if (VK == 1u) {
            for (; kk < p.k; kk += 4u) {
                var av: array<vec4<f32>, TM>;
                for (var i = 0u; i < TM; i++) {
                    av[i] = a_at4(a_off[i] + kk);
                }
                for (var j = 0u; j < TN; j++) {
                    let bv = b_at4(b_off[j] + kk);
                    for (var i = 0u; i < TM; i++) {
                        var s = acc[i][j];
                        s = fma(av[i].x, bv.x, s);
                        s = fma(av[i].y, bv.y, s);
                        s = fma(av[i].z, bv.z, s);
                        acc[i][j] = fma(av[i].w, bv.w, s);
                    }
                }
            }
        }
        for (; kk < p.k; kk++) {
            var av: array<f32, TM>;
            for (var i = 0u; i < TM; i++) {
                av[i] = a_at(a_off[i] + kk);
            }
            for (var j = 0u; j < TN; j++) {
                let bv = b_at(b_off[j] + kk);
                for (var i = 0u; i < TM; i++) {
                    acc[i][j] = fma(av[i], bv, acc[i][j]);
                }
            }
        }
        for (var i = 0u; i < TM; i++) {
            for (var j = 0u; j < TN; j++) {
                store(o_base, m0 + i, n0 + j, acc[i][j]);
            }
        }
    } else if (VN == 1u) {
        // b: [K, N] with N % 4 == 0: vec4 over n, one a value broadcast over it.
        var b_col: array<u32, TN4>;
        for (var q = 0u; q < TN4; q++) {
            b_col[q] = b_base + min(n0 + 4u * q, p.n - 4u);
        }
        var acc: array<array<vec4<f32>, TN4>, TM>;
        for (var kk = 0u; kk < p.k; kk++) {
            var bv: array<vec4<f32>, TN4>;
            for (var q = 0u; q < TN4; q++) {
                bv[q] = b_at4(b_col[q] + kk * p.n);
            }
            for (var i = 0u; i < TM; i++) {
                let av = vec4<f32>(a_at(a_off[i] + kk));
                for (var q = 0u; q < TN4; q++) {
                    acc[i][q] = fma(av, bv[q], acc[i][q]);
                }
            }
        }
        for (var i = 0u; i < TM; i++) {
            for (var q = 0u; q < TN4; q++) {
                let s = acc[i][q];
                let c = n0 + 4u * q;
                store(o_base, m0 + i, c, s.x);
                store(o_base, m0 + i, c + 1u, s.y);
                store(o_base, m0 + i, c + 2u, s.z);
                store(o_base, m0 + i, c + 3u, s.w);
            }
        }
    } else {
        // b: [K, N], any N: scalar loads.
        var b_col: array<u32, TN>;
        for (var j = 0u; j < TN; j++) {
            b_col[j] = b_base + min(n0 + j, p.n - 1u);
        }
        var acc: array<array<f32, TN>, TM>;
        for (var kk = 0u; kk < p.k; kk++) {
            var bv: array<f32, TN>;
            for (var j = 0u; j < TN; j++) {
                bv[j] = b_at(b_col[j] + kk * p.n);
            }
            for (var i = 0u; i < TM; i++) {
                let av = a_at(a_off[i] + kk);
                for (var j = 0u; j < TN; j++) {
                    acc[i][j] = fma(av, bv[j], acc[i][j]);
                }
            }
        }
        for (var i = 0u; i < TM; i++) {
            for (var j = 0u; j < TN; j++) {
                store(o_base, m0 + i, n0 + j, acc[i][j]);
            }
        }
    }
}
