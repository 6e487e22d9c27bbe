//! heedful's MarianTokenizer against Hugging Face's (transformers + sentencepiece), on the
//! fixtures of weights/make_marian_tokenizer_fixtures.py: an edge-case corpus and held-out lines,
//! through the bundled folder (shared vocabulary) and a separate-vocabulary variant. Every row
//! must match: ids, tokens, sentencepiece pieces and normalized text on encode; text, tokens or the
//! error on decode. Then broken folders give errors that name the file (or the id).

use std::path::{Path, PathBuf};

use heedful::models::marian::spm::{SentencePieceModel, SentencePieceProcessor};
use heedful::models::marian::tokenizer::MarianTokenizer;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Value {
    let p = root().join("weights/fixtures/marian_tokenizer.json");
    let text = std::fs::read_to_string(&p)
        .expect("fixture (run weights/make_marian_tokenizer_fixtures.py)");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// A fresh, empty folder under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("heedful_marian_tok_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_bundled(dir: &Path, files: &[&str]) {
    for f in files {
        std::fs::copy(root().join("weights/marian").join(f), dir.join(f)).unwrap();
    }
}

/// Compares one tokenizer with one fixture section; returns the mismatches (all of them counted,
/// the first ones described).
fn check_section(
    tok: &MarianTokenizer,
    sp: &SentencePieceProcessor,
    sec: &Value,
) -> (usize, usize, Vec<String>) {
    let mut bad = Vec::new();
    let mut n = 0;
    for row in sec["encode"].as_array().unwrap() {
        n += 1;
        let text = row["text"].as_str().unwrap();
        let want_ids = u32s(&row["ids"]);
        let mut want_tokens = strings(&row["tokens"]);
        let want_pieces = strings(&row["spm_pieces"]);
        let want_norm = row["normalized"].as_str().unwrap();
        let ids = tok.encode(text).unwrap();
        if ids != want_ids {
            bad.push(format!("encode {text:?}: ids {ids:?}, HF {want_ids:?}"));
        }
        want_tokens.push("</s>".to_string());
        let tokens = tok.source_pieces(text).unwrap();
        if tokens != want_tokens {
            bad.push(format!(
                "source_pieces {text:?}: {tokens:?}, HF {want_tokens:?}"
            ));
        }
        let pieces = sp.encode(text).unwrap();
        if pieces != want_pieces {
            bad.push(format!(
                "spm encode {text:?}: {pieces:?}, spm {want_pieces:?}"
            ));
        }
        let norm = sp.normalize(text).unwrap();
        if norm != want_norm {
            bad.push(format!(
                "spm normalize {text:?}: {norm:?}, spm {want_norm:?}"
            ));
        }
    }
    for row in sec["decode"].as_array().unwrap() {
        n += 1;
        let ids = u32s(&row["ids"]);
        match (tok.decode(&ids), row.get("text")) {
            (Ok(t), Some(want)) => {
                if t != want.as_str().unwrap() {
                    bad.push(format!("decode {ids:?}: {t:?}, HF {want}"));
                }
                let want_tokens = strings(&row["tokens"]);
                let tokens = tok.target_pieces(&ids);
                if tokens != want_tokens {
                    bad.push(format!(
                        "target_pieces {ids:?}: {tokens:?}, HF {want_tokens:?}"
                    ));
                }
            }
            (Err(e), None) => {
                // transformers raised; heedful's error names the id.
                let last_bad = ids
                    .iter()
                    .any(|i| e.to_string().contains(&format!("token id {i} ")));
                if !last_bad {
                    bad.push(format!("decode {ids:?}: error {e} does not name the id"));
                }
            }
            (Ok(t), None) => bad.push(format!("decode {ids:?}: {t:?}, HF raised {}", row["error"])),
            (Err(e), Some(want)) => bad.push(format!("decode {ids:?}: error {e}, HF {want}")),
        }
    }
    for (id, row) in sec["decode_each_id"].as_array().unwrap().iter().enumerate() {
        n += 1;
        let ids = [id as u32];
        let (want_text, want_token) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
        match tok.decode(&ids) {
            Ok(t) if t == want_text => {}
            other => bad.push(format!("decode [{id}]: {other:?}, HF {want_text:?}")),
        }
        let token = tok.target_pieces(&ids);
        if token != [want_token] {
            bad.push(format!(
                "target_pieces [{id}]: {token:?}, HF {want_token:?}"
            ));
        }
    }
    (n, bad.len(), bad)
}

