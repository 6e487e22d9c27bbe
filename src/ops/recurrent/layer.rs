//! Recurrent layer stacks (`nn.LSTM`, `nn.GRU`, `nn.RNN`).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::kernels::recurrent::{self as kr, StepBuffers, StepDims};
use crate::tensor::{DType, Tensor};

use super::{f32_of, upload_layer, LayerWeights, PreparedForward, RecurrentOutput, RecurrentPath};
use crate::kernels::recurrent::{CellKind, RecurrentSpec};

/// `nn.LSTM` / `nn.GRU` / `nn.RNN` (`batch_first=True`) with weights on the GPU.
#[derive(Debug)]
pub struct RecurrentLayer {
    spec: RecurrentSpec,
    dtype: DType,
    layers: Vec<LayerWeights>,
    path: RecurrentPath,
    persistent: kr::PersistentKernel,
}

impl RecurrentLayer {
    /// Uploads the weights named as in the PyTorch `state_dict` (`weight_ih_l{k}`,
    /// `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`, with `_reverse` for the second direction)
    /// from f32 host arrays, held on the GPU as `dtype` (f32 or f16). Missing biases are zeros
    /// (`bias=False`); other names in `weights` are ignored.
    pub fn new(
        gpu: &Gpu,
        spec: RecurrentSpec,
        weights: &HashMap<String, Vec<f32>>,
        dtype: DType,
    ) -> Result<RecurrentLayer> {
        let op = spec.kind.name();
        if spec.input_size == 0 || spec.hidden_size == 0 || spec.num_layers == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "input_size {}, hidden_size {} and num_layers {} must all be >= 1",
                    spec.input_size, spec.hidden_size, spec.num_layers
                ),
            ));
        }
        let dirs = spec.directions();
        let mut layers = Vec::with_capacity(spec.num_layers);
        for l in 0..spec.num_layers {
            let input = if l == 0 {
                spec.input_size
            } else {
                dirs * spec.hidden_size
            };
            let suffixes: Vec<String> = (0..dirs)
                .map(|d| format!("_l{l}{}", if d == 1 { "_reverse" } else { "" }))
                .collect();
            layers.push(upload_layer(
                gpu,
                op,
                spec.kind,
                input,
                spec.hidden_size,
                &suffixes,
                weights,
                dtype,
            )?);
        }
        Ok(RecurrentLayer {
            spec,
            dtype,
            layers,
            path: RecurrentPath::Auto,
            persistent: kr::PersistentKernel::Auto,
        })
    }

    /// Forces the recurrence kernel (default [`RecurrentPath::Auto`]).
    pub fn with_path(mut self, path: RecurrentPath) -> Self {
        self.path = path;
        self
    }

    /// Forces the kernel of the persistent path (default
    /// [`PersistentKernel::Auto`](kr::PersistentKernel::Auto), the tuning table's choice); for
    /// benchmarks and tests that compare the kernels.
    pub fn with_persistent_kernel(mut self, kernel: kr::PersistentKernel) -> Self {
        self.persistent = kernel;
        self
    }

    /// The hyper-parameters.
    pub fn spec(&self) -> &RecurrentSpec {
        &self.spec
    }

    /// The dtype the weights are held in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The path a forward pass over `batch` sequences of `steps` timesteps takes on `gpu` (never
    /// `Auto`).
    ///
    /// Auto takes the persistent kernel when one workgroup can hold a step's work: it runs all
    /// timesteps in one dispatch, but on one compute unit. That pays when the per-dispatch cost of
    /// the per-step kernel dominates, i.e. for few units per step or few steps.
    pub fn resolve_path(&self, gpu: &Gpu, batch: usize, steps: usize) -> RecurrentPath {
        match self.path {
            RecurrentPath::Auto => {
                let dirs = self.spec.directions();
                let hidden = self.spec.hidden_size;
                // Auto's persistent kernel choice is the only one whose resident form was measured.
                let resident = self.persistent == kr::PersistentKernel::Auto
                    && kr::resident_subgroup_applies(gpu, self.spec.kind, hidden, dirs, self.dtype);
                auto_path(gpu, dirs, batch, hidden, steps, resident)
            }
            p => p,
        }
    }

    /// Validates the inputs, allocates outputs and scratch, and records the whole forward pass
    /// without submitting it.
    ///
    /// `x [B, T, I]` f32; `h0`, `c0` `[L*D, B, H]` f32 (zeros when absent; `c0` LSTM only);
    /// `lengths [B]` with each in `1..=T` (all `T` when absent).
    pub fn prepare(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        h0: Option<&Tensor>,
        c0: Option<&Tensor>,
        lengths: Option<&[usize]>,
    ) -> Result<PreparedForward> {
        let spec = &self.spec;
        let op = spec.kind.name();
        let (hidden, dirs, layers) = (spec.hidden_size, spec.directions(), spec.num_layers);
        f32_of(op, "x", x)?;
        let (batch, steps) = match x.shape() {
            &[b, t, i] if i == spec.input_size && b > 0 && t > 0 => (b, t),
            s => {
                return Err(Error::shape(
                    op,
                    format!(
                        "x {s:?} must be [B, T, {}] with B, T >= 1 (batch_first)",
                        spec.input_size
                    ),
                ))
            }
        };
        let state_shape = [layers * dirs, batch, hidden];
        for (name, s) in [("h0", h0), ("c0", c0)] {
            if let Some(s) = s {
                f32_of(op, name, s)?;
                if s.shape() != state_shape {
                    return Err(Error::shape(
                        op,
                        format!(
                            "{name} {:?} must be [L*D, B, H] = {state_shape:?} for x {:?}",
                            s.shape(),
                            x.shape()
                        ),
                    ));
                }
            }
        }
        let lstm = spec.kind == CellKind::Lstm;
        if c0.is_some() && !lstm {
            return Err(Error::invalid(op, "c0 is only for the LSTM"));
        }
        let lens = check_lengths(op, lengths, batch, steps)?;
        let lengths_t = Tensor::from_u32(gpu, &lens, &[batch])?;

        let path = self.resolve_path(gpu, batch, steps);
        let out = RecurrentOutput {
            output: Tensor::zeros(gpu, &[batch, steps, dirs * hidden], DType::F32)?,
            h_n: Tensor::zeros(gpu, &state_shape, DType::F32)?,
            c_n: if lstm {
                Some(Tensor::zeros(gpu, &state_shape, DType::F32)?)
            } else {
                None
            },
        };
        let gh = spec.kind.gates() * hidden;
        let xp = Tensor::zeros(gpu, &[batch, steps, dirs * gh], DType::F32)?;
        // Output of the layers below the last; one buffer suffices because layer l's projection
        // has read it before layer l's steps overwrite it.
        let mid = if layers > 1 {
            Some(Tensor::zeros(
                gpu,
                &[batch, steps, dirs * hidden],
                DType::F32,
            )?)
        } else {
            None
        };
        let dims = StepDims {
            batch,
            steps,
            hidden,
            dirs,
        };
        let state_bytes = (dirs * batch * hidden * 4) as u64;
        let final_half = (steps % 2) as u64 * state_bytes;
        let mut rec = Recorder::new(gpu);
        let stage = match path {
            RecurrentPath::PerStep => kr::stage_buffer(gpu, dims),
            _ => None,
        };
        for (l, w) in self.layers.iter().enumerate() {
            let hs = Tensor::zeros(gpu, &[2, dirs, batch, hidden], DType::F32)?;
            let cs = if lstm {
                Tensor::zeros(gpu, &[2, dirs, batch, hidden], DType::F32)?
            } else {
                Tensor::zeros(gpu, &[4], DType::F32)?
            };
            let off = l as u64 * state_bytes;
            if let Some(h0) = h0 {
                rec.copy(h0.buffer(), off, hs.buffer(), 0, state_bytes);
            }
            if let Some(c0) = c0 {
                rec.copy(c0.buffer(), off, cs.buffer(), 0, state_bytes);
            }
            let input = if l == 0 { x } else { mid.as_ref().unwrap_or(x) };
            let layer_out = if l + 1 == layers {
                &out.output
            } else {
                mid.as_ref().unwrap_or(&out.output)
            };
            let in_size = input.shape()[2];
            // All timesteps and both directions in one GEMM: [B*T, I_l] x [D*G*H, I_l]^T.
            crate::kernels::matmul::record_linear(
                &mut rec,
                &input.reshape(&[batch * steps, in_size])?,
                &w.w_ih,
                Some(&w.b_ih),
                &xp.reshape(&[batch * steps, dirs * gh])?,
            )?;
            let bufs = StepBuffers {
                xp: &xp,
                lengths: &lengths_t,
                hs: &hs,
                cs: &cs,
                out: layer_out,
                whh_t: &w.whh_t,
                bhh: &w.b_hh,
                h_stage: stage.as_deref(),
            };
            match path {
                RecurrentPath::Persistent => {
                    kr::record_persistent(&mut rec, spec.kind, &bufs, dims, self.persistent)?
                }
                _ => {
                    for t in 0..steps {
                        kr::record_step(&mut rec, spec.kind, &bufs, dims, t)?;
                    }
                }
            }
            rec.copy(hs.buffer(), final_half, out.h_n.buffer(), off, state_bytes);
            if let Some(c_n) = &out.c_n {
                rec.copy(cs.buffer(), final_half, c_n.buffer(), off, state_bytes);
            }
        }
        Ok(PreparedForward {
            recorder: rec,
            output: out,
            path,
            lengths: lengths_t,
        })
    }

    /// Runs the layer stack on `x [B, T, I]` (see [`RecurrentLayer::prepare`] for the operands)
    /// and returns `output [B, T, D*H]`, `h_n` and `c_n` `[L*D, B, H]`.
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        h0: Option<&Tensor>,
        c0: Option<&Tensor>,
        lengths: Option<&[usize]>,
    ) -> Result<RecurrentOutput> {
        let p = self.prepare(gpu, x, h0, c0, lengths)?;
        p.recorder.submit()?;
        Ok(p.output)
    }
}

