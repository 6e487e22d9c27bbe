//! The JSON files of a Marian tokenizer folder: `vocab.json` / `target_vocab.json` (token -> id,
//! read in file order) and the optional `tokenizer_config.json` / `special_tokens_map.json`.
//! Errors name the file; sizes are bounded before reading.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// Largest vocabulary/config JSON accepted (opus-mt's vocab.json is about 1.5 MB).
pub const MAX_JSON_BYTES: u64 = 256 << 20;

/// Reads a JSON file's bytes, its size bounded before reading.
pub(super) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_JSON_BYTES {
        return Err(too_big(path, len));
    }
    std::fs::read(path).map_err(io)
}

/// [`read_bytes`] of a file that may be absent (None then).
pub(super) fn read_bytes_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    if !path.exists() {
        return Ok(None);
    }
    read_bytes(path).map(Some)
}

fn too_big(path: &Path, len: u64) -> Error {
    Error::file(
        path,
        format!("{len} bytes is over the {MAX_JSON_BYTES}-byte limit for a JSON file"),
    )
}

/// The bytes of a JSON file as text (bounded, UTF-8); `path` names it in errors.
fn text_of<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str> {
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(too_big(path, bytes.len() as u64));
    }
    std::str::from_utf8(bytes).map_err(|e| Error::file(path, format!("not UTF-8: {e}")))
}

/// Parses an optional JSON file that must hold an object (`tokenizer_config.json`,
/// `special_tokens_map.json`); `path` names it in errors.
pub(super) fn parse_json_opt(bytes: Option<&[u8]>, path: &Path) -> Result<Option<Value>> {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let v: Value = serde_json::from_str(text_of(bytes, path)?)
        .map_err(|e| Error::file(path, format!("malformed JSON: {e}")))?;
    if !v.is_object() {
        return Err(Error::file(path, "expected a JSON object"));
    }
    Ok(Some(v))
}

/// [`parse_vocab`] of a file's bytes (bounded, UTF-8).
pub(super) fn parse_vocab_bytes(bytes: &[u8], path: &Path) -> Result<Vec<(String, u32)>> {
    parse_vocab(text_of(bytes, path)?, path)
}

/// Parses a Marian `vocab.json` (a JSON object token -> id) keeping the file's order (a token
/// given twice keeps its last id, as Python's `json.load`). Ids must be integers in
/// `0..=u32::MAX`; an empty object is an error. Errors name `path`; never panics (fuzzed).
pub fn parse_vocab(text: &str, path: &Path) -> Result<Vec<(String, u32)>> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, Value)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object mapping tokens to ids")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut m: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = m.next_entry::<String, Value>()? {
                out.push((k, v));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = de
        .deserialize_map(Pairs)
        .and_then(|p| de.end().map(|_| p))
        .map_err(|e| Error::file(path, format!("malformed vocabulary JSON: {e}")))?;
    if raw.is_empty() {
        return Err(Error::file(path, "the vocabulary is empty"));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for (k, v) in raw {
        let id = v
            .as_u64()
            .filter(|&i| i <= u64::from(u32::MAX))
            .ok_or_else(|| {
                Error::file(
                    path,
                    format!(
                        "token {k:?} has id {v}; ids must be integers from 0 to {}",
                        u32::MAX
                    ),
                )
            })? as u32;
        match index.get(&k) {
            Some(&j) => out[j] = (k, id),
            None => {
                index.insert(k.clone(), out.len());
                out.push((k, id));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("v.json")
    }

    #[test]
    fn vocab_keeps_order_and_last_duplicate() {
        let v = parse_vocab(r#"{"</s>": 0, "<unk>": 1, "a": 2, "a": 5}"#, p()).unwrap();
        assert_eq!(
            v,
            vec![("</s>".into(), 0), ("<unk>".into(), 1), ("a".into(), 5)]
        );
    }

    #[test]
    fn lying_vocabs_are_errors_naming_the_file() {
        for (text, want) in [
            ("", "malformed"),
            ("[1, 2]", "malformed"),
            ("{\"a\": 1", "malformed"),
            ("{\"a\": 1} x", "malformed"),
            ("{}", "empty"),
            ("{\"a\": -1}", "ids must be integers"),
            ("{\"a\": 1.5}", "ids must be integers"),
            ("{\"a\": \"1\"}", "ids must be integers"),
            ("{\"a\": 4294967296}", "ids must be integers"),
            ("{\"a\": null}", "ids must be integers"),
        ] {
            let e = parse_vocab(text, p()).unwrap_err().to_string();
            assert!(e.starts_with("v.json: ") && e.contains(want), "{text}: {e}");
        }
    }
}
