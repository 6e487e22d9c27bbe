//! Load benchmark: time, throughput and peak anonymous memory of loading generated weight files,
//! against a plain memcpy of the same bytes measured in the same run.
//!
//! Two cases, as issue 5 asks: a 1 GiB F32 file converted to f16 on upload, and a 512 MiB f16 file
//! (tensors of 64 MiB, like the large matrices of a real checkpoint). A load is open (mmap and
//! validate) + upload of every tensor + wait for the queue. The baseline maps the file afresh and
//! copies its bytes into a fresh allocation (what reading the file into memory costs, page faults
//! included); a second baseline copies between buffers already faulted in (bandwidth alone). Peak
//! anonymous memory is sampled from `RssAnon` in /proc/self/status every
//! millisecond during the load (Linux only; elsewhere it reads 0).
//!
//! Targets (issue 5, on lavapipe where GPU buffers are host memory): the load's peak anonymous
//! memory above what the process had before it at most the GPU copy plus 128 MiB; f16 load
//! throughput at least half the memcpy's.
//!
//! `heedful bench --filter weights` (or `cargo bench -- weights`) runs it as the `weights` suite;
//! files go to `HEEDFUL_BENCH_DIR` (default: the temp dir) and are removed afterwards, and
//! `HEEDFUL_BENCH_WEIGHTS_SCALE` (default 1) shrinks them for a quick look.
//!
//! ```no_run
//! let gpu = heedful::Gpu::shared()?;
//! for r in heedful::bench::weights::bench_load(&gpu, &std::env::temp_dir(), 1.0, 3)? {
//!     println!("{r}");
//! }
//! # Ok::<(), heedful::Error>(())
//! ```

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use half::f16;

use super::{BenchCtx, Timing};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::weights::inspect::human_bytes;
use crate::weights::{Hold, UploadOptions, WeightFile};

/// Extra anonymous memory a load may use above its GPU copy.
pub const MEMORY_BUDGET: u64 = 128 << 20;

/// One case's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoadBench {
    /// What was loaded.
    pub case: String,
    /// Bytes of tensor data in the file.
    pub file_bytes: u64,
    /// Bytes of the GPU copy.
    pub gpu_bytes: u64,
    /// Median seconds of a load (open + upload + wait).
    pub load_s: f64,
    /// File bytes per second of the load, in GB/s (1e9).
    pub load_gbps: f64,
    /// Median seconds of the memcpy baseline.
    pub memcpy_s: f64,
    /// The baseline's GB/s.
    pub memcpy_gbps: f64,
    /// `load_gbps / memcpy_gbps`.
    pub ratio: f64,
    /// GB/s of a memcpy between buffers already faulted in (bandwidth only, no page faults).
    pub memcpy_warm_gbps: f64,
    /// `load_gbps / memcpy_warm_gbps`.
    pub ratio_warm: f64,
    /// Anonymous memory of the process just before the load, bytes.
    pub anon_before: u64,
    /// Peak anonymous memory during the load, bytes (highest over the repetitions).
    pub anon_peak: u64,
    /// `anon_peak - anon_before - gpu_bytes`: what the load used besides the GPU copy.
    pub anon_extra: i64,
    /// `anon_extra <= MEMORY_BUDGET`.
    pub memory_ok: bool,
    /// `ratio >= 0.5` (the target applies to the f16 file).
    pub throughput_ok: bool,
}

impl std::fmt::Display for LoadBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: i64| b as f64 / (1u64 << 20) as f64;
        write!(
            f,
            "{:<26} load {:>7.3} s {:>6.2} GB/s | memcpy {:>6.2} GB/s: ratio {:.2} {} | warm memcpy \
             {:>6.2} GB/s: ratio {:.2} | anon: before {:.0} MiB, peak {:.0} MiB, beyond the {} GPU copy \
             {:+.0} MiB {}",
            self.case,
            self.load_s,
            self.load_gbps,
            self.memcpy_gbps,
            self.ratio,
            if self.throughput_ok { "(>= 0.5 ok)" } else { "(< 0.5)" },
            self.memcpy_warm_gbps,
            self.ratio_warm,
            mib(self.anon_before as i64),
            mib(self.anon_peak as i64),
            human_bytes(self.gpu_bytes),
            mib(self.anon_extra),
            if self.memory_ok { "(<= 128 ok)" } else { "(> 128 MiB)" },
        )
    }
}

