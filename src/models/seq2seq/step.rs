//! The per-op decoder step: the per-sequence tensors and step buffers of a plan, and one decoder
//! step recorded as separate kernels (embedding, tutorial attention, the cell stack, dot / general /
//! additive / multi-head attention in Luong or Bahdanau order, attentional layer, output
//! projection, top-k). The fused kernels ([`super::fused`]) replace it where they run the model;
//! [`super::decode`] replays either in its loop.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::graph::LoopBuilder;
use crate::kernels::elementwise::{record_activation, record_binary, Activation, Binary};
use crate::kernels::matmul::{record_linear, record_matmul, record_matmul_bt};
use crate::kernels::memory_attention::{self, Score};
use crate::kernels::{concat::record_concat, embedding::record_embedding, layout, softmax, topk};
use crate::tensor::{DType, Tensor};

use super::{AttentionOrder, AttnParams, Encoded, Linear, Seq2Seq, OP};

fn lin(rec: &mut Recorder, x: &Tensor, l: &Linear, out: &Tensor) -> Result<()> {
    record_linear(rec, x, &l.w, l.b.as_ref(), out)
}

/// An f32 plan tensor (zeros until written).
pub(super) fn zeros(bld: &mut LoopBuilder, shape: &[usize]) -> Result<Tensor> {
    bld.buffer(shape, DType::F32)
}

/// Per-sequence tensors the step reads (after beam replication).
#[derive(Debug)]
pub(super) struct Memory {
    /// `[R, T, M]`.
    pub(super) mem: Tensor,
    /// Additive: the keys' projection `[R, T, A]`, once per sequence.
    pub(super) keys_proj: Option<Tensor>,
    /// Dot/general/additive: scratch of the fused attention kernel.
    pub(super) scratch: Option<Tensor>,
    /// Dot/general/additive: valid positions `[R, T]` u32.
    pub(super) valid: Option<Tensor>,
    /// Multi-head: additive mask `[R, heads, 1, T]` (0 or -inf).
    pub(super) mask: Option<Tensor>,
    /// Multi-head keys and values `[R, heads, T, d]`.
    pub(super) kv: Option<(Tensor, Tensor)>,
    /// `[R, 1, heads]` of 1 / heads (average of the heads' weights, for display).
    pub(super) avg: Option<Tensor>,
    /// Tutorial: memory zero-padded to `[R, max_length, M]`.
    pub(super) padded: Option<Tensor>,
}

/// The step's buffers.
#[derive(Debug)]
pub(super) struct Step {
    /// `[R]` u32: the input token of the step.
    pub(super) y: Tensor,
    /// Per layer `[R, H]`: the hidden state the step reads.
    pub(super) h: Vec<Tensor>,
    /// LSTM: per layer `[R, H]`: the cell state the step reads.
    pub(super) c: Vec<Tensor>,
    /// Per layer `[R, H]`: the hidden state the step writes.
    pub(super) h_new: Vec<Tensor>,
    /// LSTM: per layer `[R, H]`: the cell state the step writes.
    pub(super) c_new: Vec<Tensor>,
    /// `[R, C]` the context the step reads (attention other than none and the tutorial's).
    pub(super) ctx: Option<Tensor>,
    /// `[R, C]` the context the step writes (as `ctx`).
    pub(super) ctx_new: Option<Tensor>,
    /// `[R, T_w]` the step's attention weights (any attention but none).
    pub(super) weights: Option<Tensor>,
    /// `[R, k]` u32: the step's top-k token ids per row (k: the beam width, 1 greedy).
    pub(super) ids: Tensor,
    /// `[R, k]`: their log-probabilities.
    pub(super) logp: Tensor,
}

