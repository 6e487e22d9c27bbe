//! The fused decoder's sizes and options ([`DecoderLoopDims`]), the shared-vector layout they
//! imply, and the checks against each other and the device.

use super::OP;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::recurrent::CellKind;
use crate::kernels::rnn_fused::{fold_pays, p8, padded, wg};

/// Attention of the fused decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoopAttention {
    /// No attention: the output projection reads the top hidden state.
    None,
    /// Luong dot: `h . m_t` (needs H = M).
    Dot,
    /// Luong general: `h . (W m_t)`, `W [H, M]`.
    General,
    /// Bahdanau additive: `v . tanh(W_q h + b + kp_t)` with `kp = mem W_k^T` precomputed.
    Additive,
}

/// Sizes and options of a decoder the fused kernel runs. In Luong order the cell stack runs first
/// and its new top hidden state is the query; in Bahdanau order the previous top hidden state is
/// the query, the cell input is `[emb; ctx]` and the output layer reads `[h; ctx; emb]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecoderLoopDims {
    /// Cell of every layer.
    pub cell: CellKind,
    /// Stacked layers L.
    pub layers: usize,
    /// Embedding width E.
    pub emb: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// Encoder memory width M.
    pub mem: usize,
    /// Additive score width A (0 otherwise).
    pub attn_dim: usize,
    /// Target vocabulary V.
    pub vocab: usize,
    /// Attention.
    pub attention: LoopAttention,
    /// The previous context is concatenated to the embedded input.
    pub input_feeding: bool,
    /// Luong attentional layer `tanh(W_c [ctx; h])` before the output projection.
    pub attn_layer: bool,
    /// Bahdanau step order (needs attention; excludes input feeding and the attentional layer).
    pub bahdanau: bool,
}

impl DecoderLoopDims {
    /// Context width C (0 without attention).
    pub fn ctx(&self) -> usize {
        if self.attention == LoopAttention::None {
            0
        } else {
            self.mem
        }
    }

    /// Width of layer 0's input: E, plus C with input feeding or in Bahdanau order.
    pub fn input0(&self) -> usize {
        self.input0_segments().iter().sum()
    }

    /// Whether [`DecoderWeights::pack`](crate::weights::pack::DecoderWeights::pack) folds the
    /// embedding into layer 0's input projection (a table `[V, G*H]` of `W_ih[:, :E] emb[v] +
    /// b_ih`): when the table costs at most 4x the weights it replaces.
    pub fn folds_embedding(&self) -> bool {
        fold_pays(self.vocab, self.emb)
    }

    /// Width of the output projection's input.
    pub fn out_in(&self) -> usize {
        self.out_segments().iter().sum()
    }

    /// Segments of layer 0's input ([emb | ctx] or [emb]), each padded to 8 in the shared vector.
    pub(super) fn input0_segments(&self) -> Vec<usize> {
        if (self.input_feeding || self.bahdanau) && self.attention != LoopAttention::None {
            vec![self.emb, self.ctx()]
        } else {
            vec![self.emb]
        }
    }

    /// Segments of the output projection's input ([ctx | h], [h], or [h | ctx | emb] in Bahdanau
    /// order).
    pub(super) fn out_segments(&self) -> Vec<usize> {
        if self.bahdanau {
            return vec![self.hidden, self.ctx(), self.emb];
        }
        match (self.attention, self.attn_layer) {
            (LoopAttention::None, _) | (_, true) => vec![self.hidden],
            _ => vec![self.ctx(), self.hidden],
        }
    }

    /// Float offsets in the shared vector (all multiples of 8): x, h per layer, c per layer, gate
    /// pre-activations, [ctx | h], query projection, attentional-layer output, and the end.
    pub(super) fn shared_layout(&self) -> [usize; 8] {
        let h8 = p8(self.hidden);
        let lh = self.layers * h8;
        let x = 0;
        let h = x + padded(&self.input0_segments());
        let c = h + lh;
        let gates = c + if self.cell == CellKind::Lstm { lh } else { 0 };
        let ctx = gates + 2 * self.cell.gates() * h8;
        let qp = ctx + p8(self.ctx()) + h8;
        let o = qp + p8(self.mem.max(self.attn_dim));
        let o_len = if self.bahdanau {
            padded(&self.out_segments())
        } else {
            h8
        };
        [x, h, c, gates, ctx, qp, o, o + o_len]
    }

    /// Checks the sizes against each other and the device for encoder length `t`; the error says
    /// what does not fit (callers fall back to the per-op decoder).
    pub fn check(&self, gpu: &Gpu, t: usize) -> Result<()> {
        let d = self;
        for (what, v) in [
            ("layers", d.layers),
            ("emb", d.emb),
            ("hidden", d.hidden),
            ("vocab", d.vocab),
            ("encoder length", t),
        ] {
            if v == 0 {
                return Err(Error::invalid(OP, format!("{what} must be >= 1")));
            }
        }
        if d.attention != LoopAttention::None && d.mem == 0 {
            return Err(Error::invalid(OP, "attention needs a memory width >= 1"));
        }
        if d.attention == LoopAttention::Dot && d.hidden != d.mem {
            return Err(Error::shape(
                OP,
                format!("dot attention needs hidden {} = memory {}", d.hidden, d.mem),
            ));
        }
        if d.bahdanau && (d.attention == LoopAttention::None || d.input_feeding || d.attn_layer) {
            return Err(Error::invalid(
                OP,
                "the Bahdanau order needs attention, without input feeding or the attentional layer",
            ));
        }
        if d.attention == LoopAttention::Additive && d.attn_dim == 0 {
            return Err(Error::invalid(OP, "additive attention needs attn_dim >= 1"));
        }
        let shared = 4 * (d.shared_layout()[7] + tmax(t) + 3 * wg(gpu) as usize + 2);
        let limit = gpu.caps().max_workgroup_storage as usize;
        if shared > limit {
            return Err(Error::Limit {
                what: format!(
                    "{OP}: one sequence's decoder state in workgroup memory ({d:?}, T {t})"
                ),
                needed: shared as u64,
                limit_name: "max_compute_workgroup_storage_size",
                limit: limit as u64,
            });
        }
        if gpu.caps().max_storage_buffers < 8 {
            return Err(Error::Limit {
                what: format!("{OP}: storage bindings"),
                needed: 8,
                limit_name: "max_storage_buffers_per_shader_stage",
                limit: gpu.caps().max_storage_buffers as u64,
            });
        }
        Ok(())
    }
}

/// Encoder length rounded up for the shared weights row (few pipeline variants).
pub(super) fn tmax(t: usize) -> usize {
    t.next_power_of_two().max(16)
}
