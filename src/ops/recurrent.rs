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
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::kernels::recurrent::{self as kr, StepBuffers, StepDims};
use crate::tensor::{DType, Tensor};

pub use crate::kernels::recurrent::{CellKind, RecurrentSpec};

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

/// `nn.LSTM` / `nn.GRU` / `nn.RNN` (`batch_first=True`) with weights on the GPU.
#[derive(Debug)]
pub struct RecurrentLayer {
    spec: RecurrentSpec,
    dtype: DType,
    layers: Vec<LayerWeights>,
    path: RecurrentPath,
}

fn f32_of(op: &str, name: &str, t: &Tensor) -> Result<()> {
    crate::kernels::check_dtype(op, name, t, &[DType::F32])
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
        })
    }

    /// Forces the recurrence kernel (default [`RecurrentPath::Auto`]).
    pub fn with_path(mut self, path: RecurrentPath) -> Self {
        self.path = path;
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

    /// The path a forward pass over `batch` sequences takes on `gpu` (never `Auto`).
    ///
    /// Auto takes the persistent kernel when one workgroup can hold a step's work: it runs all
    /// timesteps in one dispatch, but on one compute unit. That pays when the per-dispatch cost of
    /// the per-step kernel dominates, i.e. for few units per step.
    pub fn resolve_path(&self, gpu: &Gpu, batch: usize) -> RecurrentPath {
        match self.path {
            RecurrentPath::Auto => auto_path(
                gpu,
                self.spec.kind,
                self.spec.directions(),
                batch,
                self.spec.hidden_size,
            ),
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

        let path = self.resolve_path(gpu, batch);
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
                h_stage: stage.as_ref(),
            };
            match path {
                RecurrentPath::Persistent => {
                    kr::record_persistent(&mut rec, spec.kind, &bufs, dims)?
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

/// The Auto rule (see [`RecurrentLayer::resolve_path`]).
fn auto_path(
    gpu: &Gpu,
    _kind: CellKind,
    dirs: usize,
    batch: usize,
    hidden: usize,
) -> RecurrentPath {
    let items = dirs * batch * hidden;
    if gpu.caps().is_cpu() {
        // Measured on lavapipe (LSTM, f16, T = 256, ms per sequence, persistent vs per-step):
        // B = 1: H = 16 1.4 vs 8.8, H = 64 11.7 vs 34, H = 96 15 vs 20, H = 128 30 vs 26;
        // H = 32, B = 4: 7.0 vs 14.6; H = 64, B = 2: 14 vs 19. Persistent runs on one CPU thread,
        // so it loses once one direction's units alone fill a second workgroup.
        if items <= 128 && dirs * hidden < 128 {
            RecurrentPath::Persistent
        } else {
            RecurrentPath::PerStep
        }
    } else if items <= 512 {
        // GPUs: one workgroup per step is cheap up to a few hundred units (a guess, not yet
        // measured on a GPU).
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

/// `nn.LSTMCell` / `nn.GRUCell` / `nn.RNNCell` with weights on the GPU.
///
/// Scratch buffers (input projection, state ping-pong) are allocated on the first call for a batch
/// size and reused by later calls with that batch size.
#[derive(Debug)]
pub struct RecurrentCell {
    kind: CellKind,
    input_size: usize,
    hidden_size: usize,
    w: LayerWeights,
    scratch: Mutex<HashMap<usize, Arc<CellScratch>>>,
}

/// Per-batch-size scratch of a cell. Calls that share it are ordered by the queue: each recorded
/// update copies its state in, runs, and copies its results out before the next one starts.
#[derive(Debug)]
struct CellScratch {
    /// `[B, 1, G*H]` input projection.
    xp: Tensor,
    /// `[B]` all ones.
    lengths: Tensor,
    /// `[2, 1, B, H]` hidden state ping-pong.
    hs: Tensor,
    /// `[2, 1, B, H]` (LSTM) or `[4]` cell state.
    cs: Tensor,
    /// `[B, H]` zeros: the state when the caller passes none.
    zeros: Tensor,
    /// Uniform staging of h ([`kr::stage_buffer`]).
    stage: Option<wgpu::Buffer>,
}

impl RecurrentCell {
    /// Uploads `weight_ih [G*H, I]`, `weight_hh [G*H, H]`, `bias_ih`, `bias_hh [G*H]` (missing
    /// biases are zeros) from f32 host arrays, held on the GPU as `dtype` (f32 or f16).
    pub fn new(
        gpu: &Gpu,
        kind: CellKind,
        input_size: usize,
        hidden_size: usize,
        weights: &HashMap<String, Vec<f32>>,
        dtype: DType,
    ) -> Result<RecurrentCell> {
        let op = cell_name(kind);
        if input_size == 0 || hidden_size == 0 {
            return Err(Error::invalid(
                op,
                format!("input_size {input_size} and hidden_size {hidden_size} must be >= 1"),
            ));
        }
        let w = upload_layer(
            gpu,
            op,
            kind,
            input_size,
            hidden_size,
            &[String::new()],
            weights,
            dtype,
        )?;
        Ok(RecurrentCell {
            kind,
            input_size,
            hidden_size,
            w,
            scratch: Mutex::new(HashMap::new()),
        })
    }

    /// The scratch for `batch`, allocated on first use.
    fn scratch(&self, gpu: &Gpu, batch: usize) -> Result<Arc<CellScratch>> {
        let mut cache = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(&batch) {
            return Ok(s.clone());
        }
        let hid = self.hidden_size;
        let gh = self.kind.gates() * hid;
        let cs_shape = if self.kind == CellKind::Lstm {
            vec![2, 1, batch, hid]
        } else {
            vec![4]
        };
        let dims = StepDims {
            batch,
            steps: 1,
            hidden: hid,
            dirs: 1,
        };
        let s = Arc::new(CellScratch {
            xp: Tensor::zeros(gpu, &[batch, 1, gh], DType::F32)?,
            lengths: Tensor::from_u32(gpu, &vec![1u32; batch], &[batch])?,
            hs: Tensor::zeros(gpu, &[2, 1, batch, hid], DType::F32)?,
            cs: Tensor::zeros(gpu, &cs_shape, DType::F32)?,
            zeros: Tensor::zeros(gpu, &[batch, hid], DType::F32)?,
            stage: kr::stage_buffer(gpu, dims),
        });
        cache.insert(batch, s.clone());
        Ok(s)
    }

    /// Records one cell update: `x [B, I]`, `h [B, H]` and `c [B, H]` (LSTM; zeros when absent, as
    /// in PyTorch) into `h_out [B, H]` and, for the LSTM, `c_out [B, H]` (required). Two
    /// dispatches: the input projection and the fused gate step.
    pub fn record_forward(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        h: Option<&Tensor>,
        c: Option<&Tensor>,
        h_out: &Tensor,
        c_out: Option<&Tensor>,
    ) -> Result<()> {
        let op = cell_name(self.kind);
        let (i, hid) = (self.input_size, self.hidden_size);
        let lstm = self.kind == CellKind::Lstm;
        f32_of(op, "x", x)?;
        let batch = match x.shape() {
            &[b, ii] if ii == i && b > 0 => b,
            s => {
                return Err(Error::shape(
                    op,
                    format!("x {s:?} must be [B, {i}] with B >= 1"),
                ))
            }
        };
        if !lstm && (c.is_some() || c_out.is_some()) {
            return Err(Error::invalid(op, "a cell state is only for the LSTM cell"));
        }
        if lstm && c_out.is_none() {
            return Err(Error::invalid(op, "c_out [B, H] is required"));
        }
        let states = [("h", h), ("c", c), ("h_out", Some(h_out)), ("c_out", c_out)];
        for (name, s) in states {
            let Some(s) = s else { continue };
            f32_of(op, name, s)?;
            if s.shape() != [batch, hid] {
                return Err(Error::shape(
                    op,
                    format!(
                        "{name} {:?} must be [B, H] = [{batch}, {hid}] for x {:?}",
                        s.shape(),
                        x.shape()
                    ),
                ));
            }
        }
        let gpu = rec.gpu().clone();
        let gh = self.kind.gates() * hid;
        let sc = self.scratch(&gpu, batch)?;
        let bytes = (batch * hid * 4) as u64;
        rec.copy(h.unwrap_or(&sc.zeros).buffer(), 0, sc.hs.buffer(), 0, bytes);
        if lstm {
            rec.copy(c.unwrap_or(&sc.zeros).buffer(), 0, sc.cs.buffer(), 0, bytes);
        }
        crate::kernels::matmul::record_linear(
            rec,
            x,
            &self.w.w_ih,
            Some(&self.w.b_ih),
            &sc.xp.reshape(&[batch, gh])?,
        )?;
        let bufs = StepBuffers {
            xp: &sc.xp,
            lengths: &sc.lengths,
            hs: &sc.hs,
            cs: &sc.cs,
            out: h_out,
            whh_t: &self.w.whh_t,
            bhh: &self.w.b_hh,
            h_stage: sc.stage.as_ref(),
        };
        let dims = StepDims {
            batch,
            steps: 1,
            hidden: hid,
            dirs: 1,
        };
        kr::record_step(rec, self.kind, &bufs, dims, 0)?;
        if let Some(c_out) = c_out {
            rec.copy(sc.cs.buffer(), bytes, c_out.buffer(), 0, bytes);
        }
        Ok(())
    }

    /// One cell update: returns `h' [B, H]` and, for the LSTM, `c' [B, H]`. `h` and `c` default
    /// to zeros, as in PyTorch.
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        h: Option<&Tensor>,
        c: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let hid = self.hidden_size;
        let batch = x.shape().first().copied().unwrap_or(0);
        let h_out = Tensor::zeros(gpu, &[batch, hid], DType::F32)?;
        let c_out = if self.kind == CellKind::Lstm {
            Some(Tensor::zeros(gpu, &[batch, hid], DType::F32)?)
        } else {
            None
        };
        crate::ops::run(gpu, |rec| {
            self.record_forward(rec, x, h, c, &h_out, c_out.as_ref())
        })?;
        Ok((h_out, c_out))
    }
}

fn cell_name(kind: CellKind) -> &'static str {
    match kind {
        CellKind::Lstm => "lstm_cell",
        CellKind::Gru => "gru_cell",
        CellKind::RnnTanh | CellKind::RnnRelu => "rnn_cell",
    }
}