impl Seq2Seq {
    /// Allocates the per-sequence tensors (replicating each item `k` times for the beam) and the
    /// step's buffers, and computes the once-per-sequence attention projections.
    pub(super) fn prepare(
        &self,
        bld: &mut LoopBuilder,
        enc: &Encoded,
        k: usize,
    ) -> Result<(Memory, Step)> {
        let b = enc.b;
        let r = b * k;
        let (t, m) = (enc.mem.shape()[1], enc.mem.shape()[2]);
        let d = &self.cfg.decoder;
        let hid = d.hidden;
        // Replication (recorded into the init work): row i of the result is item i / k.
        let rep = |bld: &mut LoopBuilder, x: &Tensor, shape: &[usize]| -> Result<Tensor> {
            if k == 1 {
                return Ok(x.clone());
            }
            let inner = x.numel() / b;
            let idx: Vec<u32> = (0..r).map(|i| (i / k) as u32).collect();
            let idx = bld.constant_u32(&idx, &[r])?;
            let out = zeros(bld, &[r, inner])?;
            record_embedding(bld.init(), &idx, &x.reshape(&[b, inner])?, &out)?;
            out.reshape(shape)
        };
        let mem = rep(bld, &enc.mem, &[r, t, m])?;
        let mut h = Vec::new();
        let mut c = Vec::new();
        for (l, h0) in enc.h0.iter().enumerate() {
            let x = rep(bld, h0, &[r, hid])?;
            bld.name(&format!("h.{l}"), &x)?;
            h.push(x);
        }
        for (l, c0) in enc.c0.iter().enumerate() {
            let x = rep(bld, c0, &[r, hid])?;
            bld.name(&format!("c.{l}"), &x)?;
            c.push(x);
        }
        // Masks: written per call from the lengths (`write_inputs`).
        let mut memory = Memory {
            mem: mem.clone(),
            keys_proj: None,
            scratch: None,
            valid: None,
            mask: None,
            kv: None,
            avg: None,
            padded: None,
        };
        let mut weights = None;
        match &self.attn {
            AttnParams::None => {}
            AttnParams::Dot | AttnParams::General { .. } => {
                memory.valid = Some(bld.named("valid", &[r, t], DType::U32)?);
                memory.scratch = Some(zeros(bld, &[(r * m).max(4)])?);
                weights = Some(zeros(bld, &[r, t])?);
            }
            AttnParams::Additive { w_k, .. } => {
                let a = w_k.w.shape()[0];
                let kp = zeros(bld, &[r, t, a])?;
                memory_attention::record_project(bld.init(), &mem, &w_k.w, &kp)?;
                memory.keys_proj = Some(kp);
                memory.valid = Some(bld.named("valid", &[r, t], DType::U32)?);
                memory.scratch = Some(zeros(bld, &[r * a])?);
                weights = Some(zeros(bld, &[r, t])?);
            }
            AttnParams::MultiHead {
                k: wk,
                v: wv,
                heads,
                ..
            } => {
                let a = self.cfg.ctx_dim();
                let dh = a / heads;
                let proj = |bld: &mut LoopBuilder, l: &Linear| -> Result<Tensor> {
                    let p = zeros(bld, &[r, t, a])?;
                    lin(bld.init(), &mem, l, &p)?;
                    let out = zeros(bld, &[r, *heads, t, dh])?;
                    layout::record_transpose12(bld.init(), &p.reshape(&[r, t, *heads, dh])?, &out)?;
                    Ok(out)
                };
                let kh = proj(bld, wk)?;
                let vh = proj(bld, wv)?;
                memory.kv = Some((kh, vh));
                let mask_shape: Vec<usize> = if *heads == 1 {
                    vec![r, 1, t]
                } else {
                    vec![r, *heads, 1, t]
                };
                memory.mask = Some(bld.named("mask", &mask_shape, DType::F32)?);
                memory.avg =
                    Some(bld.constant_f32(&vec![1.0 / *heads as f32; r * heads], &[r, 1, *heads])?);
                weights = Some(zeros(bld, &[r, 1, t])?);
            }
            AttnParams::Tutorial { max_length, .. } => {
                let ml = *max_length;
                let padded = zeros(bld, &[r, ml, m])?;
                let rows = t.min(ml);
                let rec = bld.init();
                for i in 0..r {
                    rec.copy(
                        mem.buffer(),
                        (i * t * m * 4) as u64,
                        padded.buffer(),
                        (i * ml * m * 4) as u64,
                        (rows * m * 4) as u64,
                    );
                }
                memory.padded = Some(padded);
                weights = Some(zeros(bld, &[r, ml])?);
            }
        }
        let ctx_dim = self.cfg.ctx_dim();
        let has_ctx = !matches!(self.attn, AttnParams::None | AttnParams::Tutorial { .. });
        let mut h_new = Vec::new();
        let mut c_new = Vec::new();
        for _ in 0..d.layers {
            h_new.push(zeros(bld, &[r, hid])?);
        }
        for _ in 0..c.len() {
            c_new.push(zeros(bld, &[r, hid])?);
        }
        let ctx = if has_ctx {
            Some(bld.named("ctx", &[r, ctx_dim], DType::F32)?)
        } else {
            None
        };
        let ctx_new = if has_ctx {
            Some(zeros(bld, &[r, ctx_dim])?)
        } else {
            None
        };
        let step = Step {
            y: bld.named("y", &[r], DType::U32)?,
            h,
            c,
            h_new,
            c_new,
            ctx,
            ctx_new,
            weights,
            ids: bld.buffer(&[r, k], DType::U32)?,
            logp: zeros(bld, &[r, k])?,
        };
        Ok((memory, step))
    }