/// Anonymous memory of this process in bytes: `RssAnon + RssShmem` from /proc/self/status (0
/// where /proc is not there). Shared memory counts because lavapipe places device memory (GPU
/// buffers and staging) in memfd pages, which the kernel reports as `RssShmem`, not `RssAnon`;
/// neither includes the file's page-cache pages mapped by the loader (`RssFile`).
pub fn rss_anon() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    field("RssAnon:") + field("RssShmem:")
}

/// Samples [`rss_anon`] every millisecond on a thread until dropped; `peak` is the highest seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_anon()));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_anon(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Sampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.peak.fetch_max(rss_anon(), Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Writes a safetensors file of `count` tensors of `elems` elements each, F32 or F16, with
/// deterministic values; returns its path.
pub fn generate(
    dir: &Path,
    name: &str,
    f16_data: bool,
    count: usize,
    elems: usize,
) -> Result<PathBuf> {
    let path = dir.join(name);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let (dtype, size) = if f16_data { ("F16", 2) } else { ("F32", 4) };
    let mut entries = Vec::new();
    for i in 0..count {
        let (b, e) = (i * elems * size, (i + 1) * elems * size);
        entries.push(format!(
            "\"layer.{i}.weight\":{{\"dtype\":\"{dtype}\",\"shape\":[{},1024],\"data_offsets\":[{b},{e}]}}",
            elems / 1024
        ));
    }
    let mut header = format!(
        "{{\"__metadata__\":{{\"heedful.format\":\"1\",\"heedful.arch\":\"bench\"}},{}}}",
        entries.join(",")
    )
    .into_bytes();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut w = BufWriter::with_capacity(8 << 20, std::fs::File::create(&path).map_err(io)?);
    w.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&header).map_err(io)?;
    let block: Vec<f32> = (0..1 << 16)
        .map(|i| ((i % 2001) as f32 - 1000.0) * 1e-3)
        .collect();
    let bytes: Vec<u8> = if f16_data {
        block
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect()
    } else {
        block.iter().flat_map(|v| v.to_le_bytes()).collect()
    };
    let mut left = count * elems * size;
    while left > 0 {
        let n = left.min(bytes.len());
        w.write_all(&bytes[..n]).map_err(io)?;
        left -= n;
    }
    w.flush().map_err(io)?;
    Ok(path)
}

/// Copies the file's data section from a fresh mapping into a fresh allocation; returns seconds.
fn memcpy_once(path: &Path) -> Result<f64> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let t = Instant::now();
    // SAFETY: read-only map of a file this benchmark wrote and does not modify.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut dst = vec![0u8; map.len()];
    dst.copy_from_slice(&map);
    std::hint::black_box(&dst);
    let s = t.elapsed().as_secs_f64();
    drop(dst);
    Ok(s)
}

/// Loads every tensor of `path` as f16; returns (seconds, GPU bytes, anon before, anon peak).
fn load_once(gpu: &Gpu, path: &Path) -> Result<(f64, u64, u64, u64)> {
    let before = rss_anon();
    let sampler = Sampler::start();
    let t = Instant::now();
    let f = WeightFile::open(path)?;
    let tensors = f.upload_all(gpu, &UploadOptions::new(Hold::F16))?;
    gpu.wait()?;
    let s = t.elapsed().as_secs_f64();
    let peak = sampler.finish();
    let gpu_bytes = tensors.values().map(|t| t.byte_len()).sum();
    drop(tensors);
    gpu.wait()?;
    Ok((s, gpu_bytes, before, peak))
}

