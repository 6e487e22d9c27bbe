//! Decoding options of Hugging Face `generate` (transformers 5.25) for an encoder-decoder, resolved
//! as `generate` resolves them: the caller's values over the model's generation_config.json over
//! HF's global defaults, `max_new_tokens` over `max_length`, `min_new_tokens` over `min_length`,
//! and the same refusals (`num_return_sequences > num_beams`, `max_length` < 2, ...).
//!
//! ```
//! use heedful::models::marian::search::{EarlyStopping, GenerateOptions, GenerationParams};
//! let model = GenerationParams {
//!     num_beams: Some(4),
//!     max_length: Some(512),
//!     bad_words_ids: Some(vec![vec![65000]]),
//!     eos_token_id: Some(0),
//!     pad_token_id: Some(65000),
//!     decoder_start_token_id: Some(65000),
//!     ..Default::default()
//! };
//! let caller = GenerationParams { max_new_tokens: Some(20), ..Default::default() };
//! let o = GenerateOptions::resolve(&model, &caller, Some(512)).unwrap();
//! assert_eq!((o.num_beams, o.max_length(), o.early_stopping), (4, 21, EarlyStopping::Heuristic));
//! ```

use crate::error::{Error, Result};

const OP: &str = "generate options";

/// `early_stopping` of `generate`: when beam search stops for an item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EarlyStopping {
    /// `False` (HF's default): stop when the best running beam, divided by the current length's
    /// penalty, cannot beat the worst kept finished hypothesis.
    #[default]
    Heuristic,
    /// `True`: stop as soon as `num_beams` hypotheses have finished.
    Done,
    /// `"never"`: the heuristic with the best reachable length (`max_length - 1` when
    /// `length_penalty > 0`): the canonical beam search.
    Never,
}

impl EarlyStopping {
    /// Parses the JSON value of `early_stopping` (`true`, `false` or `"never"`).
    pub fn from_json(v: &serde_json::Value) -> Result<EarlyStopping> {
        match v {
            serde_json::Value::Bool(true) => Ok(EarlyStopping::Done),
            serde_json::Value::Bool(false) | serde_json::Value::Null => {
                Ok(EarlyStopping::Heuristic)
            }
            serde_json::Value::String(s) if s == "never" => Ok(EarlyStopping::Never),
            other => Err(Error::invalid(
                OP,
                format!("`early_stopping` must be a boolean or 'never', but is {other}"),
            )),
        }
    }
}

/// What `generate` reads for an encoder-decoder, each `None` when unset (generation_config.json,
/// config.json's special ids, or a caller's overrides). [`GenerateOptions::resolve`] merges two of
/// these as `generate` does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationParams {
    /// Beam width (1: greedy).
    pub num_beams: Option<usize>,
    /// The decoder sequence's length limit, decoder start token included.
    pub max_length: Option<usize>,
    /// New tokens at most (takes precedence over `max_length`: `max_length = 1 + max_new_tokens`).
    pub max_new_tokens: Option<usize>,
    /// The end token is suppressed while the sequence is shorter than this.
    pub min_length: Option<usize>,
    /// The end token is suppressed for the first `min_new_tokens` new tokens (over `min_length`).
    pub min_new_tokens: Option<usize>,
    /// Exponent of the generated length that finished beam scores are divided by.
    pub length_penalty: Option<f64>,
    /// Beam stop rule.
    pub early_stopping: Option<EarlyStopping>,
    /// Hypotheses returned per item (at most `num_beams`; 1 for greedy).
    pub num_return_sequences: Option<usize>,
    /// Token sequences never generated (single tokens banned always, longer ones when the
    /// sequence ends with all but their last token).
    pub bad_words_ids: Option<Vec<Vec<u32>>>,
    /// Forced as the token at position `max_length - 1`.
    pub forced_eos_token_id: Option<u32>,
    /// End-of-sequence token.
    pub eos_token_id: Option<u32>,
    /// Padding token (finished rows; defaults to the end token).
    pub pad_token_id: Option<u32>,
    /// The decoder's first input token (defaults to `bos_token_id`).
    pub decoder_start_token_id: Option<u32>,
    /// Beginning-of-sequence token (the decoder start's fallback only).
    pub bos_token_id: Option<u32>,
    /// Sampling is not implemented: `Some(true)` is refused.
    pub do_sample: Option<bool>,
}

