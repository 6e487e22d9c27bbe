//! Greedy and beam-search decoding with the loop on the GPU: a plan per batch shape declared on
//! the loop runtime ([`crate::graph::runtime`], see [`super::plan`]), run in chunks by it.
//!
//! Greedy decoding with the fused kernel ([`super::fused`]) records one dispatch per chunk of
//! steps that writes the token and log-prob histories itself. Otherwise one decoder step is
//! recorded once over fixed buffers (the fused beam step + top-k + selection, or the per-op step of
//! [`super::step`] with the state update: greedy copies the argmax to the next input, beam gathers
//! the states by parent row), and a chunk of `steps_per_submit` steps is that recording repeated,
//! plus copies of each step's tokens (and attention weights) into history buffers at the step's
//! offset (the runtime's histories), submitted at once. The runtime reads the outputs back once
//! per chunk and stops when every sequence has ended (the end token in the greedy token history,
//! or the beam's per-item "done" control word); the beam's hypotheses are rebuilt on the CPU
//! ([`super::beam`]).

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Schedule;
use crate::kernels::topk;

use super::beam::finish_beam;
use super::plan::PlanKey;
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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn decode(
        &self,
        gpu: &Gpu,
        inputs: &[Vec<u32>],
        opts: &DecodeOptions,
    ) -> Result<Vec<Decoded>> {
        pollster::block_on(self.decode_async(gpu, inputs, opts))
    }

    /// [`Seq2Seq::decode`] without blocking on the readbacks (the one implementation; the
    /// browser's). In the browser a second decode of the same batch shape while one is awaited is
    /// refused; await the first.
    // The plan's lock spans the run on purpose (runs of one plan take turns on its buffers);
    // natively the future is driven by `block_on` on the calling thread.
    #[allow(clippy::await_holding_lock)]
    pub async fn decode_async(
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
            fused_encoder: opts.kernel != DecodeKernel::PerOp && self.fused_encoder_fits(gpu),
        };
        let plan = self
            .plans
            .get_or_try_insert(key, || self.plan(gpu, key).map(Mutex::new))?;
        // Runs of one plan take turns on its buffers.
        #[cfg(not(target_arch = "wasm32"))]
        let plan = plan
            .lock()
            .map_err(|_| Error::invalid(OP, "a decode panicked"))?;
        #[cfg(target_arch = "wasm32")]
        let plan = plan.try_lock().map_err(|_| {
            Error::invalid(
                OP,
                "a decode of this batch shape is in progress: await it first",
            )
        })?;
        let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let writes = self.write_inputs(&plan, &seqs, &lengths, k)?;
        let r = b * k;
        let t_w = plan.t_w;
        let keep_attn = plan.keep_attn;
        let longest = inputs.iter().map(Vec::len).max().unwrap_or(0);
        let first = if opts.first_steps_per_input > 0.0 {
            ((opts.first_steps_per_input * longest as f32) as usize).max(opts.steps_per_submit)
        } else {
            opts.steps_per_submit
        };
        let res = plan
            .run
            .run_async(
                &writes,
                Schedule {
                    max_steps: max_len,
                    first_chunk: first,
                    chunk: opts.steps_per_submit,
                },
            )
            .await?;
        let steps_run = res.steps_run;
        let toks = res.u32s("tokens")?;
        let attn: Vec<f32> = if keep_attn {
            res.f32s("attn")?
        } else {
            Vec::new()
        };
        if k > 1 {
            let parents = res.u32s("aux")?;
            let scores = res.f32s("beam.scores")?;
            let ctl = res.u32s("beam.ctl")?;
            let fin = res.u32s("beam.fin")?;
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
        let lps = res.f32s("aux")?;
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
        // The dims exist exactly when the fused kernel runs the architecture.
        let why_not = match &self.dec_dims {
            Some(dims) => dims.check(gpu, t).err().map(|e| e.to_string()),
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
