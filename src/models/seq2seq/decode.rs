//! Greedy and beam-search decoding with the loop on the GPU.
//!
//! One decoder step is recorded once into a [`Recorder`] over fixed buffers: embedding of the
//! current tokens, (tutorial attention,) the cell stack, attention, output projection, top-k, and
//! the state update (greedy: the argmax becomes the next input; beam: the selection kernel picks
//! the new hypotheses and the states are gathered by parent row). A chunk of `steps_per_submit`
//! steps is that recording repeated, plus copies of each step's tokens (and attention weights)
//! into history buffers at the step's offset, submitted at once; the CPU reads the tokens (greedy)
//! or the control words (beam) back once per chunk to stop when every sequence has ended.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::kernels::beam::{record_beam_select, BeamBuffers};
use crate::kernels::elementwise::{record_activation, record_binary, Activation, Binary};
use crate::kernels::matmul::{record_linear, record_matmul, record_matmul_bt};
use crate::kernels::memory_attention::{self, Score};
use crate::kernels::{concat::record_concat, embedding::record_embedding, layout, softmax, topk};
use crate::tensor::{DType, Tensor};

use super::fused::{self, FusedBeam, FusedLoop};
use super::{AttentionOrder, AttnParams, Encoded, Linear, Seq2Seq, OP};

/// How to decode.
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// Maximum decoded tokens (default: the config's `max_len`).
    pub max_len: Option<usize>,
    /// Beam width; 1 is greedy.
    pub beam: usize,
    /// Beam: rank finished hypotheses by score / length (length counts the end token).
    pub length_norm: bool,
    /// Decoder steps recorded per submission (1: one submission and readback per step).
    pub steps_per_submit: usize,
    /// Keep every step's attention weights (greedy and beam; see [`Decoded::attention`]).
    pub keep_attention: bool,
    /// Input-sized first submission: when > 0, the first submission runs
    /// `max(steps_per_submit, floor(first_steps_per_input * longest input))` steps (input length
    /// without the appended end id), later ones `steps_per_submit`. For models whose output length
    /// tracks the input's (G2P: phonemes vs letters) a ratio below the usual output/input ratio
    /// skips the readbacks of steps that cannot be the last without running past the end.
    pub first_steps_per_input: f32,
    /// Which kernels run the encoder and the greedy decoder.
    pub kernel: DecodeKernel,
}

/// Which kernels run the encoder and the greedy decoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DecodeKernel {
    /// The fused kernels where the model and device allow them, else per-op.
    #[default]
    Auto,
    /// The fused greedy decoder ([`crate::kernels::decoder_loop`], one dispatch per chunk of steps);
    /// an error when the model (multi-head or tutorial attention), beam search or
    /// the device's workgroup memory does not allow it. The encoder as with `Auto`.
    Fused,
    /// Per-op kernels: the encoder's embedding, input projection and recurrence
    /// ([`crate::ops::RecurrentLayer`]), and about ten dispatches per decoder step (embedding,
    /// cells, attention, projections, top-k). Beam search always decodes per-op; its encoder is
    /// the fused one ([`crate::kernels::encoder_loop`]) unless this is chosen.
    PerOp,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_len: None,
            beam: 1,
            length_norm: false,
            steps_per_submit: 8,
            keep_attention: false,
            first_steps_per_input: 0.0,
            kernel: DecodeKernel::Auto,
        }
    }
}

/// One decoded sequence.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// Output ids, without the end token.
    pub tokens: Vec<u32>,
    /// Greedy: log-probability of each chosen token, the end token included when reached.
    pub logprobs: Vec<f32>,
    /// Sum of `logprobs` (greedy) or the beam's (normalized) score.
    pub score: f32,
    /// With `keep_attention`: per decoder step that produced this output, the weights over the
    /// input positions (the tutorial attention's `max_length` positions are cut to the input
    /// length, the appended `src_eos_id` included). One row per output token, plus one for the
    /// end token's step when the sequence ended with it (so `tokens.len()` or
    /// `tokens.len() + 1` rows). Beam: the rows of the returned hypothesis, each step's weights
    /// taken from the beam row that hypothesis's prefix occupied at that step. Empty without
    /// `keep_attention` or for attention "none".
    pub attention: Vec<Vec<f32>>,
}

