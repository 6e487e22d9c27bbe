//! LSTM / GRU / RNN layers and cells against the CPU reference and the PyTorch conformance cases,
//! on both recurrence paths (persistent, per-step) and both f16 read paths.

mod common;
use std::collections::HashMap;

use common::*;
use heedful::ops::{
    CellKind, PersistentKernel, RecurrentCell, RecurrentLayer, RecurrentPath, RecurrentSpec,
};
use heedful::reference::recurrent as reference;
use heedful::{DType, Gpu, Tensor};

const KINDS: [CellKind; 4] = [
    CellKind::Lstm,
    CellKind::Gru,
    CellKind::RnnTanh,
    CellKind::RnnRelu,
];
const PATHS: [RecurrentPath; 2] = [RecurrentPath::Persistent, RecurrentPath::PerStep];

/// PyTorch-like init U(-1/sqrt(H), 1/sqrt(H)) for every weight of `spec`, rounded through f16 when
/// the weights will be held in f16 (so the reference sees the values the GPU holds).
fn layer_weights(spec: &RecurrentSpec, rng: &mut Rng, dtype: DType) -> HashMap<String, Vec<f32>> {
    let (h, g, d) = (spec.hidden_size, spec.kind.gates(), spec.directions());
    let s = 1.0 / (h as f32).sqrt();
    let mut w = HashMap::new();
    for l in 0..spec.num_layers {
        let input = if l == 0 { spec.input_size } else { d * h };
        for dir in 0..d {
            let sfx = format!("_l{l}{}", if dir == 1 { "_reverse" } else { "" });
            for (name, n) in [
                ("weight_ih", g * h * input),
                ("weight_hh", g * h * h),
                ("bias_ih", g * h),
                ("bias_hh", g * h),
            ] {
                let mut v = rng.vec(n, -s, s);
                if dtype == DType::F16 {
                    v = f16_round(&v);
                }
                w.insert(format!("{name}{sfx}"), v);
            }
        }
    }
    w
}

struct Case {
    spec: RecurrentSpec,
    batch: usize,
    steps: usize,
    lengths: Option<Vec<usize>>,
    init_state: bool,
    dtype: DType,
}

/// Runs `case` on `gpu` along `path` and compares all outputs with the reference.
fn check(gpu: &Gpu, case: &Case, path: RecurrentPath, seed: u64, atol: f64, rtol: f64) {
    check_kernel(gpu, case, path, PersistentKernel::Auto, seed, atol, rtol);
}

