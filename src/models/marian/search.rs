//! Hugging Face `generate` decoding (transformers 5.25) on the GPU, recorded on the loop runtime:
//! the options ([`GenerateOptions`], resolved as `generate` resolves them), the logits processors
//! (bad words, min length, forced EOS), greedy (argmax, finished rows padded) and beam search with
//! HF's rules (top 2K of K*V, `-1e9` penalties, length penalty, early_stopping True / False /
//! "never", num_return_sequences), all on the GPU; the CPU reads one small state buffer per chunk.
//! [`crate::reference::generate`] is the CPU oracle.
//!
//! A model records its decoder step, then [`Search::record_step`] on the step's logits:
//!
//! ```ignore
//! let mut b = LoopBuilder::new(gpu, opts.max_steps());
//! let step = b.step_index()?;                        // [1] u32: s while step s runs
//! let search = Search::declare(&mut b, &opts, batch, vocab)?;
//! // step s: embed search.tokens() (gather the KV cache by search.parents() first) at position s,
//! // decode, project to logits [R, V], then:
//! search.record_step(&mut b, 0, &logits, &step)?;
//! let plan = b.build()?;
//! let res = plan.run(&writes, Schedule { max_steps: opts.max_steps(), first_chunk: 4, chunk: 8 })?;
//! let hyps = search.finish(&res, res.steps_run)?;   // per item, num_return_sequences
//! ```
//!
//! Tensors it declares: `tokens` `[R]` (the next step's input; the decoder start before step 0),
//! `parents` `[R]` (beam), the state `[4 + 7R]` u32 and history `[S, 2, R]` u32 (outputs
//! `search.state` and `search.hist`), the candidates `[R, 2K, 2]`, the rules (ban flags and
//! multi-token bad words) and the length divisors. Its init work (copies from constants) resets
//! them at the start of every run, so a run needs no host writes.

mod options;

pub use options::{padded_sequences, EarlyStopping, GenerateOptions, GenerationParams, Hypothesis};

use crate::error::{Error, Result};
use crate::graph::{LoopBuilder, LoopResults, Stop};
use crate::kernels::search::{
    record_search_beam, record_search_row, RowRules, SearchBuffers, MAX_BEAMS, STATE_HEAD,
};
use crate::tensor::{DType, Tensor};

const OP: &str = "marian search";
const STATE: &str = "search.state";
const HIST: &str = "search.hist";
/// "No hypothesis" in a finished slot's step word.
const EMPTY: u32 = u32::MAX;

/// The on-GPU search of one loop plan (see the module docs).
#[derive(Debug)]
pub struct Search {
    opts: GenerateOptions,
    batch: usize,
    vocab: usize,
    k: usize,
    r: usize,
    steps: usize,
    tokens: Tensor,
    parents: Option<Tensor>,
    rules: Tensor,
    hist: Tensor,
    state: Tensor,
    cand: Tensor,
    div: Tensor,
    row_rules: RowRules,
}

