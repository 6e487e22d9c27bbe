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
        /// Rows P of the position table (positioned variant).
        pv: u32,
        /// Factor on the token row (1 for the plain lookup).
        scale: f32,
        _pad0: u32,
        _pad1: [u32; 2],
    }
}

crate::wgsl_bindings! {
    /// ids `[N]` u32, weight `[V, D]` f32 or f16, out `[N, D]` f32.
    struct EmbeddingBindings { ids, weight, out }
}

crate::wgsl_bindings! {
    /// ids `[N]` u32, weight `[V, D]` f32 or f16, pos_ids `[N]` or `[1]` u32, pos_weight `[P, D]`
    /// f32 or f16, out `[N, D]` f32.
    struct PositionedBindings { ids, weight, pos_ids, pos_weight, out }
}

/// The position term of [`record_embedding_positioned`]: position ids and their table.
#[derive(Clone, Copy, Debug)]
pub struct Positions<'a> {
    /// `[*]` u32 or i32 position ids shaped as the token ids, or `[1]`: one position for every row
    /// (a decoder step's position, read on the GPU).
    pub ids: &'a Tensor,
    /// `[P, D]` f32 or f16 position table.
    pub table: &'a Tensor,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Variant {
    weight: Elem,
    vec4: bool,
    /// Positioned variant: the position table's element type and whether one position id
    /// serves every row.
    pos: Option<(Elem, bool)>,
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
    record_lookup(rec, "embedding", ids, weight, 1.0, None, out)
}

/// Records `out[t, :] = weight[ids[t], :] * scale + pos.table[pos.ids[t], :]` in one dispatch
/// (a Transformer's scaled token embedding plus its position embedding), with `pos.ids[0]` for
/// every row when `pos.ids` holds one id. An id outside its table contributes a zero row.
///
/// out must have shape `ids.shape() + [D]` and dtype f32; `pos.table` is `[P, D]`.
pub fn record_embedding_positioned(
    rec: &mut Recorder,
    ids: &Tensor,
    weight: &Tensor,
    scale: f32,
    pos: Positions<'_>,
    out: &Tensor,
) -> Result<()> {
    record_lookup(
        rec,
        "embedding_positioned",
        ids,
        weight,
        scale,
        Some(pos),
        out,
    )
}

