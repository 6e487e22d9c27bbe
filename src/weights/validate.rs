//! The header checks of a safetensors file, run on the raw bytes before anything is read: each fault
//! gets its own [`WeightsErrorKind`](super::WeightsErrorKind) and a message naming the file and the
//! tensor, with a hint.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use serde::de::{Deserializer as _, MapAccess, Visitor};

use super::file::{
    err, Entry, FileDType, FORMAT_VERSION, MAX_HEADER_BYTES, META_CONFIG, META_FORMAT,
};
use super::WeightsErrorKind as K;
use crate::error::Result;

/// Names well-known formats that are not safetensors, from their first bytes.
fn sniff(b: &[u8]) -> Option<(&'static str, &'static str)> {
    const EXPORT: &str =
        "load it in Python and save it with weights/export.py (`python weights/export.py --help`)";
    if b.starts_with(b"PK\x03\x04") {
        Some((
            "a zip archive (a PyTorch .bin/.pt checkpoint or a NumPy .npz)",
            EXPORT,
        ))
    } else if b.starts_with(b"GGUF") {
        Some((
            "a GGUF file (llama.cpp)",
            "heedful reads safetensors; convert the model to safetensors first",
        ))
    } else if b.starts_with(b"\x93NUMPY") {
        Some(("a NumPy .npy array", EXPORT))
    } else if b.len() >= 2 && b[0] == 0x80 && (2..=5).contains(&b[1]) {
        Some(("a Python pickle (torch.save)", EXPORT))
    } else if b.starts_with(b"\x89HDF") {
        Some((
            "an HDF5 file (Keras .h5)",
            "heedful reads safetensors; convert the model to safetensors first",
        ))
    } else if b.starts_with(b"version https://git-lfs") {
        Some((
            "a Git LFS pointer, not the file itself",
            "fetch the real file with `git lfs pull`",
        ))
    } else if b.first() == Some(&b'{') {
        Some((
            "JSON text (a config.json or a sharded checkpoint's index?)",
            "pass the .safetensors weight file; for a sharded checkpoint open each shard",
        ))
    } else {
        None
    }
}

pub(crate) type Validated = (usize, Vec<Entry>, BTreeMap<String, String>);

/// All structural checks of a safetensors file; see the module docs for the layout.
pub(crate) fn validate(path: &Path, b: &[u8]) -> Result<Validated> {
    let flen = b.len();
    const REDO: &str = "the file is corrupt or was cut short (interrupted download or write?); \
                        re-download or re-export it";
    if flen < 8 {
        let detail = if flen == 0 {
            "the file is empty".to_string()
        } else {
            format!("the file is only {flen} bytes; a safetensors file starts with an 8-byte header length")
        };
        return Err(err(path, None, K::Truncated, detail, REDO));
    }
    let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let fits = n.checked_add(8).is_some_and(|s| s <= flen as u64);
    if !fits || n > MAX_HEADER_BYTES || flen == 8 || b[8] != b'{' {
        if let Some((what, hint)) = sniff(b) {
            return Err(err(
                path,
                None,
                K::NotSafetensors,
                format!("not a safetensors file: this is {what}"),
                hint,
            ));
        }
    }
    if flen == 8 {
        return Err(err(
            path,
            None,
            K::Truncated,
            format!("the file ends after the header length; the {n}-byte header is missing"),
            REDO,
        ));
    }
    if b[8] != b'{' {
        return Err(err(
            path,
            None,
            K::NotSafetensors,
            format!(
                "not a safetensors file: byte 8 is 0x{:02x} where the JSON header should start with '{{'",
                b[8]
            ),
            "heedful reads safetensors files; export PyTorch models with weights/export.py",
        ));
    }
    if !fits {
        return Err(err(
            path,
            None,
            K::HeaderBeyondFile,
            format!(
                "the header length ({n} bytes) reaches past the end of the file ({flen} bytes)"
            ),
            "the file was cut short, or its first 8 bytes are corrupt; re-download or re-export it",
        ));
    }
    if n > MAX_HEADER_BYTES {
        return Err(err(
            path,
            None,
            K::HeaderTooLarge,
            format!("the header length ({n} bytes) is over the {MAX_HEADER_BYTES}-byte limit"),
            "the first 8 bytes are probably corrupt; re-download or re-export the file",
        ));
    }
    let n = n as usize;
    let header = &b[8..8 + n];
    let text = std::str::from_utf8(header).map_err(|e| {
        err(
            path,
            None,
            K::BadJson,
            format!(
                "the header is not UTF-8 text (bad byte at header offset {})",
                e.valid_up_to()
            ),
            REDO,
        )
    })?;
    let pairs = parse_pairs(text).map_err(|e| {
        let kind = if e.is_data() {
            K::BadHeader
        } else {
            K::BadJson
        };
        err(
            path,
            None,
            kind,
            format!("the header is not a valid safetensors JSON object: {e}"),
            REDO,
        )
    })?;

    let mut metadata = None;
    let mut entries: Vec<Entry> = Vec::with_capacity(pairs.len());
    let mut seen = HashMap::new();
    for (name, value) in pairs {
        if name == "__metadata__" {
            if metadata.is_some() {
                return Err(err(
                    path,
                    None,
                    K::BadHeader,
                    "the header has two __metadata__ entries",
                    REDO,
                ));
            }
            metadata = Some(parse_metadata(path, value)?);
            continue;
        }
        if seen.insert(name.clone(), ()).is_some() {
            return Err(err(
                path,
                Some(&name),
                K::BadHeader,
                "appears twice in the header",
                REDO,
            ));
        }
        entries.push(parse_entry(path, name, value)?);
    }
    check_layout(path, &mut entries, flen - 8 - n)?;
    Ok((n, entries, metadata.unwrap_or_default()))
}

