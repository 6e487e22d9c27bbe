//! `config.json` ([`MarianConfig`]) and `generation_config.json` ([`GenerationConfig`]) of a
//! Hugging Face Marian folder, parsed and checked before any tensor is read.
//!
//! Both parsers are pure functions of the text that never panic (fuzzed by
//! `fuzz/fuzz_targets/marian_config.rs`); every size is checked to lie in `1..=MAX_SIZE` and the
//! tensor sizes it implies are computed with checked arithmetic. Unknown fields are ignored, as
//! transformers does.
//!
//! ```
//! use heedful::models::marian::MarianConfig;
//! let c = MarianConfig::from_json_str(
//!     r#"{"d_model": 8, "encoder_layers": 1, "decoder_layers": 2, "encoder_attention_heads": 2,
//!         "decoder_attention_heads": 2, "encoder_ffn_dim": 16, "decoder_ffn_dim": 16,
//!         "vocab_size": 10, "max_position_embeddings": 32, "pad_token_id": 9,
//!         "decoder_start_token_id": 9, "eos_token_id": 0, "activation_function": "swish"}"#,
//! )?;
//! assert_eq!(c.decoder_vocab(), 10);
//! # Ok::<(), heedful::Error>(())
//! ```

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ops::Activation;

const OP: &str = "marian config";

/// Largest size a config may give (the GPU kernels index with 32-bit integers).
pub const MAX_SIZE: usize = i32::MAX as usize;

/// A token id, or a list of them (transformers accepts both for `eos_token_id` and
/// `forced_eos_token_id`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Ids {
    /// One id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl Ids {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Ids::One(i) => vec![*i],
            Ids::Many(v) => v.clone(),
        }
    }

    /// The first id (the one a single-id consumer uses).
    pub fn first(&self) -> Option<u32> {
        match self {
            Ids::One(i) => Some(*i),
            Ids::Many(v) => v.first().copied(),
        }
    }
}

/// The fields of a Hugging Face `MarianConfig` heedful reads (defaults as transformers').
#[derive(Clone, Debug, Deserialize)]
pub struct MarianConfig {
    /// Model width E.
    #[serde(default = "d_1024")]
    pub d_model: usize,
    /// Encoder layers.
    #[serde(default = "d_12")]
    pub encoder_layers: usize,
    /// Decoder layers.
    #[serde(default = "d_12")]
    pub decoder_layers: usize,
    /// Encoder attention heads.
    #[serde(default = "d_16")]
    pub encoder_attention_heads: usize,
    /// Decoder attention heads.
    #[serde(default = "d_16")]
    pub decoder_attention_heads: usize,
    /// Encoder FFN width.
    #[serde(default = "d_4096")]
    pub encoder_ffn_dim: usize,
    /// Decoder FFN width.
    #[serde(default = "d_4096")]
    pub decoder_ffn_dim: usize,
    /// FFN activation: swish / silu / gelu / gelu_new (and gelu_fast, gelu_pytorch_tanh) / relu.
    #[serde(default = "d_gelu")]
    pub activation_function: String,
    /// Multiply token embeddings by sqrt(d_model).
    #[serde(default)]
    pub scale_embedding: bool,
    /// Rows of the position tables (longest source and longest target).
    #[serde(default = "d_1024")]
    pub max_position_embeddings: usize,
    /// Source vocabulary V (and the target's when shared).
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Target vocabulary when the embeddings are not shared (`None` = `vocab_size`).
    #[serde(default)]
    pub decoder_vocab_size: Option<usize>,
    /// One embedding table for encoder, decoder (and the output layer when tied).
    #[serde(default = "d_true")]
    pub share_encoder_decoder_embeddings: bool,
    /// The output layer is the decoder's embedding table.
    #[serde(default = "d_true")]
    pub tie_word_embeddings: bool,
    /// Marian-NMT's flag for sinusoidal positions (informative: heedful uses the checkpoint's
    /// `embed_positions` tables when it holds them, else the sinusoidal table, as transformers).
    #[serde(default = "d_true")]
    pub static_position_embeddings: bool,
    /// Pre-LN layers: must be false (transformers' Marian runs post-LN layers only).
    #[serde(default)]
    pub normalize_before: bool,
    /// A LayerNorm on the embeddings: must be false (transformers' Marian has none).
    #[serde(default)]
    pub normalize_embedding: bool,
    /// A final LayerNorm after the last layer: must be false.
    #[serde(default)]
    pub add_final_layer_norm: bool,
    /// Padding id (also masks the source).
    #[serde(default = "d_pad")]
    pub pad_token_id: Option<u32>,
    /// First decoder token.
    #[serde(default = "d_pad")]
    pub decoder_start_token_id: Option<u32>,
    /// End token(s).
    #[serde(default = "d_eos")]
    pub eos_token_id: Option<Ids>,
    /// Begin token (unused by Marian).
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Forced at the last step (when generation_config.json does not say).
    #[serde(default = "d_eos")]
    pub forced_eos_token_id: Option<Ids>,
}

