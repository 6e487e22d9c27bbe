//! The `sentencepiece` library's encoder and decoder for unigram models, step for step: the
//! normalizer (precompiled charsmap with longest-prefix rules, user-defined symbols kept whole,
//! `remove_extra_whitespaces`, `add_dummy_prefix`, `▁` escaping), the Viterbi search of
//! `Model::EncodeOptimized` in its own float/double arithmetic, the merge of unknown runs (or byte
//! fallback) of `PopulateSentencePieceText`, and `Decode` of pieces.
//!
//! Why not the `tokenizers` crate's `Unigram` and `Precompiled` (both are in its default-features-off
//! build): `Precompiled` (crate `spm_precompiled`) matches rules per grapheme cluster taking the
//! shortest trie match, where sentencepiece takes the longest byte-wise match at each position (so
//! `ｶﾞ` becomes `ガ` there but `ガ` in sentencepiece), and it indexes its trie and rule strings
//! unchecked, so a lying `.spm` panics; `Unigram` adds scores in f64 where sentencepiece stores path
//! scores as f32 (ties then break differently), and knows neither user-defined nor unused pieces.
//! The algorithm is small, so it is written out here against sentencepiece 0.2's source.

use std::collections::HashMap;

use super::normalizer::{one_char_len, valid_char_len, Normalizer, Trie, SPACE_SYMBOL};
use super::{PieceType, SentencePieceModel};
use crate::error::{Error, Result};

/// sentencepiece's `kUnkPenalty`: an unknown character scores this much below the worst piece.
const UNK_PENALTY: f32 = 10.0;

/// A loaded SentencePiece unigram model: encodes text to pieces and decodes pieces to text as
/// `sentencepiece.SentencePieceProcessor` does.
#[derive(Clone, Debug)]
pub struct SentencePieceProcessor {
    model: SentencePieceModel,
    normalizer: Normalizer,
    denormalizer: Option<Normalizer>,
    /// NORMAL, USER_DEFINED and UNUSED pieces (sentencepiece's `pieces_`), as a byte trie.
    trie: Trie,
    /// The same pieces by text, and CONTROL, UNKNOWN, BYTE ones (`reserved_id_map_`).
    pieces: HashMap<String, u32>,
    reserved: HashMap<String, u32>,
    unk_id: u32,
    min_score: f32,
    max_score: f32,
}

impl SentencePieceProcessor {
    /// Prepares a parsed model for encoding and decoding (checks its charsmaps).
    pub fn new(model: SentencePieceModel) -> Result<SentencePieceProcessor> {
        let path = model.path.clone();
        let mut trie = Trie::default();
        let mut pieces = HashMap::new();
        let mut reserved = HashMap::new();
        let mut user_defined = Trie::default();
        let mut unk_id = 0;
        let (mut min_score, mut max_score) = (f32::MAX, f32::MIN_POSITIVE);
        for (i, p) in model.pieces.iter().enumerate() {
            let id = i as u32;
            match p.kind {
                PieceType::Normal | PieceType::UserDefined | PieceType::Unused => {
                    trie.insert(p.piece.as_bytes(), id);
                    pieces.insert(p.piece.clone(), id);
                }
                _ => {
                    reserved.insert(p.piece.clone(), id);
                }
            }
            match p.kind {
                PieceType::Normal => {
                    min_score = min_score.min(p.score);
                    max_score = max_score.max(p.score);
                }
                PieceType::UserDefined => user_defined.insert(p.piece.as_bytes(), id),
                PieceType::Unknown => unk_id = id,
                _ => {}
            }
        }
        let suffix = model.trainer_spec.treat_whitespace_as_suffix;
        let normalizer = Normalizer::new(
            &model.normalizer_spec,
            suffix,
            Some(user_defined),
            &path,
            "normalizer_spec",
        )?;
        let denormalizer = match &model.denormalizer_spec {
            Some(d) if !d.precompiled_charsmap.is_empty() => {
                Some(Normalizer::new(d, false, None, &path, "denormalizer_spec")?)
            }
            _ => None,
        };
        Ok(SentencePieceProcessor {
            model,
            normalizer,
            denormalizer,
            trie,
            pieces,
            reserved,
            unk_id,
            min_score,
            max_score,
        })
    }

    /// The parsed model.
    pub fn model(&self) -> &SentencePieceModel {
        &self.model
    }

    /// Number of pieces (ids are `0..len`).
    pub fn len(&self) -> usize {
        self.model.pieces.len()
    }

    /// Whether the model has no pieces (never true for a loaded model).
    pub fn is_empty(&self) -> bool {
        self.model.pieces.is_empty()
    }

