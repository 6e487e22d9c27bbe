//! The loop runtime: prepared work that runs in chunks of steps with the loop's control on the GPU
//! (decoders: a step's argmax or top-k feeds the next step's input on the GPU, several steps go in
//! one submission, and one small readback per chunk says whether every row has ended).
//!
//! A model declares a plan with a [`LoopBuilder`] and never touches buffers, encoders or the queue:
//!
//! - **Tensors** come from the builder ([`LoopBuilder::buffer`], [`LoopBuilder::constant_u32`]):
//!   scratch, per-run inputs and state that lives across the steps of a run (recurrent states now,
//!   KV caches next). Named ones ([`LoopBuilder::named`]) are written from the host at the start of
//!   a run ([`Writes`]).
//! - **Phases** of recorded work: `init` runs once at the start of a run (the encoder, once-per-
//!   sequence projections, copies into the loop state), `chunk` once per submission (a loop kernel
//!   that runs the chunk's steps itself), and `step` recordings replayed once per step, cycling
//!   through them (two for ping-pong state halves). The model records into them by calling the
//!   kernels' record functions with the builder's tensors.
//! - **Histories** ([`LoopBuilder::history`]): after each step, a step tensor (the chosen tokens)
//!   is copied to row `step` of a `[max_steps, ..]` history.
//! - **Control**: a chunk counter ([`LoopBuilder::chunk_counter`]) tells a loop kernel the step
//!   its chunk stops at; a step index ([`LoopBuilder::step_index`]) tells replayed step work which
//!   step it is on the GPU; [`Stop`] says when no further chunk is needed, read from the outputs.
//! - **Outputs** by name ([`LoopBuilder::output`]): copied to one readback buffer at the end of
//!   every chunk and mapped once per chunk; [`LoopResults`] reads them by name.
//!
//! Plans are cached per shape by the model in a [`super::PlanCache`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::recorder::Step;
use crate::gpu::{Gpu, LiveBuffer, Recorder};
use crate::kernels::loop_gate::{record_loop_gate, Flags};
use crate::tensor::{DType, Tensor};

const OP: &str = "loop runtime";

/// When a run needs no further chunk (besides reaching its step limit).
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// Runs to the step limit.
    Never,
    /// Every row `i < rows` of the u32 history output `history` `[max_steps, R]` has been `token`
    /// at some step run so far (greedy: the end token was chosen).
    TokenSeen {
        /// A history output.
        history: String,
        /// The end token.
        token: u32,
        /// Rows checked (the first `rows` of each step's `R`).
        rows: usize,
    },
    /// Word `word` of every row `i < rows` of the u32 status output `status` (rows of `stride`
    /// words) is non-zero: a kernel flagged the row as done (beam search's "item finished").
    StatusSet {
        /// A status output.
        status: String,
        /// Words per row.
        stride: usize,
        /// The flag's word in a row.
        word: usize,
        /// Rows checked.
        rows: usize,
    },
}

/// The GPU step counter of [`LoopBuilder::step_index`]: `table[s] = s`, copied into `current`
/// before step `s`.
#[derive(Clone, Debug)]
struct StepIndex {
    /// `[max_steps]` u32: 0, 1, 2, ...
    table: Tensor,
    /// `[1]` u32: the running step.
    current: Tensor,
}

/// Host data written into named tensors at the start of a run.
#[derive(Debug, Default)]
pub struct Writes {
    items: Vec<(String, u64, Option<Vec<u8>>)>,
}

impl Writes {
    /// No writes.
    pub fn new() -> Writes {
        Writes::default()
    }

    /// Writes `bytes` at byte `offset` of tensor `name`.
    pub fn bytes(&mut self, name: &str, offset: u64, bytes: Vec<u8>) -> &mut Self {
        self.items.push((name.to_string(), offset, Some(bytes)));
        self
    }

    /// Writes u32 words from the start of tensor `name`.
    pub fn u32s(&mut self, name: &str, data: &[u32]) -> &mut Self {
        self.bytes(name, 0, bytemuck::cast_slice(data).to_vec())
    }

    /// Writes f32 values from the start of tensor `name`.
    pub fn f32s(&mut self, name: &str, data: &[f32]) -> &mut Self {
        self.bytes(name, 0, bytemuck::cast_slice(data).to_vec())
    }

    /// Zeroes all of tensor `name`.
    pub fn zero(&mut self, name: &str) -> &mut Self {
        self.items.push((name.to_string(), 0, None));
        self
    }
}

