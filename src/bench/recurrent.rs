//! Recurrent-layer benchmark: LSTM and GRU, one layer, `I = H`, comparing in one run
//! - `persistent`: [`RecurrentPath::Persistent`] (one dispatch loops over all steps),
//! - `per-step`: [`RecurrentPath::PerStep`] (one fused dispatch per step),
//! - `unfused`: a baseline built from the eager-op kernels, as peers run it: per step one
//!   `linear` per gate on h, then elementwise add / activation / mul kernels and buffer copies;
//! - `projection`: only the input projection GEMM that all three share (not in the default set), to
//!   separate the recurrence's cost from it.
//!
//! All three include the input projection GEMM and are recorded into one submission; times are
//! wall clock around submit and queue wait (median of `reps`), the same for every variant. On Linux
//! the process CPU time of each run is reported too: on a CPU adapter (lavapipe) it measures the
//! work done even when the cores are shared with other processes, where wall clock does not.
//!
//! ```no_run
//! let gpu = heedful::Gpu::shared()?;
//! let rows = heedful::bench::recurrent::run(&gpu, &heedful::bench::recurrent::default_shapes(), 3)?;
//! println!("{}", heedful::bench::recurrent::report(&rows));
//! # Ok::<(), heedful::Error>(())
//! ```

use std::collections::HashMap;

use crate::error::Result;
use crate::gpu::{Gpu, Recorder, Timer};
use crate::kernels::elementwise::{record_activation, record_binary, Activation, Binary};
use crate::kernels::matmul::record_linear;
use crate::ops::{CellKind, RecurrentLayer, RecurrentPath, RecurrentSpec};
use crate::tensor::{DType, Tensor};

/// One benchmark shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// LSTM or GRU.
    pub kind: CellKind,
    /// H (and I).
    pub hidden: usize,
    /// B.
    pub batch: usize,
    /// T.
    pub steps: usize,
    /// Weight dtype.
    pub dtype: DType,
}

/// LSTM and GRU, H in {128, 512}, B in {1, 32}, T = 256, f16 weights.
pub fn default_shapes() -> Vec<Shape> {
    let mut v = Vec::new();
    for kind in [CellKind::Lstm, CellKind::Gru] {
        for (hidden, batch) in [(128, 1), (128, 32), (512, 1), (512, 32)] {
            v.push(Shape {
                kind,
                hidden,
                batch,
                steps: 256,
                dtype: DType::F16,
            });
        }
    }
    v
}

/// One measured variant of one shape.
#[derive(Clone, Debug)]
pub struct Row {
    /// The shape.
    pub shape: Shape,
    /// persistent, per-step or unfused.
    pub variant: &'static str,
    /// Median GPU milliseconds for the whole batch of sequences.
    pub ms: f64,
    /// Timesteps per second (`T / seconds`).
    pub steps_per_s: f64,
    /// Dispatches recorded per timestep.
    pub dispatches_per_step: f64,
    /// Median process CPU milliseconds (all threads) per run; NaN where unavailable.
    pub cpu_ms: f64,
}