/// The resolved options of one `generate` call (see [`GenerateOptions::resolve`]). Fields may be
/// changed afterwards (CLI flags); [`GenerateOptions::validate`] runs again before decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Beam width K (1: greedy).
    pub num_beams: usize,
    /// HF's `max_length` (decoder start included); see [`GenerateOptions::max_length`].
    pub max_length: usize,
    /// Over `max_length` when set.
    pub max_new_tokens: Option<usize>,
    /// HF's `min_length` (decoder start included).
    pub min_length: usize,
    /// Over `min_length` when set (`min_length = 1 + min_new_tokens`).
    pub min_new_tokens: Option<usize>,
    /// Finished beams score `sum_logprobs / generated_len ** length_penalty` (f64 as in Python).
    pub length_penalty: f64,
    /// Beam stop rule.
    pub early_stopping: EarlyStopping,
    /// Hypotheses returned per item.
    pub num_return_sequences: usize,
    /// Banned token sequences, as given (HF drops `[eos]` and ignores empty ones).
    pub bad_words_ids: Vec<Vec<u32>>,
    /// Forced at position `max_length - 1`.
    pub forced_eos_token_id: Option<u32>,
    /// End token.
    pub eos_token_id: u32,
    /// Padding token.
    pub pad_token_id: u32,
    /// The decoder's first input.
    pub decoder_start_token_id: u32,
}

impl GenerateOptions {
    /// Merges `caller` over `model` over HF's defaults (max_length 20 new tokens, capped at
    /// `max_position_embeddings`, when neither sets `max_length` nor `max_new_tokens`), then
    /// validates. `model` is generation_config.json with config.json's special ids filled in where
    /// it lacks them.
    pub fn resolve(
        model: &GenerationParams,
        caller: &GenerationParams,
        max_position_embeddings: Option<usize>,
    ) -> Result<GenerateOptions> {
        macro_rules! pick {
            ($f:ident) => {
                caller.$f.clone().or_else(|| model.$f.clone())
            };
        }
        if pick!(do_sample) == Some(true) {
            return Err(Error::Unsupported(
                "generate with do_sample=True (sampling); heedful decodes greedily or with beam \
                 search"
                    .into(),
            ));
        }
        let eos = pick!(eos_token_id).ok_or_else(|| {
            Error::invalid(
                OP,
                "no eos_token_id in the generation config or config.json",
            )
        })?;
        let start = pick!(decoder_start_token_id)
            .or_else(|| pick!(bos_token_id))
            .ok_or_else(|| {
                Error::invalid(
                    OP,
                    "`decoder_start_token_id` or `bos_token_id` has to be defined for \
                     encoder-decoder generation",
                )
            })?;
        let max_length = match pick!(max_length) {
            Some(m) => m,
            // HF: "by default let's always generate 20 new tokens" (when max_new_tokens is unset).
            None => {
                let m = 20 + 1;
                max_position_embeddings.map_or(m, |p| m.min(p))
            }
        };
        let o = GenerateOptions {
            num_beams: pick!(num_beams).unwrap_or(1),
            max_length,
            max_new_tokens: pick!(max_new_tokens),
            min_length: pick!(min_length).unwrap_or(0),
            min_new_tokens: pick!(min_new_tokens),
            length_penalty: pick!(length_penalty).unwrap_or(1.0),
            early_stopping: pick!(early_stopping).unwrap_or_default(),
            num_return_sequences: pick!(num_return_sequences).unwrap_or(1),
            bad_words_ids: pick!(bad_words_ids).unwrap_or_default(),
            forced_eos_token_id: pick!(forced_eos_token_id),
            eos_token_id: eos,
            pad_token_id: pick!(pad_token_id).unwrap_or(eos),
            decoder_start_token_id: start,
        };
        o.validate(None)?;
        Ok(o)
    }

    /// HF's effective `max_length`: `1 + max_new_tokens` when that is set, else `max_length`.
    pub fn max_length(&self) -> usize {
        self.max_new_tokens
            .map_or(self.max_length, |n| n.saturating_add(1))
    }

    /// HF's effective `min_length`: `1 + min_new_tokens` when that is set, else `min_length`.
    pub fn min_length(&self) -> usize {
        self.min_new_tokens
            .map_or(self.min_length, |n| n.saturating_add(1))
    }

    /// Decoder steps a search takes at most: `max_length() - 1` (each adds one token).
    pub fn max_steps(&self) -> usize {
        self.max_length().saturating_sub(1)
    }

    /// Whether this is beam search (`num_beams > 1`).
    pub fn is_beam(&self) -> bool {
        self.num_beams > 1
    }

    /// Rows decoded per item: `num_beams`.
    pub fn rows_per_item(&self) -> usize {
        self.num_beams
    }

    /// The bad words as `generate` uses them: `[eos]` dropped, empty sequences ignored.
    pub fn bad_words(&self) -> Vec<Vec<u32>> {
        self.bad_words_ids
            .iter()
            .filter(|w| !w.is_empty() && w.as_slice() != [self.eos_token_id])
            .cloned()
            .collect()
    }

