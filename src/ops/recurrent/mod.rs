//! LSTM / GRU / RNN layers and cells with PyTorch semantics on the GPU.
//!
//! [`RecurrentLayer`] is `nn.LSTM` / `nn.GRU` / `nn.RNN` with `batch_first=True`: any input and
//! hidden size, stacked layers, bidirectional, optional initial states, and variable lengths that
//! match `pack_padded_sequence(enforce_sorted=False)` + `pad_packed_sequence(total_length=T)`.
//! [`RecurrentCell`] is `nn.LSTMCell` / `nn.GRUCell` / `nn.RNNCell`, for decoders.
//! Weights come as named f32 host arrays in the PyTorch `state_dict` layout and are held on the GPU
//! as f32 or f16.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use heedful::ops::{CellKind, RecurrentLayer, RecurrentSpec};
//! use heedful::{DType, Gpu, Tensor};
//! let gpu = Gpu::shared()?;
//! let spec = RecurrentSpec { kind: CellKind::Lstm, input_size: 3, hidden_size: 2, num_layers: 1,
//!                            bidirectional: false };
//! let mut w = HashMap::new();
//! w.insert("weight_ih_l0".to_string(), vec![0.1f32; 8 * 3]);
//! w.insert("weight_hh_l0".to_string(), vec![0.1f32; 8 * 2]);
//! let lstm = RecurrentLayer::new(&gpu, spec, &w, DType::F16)?;
//! let x = Tensor::from_f32(&gpu, &[0.5; 2 * 4 * 3], &[2, 4, 3])?; // [B=2, T=4, I=3]
//! let y = lstm.forward(&gpu, &x, None, None, Some(&[4, 2]))?;
//! assert_eq!(y.output.shape(), &[2, 4, 2]);
//! # Ok::<(), heedful::Error>(())
//! ```
//!
//! How it runs: per layer one GEMM projects the inputs of all timesteps and both directions, then
//! either one fused dispatch per timestep ([`RecurrentPath::PerStep`]) or one single-workgroup
//! dispatch looping over all timesteps ([`RecurrentPath::Persistent`]); everything is recorded into
//! one submission and the state never leaves the GPU. [`RecurrentPath::Auto`] chooses by shape and
//! adapter.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::kernels::recurrent as kr;
use crate::tensor::{DType, Tensor};

mod cell;
mod layer;

pub use crate::kernels::recurrent::{CellKind, PersistentKernel, RecurrentSpec};
pub use cell::RecurrentCell;
pub use layer::RecurrentLayer;

/// Which recurrence kernel runs the timesteps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RecurrentPath {
    /// Chosen by shape and adapter (see [`RecurrentLayer::resolve_path`]).
    #[default]
    Auto,
    /// One workgroup loops over all timesteps in one dispatch.
    Persistent,
    /// One fused dispatch per timestep.
    PerStep,
}

/// Outputs of a recurrent layer: `output [B, T, D*H]`, `h_n` and `c_n` `[L*D, B, H]`.
#[derive(Clone, Debug)]
pub struct RecurrentOutput {
    /// `[B, T, D*H]`, zero past each sequence's length.
    pub output: Tensor,
    /// `[L*D, B, H]`: each layer and direction's state at the sequence's end.
    pub h_n: Tensor,
    /// `[L*D, B, H]` cell state (LSTM only).
    pub c_n: Option<Tensor>,
}

/// A recorded forward pass: run it with [`Recorder::submit`] (or time it) as often as needed; each
/// run recomputes `output` from the bound inputs.
#[derive(Debug)]
pub struct PreparedForward {
    /// All dispatches and copies of the forward pass, in order.
    pub recorder: Recorder,
    /// Where the results land.
    pub output: RecurrentOutput,
    /// The path that was recorded (never `Auto`).
    pub path: RecurrentPath,
    /// The sequence lengths `[B]` u32 the recording reads: rewrite it (same batch) to replay the
    /// recording on other lengths.
    pub lengths: Tensor,
}

/// One layer's weights on the GPU, both directions concatenated.
#[derive(Debug)]
struct LayerWeights {
    /// `[D*G*H, I_l]`: weight_ih of each direction stacked, so one GEMM serves both.
    w_ih: Tensor,
    /// `[D*G*H]`.
    b_ih: Tensor,
    /// `[D, KP, G*H, 2]`: weight_hh in k-pairs ([`kr::pack_whh`]).
    whh_t: Tensor,
    /// `[D*G*H]`.
    b_hh: Tensor,
}

/// Reads the named weights of one layer (directions `suffixes`) and uploads them as `dtype`.
#[allow(clippy::too_many_arguments)]
fn upload_layer(
    gpu: &Gpu,
    op: &str,
    kind: CellKind,
    input: usize,
    hidden: usize,
    suffixes: &[String],
    weights: &HashMap<String, Vec<f32>>,
    dtype: DType,
) -> Result<LayerWeights> {
    let gh = kind.gates() * hidden;
    let fetch = |name: String, len: usize, shape: String, bias: bool| -> Result<Vec<f32>> {
        match weights.get(&name) {
            Some(v) if v.len() == len => Ok(v.clone()),
            Some(v) => Err(Error::shape(
                op,
                format!(
                    "weight {name} has {} values, expected {shape} = {len}",
                    v.len()
                ),
            )),
            None if bias => Ok(vec![0.0; len]),
            None => Err(Error::invalid(
                op,
                format!("weight {name} ({shape}) is missing"),
            )),
        }
    };
    let dirs = suffixes.len();
    let mut w_ih = Vec::with_capacity(dirs * gh * input);
    let mut b_ih = Vec::with_capacity(dirs * gh);
    let mut whh = Vec::with_capacity(dirs);
    let mut b_hh = Vec::with_capacity(dirs * gh);
    for sfx in suffixes {
        w_ih.extend(fetch(
            format!("weight_ih{sfx}"),
            gh * input,
            format!("[{gh}, {input}]"),
            false,
        )?);
        whh.push(fetch(
            format!("weight_hh{sfx}"),
            gh * hidden,
            format!("[{gh}, {hidden}]"),
            false,
        )?);
        b_ih.extend(fetch(format!("bias_ih{sfx}"), gh, format!("[{gh}]"), true)?);
        b_hh.extend(fetch(format!("bias_hh{sfx}"), gh, format!("[{gh}]"), true)?);
    }
    if !matches!(dtype, DType::F32 | DType::F16) {
        return Err(Error::DType {
            op: op.into(),
            operand: "weights".into(),
            got: dtype.to_string(),
            expected: "f32 or f16".into(),
        });
    }
    Ok(LayerWeights {
        w_ih: Tensor::from_f32_as(gpu, &w_ih, &[dirs * gh, input], dtype)?,
        b_ih: Tensor::from_f32_as(gpu, &b_ih, &[dirs * gh], dtype)?,
        whh_t: {
            let kp = kr::pair_rows(hidden);
            let packed = kr::pack_whh(&whh, kind.gates(), hidden, kp);
            Tensor::from_f32_as(gpu, &packed, &[dirs, kp, gh, 2], dtype)?
        },
        b_hh: Tensor::from_f32_as(gpu, &b_hh, &[dirs * gh], dtype)?,
    })
}

fn f32_of(op: &str, name: &str, t: &Tensor) -> Result<()> {
    crate::kernels::check_dtype(op, name, t, &[DType::F32])
}