/// [`check`] with the persistent path's kernel forced to `kernel`.
fn check_kernel(
    gpu: &Gpu,
    case: &Case,
    path: RecurrentPath,
    kernel: PersistentKernel,
    seed: u64,
    atol: f64,
    rtol: f64,
) {
    let mut rng = Rng::new(seed);
    let spec = case.spec;
    let w = layer_weights(&spec, &mut rng, case.dtype);
    let (b, t, h) = (case.batch, case.steps, spec.hidden_size);
    let x = rng.vec(b * t * spec.input_size, -1.0, 1.0);
    let nstate = spec.num_layers * spec.directions() * b * h;
    let h0 = case.init_state.then(|| rng.vec(nstate, -1.0, 1.0));
    let c0 = (case.init_state && spec.kind == CellKind::Lstm).then(|| rng.vec(nstate, -1.0, 1.0));
    let want = reference::forward(
        &spec,
        &w,
        &x,
        b,
        t,
        h0.as_deref(),
        c0.as_deref(),
        case.lengths.as_deref(),
    );

    let layer = RecurrentLayer::new(gpu, spec, &w, case.dtype)
        .unwrap()
        .with_path(path)
        .with_persistent_kernel(kernel);
    let xt = Tensor::from_f32(gpu, &x, &[b, t, spec.input_size]).unwrap();
    let sshape = [spec.num_layers * spec.directions(), b, h];
    let h0t = h0.map(|v| Tensor::from_f32(gpu, &v, &sshape).unwrap());
    let c0t = c0.map(|v| Tensor::from_f32(gpu, &v, &sshape).unwrap());
    let prep = layer
        .prepare(
            gpu,
            &xt,
            h0t.as_ref(),
            c0t.as_ref(),
            case.lengths.as_deref(),
        )
        .unwrap();
    assert_eq!(prep.path, path);
    // One GEMM per layer, then one dispatch per step (per-step) or per layer (persistent).
    let per_layer = match path {
        RecurrentPath::PerStep => 1 + t,
        _ => 2,
    };
    assert_eq!(prep.recorder.dispatch_count(), spec.num_layers * per_layer);
    prep.recorder.submit().unwrap();
    let got = prep.output;
    let what = format!(
        "{:?} H={h} I={} L={} bidir={} B={b} T={t} lengths={:?} init={} {} {path:?} {kernel:?}",
        spec.kind,
        spec.input_size,
        spec.num_layers,
        spec.bidirectional,
        case.lengths,
        case.init_state,
        case.dtype
    );
    assert_close(
        &format!("{what}: output"),
        &got.output.to_vec_f32(gpu).unwrap(),
        &want.output,
        atol,
        rtol,
    );
    assert_close(
        &format!("{what}: h_n"),
        &got.h_n.to_vec_f32(gpu).unwrap(),
        &want.h_n,
        atol,
        rtol,
    );
    match (&got.c_n, &want.c_n) {
        (Some(g), Some(w)) => assert_close(
            &format!("{what}: c_n"),
            &g.to_vec_f32(gpu).unwrap(),
            w,
            atol,
            rtol,
        ),
        (None, None) => {}
        _ => panic!("{what}: c_n presence differs"),
    }
}

/// Both persistent kernels (resident weights, streamed weights) on awkward shapes: odd H (not a
/// multiple of 2, 4 or 8: the resident kernel's last k pair has no odd half, and with D = 2 SIMD
/// groups straddle the directions), B > 1 with ragged lengths, T = 1, both directions, stacked
/// layers, initial states, f32 and f16 weights, every cell kind.
#[test]
fn persistent_kernels_match_reference_on_awkward_shapes() {
    let gpu = gpu();
    let mut seed = 900;
    for kind in KINDS {
        for (hidden, batch, steps, bidirectional, dtype) in [
            (1, 1, 1, false, DType::F32),
            (5, 3, 7, true, DType::F16),
            (13, 2, 1, true, DType::F32),
            (13, 1, 9, false, DType::F16),
            (33, 3, 5, false, DType::F32),
            (64, 2, 4, true, DType::F16),
            // H % 8 == 0: where subgroups are 8 lanes (lavapipe) the resident kernel shares the
            // h loads over them; with two directions each subgroup stays within one of them.
            (8, 2, 3, true, DType::F32),
            (24, 3, 6, false, DType::F16),
        ] {
            let lengths = (batch > 1).then(|| (0..batch).map(|i| steps - i % steps).collect());
            let case = Case {
                spec: RecurrentSpec {
                    kind,
                    input_size: 3,
                    hidden_size: hidden,
                    num_layers: 2,
                    bidirectional,
                },
                batch,
                steps,
                lengths,
                init_state: seed % 2 == 0,
                dtype,
            };
            for kernel in [PersistentKernel::Resident, PersistentKernel::Streamed] {
                seed += 1;
                check_kernel(
                    &gpu,
                    &case,
                    RecurrentPath::Persistent,
                    kernel,
                    seed,
                    2e-4,
                    2e-4,
                );
            }
        }
    }
}