fn d_1024() -> usize {
    1024
}
fn d_12() -> usize {
    12
}
fn d_16() -> usize {
    16
}
fn d_4096() -> usize {
    4096
}
fn d_vocab() -> usize {
    58101
}
fn d_gelu() -> String {
    "gelu".into()
}
fn d_true() -> bool {
    true
}
fn d_pad() -> Option<u32> {
    Some(58100)
}
fn d_eos() -> Option<Ids> {
    Some(Ids::One(0))
}

/// Parses `s` as a JSON object into `T` (serde would also take an array for a struct).
fn parse_object<T: serde::de::DeserializeOwned>(s: &str, file: &str) -> Result<T> {
    let v: serde_json::Value =
        serde_json::from_str(s).map_err(|e| Error::invalid(OP, format!("{file}: {e}")))?;
    if !v.is_object() {
        return Err(Error::invalid(OP, format!("{file}: not a JSON object")));
    }
    serde_json::from_value(v).map_err(|e| Error::invalid(OP, format!("{file}: {e}")))
}

/// LayerNorm epsilon of every Marian LayerNorm (`nn.LayerNorm`'s default).
pub const LAYER_NORM_EPS: f32 = 1e-5;

impl MarianConfig {
    /// Parses and checks a `config.json` text (see [`MarianConfig::check`]).
    pub fn from_json_str(s: &str) -> Result<MarianConfig> {
        let c: MarianConfig = parse_object(s, "config.json")?;
        c.check()?;
        Ok(c)
    }

    /// The target vocabulary (`decoder_vocab_size`, or `vocab_size`).
    pub fn decoder_vocab(&self) -> usize {
        if self.share_encoder_decoder_embeddings {
            self.vocab_size
        } else {
            self.decoder_vocab_size.unwrap_or(self.vocab_size)
        }
    }

    /// The padding id (required: it masks the source).
    pub fn pad_id(&self) -> Result<u32> {
        self.pad_token_id
            .ok_or_else(|| Error::invalid(OP, "config.json: pad_token_id is null"))
    }

    /// The end token (the first when a list).
    pub fn eos_id(&self) -> Result<u32> {
        self.eos_token_id
            .as_ref()
            .and_then(Ids::first)
            .ok_or_else(|| Error::invalid(OP, "config.json: eos_token_id is null or empty"))
    }

    /// The first decoder token (`decoder_start_token_id`, else the pad id as transformers).
    pub fn decoder_start_id(&self) -> Result<u32> {
        match self.decoder_start_token_id {
            Some(i) => Ok(i),
            None => self.pad_id(),
        }
    }

    /// `sqrt(d_model)` when `scale_embedding`, else 1.
    pub fn embed_scale(&self) -> f32 {
        if self.scale_embedding {
            (self.d_model as f64).sqrt() as f32
        } else {
            1.0
        }
    }

