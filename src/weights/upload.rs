//! Uploading tensors from a mapped file to GPU buffers in bounded chunks, converting dtypes on the
//! way.
//!
//! Each chunk (32 MiB by default) is written into one of two reusable staging buffers
//! (`MAP_WRITE | COPY_SRC`): a raw copy from the mapping, or F32/BF16/F64 -> f16 conversion through
//! a small cache-sized scratch block. The chunk's copy into the tensor is submitted at once and the
//! buffer remapped when it completes; before a staging buffer is refilled, its previous copy is
//! waited on. So staging memory is two chunks whatever the file size, the queue copies one chunk
//! while the CPU fills the next, and (on CPU adapters, where buffers are host memory) the staging
//! pages are faulted in once instead of per chunk.
//!
//! ```no_run
//! use heedful::weights::{Hold, UploadOptions, WeightFile};
//! let gpu = heedful::Gpu::shared()?;
//! let f = WeightFile::open("model.safetensors")?;
//! let w = f.upload(&gpu, "lm_head.weight", Hold::F16)?;
//! // A kernel that takes row blocks can accept a tensor larger than one storage binding:
//! let parts = f.upload_split(&gpu, "embed.weight", &UploadOptions::new(Hold::F16))?;
//! # Ok::<(), heedful::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::file::{err, FileDType, TensorView, WeightFile};
use super::WeightsErrorKind as K;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::{DType, Tensor};

/// Default bytes per upload chunk.
pub const DEFAULT_CHUNK_BYTES: usize = 32 << 20;

/// Elements converted per scratch block (64 KiB of f32: stays in L2).
const BLOCK: usize = 16 * 1024;

/// How float weights are held on the GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Hold {
    /// f16 (the default): F32, BF16 and F64 are rounded to nearest even on upload.
    #[default]
    F16,
    /// f32: F16 and BF16 are widened exactly, F64 rounded.
    F32,
}

impl Hold {
    /// The GPU dtype float tensors get.
    pub fn dtype(self) -> DType {
        match self {
            Hold::F16 => DType::F16,
            Hold::F32 => DType::F32,
        }
    }
}

/// Options of an upload.
#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// How float tensors are held.
    pub hold: Hold,
    /// Bytes per staging chunk (at least 64 KiB is used).
    pub chunk_bytes: usize,
    /// A storage-binding limit below the device's (tests; splitting for smaller kernels). The
    /// device's `max_storage_buffer_binding_size` applies when this is `None` or larger.
    pub max_binding: Option<u64>,
    /// Float tensors (by name) held as f32 whatever `hold` says. The conversion checks every
    /// value: a finite F32/BF16/F64 value outside f16's range (|x| > 65504) is refused with
    /// [`WeightsErrorKind::OutOfRange`](super::WeightsErrorKind::OutOfRange) naming the tensor
    /// and the first bad index, since it would become infinite in f16; naming the tensor here
    /// keeps it in f32 instead (kernels take f32 or f16 weights alike).
    pub keep_f32: BTreeSet<String>,
    /// Upload NaN and infinite float values as they are instead of refusing them with
    /// [`WeightsErrorKind::NonFinite`](super::WeightsErrorKind::NonFinite) (for checkpoints
    /// that use infinities on purpose, e.g. a -inf attention-mask buffer).
    pub allow_non_finite: bool,
}

impl UploadOptions {
    /// Default chunking and the device's binding limit.
    pub fn new(hold: Hold) -> Self {
        UploadOptions {
            hold,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            max_binding: None,
            keep_f32: BTreeSet::new(),
            allow_non_finite: false,
        }
    }

    /// These options with `names` added to [`UploadOptions::keep_f32`].
    pub fn keep_f32(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.keep_f32.extend(names);
        self
    }

    /// True when tensor `name` is held in f32 whatever `hold` says.
    pub fn keeps_f32(&self, name: &str) -> bool {
        self.keep_f32.contains(name)
    }