/// Forcing the resident kernel past the workgroup's invocations is an error naming the op and
/// the shape, not a panic.
#[test]
fn resident_kernel_too_wide_is_an_error() {
    let gpu = gpu();
    let spec = RecurrentSpec {
        kind: CellKind::Gru,
        input_size: 2,
        hidden_size: 4096,
        num_layers: 1,
        bidirectional: false,
    };
    let mut rng = Rng::new(5);
    let w = layer_weights(&spec, &mut rng, DType::F16);
    let layer = RecurrentLayer::new(&gpu, spec, &w, DType::F16)
        .unwrap()
        .with_path(RecurrentPath::Persistent)
        .with_persistent_kernel(PersistentKernel::Resident);
    let x = Tensor::zeros(&gpu, &[1, 1, 2], DType::F32).unwrap();
    let e = err(layer.prepare(&gpu, &x, None, None, None));
    assert!(e.contains("gru") && e.contains("4096"), "{e}");
}

#[test]
fn layers_match_reference_over_hidden_sizes() {
    let mut n = 0u64;
    for (path_name, gpu) in gpus() {
        for (hi, &h) in [1usize, 7, 50, 128, 256, 512].iter().enumerate() {
            let kind = KINDS[(hi + n as usize) % 4];
            let batch = [1usize, 3, 5][hi % 3];
            let steps = if h >= 256 { 4 } else { 6 };
            // Lengths include 1 and the full T; batch 1 runs without lengths.
            let lengths = (batch > 1).then(|| {
                let mut l: Vec<usize> = (0..batch).map(|i| 1 + (i * 5) % steps).collect();
                l[batch - 1] = steps;
                l
            });
            for path in PATHS {
                n += 1;
                let case = Case {
                    spec: RecurrentSpec {
                        kind,
                        input_size: [3, 13, 8][hi % 3],
                        hidden_size: h,
                        num_layers: 1,
                        bidirectional: hi % 2 == 1,
                    },
                    batch,
                    steps,
                    lengths: lengths.clone(),
                    init_state: hi % 2 == 0,
                    dtype: if n.is_multiple_of(2) {
                        DType::F16
                    } else {
                        DType::F32
                    },
                };
                eprintln!("[{path_name}] case {n}");
                check(&gpu, &case, path, n, 1e-4, 1e-3);
            }
        }
    }
}

#[test]
fn every_kind_stacked_bidirectional_with_states_and_lengths() {
    let gpu = gpu();
    for (ki, kind) in KINDS.into_iter().enumerate() {
        for path in PATHS {
            let case = Case {
                spec: RecurrentSpec {
                    kind,
                    input_size: 5,
                    hidden_size: 9,
                    num_layers: 3,
                    bidirectional: true,
                },
                batch: 6,
                steps: 7,
                lengths: Some(vec![7, 1, 3, 7, 2, 5]),
                init_state: true,
                dtype: [DType::F32, DType::F16][ki % 2],
            };
            check(&gpu, &case, path, 100 + ki as u64, 1e-4, 1e-3);
        }
    }
}

#[test]
fn long_sequences_do_not_drift() {
    let gpu = gpu();
    for (i, kind) in [CellKind::Lstm, CellKind::Gru].into_iter().enumerate() {
        for path in PATHS {
            let case = Case {
                spec: RecurrentSpec {
                    kind,
                    input_size: 6,
                    hidden_size: 24,
                    num_layers: 1,
                    bidirectional: i == 1,
                },
                batch: 2,
                steps: 1000,
                lengths: Some(vec![1000, 613]),
                init_state: false,
                dtype: DType::F32,
            };
            check(&gpu, &case, path, 200 + i as u64, 2e-4, 2e-3);
        }
    }
}

