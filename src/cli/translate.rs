//! `heedful translate`: a Marian folder (`save_pretrained` layout) translating texts, or source
//! ids with `--ids`, on the GPU with Hugging Face `generate`'s rules
//! ([`crate::models::marian::Translator`]).
//!
//! Defaults come from the folder's generation_config.json; flags override them. Output: one
//! translation per line in input order, or with `--json` one document
//! `{"translations": [{"text": ..., "ids": [...]}, ...]}` (`ids` as `generate` returns the row:
//! decoder start first, the end token when reached, no padding). `--attention OUT.png` writes the
//! cross-attention heatmap of the first input (mean over the heads of the last decoder layer, or
//! `--layer` / `--head`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::Instant;

use super::input::LineReader;
use super::{heatmap, Out};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuOptions};
use crate::models::marian::search::{EarlyStopping, GenerationParams};
use crate::models::marian::{Translation, Translator};

const OP: &str = "translate";

/// The small English -> Chinese Marian model bundled in the repository.
pub const BUNDLED_MODEL: &str = "weights/marian";

/// Finds the bundled model from the current directory or the crate's source folder.
pub fn bundled_model() -> PathBuf {
    let here = PathBuf::from(BUNDLED_MODEL);
    if here.exists() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(BUNDLED_MODEL)
}

/// Arguments of `heedful translate`.
#[derive(Clone, Debug, Default)]
pub struct TranslateArgs {
    /// The Marian folder.
    pub model: PathBuf,
    /// Beam width (default: generation_config.json's num_beams).
    pub beam: Option<usize>,
    /// Longest output, decoder start included (default: generation_config.json's max_length).
    pub max_length: Option<usize>,
    /// Beam length penalty.
    pub length_penalty: Option<f64>,
    /// `true`, `false` or `never` (a bare `--early-stopping` is `true`).
    pub early_stopping: Option<String>,
    /// Hypotheses per input (printed tab-separated; in `--json` as `hypotheses`).
    pub num_return_sequences: Option<usize>,
    /// Inputs are whitespace-separated source token ids (no tokenizer files needed).
    pub ids: bool,
    /// Write the first input's cross-attention heatmap here.
    pub attention: Option<PathBuf>,
    /// Decoder layer of the heatmap (default: the last).
    pub layer: Option<usize>,
    /// Head of the heatmap (default: the mean over heads).
    pub head: Option<usize>,
    /// A file with one input per line (`-`: standard input), read after the TEXT arguments.
    pub input: Option<PathBuf>,
    /// Print one JSON document.
    pub json: bool,
    /// Inputs per run.
    pub batch: usize,
    /// The inputs.
    pub texts: Vec<String>,
}

fn parse_ids(line: &str, n: usize) -> Result<Vec<u32>> {
    line.split_whitespace()
        .map(|w| {
            w.parse::<u32>().map_err(|_| {
                Error::invalid(
                    OP,
                    format!(
                        "input {n}: {w:?} is not a token id (--ids takes whitespace-separated ids)"
                    ),
                )
            })
        })
        .collect()
}

fn caller_params(args: &TranslateArgs) -> Result<GenerationParams> {
    let early_stopping = match args.early_stopping.as_deref() {
        None => None,
        Some("true") | Some("") => Some(EarlyStopping::Done),
        Some("false") => Some(EarlyStopping::Heuristic),
        Some("never") => Some(EarlyStopping::Never),
        Some(o) => {
            return Err(Error::invalid(
                OP,
                format!("--early-stopping {o:?}: use true, false or never"),
            ))
        }
    };
    Ok(GenerationParams {
        num_beams: args.beam,
        max_length: args.max_length,
        length_penalty: args.length_penalty,
        early_stopping,
        num_return_sequences: args.num_return_sequences,
        ..Default::default()
    })
}

/// A heatmap label: the SentencePiece word marker shown as `_`; a piece with a character the
/// bitmap fonts cannot draw as `#id` when the id is known, else with `?` for the missing glyphs.
fn label(piece: &str, id: Option<u32>) -> String {
    let p = piece.replace('\u{2581}', "_");
    let drawable = super::heatmap::drawable;
    match id {
        Some(id) if !p.chars().all(drawable) => format!("#{id}"),
        _ => p
            .chars()
            .map(|c| if drawable(c) { c } else { '?' })
            .collect(),
    }
}

