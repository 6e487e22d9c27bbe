//! Softmax, layer norm and embedding against the CPU reference and the PyTorch conformance cases.

mod common;
use common::*;
use heedful::gpu::Recorder;
use heedful::kernels::softmax as sm_kernel;
use heedful::ops::{self, RowSchedule};
use heedful::{reference, DType, Gpu, Tensor};

const SCHEDULES: [RowSchedule; 4] = ROW_SCHEDULES;

fn softmax_with(gpu: &Gpu, x: &Tensor, s: RowSchedule) -> Vec<f32> {
    let out = Tensor::zeros(gpu, x.shape(), DType::F32).unwrap();
    let mut rec = Recorder::new(gpu);
    sm_kernel::record_softmax_with(&mut rec, x, &out, s).unwrap();
    rec.submit().unwrap();
    out.to_vec_f32(gpu).unwrap()
}

#[test]
fn softmax_matches_reference_over_awkward_sizes_and_schedules() {
    let gpu = gpu();
    let mut rng = Rng::new(11);
    for &(rows, n) in &[
        (1usize, 1usize),
        (5, 1),
        (4, 3),
        (3, 7),
        (2, 255),
        (70, 257),
        (3, 1000),
        (2, 4097),
        (2, 30522),
        (65, 64),
    ] {
        let mut x = rng.vec(rows * n, -12.0, 12.0);
        // A few masked entries in every row with more than one element.
        if n > 1 {
            for r in 0..rows {
                x[r * n + rng.below(n)] = f32::NEG_INFINITY;
            }
        }
        let want = reference::softmax::softmax(&x, n);
        let xt = Tensor::from_f32(&gpu, &x, &[rows, n]).unwrap();
        for s in SCHEDULES {
            let got = softmax_with(&gpu, &xt, s);
            assert_close(
                &format!("softmax [{rows}, {n}] {s:?}"),
                &got,
                &want,
                1e-7,
                2e-5,
            );
        }
    }
}

#[test]
fn softmax_large_logits_and_fully_masked_rows() {
    let inf = f32::INFINITY;
    let big = f32::MAX;
    let rows: Vec<Vec<f32>> = vec![
        vec![1e4, -1e4, 0.0, 1e4 - 1.0, 3.0, -5.0, 9999.5, 1e4],
        vec![3e38, -3e38, 3e38, 0.0, -inf, 1.0, 2e38, -1e4],
        vec![-3e38, -3e38, -3e38, -inf, -3e38, -inf, -3e38, -3e38],
        vec![-inf; 8],
        vec![-big, -big, -inf, -big, -inf, -inf, -big, -big],
        vec![big, big, -big, big, -inf, 0.0, 1.0, big],
        vec![-inf, -inf, -inf, -inf, -inf, -inf, -inf, 0.0],
    ];
    for (path, gpu) in gpus() {
        // n = 8 exercises vec4 loads; n = 7 (drop the last column) the scalar path.
        for n in [8usize, 7] {
            let x: Vec<f32> = rows.iter().flat_map(|r| r[..n].to_vec()).collect();
            let want = reference::softmax::softmax(&x, n);
            let xt = Tensor::from_f32(&gpu, &x, &[rows.len(), n]).unwrap();
            for s in SCHEDULES {
                let got = softmax_with(&gpu, &xt, s);
                assert!(got.iter().all(|v| v.is_finite()), "{path} {s:?}: {got:?}");
                assert_close(
                    &format!("{path} softmax large n={n} {s:?}"),
                    &got,
                    &want,
                    1e-7,
                    2e-5,
                );
                // The fully masked row is all zeros (documented behaviour, not NaN).
                assert!(got[3 * n..4 * n].iter().all(|&v| v == 0.0), "{got:?}");
            }
        }
    }
}