#[test]
fn cells_match_reference() {
    for (path_name, gpu) in gpus() {
        for (ki, kind) in KINDS.into_iter().enumerate() {
            for &(input, hidden, batch) in &[
                (5usize, 1usize, 1usize),
                (3, 7, 5),
                (16, 50, 2),
                (64, 512, 4),
            ] {
                let dtype = [DType::F32, DType::F16][(ki + hidden) % 2];
                let mut rng = Rng::new((ki * 1000 + hidden) as u64);
                let g = kind.gates();
                let s = 1.0 / (hidden as f32).sqrt();
                let mut w = HashMap::new();
                for (name, n) in [
                    ("weight_ih", g * hidden * input),
                    ("weight_hh", g * hidden * hidden),
                    ("bias_ih", g * hidden),
                    ("bias_hh", g * hidden),
                ] {
                    let v = rng.vec(n, -s, s);
                    w.insert(
                        name.to_string(),
                        if dtype == DType::F16 {
                            f16_round(&v)
                        } else {
                            v
                        },
                    );
                }
                let x = rng.vec(batch * input, -2.0, 2.0);
                let h = rng.vec(batch * hidden, -1.0, 1.0);
                let c = rng.vec(batch * hidden, -1.0, 1.0);
                let lstm = kind == CellKind::Lstm;
                let (wh, wc) = reference::cell(
                    kind,
                    &w,
                    input,
                    hidden,
                    &x,
                    &h,
                    lstm.then_some(&c[..]),
                    batch,
                );
                let cell = RecurrentCell::new(&gpu, kind, input, hidden, &w, dtype).unwrap();
                let xt = Tensor::from_f32(&gpu, &x, &[batch, input]).unwrap();
                let ht = Tensor::from_f32(&gpu, &h, &[batch, hidden]).unwrap();
                let ct = Tensor::from_f32(&gpu, &c, &[batch, hidden]).unwrap();
                let (gh, gc) = cell
                    .forward(&gpu, &xt, Some(&ht), lstm.then_some(&ct))
                    .unwrap();
                let what =
                    format!("[{path_name}] {kind:?} cell I={input} H={hidden} B={batch} {dtype}");
                assert_close(&what, &gh.to_vec_f32(&gpu).unwrap(), &wh, 1e-4, 1e-3);
                if let (Some(gc), Some(wc)) = (gc, wc) {
                    assert_close(
                        &format!("{what} c"),
                        &gc.to_vec_f32(&gpu).unwrap(),
                        &wc,
                        1e-4,
                        1e-3,
                    );
                }
            }
        }
    }
}

#[test]
fn auto_path_resolves_and_matches() {
    let gpu = gpu();
    let spec = RecurrentSpec {
        kind: CellKind::Gru,
        input_size: 4,
        hidden_size: 16,
        num_layers: 1,
        bidirectional: false,
    };
    let w = layer_weights(&spec, &mut Rng::new(5), DType::F32);
    let layer = RecurrentLayer::new(&gpu, spec, &w, DType::F32).unwrap();
    let p = layer.resolve_path(&gpu, 1, 9);
    assert_ne!(p, RecurrentPath::Auto);
    let case = Case {
        spec,
        batch: 1,
        steps: 9,
        lengths: None,
        init_state: false,
        dtype: DType::F32,
    };
    check(&gpu, &case, p, 5, 1e-4, 1e-3);
}