    /// How tensor `name` is held.
    pub fn hold_for(&self, name: &str) -> Hold {
        if self.keeps_f32(name) {
            Hold::F32
        } else {
            self.hold
        }
    }

    /// Staging chunk bytes for uploads of at most `largest` bytes.
    fn chunk_len(&self, largest: u64) -> u64 {
        (self.chunk_bytes.max(64 << 10) as u64).min(largest.div_ceil(4) * 4)
    }

    fn limit(&self, gpu: &Gpu) -> u64 {
        let dev = gpu.caps().max_storage_binding;
        self.max_binding.map_or(dev, |m| m.min(dev))
    }
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions::new(Hold::F16)
    }
}

impl WeightFile {
    /// Uploads tensor `name`, floats held as `hold`, I32/U32 as they are, I64 narrowed to i32.
    pub fn upload(&self, gpu: &Gpu, name: &str, hold: Hold) -> Result<Tensor> {
        self.upload_with(gpu, name, &UploadOptions::new(hold))
    }

    /// [`WeightFile::upload`] with explicit options.
    pub fn upload_with(&self, gpu: &Gpu, name: &str, opts: &UploadOptions) -> Result<Tensor> {
        let view = self.tensor(name)?;
        self.will_need(view_offset(self, &view), view.data.len());
        view.upload(gpu, opts)
    }

    /// Uploads tensor `name` split along its first dimension into row blocks that each fit one
    /// storage binding, for kernels that take a weight in row blocks (an embedding table, the output
    /// projection over a large vocabulary). One block when the tensor fits.
    pub fn upload_split(&self, gpu: &Gpu, name: &str, opts: &UploadOptions) -> Result<Vec<Tensor>> {
        let view = self.tensor(name)?;
        let target = target_dtype(&view, opts.hold_for(view.name))?;
        let limit = opts.limit(gpu);
        let rows = view.shape.first().copied().unwrap_or(1);
        let row_elems: usize = view.shape.iter().skip(1).product();
        let row_bytes = (row_elems * target.size()) as u64;
        if view.shape.is_empty() || rows == 0 || row_bytes == 0 {
            return Ok(vec![view.upload(gpu, opts)?]);
        }
        let per = (limit / row_bytes) as usize;
        if per == 0 {
            return Err(too_large(&view, target, row_bytes, limit, "one row of it"));
        }
        self.will_need(view_offset(self, &view), view.data.len());
        let src_row = row_elems * view.dtype.size();
        let mut stager = Stager::new(gpu, opts.chunk_len((per as u64) * row_bytes));
        let mut parts = Vec::with_capacity(rows.div_ceil(per));
        let mut r = 0;
        while r < rows {
            let n = per.min(rows - r);
            let mut shape = view.shape.to_vec();
            shape[0] = n;
            let part = TensorView {
                shape: &shape,
                data: &view.data[r * src_row..(r + n) * src_row],
                ..view
            };
            let t = Tensor::zeros(gpu, &shape, target)?;
            write_converted(gpu, &t, &part, r * row_elems, opts, &mut stager)?;
            parts.push(t);
            r += n;
        }
        finish(gpu, &mut stager, &view)?;
        Ok(parts)
    }

    /// Uploads every tensor, in file order.
    pub fn upload_all(&self, gpu: &Gpu, opts: &UploadOptions) -> Result<BTreeMap<String, Tensor>> {
        let largest = self
            .tensors()
            .map(|v| v.numel() as u64 * 4)
            .max()
            .unwrap_or(0);
        let mut stager = Stager::new(gpu, opts.chunk_len(largest));
        let mut out = BTreeMap::new();
        let mut last = None;
        for v in self.tensors() {
            self.will_need(view_offset(self, &v), v.data.len());
            out.insert(v.name.to_string(), v.upload_staged(gpu, opts, &mut stager)?);
            last = Some(v);
        }
        if let Some(v) = last {
            finish(gpu, &mut stager, &v)?;
        }
        Ok(out)
    }
}

