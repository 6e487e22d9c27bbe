//! The `marian` suite: generated tokens per second of Marian translation ([`Translator`]).
//!
//! - `bundled:*`: the bundled trained model (weights/marian, d_model 128, en->zh) on held-out
//!   English headwords (`weights/marian/data/heldout.tsv`, first column), batch 1 (8 calls of one
//!   word) and batch 32 (2 calls of 32 words), greedy and beam 4, the folder's generation config
//!   otherwise (max_length 64: outputs end where the model emits `</s>`). Each is timed with one
//!   decoder step per submission and readback (`steps1`, the classic host loop) next to the
//!   default [`StepSchedule`] (`steps4+8`); batch-1 greedy also with the whole decode in one
//!   submission (`stepsall`). Steps after every row ended still run (their results are
//!   ignored), so with these short outputs (about 4 tokens) larger chunks also pay for wasted
//!   steps; batch-1 greedy is therefore also timed with a forced length of
//!   `FIXED_NEW_TOKENS` = 32 (`B1 n8 N32`), where the schedules differ only in submissions.
//! - `bundled:per_token:*`: the time of one decoder step at step 10 and at step 100, within one
//!   run: batch 1 greedy with a forced length of 110 tokens (`min_new_tokens = max_new_tokens`),
//!   10 steps per submission, and the wall time of the chunks of steps 10-19 and 100-109
//!   ([`Translator::last_chunk_times`], recording to readback) divided by 10: the medians over
//!   the rounds, and the median of each round's ratio (`ratio_vs_step10`; both chunks of a round
//!   ran a quarter of a second apart, so the machine's load drifts less between them than between
//!   whole calls). The KV cache should keep the two nearly equal.
//! - `opus:*`: the opus-mt-en-zh-sized model with deterministic random weights
//!   ([`marian_random`], written once under `target/models/`): load time, GPU memory of the
//!   weights ([`crate::models::marian::MarianModel::weight_bytes`]), and tokens/s at batch 1
//!   greedy and batch 32 beam 4 on the source ids `weights/bench_marian_reference.py` uses (12
//!   tokens each), with exactly [`OPUS_NEW_TOKENS`] (batch 1) or [`OPUS_B32_NEW_TOKENS`] (batch
//!   32 beam 4, one timed run after the warm-up: it is slow on lavapipe) generated tokens per
//!   row (random weights never end on their own). The per-run state (KV cache, cross-attention K/V, logits) is not
//!   measured by the engine; the lines give it computed from the shapes the decoder declares.
//!
//! "Generated tokens" are the tokens of each input's returned best hypothesis after the decoder
//! start token (`</s>` included), summed over the inputs; tokens/s divides them by the median wall
//! time of the whole `translate_ids` calls (encoder included). The cases of one group are timed in
//! interleaved rounds (one run of each per round, medians over the rounds), so ratios between them
//! come from the same machine state. Missing model files skip their cases with a note on stderr.
//! `weights/bench_marian_reference.py` times Hugging Face transformers and CTranslate2 on the CPU
//! on the same models and inputs.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::marian_random;
use super::BenchCtx;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::marian::search::{GenerateOptions, GenerationParams};
use crate::models::marian::{MarianConfig, StepSchedule, Translator};

/// Rounds of the bundled model's interleaved timing.
const ROUNDS: usize = 7;
/// Rounds of the opus-sized model's batch-1 timing.
const OPUS_ROUNDS_B1: usize = 5;
/// Rounds of the opus-sized model's batch-32 beam-4 timing after its warm-up run (one call of
/// [`OPUS_B32_NEW_TOKENS`] tokens takes about 40 s on lavapipe).
const OPUS_ROUNDS_B32: usize = 1;
/// Tokens generated per row by the opus-sized batch-1 case (the reference script's
/// `--random-new-tokens` default).
pub const OPUS_NEW_TOKENS: usize = 32;
/// Tokens generated per row by the opus-sized batch-32 beam-4 case: fewer, since one call of 32
/// tokens took 170 s on lavapipe (run the reference script with `--random-new-tokens 8` to
/// compare).
pub const OPUS_B32_NEW_TOKENS: usize = 8;
/// Forced output length of the bundled model's batch-1 schedule comparison without wasted steps.
const FIXED_NEW_TOKENS: usize = 32;
/// Rounds of the per-token case.
const PER_TOKEN_ROUNDS: usize = 11;
/// The per-token case's steps: the chunks starting at these steps are timed.
const PER_TOKEN_STEPS: [usize; 2] = [10, 100];
/// The per-token case's forced length and its steps per submission.
const PER_TOKEN_TOKENS: usize = 110;
const PER_TOKEN_CHUNK: usize = 10;
/// One decoder step per submission: the host-loop baseline.
const STEPS1: StepSchedule = StepSchedule { first: 1, chunk: 1 };