/// Auto's higher persistent threshold where the resident kernel runs in its subgroup form (the
/// CPU table: up to D*B*H = 1024 items): on such an adapter LSTM H128 f16 takes the persistent
/// path at B = 8 and is exact there, but not at B = 9, not with H % 8 != 0, and not when the
/// streamed persistent kernel is forced; elsewhere the rule is the plain thresholds'.
#[test]
fn auto_path_takes_the_resident_subgroup_kernel_up_to_its_item_limit() {
    use heedful::kernels::recurrent::resident_subgroup_applies;
    let gpu = gpu();
    let layer = |hidden: usize, kernel: PersistentKernel| {
        let spec = RecurrentSpec {
            kind: CellKind::Lstm,
            input_size: 3,
            hidden_size: hidden,
            num_layers: 1,
            bidirectional: false,
        };
        let w = layer_weights(&spec, &mut Rng::new(hidden as u64), DType::F16);
        let l = RecurrentLayer::new(&gpu, spec, &w, DType::F16).unwrap();
        (spec, l.with_persistent_kernel(kernel))
    };
    let limit = gpu.tuning().recurrent.resident_max_items;
    let sg = resident_subgroup_applies(&gpu, CellKind::Lstm, 128, 1, DType::F16);
    let (spec, auto) = layer(128, PersistentKernel::Auto);
    let (_, streamed) = layer(128, PersistentKernel::Streamed);
    let (_, odd) = layer(130, PersistentKernel::Auto);
    let plain = |batch, hidden| gpu.tuning().persistent_pays(1, batch, hidden, 256);
    if sg && limit >= 1024 {
        assert_eq!(auto.resolve_path(&gpu, 8, 256), RecurrentPath::Persistent);
        assert_eq!(auto.resolve_path(&gpu, 9, 256), RecurrentPath::PerStep);
        assert_eq!(streamed.resolve_path(&gpu, 8, 256), RecurrentPath::PerStep);
        assert_eq!(odd.resolve_path(&gpu, 2, 256), RecurrentPath::PerStep);
        let case = Case {
            spec,
            batch: 8,
            steps: 12,
            lengths: Some(vec![12, 1, 5, 12, 7, 3, 12, 9]),
            init_state: true,
            dtype: DType::F16,
        };
        check(&gpu, &case, auto.resolve_path(&gpu, 8, 12), 31, 2e-4, 2e-4);
    } else {
        for batch in [1, 2, 8, 9] {
            let want = if plain(batch, 128) {
                RecurrentPath::Persistent
            } else {
                RecurrentPath::PerStep
            };
            assert_eq!(auto.resolve_path(&gpu, batch, 256), want, "B = {batch}");
        }
    }
}

/// The per-step kernel computes register blocks of units x batch rows (e.g. 2 x 8); batches that
/// are not multiples of the block, B = 1, odd H, and both directions must all be exact.
#[test]
fn register_blocks_over_odd_batches() {
    for (gi, (gpu_name, gpu)) in gpus().into_iter().enumerate() {
        for (i, &(kind, batch, hidden, bidir)) in [
            (CellKind::Lstm, 1usize, 13usize, false),
            (CellKind::Gru, 7, 13, true),
            (CellKind::Lstm, 9, 64, true),
            (CellKind::Gru, 33, 13, false),
            (CellKind::Lstm, 33, 20, true),
            (CellKind::RnnTanh, 17, 9, false),
        ]
        .iter()
        .enumerate()
        {
            let steps = 5;
            let lengths: Vec<usize> = (0..batch).map(|b| 1 + (b * 3) % steps).collect();
            let case = Case {
                spec: RecurrentSpec {
                    kind,
                    input_size: 6,
                    hidden_size: hidden,
                    num_layers: 1,
                    bidirectional: bidir,
                },
                batch,
                steps,
                lengths: (batch > 1).then_some(lengths),
                init_state: i % 2 == 0,
                dtype: [DType::F16, DType::F32][(i + gi) % 2],
            };
            eprintln!("[{gpu_name}] {kind:?} B={batch} H={hidden}");
            check(
                &gpu,
                &case,
                RecurrentPath::PerStep,
                300 + i as u64,
                1e-4,
                1e-3,
            );
        }
    }
}

