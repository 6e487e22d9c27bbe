//! The layer norm unit's tests: the kernel against [`super::reference`] on awkward sizes, both f16
//! read paths, every row schedule, mixed weight dtypes, and rows that defeat a naive variance.

use super::*;
use crate::kernels::elementwise::{record_binary, Binary};
use crate::testing::*;

const SCHEDULES: [RowSchedule; 4] = ROW_SCHEDULES;

fn layer_norm_with(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f32,
    s: RowSchedule,
) -> Vec<f32> {
    let out = Tensor::zeros(gpu, x.shape(), DType::F32).unwrap();
    let mut rec = Recorder::new(gpu);
    record_layer_norm_with(&mut rec, x, w, b, &out, eps, s).unwrap();
    rec.submit().unwrap();
    out.to_vec_f32(gpu).unwrap()
}

#[test]
fn layer_norm_matches_reference_f32_and_f16_weights_on_both_paths() {
    for (path, gpu) in gpus() {
        let mut rng = Rng::new(21);
        for &(rows, d) in &[
            (1usize, 1usize),
            (4, 3),
            (5, 384),
            (3, 768),
            (70, 1000),
            (2, 4096),
        ] {
            let x = rng.vec(rows * d, -4.0, 4.0);
            let w = rng.vec(d, 0.5, 1.5);
            let b = rng.vec(d, -1.0, 1.0);
            let xt = Tensor::from_f32(&gpu, &x, &[rows, d]).unwrap();
            // f16 weight with f32 bias covers mixed dtypes too.
            for (wd, bd) in [
                (DType::F32, DType::F32),
                (DType::F16, DType::F16),
                (DType::F16, DType::F32),
            ] {
                let round = |v: &[f32], dt| {
                    if dt == DType::F16 {
                        f16_round(v)
                    } else {
                        v.to_vec()
                    }
                };
                let wt = Tensor::from_f32_as(&gpu, &w, &[d], wd).unwrap();
                let bt = Tensor::from_f32_as(&gpu, &b, &[d], bd).unwrap();
                let want = reference::layer_norm(&x, &round(&w, wd), &round(&b, bd), 1e-5);
                for s in SCHEDULES {
                    let got = layer_norm_with(&gpu, &xt, &wt, &bt, 1e-5, s);
                    assert_close(
                        &format!("{path} layer_norm [{rows}, {d}] w {wd} b {bd} {s:?}"),
                        &got,
                        &want,
                        1e-5,
                        1e-4,
                    );
                }
            }
        }
    }
}

#[test]
fn layer_norm_is_stable_for_large_offsets_and_values() {
    let gpu = gpu();
    let mut rng = Rng::new(22);
    let d = 768;
    let rows = 4;
    let mut x = Vec::new();
    // Offset 1e4 with unit noise (naive E[x^2] - E[x]^2 loses everything here), values ~1e6,
    // a constant row (variance 0: y = bias), and a row of tiny values.
    x.extend(rng.vec(d, -1.0, 1.0).iter().map(|v| v + 1e4));
    x.extend(rng.vec(d, -1e6, 1e6));
    x.extend(std::iter::repeat_n(3.25, d));
    x.extend(rng.vec(d, -1e-3, 1e-3));
    let w = rng.vec(d, 0.5, 1.5);
    let b = rng.vec(d, -1.0, 1.0);
    let want = reference::layer_norm(&x, &w, &b, 1e-12);
    let xt = Tensor::from_f32(&gpu, &x, &[rows, d]).unwrap();
    let wt = Tensor::from_f32(&gpu, &w, &[d]).unwrap();
    let bt = Tensor::from_f32(&gpu, &b, &[d]).unwrap();
    for s in SCHEDULES {
        let got = layer_norm_with(&gpu, &xt, &wt, &bt, 1e-12, s);
        // The kernel shifts by each row's first element, so the 1e4 offset costs no precision (an
        // f32 mean of row 0 alone would be off by ~1e-3 relative to its spread, failing this bound).
        assert_close(
            &format!("layer_norm offsets {s:?}"),
            &got,
            &want,
            1e-5,
            1e-4,
        );
    }
    let y = layer_norm(&gpu, &xt.reshape(&[2, 2, d]).unwrap(), &wt, &bt, 1e-12).unwrap();
    assert_eq!(y.shape(), &[2, 2, d]);
}