/// The folder the suite writes the opus-sized random model into (once; reused while its files
/// are there): `$CARGO_TARGET_DIR/models/marian_opus_random`, else `target/models/...` of the
/// source tree.
pub fn opus_random_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("models").join("marian_opus_random")
}

/// Writes the opus-sized random folder into `dir` unless a complete one is there: written into a
/// sibling folder first and renamed, so an interrupted write never looks complete.
pub fn ensure_opus_random(dir: &Path) -> Result<()> {
    let complete = dir.join("model.safetensors").is_file()
        && std::fs::read_to_string(dir.join("config.json"))
            .is_ok_and(|c| c == marian_random::CONFIG_JSON);
    if complete {
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    marian_random::write_random_opus_folder(&partial).map_err(io(&partial))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::rename(&partial, dir).map_err(io(dir))
}

/// The English side of the held-out pairs (`data/heldout.tsv` of the bundled folder).
fn heldout(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("data").join("heldout.tsv");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|w| !w.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// One timed case: a schedule and options applied to a list of calls.
struct Case {
    op: String,
    shape: String,
    schedule: StepSchedule,
    opts: GenerateOptions,
    /// The inputs of each `translate_ids` call.
    calls: Vec<Vec<Vec<u32>>>,
}

/// What the interleaved rounds measured for one case.
struct Measured {
    /// Seconds of all the case's calls, per round.
    samples: Vec<f64>,
    /// Generated tokens of all the case's calls (the same every run).
    tokens: usize,
    /// Queue submissions of all the case's calls, per run.
    submits: f64,
}

impl Measured {
    fn median_s(&self) -> f64 {
        let mut v = self.samples.clone();
        super::median(&mut v)
    }

    fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.median_s()
    }
}

/// Runs the calls of `case` once: seconds and generated tokens.
fn run_case(t: &mut Translator, case: &Case) -> Result<(f64, usize)> {
    t.set_schedule(case.schedule)?;
    let start = Instant::now();
    let mut tokens = 0;
    for ids in &case.calls {
        let out = t.translate_ids_with(ids, &case.opts, None)?;
        tokens += out
            .iter()
            .map(|tr| tr.ids.len().saturating_sub(1))
            .sum::<usize>();
    }
    Ok((start.elapsed().as_secs_f64(), tokens))
}

/// One warm-up run of every case (pipelines, plans), then `rounds` rounds of one run of each.
fn time_interleaved(
    gpu: &Gpu,
    t: &mut Translator,
    cases: &[Case],
    rounds: usize,
) -> Result<Vec<Measured>> {
    let mut out = Vec::with_capacity(cases.len());
    for case in cases {
        let (_, tokens) = run_case(t, case)?;
        out.push(Measured {
            samples: Vec::with_capacity(rounds),
            tokens,
            submits: 0.0,
        });
    }
    for _ in 0..rounds {
        for (case, m) in cases.iter().zip(out.iter_mut()) {
            let s0 = gpu.counters().submits.load(Ordering::Relaxed);
            let (secs, _) = run_case(t, case)?;
            m.submits += (gpu.counters().submits.load(Ordering::Relaxed) - s0) as f64;
            m.samples.push(secs);
        }
    }
    for m in &mut out {
        m.submits /= rounds.max(1) as f64;
    }
    t.set_schedule(StepSchedule::default())?;
    Ok(out)
}

/// Options from the folder's configs with `beams` and, when given, an exact number of new tokens.
fn options(t: &Translator, beams: usize, exact_new: Option<usize>) -> Result<GenerateOptions> {
    t.options(&GenerationParams {
        num_beams: Some(beams),
        max_new_tokens: exact_new,
        min_new_tokens: exact_new,
        ..Default::default()
    })
}

fn schedule_name(s: StepSchedule, max_steps: usize) -> String {
    if s.first >= max_steps {
        "stepsall".into()
    } else if s.first == s.chunk {
        format!("steps{}", s.chunk)
    } else {
        format!("steps{}+{}", s.first, s.chunk)
    }
}

/// Pushes one line per case: median ms of all the case's calls, tokens/s, submissions per call,
/// and the speed-up over the case named `baseline` (when there is one) as `speedup_vs_steps1`.
fn push_cases(
    ctx: &mut BenchCtx,
    cases: &[Case],
    measured: &[Measured],
    baseline: Option<usize>,
    rounds: usize,
    more: impl Fn(&Case) -> Vec<(String, String)>,
) {
    let base = baseline.map(|i| measured[i].tokens_per_s());
    for (case, m) in cases.iter().zip(measured) {
        let mut extra = vec![
            (
                "tokens_per_s".to_string(),
                format!("{:.1}", m.tokens_per_s()),
            ),
            ("tokens".to_string(), m.tokens.to_string()),
            (
                "submits_per_call".to_string(),
                format!("{:.1}", m.submits / case.calls.len().max(1) as f64),
            ),
            ("rounds".to_string(), rounds.to_string()),
        ];
        if let Some(b) = base {
            extra.push((
                "speedup_vs_steps1".to_string(),
                format!("{:.2}", m.tokens_per_s() / b),
            ));
        }
        extra.extend(more(case));
        ctx.push_plain(
            &case.op,
            &case.shape,
            "f32 x f16",
            m.median_s() * 1e3,
            extra,
        );
    }
}

/// Runs the suite.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    let bundled = crate::cli::translate::bundled_model();
    if bundled.join("model.safetensors").is_file() && bundled.join("data/heldout.tsv").is_file() {
        bundled_cases(ctx, &bundled)?;
    } else {
        eprintln!(
            "heedful bench marian: {} has no model.safetensors or data/heldout.tsv; bundled-model \
             cases skipped",
            bundled.display()
        );
    }
    opus_cases(ctx)
}

