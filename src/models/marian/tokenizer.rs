//! `MarianTokenizer` of Hugging Face transformers (5.x), in Rust: text to source ids and target ids
//! to text, token for token as the Python tokenizer with the `sentencepiece` library.
//!
//! Encoding: the text is split around the added (special) tokens `</s>`, `<unk>`, `<pad>`, ...;
//! each other chunk loses a leading `>>lang<<` code (kept whole as one token), the rest is
//! segmented by `source.spm`; tokens map through `vocab.json` (a piece not in it is `<unk>`) and
//! `</s>` is appended. Decoding: ids map to tokens through the target vocabulary (`vocab.json`, or
//! `target_vocab.json` with `separate_vocabs`), special tokens are skipped, the rest is decoded by
//! sentencepiece (the source model when the vocabulary is shared, as transformers does), `▁`
//! becomes a space and the ends are stripped.
//!
//! ```no_run
//! use heedful::models::marian::tokenizer::MarianTokenizer;
//! let tok = MarianTokenizer::from_dir("weights/marian".as_ref())?;
//! let ids = tok.encode("Hello world")?; // ends with the id of </s>
//! let text = tok.decode(&ids)?;
//! # Ok::<(), heedful::Error>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::spm::{SentencePieceModel, SentencePieceProcessor};
use crate::error::{Error, Result};
use files::{parse_json_opt, parse_vocab_bytes, read_bytes, read_bytes_opt};

mod files;

pub use files::{parse_vocab, MAX_JSON_BYTES};

/// A token matched whole in the text before sentencepiece runs (transformers' `AddedToken`).
#[derive(Clone, Debug, PartialEq)]
pub struct AddedToken {
    /// Its text.
    pub content: String,
    /// Its id.
    pub id: u32,
    /// Whitespace on its left is removed.
    pub lstrip: bool,
    /// Whitespace on its right is removed.
    pub rstrip: bool,
    /// Only matches as a whole word.
    pub single_word: bool,
}

/// The Marian tokenizer of a model folder.
#[derive(Clone, Debug)]
pub struct MarianTokenizer {
    dir: PathBuf,
    source: SentencePieceProcessor,
    target: SentencePieceProcessor,
    /// Source vocabulary (`vocab.json`): token -> id.
    vocab: HashMap<String, u32>,
    /// Target id -> token (`target_vocab.json` with `separate_vocabs`, else `vocab.json`; the
    /// last token of an id wins, as Python's dict inversion).
    decoder: HashMap<u32, String>,
    separate_vocabs: bool,
    /// Added tokens, longest first (the text splitter prefers the longest at a position).
    added: Vec<AddedToken>,
    added_by_content: HashMap<String, u32>,
    added_by_id: HashMap<u32, String>,
    /// eos, unk, pad and the additional special tokens (texts and ids).
    special_tokens: HashSet<String>,
    special_ids: HashSet<u32>,
    unk_token: String,
    unk_id: u32,
    eos_token: String,
    eos_id: u32,
    pad_id: u32,
    clean_up_tokenization_spaces: bool,
}

/// The bytes of a Marian tokenizer's files, as a folder holds them (read by
/// [`MarianTokenizerFiles::read_dir`], or fetched by a browser page) for
/// [`MarianTokenizer::from_files`].
#[derive(Clone, Debug, Default)]
pub struct MarianTokenizerFiles {
    /// `source.spm`: the source-side SentencePiece model.
    pub source_spm: Vec<u8>,
    /// `target.spm`: the target-side SentencePiece model.
    pub target_spm: Vec<u8>,
    /// `vocab.json`: token -> id (source and target, or source only with `separate_vocabs`).
    pub vocab_json: Vec<u8>,
    /// `target_vocab.json`: needed only when `tokenizer_config.json` says `separate_vocabs`.
    pub target_vocab_json: Option<Vec<u8>>,
    /// `tokenizer_config.json`, when the folder has one.
    pub tokenizer_config_json: Option<Vec<u8>>,
    /// `special_tokens_map.json`, when the folder has one.
    pub special_tokens_map_json: Option<Vec<u8>>,
}