/// How many steps a run may take and how they are split into submissions.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Steps at most (also the histories' length).
    pub max_steps: usize,
    /// Steps of the first submission.
    pub first_chunk: usize,
    /// Steps of each later submission.
    pub chunk: usize,
}

/// Declares a [`LoopPlan`]: its tensors, recorded phases, histories, outputs and stop rule.
pub struct LoopBuilder {
    gpu: Gpu,
    max_steps: usize,
    named: BTreeMap<String, Tensor>,
    init: Recorder,
    chunk: Recorder,
    steps: Vec<Recorder>,
    histories: Vec<(Tensor, Tensor)>,
    outputs: Vec<(String, Tensor)>,
    counter: Option<(Tensor, u64)>,
    step_index: Option<StepIndex>,
    stop: Stop,
    gate: bool,
}

impl LoopBuilder {
    /// A plan on `gpu` whose runs take at most `max_steps` steps.
    pub fn new(gpu: &Gpu, max_steps: usize) -> LoopBuilder {
        LoopBuilder {
            gpu: gpu.clone(),
            max_steps,
            named: BTreeMap::new(),
            init: Recorder::new(gpu),
            chunk: Recorder::new(gpu),
            steps: Vec::new(),
            histories: Vec::new(),
            outputs: Vec::new(),
            counter: None,
            step_index: None,
            stop: Stop::Never,
            gate: false,
        }
    }

    /// The GPU the plan runs on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The most steps a run takes.
    pub fn max_steps(&self) -> usize {
        self.max_steps
    }

    /// A zero-filled tensor owned by the plan (scratch or state; zero when the plan is built, and
    /// holding whatever the last run left unless written or recorded over).
    pub fn buffer(&mut self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::zeros(&self.gpu, shape, dtype)
    }

    /// A plan tensor holding `data` (constant across runs).
    pub fn constant_u32(&mut self, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_u32(&self.gpu, data, shape)
    }

    /// A plan tensor holding `data` (constant across runs).
    pub fn constant_f32(&mut self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_f32(&self.gpu, data, shape)
    }

    /// A zero-filled tensor named `name`: written by [`Writes`] at run start, read back with
    /// [`LoopPlan::tensor`].
    pub fn named(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = self.buffer(shape, dtype)?;
        self.name(name, &t)?;
        Ok(t)
    }

    /// Names an existing tensor (for example one a kernel allocated).
    pub fn name(&mut self, name: &str, t: &Tensor) -> Result<()> {
        if self.named.insert(name.to_string(), t.clone()).is_some() {
            return Err(Error::invalid(OP, format!("tensor {name:?} named twice")));
        }
        Ok(())
    }

    /// The work run once at the start of each run.
    pub fn init(&mut self) -> &mut Recorder {
        &mut self.init
    }

    /// The work run once per submission, before its steps (a loop kernel that runs the chunk's
    /// steps itself, stopping at the [`LoopBuilder::chunk_counter`]).
    pub fn chunk(&mut self) -> &mut Recorder {
        &mut self.chunk
    }

    /// Step recording `phase`: step `s` replays recording `s % phases` (phases 0 and 1 for
    /// ping-pong state halves).
    pub fn step(&mut self, phase: usize) -> &mut Recorder {
        while self.steps.len() <= phase {
            self.steps.push(Recorder::new(&self.gpu));
        }
        &mut self.steps[phase]
    }

    /// Keeps every step's `src`: after step `s` it is copied to row `s` of a new
    /// `[max_steps, ..src]` tensor, which is returned and read back as output `name`.
    pub fn history(&mut self, name: &str, src: &Tensor) -> Result<Tensor> {
        let mut shape = vec![self.max_steps];
        shape.extend_from_slice(src.shape());
        let h = self.buffer(&shape, src.dtype())?;
        if !src.byte_len().is_multiple_of(4) {
            return Err(Error::shape(
                OP,
                format!(
                    "history {name:?}: a step's {:?} is not whole words",
                    src.shape()
                ),
            ));
        }
        self.histories.push((src.clone(), h.clone()));
        self.output(name, &h);
        Ok(h)
    }

    /// Reads `t` back as output `name` at the end of every chunk.
    pub fn output(&mut self, name: &str, t: &Tensor) {
        self.outputs.push((name.to_string(), t.clone()));
    }

    /// Before each chunk the runtime writes the step the chunk stops at (exclusive, u32) at byte
    /// `offset` of `t`, for a loop kernel recorded in [`LoopBuilder::chunk`].
    pub fn chunk_counter(&mut self, t: &Tensor, offset: u64) {
        self.counter = Some((t.clone(), offset));
    }