    /// The FFN activation named by `activation_function`.
    pub fn activation(&self) -> Result<Activation> {
        Ok(match self.activation_function.as_str() {
            "swish" | "silu" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(Error::Unsupported(format!(
                    "Marian activation_function {other:?} (config.json; supported: swish, silu, \
                     gelu, gelu_new, gelu_fast, gelu_pytorch_tanh, relu)"
                )))
            }
        })
    }

    /// Every check: sizes in `1..=MAX_SIZE`, heads dividing `d_model`, tensor sizes that do not
    /// overflow, a known activation, post-LN, and special ids inside the vocabularies.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str, v: usize| {
            Error::invalid(
                OP,
                format!("config.json: {what} = {v} must be between 1 and {MAX_SIZE}"),
            )
        };
        let dv = self.decoder_vocab();
        for (what, v) in [
            ("d_model", self.d_model),
            ("encoder_layers", self.encoder_layers),
            ("decoder_layers", self.decoder_layers),
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
            ("encoder_ffn_dim", self.encoder_ffn_dim),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
            ("max_position_embeddings", self.max_position_embeddings),
            ("vocab_size", self.vocab_size),
            ("decoder_vocab_size", dv),
        ] {
            if v == 0 || v > MAX_SIZE {
                return Err(bad(what, v));
            }
        }
        let e = self.d_model;
        for (what, heads) in [
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
        ] {
            if !e.is_multiple_of(heads) {
                return Err(Error::invalid(
                    OP,
                    format!("config.json: d_model {e} is not a multiple of {what} {heads}"),
                ));
            }
            if e / heads > crate::kernels::sdpa::MAX_HEAD_DIM {
                return Err(Error::Unsupported(format!(
                    "config.json: head width d_model / {what} = {} is over the attention \
                     kernels' limit {}",
                    e / heads,
                    crate::kernels::sdpa::MAX_HEAD_DIM
                )));
            }
        }
        // Every tensor (in bytes, f32) must be addressable: rows x E x 4 without overflow.
        for (what, rows) in [
            ("vocab_size", self.vocab_size),
            ("decoder_vocab_size", dv),
            ("max_position_embeddings", self.max_position_embeddings),
            ("encoder_ffn_dim", self.encoder_ffn_dim),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
            ("d_model", e),
        ] {
            // u64: on 32-bit targets (wasm32) `u32::MAX * 4` does not fit a usize.
            if (rows as u64)
                .checked_mul(e as u64)
                .is_none_or(|n| n > u64::from(u32::MAX))
            {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "config.json: {what} = {rows} x d_model {e} is too large a tensor \
                         (32-bit element indexing)"
                    ),
                ));
            }
        }
        if self.normalize_before {
            return Err(Error::Unsupported(
                "config.json: normalize_before = true (pre-LN layers): transformers' Marian runs \
                 post-LN layers only, so this checkpoint would give wrong outputs there and here"
                    .into(),
            ));
        }
        if self.normalize_embedding || self.add_final_layer_norm {
            return Err(Error::Unsupported(
                "config.json: normalize_embedding / add_final_layer_norm = true: transformers' \
                 Marian has no embedding or final LayerNorm"
                    .into(),
            ));
        }
        self.activation()?;
        let pad = self.pad_id()?;
        let eos = self.eos_id()?;
        let start = self.decoder_start_id()?;
        for (what, id, v) in [
            ("pad_token_id", pad, self.vocab_size.min(dv)),
            ("eos_token_id", eos, dv),
            ("decoder_start_token_id", start, dv),
        ] {
            if id as usize >= v {
                return Err(Error::invalid(
                    OP,
                    format!("config.json: {what} = {id} is outside the vocabulary ({v} ids)"),
                ));
            }
        }
        for id in self
            .eos_token_id
            .iter()
            .chain(self.forced_eos_token_id.iter())
            .flat_map(Ids::to_vec)
        {
            if id as usize >= dv {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "config.json: eos / forced_eos id {id} is outside the target vocabulary \
                         ({dv} ids)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `early_stopping` of generate: `false`, `true` or `"never"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EarlyStoppingSetting {
    /// `false`: stop a beam item when its best finished score cannot be beaten (heuristic).
    #[default]
    False,
    /// `true`: stop once `num_beams` hypotheses are finished.
    True,
    /// `"never"`: the canonical beam search rule.
    Never,
}

impl<'de> Deserialize<'de> for EarlyStoppingSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::B(false) => Ok(EarlyStoppingSetting::False),
            Raw::B(true) => Ok(EarlyStoppingSetting::True),
            Raw::S(s) if s == "never" => Ok(EarlyStoppingSetting::Never),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "early_stopping {s:?}: expected true, false or \"never\""
            ))),
        }
    }
}

