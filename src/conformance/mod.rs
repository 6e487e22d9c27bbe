//! The conformance runner: PyTorch-computed reference cases (one safetensors file each) run through
//! heedful's ops and compared element by element.
//!
//! File layout (see `shared/CONFORMANCE.md`): tensors `in.<name>` (inputs), `w.<name>` (weights,
//! uploaded in the case's `weights_dtype`), `out.<name>` (expected outputs); metadata `op`, `attrs`
//! (JSON), `atol`, `rtol`, `weights_dtype`. A case passes when every expected output satisfies
//! `|got - want| <= atol + rtol * |want|`. Cases of ops heedful does not implement yet are skipped,
//! never passed.
//!
//! ```no_run
//! let gpu = heedful::Gpu::shared()?;
//! let outcomes = heedful::conformance::run_dir(&gpu, "../shared/conformance".as_ref(), Some("softmax"))?;
//! assert!(outcomes.iter().all(|o| !o.failed()));
//! # Ok::<(), heedful::Error>(())
//! ```

mod handlers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::compare::compare;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::{DType, Tensor};

pub use handlers::implemented_ops;

/// A tensor read from a case file, converted to host types.
#[derive(Clone, Debug)]
pub enum HostData {
    /// F32 (and F64/F16/BF16 widened or narrowed to f32).
    F32(Vec<f32>),
    /// I64 and other integer types.
    I64(Vec<i64>),
    /// BOOL.
    Bool(Vec<bool>),
}

/// A named tensor of a case.
#[derive(Clone, Debug)]
pub struct HostTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub data: HostData,
}

/// One conformance case loaded from its file.
#[derive(Clone, Debug)]
pub struct Case {
    /// File stem, e.g. `lstm_3_f16`.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The op (`linear`, `sdpa`, ...).
    pub op: String,
    /// Op attributes.
    pub attrs: serde_json::Value,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// How weights must be held on the GPU.
    pub weights_dtype: DType,
    /// All tensors by full name (`in.x`, `w.weight`, `out.y`).
    pub tensors: BTreeMap<String, HostTensor>,
}

