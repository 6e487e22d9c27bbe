//! The `heedful g2p` and `heedful demo` subcommands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::{heatmap, DecodeOptions, Seq2Seq};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuOptions};

/// The small G2P model bundled in the repository (plain RNN encoder-decoder with dot attention,
/// trained on cmudict by weights/train_g2p.py, fp16, ~350 KB).
pub const BUNDLED_MODEL: &str = "weights/g2p_rnn_dot.safetensors";

/// Finds the bundled model from the current directory or the crate's source folder.
pub fn bundled_model() -> PathBuf {
    let here = PathBuf::from(BUNDLED_MODEL);
    if here.exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(BUNDLED_MODEL)
}

/// Arguments of `heedful g2p`.
#[derive(Clone, Debug)]
pub struct G2pArgs {
    /// The exported seq2seq file.
    pub model: PathBuf,
    /// Beam width (1: greedy).
    pub beam: usize,
    /// Write the first word's attention heatmap here (of the decoding printed: greedy or beam).
    pub attention: Option<PathBuf>,
    /// Words to convert.
    pub words: Vec<String>,
    /// A file with one word per line (`-` for standard input), read after `words`; blank lines
    /// are skipped and each line is trimmed.
    pub input: Option<PathBuf>,
    /// Words per decode call (0 counts as 1).
    pub batch: usize,
}

fn symbols(model: &Seq2Seq, ids: &[u32]) -> Vec<String> {
    let toks = &model.config().src_tokens;
    let mut v: Vec<String> = ids
        .iter()
        .map(|&i| {
            toks.get(i as usize)
                .cloned()
                .unwrap_or_else(|| format!("#{i}"))
        })
        .collect();
    if let Some(e) = model.config().src_eos_id {
        v.push(toks.get(e).cloned().unwrap_or_else(|| "</s>".into()));
    }
    v
}

/// Writes the heatmap of one decoding (greedy or beam) kept with `keep_attention`.
fn write_heatmap(
    model: &Seq2Seq,
    word: &str,
    ids: &[u32],
    d: &super::Decoded,
    out: &Path,
) -> Result<()> {
    if d.attention.is_empty() {
        return Err(Error::invalid(
            "g2p",
            "this model has no attention weights to draw (attention \"none\")",
        ));
    }
    let inputs = symbols(model, ids);
    let mut outputs: Vec<String> = d.tokens.iter().map(|&t| model.target_text(&[t])).collect();
    if d.attention.len() > outputs.len() {
        outputs.push(model.target_text(&[model.config().eos_id as u32]));
    }
    let rows: Vec<Vec<f32>> = d
        .attention
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.resize(inputs.len(), 0.0);
            r
        })
        .collect();
    let title = format!("{word} -> {}", model.target_text(&d.tokens));
    heatmap::write_png(out, &title, &inputs, &outputs, &rows)
}