fn view_offset(f: &WeightFile, v: &TensorView<'_>) -> usize {
    v.data.as_ptr() as usize - f.raw().as_ptr() as usize
}

impl TensorView<'_> {
    /// The GPU dtype this tensor gets when held as `hold`, or an error for dtypes heedful cannot
    /// hold on the GPU.
    pub fn gpu_dtype(&self, hold: Hold) -> Result<DType> {
        target_dtype(self, hold)
    }

    /// Checks every value as the upload does when the tensor is held as `hold`: NaN or infinite
    /// values, and (held as f16) finite F32/BF16/F64 values outside f16's range, are errors naming
    /// the tensor and the first bad flat index. For models that convert weights on the CPU
    /// (e.g. packing recurrent weights) instead of through [`TensorView::upload`].
    pub fn check_values(&self, hold: Hold) -> Result<()> {
        if !self.dtype.is_float() {
            return Ok(());
        }
        if let Some(j) = first_non_finite(self.data, self.dtype) {
            let x = element(self.data, self.dtype, j);
            return Err(bad_value(self.path, self.name, self.dtype, j, x, true));
        }
        if hold == Hold::F16 && self.dtype != FileDType::F16 {
            for j in 0..self.numel() {
                let x = element(self.data, self.dtype, j);
                if f16::from_f64(x).is_infinite() {
                    return Err(bad_value(self.path, self.name, self.dtype, j, x, false));
                }
            }
        }
        Ok(())
    }

    /// Uploads this tensor in bounded chunks (see the module docs). A tensor larger than the storage
    /// binding limit is refused with an error naming it, its size and the limit.
    pub fn upload(&self, gpu: &Gpu, opts: &UploadOptions) -> Result<Tensor> {
        let target = target_dtype(self, opts.hold_for(self.name))?;
        let bytes = (self.numel() as u64) * target.size() as u64;
        let limit = opts.limit(gpu);
        if bytes > limit {
            return Err(too_large(self, target, bytes, limit, "it"));
        }
        let mut stager = Stager::new(gpu, opts.chunk_len(bytes));
        let t = self.upload_staged(gpu, opts, &mut stager)?;
        finish(gpu, &mut stager, self)?;
        Ok(t)
    }

    fn upload_staged(
        &self,
        gpu: &Gpu,
        opts: &UploadOptions,
        stager: &mut Stager,
    ) -> Result<Tensor> {
        let target = target_dtype(self, opts.hold_for(self.name))?;
        let bytes = (self.numel() as u64) * target.size() as u64;
        let limit = opts.limit(gpu);
        if bytes > limit {
            return Err(too_large(self, target, bytes, limit, "it"));
        }
        let t = Tensor::zeros(gpu, self.shape, target)?;
        write_converted(gpu, &t, self, 0, opts, stager)?;
        Ok(t)
    }
}

fn finish(gpu: &Gpu, stager: &mut Stager, v: &TensorView<'_>) -> Result<()> {
    let during = || format!("uploading tensor {:?} of {}", v.name, v.path.display());
    stager.finish(gpu, &during)?;
    gpu.check_errors(&during())
}

fn too_large(v: &TensorView<'_>, target: DType, needed: u64, limit: u64, what: &str) -> Error {
    Error::Limit {
        what: format!(
            "tensor {:?} of {} ({} {:?}, held as {target}; a kernel that takes row blocks can load \
             {what} with upload_split)",
            v.name,
            v.path.display(),
            v.dtype,
            v.shape
        ),
        needed,
        limit_name: "max_storage_buffer_binding_size",
        limit,
    }
}

