//! GPU tensors: a storage buffer with a shape and a dtype.
//!
//! Dimension legend used in shape comments across heedful: B batch, H heads, T sequence length
//! (Tq queries, Tk keys), D head or model dim, E embedding dim, M/N/K matmul dims, V vocabulary.
//!
//! ```no_run
//! use heedful::{Gpu, Tensor};
//! let gpu = Gpu::shared()?;
//! let x = Tensor::from_f32(&gpu, &[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! assert_eq!(x.to_vec_f32(&gpu)?, vec![1.0, 2.0, 3.0, 4.0]);
//! # Ok::<(), heedful::Error>(())
//! ```

use half::f16;

use crate::error::{Error, Result};
use std::sync::Arc;

use crate::gpu::{Gpu, Guarded, LiveBuffer};

/// Element type of a tensor on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: activations and f32 weights.
    F32,
    /// 16-bit float, stored packed two per 32-bit word: weights.
    F16,
    /// 32-bit signed integer: token ids, lengths.
    I32,
    /// 32-bit unsigned integer: indices, masks.
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 => 2,
            _ => 4,
        }
    }

    /// Lower-case name, as in error messages and CLI output.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::U32 => "u32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of elements of `shape` (1 for a scalar), or an error when it overflows.
pub fn numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::shape(
                "tensor",
                format!("shape {shape:?} has more elements than fit in memory"),
            )
        })
}

