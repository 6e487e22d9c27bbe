//! Graph executor: results equal the eager ops, buffer reuse, no allocation after warm-up, threads,
//! profiling output.

mod common;
use common::*;
use heedful::graph::{Dim, Graph, HostInput, ReshapeDim, Session};
use heedful::ops::Activation;
use heedful::{reference, DType, Tensor};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A chain long enough for reuse to matter: x -> (+b, gelu, *s, tanh, +b, relu)... repeated.
fn chain(gpu: &heedful::Gpu, width: usize, depth: usize) -> (Graph, Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(7);
    let b = rng.vec(width, -1.0, 1.0);
    let s = rng.vec(width, 0.5, 1.5);
    let mut g = Graph::new();
    let x = g.input("x", &[Dim::sym("batch"), Dim::Fixed(width)], DType::F32);
    let bw = g.weight(Tensor::from_f32(gpu, &b, &[width]).unwrap());
    let sw = g.weight(Tensor::from_f32_as_f16(gpu, &s, &[width]).unwrap());
    let mut h = x;
    for _ in 0..depth {
        h = g.add(h, bw);
        h = g.activation(h, Activation::Gelu);
        h = g.mul(h, sw);
        h = g.activation(h, Activation::Tanh);
    }
    let flat = g.reshape(h, &[ReshapeDim::Infer]);
    g.output("y", flat);
    (g, b, f16_round(&s))
}

fn chain_reference(x: &[f32], b: &[f32], s: &[f32], depth: usize) -> Vec<f32> {
    let mut h = x.to_vec();
    for _ in 0..depth {
        h = reference::elementwise::add(&h, b);
        h = reference::elementwise::activation_all(&h, Activation::Gelu);
        h = reference::elementwise::mul(&h, s);
        h = reference::elementwise::activation_all(&h, Activation::Tanh);
    }
    h
}

#[test]
fn graph_matches_reference_and_reuses_buffers() {
    let gpu = gpu();
    let (g, b, s) = chain(&gpu, 37, 6);
    let session = Session::new(&gpu, Arc::new(g));
    for batch in [1usize, 5] {
        let x = Rng::new(batch as u64).vec(batch * 37, -2.0, 2.0);
        let out = session
            .run(&[("x", HostInput::f32(x.clone(), &[batch, 37]))])
            .unwrap();
        assert_eq!(out["y"].shape, vec![batch * 37]);
        assert_close(
            &format!("chain batch {batch}"),
            &out["y"].data,
            &chain_reference(&x, &b, &s, 6),
            1e-5,
            1e-5,
        );
        let plan = session
            .plan(&[("x", HostInput::f32(x, &[batch, 37]))])
            .unwrap();
        let mem = plan.lock().unwrap().memory().clone();
        // 24 nodes, 23 intermediates of batch*37*4 bytes: with reuse two buffers suffice.
        assert_eq!(mem.naive_bytes, 23 * (batch * 37 * 4) as u64);
        assert_eq!(mem.slot_sizes.len(), 2, "{mem:?}");
    }
}

#[test]
fn warm_runs_create_no_gpu_objects() {
    // A private device: tests running in parallel on the shared one would move its counters.
    let gpu = heedful::Gpu::new(&heedful::GpuOptions::from_env()).unwrap();
    let (g, ..) = chain(&gpu, 64, 3);
    let session = Session::new(&gpu, Arc::new(g));
    let input = || vec![("x", HostInput::f32(vec![0.25; 128], &[2, 64]))];
    session.run(&input()).unwrap();
    let c = gpu.counters();
    let count = || {
        (
            c.buffers.load(Ordering::SeqCst),
            c.bind_groups.load(Ordering::SeqCst),
            c.pipelines.load(Ordering::SeqCst),
            c.submits.load(Ordering::SeqCst),
        )
    };
    let before = count();
    for _ in 0..5 {
        session.run(&input()).unwrap();
    }
    let after = count();
    assert_eq!(
        (before.0, before.1, before.2),
        (after.0, after.1, after.2),
        "(buffers, bind groups, pipelines) created by warm runs"
    );
    assert_eq!(after.3 - before.3, 5, "one submission per run");
}

