//! One handler per conformance op: uploads the case's inputs and weights, runs heedful's op and
//! returns the outputs by the names the case file uses (`y`, `attn_weights`, `h_n`, ...).

use std::collections::HashMap;

use super::{Case, RunOptions};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::sdpa::Causal;
use crate::ops::{
    self, AttnMask, CellKind, RecurrentCell, RecurrentLayer, RecurrentSpec, SdpaOptions,
};
use crate::tensor::Tensor;

/// Outputs by name, read back as f32.
pub(super) type Produced = Vec<(String, Vec<f32>)>;
type Handler = fn(&Gpu, &Case, &RunOptions) -> Result<Produced>;

const HANDLERS: &[(&str, Handler)] = &[
    ("activation", activation),
    ("additive_attention", additive_attention),
    ("dot_attention", memory_attention),
    ("embedding", embedding),
    ("general_attention", memory_attention),
    ("gru", recurrent),
    ("gru_cell", recurrent_cell),
    ("layer_norm", layer_norm),
    ("linear", linear),
    ("lstm", recurrent),
    ("lstm_cell", recurrent_cell),
    ("matmul", matmul),
    ("mha", mha),
    ("rnn", recurrent),
    ("rnn_cell", recurrent_cell),
    ("sdpa", sdpa),
    ("softmax", softmax),
];

/// The handler for `op`, or `None` when heedful does not implement it yet.
pub(super) fn handler(op: &str) -> Option<Handler> {
    HANDLERS
        .iter()
        .find(|(name, _)| *name == op)
        .map(|(_, h)| *h)
}

/// The conformance ops heedful implements.
pub fn implemented_ops() -> Vec<&'static str> {
    HANDLERS.iter().map(|(n, _)| *n).collect()
}

fn read(gpu: &Gpu, outputs: &[(&str, &Tensor)]) -> Result<Produced> {
    outputs
        .iter()
        .map(|(n, t)| Ok((n.to_string(), t.to_vec_f32(gpu)?)))
        .collect()
}

fn activation(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let name = case.attr_str("fn").unwrap_or_default();
    let f = ops::Activation::parse(name)
        .ok_or_else(|| Error::invalid("activation", format!("unknown fn {name:?}")))?;
    let x = case.input(gpu, "x")?;
    read(gpu, &[("y", &ops::activation(gpu, &x, f)?)])
}

fn linear(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let x = case.input(gpu, "x")?;
    let w = case.weight(gpu, "weight")?;
    let b = case.weight_opt(gpu, "bias")?;
    read(gpu, &[("y", &ops::linear(gpu, &x, &w, b.as_ref())?)])
}

fn matmul(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let a = case.input(gpu, "a")?;
    // matmul cases have no weights; `b` is an input held in f32.
    let b = case.input(gpu, "b")?;
    read(gpu, &[("y", &ops::matmul(gpu, &a, &b)?)])
}

fn softmax(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let dim = case.attrs.get("dim").and_then(|d| d.as_i64()).unwrap_or(-1);
    let x = case.input(gpu, "x")?;
    if dim != -1 && dim != x.shape().len() as i64 - 1 {
        return Err(Error::invalid(
            "softmax",
            format!("only the last dim is supported, case has dim={dim}"),
        ));
    }
    read(gpu, &[("y", &ops::softmax(gpu, &x)?)])
}

fn layer_norm(gpu: &Gpu, case: &Case, _: &RunOptions) -> Result<Produced> {
    let eps = case.attr_f64("eps").unwrap_or(1e-5) as f32;
    let x = case.input(gpu, "x")?;
    let w = case.weight(gpu, "weight")?;
    let b = case.weight(gpu, "bias")?;
    read(gpu, &[("y", &ops::layer_norm(gpu, &x, &w, &b, eps)?)])
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
    let h = case.input(gpu, "h")?;
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
    let (h, c) = cell.forward(gpu, &x, &h, c.as_ref())?;
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
