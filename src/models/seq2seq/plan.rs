//! Decode plans: the buffers and recordings a batch shape needs, allocated and recorded once per
//! [`PlanKey`] and replayed by [`Seq2Seq::decode`], and the per-call input writes.

use crate::error::Result;
use crate::gpu::{Gpu, Recorder};
use crate::kernels::beam::{record_beam_select, BeamBuffers};
use crate::kernels::{embedding::record_embedding, topk};
use crate::tensor::{DType, Tensor};

use super::fused::{FusedBeam, FusedLoop};
use super::step::{zeros, Memory, Step};
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

/// Prepared decoders kept per model (each holds its buffers; dropped beyond this count).
pub(super) const MAX_PLANS: usize = 64;

/// Beam buffers: scores `[R]`, parents `[R]`, control words `[B, 4]`, finished `[B, 2k, 3]`.
#[derive(Debug)]
pub(super) struct BeamState {
    pub(super) scores: Tensor,
    pub(super) parent: Tensor,
    pub(super) ctl: Tensor,
    pub(super) fin: Tensor,
}

/// Everything a `decode` call of one [`PlanKey`] needs, allocated and recorded once: the encoder,
/// the per-sequence tensors, the step's buffers and recording, the histories and a readback
/// buffer. A call writes its inputs and replays the recordings.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) enc: Encoded,
    pub(super) mem: Memory,
    pub(super) step: Step,
    /// Encoder, replication and once-per-sequence projections: runs at the start of the first chunk.
    pub(super) init: Recorder,
    /// One decoder step, state update included (per-op decoder).
    pub(super) step_rec: Recorder,
    /// The fused greedy decoder's buffers and dispatches (instead of `step_rec`).
    pub(super) fused: Option<FusedLoop>,
    /// Fused beam search: `step_rec` records the even steps, this the odd ones (the state halves
    /// alternate).
    pub(super) step_rec_odd: Option<Recorder>,
    /// Fused beam search's buffers.
    pub(super) fused_beam: Option<FusedBeam>,
    pub(super) beam: Option<BeamState>,
    pub(super) tok_hist: Tensor,
    pub(super) aux_hist: Tensor,
    pub(super) attn_hist: Option<Tensor>,
    /// Readback: every result buffer copied at the end of each chunk, mapped once per chunk.
    pub(super) staging: wgpu::Buffer,
    /// (buffer, byte offset in `staging`, bytes) of the results.
    pub(super) results: Vec<(wgpu::Buffer, u64, u64)>,
    pub(super) t_w: usize,
}

