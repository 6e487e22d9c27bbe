//! Plans (one per input shape) and sessions that run them.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::Ordering;

use super::planner::{self, MemoryPlan};
use super::{Dim, Graph, Source};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Guarded, Recorder};
use crate::tensor::{numel, DType, Tensor};

/// Host data for one graph input.
#[derive(Clone, Debug)]
pub struct HostInput {
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes of the input's dtype.
    pub bytes: Vec<u8>,
    /// Element type.
    pub dtype: DType,
}

impl HostInput {
    /// An f32 input.
    pub fn f32(data: Vec<f32>, shape: &[usize]) -> HostInput {
        HostInput {
            shape: shape.to_vec(),
            bytes: bytemuck::cast_slice(&data).to_vec(),
            dtype: DType::F32,
        }
    }

    /// An i32 input (token ids, lengths).
    pub fn i32(data: Vec<i32>, shape: &[usize]) -> HostInput {
        HostInput {
            shape: shape.to_vec(),
            bytes: bytemuck::cast_slice(&data).to_vec(),
            dtype: DType::I32,
        }
    }
}

impl HostInput {
    /// A u32 input (masks).
    pub fn u32(data: Vec<u32>, shape: &[usize]) -> HostInput {
        HostInput {
            shape: shape.to_vec(),
            bytes: bytemuck::cast_slice(&data).to_vec(),
            dtype: DType::U32,
        }
    }
}

/// One output read back after a run.
#[derive(Clone, Debug)]
pub struct HostOutput {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values as f32.
    pub data: Vec<f32>,
}

pub(super) struct OutputSlot {
    name: String,
    tensor: Tensor,
    staging: Guarded<wgpu::Buffer>,
}

