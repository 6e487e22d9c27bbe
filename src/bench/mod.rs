//! Benchmark suites: `cargo bench` and `heedful bench` run the same code.
//!
//! Every run first measures the adapter's own roofline (an FMA-peak shader and a copy-bandwidth
//! shader, [`roofline`]), then each suite times its kernels and reports, per op and shape, the median
//! time, GFLOP/s or GB/s, and the share of that roofline. Suites live one per file under `src/bench/`
//! and are listed in [`suites`].
//!
//! ```no_run
//! // All suites whose `suite/op/shape` key contains "gemv", printed as text.
//! let lines = heedful::bench::run(Some("gemv"), false)?;
//! assert!(lines.iter().all(|l| l.median_ms > 0.0));
//! # Ok::<(), heedful::Error>(())
//! ```

pub mod attention;
pub mod marian;
pub mod marian_random;
pub mod matmul;
pub mod models;
pub mod norms;
pub mod overhead;
pub mod recurrent;
pub mod roofline;
pub mod seq2seq;
pub mod weights;

use std::io::Write;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder, Timer};

pub use roofline::Roofline;

/// One measured result.
#[derive(Clone, Debug, Serialize)]
pub struct BenchLine {
    /// Suite name (`roofline`, `matmul`, `gemv`, ...).
    pub suite: String,
    /// What was timed, with the kernel variant where one was forced (`matmul:blocked`).
    pub op: String,
    /// Problem shape, for example `1024x1024x1024` (M x K x N) or `128x384->1152`.
    pub shape: String,
    /// Data type(s), for example `f32` or `f32 x f16`.
    pub dtype: String,
    /// Median time of one run in milliseconds.
    pub median_ms: f64,
    /// Arithmetic rate, for compute-bound lines.
    pub gflops: Option<f64>,
    /// Memory rate, for memory-bound lines (bytes as stated in `extra`).
    pub gbps: Option<f64>,
    /// Fraction of the roofline named by `roofline_of` (`fma` peak or `copy` bandwidth). Where the
    /// case was timed alternately with a short roofline run (`roofline_interleaved` in `extra`),
    /// the share is of that interleaved rate; otherwise of the run's initial roofline lines.
    pub roofline_share: Option<f64>,
    /// `fma` or `copy`: which roofline `roofline_share` divides by.
    pub roofline_of: Option<String>,
    /// Anything else worth recording (repetitions, bytes counted, kernel chosen); a JSON object
    /// in JSON output.
    #[serde(serialize_with = "pairs_as_map")]
    pub extra: Vec<(String, String)>,
}

fn pairs_as_map<S: serde::Serializer>(
    pairs: &[(String, String)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// A benchmark suite.
pub struct Suite {
    /// Name used in filters and output.
    pub name: &'static str,
    /// Runs the suite's cases, pushing lines into the context.
    pub run: fn(&mut BenchCtx) -> Result<()>,
}

/// Every registered suite, in run order.
pub fn suites() -> Vec<Suite> {
    vec![
        Suite {
            name: "roofline",
            run: roofline::suite,
        },
        Suite {
            name: "matmul",
            run: matmul::suite_matmul,
        },
        Suite {
            name: "gemv",
            run: matmul::suite_gemv,
        },
        Suite {
            name: "norms",
            run: norms::suite,
        },
        Suite {
            name: "attention",
            run: attention::suite,
        },
        Suite {
            name: "recurrent",
            run: recurrent::suite,
        },
        Suite {
            name: "minilm",
            run: models::suite_minilm,
        },
        Suite {
            name: "executor",
            run: models::suite_executor,
        },
        Suite {
            name: "weights",
            run: weights::suite,
        },
        Suite {
            name: "seq2seq",
            run: seq2seq::suite,
        },
        Suite {
            name: "marian",
            run: marian::suite,
        },
        Suite {
            name: "overhead",
            run: overhead::suite,
        },
    ]
}

/// State shared by the suites of one run.
pub struct BenchCtx {
    /// The GPU being measured.
    pub gpu: Gpu,
    /// The adapter's roofline, measured at the start of the run.
    pub roofline: Roofline,
    /// Only cases whose `suite/op/shape` key contains this run.
    pub filter: Option<String>,
    /// Lines measured so far.
    pub lines: Vec<BenchLine>,
    /// Print each line as text when it is measured.
    pub print: bool,
    timer: Timer,
    /// Short runs of the best FMA and copy configurations, timed alternately with each case so its
    /// share of the roofline holds even when the machine's load changes during the run.
    pub(crate) refs: Option<(Reference, Reference)>,
    /// Stop repeating after this much measured time (seconds)...
    pub target_s: f64,
    /// ...or this many repetitions.
    pub max_reps: usize,
    suite: String,
    /// The first error printing a line met (a full disk, a closed pipe): printing stops, and
    /// [`run_suites`] returns it after the suite that met it.
    print_error: Option<std::io::Error>,
}

/// Timing of one case: median and how many repetitions made it.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Median seconds per run.
    pub median_s: f64,
    /// Timed repetitions (after one warm-up).
    pub reps: usize,
    /// The roofline reference (FMA GFLOP/s or copy GB/s) timed alternately with the case, when it
    /// was timed with [`BenchCtx::time_against`].
    pub reference: Option<f64>,
}

/// Which roofline a case is judged against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Arithmetic: the FMA peak.
    Compute,
    /// Memory traffic: the copy bandwidth.
    Memory,
}