/// A tensor in GPU memory. Cloning shares the buffer.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// Dropped under the device lock on GL ([`Gpu::lock_device`]).
    buffer: Guarded<wgpu::Buffer>,
    shape: Vec<usize>,
    dtype: DType,
    /// Counts the buffer in [`crate::gpu::Counters::live_buffers`] while any handle holds it
    /// (`None` for views over buffers created elsewhere).
    live: Option<Arc<LiveBuffer>>,
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Tensor {
    /// A zero-filled tensor.
    pub fn zeros(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n = numel(shape)?;
        let bytes = (n as u64)
            .checked_mul(dtype.size() as u64)
            .ok_or_else(|| Error::shape("tensor", format!("shape {shape:?} is too large")))?;
        let buffer = gpu.create_buffer(&format!("{dtype}{shape:?}"), bytes, USAGE)?;
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            dtype,
            live: Some(gpu.live_guard()),
        })
    }

    /// A `[n, 3]` u32 tensor of dispatch workgroup counts that kernels write and indirect
    /// dispatches read ([`crate::gpu::Dispatch::with_indirect`]), zero-filled.
    pub fn indirect_args(gpu: &Gpu, n: usize) -> Result<Tensor> {
        let shape = [n, 3];
        let bytes = (numel(&shape)? as u64) * 4;
        let buffer = gpu.create_buffer(
            &format!("indirect args {shape:?}"),
            bytes,
            USAGE | wgpu::BufferUsages::INDIRECT,
        )?;
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            dtype: DType::U32,
            live: Some(gpu.live_guard()),
        })
    }

    /// Uploads raw little-endian bytes of `dtype` elements.
    pub fn from_bytes(gpu: &Gpu, bytes: &[u8], shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n = numel(shape)?;
        if bytes.len() != n * dtype.size() {
            return Err(Error::shape(
                "upload",
                format!(
                    "{} bytes given for shape {shape:?} of {dtype} ({} bytes expected)",
                    bytes.len(),
                    n * dtype.size()
                ),
            ));
        }
        let t = Tensor::zeros(gpu, shape, dtype)?;
        t.write_bytes(gpu, 0, bytes);
        Ok(t)
    }

    /// Writes `bytes` at byte `offset`, padding the tail to the 4-byte copy alignment.
    pub(crate) fn write_bytes(&self, gpu: &Gpu, offset: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if bytes.len().is_multiple_of(4) {
            gpu.write_buffer(&self.buffer, offset, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().div_ceil(4) * 4, 0);
            gpu.write_buffer(&self.buffer, offset, &padded);
        }
    }

    /// Uploads f32 values.
    pub fn from_f32(gpu: &Gpu, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_bytes(gpu, bytemuck::cast_slice(data), shape, DType::F32)
    }

    /// Uploads f32 values rounded to f16 (round to nearest even).
    pub fn from_f32_as_f16(gpu: &Gpu, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        let h: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
        Tensor::from_f16(gpu, &h, shape)
    }

    /// Uploads f32 values as `dtype` (f32 or f16).
    pub fn from_f32_as(gpu: &Gpu, data: &[f32], shape: &[usize], dtype: DType) -> Result<Tensor> {
        match dtype {
            DType::F32 => Tensor::from_f32(gpu, data, shape),
            DType::F16 => Tensor::from_f32_as_f16(gpu, data, shape),
            other => Err(Error::DType {
                op: "upload".into(),
                operand: "data".into(),
                got: other.to_string(),
                expected: "f32 or f16".into(),
            }),
        }
    }

    /// Uploads f16 values.
    pub fn from_f16(gpu: &Gpu, data: &[f16], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_bytes(gpu, bytemuck::cast_slice(data), shape, DType::F16)
    }

    /// Uploads i32 values.
    pub fn from_i32(gpu: &Gpu, data: &[i32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_bytes(gpu, bytemuck::cast_slice(data), shape, DType::I32)
    }

    /// Uploads u32 values.
    pub fn from_u32(gpu: &Gpu, data: &[u32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_bytes(gpu, bytemuck::cast_slice(data), shape, DType::U32)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data (not counting padding).
    pub fn byte_len(&self) -> u64 {
        (self.numel() * self.dtype.size()) as u64
    }

    /// The underlying buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// A tensor of `shape` over the start of an existing buffer (used by the graph planner, whose
    /// reused buffers may be larger than the tensor placed in them).
    pub(crate) fn view_of(
        buffer: &Guarded<wgpu::Buffer>,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let bytes = (numel(shape)? * dtype.size()) as u64;
        if bytes > buffer.size() {
            return Err(Error::shape(
                "tensor view",
                format!(
                    "{dtype}{shape:?} needs {bytes} bytes, buffer holds {}",
                    buffer.size()
                ),
            ));
        }
        Ok(Tensor {
            buffer: buffer.clone(),
            shape: shape.to_vec(),
            dtype,
            live: None,
        })
    }

    /// A tensor of `shape` over the start of this tensor's buffer (which may be larger), sharing its
    /// live-buffer count (the graph planner's reused slots).
    pub(crate) fn view_in(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let mut t = Tensor::view_of(&self.buffer, shape, dtype)?;
        t.live = self.live.clone();
        Ok(t)
    }

    /// Stacks tensors of equal dtype along their first dim on the GPU (`[n_i, *] -> [sum n_i, *]`;
    /// models packing weights at load, for example BERT's q/k/v into one projection).
    pub(crate) fn concat_rows(gpu: &Gpu, parts: &[Tensor]) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid("concat_rows", "no parts"))?;
        let dtype = first.dtype();
        let tail = &first.shape()[1..];
        let mut rows = 0;
        for t in parts {
            if t.dtype() != dtype || &t.shape()[1..] != tail {
                return Err(Error::shape(
                    "concat_rows",
                    format!(
                        "{}{:?} does not stack with {}{:?}",
                        t.dtype(),
                        t.shape(),
                        dtype,
                        first.shape()
                    ),
                ));
            }
            rows += t.shape()[0];
        }
        let mut shape = vec![rows];
        shape.extend_from_slice(tail);
        let out = Tensor::zeros(gpu, &shape, dtype)?;
        if parts.iter().all(|t| t.byte_len() % 4 == 0) {
            let mut rec = crate::gpu::Recorder::new(gpu);
            let mut offset = 0;
            for t in parts {
                rec.copy(t.buffer(), 0, out.buffer(), offset, t.byte_len());
                offset += t.byte_len();
            }
            rec.submit()?;
        } else {
            // Copies must be 4-byte aligned: odd f16 parts go through the host, which needs a
            // blocking readback (not in the browser).
            #[cfg(not(target_arch = "wasm32"))]
            {
                let mut bytes = Vec::with_capacity(out.byte_len() as usize);
                for t in parts {
                    bytes.extend_from_slice(&t.to_bytes(gpu)?);
                }
                out.write_bytes(gpu, 0, &bytes);
            }
            #[cfg(target_arch = "wasm32")]
            return Err(Error::Unsupported(format!(
                "concat_rows of parts whose byte lengths are not multiples of 4 ({:?}) on {:?}: \
                 it reads them back, which blocks",
                parts.iter().map(Tensor::byte_len).collect::<Vec<_>>(),
                gpu.caps().backend
            )));
        }
        Ok(out)
    }

    /// The same data under another shape with the same number of elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape)? != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot view {:?} ({} elements) as {shape:?}",
                    self.shape,
                    self.numel()
                ),
            ));
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
            live: self.live.clone(),
        })
    }

    /// Copies the raw bytes back to the CPU (waits for all submitted work).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_bytes(&self, gpu: &Gpu) -> Result<Vec<u8>> {
        pollster::block_on(self.to_bytes_async(gpu))
    }

    /// [`Tensor::to_bytes`] without blocking (the one implementation; in the browser the only
    /// one).
    pub async fn to_bytes_async(&self, gpu: &Gpu) -> Result<Vec<u8>> {
        let len = self.byte_len();
        if len == 0 {
            return Ok(Vec::new());
        }
        let padded = len.div_ceil(4) * 4;
        let staging = gpu.create_buffer(
            "readback",
            padded,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut enc = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        enc.copy_buffer_to_buffer(&self.buffer, 0, &staging, 0, padded);
        let idx = gpu.submit(enc.finish());
        gpu.read_mapped_after_async(&staging, len, Some(&idx), "readback")
            .await
    }

    /// Reads the tensor back as f32 (f16 widened, integers converted).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        pollster::block_on(self.to_vec_f32_async(gpu))
    }

    /// [`Tensor::to_vec_f32`] without blocking.
    pub async fn to_vec_f32_async(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let bytes = self.to_bytes_async(gpu).await?;
        Ok(match self.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec(&bytes),
            DType::F16 => bytemuck::pod_collect_to_vec::<u8, f16>(&bytes)
                .into_iter()
                .map(f32::from)
                .collect(),
            DType::I32 => bytemuck::pod_collect_to_vec::<u8, i32>(&bytes)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            DType::U32 => bytemuck::pod_collect_to_vec::<u8, u32>(&bytes)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        })
    }

    /// Reads an i32 or u32 tensor back as i64.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec_i64(&self, gpu: &Gpu) -> Result<Vec<i64>> {
        pollster::block_on(self.to_vec_i64_async(gpu))
    }

    /// [`Tensor::to_vec_i64`] without blocking.
    pub async fn to_vec_i64_async(&self, gpu: &Gpu) -> Result<Vec<i64>> {
        let bytes = self.to_bytes_async(gpu).await?;
        match self.dtype {
            DType::I32 => Ok(bytemuck::pod_collect_to_vec::<u8, i32>(&bytes)
                .into_iter()
                .map(i64::from)
                .collect()),
            DType::U32 => Ok(bytemuck::pod_collect_to_vec::<u8, u32>(&bytes)
                .into_iter()
                .map(i64::from)
                .collect()),
            other => Err(Error::DType {
                op: "to_vec_i64".into(),
                operand: "self".into(),
                got: other.to_string(),
                expected: "i32 or u32".into(),
            }),
        }
    }
}
