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
    check_case_rows(gpu, c, seed, weights, plans, None)
}

fn check_case_rows(
    gpu: &Gpu,
    c: &Case,
    seed: u64,
    weights: bool,
    plans: &[Plan],
    rows: Option<u32>,
) {
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
            rows,
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
            // The workgroup decode kernel: whole-workgroup chunks, a chunk off the workgroup
            // size, and more splits than the keys need (the last one empty).
            Plan::DecodeWorkgroup {
                nsplit: 5,
                chunk: 64,
            },
            Plan::DecodeWorkgroup {
                nsplit: 3,
                chunk: 100,
            },
            Plan::DecodeWorkgroup {
                nsplit: 2,
                chunk: 1024,
            },
        ];
        check_case(&gpu, &c, 300 + n as u64, n == 0, &plans);
    }
}

#[test]
fn sdpa_flash_rows_per_invocation() {
    // The register-blocked flash kernel (R query rows per invocation), forced on any adapter:
    // Tq not a multiple of WG*R, causal (rows of one invocation see different key counts), a mask,
    // and the key-split plan.
    let gpu = gpu();
    for (n, &(r, causal)) in [
        (4u32, Causal::TopLeft),
        (2, Causal::BottomRight),
        (4, Causal::None),
        (8, Causal::TopLeft),
    ]
    .iter()
    .enumerate()
    {
        let c = Case {
            dims: dims(1, 2, 300, 290, 40, 24),
            mask: Some((vec![300, 290], MaskKind::Keep)),
            causal,
            scale: None,
            mag: 1.0,
        };
        let plans = [
            Plan::Flash,
            Plan::FlashSplit {
                nsplit: 3,
                chunk: 100,
            },
        ];
        check_case_rows(&gpu, &c, 600 + n as u64, false, &plans, Some(r));
    }
}

#[test]
fn sdpa_flash_row_blocks_causal_order_and_base2_softmax() {
    // The tuned flash plan over several row blocks (on lavapipe: workgroups of 8 invocations x 8
    // rows, causal blocks dispatched heaviest first, base-2 online softmax): Tq != Tk, Tq and Tk
    // not multiples of a block or key tile, D not a multiple of 4, an additive mask scaled into
    // base 2, both causal alignments, and key splits whose chunk is not a multiple of the tile.
    let gpu = gpu();
    let cases = [
        (
            203usize,
            150usize,
            13usize,
            5usize,
            Causal::TopLeft,
            MaskKind::Additive,
        ),
        (150, 203, 64, 64, Causal::BottomRight, MaskKind::Additive),
        (131, 131, 24, 40, Causal::TopLeft, MaskKind::Ignore),
        (77, 190, 64, 64, Causal::None, MaskKind::Additive),
    ];
    for (n, &(tq, tk, d, dv, causal, kind)) in cases.iter().enumerate() {
        let c = Case {
            dims: dims(2, 3, tq, tk, d, dv),
            mask: Some((vec![2, 1, tq, tk], kind)),
            causal,
            scale: None,
            mag: 1.0,
        };
        let plans = [
            ksdpa::plan(&gpu, &c.dims),
            Plan::FlashSplit {
                nsplit: 3,
                chunk: tk.div_ceil(3),
            },
        ];
        check_case(&gpu, &c, 700 + n as u64, n == 0, &plans);
    }
}