/// `heedful g2p --model FILE [--beam K] [--attention OUT.png] WORD...`.
pub fn g2p(args: &G2pArgs) -> Result<ExitCode> {
    let mut words = args.words.clone();
    if let Some(p) = &args.input {
        words.extend(
            crate::cli::read_lines(p)?
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    if words.is_empty() {
        return Err(Error::invalid(
            "g2p",
            "no input: give WORD arguments or --input FILE (- for stdin)",
        ));
    }
    if let Some(i) = words.iter().position(String::is_empty) {
        return Err(Error::invalid(
            "g2p",
            format!("word {} of {} is empty", i + 1, words.len()),
        ));
    }
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let model = Seq2Seq::load(&gpu, &args.model)?;
    // Batches decode and print in order, so a long word list streams and no batch outgrows the
    // device's buffer limits.
    for (b, chunk) in words.chunks(args.batch.max(1)).enumerate() {
        let mut ids = Vec::with_capacity(chunk.len());
        for w in chunk {
            let unknown: String = model.unknown_chars(w).into_iter().collect();
            if !unknown.is_empty() {
                eprintln!(
                    "note: {}: characters {unknown:?} are not in the model's input vocabulary; read as unknown",
                    short(w)
                );
            }
            ids.push(
                model
                    .encode_text(w)
                    .map_err(|e| Error::invalid("g2p", format!("word {}: {e}", short(w))))?,
            );
        }
        // The heatmap is of the first word: only the first batch keeps attention weights.
        let heatmap = args.attention.as_ref().filter(|_| b == 0);
        let opts = DecodeOptions {
            beam: args.beam,
            keep_attention: heatmap.is_some(),
            ..Default::default()
        };
        let out = model.decode(&gpu, &ids, &opts)?;
        for (w, d) in chunk.iter().zip(&out) {
            println!("{w}\t{}", model.target_text(&d.tokens));
            if !d.ended {
                eprintln!(
                    "note: {}: stopped at the model's max_len ({}) before the end token; the output may be cut short",
                    short(w),
                    model.config().max_len
                );
            }
        }
        if let Some(path) = heatmap {
            write_heatmap(&model, &chunk[0], &ids[0], &out[0], path)?;
            eprintln!(
                "attention heatmap of {}: {}",
                short(&chunk[0]),
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `word` quoted for a note, its middle elided when it is long.
fn short(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() <= 40 {
        return format!("{word:?}");
    }
    let head: String = chars[..20].iter().collect();
    let tail: String = chars[chars.len() - 12..].iter().collect();
    format!(
        "{:?} ({} characters)",
        format!("{head}...{tail}"),
        chars.len()
    )
}

/// Sample words of the demo (not all in cmudict).
pub const DEMO_WORDS: &[&str] = &[
    "attention",
    "heedful",
    "encoder",
    "decoder",
    "phoneme",
    "shader",
    "vulkan",
    "transformer",
];

/// `heedful demo`: the bundled G2P model on sample words, greedy and beam 4, with timings and an
/// attention heatmap.
pub fn demo(out: Option<&Path>) -> Result<ExitCode> {
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let path = bundled_model();
    let t0 = Instant::now();
    let model = Seq2Seq::load(&gpu, &path)?;
    println!(
        "adapter: {} ({:?})\nmodel: {} ({} encoder, {} attention), loaded in {:.0} ms",
        gpu.caps().adapter_name,
        gpu.caps().backend,
        path.display(),
        model.config().encoder.cell,
        model.config().decoder.attention,
        t0.elapsed().as_secs_f64() * 1e3
    );
    let ids = DEMO_WORDS
        .iter()
        .map(|w| model.encode_text(w))
        .collect::<Result<Vec<_>>>()?;
    // Warm-up (pipeline compilation), then timed runs.
    model.decode(&gpu, &ids, &DecodeOptions::default())?;
    let greedy_opts = DecodeOptions {
        keep_attention: true,
        ..Default::default()
    };
    let t = Instant::now();
    let greedy = model.decode(&gpu, &ids, &greedy_opts)?;
    let greedy_ms = t.elapsed().as_secs_f64() * 1e3;
    let beam_opts = DecodeOptions {
        beam: 4,
        ..Default::default()
    };
    model.decode(&gpu, &ids[..1], &beam_opts)?;
    let t = Instant::now();
    let beam = model.decode(&gpu, &ids, &beam_opts)?;
    let beam_ms = t.elapsed().as_secs_f64() * 1e3;
    println!("\n{:<14} {:<40} beam 4", "word", "greedy");
    for ((w, g), b) in DEMO_WORDS.iter().zip(&greedy).zip(&beam) {
        println!(
            "{w:<14} {:<40} {}",
            model.target_text(&g.tokens),
            model.target_text(&b.tokens)
        );
    }
    let n = DEMO_WORDS.len() as f64;
    println!(
        "\n{} words in one batch: greedy {greedy_ms:.1} ms ({:.0} words/s), beam 4 {beam_ms:.1} ms ({:.0} words/s)",
        DEMO_WORDS.len(),
        n / greedy_ms * 1e3,
        n / beam_ms * 1e3
    );
    let png = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("heedful-demo-attention.png"));
    write_heatmap(&model, DEMO_WORDS[0], &ids[0], &greedy[0], &png)?;
    println!(
        "attention heatmap of {:?}: {}",
        DEMO_WORDS[0],
        png.display()
    );
    Ok(ExitCode::SUCCESS)
}
