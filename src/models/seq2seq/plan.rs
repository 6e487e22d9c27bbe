//! Decode plans: what a batch shape needs, declared once per [`PlanKey`] on the loop runtime
//! ([`crate::graph::runtime`]) and run by [`Seq2Seq::decode`], and the per-call input writes.
//!
//! Named tensors a call writes: `src.ids`, `src.lengths` (the encoder's inputs), `y` (first input
//! token), `ctx`, `h.{l}`, `c.{l}` (decoder state), `valid` / `mask` (attention masks), `beam.*`
//! (beam search's scores, parents, control words and finished list), `loop.ctl` / `loop.state`
//! (the fused kernels' control words and state). Outputs: `tokens` and `aux` `[max_len, R]`
//! (tokens and log-probs, greedy; tokens and parent rows, beam), `attn` `[max_len, R, T_w]`, and
//! the beam's `beam.scores`, `beam.ctl`, `beam.fin`.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::{LoopBuilder, LoopPlan, Stop, Writes};
use crate::kernels::beam::{record_beam_select, BeamBuffers};
use crate::kernels::{embedding::record_embedding, topk};
use crate::tensor::DType;

use super::fused::{FusedBeam, FusedLoop};
use super::step::zeros;
use super::{Encoded, Seq2Seq};

/// What a prepared decoder is specialized to: the device, the batch shape and the loop's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct PlanKey {
    pub(super) gpu: usize,
    pub(super) batch: usize,
    pub(super) src_len: usize,
    pub(super) beam: usize,
    pub(super) max_len: usize,
    pub(super) keep_attn: bool,
    pub(super) length_norm: bool,
    pub(super) fused: bool,
    pub(super) fused_encoder: bool,
}

/// Prepared decoders kept per model, least recently used out first.
pub(super) const MAX_PLANS: usize = 64;

/// A decode of one [`PlanKey`]: the loop plan and what writing its inputs needs to know.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) run: LoopPlan,
    /// Attention positions per row of the `attn` history (0 without attention).
    pub(super) t_w: usize,
    /// Encoder positions `T`.
    t: usize,
    /// Whether the `attn` history exists.
    pub(super) keep_attn: bool,
    fused: bool,
    fused_beam: bool,
    /// Decoder layers with a `c` state (LSTM).
    c_layers: usize,
    layers: usize,
    has_ctx: bool,
    /// Multi-head: heads of `mask`.
    mask_heads: Option<usize>,
    has_valid: bool,
}

impl Seq2Seq {
    /// Declares everything a decode of `key`'s shape needs on the loop runtime.
    pub(super) fn plan(&self, gpu: &Gpu, key: PlanKey) -> Result<Plan> {
        let mut builder = LoopBuilder::new(gpu, key.max_len);
        let bld = &mut builder;
        let (b, k) = (key.batch, key.beam);
        let r = b * k;
        let enc = self.record_encoder(bld, b, key.src_len, key.fused_encoder)?;
        let (mem, step) = self.prepare(bld, &enc, k)?;
        let t_w = step.weights.as_ref().map(|w| w.numel() / r).unwrap_or(0);
        let keep_attn = key.keep_attn && step.weights.is_some();
        let eos = self.cfg.eos_id as u32;
        let beam = if k > 1 {
            let scores = zeros(bld, &[r])?;
            bld.name("beam.scores", &scores)?;
            let parent = bld.named("beam.parent", &[r], DType::U32)?;
            let ctl = bld.named("beam.ctl", &[b, 4], DType::U32)?;
            let fin = bld.named("beam.fin", &[b, 2 * k, 3], DType::U32)?;
            Some((scores, parent, ctl, fin))
        } else {
            None
        };
        let dec_blob = if key.fused {
            self.decoder_blob(gpu)?
        } else {
            None
        };
        let mut fused = false;
        let mut fused_beam = false;
        match (dec_blob, key.fused, &beam) {
            (Some(blob), true, Some((_, parent, _, _))) => {
                // The fused step then top-k; the selection is appended below. Even and odd steps
                // alternate the state halves.
                let fb = FusedBeam::new(
                    bld,
                    blob,
                    &mem.mem,
                    mem.keys_proj.as_ref(),
                    parent,
                    &step.y,
                    if keep_attn {
                        step.weights.as_ref()
                    } else {
                        None
                    },
                    (self.cfg.bos_id != self.cfg.eos_id).then_some(eos),
                )?;
                fb.record_start(bld, blob, &step.h, &step.c);
                for (phase, d) in fb.steps.iter().enumerate() {
                    let rec = bld.step(phase);
                    rec.push(d.clone());
                    topk::record_topk(rec, &fb.logits, &step.ids, &step.logp)?;
                }
                fused_beam = true;
            }
            (Some(blob), true, None) => {
                let tokens = bld.buffer(&[key.max_len, r], DType::U32)?;
                let logps = bld.buffer(&[key.max_len, r], DType::U32)?;
                let attn = if keep_attn {
                    Some(zeros(bld, &[key.max_len, r, t_w])?)
                } else {
                    None
                };
                bld.output("tokens", &tokens);
                bld.output("aux", &logps);
                if let Some(a) = &attn {
                    bld.output("attn", a);
                }
                let fl = FusedLoop::new(
                    bld,
                    blob,
                    &mem.mem,
                    mem.keys_proj.as_ref(),
                    &tokens,
                    &logps,
                    attn.as_ref(),
                    eos,
                )?;
                fl.record_start(bld, blob, &step.h, &step.c);
                fused = true;
            }
            _ => self.record_step(bld, 0, &mem, &step, r)?,
        }
        if let Some((scores, parent, ctl, fin)) = &beam {
            let bufs = BeamBuffers {
                cand_ids: &step.ids,
                cand_lp: &step.logp,
                scores,
                parent,
                tokens: &step.y,
                ctl,
                fin,
            };
            // The fused step reads each row's state from its parent row itself; the per-op step's
            // state is gathered by parent row after the selection.
            for phase in 0..if fused_beam { 2 } else { 1 } {
                record_beam_select(bld.step(phase), &bufs, b, k, eos, key.length_norm)?;
            }
            if !fused_beam {
                let rec = bld.step(0);
                for (l, h_new) in step.h_new.iter().enumerate() {
                    record_embedding(rec, parent, h_new, &step.h[l])?;
                }
                for (l, c_new) in step.c_new.iter().enumerate() {
                    record_embedding(rec, parent, c_new, &step.c[l])?;
                }
                if let (Some(cn), Some(c)) = (&step.ctx_new, &step.ctx) {
                    record_embedding(rec, parent, cn, c)?;
                }
            }
            // Beam: step s's history holds the tokens and parents after its selection, and the
            // attention weights of the rows before it.
            bld.history("tokens", &step.y)?;
            bld.history("aux", parent)?;
            bld.output("beam.scores", scores);
            bld.output("beam.ctl", ctl);
            bld.output("beam.fin", fin);
            bld.stop_when(Stop::StatusSet {
                status: "beam.ctl".into(),
                stride: 4,
                word: 0,
                rows: b,
            });
        } else {
            if !fused {
                let rec = bld.step(0);
                for (h_new, h) in step.h_new.iter().zip(&step.h) {
                    rec.copy(h_new.buffer(), 0, h.buffer(), 0, h.byte_len());
                }
                for (c_new, c) in step.c_new.iter().zip(&step.c) {
                    rec.copy(c_new.buffer(), 0, c.buffer(), 0, c.byte_len());
                }
                if let (Some(cn), Some(c)) = (&step.ctx_new, &step.ctx) {
                    rec.copy(cn.buffer(), 0, c.buffer(), 0, c.byte_len());
                }
                rec.copy(step.ids.buffer(), 0, step.y.buffer(), 0, step.y.byte_len());
                bld.history("tokens", &step.ids)?;
                bld.history("aux", &step.logp)?;
            }
            bld.stop_when(Stop::TokenSeen {
                history: "tokens".into(),
                token: eos,
                rows: b,
            });
        }
        if keep_attn && !fused {
            if let Some(w) = &step.weights {
                bld.history("attn", w)?;
            }
        }
        Ok(Plan {
            run: builder.build()?,
            t_w,
            t: enc.t,
            keep_attn,
            fused,
            fused_beam,
            c_layers: step.c.len(),
            layers: step.h.len(),
            has_ctx: step.ctx.is_some(),
            mask_heads: mem.mask.as_ref().map(|m| m.numel() / (r * enc.t)),
            has_valid: mem.valid.is_some(),
        })
    }

