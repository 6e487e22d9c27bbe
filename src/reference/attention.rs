//! Reference attention: scaled dot-product attention (with its weights), multi-head attention and
//! the RNN-decoder attentions over encoder memory (additive/Bahdanau, dot and general/Luong).
//!
//! Plain loops with f64 accumulation; a row whose keys are all masked gives zeros (weights and
//! output), as the GPU kernels do.

use crate::kernels::sdpa::{AttnDims, Causal, MaskKind};

/// A mask for the reference: values broadcast over `[B, H, Tq, Tk]` by element strides.
#[derive(Clone, Copy, Debug)]
pub struct RefMask<'a> {
    /// Mask values (bools as 0.0 / 1.0).
    pub values: &'a [f32],
    /// Element strides over (b, h, i, j); 0 broadcasts.
    pub strides: [usize; 4],
    /// How values are read.
    pub kind: MaskKind,
}

/// Strides that broadcast a mask of `shape` (aligned right, dims 1 or full) over `bhqk`.
pub fn broadcast_strides(shape: &[usize], bhqk: [usize; 4]) -> [usize; 4] {
    let mut strides = [0usize; 4];
    let mut stride = 1;
    for (k, &n) in shape.iter().enumerate().rev() {
        let axis = 4 - shape.len() + k;
        assert!(n == 1 || n == bhqk[axis], "mask {shape:?} vs {bhqk:?}");
        strides[axis] = if n == 1 { 0 } else { stride };
        stride *= n;
    }
    strides
}

/// The additive term for score (b, h, i, j): `None` when the key is masked out.
fn mask_term(
    mask: Option<&RefMask>,
    causal: Causal,
    dims: &AttnDims,
    [b, h, i, j]: [usize; 4],
) -> Option<f64> {
    let off = match causal {
        Causal::None => None,
        Causal::TopLeft => Some(0i64),
        Causal::BottomRight => Some(dims.tk as i64 - dims.tq as i64),
    };
    if let Some(off) = off {
        if j as i64 > i as i64 + off {
            return None;
        }
    }
    let Some(m) = mask else { return Some(0.0) };
    let idx = b * m.strides[0] + h * m.strides[1] + i * m.strides[2] + j * m.strides[3];
    let x = m.values[idx] as f64;
    match m.kind {
        MaskKind::Keep => (x != 0.0).then_some(0.0),
        MaskKind::Ignore => (x == 0.0).then_some(0.0),
        MaskKind::Additive => (x > -1e30).then_some(x),
    }
}

/// Softmax over `scores` where `None` is masked; all masked gives all zeros.
pub fn masked_softmax(scores: &[Option<f64>]) -> Vec<f64> {
    let mx = scores
        .iter()
        .flatten()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max);
    if mx == f64::NEG_INFINITY {
        return vec![0.0; scores.len()];
    }
    let e: Vec<f64> = scores
        .iter()
        .map(|s| s.map_or(0.0, |s| (s - mx).exp()))
        .collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|x| x / sum).collect()
}

/// Attention probabilities `[B, H, Tq, Tk]` of dense q `[B, H, Tq, D]`, k `[B, H, Tk, D]`.
pub fn sdpa_probs(
    q: &[f32],
    k: &[f32],
    dims: &AttnDims,
    mask: Option<&RefMask>,
    causal: Causal,
    scale: Option<f64>,
) -> Vec<f64> {
    let AttnDims {
        b, h, tq, tk, d, ..
    } = *dims;
    let scale = scale.unwrap_or(1.0 / (d as f64).sqrt());
    let mut out = Vec::with_capacity(b * h * tq * tk);
    for bi in 0..b {
        for hi in 0..h {
            let bh = bi * h + hi;
            for i in 0..tq {
                let qr = &q[(bh * tq + i) * d..][..d];
                let scores: Vec<Option<f64>> = (0..tk)
                    .map(|j| {
                        let kr = &k[(bh * tk + j) * d..][..d];
                        let s: f64 = qr.iter().zip(kr).map(|(&a, &b)| a as f64 * b as f64).sum();
                        mask_term(mask, causal, dims, [bi, hi, i, j]).map(|t| s * scale + t)
                    })
                    .collect();
                out.extend(masked_softmax(&scores));
            }
        }
    }
    out
}

