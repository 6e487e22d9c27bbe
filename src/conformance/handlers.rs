//! Conformance handlers: upload the case's inputs and weights, run heedful's op and return the
//! outputs by the names the case file uses (`y`, `attn_weights`, `h_n`, ...).
//!
//! Ops registered in [`crate::kernels::REGISTRY`] need no handler here: [`registered`] runs them
//! from their [`OpEntry`] (operand names, attributes, outputs). The handlers below are for the
//! composite ops (recurrent layers, attention modules) and for ops whose inputs need host-side
//! checks (embedding ids).

use std::collections::HashMap;

use super::{Case, RunOptions};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::op::{eager, OpEntry, Operand};
use crate::kernels::sdpa::Causal;
use crate::kernels::REGISTRY;
use crate::ops::{
    self, AttnMask, CellKind, RecurrentCell, RecurrentLayer, RecurrentSpec, SdpaOptions,
};
use crate::tensor::Tensor;

/// Outputs by name, read back as f32.
pub(super) type Produced = Vec<(String, Vec<f32>)>;
type Handler = fn(&Gpu, &Case, &RunOptions) -> Result<Produced>;

const HANDLERS: &[(&str, Handler)] = &[
    ("additive_attention", additive_attention),
    ("dot_attention", memory_attention),
    ("embedding", embedding),
    ("general_attention", memory_attention),
    ("gru", recurrent),
    ("gru_cell", recurrent_cell),
    ("lstm", recurrent),
    ("lstm_cell", recurrent_cell),
    ("mha", mha),
    ("rnn", recurrent),
    ("rnn_cell", recurrent_cell),
    ("sdpa", sdpa),
];

/// How a case of `op` runs: a registered op from its entry, or a handler; `None` when heedful does
/// not implement `op` yet.
pub(super) fn runner(op: &str) -> Option<Runner> {
    if let Some(entry) = OpEntry::find(op) {
        return Some(Runner::Registered(entry));
    }
    HANDLERS
        .iter()
        .find(|(name, _)| *name == op)
        .map(|(_, h)| Runner::Handler(*h))
}

/// A way to run a case.
pub(super) enum Runner {
    /// A registered op: operands, attributes and outputs from its [`OpEntry`].
    Registered(&'static OpEntry),
    /// A hand-written handler.
    Handler(Handler),
}

impl Runner {
    /// Runs `case` and returns its outputs by name.
    pub(super) fn run(&self, gpu: &Gpu, case: &Case, opts: &RunOptions) -> Result<Produced> {
        match self {
            Runner::Registered(entry) => registered(gpu, case, entry),
            Runner::Handler(h) => h(gpu, case, opts),
        }
    }
}

/// The conformance ops heedful implements.
pub fn implemented_ops() -> Vec<&'static str> {
    let mut ops: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
    ops.extend(HANDLERS.iter().map(|(n, _)| *n));
    ops.sort_unstable();
    ops
}

/// Runs a registered op: its operands from the case (`in.*` as f32, `w.*` in the case's
/// `weights_dtype`), the op from the case's attributes, its outputs by the entry's names.
fn registered(gpu: &Gpu, case: &Case, entry: &OpEntry) -> Result<Produced> {
    let op = (entry.from_attrs)(&case.attrs)?;
    let mut operands = Vec::new();
    for operand in entry.operands {
        match *operand {
            Operand::Input(name) => operands.push(case.input(gpu, name)?),
            Operand::Weight(name) => operands.push(case.weight(gpu, name)?),
            Operand::OptionalWeight(name) => operands.extend(case.weight_opt(gpu, name)?),
        }
    }
    let refs: Vec<&Tensor> = operands.iter().collect();
    let outs = eager(gpu, op.as_ref(), &refs)?;
    let named: Vec<(&str, &Tensor)> = entry.outputs.iter().copied().zip(outs.iter()).collect();
    read(gpu, &named)
}

fn read(gpu: &Gpu, outputs: &[(&str, &Tensor)]) -> Result<Produced> {
    outputs
        .iter()
        .map(|(n, t)| Ok((n.to_string(), t.to_vec_f32(gpu)?)))
        .collect()
}

fn embedding(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let (ids, shape) = case.i64s("in.ids")?;
    let w = case.weight(gpu, "weight")?;
    read(gpu, &[("y", &ops::embedding_ids(gpu, ids, shape, &w)?)])
}

fn cell_kind(case: &Case) -> Result<CellKind> {
    let relu = case.attr_str("nonlinearity") == Some("relu");
    Ok(match case.op.trim_end_matches("_cell") {
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru,
        "rnn" if relu => CellKind::RnnRelu,
        "rnn" => CellKind::RnnTanh,
        other => {
            return Err(Error::invalid(
                "conformance",
                format!("not a recurrent op: {other}"),
            ))
        }
    })
}

/// The case's weights by state_dict name (`w.` stripped), as f32 host arrays.
fn state_dict(case: &Case) -> HashMap<String, Vec<f32>> {
    case.tensors
        .iter()
        .filter_map(|(k, t)| match (k.strip_prefix("w."), &t.data) {
            (Some(n), super::HostData::F32(v)) => Some((n.to_string(), v.clone())),
            _ => None,
        })
        .collect()
}

fn input_opt(gpu: &Gpu, case: &Case, name: &str) -> Result<Option<Tensor>> {
    if case.has(&format!("in.{name}")) {
        case.input(gpu, name).map(Some)
    } else {
        Ok(None)
    }
}

