//! Opening and validating safetensors files: the memory map, the header checks, named tensor views.
//!
//! Layout of a safetensors file: 8 bytes little-endian header length `N`, then `N` bytes of JSON
//! (`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//! "__metadata__": {"key": "value"}}`), then the data section, which the tensors' offsets (relative
//! to its start) must cover exactly, without overlaps or holes.
//!
//! Every check here runs before any tensor is read, on the raw bytes, so that each fault gets its own
//! [`WeightsErrorKind`](super::WeightsErrorKind) and a message naming the file and the tensor. The safetensors crate then
//! parses the validated header once more as a cross-check.
//!
//! ```no_run
//! let f = heedful::weights::WeightFile::open("model.safetensors")?;
//! for name in f.names() {
//!     let t = f.tensor(name)?;
//!     println!("{name}: {} {:?} ({} bytes)", t.dtype, t.shape, t.data.len());
//! }
//! # Ok::<(), heedful::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

use super::validate::{check_metadata, validate};
use super::WeightsErrorKind as K;
use crate::error::{Error, Result};

/// The newest `heedful.format` version this engine reads. Files from a newer exporter are refused
/// with [`WeightsErrorKind::FormatTooNew`](super::WeightsErrorKind::FormatTooNew).
pub const FORMAT_VERSION: u32 = 1;

/// Largest header accepted (as the safetensors crate: 100 MB). Real headers are kilobytes.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Metadata key of the format version written by `weights/export.py`.
pub const META_FORMAT: &str = "heedful.format";
/// Metadata key of the architecture name.
pub const META_ARCH: &str = "heedful.arch";
/// Metadata key of the architecture's config (JSON).
pub const META_CONFIG: &str = "heedful.config";

/// Builds an [`Error::Weights`].
pub(crate) fn err(
    path: &Path,
    tensor: Option<&str>,
    kind: K,
    detail: impl Into<String>,
    hint: impl Into<String>,
) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        tensor: tensor.map(str::to_string),
        kind,
        detail: detail.into(),
        hint: hint.into(),
    }
}

/// Element type of a tensor in a safetensors file (the names the format uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileDType {
    /// Boolean, one byte.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// 8-bit float, 5 exponent bits.
    F8E5M2,
    /// 8-bit float, 4 exponent bits.
    F8E4M3,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
}

const DTYPES: [(FileDType, &str, usize); 15] = [
    (FileDType::Bool, "BOOL", 1),
    (FileDType::U8, "U8", 1),
    (FileDType::I8, "I8", 1),
    (FileDType::F8E5M2, "F8_E5M2", 1),
    (FileDType::F8E4M3, "F8_E4M3", 1),
    (FileDType::I16, "I16", 2),
    (FileDType::U16, "U16", 2),
    (FileDType::F16, "F16", 2),
    (FileDType::BF16, "BF16", 2),
    (FileDType::I32, "I32", 4),
    (FileDType::U32, "U32", 4),
    (FileDType::F32, "F32", 4),
    (FileDType::F64, "F64", 8),
    (FileDType::I64, "I64", 8),
    (FileDType::U64, "U64", 8),
];

impl FileDType {
    /// Parses the format's spelling (`"F32"`, `"BF16"`, ...).
    pub fn parse(s: &str) -> Option<FileDType> {
        DTYPES.iter().find(|d| d.1 == s).map(|d| d.0)
    }

    /// The format's spelling.
    pub fn name(self) -> &'static str {
        DTYPES.iter().find(|d| d.0 == self).map_or("?", |d| d.1)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        DTYPES.iter().find(|d| d.0 == self).map_or(1, |d| d.2)
    }

    /// F16, BF16, F32 or F64: the dtypes heedful converts to f16 or f32 on upload.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            FileDType::F16 | FileDType::BF16 | FileDType::F32 | FileDType::F64
        )
    }

    pub(crate) fn all_names() -> String {
        DTYPES.iter().map(|d| d.1).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for FileDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The file's bytes: a read-only memory map, or owned bytes (tests, fuzzing, empty files).
enum Storage {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Map(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) dtype: FileDType,
    pub(crate) shape: Vec<usize>,
    /// Offsets relative to the data section.
    pub(crate) begin: usize,
    pub(crate) end: usize,
}

/// A validated safetensors file, memory-mapped. Tensors are viewed in place; nothing is copied until
/// a tensor is uploaded or converted.
///
/// The mapping assumes the file is not modified while it is open (as every mmap-based loader does).
pub struct WeightFile {
    path: PathBuf,
    bytes: Storage,
    header_len: usize,
    /// In data order (ascending offsets).
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
    config: Option<serde_json::Value>,
}

impl fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightFile")
            .field("path", &self.path)
            .field("tensors", &self.entries.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// One tensor of a [`WeightFile`], viewed in place (little-endian bytes straight from the mapping).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// The file it lives in (for error messages).
    pub path: &'a Path,
    /// The tensor's name.
    pub name: &'a str,
    /// Element type in the file.
    pub dtype: FileDType,
    /// Shape (empty for a scalar).
    pub shape: &'a [usize],
    /// The raw little-endian bytes.
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Reads a float tensor (F16, BF16, F32, F64) as f32 on the CPU.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let d = self.data;
        Ok(match self.dtype {
            FileDType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            FileDType::F16 => d
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            FileDType::BF16 => d
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            FileDType::F64 => d
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
            other => {
                return Err(err(
                    self.path,
                    Some(self.name),
                    K::UnsupportedDtype,
                    format!("dtype {other} is not a float type"),
                    "only F16, BF16, F32 and F64 tensors read as f32",
                ))
            }
        })
    }
}