    /// Records one decoder step: inputs `step.y`, `step.h`/`c`/`ctx`; outputs `h_new`/`c_new`/
    /// `ctx_new`, `weights`, and the top-k `ids`/`logp`.
    pub(super) fn record_step(
        &self,
        bld: &mut LoopBuilder,
        phase: usize,
        mem: &Memory,
        st: &Step,
        r: usize,
    ) -> Result<()> {
        let sa = &mut StepAlloc { bld, phase };
        let d = &self.cfg.decoder;
        let (hid, e) = (d.hidden, d.emb);
        let gpu = sa.bld.gpu().clone();
        let per_op = self.per_op_decoder(&gpu)?;
        let emb = sa.zeros(&[r, e])?;
        record_embedding(sa.rec(), &st.y, &per_op.dec_emb, &emb)?;
        if self.order == AttentionOrder::Bahdanau {
            return self.record_bahdanau_step(sa, mem, st, &emb, r);
        }
        let top = &st.h_new[d.layers - 1];
        let x0 = match &self.attn {
            AttnParams::Tutorial {
                attn,
                combine,
                max_length,
            } => {
                let ml = *max_length;
                let m = self.cfg.mem_dim();
                let eh = sa.zeros(&[r, e + hid])?;
                record_concat(sa.rec(), &emb, &st.h[d.layers - 1], &eh)?;
                let sc = sa.zeros(&[r, ml])?;
                lin(sa.rec(), &eh, attn, &sc)?;
                let w = st
                    .weights
                    .as_ref()
                    .ok_or_else(|| Error::invalid(OP, "no weights"))?;
                softmax::record_softmax(sa.rec(), &sc, w)?;
                let padded = mem
                    .padded
                    .as_ref()
                    .ok_or_else(|| Error::invalid(OP, "no memory"))?;
                let ctx = sa.zeros(&[r, 1, m])?;
                record_matmul(sa.rec(), &w.reshape(&[r, 1, ml])?, padded, &ctx)?;
                let ec = sa.zeros(&[r, e + m])?;
                record_concat(sa.rec(), &emb, &ctx.reshape(&[r, m])?, &ec)?;
                let cb = sa.zeros(&[r, e])?;
                lin(sa.rec(), &ec, combine, &cb)?;
                let x = sa.zeros(&[r, e])?;
                record_activation(sa.rec(), &cb, &x, Activation::Relu)?;
                x
            }
            _ => match (&st.ctx, d.input_feeding) {
                (Some(ctx), true) => {
                    let x = sa.zeros(&[r, e + ctx.shape()[1]])?;
                    record_concat(sa.rec(), &emb, ctx, &x)?;
                    x
                }
                _ => emb,
            },
        };
        for (l, cell) in self.per_op_decoder(&gpu)?.cells.iter().enumerate() {
            let x = if l == 0 { &x0 } else { &st.h_new[l - 1] };
            cell.record_forward(
                sa.rec(),
                x,
                Some(&st.h[l]),
                st.c.get(l),
                &st.h_new[l],
                st.c_new.get(l),
            )?;
        }
        let logits = sa.zeros(&[r, self.cfg.tgt_vocab])?;
        match &self.attn {
            AttnParams::None | AttnParams::Tutorial { .. } => {
                lin(sa.rec(), top, &self.out, &logits)?
            }
            AttnParams::Dot
            | AttnParams::General { .. }
            | AttnParams::Additive { .. }
            | AttnParams::MultiHead { .. } => {
                let ctx_new = st
                    .ctx_new
                    .as_ref()
                    .ok_or_else(|| Error::invalid(OP, "no ctx"))?;
                self.record_attention(sa, mem, st, top, r)?;
                let c = ctx_new.shape()[1];
                let oc = sa.zeros(&[r, c + hid])?;
                record_concat(sa.rec(), ctx_new, top, &oc)?;
                match &self.w_c {
                    Some(w_c) => {
                        let ol = sa.zeros(&[r, hid])?;
                        lin(sa.rec(), &oc, w_c, &ol)?;
                        let o2 = sa.zeros(&[r, hid])?;
                        record_activation(sa.rec(), &ol, &o2, Activation::Tanh)?;
                        lin(sa.rec(), &o2, &self.out, &logits)?;
                    }
                    None => lin(sa.rec(), &oc, &self.out, &logits)?,
                }
            }
        }
        topk::record_topk(sa.rec(), &logits, &st.ids, &st.logp)?;
        Ok(())
    }