/// The fields of `generation_config.json` that `generate` reads for a Marian model (defaults as
/// transformers' `GenerationConfig`); unknown fields are ignored. `None` = not given (the model
/// config's value, or transformers' default, applies).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GenerationConfig {
    /// Beam width (1 = greedy).
    #[serde(default)]
    pub num_beams: Option<usize>,
    /// Longest output, the decoder start token included.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// New tokens at most (overrides `max_length` when given).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// Shortest output (EOS suppressed before it).
    #[serde(default)]
    pub min_length: Option<usize>,
    /// Fewest new tokens (EOS suppressed before it).
    #[serde(default)]
    pub min_new_tokens: Option<usize>,
    /// Token sequences never generated (Marian: `[[pad]]`).
    #[serde(default)]
    pub bad_words_ids: Option<Vec<Vec<u32>>>,
    /// Forced at the last step.
    #[serde(default)]
    pub forced_eos_token_id: Option<Ids>,
    /// Forced as the first generated token.
    #[serde(default)]
    pub forced_bos_token_id: Option<u32>,
    /// Beam scores are divided by `length ^ length_penalty`.
    #[serde(default)]
    pub length_penalty: Option<f64>,
    /// Beam stopping rule.
    #[serde(default)]
    pub early_stopping: Option<EarlyStoppingSetting>,
    /// Hypotheses returned per input.
    #[serde(default)]
    pub num_return_sequences: Option<usize>,
    /// First decoder token.
    #[serde(default)]
    pub decoder_start_token_id: Option<u32>,
    /// Padding id (finished rows).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// End token(s).
    #[serde(default)]
    pub eos_token_id: Option<Ids>,
    /// Begin token.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Sampling: heedful decodes greedily or with beams only, so `true` is refused by the search.
    #[serde(default)]
    pub do_sample: Option<bool>,
    /// Must be 1 when given (not implemented).
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    /// Must be 0 when given (not implemented).
    #[serde(default)]
    pub no_repeat_ngram_size: Option<usize>,
    /// Must be 1 when given (not implemented).
    #[serde(default)]
    pub num_beam_groups: Option<usize>,
    /// Ids suppressed at every step.
    #[serde(default)]
    pub suppress_tokens: Option<Vec<u32>>,
    /// Ids suppressed at the first generated step.
    #[serde(default)]
    pub begin_suppress_tokens: Option<Vec<u32>>,
    /// Log-softmax again after the processors.
    #[serde(default)]
    pub renormalize_logits: Option<bool>,
}

/// Most beams, hypotheses or steps a generation config may ask for (a bound that keeps every
/// derived buffer size far from overflow).
pub const MAX_GENERATE: usize = 1 << 20;

impl GenerationConfig {
    /// Parses and checks a `generation_config.json` text: counts in range (`num_beams`,
    /// `num_return_sequences` >= 1, `num_return_sequences <= num_beams`, lengths at most
    /// [`MAX_GENERATE`]), a finite `length_penalty`, no empty bad-words sequence.
    pub fn from_json_str(s: &str) -> Result<GenerationConfig> {
        let g: GenerationConfig = parse_object(s, "generation_config.json")?;
        g.check()?;
        Ok(g)
    }

    /// The checks of [`GenerationConfig::from_json_str`].
    pub fn check(&self) -> Result<()> {
        let err = |m: String| Error::invalid(OP, format!("generation_config.json: {m}"));
        for (what, v, min) in [
            ("num_beams", self.num_beams, 1),
            ("num_return_sequences", self.num_return_sequences, 1),
            ("max_length", self.max_length, 1),
            ("max_new_tokens", self.max_new_tokens, 1),
            ("min_length", self.min_length, 0),
            ("min_new_tokens", self.min_new_tokens, 0),
            ("num_beam_groups", self.num_beam_groups, 1),
            ("no_repeat_ngram_size", self.no_repeat_ngram_size, 0),
        ] {
            if let Some(v) = v {
                if v < min || v > MAX_GENERATE {
                    return Err(err(format!(
                        "{what} = {v} must be between {min} and {MAX_GENERATE}"
                    )));
                }
            }
        }
        if self.num_return_sequences.unwrap_or(1) > self.num_beams.unwrap_or(1) {
            return Err(err(format!(
                "num_return_sequences = {} is more than num_beams = {}",
                self.num_return_sequences.unwrap_or(1),
                self.num_beams.unwrap_or(1)
            )));
        }
        for (what, v) in [
            ("length_penalty", self.length_penalty),
            ("repetition_penalty", self.repetition_penalty),
        ] {
            if v.is_some_and(|x| !x.is_finite()) {
                return Err(err(format!("{what} must be finite")));
            }
        }
        if let Some(b) = &self.bad_words_ids {
            if b.iter().any(Vec::is_empty) {
                return Err(err("bad_words_ids holds an empty sequence".into()));
            }
        }
        Ok(())
    }

