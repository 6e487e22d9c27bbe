//! SentencePiece model files (`source.spm`, `target.spm`): a reader of the `ModelProto` protobuf
//! and, in [`SentencePieceProcessor`], the unigram encoder and the decoder of the `sentencepiece`
//! library (0.2.x) that Hugging Face's `MarianTokenizer` calls.
//!
//! The file is a protobuf message (`sentencepiece_model.proto`); the few fields heedful needs are
//! read by a small wire-format reader here rather than a protobuf dependency. Every malformed input
//! (a truncated varint, a length past the end, a wrong wire type, no pieces, no or two `<unk>`
//! pieces, a model type other than unigram) is an [`Error::File`] naming the file and the field;
//! nothing panics (fuzzed by `fuzz/fuzz_targets/marian_tokenizer_files.rs`).
//!
//! ```no_run
//! use heedful::models::marian::spm::{SentencePieceModel, SentencePieceProcessor};
//! let model = SentencePieceModel::open("weights/marian/source.spm".as_ref())?;
//! let sp = SentencePieceProcessor::new(model)?;
//! let pieces = sp.encode("Hello  world")?; // e.g. ["▁He", "llo", "▁world"]
//! assert_eq!(sp.decode_pieces(&pieces)?, "Hello world");
//! # Ok::<(), heedful::Error>(())
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

mod normalizer;
mod processor;
mod wire;

use wire::Wire;

pub use processor::SentencePieceProcessor;

/// What a piece is (`ModelProto.SentencePiece.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceType {
    /// An ordinary piece the unigram model may pick (1).
    Normal,
    /// The unknown piece `<unk>` (2); exactly one per model.
    Unknown,
    /// A control symbol such as `<s>`, `</s>` (3): never produced from text, decoded to nothing.
    Control,
    /// A user-defined symbol (4): always kept whole, never normalized.
    UserDefined,
    /// A byte piece `<0xXX>` (6) of `byte_fallback` models.
    Byte,
    /// A piece the encoder must not use (5).
    Unused,
}

impl PieceType {
    fn from_proto(v: u64) -> Option<PieceType> {
        Some(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }
}

/// One vocabulary entry of a SentencePiece model.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    /// The piece's text (`▁` stands for a space).
    pub piece: String,
    /// Its log-probability in the unigram model.
    pub score: f32,
    /// Its type.
    pub kind: PieceType,
}

/// The model type of `TrainerSpec.model_type`; only unigram is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelType {
    /// The unigram language model (1, the default).
    Unigram,
    /// Byte-pair encoding (2).
    Bpe,
    /// Whitespace-separated words (3).
    Word,
    /// Characters (4).
    Char,
}

/// The fields of `TrainerSpec` that encoding and decoding read.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerSpec {
    /// The model type (default unigram).
    pub model_type: ModelType,
    /// `vocab_size` as written by the trainer (informational; the pieces are what counts).
    pub vocab_size: i32,
    /// The id the trainer gave `<unk>` (informational; the UNKNOWN piece is what counts).
    pub unk_id: i32,
    /// Unknown characters become byte pieces `<0xXX>` instead of `<unk>`.
    pub byte_fallback: bool,
    /// `▁` goes after a word instead of before it.
    pub treat_whitespace_as_suffix: bool,
    /// What decoding writes for `<unk>` (default `" ⁇ "`).
    pub unk_surface: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec {
            model_type: ModelType::Unigram,
            vocab_size: 8000,
            unk_id: 0,
            byte_fallback: false,
            treat_whitespace_as_suffix: false,
            unk_surface: " \u{2047} ".to_string(),
        }
    }
}