/// A roofline shader ready to run, and the work one run does (flops or bytes).
pub(crate) struct Reference {
    pub rec: Recorder,
    pub work: f64,
}

impl BenchCtx {
    /// A context on `gpu` (roofline not yet measured: call [`BenchCtx::measure_roofline`]).
    pub fn new(gpu: &Gpu, filter: Option<&str>, print: bool) -> Result<BenchCtx> {
        Ok(BenchCtx {
            gpu: gpu.clone(),
            roofline: Roofline::default(),
            filter: filter.map(str::to_string),
            lines: Vec::new(),
            print,
            timer: Timer::new(gpu, false)?,
            refs: None,
            target_s: 0.4,
            max_reps: 30,
            suite: String::new(),
            print_error: None,
        })
    }

    /// The suite being run.
    pub fn current_suite(&self) -> &str {
        &self.suite
    }

    /// "gpu timestamps" or "wall clock".
    pub fn timing_method(&self) -> &'static str {
        self.timer.method()
    }

    /// Measures the FMA peak and copy bandwidth (stored in `self.roofline`).
    pub fn measure_roofline(&mut self) -> Result<()> {
        self.roofline = roofline::measure(self)?;
        Ok(())
    }

    /// True when the case `op`/`shape` of the current suite passes the filter.
    pub fn wants(&self, op: &str, shape: &str) -> bool {
        match &self.filter {
            None => true,
            Some(f) => format!("{}/{op}/{shape}", self.suite).contains(f.as_str()),
        }
    }

    /// Times `rec`: one warm-up run, then repetitions until `target_s` of measured time (at least 3
    /// runs, fewer only when 3 runs would exceed three times the target) or `max_reps`.
    pub fn time(&self, rec: &Recorder) -> Result<Timing> {
        self.time_inner(rec, None)
    }

    /// Like [`BenchCtx::time`], alternating every run of `rec` with a short run of the roofline
    /// reference for `bound`; the median reference rate goes into [`Timing::reference`].
    pub fn time_against(&self, rec: &Recorder, bound: Bound) -> Result<Timing> {
        let reference = self.refs.as_ref().map(|(fma, copy)| match bound {
            Bound::Compute => fma,
            Bound::Memory => copy,
        });
        self.time_inner(rec, reference)
    }

    /// Times several recordings side by side: one warm-up run of each, then rounds that run each
    /// once in turn until every one has `target_s` of measured time in total (at least 3 rounds,
    /// at most `max_reps`, one when the rounds run past three times the budget), so a neighbour's load on a shared machine
    /// falls on all of them alike and their ratios hold. One [`Timing`] per recording, in order.
    pub fn time_interleaved(&self, recs: &[&Recorder]) -> Result<Vec<Timing>> {
        let warm = Instant::now();
        for rec in recs {
            self.timer.time(rec)?;
        }
        let warm_s = warm.elapsed().as_secs_f64();
        let mut samples = vec![Vec::new(); recs.len()];
        let mut total = 0.0;
        loop {
            let mut round = Vec::with_capacity(recs.len());
            for (rec, s) in recs.iter().zip(samples.iter_mut()) {
                let t = self.timer.time(rec)?;
                s.push(t);
                round.push(t);
            }
            total += round.iter().sum::<f64>();
            let least = samples
                .iter()
                .map(|s| s.iter().sum::<f64>())
                .fold(f64::INFINITY, f64::min);
            let n = samples[0].len();
            let enough = least >= self.target_s && n >= 3;
            let too_slow = (total + warm_s) >= 3.0 * self.target_s * recs.len() as f64;
            if n >= self.max_reps || enough || too_slow {
                break;
            }
        }
        Ok(samples
            .into_iter()
            .map(|mut s| Timing {
                median_s: median(&mut s),
                reps: s.len(),
                reference: None,
            })
            .collect())
    }

    fn time_inner(&self, rec: &Recorder, reference: Option<&Reference>) -> Result<Timing> {
        let warm = Instant::now();
        self.timer.time(rec)?;
        let warm_s = warm.elapsed().as_secs_f64();
        let mut samples = Vec::new();
        let mut ref_rates = Vec::new();
        let mut total = 0.0;
        loop {
            if let Some(r) = reference {
                ref_rates.push(r.work / self.timer.time(&r.rec)?);
            }
            let t = self.timer.time(rec)?;
            samples.push(t);
            total += t;
            let n = samples.len();
            let enough = total >= self.target_s && n >= 3;
            let too_slow = (total + warm_s) >= 3.0 * self.target_s && n >= 1;
            if n >= self.max_reps || enough || too_slow {
                break;
            }
        }
        Ok(Timing {
            median_s: median(&mut samples),
            reps: samples.len(),
            reference: (!ref_rates.is_empty()).then(|| median(&mut ref_rates) * 1e-9),
        })
    }

    /// Adds a compute-bound line: `flops` per run, share of the FMA peak.
    pub fn push_compute(
        &mut self,
        op: &str,
        shape: &str,
        dtype: &str,
        t: Timing,
        flops: f64,
        extra: Vec<(String, String)>,
    ) {
        self.push_rate(op, shape, dtype, t, flops, Bound::Compute, extra);
    }

    /// Adds a memory-bound line: `bytes` moved per run, share of the copy bandwidth.
    pub fn push_memory(
        &mut self,
        op: &str,
        shape: &str,
        dtype: &str,
        t: Timing,
        bytes: f64,
        extra: Vec<(String, String)>,
    ) {
        self.push_rate(op, shape, dtype, t, bytes, Bound::Memory, extra);
    }

    /// Adds a line with the rate of `work` (flops or bytes) per run and its share of the roofline
    /// for `bound` (the interleaved reference when the case was timed against one).
    #[allow(clippy::too_many_arguments)]
    fn push_rate(
        &mut self,
        op: &str,
        shape: &str,
        dtype: &str,
        t: Timing,
        work: f64,
        bound: Bound,
        extra: Vec<(String, String)>,
    ) {
        let rate = work / t.median_s * 1e-9;
        let (peak, of) = match bound {
            Bound::Compute => (self.roofline.fma_gflops, "fma"),
            Bound::Memory => (self.roofline.copy_gbps, "copy"),
        };
        let peak = t.reference.unwrap_or(peak);
        let share = (peak > 0.0).then(|| rate / peak);
        self.push(BenchLine {
            suite: self.suite.clone(),
            op: op.into(),
            shape: shape.into(),
            dtype: dtype.into(),
            median_ms: t.median_s * 1e3,
            gflops: (bound == Bound::Compute).then_some(rate),
            gbps: (bound == Bound::Memory).then_some(rate),
            roofline_share: share,
            roofline_of: share.map(|_| of.into()),
            extra: with_reps(extra, t),
        });
    }

    /// Adds a line with no rate columns (the suite's own figures go in `extra`).
    pub fn push_plain(
        &mut self,
        op: &str,
        shape: &str,
        dtype: &str,
        median_ms: f64,
        extra: Vec<(String, String)>,
    ) {
        self.push(BenchLine {
            suite: self.suite.clone(),
            op: op.into(),
            shape: shape.into(),
            dtype: dtype.into(),
            median_ms,
            gflops: None,
            gbps: None,
            roofline_share: None,
            roofline_of: None,
            extra,
        });
    }

    /// Adds a finished line (printing it when `print` is set).
    pub fn push(&mut self, line: BenchLine) {
        if self.print {
            let mut out = std::io::stdout().lock();
            if let Err(e) = writeln!(out, "{}", format_line(&line)).and_then(|_| out.flush()) {
                self.print = false;
                self.print_error = Some(e);
            }
        }
        self.lines.push(line);
    }
}