impl Search {
    /// Declares the search's tensors on `b` for `batch` items (R = batch * num_beams rows) of a
    /// model with `vocab` tokens, and its reset (init work). `b` must allow
    /// [`GenerateOptions::max_steps`] steps.
    pub fn declare(
        b: &mut LoopBuilder,
        opts: &GenerateOptions,
        batch: usize,
        vocab: usize,
    ) -> Result<Search> {
        opts.validate(Some(vocab))?;
        let k = opts.num_beams;
        if batch == 0 || k > MAX_BEAMS {
            return Err(Error::invalid(
                OP,
                format!(
                    "batch {batch} with num_beams {k}: the GPU search takes batch >= 1 and \
                     num_beams <= {MAX_BEAMS}"
                ),
            ));
        }
        let r = batch * k;
        let steps = b.max_steps();
        if steps < opts.max_steps() {
            return Err(Error::invalid(
                OP,
                format!(
                    "the loop plan allows {steps} steps but max_length {} needs {}",
                    opts.max_length(),
                    opts.max_steps()
                ),
            ));
        }
        let max_length = u32::try_from(opts.max_length())
            .map_err(|_| Error::invalid(OP, "max_length does not fit u32"))?;
        // Rules: single-token ban flags [V], then (offset, len) pairs, then the words' tokens.
        let words = opts.bad_words();
        let multi: Vec<&Vec<u32>> = words.iter().filter(|w| w.len() > 1).collect();
        let mut rules = vec![0u32; vocab];
        for w in words.iter().filter(|w| w.len() == 1) {
            rules[w[0] as usize] = 1;
        }
        let mut at = vocab + 2 * multi.len();
        let mut body = Vec::new();
        for w in &multi {
            rules.push(at as u32);
            rules.push(w.len() as u32);
            at += w.len();
            body.extend_from_slice(w);
        }
        rules.extend(body);
        let rules = b.constant_u32(&rules, &[rules.len()])?;
        let row_rules = RowRules {
            eos: opts.eos_token_id,
            pad: opts.pad_token_id,
            start: opts.decoder_start_token_id,
            max_length,
            min_length: u32::try_from(opts.min_length()).unwrap_or(u32::MAX),
            forced: opts.forced_eos_token_id,
            n_multi: multi.len() as u32,
        };
        let div: Vec<f32> = (0..=opts.max_length())
            .map(|n| opts.length_divisor(n))
            .collect();
        let div = b.constant_f32(&div, &[div.len()])?;
        let tokens = b.buffer(&[r], DType::U32)?;
        let hist = b.buffer(&[steps.max(1), 2, r], DType::U32)?;
        let state = b.buffer(&[STATE_HEAD + 7 * r], DType::U32)?;
        let cand = if k > 1 {
            b.buffer(&[r, 2 * k, 2], DType::U32)?
        } else {
            b.buffer(&[1], DType::U32)?
        };
        // The reset, copied in at the start of every run.
        let mut init = vec![0u32; STATE_HEAD + 7 * r];
        for i in 0..r {
            if k > 1 {
                // Beam 0 of each item starts at 0, the others at -1e9; items may improve.
                init[STATE_HEAD + i] = (i < batch) as u32;
                let score: f32 = if i % k == 0 { 0.0 } else { -1.0e9 };
                init[STATE_HEAD + r + i] = score.to_bits();
                let slot = STATE_HEAD + 2 * r + 5 * i;
                init[slot] = EMPTY;
                init[slot + 4] = (-1.0e9f32).to_bits();
            }
        }
        let init_state = b.constant_u32(&init, &[init.len()])?;
        let init_tokens = b.constant_u32(&vec![opts.decoder_start_token_id; r], &[r])?;
        let rec = b.init();
        rec.copy(init_state.buffer(), 0, state.buffer(), 0, state.byte_len());
        rec.copy(
            init_tokens.buffer(),
            0,
            tokens.buffer(),
            0,
            tokens.byte_len(),
        );
        let parents = if k > 1 {
            let p = b.buffer(&[r], DType::U32)?;
            let identity: Vec<u32> = (0..r as u32).collect();
            let id = b.constant_u32(&identity, &[r])?;
            b.init().copy(id.buffer(), 0, p.buffer(), 0, p.byte_len());
            Some(p)
        } else {
            None
        };
        b.output(STATE, &state);
        b.output(HIST, &hist);
        b.stop_when(if k > 1 {
            Stop::StatusSet {
                status: STATE.into(),
                stride: 1,
                word: 0,
                rows: 1,
            }
        } else {
            Stop::StatusSet {
                status: STATE.into(),
                stride: 1,
                word: STATE_HEAD,
                rows: r,
            }
        });
        Ok(Search {
            opts: opts.clone(),
            batch,
            vocab,
            k,
            r,
            steps,
            tokens,
            parents,
            rules,
            hist,
            state,
            cand,
            div,
            row_rules,
        })
    }

