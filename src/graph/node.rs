//! Graph nodes: what each op computes, its output shapes, and how it records its kernels.

use super::Value;
use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::kernels::sdpa::{self, AttnDims, Heads, MaskKind, MaskView, SdpaArgs};
use crate::kernels::{elementwise, embedding, layer_norm, layout, matmul, pooling, softmax};
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
    /// `nn.Linear`: `[x [*, K], w [N, K]] -> [y [*, N]]`, or with a bias `[x, w, b [N]]`.
    Linear,
    /// `torch.matmul`: `[a [*, M, K], b [*, K, N]] -> [y [*, M, N]]`.
    Matmul,
    /// `a @ b^T * alpha`: `[a [*, M, K], b [*, N, K]] -> [y [*, M, N]]`.
    MatmulBt(f32),
    /// Softmax over the last dim: `[x] -> [y]`.
    Softmax,
    /// Layer norm over the last dim: `[x [*, D], weight [D], bias [D]] -> [y]`.
    LayerNorm(f32),
    /// Embedding lookup: `[ids [*] i32, weight [V, D]] -> [y [*, D]]`.
    Embedding,
    /// `x.transpose(1, 2)`: `[x [A, B, C, D]] -> [y [A, C, B, D]]`.
    Transpose12,
    /// Masked mean over tokens, L2-normalized when set: `[x [B, T, E], mask [B, T] i32] -> [y [B, E]]`.
    MeanPool(bool),
    /// Multi-head self-attention over a packed projection, heads read in place (no transposes):
    /// `[qkv [B, T, 3E], mask [B, T] u32 (non-zero = may attend)] -> [y [B, T, E]]`, scale 1/sqrt(E/H).
    SelfAttentionPacked {
        /// Number of heads H.
        heads: usize,
    },
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
            Op::Linear => "linear",
            Op::Matmul => "matmul",
            Op::MatmulBt(_) => "matmul_bt",
            Op::Softmax => "softmax",
            Op::LayerNorm(_) => "layer_norm",
            Op::Embedding => "embedding",
            Op::Transpose12 => "transpose12",
            Op::MeanPool(_) => "mean_pool",
            Op::SelfAttentionPacked { .. } => "self_attention",
        }
    }

    /// True when the output is a view of input 0 (no kernel, same buffer).
    pub(crate) fn is_view(&self) -> bool {
        matches!(self, Op::Reshape(_))
    }

    /// Output shapes and dtypes from input shapes and dtypes.
    pub(crate) fn infer(&self, ins: &[(Vec<usize>, DType)]) -> Result<Vec<(Vec<usize>, DType)>> {
        let arity: &[usize] = match self {
            Op::Activation(_) | Op::Reshape(_) | Op::Softmax | Op::Transpose12 => &[1],
            Op::Binary(_)
            | Op::Matmul
            | Op::MatmulBt(_)
            | Op::Embedding
            | Op::MeanPool(_)
            | Op::SelfAttentionPacked { .. } => &[2],
            Op::Linear => &[2, 3],
            Op::LayerNorm(_) => &[3],
        };
        if !arity.contains(&ins.len()) {
            return Err(Error::invalid(
                self.name(),
                format!("takes {arity:?} inputs, got {}", ins.len()),
            ));
        }
        let f32_out = |shape: Vec<usize>| vec![(shape, DType::F32)];
        let x = &ins[0].0;
        let last = |s: &[usize]| s.last().copied().unwrap_or(1);
        let lead = |s: &[usize]| s[..s.len().saturating_sub(1)].to_vec();
        Ok(match self {
            Op::Activation(_) | Op::Binary(_) | Op::Softmax | Op::LayerNorm(_) => {
                f32_out(x.clone())
            }
            Op::Reshape(spec) => vec![(reshape_target(x, spec)?, ins[0].1)],
            Op::Linear => {
                let w = &ins[1].0;
                let mut s = lead(x);
                s.push(w.first().copied().unwrap_or(0));
                f32_out(s)
            }
            Op::Matmul | Op::MatmulBt(_) => {
                let b = &ins[1].0;
                if x.len() < 2 || b.len() < 2 {
                    return Err(Error::shape(
                        self.name(),
                        format!("a {x:?} and b {b:?} must be at least 2-D"),
                    ));
                }
                let n = if matches!(self, Op::Matmul) {
                    last(b)
                } else {
                    b[b.len() - 2]
                };
                let mut s = lead(x);
                s.push(n);
                f32_out(s)
            }
            Op::Embedding => {
                let mut s = x.clone();
                s.push(last(&ins[1].0));
                f32_out(s)
            }
            Op::Transpose12 => match x.as_slice() {
                &[a, b, c, d] => f32_out(vec![a, c, b, d]),
                _ => {
                    return Err(Error::shape(
                        "transpose12",
                        format!("x must be 4-D, got {x:?}"),
                    ))
                }
            },
            Op::MeanPool(_) => match x.as_slice() {
                &[b, _, e] => f32_out(vec![b, e]),
                _ => {
                    return Err(Error::shape(
                        "mean_pool",
                        format!("x must be [B, T, E], got {x:?}"),
                    ))
                }
            },
            Op::SelfAttentionPacked { heads } => match x.as_slice() {
                &[b, t, e3] if *heads > 0 && e3 % (3 * heads) == 0 => f32_out(vec![b, t, e3 / 3]),
                _ => {
                    return Err(Error::shape(
                        "self_attention",
                        format!(
                            "qkv {x:?} must be [B, T, 3E] with E a multiple of heads = {heads}"
                        ),
                    ))
                }
            },
        })
    }

    /// Records the op's kernels reading `ins` and writing `outs`.
    pub(crate) fn record(&self, rec: &mut Recorder, ins: &[Tensor], outs: &[Tensor]) -> Result<()> {
        match self {
            Op::Activation(f) => elementwise::record_activation(rec, &ins[0], &outs[0], *f),
            Op::Binary(b) => elementwise::record_binary(rec, &ins[0], &ins[1], &outs[0], *b),
            Op::Reshape(_) => Ok(()),
            Op::Linear => matmul::record_linear(rec, &ins[0], &ins[1], ins.get(2), &outs[0]),
            Op::Matmul => matmul::record_matmul(rec, &ins[0], &ins[1], &outs[0]),
            Op::MatmulBt(alpha) => {
                matmul::record_matmul_bt(rec, &ins[0], &ins[1], &outs[0], *alpha)
            }
            Op::Softmax => softmax::record_softmax(rec, &ins[0], &outs[0]),
            Op::LayerNorm(eps) => {
                layer_norm::record_layer_norm(rec, &ins[0], &ins[1], &ins[2], &outs[0], *eps)
            }
            Op::Embedding => embedding::record_embedding(rec, &ins[0], &ins[1], &outs[0]),
            Op::Transpose12 => layout::record_transpose12(rec, &ins[0], &outs[0]),
            Op::MeanPool(normalize) => {
                pooling::record_mean_pool(rec, &ins[0], &ins[1], &outs[0], *normalize)
            }
            Op::SelfAttentionPacked { heads } => {
                record_packed_attention(rec, &ins[0], &ins[1], &outs[0], *heads)
            }
        }
    }
}

/// Self-attention whose q, k, v heads are column blocks of one `[B, T, 3E]` projection.
fn record_packed_attention(
    rec: &mut Recorder,
    qkv: &Tensor,
    mask: &Tensor,
    out: &Tensor,
    heads: usize,
) -> Result<()> {
    let [b, t, e3] = *qkv.shape() else {
        return Err(Error::shape(
            "self_attention",
            format!("qkv {:?} must be [B, T, 3E]", qkv.shape()),
        ));
    };
    let e = e3 / 3;
    let d = e / heads;
    let dims = AttnDims {
        b,
        h: heads,
        tq: t,
        tk: t,
        d,
        dv: d,
    };
    let args = SdpaArgs {
        mask: Some(MaskView::per_key(
            "self_attention",
            mask,
            MaskKind::Keep,
            b,
            t,
        )?),
        ..Default::default()
    };
    sdpa::record_sdpa(
        rec,
        &dims,
        Heads::interleaved(qkv, t, e3, 0, d),
        Heads::interleaved(qkv, t, e3, e, d),
        Heads::interleaved(qkv, t, e3, 2 * e, d),
        Heads::interleaved(out, t, e, 0, d),
        &args,
        None,
    )
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
