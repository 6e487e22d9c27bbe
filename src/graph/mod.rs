//! The graph executor: a model is a graph of kernel nodes, planned once per input shape and run many
//! times with one submission per run.
//!
//! - [`Graph`] is the IR and its builder: values with static or symbolic dims, nodes that are ops
//!   over values (`let h = g.linear(x, w, Some(b))` style). The nodes record the same kernels the
//!   eager [`crate::ops`] use.
//! - [`planner`] orders the nodes, computes each intermediate's lifetime and assigns buffers with
//!   best-fit reuse over lifetimes; it reports peak activation bytes with and without reuse.
//! - [`Session`] builds a [`Plan`] per input shape (pipelines, buffers, bind groups, staging), then
//!   each run uploads the inputs, records every dispatch into one command encoder, submits once and
//!   reads back only the outputs. A warmed-up run creates no buffers, bind groups or pipelines.
//!   Plans live in a bounded [`PlanCache`] (least recently used out first), so memory stays flat
//!   over any sequence of input shapes.
//! - [`runtime`] runs loops: a [`LoopPlan`] holds state across the steps of a run, replays step
//!   recordings in chunks of several steps per submission with the loop's control on the GPU, and
//!   reads named outputs back once per chunk (the seq2seq decoders run on it; models declare
//!   tensors and record kernels, the runtime owns buffers, encoders and submissions).
//!
//! ```no_run
//! use heedful::graph::{Dim, Graph, Session};
//! use heedful::{ops::Activation, DType, Gpu, Tensor};
//!
//! let gpu = Gpu::shared()?;
//! let mut g = Graph::new();
//! let x = g.input("x", &[Dim::sym("batch"), Dim::Fixed(4)], DType::F32);
//! let bias = g.weight(Tensor::from_f32(&gpu, &[1.0, 2.0, 3.0, 4.0], &[4])?);
//! let h = g.add(x, bias);
//! let y = g.activation(h, Activation::Relu);
//! g.output("y", y);
//! let session = Session::new(&gpu, std::sync::Arc::new(g));
//! let out = session.run(&[("x", heedful::graph::HostInput::f32(vec![-5.0; 8], &[2, 4]))])?;
//! assert_eq!(out["y"].data, vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
//! # Ok::<(), heedful::Error>(())
//! ```

mod cache;
mod executor;
mod node;
pub mod planner;
pub mod profile;
pub mod runtime;
mod session;

pub use cache::{PlanCache, DEFAULT_PLAN_CAPACITY};
pub use executor::{HostInput, HostOutput, Plan};
pub use node::{Node, Op, Reshape, ReshapeDim};
pub use profile::Profile;
pub use runtime::{ChunkTime, LoopBuilder, LoopPlan, LoopResults, Schedule, Stop, Writes};
pub use session::Session;

use std::sync::Arc;

use crate::kernels::op::KernelOp;
use crate::tensor::{DType, Tensor};

/// A dimension of a graph input: fixed, or a named symbol bound when a plan is built.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known when the graph is built.
    Fixed(usize),
    /// A size bound from the actual inputs (for example `batch`, `seq`).
    Symbol(String),
}

impl Dim {
    /// A symbolic dim.
    pub fn sym(name: &str) -> Dim {
        Dim::Symbol(name.to_string())
    }
}

/// A value in a graph (an input, a weight or a node output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub(crate) usize);

/// How a value comes to exist.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// A graph input, uploaded each run.
    Input {
        name: String,
        dims: Vec<Dim>,
        dtype: DType,
    },
    /// A GPU-resident constant (weights).
    Weight(Tensor),
    /// An output of a node.
    Node,
}

/// A graph of kernel nodes.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub(crate) values: Vec<Source>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) outputs: Vec<(String, Value)>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    fn push_value(&mut self, s: Source) -> Value {
        self.values.push(s);
        Value(self.values.len() - 1)
    }

    /// Declares an input named `name` with (possibly symbolic) dims.
    pub fn input(&mut self, name: &str, dims: &[Dim], dtype: DType) -> Value {
        self.push_value(Source::Input {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
        })
    }

    /// Adds a GPU-resident constant (a weight).
    pub fn weight(&mut self, t: Tensor) -> Value {
        self.push_value(Source::Weight(t))
    }

    /// Adds a node running `op` (any kernel unit's [`KernelOp`]) with `n_out` outputs and returns
    /// them. Operand counts and shapes are checked when a plan is built.
    pub fn node(&mut self, op: Op, inputs: &[Value], n_out: usize) -> Vec<Value> {
        let outputs: Vec<Value> = (0..n_out).map(|_| self.push_value(Source::Node)).collect();
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            outputs: outputs.clone(),
        });
        outputs
    }

    /// Adds a one-output node running `op` and returns its output. Kernel units add named
    /// builders on top (`g.softmax(..)` is defined beside the softmax kernel).
    pub fn op(&mut self, op: impl KernelOp, inputs: &[Value]) -> Value {
        self.node(Arc::new(op), inputs, 1)[0]
    }

    /// Marks `v` as an output named `name`.
    pub fn output(&mut self, name: &str, v: Value) {
        self.outputs.push((name.to_string(), v));
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The same data viewed with another shape (no kernel, no copy).
    pub fn reshape(&mut self, x: Value, shape: &[ReshapeDim]) -> Value {
        self.op(Reshape(shape.to_vec()), &[x])
    }
}
