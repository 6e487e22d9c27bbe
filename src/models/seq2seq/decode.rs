//! Greedy and beam-search decoding with the loop on the GPU: the chunked loop over a plan (the
//! buffers and recordings of a batch shape, allocated once and replayed: [`super::plan`]).
//!
//! Greedy decoding with the fused kernel ([`super::fused`]) records one dispatch per chunk of
//! steps that writes the token and log-prob histories itself. Otherwise one decoder step is
//! recorded once over fixed buffers (the fused beam step + top-k + selection, or the per-op step of
//! [`super::step`] with the state update: greedy copies the argmax to the next input, beam gathers
//! the states by parent row), and a chunk of `steps_per_submit` steps is that recording repeated,
//! plus copies of each step's tokens (and attention weights) into history buffers at the step's
//! offset, submitted at once. The CPU reads the tokens (greedy) or the control words (beam) back
//! once per chunk to stop when every sequence has ended, and rebuilds beam hypotheses
//! ([`super::beam`]).

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::kernels::topk;

use super::beam::finish_beam;
use super::plan::{PlanKey, MAX_PLANS};
use super::{Seq2Seq, OP};

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
    /// Whether the sequence ended with the end token; false when decoding stopped at `max_len`
    /// steps first (the output may then be cut short).
    pub ended: bool,
    /// With `keep_attention`: per decoder step that produced this output, the weights over the
    /// input positions (the tutorial attention's `max_length` positions are cut to the input
    /// length, the appended `src_eos_id` included). One row per output token, plus one for the
    /// end token's step when the sequence ended with it (so `tokens.len()` or
    /// `tokens.len() + 1` rows). Beam: the rows of the returned hypothesis, each step's weights
    /// taken from the beam row that hypothesis's prefix occupied at that step. Empty without
    /// `keep_attention` or for attention "none".
    pub attention: Vec<Vec<f32>>,
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
        self.write_inputs(gpu, plan, &seqs, &lengths, k)?;
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
                // Histories of step s: tokens and parents (beam) or tokens and log-probs
                // (greedy), and the attention weights. Beam: the weights of step s are those of
                // the rows before the selection of step s (row q of step s is row q of step
                // s - 1's tokens and parents).
                let off = s as u64 * row_bytes;
                let (tok, aux) = match &plan.beam {
                    Some(bs) => (&step.y, &bs.parent),
                    None => (&step.ids, &step.logp),
                };
                rec.copy(tok.buffer(), 0, plan.tok_hist.buffer(), off, row_bytes);
                rec.copy(aux.buffer(), 0, plan.aux_hist.buffer(), off, row_bytes);
                if let (Some(ah), Some(w)) = (&plan.attn_hist, &step.weights) {
                    let wb = w.byte_len();
                    rec.copy(w.buffer(), 0, ah.buffer(), s as u64 * wb, wb);
                }
            }
            for (buf, off, len) in &plan.results {
                rec.copy(buf, 0, &plan.staging, *off, *len);
            }
            let idx = rec.submit()?;
            steps_run += n;
            let len = plan.staging.size();
            bytes = gpu.read_mapped_after(&plan.staging, len, Some(&idx), "decode readback")?;
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
                    d.ended = true;
                    break;
                }
                d.tokens.push(t);
            }
            d.score = d.logprobs.iter().sum();
            out.push(d);
        }
        Ok(out)
    }

    /// Whether a decode with `opts` over inputs padded to `t` runs the fused decoder kernel.
    fn use_fused(&self, gpu: &Gpu, opts: &DecodeOptions, t: usize) -> Result<bool> {
        if opts.kernel == DecodeKernel::PerOp {
            return Ok(false);
        }
        // The blob exists exactly when the fused kernel runs the architecture.
        let why_not = match &self.fused_blob {
            Some(blob) => blob.dims().check(gpu, t).err().map(|e| e.to_string()),
            None => Some(format!(
                "the fused decoder does not run {} attention",
                self.cfg.decoder.attention
            )),
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
}

/// `n` u32 words at byte offset `at` of `bytes`.
fn u32s(bytes: &[u8], at: u64, n: usize) -> Vec<u32> {
    let at = at as usize;
    bytemuck::pod_collect_to_vec(&bytes[at..at + 4 * n])
}
