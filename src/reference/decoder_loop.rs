//! Reference greedy decoding of one sequence by an RNN decoder with attention (the model of
//! `kernels::decoder_loop`), in f64 per step with f32 states between steps.
//!
//! A Luong step: x = [emb(y); ctx_prev if input feeding]; the cell stack; attention with the new
//! top hidden state h as query over the first `len` memory rows (dot `h . m_t`, general
//! `h . (W m_t)`, additive `v . tanh(W_q h + b + kp_t)`); o = tanh(W_c [ctx; h]) with the
//! attentional layer, else [ctx; h] (h alone without attention). A Bahdanau step: attention with
//! the previous top hidden state; x = [emb(y); ctx]; the cell stack; o = [h; ctx; emb(y)]. Then
//! logits = W_out o + b; the argmax (lowest id on ties) is the next input; its log-softmax is
//! recorded. Stops after the end token or `max_len` steps.

use std::collections::HashMap;

use crate::kernels::decoder_loop::{DecoderLoopDims, LoopAttention};

/// Host weights of a decoder (f32, PyTorch layouts), as the reference reads them.
#[derive(Clone, Copy, Debug)]
pub struct DecoderWeights<'a> {
    /// `[V, E]`.
    pub emb: &'a [f32],
    /// Per layer: `weight_ih [G*H, IN_l]`, `weight_hh [G*H, H]`, `bias_ih`, `bias_hh [G*H]` (empty:
    /// zeros).
    pub cells: &'a [[&'a [f32]; 4]],
    /// General: `W [H, M]`.
    pub general: &'a [f32],
    /// Additive: `W_q [A, H]`, the bias of `W_k` `[A]`, `v [A]`.
    pub additive: [&'a [f32]; 3],
    /// Attentional layer `W_c [H, C + H]`.
    pub w_c: &'a [f32],
    /// Output projection `[V, OUT_IN]` and bias `[V]` (empty: zeros).
    pub out: [&'a [f32]; 2],
}
use crate::kernels::recurrent::CellKind;
use crate::reference::recurrent::cell;

/// One sequence's decode.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoopResult {
    /// Chosen ids, the end token included when reached.
    pub tokens: Vec<u32>,
    /// Log-probability of each chosen id.
    pub logps: Vec<f32>,
    /// Attention weights of each step over the `t` memory rows (empty without attention).
    pub attention: Vec<Vec<f32>>,
}

/// Where decoding starts and ends.
#[derive(Clone, Debug)]
pub struct LoopStart<'a> {
    /// Memory `[T, M]` of this sequence.
    pub mem: &'a [f32],
    /// Additive: `mem W_k^T` `[T, A]`.
    pub keys_proj: &'a [f32],
    /// Memory rows T.
    pub t: usize,
    /// Valid rows (1..=T).
    pub len: usize,
    /// Initial hidden states per layer `[H]`.
    pub h0: Vec<Vec<f32>>,
    /// Initial LSTM cell states per layer `[H]`.
    pub c0: Vec<Vec<f32>>,
    /// First input id.
    pub bos: u32,
    /// End id.
    pub eos: u32,
    /// Maximum steps.
    pub max_len: usize,
}

fn matvec(w: &[f32], rows: usize, cols: usize, x: &[f64]) -> Vec<f64> {
    (0..rows)
        .map(|r| {
            (0..cols)
                .map(|c| w[r * cols + c] as f64 * x[c])
                .sum::<f64>()
        })
        .collect()
}

/// A decoder's recurrent state: h and (LSTM) c per layer `[H]`, and the context `[C]`.
#[derive(Clone, Debug, PartialEq)]
pub struct StepState {
    /// Hidden state per layer.
    pub h: Vec<Vec<f32>>,
    /// LSTM cell state per layer (zeros otherwise).
    pub c: Vec<Vec<f32>>,
    /// The previous step's context (input feeding).
    pub ctx: Vec<f32>,
}

