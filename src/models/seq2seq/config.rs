//! The `heedful.config` of a seq2seq file (written by `weights/seq2seq.py`'s `export_model`), parsed
//! and checked. The keys and their meaning are documented in `weights/seq2seq.py`.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ops::CellKind;

const OP: &str = "seq2seq";

/// Encoder hyper-parameters.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct EncoderConfig {
    /// "lstm", "gru", "rnn" (tanh) or "rnn_relu".
    pub cell: String,
    /// Embedding width.
    pub emb: usize,
    /// Hidden units per direction.
    pub hidden: usize,
    /// Stacked layers.
    pub layers: usize,
    /// Two directions.
    #[serde(default)]
    pub bidirectional: bool,
}

/// Decoder hyper-parameters.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct DecoderConfig {
    /// "lstm", "gru", "rnn" or "rnn_relu".
    pub cell: String,
    /// Embedding width.
    pub emb: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Stacked layers.
    pub layers: usize,
    /// "none", "dot", "general", "additive", "multihead" or "tutorial".
    #[serde(default = "none")]
    pub attention: String,
    /// Additive: score MLP width; multihead: q/k/v width (default: hidden).
    #[serde(default)]
    pub attn_dim: Option<usize>,
    /// Multihead: heads.
    #[serde(default)]
    pub heads: Option<usize>,
    /// The previous context is concatenated to the embedded input.
    #[serde(default)]
    pub input_feeding: bool,
    /// Luong attentional layer `tanh(W_c [context; h])`.
    #[serde(default)]
    pub attn_layer: bool,
    /// Tutorial attention: positions scored.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// When attention is computed in a step (key `decoder.attention_order`): "luong" (default)
    /// or "bahdanau"; see [`AttentionOrder`].
    #[serde(default = "luong")]
    pub attention_order: String,
}

fn luong() -> String {
    "luong".into()
}

fn none() -> String {
    "none".into()
}

/// The whole config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Config {
    /// Input vocabulary size.
    pub src_vocab: usize,
    /// Output vocabulary size.
    pub tgt_vocab: usize,
    /// Input symbols (for display and the CLI's tokenizer), optional.
    #[serde(default)]
    pub src_tokens: Vec<String>,
    /// Output symbols, optional.
    #[serde(default)]
    pub tgt_tokens: Vec<String>,
    /// Input padding id.
    #[serde(default)]
    pub pad_id: usize,
    /// Id of unknown input symbols.
    #[serde(default)]
    pub src_unk_id: Option<usize>,
    /// Id appended to every input sequence.
    #[serde(default)]
    pub src_eos_id: Option<usize>,
    /// First decoder input.
    pub bos_id: usize,
    /// End token.
    pub eos_id: usize,
    /// Default maximum decoded length.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Encoder.
    pub encoder: EncoderConfig,
    /// Decoder.
    pub decoder: DecoderConfig,
    /// "final" or "zeros".
    #[serde(default = "zeros")]
    pub bridge: String,
}

fn default_max_len() -> usize {
    50
}

fn zeros() -> String {
    "zeros".into()
}

/// The decoder's attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKind {
    /// No attention (decoder starts from the encoder's final state).
    None,
    /// Luong dot.
    Dot,
    /// Luong general.
    General,
    /// Bahdanau additive.
    Additive,
    /// Multi-head.
    MultiHead,
    /// The PyTorch tutorial's Linear over [emb; h] onto max_length positions.
    Tutorial,
}

/// The order of one decoder step (key `decoder.attention_order`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionOrder {
    /// "luong" (the default): the cell stack runs first on the embedded input (with
    /// `input_feeding`, `[emb; ctx_prev]`); attention is then scored with the NEW top hidden
    /// state `h_t`, and the output projection reads `[ctx_t; h_t]` (or `tanh(W_c [ctx_t; h_t])`
    /// with `attn_layer`, or `h_t` without attention).
    Luong,
    /// "bahdanau" (Bahdanau et al. 2015): attention is scored first, with the PREVIOUS top-layer
    /// hidden state `h_{t-1}` (the decoder's initial state at step 0) as the query; the cell
    /// input is `[emb; ctx_t]`; the cell stack runs; the output projection reads
    /// `[h_t; ctx_t; emb]` (`decoder.out.weight` `[tgt_vocab, hidden + ctx + emb]`). The kept
    /// attention weights are that step's. Needs dot, general, additive or multihead attention;
    /// `input_feeding` and `attn_layer` must be false.
    Bahdanau,
}

/// Parses a cell name.
pub fn cell_kind(name: &str) -> Result<CellKind> {
    Ok(match name {
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru,
        "rnn" | "rnn_tanh" => CellKind::RnnTanh,
        "rnn_relu" => CellKind::RnnRelu,
        other => {
            return Err(Error::invalid(
                OP,
                format!("cell {other:?}: expected lstm, gru, rnn or rnn_relu"),
            ))
        }
    })
}

impl Config {
    /// Parses and checks the config JSON.
    pub fn from_json(v: &serde_json::Value) -> Result<Config> {
        let c: Config = serde_json::from_value(v.clone())
            .map_err(|e| Error::invalid(OP, format!("heedful.config: {e}")))?;
        c.check()?;
        Ok(c)
    }