#[test]
fn softmax_fully_masked_long_rows_give_zeros() {
    let gpu = gpu();
    let n = 1000;
    let mut x = vec![f32::NEG_INFINITY; 3 * n];
    for (i, v) in x[n..2 * n].iter_mut().enumerate() {
        *v = (i % 7) as f32;
    }
    let xt = Tensor::from_f32(&gpu, &x, &[3, n]).unwrap();
    for s in SCHEDULES {
        let got = softmax_with(&gpu, &xt, s);
        assert!(got[..n].iter().all(|&v| v == 0.0), "{s:?} row 0");
        assert!(got[2 * n..].iter().all(|&v| v == 0.0), "{s:?} row 2");
        let sum: f32 = got[n..2 * n].iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{s:?} row 1 sums to {sum}");
    }
    // Through the op API as well, with a 3-D shape and a scalar.
    let y = ops::softmax(&gpu, &xt.reshape(&[1, 3, n]).unwrap()).unwrap();
    assert_eq!(y.shape(), &[1, 3, n]);
    assert!(y.to_vec_f32(&gpu).unwrap()[..n].iter().all(|&v| v == 0.0));
    let s = Tensor::from_f32(&gpu, &[-7.0], &[]).unwrap();
    assert_eq!(
        ops::softmax(&gpu, &s).unwrap().to_vec_f32(&gpu).unwrap(),
        [1.0]
    );
}

#[test]
fn embedding_matches_reference_with_out_of_range_ids_as_zeros() {
    for (path, gpu) in gpus() {
        let mut rng = Rng::new(31);
        for &(v, d, t) in &[
            (1usize, 1usize, 3usize),
            (7, 3, 5),
            (100, 16, 14),
            (50, 384, 9),
            (33, 1001, 4),
        ] {
            let w = rng.vec(v * d, -2.0, 2.0);
            let mut ids: Vec<i64> = (0..t).map(|_| rng.below(v) as i64).collect();
            ids[0] = v as i64 - 1;
            for wd in [DType::F32, DType::F16] {
                let wt = Tensor::from_f32_as(&gpu, &w, &[v, d], wd).unwrap();
                let wr = if wd == DType::F16 {
                    f16_round(&w)
                } else {
                    w.clone()
                };
                // Host API, 2-D ids shape.
                let shape = [1, t];
                let got = ops::embedding_ids(&gpu, &ids, &shape, &wt).unwrap();
                assert_eq!(got.shape(), &[1, t, d]);
                let want = reference::embedding::embedding(&ids, &wr, d);
                assert_close(
                    &format!("{path} embedding_ids V={v} D={d} {wd}"),
                    &got.to_vec_f32(&gpu).unwrap(),
                    &want,
                    0.0,
                    0.0,
                );
                // GPU ids with out-of-range entries: zeros for them, exact rows elsewhere.
                let mut bad = ids.clone();
                bad.push(v as i64);
                bad.push(-1);
                bad.push(i32::MIN as i64);
                let want_bad = reference::embedding::embedding(&bad, &wr, d);
                let as_i32: Vec<i32> = bad.iter().map(|&i| i as i32).collect();
                let it = Tensor::from_i32(&gpu, &as_i32, &[bad.len()]).unwrap();
                let got = ops::embedding(&gpu, &it, &wt).unwrap();
                assert_close(
                    &format!("{path} embedding i32 ids V={v} D={d} {wd}"),
                    &got.to_vec_f32(&gpu).unwrap(),
                    &want_bad,
                    0.0,
                    0.0,
                );
                let as_u32: Vec<u32> = bad.iter().map(|&i| i as u32).collect();
                let ut = Tensor::from_u32(&gpu, &as_u32, &[bad.len()]).unwrap();
                let got = ops::embedding(&gpu, &ut, &wt).unwrap();
                assert_close(
                    &format!("{path} embedding u32 ids V={v} D={d} {wd}"),
                    &got.to_vec_f32(&gpu).unwrap(),
                    &want_bad,
                    0.0,
                    0.0,
                );
            }
        }
    }
}