impl MarianTokenizerFiles {
    /// Files a tokenizer folder must have.
    pub const REQUIRED: [&'static str; 3] = ["source.spm", "target.spm", "vocab.json"];
    /// Files read when present.
    pub const OPTIONAL: [&'static str; 3] = [
        "target_vocab.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ];

    /// Reads a folder's tokenizer files (the optional ones when present); errors name the file
    /// that is missing or unreadable. JSON files over [`MAX_JSON_BYTES`] are refused unread.
    pub fn read_dir(dir: &Path) -> Result<MarianTokenizerFiles> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| Error::Io { path, source })
        };
        Ok(MarianTokenizerFiles {
            tokenizer_config_json: read_bytes_opt(&dir.join("tokenizer_config.json"))?,
            special_tokens_map_json: read_bytes_opt(&dir.join("special_tokens_map.json"))?,
            source_spm: read("source.spm")?,
            target_spm: read("target.spm")?,
            vocab_json: read_bytes(&dir.join("vocab.json"))?,
            target_vocab_json: read_bytes_opt(&dir.join("target_vocab.json"))?,
        })
    }
}

impl MarianTokenizer {
    /// Loads `source.spm`, `target.spm`, `vocab.json` (and `target_vocab.json` when
    /// `tokenizer_config.json` says `separate_vocabs`), with the special tokens of
    /// `tokenizer_config.json` / `special_tokens_map.json` where present (defaults `</s>`,
    /// `<unk>`, `<pad>`). Errors name the missing or malformed file.
    pub fn from_dir(dir: &Path) -> Result<MarianTokenizer> {
        MarianTokenizer::from_files(dir, MarianTokenizerFiles::read_dir(dir)?)
    }