impl Seq2Seq {
    /// Allocates and records everything a decode of `key`'s shape needs.
    pub(super) fn plan(&self, gpu: &Gpu, key: PlanKey) -> Result<Plan> {
        let (b, k, max_len) = (key.batch, key.beam, key.max_len);
        let r = b * k;
        let enc = self.record_encoder(gpu, b, key.src_len, key.fused_encoder)?;
        let (mem, step, mut init) = self.prepare(gpu, &enc, k)?;
        let t_w = step.weights.as_ref().map(|w| w.numel() / r).unwrap_or(0);
        let keep_attn = key.keep_attn && step.weights.is_some();
        // Histories: tokens and log-probs (greedy) or tokens and parents (beam), per step.
        let tok_hist = Tensor::zeros(gpu, &[max_len, r], DType::U32)?;
        let aux_hist = Tensor::zeros(gpu, &[max_len, r], DType::U32)?;
        let attn_hist = if keep_attn {
            Some(zeros(gpu, &[max_len, r, t_w])?)
        } else {
            None
        };
        let mut step_rec = Recorder::new(gpu);
        let beam = if k > 1 {
            Some(BeamState {
                scores: zeros(gpu, &[r])?,
                parent: Tensor::zeros(gpu, &[r], DType::U32)?,
                ctl: Tensor::zeros(gpu, &[b, 4], DType::U32)?,
                fin: Tensor::zeros(gpu, &[b, 2 * k, 3], DType::U32)?,
            })
        } else {
            None
        };
        let mut fused_beam = None;
        let mut step_rec_odd = None;
        let dec_blob = if key.fused {
            self.decoder_blob(gpu)?
        } else {
            None
        };
        let fused = match (dec_blob, key.fused, &beam) {
            (Some(blob), true, Some(bs)) => {
                // The fused step then top-k; the selection is appended below. Even and odd steps
                // alternate the state halves.
                let fb = FusedBeam::new(
                    gpu,
                    blob,
                    &mem.mem,
                    mem.keys_proj.as_ref(),
                    &bs.parent,
                    &step.y,
                    if keep_attn {
                        step.weights.as_ref()
                    } else {
                        None
                    },
                    (self.cfg.bos_id != self.cfg.eos_id).then_some(self.cfg.eos_id as u32),
                )?;
                fb.record_start(&mut init, blob, &step.h, &step.c);
                let mut odd = Recorder::new(gpu);
                for (rec, d) in [(&mut step_rec, &fb.steps[0]), (&mut odd, &fb.steps[1])] {
                    rec.push(d.clone());
                    topk::record_topk(rec, &fb.logits, &step.ids, &step.logp)?;
                }
                step_rec_odd = Some(odd);
                fused_beam = Some(fb);
                None
            }
            (Some(blob), true, None) => {
                let fl = FusedLoop::new(
                    gpu,
                    blob,
                    &mem.mem,
                    mem.keys_proj.as_ref(),
                    &tok_hist,
                    &aux_hist,
                    attn_hist.as_ref(),
                    self.cfg.eos_id as u32,
                )?;
                fl.record_start(&mut init, blob, &step.h, &step.c);
                Some(fl)
            }
            _ => {
                self.record_step(&mut step_rec, &mem, &step, r)?;
                None
            }
        };
        if let Some(bs) = &beam {
            let bufs = BeamBuffers {
                cand_ids: &step.ids,
                cand_lp: &step.logp,
                scores: &bs.scores,
                parent: &bs.parent,
                tokens: &step.y,
                ctl: &bs.ctl,
                fin: &bs.fin,
            };
            let eos = self.cfg.eos_id as u32;
            record_beam_select(&mut step_rec, &bufs, b, k, eos, key.length_norm)?;
            if let Some(odd) = step_rec_odd.as_mut() {
                // The fused step reads each row's state from its parent row itself.
                record_beam_select(odd, &bufs, b, k, eos, key.length_norm)?;
            }
        }
        if let (Some(bs), None) = (&beam, &step_rec_odd) {
            let parent = &bs.parent;
            for (l, h_new) in step.h_new.iter().enumerate() {
                record_embedding(&mut step_rec, parent, h_new, &step.h[l])?;
            }
            for (l, c_new) in step.c_new.iter().enumerate() {
                record_embedding(&mut step_rec, parent, c_new, &step.c[l])?;
            }
            if let (Some(cn), Some(c)) = (&step.ctx_new, &step.ctx) {
                record_embedding(&mut step_rec, parent, cn, c)?;
            }
        } else if beam.is_none() && fused.is_none() {
            for (h_new, h) in step.h_new.iter().zip(&step.h) {
                step_rec.copy(h_new.buffer(), 0, h.buffer(), 0, h.byte_len());
            }
            for (c_new, c) in step.c_new.iter().zip(&step.c) {
                step_rec.copy(c_new.buffer(), 0, c.buffer(), 0, c.byte_len());
            }
            if let (Some(cn), Some(c)) = (&step.ctx_new, &step.ctx) {
                step_rec.copy(cn.buffer(), 0, c.buffer(), 0, c.byte_len());
            }
            step_rec.copy(step.ids.buffer(), 0, step.y.buffer(), 0, step.y.byte_len());
        }
        let mut results: Vec<&Tensor> = vec![&tok_hist, &aux_hist];
        if let Some(bs) = &beam {
            results.extend([&bs.scores, &bs.ctl, &bs.fin]);
        }
        if let Some(a) = &attn_hist {
            results.push(a);
        }
        let mut at = 0u64;
        let results: Vec<(wgpu::Buffer, u64, u64)> = results
            .into_iter()
            .map(|t| {
                let len = t.byte_len();
                let e = (t.buffer().clone(), at, len);
                at += len;
                e
            })
            .collect();
        let staging = gpu.create_buffer(
            "decode readback",
            at.max(4),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        // Nothing of the first chunk may run before the inputs are written: the init recording
        // is submitted with it.
        init = {
            let mut all = enc.rec.clone();
            all.extend(init);
            all
        };
        Ok(Plan {
            enc,
            mem,
            step,
            init,
            step_rec,
            step_rec_odd,
            fused,
            fused_beam,
            beam,
            tok_hist,
            aux_hist,
            attn_hist,
            staging,
            results,
            t_w,
        })
    }

    /// Writes a call's inputs into a plan's buffers and resets the decoder's starting state.
    pub(super) fn write_inputs(
        &self,
        gpu: &Gpu,
        plan: &Plan,
        seqs: &[Vec<u32>],
        lengths: &[usize],
        k: usize,
    ) -> Result<()> {
        plan.enc.write(gpu, seqs);
        if let (Some(fl), Some(blob)) = (&plan.fused, self.decoder_blob(gpu)?) {
            // The fused loop reads only the encoder's results and its own control words and state
            // (the initial states it copies are never written in a fused plan).
            fl.write_inputs(gpu, blob, self.cfg.bos_id as u32, lengths);
            return Ok(());
        }
        let b = seqs.len();
        let r = b * k;
        let st = &plan.step;
        let mem = &plan.mem;
        let t = mem.mem.shape()[1];
        let row_len = |i: usize| lengths[i / k];
        if let Some(v) = &mem.valid {
            let mut x = vec![0u32; r * t];
            for i in 0..r {
                for j in 0..row_len(i).min(t) {
                    x[i * t + j] = 1;
                }
            }
            v.write_bytes(gpu, 0, bytemuck::cast_slice(&x));
        }
        if let Some(mask) = &mem.mask {
            let heads = mask.numel() / (r * t);
            let mut x = vec![0f32; r * heads * t];
            for i in 0..r {
                for hh in 0..heads {
                    for j in row_len(i)..t {
                        x[(i * heads + hh) * t + j] = f32::NEG_INFINITY;
                    }
                }
            }
            mask.write_bytes(gpu, 0, bytemuck::cast_slice(&x));
        }
        let bos = vec![self.cfg.bos_id as u32; r];
        st.y.write_bytes(gpu, 0, bytemuck::cast_slice(&bos));
        let zero = |x: &Tensor| x.write_bytes(gpu, 0, &vec![0u8; x.byte_len() as usize]);
        if let Some(c) = &st.ctx {
            zero(c);
        }
        if self.cfg.bridge != "final" {
            st.h.iter().chain(&st.c).for_each(zero);
        }
        if let Some(bs) = &plan.beam {
            let mut scores = vec![f32::NEG_INFINITY; r];
            let mut ctl = vec![0u32; b * 4];
            for i in 0..b {
                scores[i * k] = 0.0;
                ctl[i * 4 + 3] = f32::NEG_INFINITY.to_bits();
            }
            bs.scores.write_bytes(gpu, 0, bytemuck::cast_slice(&scores));
            bs.ctl.write_bytes(gpu, 0, bytemuck::cast_slice(&ctl));
            zero(&bs.fin);
            if let (Some(fb), Some(blob)) = (&plan.fused_beam, self.decoder_blob(gpu)?) {
                // Before the first selection every row continues itself.
                let identity: Vec<u32> = (0..r as u32).collect();
                bs.parent
                    .write_bytes(gpu, 0, bytemuck::cast_slice(&identity));
                let lens: Vec<u32> = (0..r).map(|i| row_len(i) as u32).collect();
                fb.write_inputs(gpu, blob, &lens)?;
            }
        }
        Ok(())
    }
}
