//! Model weights: safetensors files memory-mapped, validated, and uploaded to the GPU in bounded
//! chunks.
//!
//! Models reach heedful as safetensors files: f16 files written by `weights/export.py` (with a
//! format version, the architecture name and its config in the metadata), and the F32/BF16/F16
//! checkpoints people already have (Hugging Face model folders). [`WeightFile::open`] maps the file
//! and checks every byte of the header before anything is read: a malformed file gives an
//! [`Error::Weights`](crate::Error::Weights) naming the file, the tensor and the fault, with a hint,
//! never a panic. Tensors are viewed straight from the mapping ([`TensorView`]) and uploaded with
//! [`WeightFile::upload`], which converts F32/BF16 to f16 on the fly chunk by chunk, so staging
//! memory stays bounded whatever the file size.
//!
//! ```no_run
//! use heedful::weights::{Hold, WeightFile};
//! let gpu = heedful::Gpu::shared()?;
//! let file = WeightFile::open("model.safetensors")?;
//! println!("{:?} {:?}", file.architecture(), file.config_json());
//! file.expect_shape("encoder.weight", &[512, 256])?; // the model's config says so
//! let w = file.upload(&gpu, "encoder.weight", Hold::F16)?; // f16 on the GPU
//! # Ok::<(), heedful::Error>(())
//! ```
//!
//! Submodules: [`file`](mod@file) (mapping and validation), [`upload`] (chunked upload and dtype
//! conversion), [`convert`] (`heedful convert`), [`inspect`] (`heedful inspect`), [`pack`] (typed recurrent
//! weights packed and streamed for the fused kernels). The load
//! benchmark is [`crate::bench::weights`].

pub mod convert;
pub mod file;
pub mod inspect;
pub mod pack;
pub mod upload;
mod validate;

pub use file::{FileDType, TensorView, WeightFile, FORMAT_VERSION, MAX_HEADER_BYTES};
pub use upload::{Hold, UploadOptions, DEFAULT_CHUNK_BYTES};

/// What is wrong with a weight file; carried by [`Error::Weights`](crate::Error::Weights) so callers
/// and tests can tell the faults apart without parsing messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WeightsErrorKind {
    /// The bytes are some other format (a pickle zip, GGUF, text, ...).
    NotSafetensors,
    /// The file ends before the data its header describes (or before the 8-byte header length).
    Truncated,
    /// The header length points past the end of the file.
    HeaderBeyondFile,
    /// The header length is larger than any real header ([`MAX_HEADER_BYTES`]).
    HeaderTooLarge,
    /// The header is not valid UTF-8 JSON.
    BadJson,
    /// The header is JSON but not the safetensors layout (a field missing or of the wrong type,
    /// a name given twice).
    BadHeader,
    /// A tensor's data offsets are reversed or lie beyond the data section.
    OffsetsOutOfRange,
    /// Two tensors' data overlap.
    OffsetsOverlap,
    /// Bytes of the data section belong to no tensor (a hole, or trailing bytes).
    OffsetsGap,
    /// A tensor's byte length does not match its shape times its dtype size.
    ByteLength,
    /// A dtype heedful does not read, or cannot hold on the GPU.
    UnsupportedDtype,
    /// A tensor the caller asked for is not in the file.
    MissingTensor,
    /// A tensor's shape does not fit the model's config.
    ShapeMismatch,
    /// The file was written by a newer exporter than this engine knows.
    FormatTooNew,
    /// The `__metadata__` section is malformed (not strings, bad version, bad config JSON).
    BadMetadata,
    /// A float weight is NaN or infinite (refused on upload and by `convert` unless allowed).
    NonFinite,
    /// A finite F32/BF16/F64 value lies outside f16's range (|x| > 65504) and would become
    /// infinite when held as f16; keep the tensor in f32 instead.
    OutOfRange,
    /// The path is not a regular file (a directory, device, FIFO, socket or /proc pseudo-file).
    NotRegularFile,
}
