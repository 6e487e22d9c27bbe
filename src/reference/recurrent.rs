//! Reference LSTM / GRU / RNN layers and cells with PyTorch semantics, in f64.
//!
//! Weights are named and laid out as in a PyTorch `state_dict` (`weight_ih_l0 [G*H, I]`,
//! `weight_hh_l0_reverse [G*H, H]`, `bias_ih_l1 [G*H]`, ...; gate order i, f, g, o for the LSTM and
//! r, z, n for the GRU, with `b_hn` inside the reset product). A missing bias counts as zeros
//! (`bias=False`). Variable lengths follow `pack_padded_sequence(enforce_sorted=False)` followed by
//! `pad_packed_sequence(total_length=T)`: outputs past a sequence's length are zero, the forward
//! direction's final state is taken at the sequence's own last step, and the reverse direction
//! starts at that step.
//!
//! Dimension legend: B batch, T steps, I input size, H hidden size, L layers, D directions (1|2),
//! G gates (4 LSTM, 3 GRU, 1 RNN).

use std::collections::HashMap;

use crate::kernels::recurrent::{CellKind, RecurrentSpec};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Weights of one layer and direction, as f64 for the oracle.
struct DirWeights {
    w_ih: Vec<f64>,
    w_hh: Vec<f64>,
    b_ih: Vec<f64>,
    b_hh: Vec<f64>,
}

fn get(weights: &HashMap<String, Vec<f32>>, name: &str, len: usize, bias: bool) -> Vec<f64> {
    match weights.get(name) {
        Some(v) => {
            assert_eq!(
                v.len(),
                len,
                "reference: {name} has {} values, expected {len}",
                v.len()
            );
            v.iter().map(|&x| x as f64).collect()
        }
        None if bias => vec![0.0; len],
        None => panic!("reference: weight {name} missing"),
    }
}

/// One cell update for one batch row: `x [I]`, `h [H]`, `c [H]` (LSTM only) -> new `(h, c)`.
fn cell_row(
    kind: CellKind,
    w: &DirWeights,
    input: usize,
    hidden: usize,
    x: &[f64],
    h: &[f64],
    c: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let g = kind.gates();
    // gi = W_ih x + b_ih, gh = W_hh h + b_hh, each [G*H]
    let mut gi = w.b_ih.clone();
    let mut gh = w.b_hh.clone();
    for r in 0..g * hidden {
        gi[r] += (0..input)
            .map(|k| w.w_ih[r * input + k] * x[k])
            .sum::<f64>();
        gh[r] += (0..hidden)
            .map(|k| w.w_hh[r * hidden + k] * h[k])
            .sum::<f64>();
    }
    let mut hn = vec![0.0; hidden];
    let mut cn = vec![0.0; hidden];
    for j in 0..hidden {
        let pre = |q: usize| gi[q * hidden + j] + gh[q * hidden + j];
        match kind {
            CellKind::Lstm => {
                let (i, f, gg, o) = (
                    sigmoid(pre(0)),
                    sigmoid(pre(1)),
                    pre(2).tanh(),
                    sigmoid(pre(3)),
                );
                cn[j] = f * c[j] + i * gg;
                hn[j] = o * cn[j].tanh();
            }
            CellKind::Gru => {
                let r = sigmoid(pre(0));
                let z = sigmoid(pre(1));
                let n = (gi[2 * hidden + j] + r * gh[2 * hidden + j]).tanh();
                hn[j] = (1.0 - z) * n + z * h[j];
            }
            CellKind::RnnTanh => hn[j] = pre(0).tanh(),
            CellKind::RnnRelu => hn[j] = pre(0).max(0.0),
        }
    }
    (hn, cn)
}

/// Output of [`forward`]: `output [B, T, D*H]`, `h_n [L*D, B, H]`, `c_n [L*D, B, H]` (LSTM only).
#[derive(Clone, Debug)]
pub struct Outputs {
    /// `[B, T, D*H]`.
    pub output: Vec<f32>,
    /// `[L*D, B, H]`.
    pub h_n: Vec<f32>,
    /// `[L*D, B, H]` for the LSTM, `None` otherwise.
    pub c_n: Option<Vec<f32>>,
}