/// `NormalizerSpec`: how text is normalized before encoding (or, as the denormalizer, after
/// decoding).
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizerSpec {
    /// The rule's name (`nmt_nfkc`, `identity`, ...).
    pub name: String,
    /// The compiled rules: a little-endian u32 trie size, a Darts double-array trie of the source
    /// byte strings, then the NUL-terminated replacement strings the trie's values point into.
    /// Empty: no rewriting.
    pub precompiled_charsmap: Vec<u8>,
    /// Put `▁` before the text (default true).
    pub add_dummy_prefix: bool,
    /// Drop leading and trailing spaces and collapse runs of spaces (default true).
    pub remove_extra_whitespaces: bool,
    /// Write spaces as `▁` (default true).
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// A parsed SentencePiece `ModelProto`, checked the way `sentencepiece` checks it on load.
#[derive(Clone, Debug)]
pub struct SentencePieceModel {
    /// The file it came from (for errors).
    pub path: PathBuf,
    /// The vocabulary; a piece's index is its SentencePiece id.
    pub pieces: Vec<Piece>,
    /// Training settings that encoding and decoding read.
    pub trainer_spec: TrainerSpec,
    /// The normalizer.
    pub normalizer_spec: NormalizerSpec,
    /// The denormalizer applied after decoding, where the model has one.
    pub denormalizer_spec: Option<NormalizerSpec>,
}

/// Largest `.spm` file accepted (real ones are a few MB; this bounds what a lying file allocates).
pub const MAX_SPM_BYTES: usize = 1 << 30;

impl SentencePieceModel {
    /// Reads and parses a `.spm` file.
    pub fn open(path: &Path) -> Result<SentencePieceModel> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        SentencePieceModel::from_bytes(&bytes, path)
    }

    /// Parses the bytes of a `.spm` file; `path` only names the file in errors. A pure function
    /// of the bytes that never panics.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<SentencePieceModel> {
        if bytes.len() > MAX_SPM_BYTES {
            return Err(Error::file(
                path,
                format!(
                    "SentencePiece model of {} bytes is over the {MAX_SPM_BYTES}-byte limit",
                    bytes.len()
                ),
            ));
        }
        let mut pieces = Vec::new();
        let mut trainer_spec = TrainerSpec::default();
        let mut normalizer_spec = NormalizerSpec::default();
        let mut denormalizer_spec: Option<NormalizerSpec> = None;
        let mut r = Wire::new(bytes, path, "ModelProto");
        while let Some((field, wt)) = r.key()? {
            match field {
                1 => pieces.push(parse_piece(r.message(wt, "pieces")?, path, pieces.len())?),
                2 => parse_trainer_spec(r.message(wt, "trainer_spec")?, path, &mut trainer_spec)?,
                3 => parse_normalizer_spec(
                    r.message(wt, "normalizer_spec")?,
                    path,
                    "normalizer_spec",
                    &mut normalizer_spec,
                )?,
                5 => parse_normalizer_spec(
                    r.message(wt, "denormalizer_spec")?,
                    path,
                    "denormalizer_spec",
                    denormalizer_spec.get_or_insert_with(NormalizerSpec::default),
                )?,
                _ => r.skip(wt, field)?,
            }
        }
        let model = SentencePieceModel {
            path: path.to_path_buf(),
            pieces,
            trainer_spec,
            normalizer_spec,
            denormalizer_spec,
        };
        model.check()?;
        Ok(model)
    }

    /// The checks `sentencepiece` makes on load, as errors naming the field.
    fn check(&self) -> Result<()> {
        let err = |d: String| Err(Error::file(&self.path, d));
        if self.trainer_spec.model_type != ModelType::Unigram {
            return err(format!(
                "trainer_spec.model_type is {:?}; only unigram SentencePiece models are supported \
                 (Marian's are unigram)",
                self.trainer_spec.model_type
            ));
        }
        if self.pieces.is_empty() {
            return err("ModelProto.pieces is empty: the model has no vocabulary".into());
        }
        if self.pieces.len() > i32::MAX as usize {
            return err(format!(
                "ModelProto.pieces has {} entries",
                self.pieces.len()
            ));
        }
        let unks: Vec<usize> = (0..self.pieces.len())
            .filter(|&i| self.pieces[i].kind == PieceType::Unknown)
            .collect();
        match unks.len() {
            1 => {}
            0 => {
                return err("ModelProto.pieces has no UNKNOWN piece (<unk> is not defined)".into())
            }
            _ => {
                return err(format!(
                    "ModelProto.pieces has {} UNKNOWN pieces (ids {:?}); exactly one is allowed",
                    unks.len(),
                    &unks[..unks.len().min(8)]
                ))
            }
        }
        let mut normal = std::collections::HashSet::new();
        let mut reserved = std::collections::HashSet::new();
        for (i, p) in self.pieces.iter().enumerate() {
            if p.piece.is_empty() {
                return err(format!("ModelProto.pieces[{i}].piece is empty"));
            }
            let set = match p.kind {
                PieceType::Normal | PieceType::UserDefined | PieceType::Unused => &mut normal,
                _ => &mut reserved,
            };
            if !set.insert(p.piece.as_str()) {
                return err(format!(
                    "ModelProto.pieces[{i}].piece {:?} is already defined",
                    p.piece
                ));
            }
            if p.kind == PieceType::Byte && !self.trainer_spec.byte_fallback {
                return err(format!(
                    "ModelProto.pieces[{i}] is the byte piece {:?} but trainer_spec.byte_fallback \
                     is false",
                    p.piece
                ));
            }
            if !p.score.is_finite() {
                return err(format!(
                    "ModelProto.pieces[{i}].score of {:?} is {}",
                    p.piece, p.score
                ));
            }
        }
        Ok(())
    }
}

