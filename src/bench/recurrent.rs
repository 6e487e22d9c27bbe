//! Recurrent-layer benchmark: LSTM and GRU, one layer, `I = H`, comparing in one run
//! - `persistent`: [`RecurrentPath::Persistent`] (one dispatch loops over all steps; the tuning
//!   table's kernel: resident weights where they fit),
//! - `persistent-streamed`: the same path forced to [`PersistentKernel::Streamed`] (weights re-read
//!   every step, the kernel before the resident one), for the side-by-side ratio,
//! - `per-step`: [`RecurrentPath::PerStep`] (one fused dispatch per step),
//! - `unfused`: a baseline built from the eager-op kernels, as peers run it: per step one
//!   `linear` per gate on h, then elementwise add / activation / mul kernels and buffer copies.
//!
//! All three include the input projection GEMM and are recorded into one submission, timed the
//! same way (`heedful bench --filter recurrent`). Each line carries ms per sequence, timesteps per
//! second, dispatches per timestep and the speedup over `unfused` of the same shape.

use std::collections::HashMap;

use super::BenchCtx;
use crate::error::Result;
use crate::gpu::{Gpu, Recorder};
use crate::kernels::elementwise::{record_activation, record_binary, Activation, Binary};
use crate::kernels::matmul::record_linear;
use crate::ops::{CellKind, PersistentKernel, RecurrentLayer, RecurrentPath, RecurrentSpec};
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

/// LSTM and GRU, H in {128, 512}, B in {1, 32} (and B = 8 at H = 128, where the CPU table's
/// resident threshold sits), T = 256, f16 weights.
pub fn default_shapes() -> Vec<Shape> {
    let mut v = Vec::new();
    for kind in [CellKind::Lstm, CellKind::Gru] {
        for (hidden, batch) in [(128, 1), (128, 8), (128, 32), (512, 1), (512, 32)] {
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

/// The `recurrent` suite: every default shape on the three variants, side by side.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    for shape in default_shapes() {
        let shape_s = format!("H{} B{} T{}", shape.hidden, shape.batch, shape.steps);
        let kind = shape.kind.name();
        let variants = ["persistent", "persistent-streamed", "per-step", "unfused"];
        if !variants
            .iter()
            .any(|v| ctx.wants(&format!("{kind}:{v}"), &shape_s))
        {
            continue;
        }
        let gpu = ctx.gpu.clone();
        let w = weights(&shape);
        let spec = RecurrentSpec {
            kind: shape.kind,
            input_size: shape.hidden,
            hidden_size: shape.hidden,
            num_layers: 1,
            bidirectional: false,
        };
        let x = Tensor::zeros(&gpu, &[shape.batch, shape.steps, shape.hidden], DType::F32)?;
        // Gate pre-activations: input and recurrent products, 2 flops per multiply-add.
        let flops = 2.0
            * (shape.batch * shape.steps * shape.kind.gates() * shape.hidden * 2 * shape.hidden)
                as f64;
        let mut recs = Vec::new();
        for variant in variants {
            let rec = match variant {
                "persistent" | "persistent-streamed" | "per-step" => {
                    let (path, kernel) = match variant {
                        "persistent" => (RecurrentPath::Persistent, PersistentKernel::Auto),
                        "persistent-streamed" => {
                            (RecurrentPath::Persistent, PersistentKernel::Streamed)
                        }
                        _ => (RecurrentPath::PerStep, PersistentKernel::Auto),
                    };
                    let layer = RecurrentLayer::new(&gpu, spec, &w, shape.dtype)?
                        .with_path(path)
                        .with_persistent_kernel(kernel);
                    layer.prepare(&gpu, &x, None, None, None)?.recorder
                }
                _ => record_unfused(&gpu, &shape, &w)?,
            };
            recs.push(rec);
        }
        // Interleaved, so the ratios between the variants survive a shared machine's load.
        let times = ctx.time_interleaved(&recs.iter().collect::<Vec<_>>())?;
        let timed: Vec<_> = variants
            .iter()
            .zip(times)
            .zip(&recs)
            .map(|((v, t), rec)| (*v, t, rec.dispatch_count()))
            .collect();
        let unfused_s = timed
            .iter()
            .find(|(v, ..)| *v == "unfused")
            .map(|(_, t, _)| t.median_s);
        for (variant, t, dispatches) in timed {
            let mut extra = vec![
                (
                    "ms_per_sequence".to_string(),
                    format!("{:.3}", t.median_s * 1e3 / shape.batch as f64),
                ),
                (
                    "timesteps_per_s".to_string(),
                    format!("{:.0}", shape.steps as f64 / t.median_s),
                ),
                (
                    "dispatches_per_step".to_string(),
                    format!("{:.2}", dispatches as f64 / shape.steps as f64),
                ),
            ];
            if let Some(u) = unfused_s {
                extra.push((
                    "speedup_vs_unfused".to_string(),
                    format!("{:.2}", u / t.median_s),
                ));
            }
            ctx.push_compute(
                &format!("{kind}:{variant}"),
                &shape_s,
                shape.dtype.name(),
                t,
                flops,
                extra,
            );
        }
    }
    Ok(())
}