fn lin(rec: &mut Recorder, x: &Tensor, l: &Linear, out: &Tensor) -> Result<()> {
    record_linear(rec, x, &l.w, l.b.as_ref(), out)
}

fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
    Tensor::zeros(gpu, shape, DType::F32)
}

/// Per-sequence tensors the step reads (after beam replication).
#[derive(Debug)]
struct Memory {
    /// `[R, T, M]`.
    mem: Tensor,
    /// Additive: the keys' projection `[R, T, A]`, once per sequence.
    keys_proj: Option<Tensor>,
    /// Dot/general/additive: scratch of the fused attention kernel.
    scratch: Option<Tensor>,
    /// Dot/general/additive: valid positions `[R, T]` u32.
    valid: Option<Tensor>,
    /// Multi-head: additive mask `[R, heads, 1, T]` (0 or -inf).
    mask: Option<Tensor>,
    /// Multi-head keys and values `[R, heads, T, d]`.
    kv: Option<(Tensor, Tensor)>,
    /// `[R, 1, heads]` of 1 / heads (average of the heads' weights, for display).
    avg: Option<Tensor>,
    /// Tutorial: memory zero-padded to `[R, max_length, M]`.
    padded: Option<Tensor>,
}

/// The step's buffers.
#[derive(Debug)]
struct Step {
    y: Tensor,
    h: Vec<Tensor>,
    c: Vec<Tensor>,
    h_new: Vec<Tensor>,
    c_new: Vec<Tensor>,
    ctx: Option<Tensor>,
    ctx_new: Option<Tensor>,
    weights: Option<Tensor>,
    ids: Tensor,
    logp: Tensor,
}

/// What a prepared decoder is specialized to: the device, the batch shape and the loop's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct PlanKey {
    gpu: usize,
    batch: usize,
    src_len: usize,
    beam: usize,
    max_len: usize,
    keep_attn: bool,
    length_norm: bool,
    fused: bool,
    fused_encoder: bool,
}

/// Prepared decoders kept per model (each holds its buffers; dropped beyond this count).
const MAX_PLANS: usize = 64;

/// Beam buffers: scores `[R]`, parents `[R]`, control words `[B, 4]`, finished `[B, 2k, 3]`.
#[derive(Debug)]
struct BeamState {
    scores: Tensor,
    parent: Tensor,
    ctl: Tensor,
    fin: Tensor,
}

/// Everything a `decode` call of one [`PlanKey`] needs, allocated and recorded once: the encoder,
/// the per-sequence tensors, the step's buffers and recording, the histories and a readback
/// buffer. A call writes its inputs and replays the recordings.
#[derive(Debug)]
pub(super) struct Plan {
    enc: Encoded,
    mem: Memory,
    step: Step,
    /// Encoder, replication and once-per-sequence projections: runs at the start of the first chunk.
    init: Recorder,
    /// One decoder step, state update included (per-op decoder).
    step_rec: Recorder,
    /// The fused greedy decoder's buffers and dispatches (instead of `step_rec`).
    fused: Option<FusedLoop>,
    /// Fused beam search: `step_rec` records the even steps, this the odd ones (the state halves
    /// alternate).
    step_rec_odd: Option<Recorder>,
    /// Fused beam search's buffers.
    fused_beam: Option<FusedBeam>,
    beam: Option<BeamState>,
    tok_hist: Tensor,
    aux_hist: Tensor,
    attn_hist: Option<Tensor>,
    /// Readback: every result buffer copied at the end of each chunk, mapped once per chunk.
    staging: wgpu::Buffer,
    /// (buffer, byte offset in `staging`, bytes) of the results.
    results: Vec<(wgpu::Buffer, u64, u64)>,
    t_w: usize,
}

