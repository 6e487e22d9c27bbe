//! matmul, matmul_bt and linear against the CPU reference, on every kernel (register-blocked, tiled,
//! both GEMVs), both f16 paths, awkward shapes, batches; plus the PyTorch conformance cases.

mod common;
use common::*;
use heedful::gpu::CoopTile;
use heedful::kernels::matmul::MatmulKernel;
use heedful::{ops, reference, DType, Gpu, Tensor};

const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-4;

/// (M, K, N): length-1 dims, sizes off the tile and vector widths, a few vec4-friendly ones.
const SHAPES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (1, 7, 5),
    (3, 5, 7),
    (4, 4, 4),
    (5, 1, 9),
    (2, 8, 1),
    (17, 33, 9),
    (33, 64, 70),
    (65, 100, 37),
    (9, 12, 260),
    (70, 20, 68),
    (130, 36, 3),
];

/// Uploads `v` as `dtype` and returns the values the GPU actually holds.
fn upload(gpu: &Gpu, v: &[f32], shape: &[usize], dtype: DType) -> (Tensor, Vec<f32>) {
    let t = Tensor::from_f32_as(gpu, v, shape, dtype).unwrap();
    let held = if dtype == DType::F16 {
        f16_round(v)
    } else {
        v.to_vec()
    };
    (t, held)
}

/// Auto, every forceable kernel that takes this layout, and register tiles off the tuned ones
/// (1x1; 3x5 forces the scalar path even where N % 4 == 0; 2x8 the vec4 path), for the blocked and
/// the unrolled kernel (the unrolled ones also with a fixed workgroup of 8 and of 16, so tiles
/// split N over several workgroups; on lavapipe 8x4, 16x* and 24x4 take the subgroup form that
/// reads whole rows of a where K % 4 == 0, 3x5 and 5x3 the one that reads single elements). On
/// lavapipe Auto takes 24-row tiles for f32 `b [K, N]` from 17 rows (`Tuning::unrolled_tile`).
fn kernels_for(bt: bool) -> Vec<MatmulKernel> {
    let mut v = vec![MatmulKernel::Auto];
    v.extend(MatmulKernel::ALL.iter().filter(|k| bt || !k.needs_bt()));
    v.extend([(1, 1), (3, 5), (2, 8)].map(|(tm, tn)| MatmulKernel::BlockedTile { tm, tn }));
    v.extend(
        [
            (1, 1, 0),
            (3, 5, 8),
            (2, 8, 16),
            (8, 4, 8),
            (5, 3, 0),
            (16, 4, 8),
            (16, 3, 0),
            (24, 4, 8),
        ]
        .map(|(tm, tn, wg)| MatmulKernel::UnrolledTile { tm, tn, wg }),
    );
    v
}

