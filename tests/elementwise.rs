//! Activations and broadcast add/mul against the CPU reference.

mod common;
use common::*;
use heedful::ops::{self, Activation};
use heedful::{reference, Tensor};

const ALL: [Activation; 6] = [
    Activation::Relu,
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Silu,
    Activation::Gelu,
    Activation::GeluTanh,
];

#[test]
fn activations_match_reference_over_sizes_and_large_values() {
    let gpu = gpu();
    let mut rng = Rng::new(1);
    for &n in &[1usize, 3, 255, 256, 257, 1000, 70_001] {
        let mut x = rng.vec(n, -8.0, 8.0);
        // Large magnitudes where exp/tanh overflow if computed naively.
        for (i, v) in [-1e4f32, -88.0, -20.0, 0.0, 20.0, 88.0, 1e4]
            .iter()
            .enumerate()
        {
            if i < n {
                x[i] = *v;
            }
        }
        let xt = Tensor::from_f32(&gpu, &x, &[n]).unwrap();
        for f in ALL {
            let got = ops::activation(&gpu, &xt, f)
                .unwrap()
                .to_vec_f32(&gpu)
                .unwrap();
            let want = reference::elementwise::activation_all(&x, f);
            assert_close(&format!("{f:?} n={n}"), &got, &want, 2e-6, 2e-6);
        }
    }
}

#[test]
fn add_and_mul_broadcast_f32_and_f16_operands() {
    for (path, gpu) in gpus() {
        let mut rng = Rng::new(2);
        for &(rows, cols) in &[(1usize, 1usize), (3, 5), (7, 384), (33, 1)] {
            let a = rng.vec(rows * cols, -3.0, 3.0);
            let b = rng.vec(cols, -3.0, 3.0);
            let at = Tensor::from_f32(&gpu, &a, &[rows, cols]).unwrap();
            for dtype in [heedful::DType::F32, heedful::DType::F16] {
                let bt = Tensor::from_f32_as(&gpu, &b, &[cols], dtype).unwrap();
                let bw = if dtype == heedful::DType::F16 {
                    f16_round(&b)
                } else {
                    b.clone()
                };
                let sum = ops::add(&gpu, &at, &bt).unwrap().to_vec_f32(&gpu).unwrap();
                assert_close(
                    &format!("{path} add {rows}x{cols} {dtype}"),
                    &sum,
                    &reference::elementwise::add(&a, &bw),
                    1e-6,
                    1e-6,
                );
                let prod = ops::mul(&gpu, &at, &bt).unwrap().to_vec_f32(&gpu).unwrap();
                assert_close(
                    &format!("{path} mul {rows}x{cols} {dtype}"),
                    &prod,
                    &reference::elementwise::mul(&a, &bw),
                    1e-6,
                    1e-6,
                );
            }
        }
    }
}

#[test]
fn broadcast_mismatch_is_an_error_naming_shapes() {
    let gpu = gpu();
    let a = Tensor::from_f32(&gpu, &[0.0; 6], &[2, 3]).unwrap();
    let b = Tensor::from_f32(&gpu, &[0.0; 2], &[2]).unwrap();
    let err = ops::add(&gpu, &a, &b).unwrap_err().to_string();
    assert!(
        err.contains("add") && err.contains("[2, 3]") && err.contains("[2]"),
        "{err}"
    );
}