fn target_dtype(v: &TensorView<'_>, hold: Hold) -> Result<DType> {
    Ok(match v.dtype {
        d if d.is_float() => hold.dtype(),
        FileDType::I32 | FileDType::I64 => DType::I32,
        FileDType::U32 => DType::U32,
        other => {
            return Err(err(
                v.path,
                Some(v.name),
                K::UnsupportedDtype,
                format!("has dtype {other}, which heedful cannot hold on the GPU"),
                "heedful uploads F32/F16/BF16/F64 (as f16 or f32), I32/U32 and I64 (as i32); \
                 models that need this tensor convert it themselves from its TensorView",
            ))
        }
    })
}

/// Scratch blocks for conversion, aligned by type.
struct Scratch {
    f32s: Vec<f32>,
    f16s: Vec<f16>,
    bf16s: Vec<bf16>,
    f64s: Vec<f64>,
    i64s: Vec<i64>,
    i32s: Vec<i32>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            f32s: vec![0.0; BLOCK],
            f16s: vec![f16::ZERO; BLOCK],
            bf16s: vec![bf16::ZERO; BLOCK],
            f64s: vec![0.0; BLOCK],
            i64s: vec![0; BLOCK],
            i32s: vec![0; BLOCK],
        }
    }
}

/// `src` as a slice of `T`: in place when aligned, else copied into `tmp`.
fn as_pod<'a, T: bytemuck::Pod>(src: &'a [u8], tmp: &'a mut [T]) -> &'a [T] {
    match bytemuck::try_cast_slice(src) {
        Ok(s) => s,
        Err(_) => {
            let t = &mut tmp[..src.len() / std::mem::size_of::<T>()];
            bytemuck::cast_slice_mut(t).copy_from_slice(src);
            t
        }
    }
}

/// Element `i` of little-endian float bytes `src` of dtype `d`, widened to f64 (for messages).
pub(crate) fn element(src: &[u8], d: FileDType, i: usize) -> f64 {
    let s = d.size();
    let b = &src[i * s..(i + 1) * s];
    match d {
        FileDType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f64(),
        FileDType::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f64(),
        FileDType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        FileDType::F64 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            f64::from_le_bytes(a)
        }
        _ => 0.0,
    }
}

/// Index of the first element of little-endian float bytes `src` (dtype `d`) that is NaN or
/// infinite: an all-ones exponent, tested on the bits.
pub(crate) fn first_non_finite(src: &[u8], d: FileDType) -> Option<usize> {
    match d {
        FileDType::F16 => src
            .chunks_exact(2)
            .position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 == 0x7c00),
        FileDType::BF16 => src
            .chunks_exact(2)
            .position(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7f80 == 0x7f80),
        FileDType::F32 => src.chunks_exact(4).position(|c| {
            u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7f80_0000 == 0x7f80_0000
        }),
        FileDType::F64 => src.chunks_exact(8).position(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a) & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000
        }),
        _ => None,
    }
}

/// The error for element `index` (flat, over the whole tensor) of `v`, of value `x`, that is
/// NaN/infinite (`non_finite`) or outside f16's range.
pub(crate) fn bad_value(
    path: &std::path::Path,
    name: &str,
    dtype: FileDType,
    index: usize,
    x: f64,
    non_finite: bool,
) -> Error {
    if non_finite {
        err(
            path,
            Some(name),
            K::NonFinite,
            format!("{dtype} value {x} at flat index {index} is not finite"),
            "the checkpoint is damaged or was saved mid-divergence; re-export it, or load it with \
             UploadOptions::allow_non_finite (`heedful convert --allow-non-finite`) if the \
             infinities are intended",
        )
    } else {
        err(
            path,
            Some(name),
            K::OutOfRange,
            format!(
                "{dtype} value {x} at flat index {index} is outside f16's range (|x| <= 65504) and \
                 would become infinite when held as f16"
            ),
            "keep this tensor in f32: UploadOptions::keep_f32 / bert LoadOptions::keep_f32 \
             (`heedful embed --keep-f32 NAME`), or `heedful convert --dtype f32`; \
             `heedful convert --dtype f16 --allow-overflow` writes it anyway",
        )
    }
}

