//! The `overhead` suite: what the host waits for around GPU work that does almost nothing, measured
//! by wall clock on the host (median over interleaved rounds, like the `seq2seq` suite):
//!
//! - `submit_wait:empty`: an empty command buffer submitted, then a wait for the queue;
//! - `submit_wait:dispatchN`: N dependent one-workgroup dispatches (each rewrites the same buffer,
//!   so the driver must order them) in one submission, then a wait;
//! - `submit_readback:dispatch1`: one such dispatch, a 16-byte copy into a mappable buffer, the map
//!   and the read: the shape of one chunk of the seq2seq loop without its kernel work.
//!
//! These bound what recording several decoding steps per submission can save: the fused greedy
//! decoder run one step per submission pays about `submit_readback:dispatch1` per step on top of
//! the step's kernel work, the chunked loop about that once per chunk. Figures hold for the
//! adapter they were measured on.

use std::time::Instant;

use super::roofline::copy_run;
use super::BenchCtx;
use crate::error::Result;
use crate::gpu::Recorder;
use crate::tensor::{DType, Tensor};

/// Rounds of the interleaved timing, and repetitions of a case per round.
const ROUNDS: usize = 9;
const REPS: usize = 25;

/// Dependent dispatch counts timed.
const DISPATCHES: [usize; 3] = [1, 2, 8];

/// Runs the suite.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    let gpu = ctx.gpu.clone();
    // One vec4 copied per dispatch: one workgroup, no measurable kernel work.
    let src = Tensor::zeros(&gpu, &[4], DType::F32)?;
    let dst = Tensor::zeros(&gpu, &[4], DType::F32)?;
    let one = copy_run(&gpu, &src, &dst, 1, 1)?;
    let staging = gpu.create_buffer(
        "overhead readback",
        16,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    )?;
    let mut cases: Vec<(String, Recorder, bool)> =
        vec![("submit_wait:empty".into(), Recorder::new(&gpu), false)];
    for n in DISPATCHES {
        let mut rec = Recorder::new(&gpu);
        for _ in 0..n {
            rec.extend(one.clone());
        }
        cases.push((format!("submit_wait:dispatch{n}"), rec, false));
    }
    let mut readback = one.clone();
    readback.copy(dst.buffer(), 0, &staging, 0, 16);
    cases.push(("submit_readback:dispatch1".into(), readback, true));
    cases.retain(|(op, _, _)| ctx.wants(op, "tiny"));
    if cases.is_empty() {
        return Ok(());
    }
    let run = |rec: &Recorder, read: bool| -> Result<()> {
        rec.submit()?;
        if read {
            gpu.read_mapped(&staging, 16, "overhead readback").map(drop)
        } else {
            gpu.wait()
        }
    };
    for (_, rec, read) in &cases {
        run(rec, *read)?; // warm-up: pipelines, first-use allocations
    }
    let mut samples = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, rec, read)) in cases.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..REPS {
                run(rec, *read)?;
            }
            samples[i].push(t.elapsed().as_secs_f64() / REPS as f64);
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    let of = |op: &str| cases.iter().position(|c| c.0 == op).map(|i| medians[i]);
    let per_dispatch = match (of("submit_wait:dispatch1"), of("submit_wait:dispatch8")) {
        (Some(a), Some(b)) => Some((b - a) / 7.0),
        _ => None,
    };
    for (i, (op, _, _)) in cases.iter().enumerate() {
        let mut extra = vec![
            ("us".to_string(), format!("{:.1}", medians[i] * 1e6)),
            ("rounds".to_string(), ROUNDS.to_string()),
            ("reps".to_string(), REPS.to_string()),
        ];
        if let (Some(d), true) = (per_dispatch, op.starts_with("submit_wait:dispatch")) {
            extra.push((
                "us_per_added_dispatch".to_string(),
                format!("{:.1}", d * 1e6),
            ));
        }
        ctx.push_plain(op, "tiny", "-", medians[i] * 1e3, extra);
    }
    Ok(())
}
