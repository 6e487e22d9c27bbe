//! Graph nodes: a node runs one [`KernelOp`] (the op description each kernel unit defines once)
//! over input values. The one op that is not a kernel, [`Reshape`], is defined here.

use std::sync::Arc;

use super::Value;
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::kernels::op::{KernelOp, ShapeDType};
use crate::tensor::Tensor;

/// One dim of a [`Reshape`] target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReshapeDim {
    /// The input's dim at this index.
    Input(usize),
    /// A fixed size.
    Fixed(usize),
    /// Whatever makes the element counts agree (at most one per reshape).
    Infer,
}

/// What a node runs: any kernel unit's op description.
pub type Op = Arc<dyn KernelOp>;

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

/// A view of `[x]` with another shape: `[y]` shares x's buffer (no kernel, no copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reshape(pub Vec<ReshapeDim>);

impl KernelOp for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn arity(&self) -> &'static [usize] {
        &[1]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        Ok(vec![(reshape_target(&ins[0].0, &self.0)?, ins[0].1)])
    }
    fn record(&self, _: &mut Recorder, _: &[&Tensor], _: &[&Tensor]) -> Result<()> {
        Ok(())
    }
    fn is_view(&self) -> bool {
        true
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
        if known == 0 || !total.is_multiple_of(known) {
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
