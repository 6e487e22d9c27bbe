//! Records prepared dispatches and copies, then submits them as one command buffer.
//!
//! Consecutive dispatches share one compute pass (wgpu inserts the barriers between them), so a
//! recurrent layer's hundreds of steps or a whole model go to the GPU in a single submission.

use std::sync::atomic::Ordering;

use super::context::Gpu;
use super::pipeline::Dispatch;
use crate::error::Result;

/// One recorded step.
#[derive(Clone, Debug)]
pub enum Step {
    /// A compute dispatch.
    Dispatch(Dispatch),
    /// A buffer-to-buffer copy (byte offsets and size multiples of 4).
    Copy {
        /// Source buffer.
        src: wgpu::Buffer,
        /// Byte offset in the source.
        src_offset: u64,
        /// Destination buffer.
        dst: wgpu::Buffer,
        /// Byte offset in the destination.
        dst_offset: u64,
        /// Bytes to copy.
        size: u64,
    },
}

impl Step {
    /// Encodes a copy step into `encoder` (a dispatch is encoded by its pass: nothing here).
    pub(crate) fn encode_copy(&self, encoder: &mut wgpu::CommandEncoder) {
        if let Step::Copy {
            src,
            src_offset,
            dst,
            dst_offset,
            size,
        } = self
        {
            encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
        }
    }
}

/// Timestamp slots written at the start and end of each compute pass an encode makes.
#[derive(Clone, Copy, Debug)]
pub struct PassTimestamps<'a> {
    /// The query set (type Timestamp).
    pub set: &'a wgpu::QuerySet,
    /// Index of the beginning-of-pass query; the end goes to `begin + 1`.
    pub begin: u32,
}

/// A list of steps to run in order on the GPU. Its steps (the copies' buffer handles, the
/// dispatches' bind groups) are dropped under the device lock on GL ([`Gpu::lock_device`]).
#[derive(Clone, Debug)]
pub struct Recorder {
    gpu: Gpu,
    steps: Vec<Step>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // A copy step's buffer handle may be the last one (GL; see `gpu::serial`).
        let _g = self.gpu.lock_device();
        self.steps.clear();
    }
}

impl Recorder {
    /// An empty recording on `gpu`.
    pub fn new(gpu: &Gpu) -> Self {
        Recorder {
            gpu: gpu.clone(),
            steps: Vec::new(),
        }
    }

    /// The GPU this records for.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Appends a dispatch.
    pub fn push(&mut self, d: Dispatch) {
        self.steps.push(Step::Dispatch(d));
    }

    /// Appends a buffer copy.
    pub fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) {
        if size > 0 {
            self.steps.push(Step::Copy {
                src: src.clone(),
                src_offset,
                dst: dst.clone(),
                dst_offset,
                size,
            });
        }
    }

    /// Appends every step of `other`.
    pub fn extend(&mut self, mut other: Recorder) {
        self.steps.append(&mut other.steps);
    }

    /// A recorder holding a copy of the steps in `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Recorder {
        Recorder {
            gpu: self.gpu.clone(),
            steps: self.steps[range].to_vec(),
        }
    }

    /// The same steps with every dispatch replaced by `f(dispatch)` (copies kept).
    pub fn map_dispatches(&self, mut f: impl FnMut(&Dispatch) -> Dispatch) -> Recorder {
        Recorder {
            gpu: self.gpu.clone(),
            steps: self
                .steps
                .iter()
                .map(|s| match s {
                    Step::Dispatch(d) => Step::Dispatch(f(d)),
                    copy => copy.clone(),
                })
                .collect(),
        }
    }

    /// The recorded steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Number of compute dispatches recorded.
    pub fn dispatch_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Dispatch(_)))
            .count()
    }

    /// Encodes the steps into `encoder`. With `timestamps`, the first compute pass writes the
    /// beginning query and the last one the end query, so their difference spans all dispatches.
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        timestamps: Option<PassTimestamps<'_>>,
    ) {
        let passes = self
            .steps
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                matches!(s, Step::Dispatch(_))
                    && (*i == 0 || !matches!(self.steps[i - 1], Step::Dispatch(_)))
            })
            .count();
        let mut pass_no = 0;
        let mut i = 0;
        while i < self.steps.len() {
            match &self.steps[i] {
                step @ Step::Copy { .. } => {
                    step.encode_copy(encoder);
                    i += 1;
                }
                Step::Dispatch(_) => {
                    // Only the first pass writes the beginning and only the last the end; a pass
                    // in between gets no timestamp writes at all (wgpu rejects writes with neither).
                    let (first, last) = (pass_no == 0, pass_no + 1 == passes);
                    let tw = timestamps.filter(|_| first || last).map(|t| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: t.set,
                            beginning_of_pass_write_index: first.then_some(t.begin),
                            end_of_pass_write_index: last.then_some(t.begin + 1),
                        }
                    });
                    pass_no += 1;
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("heedful"),
                        timestamp_writes: tw,
                    });
                    while let Some(Step::Dispatch(d)) = self.steps.get(i) {
                        d.encode_into(&mut pass);
                        i += 1;
                    }
                }
            }
        }
    }

    /// Encodes and submits everything as one command buffer (does not wait).
    pub fn submit(&self) -> Result<wgpu::SubmissionIndex> {
        self.gpu.check_lost("submitting recorded work")?;
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(profile) = self.gpu.dispatch_profile() {
            let idx = profile.submit_timed(&self.gpu, self)?;
            self.gpu.counters().submits.fetch_add(1, Ordering::Relaxed);
            return Ok(idx);
        }
        let device = self.gpu.device();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("heedful"),
        });
        self.encode(&mut encoder, None);
        let idx = self.gpu.submit(encoder.finish());
        self.gpu.counters().submits.fetch_add(1, Ordering::Relaxed);
        self.gpu.check_errors("submitting recorded work")?;
        Ok(idx)
    }
}