/// The Auto rule (see [`RecurrentLayer::resolve_path`]): the tuning table's thresholds
/// ([`RecurrentTuning`](crate::gpu::RecurrentTuning), with the measurements behind them), the
/// higher one where the persistent path would run the resident kernel's subgroup form.
fn auto_path(
    gpu: &Gpu,
    dirs: usize,
    batch: usize,
    hidden: usize,
    steps: usize,
    resident_subgroup: bool,
) -> RecurrentPath {
    let t = gpu.tuning();
    let items = dirs * batch * hidden;
    if t.persistent_pays(dirs, batch, hidden, steps)
        || (resident_subgroup && items <= t.recurrent.resident_max_items)
    {
        RecurrentPath::Persistent
    } else {
        RecurrentPath::PerStep
    }
}

fn check_lengths(
    op: &str,
    lengths: Option<&[usize]>,
    batch: usize,
    steps: usize,
) -> Result<Vec<u32>> {
    let Some(l) = lengths else {
        return Ok(vec![steps as u32; batch]);
    };
    if l.len() != batch {
        return Err(Error::shape(
            op,
            format!("lengths has {} entries for a batch of {batch}", l.len()),
        ));
    }
    if let Some((b, &v)) = l.iter().enumerate().find(|(_, &v)| v == 0 || v > steps) {
        return Err(Error::invalid(
            op,
            format!("lengths[{b}] = {v} is outside 1..={steps} (T of x)"),
        ));
    }
    Ok(l.iter().map(|&v| v as u32).collect())
}