    /// The attention kind.
    pub fn attention(&self) -> Result<AttentionKind> {
        Ok(match self.decoder.attention.as_str() {
            "none" => AttentionKind::None,
            "dot" => AttentionKind::Dot,
            "general" => AttentionKind::General,
            "additive" => AttentionKind::Additive,
            "multihead" => AttentionKind::MultiHead,
            "tutorial" => AttentionKind::Tutorial,
            other => {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "attention {other:?}: expected none, dot, general, additive, multihead or tutorial"
                    ),
                ))
            }
        })
    }

    /// The decoder step order (key `decoder.attention_order`).
    pub fn attention_order(&self) -> Result<AttentionOrder> {
        Ok(match self.decoder.attention_order.as_str() {
            "luong" => AttentionOrder::Luong,
            "bahdanau" => AttentionOrder::Bahdanau,
            other => {
                return Err(Error::invalid(
                    OP,
                    format!("decoder.attention_order {other:?}: expected luong or bahdanau"),
                ))
            }
        })
    }

    /// Encoder directions.
    pub fn dirs(&self) -> usize {
        if self.encoder.bidirectional {
            2
        } else {
            1
        }
    }

    /// Width of the encoder memory (directions x hidden).
    pub fn mem_dim(&self) -> usize {
        self.dirs() * self.encoder.hidden
    }

    /// Width of the context vector.
    pub fn ctx_dim(&self) -> usize {
        match self.attention() {
            Ok(AttentionKind::MultiHead) => self.decoder.attn_dim.unwrap_or(self.decoder.hidden),
            Ok(AttentionKind::None) => 0,
            _ => self.mem_dim(),
        }
    }

    fn check(&self) -> Result<()> {
        cell_kind(&self.encoder.cell)?;
        cell_kind(&self.decoder.cell)?;
        let att = self.attention()?;
        let d = &self.decoder;
        for (what, v) in [
            ("src_vocab", self.src_vocab),
            ("tgt_vocab", self.tgt_vocab),
            ("encoder.emb", self.encoder.emb),
            ("encoder.hidden", self.encoder.hidden),
            ("encoder.layers", self.encoder.layers),
            ("decoder.emb", d.emb),
            ("decoder.hidden", d.hidden),
            ("decoder.layers", d.layers),
            ("max_len", self.max_len),
        ] {
            if v == 0 {
                return Err(Error::invalid(OP, format!("{what} must be >= 1")));
            }
        }
        if self.bos_id >= self.tgt_vocab || self.eos_id >= self.tgt_vocab {
            return Err(Error::invalid(
                OP,
                format!(
                    "bos_id {} / eos_id {} outside the target vocabulary of {}",
                    self.bos_id, self.eos_id, self.tgt_vocab
                ),
            ));
        }
        match self.bridge.as_str() {
            "zeros" => {}
            "final" => {
                if d.hidden != self.mem_dim() || d.layers != self.encoder.layers {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "bridge \"final\" needs decoder hidden {} = directions x encoder hidden {} \
                             and decoder layers {} = encoder layers {}",
                            d.hidden,
                            self.mem_dim(),
                            d.layers,
                            self.encoder.layers
                        ),
                    ));
                }
                if (d.cell == "lstm") != (self.encoder.cell == "lstm") {
                    return Err(Error::invalid(
                        OP,
                        "bridge \"final\" between an LSTM and a non-LSTM is not defined",
                    ));
                }
            }
            other => {
                return Err(Error::invalid(
                    OP,
                    format!("bridge {other:?}: expected final or zeros"),
                ))
            }
        }
        match att {
            AttentionKind::Dot if d.hidden != self.mem_dim() => {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "dot attention needs decoder hidden {} = memory width {}",
                        d.hidden,
                        self.mem_dim()
                    ),
                ))
            }
            AttentionKind::MultiHead => {
                let heads = d.heads.unwrap_or(1);
                if heads == 0 || !self.ctx_dim().is_multiple_of(heads) {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "multihead: attn_dim {} not divisible by heads {heads}",
                            self.ctx_dim()
                        ),
                    ));
                }
            }
            AttentionKind::Tutorial if d.max_length.unwrap_or(0) == 0 => {
                return Err(Error::invalid(
                    OP,
                    "tutorial attention needs decoder.max_length >= 1",
                ))
            }
            _ => {}
        }
        if self.attention_order()? == AttentionOrder::Bahdanau {
            if matches!(att, AttentionKind::None | AttentionKind::Tutorial) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "decoder.attention_order \"bahdanau\" needs dot, general, additive or \
                         multihead attention, not decoder.attention {:?}",
                        d.attention
                    ),
                ));
            }
            for (key, on) in [
                ("input_feeding", d.input_feeding),
                ("attn_layer", d.attn_layer),
            ] {
                if on {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "decoder.{key} true is not allowed with decoder.attention_order \
                             \"bahdanau\" (its context is recomputed each step and feeds the \
                             cell and the output projection directly)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