fn report(name: &str, (n, nbad, bad): (usize, usize, Vec<String>)) {
    eprintln!("{name}: {n} rows, {nbad} mismatches");
    for b in bad.iter().take(25) {
        eprintln!("  {b}");
    }
    assert_eq!(
        nbad, 0,
        "{name}: {nbad} of {n} rows differ from Hugging Face"
    );
}

#[test]
fn shared_vocab_equals_hugging_face() {
    let fx = fixture();
    let dir = root().join("weights/marian");
    let tok = MarianTokenizer::from_dir(&dir).unwrap();
    assert!(!tok.separate_vocabs());
    let sp =
        SentencePieceProcessor::new(SentencePieceModel::open(&dir.join("source.spm")).unwrap())
            .unwrap();
    let sec = &fx["shared"];
    // The corpus has what the issue lists (a guard against a fixture regenerated without them).
    let texts: Vec<&str> = sec["encode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    for must in [
        "",
        "  hello  world  ",
        "\u{ff11}\u{ff12}\u{ff13}\u{ff14}",
        "\u{1f600}",
        ">>cmn_Hans<< hello world",
    ] {
        assert!(texts.contains(&must), "fixture lacks {must:?}");
    }
    let heldout = sec["encode"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"].as_str().unwrap().starts_with("heldout"))
        .count();
    assert!(heldout >= 200, "{heldout} held-out rows");
    // Every id of the vocabulary is decoded alone.
    let vocab: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("vocab.json")).unwrap()).unwrap();
    let n_vocab = vocab.as_object().unwrap().len();
    assert_eq!(sec["decode_each_id"].as_array().unwrap().len(), n_vocab);
    report("shared", check_section(&tok, &sp, sec));
}

#[test]
fn separate_vocabs_equal_hugging_face() {
    let fx = fixture();
    let sec = &fx["separate"];
    let dir = temp_dir("separate");
    copy_bundled(&dir, &["source.spm", "target.spm"]);
    for (name, text) in sec["files"].as_object().unwrap() {
        std::fs::write(dir.join(name), text.as_str().unwrap()).unwrap();
    }
    let tok = MarianTokenizer::from_dir(&dir).unwrap();
    assert!(tok.separate_vocabs());
    let sp =
        SentencePieceProcessor::new(SentencePieceModel::open(&dir.join("source.spm")).unwrap())
            .unwrap();
    let r = check_section(&tok, &sp, sec);
    let _ = std::fs::remove_dir_all(&dir);
    report("separate", r);
}

/// Standard base64 (the fixture's small model), without a dependency.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= u32::from(b) << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// sentencepiece settings Marian's models do not use (no dummy prefix, kept whitespace, no `▁`
/// escaping, whitespace as suffix, byte fallback, user-defined symbols) against the Python
/// library: pieces, normalized text and decoded pieces.
#[test]
fn sentencepiece_variants_equal_the_python_library() {
    let fx = fixture();
    let mut total = 0;
    let mut bad = Vec::new();
    for v in fx["spm_variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let model = if let Some(b64) = v.get("model_base64") {
            SentencePieceModel::from_bytes(&base64_decode(b64.as_str().unwrap()), Path::new(name))
                .unwrap()
        } else {
            let mut m = SentencePieceModel::open(
                &root()
                    .join("weights/marian")
                    .join(v["base"].as_str().unwrap()),
            )
            .unwrap();
            for (k, val) in v["normalizer"].as_object().unwrap() {
                let val = val.as_bool().unwrap();
                let n = &mut m.normalizer_spec;
                match k.as_str() {
                    "add_dummy_prefix" => n.add_dummy_prefix = val,
                    "remove_extra_whitespaces" => n.remove_extra_whitespaces = val,
                    "escape_whitespaces" => n.escape_whitespaces = val,
                    _ => panic!("unknown normalizer field {k}"),
                }
            }
            for (k, val) in v["trainer"].as_object().unwrap() {
                match k.as_str() {
                    "treat_whitespace_as_suffix" => {
                        m.trainer_spec.treat_whitespace_as_suffix = val.as_bool().unwrap()
                    }
                    _ => panic!("unknown trainer field {k}"),
                }
            }
            m
        };
        let sp = SentencePieceProcessor::new(model).unwrap();
        for row in v["encode"].as_array().unwrap() {
            total += 1;
            let text = row["text"].as_str().unwrap();
            let want = strings(&row["pieces"]);
            let pieces = sp.encode(text).unwrap();
            if pieces != want {
                bad.push(format!("{name}: encode {text:?}: {pieces:?}, spm {want:?}"));
            }
            let norm = sp.normalize(text).unwrap();
            if norm != row["normalized"].as_str().unwrap() {
                bad.push(format!(
                    "{name}: normalize {text:?}: {norm:?}, spm {}",
                    row["normalized"]
                ));
            }
            let dec = sp.decode_pieces(&want).unwrap();
            if dec != row["decoded"].as_str().unwrap() {
                bad.push(format!(
                    "{name}: decode {want:?}: {dec:?}, spm {}",
                    row["decoded"]
                ));
            }
        }
        for row in v["decode"].as_array().unwrap() {
            total += 1;
            let pieces = strings(&row["pieces"]);
            let dec = sp.decode_pieces(&pieces).unwrap();
            if dec != row["text"].as_str().unwrap() {
                bad.push(format!(
                    "{name}: decode {pieces:?}: {dec:?}, spm {}",
                    row["text"]
                ));
            }
        }
    }
    report("spm_variants", (total, bad.len(), bad));
}

