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

const HANDLERS: &[(&str, Handler)] = &[("activation", activation)];

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