/// `F.scaled_dot_product_attention` on dense tensors: y `[B, H, Tq, Dv]`.
pub fn sdpa(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: &AttnDims,
    mask: Option<&RefMask>,
    causal: Causal,
    scale: Option<f64>,
) -> Vec<f32> {
    let AttnDims {
        b, h, tq, tk, dv, ..
    } = *dims;
    let probs = sdpa_probs(q, k, dims, mask, causal, scale);
    let mut out = vec![0f32; b * h * tq * dv];
    for bh in 0..b * h {
        for i in 0..tq {
            let pr = &probs[(bh * tq + i) * tk..][..tk];
            for e in 0..dv {
                let s: f64 = (0..tk)
                    .map(|j| pr[j] * v[(bh * tk + j) * dv + e] as f64)
                    .sum();
                out[(bh * tq + i) * dv + e] = s as f32;
            }
        }
    }
    out
}

/// `x [R, IN] W^T [OUT, IN] + bias` in f64.
fn linear(
    x: &[f64],
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    n_in: usize,
    n_out: usize,
) -> Vec<f64> {
    let mut y = vec![0f64; rows * n_out];
    for r in 0..rows {
        for o in 0..n_out {
            let mut s = bias.map_or(0.0, |b| b[o] as f64);
            for i in 0..n_in {
                s += x[r * n_in + i] * w[o * n_in + i] as f64;
            }
            y[r * n_out + o] = s;
        }
    }
    y
}

/// Weights of `nn.MultiheadAttention` (PyTorch names).
#[derive(Clone, Copy, Debug)]
pub struct RefMhaWeights<'a> {
    /// `in_proj_weight [3E, E]`.
    pub in_proj_weight: &'a [f32],
    /// `in_proj_bias [3E]`.
    pub in_proj_bias: &'a [f32],
    /// `out_proj.weight [E, E]`.
    pub out_proj_weight: &'a [f32],
    /// `out_proj.bias [E]`.
    pub out_proj_bias: &'a [f32],
}

/// `nn.MultiheadAttention(batch_first=True)`: query `[B, Tq, E]`, key/value `[B, Tk, E]`,
/// key_padding_mask `[B, Tk]` (non-zero = ignore). Returns y `[B, Tq, E]` and the attention
/// weights averaged over heads `[B, Tq, Tk]`.
#[allow(clippy::too_many_arguments)]
pub fn mha(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    w: &RefMhaWeights,
    key_padding_mask: Option<&[f32]>,
    (b, tq, tk, e): (usize, usize, usize, usize),
    heads: usize,
    causal: Causal,
) -> (Vec<f32>, Vec<f32>) {
    let dh = e / heads;
    let f64s = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<_>>();
    let wq = &w.in_proj_weight[..e * e];
    let wk = &w.in_proj_weight[e * e..2 * e * e];
    let wv = &w.in_proj_weight[2 * e * e..];
    let qp = linear(&f64s(query), wq, Some(&w.in_proj_bias[..e]), b * tq, e, e);
    let kp = linear(
        &f64s(key),
        wk,
        Some(&w.in_proj_bias[e..2 * e]),
        b * tk,
        e,
        e,
    );
    let vp = linear(
        &f64s(value),
        wv,
        Some(&w.in_proj_bias[2 * e..]),
        b * tk,
        e,
        e,
    );
    let scale = 1.0 / (dh as f64).sqrt();
    let mut ctx = vec![0f64; b * tq * e];
    let mut avg = vec![0f64; b * tq * tk];
    let dims = AttnDims {
        b,
        h: heads,
        tq,
        tk,
        d: dh,
        dv: dh,
    };
    for bi in 0..b {
        for hi in 0..heads {
            for i in 0..tq {
                let scores: Vec<Option<f64>> = (0..tk)
                    .map(|j| {
                        let s: f64 = (0..dh)
                            .map(|c| {
                                qp[(bi * tq + i) * e + hi * dh + c]
                                    * kp[(bi * tk + j) * e + hi * dh + c]
                            })
                            .sum();
                        let padded = key_padding_mask.is_some_and(|m| m[bi * tk + j] != 0.0);
                        let t = mask_term(None, causal, &dims, [bi, hi, i, j]);
                        t.filter(|_| !padded).map(|t| s * scale + t)
                    })
                    .collect();
                let p = masked_softmax(&scores);
                for j in 0..tk {
                    avg[(bi * tq + i) * tk + j] += p[j] / heads as f64;
                    for c in 0..dh {
                        ctx[(bi * tq + i) * e + hi * dh + c] +=
                            p[j] * vp[(bi * tk + j) * e + hi * dh + c];
                    }
                }
            }
        }
    }
    let y = linear(&ctx, w.out_proj_weight, Some(w.out_proj_bias), b * tq, e, e);
    (
        y.iter().map(|&v| v as f32).collect(),
        avg.iter().map(|&v| v as f32).collect(),
    )
}

