//! Fuzzes the Marian tokenizer's file readers: arbitrary bytes as a SentencePiece `.spm` model
//! (`SentencePieceModel::from_bytes`) and, when they are UTF-8, as a `vocab.json`
//! (`tokenizer::parse_vocab`). Each must give a value or an error naming the file, never a panic,
//! an overflow or a huge allocation; an accepted model then encodes texts and decodes its pieces
//! (the charsmap trie, the rule strings and the Viterbi search all read what the file says).
#![no_main]

use std::path::Path;

use heedful::models::marian::spm::{SentencePieceModel, SentencePieceProcessor};
use heedful::models::marian::tokenizer::parse_vocab;
use libfuzzer_sys::fuzz_target;

const TEXTS: [&str; 4] = [
    "",
    "  Hello,  wörld  ",
    "ｶﾞ ﬁ ① \u{1f600}\u{1f600} 123",
    ">>cmn_Hans<< a\tb",
];

fuzz_target!(|data: &[u8]| {
    match SentencePieceModel::from_bytes(data, Path::new("fuzz.spm")) {
        Ok(m) => {
            assert!(!m.pieces.is_empty());
            if let Ok(sp) = SentencePieceProcessor::new(m) {
                for t in TEXTS {
                    if let Ok(pieces) = sp.encode(t) {
                        let _ = sp.decode_pieces(&pieces);
                    }
                }
                let all: Vec<&str> = (0..sp.len().min(64) as u32)
                    .filter_map(|i| sp.id_to_piece(i))
                    .collect();
                let _ = sp.decode_pieces(&all);
            }
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.spm: "), "{e}"),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        match parse_vocab(text, Path::new("vocab.json")) {
            Ok(v) => assert!(!v.is_empty()),
            Err(e) => assert!(e.to_string().starts_with("vocab.json: "), "{e}"),
        }
    }
});