/// The fused variant (`x + residual` normalized in one dispatch) against the reference on awkward
/// sizes (D = 1, odd D, D % 4 == 0 and not), every schedule, both weight dtypes; and its shape and
/// dtype errors, which name the residual.
#[test]
fn add_layer_norm_matches_reference_on_every_schedule() {
    for (path, gpu) in gpus() {
        let mut rng = Rng::new(23);
        for &(rows, d) in &[(1usize, 1usize), (3, 5), (7, 128), (70, 384), (2, 1003)] {
            let x = rng.vec(rows * d, -4.0, 4.0);
            // A large common offset in the residual: the sum is what the kernel must shift by.
            let r: Vec<f32> = rng
                .vec(rows * d, -2.0, 2.0)
                .iter()
                .map(|v| v + 300.0)
                .collect();
            let w = rng.vec(d, 0.5, 1.5);
            let b = rng.vec(d, -1.0, 1.0);
            let xt = Tensor::from_f32(&gpu, &x, &[rows, d]).unwrap();
            let rt = Tensor::from_f32(&gpu, &r, &[rows, d]).unwrap();
            for dt in [DType::F32, DType::F16] {
                let wt = Tensor::from_f32_as(&gpu, &w, &[d], dt).unwrap();
                let bt = Tensor::from_f32_as(&gpu, &b, &[d], dt).unwrap();
                let (wr, br) = if dt == DType::F16 {
                    (f16_round(&w), f16_round(&b))
                } else {
                    (w.clone(), b.clone())
                };
                let want = reference::add_layer_norm(&x, &r, &wr, &br, 1e-5);
                for s in SCHEDULES {
                    let out = Tensor::zeros(&gpu, &[rows, d], DType::F32).unwrap();
                    let mut rec = Recorder::new(&gpu);
                    record_add_layer_norm_with(&mut rec, &xt, &rt, &wt, &bt, &out, 1e-5, s)
                        .unwrap();
                    rec.submit().unwrap();
                    assert_close(
                        &format!("{path} add_layer_norm [{rows}, {d}] {dt} {s:?}"),
                        &out.to_vec_f32(&gpu).unwrap(),
                        &want,
                        1e-5,
                        1e-4,
                    );
                }
            }
        }
    }
    let gpu = gpu();
    let x = Tensor::zeros(&gpu, &[2, 8], DType::F32).unwrap();
    let w = Tensor::zeros(&gpu, &[8], DType::F32).unwrap();
    let short = Tensor::zeros(&gpu, &[1, 8], DType::F32).unwrap();
    let e = add_layer_norm(&gpu, &x, &short, &w, &w, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("add_layer_norm") && e.contains("residual [1, 8]") && e.contains("[2, 8]"),
        "{e}"
    );
    let half = Tensor::zeros(&gpu, &[2, 8], DType::F16).unwrap();
    let e = add_layer_norm(&gpu, &x, &half, &w, &w, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("residual"), "{e}");
}

/// The graph node and the eager call give what an add followed by a layer norm gives.
#[test]
fn add_layer_norm_equals_add_then_layer_norm() {
    let gpu = gpu();
    let mut rng = Rng::new(24);
    let (rows, d) = (9, 384);
    let x = Tensor::from_f32(&gpu, &rng.vec(rows * d, -3.0, 3.0), &[rows, d]).unwrap();
    let r = Tensor::from_f32(&gpu, &rng.vec(rows * d, -3.0, 3.0), &[rows, d]).unwrap();
    let w = Tensor::from_f32_as(&gpu, &rng.vec(d, 0.5, 1.5), &[d], DType::F16).unwrap();
    let b = Tensor::from_f32_as(&gpu, &rng.vec(d, -1.0, 1.0), &[d], DType::F16).unwrap();
    let sum = Tensor::zeros(&gpu, &[rows, d], DType::F32).unwrap();
    let mut rec = Recorder::new(&gpu);
    record_binary(&mut rec, &x, &r, &sum, Binary::Add).unwrap();
    rec.submit().unwrap();
    let want = layer_norm(&gpu, &sum, &w, &b, 1e-12)
        .unwrap()
        .to_vec_f32(&gpu)
        .unwrap();
    let got = add_layer_norm(&gpu, &x, &r, &w, &b, 1e-12)
        .unwrap()
        .to_vec_f32(&gpu)
        .unwrap();
    assert_close("fused vs add + layer_norm", &got, &want, 1e-6, 1e-6);
}

/// The fused norm's output may not be one of its inputs (the kernel reads each row twice): bound
/// to the same buffer it is an error naming the op, not a panic or a half-written row.
#[test]
fn add_layer_norm_refuses_an_output_aliasing_an_input() {
    let gpu = gpu();
    let x = Tensor::from_f32(&gpu, &[1.0, 2.0, 3.0, 4.0], &[1, 4]).unwrap();
    let r = Tensor::from_f32(&gpu, &[0.5, 0.5, 0.5, 0.5], &[1, 4]).unwrap();
    let w = Tensor::from_f32(&gpu, &[1.0; 4], &[4]).unwrap();
    for out in [&x, &r] {
        let mut rec = Recorder::new(&gpu);
        let e = record_add_layer_norm(&mut rec, &x, &r, &w, &w, out, 1e-5)
            .and_then(|()| rec.submit().map(|_| ()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("add_layer_norm") && e.contains("out"), "{e}");
    }
}