/// The positioned lookup (token row times a scale plus a position row, one dispatch) against the
/// reference: per-row and one shared position id, f32 and f16 tables, odd D, out-of-range token
/// and position ids as zero terms; and its shape errors.
#[test]
fn embedding_positioned_matches_reference() {
    use heedful::kernels::embedding::{record_embedding_positioned, Positions};
    for (path, gpu) in gpus() {
        let mut rng = Rng::new(32);
        for &(v, p, d, t) in &[
            (1usize, 1usize, 1usize, 2usize),
            (50, 9, 3, 7),
            (100, 64, 384, 5),
        ] {
            let w = rng.vec(v * d, -2.0, 2.0);
            let pw = rng.vec(p * d, -1.0, 1.0);
            let mut ids: Vec<i64> = (0..t).map(|_| rng.below(v) as i64).collect();
            ids.push(v as i64);
            let n = ids.len();
            let mut pos: Vec<i64> = (0..n).map(|_| rng.below(p) as i64).collect();
            pos[0] = p as i64 + 3;
            for dt in [DType::F32, DType::F16] {
                let wt = Tensor::from_f32_as(&gpu, &w, &[v, d], dt).unwrap();
                let pt = Tensor::from_f32_as(&gpu, &pw, &[p, d], dt).unwrap();
                let (wr, pr) = if dt == DType::F16 {
                    (f16_round(&w), f16_round(&pw))
                } else {
                    (w.clone(), pw.clone())
                };
                let it = Tensor::from_u32(
                    &gpu,
                    &ids.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                    &[n],
                )
                .unwrap();
                for shared in [false, true] {
                    let pos_ids: Vec<i64> = if shared {
                        vec![(p - 1) as i64]
                    } else {
                        pos.clone()
                    };
                    let pi = Tensor::from_u32(
                        &gpu,
                        &pos_ids.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                        &[pos_ids.len()],
                    )
                    .unwrap();
                    let out = Tensor::zeros(&gpu, &[n, d], DType::F32).unwrap();
                    let mut rec = Recorder::new(&gpu);
                    let pos_arg = Positions {
                        ids: &pi,
                        table: &pt,
                    };
                    record_embedding_positioned(&mut rec, &it, &wt, 1.75, pos_arg, &out).unwrap();
                    rec.submit().unwrap();
                    let want = reference::embedding::embedding_positioned(
                        &ids, &wr, 1.75, &pos_ids, &pr, d,
                    );
                    assert_close(
                        &format!(
                            "{path} embedding_positioned V={v} P={p} D={d} {dt} shared={shared}"
                        ),
                        &out.to_vec_f32(&gpu).unwrap(),
                        &want,
                        1e-6,
                        1e-6,
                    );
                }
            }
        }
    }
    let gpu = gpu();
    let w = Tensor::zeros(&gpu, &[4, 8], DType::F32).unwrap();
    let narrow = Tensor::zeros(&gpu, &[4, 6], DType::F32).unwrap();
    let ids = Tensor::from_u32(&gpu, &[0, 1, 2], &[3]).unwrap();
    let two = Tensor::from_u32(&gpu, &[0, 1], &[2]).unwrap();
    let out = Tensor::zeros(&gpu, &[3, 8], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    let pos = Positions {
        ids: &ids,
        table: &narrow,
    };
    let e = record_embedding_positioned(&mut rec, &ids, &w, 1.0, pos, &out)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("embedding_positioned") && e.contains("[4, 6]") && e.contains("D = 8"),
        "{e}"
    );
    let pos = Positions {
        ids: &two,
        table: &w,
    };
    let e = record_embedding_positioned(&mut rec, &ids, &w, 1.0, pos, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("position ids [2]") && e.contains("[3]"), "{e}");
    let pos = Positions {
        ids: &ids,
        table: &w,
    };
    let e = record_embedding_positioned(&mut rec, &ids, &w, f32::NAN, pos, &out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("scale"), "{e}");
}

