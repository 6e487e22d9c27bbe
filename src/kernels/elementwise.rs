//! Elementwise kernels (`shaders/elementwise.wgsl`): activations, and add/mul with `b` broadcast
//! over the leading dims of `a`.
//!
//! Shapes: a `[*, N]` f32, b `[N]`, `[..., N]` or the same shape as a (f32 or f16), out like a.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Elem, Recorder};
use crate::graph::{Graph, Value};
use crate::kernels::op::{KernelOp, ShapeDType};
use crate::kernels::op::{OpEntry, Operand};
use crate::kernels::{check_dtype, grid_1d};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/elementwise.wgsl");
/// The activation functions (`unary(op, x)`), shared with the matmul epilogue.
pub(crate) const ACTIVATION_SRC: &str = include_str!("../../shaders/common/activation.wgsl");
const WG: u32 = 256;

/// A pointwise activation function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `x * sigmoid(x)`.
    Silu,
    /// `0.5 x (1 + erf(x / sqrt 2))` (PyTorch's default `F.gelu`).
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (`F.gelu(approximate="tanh")`).
    GeluTanh,
}

impl Activation {
    /// Parses the names used by the conformance cases: relu, tanh, sigmoid, silu, gelu, gelu_tanh.
    pub fn parse(name: &str) -> Option<Activation> {
        Some(match name {
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "silu" | "swish" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "gelu_tanh" | "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            _ => return None,
        })
    }

    /// The op code of `unary` in `shaders/common/activation.wgsl`.
    pub(crate) fn code(self) -> u32 {
        match self {
            Activation::Relu => 0,
            Activation::Tanh => 1,
            Activation::Sigmoid => 2,
            Activation::Silu => 3,
            Activation::Gelu => 4,
            Activation::GeluTanh => 5,
        }
    }
}

/// A binary elementwise op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a * b`.
    Mul,
}

crate::wgsl_params! {
    struct Params {
        n: u32,
        n_b: u32,
        op: u32,
        _pad: u32,
    }
}

crate::wgsl_bindings! {
    /// a `[N]` f32, out `[N]` f32, b `[N_b]` f32 or f16 (repeating over a).
    struct ElementwiseBindings { a, out, b }
}

fn record(
    rec: &mut Recorder,
    op_name: &'static str,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    op: u32,
) -> Result<()> {
    check_dtype(op_name, "a", a, &[DType::F32])?;
    check_dtype(op_name, "out", out, &[DType::F32])?;
    if out.numel() != a.numel() {
        return Err(Error::shape(
            op_name,
            format!("out {:?} does not match input {:?}", out.shape(), a.shape()),
        ));
    }
    if a.numel() == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let elem = Elem::for_dtype(&gpu, b.dtype()).ok_or_else(|| Error::DType {
        op: op_name.into(),
        operand: "b".into(),
        got: b.dtype().to_string(),
        expected: "f32 or f16".into(),
    })?;
    let binds = ElementwiseBindings {
        a: Bind::read(a, "f32"),
        out: Bind::read_write(out, "f32"),
        b: Bind::input(b, elem, false),
    };
    let pipeline = gpu.pipeline("elementwise", &elem, || {
        compose(
            &format!("{ACTIVATION_SRC}{SRC}"),
            binds.needs_f16(),
            &[("WG", WG)],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let params = Params {
        n: a.numel() as u32,
        n_b: b.numel().max(1) as u32,
        op,
        _pad: 0,
    };
    let d = gpu.dispatch(
        "elementwise",
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        grid_1d(&gpu, a.numel(), WG)?,
    )?;
    rec.push(d);
    Ok(())
}

/// Records `out = f(x)`; x and out f32 with equal element counts.
pub fn record_activation(
    rec: &mut Recorder,
    x: &Tensor,
    out: &Tensor,
    f: Activation,
) -> Result<()> {
    // `b` is unused by unary ops; bind x again so the layout is the same as for binary ops.
    record(rec, "activation", x, x, out, f.code())
}

/// Records `out = a (op) b`, with b's elements repeating over a's leading dims: b's shape must equal
/// a trailing part of a's shape (for example a `[B, T, N]`, b `[N]` or `[T, N]`).
pub fn record_binary(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    op: Binary,
) -> Result<()> {
    let name = match op {
        Binary::Add => "add",
        Binary::Mul => "mul",
    };
    let (ash, bsh) = (a.shape(), b.shape());
    let trailing = bsh.len() <= ash.len() && ash[ash.len() - bsh.len()..] == *bsh;
    if !trailing {
        return Err(Error::shape(
            name,
            format!("b {bsh:?} must equal a trailing part of a {ash:?} to broadcast"),
        ));
    }
    if b.numel() == 0 && a.numel() != 0 {
        return Err(Error::shape(
            name,
            format!("b {bsh:?} is empty but a {ash:?} is not"),
        ));
    }
    let code = match op {
        Binary::Add => 16,
        Binary::Mul => 17,
    };
    record(rec, name, a, b, out, code)
}

impl KernelOp for Activation {
    fn name(&self) -> &'static str {
        "activation"
    }
    fn arity(&self) -> &'static [usize] {
        &[1]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        Ok(vec![(ins[0].0.clone(), DType::F32)])
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_activation(rec, ins[0], outs[0], *self)
    }
}

impl KernelOp for Binary {
    fn name(&self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Mul => "mul",
        }
    }
    fn arity(&self) -> &'static [usize] {
        &[2]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        Ok(vec![(ins[0].0.clone(), DType::F32)])
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_binary(rec, ins[0], ins[1], outs[0], *self)
    }
}

impl Graph {
    /// `f(x)` elementwise.
    pub fn activation(&mut self, x: Value, f: Activation) -> Value {
        self.op(f, &[x])
    }

    /// `a + b`, b broadcast over a's leading dims.
    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.op(Binary::Add, &[a, b])
    }

    /// `a * b`, b broadcast over a's leading dims.
    pub fn mul(&mut self, a: Value, b: Value) -> Value {
        self.op(Binary::Mul, &[a, b])
    }
}

/// Registration of `activation`: conformance `in.x` -> `out.y`, attribute `fn` (gelu, gelu_tanh,
/// relu, tanh, sigmoid, silu).
pub const ACTIVATION_ENTRY: OpEntry = OpEntry {
    name: "activation",
    suite: "norms",
    operands: &[Operand::Input("x")],
    outputs: &["y"],
    from_attrs: |attrs| {
        let name = attrs.get("fn").and_then(|f| f.as_str()).unwrap_or_default();
        let f = Activation::parse(name)
            .ok_or_else(|| Error::invalid("activation", format!("unknown fn {name:?}")))?;
        Ok(Box::new(f))
    },
    bench_cases: Vec::new,
};
