//! The layer norm unit's tests: the kernel against [`super::reference`] on awkward sizes, both f16
//! read paths, every row schedule, mixed weight dtypes, and rows that defeat a naive variance.

use super::*;
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