#[test]
fn embedding_ids_rejects_bad_ids_naming_id_position_and_v() {
    let gpu = gpu();
    let w = Tensor::from_f32(&gpu, &[0.0; 12], &[4, 3]).unwrap();
    let err = ops::embedding_ids(&gpu, &[0, 3, 4, 9], &[2, 2], &w)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("embedding")
            && err.contains("id 4")
            && err.contains("position 2")
            && err.contains("[1, 0]")
            && err.contains("V = 4"),
        "{err}"
    );
    let err = ops::embedding_ids(&gpu, &[1, -2], &[2], &w)
        .unwrap_err()
        .to_string();
    assert!(err.contains("id -2") && err.contains("position 1"), "{err}");
    let err = ops::embedding_ids(&gpu, &[1, 2, 3], &[2], &w)
        .unwrap_err()
        .to_string();
    assert!(err.contains("embedding") && err.contains("[2]"), "{err}");
}

#[test]
fn shape_and_dtype_errors_name_op_and_shapes() {
    let gpu = gpu();
    let x = Tensor::from_f32(&gpu, &[0.0; 12], &[3, 4]).unwrap();
    let w5 = Tensor::from_f32(&gpu, &[1.0; 5], &[5]).unwrap();
    let w4 = Tensor::from_f32(&gpu, &[1.0; 4], &[4]).unwrap();

    // softmax: wrong out shape, non-f32 x.
    let out = Tensor::zeros(&gpu, &[4, 3], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    let err = sm_kernel::record_softmax(&mut rec, &x, &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("softmax") && err.contains("[4, 3]") && err.contains("[3, 4]"),
        "{err}"
    );
    let xh = Tensor::from_f32_as_f16(&gpu, &[0.0; 12], &[3, 4]).unwrap();
    let err = ops::softmax(&gpu, &xh).unwrap_err().to_string();
    assert!(err.contains("softmax") && err.contains("f16"), "{err}");

    // layer_norm: weight / bias of the wrong length, integer weight, scalar x, bad eps.
    let err = ops::layer_norm(&gpu, &x, &w5, &w4, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer_norm") && err.contains("weight [5]") && err.contains("[3, 4]"),
        "{err}"
    );
    let err = ops::layer_norm(&gpu, &x, &w4, &w5, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer_norm") && err.contains("bias [5]"),
        "{err}"
    );
    let wi = Tensor::from_i32(&gpu, &[1; 4], &[4]).unwrap();
    let err = ops::layer_norm(&gpu, &x, &wi, &w4, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer_norm") && err.contains("i32"), "{err}");
    let s = Tensor::from_f32(&gpu, &[1.0], &[]).unwrap();
    let err = ops::layer_norm(&gpu, &s, &w4, &w4, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer_norm") && err.contains("[]"), "{err}");
    let err = ops::layer_norm(&gpu, &x, &w4, &w4, f32::NAN)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer_norm") && err.contains("eps"), "{err}");

    // embedding: 1-D weight, float ids, wrong out shape.
    let ids = Tensor::from_i32(&gpu, &[0, 1], &[2]).unwrap();
    let err = ops::embedding(&gpu, &ids, &w4).unwrap_err().to_string();
    assert!(err.contains("embedding") && err.contains("[4]"), "{err}");
    let err = ops::embedding(&gpu, &x, &x).unwrap_err().to_string();
    assert!(
        err.contains("embedding") && err.contains("ids") && err.contains("f32"),
        "{err}"
    );
    let out = Tensor::zeros(&gpu, &[2, 5], DType::F32).unwrap();
    let err = heedful::kernels::embedding::record_embedding(&mut rec, &ids, &x, &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("embedding") && err.contains("[2, 5]") && err.contains("[2, 4]"),
        "{err}"
    );
}
