//! Per-node timing of a graph run: a table, and a Chrome-trace JSON that Perfetto opens.

#[cfg(not(target_arch = "wasm32"))]
use std::collections::HashMap;
use std::fmt;

#[cfg(not(target_arch = "wasm32"))]
use super::executor::{HostInput, HostOutput, Plan};
#[cfg(not(target_arch = "wasm32"))]
use crate::error::Result;
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::{Gpu, PassTimestamps};

/// One node's timing.
#[derive(Clone, Debug)]
pub struct ProfileRow {
    /// Node index in the graph.
    pub node: usize,
    /// Op name.
    pub op: &'static str,
    /// Input shapes.
    pub shapes: String,
    /// Start relative to the first node, ms.
    pub start_ms: f64,
    /// Duration, ms.
    pub ms: f64,
}

/// The timings of one profiled run.
#[derive(Clone, Debug)]
pub struct Profile {
    /// One row per node, in execution order.
    pub rows: Vec<ProfileRow>,
    /// "gpu timestamps" or "wall clock".
    pub method: &'static str,
}

impl Profile {
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn new(rows: Vec<ProfileRow>, method: &'static str) -> Profile {
        Profile { rows, method }
    }

    /// Sum of node times, ms.
    pub fn total_ms(&self) -> f64 {
        self.rows.iter().map(|r| r.ms).sum()
    }

    /// The Chrome trace event format (`{"traceEvents": [...]}` with complete "X" events, times in
    /// microseconds); open it in Perfetto (ui.perfetto.dev) or chrome://tracing.
    pub fn chrome_trace(&self) -> serde_json::Value {
        let events: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.op, "cat": "gpu", "ph": "X", "pid": 1, "tid": 1,
                    "ts": r.start_ms * 1e3, "dur": r.ms * 1e3,
                    "args": { "node": r.node, "inputs": r.shapes },
                })
            })
            .collect();
        serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms",
                            "otherData": { "timing": self.method } })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total_ms().max(1e-12);
        writeln!(
            f,
            "{:>5}  {:<14} {:>10} {:>7}  inputs   ({})",
            "node", "op", "ms", "share", self.method
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>5}  {:<14} {:>10.4} {:>6.1}%  {}",
                r.node,
                r.op,
                r.ms,
                100.0 * r.ms / total,
                r.shapes
            )?;
        }
        write!(
            f,
            "total {:.4} ms over {} nodes",
            self.total_ms(),
            self.rows.len()
        )
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Plan {
    /// A run that also times every node: with GPU timestamps (one compute pass per node) where the
    /// device has them, else by submitting and waiting node by node (wall clock).
    pub fn run_profiled(
        &mut self,
        gpu: &Gpu,
        inputs: &[(&str, HostInput)],
    ) -> Result<(HashMap<String, HostOutput>, Profile)> {
        self.upload(gpu, inputs)?;
        let n = self.node_steps.len();
        let mut rows = Vec::with_capacity(n);
        if gpu.caps().timestamps && n > 0 {
            if self.profiler.is_none() {
                let count = (2 * n) as u32;
                let set = gpu.timestamp_queries("graph profile", count);
                let bytes = 16 * n as u64;
                let resolve = gpu.create_buffer(
                    "profile resolve",
                    bytes,
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                )?;
                let read = gpu.create_buffer(
                    "profile read",
                    bytes,
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                )?;
                self.profiler = Some((set, resolve, read));
            }
            let Some((set, resolve, read)) = self.profiler.as_ref() else {
                return Err(crate::Error::invalid(
                    "graph profile",
                    "no timestamp queries",
                ));
            };
            let mut enc = gpu
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("graph profile"),
                });
            for (k, (_, _, _, range)) in self.node_steps.iter().enumerate() {
                let sub = self.steps.slice(range.clone());
                sub.encode(
                    &mut enc,
                    Some(PassTimestamps {
                        set,
                        begin: 2 * k as u32,
                    }),
                );
            }
            enc.resolve_query_set(set, 0..(2 * n) as u32, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, read, 0, 16 * n as u64);
            self.encode_readback(&mut enc);
            gpu.submit(enc.finish());
            let outputs = pollster::block_on(self.read_outputs(gpu, None))?;
            let bytes = gpu.read_mapped(read, 16 * n as u64, "reading profile timestamps")?;
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
            let period = gpu.caps().timestamp_period_ns as f64;
            let t0 = ticks[0];
            for (k, (ni, op, shapes, _)) in self.node_steps.iter().enumerate() {
                let (b, e) = (ticks[2 * k], ticks[2 * k + 1]);
                rows.push(ProfileRow {
                    node: *ni,
                    op,
                    shapes: shapes.clone(),
                    start_ms: b.wrapping_sub(t0) as f64 * period * 1e-6,
                    ms: e.saturating_sub(b) as f64 * period * 1e-6,
                });
            }
            return Ok((outputs, Profile::new(rows, "gpu timestamps")));
        }
        let origin = std::time::Instant::now();
        for (ni, op, shapes, range) in &self.node_steps {
            let sub = self.steps.slice(range.clone());
            let t = std::time::Instant::now();
            sub.submit()?;
            gpu.wait()?;
            rows.push(ProfileRow {
                node: *ni,
                op,
                shapes: shapes.clone(),
                start_ms: (t - origin).as_secs_f64() * 1e3,
                ms: t.elapsed().as_secs_f64() * 1e3,
            });
        }
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("graph readback"),
            });
        self.encode_readback(&mut enc);
        gpu.submit(enc.finish());
        Ok((
            pollster::block_on(self.read_outputs(gpu, None))?,
            Profile::new(rows, "wall clock"),
        ))
    }
}
