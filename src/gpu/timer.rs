//! Timing of recorded GPU work: timestamp queries where the device has them, wall clock otherwise.
//!
//! A measurement counts only once the GPU has finished: the timer waits on the queue (and reads the
//! resolved timestamps back) before it returns.

use std::time::Instant;

use super::context::Gpu;
use super::recorder::{PassTimestamps, Recorder};
use super::serial::Guarded;
use crate::error::Result;

/// Times a [`Recorder`]'s execution on the GPU.
pub struct Timer {
    gpu: Gpu,
    queries: Option<(
        Guarded<wgpu::QuerySet>,
        Guarded<wgpu::Buffer>,
        Guarded<wgpu::Buffer>,
    )>,
}

impl Timer {
    /// A timer that uses GPU timestamps when the device supports them, unless `wall_clock` is set.
    pub fn new(gpu: &Gpu, wall_clock: bool) -> Result<Timer> {
        let queries = if gpu.caps().timestamps && !wall_clock {
            let set = gpu.timestamp_queries("heedful timer", 2);
            let resolve = gpu.create_buffer(
                "timer resolve",
                16,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            )?;
            let read = gpu.create_buffer(
                "timer read",
                16,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?;
            Some((set, resolve, read))
        } else {
            None
        };
        Ok(Timer {
            gpu: gpu.clone(),
            queries,
        })
    }

    /// "gpu timestamps" or "wall clock".
    pub fn method(&self) -> &'static str {
        if self.queries.is_some() {
            "gpu timestamps"
        } else {
            "wall clock"
        }
    }

    /// Runs `rec` once and returns the seconds it took on the GPU.
    pub fn time(&self, rec: &Recorder) -> Result<f64> {
        let device = self.gpu.device();
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("timed"),
        });
        match &self.queries {
            None => {
                rec.encode(&mut enc, None);
                let t0 = Instant::now();
                self.gpu.submit(enc.finish());
                self.gpu.wait()?;
                Ok(t0.elapsed().as_secs_f64())
            }
            Some((set, resolve, read)) => {
                rec.encode(&mut enc, Some(PassTimestamps { set, begin: 0 }));
                enc.resolve_query_set(set, 0..2, resolve, 0);
                enc.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
                self.gpu.submit(enc.finish());
                let bytes = self.gpu.read_mapped(read, 16, "reading timestamps")?;
                let ticks: [u64; 2] = bytemuck::pod_read_unaligned(&bytes);
                let ns = ticks[1].wrapping_sub(ticks[0]) as f64
                    * self.gpu.caps().timestamp_period_ns as f64;
                Ok(ns * 1e-9)
            }
        }
    }
}