fn load_err(dir: &Path) -> String {
    match MarianTokenizer::from_dir(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_folders_name_the_file() {
    let dir = temp_dir("broken");
    // Missing source.spm.
    copy_bundled(&dir, &["target.spm", "vocab.json"]);
    let e = load_err(&dir);
    assert!(e.contains("source.spm"), "{e}");
    // A truncated source.spm.
    let spm = std::fs::read(root().join("weights/marian/source.spm")).unwrap();
    std::fs::write(dir.join("source.spm"), &spm[..spm.len() / 2]).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("source.spm") && e.contains("malformed SentencePiece model"),
        "{e}"
    );
    copy_bundled(&dir, &["source.spm"]);
    // A vocab.json that is not JSON, one with a string id, one without <unk>.
    for (text, want) in [
        ("{\"</s>\": 0, ", "malformed"),
        ("{\"</s>\": \"0\", \"<unk>\": 1}", "ids must be integers"),
        ("{\"</s>\": 0, \"<pad>\": 2}", "\"<unk>\""),
    ] {
        std::fs::write(dir.join("vocab.json"), text).unwrap();
        let e = load_err(&dir);
        assert!(e.contains("vocab.json") && e.contains(want), "{text}: {e}");
    }
    // separate_vocabs without target_vocab.json.
    copy_bundled(&dir, &["vocab.json"]);
    std::fs::write(
        dir.join("tokenizer_config.json"),
        "{\"separate_vocabs\": true}",
    )
    .unwrap();
    let e = load_err(&dir);
    assert!(e.contains("target_vocab.json"), "{e}");
    // A tokenizer_config.json that is not an object.
    std::fs::write(dir.join("tokenizer_config.json"), "[]").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("tokenizer_config.json"), "{e}");
    std::fs::remove_file(dir.join("tokenizer_config.json")).unwrap();
    // Without tokenizer_config.json the defaults apply and the folder loads.
    let tok = MarianTokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.eos_id(), 0);
    assert_eq!(tok.unk_id(), 1);
    // An id past the vocabulary and the model: an error naming the id; target_pieces says <unk>.
    let e = tok.decode(&[5, 99_999]).unwrap_err().to_string();
    assert!(e.contains("token id 99999 "), "{e}");
    assert_eq!(tok.target_pieces(&[99_999]), vec!["<unk>".to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Byte flips and truncations of the real source.spm never panic: each gives a model or an error
/// naming the file, and an accepted model encodes and decodes without panicking.
#[test]
fn mutated_spm_files_never_panic() {
    let spm = std::fs::read(root().join("weights/marian/source.spm")).unwrap();
    let path = Path::new("mutated.spm");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut err) = (0, 0);
    for i in 0..600 {
        let mut b = spm.clone();
        if i % 3 == 0 {
            b.truncate((next() as usize) % b.len());
        } else {
            for _ in 0..1 + i % 4 {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
        }
        match SentencePieceModel::from_bytes(&b, path).and_then(SentencePieceProcessor::new) {
            Ok(sp) => {
                ok += 1;
                if let Ok(p) = sp.encode("Hello, wörld ｶﾞ \u{1f600} 123") {
                    let _ = sp.decode_pieces(&p);
                }
            }
            Err(e) => {
                err += 1;
                assert!(e.to_string().starts_with("mutated.spm: "), "{e}");
            }
        }
    }
    eprintln!("mutations: {ok} accepted, {err} rejected");
    assert!(err > 0);
}
