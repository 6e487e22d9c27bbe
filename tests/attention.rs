//! Attention kernels against the CPU reference: sdpa (flash, split-key, decode), attention weights,
//! multi-head attention and the memory attentions; plus the conformance cases.

mod common;
use common::*;
use heedful::kernels::sdpa::{self as ksdpa, AttnDims, Heads, Plan, SdpaArgs};
use heedful::ops::{self, AttnMask, Causal, MaskKind, SdpaOptions};
use heedful::reference::attention as refa;
use heedful::{Gpu, Tensor};

struct Case {
    dims: AttnDims,
    /// Mask shape (broadcastable to [B,H,Tq,Tk]) and kind.
    mask: Option<(Vec<usize>, MaskKind)>,
    causal: Causal,
    scale: Option<f32>,
    /// Magnitude of q and k entries (large values give scores of +-1e3).
    mag: f32,
}

fn dims(b: usize, h: usize, tq: usize, tk: usize, d: usize, dv: usize) -> AttnDims {
    AttnDims {
        b,
        h,
        tq,
        tk,
        d,
        dv,
    }
}

/// A random mask of `shape`; every row keeps at least one key unless `allow_empty`, and some rows
/// keep exactly one.
fn random_mask(rng: &mut Rng, shape: &[usize], kind: MaskKind, allow_empty: bool) -> Vec<f32> {
    let tk = *shape.last().unwrap();
    let rows: usize = shape.iter().product::<usize>() / tk;
    let mut keep = vec![false; rows * tk];
    for r in 0..rows {
        match rng.below(5) {
            0 => {
                // Exactly one valid key.
                keep[r * tk + rng.below(tk)] = true;
            }
            1 if allow_empty => {}
            _ => {
                for j in 0..tk {
                    keep[r * tk + j] = rng.below(3) != 0;
                }
                keep[r * tk + rng.below(tk)] = true;
            }
        }
    }
    keep.iter()
        .map(|&k| match kind {
            MaskKind::Keep => k as u32 as f32,
            MaskKind::Ignore => (!k) as u32 as f32,
            MaskKind::Additive => {
                if k {
                    rng.uniform(-2.0, 2.0)
                } else {
                    f32::NEG_INFINITY
                }
            }
        })
        .collect()
}

fn upload_mask(gpu: &Gpu, values: &[f32], shape: &[usize], kind: MaskKind) -> Tensor {
    match kind {
        MaskKind::Additive => Tensor::from_f32(gpu, values, shape).unwrap(),
        _ => {
            let u: Vec<u32> = values.iter().map(|&v| v as u32).collect();
            Tensor::from_u32(gpu, &u, shape).unwrap()
        }
    }
}

/// Runs one case through `ops::sdpa` (and `sdpa_with_weights` when `weights`), and through every
/// plan given, comparing with the reference.
fn check_case(gpu: &Gpu, c: &Case, seed: u64, weights: bool, plans: &[Plan]) {
    let d = c.dims;
    let mut rng = Rng::new(seed);
    let q = rng.vec(d.b * d.h * d.tq * d.d, -c.mag, c.mag);
    let k = rng.vec(d.b * d.h * d.tk * d.d, -c.mag, c.mag);
    let v = rng.vec(d.b * d.h * d.tk * d.dv, -1.0, 1.0);
    let mask_vals = c
        .mask
        .as_ref()
        .map(|(shape, kind)| random_mask(&mut rng, shape, *kind, c.causal == Causal::None));
    let bhqk = [d.b, d.h, d.tq, d.tk];
    let rmask = c.mask.as_ref().map(|(shape, kind)| refa::RefMask {
        values: mask_vals.as_ref().unwrap(),
        strides: refa::broadcast_strides(shape, bhqk),
        kind: *kind,
    });
    let want = refa::sdpa(
        &q,
        &k,
        &v,
        &d,
        rmask.as_ref(),
        c.causal,
        c.scale.map(f64::from),
    );
    let qt = Tensor::from_f32(gpu, &q, &[d.b, d.h, d.tq, d.d]).unwrap();
    let kt = Tensor::from_f32(gpu, &k, &[d.b, d.h, d.tk, d.d]).unwrap();
    let vt = Tensor::from_f32(gpu, &v, &[d.b, d.h, d.tk, d.dv]).unwrap();
    let mt = c
        .mask
        .as_ref()
        .map(|(shape, kind)| upload_mask(gpu, mask_vals.as_ref().unwrap(), shape, *kind));
    let opts = SdpaOptions {
        mask: mt.as_ref().map(|t| AttnMask {
            tensor: t,
            kind: c.mask.as_ref().unwrap().1,
        }),
        causal: c.causal,
        scale: c.scale,
    };
    let what = format!(
        "{:?} mask {:?} causal {:?} scale {:?} mag {}",
        d, c.mask, c.causal, c.scale, c.mag
    );
    // Scores of +-1e3 lose absolute precision in f32 (ulp 6e-5), which softmax turns into a
    // relative error of the weights; the tolerance grows with the magnitude of the scores.
    let smax = c.mag as f64 * c.mag as f64 * d.d as f64 / (d.d as f64).sqrt();
    let atol = 2e-5 + 2e-7 * smax;
    let got = ops::sdpa(gpu, &qt, &kt, &vt, &opts)
        .unwrap()
        .to_vec_f32(gpu)
        .unwrap();
    assert_close(&format!("sdpa {what}"), &got, &want, atol, 1e-4);
    if weights {
        let (y, w) = ops::sdpa_with_weights(gpu, &qt, &kt, &vt, &opts).unwrap();
        assert_close(
            &format!("sdpa_with_weights y {what}"),
            &y.to_vec_f32(gpu).unwrap(),
            &want,
            atol,
            1e-4,
        );
        let wp: Vec<f32> =
            refa::sdpa_probs(&q, &k, &d, rmask.as_ref(), c.causal, c.scale.map(f64::from))
                .iter()
                .map(|&x| x as f32)
                .collect();
        assert_close(
            &format!("sdpa_with_weights probs {what}"),
            &w.to_vec_f32(gpu).unwrap(),
            &wp,
            atol,
            1e-4,
        );
    }
    for &plan in plans {
        let mask_view = opts
            .mask
            .map(|m| ksdpa::MaskView::broadcast("test", m.tensor, m.kind, bhqk).unwrap());
        let out = Tensor::zeros(gpu, &[d.b, d.h, d.tq, d.dv], heedful::DType::F32).unwrap();
        let args = SdpaArgs {
            mask: mask_view,
            causal: c.causal,
            scale: c.scale,
            plan: Some(plan),
        };
        let mut rec = heedful::gpu::Recorder::new(gpu);
        ksdpa::record_sdpa(
            &mut rec,
            &d,
            Heads::dense(&qt),
            Heads::dense(&kt),
            Heads::dense(&vt),
            Heads::dense(&out),
            &args,
            None,
        )
        .unwrap();
        rec.submit().unwrap();
        assert_close(
            &format!("sdpa plan {plan:?} {what}"),
            &out.to_vec_f32(gpu).unwrap(),
            &want,
            atol,
            1e-4,
        );
    }
}