fn with_reps(mut extra: Vec<(String, String)>, t: Timing) -> Vec<(String, String)> {
    extra.push(("reps".into(), t.reps.to_string()));
    if let Some(r) = t.reference {
        extra.push(("roofline_interleaved".into(), format!("{r:.2}")));
    }
    extra
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// The text header's column titles, aligned with [`format_line`].
pub fn header_columns() -> String {
    format!(
        "{:<9} {:<22} {:<22} {:<10} {:>10} {:>9} {:>8} {:>11}",
        "suite", "op", "shape", "dtype", "median ms", "GFLOP/s", "GB/s", "roofline"
    )
}

/// One aligned text line.
pub fn format_line(l: &BenchLine) -> String {
    let opt = |v: Option<f64>, prec: usize| match v {
        Some(x) => format!("{x:.prec$}"),
        None => "-".into(),
    };
    let share = match (l.roofline_share, &l.roofline_of) {
        (Some(s), Some(of)) => format!("{:.1}% {of}", s * 100.0),
        _ => "-".into(),
    };
    let mut line = format!(
        "{:<9} {:<22} {:<22} {:<10} {:>10.3} {:>9} {:>8} {:>11}",
        l.suite,
        l.op,
        l.shape,
        l.dtype,
        l.median_ms,
        opt(l.gflops, 1),
        opt(l.gbps, 1),
        share
    );
    // Suite-specific figures (speedups, memory, dispatches) follow the aligned columns.
    for (k, v) in &l.extra {
        if k != "reps" && k != "roofline_interleaved" {
            line.push_str(&format!("  {k}={v}"));
        }
    }
    line
}

/// Measures the roofline (always, whatever the filter), then runs every other suite's cases that
/// pass the context's filter, collecting lines in `ctx.lines`.
pub fn run_suites(ctx: &mut BenchCtx) -> Result<()> {
    ctx.suite = "roofline".into();
    ctx.measure_roofline()?;
    for s in suites() {
        if s.name == "roofline" {
            // Measured above for every run.
            continue;
        }
        ctx.suite = s.name.to_string();
        (s.run)(ctx)?;
        if let Some(source) = ctx.print_error.take() {
            return Err(stdout_error(source));
        }
    }
    if let Some(f) = &ctx.filter {
        let matched = ctx
            .lines
            .iter()
            .any(|l| format!("{}/{}/{}", l.suite, l.op, l.shape).contains(f.as_str()));
        if !matched {
            let names: Vec<&str> = suites().iter().map(|s| s.name).collect();
            return Err(Error::invalid(
                "bench",
                format!(
                    "no case matches the filter {f:?}: cases are named suite/op/shape (for \
                     example matmul/matmul:auto/1024x1024x1024), the suites are {}, and a model \
                     suite has no cases when its model is missing",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Runs every suite on the shared GPU: cases whose `suite/op/shape` key contains `filter` (all when
/// `None`). Prints a header naming the adapter, backend, driver and timing method, then one line per
/// result, or (with `json`) one JSON document at the end.
pub fn run(filter: Option<&str>, json: bool) -> Result<Vec<BenchLine>> {
    let gpu = Gpu::shared()?;
    run_on(&gpu, filter, json)
}

/// [`run`] on a given GPU.
pub fn run_on(gpu: &Gpu, filter: Option<&str>, json: bool) -> Result<Vec<BenchLine>> {
    let mut ctx = BenchCtx::new(gpu, filter, !json)?;
    let caps = gpu.caps().clone();
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "heedful bench: adapter {:?} ({:?}, {:?}), driver {:?}, timing: {}",
            caps.adapter_name,
            caps.backend,
            caps.device_type,
            caps.driver,
            ctx.timing_method()
        )
        .and_then(|_| writeln!(out, "{}", header_columns()))
        .and_then(|_| out.flush())
        .map_err(stdout_error)?;
    }
    drop(out);
    run_suites(&mut ctx)?;
    if json {
        let doc = serde_json::json!({
            "adapter": caps.adapter_name,
            "backend": format!("{:?}", caps.backend),
            "device_type": format!("{:?}", caps.device_type),
            "driver": caps.driver,
            "timing": ctx.timing_method(),
            "roofline": { "fma_gflops": ctx.roofline.fma_gflops, "copy_gbps": ctx.roofline.copy_gbps },
            "lines": ctx.lines,
        });
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc)
                .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        )
        .and_then(|_| out.flush())
        .map_err(stdout_error)?;
    }
    Ok(ctx.lines)
}

/// A failed write of results to standard output, as the CLI reports it.
fn stdout_error(source: std::io::Error) -> Error {
    Error::Io {
        path: crate::cli::STDOUT.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> BenchLine {
        BenchLine {
            suite: "matmul".into(),
            op: "matmul:auto".into(),
            shape: "1024x1024x1024".into(),
            dtype: "f32".into(),
            median_ms: 150.0,
            gflops: Some(14.3),
            gbps: None,
            roofline_share: Some(0.302),
            roofline_of: Some("fma".into()),
            extra: vec![("reps".into(), "3".into())],
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn text_line_aligns_with_header_and_shows_share() {
        let l = format_line(&line());
        assert_eq!(l.len(), header_columns().len());
        assert!(
            l.contains("30.2% fma") && l.contains("14.3") && l.contains("150.000"),
            "{l}"
        );
        let mut mem = line();
        mem.gflops = None;
        mem.gbps = Some(2.5);
        mem.roofline_of = Some("copy".into());
        assert!(format_line(&mem).contains("30.2% copy"));
        // Suite figures follow the aligned columns; the repetition count does not.
        let mut extra = line();
        extra.extra.push(("speedup".into(), "2.50".into()));
        let e = format_line(&extra);
        assert!(e.ends_with("  speedup=2.50") && !e.contains("reps"), "{e}");
    }

    #[test]
    fn json_extra_is_an_object() {
        let v = serde_json::to_value(line()).unwrap();
        assert_eq!(v["extra"]["reps"], "3");
        assert_eq!(v["roofline_of"], "fma");
    }
}
