//! Head transpose and sentence pooling against the CPU reference.

mod common;
use common::*;
use heedful::{ops, reference, Tensor};

#[test]
fn transpose12_matches_reference_on_awkward_shapes() {
    let gpu = gpu();
    let mut rng = Rng::new(3);
    for shape in [
        [1, 1, 1, 1],
        [2, 3, 5, 7],
        [1, 128, 12, 32],
        [3, 1, 4, 1],
        [2, 17, 8, 40],
    ] {
        let n: usize = shape.iter().product();
        let x = rng.vec(n, -5.0, 5.0);
        let xt = Tensor::from_f32(&gpu, &x, &shape).unwrap();
        let got = ops::transpose12(&gpu, &xt).unwrap();
        assert_eq!(got.shape(), [shape[0], shape[2], shape[1], shape[3]]);
        // A permutation moves values exactly.
        assert_close(
            &format!("{shape:?}"),
            &got.to_vec_f32(&gpu).unwrap(),
            &reference::layout::transpose12(&x, shape),
            0.0,
            0.0,
        );
    }
}

#[test]
fn mean_pool_matches_reference_with_padding_and_empty_rows() {
    let gpu = gpu();
    let mut rng = Rng::new(4);
    for (b, t, e) in [
        (1usize, 1usize, 1usize),
        (3, 7, 384),
        (2, 5, 65),
        (4, 128, 100),
    ] {
        let x = rng.vec(b * t * e, -3.0, 3.0);
        let mut mask: Vec<i32> = (0..b * t)
            .map(|i| ((i % t) < 1 + (i / t) * 2) as i32)
            .collect();
        if b > 2 {
            // A row with no valid token pools to zeros.
            mask[2 * t..3 * t].fill(0);
        }
        let xt = Tensor::from_f32(&gpu, &x, &[b, t, e]).unwrap();
        let mt = Tensor::from_i32(&gpu, &mask, &[b, t]).unwrap();
        for normalize in [false, true] {
            let got = ops::mean_pool(&gpu, &xt, &mt, normalize)
                .unwrap()
                .to_vec_f32(&gpu)
                .unwrap();
            let want = reference::layout::mean_pool(&x, &mask, [b, t, e], normalize);
            assert_close(
                &format!("b{b} t{t} e{e} norm={normalize}"),
                &got,
                &want,
                1e-5,
                1e-5,
            );
        }
    }
}

#[test]
fn layout_shape_errors_name_the_op() {
    let gpu = gpu();
    let x = Tensor::from_f32(&gpu, &[0.0; 6], &[2, 3]).unwrap();
    assert!(ops::transpose12(&gpu, &x)
        .unwrap_err()
        .to_string()
        .contains("transpose12"));
    let m = Tensor::from_i32(&gpu, &[1; 4], &[2, 2]).unwrap();
    let x3 = Tensor::from_f32(&gpu, &[0.0; 12], &[2, 3, 2]).unwrap();
    let e = ops::mean_pool(&gpu, &x3, &m, true).unwrap_err().to_string();
    assert!(e.contains("mean_pool") && e.contains("[2, 2]"), "{e}");
}
