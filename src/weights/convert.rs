//! `heedful convert IN OUT --dtype f16`: rewrites a checkpoint with its float tensors (F32, BF16,
//! F16, F64) in another dtype, keeping the names, their order and the metadata; other tensors are
//! copied as they are. The input is validated first, the output is streamed block by block (memory
//! stays flat whatever the file size) into `OUT.partial` and renamed into place when complete.
//!
//! ```no_run
//! use heedful::weights::convert::{convert, Target};
//! let stats = convert("model.safetensors", "model-f16.safetensors", Target::F16, true)?;
//! println!("{} of {} tensors converted", stats.converted, stats.tensors);
//! # Ok::<(), heedful::Error>(())
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::file::{FileDType, TensorView, WeightFile};
use super::upload::{bad_value, element, first_non_finite};
use crate::error::{Error, Result};

/// Elements converted per block.
const BLOCK: usize = 64 * 1024;

/// The dtype float tensors are converted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// IEEE half precision (what heedful holds weights in).
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision.
    F32,
}

impl Target {
    /// The file dtype written.
    pub fn dtype(self) -> FileDType {
        match self {
            Target::F16 => FileDType::F16,
            Target::BF16 => FileDType::BF16,
            Target::F32 => FileDType::F32,
        }
    }
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Target> {
        match s.to_ascii_lowercase().as_str() {
            "f16" | "fp16" | "float16" | "half" => Ok(Target::F16),
            "bf16" | "bfloat16" => Ok(Target::BF16),
            "f32" | "fp32" | "float32" | "float" => Ok(Target::F32),
            _ => Err(Error::invalid(
                "convert",
                format!("unknown dtype {s:?}; use f16, bf16 or f32"),
            )),
        }
    }
}

/// What a conversion did.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Tensors written.
    pub tensors: usize,
    /// Tensors whose dtype changed.
    pub converted: usize,
    /// Size of the input file.
    pub bytes_in: u64,
    /// Size of the output file.
    pub bytes_out: u64,
    /// Wall time.
    pub seconds: f64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::inspect::human_bytes;
        write!(
            f,
            "{} tensors ({} converted), {} -> {} in {:.2} s",
            self.tensors,
            self.converted,
            human_bytes(self.bytes_in),
            human_bytes(self.bytes_out),
            self.seconds
        )
    }
}

/// Options of [`convert_with`].
#[derive(Clone, Copy, Debug)]
pub struct ConvertOptions {
    /// The dtype float tensors are written in.
    pub target: Target,
    /// Show a progress bar on stderr for files over 16 MiB (hidden when stderr is not a terminal).
    pub progress: bool,
    /// Write finite values outside f16's range (|x| > 65504; they become infinite) instead of
    /// refusing them with [`WeightsErrorKind::OutOfRange`](super::WeightsErrorKind::OutOfRange).
    pub allow_overflow: bool,
    /// Write NaN and infinite values instead of refusing them with
    /// [`WeightsErrorKind::NonFinite`](super::WeightsErrorKind::NonFinite).
    pub allow_non_finite: bool,
}

impl ConvertOptions {
    /// Converting to `target`, no progress bar, refusing NaN, infinities and overflow.
    pub fn new(target: Target) -> Self {
        ConvertOptions {
            target,
            progress: false,
            allow_overflow: false,
            allow_non_finite: false,
        }
    }
}

/// Converts `input` to `output` (see the module docs) with the default checks: NaN or infinite
/// float values, and (to f16) finite values outside f16's range, are refused with the tensor's
/// name and the first bad index, as the GPU upload refuses them. `progress` shows a progress bar
/// on stderr for files over 16 MiB (hidden when stderr is not a terminal; only with the `tools`
/// feature, which brings the progress-bar crate).
pub fn convert(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    target: Target,
    progress: bool,
) -> Result<Stats> {
    let opts = ConvertOptions {
        progress,
        ..ConvertOptions::new(target)
    };
    convert_with(input, output, &opts)
}

