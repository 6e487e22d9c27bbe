//! Attention heatmaps as PNG: one row per output token, one column per input position, darker =
//! more weight, with the input symbols along the top and the output symbols down the left side
//! (font8x8's 8x8 glyphs drawn at twice their size; characters it lacks, such as CJK, from GNU
//! Unifont's 16-pixel-high glyphs at their own size, so every label is 16 pixels high).

use std::path::Path;

use font8x8::UnicodeFonts;

use crate::error::{Error, Result};

const SCALE: usize = 2;
const GLYPH: usize = 8 * SCALE;
const CELL: usize = 28;
const PAD: usize = 8;

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let i = (y * self.w + x) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }

    /// Draws `s` from (x, y) rightwards, [`text_w`] pixels wide.
    fn text(&mut self, x: usize, y: usize, s: &str, c: [u8; 3]) {
        let mut at = x;
        for ch in s.chars() {
            match glyph(ch) {
                Glyph::Basic(rows) => {
                    for (row, bits) in rows.iter().enumerate() {
                        for col in 0..8 {
                            if bits & (1 << col) != 0 {
                                self.rect(at + col * SCALE, y + row * SCALE, SCALE, SCALE, c);
                            }
                        }
                    }
                }
                Glyph::Unifont(g) => {
                    for row in 0..GLYPH {
                        for col in 0..g.get_width() {
                            if g.get_pixel(col, row) {
                                // Two pixels wide: strokes as heavy as font8x8's doubled ones.
                                self.rect(at + col, y + row, 2, 1, c);
                            }
                        }
                    }
                }
                Glyph::Missing => {}
            }
            at += advance(ch);
        }
    }
}

/// Where a character's bitmap comes from.
enum Glyph {
    /// font8x8 (Latin, Greek, box drawing, ...): 8x8, drawn at [`SCALE`].
    Basic([u8; 8]),
    /// GNU Unifont: 8x16 or 16x16, drawn at its size.
    Unifont(&'static unifont::Glyph),
    /// Neither has it: a blank of one glyph's width.
    Missing,
}

fn glyph(ch: char) -> Glyph {
    if let Some(rows) = font8x8::BASIC_FONTS.get(ch) {
        return Glyph::Basic(rows);
    }
    match unifont::get_glyph(ch) {
        Some(g) => Glyph::Unifont(g),
        None => Glyph::Missing,
    }
}

/// True when the canvas has a glyph for `ch`.
pub fn drawable(ch: char) -> bool {
    !matches!(glyph(ch), Glyph::Missing)
}

/// Horizontal advance of `ch` in pixels (16, or 8 for Unifont's half-width glyphs).
fn advance(ch: char) -> usize {
    match glyph(ch) {
        Glyph::Unifont(g) if !g.is_fullwidth() => 8,
        _ => GLYPH,
    }
}

/// Width in pixels of `s` drawn by the canvas.
fn text_w(s: &str) -> usize {
    s.chars().map(advance).sum()
}

/// White -> deep blue as the weight goes 0 -> 1.
fn color(w: f32) -> [u8; 3] {
    let t = w.clamp(0.0, 1.0);
    let lerp = |a: f32, b: f32| (a + (b - a) * t).round() as u8;
    [lerp(255.0, 8.0), lerp(255.0, 48.0), lerp(255.0, 107.0)]
}

/// Checks that the folder `path` is to be written in exists, before any model runs: a mistyped
/// `--attention` path then fails at once instead of after the decoding it was to draw.
pub fn check_folder(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            let why = if dir.exists() {
                "is not a folder"
            } else {
                "does not exist"
            };
            Err(Error::invalid(
                "heatmap",
                format!("{}: the folder {} {why}", path.display(), dir.display()),
            ))
        }
        _ => Ok(()),
    }
}

/// Writes the heatmap of `weights` (`[outputs][inputs]`) to `path` with `title` on top.
pub fn write_png(
    path: &Path,
    title: &str,
    inputs: &[String],
    outputs: &[String],
    weights: &[Vec<f32>],
) -> Result<()> {
    let io = |e: String| Error::invalid("heatmap", format!("{}: {e}", path.display()));
    if weights.len() != outputs.len() || weights.iter().any(|r| r.len() != inputs.len()) {
        return Err(Error::invalid(
            "heatmap",
            format!(
                "weights are {} x {:?} for {} outputs and {} inputs",
                weights.len(),
                weights.first().map(Vec::len),
                outputs.len(),
                inputs.len()
            ),
        ));
    }
    let left = outputs.iter().map(|s| text_w(s)).max().unwrap_or(0) + 2 * PAD;
    // Input labels run downwards, one character per line, so that labels longer than a cell
    // (subword pieces, `</s>`) stay in their column.
    let top_label = inputs
        .iter()
        .map(|s| s.chars().count() * GLYPH)
        .max()
        .unwrap_or(GLYPH)
        .max(GLYPH);
    let title_h = GLYPH + 2 * PAD;
    let top = title_h + top_label + PAD;
    let grid_w = inputs.len() * CELL;
    let w = (left + grid_w + PAD).max(text_w(title) + 2 * PAD);
    let h = top + outputs.len() * CELL + PAD;
    let mut c = Canvas::new(w, h);
    let ink = [20, 20, 20];
    c.text(PAD, PAD, title, ink);
    for (j, s) in inputs.iter().enumerate() {
        let x = left + j * CELL + (CELL - GLYPH) / 2;
        for (k, ch) in s.chars().enumerate() {
            // Centred in the glyph box: half-width glyphs are 8 pixels wide.
            let indent = (GLYPH - advance(ch)) / 2;
            c.text(x + indent, title_h + k * GLYPH, &ch.to_string(), ink);
        }
    }
    for (i, s) in outputs.iter().enumerate() {
        let y = top + i * CELL + (CELL - GLYPH) / 2;
        c.text(left - PAD - text_w(s), y, s, ink);
        for (j, &v) in weights[i].iter().enumerate() {
            c.rect(
                left + j * CELL + 1,
                top + i * CELL + 1,
                CELL - 2,
                CELL - 2,
                color(v),
            );
        }
    }
    let file = std::fs::File::create(path).map_err(|e| io(e.to_string()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| io(e.to_string()))?;
    writer
        .write_image_data(&c.px)
        .map_err(|e| io(e.to_string()))?;
    Ok(())
}