    /// The value `generate` fills unused beam output positions with (`pad_token_id or eos`: a pad
    /// id of 0 is falsy in Python).
    pub fn beam_fill(&self) -> u32 {
        if self.pad_token_id != 0 {
            self.pad_token_id
        } else {
            self.eos_token_id
        }
    }

    /// `len ** length_penalty` as Python computes it (f64 power), rounded to f32 as torch does when
    /// it divides an f32 tensor by it.
    pub fn length_divisor(&self, len: usize) -> f32 {
        (len as f64).powf(self.length_penalty) as f32
    }

    /// Checks the options as `generate` would (its errors, plus what heedful cannot run), and
    /// every token id against `vocab` when given.
    pub fn validate(&self, vocab: Option<usize>) -> Result<()> {
        let bad = |d: String| Err(Error::invalid(OP, d));
        if self.num_beams == 0 {
            return bad("`num_beams` must be at least 1 (1: greedy), but is 0".into());
        }
        if self.max_new_tokens == Some(0) {
            return bad("`max_new_tokens` must be greater than 0, but is 0".into());
        }
        if self.max_length() < 2 {
            return bad(format!(
                "`max_length` is {} but the decoder input already holds 1 token (the decoder \
                 start): set `max_length` >= 2 or `max_new_tokens` >= 1",
                self.max_length()
            ));
        }
        if u32::try_from(self.max_length()).is_err() {
            return bad(format!("`max_length` {} is too large", self.max_length()));
        }
        if self.num_return_sequences == 0 {
            return bad("`num_return_sequences` must be at least 1".into());
        }
        if self.num_beams == 1 && self.num_return_sequences > 1 {
            return bad(format!(
                "Greedy methods (do_sample != True) without beam search do not support \
                 `num_return_sequences` different than 1 (got {})",
                self.num_return_sequences
            ));
        }
        if self.num_return_sequences > self.num_beams {
            return bad(format!(
                "`num_return_sequences` ({}) has to be smaller or equal to `num_beams` ({})",
                self.num_return_sequences, self.num_beams
            ));
        }
        if !self.length_penalty.is_finite() {
            return bad(format!(
                "`length_penalty` must be finite, but is {}",
                self.length_penalty
            ));
        }
        if let Some(v) = vocab {
            let mut ids = vec![
                ("eos_token_id", self.eos_token_id),
                ("pad_token_id", self.pad_token_id),
                ("decoder_start_token_id", self.decoder_start_token_id),
            ];
            if let Some(f) = self.forced_eos_token_id {
                ids.push(("forced_eos_token_id", f));
            }
            for w in self.bad_words() {
                ids.extend(w.iter().map(|&t| ("bad_words_ids", t)));
            }
            for (name, id) in ids {
                if id as usize >= v {
                    return bad(format!(
                        "The model vocabulary size is {v}, but `{name}` holds token {id}"
                    ));
                }
            }
            if self.num_beams > 1 && v < 2 {
                return bad(format!(
                    "beam search keeps the top 2 * num_beams of num_beams * vocab candidates: a \
                     vocabulary of {v} is too small"
                ));
            }
        }
        Ok(())
    }
}

/// One returned sequence of `generate`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// Decoder start first, the end token last when it was reached, no padding.
    pub ids: Vec<u32>,
    /// Beam search: HF's `sequences_scores` (`sum_logprobs / generated_len ** length_penalty`);
    /// greedy: 0 (HF has no sequence score there).
    pub score: f32,
    /// For each generated token `i` (0-based), the history row `i * R + row` of the decoder row
    /// whose logits chose it (for attention heatmaps); one entry per generated token.
    pub rows: Vec<usize>,
}

/// `generate`'s `sequences` for `hyps` (items in order, each item's hypotheses in order): every
/// row padded to the longest (greedy: with `pad`, beam: with [`GenerateOptions::beam_fill`]).
/// Greedy rows are as long as the steps run (`steps + 1`).
pub fn padded_sequences(
    opts: &GenerateOptions,
    hyps: &[Vec<Hypothesis>],
    steps: usize,
) -> Vec<Vec<u32>> {
    let rows = hyps.iter().flatten();
    let (len, fill) = if opts.is_beam() {
        let len = rows.clone().map(|h| h.ids.len()).max().unwrap_or(1);
        (len, opts.beam_fill())
    } else {
        (steps + 1, opts.pad_token_id)
    };
    rows.map(|h| {
        let mut r = h.ids.clone();
        r.resize(len.max(r.len()), fill);
        r
    })
    .collect()
}
