//! Layer norm over the last dim (`shaders/layer_norm.wgsl`), matching `F.layer_norm`: the worked
//! example of a kernel unit (see ARCHITECTURE.md). Everything Rust of this kernel is here: the
//! `Params` and bindings contract, the variant key, the dispatch, the op description
//! ([`LayerNorm`], which the eager op, the graph node, the conformance runner and the bench suite
//! derive from), the CPU [`reference`](mod@reference) and the unit tests (`tests.rs`).
//!
//! Shapes: x `[*, D]` f32, weight `[D]` and bias `[D]` each f32 or f16 -> out `[*, D]` f32.
//! [`AddLayerNorm`] takes a second input `residual` shaped as x and normalizes `x + residual`
//! (the post-LN block of BERT and Marian) in the same dispatch, saving the add's dispatch and its
//! `[*, D]` round trip through memory.
//!
//! Design: one Welford pass (count, mean, M2 merged pairwise) for the statistics and one pass that
//! writes, vec4 loads and stores when `D % 4 == 0`; rows map onto threads with the same
//! [`RowSchedule`] as softmax (a workgroup per row on GPUs, a thread per row on CPU adapters with
//! many rows).

/// The CPU reference, in f64 (two-pass mean and biased variance): the oracle the kernel is tested
/// against.
pub mod reference {
    /// `F.layer_norm` of each row of `d = weight.len()` elements of `x`.
    pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f64) -> Vec<f32> {
        let d = weight.len();
        let mut out = Vec::with_capacity(x.len());
        if d == 0 {
            return out;
        }
        for row in x.chunks(d) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            out.extend(
                row.iter()
                    .zip(weight.iter().zip(bias))
                    .map(|(&v, (&w, &b))| ((v as f64 - mean) * rstd * w as f64 + b as f64) as f32),
            );
        }
        out
    }

    /// [`layer_norm`] of `x + residual`, the sum rounded to f32 first (as the kernel and a
    /// separate elementwise add compute it).
    pub fn add_layer_norm(
        x: &[f32],
        residual: &[f32],
        weight: &[f32],
        bias: &[f32],
        eps: f64,
    ) -> Vec<f32> {
        let sum: Vec<f32> = x.iter().zip(residual).map(|(a, b)| a + b).collect();
        layer_norm(&sum, weight, bias, eps)
    }
}

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Elem, Gpu, Recorder};
use crate::graph::{Graph, Value};
use crate::kernels::check_dtype;
use crate::kernels::op::{
    attr_f64, eager1, BenchBound, BenchCase, KernelOp, OpEntry, Operand, ShapeDType,
};
use crate::kernels::softmax::{check_u32_index, RowSchedule};
use crate::tensor::{DType, Tensor};

const OP: &str = "layer_norm";
const OP_ADD: &str = "add_layer_norm";

/// The op: layer norm over the last dim with `eps` added to the biased variance.
/// Operands x `[*, D]` f32, weight `[D]`, bias `[D]` (f32 or f16); output `[*, D]` f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNorm {
    /// Added to the variance before the square root (`F.layer_norm`'s `eps`).
    pub eps: f32,
}

impl KernelOp for LayerNorm {
    fn name(&self) -> &'static str {
        OP
    }
    fn arity(&self) -> &'static [usize] {
        &[3]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        Ok(vec![(ins[0].0.clone(), DType::F32)])
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_layer_norm(rec, ins[0], ins[1], ins[2], outs[0], self.eps)
    }
}

/// The fused op: layer norm of `x + residual` (see [`LayerNorm`]). Operands x and residual
/// `[*, D]` f32 (same shape), weight and bias `[D]` (f32 or f16); output `[*, D]` f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AddLayerNorm {
    /// Added to the variance before the square root (`F.layer_norm`'s `eps`).
    pub eps: f32,
}

impl KernelOp for AddLayerNorm {
    fn name(&self) -> &'static str {
        OP_ADD
    }
    fn arity(&self) -> &'static [usize] {
        &[4]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        Ok(vec![(ins[0].0.clone(), DType::F32)])
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_add_layer_norm(rec, ins[0], ins[1], ins[2], ins[3], outs[0], self.eps)
    }
}

/// The registration line's entry: conformance operands `in.x`, `w.weight`, `w.bias` -> `out.y`,
/// attribute `eps` (default 1e-5 as in PyTorch); bench cases in the `norms` suite.
pub const ENTRY: OpEntry = OpEntry {
    name: OP,
    suite: "norms",
    operands: &[
        Operand::Input("x"),
        Operand::Weight("weight"),
        Operand::Weight("bias"),
    ],
    outputs: &["y"],
    from_attrs: |attrs| {
        let eps = attr_f64(OP, attrs, "eps", 1e-5)? as f32;
        Ok(Box::new(LayerNorm { eps }))
    },
    bench_cases,
};