/// Checks `src` (`from` elements starting at flat index `base` of `v`) against its conversion
/// `out` to `to`: a non-finite source value, or a finite one that became infinite in f16, is an
/// error unless `allow_non_finite` (which allows only the former).
fn check_block(
    v: &TensorView<'_>,
    src: &[u8],
    base: usize,
    out: &[u8],
    to: DType,
    allow_non_finite: bool,
) -> Result<()> {
    if !allow_non_finite {
        if let Some(j) = first_non_finite(src, v.dtype) {
            return Err(bad_value(
                v.path,
                v.name,
                v.dtype,
                base + j,
                element(src, v.dtype, j),
                true,
            ));
        }
    }
    let out_dtype = match to {
        DType::F16 => FileDType::F16,
        _ => return Ok(()),
    };
    if v.dtype == FileDType::F16 {
        return Ok(());
    }
    // Infinite f16 outputs whose source was finite overflowed (a non-finite source, allowed,
    // also gives one: skip those).
    let mut at = 0;
    while let Some(j) = first_non_finite(&out[at * 2..], out_dtype) {
        let j = at + j;
        let x = element(src, v.dtype, j);
        if x.is_finite() {
            return Err(bad_value(v.path, v.name, v.dtype, base + j, x, false));
        }
        at = j + 1;
    }
    Ok(())
}

/// Converts up to [`BLOCK`] elements of `src` (little-endian `from`) to `to`; returns the bytes.
fn convert_block<'a>(
    v: &TensorView<'_>,
    src: &'a [u8],
    from: FileDType,
    to: DType,
    sc: &'a mut Scratch,
) -> Result<&'a [u8]> {
    let k = src.len() / from.size();
    Ok(match (from, to) {
        (FileDType::F32, DType::F16) => {
            let s: &[f32] = as_pod(src, &mut sc.f32s);
            sc.f16s[..k].convert_from_f32_slice(s);
            bytemuck::cast_slice(&sc.f16s[..k])
        }
        (FileDType::BF16, DType::F16) => {
            let s: &[bf16] = as_pod(src, &mut sc.bf16s);
            s.convert_to_f32_slice(&mut sc.f32s[..k]);
            sc.f16s[..k].convert_from_f32_slice(&sc.f32s[..k]);
            bytemuck::cast_slice(&sc.f16s[..k])
        }
        (FileDType::F64, DType::F16) => {
            let s: &[f64] = as_pod(src, &mut sc.f64s);
            sc.f16s[..k].convert_from_f64_slice(s);
            bytemuck::cast_slice(&sc.f16s[..k])
        }
        (FileDType::F16, DType::F32) => {
            let s: &[f16] = as_pod(src, &mut sc.f16s);
            s.convert_to_f32_slice(&mut sc.f32s[..k]);
            bytemuck::cast_slice(&sc.f32s[..k])
        }
        (FileDType::BF16, DType::F32) => {
            let s: &[bf16] = as_pod(src, &mut sc.bf16s);
            s.convert_to_f32_slice(&mut sc.f32s[..k]);
            bytemuck::cast_slice(&sc.f32s[..k])
        }
        (FileDType::F64, DType::F32) => {
            let s: &[f64] = as_pod(src, &mut sc.f64s);
            for (d, &x) in sc.f32s[..k].iter_mut().zip(s) {
                *d = x as f32;
            }
            bytemuck::cast_slice(&sc.f32s[..k])
        }
        (FileDType::I64, DType::I32) => {
            let s: &[i64] = as_pod(src, &mut sc.i64s);
            for (d, &x) in sc.i32s[..k].iter_mut().zip(s) {
                *d = i32::try_from(x).map_err(|_| {
                    err(
                        v.path,
                        Some(v.name),
                        K::UnsupportedDtype,
                        format!("I64 value {x} does not fit the i32 heedful holds on the GPU"),
                        "models that need 64-bit integers read them from the TensorView on the CPU",
                    )
                })?;
            }
            bytemuck::cast_slice(&sc.i32s[..k])
        }
        _ => src,
    })
}