#[test]
fn sessions_run_from_several_threads() {
    let gpu = gpu();
    let (g, b, s) = chain(&gpu, 19, 4);
    let g = Arc::new(g);
    let shared = Arc::new(Session::new(&gpu, g.clone()));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (gpu, g, shared, b, s) =
                (gpu.clone(), g.clone(), shared.clone(), b.clone(), s.clone());
            std::thread::spawn(move || {
                // Half the threads share one session, half have their own.
                let own = Session::new(&gpu, g);
                let session = if t % 2 == 0 { &*shared } else { &own };
                for i in 0..5 {
                    let batch = 1 + (t + i) % 3;
                    let x = Rng::new((t * 10 + i) as u64).vec(batch * 19, -1.0, 1.0);
                    let out = session
                        .run(&[("x", HostInput::f32(x.clone(), &[batch, 19]))])
                        .unwrap();
                    assert_close(
                        "threaded run",
                        &out["y"].data,
                        &chain_reference(&x, &b, &s, 4),
                        1e-5,
                        1e-5,
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn profile_has_a_row_per_node_and_valid_chrome_trace() {
    let gpu = gpu();
    let (g, ..) = chain(&gpu, 16, 2);
    let n_nodes = g.len();
    let session = Session::new(&gpu, Arc::new(g));
    let (out, profile) = session
        .run_profiled(&[("x", HostInput::f32(vec![0.5; 16], &[1, 16]))])
        .unwrap();
    assert_eq!(out["y"].data.len(), 16);
    assert_eq!(profile.rows.len(), n_nodes);
    assert!(profile.rows.iter().all(|r| r.ms >= 0.0));
    let trace = profile.chrome_trace();
    let events = trace["traceEvents"].as_array().unwrap();
    assert_eq!(events.len(), n_nodes);
    assert!(events
        .iter()
        .all(|e| e["ph"] == "X" && e["dur"].as_f64().is_some()));
    let table = profile.to_string();
    assert!(
        table.contains("activation") && table.contains("total"),
        "{table}"
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let gpu = gpu();
    let (g, ..) = chain(&gpu, 8, 1);
    let session = Session::new(&gpu, Arc::new(g));
    let e = session
        .run(&[("x", HostInput::f32(vec![0.0; 9], &[1, 9]))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("[1, 9]"), "{e}");
    let e = session
        .run(&[("nope", HostInput::f32(vec![0.0; 8], &[1, 8]))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("x") || e.contains("nope"), "{e}");
    let e = session
        .run(&[("x", HostInput::i32(vec![0; 8], &[1, 8]))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("i32"), "{e}");
}

/// A small attention block built as a graph equals the same computation with eager ops.
#[test]
fn attention_block_graph_equals_eager_ops() {
    use heedful::ops;
    let gpu = gpu();
    let mut rng = Rng::new(11);
    let (b, t, e, h, v) = (2usize, 5usize, 12usize, 3usize, 17usize);
    let dh = e / h;
    let emb = Tensor::from_f32_as_f16(&gpu, &rng.vec(v * e, -1.0, 1.0), &[v, e]).unwrap();
    let wq = Tensor::from_f32_as_f16(&gpu, &rng.vec(e * e, -0.5, 0.5), &[e, e]).unwrap();
    let bq = Tensor::from_f32(&gpu, &rng.vec(e, -0.1, 0.1), &[e]).unwrap();
    let ln_w = Tensor::from_f32(&gpu, &rng.vec(e, 0.5, 1.5), &[e]).unwrap();
    let ln_b = Tensor::from_f32(&gpu, &rng.vec(e, -0.1, 0.1), &[e]).unwrap();
    let ids: Vec<i32> = (0..b * t).map(|i| (i * 7 % v) as i32).collect();
    let mask: Vec<i32> = (0..b * t).map(|i| (i % t < 3 + i / t) as i32).collect();

    let mut g = Graph::new();
    let ids_v = g.input("ids", &[Dim::sym("b"), Dim::sym("t")], DType::I32);
    let mask_v = g.input("mask", &[Dim::sym("b"), Dim::sym("t")], DType::I32);
    let (emb_v, wq_v, bq_v, lw, lb) = (
        g.weight(emb.clone()),
        g.weight(wq.clone()),
        g.weight(bq.clone()),
        g.weight(ln_w.clone()),
        g.weight(ln_b.clone()),
    );
    let x = g.embedding(ids_v, emb_v);
    let x = g.layer_norm(x, lw, lb, 1e-5);
    let q = g.linear(x, wq_v, Some(bq_v));
    let q4 = g.reshape(
        q,
        &[
            ReshapeDim::Input(0),
            ReshapeDim::Input(1),
            ReshapeDim::Fixed(h),
            ReshapeDim::Fixed(dh),
        ],
    );
    let qh = g.transpose12(q4);
    let s = g.matmul_bt(qh, qh, 0.5);
    let p = g.softmax(s);
    let ctx = g.matmul(p, qh);
    let merged = g.transpose12(ctx);
    let flat = g.reshape(
        merged,
        &[
            ReshapeDim::Input(0),
            ReshapeDim::Input(1),
            ReshapeDim::Infer,
        ],
    );
    let pooled = g.mean_pool(flat, mask_v, true);
    g.output("pooled", pooled);
    g.output("probs", p);
    let session = Session::new(&gpu, Arc::new(g));
    let out = session
        .run(&[
            ("ids", HostInput::i32(ids.clone(), &[b, t])),
            ("mask", HostInput::i32(mask.clone(), &[b, t])),
        ])
        .unwrap();

    let ids_t = Tensor::from_i32(&gpu, &ids, &[b, t]).unwrap();
    let mask_t = Tensor::from_i32(&gpu, &mask, &[b, t]).unwrap();
    let x = ops::embedding(&gpu, &ids_t, &emb).unwrap();
    let x = ops::layer_norm(&gpu, &x, &ln_w, &ln_b, 1e-5).unwrap();
    let q = ops::linear(&gpu, &x, &wq, Some(&bq))
        .unwrap()
        .reshape(&[b, t, h, dh])
        .unwrap();
    let qh = ops::transpose12(&gpu, &q).unwrap();
    let p = ops::softmax(&gpu, &ops::matmul_bt(&gpu, &qh, &qh, 0.5).unwrap()).unwrap();
    let ctx = ops::matmul(&gpu, &p, &qh).unwrap();
    let merged = ops::transpose12(&gpu, &ctx)
        .unwrap()
        .reshape(&[b, t, e])
        .unwrap();
    let pooled = ops::mean_pool(&gpu, &merged, &mask_t, true).unwrap();
    assert_eq!(out["probs"].shape, vec![b, h, t, t]);
    assert_close(
        "probs",
        &out["probs"].data,
        &p.to_vec_f32(&gpu).unwrap(),
        1e-6,
        1e-6,
    );
    assert_close(
        "pooled",
        &out["pooled"].data,
        &pooled.to_vec_f32(&gpu).unwrap(),
        1e-6,
        1e-6,
    );
}

/// Issue #16: a session that sees hundreds of distinct input lengths keeps a bounded number of
/// plans, so the live GPU buffers stay flat (an unbounded cache grows by every plan's buffers).
/// Results stay equal to the reference for lengths whose plans were evicted and rebuilt.
#[test]
fn plans_are_a_bounded_cache_over_many_lengths() {
    // Its own device: the live-buffer count is per device, and other tests run in parallel.
    let gpu = heedful::Gpu::new(&heedful::GpuOptions::from_env()).unwrap();
    let (width, depth, cap) = (4, 2, 4);
    let (g, b, s) = chain(&gpu, width, depth);
    let session = Session::with_plan_capacity(&gpu, Arc::new(g), cap);
    let run = |len: usize| {
        let x: Vec<f32> = (0..len * width)
            .map(|i| (i % 7) as f32 * 0.25 - 0.5)
            .collect();
        let out = session
            .run(&[("x", HostInput::f32(x.clone(), &[len, width]))])
            .unwrap();
        let want = chain_reference(&x, &b, &s, depth);
        assert_close("y", &out["y"].data, &want, 1e-4, 1e-4);
    };
    let before = gpu.live_buffers();
    for len in 1..=cap {
        run(len);
    }
    let full = gpu.live_buffers();
    assert!(full > before, "plans hold buffers");
    let mut most = full;
    for len in cap + 1..=300 {
        run(len);
        most = most.max(gpu.live_buffers());
        assert!(session.plan_count() <= cap);
    }
    // Every plan of this graph holds the same number of buffers, so a full cache holds the same
    // count whatever lengths it holds.
    assert_eq!(
        most, full,
        "live buffers grew from {full} to {most} over 300 lengths"
    );
    // An evicted length is rebuilt and still right.
    run(1);
    assert_eq!(gpu.live_buffers(), full);
}

/// A graph's positioned embedding node (token row times a scale plus a position row, one
/// dispatch) equals the two lookups combined on the host, and the run checks the host ids of
/// both lookups against their own tables, naming the input.
#[test]
fn positioned_embedding_node_checks_both_id_inputs() {
    let gpu = gpu();
    let mut rng = Rng::new(41);
    let (v, p, d) = (11usize, 6usize, 8usize);
    let w = rng.vec(v * d, -1.0, 1.0);
    let pw = rng.vec(p * d, -1.0, 1.0);
    let mut g = Graph::new();
    let ids = g.input("ids", &[Dim::sym("t")], DType::U32);
    let pos = g.input("positions", &[Dim::sym("t")], DType::U32);
    let (wv, pv) = (
        g.weight(Tensor::from_f32(&gpu, &w, &[v, d]).unwrap()),
        g.weight(Tensor::from_f32(&gpu, &pw, &[p, d]).unwrap()),
    );
    let x = g.embedding_positioned(ids, wv, 2.0, pos, pv);
    g.output("x", x);
    let session = Session::new(&gpu, Arc::new(g));
    let run = |i: Vec<u32>, q: Vec<u32>| {
        let n = i.len();
        session.run(&[
            ("ids", HostInput::u32(i, &[n])),
            ("positions", HostInput::u32(q, &[n])),
        ])
    };
    let out = run(vec![0, 10, 3], vec![5, 0, 2]).unwrap();
    let want = heedful::reference::embedding::embedding_positioned(
        &[0, 10, 3],
        &w,
        2.0,
        &[5, 0, 2],
        &pw,
        d,
    );
    assert_close("positioned node", &out["x"].data, &want, 1e-6, 1e-6);
    let e = run(vec![0, 11, 3], vec![0, 0, 0]).unwrap_err().to_string();
    assert!(
        e.contains("\"ids\"") && e.contains("id 11") && e.contains("11 rows"),
        "{e}"
    );
    let e = run(vec![0, 1, 3], vec![0, 6, 0]).unwrap_err().to_string();
    assert!(
        e.contains("\"positions\"") && e.contains("id 6") && e.contains("6 rows"),
        "{e}"
    );
}