#[test]
fn sdpa_matches_reference_over_random_shapes_masks_and_causal() {
    let gpu = gpu();
    let mut rng = Rng::new(7);
    let kinds = [MaskKind::Keep, MaskKind::Ignore, MaskKind::Additive];
    // Few distinct head-dim pairs (each compiles its own kernels), covering odd dims, D != Dv and
    // the vec4 and scalar load paths.
    let head_dims = [(1, 1), (13, 5), (8, 24), (40, 24)];
    for n in 0..16 {
        let b = 1 + rng.below(2);
        let h = 1 + rng.below(3);
        let tq = 1 + rng.below(70);
        let tk = 1 + rng.below(90);
        let (d, dv) = head_dims[n % 4];
        let mask = match rng.below(4) {
            0 => None,
            1 => Some((vec![tq, tk], kinds[n % 3])),
            2 => Some((vec![b, 1, tq, tk], kinds[n % 3])),
            _ => Some((vec![b, h, 1, tk], kinds[n % 3])),
        };
        let causal = [Causal::None, Causal::TopLeft, Causal::BottomRight][rng.below(3)];
        let scale = (rng.below(3) == 0).then(|| rng.uniform(0.05, 2.0));
        let c = Case {
            dims: dims(b, h, tq, tk, d, dv),
            mask,
            causal,
            scale,
            mag: 1.0,
        };
        check_case(&gpu, &c, 100 + n as u64, n % 4 == 0, &[]);
    }
}

#[test]
fn sdpa_head_dims_up_to_256_and_every_plan() {
    let gpu = gpu();
    for (n, &hd) in [40usize, 80, 96, 128, 256].iter().enumerate() {
        let c = Case {
            dims: dims(1, 2, 37, 300, hd, hd),
            mask: Some((vec![37, 300], MaskKind::Keep)),
            causal: Causal::None,
            scale: None,
            mag: 1.0,
        };
        let plans = [
            Plan::Flash,
            Plan::FlashSplit {
                nsplit: 3,
                chunk: 100,
            },
            Plan::Decode {
                nsplit: 19,
                chunk: 16,
            },
        ];
        check_case(&gpu, &c, 300 + n as u64, n == 0, &plans);
    }
}

#[test]
fn sdpa_decode_tq1_long_keys_and_tk1() {
    let gpu = gpu();
    for (n, &(tq, tk, causal)) in [
        (1usize, 2000usize, Causal::None),
        (1, 2000, Causal::BottomRight),
        (3, 777, Causal::BottomRight),
        (1, 1, Causal::None),
        (5, 1, Causal::TopLeft),
        (1, 17, Causal::None),
    ]
    .iter()
    .enumerate()
    {
        let c = Case {
            dims: dims(2, 3, tq, tk, 64, 48),
            mask: (n % 2 == 0 && tk > 1).then(|| (vec![2, 1, 1, tk], MaskKind::Keep)),
            causal,
            scale: None,
            mag: 1.0,
        };
        let d = c.dims;
        assert!(
            tq > 4 || tk < 16 || matches!(ksdpa::plan(&gpu, &d), Plan::Decode { .. }),
            "{d:?} should use the split-key decode plan"
        );
        check_case(&gpu, &c, 400 + n as u64, true, &[Plan::Flash]);
    }
}