/// Everything needed to run a graph for one set of input shapes, built once: tensors placed in
/// planned buffers, dispatches with their bind groups, and readback staging buffers.
pub struct Plan {
    pub(super) inputs: Vec<(String, Tensor)>,
    /// (input name, table rows V, node index) for each graph input read directly as the ids of an
    /// embedding node: [`Plan::upload`] checks the host ids against `[0, V)`, as PyTorch's
    /// IndexError, since the GPU gather gives a zero row for an id past the table. Ids a node
    /// computes on the GPU (not a host input) are not checked: the kernel's zero row stands.
    pub(super) id_limits: Vec<(String, usize, usize)>,
    pub(super) outputs: Vec<OutputSlot>,
    pub(super) steps: Recorder,
    /// (node index, op name, shapes, range of steps) per node, for profiles.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // read by the native-only profiler
    pub(super) node_steps: Vec<(usize, &'static str, String, Range<usize>)>,
    pub(super) memory: MemoryPlan,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(super) profiler: Option<(
        Guarded<wgpu::QuerySet>,
        Guarded<wgpu::Buffer>,
        Guarded<wgpu::Buffer>,
    )>,
}

/// Checks host ids `h` (i32 or u32) of input `name` against an embedding table of `v` rows read
/// by graph node `node`: the first id outside `[0, V)` is an error naming it and its position.
/// A broken planner invariant, as an error rather than a panic.
fn internal(what: &str) -> Error {
    Error::invalid("graph plan", format!("internal error: {what}"))
}

fn check_ids(name: &str, h: &HostInput, v: usize, node: usize) -> Result<()> {
    let signed = h.dtype == DType::I32;
    for (pos, c) in h.bytes.chunks_exact(4).enumerate() {
        let bits = [c[0], c[1], c[2], c[3]];
        let id = if signed {
            i64::from(i32::from_le_bytes(bits))
        } else {
            i64::from(u32::from_le_bytes(bits))
        };
        if id < 0 || id as u64 >= v as u64 {
            return Err(Error::invalid(
                "graph run",
                format!(
                    "input {name:?}: id {id} at position {pos} (of {:?}) is out of range for the \
                     embedding table of graph node {node} ({v} rows)",
                    h.shape
                ),
            ));
        }
    }
    Ok(())
}

impl Plan {
    /// Builds the plan for `graph` with these input shapes.
    pub fn build(
        gpu: &Gpu,
        graph: &Graph,
        input_shapes: &BTreeMap<String, Vec<usize>>,
    ) -> Result<Plan> {
        // Bind symbolic dims and compute every value's shape and dtype.
        let mut symbols: HashMap<String, usize> = HashMap::new();
        let mut shapes: Vec<Option<(Vec<usize>, DType)>> = vec![None; graph.values.len()];
        for (v, src) in graph.values.iter().enumerate() {
            match src {
                Source::Input { name, dims, dtype } => {
                    let given = input_shapes.get(name).ok_or_else(|| {
                        Error::invalid("graph run", format!("input {name:?} was not given"))
                    })?;
                    if given.len() != dims.len() {
                        return Err(Error::shape(
                            "graph run",
                            format!(
                                "input {name:?} has shape {given:?}, expected {} dims {dims:?}",
                                dims.len()
                            ),
                        ));
                    }
                    for (g, d) in given.iter().zip(dims) {
                        match d {
                            Dim::Fixed(n) if n != g => {
                                return Err(Error::shape(
                                    "graph run",
                                    format!(
                                        "input {name:?} has shape {given:?}, expected {dims:?}"
                                    ),
                                ))
                            }
                            Dim::Symbol(s) => {
                                if let Some(prev) = symbols.insert(s.clone(), *g) {
                                    if prev != *g {
                                        return Err(Error::shape(
                                            "graph run",
                                            format!("dim {s:?} is {prev} in one input and {g} in {name:?}"),
                                        ));
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    shapes[v] = Some((given.clone(), *dtype));
                }
                Source::Weight(t) => shapes[v] = Some((t.shape().to_vec(), t.dtype())),
                Source::Node => {}
            }
        }
        for name in input_shapes.keys() {
            let known = graph
                .values
                .iter()
                .any(|s| matches!(s, Source::Input { name: n, .. } if n == name));
            if !known {
                return Err(Error::invalid(
                    "graph run",
                    format!("unknown input {name:?}"),
                ));
            }
        }
        for (ni, node) in graph.nodes.iter().enumerate() {
            let ins = node
                .inputs
                .iter()
                .map(|i| {
                    shapes[i.0]
                        .clone()
                        .ok_or_else(|| internal("an operand follows its node"))
                })
                .collect::<Result<Vec<_>>>()?;
            let outs = crate::kernels::op::infer_checked(node.op.as_ref(), &ins)
                .map_err(|e| node_error(ni, node.op.name(), &ins, e))?;
            for (o, s) in node.outputs.iter().zip(outs) {
                shapes[o.0] = Some(s);
            }
        }
        let shapes: Vec<(Vec<usize>, DType)> = shapes
            .into_iter()
            .map(|s| s.ok_or_else(|| internal("a value's shape was not inferred")))
            .collect::<Result<_>>()?;
        let bytes: Vec<u64> = shapes
            .iter()
            .map(|(s, d)| numel(s).map(|n| (n * d.size()) as u64))
            .collect::<Result<_>>()?;
        let memory = planner::plan(graph, &bytes);

        // Buffers: reusable slots for intermediates, own buffers for inputs and outputs.
        // Slots are u32 tensors (counted as live buffers) that nodes view at their own dtype.
        let slots = memory
            .slot_sizes
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                Tensor::zeros(gpu, &[b.div_ceil(4) as usize], DType::U32)
                    .map_err(|e| e.within(&slot_user(graph, &memory, i)))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut tensors: Vec<Option<Tensor>> = vec![None; graph.values.len()];
        let mut inputs = Vec::new();
        for (v, src) in graph.values.iter().enumerate() {
            let (shape, dtype) = &shapes[v];
            tensors[v] = match src {
                Source::Input { name, .. } => {
                    let t = Tensor::zeros(gpu, shape, *dtype)
                        .map_err(|e| e.within(&format!("graph input {name:?}")))?;
                    inputs.push((name.clone(), t.clone()));
                    Some(t)
                }
                Source::Weight(t) => Some(t.clone()),
                Source::Node => None,
            };
        }
        let mut id_limits = Vec::new();
        for (ni, node) in graph.nodes.iter().enumerate() {
            for &(ids_at, table_at) in node.op.id_operands() {
                let (Some(ids), Some(w)) = (node.inputs.get(ids_at), node.inputs.get(table_at))
                else {
                    continue;
                };
                if let (Source::Input { name, .. }, [v, _]) =
                    (&graph.values[ids.0], shapes[w.0].0.as_slice())
                {
                    id_limits.push((name.clone(), *v, ni));
                }
            }
        }
        let mut steps = Recorder::new(gpu);
        let mut node_steps = Vec::new();
        for &ni in &memory.order {
            let node = &graph.nodes[ni];
            for o in &node.outputs {
                let (shape, dtype) = &shapes[o.0];
                let root = memory.root_of[o.0].0;
                tensors[o.0] = Some(if root != o.0 {
                    tensors[root]
                        .as_ref()
                        .ok_or_else(|| internal("a view's operand is not placed"))?
                        .reshape(shape)?
                } else if let Some(slot) = memory.slot_of[o.0] {
                    slots[slot].view_in(shape, *dtype)?
                } else {
                    Tensor::zeros(gpu, shape, *dtype)?
                });
            }
            let ins: Vec<Tensor> = node
                .inputs
                .iter()
                .map(|i| {
                    tensors[i.0]
                        .clone()
                        .ok_or_else(|| internal("an operand is not placed"))
                })
                .collect::<Result<_>>()?;
            let outs: Vec<Tensor> = node
                .outputs
                .iter()
                .map(|o| {
                    tensors[o.0]
                        .clone()
                        .ok_or_else(|| internal("an output is not placed"))
                })
                .collect::<Result<_>>()?;
            let start = steps.steps().len();
            let in_shapes: Vec<(Vec<usize>, DType)> =
                node.inputs.iter().map(|i| shapes[i.0].clone()).collect();
            let in_refs: Vec<&Tensor> = ins.iter().collect();
            let out_refs: Vec<&Tensor> = outs.iter().collect();
            node.op
                .record(&mut steps, &in_refs, &out_refs)
                .map_err(|e| node_error(ni, node.op.name(), &in_shapes, e))?;
            let desc = in_shapes
                .iter()
                .map(|(s, _)| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" ");
            node_steps.push((ni, node.op.name(), desc, start..steps.steps().len()));
        }
        let mut outputs = Vec::new();
        for (name, v) in &graph.outputs {
            let tensor = tensors[v.0].clone().ok_or_else(|| {
                Error::invalid("graph run", format!("output {name:?} is not computed"))
            })?;
            let staging = gpu.create_buffer(
                &format!("readback {name}"),
                tensor.byte_len().div_ceil(4) * 4,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?;
            outputs.push(OutputSlot {
                name: name.clone(),
                tensor,
                staging,
            });
        }
        Ok(Plan {
            inputs,
            id_limits,
            outputs,
            steps,
            node_steps,
            memory,
            profiler: None,
        })
    }

    /// The memory plan: intermediate bytes with and without reuse.
    pub fn memory(&self) -> &MemoryPlan {
        &self.memory
    }

    /// The dispatches one run records, in order (benchmarks time them without upload and readback).
    pub fn recorder(&self) -> &Recorder {
        &self.steps
    }

    /// Number of dispatches one run records.
    pub fn dispatch_count(&self) -> usize {
        self.steps.dispatch_count()
    }

    /// The tensor graph input `name` is uploaded into: a loop plan that replays this plan's
    /// [`Plan::recorder`] in its init phase names it and writes it (the Marian encoder feeding
    /// its decoder's loop). Ids written this way are not checked against embedding tables.
    pub fn input_tensor(&self, name: &str) -> Option<&Tensor> {
        self.inputs.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The tensor holding output `name` after the recorded work ran.
    pub fn output_tensor(&self, name: &str) -> Option<&Tensor> {
        self.outputs
            .iter()
            .find(|o| o.name == name)
            .map(|o| &o.tensor)
    }

    pub(super) fn upload(&self, gpu: &Gpu, inputs: &[(&str, HostInput)]) -> Result<()> {
        for (name, t) in &self.inputs {
            let h = inputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, h)| h)
                .ok_or_else(|| {
                    Error::invalid("graph run", format!("input {name:?} was not given"))
                })?;
            if h.dtype != t.dtype() || h.bytes.len() as u64 != t.byte_len() {
                return Err(Error::DType {
                    op: "graph run".into(),
                    operand: name.clone(),
                    got: format!("{}{:?} ({} bytes)", h.dtype, h.shape, h.bytes.len()),
                    expected: format!("{}{:?}", t.dtype(), t.shape()),
                });
            }
            for (_, v, node) in self.id_limits.iter().filter(|l| &l.0 == name) {
                check_ids(name, h, *v, *node)?;
            }
            t.write_bytes(gpu, 0, &h.bytes);
        }
        Ok(())
    }

    pub(super) fn encode_readback(&self, enc: &mut wgpu::CommandEncoder) {
        for o in &self.outputs {
            let len = o.tensor.byte_len().div_ceil(4) * 4;
            if len > 0 {
                enc.copy_buffer_to_buffer(o.tensor.buffer(), 0, &o.staging, 0, len);
            }
        }
    }

    /// Maps the staging buffers once submission `after` (the run's) is done and reads them.
    pub(super) async fn read_outputs(
        &self,
        gpu: &Gpu,
        after: Option<&wgpu::SubmissionIndex>,
    ) -> Result<HashMap<String, HostOutput>> {
        let g = gpu.lock_device();
        let mapped: Vec<_> = self
            .outputs
            .iter()
            .map(|o| {
                let (tx, rx) = crate::gpu::oneshot::channel();
                o.staging
                    .slice(..)
                    .map_async(wgpu::MapMode::Read, move |r| tx.send(r));
                rx
            })
            .collect();
        drop(g);
        // Only this run's submission: work other threads submitted since is not ours to wait for.
        match after {
            Some(i) => gpu.wait_for(i)?,
            None => gpu.wait()?,
        }
        for rx in mapped {
            let during = || "reading graph outputs".to_string();
            rx.await
                .ok_or_else(|| Error::Gpu {
                    during: during(),
                    message: "the map callback was dropped".into(),
                })?
                .map_err(|e| Error::Gpu {
                    during: during(),
                    message: e.to_string(),
                })?;
        }
        let mut out = HashMap::new();
        // get_mapped_range and unmap call into the device (GL; see `gpu::serial`).
        let _g = gpu.lock_device();
        for o in &self.outputs {
            let data = {
                let view = o
                    .staging
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Gpu {
                        during: "reading graph outputs".into(),
                        message: e.to_string(),
                    })?;
                let bytes = &view[..o.tensor.byte_len() as usize];
                match o.tensor.dtype() {
                    DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(bytes),
                    DType::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(bytes)
                        .into_iter()
                        .map(f32::from)
                        .collect(),
                    DType::I32 => bytemuck::pod_collect_to_vec::<u8, i32>(bytes)
                        .into_iter()
                        .map(|v| v as f32)
                        .collect(),
                    DType::U32 => bytemuck::pod_collect_to_vec::<u8, u32>(bytes)
                        .into_iter()
                        .map(|v| v as f32)
                        .collect(),
                }
            };
            o.staging.unmap();
            out.insert(
                o.name.clone(),
                HostOutput {
                    shape: o.tensor.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(out)
    }

    /// One run: upload, one command buffer with every dispatch and the output copies, one submit,
    /// read back the outputs.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(
        &self,
        gpu: &Gpu,
        inputs: &[(&str, HostInput)],
    ) -> Result<HashMap<String, HostOutput>> {
        pollster::block_on(self.run_async(gpu, inputs))
    }

    /// [`Plan::run`] without blocking on the readback (the one implementation).
    pub async fn run_async(
        &self,
        gpu: &Gpu,
        inputs: &[(&str, HostInput)],
    ) -> Result<HashMap<String, HostOutput>> {
        self.upload(gpu, inputs)?;
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("graph run"),
            });
        self.steps.encode(&mut enc, None);
        self.encode_readback(&mut enc);
        gpu.check_lost("graph run")?;
        let idx = gpu.submit(enc.finish());
        gpu.counters().submits.fetch_add(1, Ordering::Relaxed);
        gpu.check_errors("graph run")?;
        self.read_outputs(gpu, Some(&idx)).await
    }
}

/// Names the first node whose output lives in reusable buffer `slot`, for allocation errors.
fn slot_user(graph: &Graph, memory: &MemoryPlan, slot: usize) -> String {
    memory
        .order
        .iter()
        .find_map(|&ni| {
            let node = &graph.nodes[ni];
            node.outputs
                .iter()
                .any(|o| memory.slot_of[o.0] == Some(slot))
                .then(|| format!("graph node {ni} ({}) output", node.op.name()))
        })
        .unwrap_or_else(|| "graph intermediates".into())
}

fn node_error(node: usize, op: &str, ins: &[(Vec<usize>, DType)], e: Error) -> Error {
    let shapes = ins
        .iter()
        .map(|(s, d)| format!("{d}{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    Error::shape(
        format!("graph node {node} ({op}) with inputs {shapes}"),
        e.to_string(),
    )
}