fn bundled_cases(ctx: &mut BenchCtx, dir: &Path) -> Result<()> {
    let gpu = ctx.gpu.clone();
    let mut t = Translator::load(&gpu, dir)?;
    let words = heldout(dir)?;
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    let ids = t.encode(&refs[..64.min(refs.len())])?;
    let default = StepSchedule::default();
    for (batch, n) in [(1usize, 8usize), (32, 64)] {
        let set = &ids[..n.min(ids.len())];
        let calls: Vec<Vec<Vec<u32>>> = set.chunks(batch).map(<[_]>::to_vec).collect();
        let shape = format!("B{batch} n{}", set.len());
        for beams in [1usize, 4] {
            let opts = options(&t, beams, None)?;
            let max_steps = opts.max_steps();
            let mut schedules = vec![STEPS1, default];
            if batch == 1 && beams == 1 {
                schedules.push(StepSchedule {
                    first: max_steps,
                    chunk: max_steps,
                });
            }
            let mode = if beams == 1 { "greedy" } else { "beam4" };
            let cases: Vec<Case> = schedules
                .into_iter()
                .map(|s| Case {
                    op: format!("bundled:{mode}:{}", schedule_name(s, max_steps)),
                    shape: shape.clone(),
                    schedule: s,
                    opts: opts.clone(),
                    calls: calls.clone(),
                })
                .filter(|c| ctx.wants(&c.op, &c.shape))
                .collect();
            if cases.is_empty() {
                continue;
            }
            let measured = time_interleaved(&gpu, &mut t, &cases, ROUNDS)?;
            let baseline = cases.iter().position(|c| c.schedule == STEPS1);
            push_cases(ctx, &cases, &measured, baseline, ROUNDS, |_| Vec::new());
        }
    }
    // Batch 1 greedy with a forced length: no step runs after the output ended, so the schedules
    // differ only in submissions and readbacks.
    let set = &ids[..8.min(ids.len())];
    let calls: Vec<Vec<Vec<u32>>> = set.iter().map(|s| vec![s.clone()]).collect();
    let opts = options(&t, 1, Some(FIXED_NEW_TOKENS))?;
    let max_steps = opts.max_steps();
    let all = StepSchedule {
        first: max_steps,
        chunk: max_steps,
    };
    let cases: Vec<Case> = [STEPS1, default, all]
        .into_iter()
        .map(|s| Case {
            op: format!("bundled:greedy:{}", schedule_name(s, max_steps)),
            shape: format!("B1 n{} N{FIXED_NEW_TOKENS}", set.len()),
            schedule: s,
            opts: opts.clone(),
            calls: calls.clone(),
        })
        .filter(|c| ctx.wants(&c.op, &c.shape))
        .collect();
    if !cases.is_empty() {
        let measured = time_interleaved(&gpu, &mut t, &cases, ROUNDS)?;
        let baseline = cases.iter().position(|c| c.schedule == STEPS1);
        push_cases(ctx, &cases, &measured, baseline, ROUNDS, |_| Vec::new());
    }
    per_token(ctx, &mut t, &ids[0])
}