#[test]
fn matmul_matches_reference_on_all_kernels_and_f16_paths() {
    let mut rng = Rng::new(11);
    for (path, gpu) in gpus() {
        for (si, &(m, k, n)) in SHAPES.iter().enumerate() {
            for (bi, (batch, shared)) in [(1usize, false), (3, false), (2, true)]
                .into_iter()
                .enumerate()
            {
                // f16 and f32 b alternate; the packed-f16 device only matters for f16.
                let dtype = if (si + bi) % 2 == 0 {
                    DType::F16
                } else {
                    DType::F32
                };
                if dtype == DType::F32 && path == "packed-f16" {
                    continue;
                }
                {
                    let a = rng.vec(batch * m * k, -1.0, 1.0);
                    let bn = if shared { 1 } else { batch };
                    let b = rng.vec(bn * k * n, -1.0, 1.0);
                    let at = Tensor::from_f32(&gpu, &a, &[batch, m, k]).unwrap();
                    let bshape: Vec<usize> = if shared {
                        vec![k, n]
                    } else {
                        vec![batch, k, n]
                    };
                    let (bt, bh) = upload(&gpu, &b, &bshape, dtype);
                    let want = reference::matmul::matmul(&a, &bh, batch, m, k, n, shared);
                    for kernel in kernels_for(false) {
                        let got = ops::matmul_with(&gpu, &at, &bt, kernel).unwrap();
                        assert_eq!(got.shape(), &[batch, m, n]);
                        assert_close(
                            &format!("{path} matmul {kernel:?} b{batch} shared={shared} {m}x{k}x{n} {dtype}"),
                            &got.to_vec_f32(&gpu).unwrap(),
                            &want,
                            ATOL,
                            RTOL,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_bt_matches_reference_with_alpha() {
    let mut rng = Rng::new(12);
    for (path, gpu) in gpus() {
        for &(m, k, n) in &SHAPES {
            for (batch, shared) in [(1usize, false), (3, false), (2, true)] {
                let dtype = if (m + k + batch) % 2 == 0 {
                    DType::F32
                } else {
                    DType::F16
                };
                if dtype == DType::F32 && path == "packed-f16" {
                    continue;
                }
                let a = rng.vec(batch * m * k, -1.0, 1.0);
                let bn = if shared { 1 } else { batch };
                let b = rng.vec(bn * n * k, -1.0, 1.0);
                let at = Tensor::from_f32(&gpu, &a, &[batch, m, k]).unwrap();
                let bshape: Vec<usize> = if shared {
                    vec![n, k]
                } else {
                    vec![batch, n, k]
                };
                let (bt, bh) = upload(&gpu, &b, &bshape, dtype);
                let alpha = 0.125;
                let want = reference::matmul::matmul_bt(&a, &bh, batch, m, k, n, shared, alpha);
                for kernel in kernels_for(true) {
                    let got = ops::matmul_bt_with(&gpu, &at, &bt, alpha, kernel).unwrap();
                    assert_close(
                        &format!("{path} matmul_bt {kernel:?} b{batch} shared={shared} {m}x{k}x{n} {dtype}"),
                        &got.to_vec_f32(&gpu).unwrap(),
                        &want,
                        ATOL,
                        RTOL,
                    );
                }
            }
        }
    }
}

#[test]
fn linear_matches_reference_with_and_without_bias() {
    let mut rng = Rng::new(13);
    for (path, gpu) in gpus() {
        for (si, &(m, k, n)) in SHAPES.iter().enumerate() {
            // Every (dtype, bias) pair over the shapes, two per shape.
            let combos = if si % 2 == 0 {
                [(DType::F32, false), (DType::F16, true)]
            } else {
                [(DType::F32, true), (DType::F16, false)]
            };
            for (dtype, with_bias) in combos {
                if dtype == DType::F32 && path == "packed-f16" {
                    continue;
                }
                {
                    let x = rng.vec(m * k, -1.0, 1.0);
                    let w = rng.vec(n * k, -1.0, 1.0);
                    let bias = rng.vec(n, -1.0, 1.0);
                    // x as [*, K] with two leading dims when M splits.
                    let xshape = if m % 5 == 0 {
                        vec![5, m / 5, k]
                    } else {
                        vec![m, k]
                    };
                    let xt = Tensor::from_f32(&gpu, &x, &xshape).unwrap();
                    let (wt, wh) = upload(&gpu, &w, &[n, k], dtype);
                    let (bt, bh) = upload(&gpu, &bias, &[n], dtype);
                    let want = reference::matmul::linear(
                        &x,
                        &wh,
                        with_bias.then_some(bh.as_slice()),
                        m,
                        k,
                        n,
                    );
                    for kernel in kernels_for(true) {
                        let got =
                            ops::linear_with(&gpu, &xt, &wt, with_bias.then_some(&bt), kernel)
                                .unwrap();
                        let mut oshape = xshape.clone();
                        *oshape.last_mut().unwrap() = n;
                        assert_eq!(got.shape(), oshape.as_slice());
                        assert_close(
                            &format!(
                                "{path} linear {kernel:?} bias={with_bias} {m}x{k}x{n} {dtype}"
                            ),
                            &got.to_vec_f32(&gpu).unwrap(),
                            &want,
                            ATOL,
                            RTOL,
                        );
                    }
                }
            }
        }
    }
}

/// The linear with its activation fused into the store (`act(x @ w^T + bias)`, one dispatch)
/// against the reference: every kernel that takes `[N, K]` weights (tuned and off-tune tiles) with
/// gelu and f16 weights on awkward shapes, and every activation with the Auto kernel; the
/// pipelines of the plain and the fused linear stay apart (same shapes, both orders).
#[test]
fn linear_act_matches_reference_on_every_kernel() {
    use heedful::ops::Activation;
    let gpu = gpu();
    let mut rng = Rng::new(17);
    let check =
        |m: usize, k: usize, n: usize, act: Activation, kernels: &[MatmulKernel], rng: &mut Rng| {
            let x = rng.vec(m * k, -1.5, 1.5);
            let w = rng.vec(n * k, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let xt = Tensor::from_f32(&gpu, &x, &[m, k]).unwrap();
            let (wt, wh) = upload(&gpu, &w, &[n, k], DType::F16);
            let (bt, bh) = upload(&gpu, &bias, &[n], DType::F16);
            let lin = reference::matmul::linear(&x, &wh, Some(&bh), m, k, n);
            let want = reference::elementwise::activation_all(&lin, act);
            for &kernel in kernels {
                let plain = ops::linear_with(&gpu, &xt, &wt, Some(&bt), kernel).unwrap();
                let got = ops::linear_act_with(&gpu, &xt, &wt, Some(&bt), act, kernel).unwrap();
                let again = ops::linear_with(&gpu, &xt, &wt, Some(&bt), kernel).unwrap();
                let what = format!("linear_act {act:?} {kernel:?} {m}x{k}x{n}");
                assert_close(&what, &got.to_vec_f32(&gpu).unwrap(), &want, ATOL, RTOL);
                for t in [plain, again] {
                    assert_close(
                        &format!("{what} plain"),
                        &t.to_vec_f32(&gpu).unwrap(),
                        &lin,
                        ATOL,
                        RTOL,
                    );
                }
            }
        };
    let kernels = kernels_for(true);
    for &(m, k, n) in &[(1usize, 7usize, 5usize), (33, 64, 70)] {
        check(m, k, n, Activation::Gelu, &kernels, &mut rng);
    }
    for act in [
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Silu,
        Activation::Gelu,
        Activation::GeluTanh,
    ] {
        check(9, 12, 26, act, &[MatmulKernel::Auto], &mut rng);
    }
}

/// One row against a short, wide weight (a decode step's output layer over a vocabulary): the
/// shapes where the CPU table takes more columns per invocation (`MatmulTuning::wide_gemv`),
/// with N not a multiple of any workgroup's columns, K at the rule's edge and past it, both f16
/// paths, with and without a bias.
#[test]
fn wide_gemv_matches_reference() {
    let mut rng = Rng::new(15);
    for (path, gpu) in gpus() {
        for &(k, n) in &[(512usize, 8195usize), (256, 9001), (520, 8200)] {
            let x = rng.vec(k, -1.0, 1.0);
            let w = rng.vec(n * k, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let xt = Tensor::from_f32(&gpu, &x, &[1, k]).unwrap();
            let (wt, wh) = upload(&gpu, &w, &[n, k], DType::F16);
            let (bt, bh) = upload(&gpu, &bias, &[n], DType::F16);
            for with_bias in [false, true] {
                let want =
                    reference::matmul::linear(&x, &wh, with_bias.then_some(bh.as_slice()), 1, k, n);
                let got =
                    ops::linear_with(&gpu, &xt, &wt, with_bias.then_some(&bt), MatmulKernel::Auto)
                        .unwrap();
                assert_close(
                    &format!("{path} wide gemv 1x{k}x{n} bias={with_bias}"),
                    &got.to_vec_f32(&gpu).unwrap(),
                    &want,
                    ATOL,
                    RTOL,
                );
            }
        }
    }
}

#[test]
fn large_values_and_larger_shapes() {
    let gpu = gpu();
    let mut rng = Rng::new(14);
    // Magnitudes around 1e3 (sums around 1e7) and shapes spanning several tiles.
    for &(m, k, n) in &[
        (129usize, 260usize, 131usize),
        (64, 512, 64),
        (2, 1000, 300),
    ] {
        let x = rng.vec(m * k, -1000.0, 1000.0);
        let w = rng.vec(n * k, -1000.0, 1000.0);
        let xt = Tensor::from_f32(&gpu, &x, &[m, k]).unwrap();
        let wt = Tensor::from_f32(&gpu, &w, &[n, k]).unwrap();
        let want = reference::matmul::linear(&x, &w, None, m, k, n);
        let scale = 1e6 * (k as f64).sqrt();
        for kernel in kernels_for(true) {
            let got = ops::linear_with(&gpu, &xt, &wt, None, kernel).unwrap();
            assert_close(
                &format!("large linear {kernel:?} {m}x{k}x{n}"),
                &got.to_vec_f32(&gpu).unwrap(),
                &want,
                scale * 1e-5,
                1e-4,
            );
        }
        // The same values through matmul with b = w^T laid out [K, N].
        let mut wt_kn = vec![0.0f32; k * n];
        for j in 0..n {
            for t in 0..k {
                wt_kn[t * n + j] = w[j * k + t];
            }
        }
        let bt = Tensor::from_f32(&gpu, &wt_kn, &[k, n]).unwrap();
        for kernel in kernels_for(false) {
            let got = ops::matmul_with(&gpu, &xt, &bt, kernel).unwrap();
            assert_close(
                &format!("large matmul {kernel:?} {m}x{k}x{n}"),
                &got.to_vec_f32(&gpu).unwrap(),
                &want,
                scale * 1e-5,
                1e-4,
            );
        }
    }
}

#[test]
fn bad_shapes_and_dtypes_are_errors_naming_op_and_shapes() {
    let gpu = gpu();
    let t = |shape: &[usize]| Tensor::zeros(&gpu, shape, DType::F32).unwrap();
    let err = |r: heedful::Result<Tensor>| r.unwrap_err().to_string();

    let e = err(ops::linear(&gpu, &t(&[2, 3]), &t(&[4, 5]), None));
    assert!(
        e.contains("linear") && e.contains("[2, 3]") && e.contains("[4, 5]"),
        "{e}"
    );
    let e = err(ops::linear(&gpu, &t(&[2, 3]), &t(&[4, 3]), Some(&t(&[5]))));
    assert!(
        e.contains("linear") && e.contains("bias") && e.contains("[5]"),
        "{e}"
    );
    let e = err(ops::linear(&gpu, &t(&[2, 3]), &t(&[3]), None));
    assert!(e.contains("linear") && e.contains("[3]"), "{e}");
    let e = err(ops::matmul(&gpu, &t(&[2, 3]), &t(&[4, 5])));
    assert!(
        e.contains("matmul") && e.contains("[2, 3]") && e.contains("[4, 5]"),
        "{e}"
    );
    let e = err(ops::matmul(&gpu, &t(&[2, 2, 3]), &t(&[3, 3, 5])));
    assert!(
        e.contains("batch") && e.contains("[2, 2, 3]") && e.contains("[3, 3, 5]"),
        "{e}"
    );
    let e = err(ops::matmul(&gpu, &t(&[3]), &t(&[3, 5])));
    assert!(e.contains("matmul") && e.contains("[3]"), "{e}");
    let e = err(ops::matmul_bt(&gpu, &t(&[2, 3]), &t(&[4, 5]), 1.0));
    assert!(e.contains("matmul_bt") && e.contains("[4, 5]"), "{e}");
    // Register tiles out of range.
    let e = err(ops::matmul_with(
        &gpu,
        &t(&[2, 3]),
        &t(&[3, 4]),
        MatmulKernel::BlockedTile { tm: 16, tn: 16 },
    ));
    assert!(e.contains("matmul") && e.contains("16x16"), "{e}");
    let e = err(ops::linear_with(
        &gpu,
        &t(&[2, 3]),
        &t(&[4, 3]),
        None,
        MatmulKernel::BlockedTile { tm: 0, tn: 4 },
    ));
    assert!(e.contains("linear") && e.contains("0x4"), "{e}");
    let e = err(ops::matmul_with(
        &gpu,
        &t(&[2, 3]),
        &t(&[3, 4]),
        MatmulKernel::UnrolledTile {
            tm: 16,
            tn: 16,
            wg: 8,
        },
    ));
    assert!(e.contains("matmul") && e.contains("16x16"), "{e}");
    // Rows: up to 32 for the unrolled kernel, 16 for the blocked one.
    let e = err(ops::matmul_with(
        &gpu,
        &t(&[2, 3]),
        &t(&[3, 4]),
        MatmulKernel::UnrolledTile {
            tm: 33,
            tn: 1,
            wg: 8,
        },
    ));
    assert!(e.contains("33x1") && e.contains("1..=32"), "{e}");
    let e = err(ops::matmul_with(
        &gpu,
        &t(&[2, 3]),
        &t(&[3, 4]),
        MatmulKernel::BlockedTile { tm: 24, tn: 4 },
    ));
    assert!(e.contains("24x4") && e.contains("1..=16"), "{e}");
    let e = err(ops::linear_with(
        &gpu,
        &t(&[2, 3]),
        &t(&[4, 3]),
        None,
        MatmulKernel::UnrolledTile {
            tm: 4,
            tn: 4,
            wg: 12,
        },
    ));
    assert!(e.contains("linear") && e.contains("12"), "{e}");
    // GEMV kernels need [N, K] weights.
    let e = err(ops::matmul_with(
        &gpu,
        &t(&[2, 3]),
        &t(&[3, 4]),
        MatmulKernel::GemvRows,
    ));
    assert!(e.contains("matmul") && e.contains("GemvRows"), "{e}");
    // Integer operands are refused.
    let ids = Tensor::from_u32(&gpu, &[0; 6], &[2, 3]).unwrap();
    let e = err(ops::linear(&gpu, &t(&[2, 3]), &ids, None));
    assert!(e.contains("linear") && e.contains("u32"), "{e}");
    // A wrong output shape through the recording API.
    let mut rec = heedful::gpu::Recorder::new(&gpu);
    let e = heedful::kernels::matmul::record_linear(
        &mut rec,
        &t(&[2, 3]),
        &t(&[4, 3]),
        None,
        &t(&[2, 5]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("linear") && e.contains("[2, 5]") && e.contains("[2, 4]"),
        "{e}"
    );
}

#[test]
fn empty_dims_give_empty_or_bias_outputs() {
    let gpu = gpu();
    let x = Tensor::zeros(&gpu, &[0, 3], DType::F32).unwrap();
    let w = Tensor::from_f32(&gpu, &[1.0; 6], &[2, 3]).unwrap();
    assert_eq!(ops::linear(&gpu, &x, &w, None).unwrap().shape(), &[0, 2]);
    // K = 0: the sum is empty, so the output is the bias.
    let x = Tensor::zeros(&gpu, &[2, 0], DType::F32).unwrap();
    let w = Tensor::zeros(&gpu, &[3, 0], DType::F32).unwrap();
    let b = Tensor::from_f32(&gpu, &[1.0, 2.0, 3.0], &[3]).unwrap();
    for kernel in kernels_for(true) {
        let y = ops::linear_with(&gpu, &x, &w, Some(&b), kernel).unwrap();
        assert_eq!(
            y.to_vec_f32(&gpu).unwrap(),
            vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
            "{kernel:?}"
        );
    }
}

/// The fused linear + norm with empty dims: no rows give an empty output, K = 0 the norm of
/// bias + residual, fused or not.
#[test]
fn linear_add_layer_norm_empty_dims() {
    use heedful::kernels::matmul::{NormFusion, ResidualNorm};
    let gpu = gpu();
    let g = Tensor::from_f32(&gpu, &[1.0, 1.0], &[2]).unwrap();
    let z = Tensor::from_f32(&gpu, &[0.0, 0.0], &[2]).unwrap();
    for fusion in [NormFusion::Auto, NormFusion::Fused, NormFusion::Separate] {
        let x = Tensor::zeros(&gpu, &[0, 3], DType::F32).unwrap();
        let w = Tensor::from_f32(&gpu, &[1.0; 6], &[2, 3]).unwrap();
        let r = Tensor::zeros(&gpu, &[0, 2], DType::F32).unwrap();
        let norm = ResidualNorm {
            residual: &r,
            weight: &g,
            bias: &z,
            eps: 0.0,
        };
        let y = ops::linear_add_layer_norm_with(&gpu, &x, &w, None, &norm, fusion).unwrap();
        assert_eq!(y.shape(), &[0, 2], "{fusion:?}");
        // K = 0: LayerNorm([1, 3] + [0, 0]) = [-1, 1] in every row.
        let x = Tensor::zeros(&gpu, &[2, 0], DType::F32).unwrap();
        let w = Tensor::zeros(&gpu, &[2, 0], DType::F32).unwrap();
        let b = Tensor::from_f32(&gpu, &[1.0, 3.0], &[2]).unwrap();
        let r = Tensor::zeros(&gpu, &[2, 2], DType::F32).unwrap();
        let norm = ResidualNorm {
            residual: &r,
            weight: &g,
            bias: &z,
            eps: 0.0,
        };
        let y = ops::linear_add_layer_norm_with(&gpu, &x, &w, Some(&b), &norm, fusion).unwrap();
        assert_eq!(
            y.to_vec_f32(&gpu).unwrap(),
            vec![-1.0, 1.0, -1.0, 1.0],
            "{fusion:?}"
        );
    }
}

#[test]
fn crate_doc_example_values() {
    let gpu = gpu();
    let x = Tensor::from_f32(&gpu, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let w = Tensor::from_f32_as_f16(&gpu, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &[2, 3]).unwrap();
    let y = ops::linear(&gpu, &x, &w, None).unwrap();
    assert_eq!(y.to_vec_f32(&gpu).unwrap(), vec![1.0, 2.0, 4.0, 5.0]);
}

#[cfg(feature = "tools")]
#[test]
fn bench_reports_lines_with_roofline_shares() {
    // One quick pass: single repetitions, only the f16 GEMV case besides the roofline.
    let gpu = gpu();
    let mut ctx = heedful::bench::BenchCtx::new(&gpu, Some("gemv:auto/1x4096"), false).unwrap();
    ctx.target_s = 0.0;
    ctx.max_reps = 1;
    heedful::bench::run_suites(&mut ctx).unwrap();
    assert!(ctx.roofline.fma_gflops > 0.0 && ctx.roofline.copy_gbps > 0.0);
    let roof = ctx.lines.iter().filter(|l| l.suite == "roofline").count();
    assert!(roof >= 4, "roofline lines: {roof}");
    let cases: Vec<_> = ctx.lines.iter().filter(|l| l.suite != "roofline").collect();
    assert_eq!(cases.len(), 2, "f16 and f32 gemv:auto only");
    for l in cases {
        assert_eq!(l.op, "gemv:auto");
        assert!(l.median_ms > 0.0 && l.gbps.unwrap() > 0.0, "{l:?}");
        assert_eq!(l.roofline_of.as_deref(), Some("copy"));
        assert!(l.roofline_share.unwrap() > 0.0);
    }
    // A filter no case matches is an error naming it, not an empty run.
    let mut ctx = heedful::bench::BenchCtx::new(&gpu, Some("no-such-case"), false).unwrap();
    ctx.target_s = 0.0;
    ctx.max_reps = 1;
    let e = heedful::bench::run_suites(&mut ctx)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"no-such-case\"") && e.contains("suite/op/shape"),
        "{e}"
    );
}

/// Cooperative-matrix blocks the tests run: the tuning table's two, one subgroup of one fragment, the
/// old 32 x 32 single-subgroup tile, multi-subgroup blocks (square, wide, tall, uneven), and slices
/// of K 16, 48 and 64 deep.
fn coop_tiles() -> Vec<CoopTile> {
    let t = heedful::Gpu::shared().unwrap().tuning().matmul;
    let mut v = vec![t.coop_tile, t.coop_tile_small];
    v.extend(
        [
            (1, 1, 1, 1, 2),
            (1, 1, 2, 2, 2),
            (2, 2, 2, 2, 2),
            (2, 2, 2, 4, 2),
            (4, 2, 2, 1, 2),
            (2, 1, 1, 3, 2),
            (1, 1, 1, 1, 1),
            (2, 2, 1, 1, 4),
            (2, 1, 2, 1, 3),
        ]
        .map(|(wm, wn, fm, fn_, kf)| CoopTile {
            wm,
            wn,
            fm,
            fn_,
            kf,
        }),
    );
    v
}

fn coop_kernel(t: CoopTile) -> MatmulKernel {
    MatmulKernel::CoopTile(t)
}

/// The cooperative-matrix (tensor-core) kernel's WGSL for every tested block, for f16 weights
/// `[N, K]` (linear, with and without bias and activation, K a multiple of 4 or not) and `[K, N]`
/// (matmul, N a multiple of 4 or not), subgroups of 32 and 64: naga parses it, validates it with
/// cooperative matrices allowed, and writes SPIR-V. Runs everywhere, so the shader cannot break
/// where no adapter offers the feature.
#[test]
fn coop_kernel_wgsl_validates_and_translates_to_spirv() {
    let gpu = gpu();
    if !gpu.caps().native_f16 {
        eprintln!(
            "skipped: the coop kernel reads f16 weights natively; this adapter has no SHADER_F16"
        );
        return;
    }
    let gelu = Some(heedful::ops::Activation::Gelu);
    for tile in coop_tiles() {
        for k in [40, 37] {
            let x = Tensor::from_f32(&gpu, &vec![0.5; 33 * k], &[33, k]).unwrap();
            let w = Tensor::from_f32_as(&gpu, &vec![0.25; 70 * k], &[70, k], DType::F16).unwrap();
            let b = Tensor::from_f32_as(&gpu, &vec![1.0; 70], &[70], DType::F16).unwrap();
            let out = Tensor::zeros(&gpu, &[33, 70], DType::F32).unwrap();
            for (bias, act) in [(None, None), (Some(&b), None), (Some(&b), gelu)] {
                for subgroup in [32, 64] {
                    let src = heedful::kernels::matmul::linear_coop_wgsl(
                        &gpu, &x, &w, bias, act, &out, tile, subgroup,
                    )
                    .unwrap();
                    assert!(src.starts_with("enable wgpu_cooperative_matrix;"), "{src}");
                    validate_to_spirv(&src);
                }
            }
        }
        for n in [68, 70] {
            let a = Tensor::from_f32(&gpu, &vec![0.5; 2 * 33 * 40], &[2, 33, 40]).unwrap();
            let b = Tensor::from_f32_as(&gpu, &vec![0.25; 40 * n], &[40, n], DType::F16).unwrap();
            let out = Tensor::zeros(&gpu, &[2, 33, n], DType::F32).unwrap();
            let src =
                heedful::kernels::matmul::matmul_coop_wgsl(&gpu, &a, &b, &out, tile, 32).unwrap();
            validate_to_spirv(&src);
        }
    }
}

/// Activations with a large dynamic range (1e-3..300): the hi/lo split must keep f32 accuracy.
fn wide_range(rng: &mut Rng, len: usize) -> Vec<f32> {
    rng.vec(len, -1.0, 1.0)
        .iter()
        .enumerate()
        .map(|(i, v)| v * [1.0, 300.0, 1e-3][i % 3])
        .collect()
}

/// Indices where `got` is off `want` by more than 4e-6 of the output's sum of |a||b| terms (the
/// activations span 1e-3..300, so outputs cancel heavily): ~25x the f32-accumulation error seen on
/// an H200, and ~20x below what f16-rounded activations (no lo half) give.
fn coop_misses(got: &[f32], want: &[f32], scale: &[f32]) -> Vec<String> {
    (0..want.len())
        .filter(|&i| (got[i] - want[i]).abs() > 4e-6 * scale[i] + 1e-5)
        .take(4)
        .map(|i| {
            format!(
                "[{i}] got {} want {} (sum |ab| {})",
                got[i], want[i], scale[i]
            )
        })
        .collect()
}

/// The cooperative-matrix linear against the CPU reference, every tested block, on shapes off its
/// tiles, where the adapter offers cooperative matrices; skipped with the reason elsewhere
/// (lavapipe: wgpu 30 does not expose them there, see BENCHMARKS.md).
#[test]
fn coop_linear_matches_reference_where_offered() {
    let gpu = gpu();
    if !gpu.caps().coop_f16 {
        eprintln!(
            "skipped: {} offers no 16x16x16 f16->f32 cooperative matrices through wgpu",
            gpu.caps().adapter_name
        );
        return;
    }
    let mut rng = Rng::new(17);
    let mut kernels = vec![MatmulKernel::Coop, MatmulKernel::Auto];
    kernels.extend(coop_tiles().into_iter().map(coop_kernel));
    for &(m, k, n) in SHAPES
        .iter()
        .chain(&[(128, 512, 2048), (100, 2048, 130), (200, 66, 300)])
    {
        for with_bias in [false, true] {
            let x = wide_range(&mut rng, m * k);
            let w = rng.vec(n * k, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let xt = Tensor::from_f32(&gpu, &x, &[m, k]).unwrap();
            let (wt, wh) = upload(&gpu, &w, &[n, k], DType::F16);
            let (bt, bh) = upload(&gpu, &bias, &[n], DType::F16);
            let want =
                reference::matmul::linear(&x, &wh, with_bias.then_some(bh.as_slice()), m, k, n);
            let bias_t = with_bias.then_some(&bt);
            let scale: Vec<f32> = (0..m * n)
                .map(|i| {
                    let (r, c) = (i / n, i % n);
                    (0..k).map(|j| (x[r * k + j] * wh[c * k + j]).abs()).sum()
                })
                .collect();
            for &kernel in &kernels {
                let got = ops::linear_with(&gpu, &xt, &wt, bias_t, kernel)
                    .unwrap()
                    .to_vec_f32(&gpu)
                    .unwrap();
                let bad = coop_misses(&got, &want, &scale);
                assert!(
                    bad.is_empty(),
                    "coop linear {kernel:?} bias={with_bias} {m}x{k}x{n}: {bad:?}"
                );
            }
        }
    }
}

/// The cooperative-matrix matmul with f16 `b [*, K, N]` (the k-major staging) against the CPU
/// reference, batched and shared `b`, where offered.
#[test]
fn coop_matmul_matches_reference_where_offered() {
    let gpu = gpu();
    if !gpu.caps().coop_f16 {
        eprintln!(
            "skipped: {} offers no 16x16x16 f16->f32 cooperative matrices through wgpu",
            gpu.caps().adapter_name
        );
        return;
    }
    let mut rng = Rng::new(23);
    for &(m, k, n) in &[(17, 33, 9), (65, 100, 37), (70, 20, 68), (130, 64, 260)] {
        for (batch, shared) in [(1usize, true), (3, false), (2, true)] {
            let a = wide_range(&mut rng, batch * m * k);
            let bsz = if shared { k * n } else { batch * k * n };
            let bv = rng.vec(bsz, -1.0, 1.0);
            let at = Tensor::from_f32(&gpu, &a, &[batch, m, k]).unwrap();
            let bshape: Vec<usize> = if shared {
                vec![k, n]
            } else {
                vec![batch, k, n]
            };
            let (btn, bh) = upload(&gpu, &bv, &bshape, DType::F16);
            let (mut want, mut scale) = (Vec::new(), Vec::new());
            for bi in 0..batch {
                let ab = &a[bi * m * k..][..m * k];
                let bb = if shared {
                    &bh[..]
                } else {
                    &bh[bi * k * n..][..k * n]
                };
                want.extend(reference::matmul::matmul(ab, bb, 1, m, k, n, true));
                for i in 0..m * n {
                    let (r, c) = (i / n, i % n);
                    scale.push((0..k).map(|j| (ab[r * k + j] * bb[j * n + c]).abs()).sum());
                }
            }
            let mut kernels = vec![MatmulKernel::Coop];
            kernels.extend(coop_tiles().into_iter().map(coop_kernel));
            for kernel in kernels {
                let got = ops::matmul_with(&gpu, &at, &btn, kernel)
                    .unwrap()
                    .to_vec_f32(&gpu)
                    .unwrap();
                let bad = coop_misses(&got, &want, &scale);
                assert!(
                    bad.is_empty(),
                    "coop matmul {kernel:?} batch={batch} shared={shared} {m}x{k}x{n}: {bad:?}"
                );
            }
        }
    }
}

/// A block over the device's limits (invocations, workgroup memory) or with a zero count is an
/// error naming the block, where the adapter has cooperative matrices.
#[test]
fn coop_blocks_over_the_limits_are_errors() {
    let gpu = gpu();
    if !gpu.caps().coop_f16 {
        eprintln!(
            "skipped: no cooperative matrices on {}",
            gpu.caps().adapter_name
        );
        return;
    }
    let x = Tensor::from_f32(&gpu, &[1.0; 8], &[2, 4]).unwrap();
    let w = Tensor::from_f32_as(&gpu, &[1.0; 12], &[3, 4], DType::F16).unwrap();
    for (wm, wn, fm, fn_, kf) in [
        (8, 8, 1, 1, 2),
        (4, 4, 8, 8, 2),
        (0, 1, 1, 1, 2),
        (1, 1, 1, 1, 5),
    ] {
        let kernel = MatmulKernel::CoopTile(CoopTile {
            wm,
            wn,
            fm,
            fn_,
            kf,
        });
        let e = ops::linear_with(&gpu, &x, &w, None, kernel).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("linear") && msg.contains("block"), "{msg}");
    }
}

/// Forcing the cooperative-matrix kernel where the adapter lacks it, or with f32 weights, is an
/// error naming the op and the reason, not a wrong answer.
#[test]
fn coop_kernel_refuses_adapters_and_dtypes_it_cannot_run() {
    let gpu = gpu();
    let x = Tensor::from_f32(&gpu, &[1.0; 8], &[2, 4]).unwrap();
    let w32 = Tensor::from_f32(&gpu, &[1.0; 12], &[3, 4]).unwrap();
    let e = ops::linear_with(&gpu, &x, &w32, None, MatmulKernel::Coop).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("linear") && msg.contains("cooperative"),
        "{msg}"
    );
}

/// The fused linear + residual + LayerNorm (one dispatch of the unrolled kernel) and the separate
/// pair against the CPU reference: rows under, at and over a workgroup's 4 rows and the table's 8,
/// K off the 4- and 8-wide steps, N off the workgroup's columns (from one column per invocation
/// to 8 per invocation of 128), f16 and f32 weights and norm parameters, bias or none, on both f16
/// read paths. Auto must fuse exactly where the tuning table says.
#[test]
fn linear_add_layer_norm_matches_reference() {
    use heedful::kernels::matmul::{NormFusion, ResidualNorm};
    let mut rng = Rng::new(21);
    let eps = 1e-5f32;
    for (path, gpu) in gpus() {
        let rule = gpu.tuning().matmul.linear_norm;
        let shapes = [
            (1usize, 5usize, 7usize),
            (4, 64, 128),
            (3, 130, 200),
            (5, 512, 512),
            (9, 96, 1000),
            (2, 8, 3),
            (1, 2048, 512),
            (8, 40, 1024),
        ];
        for (si, &(m, k, n)) in shapes.iter().enumerate() {
            let dtype = if si % 2 == 0 { DType::F16 } else { DType::F32 };
            let with_bias = si % 3 != 1;
            // Rows with a common offset and spread, as a residual stream has.
            let x = rng.vec(m * k, -1.0, 1.0);
            let w = rng.vec(n * k, -0.5, 0.5);
            let bias = rng.vec(n, -1.0, 1.0);
            let residual: Vec<f32> = rng.vec(m * n, 2.0, 6.0);
            let ln_w = rng.vec(n, 0.5, 1.5);
            let ln_b = rng.vec(n, -0.5, 0.5);
            let xt = Tensor::from_f32(&gpu, &x, &[m, k]).unwrap();
            let (wt, wh) = upload(&gpu, &w, &[n, k], dtype);
            let (bt, bh) = upload(&gpu, &bias, &[n], dtype);
            let rt = Tensor::from_f32(&gpu, &residual, &[m, n]).unwrap();
            let (lwt, lwh) = upload(&gpu, &ln_w, &[n], dtype);
            let (lbt, lbh) = upload(&gpu, &ln_b, &[n], dtype);
            let lin =
                reference::matmul::linear(&x, &wh, with_bias.then_some(bh.as_slice()), m, k, n);
            let want = heedful::kernels::layer_norm::reference::add_layer_norm(
                &lin, &residual, &lwh, &lbh, eps as f64,
            );
            let norm = ResidualNorm {
                residual: &rt,
                weight: &lwt,
                bias: &lbt,
                eps,
            };
            for fusion in [NormFusion::Auto, NormFusion::Fused, NormFusion::Separate] {
                let what =
                    format!("{path} linear+norm {fusion:?} {m}x{k}x{n} {dtype} bias={with_bias}");
                let got = ops::linear_add_layer_norm_with(
                    &gpu,
                    &xt,
                    &wt,
                    with_bias.then_some(&bt),
                    &norm,
                    fusion,
                )
                .unwrap();
                assert_eq!(got.shape(), [m, n], "{what}");
                assert_close(&what, &got.to_vec_f32(&gpu).unwrap(), &want, 2e-4, 2e-4);
                // One dispatch when fused, two when not; Auto as the table says.
                let fused = match fusion {
                    NormFusion::Fused => true,
                    NormFusion::Separate => false,
                    NormFusion::Auto => rule
                        .and_then(|r| r.tile(m, k, n, gpu.caps().max_invocations))
                        .is_some(),
                };
                let out = Tensor::zeros(&gpu, &[m, n], DType::F32).unwrap();
                let scratch = Tensor::zeros(&gpu, &[m, n], DType::F32).unwrap();
                let mut rec = heedful::gpu::Recorder::new(&gpu);
                heedful::kernels::matmul::record_linear_add_layer_norm_with(
                    &mut rec,
                    &xt,
                    &wt,
                    with_bias.then_some(&bt),
                    &norm,
                    &scratch,
                    &out,
                    fusion,
                )
                .unwrap();
                assert_eq!(rec.dispatch_count(), if fused { 1 } else { 2 }, "{what}");
            }
        }
    }
}

/// Lying operands of the fused linear + norm are errors naming the op and shapes, and a row too
/// wide for one workgroup is refused when fusion is forced and runs separately under Auto.
#[test]
fn linear_add_layer_norm_rejects_bad_operands() {
    use heedful::kernels::matmul::{NormFusion, ResidualNorm};
    let gpu = heedful::testing::gpu();
    let (m, k, n) = (2usize, 8usize, 16usize);
    let x = Tensor::from_f32(&gpu, &vec![0.5; m * k], &[m, k]).unwrap();
    let w = Tensor::from_f32(&gpu, &vec![0.25; n * k], &[n, k]).unwrap();
    let r = Tensor::from_f32(&gpu, &vec![1.0; m * n], &[m, n]).unwrap();
    let r_bad = Tensor::from_f32(&gpu, &vec![1.0; m * (n + 1)], &[m, n + 1]).unwrap();
    let g = Tensor::from_f32(&gpu, &vec![1.0; n], &[n]).unwrap();
    let g_bad = Tensor::from_f32(&gpu, &vec![1.0; n + 2], &[n + 2]).unwrap();
    let ok = ResidualNorm {
        residual: &r,
        weight: &g,
        bias: &g,
        eps: 1e-5,
    };
    for (what, norm) in [
        (
            "residual",
            ResidualNorm {
                residual: &r_bad,
                ..ok
            },
        ),
        (
            "norm weight",
            ResidualNorm {
                weight: &g_bad,
                ..ok
            },
        ),
        ("norm bias", ResidualNorm { bias: &g_bad, ..ok }),
        (
            "eps",
            ResidualNorm {
                eps: f32::NAN,
                ..ok
            },
        ),
        ("eps", ResidualNorm { eps: -1.0, ..ok }),
    ] {
        for fusion in [NormFusion::Fused, NormFusion::Separate] {
            let e = ops::linear_add_layer_norm_with(&gpu, &x, &w, None, &norm, fusion)
                .err()
                .unwrap_or_else(|| panic!("{what} {fusion:?}: accepted"))
                .to_string();
            assert!(
                e.contains("linear_add_layer_norm") && e.contains(what),
                "{what} {fusion:?}: {e}"
            );
        }
    }
    // A row wider than the device's invocations x 16 columns.
    let wide = 16 * gpu.caps().max_invocations as usize + 8;
    let w = Tensor::from_f32(&gpu, &vec![0.01; wide * k], &[wide, k]).unwrap();
    let r = Tensor::from_f32(&gpu, &vec![1.0; m * wide], &[m, wide]).unwrap();
    let g = Tensor::from_f32(&gpu, &vec![1.0; wide], &[wide]).unwrap();
    let norm = ResidualNorm {
        residual: &r,
        weight: &g,
        bias: &g,
        eps: 1e-5,
    };
    let Err(e) = ops::linear_add_layer_norm_with(&gpu, &x, &w, None, &norm, NormFusion::Fused)
    else {
        panic!("a row too wide for one workgroup was accepted");
    };
    let e = e.to_string();
    assert!(e.contains("too wide"), "{e}");
    let got = ops::linear_add_layer_norm_with(&gpu, &x, &w, None, &norm, NormFusion::Auto).unwrap();
    let v = got.to_vec_f32(&gpu).unwrap();
    // Every row is the same constant: the norm is its bias, 1.
    assert!(v.iter().all(|&y| (y - 1.0).abs() < 1e-4), "{:?}", &v[..4]);
}