    /// Checks every id the config names against the target vocabulary `v`.
    pub fn check_ids(&self, v: usize) -> Result<()> {
        let mut ids: Vec<u32> = Vec::new();
        ids.extend(self.bad_words_ids.iter().flatten().flatten());
        ids.extend(self.forced_eos_token_id.iter().flat_map(Ids::to_vec));
        ids.extend(self.eos_token_id.iter().flat_map(Ids::to_vec));
        ids.extend(self.decoder_start_token_id);
        ids.extend(self.pad_token_id);
        ids.extend(self.forced_bos_token_id);
        ids.extend(self.suppress_tokens.iter().flatten());
        ids.extend(self.begin_suppress_tokens.iter().flatten());
        match ids.into_iter().find(|&i| i as usize >= v) {
            Some(i) => Err(Error::invalid(
                OP,
                format!(
                    "generation_config.json: token id {i} is outside the target vocabulary ({v} \
                     ids)"
                ),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"d_model": 8, "encoder_layers": 1, "decoder_layers": 2,
        "encoder_attention_heads": 2, "decoder_attention_heads": 4, "encoder_ffn_dim": 16,
        "decoder_ffn_dim": 12, "vocab_size": 10, "max_position_embeddings": 32,
        "pad_token_id": 9, "decoder_start_token_id": 9, "eos_token_id": 0,
        "activation_function": "swish", "some_future_field": [1, 2]}"#;

    fn with(key: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v[key] = serde_json::from_str(value).unwrap();
        v.to_string()
    }

    #[test]
    fn parses_and_defaults() {
        let c = MarianConfig::from_json_str(GOOD).unwrap();
        assert_eq!(c.decoder_vocab(), 10);
        assert_eq!(c.activation().unwrap(), Activation::Silu);
        assert_eq!(c.eos_id().unwrap(), 0);
        assert_eq!(c.decoder_start_id().unwrap(), 9);
        assert!(c.tie_word_embeddings && c.share_encoder_decoder_embeddings);
        assert_eq!(c.embed_scale(), 1.0);
        let c = MarianConfig::from_json_str(&with("scale_embedding", "true")).unwrap();
        assert!((c.embed_scale() - 8f32.sqrt()).abs() < 1e-6);
        let c = MarianConfig::from_json_str(&with("eos_token_id", "[0, 3]")).unwrap();
        assert_eq!(c.eos_token_id.unwrap().to_vec(), vec![0, 3]);
    }

    #[test]
    fn refuses_broken_and_lying_configs() {
        for (k, v, needle) in [
            ("d_model", "0", "d_model = 0"),
            ("d_model", "7", "not a multiple"),
            ("encoder_layers", "-1", "config.json"),
            ("vocab_size", "\"ten\"", "config.json"),
            ("activation_function", "\"tanh\"", "activation_function"),
            ("normalize_before", "true", "normalize_before"),
            ("normalize_embedding", "true", "normalize_embedding"),
            ("pad_token_id", "10", "pad_token_id = 10"),
            ("eos_token_id", "[]", "eos_token_id"),
            ("decoder_start_token_id", "99", "decoder_start_token_id"),
            ("vocab_size", "2147483647", "too large"),
            (
                "max_position_embeddings",
                "18446744073709551615",
                "config.json",
            ),
            ("forced_eos_token_id", "[0, 50]", "forced_eos"),
        ] {
            let e = MarianConfig::from_json_str(&with(k, v))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{k}={v}: {e}");
        }
        assert!(MarianConfig::from_json_str("{").is_err());
        assert!(MarianConfig::from_json_str("[]").is_err());
        // Separate vocabularies: the decoder's ids are checked against decoder_vocab_size.
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        v["share_encoder_decoder_embeddings"] = false.into();
        v["decoder_vocab_size"] = 5.into();
        let e = MarianConfig::from_json_str(&v.to_string()).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
    }

    #[test]
    fn generation_config() {
        let g = GenerationConfig::from_json_str(
            r#"{"bad_words_ids": [[9]], "max_length": 64, "num_beams": 4,
                "early_stopping": "never", "forced_eos_token_id": 0, "renormalize_logits": true,
                "transformers_version": "5.25.0"}"#,
        )
        .unwrap();
        assert_eq!(g.early_stopping, Some(EarlyStoppingSetting::Never));
        assert_eq!(g.bad_words_ids, Some(vec![vec![9]]));
        g.check_ids(10).unwrap();
        assert!(g.check_ids(9).is_err());
        let g = GenerationConfig::from_json_str(r#"{"early_stopping": true}"#).unwrap();
        assert_eq!(g.early_stopping, Some(EarlyStoppingSetting::True));
        for bad in [
            r#"{"early_stopping": "sometimes"}"#,
            r#"{"num_beams": 0}"#,
            r#"{"num_beams": 2, "num_return_sequences": 3}"#,
            r#"{"max_length": 0}"#,
            r#"{"max_length": 99999999999}"#,
            r#"{"bad_words_ids": [[]]}"#,
            r#"{"bad_words_ids": [[-1]]}"#,
            r#"{"num_beams": 1.5}"#,
            "nope",
        ] {
            assert!(GenerationConfig::from_json_str(bad).is_err(), "{bad}");
        }
    }
}