/// Rows x D: MiniLM and BERT-base widths at 32 x 128 tokens, a wide model. Bytes counted are the
/// minimum traffic (x read and y written once, f16 weight and bias); the kernel reads each row
/// twice (statistics, then output), so a share of the copy bandwidth near 100% means the second
/// read hit the cache.
fn bench_cases() -> Vec<BenchCase> {
    [(4096usize, 384usize), (4096, 768), (1024, 4096)]
        .into_iter()
        .map(|(rows, d)| BenchCase {
            label: format!("{rows}x{d}"),
            op: Arc::new(LayerNorm { eps: 1e-12 }),
            operands: vec![
                (vec![rows, d], DType::F32),
                (vec![d], DType::F16),
                (vec![d], DType::F16),
            ],
            dtype: "f32 x f16",
            work: 2.0 * (rows * d * 4) as f64 + (2 * d * 2) as f64,
            bound: BenchBound::Memory,
            note: "x read + y written once",
        })
        .collect()
}

/// Layer norm over the last dim, as `F.layer_norm(x, (D,), weight, bias, eps)`: biased variance,
/// statistics in f32 with Welford merges. x `[*, D]` f32; weight and bias `[D]`, each f32 or f16.
pub fn layer_norm(
    gpu: &Gpu,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    eager1(gpu, &LayerNorm { eps }, &[x, weight, bias])
}

/// Layer norm of `x + residual` over the last dim (see [`AddLayerNorm`]).
pub fn add_layer_norm(
    gpu: &Gpu,
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    eager1(gpu, &AddLayerNorm { eps }, &[x, residual, weight, bias])
}

impl Graph {
    /// Layer norm over the last dim (see [`LayerNorm`]).
    pub fn layer_norm(&mut self, x: Value, weight: Value, bias: Value, eps: f32) -> Value {
        self.op(LayerNorm { eps }, &[x, weight, bias])
    }

    /// Layer norm of `x + residual` in one dispatch (see [`AddLayerNorm`]).
    pub fn add_layer_norm(
        &mut self,
        x: Value,
        residual: Value,
        weight: Value,
        bias: Value,
        eps: f32,
    ) -> Value {
        self.op(AddLayerNorm { eps }, &[x, residual, weight, bias])
    }
}

const SRC: &str = include_str!("../../../shaders/layer_norm.wgsl");

crate::wgsl_params! {
    /// Uniform parameters: `rows` rows of `d` elements, `eps` added to the variance.
    struct Params { rows: u32, d: u32, eps: f32, _pad: u32 }
}

crate::wgsl_bindings! {
    /// Storage bindings in `@binding` order: x `[R, D]` f32, weight `[D]`, bias `[D]` (f32 or f16),
    /// out `[R, D]` f32.
    struct LayerNormBindings { x, weight, bias, out }
}