    /// `[R]` u32: the tokens step s consumes (the decoder start at step 0, then the previous
    /// step's choices). The model's embedding reads it.
    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }

    /// `[R]` u32: after a beam step, the row each new row continues (the model gathers its
    /// per-row state, e.g. KV cache rows, by it at the start of the next step); identity before
    /// the first step; None for greedy (rows never move).
    pub fn parents(&self) -> Option<&Tensor> {
        self.parents.as_ref()
    }

    /// Rows R = batch * num_beams.
    pub fn rows(&self) -> usize {
        self.r
    }

    /// The options the search was declared with.
    pub fn options(&self) -> &GenerateOptions {
        &self.opts
    }

    fn buffers<'a>(&'a self, step: &'a Tensor) -> SearchBuffers<'a> {
        SearchBuffers {
            step,
            rules: &self.rules,
            hist: &self.hist,
            state: &self.state,
            cand: &self.cand,
            tokens: &self.tokens,
        }
    }

    /// Records, into step recording `phase`, the selection from this step's `logits [R, V]` f32
    /// (`step`: the loop's `[1]` u32 step index): processors, then greedy's argmax or HF's beam
    /// step; the new tokens land in [`Search::tokens`] (and [`Search::parents`]).
    pub fn record_step(
        &self,
        b: &mut LoopBuilder,
        phase: usize,
        logits: &Tensor,
        step: &Tensor,
    ) -> Result<()> {
        if logits.shape() != [self.r, self.vocab] {
            return Err(Error::shape(
                OP,
                format!(
                    "logits {:?} must be [R, V] = [{}, {}] ({} items x {} beams)",
                    logits.shape(),
                    self.r,
                    self.vocab,
                    self.batch,
                    self.k
                ),
            ));
        }
        let bufs = self.buffers(step);
        let rec = b.step(phase);
        record_search_row(rec, logits, &bufs, self.k, &self.row_rules)?;
        if let Some(parents) = &self.parents {
            let mode = match self.opts.early_stopping {
                EarlyStopping::Heuristic => 0,
                EarlyStopping::Done => 1,
                EarlyStopping::Never => 2,
            };
            record_search_beam(
                rec,
                &bufs,
                parents,
                &self.div,
                self.vocab,
                self.k,
                mode,
                self.opts.length_penalty > 0.0,
                &self.row_rules,
            )?;
        }
        Ok(())
    }

    /// The steps `generate` ran (its output length minus one), from a run's results.
    pub fn steps_taken(&self, results: &LoopResults, steps_run: usize) -> Result<usize> {
        let state = results.u32s(STATE)?;
        let run = steps_run.min(self.steps);
        if self.k > 1 {
            Ok((state[1] as usize).min(run))
        } else {
            let status = &state[STATE_HEAD..STATE_HEAD + self.r];
            if status.iter().all(|&s| s != 0) {
                Ok(status
                    .iter()
                    .map(|&s| s as usize)
                    .max()
                    .unwrap_or(0)
                    .min(run))
            } else {
                Ok(run)
            }
        }
    }

    /// Reads the results: per item, `num_return_sequences` hypotheses in HF's order.
    pub fn finish(&self, results: &LoopResults, steps_run: usize) -> Result<Vec<Vec<Hypothesis>>> {
        let state = results.u32s(STATE)?;
        let hist = results.u32s(HIST)?;
        let steps = self.steps_taken(results, steps_run)?;
        let r = self.r;
        let tok = |s: usize, row: usize| hist[(s * 2) * r + row];
        let par = |s: usize, row: usize| hist[(s * 2 + 1) * r + row] as usize;
        let start = self.opts.decoder_start_token_id;
        if self.k == 1 {
            return Ok((0..r)
                .map(|row| {
                    let end = match state[STATE_HEAD + row] {
                        0 => steps,
                        e => (e as usize).min(steps),
                    };
                    let mut ids = vec![start];
                    ids.extend((0..end).map(|s| tok(s, row)));
                    vec![Hypothesis {
                        ids,
                        score: 0.0,
                        rows: (0..end).map(|s| s * r + row).collect(),
                    }]
                })
                .collect());
        }
        let k = self.k;
        let mut out = Vec::with_capacity(self.batch);
        for i in 0..self.batch {
            let mut item = Vec::with_capacity(self.opts.num_return_sequences);
            for q in 0..self.opts.num_return_sequences {
                let at = STATE_HEAD + 2 * r + 5 * (i * k + q);
                let (st, src, last) = (state[at], state[at + 1] as usize, state[at + 2]);
                let score = f32::from_bits(state[at + 4]);
                if st == EMPTY || st as usize >= steps || src >= r {
                    item.push(Hypothesis {
                        ids: vec![start],
                        score,
                        rows: Vec::new(),
                    });
                    continue;
                }
                // Walk back: at step t the hypothesis was in row x_t; x_st = src, and row x_{t+1}
                // after step t's selection continued row x_t = parents[t][x_{t+1}].
                let st = st as usize;
                let mut ids = vec![last];
                let mut rows = vec![st * r + src];
                let mut x = src;
                for t in (0..st).rev() {
                    ids.push(tok(t, x));
                    x = par(t, x);
                    rows.push(t * r + x);
                }
                ids.push(start);
                ids.reverse();
                rows.reverse();
                item.push(Hypothesis { ids, score, rows });
            }
            out.push(item);
        }
        Ok(out)
    }
}