    /// A `[1]` u32 tensor that holds `s` while step `s`'s recorded work runs (0-based from the
    /// run's start), for step kernels that index by the step on the GPU (a KV cache's write
    /// position, an attention length, a position embedding row). The runtime records a 4-byte
    /// copy from a constant `[max_steps]` table before each step, so a replayed recording sees
    /// the right step without a host write. Every call returns the same tensor.
    pub fn step_index(&mut self) -> Result<Tensor> {
        if let Some(ix) = &self.step_index {
            return Ok(ix.current.clone());
        }
        let steps = u32::try_from(self.max_steps).map_err(|_| {
            Error::invalid(
                OP,
                format!("a step index for {} steps does not fit u32", self.max_steps),
            )
        })?;
        let table: Vec<u32> = (0..steps.max(1)).collect();
        let ix = StepIndex {
            table: Tensor::from_u32(&self.gpu, &table, &[table.len()])?,
            current: self.buffer(&[1], DType::U32)?,
        };
        let current = ix.current.clone();
        self.step_index = Some(ix);
        Ok(current)
    }

    /// When a run may stop before its step limit.
    pub fn stop_when(&mut self, stop: Stop) {
        self.stop = stop;
    }

    /// Skips the step work left in a submission once the stop rule holds on the GPU: with a
    /// [`Stop::StatusSet`] rule, on a device with indirect dispatch, every step dispatch reads its
    /// grid from a buffer that a gate kernel (`kernels::loop_gate`), run before each step, fills
    /// with the full grids while some flag is unset and with zeros once all are set. So several
    /// steps per submission cost nothing past the stop. The copies (step index, histories) still
    /// run: after the stop, step outputs and histories hold stale values, so only a model that
    /// reads no step result past its stop may ask for this (Marian's search records each row's
    /// end). The status must be reset at the start of a run (by the init work or a [`Writes`]),
    /// as the gate reads it before step 0. Without indirect dispatch, or with another stop rule,
    /// steps run as before.
    pub fn gate_steps(&mut self) {
        self.gate = true;
    }

    /// The plan: one readback buffer for every output.
    pub fn build(self) -> Result<LoopPlan> {
        let mut at = 0u64;
        let mut outputs = BTreeMap::new();
        let mut copies = Vec::new();
        for (name, t) in self.outputs {
            let len = t.byte_len().div_ceil(4) * 4;
            copies.push((t.clone(), at, len));
            if outputs.insert(name.clone(), (t, at)).is_some() {
                return Err(Error::invalid(
                    OP,
                    format!("output {name:?} declared twice"),
                ));
            }
            at += len;
        }
        let check = |name: &str| -> Result<()> {
            match outputs.get(name) {
                Some((t, _)) if t.dtype() == DType::U32 => Ok(()),
                _ => Err(Error::invalid(
                    OP,
                    format!("the stop rule reads {name:?}, which is not a u32 output"),
                )),
            }
        };
        match &self.stop {
            Stop::Never => {}
            Stop::TokenSeen { history, .. } => check(history)?,
            Stop::StatusSet { status, .. } => check(status)?,
        }
        let (steps, gate) = match (&self.stop, self.gate && self.gpu.caps().indirect_dispatch) {
            (
                Stop::StatusSet {
                    status,
                    stride,
                    word,
                    rows,
                },
                true,
            ) => {
                let flags = Flags {
                    stride: *stride,
                    word: *word,
                    rows: *rows,
                };
                gated(&self.gpu, &self.steps, &outputs[status].0, flags)?
            }
            _ => (self.steps, None),
        };
        let staging = self.gpu.create_buffer(
            "loop readback",
            at.max(4),
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(LoopPlan {
            _live: self.gpu.live_guard(),
            gpu: self.gpu,
            max_steps: self.max_steps,
            named: self.named,
            init: self.init,
            chunk: self.chunk,
            steps,
            gate,
            histories: self.histories,
            outputs,
            copies,
            counter: self.counter,
            step_index: self.step_index,
            stop: self.stop,
            staging,
        })
    }
}

/// The step recordings with every dispatch reading its grid from one `live [D, 3]` args tensor,
/// and the gate recording that fills it from the recorded grids (`full`) before each step.
fn gated(
    gpu: &Gpu,
    steps: &[Recorder],
    status: &Tensor,
    flags: Flags,
) -> Result<(Vec<Recorder>, Option<Recorder>)> {
    let grids: Vec<u32> = steps
        .iter()
        .flat_map(|r| r.steps())
        .filter_map(|s| match s {
            Step::Dispatch(d) => Some(d.workgroups()),
            Step::Copy { .. } => None,
        })
        .flatten()
        .collect();
    if grids.is_empty() {
        return Ok((steps.to_vec(), None));
    }
    let n = grids.len() / 3;
    let full = Tensor::from_u32(gpu, &grids, &[n, 3])?;
    let live = Tensor::indirect_args(gpu, n)?;
    let mut slot = 0u64;
    let steps = steps
        .iter()
        .map(|r| {
            r.map_dispatches(|d| {
                slot += 1;
                d.with_indirect(&live, (slot - 1) * 12)
            })
        })
        .collect();
    let mut gate = Recorder::new(gpu);
    record_loop_gate(&mut gate, status, flags, &full, &live)?;
    Ok((steps, Some(gate)))
}

/// A prepared loop: run it with [`LoopPlan::run`]. Runs of one plan must take turns (they share
/// its buffers); the caller holds it behind a lock.
pub struct LoopPlan {
    gpu: Gpu,
    max_steps: usize,
    named: BTreeMap<String, Tensor>,
    init: Recorder,
    chunk: Recorder,
    steps: Vec<Recorder>,
    /// The gate kernel run before each step when steps are gated ([`LoopBuilder::gate_steps`]).
    gate: Option<Recorder>,
    histories: Vec<(Tensor, Tensor)>,
    outputs: BTreeMap<String, (Tensor, u64)>,
    copies: Vec<(Tensor, u64, u64)>,
    counter: Option<(Tensor, u64)>,
    step_index: Option<StepIndex>,
    stop: Stop,
    staging: crate::gpu::Guarded<wgpu::Buffer>,
    /// Counts the readback buffer as live.
    _live: Arc<LiveBuffer>,
}

impl std::fmt::Debug for LoopPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopPlan")
            .field("max_steps", &self.max_steps)
            .field("named", &self.named.keys().collect::<Vec<_>>())
            .field("outputs", &self.outputs.keys().collect::<Vec<_>>())
            .field("steps", &self.steps.len())
            .finish()
    }
}