/// Process CPU time (user + system, all threads) in seconds, from `/proc/self/stat` (Linux; 100 Hz
/// ticks). None elsewhere.
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn weights(shape: &Shape) -> HashMap<String, Vec<f32>> {
    let (h, g) = (shape.hidden, shape.kind.gates());
    let s = 1.0 / (h as f32).sqrt();
    let mut state = 0x2545_f491u32;
    let mut rnd = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 8) as f32 / 16_777_216.0 * 2.0 - 1.0) * s
            })
            .collect()
    };
    let mut w = HashMap::new();
    w.insert("weight_ih_l0".to_string(), rnd(g * h * h));
    w.insert("weight_hh_l0".to_string(), rnd(g * h * h));
    w.insert("bias_ih_l0".to_string(), rnd(g * h));
    w.insert("bias_hh_l0".to_string(), rnd(g * h));
    w
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Records the unfused baseline: per-gate weights `[H, H]`, projections laid out `[T, B, H]` per
/// gate so each step's slice is contiguous, then per step: linear per gate, copy the step's
/// projection slice, add, activation, and the state update from mul/add/tanh kernels.
fn record_unfused(gpu: &Gpu, shape: &Shape, w: &HashMap<String, Vec<f32>>) -> Result<Recorder> {
    let (h, b, t, g) = (shape.hidden, shape.batch, shape.steps, shape.kind.gates());
    let f32z = |s: &[usize]| Tensor::zeros(gpu, s, DType::F32);
    let rows = |name: &str, q: usize, width: usize| -> Vec<f32> {
        w[name][q * h * width..(q + 1) * h * width].to_vec()
    };
    let x = f32z(&[t * b, h])?; // [T, B, I] time-major input
    let mut rec = Recorder::new(gpu);
    let mut w_hh = Vec::new();
    let mut b_hh = Vec::new();
    let mut xp = Vec::new();
    for q in 0..g {
        let wi = Tensor::from_f32_as(gpu, &rows("weight_ih_l0", q, h), &[h, h], shape.dtype)?;
        let bi = Tensor::from_f32_as(gpu, &rows("bias_ih_l0", q, 1), &[h], shape.dtype)?;
        w_hh.push(Tensor::from_f32_as(
            gpu,
            &rows("weight_hh_l0", q, h),
            &[h, h],
            shape.dtype,
        )?);
        b_hh.push(Tensor::from_f32_as(
            gpu,
            &rows("bias_hh_l0", q, 1),
            &[h],
            shape.dtype,
        )?);
        let p = f32z(&[t * b, h])?;
        record_linear(&mut rec, &x, &wi, Some(&bi), &p)?;
        xp.push(p);
    }
    let state = [b, h];
    let hs = f32z(&state)?;
    let cs = f32z(&state)?;
    let out = f32z(&[t * b, h])?;
    let lin: Vec<Tensor> = (0..g).map(|_| f32z(&state)).collect::<Result<_>>()?;
    let xs: Vec<Tensor> = (0..g).map(|_| f32z(&state)).collect::<Result<_>>()?;
    let act: Vec<Tensor> = (0..g).map(|_| f32z(&state)).collect::<Result<_>>()?;
    let pre: Vec<Tensor> = (0..g).map(|_| f32z(&state)).collect::<Result<_>>()?;
    let (t1, t2, t3, hn) = (f32z(&state)?, f32z(&state)?, f32z(&state)?, f32z(&state)?);
    let (t4, t5, t6) = (f32z(&state)?, f32z(&state)?, f32z(&state)?);
    let minus_one = Tensor::from_f32(gpu, &vec![-1.0; h], &[h])?;
    let bytes = (b * h * 4) as u64;
    for step in 0..t {
        let off = step as u64 * bytes;
        for q in 0..g {
            record_linear(&mut rec, &hs, &w_hh[q], Some(&b_hh[q]), &lin[q])?;
            rec.copy(xp[q].buffer(), off, xs[q].buffer(), 0, bytes);
        }
        match shape.kind {
            CellKind::Lstm => {
                for q in 0..4 {
                    record_binary(&mut rec, &lin[q], &xs[q], &pre[q], Binary::Add)?;
                    let f = if q == 2 {
                        Activation::Tanh
                    } else {
                        Activation::Sigmoid
                    };
                    record_activation(&mut rec, &pre[q], &act[q], f)?;
                }
                record_binary(&mut rec, &act[1], &cs, &t1, Binary::Mul)?; // f * c
                record_binary(&mut rec, &act[0], &act[2], &t2, Binary::Mul)?; // i * g
                record_binary(&mut rec, &t1, &t2, &t4, Binary::Add)?; // c'
                record_activation(&mut rec, &t4, &t3, Activation::Tanh)?;
                record_binary(&mut rec, &act[3], &t3, &hn, Binary::Mul)?; // h'
                rec.copy(t4.buffer(), 0, cs.buffer(), 0, bytes);
            }
            _ => {
                // r, z; n = tanh(x_n + r * (W_hn h + b_hn)); h' = n + z*h - z*n.
                for q in 0..2 {
                    record_binary(&mut rec, &lin[q], &xs[q], &pre[q], Binary::Add)?;
                    record_activation(&mut rec, &pre[q], &act[q], Activation::Sigmoid)?;
                }
                record_binary(&mut rec, &act[0], &lin[2], &t1, Binary::Mul)?;
                record_binary(&mut rec, &t1, &xs[2], &t4, Binary::Add)?;
                record_activation(&mut rec, &t4, &act[2], Activation::Tanh)?;
                record_binary(&mut rec, &act[1], &hs, &t2, Binary::Mul)?;
                record_binary(&mut rec, &act[1], &act[2], &t3, Binary::Mul)?;
                record_binary(&mut rec, &t3, &minus_one, &t5, Binary::Mul)?;
                record_binary(&mut rec, &act[2], &t2, &t6, Binary::Add)?;
                record_binary(&mut rec, &t6, &t5, &hn, Binary::Add)?;
            }
        }
        rec.copy(hn.buffer(), 0, hs.buffer(), 0, bytes);
        rec.copy(hn.buffer(), 0, out.buffer(), off, bytes);
    }
    Ok(rec)
}

/// The variants [`run`] measures.
pub const VARIANTS: [&str; 3] = ["persistent", "per-step", "unfused"];

