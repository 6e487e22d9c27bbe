//! The op interface every kernel unit implements once, and the registry the tools read.
//!
//! A kernel unit (for example [`crate::kernels::softmax`]) describes its op with one
//! [`KernelOp`] value (attributes such as `eps` are its fields). From that one description:
//!
//! - the eager API runs it ([`eager`]: infer output shapes, allocate, record, submit);
//! - the graph runs it as a node ([`crate::graph::Graph::op`]: the planner asks `infer`, the
//!   executor `record`s into the plan's buffers);
//! - the conformance runner and the bench suites find it through its [`OpEntry`] in
//!   [`crate::kernels::REGISTRY`] (operand names as the conformance files spell them, attributes
//!   from JSON, bench shapes).
//!
//! ```
//! use heedful::kernels::{op::eager, softmax::Softmax};
//! use heedful::{Gpu, Tensor};
//! let gpu = Gpu::shared()?;
//! let x = Tensor::from_f32(&gpu, &[0.0, 0.0], &[1, 2])?; // [R=1, N=2]
//! let y = eager(&gpu, &Softmax, &[&x])?.remove(0);
//! assert_eq!(y.to_vec_f32(&gpu)?, vec![0.5, 0.5]);
//! # Ok::<(), heedful::Error>(())
//! ```

use std::fmt::Debug;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::tensor::{DType, Tensor};

/// A shape and dtype: what `infer` reads and returns for each operand.
pub type ShapeDType = (Vec<usize>, DType);

/// One op of a kernel unit: output shapes from input shapes, and the kernels that compute it.
pub trait KernelOp: Debug + Send + Sync + 'static {
    /// Name in profiles, errors, conformance files and bench lines (`"softmax"`).
    fn name(&self) -> &'static str;

    /// Accepted operand counts (for example `[2, 3]` for a linear layer with an optional bias).
    fn arity(&self) -> &'static [usize];

    /// Output shapes and dtypes for operands of these shapes and dtypes (operand count already
    /// checked against [`KernelOp::arity`]). Shape errors name the op and the shapes.
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>>;

    /// Records the op's kernels reading `ins` and writing `outs` (shaped as `infer` said).
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()>;

    /// True when output 0 is a view of input 0 (no kernel, same buffer).
    fn is_view(&self) -> bool {
        false
    }

    /// For ops that index tables with ids (embedding lookups): the operand positions of each
    /// ids operand and of its `[V, D]` table, so the runtime checks host ids against `[0, V)`
    /// before upload.
    fn id_operands(&self) -> &'static [(usize, usize)] {
        &[]
    }
}

/// Checks the operand count, then calls [`KernelOp::infer`].
pub fn infer_checked(op: &dyn KernelOp, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
    let arity = op.arity();
    if !arity.contains(&ins.len()) {
        return Err(Error::invalid(
            op.name(),
            format!("takes {arity:?} operands, got {}", ins.len()),
        ));
    }
    op.infer(ins)
}

/// Runs `op` eagerly: infers the outputs, allocates them, records the kernels and submits.
pub fn eager(gpu: &Gpu, op: &dyn KernelOp, ins: &[&Tensor]) -> Result<Vec<Tensor>> {
    let shapes: Vec<ShapeDType> = ins
        .iter()
        .map(|t| (t.shape().to_vec(), t.dtype()))
        .collect();
    let outs = infer_checked(op, &shapes)?
        .into_iter()
        .map(|(shape, dtype)| Tensor::zeros(gpu, &shape, dtype))
        .collect::<Result<Vec<_>>>()?;
    let out_refs: Vec<&Tensor> = outs.iter().collect();
    let mut rec = Recorder::new(gpu);
    op.record(&mut rec, ins, &out_refs)?;
    rec.submit()?;
    Ok(outs)
}

/// [`eager`] for a one-output op.
pub fn eager1(gpu: &Gpu, op: &dyn KernelOp, ins: &[&Tensor]) -> Result<Tensor> {
    eager(gpu, op, ins)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::invalid(op.name(), "produced no output"))
}

/// One operand of a registered op, as a conformance case names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// `in.<name>`: an input.
    Input(&'static str),
    /// `w.<name>`: a weight.
    Weight(&'static str),
    /// `w.<name>` that a case may leave out (an optional bias).
    OptionalWeight(&'static str),
}

/// What a bench case measures against: the adapter's FMA peak or its copy bandwidth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchBound {
    /// Arithmetic-bound: the figure is FLOP.
    Compute,
    /// Memory-bound: the figure is bytes moved.
    Memory,
}

/// One benchmark case of a registered op: operands of these shapes and dtypes (filled with
/// deterministic values in [-4, 4)), the work it counts, and what that work means.
#[derive(Clone, Debug)]
pub struct BenchCase {
    /// The shape label in bench lines (`"4096x384"`).
    pub label: String,
    /// The op with its attributes.
    pub op: std::sync::Arc<dyn KernelOp>,
    /// Operand shapes and dtypes, in operand order.
    pub operands: Vec<ShapeDType>,
    /// The dtype column (`"f32 x f16"`).
    pub dtype: &'static str,
    /// FLOP (compute-bound) or bytes (memory-bound) one run does.
    pub work: f64,
    /// Which roofline the case is measured against.
    pub bound: BenchBound,
    /// What `work` counts, for the bench line's note.
    pub note: &'static str,
}

/// The registration of an op: what the conformance runner and the bench suites derive from the
/// kernel unit. One line in [`crate::kernels::REGISTRY`] per op.
#[derive(Clone, Copy, Debug)]
pub struct OpEntry {
    /// The op's name (as in conformance files and bench filters).
    pub name: &'static str,
    /// The bench suite its cases belong to (`"norms"`).
    pub suite: &'static str,
    /// Operands in the op's order, as conformance cases name them.
    pub operands: &'static [Operand],
    /// Output names, as conformance cases name them (`out.<name>`).
    pub outputs: &'static [&'static str],
    /// Builds the op from a conformance case's `attrs` JSON object.
    pub from_attrs: fn(&serde_json::Value) -> Result<Box<dyn KernelOp>>,
    /// The op's benchmark cases.
    pub bench_cases: fn() -> Vec<BenchCase>,
}

impl OpEntry {
    /// The registered op named `name`.
    pub fn find(name: &str) -> Option<&'static OpEntry> {
        crate::kernels::REGISTRY.iter().find(|e| e.name == name)
    }
}

/// A float attribute of a conformance `attrs` object, or `default` when absent; an attribute that
/// is present but not a number is an error naming the op and the key.
pub fn attr_f64(op: &str, attrs: &serde_json::Value, key: &str, default: f64) -> Result<f64> {
    match attrs.get(key) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| Error::invalid(op, format!("attribute {key} = {v} is not a number"))),
    }
}