impl WeightFile {
    /// Maps and validates a safetensors file.
    pub fn open(path: impl AsRef<Path>) -> Result<WeightFile> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(err(
                path,
                None,
                K::NotSafetensors,
                "is a directory, not a safetensors file",
                dir_hint(path),
            ));
        }
        // Devices, FIFOs and sockets cannot be mapped (and opening a FIFO blocks): say so rather
        // than reporting an empty or truncated file.
        if !meta.is_file() {
            return Err(err(
                path,
                None,
                K::NotRegularFile,
                format!(
                    "is {}, not a regular file",
                    super::convert::file_kind(&meta)
                ),
                "pass the path of a .safetensors file on disk",
            ));
        }
        let mut file = std::fs::File::open(path).map_err(io)?;
        let bytes = if meta.len() == 0 {
            // A /proc or /sys pseudo-file reports size 0 but has content: it is not a weights
            // file, and "the file is empty, re-download it" would mislead.
            let mut probe = [0u8; 1];
            if std::io::Read::read(&mut file, &mut probe).map_err(io)? > 0 {
                return Err(err(
                    path,
                    None,
                    K::NotRegularFile,
                    "reports a size of 0 but has content (a /proc or /sys pseudo-file?), so it \
                     is not a file on disk that can be mapped",
                    "pass the path of a .safetensors file on disk",
                ));
            }
            Storage::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only; like every mmap loader we rely on the file not being
            // truncated or rewritten while it is open (documented on WeightFile).
            Storage::Map(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        Self::parse(path.to_path_buf(), bytes)
    }

    /// Validates a safetensors file held in memory; `label` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, label: impl Into<PathBuf>) -> Result<WeightFile> {
        Self::parse(label.into(), Storage::Owned(bytes))
    }

    fn parse(path: PathBuf, bytes: Storage) -> Result<WeightFile> {
        let (header_len, entries, metadata) = validate(&path, &bytes)?;
        let config = check_metadata(&path, &metadata)?;
        // Cross-check with the safetensors crate (it accepts exactly what passed the checks above).
        if let Err(e) = safetensors::SafeTensors::read_metadata(&bytes) {
            return Err(err(
                &path,
                None,
                K::BadHeader,
                format!("the safetensors parser rejects the header: {e:?}"),
                "the file is corrupt; re-export or re-download it",
            ));
        }
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Ok(WeightFile {
            path,
            bytes,
            header_len,
            entries,
            index,
            metadata,
            config,
        })
    }

    /// The file's path (or the label given to [`WeightFile::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names in data order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }

    /// Size of the JSON header in bytes.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Offset of the data section from the start of the file.
    pub fn data_start(&self) -> usize {
        8 + self.header_len
    }

    /// True when the file has a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The tensor called `name`, or `None`.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        self.index.get(name).map(|&i| self.view(i))
    }

    /// The tensor called `name`; a missing name gives a [`WeightsErrorKind::MissingTensor`]
    /// error suggesting the closest names.
    ///
    /// [`WeightsErrorKind::MissingTensor`]: super::WeightsErrorKind::MissingTensor
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        self.get(name).ok_or_else(|| self.missing(name))
    }

    /// Every tensor, in data order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> + '_ {
        (0..self.entries.len()).map(|i| self.view(i))
    }

    /// The tensor called `name`, after checking that its shape is `shape` (what the model's config
    /// implies); a mismatch gives a [`WeightsErrorKind::ShapeMismatch`] error naming both shapes.
    ///
    /// [`WeightsErrorKind::ShapeMismatch`]: super::WeightsErrorKind::ShapeMismatch
    pub fn expect_shape(&self, name: &str, shape: &[usize]) -> Result<TensorView<'_>> {
        let t = self.tensor(name)?;
        if t.shape != shape {
            let arch = self
                .architecture()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default();
            return Err(err(
                &self.path,
                Some(name),
                K::ShapeMismatch,
                format!(
                    "has shape {:?}, but the model's config{arch} needs {shape:?}",
                    t.shape
                ),
                "the file was exported for a different configuration (compare the config's sizes, \
                 e.g. hidden size or vocabulary, with `heedful inspect FILE`), or it is the wrong file",
            ));
        }
        Ok(t)
    }

    /// [`WeightFile::expect_shape`], and the tensor must be a float (F16, BF16, F32, F64): a model
    /// weight of another dtype is refused here, naming the file and the tensor, instead of failing
    /// later inside a kernel with only an op name.
    pub fn expect_float(&self, name: &str, shape: &[usize]) -> Result<TensorView<'_>> {
        let t = self.expect_shape(name, shape)?;
        if !t.dtype.is_float() {
            return Err(err(
                &self.path,
                Some(name),
                K::UnsupportedDtype,
                format!(
                    "has dtype {}, but the model needs a float weight here",
                    t.dtype
                ),
                "the file was written for a different model, or the tensor was quantized; \
                 export it as F32/F16/BF16",
            ));
        }
        Ok(t)
    }

    /// An [`Error::Weights`] about tensor `name` of this file that the model's config rejects
    /// (the hint points at the config and `heedful inspect`).
    pub fn config_error(&self, name: &str, kind: K, detail: impl Into<String>) -> Error {
        err(
            &self.path,
            Some(name),
            kind,
            detail,
            "the file and its config disagree: check the config's sizes and layer counts against \
             `heedful inspect FILE`, or use the file the config was written for",
        )
    }

    /// The `__metadata__` section (string to string).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The `heedful.format` version, when the file came from heedful's exporter.
    pub fn format_version(&self) -> Option<u32> {
        self.metadata
            .get(META_FORMAT)
            .and_then(|v| v.trim().parse().ok())
    }

    /// The `heedful.arch` architecture name.
    pub fn architecture(&self) -> Option<&str> {
        self.metadata.get(META_ARCH).map(String::as_str)
    }

    /// The `heedful.config` JSON, parsed (validated on open).
    pub fn config_json(&self) -> Option<&serde_json::Value> {
        self.config.as_ref()
    }

    /// Total bytes of tensor data.
    pub fn data_len(&self) -> usize {
        self.bytes.len() - self.data_start()
    }

    /// The whole file's bytes.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.bytes
    }

    /// Address of the first byte, to turn a view's data pointer into a file offset.
    pub(crate) fn raw_ptr(&self) -> usize {
        self.bytes.as_ptr() as usize
    }

    /// Asks the kernel to read `range` of the file ahead (a hint; errors ignored).
    pub(crate) fn will_need(&self, begin: usize, len: usize) {
        #[cfg(unix)]
        if let Storage::Map(m) = &self.bytes {
            let page = 4096;
            let start = begin / page * page;
            let len = (len + (begin - start)).min(m.len() - start);
            let _ = m.advise_range(memmap2::Advice::WillNeed, start, len);
        }
        #[cfg(not(unix))]
        let _ = (begin, len);
    }

    fn view(&self, i: usize) -> TensorView<'_> {
        let e = &self.entries[i];
        let start = self.data_start();
        TensorView {
            path: &self.path,
            name: &e.name,
            dtype: e.dtype,
            shape: &e.shape,
            data: &self.bytes[start + e.begin..start + e.end],
        }
    }

    fn missing(&self, name: &str) -> Error {
        let close = closest_names(name, self.names(), 3);
        let hint = if close.is_empty() {
            let some: Vec<String> = self.names().take(5).map(|n| format!("{n:?}")).collect();
            if some.is_empty() {
                "the file holds no tensors".to_string()
            } else {
                format!(
                    "names in the file include {}; `heedful inspect FILE` lists them all",
                    some.join(", ")
                )
            }
        } else {
            let c: Vec<String> = close.iter().map(|n| format!("{n:?}")).collect();
            format!(
                "did you mean {}? (`heedful inspect FILE` lists all names)",
                c.join(" or ")
            )
        };
        err(
            &self.path,
            Some(name),
            K::MissingTensor,
            format!("not in the file ({} tensors)", self.entries.len()),
            hint,
        )
    }
}

fn dir_hint(dir: &Path) -> String {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return format!("pass the file inside it: {}", single.display());
    }
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    found.sort();
    if found.is_empty() {
        "pass a .safetensors file (export one with weights/export.py)".into()
    } else {
        format!(
            "pass one of the .safetensors files inside it: {}",
            found.join(", ")
        )
    }
}

/// Up to `k` names closest to `wanted` by edit distance (names that contain it, or that it contains,
/// come first: prefix differences such as `model.` are the usual mistake).
pub fn closest_names<'a>(
    wanted: &str,
    names: impl Iterator<Item = &'a str>,
    k: usize,
) -> Vec<String> {
    let limit = (wanted.chars().count() / 3).max(3);
    let mut scored: Vec<(usize, &str)> = names
        .filter_map(|n| {
            let d = if n.ends_with(wanted) || wanted.ends_with(n) {
                n.len().abs_diff(wanted.len()).min(1)
            } else {
                edit_distance(wanted, n)
            };
            (d <= limit).then_some((d, n))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(k)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
