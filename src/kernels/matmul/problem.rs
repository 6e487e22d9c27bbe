//! The validated form of a product shared by the matmul kernels (matmul.wgsl, matmul_tiled.wgsl,
//! gemv.wgsl): the `Params` and bindings contract they all read, operand dtypes and grids.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{Elem, Recorder};
use crate::kernels::check_dtype;
use crate::kernels::elementwise::{Activation, ACTIVATION_SRC};
use crate::tensor::{DType, Tensor};

crate::wgsl_params! {
    /// The uniform of the matmul family: sizes, batch strides in elements (`b_bs` 0 = b shared),
    /// the grid's tiles along N and M, the product's scale, and the LayerNorm epsilon of the
    /// fused linear + residual + LayerNorm form (0 elsewhere).
    pub(crate) struct Params {
        m: u32,
        n: u32,
        k: u32,
        batch: u32,
        a_bs: u32,
        b_bs: u32,
        o_bs: u32,
        tiles_n: u32,
        tiles_m: u32,
        alpha: f32,
        eps: f32,
        _pad: u32,
    }
}

/// Storage bindings of the matmul family in `@binding` order: a `[batch, M, K]` f32 (binding 1),
/// b `[batch?, K, N]` or `[batch?, N, K]` f32|f16 (2), out `[batch, M, N]` f32 (3), the bias
/// `[N]` f32|f16 (next) only when there is one, and for the fused LayerNorm form the residual
/// `[M, N]` f32 and the norm's weight and bias `[N]` f32|f16 (the last three).
pub(crate) struct MatmulBindings<'a> {
    pub a: Bind<'a>,
    pub b: Bind<'a>,
    pub out: Bind<'a>,
    pub bias: Option<Bind<'a>>,
    /// The activation the epilogue applies (see [`MatmulBindings::prologue`]).
    pub act: Option<Activation>,
    /// `residual`, `ln_w`, `ln_b` of the fused linear + residual + LayerNorm form.
    pub norm: Option<[Bind<'a>; 3]>,
}

impl Bindings for MatmulBindings<'_> {
    fn binds(&self) -> Vec<(&'static str, Bind<'_>)> {
        let mut v = vec![("a", self.a), ("b", self.b), ("out", self.out)];
        v.extend(self.bias.map(|b| ("bias", b)));
        if let Some([r, w, b]) = self.norm {
            v.extend([("residual", r), ("ln_w", w), ("ln_b", b)]);
        }
        v
    }
}

impl MatmulBindings<'_> {
    /// The generated prologue: `Params`, the storage declarations, `fn bias_value(n) -> f32` (0
    /// without a bias) and `fn epilogue(v, col) -> f32`, what every kernel stores for an
    /// accumulated product `v` in column `col`: `act(alpha * v + bias[col])`, the activation's
    /// functions (`shaders/common/activation.wgsl`) included only when there is one.
    pub(crate) fn prologue(&self) -> Vec<String> {
        let bias_fn = if self.bias.is_some() {
            "fn bias_value(i: u32) -> f32 { return bias_at(i); }\n"
        } else {
            "fn bias_value(i: u32) -> f32 { return 0.0; }\n"
        };
        let epilogue = match self.act {
            None => {
                "fn epilogue(v: f32, col: u32) -> f32 { return p.alpha * v + bias_value(col); }\n"
                    .to_string()
            }
            Some(a) => format!(
                "{ACTIVATION_SRC}\nfn epilogue(v: f32, col: u32) -> f32 {{ \
                 return unary({}u, p.alpha * v + bias_value(col)); }}\n",
                a.code()
            ),
        };
        [
            vec![Params::wgsl()],
            self.wgsl(),
            vec![bias_fn.to_string(), epilogue],
        ]
        .concat()
    }
}

/// A validated product: `out[b] = alpha * a[b] @ B[b] + bias`.
pub(crate) struct Problem<'a> {
    pub op: &'static str,
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// b is `[N, K]` (transposed) rather than `[K, N]`.
    pub bt: bool,
    /// b has no batch dims (shared).
    pub b_shared: bool,
    pub alpha: f32,
    /// Applied to `alpha * a @ b + bias` before the store (a linear's fused activation).
    pub act: Option<Activation>,
}

impl Problem<'_> {
    pub(crate) fn params(&self, tiles_n: usize, tiles_m: usize) -> Params {
        Params {
            m: self.m as u32,
            n: self.n as u32,
            k: self.k as u32,
            batch: self.batch as u32,
            a_bs: (self.m * self.k) as u32,
            b_bs: if self.b_shared {
                0
            } else {
                (self.n * self.k) as u32
            },
            o_bs: (self.m * self.n) as u32,
            tiles_n: tiles_n as u32,
            tiles_m: tiles_m as u32,
            alpha: self.alpha,
            eps: 0.0,
            _pad: 0,
        }
    }

    /// How this device reads b (f32, native f16 or packed f16).
    pub(crate) fn b_elem(&self, rec: &Recorder) -> Result<Elem> {
        elem_of(rec, self.op, "b", self.b)
    }

    /// How this device reads the bias, if any.
    pub(crate) fn bias_elem(&self, rec: &Recorder) -> Result<Option<Elem>> {
        self.bias
            .map(|t| elem_of(rec, self.op, "bias", t))
            .transpose()
    }

    /// The bindings, a read in vec4 units when `a_vec4`, b as `b_elem` (vec4 units when
    /// `b_vec4`), the bias as `bias`.
    pub(crate) fn bindings(
        &self,
        a_vec4: bool,
        b_elem: Elem,
        b_vec4: bool,
        bias: Option<Elem>,
    ) -> MatmulBindings<'_> {
        MatmulBindings {
            a: Bind::input(self.a, Elem::F32, a_vec4),
            b: Bind::input(self.b, b_elem, b_vec4),
            out: Bind::read_write(self.out, "f32"),
            bias: self.bias.zip(bias).map(|(t, e)| Bind::input(t, e, false)),
            act: self.act,
            norm: None,
        }
    }
}

/// How this device reads operand `operand` (f32 or f16) of `op`.
pub(crate) fn elem_of(rec: &Recorder, op: &str, operand: &str, t: &Tensor) -> Result<Elem> {
    check_dtype(op, operand, t, &[DType::F32, DType::F16])?;
    Elem::for_dtype(rec.gpu(), t.dtype()).ok_or_else(|| Error::DType {
        op: op.into(),
        operand: operand.into(),
        got: t.dtype().to_string(),
        expected: "f32 or f16".into(),
    })
}

/// A grid of `groups` workgroups split to fit the per-dimension limit.
pub(crate) fn grid(rec: &Recorder, op: &str, groups: usize) -> Result<[u32; 3]> {
    let g = u32::try_from(groups).map_err(|_| Error::Limit {
        what: format!("{op}: dispatch of {groups} workgroups"),
        needed: groups as u64,
        limit_name: "u32 workgroup count",
        limit: u32::MAX as u64,
    })?;
    Ok(rec.gpu().grid(g))
}