fn parse_piece(bytes: &[u8], path: &Path, index: usize) -> Result<Piece> {
    let mut r = Wire::new(bytes, path, "ModelProto.pieces");
    let mut piece = None;
    let mut score = 0.0f32;
    let mut kind = PieceType::Normal;
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => piece = Some(r.string(wt, "piece")?),
            2 => score = r.float(wt, "score")?,
            3 => {
                let v = r.varint_field(wt, "type")?;
                kind = PieceType::from_proto(v).ok_or_else(|| {
                    Error::file(
                        path,
                        format!("ModelProto.pieces[{index}].type is {v}, not a piece type"),
                    )
                })?;
            }
            _ => r.skip(wt, field)?,
        }
    }
    let piece = piece.ok_or_else(|| {
        Error::file(
            path,
            format!("ModelProto.pieces[{index}] has no piece text"),
        )
    })?;
    Ok(Piece { piece, score, kind })
}

fn parse_trainer_spec(bytes: &[u8], path: &Path, t: &mut TrainerSpec) -> Result<()> {
    let mut r = Wire::new(bytes, path, "TrainerSpec");
    while let Some((field, wt)) = r.key()? {
        match field {
            3 => {
                let v = r.varint_field(wt, "model_type")?;
                t.model_type = match v {
                    1 => ModelType::Unigram,
                    2 => ModelType::Bpe,
                    3 => ModelType::Word,
                    4 => ModelType::Char,
                    _ => {
                        return Err(Error::file(
                            path,
                            format!("trainer_spec.model_type is {v}, not a model type"),
                        ))
                    }
                };
            }
            4 => t.vocab_size = r.varint_field(wt, "vocab_size")? as i32,
            24 => t.treat_whitespace_as_suffix = r.varint_field(wt, "treat_whitespace")? != 0,
            35 => t.byte_fallback = r.varint_field(wt, "byte_fallback")? != 0,
            40 => t.unk_id = r.varint_field(wt, "unk_id")? as i32,
            44 => t.unk_surface = r.string(wt, "unk_surface")?,
            _ => r.skip(wt, field)?,
        }
    }
    Ok(())
}

