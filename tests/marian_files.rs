//! Marian from bytes (`Translator::from_files`, the browser's loader) against the folder loader
//! (`Translator::load`) and Hugging Face's generate fixture on the bundled model, and broken or
//! lying files given as bytes: each a clear error naming the file.

use std::path::{Path, PathBuf};

use heedful::models::marian::search::GenerationParams;
use heedful::models::marian::tokenizer::MarianTokenizer;
use heedful::models::marian::{MarianFiles, MarianTokenizerFiles, Translator};
use heedful::weights::WeightFile;
use heedful::Gpu;

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/marian")
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(bundled().join(name)).unwrap()
}

/// What a page would name the fetched folder in errors.
const LABEL: &str = "http://127.0.0.1/models/marian";

fn tokenizer_bytes() -> MarianTokenizerFiles {
    MarianTokenizerFiles {
        source_spm: bytes("source.spm"),
        target_spm: bytes("target.spm"),
        vocab_json: bytes("vocab.json"),
        target_vocab_json: None,
        tokenizer_config_json: Some(bytes("tokenizer_config.json")),
        special_tokens_map_json: None,
    }
}

/// The bundled folder as a page fetches it: every file's bytes, nothing mapped.
fn fetched() -> MarianFiles {
    MarianFiles {
        config_json: bytes("config.json"),
        generation_config_json: Some(bytes("generation_config.json")),
        weights: WeightFile::from_bytes(
            bytes("model.safetensors"),
            Path::new(LABEL).join("model.safetensors"),
        )
        .unwrap(),
        tokenizer: Some(tokenizer_bytes()),
    }
}

fn fixture_texts(n: usize) -> Vec<(String, Vec<u32>)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/fixtures/marian_generate_greedy.json");
    let fix: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let run = fix["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kwargs"] == serde_json::json!({"num_beams": 1}))
        .expect("a plain greedy run in marian_generate_greedy.json");
    run["results"].as_array().unwrap()[..n]
        .iter()
        .map(|r| {
            let i = r["input"].as_u64().unwrap() as usize;
            let text = fix["inputs"][i]["text"].as_str().unwrap().to_string();
            (text, serde_json::from_value(r["ids"][0].clone()).unwrap())
        })
        .collect()
}

#[test]
fn from_files_equals_load_on_the_bundled_folder() {
    let gpu = Gpu::shared().unwrap();
    let loaded = Translator::load(&gpu, &bundled()).unwrap();
    let from_bytes = Translator::from_files(&gpu, Path::new(LABEL), fetched()).unwrap();
    let fix = fixture_texts(8);
    let mut texts: Vec<&str> = fix.iter().map(|(t, _)| t.as_str()).collect();
    texts.push("The quick brown fox jumps over the lazy dog near the river bank.");
    let layer = loaded.config().decoder_layers - 1;
    for beams in [1, 4] {
        let p = GenerationParams {
            num_beams: Some(beams),
            ..Default::default()
        };
        let (oa, ob) = (loaded.options(&p).unwrap(), from_bytes.options(&p).unwrap());
        assert_eq!(format!("{oa:?}"), format!("{ob:?}"), "resolved options");
        let a = loaded.translate_with(&texts, &oa, Some(layer)).unwrap();
        let b = from_bytes.translate_with(&texts, &ob, Some(layer)).unwrap();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x.ids, y.ids, "beam {beams}, input {i} ({:?})", texts[i]);
            assert_eq!(x.text, y.text, "beam {beams}, input {i}");
        }
        let (xa, ya) = (a[0].attention.as_ref(), b[0].attention.as_ref());
        assert_eq!(
            xa.map(|x| x.matrix(None).unwrap()),
            ya.map(|y| y.matrix(None).unwrap()),
            "beam {beams}: cross-attention of input 0"
        );
        assert!(xa.is_some(), "the attention was kept");
        if beams == 1 {
            // And both equal Hugging Face's greedy generate on the fixture's inputs.
            for ((text, want), got) in fix.iter().zip(&b) {
                assert_eq!(&got.ids, want, "{text:?} against Hugging Face");
            }
        }
    }
}

/// Breaks one of the tokenizer's files.
type Breaker = Box<dyn Fn(&mut MarianTokenizerFiles)>;