    /// A call's inputs for `plan`: the encoder's ids and lengths, the decoder's starting state and
    /// masks, and the beam's or fused loop's control words.
    pub(super) fn write_inputs(
        &self,
        plan: &Plan,
        seqs: &[Vec<u32>],
        lengths: &[usize],
        k: usize,
    ) -> Result<Writes> {
        let mut w = Writes::new();
        Encoded::write(&mut w, plan.t, self.cfg.pad_id as u32, seqs);
        // A fused plan built the decoder blob when it was planned.
        if let (true, Some(blob)) = (plan.fused, self.copies.dec_blob.get()) {
            // The fused loop reads only the encoder's results and its own control words and state
            // (the initial states it copies are never written in a fused plan).
            FusedLoop::write_inputs(&mut w, blob, self.cfg.bos_id as u32, lengths);
            return Ok(w);
        }
        let b = seqs.len();
        let r = b * k;
        let t = plan.t;
        let row_len = |i: usize| lengths[i / k];
        if plan.has_valid {
            let mut x = vec![0u32; r * t];
            for i in 0..r {
                for j in 0..row_len(i).min(t) {
                    x[i * t + j] = 1;
                }
            }
            w.u32s("valid", &x);
        }
        if let Some(heads) = plan.mask_heads {
            let mut x = vec![0f32; r * heads * t];
            for i in 0..r {
                for hh in 0..heads {
                    for j in row_len(i)..t {
                        x[(i * heads + hh) * t + j] = f32::NEG_INFINITY;
                    }
                }
            }
            w.f32s("mask", &x);
        }
        w.u32s("y", &vec![self.cfg.bos_id as u32; r]);
        if plan.has_ctx {
            w.zero("ctx");
        }
        if self.cfg.bridge != "final" {
            for l in 0..plan.layers {
                w.zero(&format!("h.{l}"));
            }
            for l in 0..plan.c_layers {
                w.zero(&format!("c.{l}"));
            }
        }
        if k > 1 {
            let mut scores = vec![f32::NEG_INFINITY; r];
            let mut ctl = vec![0u32; b * 4];
            for i in 0..b {
                scores[i * k] = 0.0;
                ctl[i * 4 + 3] = f32::NEG_INFINITY.to_bits();
            }
            w.f32s("beam.scores", &scores);
            w.u32s("beam.ctl", &ctl);
            w.zero("beam.fin");
            if let (true, Some(blob)) = (plan.fused_beam, self.copies.dec_blob.get()) {
                // Before the first selection every row continues itself.
                let identity: Vec<u32> = (0..r as u32).collect();
                w.u32s("beam.parent", &identity);
                let lens: Vec<u32> = (0..r).map(|i| row_len(i) as u32).collect();
                FusedBeam::write_inputs(&mut w, blob, &lens);
            }
        }
        Ok(w)
    }
}
