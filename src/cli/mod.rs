//! The implementations of the `heedful` subcommands (the binary parses arguments and calls these).
//!
//! A tool behind the `tools` feature, not the embedding API. Results go to standard output through
//! [`Out`] (a full disk is an error, a closed pipe a quiet exit: see [`output`]); notes go to
//! standard error through [`note`]; `--input` files are read a batch at a time by
//! [`input::LineReader`].

/// `eprintln!` that cannot panic (see [`note`]).
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::note(format_args!($($arg)*))
    };
}

mod embed;
pub mod g2p;
mod heatmap;
pub mod input;
pub mod output;
pub mod translate;

pub use embed::{embed, EmbedArgs};
pub use output::{is_closed_stdout, note, Out, STDOUT};

use std::path::Path;
use std::process::ExitCode;

use crate::conformance;
use crate::error::{Error, Result};
use crate::gpu::{list_adapters, Gpu, GpuOptions};

/// `heedful conformance DIR [--filter F] [--json]`: one line per case, the summary, exit status 1 when
/// any case failed.
pub fn conformance(dir: &Path, filter: Option<&str>, json: bool) -> Result<ExitCode> {
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let outcomes = conformance::run_dir(&gpu, dir, filter)?;
    let failed = outcomes.iter().any(|o| o.failed());
    let mut out = Out::new();
    if json {
        let v = serde_json::json!({
            "adapter": gpu.caps().adapter_name,
            "cases": outcomes,
            "passed": outcomes.iter().filter(|o| o.status == "pass").count(),
            "failed": outcomes.iter().filter(|o| o.failed()).count(),
            "skipped": outcomes.iter().filter(|o| o.status == "skip").count(),
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        )?;
    } else {
        writeln!(
            out,
            "adapter: {} ({:?})",
            gpu.caps().adapter_name,
            gpu.caps().backend
        )?;
        for o in &outcomes {
            let errs = if o.status == "skip" {
                String::new()
            } else {
                format!("max_abs {:.2e}  max_rel {:.2e}", o.max_abs, o.max_rel)
            };
            writeln!(out, "{:<32} {:<20} {:<5} {errs}", o.name, o.op, o.status)?;
            if o.failed() {
                writeln!(out, "    {}", o.detail)?;
            }
        }
        writeln!(out, "{}", conformance::summary(&outcomes))?;
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `heedful info [--json]`: every adapter, the chosen one, its features and limits.
pub fn info(json: bool) -> Result<ExitCode> {
    // An unaccepted HEEDFUL_* value fails here, before any listing.
    let opts = GpuOptions::try_from_env()?;
    let adapters = list_adapters(opts.backends.as_deref())?;
    let chosen = Gpu::new(&opts);
    let mut out = Out::new();
    if json {
        let list: Vec<_> = adapters
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name, "backend": format!("{:?}", a.backend),
                    "device_type": format!("{:?}", a.device_type),
                    "driver": format!("{} {}", a.driver, a.driver_info).trim().to_string(),
                })
            })
            .collect();
        let chosen_json = match &chosen {
            Ok(g) => {
                let c = g.caps();
                serde_json::json!({
                    "name": c.adapter_name, "backend": format!("{:?}", c.backend),
                    "device_type": format!("{:?}", c.device_type), "driver": c.driver,
                    "features": c.feature_names(), "native_f16": c.native_f16,
                    "subgroup_size": [c.subgroup_min_size, c.subgroup_max_size],
                    "limits": {
                        "max_storage_buffer_binding_size": c.max_storage_binding,
                        "max_buffer_size": c.max_buffer_size,
                        "max_compute_workgroup_storage_size": c.max_workgroup_storage,
                        "max_compute_invocations_per_workgroup": c.max_invocations,
                        "max_compute_workgroups_per_dimension": c.max_workgroups_per_dim,
                        "max_storage_buffers_per_shader_stage": c.max_storage_buffers,
                    }
                })
            }
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let v = serde_json::json!({ "adapters": list, "chosen": chosen_json });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        )?;
        out.flush()?;
        return Ok(if chosen.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    writeln!(out, "adapters wgpu sees:")?;
    if adapters.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for a in &adapters {
        writeln!(
            out,
            "  {:<40} {:<8} {:<14} {} {}",
            a.name,
            format!("{:?}", a.backend),
            format!("{:?}", a.device_type),
            a.driver,
            a.driver_info
        )?;
    }
    out.flush()?;
    let gpu = chosen?;
    let c = gpu.caps();
    writeln!(
        out,
        "\nchosen: {} ({:?}, {:?})",
        c.adapter_name, c.backend, c.device_type
    )?;
    writeln!(out, "  driver:    {}", c.driver)?;
    writeln!(out, "  features:  {}", c.feature_names().join(" "))?;
    writeln!(
        out,
        "  f16 reads: {}",
        if c.native_f16 {
            "native (SHADER_F16)"
        } else {
            "packed u32 + unpack2x16float"
        }
    )?;
    if c.subgroups {
        writeln!(
            out,
            "  subgroups: {}..{}",
            c.subgroup_min_size, c.subgroup_max_size
        )?;
    }
    let mib = |b: u64| format!("{} MiB", b >> 20);
    writeln!(out, "  limits:")?;
    writeln!(
        out,
        "    max_storage_buffer_binding_size      {}",
        mib(c.max_storage_binding)
    )?;
    writeln!(
        out,
        "    max_buffer_size                      {}",
        mib(c.max_buffer_size)
    )?;
    writeln!(
        out,
        "    max_compute_workgroup_storage_size   {} B",
        c.max_workgroup_storage
    )?;
    writeln!(
        out,
        "    max_compute_invocations_per_workgroup {}",
        c.max_invocations
    )?;
    writeln!(
        out,
        "    max_compute_workgroups_per_dimension {}",
        c.max_workgroups_per_dim
    )?;
    writeln!(
        out,
        "    max_storage_buffers_per_shader_stage {}",
        c.max_storage_buffers
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `heedful inspect FILE [--json]`: the file's metadata and tensors with totals.
pub fn inspect(file: &Path, json: bool) -> Result<ExitCode> {
    let r = crate::weights::inspect::report(file)?;
    let mut out = Out::new();
    if json {
        let text = serde_json::to_string_pretty(&r)
            .map_err(|e| Error::invalid("inspect", format!("JSON of the report: {e}")))?;
        writeln!(out, "{text}")?;
    } else {
        writeln!(out, "{r}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `heedful convert IN OUT [--dtype D] [--quiet]`: converts, then prints the output path and stats.
pub fn convert(
    input: &Path,
    output: &Path,
    dtype: &str,
    quiet: bool,
    allow_overflow: bool,
    allow_non_finite: bool,
) -> Result<ExitCode> {
    let opts = crate::weights::convert::ConvertOptions {
        target: dtype.parse()?,
        progress: !quiet,
        allow_overflow,
        allow_non_finite,
    };
    let stats = crate::weights::convert::convert_with(input, output, &opts)?;
    let mut out = Out::new();
    writeln!(out, "{}: {stats}", output.display())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `heedful bench [--filter F] [--json]`: the benchmark suites (the same code as `cargo bench`).
pub fn bench(filter: Option<&str>, json: bool) -> Result<ExitCode> {
    crate::bench::run(filter, json)?;
    Ok(ExitCode::SUCCESS)
}
