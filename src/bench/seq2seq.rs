//! The `seq2seq` suite: words per second of the bundled G2P model (weights/g2p_rnn_dot.safetensors)
//! on held-out cmudict words (weights/fixtures/g2p_rnn_dot.json), at batch 1 and 64, greedy and
//! beam 4, with 1 decoding step per submission (a readback after every step, the classic host
//! loop) next to the GPU-resident chunked loop (4 and 8 steps per submission, all steps in one
//! submission, and an input-sized first submission followed by 2 steps per submission), for the
//! fused kernels (greedy: one dispatch per chunk of steps; beam: three per step) and the per-op
//! ones (~10 dispatches per step).
//!
//! Wall-clock timing of whole `decode` calls (encoder included). The cases of one batch size and
//! mode are timed in interleaved rounds (one run of each per round, medians over the rounds), so a
//! change of machine load or driver state during the run moves every case alike and the ratios
//! between them hold. `weights/bench_g2p_torch.py` times PyTorch on the CPU on the same words.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::BenchCtx;
use crate::cli::g2p::bundled_model;
use crate::error::{Error, Result};
use crate::models::seq2seq::{DecodeKernel, DecodeOptions, Seq2Seq};

/// (steps per submission, first submission's steps per input symbol) compared; `usize::MAX` steps
/// is one submission for the whole decode. (1, 0) is the baseline: one submission and one readback
/// per step.
pub const SCHEDULES: [(usize, f32); 5] =
    [(1, 0.0), (4, 0.0), (8, 0.0), (usize::MAX, 0.0), (2, 0.5)];

/// Rounds of the interleaved timing.
const ROUNDS: usize = 7;

fn words() -> Result<Vec<Vec<u32>>> {
    let path = bundled_model().with_file_name("fixtures/g2p_rnn_dot.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::invalid("bench", format!("{}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid("bench", format!("{}: {e}", path.display())))?;
    let ids = v["ids"]
        .as_array()
        .ok_or_else(|| Error::invalid("bench", "fixture without ids"))?
        .iter()
        .map(|r| {
            r.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64())
                        .map(|x| x as u32)
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    Ok(ids)
}

fn schedule_name(spp: usize, first: f32) -> String {
    let steps = if spp == usize::MAX {
        "all".to_string()
    } else {
        spp.to_string()
    };
    if first > 0.0 {
        format!("steps{steps}+first{first}L")
    } else {
        format!("steps{steps}")
    }
}

/// Runs the suite.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    let gpu = ctx.gpu.clone();
    let model = Seq2Seq::load(&gpu, &bundled_model())?;
    let all = words()?;
    for (batch, n_words) in [(1usize, 16usize), (64, 64)] {
        let set = &all[..n_words.min(all.len())];
        let shape = format!("B{batch} words{}", set.len());
        for beam in [1usize, 4] {
            let kernels = [
                (DecodeKernel::Fused, "fused"),
                (DecodeKernel::PerOp, "perop"),
            ];
            let mode = if beam == 1 { "greedy" } else { "beam4" };
            // (op name, options) of every case of this batch size and mode.
            let mut cases = Vec::new();
            for (kernel, kname) in kernels {
                for (spp, first) in SCHEDULES {
                    let op = format!("g2p:{mode}:{kname}:{}", schedule_name(spp, first));
                    if ctx.wants(&op, &shape) {
                        let opts = DecodeOptions {
                            beam,
                            steps_per_submit: spp.min(model.config().max_len),
                            first_steps_per_input: first,
                            kernel,
                            ..Default::default()
                        };
                        cases.push((op, kname, spp == 1 && first == 0.0, opts));
                    }
                }
            }
            if cases.is_empty() {
                continue;
            }
            let run = |opts: &DecodeOptions| -> Result<f64> {
                let t = Instant::now();
                for part in set.chunks(batch) {
                    model.decode(&gpu, part, opts)?;
                }
                Ok(t.elapsed().as_secs_f64())
            };
            let mut samples = vec![Vec::new(); cases.len()];
            let mut submits = vec![0u64; cases.len()];
            for (_, _, _, opts) in &cases {
                run(opts)?; // warm-up: pipelines and plans
            }
            for _ in 0..ROUNDS {
                for (i, (_, _, _, opts)) in cases.iter().enumerate() {
                    let s0 = gpu.counters().submits.load(Ordering::Relaxed);
                    samples[i].push(run(opts)?);
                    submits[i] += gpu.counters().submits.load(Ordering::Relaxed) - s0;
                }
            }
            let wps: Vec<f64> = samples
                .iter_mut()
                .map(|v| {
                    v.sort_by(f64::total_cmp);
                    set.len() as f64 / v[v.len() / 2]
                })
                .collect();
            // Baselines: each kernel's one-step-per-submission case, and the per-op one.
            let base_of = |kname: &str| {
                cases
                    .iter()
                    .position(|c| c.1 == kname && c.2)
                    .map(|i| wps[i])
            };
            for (i, (op, kname, _, _)) in cases.iter().enumerate() {
                let mut extra = vec![
                    ("words_per_s".to_string(), format!("{:.1}", wps[i])),
                    (
                        "submits_per_word".to_string(),
                        format!("{:.1}", submits[i] as f64 / (ROUNDS * set.len()) as f64),
                    ),
                    ("rounds".to_string(), ROUNDS.to_string()),
                ];
                if let Some(b) = base_of(kname) {
                    extra.push((
                        "speedup_vs_steps1".to_string(),
                        format!("{:.2}", wps[i] / b),
                    ));
                }
                if *kname != "perop" {
                    if let Some(b) = base_of("perop") {
                        extra.push((
                            "speedup_vs_perop_steps1".to_string(),
                            format!("{:.2}", wps[i] / b),
                        ));
                    }
                }
                ctx.push_plain(
                    op,
                    &shape,
                    "f32 x f16",
                    set.len() as f64 / wps[i] * 1e3,
                    extra,
                );
            }
        }
    }
    Ok(())
}