/// Per-step state that does not fit the uniform staging buffer (D*B*H f32 > 64 KiB) reads h from
/// storage; the same blocked kernel must stay exact there.
#[test]
fn per_step_without_staging_matches() {
    use heedful::kernels::recurrent::{stage_buffer, StepDims};
    let gpu = gpu();
    let (batch, hidden) = (33, 260);
    let big = StepDims {
        batch,
        steps: 3,
        hidden,
        dirs: 2,
    };
    assert!(
        stage_buffer(&gpu, big).is_none(),
        "{big:?} must not be staged"
    );
    if gpu.caps().is_cpu() {
        let small = StepDims {
            batch: 32,
            dirs: 1,
            hidden: 512,
            steps: 3,
        };
        assert!(
            stage_buffer(&gpu, small).is_some(),
            "{small:?} fits the stage"
        );
    }
    let case = Case {
        spec: RecurrentSpec {
            kind: CellKind::Lstm,
            input_size: 8,
            hidden_size: hidden,
            num_layers: 1,
            bidirectional: true,
        },
        batch,
        steps: 3,
        lengths: Some((0..batch).map(|b| 1 + b % 3).collect()),
        init_state: true,
        dtype: DType::F16,
    };
    check(&gpu, &case, RecurrentPath::PerStep, 400, 1e-4, 1e-3);
}

/// `h` and `c` default to zeros, and the cached per-batch scratch never leaks the previous call's
/// state into the next one.
#[test]
fn cell_states_default_to_zeros_and_scratch_is_reused() {
    for (path_name, gpu) in gpus() {
        for kind in [CellKind::Lstm, CellKind::Gru] {
            let (input, hidden) = (5, 19);
            let g = kind.gates();
            let mut rng = Rng::new(77);
            let mut w = HashMap::new();
            for (name, n) in [
                ("weight_ih", g * hidden * input),
                ("weight_hh", g * hidden * hidden),
                ("bias_ih", g * hidden),
                ("bias_hh", g * hidden),
            ] {
                w.insert(name.to_string(), f16_round(&rng.vec(n, -0.3, 0.3)));
            }
            let cell = RecurrentCell::new(&gpu, kind, input, hidden, &w, DType::F16).unwrap();
            let lstm = kind == CellKind::Lstm;
            for batch in [1usize, 33, 1, 33] {
                let x = rng.vec(batch * input, -2.0, 2.0);
                let h = rng.vec(batch * hidden, -1.0, 1.0);
                let c = rng.vec(batch * hidden, -1.0, 1.0);
                let zeros = vec![0.0f32; batch * hidden];
                let xt = Tensor::from_f32(&gpu, &x, &[batch, input]).unwrap();
                let ht = Tensor::from_f32(&gpu, &h, &[batch, hidden]).unwrap();
                let ct = Tensor::from_f32(&gpu, &c, &[batch, hidden]).unwrap();
                // With states, then without: the second call must not see the first's state.
                for (with, hs, cs) in [(true, &h, &c), (false, &zeros, &zeros)] {
                    let (wh, wc) = reference::cell(
                        kind,
                        &w,
                        input,
                        hidden,
                        &x,
                        hs,
                        lstm.then_some(&cs[..]),
                        batch,
                    );
                    let (gh, gc) = if with {
                        cell.forward(&gpu, &xt, Some(&ht), lstm.then_some(&ct))
                    } else {
                        cell.forward(&gpu, &xt, None, None)
                    }
                    .unwrap();
                    let what = format!("[{path_name}] {kind:?} cell B={batch} states={with}");
                    assert_close(&what, &gh.to_vec_f32(&gpu).unwrap(), &wh, 1e-4, 1e-3);
                    assert_eq!(gc.is_some(), lstm, "{what}: c' presence");
                    if let (Some(gc), Some(wc)) = (gc, wc) {
                        assert_close(
                            &format!("{what} c"),
                            &gc.to_vec_f32(&gpu).unwrap(),
                            &wc,
                            1e-4,
                            1e-3,
                        );
                    }
                }
                if lstm {
                    // h given, c absent: c is zeros.
                    let (wh, _) =
                        reference::cell(kind, &w, input, hidden, &x, &h, Some(&zeros), batch);
                    let (gh, _) = cell.forward(&gpu, &xt, Some(&ht), None).unwrap();
                    assert_close(
                        &format!("[{path_name}] lstm cell B={batch} c=None"),
                        &gh.to_vec_f32(&gpu).unwrap(),
                        &wh,
                        1e-4,
                        1e-3,
                    );
                }
            }
        }
    }
}