/// One decoder step with input token `y` over `s`'s memory: updates `st` and returns the logits
/// `[V]` and, with attention, the step's weights over the `s.t` memory rows.
pub fn step(
    d: &DecoderLoopDims,
    w: &DecoderWeights,
    s: &LoopStart,
    st: &mut StepState,
    y: u32,
) -> (Vec<f64>, Option<Vec<f32>>) {
    let (h, v, e) = (d.hidden, d.vocab, d.emb);
    let ctx_w = d.ctx();
    let (hs, cs, ctx) = (&mut st.h, &mut st.c, &mut st.ctx);
    let mut weights = None;
    let emb_y: Vec<f32> = w.emb[y as usize * e..(y as usize + 1) * e].to_vec();
    let mut x = emb_y.clone();
    if d.bahdanau {
        let q: Vec<f64> = hs[d.layers - 1].iter().map(|&v| v as f64).collect();
        let (c, row) = attend(d, w, s, &q);
        weights = Some(row);
        *ctx = c.iter().map(|&v| v as f32).collect();
        x.extend_from_slice(ctx);
    } else if d.input_feeding && d.attention != LoopAttention::None {
        x.extend_from_slice(ctx);
    }
    for l in 0..d.layers {
        let input = if l == 0 { d.input0() } else { h };
        let mut wm = HashMap::new();
        for (i, n) in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
            .iter()
            .enumerate()
        {
            if !w.cells[l][i].is_empty() {
                wm.insert(n.to_string(), w.cells[l][i].to_vec());
            }
        }
        let lstm = d.cell == CellKind::Lstm;
        let (hn, cn) = cell(
            d.cell,
            &wm,
            input,
            h,
            &x,
            &hs[l],
            lstm.then_some(cs[l].as_slice()),
            1,
        );
        hs[l] = hn.clone();
        if let Some(cn) = cn {
            cs[l] = cn;
        }
        x = hn;
    }
    let top: Vec<f64> = hs[d.layers - 1].iter().map(|&q| q as f64).collect();
    let o: Vec<f64> = if d.bahdanau {
        let mut o = top.clone();
        o.extend(ctx.iter().map(|&v| v as f64));
        o.extend(emb_y.iter().map(|&v| v as f64));
        o
    } else if d.attention == LoopAttention::None {
        top.clone()
    } else {
        let (c, row) = attend(d, w, s, &top);
        weights = Some(row);
        *ctx = c.iter().map(|&q| q as f32).collect();
        let mut ch = c;
        ch.extend_from_slice(&top);
        if d.attn_layer {
            matvec(w.w_c, h, ctx_w + h, &ch)
                .into_iter()
                .map(f64::tanh)
                .collect()
        } else {
            ch
        }
    };
    let mut logits = matvec(w.out[0], v, d.out_in(), &o);
    for (i, z) in logits.iter_mut().enumerate() {
        *z += w.out[1].get(i).copied().unwrap_or(0.0) as f64;
    }
    let mut logits = matvec(w.out[0], v, d.out_in(), &o);
    for (i, z) in logits.iter_mut().enumerate() {
        *z += w.out[1].get(i).copied().unwrap_or(0.0) as f64;
    }
    (logits, weights)
}

/// Greedy decoding of one sequence.
pub fn greedy(dims: &DecoderLoopDims, w: &DecoderWeights, s: &LoopStart) -> LoopResult {
    let d = dims;
    let h = d.hidden;
    let mut st = StepState {
        h: s.h0.clone(),
        c: if s.c0.len() < d.layers {
            vec![vec![0.0; h]; d.layers]
        } else {
            s.c0.clone()
        },
        ctx: vec![0f32; d.ctx()],
    };
    let mut y = s.bos;
    let mut out = LoopResult::default();
    for _ in 0..s.max_len {
        let (logits, weights) = step(d, w, s, &mut st, y);
        out.attention.extend(weights);
        let mut best = 0;
        for (i, &z) in logits.iter().enumerate() {
            if z > logits[best] {
                best = i;
            }
        }
        let mx = logits[best];
        let lse = mx + logits.iter().map(|&z| (z - mx).exp()).sum::<f64>().ln();
        out.tokens.push(best as u32);
        out.logps.push((logits[best] - lse) as f32);
        y = best as u32;
        if y == s.eos {
            break;
        }
    }
    out
}

/// Attention of query `q` over the first `s.len` memory rows: (context [M], weights [T]).
fn attend(
    d: &DecoderLoopDims,
    w: &DecoderWeights,
    s: &LoopStart,
    q: &[f64],
) -> (Vec<f64>, Vec<f32>) {
    let (h, m, a) = (d.hidden, d.mem, d.attn_dim);
    let scores: Vec<f64> = match d.attention {
        LoopAttention::Additive => {
            let mut qp = matvec(w.additive[0], a, h, q);
            for (i, v) in qp.iter_mut().enumerate() {
                *v += w.additive[1].get(i).copied().unwrap_or(0.0) as f64;
            }
            (0..s.len)
                .map(|t| {
                    (0..a)
                        .map(|i| {
                            w.additive[2][i] as f64 * (qp[i] + s.keys_proj[t * a + i] as f64).tanh()
                        })
                        .sum()
                })
                .collect()
        }
        att => {
            // General: W^T q, then a dot product with every memory row.
            let qk: Vec<f64> = if att == LoopAttention::General {
                (0..m)
                    .map(|k| (0..h).map(|i| w.general[i * m + k] as f64 * q[i]).sum())
                    .collect()
            } else {
                q.to_vec()
            };
            (0..s.len)
                .map(|t| (0..m).map(|k| qk[k] * s.mem[t * m + k] as f64).sum())
                .collect()
        }
    };
    let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ex: Vec<f64> = scores.iter().map(|&z| (z - mx).exp()).collect();
    let sum: f64 = ex.iter().sum();
    let wts: Vec<f64> = ex.iter().map(|&z| z / sum).collect();
    let mut row = vec![0f32; s.t];
    for (t, &wt) in wts.iter().enumerate() {
        row[t] = wt as f32;
    }
    let c = (0..m)
        .map(|k| (0..s.len).map(|t| wts[t] * s.mem[t * m + k] as f64).sum())
        .collect();
    (c, row)
}