fn recurrent(gpu: &Gpu, case: &Case, opts: &RunOptions) -> Result<Produced> {
    let x = case.input(gpu, "x")?;
    let spec = RecurrentSpec {
        kind: cell_kind(case)?,
        input_size: x.shape().get(2).copied().unwrap_or(0),
        hidden_size: case.attr_usize("hidden_size")?,
        num_layers: case.attr_usize("num_layers")?,
        bidirectional: case.attr_bool("bidirectional"),
    };
    let layer = RecurrentLayer::new(gpu, spec, &state_dict(case), case.weights_dtype)?
        .with_path(opts.recurrent_path);
    let lengths: Option<Vec<usize>> = if case.has("in.lengths") {
        let (l, _) = case.i64s("in.lengths")?;
        Some(l.iter().map(|&v| v.max(0) as usize).collect())
    } else {
        None
    };
    let h0 = input_opt(gpu, case, "h0")?;
    let c0 = input_opt(gpu, case, "c0")?;
    let r = layer.forward(gpu, &x, h0.as_ref(), c0.as_ref(), lengths.as_deref())?;
    let mut out = read(gpu, &[("output", &r.output), ("h_n", &r.h_n)])?;
    if let Some(c) = &r.c_n {
        out.extend(read(gpu, &[("c_n", c)])?);
    }
    Ok(out)
}

fn recurrent_cell(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let x = case.input(gpu, "x")?;
    let h = input_opt(gpu, case, "h")?;
    let c = input_opt(gpu, case, "c")?;
    let hidden = case.attr_usize("hidden_size")?;
    let input = x.shape().get(1).copied().unwrap_or(0);
    let cell = RecurrentCell::new(
        gpu,
        cell_kind(case)?,
        input,
        hidden,
        &state_dict(case),
        case.weights_dtype,
    )?;
    let (h, c) = cell.forward(gpu, &x, h.as_ref(), c.as_ref())?;
    let mut out = read(gpu, &[("h", &h)])?;
    if let Some(c) = &c {
        out.extend(read(gpu, &[("c", c)])?);
    }
    Ok(out)
}

/// A boolean mask input as a u32 tensor (1 = true), or `None` when the case has none.
fn mask_opt(gpu: &Gpu, case: &Case, name: &str) -> Result<Option<Tensor>> {
    let full = format!("in.{name}");
    if !case.has(&full) {
        return Ok(None);
    }
    let (v, s) = case.bools(&full)?;
    let u: Vec<u32> = v.iter().map(|&b| b as u32).collect();
    Tensor::from_u32(gpu, &u, s).map(Some)
}

fn sdpa(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let mask = mask_opt(gpu, case, "mask")?;
    let opts = SdpaOptions {
        mask: mask.as_ref().map(AttnMask::keep),
        causal: if case.attr_bool("is_causal") {
            Causal::TopLeft
        } else {
            Causal::None
        },
        scale: case.attr_f64("scale").map(|s| s as f32),
    };
    let (q, k, v) = (
        case.input(gpu, "q")?,
        case.input(gpu, "k")?,
        case.input(gpu, "v")?,
    );
    read(gpu, &[("y", &ops::sdpa(gpu, &q, &k, &v, &opts)?)])
}

fn additive_attention(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let (w_q, w_k, v, b) = (
        case.weight(gpu, "W_q")?,
        case.weight(gpu, "W_k")?,
        case.weight(gpu, "v")?,
        case.weight(gpu, "b")?,
    );
    let w = ops::AdditiveWeights {
        w_q: &w_q,
        w_k: &w_k,
        v: &v,
        b: &b,
    };
    let mask = mask_opt(gpu, case, "mask")?;
    let (q, keys) = (case.input(gpu, "query")?, case.input(gpu, "keys")?);
    let (ctx, weights) = ops::additive_attention(gpu, &q, &keys, &w, mask.as_ref())?;
    read(gpu, &[("context", &ctx), ("weights", &weights)])
}

fn memory_attention(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let mask = mask_opt(gpu, case, "mask")?;
    let (q, k, v) = (
        case.input(gpu, "query")?,
        case.input(gpu, "keys")?,
        case.input(gpu, "values")?,
    );
    let (ctx, weights) = if case.op == "dot_attention" {
        ops::dot_attention(gpu, &q, &k, &v, mask.as_ref())?
    } else {
        ops::general_attention(gpu, &q, &k, &v, &case.weight(gpu, "W")?, mask.as_ref())?
    };
    read(gpu, &[("context", &ctx), ("weights", &weights)])
}

fn mha(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let heads = case.attr_usize("num_heads")?;
    let kpm = mask_opt(gpu, case, "key_padding_mask")?;
    let (wi, bi, wo, bo) = (
        case.weight(gpu, "in_proj_weight")?,
        case.weight_opt(gpu, "in_proj_bias")?,
        case.weight(gpu, "out_proj.weight")?,
        case.weight_opt(gpu, "out_proj.bias")?,
    );
    let w = ops::MhaWeights {
        in_proj_weight: &wi,
        in_proj_bias: bi.as_ref(),
        out_proj_weight: &wo,
        out_proj_bias: bo.as_ref(),
    };
    let opts = ops::MhaOptions {
        key_padding_mask: kpm.as_ref(),
        need_weights: case.has("out.attn_weights"),
        ..Default::default()
    };
    let (q, k, v) = (
        case.input(gpu, "query")?,
        case.input(gpu, "key")?,
        case.input(gpu, "value")?,
    );
    let out = ops::mha(gpu, &q, &k, &v, &w, heads, &opts)?;
    let mut produced = read(gpu, &[("y", &out.y)])?;
    if let Some(aw) = &out.attn_weights {
        produced.extend(read(gpu, &[("attn_weights", aw)])?);
    }
    Ok(produced)
}