/// The header's top-level object as (key, value) pairs in file order, keeping duplicates.
fn parse_pairs(
    text: &str,
) -> std::result::Result<Vec<(String, serde_json::Value)>, serde_json::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, serde_json::Value)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object of tensors")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut v = Vec::new();
            while let Some(pair) = map.next_entry::<String, serde_json::Value>()? {
                v.push(pair);
            }
            Ok(v)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let pairs = (&mut de).deserialize_map(Pairs)?;
    de.end()?;
    Ok(pairs)
}

fn parse_metadata(path: &Path, value: serde_json::Value) -> Result<BTreeMap<String, String>> {
    let bad = |detail: String| {
        err(
            path,
            None,
            K::BadMetadata,
            detail,
            "__metadata__ must map strings to strings; re-export the file",
        )
    };
    let serde_json::Value::Object(map) = value else {
        return Err(bad(format!(
            "__metadata__ is {}, not an object",
            json_kind(&value)
        )));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            other => Err(bad(format!(
                "__metadata__ key {k:?} holds {}, not a string",
                json_kind(&other)
            ))),
        })
        .collect()
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn parse_entry(path: &Path, name: String, value: serde_json::Value) -> Result<Entry> {
    const HINT: &str = "each tensor needs {\"dtype\": \"F32\", \"shape\": [..], \"data_offsets\": \
                        [begin, end]}; the file is corrupt or its writer is buggy, re-export it";
    let bad = |detail: String| err(path, Some(&name), K::BadHeader, detail, HINT);
    let serde_json::Value::Object(obj) = &value else {
        return Err(bad(format!(
            "header entry is {}, not an object",
            json_kind(&value)
        )));
    };
    let field = |key: &str| {
        obj.get(key)
            .ok_or_else(|| bad(format!("header entry has no {key:?} field")))
    };
    let dtype_str = field("dtype")?
        .as_str()
        .ok_or_else(|| bad("\"dtype\" is not a string".into()))?;
    let dtype = FileDType::parse(dtype_str).ok_or_else(|| {
        err(
            path,
            Some(&name),
            K::UnsupportedDtype,
            format!("has dtype {dtype_str:?}, which heedful does not read"),
            format!(
                "heedful reads {}; convert the tensor to F16 or F32 when exporting",
                FileDType::all_names()
            ),
        )
    })?;
    let uints = |key: &str| -> Result<Vec<usize>> {
        let arr = field(key)?
            .as_array()
            .ok_or_else(|| bad(format!("{key:?} is not an array")))?;
        arr.iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|u| usize::try_from(u).ok())
                    .ok_or_else(|| bad(format!("{key:?} holds {v}, not a non-negative integer")))
            })
            .collect()
    };
    let shape = uints("shape")?;
    let offsets = uints("data_offsets")?;
    let [begin, end] = offsets[..] else {
        return Err(bad(format!(
            "\"data_offsets\" has {} numbers, not 2 (begin, end)",
            offsets.len()
        )));
    };
    if begin > end {
        return Err(err(
            path,
            Some(&name),
            K::OffsetsOutOfRange,
            format!("data_offsets [{begin}, {end}] end before they begin"),
            "the header is corrupt; re-export or re-download the file",
        ));
    }
    let need = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
    if need != Some(end - begin) {
        let need = need.map_or_else(|| "more than 2^64".to_string(), |v| v.to_string());
        return Err(err(
            path,
            Some(&name),
            K::ByteLength,
            format!(
                "shape {shape:?} of {dtype} needs {need} bytes, but data_offsets [{begin}, {end}] hold {}",
                end - begin
            ),
            "the header is corrupt or its writer is buggy; re-export the file",
        ));
    }
    Ok(Entry {
        name,
        dtype,
        shape,
        begin,
        end,
    })
}

