//! `heedful embed`: sentence embeddings with a BERT-family model folder.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::read_lines;
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
    /// A file with one text per line (`-` for standard input).
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

/// Embeds every text (arguments first, then the lines of `--input`), one vector per text, in order.
pub fn embed(args: &EmbedArgs) -> Result<ExitCode> {
    let mut texts = args.texts.clone();
    if let Some(p) = &args.input {
        texts.extend(read_lines(p)?);
    }
    if texts.is_empty() {
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
    let batch = args.batch.max(1);
    let mut all = Vec::with_capacity(texts.len());
    for (i, chunk) in texts.chunks(batch).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        if i == 0 {
            if let Some(trace) = &args.profile {
                let inputs = model.encode_batch(&refs)?;
                let (_, profile) = session.run_profiled(&inputs)?;
                eprintln!("{profile}");
                let json = serde_json::to_string(&profile.chrome_trace()).unwrap_or_default();
                std::fs::write(trace, json).map_err(|source| Error::Io {
                    path: trace.clone(),
                    source,
                })?;
                eprintln!(
                    "chrome trace written to {} (open in ui.perfetto.dev)",
                    trace.display()
                );
            }
        }
        all.extend(model.embed(&session, &refs)?);
    }
    let mut out = std::io::stdout().lock();
    let w = |r: std::io::Result<()>| {
        r.map_err(|source| Error::Io {
            path: "<stdout>".into(),
            source,
        })
    };
    if args.json {
        let v = serde_json::json!({
            "model": args.model.display().to_string(),
            "dim": model.config.hidden_size,
            "embeddings": all,
        });
        w(writeln!(out, "{v}"))?;
    } else {
        for e in &all {
            let line: Vec<String> = e.iter().map(|x| format!("{x:.6}")).collect();
            w(writeln!(out, "{}", line.join(" ")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
