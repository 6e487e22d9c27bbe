//! The `heedful` command line: parses arguments and calls the subcommands in `heedful::cli` (built
//! with the `tools` feature, on by default).

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
        /// A file with one text per line (`-` for standard input), embedded after the TEXT arguments,
        /// a batch at a time as lines arrive (a line may hold at most 64 KiB).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Print a JSON object whose `embeddings` field holds one array per input.
        #[arg(long)]
        json: bool,
        /// Sentences per GPU run (at most: a batch also ends when the input has no more lines ready).
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
        /// A file with one word per line (`-` for standard input), read after the WORDS a batch at a
        /// time as lines arrive (a line may hold at most 64 KiB).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Words per decode call (at most: a batch also ends when the input has no more lines ready).
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// Translate with a Marian model folder (Hugging Face `save_pretrained` layout), as
    /// `generate` does; defaults from its generation_config.json.
    Translate {
        /// The model folder (default: the bundled weights/marian, English -> Chinese).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Beam width (1: greedy).
        #[arg(long)]
        beam: Option<usize>,
        /// Longest output in tokens, the decoder start token included.
        #[arg(long)]
        max_length: Option<usize>,
        /// Beam length penalty (scores divided by length ^ penalty).
        #[arg(long)]
        length_penalty: Option<f64>,
        /// Beam stop rule: true (bare flag), false or never.
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        early_stopping: Option<String>,
        /// Hypotheses per input (tab-separated; beam search).
        #[arg(long)]
        num_return_sequences: Option<usize>,
        /// Each input is whitespace-separated source token ids (no tokenizer files needed).
        #[arg(long)]
        ids: bool,
        /// Write the first input's cross-attention heatmap (PNG) here.
        #[arg(long)]
        attention: Option<PathBuf>,
        /// Decoder layer of the heatmap (default: the last).
        #[arg(long, requires = "attention")]
        layer: Option<usize>,
        /// Head of the heatmap (default: the mean over heads).
        #[arg(long, requires = "attention")]
        head: Option<usize>,
        /// A file with one input per line (`-` for standard input), read after the TEXTS.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Print {"translations": [{"text": ..., "ids": [...]}, ...]}.
        #[arg(long)]
        json: bool,
        /// Inputs per run.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Texts to translate.
        texts: Vec<String>,
    },
    /// Run the bundled models: G2P phonemes for sample words and English -> Chinese translations,
    /// with timing and attention heatmaps.
    Demo {
        /// Where to write the G2P heatmap (default: heedful-demo-attention.png); the translation's
        /// goes beside it as heedful-demo-translation.png.
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
    // Rust ignores SIGPIPE, so a write to a closed pipe (`heedful ... | head`) fails with EPIPE
    // instead of killing the process: the subcommands return it as an error, and here it is a quiet
    // exit 0 (the reader wanted no more). Any other error, a full disk on stdout included, is a
    // message on stderr and exit status 1.
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) if cli::is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            cli::note(format_args!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> heedful::Result<ExitCode> {
    match cli.command {
        Command::Info { json } => cli::info(json),
        Command::Bench { filter, json } => cli::bench(filter.as_deref(), json),
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
        } => cli::g2p::g2p(&cli::g2p::G2pArgs {
            model: model.unwrap_or_else(cli::g2p::bundled_model),
            beam,
            attention,
            words,
            input,
            batch,
        }),
        Command::Translate {
            model,
            beam,
            max_length,
            length_penalty,
            early_stopping,
            num_return_sequences,
            ids,
            attention,
            layer,
            head,
            input,
            json,
            batch,
            texts,
        } => cli::translate::translate(&cli::translate::TranslateArgs {
            model: model.unwrap_or_else(cli::translate::bundled_model),
            beam,
            max_length,
            length_penalty,
            early_stopping,
            num_return_sequences,
            ids,
            attention,
            layer,
            head,
            input,
            json,
            batch,
            texts,
        }),
        Command::Demo { out } => cli::g2p::demo(out.as_deref()),
        Command::Inspect { file, json } => cli::inspect(&file, json),
        Command::Convert {
            input,
            output,
            dtype,
            quiet,
            allow_overflow,
            allow_non_finite,
        } => cli::convert(
            &input,
            &output,
            &dtype,
            quiet,
            allow_overflow,
            allow_non_finite,
        ),
        Command::Conformance { dir, filter, json } => {
            cli::conformance(&dir, filter.as_deref(), json)
        }
    }
}