/// A memcpy of the file's bytes between buffers already faulted in; returns the median seconds.
fn memcpy_warm(path: &Path, reps: usize) -> Result<f64> {
    let src = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut dst = vec![1u8; src.len()];
    let mut times = Vec::new();
    for _ in 0..reps.max(2) {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs both cases in `dir` (files are generated there and removed after), `reps` times each.
/// `scale` shrinks the files (1.0: the 1 GiB F32 and 512 MiB F16 of issue 5).
pub fn bench_load(gpu: &Gpu, dir: &Path, scale: f64, reps: usize) -> Result<Vec<LoadBench>> {
    let reps = reps.max(1);
    let tensor_elems = 16 << 20; // 64 MiB of f32, 32 MiB of f16
    let count = |bytes: f64, size: f64| {
        ((bytes * scale / (tensor_elems as f64 * size)).round() as usize).max(1)
    };
    let cases = [
        (
            "F32 file -> f16 on upload",
            false,
            count((1u64 << 30) as f64, 4.0),
        ),
        ("F16 file -> f16", true, count((512u64 << 20) as f64, 2.0)),
    ];
    let mut out = Vec::new();
    for (case, is_f16, n) in cases {
        let name = format!(
            "heedful-bench-{}-{}.safetensors",
            std::process::id(),
            if is_f16 { "f16" } else { "f32" }
        );
        let path = generate(dir, &name, is_f16, n, tensor_elems)?;
        let result = (|| {
            let file_bytes = (n * tensor_elems * if is_f16 { 2 } else { 4 }) as u64;
            // Warm the page cache and the pipeline of a first upload.
            memcpy_once(&path)?;
            let (mut loads, mut copies) = (Vec::new(), Vec::new());
            let (mut gpu_bytes, mut before, mut peak) = (0, u64::MAX, 0);
            for _ in 0..reps {
                copies.push(memcpy_once(&path)?);
                let (s, g, b, p) = load_once(gpu, &path)?;
                loads.push(s);
                gpu_bytes = g;
                before = before.min(b);
                peak = peak.max(p);
            }
            let (load_s, memcpy_s) = (median(loads), median(copies));
            let warm_s = memcpy_warm(&path, reps)?;
            let gb = file_bytes as f64 / 1e9;
            let anon_extra = peak as i64 - before as i64 - gpu_bytes as i64;
            let ratio = (gb / load_s) / (gb / memcpy_s);
            Ok(LoadBench {
                case: case.to_string(),
                file_bytes,
                gpu_bytes,
                load_s,
                load_gbps: gb / load_s,
                memcpy_s,
                memcpy_gbps: gb / memcpy_s,
                ratio,
                memcpy_warm_gbps: gb / warm_s,
                ratio_warm: warm_s / load_s,
                anon_before: before,
                anon_peak: peak,
                anon_extra,
                memory_ok: anon_extra <= MEMORY_BUDGET as i64,
                throughput_ok: ratio >= 0.5,
            })
        })();
        let _ = std::fs::remove_file(&path);
        out.push(result?);
    }
    Ok(out)
}

/// The `weights` suite: both cases of [`bench_load`] as bench lines. The GB/s column counts bytes
/// read from the file plus bytes written to the GPU (as the copy roofline counts read + write);
/// `file_gbps` and the memcpy figures count file bytes.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    let cases = [("load:f32->f16", "F32->f16"), ("load:f16", "F16->f16")];
    if !cases.iter().any(|(op, _)| ctx.wants(op, "")) {
        return Ok(());
    }
    let dir = std::env::var_os("HEEDFUL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scale = std::env::var("HEEDFUL_BENCH_WEIGHTS_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let gpu = ctx.gpu.clone();
    for ((op, dtype), r) in cases.iter().zip(bench_load(&gpu, &dir, scale, 3)?) {
        if !ctx.wants(op, "") {
            continue;
        }
        let mib = |b: i64| format!("{:.0}", b as f64 / (1u64 << 20) as f64);
        let t = Timing {
            median_s: r.load_s,
            reps: 3,
            reference: None,
        };
        let extra = vec![
            ("file_gbps".to_string(), format!("{:.2}", r.load_gbps)),
            ("memcpy_gbps".to_string(), format!("{:.2}", r.memcpy_gbps)),
            ("vs_memcpy".to_string(), format!("{:.2}", r.ratio)),
            (
                "warm_memcpy_gbps".to_string(),
                format!("{:.2}", r.memcpy_warm_gbps),
            ),
            ("vs_warm".to_string(), format!("{:.2}", r.ratio_warm)),
            ("anon_before_mib".to_string(), mib(r.anon_before as i64)),
            ("anon_peak_mib".to_string(), mib(r.anon_peak as i64)),
            ("anon_beyond_gpu_copy_mib".to_string(), mib(r.anon_extra)),
            ("memory_ok".to_string(), r.memory_ok.to_string()),
            ("throughput_ok".to_string(), r.throughput_ok.to_string()),
        ];
        let shape = human_bytes(r.file_bytes).replace(' ', "");
        ctx.push_memory(
            op,
            &shape,
            dtype,
            t,
            (r.file_bytes + r.gpu_bytes) as f64,
            extra,
        );
    }
    Ok(())
}