impl Seq2Seq {
    /// Decodes a batch of input id sequences (without the `src_eos_id`, which is appended).
    ///
    /// The first call for a batch shape (batch size, longest input, beam, `max_len`, attention
    /// keeping) allocates and records the decoder; later calls of that shape reuse it and create
    /// no GPU objects.
    pub fn decode(
        &self,
        gpu: &Gpu,
        inputs: &[Vec<u32>],
        opts: &DecodeOptions,
    ) -> Result<Vec<Decoded>> {
        let k = opts.beam;
        if k == 0 || k > topk::MAX_K || k > self.cfg.tgt_vocab {
            return Err(Error::invalid(
                OP,
                format!(
                    "beam width {k} must be in 1..={}",
                    topk::MAX_K.min(self.cfg.tgt_vocab)
                ),
            ));
        }
        if opts.steps_per_submit == 0 {
            return Err(Error::invalid(OP, "steps_per_submit must be >= 1"));
        }
        let max_len = opts.max_len.unwrap_or(self.cfg.max_len);
        if max_len == 0 {
            return Err(Error::invalid(OP, "max_len must be >= 1"));
        }
        let seqs = self.source_seqs(inputs)?;
        let b = seqs.len();
        let t = seqs.iter().map(Vec::len).max().unwrap_or(1);
        let fused = self.use_fused(gpu, opts, t)?;
        let key = PlanKey {
            gpu: std::sync::Arc::as_ptr(&gpu.inner) as usize,
            batch: b,
            src_len: t,
            beam: k,
            max_len,
            keep_attn: opts.keep_attention,
            length_norm: opts.length_norm,
            fused,
            fused_encoder: opts.kernel != DecodeKernel::PerOp
                && self.enc_blob.as_ref().is_some_and(|e| e.check(gpu).is_ok()),
        };
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| Error::invalid(OP, "a decode panicked"))?;
        if !plans.contains_key(&key) {
            if plans.len() >= MAX_PLANS {
                plans.clear();
            }
            let plan = self.plan(gpu, key)?;
            plans.insert(key, plan);
        }
        let plan = plans
            .get(&key)
            .ok_or_else(|| Error::invalid(OP, "no plan"))?;
        let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
        self.write_inputs(gpu, plan, &seqs, &lengths, k);
        let step = &plan.step;
        let r = b * k;
        let t_w = plan.t_w;
        let keep_attn = key.keep_attn && step.weights.is_some();
        let row_bytes = (r * 4) as u64;
        let mut steps_run = 0;
        let mut bytes = Vec::new();
        let longest = inputs.iter().map(Vec::len).max().unwrap_or(0);
        let first = if opts.first_steps_per_input > 0.0 {
            ((opts.first_steps_per_input * longest as f32) as usize).max(opts.steps_per_submit)
        } else {
            opts.steps_per_submit
        };
        while steps_run < max_len {
            let chunk = if steps_run == 0 {
                first
            } else {
                opts.steps_per_submit
            };
            let n = chunk.min(max_len - steps_run);
            let mut rec = if steps_run == 0 {
                plan.init.clone()
            } else {
                Recorder::new(gpu)
            };
            if let Some(fl) = &plan.fused {
                // One dispatch runs the chunk; it writes the histories itself.
                fl.record_run(gpu, &mut rec, steps_run + n)?;
            }
            let per_op_steps = if plan.fused.is_some() { 0 } else { n };
            for s in steps_run..steps_run + per_op_steps {
                match (&plan.step_rec_odd, s % 2) {
                    (Some(odd), 1) => rec.extend(odd.clone()),
                    _ => rec.extend(plan.step_rec.clone()),
                }
                let off = s as u64 * row_bytes;
                if let Some(bs) = &plan.beam {
                    rec.copy(step.y.buffer(), 0, plan.tok_hist.buffer(), off, row_bytes);
                    rec.copy(
                        bs.parent.buffer(),
                        0,
                        plan.aux_hist.buffer(),
                        off,
                        row_bytes,
                    );
                    // The weights of step s are those of the rows before the selection of step
                    // s (row q of step s is row q of step s - 1's tokens and parents).
                    if let (Some(ah), Some(w)) = (&plan.attn_hist, &step.weights) {
                        let wb = w.byte_len();
                        rec.copy(w.buffer(), 0, ah.buffer(), s as u64 * wb, wb);
                    }
                } else {
                    rec.copy(step.ids.buffer(), 0, plan.tok_hist.buffer(), off, row_bytes);
                    rec.copy(
                        step.logp.buffer(),
                        0,
                        plan.aux_hist.buffer(),
                        off,
                        row_bytes,
                    );
                    if let (Some(ah), Some(w)) = (&plan.attn_hist, &step.weights) {
                        let wb = w.byte_len();
                        rec.copy(w.buffer(), 0, ah.buffer(), s as u64 * wb, wb);
                    }
                }
            }
            for (buf, off, len) in &plan.results {
                rec.copy(buf, 0, &plan.staging, *off, *len);
            }
            rec.submit()?;
            steps_run += n;
            bytes = read_staging(gpu, &plan.staging)?;
            let finished = if let Some(bs) = &plan.beam {
                let c = u32s(&bytes, plan.results[3].1, bs.ctl.numel());
                (0..b).all(|i| c[i * 4] != 0)
            } else {
                let toks = u32s(&bytes, 0, steps_run * r);
                let eos = self.cfg.eos_id as u32;
                (0..b).all(|i| (0..steps_run).any(|s| toks[s * r + i] == eos))
            };
            if finished {
                break;
            }
        }
        let toks = u32s(&bytes, 0, plan.tok_hist.numel());
        let aux_at = plan.results[1].1;
        // The attention history is the last result when kept.
        let attn: Vec<f32> = match (&plan.attn_hist, plan.results.last()) {
            (Some(a), Some((_, off, _))) if keep_attn => u32s(&bytes, *off, a.numel())
                .into_iter()
                .map(f32::from_bits)
                .collect(),
            _ => Vec::new(),
        };
        if let Some(bs) = &plan.beam {
            let parents = u32s(&bytes, aux_at, plan.aux_hist.numel());
            let scores: Vec<f32> = u32s(&bytes, plan.results[2].1, r)
                .into_iter()
                .map(f32::from_bits)
                .collect();
            let ctl = u32s(&bytes, plan.results[3].1, bs.ctl.numel());
            let fin = u32s(&bytes, plan.results[4].1, bs.fin.numel());
            let (mut out, attn_rows) = finish_beam(
                &toks,
                &parents,
                &scores,
                &ctl,
                &fin,
                b,
                k,
                2 * k,
                steps_run,
                opts.length_norm,
            );
            if keep_attn {
                for (i, (d, rows)) in out.iter_mut().zip(attn_rows).enumerate() {
                    let src_len = lengths[i].min(t_w.max(1));
                    d.attention = rows
                        .into_iter()
                        .map(|h| attn[h * t_w..h * t_w + src_len].to_vec())
                        .collect();
                }
            }
            return Ok(out);
        }
        let lps: Vec<f32> = u32s(&bytes, aux_at, plan.aux_hist.numel())
            .into_iter()
            .map(f32::from_bits)
            .collect();
        let eos = self.cfg.eos_id as u32;
        let mut out = Vec::with_capacity(b);
        for (i, &len) in lengths.iter().enumerate() {
            let mut d = Decoded::default();
            let src_len = len.min(t_w.max(1));
            for s in 0..steps_run {
                let t = toks[s * r + i];
                d.logprobs.push(lps[s * r + i]);
                if keep_attn {
                    let base = (s * r + i) * t_w;
                    d.attention.push(attn[base..base + src_len].to_vec());
                }
                if t == eos {
                    break;
                }
                d.tokens.push(t);
            }
            d.score = d.logprobs.iter().sum();
            out.push(d);
        }
        Ok(out)
    }

    /// Allocates and records everything a decode of `key`'s shape needs.
    fn plan(&self, gpu: &Gpu, key: PlanKey) -> Result<Plan> {
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
        let fused = match (&self.fused_blob, key.fused, &beam) {
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
    fn write_inputs(&self, gpu: &Gpu, plan: &Plan, seqs: &[Vec<u32>], lengths: &[usize], k: usize) {
        plan.enc.write(gpu, seqs);
        if let (Some(fl), Some(blob)) = (&plan.fused, &self.fused_blob) {
            // The fused loop reads only the encoder's results and its own control words and state
            // (the initial states it copies are never written in a fused plan).
            fl.write_inputs(gpu, blob, self.cfg.bos_id as u32, lengths);
            return;
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
            if let (Some(fb), Some(blob)) = (&plan.fused_beam, &self.fused_blob) {
                // Before the first selection every row continues itself.
                let identity: Vec<u32> = (0..r as u32).collect();
                bs.parent
                    .write_bytes(gpu, 0, bytemuck::cast_slice(&identity));
                let lens: Vec<u32> = (0..r).map(|i| row_len(i) as u32).collect();
                fb.write_inputs(gpu, blob, &lens);
            }
        }
    }

    /// Whether a decode with `opts` over inputs padded to `t` runs the fused decoder kernel.
    fn use_fused(&self, gpu: &Gpu, opts: &DecodeOptions, t: usize) -> Result<bool> {
        let why_not = if opts.kernel == DecodeKernel::PerOp {
            return Ok(false);
        } else {
            match (&self.fused_blob, fused::loop_dims(&self.cfg)?) {
                (Some(_), Some(dims)) => dims.check(gpu, t).err().map(|e| e.to_string()),
                _ => Some(format!(
                    "the fused decoder does not run {} attention",
                    self.cfg.decoder.attention
                )),
            }
        };
        match (why_not, opts.kernel) {
            (None, _) => Ok(true),
            (Some(why), DecodeKernel::Fused) => Err(Error::invalid(
                OP,
                format!("DecodeKernel::Fused was asked for, but {why}"),
            )),
            (Some(_), _) => Ok(false),
        }
    }

    /// Allocates the per-sequence tensors (replicating each item `k` times for the beam) and the
    /// step's buffers, and computes the once-per-sequence attention projections.
    fn prepare(&self, gpu: &Gpu, enc: &Encoded, k: usize) -> Result<(Memory, Step, Recorder)> {
        let b = enc.ids.shape()[0];
        let r = b * k;
        let (t, m) = (enc.mem.shape()[1], enc.mem.shape()[2]);
        let d = &self.cfg.decoder;
        let hid = d.hidden;
        let mut rec = Recorder::new(gpu);
        // Replication: row i of the result is item i / k.
        let rep = |rec: &mut Recorder, x: &Tensor, shape: &[usize]| -> Result<Tensor> {
            if k == 1 {
                return Ok(x.clone());
            }
            let inner = x.numel() / b;
            let idx: Vec<u32> = (0..r).map(|i| (i / k) as u32).collect();
            let idx = Tensor::from_u32(gpu, &idx, &[r])?;
            let out = zeros(gpu, &[r, inner])?;
            record_embedding(rec, &idx, &x.reshape(&[b, inner])?, &out)?;
            out.reshape(shape)
        };
        let mem = rep(&mut rec, &enc.mem, &[r, t, m])?;
        let mut h = Vec::new();
        let mut c = Vec::new();
        for h0 in &enc.h0 {
            h.push(rep(&mut rec, h0, &[r, hid])?);
        }
        for c0 in &enc.c0 {
            c.push(rep(&mut rec, c0, &[r, hid])?);
        }
        // Own the state buffers (replication with k = 1 shares the encoder's tensors, which is fine:
        // they are not used elsewhere).
        // Written per call from the lengths (`write_inputs`).
        let mask_for = |heads: usize| -> Result<Tensor> {
            if heads == 1 {
                zeros(gpu, &[r, 1, t])
            } else {
                zeros(gpu, &[r, heads, 1, t])
            }
        };
        let valid = || Tensor::zeros(gpu, &[r, t], DType::U32);
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
                memory.valid = Some(valid()?);
                memory.scratch = Some(zeros(gpu, &[(r * m).max(4)])?);
                weights = Some(zeros(gpu, &[r, t])?);
            }
            AttnParams::Additive { w_k, .. } => {
                let a = w_k.w.shape()[0];
                let kp = zeros(gpu, &[r, t, a])?;
                memory_attention::record_project(&mut rec, &mem, &w_k.w, &kp)?;
                memory.keys_proj = Some(kp);
                memory.valid = Some(valid()?);
                memory.scratch = Some(zeros(gpu, &[r * a])?);
                weights = Some(zeros(gpu, &[r, t])?);
            }
            AttnParams::MultiHead {
                k: wk,
                v: wv,
                heads,
                ..
            } => {
                let a = self.cfg.ctx_dim();
                let dh = a / heads;
                let mut proj = |l: &Linear| -> Result<Tensor> {
                    let p = zeros(gpu, &[r, t, a])?;
                    lin(&mut rec, &mem, l, &p)?;
                    let out = zeros(gpu, &[r, *heads, t, dh])?;
                    layout::record_transpose12(&mut rec, &p.reshape(&[r, t, *heads, dh])?, &out)?;
                    Ok(out)
                };
                let kh = proj(wk)?;
                let vh = proj(wv)?;
                memory.kv = Some((kh, vh));
                memory.mask = Some(mask_for(*heads)?);
                memory.avg = Some(Tensor::from_f32(
                    gpu,
                    &vec![1.0 / *heads as f32; r * heads],
                    &[r, 1, *heads],
                )?);
                weights = Some(zeros(gpu, &[r, 1, t])?);
            }
            AttnParams::Tutorial { max_length, .. } => {
                let ml = *max_length;
                let padded = zeros(gpu, &[r, ml, m])?;
                let rows = t.min(ml);
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
                weights = Some(zeros(gpu, &[r, ml])?);
            }
        }
        let ctx_dim = self.cfg.ctx_dim();
        let has_ctx = !matches!(self.attn, AttnParams::None | AttnParams::Tutorial { .. });
        let mut h_new = Vec::new();
        let mut c_new = Vec::new();
        for _ in 0..d.layers {
            h_new.push(zeros(gpu, &[r, hid])?);
        }
        for _ in 0..c.len() {
            c_new.push(zeros(gpu, &[r, hid])?);
        }
        let step = Step {
            y: Tensor::from_u32(gpu, &vec![self.cfg.bos_id as u32; r], &[r])?,
            h,
            c,
            h_new,
            c_new,
            ctx: if has_ctx {
                Some(zeros(gpu, &[r, ctx_dim])?)
            } else {
                None
            },
            ctx_new: if has_ctx {
                Some(zeros(gpu, &[r, ctx_dim])?)
            } else {
                None
            },
            weights,
            ids: Tensor::zeros(gpu, &[r, k], DType::U32)?,
            logp: zeros(gpu, &[r, k])?,
        };
        Ok((memory, step, rec))
    }

    /// Records one decoder step: inputs `step.y`, `step.h`/`c`/`ctx`; outputs `h_new`/`c_new`/
    /// `ctx_new`, `weights`, and the top-k `ids`/`logp`.
    fn record_step(&self, rec: &mut Recorder, mem: &Memory, st: &Step, r: usize) -> Result<()> {
        let gpu = rec.gpu().clone();
        let d = &self.cfg.decoder;
        let (hid, e) = (d.hidden, d.emb);
        let emb = zeros(&gpu, &[r, e])?;
        record_embedding(rec, &st.y, &self.dec_emb, &emb)?;
        if self.order == AttentionOrder::Bahdanau {
            return self.record_bahdanau_step(rec, mem, st, &emb, r);
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
                let eh = zeros(&gpu, &[r, e + hid])?;
                record_concat(rec, &emb, &st.h[d.layers - 1], &eh)?;
                let sc = zeros(&gpu, &[r, ml])?;
                lin(rec, &eh, attn, &sc)?;
                let w = st
                    .weights
                    .as_ref()
                    .ok_or_else(|| Error::invalid(OP, "no weights"))?;
                softmax::record_softmax(rec, &sc, w)?;
                let padded = mem
                    .padded
                    .as_ref()
                    .ok_or_else(|| Error::invalid(OP, "no memory"))?;
                let ctx = zeros(&gpu, &[r, 1, m])?;
                record_matmul(rec, &w.reshape(&[r, 1, ml])?, padded, &ctx)?;
                let ec = zeros(&gpu, &[r, e + m])?;
                record_concat(rec, &emb, &ctx.reshape(&[r, m])?, &ec)?;
                let cb = zeros(&gpu, &[r, e])?;
                lin(rec, &ec, combine, &cb)?;
                let x = zeros(&gpu, &[r, e])?;
                record_activation(rec, &cb, &x, Activation::Relu)?;
                x
            }
            _ => match (&st.ctx, d.input_feeding) {
                (Some(ctx), true) => {
                    let x = zeros(&gpu, &[r, e + ctx.shape()[1]])?;
                    record_concat(rec, &emb, ctx, &x)?;
                    x
                }
                _ => emb,
            },
        };
        for (l, cell) in self.cells.iter().enumerate() {
            let x = if l == 0 { &x0 } else { &st.h_new[l - 1] };
            cell.record_forward(
                rec,
                x,
                Some(&st.h[l]),
                st.c.get(l),
                &st.h_new[l],
                st.c_new.get(l),
            )?;
        }
        let logits = zeros(&gpu, &[r, self.cfg.tgt_vocab])?;
        match &self.attn {
            AttnParams::None | AttnParams::Tutorial { .. } => lin(rec, top, &self.out, &logits)?,
            AttnParams::Dot
            | AttnParams::General { .. }
            | AttnParams::Additive { .. }
            | AttnParams::MultiHead { .. } => {
                let ctx_new = st
                    .ctx_new
                    .as_ref()
                    .ok_or_else(|| Error::invalid(OP, "no ctx"))?;
                self.record_attention(rec, mem, st, top, r)?;
                let c = ctx_new.shape()[1];
                let oc = zeros(&gpu, &[r, c + hid])?;
                record_concat(rec, ctx_new, top, &oc)?;
                match &self.w_c {
                    Some(w_c) => {
                        let ol = zeros(&gpu, &[r, hid])?;
                        lin(rec, &oc, w_c, &ol)?;
                        let o2 = zeros(&gpu, &[r, hid])?;
                        record_activation(rec, &ol, &o2, Activation::Tanh)?;
                        lin(rec, &o2, &self.out, &logits)?;
                    }
                    None => lin(rec, &oc, &self.out, &logits)?,
                }
            }
        }
        topk::record_topk(rec, &logits, &st.ids, &st.logp)?;
        Ok(())
    }

    /// Records the attention of one step (dot, general, additive or multi-head) with `query`
    /// `[R, hidden]`: writes `st.ctx_new` `[R, C]` and `st.weights`.
    fn record_attention(
        &self,
        rec: &mut Recorder,
        mem: &Memory,
        st: &Step,
        query: &Tensor,
        r: usize,
    ) -> Result<()> {
        let gpu = rec.gpu().clone();
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
            let qv = zeros(&gpu, &[r, a])?;
            lin(rec, query, q, &qv)?;
            let sc = zeros(&gpu, &[r, *heads, 1, t])?;
            record_matmul_bt(
                rec,
                &qv.reshape(&[r, *heads, 1, dh])?,
                kh,
                &sc,
                1.0 / (dh as f32).sqrt(),
            )?;
            let mask = mem
                .mask
                .as_ref()
                .ok_or_else(|| Error::invalid(OP, "no mask"))?;
            let sc2 = zeros(&gpu, &[r, *heads, 1, t])?;
            record_binary(rec, &sc, mask, &sc2, Binary::Add)?;
            let wh = zeros(&gpu, &[r, *heads, 1, t])?;
            softmax::record_softmax(rec, &sc2, &wh)?;
            let ch = zeros(&gpu, &[r, *heads, 1, dh])?;
            record_matmul(rec, &wh, vh, &ch)?;
            lin(rec, &ch.reshape(&[r, a])?, o, ctx_new)?;
            let avg = mem
                .avg
                .as_ref()
                .ok_or_else(|| Error::invalid(OP, "no avg"))?;
            record_matmul(
                rec,
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
                rec,
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
        rec: &mut Recorder,
        mem: &Memory,
        st: &Step,
        emb: &Tensor,
        r: usize,
    ) -> Result<()> {
        let gpu = rec.gpu().clone();
        let d = &self.cfg.decoder;
        let (hid, e) = (d.hidden, d.emb);
        let h_prev = &st.h[d.layers - 1];
        self.record_attention(rec, mem, st, h_prev, r)?;
        let ctx = st
            .ctx_new
            .as_ref()
            .ok_or_else(|| Error::invalid(OP, "no ctx"))?;
        let c = ctx.shape()[1];
        let x0 = zeros(&gpu, &[r, e + c])?;
        record_concat(rec, emb, ctx, &x0)?;
        for (l, cell) in self.cells.iter().enumerate() {
            let x = if l == 0 { &x0 } else { &st.h_new[l - 1] };
            cell.record_forward(
                rec,
                x,
                Some(&st.h[l]),
                st.c.get(l),
                &st.h_new[l],
                st.c_new.get(l),
            )?;
        }
        let hc = zeros(&gpu, &[r, hid + c])?;
        record_concat(rec, &st.h_new[d.layers - 1], ctx, &hc)?;
        let hce = zeros(&gpu, &[r, hid + c + e])?;
        record_concat(rec, &hc, emb, &hce)?;
        let logits = zeros(&gpu, &[r, self.cfg.tgt_vocab])?;
        lin(rec, &hce, &self.out, &logits)?;
        topk::record_topk(rec, &logits, &st.ids, &st.logp)
    }
}