/// Time per decoder step at step 10 and at step 100, within each run (see the module docs).
fn per_token(ctx: &mut BenchCtx, t: &mut Translator, src: &[u32]) -> Result<()> {
    let names: Vec<(String, String)> = PER_TOKEN_STEPS
        .iter()
        .map(|&s| {
            (
                format!("bundled:per_token:step{s}"),
                format!("B1 greedy N{PER_TOKEN_TOKENS} chunk{PER_TOKEN_CHUNK}"),
            )
        })
        .collect();
    if !names.iter().any(|(op, shape)| ctx.wants(op, shape)) {
        return Ok(());
    }
    let p = t.config().max_position_embeddings;
    if PER_TOKEN_TOKENS > p {
        eprintln!(
            "heedful bench marian: per-token case needs {PER_TOKEN_TOKENS} decoder positions, the \
             bundled model has {p}; skipped"
        );
        return Ok(());
    }
    t.set_schedule(StepSchedule {
        first: PER_TOKEN_CHUNK,
        chunk: PER_TOKEN_CHUNK,
    })?;
    let opts = options(t, 1, Some(PER_TOKEN_TOKENS))?;
    let call = vec![src.to_vec()];
    // Per round, ms per step of the chunk starting at each of PER_TOKEN_STEPS.
    let mut per_round: Vec<[f64; 2]> = Vec::with_capacity(PER_TOKEN_ROUNDS);
    for round in 0..=PER_TOKEN_ROUNDS {
        t.translate_ids_with(&call, &opts, None)?;
        let chunks = t.last_chunk_times();
        let at = |step: usize| -> Result<f64> {
            chunks
                .iter()
                .find(|c| c.first_step == step && c.steps > 0)
                .map(|c| c.seconds * 1e3 / c.steps as f64)
                .ok_or_else(|| {
                    Error::invalid(
                        "bench marian",
                        format!("per-token case: no chunk starts at step {step} ({chunks:?})"),
                    )
                })
        };
        // Round 0 warms the plan and pipelines up.
        if round > 0 {
            per_round.push([at(PER_TOKEN_STEPS[0])?, at(PER_TOKEN_STEPS[1])?]);
        }
    }
    t.set_schedule(StepSchedule::default())?;
    let mut ratios: Vec<f64> = per_round.iter().map(|r| r[1] / r[0]).collect();
    let ratio = super::median(&mut ratios);
    for (i, (op, shape)) in names.iter().enumerate() {
        let mut v: Vec<f64> = per_round.iter().map(|r| r[i]).collect();
        let fastest = v.iter().copied().fold(f64::INFINITY, f64::min);
        let ms = super::median(&mut v);
        let mut extra = vec![
            ("fastest_ms".to_string(), format!("{fastest:.3}")),
            ("rounds".to_string(), PER_TOKEN_ROUNDS.to_string()),
        ];
        if i > 0 {
            extra.push(("ratio_vs_step10".to_string(), format!("{ratio:.2}")));
        }
        if ctx.wants(op, shape) {
            ctx.push_plain(op, shape, "f32 x f16", ms, extra);
        }
    }
    Ok(())
}

/// Bytes of the per-run decoder state of one plan, from the shapes `MarianModel::declare_decoder`
/// declares (f32): (self-attention KV cache, cross-attention K/V, logits).
fn state_bytes(
    c: &MarianConfig,
    batch: usize,
    beams: usize,
    src_len: usize,
    steps: usize,
) -> [u64; 3] {
    let rows = (batch * beams) as u64;
    let (e, l) = (c.d_model as u64, c.decoder_layers as u64);
    // Two planes (K, V) per layer; beam search keeps two copies that alternate.
    let copies = if beams > 1 { 2 } else { 1 };
    let kv = copies * 2 * l * rows * steps.max(1) as u64 * e * 4;
    // K and V per layer, [R, S, E]; beam search also projects once per item before expanding.
    let mut cross = 2 * l * rows * src_len as u64 * e * 4;
    if beams > 1 {
        cross += batch as u64 * src_len as u64 * e * 4;
    }
    let logits = rows * c.decoder_vocab() as u64 * 4;
    [kv, cross, logits]
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 20) as f64)
}