/// Checks that the tensors' data ranges tile the data section exactly; sorts `entries` by offset.
fn check_layout(path: &Path, entries: &mut [Entry], data_len: usize) -> Result<()> {
    entries.sort_by_key(|e| (e.begin, e.end));
    let tiled = entries
        .iter()
        .try_fold(0usize, |pos, e| (e.begin == pos).then_some(e.end))
        .is_some();
    let max_end = entries.iter().map(|e| e.end).max().unwrap_or(0);
    if max_end > data_len {
        if tiled {
            let last = entries.iter().rev().find(|e| e.end == max_end);
            return Err(err(
                path,
                last.map(|e| e.name.as_str()),
                K::Truncated,
                format!(
                    "the file is truncated: the data section has {data_len} bytes but the tensors \
                     need {max_end} ({} bytes missing)",
                    max_end - data_len
                ),
                "the download or write was interrupted; re-download or re-export the file",
            ));
        }
        let e = entries.iter().find(|e| e.end > data_len);
        return Err(err(
            path,
            e.map(|e| e.name.as_str()),
            K::OffsetsOutOfRange,
            format!(
                "data_offsets [{}, {}] reach past the data section ({data_len} bytes)",
                e.map_or(0, |e| e.begin),
                e.map_or(0, |e| e.end)
            ),
            "the header is corrupt; re-export or re-download the file",
        ));
    }
    let mut pos = 0usize;
    let mut prev: Option<&Entry> = None;
    for e in entries.iter() {
        if e.begin < pos {
            let p = prev.map_or("?", |p| p.name.as_str());
            return Err(err(
                path,
                Some(&e.name),
                K::OffsetsOverlap,
                format!(
                    "data_offsets [{}, {}] overlap tensor {p:?}, which ends at {pos}",
                    e.begin, e.end
                ),
                "the header is corrupt or its writer is buggy; re-export the file",
            ));
        }
        if e.begin > pos {
            return Err(err(
                path,
                Some(&e.name),
                K::OffsetsGap,
                format!(
                    "data bytes {pos}..{} belong to no tensor (a hole before this tensor's data)",
                    e.begin
                ),
                "safetensors data must be packed without holes; re-export the file",
            ));
        }
        pos = e.end;
        prev = Some(e);
    }
    if pos < data_len {
        return Err(err(
            path,
            None,
            K::OffsetsGap,
            format!(
                "{} bytes after the last tensor's data belong to no tensor",
                data_len - pos
            ),
            "the file has trailing bytes (two files concatenated?); re-export or re-download it",
        ));
    }
    Ok(())
}

/// Checks the heedful keys of the metadata: the format version and the config JSON.
pub(crate) fn check_metadata(
    path: &Path,
    meta: &BTreeMap<String, String>,
) -> Result<Option<serde_json::Value>> {
    if let Some(v) = meta.get(META_FORMAT) {
        let version: u32 = v.trim().parse().map_err(|_| {
            err(
                path,
                None,
                K::BadMetadata,
                format!("{META_FORMAT} is {v:?}, not a version number"),
                "re-export the model with weights/export.py",
            )
        })?;
        if version > FORMAT_VERSION {
            return Err(err(
                path,
                None,
                K::FormatTooNew,
                format!(
                    "written in heedful format {version}, but this heedful reads formats up to {FORMAT_VERSION}"
                ),
                "re-export the model with this heedful's weights/export.py, or upgrade heedful",
            ));
        }
    }
    meta.get(META_CONFIG)
        .map(|c| {
            serde_json::from_str(c).map_err(|e| {
                err(
                    path,
                    None,
                    K::BadMetadata,
                    format!("{META_CONFIG} is not valid JSON: {e}"),
                    "re-export the model with weights/export.py",
                )
            })
        })
        .transpose()
}