fn gpu_err(during: String, message: impl Into<String>) -> Error {
    Error::Gpu {
        during,
        message: message.into(),
    }
}

/// Two staging buffers (`MAP_WRITE | COPY_SRC`) used in turn: the CPU fills one while the queue
/// copies the other into its tensor. Reusing them keeps staging memory at two chunks and, on CPU
/// adapters where buffers are host memory, spares the page faults of fresh allocations per chunk.
///
/// In the browser a mapped buffer is only remapped through the JavaScript event loop, which a
/// synchronous loader cannot wait for; there a slot is host memory that `queue.writeBuffer` sends
/// (WebGPU's own staged upload). Conversion, checks and chunking are the same code on both.
pub(crate) struct Stager {
    chunk: u64,
    slots: Vec<Slot>,
    next: usize,
}

#[cfg(not(target_arch = "wasm32"))]
struct Slot {
    /// Created, mapped, unmapped and dropped under the device lock on GL ([`Gpu::lock_device`]).
    buf: crate::gpu::Guarded<wgpu::Buffer>,
    /// The submission that copies out of this slot; the slot is remapped once it completes.
    in_flight: Option<wgpu::SubmissionIndex>,
    mapped_tx: std::sync::mpsc::Sender<std::result::Result<(), wgpu::BufferAsyncError>>,
    mapped_rx: std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

#[cfg(target_arch = "wasm32")]
struct Slot {
    /// One chunk of host memory, sent with `queue.writeBuffer`.
    host: Vec<u8>,
}

/// A chunk being filled: the mapped staging buffer natively, host memory in the browser.
trait ChunkOut {
    /// Writes `bytes` at byte `at`.
    fn put(&mut self, at: usize, bytes: &[u8]);
    /// Zeroes from byte `from` to the end.
    fn zero_from(&mut self, from: usize);
}

#[cfg(not(target_arch = "wasm32"))]
impl ChunkOut for wgpu::BufferViewMut {
    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.slice(at..at + bytes.len()).copy_from_slice(bytes);
    }
    fn zero_from(&mut self, from: usize) {
        self.slice(from..).fill(0);
    }
}