fn err<T>(r: heedful::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_inputs_are_errors_naming_op_and_shapes() {
    let gpu = gpu();
    let spec = RecurrentSpec {
        kind: CellKind::Lstm,
        input_size: 3,
        hidden_size: 4,
        num_layers: 2,
        bidirectional: true,
    };
    let w = layer_weights(&spec, &mut Rng::new(9), DType::F32);
    let layer = RecurrentLayer::new(&gpu, spec, &w, DType::F32).unwrap();
    let x = Tensor::from_f32(&gpu, &[0.0; 2 * 5 * 3], &[2, 5, 3]).unwrap();
    let bad_x = Tensor::from_f32(&gpu, &[0.0; 2 * 5 * 4], &[2, 5, 4]).unwrap();
    let e = err(layer.forward(&gpu, &bad_x, None, None, None));
    assert!(e.contains("lstm") && e.contains("[2, 5, 4]"), "{e}");
    let e = err(layer.forward(&gpu, &x, None, None, Some(&[5, 0])));
    assert!(e.contains("lengths[1] = 0"), "{e}");
    let e = err(layer.forward(&gpu, &x, None, None, Some(&[6, 1])));
    assert!(e.contains("lengths[0] = 6"), "{e}");
    let e = err(layer.forward(&gpu, &x, None, None, Some(&[5])));
    assert!(e.contains("lengths has 1 entries"), "{e}");
    let h0 = Tensor::from_f32(&gpu, &[0.0; 2 * 2 * 4], &[2, 2, 4]).unwrap();
    let e = err(layer.forward(&gpu, &x, Some(&h0), None, None));
    assert!(
        e.contains("h0") && e.contains("[2, 2, 4]") && e.contains("[4, 2, 4]"),
        "{e}"
    );
    let mut missing = w.clone();
    missing.remove("weight_hh_l1_reverse");
    let e = err(RecurrentLayer::new(&gpu, spec, &missing, DType::F32));
    assert!(
        e.contains("weight_hh_l1_reverse") && e.contains("missing"),
        "{e}"
    );
    let mut short = w.clone();
    short.insert("weight_ih_l1".into(), vec![0.0; 3]);
    let e = err(RecurrentLayer::new(&gpu, spec, &short, DType::F32));
    assert!(e.contains("weight_ih_l1") && e.contains("[16, 8]"), "{e}");
    let gru = RecurrentLayer::new(
        &gpu,
        RecurrentSpec {
            kind: CellKind::Gru,
            ..spec
        },
        &layer_weights(
            &RecurrentSpec {
                kind: CellKind::Gru,
                ..spec
            },
            &mut Rng::new(1),
            DType::F32,
        ),
        DType::F32,
    )
    .unwrap();
    let c0 = Tensor::from_f32(&gpu, &[0.0; 4 * 2 * 4], &[4, 2, 4]).unwrap();
    let e = err(gru.forward(&gpu, &x, None, Some(&c0), None));
    assert!(e.contains("gru") && e.contains("c0"), "{e}");

    let mut cw = HashMap::new();
    cw.insert("weight_ih".to_string(), vec![0.0; 12 * 3]);
    cw.insert("weight_hh".to_string(), vec![0.0; 12 * 4]);
    let cell = RecurrentCell::new(&gpu, CellKind::Gru, 3, 4, &cw, DType::F16).unwrap();
    let cx = Tensor::from_f32(&gpu, &[0.0; 6], &[2, 3]).unwrap();
    let ch = Tensor::from_f32(&gpu, &[0.0; 12], &[3, 4]).unwrap();
    let e = err(cell.forward(&gpu, &cx, Some(&ch), None));
    assert!(
        e.contains("gru_cell") && e.contains("[3, 4]") && e.contains("[2, 4]"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Conformance cases (PyTorch float64 references).
