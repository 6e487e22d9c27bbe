//! `heedful inspect FILE`: what a weight file holds (metadata, tensors with dtype, shape and bytes,
//! totals per dtype), as text or JSON.
//!
//! ```no_run
//! let report = heedful::weights::inspect::report("model.safetensors")?;
//! println!("{report}");
//! println!("{}", serde_json::to_string_pretty(&report).unwrap());
//! # Ok::<(), heedful::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::file::WeightFile;
use crate::error::Result;

/// One tensor's line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Tensor name.
    pub name: String,
    /// Dtype as the file spells it.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Elements.
    pub numel: usize,
    /// Bytes of data.
    pub bytes: usize,
    /// Offset of the data from the start of the file.
    pub offset: usize,
}

/// Count, elements and bytes of a group of tensors.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Total {
    /// Number of tensors.
    pub tensors: usize,
    /// Number of elements (parameters).
    pub numel: usize,
    /// Bytes of data.
    pub bytes: usize,
}

impl Total {
    fn add(&mut self, r: &Row) {
        self.tensors += 1;
        self.numel += r.numel;
        self.bytes += r.bytes;
    }
}

/// What `heedful inspect` prints: `Display` gives the text table, `Serialize` the JSON form.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The file.
    pub path: String,
    /// File size in bytes.
    pub file_bytes: usize,
    /// JSON header size in bytes.
    pub header_bytes: usize,
    /// `heedful.format`, when present.
    pub format_version: Option<u32>,
    /// `heedful.arch`, when present.
    pub architecture: Option<String>,
    /// The whole `__metadata__` section.
    pub metadata: BTreeMap<String, String>,
    /// Tensors in data order.
    pub tensors: Vec<Row>,
    /// Totals per dtype.
    pub by_dtype: BTreeMap<String, Total>,
    /// Totals over all tensors.
    pub total: Total,
}

/// Opens and validates `path` and reports what it holds.
pub fn report(path: impl AsRef<Path>) -> Result<Report> {
    Ok(Report::new(&WeightFile::open(path)?))
}

impl Report {
    /// The report of an open file.
    pub fn new(f: &WeightFile) -> Report {
        let mut by_dtype: BTreeMap<String, Total> = BTreeMap::new();
        let mut total = Total::default();
        let base = f.raw_ptr();
        let tensors: Vec<Row> = f
            .tensors()
            .map(|t| {
                let r = Row {
                    name: t.name.to_string(),
                    dtype: t.dtype.name().to_string(),
                    shape: t.shape.to_vec(),
                    numel: t.numel(),
                    bytes: t.data.len(),
                    offset: t.data.as_ptr() as usize - base,
                };
                by_dtype.entry(r.dtype.clone()).or_default().add(&r);
                total.add(&r);
                r
            })
            .collect();
        Report {
            path: f.path().display().to_string(),
            file_bytes: f.file_len(),
            header_bytes: f.header_len(),
            format_version: f.format_version(),
            architecture: f.architecture().map(str::to_string),
            metadata: f.metadata().clone(),
            tensors,
            by_dtype,
            total,
        }
    }
}

/// Bytes in binary units: `512 B`, `1.50 KiB`, `3.00 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Elements with a readable suffix: `950`, `1.2M`, `3.4B`.
fn human_count(n: usize) -> String {
    let v = n as f64;
    if v >= 1e9 {
        format!("{:.2}B", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}K", v / 1e3)
    } else {
        n.to_string()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} ({} header), {} tensors",
            self.path,
            human_bytes(self.file_bytes as u64),
            human_bytes(self.header_bytes as u64),
            self.tensors.len()
        )?;
        if self.format_version.is_some() || self.architecture.is_some() {
            writeln!(
                f,
                "heedful format {}, architecture {}",
                self.format_version
                    .map_or("-".to_string(), |v| v.to_string()),
                self.architecture.as_deref().unwrap_or("-")
            )?;
        }
        if !self.metadata.is_empty() {
            writeln!(f, "metadata:")?;
            for (k, v) in &self.metadata {
                writeln!(f, "  {k} = {v}")?;
            }
        }
        let shapes: Vec<String> = self
            .tensors
            .iter()
            .map(|r| format!("{:?}", r.shape))
            .collect();
        let wn = self
            .tensors
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(6);
        let ws = shapes.iter().map(|s| s.len()).max().unwrap_or(0).max(5);
        writeln!(
            f,
            "{:<wn$}  {:<7}  {:<ws$}  {:>12}",
            "tensor", "dtype", "shape", "bytes"
        )?;
        for (r, s) in self.tensors.iter().zip(&shapes) {
            writeln!(
                f,
                "{:<wn$}  {:<7}  {:<ws$}  {:>12}",
                r.name,
                r.dtype,
                s,
                human_bytes(r.bytes as u64)
            )?;
        }
        for (d, t) in &self.by_dtype {
            writeln!(
                f,
                "{d}: {} tensors, {} parameters, {}",
                t.tensors,
                human_count(t.numel),
                human_bytes(t.bytes as u64)
            )?;
        }
        write!(
            f,
            "total: {} tensors, {} parameters ({}), {}",
            self.total.tensors,
            human_count(self.total.numel),
            self.total.numel,
            human_bytes(self.total.bytes as u64)
        )
    }
}
