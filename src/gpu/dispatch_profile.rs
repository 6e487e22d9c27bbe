//! Per-kernel GPU time of everything a [`Gpu`] runs through [`Recorder::submit`], for finding
//! where a model's time goes on a real GPU (`HEEDFUL_PROFILE=1`, [`GpuOptions::profile_dispatches`]).
//!
//! In this mode every dispatch gets its own compute pass with a beginning and an end timestamp,
//! and each submission is waited for and its timestamps read back before the call returns. The
//! extra passes, barriers and waits change the timing being measured (they serialize the work
//! and add the round trips), so the figures say which kernels dominate, not what a normal run
//! takes. Runs without the option pay nothing. Native only (the readback blocks): in the browser
//! the option is ignored.
//!
//! [`GpuOptions::profile_dispatches`]: crate::gpu::GpuOptions::profile_dispatches

#[cfg(not(target_arch = "wasm32"))]
use super::context::Gpu;
#[cfg(not(target_arch = "wasm32"))]
use super::recorder::{Recorder, Step};
#[cfg(not(target_arch = "wasm32"))]
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;

/// Timestamp queries per query set (wgpu's limit is 4096 queries per set): each chunk of a
/// recording gets at most half as many dispatches.
#[cfg(not(target_arch = "wasm32"))]
const QUERIES_PER_SET: u32 = 4096;

/// One kernel's totals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelTime {
    /// Dispatches timed.
    pub dispatches: u64,
    /// Summed GPU time between each dispatch's pass timestamps, milliseconds.
    pub gpu_ms: f64,
}

/// Per-kernel GPU times summed over every profiled submission (see the module docs).
#[derive(Debug, Default)]
pub struct DispatchProfile {
    /// Keyed by kernel label and workgroup grid (`matmul 16x8x1`, `gated` added for the loop
    /// runtime's indirect dispatches), so one kernel's shapes show apart.
    kernels: Mutex<HashMap<String, KernelTime>>,
    /// (submissions, wall milliseconds of the profiled submissions, host encode included).
    submits: Mutex<(u64, f64)>,
}

impl DispatchProfile {
    /// The totals per kernel label and workgroup grid, largest GPU time first.
    pub fn kernels(&self) -> Vec<(String, KernelTime)> {
        let map = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        rows.sort_by(|a, b| b.1.gpu_ms.total_cmp(&a.1.gpu_ms).then(a.0.cmp(&b.0)));
        rows
    }

    /// A table: kernel, dispatches, total GPU ms, mean microseconds, share of the summed time;
    /// then the submissions and their wall time.
    pub fn report(&self) -> String {
        let rows = self.kernels();
        let total: f64 = rows.iter().map(|r| r.1.gpu_ms).sum();
        let (submits, wall) = *self.submits.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = format!(
            "dispatch profile (HEEDFUL_PROFILE=1; one pass per dispatch, each submission waited for)\n\
             {:<40} {:>10} {:>12} {:>10} {:>7}\n",
            "kernel and grid", "dispatches", "gpu ms", "mean us", "share"
        );
        for (label, k) in &rows {
            let _ = writeln!(
                out,
                "{label:<40} {:>10} {:>12.3} {:>10.2} {:>6.1}%",
                k.dispatches,
                k.gpu_ms,
                1e3 * k.gpu_ms / k.dispatches.max(1) as f64,
                100.0 * k.gpu_ms / total.max(f64::MIN_POSITIVE)
            );
        }
        let _ = writeln!(
            out,
            "{:<40} {:>10} {:>12.3}   (GPU sum {total:.3} ms; the rest is host work and waits)",
            "submissions (wall ms)", submits, wall
        );
        out
    }

    /// Encodes `rec` with one timed pass per dispatch, submits, waits and adds the times (native
    /// only: it blocks on the readback, which a browser cannot).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn submit_timed(&self, gpu: &Gpu, rec: &Recorder) -> Result<wgpu::SubmissionIndex> {
        let started = Instant::now();
        let steps = rec.steps();
        let per_set = (QUERIES_PER_SET / 2) as usize;
        let mut last = None;
        let mut begin = 0;
        // Chunks of at most `per_set` dispatches (copies ride along in order).
        while begin < steps.len() || last.is_none() {
            let mut end = begin;
            let mut labels = Vec::new();
            while end < steps.len() && labels.len() < per_set {
                if let Step::Dispatch(d) = &steps[end] {
                    // A gated (indirect) dispatch shows the grid it has when its step runs.
                    let [x, y, z] = d.workgroups;
                    let gated = if d.indirect.is_some() { " gated" } else { "" };
                    labels.push(format!("{} {x}x{y}x{z}{gated}", d.label));
                }
                end += 1;
            }
            last = Some(self.submit_chunk(gpu, &steps[begin..end], &labels)?);
            begin = end;
        }
        let mut s = self.submits.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        s.1 += started.elapsed().as_secs_f64() * 1e3;
        last.ok_or_else(|| Error::invalid("dispatch profile", "nothing submitted"))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn submit_chunk(
        &self,
        gpu: &Gpu,
        steps: &[Step],
        labels: &[String],
    ) -> Result<wgpu::SubmissionIndex> {
        let during = "profiling dispatches";
        let n = labels.len();
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("heedful profile"),
            });
        let timing = if n > 0 {
            let set = gpu.timestamp_queries("dispatch profile", (2 * n) as u32);
            let bytes = 16 * n as u64;
            let resolve = gpu.create_buffer(
                "dispatch profile resolve",
                bytes,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            )?;
            let read = gpu.create_buffer(
                "dispatch profile read",
                bytes,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?;
            Some((set, resolve, read, bytes))
        } else {
            None
        };
        let mut k = 0u32;
        for step in steps {
            match step {
                Step::Copy { .. } => step.encode_copy(&mut enc),
                Step::Dispatch(d) => {
                    let Some((set, ..)) = &timing else {
                        continue;
                    };
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(d.label),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: set,
                            beginning_of_pass_write_index: Some(2 * k),
                            end_of_pass_write_index: Some(2 * k + 1),
                        }),
                    });
                    d.encode_into(&mut pass);
                    k += 1;
                }
            }
        }
        if let Some((set, resolve, read, bytes)) = &timing {
            enc.resolve_query_set(set, 0..2 * k, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, read, 0, *bytes);
        }
        let idx = gpu.submit(enc.finish());
        gpu.check_errors(during)?;
        if let Some((_, _, read, bytes)) = &timing {
            let raw = gpu.read_mapped_after(read, *bytes, Some(&idx), during)?;
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
            let period_ms = gpu.caps().timestamp_period_ns as f64 * 1e-6;
            let mut map = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
            for (i, label) in labels.iter().enumerate() {
                let t = map.entry(label.clone()).or_default();
                t.dispatches += 1;
                t.gpu_ms += ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period_ms;
            }
        }
        Ok(idx)
    }
}