crate::wgsl_bindings! {
    /// Storage bindings of the fused variant in `@binding` order: x and residual `[R, D]` f32,
    /// weight `[D]`, bias `[D]` (f32 or f16), out `[R, D]` f32.
    struct AddLayerNormBindings { x, residual, weight, bias, out }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Variant {
    schedule: RowSchedule,
    vec4: bool,
    residual: bool,
    weight: Elem,
    bias: Elem,
}

/// Records `out = layer_norm(x) * weight + bias` over the last dim with the adapter's schedule.
pub fn record_layer_norm(
    rec: &mut Recorder,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
    eps: f32,
) -> Result<()> {
    record_layer_norm_with(rec, x, weight, bias, out, eps, RowSchedule::Auto)
}

/// [`record_layer_norm`] with an explicit schedule (tests and benchmarks compare them).
pub fn record_layer_norm_with(
    rec: &mut Recorder,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
    eps: f32,
    schedule: RowSchedule,
) -> Result<()> {
    record_norm(rec, OP, x, None, weight, bias, out, eps, schedule)
}

/// Records `out = layer_norm(x + residual) * weight + bias` over the last dim in one dispatch
/// (x, residual and out `[*, D]` f32, all the same shape) with the adapter's schedule.
pub fn record_add_layer_norm(
    rec: &mut Recorder,
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
    eps: f32,
) -> Result<()> {
    record_add_layer_norm_with(rec, x, residual, weight, bias, out, eps, RowSchedule::Auto)
}

/// [`record_add_layer_norm`] with an explicit schedule.
#[allow(clippy::too_many_arguments)]
pub fn record_add_layer_norm_with(
    rec: &mut Recorder,
    x: &Tensor,
    residual: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
    eps: f32,
    schedule: RowSchedule,
) -> Result<()> {
    record_norm(
        rec,
        OP_ADD,
        x,
        Some(residual),
        weight,
        bias,
        out,
        eps,
        schedule,
    )
}

/// Both ops: validation, variant and dispatch; `residual` selects the fused variant.
#[allow(clippy::too_many_arguments)]
fn record_norm(
    rec: &mut Recorder,
    op: &'static str,
    x: &Tensor,
    residual: Option<&Tensor>,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
    eps: f32,
    schedule: RowSchedule,
) -> Result<()> {
    check_dtype(op, "x", x, &[DType::F32])?;
    check_dtype(op, "out", out, &[DType::F32])?;
    check_dtype(op, "weight", weight, &[DType::F32, DType::F16])?;
    check_dtype(op, "bias", bias, &[DType::F32, DType::F16])?;
    let Some(&d) = x.shape().last() else {
        return Err(Error::shape(
            op,
            "x [] is a scalar; layer norm needs a last dim [*, D]",
        ));
    };
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if t.shape() != [d] {
            return Err(Error::shape(
                op,
                format!(
                    "{name} {:?} must be [D] = [{d}] for x {:?}",
                    t.shape(),
                    x.shape()
                ),
            ));
        }
    }
    if let Some(r) = residual {
        check_dtype(op, "residual", r, &[DType::F32])?;
        if r.shape() != x.shape() {
            return Err(Error::shape(
                op,
                format!("residual {:?} does not match x {:?}", r.shape(), x.shape()),
            ));
        }
    }
    if out.shape() != x.shape() {
        return Err(Error::shape(
            op,
            format!("out {:?} does not match x {:?}", out.shape(), x.shape()),
        ));
    }
    // The kernel reads each input row twice (statistics, then output): in place is impossible.
    for (name, t) in std::iter::once(("x", x)).chain(residual.map(|r| ("residual", r))) {
        if t.buffer() == out.buffer() {
            return Err(Error::invalid(
                op,
                format!("out shares its buffer with {name}; write the norm to another tensor"),
            ));
        }
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::invalid(
            op,
            format!("eps {eps} must be finite and >= 0"),
        ));
    }
    check_u32_index(op, "x", x)?;
    if x.numel() == 0 {
        return Ok(());
    }
    let rows = x.numel() / d;
    let gpu = rec.gpu().clone();
    let elem = |t: &Tensor| Elem::for_dtype(&gpu, t.dtype()).unwrap_or(Elem::F32);
    let variant = Variant {
        schedule: schedule.resolve(op, &gpu, rows, d)?,
        vec4: d % 4 == 0,
        residual: residual.is_some(),
        weight: elem(weight),
        bias: elem(bias),
    };
    let v4 = variant.vec4;
    let (x, weight, bias, out) = (
        Bind::input(x, Elem::F32, v4),
        Bind::input(weight, variant.weight, v4),
        Bind::input(bias, variant.bias, v4),
        Bind::output(out, v4),
    );
    // The normalized input s: x, or the f32 sum x + residual.
    let (binds, s_fns): (Box<dyn Bindings>, &str) = match residual {
        None => (
            Box::new(LayerNormBindings {
                x,
                weight,
                bias,
                out,
            }),
            "fn s_at(i: u32) -> f32 { return x_at(i); }\n\
             fn s_at4(i: u32) -> vec4<f32> { return x_at4(i); }\n",
        ),
        Some(r) => (
            Box::new(AddLayerNormBindings {
                x,
                residual: Bind::input(r, Elem::F32, v4),
                weight,
                bias,
                out,
            }),
            "fn s_at(i: u32) -> f32 { return x_at(i) + residual_at(i); }\n\
             fn s_at4(i: u32) -> vec4<f32> { return x_at4(i) + residual_at4(i); }\n",
        ),
    };
    let pipeline = gpu.pipeline(op, &variant, || {
        let mut prologue = vec![Params::wgsl()];
        prologue.extend(binds.wgsl());
        prologue.push(s_fns.to_string());
        compose(
            SRC,
            binds.needs_f16(),
            &[
                ("WG", variant.schedule.wg()),
                ("VEC4", v4 as u32),
                ("PER_ROW", variant.schedule.per_row() as u32),
            ],
            &prologue,
        )
    })?;
    let params = Params {
        rows: rows as u32,
        d: d as u32,
        eps,
        _pad: 0,
    };
    let dispatch = gpu.dispatch(
        op,
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        variant.schedule.grid(&gpu, rows)?,
    )?;
    rec.push(dispatch);
    Ok(())
}