impl LoopPlan {
    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.named
            .get(name)
            .ok_or_else(|| Error::invalid(OP, format!("no tensor named {name:?}")))
    }

    /// Dispatches recorded per step, summed over the step phases (the fused loop records none).
    pub fn step_dispatches(&self) -> usize {
        self.steps.iter().map(Recorder::dispatch_count).sum()
    }

    /// Writes `writes`, then submits chunks of steps (the init work with the first) until the stop
    /// rule holds after a chunk or `schedule.max_steps` steps ran; one readback per chunk.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, writes: &Writes, schedule: Schedule) -> Result<LoopResults> {
        pollster::block_on(self.run_async(writes, schedule))
    }

    /// [`LoopPlan::run`] without blocking on the per-chunk readbacks (the one implementation).
    pub async fn run_async(&self, writes: &Writes, schedule: Schedule) -> Result<LoopResults> {
        let Schedule {
            max_steps,
            first_chunk,
            chunk,
        } = schedule;
        if max_steps > self.max_steps || first_chunk == 0 || chunk == 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "schedule {schedule:?} for a plan of at most {} steps (chunks must be >= 1)",
                    self.max_steps
                ),
            ));
        }
        for (name, offset, bytes) in &writes.items {
            let t = self.tensor(name)?;
            let len = match bytes {
                Some(b) => b.len() as u64,
                None => t.byte_len(),
            };
            if offset.checked_add(len).is_none_or(|end| end > t.byte_len()) {
                return Err(Error::shape(
                    OP,
                    format!(
                        "writing {len} bytes at {offset} into {name:?} {}{:?} ({} bytes)",
                        t.dtype(),
                        t.shape(),
                        t.byte_len()
                    ),
                ));
            }
            match bytes {
                Some(b) => t.write_bytes(&self.gpu, *offset, b),
                None => t.write_bytes(&self.gpu, 0, &vec![0u8; len as usize]),
            }
        }
        let mut steps_run = 0;
        let mut bytes = Vec::new();
        let mut chunk_times = Vec::new();
        while steps_run < max_steps {
            #[cfg(not(target_arch = "wasm32"))]
            let started = std::time::Instant::now();
            let n = if steps_run == 0 { first_chunk } else { chunk }.min(max_steps - steps_run);
            let mut rec = if steps_run == 0 {
                self.init.clone()
            } else {
                Recorder::new(&self.gpu)
            };
            if let Some((t, offset)) = &self.counter {
                let stop = u32::try_from(steps_run + n).unwrap_or(u32::MAX);
                t.write_bytes(&self.gpu, *offset, &stop.to_le_bytes());
            }
            rec.extend(self.chunk.clone());
            if !self.steps.is_empty() {
                for s in steps_run..steps_run + n {
                    if let Some(ix) = &self.step_index {
                        rec.copy(ix.table.buffer(), s as u64 * 4, ix.current.buffer(), 0, 4);
                    }
                    if let Some(g) = &self.gate {
                        rec.extend(g.clone());
                    }
                    rec.extend(self.steps[s % self.steps.len()].clone());
                    for (src, hist) in &self.histories {
                        let len = src.byte_len();
                        rec.copy(src.buffer(), 0, hist.buffer(), s as u64 * len, len);
                    }
                }
            }
            for (t, at, len) in &self.copies {
                rec.copy(t.buffer(), 0, &self.staging, *at, *len);
            }
            let idx = rec.submit()?;
            let first_step = steps_run;
            steps_run += n;
            // Wait for this chunk only, not for other threads' later submissions.
            bytes = self
                .gpu
                .read_mapped_after_async(
                    &self.staging,
                    self.staging.size(),
                    Some(&idx),
                    "loop readback",
                )
                .await?;
            #[cfg(not(target_arch = "wasm32"))]
            chunk_times.push(ChunkTime {
                first_step,
                steps: n,
                seconds: started.elapsed().as_secs_f64(),
            });
            #[cfg(target_arch = "wasm32")]
            let _ = (first_step, &mut chunk_times);
            if self.stopped(&bytes, steps_run) {
                break;
            }
        }
        Ok(LoopResults {
            bytes,
            outputs: self
                .outputs
                .iter()
                .map(|(n, (t, at))| (n.clone(), (t.shape().to_vec(), t.dtype(), *at)))
                .collect(),
            steps_run,
            chunk_times,
        })
    }

    fn stopped(&self, bytes: &[u8], steps_run: usize) -> bool {
        let words = |name: &str| -> Option<Vec<u32>> {
            let (t, at) = self.outputs.get(name)?;
            let at = *at as usize;
            Some(bytemuck::pod_collect_to_vec(
                bytes.get(at..at + t.numel() * 4)?,
            ))
        };
        match &self.stop {
            Stop::Never => false,
            Stop::TokenSeen {
                history,
                token,
                rows,
            } => {
                let Some(h) = words(history) else {
                    return false;
                };
                let width = h.len() / self.max_steps.max(1);
                (0..*rows).all(|i| (0..steps_run).any(|s| h.get(s * width + i) == Some(token)))
            }
            Stop::StatusSet {
                status,
                stride,
                word,
                rows,
            } => {
                let Some(c) = words(status) else {
                    return false;
                };
                (0..*rows).all(|i| c.get(i * stride + word).is_some_and(|&w| w != 0))
            }
        }
    }
}