fn opus_cases(ctx: &mut BenchCtx) -> Result<()> {
    let shape_model = "d512 6+6 V65001";
    let b1 = format!("B1 N{OPUS_NEW_TOKENS}");
    let b32 = format!("B32 N{OPUS_B32_NEW_TOKENS}");
    let ops = [
        ("opus:load".to_string(), shape_model.to_string()),
        ("opus:greedy:steps1".to_string(), b1.clone()),
        ("opus:greedy:steps4+8".to_string(), b1.clone()),
        ("opus:beam4:steps4+8".to_string(), b32.clone()),
    ];
    if !ops.iter().any(|(op, shape)| ctx.wants(op, shape)) {
        return Ok(());
    }
    let dir = opus_random_dir();
    let written = Instant::now();
    if let Err(e) = ensure_opus_random(&dir) {
        eprintln!("heedful bench marian: opus-sized random model not available ({e}); skipped");
        return Ok(());
    }
    let write_s = written.elapsed().as_secs_f64();
    let gpu = ctx.gpu.clone();
    // Load: three loads (the first may read the file from disk, later ones from the page cache).
    let mut loads = Vec::new();
    let mut translator = None;
    for _ in 0..3 {
        drop(translator.take());
        let start = Instant::now();
        let t = Translator::load(&gpu, &dir)?;
        loads.push(start.elapsed().as_secs_f64());
        translator = Some(t);
    }
    let mut t = translator
        .ok_or_else(|| Error::invalid("bench marian", "the opus-sized model did not load"))?;
    let c = t.config().clone();
    let file_bytes = std::fs::metadata(dir.join("model.safetensors"))
        .map(|m| m.len())
        .unwrap_or(0);
    if ctx.wants(&ops[0].0, &ops[0].1) {
        let first = loads[0];
        let extra = vec![
            ("first_load_ms".to_string(), format!("{:.0}", first * 1e3)),
            ("loads".to_string(), loads.len().to_string()),
            ("weights_gpu_mib".to_string(), mib(t.model().weight_bytes())),
            ("file_mib".to_string(), mib(file_bytes)),
            ("folder_ready_s".to_string(), format!("{write_s:.1}")),
        ];
        ctx.push_plain(
            &ops[0].0,
            &ops[0].1,
            "f16",
            super::median(&mut loads) * 1e3,
            extra,
        );
    }
    // The reference script's source ids: 11 ids then </s> (eos 0).
    let src: Vec<Vec<u32>> = (0..32u32)
        .map(|i| {
            let mut s: Vec<u32> = (0..11u32).map(|j| (97 * i + 13 * j) % 64000 + 2).collect();
            s.push(0);
            s
        })
        .collect();
    let src_len = src[0].len().div_ceil(8) * 8;
    let state = |batch: usize, beams: usize, steps: usize| {
        let [kv, cross, logits] = state_bytes(&c, batch, beams, src_len, steps);
        vec![
            ("kv_cache_mib".to_string(), mib(kv)),
            ("cross_kv_mib".to_string(), mib(cross)),
            ("logits_mib".to_string(), mib(logits)),
        ]
    };
    let greedy = options(&t, 1, Some(OPUS_NEW_TOKENS))?;
    let cases: Vec<Case> = [(STEPS1, &ops[1]), (StepSchedule::default(), &ops[2])]
        .into_iter()
        .filter(|(_, (op, shape))| ctx.wants(op, shape))
        .map(|(schedule, (op, shape))| Case {
            op: op.clone(),
            shape: shape.clone(),
            schedule,
            opts: greedy.clone(),
            calls: vec![vec![src[0].clone()]],
        })
        .collect();
    if !cases.is_empty() {
        let measured = time_interleaved(&gpu, &mut t, &cases, OPUS_ROUNDS_B1)?;
        let baseline = cases.iter().position(|c| c.schedule == STEPS1);
        push_cases(ctx, &cases, &measured, baseline, OPUS_ROUNDS_B1, |_| {
            state(1, 1, OPUS_NEW_TOKENS)
        });
    }
    if ctx.wants(&ops[3].0, &ops[3].1) {
        let cases = vec![Case {
            op: ops[3].0.clone(),
            shape: ops[3].1.clone(),
            schedule: StepSchedule::default(),
            opts: options(&t, 4, Some(OPUS_B32_NEW_TOKENS))?,
            calls: vec![src.clone()],
        }];
        let measured = time_interleaved(&gpu, &mut t, &cases, OPUS_ROUNDS_B32)?;
        push_cases(ctx, &cases, &measured, None, OPUS_ROUNDS_B32, |_| {
            state(32, 4, OPUS_B32_NEW_TOKENS)
        });
    }
    Ok(())
}
