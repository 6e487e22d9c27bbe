//! The `heedful g2p` and `heedful demo` subcommands (the seq2seq model's command line; the model
//! itself is [`crate::models::seq2seq`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use super::input::LineReader;
use super::{heatmap, Out};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuOptions};
use crate::models::seq2seq::{DecodeOptions, Decoded, Seq2Seq};

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
    /// A file with one word per line (`-` for standard input), read after `words` a batch at a
    /// time as it comes (lines of at most [`super::input::MAX_LINE`] bytes); blank lines are
    /// skipped and each line is trimmed.
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
fn write_heatmap(model: &Seq2Seq, word: &str, ids: &[u32], d: &Decoded, out: &Path) -> Result<()> {
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

/// The words of `heedful g2p`: the WORD arguments, then the lines of `--input`, a batch at a time.
struct Words {
    args: VecDeque<String>,
    input: Option<LineReader>,
}

impl Words {
    /// The next batch of at most `max` words (empty at the end): arguments first, then input lines
    /// (trimmed, blank ones skipped) as they arrive.
    fn next_batch(&mut self, max: usize) -> Result<Vec<String>> {
        let max = max.max(1);
        if !self.args.is_empty() {
            let n = max.min(self.args.len());
            return Ok(self.args.drain(..n).collect());
        }
        match &mut self.input {
            Some(r) => r.next_batch(max, |l| {
                let w = l.trim();
                (!w.is_empty()).then(|| w.to_string())
            }),
            None => Ok(Vec::new()),
        }
    }
}

/// `heedful g2p --model FILE [--beam K] [--attention OUT.png] [--input FILE|-] WORD...`.
///
/// Batches are read, decoded and printed in turn (stdout flushed after each), so a long or endless
/// word list streams in flat memory and no batch outgrows the device's buffer limits.
pub fn g2p(args: &G2pArgs) -> Result<ExitCode> {
    if let Some(png) = &args.attention {
        super::heatmap::check_folder(png)?;
    }
    if let Some(i) = args.words.iter().position(String::is_empty) {
        return Err(Error::invalid(
            "g2p",
            format!("word {} of {} is empty", i + 1, args.words.len()),
        ));
    }
    let mut words = Words {
        args: args.words.iter().cloned().collect(),
        input: args.input.as_deref().map(LineReader::open).transpose()?,
    };
    // The first batch is read before the model loads, so no input is an error before any GPU work.
    let mut chunk = words.next_batch(args.batch)?;
    if chunk.is_empty() {
        return Err(Error::invalid(
            "g2p",
            "no input: give WORD arguments or --input FILE (- for stdin)",
        ));
    }
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let model = Seq2Seq::load(&gpu, &args.model)?;
    let mut out = Out::new();
    let mut first = true;
    while !chunk.is_empty() {
        let mut ids = Vec::with_capacity(chunk.len());
        for w in &chunk {
            let unknown: String = model.unknown_chars(w).into_iter().collect();
            if !unknown.is_empty() {
                note!(
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
        let heatmap = args.attention.as_ref().filter(|_| first);
        let opts = DecodeOptions {
            beam: args.beam,
            keep_attention: heatmap.is_some(),
            ..Default::default()
        };
        let decoded = model.decode(&gpu, &ids, &opts)?;
        for (w, d) in chunk.iter().zip(&decoded) {
            writeln!(out, "{w}\t{}", model.target_text(&d.tokens))?;
            if !d.ended {
                note!(
                    "note: {}: stopped at the model's max_len ({}) before the end token; the output may be cut short",
                    short(w),
                    model.config().max_len
                );
            }
        }
        out.flush()?;
        if let Some(path) = heatmap {
            write_heatmap(&model, &chunk[0], &ids[0], &decoded[0], path)?;
            note!(
                "attention heatmap of {}: {}",
                short(&chunk[0]),
                path.display()
            );
        }
        first = false;
        chunk = words.next_batch(args.batch)?;
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
pub fn demo(png_out: Option<&Path>) -> Result<ExitCode> {
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let path = bundled_model();
    let t0 = Instant::now();
    let model = Seq2Seq::load(&gpu, &path)?;
    let mut out = Out::new();
    writeln!(
        out,
        "adapter: {} ({:?})\nmodel: {} ({} encoder, {} attention), loaded in {:.0} ms",
        gpu.caps().adapter_name,
        gpu.caps().backend,
        path.display(),
        model.config().encoder.cell,
        model.config().decoder.attention,
        t0.elapsed().as_secs_f64() * 1e3
    )?;
    out.flush()?;
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
    writeln!(out, "\n{:<14} {:<40} beam 4", "word", "greedy")?;
    for ((w, g), b) in DEMO_WORDS.iter().zip(&greedy).zip(&beam) {
        writeln!(
            out,
            "{w:<14} {:<40} {}",
            model.target_text(&g.tokens),
            model.target_text(&b.tokens)
        )?;
    }
    let n = DEMO_WORDS.len() as f64;
    writeln!(
        out,
        "\n{} words in one batch: greedy {greedy_ms:.1} ms ({:.0} words/s), beam 4 {beam_ms:.1} ms ({:.0} words/s)",
        DEMO_WORDS.len(),
        n / greedy_ms * 1e3,
        n / beam_ms * 1e3
    )?;
    let png = png_out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("heedful-demo-attention.png"));
    write_heatmap(&model, DEMO_WORDS[0], &ids[0], &greedy[0], &png)?;
    writeln!(
        out,
        "attention heatmap of {:?}: {}",
        DEMO_WORDS[0],
        png.display()
    )?;
    out.flush()?;
    super::translate::demo(
        &gpu,
        &mut out,
        &png.with_file_name("heedful-demo-translation.png"),
    )?;
    Ok(ExitCode::SUCCESS)
}
