//! The `heedful.config` of a seq2seq file (written by `weights/seq2seq.py`'s `export_model`), parsed
//! and checked. The keys and their meaning are documented in `weights/seq2seq.py`.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ops::CellKind;
use crate::weights::{WeightFile, WeightsErrorKind};

const OP: &str = "seq2seq";

/// Largest size or id a config may give (the GPU kernels index with 32-bit integers).
pub const MAX_SIZE: usize = i32::MAX as usize;

fn mul(a: usize, b: usize, field: &str) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| {
        Error::invalid(
            OP,
            format!("heedful.config: {field} makes a size overflow ({a} x {b})"),
        )
    })
}

fn add(a: usize, b: usize, field: &str) -> Result<usize> {
    a.checked_add(b).ok_or_else(|| {
        Error::invalid(
            OP,
            format!("heedful.config: {field} makes a size overflow ({a} + {b})"),
        )
    })
}

/// Pushes the four tensors of RNN layer `l` (direction suffix `sfx`) under `prefix`.
fn rnn_layer(
    push: &mut dyn FnMut(String, Vec<usize>),
    prefix: &str,
    l: usize,
    sfx: &str,
    gh: usize,
    input: usize,
    hidden: usize,
) {
    push(format!("{prefix}.weight_ih_l{l}{sfx}"), vec![gh, input]);
    push(format!("{prefix}.weight_hh_l{l}{sfx}"), vec![gh, hidden]);
    push(format!("{prefix}.bias_ih_l{l}{sfx}"), vec![gh]);
    push(format!("{prefix}.bias_hh_l{l}{sfx}"), vec![gh]);
}