    /// [`MarianTokenizer::from_dir`] from the files' bytes (the one implementation); `dir` only
    /// names the files in errors (a folder path, or the URL the bytes came from).
    pub fn from_files(dir: &Path, files: MarianTokenizerFiles) -> Result<MarianTokenizer> {
        let config = parse_json_opt(
            files.tokenizer_config_json.as_deref(),
            &dir.join("tokenizer_config.json"),
        )?;
        let map = parse_json_opt(
            files.special_tokens_map_json.as_deref(),
            &dir.join("special_tokens_map.json"),
        )?;
        // A setting and the file it came from (special_tokens_map.json wins), for errors.
        let cfg = |k: &str| {
            map.as_ref()
                .and_then(|m| m.get(k))
                .map(|v| (v, "special_tokens_map.json"))
                .or_else(|| {
                    config
                        .as_ref()
                        .and_then(|c| c.get(k))
                        .map(|v| (v, "tokenizer_config.json"))
                })
        };
        let token_of = |k: &str, default: &str| -> Result<String> {
            match cfg(k) {
                None | Some((Value::Null, _)) => Ok(default.to_string()),
                Some((v, file)) => token_text(v)
                    .ok_or_else(|| Error::file(dir.join(file), format!("{k} is {v}, not a token"))),
            }
        };
        let unk_token = token_of("unk_token", "<unk>")?;
        let eos_token = token_of("eos_token", "</s>")?;
        let pad_token = token_of("pad_token", "<pad>")?;
        let mut additional = Vec::new();
        for k in ["additional_special_tokens", "extra_special_tokens"] {
            if let Some((Value::Array(a), file)) = cfg(k) {
                for v in a {
                    additional.push(token_text(v).ok_or_else(|| {
                        Error::file(dir.join(file), format!("{k} holds {v}, not a token"))
                    })?);
                }
            }
        }
        let separate_vocabs = config
            .as_ref()
            .and_then(|c| c.get("separate_vocabs"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let clean_up_tokenization_spaces = config
            .as_ref()
            .and_then(|c| c.get("clean_up_tokenization_spaces"))
            .and_then(Value::as_bool)
            .unwrap_or(false);

        let source_path = dir.join("source.spm");
        let target_path = dir.join("target.spm");
        let source = SentencePieceProcessor::new(SentencePieceModel::from_bytes(
            &files.source_spm,
            &source_path,
        )?)?;
        let target = SentencePieceProcessor::new(SentencePieceModel::from_bytes(
            &files.target_spm,
            &target_path,
        )?)?;
        let vocab_path = dir.join("vocab.json");
        let vocab_pairs = parse_vocab_bytes(&files.vocab_json, &vocab_path)?;
        let decoder_pairs = if separate_vocabs {
            let path = dir.join("target_vocab.json");
            let bytes = files.target_vocab_json.as_deref().ok_or_else(|| {
                Error::file(
                    &path,
                    "not found: tokenizer_config.json says separate_vocabs, so the target \
                     vocabulary must be given",
                )
            })?;
            parse_vocab_bytes(bytes, &path)?
        } else {
            vocab_pairs.clone()
        };
        let vocab: HashMap<String, u32> = vocab_pairs.iter().cloned().collect();
        let decoder: HashMap<u32, String> =
            decoder_pairs.into_iter().map(|(t, i)| (i, t)).collect();

        // Added tokens: tokenizer_config.json's added_tokens_decoder, then every special token
        // (with its vocabulary id) that it does not list.
        let mut added: Vec<AddedToken> = Vec::new();
        if let Some(Value::Object(m)) = config.as_ref().and_then(|c| c.get("added_tokens_decoder"))
        {
            let cfg_path = dir.join("tokenizer_config.json");
            for (k, v) in m {
                let bad =
                    |d: &str| Error::file(&cfg_path, format!("added_tokens_decoder[{k:?}]: {d}"));
                let id: u32 = k.parse().map_err(|_| bad("the key is not a token id"))?;
                let content = v
                    .get("content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("no string \"content\""))?;
                if content.is_empty() {
                    return Err(bad("empty \"content\""));
                }
                let flag = |f: &str| v.get(f).and_then(Value::as_bool).unwrap_or(false);
                added.push(AddedToken {
                    content: content.to_string(),
                    id,
                    lstrip: flag("lstrip"),
                    rstrip: flag("rstrip"),
                    single_word: flag("single_word"),
                });
            }
        }
        let mut specials = vec![eos_token.clone(), unk_token.clone(), pad_token.clone()];
        specials.extend(additional);
        let mut special_ids = HashSet::new();
        for s in &specials {
            let id = match added.iter().find(|a| &a.content == s) {
                Some(a) => a.id,
                None => {
                    let id = *vocab.get(s).ok_or_else(|| {
                        Error::file(
                            &vocab_path,
                            format!(
                                "the special token {s:?} is not in the vocabulary (nor in \
                                 tokenizer_config.json's added_tokens_decoder)"
                            ),
                        )
                    })?;
                    if !s.is_empty() {
                        added.push(AddedToken {
                            content: s.clone(),
                            id,
                            lstrip: false,
                            rstrip: false,
                            single_word: false,
                        });
                    }
                    id
                }
            };
            special_ids.insert(id);
        }
        // transformers requires <unk> in vocab.json itself.
        let unk_id = *vocab.get(&unk_token).ok_or_else(|| {
            Error::file(
                &vocab_path,
                format!("the unknown token {unk_token:?} must be in the vocabulary"),
            )
        })?;
        let id_of = |t: &str| {
            added
                .iter()
                .find(|a| a.content == t)
                .map(|a| a.id)
                .or_else(|| vocab.get(t).copied())
                .unwrap_or(unk_id)
        };
        let eos_id = id_of(&eos_token);
        let pad_id = id_of(&pad_token);
        added.sort_by_key(|a| std::cmp::Reverse(a.content.len()));
        let added_by_content = added.iter().map(|a| (a.content.clone(), a.id)).collect();
        let added_by_id = added.iter().map(|a| (a.id, a.content.clone())).collect();
        Ok(MarianTokenizer {
            dir: dir.to_path_buf(),
            source,
            target,
            vocab,
            decoder,
            separate_vocabs,
            added,
            added_by_content,
            added_by_id,
            special_tokens: specials.into_iter().collect(),
            special_ids,
            unk_token,
            unk_id,
            eos_token,
            eos_id,
            pad_id,
            clean_up_tokenization_spaces,
        })
    }

    /// The folder it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Id of `</s>` (appended to every source).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// Id of `<unk>`.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// Id of `<pad>`.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Whether source and target have their own vocabularies.
    pub fn separate_vocabs(&self) -> bool {
        self.separate_vocabs
    }

    /// The source-side SentencePiece model.
    pub fn source_spm(&self) -> &SentencePieceProcessor {
        &self.source
    }

    /// The target-side SentencePiece model.
    pub fn target_spm(&self) -> &SentencePieceProcessor {
        &self.target
    }

    /// Source ids of one text, `</s>` appended (`MarianTokenizer(text)["input_ids"]`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self
            .tokens(text)?
            .iter()
            .map(|t| {
                self.added_by_content
                    .get(t)
                    .or_else(|| self.vocab.get(t))
                    .copied()
                    .unwrap_or(self.unk_id)
            })
            .collect();
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// The source tokens of a text, one per id of [`MarianTokenizer::encode`]: the pieces of
    /// `tokenize(text)` followed by `</s>` (labels for the heatmap's source axis).
    pub fn source_pieces(&self, text: &str) -> Result<Vec<String>> {
        let mut t = self.tokens(text)?;
        t.push(self.eos_token.clone());
        Ok(t)
    }

    /// Target tokens of ids (`convert_ids_to_tokens`, special tokens kept), for heatmap labels.
    /// An id outside both the vocabulary and the SentencePiece model reads as `<unk>`.
    pub fn target_pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| {
                self.id_to_token(id)
                    .map(str::to_string)
                    .unwrap_or_else(|| self.unk_token.clone())
            })
            .collect()
    }

    /// Text of target ids, special tokens skipped (`decode(ids, skip_special_tokens=True)`).
    /// An id in neither the target vocabulary nor the SentencePiece model is an error naming it
    /// (transformers raises IndexError there).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut tokens = Vec::with_capacity(ids.len());
        for &id in ids {
            if self.special_ids.contains(&id) {
                continue;
            }
            let t = self.id_to_token(id).ok_or_else(|| {
                Error::invalid(
                    "MarianTokenizer::decode",
                    format!(
                        "token id {id} is in neither the target vocabulary nor the SentencePiece \
                         model ({} pieces) of {}",
                        self.decode_spm().len(),
                        self.dir.display()
                    ),
                )
            })?;
            tokens.push(t);
        }
        // convert_tokens_to_string: special tokens are not given to sentencepiece.
        let spm = self.decode_spm();
        let mut out = String::new();
        let mut run: Vec<&str> = Vec::new();
        for t in tokens {
            if self.special_tokens.contains(t) {
                out.push_str(&spm.decode_pieces(&run)?);
                out.push_str(t);
                out.push(' ');
                run.clear();
            } else {
                run.push(t);
            }
        }
        out.push_str(&spm.decode_pieces(&run)?);
        let mut text = py_strip(&out.replace('\u{2581}', " ")).to_string();
        if self.clean_up_tokenization_spaces {
            for (a, b) in [
                (" .", "."),
                (" ?", "?"),
                (" !", "!"),
                (" ,", ","),
                (" ' ", "'"),
                (" n't", "n't"),
                (" 'm", "'m"),
                (" 's", "'s"),
                (" 've", "'ve"),
                (" 're", "'re"),
            ] {
                text = text.replace(a, b);
            }
        }
        Ok(text)
    }

    /// sentencepiece model decoding uses: the source one unless the vocabularies are separate.
    fn decode_spm(&self) -> &SentencePieceProcessor {
        if self.separate_vocabs {
            &self.target
        } else {
            &self.source
        }
    }

    /// `convert_ids_to_tokens` for one id: added tokens, the target vocabulary, then the
    /// SentencePiece model's piece.
    fn id_to_token(&self, id: u32) -> Option<&str> {
        self.added_by_id
            .get(&id)
            .or_else(|| self.decoder.get(&id))
            .map(String::as_str)
            .or_else(|| self.decode_spm().id_to_piece(id))
    }

    /// `tokenize(text)`: added tokens split off, each other chunk through `_tokenize`.
    fn tokens(&self, text: &str) -> Result<Vec<String>> {
        let mut chunks = self.split_added(text);
        // Added-token properties, as PreTrainedTokenizer.tokenize applies them.
        for i in 0..chunks.len() {
            let Chunk::Added(k) = chunks[i] else { continue };
            let a = &self.added[k];
            if a.rstrip && i + 1 < chunks.len() {
                if let Chunk::Text(t) = &mut chunks[i + 1] {
                    *t = py_lstrip(t).to_string();
                }
            }
            if a.lstrip && i > 0 {
                if let Chunk::Text(t) = &mut chunks[i - 1] {
                    *t = py_rstrip(t).to_string();
                }
            }
            if a.single_word {
                let left_glued = match i.checked_sub(1).map(|j| &chunks[j]) {
                    Some(Chunk::Text(t)) => !t.is_empty() && !t.ends_with(' '),
                    _ => false,
                };
                let right_glued = match chunks.get(i + 1) {
                    Some(Chunk::Text(t)) => !t.is_empty() && !t.starts_with(' '),
                    _ => false,
                };
                if left_glued {
                    if let Chunk::Text(t) = &mut chunks[i - 1] {
                        t.push_str(&a.content);
                    }
                    chunks[i] = Chunk::Text(String::new());
                } else if right_glued {
                    if let Chunk::Text(t) = &mut chunks[i + 1] {
                        t.insert_str(0, &a.content);
                    }
                    chunks[i] = Chunk::Text(String::new());
                }
            }
        }
        let mut out = Vec::new();
        for c in chunks {
            match c {
                Chunk::Added(k) => out.push(self.added[k].content.clone()),
                Chunk::Text(t) if t.is_empty() => {}
                Chunk::Text(t) => {
                    // remove_language_code: ">>" at the start up to the first "<<".
                    let mut rest = t.as_str();
                    if rest.starts_with(">>") {
                        if let Some(e) = rest.find("<<") {
                            out.push(rest[..e + 2].to_string());
                            rest = &rest[e + 2..];
                        }
                    }
                    out.extend(self.source.encode(rest)?);
                }
            }
        }
        Ok(out)
    }

    /// Splits `text` around added tokens: scanning left to right, the longest added token that
    /// starts at the earliest position.
    fn split_added(&self, text: &str) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut last = 0;
        let mut i = 0;
        while i < text.len() {
            if !text.is_char_boundary(i) {
                i += 1;
                continue;
            }
            let hit = self
                .added
                .iter()
                .position(|a| text[i..].starts_with(a.content.as_str()));
            match hit {
                Some(k) => {
                    if i > last {
                        chunks.push(Chunk::Text(text[last..i].to_string()));
                    }
                    chunks.push(Chunk::Added(k));
                    i += self.added[k].content.len();
                    last = i;
                }
                None => i += 1,
            }
        }
        if last < text.len() {
            chunks.push(Chunk::Text(text[last..].to_string()));
        }
        chunks
    }
}

enum Chunk {
    Text(String),
    Added(usize),
}

/// Python's `str.isspace` for one character: Unicode White_Space plus U+001C..U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_space)
}

fn py_lstrip(s: &str) -> &str {
    s.trim_start_matches(py_space)
}

fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(py_space)
}

/// A token given as a string or as an `AddedToken` object (`{"content": ...}`).
fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace() {
        assert_eq!(py_strip("\u{1f} a\u{3000}\u{a0}"), "a");
        assert_eq!(py_strip("\u{200b}a"), "\u{200b}a");
    }
}