/// Writes the heatmap of `t` (the first input) to `path`.
fn write_heatmap(
    tr: &Translator,
    text: &str,
    src_ids: &[u32],
    t: &Translation,
    head: Option<usize>,
    path: &Path,
) -> Result<()> {
    let a = t
        .attention
        .as_ref()
        .ok_or_else(|| Error::invalid(OP, "no attention was kept"))?;
    let m = a.matrix(head)?;
    let (inputs, outputs): (Vec<String>, Vec<String>) = match tr.tokenizer() {
        Some(tok) if !text.is_empty() => (
            tok.source_pieces(text)?
                .iter()
                .map(|p| label(p, None))
                .collect(),
            tok.target_pieces(&t.ids[1..])
                .iter()
                .zip(&t.ids[1..])
                .map(|(p, &id)| label(p, Some(id)))
                .collect(),
        ),
        _ => (
            src_ids.iter().map(|i| i.to_string()).collect(),
            t.ids[1..].iter().map(|i| i.to_string()).collect(),
        ),
    };
    if inputs.len() != a.src_len || outputs.len() != a.steps() {
        return Err(Error::invalid(
            OP,
            format!(
                "heatmap labels ({} source, {} target) do not match the attention [{}, {}]",
                inputs.len(),
                outputs.len(),
                a.steps(),
                a.src_len
            ),
        ));
    }
    let rows: Vec<Vec<f32>> = m.chunks(a.src_len).map(<[f32]>::to_vec).collect();
    let which = match head {
        Some(h) => format!("head {h}"),
        None => "mean of heads".into(),
    };
    let title = format!("cross-attention, decoder layer {}, {which}", a.layer);
    heatmap::write_png(path, &title, &inputs, &outputs, &rows)
}

/// `heedful translate --model DIR [flags] [TEXT...]`: translations in input order.
pub fn translate(args: &TranslateArgs) -> Result<ExitCode> {
    if let Some(png) = &args.attention {
        super::heatmap::check_folder(png)?;
    }
    let mut pending: VecDeque<String> = args.texts.iter().cloned().collect();
    let mut reader = args.input.as_deref().map(LineReader::open).transpose()?;
    let mut next_batch = |max: usize| -> Result<Vec<String>> {
        if !pending.is_empty() {
            let n = max.max(1).min(pending.len());
            return Ok(pending.drain(..n).collect());
        }
        match &mut reader {
            Some(r) => r.next_batch(max, Some),
            None => Ok(Vec::new()),
        }
    };
    let mut chunk = next_batch(args.batch)?;
    if chunk.is_empty() {
        return Err(Error::invalid(
            OP,
            "no input: give TEXT arguments or --input FILE (- for stdin)",
        ));
    }
    let gpu = Gpu::new(&GpuOptions::from_env())?;
    let tr = Translator::load(&gpu, &args.model)?;
    let opts = tr.options(&caller_params(args)?)?;
    let layer = match (&args.attention, args.layer) {
        (Some(_), l) => Some(l.unwrap_or(tr.config().decoder_layers.saturating_sub(1))),
        (None, Some(_)) | (None, None) => None,
    };
    // The heatmap's head is checked before any input runs (the layer is checked by the decoder).
    let heads = tr.config().decoder_attention_heads;
    if let Some(h) = args.head.filter(|&h| h >= heads) {
        return Err(Error::invalid(
            OP,
            format!("--head {h}: the decoder layers have {heads} heads (0..{heads})"),
        ));
    }
    let mut out = Out::new();
    let mut json_rows = Vec::new();
    let mut first = true;
    let mut n = 0usize;
    while !chunk.is_empty() {
        let ids: Vec<Vec<u32>> = if args.ids {
            chunk
                .iter()
                .enumerate()
                .map(|(i, l)| parse_ids(l, n + i + 1))
                .collect::<Result<_>>()?
        } else {
            let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
            tr.encode(&texts)?
        };
        // Checked here to name the input by its number in the whole list (the library names its
        // index in the run).
        for (i, src) in ids.iter().enumerate() {
            if let Some(why) = tr.source_problem(src) {
                return Err(Error::invalid(OP, format!("input {}: {why}", n + i + 1)));
            }
        }
        let keep = layer.filter(|_| first);
        let res = tr.translate_ids_with(&ids, &opts, keep)?;
        for t in &res {
            let text = |ids: &[u32]| -> Result<String> {
                match tr.tokenizer() {
                    Some(tok) => tok.decode(ids),
                    _ => Ok(ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")),
                }
            };
            if args.json {
                let mut row = serde_json::json!({
                    "text": text(&t.ids)?,
                    "ids": t.ids,
                });
                if t.hypotheses.len() > 1 {
                    row["hypotheses"] = t
                        .hypotheses
                        .iter()
                        .map(|h| Ok(serde_json::json!({"text": text(&h.ids)?, "ids": h.ids, "score": h.score})))
                        .collect::<Result<Vec<_>>>()?
                        .into();
                }
                json_rows.push(row);
            } else {
                let all = t
                    .hypotheses
                    .iter()
                    .map(|h| text(&h.ids))
                    .collect::<Result<Vec<_>>>()?;
                writeln!(out, "{}", all.join("\t"))?;
            }
        }
        if !args.json {
            out.flush()?;
        }
        if let (Some(path), true) = (&args.attention, first) {
            let text = if args.ids { "" } else { chunk[0].as_str() };
            write_heatmap(&tr, text, &ids[0], &res[0], args.head, path)?;
            note!("cross-attention heatmap of input 1: {}", path.display());
        }
        first = false;
        n += chunk.len();
        chunk = next_batch(args.batch)?;
    }
    if args.json {
        let doc = serde_json::json!({ "translations": json_rows });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )?;
        out.flush()?;
    }
    if let Some(profile) = gpu.dispatch_profile() {
        eprint!("{}", profile.report());
    }
    Ok(ExitCode::SUCCESS)
}