/// `n` u32 words at byte offset `at` of `bytes`.
fn u32s(bytes: &[u8], at: u64, n: usize) -> Vec<u32> {
    let at = at as usize;
    bytemuck::pod_collect_to_vec(&bytes[at..at + 4 * n])
}

/// Maps the readback buffer (after the submitted work) and copies it out.
fn read_staging(gpu: &Gpu, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
    let slice = staging.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.wait()?;
    let err = |m: String| Error::Gpu {
        during: "decode readback".into(),
        message: m,
    };
    rx.recv()
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(e.to_string()))?;
    let out = slice
        .get_mapped_range()
        .map_err(|e| err(e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(out)
}

/// Tokens of row `row` after step `step` (inclusive), by following parents back.
fn backtrack(toks: &[u32], parents: &[u32], r: usize, step: usize, row: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(step + 1);
    let mut row = row;
    let mut s = step as isize;
    while s >= 0 {
        let i = s as usize * r + row;
        out.push(toks[i]);
        row = parents[i] as usize;
        s -= 1;
    }
    out.reverse();
    out
}

/// Attention history rows (`step * r + row`) of steps `0..=step` of the hypothesis whose step
/// `step` was computed in beam row `row` (the row before that step's selection), by following
/// parents back: row q of step s was row `parents[(s - 1) * r + q]` at step s - 1.
fn attention_rows(parents: &[u32], r: usize, step: usize, row: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(step + 1);
    let mut row = row;
    for s in (0..=step).rev() {
        out.push(s * r + row);
        if s > 0 {
            row = parents[(s - 1) * r + row] as usize;
        }
    }
    out.reverse();
    out
}

/// The best hypothesis per item, and per item the attention history rows of its steps (see
/// [`attention_rows`]; the end token's step included when it finished with one).
#[allow(clippy::too_many_arguments)]
fn finish_beam(
    toks: &[u32],
    parents: &[u32],
    scores: &[f32],
    ctl: &[u32],
    fin: &[u32],
    b: usize,
    k: usize,
    cap: usize,
    steps_run: usize,
    length_norm: bool,
) -> (Vec<Decoded>, Vec<Vec<usize>>) {
    let r = b * k;
    let mut out = Vec::with_capacity(b);
    let mut attn = Vec::with_capacity(b);
    for i in 0..b {
        // (tokens, score, attention rows) in the order the reference appends them.
        let mut cands: Vec<(Vec<u32>, f32, Vec<usize>)> = Vec::new();
        let count = (ctl[i * 4 + 2] as usize).min(cap);
        for f in 0..count {
            let base = (i * cap + f) * 3;
            let (step, prow, score) = (
                fin[base] as usize,
                fin[base + 1] as usize,
                f32::from_bits(fin[base + 2]),
            );
            let toks_f = if step == 0 {
                Vec::new()
            } else {
                backtrack(toks, parents, r, step - 1, prow)
            };
            cands.push((toks_f, score, attention_rows(parents, r, step, prow)));
        }
        if ctl[i * 4] == 0 {
            // Ran out of steps: live hypotheses finish as they are.
            for j in 0..k {
                let row = i * k + j;
                if scores[row].is_finite() {
                    let t = backtrack(toks, parents, r, steps_run - 1, row);
                    let s = if length_norm {
                        scores[row] / t.len() as f32
                    } else {
                        scores[row]
                    };
                    let last = steps_run - 1;
                    let q = parents[last * r + row] as usize;
                    cands.push((t, s, attention_rows(parents, r, last, q)));
                }
            }
        }
        let mut best: Option<usize> = None;
        for (j, c) in cands.iter().enumerate() {
            if best.is_none_or(|bj| c.1 > cands[bj].1) {
                best = Some(j);
            }
        }
        let d = match best {
            Some(j) => {
                attn.push(std::mem::take(&mut cands[j].2));
                Decoded {
                    tokens: cands[j].0.clone(),
                    score: cands[j].1,
                    ..Default::default()
                }
            }
            None => {
                attn.push(Vec::new());
                Decoded::default()
            }
        };
        out.push(d);
    }
    (out, attn)
}