/// The flash configurations the tuning table gives other adapter classes, forced here through the
/// tuning overrides so that every CI run checks them on whatever adapter it has: the GPU class's
/// unrolled variant (one row per invocation, 8-key tiles, workgroups of 64) and the shared-memory
/// K/V tiles (two rows, 16-key tiles, workgroups of 32), and the CPU table's unrolled variant
/// without the subgroup-shared k/v loads, on the awkward shapes of
/// `sdpa_flash_row_blocks_causal_order_and_base2_softmax` (both causal alignments, an additive
/// mask, D and Dv not multiples of 4 or of the tile).
#[test]
fn sdpa_flash_other_adapter_classes_configurations() {
    use heedful::gpu::{GpuOptions, TuningOverrides};
    // The last two: the CPU table's unrolled kernel with every lane loading k and v (the form for
    // adapters without 8-lane subgroups), on lavapipe where the table would share the loads, and
    // with a workgroup that is not whole 8-lane subgroups (which must fall back to that form).
    let configs = [
        (1u32, 8u32, 64u32, false, true, None),
        (2, 16, 32, true, false, None),
        (8, 4, 8, false, true, Some(false)),
        (4, 4, 12, false, true, None),
    ];
    for (ci, &(r, kt, wg, shared, unrolled, subgroup)) in configs.iter().enumerate() {
        let opts = GpuOptions {
            overrides: TuningOverrides {
                attn_rows: Some(r),
                attn_kt: Some(kt),
                attn_wg: Some(wg),
                attn_shared: Some(shared),
                attn_unrolled: Some(unrolled),
                attn_subgroup: subgroup,
                ..Default::default()
            },
            ..GpuOptions::from_env()
        };
        let gpu = Gpu::new(&opts).unwrap();
        // Two shapes per configuration (each one compiles its own pipelines, slow on lavapipe).
        let cases = [
            (203usize, 150usize, 13usize, 5usize, Causal::TopLeft),
            (77, 190, 40, 24, Causal::BottomRight),
        ];
        for (n, &(tq, tk, d, dv, causal)) in cases.iter().enumerate() {
            let c = Case {
                dims: dims(2, 3, tq, tk, d, dv),
                mask: Some((vec![2, 1, tq, tk], MaskKind::Additive)),
                causal,
                scale: None,
                mag: 1.0,
            };
            let plans = [
                Plan::Flash,
                Plan::FlashSplit {
                    nsplit: 3,
                    chunk: tk.div_ceil(3),
                },
            ];
            check_case(&gpu, &c, 800 + 10 * ci as u64 + n as u64, false, &plans);
        }
    }
}

/// Both decode kernels (one invocation, one workgroup per key chunk) with the chunks their plans
/// pick for this adapter, and the one-invocation kernel with one chunk (each lane a whole row,
/// writing the output without the merge pass), on decode shapes: 1 to 4 query rows, key counts
/// from 2 to 1500 (one chunk, several, a last partial one), odd and large head dims, every mask
/// kind, both causal alignments (rows whose visible keys end inside, at and before a chunk).
#[test]
fn sdpa_decode_kernels_match_reference_on_decode_shapes() {
    let gpu = gpu();
    let mut rng = Rng::new(41);
    let kinds = [MaskKind::Keep, MaskKind::Ignore, MaskKind::Additive];
    let head_dims = [(1, 1), (13, 5), (64, 64), (256, 200)];
    for n in 0..12 {
        let (b, h) = (1 + rng.below(2), 1 + rng.below(3));
        let tq = 1 + rng.below(4);
        let tk = [2, 37, 130, 1500][n % 4] + rng.below(5);
        let (d, dv) = head_dims[(n / 3) % 4];
        let mask = match rng.below(3) {
            0 => None,
            1 => Some((vec![tq, tk], kinds[n % 3])),
            _ => Some((vec![b, h, 1, tk], kinds[n % 3])),
        };
        let causal = [Causal::None, Causal::TopLeft, Causal::BottomRight][n % 3];
        let c = Case {
            dims: dims(b, h, tq, tk, d, dv),
            mask,
            causal,
            scale: None,
            mag: 1.0,
        };
        let mut plans: Vec<Plan> = [false, true]
            .iter()
            .filter_map(|&wg| ksdpa::decode_plan(&gpu, &c.dims, wg))
            .collect();
        assert!(
            plans
                .iter()
                .any(|p| matches!(p, Plan::DecodeWorkgroup { .. })),
            "{:?}: {plans:?}",
            c.dims
        );
        plans.push(Plan::Decode {
            nsplit: 1,
            chunk: tk,
        });
        check_case(&gpu, &c, 900 + n as u64, n % 4 == 1, &plans);
    }
}

/// A workgroup decode plan whose chunk exceeds the kernel's workgroup array is an error naming
/// the plan, not an out-of-bounds write.
#[test]
fn sdpa_decode_workgroup_chunk_over_its_limit_is_an_error() {
    let gpu = gpu();
    let d = dims(1, 1, 1, 3000, 8, 8);
    let q = Tensor::zeros(&gpu, &[1, 1, 1, 8], heedful::DType::F32).unwrap();
    let k = Tensor::zeros(&gpu, &[1, 1, 3000, 8], heedful::DType::F32).unwrap();
    let y = Tensor::zeros(&gpu, &[1, 1, 1, 8], heedful::DType::F32).unwrap();
    let args = SdpaArgs {
        plan: Some(Plan::DecodeWorkgroup {
            nsplit: 1,
            chunk: 3000,
        }),
        ..Default::default()
    };
    let mut rec = heedful::gpu::Recorder::new(&gpu);
    let e = ksdpa::record_sdpa(
        &mut rec,
        &d,
        Heads::dense(&q),
        Heads::dense(&k),
        Heads::dense(&k),
        Heads::dense(&y),
        &args,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("DecodeWorkgroup"), "{e}");
}

