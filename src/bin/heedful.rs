//! The `heedful` command line: adapter info, the conformance runner and benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use heedful::cli;

/// heedful: portable GPU inference for sequence models (wgpu compute shaders).
///
/// The adapter is chosen automatically (discrete > integrated > virtual > CPU); set HEEDFUL_ADAPTER
/// to a substring of an adapter name and HEEDFUL_BACKEND (vulkan, metal, dx12, gl) to override, and
/// HEEDFUL_F16=packed to read f16 without SHADER_F16.
#[derive(Parser)]
#[command(name = "heedful", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter wgpu sees, the chosen one, its features and the limits that matter.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the PyTorch-reference conformance cases in DIR (one safetensors file per case).
    Conformance {
        /// Folder of case files (e.g. ../shared/conformance).
        dir: PathBuf,
        /// Only cases whose file name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing to a closed pipe would panic; die quietly like other tools.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> heedful::Result<ExitCode> {
    match cli.command {
        Command::Info { json } => cli::info(json),
        Command::Conformance { dir, filter, json } => {
            cli::conformance(&dir, filter.as_deref(), json)
        }
    }
}