#[cfg(target_arch = "wasm32")]
impl ChunkOut for &mut [u8] {
    fn put(&mut self, at: usize, bytes: &[u8]) {
        self[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn zero_from(&mut self, from: usize) {
        self[from..].fill(0);
    }
}

impl Stager {
    /// A stager whose chunks hold `chunk` bytes (rounded up to 4; at least 4).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn new(gpu: &Gpu, chunk: u64) -> Stager {
        let chunk = chunk.max(4).div_ceil(4) * 4;
        let slots = (0..2)
            .map(|i| {
                let (mapped_tx, mapped_rx) = std::sync::mpsc::channel();
                gpu.counters()
                    .buffers
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _g = gpu.lock_device();
                let buf = gpu.guarded(gpu.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("weights staging {i}")),
                    size: chunk,
                    usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: true,
                }));
                Slot {
                    buf,
                    in_flight: None,
                    mapped_tx,
                    mapped_rx,
                }
            })
            .collect();
        Stager {
            chunk,
            slots,
            next: 0,
        }
    }

    /// A stager whose chunks hold `chunk` bytes (rounded up to 4; at least 4).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn new(_gpu: &Gpu, chunk: u64) -> Stager {
        let chunk = chunk.max(4).div_ceil(4) * 4;
        Stager {
            chunk,
            slots: vec![Slot {
                host: vec![0; chunk as usize],
            }],
            next: 0,
        }
    }

    /// Waits until every copy out of the staging buffers has completed.
    pub(crate) fn finish(&mut self, gpu: &Gpu, during: &dyn Fn() -> String) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        for i in 0..self.slots.len() {
            if let Some(idx) = self.slots[i].in_flight.take() {
                wait(gpu, idx, during)?;
                let slot = &self.slots[i];
                recv_mapped(gpu, slot, during)?;
            }
        }
        // writeBuffer copies the host bytes at once; the queue orders them before later work.
        #[cfg(target_arch = "wasm32")]
        let _ = (gpu, during);
        Ok(())
    }

    /// The next slot, once the copy out of it (if any) has completed.
    fn next_slot(&mut self, gpu: &Gpu, during: &dyn Fn() -> String) -> Result<usize> {
        let i = self.next;
        self.next = (self.next + 1) % self.slots.len();
        #[cfg(not(target_arch = "wasm32"))]
        {
            let slot = &mut self.slots[i];
            if let Some(idx) = slot.in_flight.take() {
                wait(gpu, idx, during)?;
                recv_mapped(gpu, slot, during)?;
            }
        }
        #[cfg(target_arch = "wasm32")]
        let _ = (gpu, during);
        Ok(i)
    }

    /// The first `len` bytes of slot `i` to fill.
    #[cfg(not(target_arch = "wasm32"))]
    fn view(
        &mut self,
        i: usize,
        len: u64,
        during: &dyn Fn() -> String,
    ) -> Result<impl ChunkOut + '_> {
        self.slots[i]
            .buf
            .slice(..len)
            .get_mapped_range_mut()
            .map_err(|e| gpu_err(during(), e.to_string()))
    }

    /// The first `len` bytes of slot `i` to fill.
    #[cfg(target_arch = "wasm32")]
    fn view(
        &mut self,
        i: usize,
        len: u64,
        _during: &dyn Fn() -> String,
    ) -> Result<impl ChunkOut + '_> {
        Ok(&mut self.slots[i].host[..len as usize])
    }

    /// Sends the first `len` bytes of slot `i` (filled through [`Stager::view`]) to `dst` at byte
    /// `offset`. Returns once the copy is submitted; [`Stager::finish`] waits for it.
    fn send(&mut self, gpu: &Gpu, i: usize, dst: &wgpu::Buffer, offset: u64, len: u64) {
        let slot = &mut self.slots[i];
        #[cfg(not(target_arch = "wasm32"))]
        {
            // Unmap, submit and remap in one hold of the device lock (GL; see `gpu::serial`).
            let _g = gpu.lock_device();
            slot.buf.unmap();
            let mut enc = gpu
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("weights upload"),
                });
            enc.copy_buffer_to_buffer(&slot.buf, 0, dst, offset, len);
            let idx = gpu.submit(enc.finish());
            gpu.counters()
                .submits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tx = slot.mapped_tx.clone();
            slot.buf.map_async(wgpu::MapMode::Write, .., move |r| {
                let _ = tx.send(r);
            });
            slot.in_flight = Some(idx);
        }
        #[cfg(target_arch = "wasm32")]
        gpu.write_buffer(dst, offset, &slot.host[..len as usize]);
    }

    /// Writes `bytes` (at most the chunk size given to [`Stager::new`], a multiple of 4) into `dst` at byte `offset`
    /// through the next staging buffer, for data made on the host (packed weights). Returns once
    /// the copy is submitted; [`Stager::finish`] waits for it.
    pub(crate) fn write(
        &mut self,
        gpu: &Gpu,
        dst: &wgpu::Buffer,
        offset: u64,
        bytes: &[u8],
        during: &dyn Fn() -> String,
    ) -> Result<()> {
        let n = bytes.len() as u64;
        if n == 0 {
            return Ok(());
        }
        if n > self.chunk || !n.is_multiple_of(4) || !offset.is_multiple_of(4) {
            return Err(gpu_err(
                during(),
                format!(
                    "staged write of {n} bytes at {offset}: chunks hold {} bytes, multiples of 4",
                    self.chunk
                ),
            ));
        }
        let i = self.next_slot(gpu, during)?;
        self.view(i, n, during)?.put(0, bytes);
        self.send(gpu, i, dst, offset, n);
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn recv_mapped(gpu: &Gpu, slot: &Slot, during: &dyn Fn() -> String) -> Result<()> {
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};
    // The map callback runs inside whichever thread's `device.poll` sees the copy complete: with
    // several threads sharing the device it may be another thread, still about to call it when our
    // own poll returns. So poll, then wait briefly on the channel, until a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match slot.mapped_rx.try_recv() {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => return Err(gpu_err(during(), format!("mapping staging: {e}"))),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        {
            let _g = gpu.lock_device();
            gpu.device()
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| gpu_err(during(), e.to_string()))?;
        }
        match slot.mapped_rx.recv_timeout(Duration::from_millis(5)) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => return Err(gpu_err(during(), format!("mapping staging: {e}"))),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    gpu.check_errors(&during())?;
    Err(gpu_err(during(), "a staging buffer was not remapped"))
}