/// Finishes a memory attention: masked softmax of `scores [B, T]` (mask `[B, T]`, non-zero =
/// valid) and the context `sum_t w_t values[b, t]` with values `[B, T, Dv]`.
fn softmax_context(
    scores: Vec<f64>,
    values: &[f32],
    mask: Option<&[f32]>,
    b: usize,
    t: usize,
    dv: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut ctx = vec![0f32; b * dv];
    let mut weights = vec![0f32; b * t];
    for bi in 0..b {
        let row: Vec<Option<f64>> = (0..t)
            .map(|j| {
                let valid = mask.is_none_or(|m| m[bi * t + j] != 0.0);
                valid.then_some(scores[bi * t + j])
            })
            .collect();
        let p = masked_softmax(&row);
        for c in 0..dv {
            let s: f64 = (0..t)
                .map(|j| p[j] * values[(bi * t + j) * dv + c] as f64)
                .sum();
            ctx[bi * dv + c] = s as f32;
        }
        for j in 0..t {
            weights[bi * t + j] = p[j] as f32;
        }
    }
    (ctx, weights)
}

/// Bahdanau attention: `score_t = v . tanh(W_q q + W_k k_t + b)`; query `[B, Dq]`, keys
/// `[B, T, Dk]`, W_q `[A, Dq]`, W_k `[A, Dk]`, v `[A]`, b `[A]`. Returns (context `[B, Dk]`,
/// weights `[B, T]`).
#[allow(clippy::too_many_arguments)]
pub fn additive_attention(
    query: &[f32],
    keys: &[f32],
    w_q: &[f32],
    w_k: &[f32],
    v: &[f32],
    bias: &[f32],
    mask: Option<&[f32]>,
    (b, t, dq, dk, a): (usize, usize, usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    let f64s = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<_>>();
    let qp = linear(&f64s(query), w_q, Some(bias), b, dq, a);
    let kp = linear(&f64s(keys), w_k, None, b * t, dk, a);
    let mut scores = vec![0f64; b * t];
    for bi in 0..b {
        for j in 0..t {
            scores[bi * t + j] = (0..a)
                .map(|x| v[x] as f64 * (qp[bi * a + x] + kp[(bi * t + j) * a + x]).tanh())
                .sum();
        }
    }
    softmax_context(scores, keys, mask, b, t, dk)
}

/// Luong dot attention: `score_t = q . k_t`; query `[B, D]`, keys `[B, T, D]`, values `[B, T, Dv]`.
pub fn dot_attention(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    mask: Option<&[f32]>,
    (b, t, d, dv): (usize, usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    let mut scores = vec![0f64; b * t];
    for bi in 0..b {
        for j in 0..t {
            scores[bi * t + j] = (0..d)
                .map(|c| query[bi * d + c] as f64 * keys[(bi * t + j) * d + c] as f64)
                .sum();
        }
    }
    softmax_context(scores, values, mask, b, t, dv)
}

/// Luong general attention: `score_t = q . (W k_t)`; query `[B, Dq]`, keys `[B, T, Dk]`,
/// values `[B, T, Dv]`, W `[Dq, Dk]`.
#[allow(clippy::too_many_arguments)]
pub fn general_attention(
    query: &[f32],
    keys: &[f32],
    values: &[f32],
    w: &[f32],
    mask: Option<&[f32]>,
    (b, t, dq, dk, dv): (usize, usize, usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    let mut scores = vec![0f64; b * t];
    for bi in 0..b {
        for j in 0..t {
            let mut s = 0f64;
            for r in 0..dq {
                let wk: f64 = (0..dk)
                    .map(|c| w[r * dk + c] as f64 * keys[(bi * t + j) * dk + c] as f64)
                    .sum();
                s += query[bi * dq + r] as f64 * wk;
            }
            scores[bi * t + j] = s;
        }
    }
    softmax_context(scores, values, mask, b, t, dv)
}