#[test]
fn sdpa_large_logits_do_not_overflow() {
    let gpu = gpu();
    // |q|,|k| up to 8 with D = 64 and scale 1/8: scores up to 8*8*64/8 = 512, typical +-1e2..1e3.
    for (n, &(tq, tk)) in [(33usize, 65usize), (1, 500)].iter().enumerate() {
        let c = Case {
            dims: dims(1, 2, tq, tk, 64, 16),
            mask: Some((vec![tq, tk], MaskKind::Additive)),
            causal: Causal::None,
            scale: Some(1.0),
            mag: 4.0,
        };
        check_case(&gpu, &c, 500 + n as u64, true, &[]);
    }
}

#[test]
fn sdpa_fully_masked_rows_give_zeros() {
    let gpu = gpu();
    let (b, h, tq, tk, d) = (1, 1, 3, 5, 4);
    let q = Tensor::from_f32(&gpu, &vec![0.5; b * h * tq * d], &[b, h, tq, d]).unwrap();
    let v = Tensor::from_f32(&gpu, &vec![1.0; b * h * tk * d], &[b, h, tk, d]).unwrap();
    // Row 1 sees nothing; rows 0 and 2 see key 0.
    let mut m = vec![0u32; tq * tk];
    m[0] = 1;
    m[2 * tk] = 1;
    let mt = Tensor::from_u32(&gpu, &m, &[tq, tk]).unwrap();
    let opts = SdpaOptions {
        mask: Some(AttnMask::keep(&mt)),
        ..Default::default()
    };
    let k = Tensor::from_f32(&gpu, &vec![0.5; b * h * tk * d], &[b, h, tk, d]).unwrap();
    let (y, w) = ops::sdpa_with_weights(&gpu, &q, &k, &v, &opts).unwrap();
    let y = y.to_vec_f32(&gpu).unwrap();
    let w = w.to_vec_f32(&gpu).unwrap();
    assert_eq!(&y[4..8], &[0.0; 4]);
    assert_eq!(&y[0..4], &[1.0; 4]);
    assert_eq!(&w[5..10], &[0.0; 5]);
    // Additive all -inf row, decode path.
    let tk = 100;
    let k = Tensor::from_f32(&gpu, &vec![0.5; tk * d], &[1, 1, tk, d]).unwrap();
    let v = Tensor::from_f32(&gpu, &vec![1.0; tk * d], &[1, 1, tk, d]).unwrap();
    let q1 = Tensor::from_f32(&gpu, &[0.5; 4], &[1, 1, 1, d]).unwrap();
    let mt = Tensor::from_f32(&gpu, &vec![f32::NEG_INFINITY; tk], &[tk]).unwrap();
    let opts = SdpaOptions {
        mask: Some(AttnMask::additive(&mt)),
        ..Default::default()
    };
    let y = ops::sdpa(&gpu, &q1, &k, &v, &opts)
        .unwrap()
        .to_vec_f32(&gpu)
        .unwrap();
    assert_eq!(y, vec![0.0; 4]);
}

#[test]
fn sdpa_bad_shapes_are_errors() {
    let gpu = gpu();
    let t = |s: &[usize]| Tensor::zeros(&gpu, s, heedful::DType::F32).unwrap();
    let o = SdpaOptions::default();
    let e = ops::sdpa(
        &gpu,
        &t(&[1, 2, 3, 8]),
        &t(&[1, 2, 4, 7]),
        &t(&[1, 2, 4, 8]),
        &o,
    );
    assert!(e.unwrap_err().to_string().contains("sdpa"));
    assert!(ops::sdpa(&gpu, &t(&[2, 3, 8]), &t(&[2, 3, 8]), &t(&[2, 3, 8]), &o).is_err());
    assert!(ops::sdpa(
        &gpu,
        &t(&[1, 1, 2, 300]),
        &t(&[1, 1, 2, 300]),
        &t(&[1, 1, 2, 3]),
        &o
    )
    .is_err());
    let m = Tensor::zeros(&gpu, &[3, 5], heedful::DType::U32).unwrap();
    let o = SdpaOptions {
        mask: Some(AttnMask::keep(&m)),
        ..Default::default()
    };
    let e = ops::sdpa(
        &gpu,
        &t(&[1, 1, 4, 8]),
        &t(&[1, 1, 5, 8]),
        &t(&[1, 1, 5, 8]),
        &o,
    );
    assert!(e.unwrap_err().to_string().contains("mask"));
    // A float mask declared boolean is a dtype error.
    let mf = Tensor::zeros(&gpu, &[4, 5], heedful::DType::F32).unwrap();
    let o = SdpaOptions {
        mask: Some(AttnMask::keep(&mf)),
        ..Default::default()
    };
    assert!(ops::sdpa(
        &gpu,
        &t(&[1, 1, 4, 8]),
        &t(&[1, 1, 5, 8]),
        &t(&[1, 1, 5, 8]),
        &o
    )
    .is_err());
}