/// [`convert`] with explicit options. The output must not exist or be a regular file (a device,
/// FIFO or directory there is refused, never replaced); it is written to `OUT.partial`, which is
/// removed on any error, and renamed into place when complete.
pub fn convert_with(
    input: impl AsRef<Path>,
    output: impl AsRef<Path>,
    opts: &ConvertOptions,
) -> Result<Stats> {
    let (target, progress) = (opts.target, opts.progress);
    let (input, output) = (input.as_ref(), output.as_ref());
    let start = Instant::now();
    let partial = partial_path(output);
    for p in [output, partial.as_path()] {
        // `metadata` follows symlinks, so a link to /dev/null is refused too.
        if let Ok(m) = std::fs::metadata(p) {
            if !m.is_file() {
                return Err(Error::file(
                    p,
                    format!(
                        "exists and is not a regular file ({}); convert writes only to a new or \
                         regular file",
                        file_kind(&m)
                    ),
                ));
            }
        }
    }
    let same = match (input.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::invalid(
            "convert",
            format!(
                "input and output are the same file ({}); write to a new file",
                input.display()
            ),
        ));
    }
    let f = WeightFile::open(input)?;
    let to = target.dtype();
    let out_dtype = |d: FileDType| if d.is_float() { to } else { d };

    // Header: metadata first, then tensors in data order with packed offsets.
    let mut entries = Vec::with_capacity(f.len() + 1);
    if !f.metadata().is_empty() {
        entries.push(format!(
            "\"__metadata__\":{}",
            serde_json::to_string(f.metadata())
                .map_err(|e| Error::invalid("convert", e.to_string()))?
        ));
    }
    let mut offset = 0usize;
    let mut converted = 0;
    for t in f.tensors() {
        let d = out_dtype(t.dtype);
        converted += usize::from(d != t.dtype);
        let len = t.numel() * d.size();
        let name =
            serde_json::to_string(t.name).map_err(|e| Error::invalid("convert", e.to_string()))?;
        entries.push(format!(
            "{name}:{{\"dtype\":\"{}\",\"shape\":{:?},\"data_offsets\":[{offset},{}]}}",
            d.name(),
            t.shape,
            offset + len
        ));
        offset += len;
    }
    let mut header = format!("{{{}}}", entries.join(",")).into_bytes();
    header.resize(header.len().div_ceil(8) * 8, b' ');

    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            path: path.clone(),
            source,
        }
    };
    let file = File::create(&partial).map_err(io(&partial))?;
    // From here on, every error path removes the partial file.
    let fail = |e: Error| {
        let _ = std::fs::remove_file(&partial);
        e
    };
    let mut w = BufWriter::with_capacity(4 << 20, file);
    let bar = progress_bar(progress, f.data_len() as u64);
    let result = (|| -> Result<()> {
        let wio = io(&partial);
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(&wio)?;
        w.write_all(&header).map_err(&wio)?;
        let mut buf = Vec::with_capacity(BLOCK * 4);
        let mut f32s = vec![0f32; BLOCK];
        for t in f.tensors() {
            let d = out_dtype(t.dtype);
            let step = BLOCK * t.dtype.size();
            for (b, block) in t.data.chunks(step).enumerate() {
                let base = b * BLOCK;
                if t.dtype.is_float() && !opts.allow_non_finite {
                    if let Some(j) = first_non_finite(block, t.dtype) {
                        let x = element(block, t.dtype, j);
                        return Err(bad_value(t.path, t.name, t.dtype, base + j, x, true));
                    }
                }
                if d == t.dtype {
                    w.write_all(block).map_err(&wio)?;
                } else {
                    cast(block, t.dtype, d, &mut f32s, &mut buf);
                    if !opts.allow_overflow {
                        check_overflow(&t, block, base, d, &buf)?;
                    }
                    w.write_all(&buf).map_err(&wio)?;
                }
                if let Some(b) = &bar {
                    b.inc(block.len() as u64);
                }
            }
        }
        w.flush().map_err(&wio)?;
        w.get_ref().sync_all().map_err(&wio)
    })();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result.map_err(fail)?;
    drop(w);
    std::fs::rename(&partial, output)
        .map_err(io(output))
        .map_err(fail)?;
    Ok(Stats {
        tensors: f.len(),
        converted,
        bytes_in: f.file_len() as u64,
        bytes_out: (8 + header.len() + offset) as u64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A word for what `m` describes (not a regular file), for messages.
pub(crate) fn file_kind(m: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if m.is_dir() {
        "a directory"
    } else if m.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Refuses f16 output `out` (converted from `block`, elements from flat index `base` of `t`)
/// where a finite source value became infinite.
fn check_overflow(
    t: &TensorView<'_>,
    block: &[u8],
    base: usize,
    to: FileDType,
    out: &[u8],
) -> Result<()> {
    if to != FileDType::F16 && to != FileDType::BF16 {
        return Ok(());
    }
    let mut at = 0;
    while let Some(j) = first_non_finite(&out[at * 2..], to) {
        let j = at + j;
        let x = element(block, t.dtype, j);
        if x.is_finite() {
            return Err(bad_value(t.path, t.name, t.dtype, base + j, x, false));
        }
        at = j + 1;
    }
    Ok(())
}

fn partial_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    output.with_file_name(name)
}

#[cfg(feature = "tools")]
fn progress_bar(progress: bool, total: u64) -> Option<indicatif::ProgressBar> {
    if !progress || total < 16 << 20 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// Without the `tools` feature there is no progress bar: the same calls, doing nothing.
#[cfg(not(feature = "tools"))]
fn progress_bar(_progress: bool, _total: u64) -> Option<NoBar> {
    None
}

/// The stand-in for the progress bar without the `tools` feature.
#[cfg(not(feature = "tools"))]
struct NoBar;

#[cfg(not(feature = "tools"))]
impl NoBar {
    fn inc(&self, _bytes: u64) {}
    fn finish_and_clear(&self) {}
}

/// Converts little-endian float elements `src` of `from` to `to` into `out` (through f32, except
/// F64 -> F16, which rounds once).
fn cast(src: &[u8], from: FileDType, to: FileDType, f32s: &mut [f32], out: &mut Vec<u8>) {
    out.clear();
    let n = src.len() / from.size();
    let x = &mut f32s[..n];
    match from {
        FileDType::F64 => {
            let d = src.chunks_exact(8).map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_le_bytes(a)
            });
            match to {
                FileDType::F16 => out.extend(d.flat_map(|v| f16::from_f64(v).to_le_bytes())),
                FileDType::BF16 => out.extend(d.flat_map(|v| bf16::from_f64(v).to_le_bytes())),
                _ => out.extend(d.flat_map(|v| (v as f32).to_le_bytes())),
            }
            return;
        }
        FileDType::F32 => {
            for (d, c) in x.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        FileDType::F16 => {
            let h: Vec<f16> = src
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]))
                .collect();
            h.convert_to_f32_slice(x);
        }
        _ => {
            for (d, c) in x.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
    }
    match to {
        FileDType::F16 => {
            let mut h = vec![f16::ZERO; n];
            h.convert_from_f32_slice(x);
            out.extend(h.iter().flat_map(|v| v.to_le_bytes()));
        }
        FileDType::BF16 => out.extend(x.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes())),
        _ => out.extend(x.iter().flat_map(|v| v.to_le_bytes())),
    }
}