    /// The piece of an id (`IdToPiece`), None when out of range.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.model.pieces.get(id as usize).map(|p| p.piece.as_str())
    }

    /// The id of a piece (`PieceToId`): reserved pieces first, then the others, else `<unk>`.
    pub fn piece_to_id(&self, piece: &str) -> u32 {
        self.reserved
            .get(piece)
            .or_else(|| self.pieces.get(piece))
            .copied()
            .unwrap_or(self.unk_id)
    }

    fn kind(&self, id: u32) -> PieceType {
        self.model.pieces[id as usize].kind
    }

    /// The normalized text the encoder segments (`▁` for spaces, dummy prefix added).
    pub fn normalize(&self, text: &str) -> Result<String> {
        self.normalizer.normalize(text)
    }

    /// The pieces of `text` (`encode(text, out_type=str)`).
    pub fn encode(&self, text: &str) -> Result<Vec<String>> {
        let normalized = self.normalize(text)?;
        let segments = self.viterbi(normalized.as_bytes());
        let byte_fallback = self.model.trainer_spec.byte_fallback;
        let mut out: Vec<String> = Vec::with_capacity(segments.len());
        let mut prev_unk = false;
        for (start, end, id) in segments {
            // Segments end on character boundaries of a valid UTF-8 string.
            let w = normalized.get(start..end).unwrap_or_default();
            let unk = self.kind(id) == PieceType::Unknown;
            if unk && byte_fallback {
                out.extend(w.bytes().map(|b| format!("<0x{b:02X}>")));
            } else if unk && prev_unk {
                if let Some(last) = out.last_mut() {
                    last.push_str(w);
                }
            } else {
                out.push(w.to_string());
            }
            prev_unk = unk;
        }
        Ok(out)
    }

    /// `EncodeOptimized`: the best segmentation of `s` as (start, end, id) byte ranges. Path
    /// scores are stored as f32; a piece's candidate is the f64 sum of two f32s (the `- 0.1` of
    /// the user-defined bonus makes sentencepiece's expression a double), the unknown candidate
    /// is an f32 sum. Ties keep the first candidate seen (starts ascending, lengths ascending).
    fn viterbi(&self, s: &[u8]) -> Vec<(usize, usize, u32)> {
        #[derive(Clone, Copy)]
        struct Best {
            score: f32,
            start: Option<usize>,
            id: u32,
        }
        let n = s.len();
        let unk_score = self.min_score - UNK_PENALTY;
        let mut best = vec![
            Best {
                score: 0.0,
                start: None,
                id: 0
            };
            n + 1
        ];
        let mut start = 0;
        while start < n {
            let here = best[start].score;
            let mblen = one_char_len(s[start]).min(n - start);
            let mut has_single = false;
            self.trie.prefixes(&s[start..], |len, id| {
                let kind = self.kind(id);
                if kind == PieceType::Unused {
                    return;
                }
                let score = if kind == PieceType::UserDefined {
                    f64::from(len as f32 * self.max_score) - 0.1
                } else {
                    f64::from(self.model.pieces[id as usize].score)
                };
                let cand = score + f64::from(here);
                let t = &mut best[start + len];
                if t.start.is_none() || cand > f64::from(t.score) {
                    *t = Best {
                        score: cand as f32,
                        start: Some(start),
                        id,
                    };
                }
                if len == mblen {
                    has_single = true;
                }
            });
            if !has_single {
                let cand = unk_score + here;
                let t = &mut best[start + mblen];
                if t.start.is_none() || cand > t.score {
                    *t = Best {
                        score: cand,
                        start: Some(start),
                        id: self.unk_id,
                    };
                }
            }
            start += mblen;
        }
        let mut out = Vec::new();
        let mut end = n;
        while end > 0 {
            let b = best[end];
            // Every character boundary is reached (at least by an unknown node), so `start` is set.
            let Some(s0) = b.start else { break };
            out.push((s0, end, b.id));
            end = s0;
        }
        out.reverse();
        out
    }

    /// The text of pieces (`decode_pieces`): control pieces vanish, `<unk>` becomes the unknown
    /// surface, pieces not in the model are copied as they are, byte pieces are joined into UTF-8
    /// (U+FFFD per invalid byte), leading `▁`s are dropped, the other `▁`s become spaces.
    pub fn decode_pieces<S: AsRef<str>>(&self, pieces: &[S]) -> Result<String> {
        let spec = &self.model.normalizer_spec;
        let strip_bos = spec.add_dummy_prefix || spec.remove_extra_whitespaces;
        let ids: Vec<u32> = pieces
            .iter()
            .map(|p| self.piece_to_id(p.as_ref()))
            .collect();
        let mut text = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut is_bos_ws = true;
        let mut bos_ws_seen = false;
        for (piece, &id) in pieces.iter().zip(&ids) {
            let piece = piece.as_ref();
            if self.kind(id) == PieceType::Byte {
                let b = piece_to_byte(piece).ok_or_else(|| {
                    Error::file(
                        &self.model.path,
                        format!("BYTE piece {piece:?} (id {id}) is not of the form <0xXX>"),
                    )
                })?;
                bytes.push(b);
                continue;
            }
            flush_bytes(&mut bytes, &mut text);
            if bos_ws_seen || !text.is_empty() {
                is_bos_ws = false;
            }
            let (decoded, seen) = match self.kind(id) {
                PieceType::Control => (String::new(), false),
                PieceType::Unknown => {
                    if self.id_to_piece(id) == Some(piece) {
                        (self.model.trainer_spec.unk_surface.clone(), false)
                    } else {
                        (piece.to_string(), false)
                    }
                }
                _ => {
                    let mut p = piece;
                    let mut has_bos_ws = false;
                    if is_bos_ws && strip_bos {
                        if let Some(rest) = p.strip_prefix(SPACE_SYMBOL) {
                            p = rest;
                            has_bos_ws = true;
                        }
                        if spec.remove_extra_whitespaces {
                            has_bos_ws = false;
                        }
                    }
                    (p.replace(SPACE_SYMBOL, " "), has_bos_ws)
                }
            };
            bos_ws_seen = seen;
            text.push_str(&decoded);
        }
        flush_bytes(&mut bytes, &mut text);
        match &self.denormalizer {
            Some(d) => d.normalize(&text),
            None => Ok(text),
        }
    }
}

