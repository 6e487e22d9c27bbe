//! The `seq2seq` suite: words per second of the bundled G2P model (weights/g2p_rnn_dot.safetensors)
//! on held-out cmudict words (weights/fixtures/g2p_rnn_dot.json), at batch 1 and 64, greedy and
//! beam 4, with 1 decoding step per submission (a readback after every step, the classic host
//! loop) next to the GPU-resident chunked loop (4 and 8 steps per submission, and an input-sized
//! first submission followed by 1 or 2 steps per submission), side by side.
//! Wall-clock timing of whole `decode` calls (encoder included), median of repeated runs.
//! `weights/bench_g2p_torch.py` times PyTorch on the CPU on the same words for the ratio.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{BenchCtx, BenchLine};
use crate::error::{Error, Result};
use crate::models::seq2seq::{cli::bundled_model, DecodeOptions, Seq2Seq};

/// (steps per submission, first submission's steps per input symbol) compared: (1, 0) is the
/// baseline (one submission and one readback per step).
pub const SCHEDULES: [(usize, f32); 5] = [(1, 0.0), (4, 0.0), (8, 0.0), (1, 0.5), (2, 0.5)];

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

/// Runs the suite.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    let gpu = ctx.gpu.clone();
    let model = Seq2Seq::load(&gpu, &bundled_model())?;
    let all = words()?;
    for (batch, n_words) in [(1usize, 16usize), (64, 64)] {
        let set = &all[..n_words.min(all.len())];
        for beam in [1usize, 4] {
            let mode = if beam == 1 { "greedy" } else { "beam4" };
            let shape = format!("B{batch} words{}", set.len());
            let mut base_wps = None;
            for (spp, first) in SCHEDULES {
                let op = if first > 0.0 {
                    format!("g2p:{mode}:steps{spp}+first{first}L")
                } else {
                    format!("g2p:{mode}:steps{spp}")
                };
                if !ctx.wants(&op, &shape) {
                    continue;
                }
                let opts = DecodeOptions {
                    beam,
                    steps_per_submit: spp,
                    first_steps_per_input: first,
                    ..Default::default()
                };
                let run = || -> Result<f64> {
                    let t = Instant::now();
                    for part in set.chunks(batch) {
                        model.decode(&gpu, part, &opts)?;
                    }
                    Ok(t.elapsed().as_secs_f64())
                };
                run()?; // warm-up: pipelines
                let s0 = gpu.counters().submits.load(Ordering::Relaxed);
                let mut samples = Vec::new();
                let mut total = 0.0;
                while samples.len() < 3 || (total < ctx.target_s && samples.len() < 10) {
                    let s = run()?;
                    total += s;
                    samples.push(s);
                }
                let subs = gpu.counters().submits.load(Ordering::Relaxed) - s0;
                samples.sort_by(f64::total_cmp);
                let med = samples[samples.len() / 2];
                let wps = set.len() as f64 / med;
                let mut extra = vec![
                    ("words_per_s".to_string(), format!("{wps:.1}")),
                    (
                        "submits_per_word".to_string(),
                        format!("{:.1}", subs as f64 / (samples.len() * set.len()) as f64),
                    ),
                    ("reps".to_string(), samples.len().to_string()),
                ];
                match base_wps {
                    None if spp == 1 && first == 0.0 => base_wps = Some(wps),
                    Some(b) => {
                        extra.push(("speedup_vs_steps1".to_string(), format!("{:.2}", wps / b)))
                    }
                    None => {}
                }
                ctx.push(BenchLine {
                    suite: "seq2seq".into(),
                    op,
                    shape: shape.clone(),
                    dtype: "f32 x f16".into(),
                    median_ms: med * 1e3,
                    gflops: None,
                    gbps: None,
                    roofline_share: None,
                    roofline_of: None,
                    extra,
                });
            }
        }
    }
    Ok(())
}
