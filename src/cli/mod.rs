//! The implementations of the `heedful` subcommands (the binary parses arguments and calls these).

mod embed;

pub use embed::{embed, EmbedArgs};

use std::io::BufRead;
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
    if json {
        let v = serde_json::json!({
            "adapter": gpu.caps().adapter_name,
            "cases": outcomes,
            "passed": outcomes.iter().filter(|o| o.status == "pass").count(),
            "failed": outcomes.iter().filter(|o| o.failed()).count(),
            "skipped": outcomes.iter().filter(|o| o.status == "skip").count(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "adapter: {} ({:?})",
            gpu.caps().adapter_name,
            gpu.caps().backend
        );
        for o in &outcomes {
            let errs = if o.status == "skip" {
                String::new()
            } else {
                format!("max_abs {:.2e}  max_rel {:.2e}", o.max_abs, o.max_rel)
            };
            println!("{:<32} {:<20} {:<5} {errs}", o.name, o.op, o.status);
            if o.failed() {
                println!("    {}", o.detail);
            }
        }
        println!("{}", conformance::summary(&outcomes));
    }
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
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(if chosen.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    println!("adapters wgpu sees:");
    if adapters.is_empty() {
        println!("  (none)");
    }
    for a in &adapters {
        println!(
            "  {:<40} {:<8} {:<14} {} {}",
            a.name,
            format!("{:?}", a.backend),
            format!("{:?}", a.device_type),
            a.driver,
            a.driver_info
        );
    }
    let gpu = chosen?;
    let c = gpu.caps();
    println!(
        "\nchosen: {} ({:?}, {:?})",
        c.adapter_name, c.backend, c.device_type
    );
    println!("  driver:    {}", c.driver);
    println!("  features:  {}", c.feature_names().join(" "));
    println!(
        "  f16 reads: {}",
        if c.native_f16 {
            "native (SHADER_F16)"
        } else {
            "packed u32 + unpack2x16float"
        }
    );
    if c.subgroups {
        println!(
            "  subgroups: {}..{}",
            c.subgroup_min_size, c.subgroup_max_size
        );
    }
    let mib = |b: u64| format!("{} MiB", b >> 20);
    println!("  limits:");
    println!(
        "    max_storage_buffer_binding_size      {}",
        mib(c.max_storage_binding)
    );
    println!(
        "    max_buffer_size                      {}",
        mib(c.max_buffer_size)
    );
    println!(
        "    max_compute_workgroup_storage_size   {} B",
        c.max_workgroup_storage
    );
    println!(
        "    max_compute_invocations_per_workgroup {}",
        c.max_invocations
    );
    println!(
        "    max_compute_workgroups_per_dimension {}",
        c.max_workgroups_per_dim
    );
    println!(
        "    max_storage_buffers_per_shader_stage {}",
        c.max_storage_buffers
    );
    Ok(ExitCode::SUCCESS)
}

/// The lines of `path` (`-`: standard input), as read: the caller trims and skips what it must.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<String>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let lines: Vec<String> = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<_>>()
            .map_err(io)?
    } else {
        let f = std::fs::File::open(path).map_err(io)?;
        std::io::BufReader::new(f)
            .lines()
            .collect::<std::io::Result<_>>()
            .map_err(io)?
    };
    Ok(lines)
}
