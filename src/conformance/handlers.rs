//! One handler per conformance op: uploads the case's inputs and weights, runs heedful's op and
//! returns the outputs by the names the case file uses (`y`, `attn_weights`, `h_n`, ...).

use super::Case;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops;
use crate::tensor::Tensor;

/// Outputs by name, read back as f32.
pub(super) type Produced = Vec<(String, Vec<f32>)>;
type Handler = fn(&Gpu, &Case) -> Result<Produced>;

const HANDLERS: &[(&str, Handler)] = &[
    ("activation", activation),
    ("embedding", embedding),
    ("layer_norm", layer_norm),
    ("linear", linear),
    ("matmul", matmul),
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

fn activation(gpu: &Gpu, case: &Case) -> Result<Produced> {
    let name = case.attr_str("fn").unwrap_or_default();
    let f = ops::Activation::parse(name)
        .ok_or_else(|| crate::Error::invalid("activation", format!("unknown fn {name:?}")))?;
    let x = case.input(gpu, "x")?;
    read(gpu, &[("y", &ops::activation(gpu, &x, f)?)])
}

fn linear(gpu: &Gpu, case: &Case) -> Result<Produced> {
    let x = case.input(gpu, "x")?;
    let w = case.weight(gpu, "weight")?;
    let b = case.weight_opt(gpu, "bias")?;
    read(gpu, &[("y", &ops::linear(gpu, &x, &w, b.as_ref())?)])
}

fn matmul(gpu: &Gpu, case: &Case) -> Result<Produced> {
    let a = case.input(gpu, "a")?;
    // matmul cases have no weights; `b` is an input held in f32.
    let b = case.input(gpu, "b")?;
    read(gpu, &[("y", &ops::matmul(gpu, &a, &b)?)])
}

fn softmax(gpu: &Gpu, case: &Case) -> Result<Produced> {
    let dim = case.attrs.get("dim").and_then(|d| d.as_i64()).unwrap_or(-1);
    let x = case.input(gpu, "x")?;
    if dim != -1 && dim != x.shape().len() as i64 - 1 {
        return Err(crate::Error::invalid(
            "softmax",
            format!("only the last dim is supported, case has dim={dim}"),
        ));
    }
    read(gpu, &[("y", &ops::softmax(gpu, &x)?)])
}

fn layer_norm(gpu: &Gpu, case: &Case) -> Result<Produced> {
    let eps = case.attr_f64("eps").unwrap_or(1e-5) as f32;
    let x = case.input(gpu, "x")?;
    let w = case.weight(gpu, "weight")?;
    let b = case.weight(gpu, "bias")?;
    read(gpu, &[("y", &ops::layer_norm(gpu, &x, &w, &b, eps)?)])
}

fn embedding(gpu: &Gpu, case: &Case) -> Result<Produced> {
    let (ids, shape) = case.i64s("in.ids")?;
    let w = case.weight(gpu, "weight")?;
    read(gpu, &[("y", &ops::embedding_ids(gpu, ids, shape, &w)?)])
}