fn record_lookup(
    rec: &mut Recorder,
    op: &'static str,
    ids: &Tensor,
    weight: &Tensor,
    scale: f32,
    pos: Option<Positions<'_>>,
    out: &Tensor,
) -> Result<()> {
    check_dtype(op, "ids", ids, &[DType::I32, DType::U32])?;
    check_dtype(op, "weight", weight, &[DType::F32, DType::F16])?;
    check_dtype(op, "out", out, &[DType::F32])?;
    let &[v, d] = weight.shape() else {
        return Err(Error::shape(
            op,
            format!("weight {:?} must be [V, D]", weight.shape()),
        ));
    };
    let mut want = ids.shape().to_vec();
    want.push(d);
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            op,
            format!(
                "out {:?} must be ids {:?} + [D] = {want:?} for weight {:?}",
                out.shape(),
                ids.shape(),
                weight.shape()
            ),
        ));
    }
    if !scale.is_finite() {
        return Err(Error::invalid(op, format!("scale {scale} must be finite")));
    }
    let mut pv = 0;
    if let Some(pos) = &pos {
        check_dtype(op, "position ids", pos.ids, &[DType::I32, DType::U32])?;
        check_dtype(op, "position table", pos.table, &[DType::F32, DType::F16])?;
        if pos.ids.numel() != 1 && pos.ids.shape() != ids.shape() {
            return Err(Error::shape(
                op,
                format!(
                    "position ids {:?} must be shaped as ids {:?} or hold one id",
                    pos.ids.shape(),
                    ids.shape()
                ),
            ));
        }
        let &[p, pd] = pos.table.shape() else {
            return Err(Error::shape(
                op,
                format!("position table {:?} must be [P, D]", pos.table.shape()),
            ));
        };
        if pd != d {
            return Err(Error::shape(
                op,
                format!(
                    "position table {:?} must have D = {d} columns as weight {:?}",
                    pos.table.shape(),
                    weight.shape()
                ),
            ));
        }
        check_u32_index(op, "position table", pos.table)?;
        pv = u32::try_from(p).unwrap_or(u32::MAX);
    }
    check_u32_index(op, "weight", weight)?;
    check_u32_index(op, "out", out)?;
    if out.numel() == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let elem = |t: &Tensor| Elem::for_dtype(&gpu, t.dtype()).unwrap_or(Elem::F32);
    let vec4 = d % 4 == 0;
    let variant = Variant {
        weight: elem(weight),
        vec4,
        pos: pos.map(|p| (elem(p.table), p.ids.numel() == 1)),
    };
    let (binds, extra): (Box<dyn Bindings>, String) = match (pos, variant.pos) {
        (Some(p), Some((table, one))) => {
            let row = if one { "0u" } else { "t" };
            (
                Box::new(PositionedBindings {
                    ids: Bind::read(ids, "u32"),
                    weight: Bind::input(weight, variant.weight, vec4),
                    pos_ids: Bind::read(p.ids, "u32"),
                    pos_weight: Bind::input(p.table, table, vec4),
                    out: Bind::output(out, vec4),
                }),
                format!(
                    "fn extra(t: u32, j: u32) -> f32 {{\n\
                     \x20   let id = pos_ids[{row}];\n\
                     \x20   if (id < p.pv) {{ return pos_weight_at(id * p.d + j); }}\n\
                     \x20   return 0.0;\n}}\n\
                     fn extra4(t: u32, j: u32) -> vec4<f32> {{\n\
                     \x20   let id = pos_ids[{row}];\n\
                     \x20   if (id < p.pv) {{ return pos_weight_at4(id * p.d + j); }}\n\
                     \x20   return vec4<f32>(0.0);\n}}\n"
                ),
            )
        }
        _ => (
            Box::new(EmbeddingBindings {
                ids: Bind::read(ids, "u32"),
                weight: Bind::input(weight, variant.weight, vec4),
                out: Bind::output(out, vec4),
            }),
            "fn extra(t: u32, j: u32) -> f32 { return 0.0; }\n\
             fn extra4(t: u32, j: u32) -> vec4<f32> { return vec4<f32>(0.0); }\n"
                .to_string(),
        ),
    };
    let pipeline = gpu.pipeline(op, &variant, || {
        let mut prologue = vec![Params::wgsl()];
        prologue.extend(binds.wgsl());
        prologue.push(extra.clone());
        compose(
            SRC,
            binds.needs_f16(),
            &[("WG", WG), ("VEC4", vec4 as u32)],
            &prologue,
        )
    })?;
    let units = if vec4 { out.numel() / 4 } else { out.numel() };
    let params = Params {
        units: units as u32,
        v: u32::try_from(v).unwrap_or(u32::MAX),
        d: d as u32,
        pv,
        scale,
        _pad0: 0,
        _pad1: [0; 2],
    };
    let dispatch = gpu.dispatch(
        op,
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
    fn id_operands(&self) -> &'static [(usize, usize)] {
        &[(0, 1)]
    }
}

/// The op: scaled token embedding plus position embedding in one lookup,
/// `[ids [*], weight [V, D], pos_ids [*] or [1], pos_weight [P, D]] -> [y [*, D]]` f32 (see
/// [`record_embedding_positioned`]). Host ids of both lookups are checked against their tables.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingPositioned {
    /// Factor on the token row (`sqrt(d_model)` where a model scales its embeddings).
    pub scale: f32,
}

impl KernelOp for EmbeddingPositioned {
    fn name(&self) -> &'static str {
        "embedding_positioned"
    }
    fn arity(&self) -> &'static [usize] {
        &[4]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        Embedding.infer(&ins[..2])
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        let pos = Positions {
            ids: ins[2],
            table: ins[3],
        };
        record_embedding_positioned(rec, ins[0], ins[1], self.scale, pos, outs[0])
    }
    fn id_operands(&self) -> &'static [(usize, usize)] {
        &[(0, 1), (2, 3)]
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

    /// `weight[ids] * scale + pos_weight[pos_ids]` in one node (see [`EmbeddingPositioned`]);
    /// host ids of both lookups are checked as [`Graph::embedding`] checks its ids.
    pub fn embedding_positioned(
        &mut self,
        ids: Value,
        weight: Value,
        scale: f32,
        pos_ids: Value,
        pos_weight: Value,
    ) -> Value {
        self.op(
            EmbeddingPositioned { scale },
            &[ids, weight, pos_ids, pos_weight],
        )
    }
}
