//! Embedding lookup (`shaders/embedding.wgsl`).
//!
//! Shapes: ids `[*]` i32 or u32, weight `[V, D]` f32 or f16 -> out `[*, D]` f32.
//!
//! A kernel cannot raise an error, so an id outside `[0, V)` (a negative i32 included) produces a
//! row of zeros. Use [`crate::ops::embedding_ids`] to validate ids on the CPU first.
//!
//! Design: a pure gather, one thread per output element or per 4 outputs (vec4 loads and stores of
//! the weight row when `D % 4 == 0`); consecutive threads read consecutive weight elements of one row.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Elem, Recorder};
use crate::graph::{Graph, Value};
use crate::kernels::op::{KernelOp, ShapeDType};
use crate::kernels::softmax::check_u32_index;
use crate::kernels::{check_dtype, grid_1d};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/embedding.wgsl");
const WG: u32 = 256;

crate::wgsl_params! {
    struct Params {
        units: u32,
        v: u32,
        d: u32,
        _pad: u32,
    }
}

crate::wgsl_bindings! {
    /// ids `[N]` u32, weight `[V, D]` f32 or f16, out `[N, D]` f32.
    struct EmbeddingBindings { ids, weight, out }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Variant {
    weight: Elem,
    vec4: bool,
}

/// Records `out[t, :] = weight[ids[t], :]`; ids outside `[0, V)` give zero rows.
///
/// out must have shape `ids.shape() + [D]` and dtype f32.
pub fn record_embedding(
    rec: &mut Recorder,
    ids: &Tensor,
    weight: &Tensor,
    out: &Tensor,
) -> Result<()> {
    const OP: &str = "embedding";
    check_dtype(OP, "ids", ids, &[DType::I32, DType::U32])?;
    check_dtype(OP, "weight", weight, &[DType::F32, DType::F16])?;
    check_dtype(OP, "out", out, &[DType::F32])?;
    let &[v, d] = weight.shape() else {
        return Err(Error::shape(
            OP,
            format!("weight {:?} must be [V, D]", weight.shape()),
        ));
    };
    let mut want = ids.shape().to_vec();
    want.push(d);
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "out {:?} must be ids {:?} + [D] = {want:?} for weight {:?}",
                out.shape(),
                ids.shape(),
                weight.shape()
            ),
        ));
    }
    check_u32_index(OP, "weight", weight)?;
    check_u32_index(OP, "out", out)?;
    if out.numel() == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let variant = Variant {
        weight: Elem::for_dtype(&gpu, weight.dtype()).unwrap_or(Elem::F32),
        vec4: d % 4 == 0,
    };
    let binds = EmbeddingBindings {
        ids: Bind::read(ids, "u32"),
        weight: Bind::input(weight, variant.weight, variant.vec4),
        out: Bind::output(out, variant.vec4),
    };
    let pipeline = gpu.pipeline(OP, &variant, || {
        compose(
            SRC,
            binds.needs_f16(),
            &[("WG", WG), ("VEC4", variant.vec4 as u32)],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let units = if variant.vec4 {
        out.numel() / 4
    } else {
        out.numel()
    };
    let params = Params {
        units: units as u32,
        v: u32::try_from(v).unwrap_or(u32::MAX),
        d: d as u32,
        _pad: 0,
    };
    let dispatch = gpu.dispatch(
        OP,
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        grid_1d(&gpu, units, WG)?,
    )?;
    rec.push(dispatch);
    Ok(())
}

/// The op: embedding lookup, `[ids [*] i32|u32, weight [V, D]] -> [y [*, D]]` f32. Ids outside
/// `[0, V)` read zeros on the GPU: host ids are checked before upload by
/// [`crate::ops::embedding_ids`] and by the models' input paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedding;

impl KernelOp for Embedding {
    fn name(&self) -> &'static str {
        "embedding"
    }
    fn arity(&self) -> &'static [usize] {
        &[2]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        let mut s = ins[0].0.clone();
        match ins[1].0.as_slice() {
            &[_, d] => s.push(d),
            w => {
                return Err(Error::shape(
                    "embedding",
                    format!("weight {w:?} must be [V, D]"),
                ))
            }
        }
        Ok(vec![(s, DType::F32)])
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_embedding(rec, ins[0], ins[1], outs[0])
    }
    fn id_operands(&self) -> Option<(usize, usize)> {
        Some((0, 1))
    }
}

impl Graph {
    /// Embedding lookup of i32 ids.
    ///
    /// When `ids` is a graph input and `weight` a `[V, D]` table, every run checks the host ids
    /// against `[0, V)` before uploading them (an id out of range is an error naming the input,
    /// the id and its position). Ids computed by another node on the GPU are not checked: the
    /// kernel gives a zero row for them (a shader cannot raise an error).
    pub fn embedding(&mut self, ids: Value, weight: Value) -> Value {
        self.op(Embedding, &[ids, weight])
    }
}
