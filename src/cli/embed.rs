//! `heedful embed`: sentence embeddings with a BERT-family model folder.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;

use super::input::LineReader;
use super::Out;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuOptions};
use crate::models::bert::{BertEncoder, LoadOptions};
use crate::weights::Hold;

/// Arguments of `heedful embed`.
#[derive(Clone, Debug, Default)]
pub struct EmbedArgs {
    /// Hugging Face model folder (config.json, tokenizer.json, model.safetensors).
    pub model: PathBuf,
    /// Weights file to use instead of the folder's model.safetensors.
    pub weights: Option<PathBuf>,
    /// Texts from the command line.
    pub texts: Vec<String>,
    /// A file with one text per line (`-` for standard input), read a batch at a time as it comes
    /// (lines of at most [`super::input::MAX_LINE`] bytes).
    pub input: Option<PathBuf>,
    /// Print JSON.
    pub json: bool,
    /// Sentences per GPU run.
    pub batch: usize,
    /// Keep weights in f32 instead of f16.
    pub f32: bool,
    /// Tensors held in f32 even with f16 weights (values outside f16's range); see
    /// [`LoadOptions::keep_f32`].
    pub keep_f32: Vec<String>,
    /// Print a per-node profile of the first batch and write its Chrome trace here.
    pub profile: Option<PathBuf>,
}

/// Embeds every text (arguments first, then the lines of `--input` as they come), one vector per
/// text, in order. Batches are read, embedded and printed in turn (stdout flushed after each), so a
/// long input streams in flat memory; `--json` writes the same one-object document, its
/// `embeddings` array growing a batch at a time.
pub fn embed(args: &EmbedArgs) -> Result<ExitCode> {
    let batch = args.batch.max(1);
    let mut texts: VecDeque<String> = args.texts.iter().cloned().collect();
    let mut input = args.input.as_deref().map(LineReader::open).transpose()?;
    // Arguments first, then input lines (as given: an empty line is an empty text).
    let mut next_batch = move || -> Result<Vec<String>> {
        if !texts.is_empty() {
            let n = batch.min(texts.len());
            return Ok(texts.drain(..n).collect());
        }
        match &mut input {
            Some(r) => r.next_batch(batch, Some),
            None => Ok(Vec::new()),
        }
    };
    // The first batch is read before the model loads, so no input is an error before any GPU work.
    let mut chunk = next_batch()?;
    if chunk.is_empty() {
        return Err(Error::invalid(
            "embed",
            "no input: give TEXT arguments or --input FILE (- for stdin)",
        ));
    }
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let opts = LoadOptions {
        hold: if args.f32 { Hold::F32 } else { Hold::F16 },
        weights: args.weights.clone(),
        keep_f32: args.keep_f32.clone(),
    };
    let model = BertEncoder::load(&gpu, &args.model, &opts)?;
    let session = model.session();
    let mut out = Out::new();
    if args.json {
        // The keys in the order serde_json's map writes them (sorted), as `{"dim":..,"embeddings":
        // [..],"model":..}` printed whole would be.
        write!(
            out,
            "{{\"dim\":{},\"embeddings\":[",
            model.config.hidden_size
        )?;
    }
    let mut first = true;
    while !chunk.is_empty() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        if first {
            if let Some(trace) = &args.profile {
                let inputs = model.encode_batch(&refs)?;
                let (_, profile) = session.run_profiled(&inputs)?;
                note!("{profile}");
                let json = serde_json::to_string(&profile.chrome_trace()).unwrap_or_default();
                std::fs::write(trace, json).map_err(|source| Error::Io {
                    path: trace.clone(),
                    source,
                })?;
                note!(
                    "chrome trace written to {} (open in ui.perfetto.dev)",
                    trace.display()
                );
            }
        }
        for e in model.embed(&session, &refs)? {
            if args.json {
                // Through a JSON value, as the whole document built at once would write it.
                let v = serde_json::to_value(&e)
                    .map_err(|e| Error::invalid("embed", format!("JSON of an embedding: {e}")))?;
                write!(out, "{}{v}", if first { "" } else { "," })?;
            } else {
                let line: Vec<String> = e.iter().map(|x| format!("{x:.6}")).collect();
                writeln!(out, "{}", line.join(" "))?;
            }
            first = false;
        }
        out.flush()?;
        chunk = next_batch()?;
    }
    if args.json {
        let model_path = serde_json::to_string(&args.model.display().to_string())
            .map_err(|e| Error::invalid("embed", format!("JSON of the model path: {e}")))?;
        writeln!(out, "],\"model\":{model_path}}}")?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
