//! Layer norm over the last dim (`shaders/layer_norm.wgsl`), matching `F.layer_norm`.
//!
//! Shapes: x `[*, D]` f32, weight `[D]` and bias `[D]` each f32 or f16 -> out `[*, D]` f32.
//!
//! Design: one Welford pass (count, mean, M2 merged pairwise) for the statistics and one pass that
//! writes, vec4 loads and stores when `D % 4 == 0`; rows map onto threads with the same
//! [`RowSchedule`] as softmax (a workgroup per row on GPUs, a thread per row on CPU adapters with
//! many rows).

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Elem, Recorder};
use crate::kernels::check_dtype;
use crate::kernels::softmax::{check_u32_index, RowSchedule};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/layer_norm.wgsl");

crate::wgsl_params! {
    /// Uniform parameters: `rows` rows of `d` elements, `eps` added to the variance.
    struct Params { rows: u32, d: u32, eps: f32, _pad: u32 }
}

crate::wgsl_bindings! {
    /// Storage bindings in `@binding` order: x `[R, D]` f32, weight `[D]`, bias `[D]` (f32 or f16),
    /// out `[R, D]` f32.
    struct LayerNormBindings { x, weight, bias, out }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Variant {
    schedule: RowSchedule,
    vec4: bool,
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
    const OP: &str = "layer_norm";
    check_dtype(OP, "x", x, &[DType::F32])?;
    check_dtype(OP, "out", out, &[DType::F32])?;
    check_dtype(OP, "weight", weight, &[DType::F32, DType::F16])?;
    check_dtype(OP, "bias", bias, &[DType::F32, DType::F16])?;
    let Some(&d) = x.shape().last() else {
        return Err(Error::shape(
            OP,
            "x [] is a scalar; layer norm needs a last dim [*, D]",
        ));
    };
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if t.shape() != [d] {
            return Err(Error::shape(
                OP,
                format!(
                    "{name} {:?} must be [D] = [{d}] for x {:?}",
                    t.shape(),
                    x.shape()
                ),
            ));
        }
    }
    if out.shape() != x.shape() {
        return Err(Error::shape(
            OP,
            format!("out {:?} does not match x {:?}", out.shape(), x.shape()),
        ));
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::invalid(
            OP,
            format!("eps {eps} must be finite and >= 0"),
        ));
    }
    check_u32_index(OP, "x", x)?;
    if x.numel() == 0 {
        return Ok(());
    }
    let rows = x.numel() / d;
    let gpu = rec.gpu().clone();
    let elem = |t: &Tensor| Elem::for_dtype(&gpu, t.dtype()).unwrap_or(Elem::F32);
    let variant = Variant {
        schedule: schedule.resolve(OP, &gpu, rows, d)?,
        vec4: d % 4 == 0,
        weight: elem(weight),
        bias: elem(bias),
    };
    let binds = LayerNormBindings {
        x: Bind::input(x, Elem::F32, variant.vec4),
        weight: Bind::input(weight, variant.weight, variant.vec4),
        bias: Bind::input(bias, variant.bias, variant.vec4),
        out: Bind::output(out, variant.vec4),
    };
    let pipeline = gpu.pipeline(OP, &variant, || {
        compose(
            SRC,
            binds.needs_f16(),
            &[
                ("WG", variant.schedule.wg()),
                ("VEC4", variant.vec4 as u32),
                ("PER_ROW", variant.schedule.per_row() as u32),
            ],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let params = Params {
        rows: rows as u32,
        d: d as u32,
        eps,
        _pad: 0,
    };
    let dispatch = gpu.dispatch(
        OP,
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        variant.schedule.grid(&gpu, rows)?,
    )?;
    rec.push(dispatch);
    Ok(())
}
