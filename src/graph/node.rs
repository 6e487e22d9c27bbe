//! Graph nodes: what each op computes, its output shapes, and how it records its kernels.

use super::Value;
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::kernels::elementwise;
use crate::ops::{Activation, Binary};
use crate::tensor::{DType, Tensor};

/// One dim of a [`Op::Reshape`] target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReshapeDim {
    /// The input's dim at this index.
    Input(usize),
    /// A fixed size.
    Fixed(usize),
    /// Whatever makes the element counts agree (at most one per reshape).
    Infer,
}

/// The ops a graph node can run.
#[derive(Clone, Debug)]
pub enum Op {
    /// Elementwise activation: `[x] -> [y]`.
    Activation(Activation),
    /// Broadcast add or mul: `[a, b] -> [y]`.
    Binary(Binary),
    /// A view with another shape: `[x] -> [y]`, sharing x's buffer.
    Reshape(Vec<ReshapeDim>),
}

/// A node: an op over input values, producing output values.
#[derive(Clone, Debug)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// Its operands.
    pub inputs: Vec<Value>,
    /// Its results.
    pub outputs: Vec<Value>,
}

impl Op {
    /// Short name for profiles and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Activation(_) => "activation",
            Op::Binary(Binary::Add) => "add",
            Op::Binary(Binary::Mul) => "mul",
            Op::Reshape(_) => "reshape",
        }
    }

    /// True when the output is a view of input 0 (no kernel, same buffer).
    pub(crate) fn is_view(&self) -> bool {
        matches!(self, Op::Reshape(_))
    }

    /// Output shapes and dtypes from input shapes and dtypes.
    pub(crate) fn infer(&self, ins: &[(Vec<usize>, DType)]) -> Result<Vec<(Vec<usize>, DType)>> {
        let want_inputs = match self {
            Op::Activation(_) | Op::Reshape(_) => 1,
            Op::Binary(_) => 2,
        };
        if ins.len() != want_inputs {
            return Err(Error::invalid(
                self.name(),
                format!("takes {want_inputs} inputs, got {}", ins.len()),
            ));
        }
        Ok(match self {
            Op::Activation(_) | Op::Binary(_) => vec![(ins[0].0.clone(), DType::F32)],
            Op::Reshape(spec) => {
                let (shape, dtype) = &ins[0];
                vec![(reshape_target(shape, spec)?, *dtype)]
            }
        })
    }

    /// Records the op's kernels reading `ins` and writing `outs`.
    pub(crate) fn record(&self, rec: &mut Recorder, ins: &[Tensor], outs: &[Tensor]) -> Result<()> {
        match self {
            Op::Activation(f) => elementwise::record_activation(rec, &ins[0], &outs[0], *f),
            Op::Binary(b) => elementwise::record_binary(rec, &ins[0], &ins[1], &outs[0], *b),
            Op::Reshape(_) => Ok(()),
        }
    }
}

fn reshape_target(shape: &[usize], spec: &[ReshapeDim]) -> Result<Vec<usize>> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, d) in spec.iter().enumerate() {
        out.push(match *d {
            ReshapeDim::Input(j) => *shape.get(j).ok_or_else(|| {
                Error::shape("reshape", format!("input {shape:?} has no dim {j}"))
            })?,
            ReshapeDim::Fixed(n) => n,
            ReshapeDim::Infer => {
                if infer_at.replace(i).is_some() {
                    return Err(Error::shape("reshape", "more than one inferred dim"));
                }
                1
            }
        });
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer_at {
        if known == 0 || total % known != 0 {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {shape:?} as {spec:?}: {total} elements do not divide"),
            ));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(Error::shape(
            "reshape",
            format!("cannot view {shape:?} ({total} elements) as {out:?}"),
        ));
    }
    Ok(out)
}