/// `nn.LSTM` / `nn.GRU` / `nn.RNN` (`batch_first=True`) on `x [B, T, I]` with optional
/// `h0`, `c0 [L*D, B, H]` and `lengths [B]` (each in 1..=T).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    spec: &RecurrentSpec,
    weights: &HashMap<String, Vec<f32>>,
    x: &[f32],
    batch: usize,
    steps: usize,
    h0: Option<&[f32]>,
    c0: Option<&[f32]>,
    lengths: Option<&[usize]>,
) -> Outputs {
    let (hid, dirs, g) = (spec.hidden_size, spec.directions(), spec.kind.gates());
    let lstm = spec.kind == CellKind::Lstm;
    let mut layer_in: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut in_size = spec.input_size;
    let mut h_n = vec![0.0f32; spec.num_layers * dirs * batch * hid];
    let mut c_n = vec![0.0f32; h_n.len()];
    for layer in 0..spec.num_layers {
        let mut out = vec![0.0f64; batch * steps * dirs * hid];
        for dir in 0..dirs {
            let sfx = format!("l{layer}{}", if dir == 1 { "_reverse" } else { "" });
            let w = DirWeights {
                w_ih: get(
                    weights,
                    &format!("weight_ih_{sfx}"),
                    g * hid * in_size,
                    false,
                ),
                w_hh: get(weights, &format!("weight_hh_{sfx}"), g * hid * hid, false),
                b_ih: get(weights, &format!("bias_ih_{sfx}"), g * hid, true),
                b_hh: get(weights, &format!("bias_hh_{sfx}"), g * hid, true),
            };
            let sd = layer * dirs + dir;
            for b in 0..batch {
                let len = lengths.map_or(steps, |l| l[b]);
                let init = |s: Option<&[f32]>| -> Vec<f64> {
                    s.map_or(vec![0.0; hid], |s| {
                        s[(sd * batch + b) * hid..][..hid]
                            .iter()
                            .map(|&v| v as f64)
                            .collect()
                    })
                };
                let mut h = init(h0);
                let mut c = init(c0);
                for s in 0..len {
                    let t = if dir == 0 { s } else { len - 1 - s };
                    let xt = &layer_in[(b * steps + t) * in_size..][..in_size];
                    let (hn, cn) = cell_row(spec.kind, &w, in_size, hid, xt, &h, &c);
                    h = hn;
                    if lstm {
                        c = cn;
                    }
                    out[(b * steps + t) * dirs * hid + dir * hid..][..hid].copy_from_slice(&h);
                }
                for j in 0..hid {
                    h_n[(sd * batch + b) * hid + j] = h[j] as f32;
                    c_n[(sd * batch + b) * hid + j] = c[j] as f32;
                }
            }
        }
        layer_in = out;
        in_size = dirs * hid;
    }
    Outputs {
        output: layer_in.iter().map(|&v| v as f32).collect(),
        h_n,
        c_n: lstm.then_some(c_n),
    }
}

/// `nn.LSTMCell` / `nn.GRUCell` / `nn.RNNCell`: `x [B, I]`, `h [B, H]`, `c [B, H]` (LSTM) with
/// weights named `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`. Returns `(h', c')` (`c'` LSTM only).
#[allow(clippy::too_many_arguments)]
pub fn cell(
    kind: CellKind,
    weights: &HashMap<String, Vec<f32>>,
    input: usize,
    hidden: usize,
    x: &[f32],
    h: &[f32],
    c: Option<&[f32]>,
    batch: usize,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let g = kind.gates();
    let w = DirWeights {
        w_ih: get(weights, "weight_ih", g * hidden * input, false),
        w_hh: get(weights, "weight_hh", g * hidden * hidden, false),
        b_ih: get(weights, "bias_ih", g * hidden, true),
        b_hh: get(weights, "bias_hh", g * hidden, true),
    };
    let mut hs = Vec::with_capacity(batch * hidden);
    let mut cs = Vec::with_capacity(batch * hidden);
    for b in 0..batch {
        let f = |v: &[f32]| -> Vec<f64> { v.iter().map(|&a| a as f64).collect() };
        let xb = f(&x[b * input..][..input]);
        let hb = f(&h[b * hidden..][..hidden]);
        let cb = c.map_or(vec![0.0; hidden], |c| f(&c[b * hidden..][..hidden]));
        let (hn, cn) = cell_row(kind, &w, input, hidden, &xb, &hb, &cb);
        hs.extend(hn.iter().map(|&v| v as f32));
        cs.extend(cn.iter().map(|&v| v as f32));
    }
    (hs, (kind == CellKind::Lstm).then_some(cs))
}