/// Writes `v` into `dst` (same element count) chunk by chunk through `stager`, converting to
/// `dst`'s dtype and checking every float value (see [`UploadOptions::keep_f32`] and
/// [`UploadOptions::allow_non_finite`]); `base` is `v`'s first flat index in the whole tensor
/// (row blocks of [`WeightFile::upload_split`]), for messages. Returns once the copies are
/// submitted; [`Stager::finish`] waits for them.
fn write_converted(
    gpu: &Gpu,
    dst: &Tensor,
    v: &TensorView<'_>,
    base: usize,
    opts: &UploadOptions,
    stager: &mut Stager,
) -> Result<()> {
    let from = v.dtype;
    let to = dst.dtype();
    let (ss, ds) = (from.size(), to.size());
    let n = v.data.len() / ss;
    if n == 0 {
        return Ok(());
    }
    let raw = matches!(
        (from, to),
        (FileDType::F16, DType::F16)
            | (FileDType::F32, DType::F32)
            | (FileDType::I32, DType::I32)
            | (FileDType::U32, DType::U32)
    );
    // Elements per chunk: even, so f16 chunks are whole 4-byte words and offsets stay aligned.
    let per = ((stager.chunk as usize / ds) & !1).max(2);
    let during = || format!("uploading tensor {:?} of {}", v.name, v.path.display());
    let mut scratch = (!raw).then(Scratch::new);
    let mut i = 0;
    while i < n {
        let m = per.min(n - i);
        let out_bytes = m * ds;
        let padded = out_bytes.div_ceil(4) * 4;
        let slot = stager.next_slot(gpu, &during)?;
        {
            let mut view = stager.view(slot, padded as u64, &during)?;
            let src = &v.data[i * ss..(i + m) * ss];
            match scratch.as_mut() {
                None => {
                    if !opts.allow_non_finite {
                        if let Some(j) = first_non_finite(src, from) {
                            let x = element(src, from, j);
                            return Err(bad_value(v.path, v.name, from, base + i + j, x, true));
                        }
                    }
                    view.put(0, src)
                }
                Some(sc) => {
                    for (b, block) in src.chunks(BLOCK * ss).enumerate() {
                        let out = convert_block(v, block, from, to, sc)?;
                        if from.is_float() {
                            let at = base + i + b * BLOCK;
                            check_block(v, block, at, out, to, opts.allow_non_finite)?;
                        }
                        view.put(b * BLOCK * ds, out);
                    }
                }
            }
            if padded > out_bytes {
                view.zero_from(out_bytes);
            }
        }
        stager.send(gpu, slot, dst.buffer(), (i * ds) as u64, padded as u64);
        i += m;
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn wait(gpu: &Gpu, idx: wgpu::SubmissionIndex, during: &dyn Fn() -> String) -> Result<()> {
    let _g = gpu.lock_device();
    gpu.device()
        .poll(wgpu::PollType::Wait {
            submission_index: Some(idx),
            timeout: None,
        })
        .map(|_| ())
        .map_err(|e| gpu_err(during(), e.to_string()))
}