    /// Records the attention of one step (dot, general, additive or multi-head) with `query`
    /// `[R, hidden]`: writes `st.ctx_new` `[R, C]` and `st.weights`.
    fn record_attention(
        &self,
        sa: &mut StepAlloc,
        mem: &Memory,
        st: &Step,
        query: &Tensor,
        r: usize,
    ) -> Result<()> {
        let t = mem.mem.shape()[1];
        let w = st
            .weights
            .as_ref()
            .ok_or_else(|| Error::invalid(OP, "no weights"))?;
        let ctx_new = st
            .ctx_new
            .as_ref()
            .ok_or_else(|| Error::invalid(OP, "no ctx"))?;
        if let AttnParams::MultiHead { q, o, heads, .. } = &self.attn {
            let a = self.cfg.ctx_dim();
            let dh = a / heads;
            let (kh, vh) = mem.kv.as_ref().ok_or_else(|| Error::invalid(OP, "no kv"))?;
            let qv = sa.zeros(&[r, a])?;
            lin(sa.rec(), query, q, &qv)?;
            let sc = sa.zeros(&[r, *heads, 1, t])?;
            record_matmul_bt(
                sa.rec(),
                &qv.reshape(&[r, *heads, 1, dh])?,
                kh,
                &sc,
                1.0 / (dh as f32).sqrt(),
            )?;
            let mask = mem
                .mask
                .as_ref()
                .ok_or_else(|| Error::invalid(OP, "no mask"))?;
            let sc2 = sa.zeros(&[r, *heads, 1, t])?;
            record_binary(sa.rec(), &sc, mask, &sc2, Binary::Add)?;
            let wh = sa.zeros(&[r, *heads, 1, t])?;
            softmax::record_softmax(sa.rec(), &sc2, &wh)?;
            let ch = sa.zeros(&[r, *heads, 1, dh])?;
            record_matmul(sa.rec(), &wh, vh, &ch)?;
            lin(sa.rec(), &ch.reshape(&[r, a])?, o, ctx_new)?;
            let avg = mem
                .avg
                .as_ref()
                .ok_or_else(|| Error::invalid(OP, "no avg"))?;
            record_matmul(
                sa.rec(),
                avg,
                &wh.reshape(&[r, *heads, t])?,
                &w.reshape(&[r, 1, t])?,
            )?;
        } else {
            // One fused dispatch: scores, masked softmax, context.
            let score = match &self.attn {
                AttnParams::General { w } => Score::General { w: &w.w },
                AttnParams::Additive { w_q, w_k, v } => Score::Additive {
                    w_q,
                    v,
                    b: w_k
                        .b
                        .as_ref()
                        .ok_or_else(|| Error::invalid(OP, "no bias"))?,
                    keys_proj: mem
                        .keys_proj
                        .as_ref()
                        .ok_or_else(|| Error::invalid(OP, "no keys_proj"))?,
                },
                _ => Score::Dot,
            };
            let scratch = mem
                .scratch
                .as_ref()
                .ok_or_else(|| Error::invalid(OP, "no scratch"))?;
            memory_attention::record_memory_attention(
                sa.rec(),
                score,
                query,
                &mem.mem,
                &mem.mem,
                mem.valid.as_ref(),
                ctx_new,
                w,
                scratch,
            )?;
        }
        Ok(())
    }

