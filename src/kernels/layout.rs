//! Layout kernel (`shaders/transpose.wgsl`): swaps dims 1 and 2 of a 4-D tensor, the head split
//! `[B, T, H, Dh] -> [B, H, T, Dh]` and merge of multi-head attention.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Recorder};
use crate::graph::{Graph, Value};
use crate::kernels::op::{KernelOp, ShapeDType};
use crate::kernels::{check_dtype, grid_1d};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/transpose.wgsl");
const WG: u32 = 256;

crate::wgsl_params! {
    struct Params {
        a: u32,
        b: u32,
        c: u32,
        d: u32,
    }
}

crate::wgsl_bindings! {
    /// x `[A, B, C, D]` f32, out `[A, C, B, D]` f32.
    struct TransposeBindings { x, out }
}

/// Records `out = x.transpose(1, 2)` for x `[A, B, C, D]`, out `[A, C, B, D]`, both f32.
pub fn record_transpose12(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    check_dtype("transpose12", "x", x, &[DType::F32])?;
    check_dtype("transpose12", "out", out, &[DType::F32])?;
    let [a, b, c, d] = *x.shape() else {
        return Err(Error::shape(
            "transpose12",
            format!("x must be 4-D, got {:?}", x.shape()),
        ));
    };
    if out.shape() != [a, c, b, d] {
        return Err(Error::shape(
            "transpose12",
            format!(
                "out {:?} must be {:?} for x {:?}",
                out.shape(),
                [a, c, b, d],
                x.shape()
            ),
        ));
    }
    if x.numel() == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let binds = TransposeBindings {
        x: Bind::read(x, "f32"),
        out: Bind::read_write(out, "f32"),
    };
    let pipeline = gpu.pipeline("transpose12", &(), || {
        compose(
            SRC,
            false,
            &[("WG", WG)],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let params = Params {
        a: a as u32,
        b: b as u32,
        c: c as u32,
        d: d as u32,
    };
    let grid = grid_1d(&gpu, x.numel(), WG)?;
    rec.push(gpu.dispatch(
        "transpose12",
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        grid,
    )?);
    Ok(())
}

/// The op: `x.transpose(1, 2)`, `[x [A, B, C, D]] -> [y [A, C, B, D]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transpose12;

impl KernelOp for Transpose12 {
    fn name(&self) -> &'static str {
        "transpose12"
    }
    fn arity(&self) -> &'static [usize] {
        &[1]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        match ins[0].0.as_slice() {
            &[a, b, c, d] => Ok(vec![(vec![a, c, b, d], DType::F32)]),
            x => Err(Error::shape(
                "transpose12",
                format!("x must be 4-D, got {x:?}"),
            )),
        }
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_transpose12(rec, ins[0], outs[0])
    }
}

impl Graph {
    /// `x.transpose(1, 2)` of a 4-D value.
    pub fn transpose12(&mut self, x: Value) -> Value {
        self.op(Transpose12, &[x])
    }
}