/// A run's outputs (as of its last chunk), by name.
#[derive(Debug)]
pub struct LoopResults {
    bytes: Vec<u8>,
    outputs: BTreeMap<String, (Vec<usize>, DType, u64)>,
    /// Steps run.
    pub steps_run: usize,
    /// Wall time of every chunk, from recording it to its readback (native builds; empty in the
    /// browser, which has no monotonic clock here): what a step costs at a given position,
    /// measured within one run (`heedful bench --filter per_token`).
    pub chunk_times: Vec<ChunkTime>,
}

/// The wall time of one chunk of a loop run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChunkTime {
    /// Index of its first step.
    pub first_step: usize,
    /// Steps it ran.
    pub steps: usize,
    /// Seconds from recording it to its readback.
    pub seconds: f64,
}

impl LoopResults {
    fn raw(&self, name: &str, want: &[DType]) -> Result<&[u8]> {
        let (shape, dtype, at) = self
            .outputs
            .get(name)
            .ok_or_else(|| Error::invalid(OP, format!("no output named {name:?}")))?;
        if !want.contains(dtype) {
            return Err(Error::DType {
                op: OP.into(),
                operand: name.into(),
                got: dtype.to_string(),
                expected: format!("{want:?}"),
            });
        }
        let n: usize = shape.iter().product::<usize>() * dtype.size();
        let at = *at as usize;
        Ok(&self.bytes[at..at + n])
    }

    /// Output `name` (u32) as words.
    pub fn u32s(&self, name: &str) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(self.raw(name, &[DType::U32])?))
    }

    /// Output `name` (f32, or u32 words holding f32 bits) as f32.
    pub fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(
            self.raw(name, &[DType::F32, DType::U32])?,
        ))
    }

    /// The shape of output `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.outputs.get(name).map(|(s, _, _)| &s[..])
    }
}