    /// Records one decoder step in the Bahdanau order (`decoder.attention_order` "bahdanau"):
    /// attention scored with the previous top-layer state `st.h[L-1]` writes `ctx_new` and
    /// `weights`; the cell stack runs on `[emb; ctx_new]`; logits = out(`[h_new; ctx_new; emb]`);
    /// then the top-k. `emb` is the step's embedded input `[R, emb]`.
    fn record_bahdanau_step(
        &self,
        sa: &mut StepAlloc,
        mem: &Memory,
        st: &Step,
        emb: &Tensor,
        r: usize,
    ) -> Result<()> {
        let d = &self.cfg.decoder;
        let (hid, e) = (d.hidden, d.emb);
        let h_prev = &st.h[d.layers - 1];
        self.record_attention(sa, mem, st, h_prev, r)?;
        let ctx = st
            .ctx_new
            .as_ref()
            .ok_or_else(|| Error::invalid(OP, "no ctx"))?;
        let c = ctx.shape()[1];
        let x0 = sa.zeros(&[r, e + c])?;
        record_concat(sa.rec(), emb, ctx, &x0)?;
        let gpu = sa.bld.gpu().clone();
        for (l, cell) in self.per_op_decoder(&gpu)?.cells.iter().enumerate() {
            let x = if l == 0 { &x0 } else { &st.h_new[l - 1] };
            cell.record_forward(
                sa.rec(),
                x,
                Some(&st.h[l]),
                st.c.get(l),
                &st.h_new[l],
                st.c_new.get(l),
            )?;
        }
        let hc = sa.zeros(&[r, hid + c])?;
        record_concat(sa.rec(), &st.h_new[d.layers - 1], ctx, &hc)?;
        let hce = sa.zeros(&[r, hid + c + e])?;
        record_concat(sa.rec(), &hc, emb, &hce)?;
        let logits = sa.zeros(&[r, self.cfg.tgt_vocab])?;
        lin(sa.rec(), &hce, &self.out, &logits)?;
        topk::record_topk(sa.rec(), &logits, &st.ids, &st.logp)
    }
}

/// Allocation and recording for one step phase: scratch tensors come from the plan, dispatches go
/// to step recording `phase`.
struct StepAlloc<'a> {
    bld: &'a mut LoopBuilder,
    phase: usize,
}

impl StepAlloc<'_> {
    fn zeros(&mut self, shape: &[usize]) -> Result<Tensor> {
        zeros(self.bld, shape)
    }

    fn rec(&mut self) -> &mut Recorder {
        self.bld.step(self.phase)
    }
}
