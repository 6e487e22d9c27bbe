//! Single recurrent cells for decoders (`nn.LSTMCell`, `nn.GRUCell`, `nn.RNNCell`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{f32_of, upload_layer, LayerWeights};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::kernels::recurrent::{self as kr, CellKind, StepBuffers, StepDims};
use crate::tensor::{DType, Tensor};

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
    stage: Option<crate::gpu::Guarded<wgpu::Buffer>>,
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
            h_stage: sc.stage.as_deref(),
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