impl Case {
    /// Loads and validates a case file.
    pub fn load(path: &Path) -> Result<Case> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
        let md = meta.metadata().clone().unwrap_or_default();
        let get = |k: &str| {
            md.get(k)
                .cloned()
                .ok_or_else(|| Error::file(path, format!("metadata has no {k:?} key")))
        };
        let format = get("format")?;
        if format != "heedful-conformance/1" {
            return Err(Error::file(path, format!("unknown case format {format:?}")));
        }
        let parse_tol = |k: &str| -> Result<f64> {
            get(k)?
                .parse::<f64>()
                .map_err(|e| Error::file(path, format!("metadata {k}: {e}")))
        };
        let attrs = match md.get("attrs") {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| Error::file(path, format!("metadata attrs is not JSON: {e}")))?,
            None => serde_json::Value::Object(Default::default()),
        };
        let weights_dtype = match md.get("weights_dtype").map(String::as_str) {
            None | Some("f32") => DType::F32,
            Some("f16") => DType::F16,
            Some(other) => {
                return Err(Error::file(
                    path,
                    format!("unknown weights_dtype {other:?}"),
                ))
            }
        };
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let data = convert_view(&view)
                .map_err(|d| Error::file(path, format!("tensor {name:?}: {d}")))?;
            tensors.insert(
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(Case {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            op: get("op")?,
            attrs,
            atol: parse_tol("atol")?,
            rtol: parse_tol("rtol")?,
            weights_dtype,
            tensors,
        })
    }

    /// The tensor `full_name`, or an error naming the case file and the tensor.
    pub fn tensor(&self, full_name: &str) -> Result<&HostTensor> {
        self.tensors.get(full_name).ok_or_else(|| {
            Error::file(
                &self.path,
                format!(
                    "case has no tensor {full_name:?} (it has {})",
                    self.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// True when the case has `full_name`.
    pub fn has(&self, full_name: &str) -> bool {
        self.tensors.contains_key(full_name)
    }

    /// The f32 values of `full_name`.
    pub fn f32s(&self, full_name: &str) -> Result<(&[f32], &[usize])> {
        let t = self.tensor(full_name)?;
        match &t.data {
            HostData::F32(v) => Ok((v, &t.shape)),
            _ => Err(Error::file(
                &self.path,
                format!("tensor {full_name:?} is not a float tensor"),
            )),
        }
    }

    /// The integer values of `full_name`.
    pub fn i64s(&self, full_name: &str) -> Result<(&[i64], &[usize])> {
        let t = self.tensor(full_name)?;
        match &t.data {
            HostData::I64(v) => Ok((v, &t.shape)),
            _ => Err(Error::file(
                &self.path,
                format!("tensor {full_name:?} is not an integer tensor"),
            )),
        }
    }

    /// The boolean values of `full_name`.
    pub fn bools(&self, full_name: &str) -> Result<(&[bool], &[usize])> {
        let t = self.tensor(full_name)?;
        match &t.data {
            HostData::Bool(v) => Ok((v, &t.shape)),
            _ => Err(Error::file(
                &self.path,
                format!("tensor {full_name:?} is not a bool tensor"),
            )),
        }
    }

    /// Uploads input `in.<name>` as f32.
    pub fn input(&self, gpu: &Gpu, name: &str) -> Result<Tensor> {
        let (v, s) = self.f32s(&format!("in.{name}"))?;
        Tensor::from_f32(gpu, v, s)
    }

    /// Uploads weight `w.<name>` in the case's `weights_dtype`.
    pub fn weight(&self, gpu: &Gpu, name: &str) -> Result<Tensor> {
        let (v, s) = self.f32s(&format!("w.{name}"))?;
        Tensor::from_f32_as(gpu, v, s, self.weights_dtype)
    }

    /// Uploads weight `w.<name>` when the case has it.
    pub fn weight_opt(&self, gpu: &Gpu, name: &str) -> Result<Option<Tensor>> {
        if self.has(&format!("w.{name}")) {
            self.weight(gpu, name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An integer attribute.
    pub fn attr_usize(&self, key: &str) -> Result<usize> {
        self.attrs
            .get(key)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .ok_or_else(|| Error::file(&self.path, format!("attrs has no integer {key:?}")))
    }

    /// A boolean attribute (false when absent).
    pub fn attr_bool(&self, key: &str) -> bool {
        self.attrs
            .get(key)
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// A float attribute (`None` when absent or null).
    pub fn attr_f64(&self, key: &str) -> Option<f64> {
        self.attrs.get(key).and_then(|v| v.as_f64())
    }

    /// A string attribute.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(|v| v.as_str())
    }
}

fn convert_view(
    view: &safetensors::tensor::TensorView<'_>,
) -> std::result::Result<HostData, String> {
    use safetensors::Dtype as D;
    let b = view.data();
    let f32s = |v: Vec<f32>| Ok(HostData::F32(v));
    match view.dtype() {
        D::F32 => f32s(bytemuck::pod_collect_to_vec(b)),
        D::F64 => f32s(
            bytemuck::pod_collect_to_vec::<u8, f64>(b)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        ),
        D::F16 => f32s(
            bytemuck::pod_collect_to_vec::<u8, half::f16>(b)
                .into_iter()
                .map(f32::from)
                .collect(),
        ),
        D::BF16 => f32s(
            bytemuck::pod_collect_to_vec::<u8, half::bf16>(b)
                .into_iter()
                .map(f32::from)
                .collect(),
        ),
        D::I64 => Ok(HostData::I64(bytemuck::pod_collect_to_vec(b))),
        D::I32 => Ok(HostData::I64(
            bytemuck::pod_collect_to_vec::<u8, i32>(b)
                .into_iter()
                .map(i64::from)
                .collect(),
        )),
        D::U8 => Ok(HostData::I64(b.iter().map(|&v| v as i64).collect())),
        D::BOOL => Ok(HostData::Bool(b.iter().map(|&v| v != 0).collect())),
        other => Err(format!("unsupported dtype {other:?}")),
    }
}

/// What happened to one case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    /// Case name (file stem).
    pub name: String,
    /// The op.
    pub op: String,
    /// `pass`, `fail`, `skip` or `error`.
    pub status: &'static str,
    /// Largest absolute error over all outputs.
    pub max_abs: f64,
    /// Largest relative error over all outputs.
    pub max_rel: f64,
    /// Why it failed, errored or was skipped.
    pub detail: String,
}

impl Outcome {
    /// True for `fail` and `error`.
    pub fn failed(&self) -> bool {
        matches!(self.status, "fail" | "error")
    }
}

/// Choices that cases leave open, so tests can cover every kernel path.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// The recurrence kernel for `lstm`, `gru`, `rnn` cases.
    pub recurrent_path: crate::ops::RecurrentPath,
}

/// Runs one loaded case with default options.
pub fn run_case(gpu: &Gpu, case: &Case) -> Outcome {
    run_case_with(gpu, case, &RunOptions::default())
}

/// Runs one loaded case.
pub fn run_case_with(gpu: &Gpu, case: &Case, opts: &RunOptions) -> Outcome {
    let mut out = Outcome {
        name: case.name.clone(),
        op: case.op.clone(),
        status: "pass",
        max_abs: 0.0,
        max_rel: 0.0,
        detail: String::new(),
    };
    let Some(handler) = handlers::runner(&case.op) else {
        out.status = "skip";
        out.detail = format!("op {:?} not implemented yet", case.op);
        return out;
    };
    let produced = match handler.run(gpu, case, opts) {
        Ok(p) => p,
        Err(e) => {
            out.status = "error";
            out.detail = e.to_string();
            return out;
        }
    };
    let mut problems = Vec::new();
    for (full, t) in &case.tensors {
        let Some(name) = full.strip_prefix("out.") else {
            continue;
        };
        let HostData::F32(want) = &t.data else {
            problems.push(format!("{full}: expected output is not float"));
            continue;
        };
        let Some((_, got)) = produced.iter().find(|(n, _)| n == name) else {
            problems.push(format!("{full}: not produced"));
            continue;
        };
        let c = compare(got, want, case.atol, case.rtol);
        out.max_abs = out.max_abs.max(c.max_abs);
        out.max_rel = out.max_rel.max(c.max_rel);
        if !c.passed() {
            problems.push(format!("{full}: {c}"));
        }
    }
    if !problems.is_empty() {
        out.status = "fail";
        out.detail = problems.join("; ");
    }
    out
}

/// Loads and runs every `*.safetensors` case in `dir` whose name contains `filter`, in name order.
pub fn run_dir(gpu: &Gpu, dir: &Path, filter: Option<&str>) -> Result<Vec<Outcome>> {
    run_dir_with(gpu, dir, filter, &RunOptions::default())
}

/// [`run_dir`] with options.
pub fn run_dir_with(
    gpu: &Gpu,
    dir: &Path,
    filter: Option<&str>,
    opts: &RunOptions,
) -> Result<Vec<Outcome>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .filter(|p| {
            filter.is_none_or(|f| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(f))
            })
        })
        .collect();
    paths.sort();
    Ok(paths
        .iter()
        .map(|p| match Case::load(p) {
            Ok(case) => run_case_with(gpu, &case, opts),
            Err(e) => Outcome {
                name: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                op: "?".into(),
                status: "error",
                max_abs: 0.0,
                max_rel: 0.0,
                detail: e.to_string(),
            },
        })
        .collect())
}

/// The closing summary: `N passed, M failed, K skipped`, plus the skipped ops by name.
pub fn summary(outcomes: &[Outcome]) -> String {
    let passed = outcomes.iter().filter(|o| o.status == "pass").count();
    let failed = outcomes.iter().filter(|o| o.failed()).count();
    let skipped: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == "skip").collect();
    let mut ops: Vec<&str> = skipped.iter().map(|o| o.op.as_str()).collect();
    ops.sort();
    ops.dedup();
    let mut s = format!(
        "{passed} passed, {failed} failed, {} skipped",
        skipped.len()
    );
    if !ops.is_empty() {
        s.push_str(&format!(
            "\nskipped (not implemented yet): {}",
            ops.join(", ")
        ));
    }
    s
}