/// The config field that sets how many of a tensor there are (`encoder.layers` for
/// `encoder.rnn.*`), for RNN tensors.
fn layer_field(name: &str) -> Option<&'static str> {
    if name.starts_with("encoder.rnn.") {
        Some("encoder.layers")
    } else if name.starts_with("decoder.rnn.") {
        Some("decoder.layers")
    } else {
        None
    }
}

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

    /// Parses and checks the config from its JSON text (the `heedful.config` metadata value): a
    /// pure function of the string, which never panics (fuzzed by `fuzz/fuzz_targets/seq2seq_config.rs`).
    pub fn from_json_str(s: &str) -> Result<Config> {
        let c: Config = serde_json::from_str(s)
            .map_err(|e| Error::invalid(OP, format!("heedful.config: {e}")))?;
        c.check()?;
        Ok(c)
    }

    /// Every tensor this config implies, with its shape, in load order: the embeddings, each RNN
    /// layer's `weight_ih [G*H, I]`, `weight_hh [G*H, H]`, `bias_ih`, `bias_hh [G*H]` (the exporter's
    /// PyTorch modules have biases), the attention's linears and the output projection. Sizes are
    /// computed with checked arithmetic; an overflow is an error naming the config field. Private:
    /// the list has four entries per layer, so [`Config::check_file`] first bounds the layer
    /// counts by the file's tensor count.
    fn expected_tensors(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let att = self.attention()?;
        let bahdanau = self.attention_order()? == AttentionOrder::Bahdanau;
        let (e, d) = (&self.encoder, &self.decoder);
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        let mut push = |n: String, s: Vec<usize>| out.push((n, s));
        push("encoder.emb.weight".into(), vec![self.src_vocab, e.emb]);
        let dirs = self.dirs();
        let mem = mul(dirs, e.hidden, "encoder.hidden")?;
        let egh = mul(cell_kind(&e.cell)?.gates(), e.hidden, "encoder.hidden")?;
        for l in 0..e.layers {
            let input = if l == 0 { e.emb } else { mem };
            for sfx in ["", "_reverse"].iter().take(dirs) {
                rnn_layer(&mut push, "encoder.rnn", l, sfx, egh, input, e.hidden);
            }
        }
        push("decoder.emb.weight".into(), vec![self.tgt_vocab, d.emb]);
        let ctx = self.ctx_dim();
        let hid = d.hidden;
        let feeding =
            d.input_feeding && !matches!(att, AttentionKind::None | AttentionKind::Tutorial);
        let dgh = mul(cell_kind(&d.cell)?.gates(), hid, "decoder.hidden")?;
        let emb_ctx = add(d.emb, ctx, "decoder.emb")?;
        for l in 0..d.layers {
            let input = if l > 0 {
                hid
            } else if feeding || bahdanau {
                emb_ctx
            } else {
                d.emb
            };
            rnn_layer(&mut push, "decoder.rnn", l, "", dgh, input, hid);
        }
        let lin = |push: &mut dyn FnMut(String, Vec<usize>), p: &str, s: [usize; 2], bias: bool| {
            push(format!("{p}.weight"), s.to_vec());
            if bias {
                push(format!("{p}.bias"), vec![s[0]]);
            }
        };
        match att {
            AttentionKind::None | AttentionKind::Dot => {}
            AttentionKind::General => lin(&mut push, "decoder.attention.w", [hid, mem], false),
            AttentionKind::Additive => {
                let a = d.attn_dim.unwrap_or(hid);
                lin(&mut push, "decoder.attention.w_q", [a, hid], false);
                lin(&mut push, "decoder.attention.w_k", [a, mem], true);
                lin(&mut push, "decoder.attention.v", [1, a], false);
            }
            AttentionKind::MultiHead => {
                lin(&mut push, "decoder.attention.w_q", [ctx, hid], true);
                lin(&mut push, "decoder.attention.w_k", [ctx, mem], true);
                lin(&mut push, "decoder.attention.w_v", [ctx, mem], true);
                lin(&mut push, "decoder.attention.w_o", [ctx, ctx], true);
            }
            AttentionKind::Tutorial => {
                let ml = d.max_length.unwrap_or(1);
                let emb_hid = add(d.emb, hid, "decoder.hidden")?;
                let emb_mem = add(d.emb, mem, "encoder.hidden")?;
                lin(&mut push, "decoder.attn", [ml, emb_hid], true);
                lin(&mut push, "decoder.combine", [d.emb, emb_mem], true);
            }
        }
        let attn_layer =
            d.attn_layer && !matches!(att, AttentionKind::None | AttentionKind::Tutorial);
        let ctx_hid = add(ctx, hid, "decoder.hidden")?;
        if attn_layer {
            lin(&mut push, "decoder.w_c", [hid, ctx_hid], false);
        }
        let out_in = if bahdanau {
            add(ctx_hid, d.emb, "decoder.emb")?
        } else if matches!(att, AttentionKind::None | AttentionKind::Tutorial) || attn_layer {
            hid
        } else {
            ctx_hid
        };
        lin(&mut push, "decoder.out", [self.tgt_vocab, out_in], true);
        Ok(out)
    }

    /// Checks `f` against this config before anything is allocated: every tensor of
    /// `Config::expected_tensors` is present, a float dtype and exactly the implied shape (not only
    /// the element count: a transposed `[I, G*H]` is refused), and the file holds no RNN tensor the
    /// config does not use (a layer beyond `encoder.layers` / `decoder.layers`, or a `_reverse`
    /// direction of a unidirectional encoder), since running fewer layers than were trained gives
    /// wrong outputs silently. A missing layer names the config field that asks for it, so a
    /// config claiming 10^9 layers fails at the first absent one.
    pub fn check_file(&self, f: &WeightFile) -> Result<()> {
        for (field, n, name) in [
            (
                "encoder.layers",
                self.encoder.layers,
                "encoder.rnn.weight_ih_l",
            ),
            (
                "decoder.layers",
                self.decoder.layers,
                "decoder.rnn.weight_ih_l",
            ),
        ] {
            if n > f.len() {
                return Err(f.config_error(
                    &format!("{name}{}", f.len()),
                    WeightsErrorKind::MissingTensor,
                    format!(
                        "heedful.config: {field} = {n} needs it, but the file holds only {} tensors",
                        f.len()
                    ),
                ));
            }
        }
        let expected = self.expected_tensors()?;
        for (name, shape) in &expected {
            if !f.contains(name) {
                if let Some(field) = layer_field(name) {
                    let n = if field.starts_with("encoder") {
                        self.encoder.layers
                    } else {
                        self.decoder.layers
                    };
                    return Err(f.config_error(
                        name,
                        WeightsErrorKind::MissingTensor,
                        format!("not in the file, but the config's {field} = {n} needs it"),
                    ));
                }
            }
            f.expect_float(name, shape)?;
        }
        let known: std::collections::HashSet<&str> =
            expected.iter().map(|(n, _)| n.as_str()).collect();
        for name in f.names() {
            if let Some(field) = layer_field(name) {
                if !known.contains(name) {
                    return Err(f.config_error(
                        name,
                        WeightsErrorKind::ShapeMismatch,
                        format!(
                            "is in the file but the config ({field} = {}, bidirectional {}) does \
                             not use it; running fewer layers or directions than the file holds \
                             would give wrong outputs",
                            if field.starts_with("encoder") {
                                self.encoder.layers
                            } else {
                                self.decoder.layers
                            },
                            self.encoder.bidirectional
                        ),
                    ));
                }
            }
        }
        Ok(())
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
        // Every size must fit the GPU's 32-bit indexing; checked here so that a config saying
        // hidden 2^62 is an error naming the field, never an overflow or a huge allocation.
        for (what, v) in [
            ("src_vocab", self.src_vocab),
            ("tgt_vocab", self.tgt_vocab),
            ("pad_id", self.pad_id),
            ("bos_id", self.bos_id),
            ("eos_id", self.eos_id),
            ("max_len", self.max_len),
            ("encoder.emb", self.encoder.emb),
            ("encoder.hidden", self.encoder.hidden),
            ("encoder.layers", self.encoder.layers),
            ("decoder.emb", self.decoder.emb),
            ("decoder.hidden", self.decoder.hidden),
            ("decoder.layers", self.decoder.layers),
            ("decoder.attn_dim", self.decoder.attn_dim.unwrap_or(0)),
            ("decoder.heads", self.decoder.heads.unwrap_or(0)),
            ("decoder.max_length", self.decoder.max_length.unwrap_or(0)),
            ("src_unk_id", self.src_unk_id.unwrap_or(0)),
            ("src_eos_id", self.src_eos_id.unwrap_or(0)),
        ] {
            if v > MAX_SIZE {
                return Err(Error::invalid(
                    OP,
                    format!("heedful.config: {what} = {v} is larger than {MAX_SIZE}"),
                ));
            }
        }
        for (what, v) in [
            ("src_unk_id", self.src_unk_id),
            ("src_eos_id", self.src_eos_id),
        ] {
            if let Some(v) = v.filter(|&v| v >= self.src_vocab) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "{what} {v} outside the source vocabulary of {}",
                        self.src_vocab
                    ),
                ));
            }
        }
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