/// The one-invocation decode kernel takes a one-chunk plan (each lane a whole row) only for rows
/// enough to spread over the CPU threads; a few rows with few keys run the flash kernel.
#[test]
fn decode_plan_one_chunk_only_for_many_rows() {
    let gpu = gpu();
    let tu = gpu.tuning().attn;
    let lanes = tu.target_groups * tu.decode_wg as usize;
    for (b, h, tk) in [
        (1, 4, 10),
        (2, 4, 20),
        (32, 16, 10),
        (128, 4, 12),
        (1, 1, 1),
    ] {
        let d = dims(b, h, 1, tk, 32, 32);
        let rows = b * h;
        let plan = ksdpa::decode_plan(&gpu, &d, false);
        if 4 * rows >= lanes {
            assert!(
                matches!(plan, Some(Plan::Decode { nsplit: 1, .. })),
                "{d:?}: {plan:?}"
            );
        } else {
            assert_eq!(plan, None, "{d:?}");
        }
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
        (1, 16, Causal::None),
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
        // Decode shapes (up to 4 query rows) with long key rows take a decode plan whose chunks
        // cover the keys; the one-invocation kernel splits only into chunks of 2 tiles or more
        // (its one-chunk plans are for many rows: `decode_plan_one_chunk_only_for_many_rows`).
        let plan = ksdpa::plan(&gpu, &d);
        match plan {
            Plan::Decode { nsplit, chunk } | Plan::DecodeWorkgroup { nsplit, chunk } => {
                assert!(
                    nsplit * chunk >= tk && (nsplit - 1) * chunk < tk,
                    "{d:?}: {plan:?}"
                );
                if matches!(plan, Plan::Decode { .. }) {
                    assert!(nsplit == 1 || chunk >= 16, "{d:?}: {plan:?}");
                }
            }
            _ => assert!(
                tq > 4 || tk < 32,
                "{d:?} should use a decode plan, got {plan:?}"
            ),
        }
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

/// The cooperative-matrix flash kernel (`Plan::FlashCoop`) against the reference. Where the adapter
/// has no cooperative matrices (lavapipe) this runs its emulated form: the hardware form's code
/// (staging, fragment offsets, strides and layouts, product order, masking, online softmax,
/// stores) with each fragment instruction spelled as a function of the same meaning, so a wrong
/// layout in the generator (k loaded row-major, say) fails here too. Shapes off the 16-row,
/// 16-key and 16-dim blocks (one row and key, head dims 1 to 96, D != Dv), masks of every kind and
/// broadcast, both causal alignments, rows whose keys are all masked, and large scores.
#[test]
fn sdpa_coop_matches_reference() {
    let gpu = gpu();
    let form = ksdpa::CoopForm::for_caps(gpu.caps());
    eprintln!("cooperative-matrix flash kernel: {form:?}");
    let cases = [
        (dims(1, 1, 1, 1, 1, 1), None, Causal::None, None, 1.0),
        (
            dims(2, 3, 37, 53, 13, 5),
            Some((vec![37, 53], MaskKind::Keep)),
            Causal::TopLeft,
            None,
            1.0,
        ),
        (
            dims(2, 2, 70, 90, 40, 24),
            Some((vec![2, 1, 70, 90], MaskKind::Ignore)),
            Causal::BottomRight,
            Some(0.3),
            1.0,
        ),
        (dims(1, 2, 64, 64, 16, 32), None, Causal::TopLeft, None, 1.0),
        (
            dims(1, 1, 33, 200, 64, 64),
            Some((vec![1, 1, 1, 200], MaskKind::Additive)),
            Causal::None,
            Some(1.0),
            4.0,
        ),
        (
            dims(1, 1, 17, 5, 96, 80),
            Some((vec![17, 5], MaskKind::Keep)),
            Causal::None,
            None,
            1.0,
        ),
        (
            dims(1, 1, 40, 20, 8, 8),
            None,
            Causal::BottomRight,
            None,
            1.0,
        ),
    ];
    for (n, (d, mask, causal, scale, mag)) in cases.into_iter().enumerate() {
        if ksdpa::coop_attn_tile(gpu.caps(), form, d.d, d.dv, None).is_none() {
            // The emulated form stages f32 where the adapter has no shader f16 (GL): twice the
            // memory.
            eprintln!("skipped {d:?}: no block of the kernel fits this device");
            assert!(
                !form.f16,
                "every case fits 32 KiB of workgroup memory with f16 halves"
            );
            continue;
        }
        let c = Case {
            dims: d,
            mask,
            causal,
            scale,
            mag,
        };
        check_case(&gpu, &c, 700 + n as u64, false, &[Plan::FlashCoop]);
    }
}

/// The cooperative-matrix flash kernel reads and writes head views of fused projections (q, k
/// and v as column ranges of one `[B, T, 3E]` tensor, out as `[B, T, E]`) and writes each row's
/// log-sum-exp, equal to the unrolled flash kernel's.
#[test]
fn sdpa_coop_head_views_and_log_sum_exp() {
    let gpu = gpu();
    let (b, h, t, d) = (2, 3, 45, 20);
    let e = h * d;
    let mut rng = Rng::new(77);
    let qkv = Tensor::from_f32(&gpu, &rng.vec(b * t * 3 * e, -1.0, 1.0), &[b, t, 3 * e]).unwrap();
    let dm = dims(b, h, t, t, d, d);
    let run = |plan: Plan| {
        let out = Tensor::zeros(&gpu, &[b, t, e], heedful::DType::F32).unwrap();
        let lse = Tensor::zeros(&gpu, &[b * h * t], heedful::DType::F32).unwrap();
        let args = SdpaArgs {
            causal: Causal::TopLeft,
            plan: Some(plan),
            ..Default::default()
        };
        let mut rec = heedful::gpu::Recorder::new(&gpu);
        ksdpa::record_sdpa(
            &mut rec,
            &dm,
            Heads::interleaved(&qkv, t, 3 * e, 0, d),
            Heads::interleaved(&qkv, t, 3 * e, e, d),
            Heads::interleaved(&qkv, t, 3 * e, 2 * e, d),
            Heads::interleaved(&out, t, e, 0, d),
            &args,
            Some(&lse),
        )
        .unwrap();
        rec.submit().unwrap();
        (out.to_vec_f32(&gpu).unwrap(), lse.to_vec_f32(&gpu).unwrap())
    };
    let (want, want_lse) = run(Plan::Flash);
    let (got, got_lse) = run(Plan::FlashCoop);
    assert_close("coop out (head views)", &got, &want, 2e-5, 1e-4);
    assert_close("coop log-sum-exp", &got_lse, &want_lse, 2e-5, 1e-5);
}

/// The blocks the automatic choice does not reach on lavapipe (4 subgroups per workgroup; two
/// 16-key fragments per tile with a head dim of 40), set through the tuning table as
/// `HEEDFUL_ATTN_COOP_TILE` does, against the reference; a block that cannot fit the device is an
/// error naming it.
#[test]
fn sdpa_coop_blocks_from_the_tuning_table() {
    use heedful::gpu::{GpuOptions, TuningOverrides};
    let with_tile = |t: &str| {
        Gpu::new(&GpuOptions {
            overrides: TuningOverrides {
                attn_coop_tile: ksdpa::CoopAttnTile::parse(t),
                ..Default::default()
            },
            ..GpuOptions::from_env()
        })
        .unwrap()
    };
    for (n, (tile, d, dv)) in [("4x1", 16, 32), ("1x2", 40, 24), ("2x2", 8, 8)]
        .into_iter()
        .enumerate()
    {
        let gpu = with_tile(tile);
        let form = ksdpa::CoopForm::for_caps(gpu.caps());
        let want = ksdpa::CoopAttnTile::parse(tile);
        if ksdpa::coop_attn_tile(gpu.caps(), form, d, dv, want).is_none() {
            eprintln!("skipped block {tile} for head dims {d}, {dv}: it does not fit this device");
            assert!(
                !form.f16,
                "block {tile} fits 32 KiB of workgroup memory with f16 halves"
            );
            continue;
        }
        let c = Case {
            dims: dims(1, 2, 71, 83, d, dv),
            mask: Some((vec![71, 83], MaskKind::Keep)),
            causal: Causal::BottomRight,
            scale: None,
            mag: 1.0,
        };
        check_case(&gpu, &c, 900 + n as u64, false, &[Plan::FlashCoop]);
    }
    // 8 subgroups of 16 rows with 64-key tiles at head dim 256: over any default limit.
    let e = forced_coop_error(&with_tile("8x4"), 256);
    assert!(
        e.contains("block 8x4") && e.contains("workgroup memory"),
        "{e}"
    );
}

/// The error of a forced cooperative-matrix plan on `gpu` for one head of 8 rows with head dim
/// `d`.
fn forced_coop_error(gpu: &Gpu, d: usize) -> String {
    let x = Tensor::zeros(gpu, &[1, 1, 8, d], heedful::DType::F32).unwrap();
    let args = SdpaArgs {
        plan: Some(Plan::FlashCoop),
        ..Default::default()
    };
    let mut rec = heedful::gpu::Recorder::new(gpu);
    let view = Heads::dense(&x);
    ksdpa::record_sdpa(
        &mut rec,
        &dims(1, 1, 8, 8, d, d),
        view,
        view,
        view,
        view,
        &args,
        None,
    )
    .unwrap_err()
    .to_string()
}

/// The hardware form of the cooperative-matrix flash kernel, for every block, head dims on and off
/// the 16-wide fragments, vec4 and scalar loads, subgroups of 32 and 64: naga parses it, validates
/// it with cooperative matrices allowed and writes SPIR-V. Runs everywhere, so the shader cannot
/// break where no adapter offers the feature.
#[test]
fn sdpa_coop_hardware_wgsl_validates_and_translates_to_spirv() {
    let gpu = gpu();
    for (d, dv) in [(64, 64), (13, 5), (128, 128), (40, 24), (96, 80)] {
        for (ns, nkf) in [(4, 2), (2, 2), (2, 1), (1, 1)] {
            for sg in [32, 64] {
                for vec in [false, true] {
                    let form = ksdpa::CoopForm {
                        hardware: true,
                        sg,
                        f16: true,
                    };
                    let tile = ksdpa::CoopAttnTile { ns, nkf };
                    let src =
                        ksdpa::coop_flash_source(&gpu, &dims(1, 1, 1, 1, d, dv), vec, tile, form)
                            .unwrap();
                    assert!(src.starts_with("enable wgpu_cooperative_matrix;"));
                    // Every fragment product is a three-term hi/lo product.
                    let (dc, jc) = (d.div_ceil(16), dv.div_ceil(16));
                    assert_eq!(
                        src.matches("coopMultiplyAdd(").count(),
                        3 * nkf as usize * (dc + jc),
                        "{d} {dv} {ns}x{nkf}"
                    );
                    validate_to_spirv(&src);
                }
            }
        }
    }
}

/// The workgroup memory the block choice counts (`workgroup_bytes`) is what the kernel declares:
/// naga's layout of its workgroup variables, for both forms, f16 and f32 halves, several blocks
/// and head dims on and off 16. A count below the declared size would let a block through that
/// the device then refuses.
#[test]
fn sdpa_coop_workgroup_bytes_match_the_shader() {
    let gpu = gpu();
    let forms = [
        (true, 32, true),
        (true, 64, true),
        (false, ksdpa::EMULATED_SG, true),
        (false, ksdpa::EMULATED_SG, false),
    ];
    for (hardware, sg, f16) in forms {
        let form = ksdpa::CoopForm { hardware, sg, f16 };
        for (d, dv) in [(64, 64), (13, 5), (96, 80)] {
            for (ns, nkf) in [(4, 2), (2, 1), (1, 3)] {
                let tile = ksdpa::CoopAttnTile { ns, nkf };
                let src =
                    ksdpa::coop_flash_source(&gpu, &dims(1, 1, 1, 1, d, dv), false, tile, form)
                        .unwrap();
                let module = naga::front::wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
                let mut layouter = naga::proc::Layouter::default();
                layouter.update(module.to_ctx()).unwrap();
                let declared: u64 = module
                    .global_variables
                    .iter()
                    .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
                    .map(|(_, g)| u64::from(layouter[g.ty].size))
                    .sum();
                assert_eq!(
                    ksdpa::workgroup_bytes(tile, d, dv, form),
                    declared,
                    "{form:?} {tile:?} d {d} dv {dv}"
                );
            }
        }
    }
}

/// A forced cooperative-matrix plan whose block cannot fit the device is an error naming the
/// kernel, the head dims and the device's limits (head dim 256: its smallest block stages more
/// than any adapter's default workgroup memory).
#[test]
fn sdpa_coop_over_the_workgroup_memory_is_an_error() {
    let gpu = gpu();
    let d = 256;
    let form = ksdpa::CoopForm::for_caps(gpu.caps());
    // Head dims past what any kernel takes never fit, whatever the arithmetic would give.
    for huge in [257, 1 << 40, usize::MAX] {
        assert_eq!(
            ksdpa::coop_attn_tile(gpu.caps(), form, huge, 64, None),
            None
        );
        assert_eq!(
            ksdpa::coop_attn_tile(gpu.caps(), form, 64, huge, None),
            None
        );
    }
    if ksdpa::coop_attn_tile(gpu.caps(), form, d, d, None).is_some() {
        eprintln!("skipped: this device's workgroup memory holds the kernel's block for D = {d}");
        return;
    }
    let e = forced_coop_error(&gpu, d);
    assert!(
        e.contains("cooperative-matrix") && e.contains("256") && e.contains("workgroup memory"),
        "{e}"
    );
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

// ---------------------------------------------------------------------------------------------
// Memory attention (RNN decoders)

fn mask_bt(rng: &mut Rng, b: usize, t: usize) -> Vec<f32> {
    // Row 0 keeps a single key; the others keep random keys (at least one).
    let mut m = vec![0f32; b * t];
    for r in 0..b {
        if r == 0 {
            m[rng.below(t)] = 1.0;
        } else {
            for j in 0..t {
                m[r * t + j] = (rng.below(3) != 0) as u32 as f32;
            }
            m[r * t + rng.below(t)] = 1.0;
        }
    }
    m
}

fn u32_tensor(gpu: &Gpu, v: &[f32], shape: &[usize]) -> Tensor {
    let u: Vec<u32> = v.iter().map(|&x| x as u32).collect();
    Tensor::from_u32(gpu, &u, shape).unwrap()
}

#[test]
fn memory_attention_matches_reference_on_both_f16_paths() {
    for (path, gpu) in gpus() {
        let mut rng = Rng::new(900);
        for &(b, t, dq, dk, dv, a) in &[
            (1usize, 1usize, 8usize, 8usize, 5usize, 8usize),
            (3, 17, 13, 7, 9, 11),
            (2, 70, 64, 32, 33, 96),
        ] {
            for dtype in [heedful::DType::F32, heedful::DType::F16] {
                let wr = |v: Vec<f32>| {
                    if dtype == heedful::DType::F16 {
                        f16_round(&v)
                    } else {
                        v
                    }
                };
                let query = rng.vec(b * dq, -1.0, 1.0);
                let keys = rng.vec(b * t * dk, -1.0, 1.0);
                let values = rng.vec(b * t * dv, -1.0, 1.0);
                let w_q = wr(rng.vec(a * dq, -0.5, 0.5));
                let w_k = wr(rng.vec(a * dk, -0.5, 0.5));
                let v = wr(rng.vec(a, -1.0, 1.0));
                let bias = wr(rng.vec(a, -0.5, 0.5));
                let w_g = wr(rng.vec(dq * dk, -0.5, 0.5));
                let mask = mask_bt(&mut rng, b, t);
                let up = |x: &[f32], s: &[usize]| Tensor::from_f32(&gpu, x, s).unwrap();
                let upw = |x: &[f32], s: &[usize]| Tensor::from_f32_as(&gpu, x, s, dtype).unwrap();
                let (qt, kt, vt) = (
                    up(&query, &[b, dq]),
                    up(&keys, &[b, t, dk]),
                    up(&values, &[b, t, dv]),
                );
                let mt = u32_tensor(&gpu, &mask, &[b, t]);
                let what = format!("{path} {dtype} b {b} t {t} dq {dq} dk {dk} dv {dv} a {a}");
                for masked in [false, true] {
                    let m = masked.then_some(&mt);
                    let rm = masked.then_some(mask.as_slice());
                    let aw = ops::AdditiveWeights {
                        w_q: &upw(&w_q, &[a, dq]),
                        w_k: &upw(&w_k, &[a, dk]),
                        v: &upw(&v, &[a]),
                        b: &upw(&bias, &[a]),
                    };
                    let (c, w) = ops::additive_attention(&gpu, &qt, &kt, &aw, m).unwrap();
                    let (wc, ww) = refa::additive_attention(
                        &query,
                        &keys,
                        &w_q,
                        &w_k,
                        &v,
                        &bias,
                        rm,
                        (b, t, dq, dk, a),
                    );
                    assert_close(
                        &format!("additive ctx {what} mask {masked}"),
                        &c.to_vec_f32(&gpu).unwrap(),
                        &wc,
                        1e-5,
                        1e-4,
                    );
                    assert_close(
                        &format!("additive w {what} mask {masked}"),
                        &w.to_vec_f32(&gpu).unwrap(),
                        &ww,
                        1e-5,
                        1e-4,
                    );
                    if dq == dk {
                        let (c, w) = ops::dot_attention(&gpu, &qt, &kt, &vt, m).unwrap();
                        let (wc, ww) =
                            refa::dot_attention(&query, &keys, &values, rm, (b, t, dk, dv));
                        assert_close(
                            &format!("dot ctx {what}"),
                            &c.to_vec_f32(&gpu).unwrap(),
                            &wc,
                            1e-5,
                            1e-4,
                        );
                        assert_close(
                            &format!("dot w {what}"),
                            &w.to_vec_f32(&gpu).unwrap(),
                            &ww,
                            1e-5,
                            1e-4,
                        );
                    }
                    let wt = upw(&w_g, &[dq, dk]);
                    let (c, w) = ops::general_attention(&gpu, &qt, &kt, &vt, &wt, m).unwrap();
                    let (wc, ww) = refa::general_attention(
                        &query,
                        &keys,
                        &values,
                        &w_g,
                        rm,
                        (b, t, dq, dk, dv),
                    );
                    assert_close(
                        &format!("general ctx {what}"),
                        &c.to_vec_f32(&gpu).unwrap(),
                        &wc,
                        1e-5,
                        1e-4,
                    );
                    assert_close(
                        &format!("general w {what}"),
                        &w.to_vec_f32(&gpu).unwrap(),
                        &ww,
                        1e-5,
                        1e-4,
                    );
                }
            }
        }
    }
}

#[test]
fn memory_attention_large_scores_and_bad_shapes() {
    let gpu = gpu();
    // Dot scores of +-1e3 (q, k entries 10, D = 10) must not overflow the softmax.
    let (b, t, d) = (2, 9, 10);
    let mut rng = Rng::new(5);
    let q = rng.vec(b * d, -10.0, 10.0);
    let k = rng.vec(b * t * d, -10.0, 10.0);
    let v = rng.vec(b * t * 3, -1.0, 1.0);
    let qt = Tensor::from_f32(&gpu, &q, &[b, d]).unwrap();
    let kt = Tensor::from_f32(&gpu, &k, &[b, t, d]).unwrap();
    let vt = Tensor::from_f32(&gpu, &v, &[b, t, 3]).unwrap();
    let (c, w) = ops::dot_attention(&gpu, &qt, &kt, &vt, None).unwrap();
    let (wc, ww) = refa::dot_attention(&q, &k, &v, None, (b, t, d, 3));
    assert_close(
        "dot large ctx",
        &c.to_vec_f32(&gpu).unwrap(),
        &wc,
        1e-4,
        1e-3,
    );
    assert_close("dot large w", &w.to_vec_f32(&gpu).unwrap(), &ww, 1e-4, 1e-3);
    // Fully masked rows: zeros.
    let mt = Tensor::from_u32(&gpu, &vec![0u32; b * t], &[b, t]).unwrap();
    let (c, w) = ops::dot_attention(&gpu, &qt, &kt, &vt, Some(&mt)).unwrap();
    assert!(c.to_vec_f32(&gpu).unwrap().iter().all(|&x| x == 0.0));
    assert!(w.to_vec_f32(&gpu).unwrap().iter().all(|&x| x == 0.0));
    // Bad shapes are errors naming the op.
    let e = ops::dot_attention(
        &gpu,
        &qt,
        &kt,
        &Tensor::from_f32(&gpu, &[0.0; 6], &[2, 1, 3]).unwrap(),
        None,
    );
    assert!(e.unwrap_err().to_string().contains("dot_attention"));
    let wbad = Tensor::from_f32(&gpu, &[0.0; 12], &[3, 4]).unwrap();
    let e = ops::general_attention(&gpu, &qt, &kt, &vt, &wbad, None);
    assert!(e.unwrap_err().to_string().contains("general_attention"));
    let mbad = Tensor::from_u32(&gpu, &[1; 4], &[2, 2]).unwrap();
    assert!(ops::dot_attention(&gpu, &qt, &kt, &vt, Some(&mbad)).is_err());
}

// ---------------------------------------------------------------------------------------------
// Conformance cases (PyTorch float64 references), see ../shared/CONFORMANCE.md

#[test]
fn mha_matches_reference_self_and_cross_attention() {
    for (path, gpu) in gpus() {
        let mut rng = Rng::new(77);
        // (b, tq, tk, e, heads, self-attention, causal)
        for &(b, tq, tk, e, heads, self_attn, causal) in &[
            (2usize, 5usize, 5usize, 16usize, 2usize, true, false),
            (1, 9, 13, 24, 3, false, false),
            (2, 7, 7, 15, 3, true, true),
            (1, 1, 40, 15, 5, false, false),
        ] {
            for dtype in [heedful::DType::F32, heedful::DType::F16] {
                let wr = |v: Vec<f32>| {
                    if dtype == heedful::DType::F16 {
                        f16_round(&v)
                    } else {
                        v
                    }
                };
                let q = rng.vec(b * tq * e, -1.0, 1.0);
                let (k, v) = if self_attn {
                    (q.clone(), q.clone())
                } else {
                    (
                        rng.vec(b * tk * e, -1.0, 1.0),
                        rng.vec(b * tk * e, -1.0, 1.0),
                    )
                };
                let wi = wr(rng.vec(3 * e * e, -0.4, 0.4));
                let bi = wr(rng.vec(3 * e, -0.2, 0.2));
                let wo = wr(rng.vec(e * e, -0.4, 0.4));
                let bo = wr(rng.vec(e, -0.2, 0.2));
                let mut kpm = vec![0f32; b * tk];
                for j in 0..tk / 3 {
                    kpm[(b - 1) * tk + tk - 1 - j] = 1.0;
                }
                let causal = if causal {
                    Causal::TopLeft
                } else {
                    Causal::None
                };
                let (wy, ww) = refa::mha(
                    &q,
                    &k,
                    &v,
                    &refa::RefMhaWeights {
                        in_proj_weight: &wi,
                        in_proj_bias: &bi,
                        out_proj_weight: &wo,
                        out_proj_bias: &bo,
                    },
                    Some(&kpm),
                    (b, tq, tk, e),
                    heads,
                    causal,
                );
                let qt = Tensor::from_f32(&gpu, &q, &[b, tq, e]).unwrap();
                let (kt, vt) = if self_attn {
                    (qt.clone(), qt.clone())
                } else {
                    (
                        Tensor::from_f32(&gpu, &k, &[b, tk, e]).unwrap(),
                        Tensor::from_f32(&gpu, &v, &[b, tk, e]).unwrap(),
                    )
                };
                let upw = |x: &[f32], s: &[usize]| Tensor::from_f32_as(&gpu, x, s, dtype).unwrap();
                let (wit, bit, wot, bot) = (
                    upw(&wi, &[3 * e, e]),
                    upw(&bi, &[3 * e]),
                    upw(&wo, &[e, e]),
                    upw(&bo, &[e]),
                );
                let w = ops::MhaWeights {
                    in_proj_weight: &wit,
                    in_proj_bias: Some(&bit),
                    out_proj_weight: &wot,
                    out_proj_bias: Some(&bot),
                };
                let kpmt = u32_tensor(&gpu, &kpm, &[b, tk]);
                let opts = ops::MhaOptions {
                    key_padding_mask: Some(&kpmt),
                    causal,
                    need_weights: true,
                };
                let out = ops::mha(&gpu, &qt, &kt, &vt, &w, heads, &opts).unwrap();
                let what = format!("{path} {dtype} b {b} tq {tq} tk {tk} e {e} h {heads} self {self_attn} {causal:?}");
                assert_close(
                    &format!("mha y {what}"),
                    &out.y.to_vec_f32(&gpu).unwrap(),
                    &wy,
                    1e-5,
                    1e-4,
                );
                assert_close(
                    &format!("mha weights {what}"),
                    &out.attn_weights.unwrap().to_vec_f32(&gpu).unwrap(),
                    &ww,
                    1e-5,
                    1e-4,
                );
                // Without weights: same y, no weights pass.
                let out2 = ops::mha(
                    &gpu,
                    &qt,
                    &kt,
                    &vt,
                    &w,
                    heads,
                    &ops::MhaOptions {
                        need_weights: false,
                        ..opts
                    },
                )
                .unwrap();
                assert!(out2.attn_weights.is_none());
                assert_close(
                    &format!("mha y (no weights) {what}"),
                    &out2.y.to_vec_f32(&gpu).unwrap(),
                    &wy,
                    1e-5,
                    1e-4,
                );
            }
        }
    }
    // Bad shapes.
    let gpu = gpu();
    let x = Tensor::from_f32(&gpu, &[0.0; 2 * 3 * 8], &[2, 3, 8]).unwrap();
    let wi = Tensor::from_f32(&gpu, &[0.0; 24 * 8], &[24, 8]).unwrap();
    let wo = Tensor::from_f32(&gpu, &[0.0; 64], &[8, 8]).unwrap();
    let w = ops::MhaWeights {
        in_proj_weight: &wi,
        in_proj_bias: None,
        out_proj_weight: &wo,
        out_proj_bias: None,
    };
    let e = ops::mha(&gpu, &x, &x, &x, &w, 3, &Default::default()).unwrap_err();
    assert!(e.to_string().contains("mha"), "{e}");
    let bad = Tensor::from_f32(&gpu, &[0.0; 16], &[2, 8]).unwrap();
    assert!(ops::mha(&gpu, &x, &bad, &bad, &w, 2, &Default::default()).is_err());
    let kpm = Tensor::from_u32(&gpu, &[0; 4], &[2, 2]).unwrap();
    let o = ops::MhaOptions {
        key_padding_mask: Some(&kpm),
        ..Default::default()
    };
    assert!(ops::mha(&gpu, &x, &x, &x, &w, 2, &o).is_err());
}