/// Records only the shared input projection `[B*T, I] x [G*H, I]^T`.
fn record_projection(gpu: &Gpu, shape: &Shape, w: &HashMap<String, Vec<f32>>) -> Result<Recorder> {
    let (h, b, t, g) = (shape.hidden, shape.batch, shape.steps, shape.kind.gates());
    let x = Tensor::zeros(gpu, &[b * t, h], DType::F32)?;
    let wi = Tensor::from_f32_as(gpu, &w["weight_ih_l0"], &[g * h, h], shape.dtype)?;
    let bi = Tensor::from_f32_as(gpu, &w["bias_ih_l0"], &[g * h], shape.dtype)?;
    let xp = Tensor::zeros(gpu, &[b * t, g * h], DType::F32)?;
    let mut rec = Recorder::new(gpu);
    record_linear(&mut rec, &x, &wi, Some(&bi), &xp)?;
    Ok(rec)
}

/// Measures every shape on the three variants, `reps` timed runs each after one warm-up.
pub fn run(gpu: &Gpu, shapes: &[Shape], reps: usize) -> Result<Vec<Row>> {
    run_variants(gpu, shapes, reps, &VARIANTS)
}

/// Like [`run`], measuring only the named `variants` (of [`VARIANTS`], or `projection`).
pub fn run_variants(
    gpu: &Gpu,
    shapes: &[Shape],
    reps: usize,
    variants: &[&str],
) -> Result<Vec<Row>> {
    // Wall clock around submit + wait for every variant: the unfused baseline's copies split it into
    // many compute passes, and Recorder::encode's timestamp writes are invalid for middle passes
    // (no begin and no end index), so GPU timestamps cannot time it yet.
    let timer = Timer::new(gpu, true)?;
    let mut rows = Vec::new();
    for shape in shapes {
        let w = weights(shape);
        let spec = RecurrentSpec {
            kind: shape.kind,
            input_size: shape.hidden,
            hidden_size: shape.hidden,
            num_layers: 1,
            bidirectional: false,
        };
        let x = Tensor::zeros(gpu, &[shape.batch, shape.steps, shape.hidden], DType::F32)?;
        let mut recs = Vec::new();
        for (name, path) in [
            ("persistent", RecurrentPath::Persistent),
            ("per-step", RecurrentPath::PerStep),
        ] {
            if !variants.contains(&name) {
                continue;
            }
            let layer = RecurrentLayer::new(gpu, spec, &w, shape.dtype)?.with_path(path);
            recs.push((name, layer.prepare(gpu, &x, None, None, None)?.recorder));
        }
        if variants.contains(&"unfused") {
            recs.push(("unfused", record_unfused(gpu, shape, &w)?));
        }
        if variants.contains(&"projection") {
            recs.push(("projection", record_projection(gpu, shape, &w)?));
        }
        for (variant, rec) in recs {
            timer.time(&rec)?; // warm-up (pipelines, first touch)
            let mut times = Vec::new();
            let mut cpu = Vec::new();
            for _ in 0..reps.max(1) {
                let c0 = process_cpu_s();
                times.push(timer.time(&rec)?);
                cpu.push(match (c0, process_cpu_s()) {
                    (Some(a), Some(b)) => (b - a) * 1e3,
                    _ => f64::NAN,
                });
            }
            let s = median(times);
            rows.push(Row {
                shape: *shape,
                variant,
                ms: s * 1e3,
                steps_per_s: shape.steps as f64 / s,
                dispatches_per_step: rec.dispatch_count() as f64 / shape.steps as f64,
                cpu_ms: median(cpu),
            });
        }
    }
    Ok(rows)
}

/// A table of the rows with the speedup of each variant over `unfused` of the same shape, by wall
/// clock and by process CPU time.
pub fn report(rows: &[Row]) -> String {
    let mut s = String::from(
        "kind  H    B   T    dtype variant     ms/seq     steps/s   disp/step  vs unfused     cpu ms  cpu vs unf\n",
    );
    for r in rows {
        let unfused = rows.iter().find(|u| {
            u.variant == "unfused"
                && u.shape.kind == r.shape.kind
                && u.shape.hidden == r.shape.hidden
                && u.shape.batch == r.shape.batch
                && u.shape.steps == r.shape.steps
        });
        let base = unfused.map_or(f64::NAN, |u| u.ms / r.ms);
        let cpu_base = unfused.map_or(f64::NAN, |u| u.cpu_ms / r.cpu_ms);
        s.push_str(&format!(
            "{:<5} {:<4} {:<3} {:<4} {:<5} {:<10} {:>10.2} {:>10.0} {:>10.2} {:>9.2}x {:>10.0} {:>9.2}x\n",
            r.shape.kind.name(),
            r.shape.hidden,
            r.shape.batch,
            r.shape.steps,
            r.shape.dtype.name(),
            r.variant,
            r.ms,
            r.steps_per_s,
            r.dispatches_per_step,
            base,
            r.cpu_ms,
            cpu_base
        ));
    }
    s
}