/// Phrases `heedful demo` translates with the bundled model (a dictionary-trained model: it
/// knows words and short phrases).
pub const DEMO_TEXTS: &[&str] = &["blood pressure", "sea water", "computer", "teacher", "moon"];

/// The translation part of `heedful demo`: the bundled Marian model on [`DEMO_TEXTS`], greedy and
/// with its generation_config.json (beam 4), timed after a warm-up, and the first text's
/// cross-attention heatmap written to `png`.
pub fn demo(gpu: &Gpu, out: &mut Out, png: &Path) -> Result<()> {
    let path = bundled_model();
    let t0 = Instant::now();
    let tr = Translator::load(gpu, &path)?;
    writeln!(
        out,
        "\nmodel: {} (Marian, English -> Chinese), loaded in {:.0} ms",
        path.display(),
        t0.elapsed().as_secs_f64() * 1e3
    )?;
    let beam = tr.default_options();
    let greedy = tr.options(&GenerationParams {
        num_beams: Some(1),
        ..Default::default()
    })?;
    let layer = tr.config().decoder_layers.saturating_sub(1);
    tr.translate_with(DEMO_TEXTS, &greedy, Some(layer))?;
    tr.translate(DEMO_TEXTS, &beam)?;
    let t = Instant::now();
    let g = tr.translate_with(DEMO_TEXTS, &greedy, Some(layer))?;
    let greedy_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let b = tr.translate(DEMO_TEXTS, &beam)?;
    let beam_ms = t.elapsed().as_secs_f64() * 1e3;
    writeln!(
        out,
        "\n{:<14} {:<20} beam {}",
        "text", "greedy", beam.num_beams
    )?;
    for ((x, g), b) in DEMO_TEXTS.iter().zip(&g).zip(&b) {
        let text = |t: &Translation| t.text.clone().unwrap_or_default();
        // Padded by terminal columns: a Chinese character takes two.
        let greedy = text(g);
        let pad = 20usize.saturating_sub(unicode_width::UnicodeWidthStr::width(greedy.as_str()));
        writeln!(out, "{x:<14} {greedy}{:pad$} {}", "", text(b))?;
    }
    writeln!(
        out,
        "\n{} texts in one batch: greedy {greedy_ms:.1} ms, beam {} {beam_ms:.1} ms",
        DEMO_TEXTS.len(),
        beam.num_beams
    )?;
    let ids = tr.encode(&DEMO_TEXTS[..1])?;
    write_heatmap(&tr, DEMO_TEXTS[0], &ids[0], &g[0], None, png)?;
    writeln!(
        out,
        "cross-attention heatmap of {:?}: {}",
        DEMO_TEXTS[0],
        png.display()
    )?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn heatmap_labels_keep_chinese_pieces_and_mark_what_no_font_draws() {
        // The word marker becomes `_`; CJK comes from Unifont, not as `#id`.
        assert_eq!(label("\u{2581}血", Some(5)), "_血");
        assert_eq!(label("压", Some(6)), "压");
        assert_eq!(label("\u{2581}tea", None), "_tea");
        // A private-use character neither font has: the id when known, else `?`.
        assert_eq!(label("a\u{e000}", Some(7)), "#7");
        assert_eq!(label("a\u{e000}", None), "a?");
    }
}