fn err_of<T>(r: heedful::Result<T>) -> String {
    match r {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let label = Path::new(LABEL);
    // A truncated model.safetensors: refused when its bytes are taken, naming it.
    let st = bytes("model.safetensors");
    let e = err_of(WeightFile::from_bytes(
        st[..st.len() / 2].to_vec(),
        label.join("model.safetensors"),
    ));
    assert!(e.contains(&format!("{LABEL}/model.safetensors")), "{e}");
    // The same through the folder loader.
    let dir = std::env::temp_dir().join(format!("heedful_marian_files_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "generation_config.json"] {
        std::fs::copy(bundled().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("model.safetensors"), &st[..st.len() - 100]).unwrap();
    let gpu = Gpu::shared().unwrap();
    let e = err_of(Translator::load(&gpu, &dir));
    assert!(e.contains("model.safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);

    // Lying configs, before any weight is read.
    for (config, generation, file, want) in [
        (&b"\xff\xfe{}"[..], None, "config.json", "UTF-8"),
        (b"[1, 2]", None, "config.json", ""),
        (b"{", None, "config.json", ""),
        (
            &bytes("config.json")[..],
            Some(&b"{\"num_beams\": \"four\"}"[..]),
            "generation_config.json",
            "",
        ),
        (
            &bytes("config.json")[..],
            Some(&b"{\"eos_token_id\": 99999}"[..]),
            "generation_config.json",
            "99999",
        ),
    ] {
        let mut files = fetched();
        files.config_json = config.to_vec();
        files.generation_config_json = generation.map(<[u8]>::to_vec);
        let e = err_of(Translator::from_files(&gpu, label, files));
        assert!(
            e.contains(&format!("{LABEL}/{file}")) && e.contains(want),
            "{file}: {e}"
        );
    }

    // Lying tokenizer files: through the translator once (after the weights are on the GPU),
    // then the tokenizer alone.
    let mut files = fetched();
    files.tokenizer.as_mut().unwrap().source_spm = b"not a sentencepiece model".to_vec();
    let e = err_of(Translator::from_files(&gpu, label, files));
    assert!(e.contains(&format!("{LABEL}/source.spm")), "{e}");
    let cases: Vec<(&str, Breaker, &str)> = vec![
        (
            "target.spm",
            Box::new(|f| f.target_spm = vec![0xff; 64]),
            "malformed SentencePiece model",
        ),
        (
            "target.spm",
            Box::new(|f| f.target_spm.truncate(f.target_spm.len() / 3)),
            "",
        ),
        (
            "vocab.json",
            Box::new(|f| f.vocab_json = b"[1, 2]".to_vec()),
            "malformed",
        ),
        (
            "vocab.json",
            Box::new(|f| f.vocab_json = b"{\"</s>\": 0, \"<unk>\": 1.5}".to_vec()),
            "ids must be integers",
        ),
        (
            "vocab.json",
            Box::new(|f| f.vocab_json = b"\xc3\x28".to_vec()),
            "UTF-8",
        ),
        (
            "tokenizer_config.json",
            Box::new(|f| f.tokenizer_config_json = Some(b"[]".to_vec())),
            "object",
        ),
        (
            "special_tokens_map.json",
            Box::new(|f| f.special_tokens_map_json = Some(b"{\"eos_token\": 7}".to_vec())),
            "",
        ),
        (
            "target_vocab.json",
            Box::new(|f| f.tokenizer_config_json = Some(b"{\"separate_vocabs\": true}".to_vec())),
            "separate_vocabs",
        ),
        (
            "target_vocab.json",
            Box::new(|f| {
                f.tokenizer_config_json = Some(b"{\"separate_vocabs\": true}".to_vec());
                f.target_vocab_json = Some(b"{}".to_vec());
            }),
            "empty",
        ),
    ];
    for (file, break_it, want) in cases {
        let mut files = tokenizer_bytes();
        break_it(&mut files);
        let e = err_of(MarianTokenizer::from_files(label, files));
        assert!(
            e.contains(&format!("{LABEL}/{file}")) && e.contains(want),
            "{file} ({want}): {e}"
        );
    }
    // The untouched bytes load, and encode as the folder's tokenizer does.
    let tok = MarianTokenizer::from_files(label, tokenizer_bytes()).unwrap();
    let dir_tok = MarianTokenizer::from_dir(&bundled()).unwrap();
    let s = "A longer sentence, with punctuation: 123!";
    assert_eq!(tok.encode(s).unwrap(), dir_tok.encode(s).unwrap());
}