/// `<0xXX>` (two upper-case hex digits) to its byte, as sentencepiece's `PieceToByte`.
fn piece_to_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2
        || !hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
    {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Appends the UTF-8 text of a run of byte pieces: each valid character as itself, each byte
/// that does not start one as U+FFFD.
fn flush_bytes(bytes: &mut Vec<u8>, text: &mut String) {
    let mut rest: &[u8] = bytes;
    while !rest.is_empty() {
        match valid_char_len(rest) {
            Some(n) => {
                text.push_str(std::str::from_utf8(&rest[..n]).unwrap_or("\u{fffd}"));
                rest = &rest[n..];
            }
            None => {
                text.push('\u{fffd}');
                rest = &rest[1..];
            }
        }
    }
    bytes.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn bundled() -> SentencePieceModel {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/marian/source.spm");
        SentencePieceModel::open(&p).unwrap()
    }

    fn with_charsmap(blob: Vec<u8>) -> Result<SentencePieceProcessor> {
        let mut m = bundled();
        m.path = PathBuf::from("lying.spm");
        m.normalizer_spec.precompiled_charsmap = blob;
        SentencePieceProcessor::new(m)
    }

    #[test]
    fn lying_charsmaps_are_errors_not_panics() {
        let good = bundled().normalizer_spec.precompiled_charsmap;
        let trie_size = u32::from_le_bytes([good[0], good[1], good[2], good[3]]) as usize;
        // Too short, a trie larger than the blob, a trie without a root unit.
        for blob in [
            vec![1, 0, 0],
            vec![255, 255, 255, 0, 1, 2, 3, 4],
            vec![0, 0, 0, 0, 1],
        ] {
            let e = with_charsmap(blob).unwrap_err().to_string();
            assert!(
                e.starts_with("lying.spm: normalizer_spec.precompiled_charsmap"),
                "{e}"
            );
        }
        // Rule strings cut off: rules that point past them match nothing (text passes through).
        let cut = good[..4 + trie_size + 1].to_vec();
        let sp = with_charsmap(cut).unwrap();
        assert_eq!(sp.normalize("ﬁ x").unwrap(), "▁ﬁ▁x");
        // Rule strings that are not UTF-8: an error naming the file and the text.
        let mut bad = good.clone();
        for b in &mut bad[4 + trie_size..] {
            if *b != 0 {
                *b = 0xff;
            }
        }
        let sp = with_charsmap(bad).unwrap();
        let e = sp.normalize("ﬁ").unwrap_err().to_string();
        assert!(
            e.starts_with("lying.spm: normalizer_spec.precompiled_charsmap rewrites"),
            "{e}"
        );
        // A trie whose units all point far outside it: no match, no panic.
        let mut wild = good.clone();
        for b in &mut wild[4..4 + trie_size] {
            *b = 0xff;
        }
        let sp = with_charsmap(wild).unwrap();
        assert_eq!(sp.normalize("a b").unwrap(), "▁a▁b");
    }

    #[test]
    fn byte_pieces_must_be_well_formed() {
        assert_eq!(piece_to_byte("<0x0A>"), Some(10));
        assert_eq!(piece_to_byte("<0xff>"), None);
        assert_eq!(piece_to_byte("<0x1>"), None);
        let mut s = String::new();
        flush_bytes(&mut vec![0xe4, 0xb8, 0xad, 0xe4, 0x41], &mut s);
        assert_eq!(s, "中\u{fffd}A");
    }
}