fn parse_normalizer_spec(
    bytes: &[u8],
    path: &Path,
    which: &'static str,
    n: &mut NormalizerSpec,
) -> Result<()> {
    let mut r = Wire::new(bytes, path, which);
    while let Some((field, wt)) = r.key()? {
        match field {
            1 => n.name = r.string(wt, "name")?,
            2 => n.precompiled_charsmap = r.bytes(wt, "precompiled_charsmap")?.to_vec(),
            3 => n.add_dummy_prefix = r.varint_field(wt, "add_dummy_prefix")? != 0,
            4 => n.remove_extra_whitespaces = r.varint_field(wt, "remove_extra_whitespaces")? != 0,
            5 => n.escape_whitespaces = r.varint_field(wt, "escape_whitespaces")? != 0,
            _ => r.skip(wt, field)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn len_field(field: u64, body: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut p = Vec::new();
        len_field(1, text.as_bytes(), &mut p);
        p.push(2 << 3 | 5);
        p.extend_from_slice(&score.to_le_bytes());
        varint(3 << 3, &mut p);
        varint(kind, &mut p);
        p
    }

    /// A minimal valid model: `<unk>`, `<s>`, `</s>`, `▁a`, `b`, with an identity normalizer.
    fn model_bytes(extra_trainer: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for (t, s, k) in [
            ("<unk>", 0.0, 2),
            ("<s>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("▁a", -1.0, 1),
            ("b", -2.0, 1),
        ] {
            len_field(1, &piece(t, s, k), &mut m);
        }
        let mut t = vec![3 << 3, 1];
        t.extend_from_slice(extra_trainer);
        len_field(2, &t, &mut m);
        let mut n = Vec::new();
        len_field(1, b"identity", &mut n);
        len_field(3, &n, &mut m);
        m
    }

    fn parse(b: &[u8]) -> Result<SentencePieceModel> {
        SentencePieceModel::from_bytes(b, Path::new("test.spm"))
    }

    fn err_text(b: &[u8]) -> String {
        match parse(b) {
            Ok(_) => panic!("accepted a broken model"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_pieces_and_specs() {
        let m = parse(&model_bytes(&[])).unwrap();
        assert_eq!(m.pieces.len(), 5);
        assert_eq!(m.pieces[3].piece, "▁a");
        assert_eq!(m.pieces[3].score, -1.0);
        assert_eq!(m.pieces[0].kind, PieceType::Unknown);
        assert_eq!(m.pieces[2].kind, PieceType::Control);
        assert_eq!(m.normalizer_spec.name, "identity");
        assert!(m.normalizer_spec.add_dummy_prefix);
        assert!(m.normalizer_spec.remove_extra_whitespaces);
        assert!(m.denormalizer_spec.is_none());
        assert_eq!(m.trainer_spec.model_type, ModelType::Unigram);
    }

    #[test]
    fn every_truncation_is_an_error_naming_the_file() {
        let full = model_bytes(&[]);
        for n in 0..full.len() {
            match parse(&full[..n]) {
                // A cut that falls between two fields leaves a shorter but well-formed message;
                // it must still fail the model checks (no pieces or no <unk>) or be a valid model.
                Ok(m) => assert!(!m.pieces.is_empty()),
                Err(e) => assert!(e.to_string().starts_with("test.spm: "), "{e}"),
            }
        }
        assert!(err_text(&full[..3]).contains("runs past the end"));
    }

    #[test]
    fn lying_inputs_are_errors() {
        // A length that runs past the end.
        let mut b = vec![1 << 3 | 2];
        varint(1_000_000, &mut b);
        assert!(
            err_text(&b).contains("ModelProto.pieces"),
            "{}",
            err_text(&b)
        );
        // A truncated varint.
        assert!(err_text(&[1 << 3 | 2, 0x80]).contains("truncated varint"));
        // An 11-byte varint (in a field heedful skips).
        assert!(err_text(&[
            6 << 3,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff
        ])
        .contains("varint"));
        // The pieces field with the varint wire type.
        assert!(err_text(&[1 << 3, 5]).contains("pieces"));
        // Groups (wire types 3 and 4) are not supported.
        assert!(err_text(&[7 << 3 | 3]).contains("wire type 3"));
        // Field number 0.
        assert!(err_text(&[0, 0]).contains("field number 0"));
        // No pieces at all.
        assert!(err_text(&[]).contains("pieces is empty"));
        // A score with the wrong wire type.
        let mut p = Vec::new();
        len_field(1, b"x", &mut p);
        p.extend_from_slice(&[2 << 3, 1]);
        let mut m = Vec::new();
        len_field(1, &p, &mut m);
        assert!(err_text(&m).contains("score"), "{}", err_text(&m));
        // Not unigram.
        let mut bpe = model_bytes(&[]);
        let mut t = Vec::new();
        len_field(2, &[3 << 3, 2], &mut t);
        bpe.extend_from_slice(&t);
        assert!(
            err_text(&bpe).contains("only unigram"),
            "{}",
            err_text(&bpe)
        );
        // An unknown piece type.
        let mut m = model_bytes(&[]);
        len_field(1, &piece("z", -1.0, 9), &mut m);
        assert!(err_text(&m).contains("type is 9"));
        // A second <unk>.
        let mut m = model_bytes(&[]);
        len_field(1, &piece("<unk2>", 0.0, 2), &mut m);
        assert!(err_text(&m).contains("2 UNKNOWN pieces"));
        // A duplicated piece.
        let mut m = model_bytes(&[]);
        len_field(1, &piece("b", -3.0, 1), &mut m);
        assert!(err_text(&m).contains("already defined"));
        // A byte piece without byte_fallback.
        let mut m = model_bytes(&[]);
        len_field(1, &piece("<0x41>", 0.0, 6), &mut m);
        assert!(err_text(&m).contains("byte_fallback"));
        // A NaN score.
        let mut m = model_bytes(&[]);
        len_field(1, &piece("c", f32::NAN, 1), &mut m);
        assert!(err_text(&m).contains("score"));
        // A piece text that is not UTF-8.
        let mut p = Vec::new();
        len_field(1, &[0xff, 0xfe], &mut p);
        let mut m = model_bytes(&[]);
        len_field(1, &p, &mut m);
        assert!(err_text(&m).contains("UTF-8"));
    }

    #[test]
    fn later_fields_merge_like_protobuf() {
        // byte_fallback set in a second trainer_spec message merges into the first (model_type
        // stays unigram), as protobuf merges repeated occurrences of a message field.
        let mut body = Vec::new();
        varint(35 << 3, &mut body);
        body.push(1);
        let mut m = model_bytes(&[]);
        len_field(2, &body, &mut m);
        let p = parse(&m).unwrap();
        assert!(p.trainer_spec.byte_fallback);
        assert_eq!(p.trainer_spec.model_type, ModelType::Unigram);
    }
}
