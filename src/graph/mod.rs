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

mod executor;
mod node;
pub mod planner;
pub mod profile;
mod session;

pub use executor::{HostInput, HostOutput, Plan};
pub use node::{Node, Op, ReshapeDim};
pub use profile::Profile;
pub use session::Session;

use crate::ops::{Activation, Binary};
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

    /// Adds a node with `n_out` outputs and returns them.
    pub fn node(&mut self, op: Op, inputs: &[Value], n_out: usize) -> Vec<Value> {
        let outputs: Vec<Value> = (0..n_out).map(|_| self.push_value(Source::Node)).collect();
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            outputs: outputs.clone(),
        });
        outputs
    }

    fn node1(&mut self, op: Op, inputs: &[Value]) -> Value {
        self.node(op, inputs, 1)[0]
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

    /// `f(x)` elementwise.
    pub fn activation(&mut self, x: Value, f: Activation) -> Value {
        self.node1(Op::Activation(f), &[x])
    }

    /// `a + b`, b broadcast over a's leading dims.
    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.node1(Op::Binary(Binary::Add), &[a, b])
    }

    /// `a * b`, b broadcast over a's leading dims.
    pub fn mul(&mut self, a: Value, b: Value) -> Value {
        self.node1(Op::Binary(Binary::Mul), &[a, b])
    }

    /// `nn.Linear`: `x [*, K] W^T + b`, w `[N, K]`.
    pub fn linear(&mut self, x: Value, w: Value, b: Option<Value>) -> Value {
        match b {
            Some(b) => self.node1(Op::Linear, &[x, w, b]),
            None => self.node1(Op::Linear, &[x, w]),
        }
    }

    /// `torch.matmul(a, b)`.
    pub fn matmul(&mut self, a: Value, b: Value) -> Value {
        self.node1(Op::Matmul, &[a, b])
    }

    /// `a @ b^T * alpha`.
    pub fn matmul_bt(&mut self, a: Value, b: Value, alpha: f32) -> Value {
        self.node1(Op::MatmulBt(alpha), &[a, b])
    }

    /// Softmax over the last dim.
    pub fn softmax(&mut self, x: Value) -> Value {
        self.node1(Op::Softmax, &[x])
    }

    /// Layer norm over the last dim.
    pub fn layer_norm(&mut self, x: Value, weight: Value, bias: Value, eps: f32) -> Value {
        self.node1(Op::LayerNorm(eps), &[x, weight, bias])
    }

    /// Embedding lookup of i32 ids.
    ///
    /// When `ids` is a graph input and `weight` a `[V, D]` table, every run checks the host ids
    /// against `[0, V)` before uploading them (an id out of range is an error naming the input,
    /// the id and its position). Ids computed by another node on the GPU are not checked: the
    /// kernel gives a zero row for them (a shader cannot raise an error).
    pub fn embedding(&mut self, ids: Value, weight: Value) -> Value {
        self.node1(Op::Embedding, &[ids, weight])
    }

    /// `x.transpose(1, 2)` of a 4-D value.
    pub fn transpose12(&mut self, x: Value) -> Value {
        self.node1(Op::Transpose12, &[x])
    }

    /// Masked mean over tokens (mask `[B, T]` i32), L2-normalized when `normalize`.
    pub fn mean_pool(&mut self, x: Value, mask: Value, normalize: bool) -> Value {
        self.node1(Op::MeanPool(normalize), &[x, mask])
    }

    /// Multi-head self-attention over a packed `[B, T, 3E]` q/k/v projection with a key mask
    /// `[B, T]` u32 (non-zero = may attend): `[B, T, E]`.
    pub fn self_attention_packed(&mut self, qkv: Value, mask: Value, heads: usize) -> Value {
        self.node1(Op::SelfAttentionPacked { heads }, &[qkv, mask])
    }

    /// The same data viewed with another shape (no kernel, no copy).
    pub fn reshape(&mut self, x: Value, shape: &[ReshapeDim]) -> Value {
        self.node1(Op::Reshape(shape.to_vec()), &[x])
    }
}
