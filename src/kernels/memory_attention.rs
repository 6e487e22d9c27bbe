//! Attention over encoder memory for RNN decoders (`shaders/memory_attention.wgsl`): one fused
//! dispatch per decoder step computes the query projection, scores, masked softmax and context.
//! The additive (Bahdanau) form's key projection `W_k k_t` is computed once per sequence by
//! [`record_project`] (`shaders/attention_project.wgsl`) and reused at every step.
//!
//! Shapes: query `[B, Dq]`, keys `[B, T, Dk]`, values `[B, T, Dv]`, mask `[B, T]` u32 (non-zero =
//! valid), context `[B, Dv]`, weights `[B, T]`; weights f32 or f16.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Elem, Gpu, Recorder};
use crate::kernels::check_dtype;
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/memory_attention.wgsl");
const PROJECT_SRC: &str = include_str!("../../shaders/attention_project.wgsl");
const WG: u32 = 64;
const RB: u32 = 4;

/// Which score function.
#[derive(Clone, Copy, Debug)]
pub enum Score<'a> {
    /// Bahdanau: `v . tanh(W_q q + b + kp_t)` with `kp = keys W_k^T` `[B, T, A]` precomputed.
    Additive {
        /// `W_q [A, Dq]`.
        w_q: &'a Tensor,
        /// `v [A]`.
        v: &'a Tensor,
        /// `b [A]`.
        b: &'a Tensor,
        /// `keys W_k^T`, `[B, T, A]` f32 (from [`record_project`]).
        keys_proj: &'a Tensor,
    },
    /// Luong dot: `q . k_t`.
    Dot,
    /// Luong general: `q . (W k_t)` with `W [Dq, Dk]`.
    General {
        /// `W [Dq, Dk]`.
        w: &'a Tensor,
    },
}

impl Score<'_> {
    fn name(&self) -> &'static str {
        match self {
            Score::Additive { .. } => "additive_attention",
            Score::Dot => "dot_attention",
            Score::General { .. } => "general_attention",
        }
    }
}

crate::wgsl_params! {
    /// The uniform of `shaders/attention_project.wgsl`: `r` rows of `k` inputs -> `n` outputs.
    struct ProjectParams { r: u32, k: u32, n: u32, _pad: u32 }
}

crate::wgsl_bindings! {
    /// The storage bindings of `shaders/attention_project.wgsl`: x `[R, K]` f32, out `[R, N]` f32,
    /// w `[N, K]` f32|f16.
    struct ProjectBindings { x, out, w }
}

crate::wgsl_bindings! {
    /// The storage bindings of `shaders/memory_attention.wgsl` (shapes there): query, src
    /// (kp or keys), values, w (W_q, W or a dummy), vv, bias, mask, ctx, weights, qproj (scratch).
    struct MemoryAttentionBindings { query, src, values, w, vv, bias, mask, ctx, weights, qproj }
}

crate::wgsl_params! {
    struct Params {
        t: u32,
        dq: u32,
        s: u32,
        dv: u32,
        mode: u32,
        has_mask: u32,
        _pad: [u32; 2],
    }
}

fn elem(gpu: &Gpu, op: &str, name: &str, t: &Tensor) -> Result<Elem> {
    Elem::for_dtype(gpu, t.dtype()).ok_or_else(|| Error::DType {
        op: op.into(),
        operand: name.into(),
        got: t.dtype().to_string(),
        expected: "f32 or f16".into(),
    })
}

fn want_shape(op: &str, name: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    if t.shape() != want {
        return Err(Error::shape(
            op,
            format!("{name} {:?} must be {want:?}", t.shape()),
        ));
    }
    Ok(())
}

