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
    /// Sentence embeddings with a BERT-family model folder (e.g. all-MiniLM-L6-v2): one per input, in
    /// order, mean-pooled and L2-normalized.
    Embed {
        /// Hugging Face model folder (config.json, tokenizer.json, model.safetensors).
        #[arg(long)]
        model: PathBuf,
        /// Texts to embed.
        texts: Vec<String>,
        /// A file with one text per line (`-` for standard input), embedded after the TEXT arguments.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Print a JSON object whose `embeddings` field holds one array per input.
        #[arg(long)]
        json: bool,
        /// Sentences per GPU run.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Weights file to use instead of the folder's model.safetensors (e.g. from `heedful convert`).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Keep weights in f32 on the GPU (default: f16).
        #[arg(long)]
        f32: bool,
        /// Hold this tensor in f32 even with f16 weights (its values lie outside f16's range);
        /// repeatable.
        #[arg(long, value_name = "TENSOR")]
        keep_f32: Vec<String>,
        /// Print a per-node GPU profile of the first batch and write its Chrome trace (Perfetto) here.
        #[arg(long)]
        profile: Option<PathBuf>,
    },
    /// Benchmark the kernels and models on the chosen adapter: median ms, GFLOP/s or GB/s, and the
    /// share of the adapter's roofline measured in the same run (same suites as `cargo bench`).
    Bench {
        /// Only cases whose `suite/op/shape` contains this (e.g. matmul, gemv, recurrent, sdpa).
        #[arg(long)]
        filter: Option<String>,
        /// Print one JSON document instead of text lines.
        #[arg(long)]
        json: bool,
    },
    /// Grapheme-to-phoneme with a seq2seq model: prints each word's phonemes.
    G2p {
        /// The exported seq2seq file (default: the bundled weights/g2p_rnn_dot.safetensors).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Beam width (1: greedy).
        #[arg(long, default_value_t = 1)]
        beam: usize,
        /// Write the first word's attention heatmap (PNG) here.
        #[arg(long)]
        attention: Option<PathBuf>,
        /// Words to convert.
        words: Vec<String>,
        /// A file with one word per line (`-` for standard input), read after the WORDS.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Words per decode call.
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Run the bundled G2P model on sample words: phonemes, timing, and an attention heatmap.
    Demo {
        /// Where to write the heatmap (default: heedful-demo-attention.png).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List a safetensors file's metadata and tensors (dtype, shape, bytes) with totals.
    Inspect {
        /// The .safetensors file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Convert a checkpoint's float tensors (F32/BF16/F16/F64) to another dtype, keeping names and
    /// metadata; other tensors are copied.
    Convert {
        /// Input .safetensors file.
        input: PathBuf,
        /// Output .safetensors file (written as OUT.partial, renamed when complete).
        output: PathBuf,
        /// Target dtype of float tensors: f16, bf16 or f32.
        #[arg(long, default_value = "f16")]
        dtype: String,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Write values outside f16's range (they become infinite) instead of refusing them.
        #[arg(long)]
        allow_overflow: bool,
        /// Write NaN and infinite values instead of refusing them.
        #[arg(long)]
        allow_non_finite: bool,
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
        Command::Bench { filter, json } => {
            heedful::bench::run(filter.as_deref(), json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Embed {
            model,
            texts,
            input,
            json,
            batch,
            weights,
            f32,
            keep_f32,
            profile,
        } => cli::embed(&cli::EmbedArgs {
            model,
            weights,
            texts,
            input,
            json,
            batch,
            f32,
            keep_f32,
            profile,
        }),
        Command::G2p {
            model,
            beam,
            attention,
            words,
            input,
            batch,
        } => heedful::models::seq2seq::cli::g2p(&heedful::models::seq2seq::cli::G2pArgs {
            model: model.unwrap_or_else(heedful::models::seq2seq::cli::bundled_model),
            beam,
            attention,
            words,
            input,
            batch,
        }),
        Command::Demo { out } => heedful::models::seq2seq::cli::demo(out.as_deref()),
        Command::Inspect { file, json } => {
            let r = heedful::weights::inspect::report(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!("{r}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Convert {
            input,
            output,
            dtype,
            quiet,
            allow_overflow,
            allow_non_finite,
        } => {
            let opts = heedful::weights::convert::ConvertOptions {
                target: dtype.parse()?,
                progress: !quiet,
                allow_overflow,
                allow_non_finite,
            };
            let stats = heedful::weights::convert::convert_with(&input, &output, &opts)?;
            println!("{}: {stats}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Conformance { dir, filter, json } => {
            cli::conformance(&dir, filter.as_deref(), json)
        }
    }
}