/// Records one attention step: `ctx [B, Dv]` and `weights [B, T]` from `query [B, Dq]`,
/// `keys [B, T, Dk]` and `values [B, T, Dv]` (for [`Score::Additive`] pass the keys as values:
/// the context sums the keys). `qproj` is scratch of at least `B * A` (additive) or `B * Dk`
/// (general) f32 elements; unused by [`Score::Dot`].
#[allow(clippy::too_many_arguments)]
pub fn record_memory_attention(
    rec: &mut Recorder,
    score: Score,
    query: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    mask: Option<&Tensor>,
    ctx: &Tensor,
    weights: &Tensor,
    qproj: &Tensor,
) -> Result<()> {
    let op = score.name();
    for (name, t) in [("query", query), ("keys", keys), ("values", values)] {
        check_dtype(op, name, t, &[DType::F32])?;
    }
    check_dtype(op, "context", ctx, &[DType::F32])?;
    check_dtype(op, "weights", weights, &[DType::F32])?;
    check_dtype(op, "scratch", qproj, &[DType::F32])?;
    let (qs, ks, vs) = (query.shape(), keys.shape(), values.shape());
    if qs.len() != 2 || ks.len() != 3 || vs.len() != 3 || ks[0] != qs[0] || vs[..2] != ks[..2] {
        return Err(Error::shape(
            op,
            format!(
                "query {qs:?}, keys {ks:?}, values {vs:?}: expected [B, Dq], [B, T, Dk], [B, T, Dv]"
            ),
        ));
    }
    let (b, dq, t, dk, dv) = (qs[0], qs[1], ks[1], ks[2], vs[2]);
    want_shape(op, "context", ctx, &[b, dv])?;
    want_shape(op, "weights", weights, &[b, t])?;
    if let Some(m) = mask {
        check_dtype(op, "mask", m, &[DType::U32])?;
        want_shape(op, "mask", m, &[b, t])?;
    }
    let gpu = rec.gpu().clone();
    let dummy = Tensor::zeros(&gpu, &[4], DType::F32)?;
    let (mode, s, src, w, vv, bias) = match score {
        Score::Additive {
            w_q,
            v,
            b: bias,
            keys_proj,
        } => {
            let a = w_q.shape().first().copied().unwrap_or(0);
            want_shape(op, "W_q", w_q, &[a, dq])?;
            want_shape(op, "v", v, &[a])?;
            want_shape(op, "b", bias, &[a])?;
            want_shape(op, "keys_proj", keys_proj, &[b, t, a])?;
            check_dtype(op, "keys_proj", keys_proj, &[DType::F32])?;
            (0u32, a, keys_proj, w_q, v, bias)
        }
        Score::Dot => {
            if dq != dk {
                return Err(Error::shape(
                    op,
                    format!("query {qs:?} and keys {ks:?}: dims differ"),
                ));
            }
            (1, dk, keys, &dummy, &dummy, &dummy)
        }
        Score::General { w } => {
            want_shape(op, "W", w, &[dq, dk])?;
            (2, dk, keys, w, &dummy, &dummy)
        }
    };
    if mode != 1 && qproj.numel() < b * s {
        return Err(Error::shape(
            op,
            format!("scratch {:?} must hold {} values", qproj.shape(), b * s),
        ));
    }
    if b == 0 {
        return Ok(());
    }
    let elems = (
        elem(&gpu, op, "weight", w)?,
        elem(&gpu, op, "v", vv)?,
        elem(&gpu, op, "b", bias)?,
    );
    let p = Params {
        t: t as u32,
        dq: dq as u32,
        s: s as u32,
        dv: dv as u32,
        mode,
        has_mask: mask.is_some() as u32,
        _pad: [0; 2],
    };
    let mask_dummy;
    let mask = match mask {
        Some(m) => m,
        None => {
            mask_dummy = Tensor::zeros(&gpu, &[4], DType::U32)?;
            &mask_dummy
        }
    };
    let binds = MemoryAttentionBindings {
        query: Bind::read(query, "f32"),
        src: Bind::read(src, "f32"),
        values: Bind::read(values, "f32"),
        w: Bind::input(w, elems.0, false),
        vv: Bind::input(vv, elems.1, false),
        bias: Bind::input(bias, elems.2, false),
        mask: Bind::read(mask, "u32"),
        ctx: Bind::read_write(ctx, "f32"),
        weights: Bind::read_write(weights, "f32"),
        qproj: Bind::read_write(qproj, "f32"),
    };
    let pipe = gpu.pipeline("memory_attention", &elems, || {
        compose(
            SRC,
            binds.needs_f16(),
            &[("WG", WG)],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let disp = gpu.dispatch(
        "memory_attention",
        &pipe,
        bytemuck::bytes_of(&p),
        &binds.buffers(),
        [u32::try_from(b).unwrap_or(u32::MAX), 1, 1],
    )?;
    rec.push(disp);
    Ok(())
}

/// Records `out [R, N] = x [R, K] W^T` with `W [N, K]` f32 or f16: the once-per-sequence key
/// projection of additive attention.
pub fn record_project(rec: &mut Recorder, x: &Tensor, w: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "attention_project";
    check_dtype(OP, "x", x, &[DType::F32])?;
    check_dtype(OP, "out", out, &[DType::F32])?;
    let xs = x.shape();
    let ws = w.shape();
    let k = xs.last().copied().unwrap_or(0);
    if ws.len() != 2 || ws[1] != k || xs.is_empty() {
        return Err(Error::shape(
            OP,
            format!("x {xs:?} and weight {ws:?}: expected x [*, K], weight [N, K]"),
        ));
    }
    let n = ws[0];
    let r = x.numel() / k.max(1);
    if out.numel() != r * n || out.shape().last() != Some(&n) {
        return Err(Error::shape(
            OP,
            format!("out {:?} must be [*, {n}] with {r} rows", out.shape()),
        ));
    }
    if r * n == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let e = elem(&gpu, OP, "weight", w)?;
    let binds = ProjectBindings {
        x: Bind::read(x, "f32"),
        out: Bind::read_write(out, "f32"),
        w: Bind::input(w, e, false),
    };
    let pipe = gpu.pipeline("attention_project", &e, || {
        compose(
            PROJECT_SRC,
            binds.needs_f16(),
            &[("WG", WG), ("RB", RB)],
            &[vec![ProjectParams::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let p = ProjectParams {
        r: r as u32,
        k: k as u32,
        n: n as u32,
        _pad: 0,
    };
    let disp = gpu.dispatch(
        "attention_project",
        &pipe,
        bytemuck::bytes_of(&p),
        &binds.buffers(),
        [
            n.div_ceil(WG as usize) as u32,
            r.div_ceil(RB as usize) as u32,
            1,
        ],
    )?;
    rec.push(disp);
    Ok(())
}
