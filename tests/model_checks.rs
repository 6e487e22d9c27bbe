//! Model loads refuse what would give silently wrong answers, naming the field, file and tensor:
//! config sizes that overflow or ask for 10^9 layers, configs that use fewer layers than the file
//! holds, tensors whose shape differs from the config's (same element count), missing biases,
//! non-float weights, token ids past the embedding table, truncation switched off, inputs longer
//! than the tutorial attention covers, and weights outside f16's range (with `keep_f32` as the
//! way out). Seq2seq cases rewrite the committed g2p fixtures; BERT cases build a tiny model
//! folder (config.json, a word-level tokenizer.json, random F32 weights).

mod common;

use std::path::{Path, PathBuf};

use heedful::graph::HostInput;
use heedful::models::bert::{BertConfig, BertEncoder, LoadOptions};
use heedful::models::seq2seq::{DecodeOptions, Seq2Seq};
use heedful::weights::{WeightFile, WeightsErrorKind as K};
use heedful::Error;
use serde_json::Value;

/// A tensor to write: name, dtype, shape, little-endian bytes.
type Raw = (String, String, Vec<usize>, Vec<u8>);

fn write_safetensors(path: &Path, tensors: &[Raw], meta: &serde_json::Map<String, Value>) {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let b = data.len();
        data.extend_from_slice(bytes);
        entries.push(format!(
            "{name:?}:{{\"dtype\":{dtype:?},\"shape\":{shape:?},\"data_offsets\":[{b},{}]}}",
            data.len()
        ));
    }
    if !meta.is_empty() {
        entries.insert(
            0,
            format!("\"__metadata__\":{}", Value::Object(meta.clone())),
        );
    }
    let mut h = format!("{{{}}}", entries.join(",")).into_bytes();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("heedful-mc-{}-{name}", std::process::id()))
}

/// Rewrites fixture `weights/{fixture}` into a temp file after `edit` changes its config and
/// tensors.
fn rewrite(fixture: &str, out: &str, edit: impl FnOnce(&mut Value, &mut Vec<Raw>)) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("weights")
        .join(fixture);
    let f = WeightFile::open(&src).unwrap();
    let mut tensors: Vec<Raw> = f
        .tensors()
        .map(|t| {
            (
                t.name.to_string(),
                t.dtype.name().to_string(),
                t.shape.to_vec(),
                t.data.to_vec(),
            )
        })
        .collect();
    let mut meta: serde_json::Map<String, Value> = f
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut cfg: Value = serde_json::from_str(meta["heedful.config"].as_str().unwrap()).unwrap();
    edit(&mut cfg, &mut tensors);
    meta.insert("heedful.config".into(), Value::String(cfg.to_string()));
    let p = temp(out);
    write_safetensors(&p, &tensors, &meta);
    p
}

/// Loads `path` as a seq2seq model, expecting an error whose message contains every needle.
#[track_caller]
fn seq2seq_refuses(path: &Path, needles: &[&str]) -> Error {
    let gpu = common::gpu();
    let e = Seq2Seq::load(&gpu, path).expect_err("the load must be refused");
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "{n:?} not in: {msg}");
    }
    let _ = std::fs::remove_file(path);
    e
}

#[test]
fn seq2seq_config_sizes_are_checked_before_allocating() {
    let p = rewrite("g2p_lstm_general.safetensors", "hidden.st", |c, _| {
        c["encoder"]["hidden"] = Value::from(1u64 << 62);
    });
    seq2seq_refuses(&p, &["encoder.hidden", "4611686018427387904"]);
    let p = rewrite("g2p_lstm_general.safetensors", "layers.st", |c, _| {
        c["encoder"]["layers"] = Value::from(1_000_000_000u64);
    });
    seq2seq_refuses(&p, &["encoder.layers = 1000000000"]);
    let p = rewrite("g2p_lstm_general.safetensors", "dlayers.st", |c, _| {
        c["decoder"]["layers"] = Value::from(3u64);
    });
    let e = seq2seq_refuses(&p, &["decoder.layers = 3", "decoder.rnn.weight_ih_l2"]);
    assert_eq!(e.weights_kind(), Some(K::MissingTensor), "{e}");
}

#[test]
fn seq2seq_file_must_match_the_config_exactly() {
    // Fewer layers than the file holds: the second layers would be ignored.
    let p = rewrite("g2p_lstm_general.safetensors", "fewer.st", |c, _| {
        c["encoder"]["layers"] = Value::from(1u64);
        c["decoder"]["layers"] = Value::from(1u64);
    });
    let e = seq2seq_refuses(&p, &["encoder.rnn.weight_ih_l1", "encoder.layers = 1"]);
    assert_eq!(e.weights_kind(), Some(K::ShapeMismatch), "{e}");
    // A transposed weight: same element count, wrong shape.
    let p = rewrite("g2p_gru_tutorial.safetensors", "transposed.st", |_, ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.0 == "encoder.rnn.weight_ih_l0")
            .unwrap();
        t.2.reverse();
    });
    let e = seq2seq_refuses(&p, &["encoder.rnn.weight_ih_l0", "[64, 480]", "[480, 64]"]);
    assert_eq!(e.weights_kind(), Some(K::ShapeMismatch), "{e}");
    // A missing bias the exporter's modules have.
    let p = rewrite("g2p_gru_tutorial.safetensors", "nobias.st", |_, ts| {
        ts.retain(|t| t.0 != "decoder.rnn.bias_hh_l0");
    });
    let e = seq2seq_refuses(&p, &["decoder.rnn.bias_hh_l0"]);
    assert_eq!(e.weights_kind(), Some(K::MissingTensor), "{e}");
    // A non-float weight names the file and the tensor.
    let p = rewrite("g2p_gru_tutorial.safetensors", "intw.st", |_, ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.0 == "decoder.attn.weight")
            .unwrap();
        t.1 = "I32".into();
        t.3 = vec![0; t.2.iter().product::<usize>() * 4];
    });
    let e = seq2seq_refuses(&p, &["decoder.attn.weight", "I32", "intw.st"]);
    assert_eq!(e.weights_kind(), Some(K::UnsupportedDtype), "{e}");
}

/// Recurrent weights are packed on the CPU (not through the upload conversion), and are checked
/// the same way: a NaN/inf names the tensor and index.
#[test]
fn seq2seq_non_finite_recurrent_weights_are_refused() {
    let p = rewrite("g2p_gru_tutorial.safetensors", "inf.st", |_, ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.0 == "decoder.rnn.weight_hh_l0")
            .unwrap();
        t.3[10..12].copy_from_slice(&[0x00, 0x7c]); // f16 +inf at flat index 5
    });
    let e = seq2seq_refuses(&p, &["decoder.rnn.weight_hh_l0", "index 5"]);
    assert_eq!(e.weights_kind(), Some(K::NonFinite), "{e}");
}

#[test]
fn tutorial_attention_refuses_inputs_longer_than_max_length() {
    let gpu = common::gpu();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/g2p_gru_tutorial.safetensors");
    let m = Seq2Seq::load(&gpu, &path).unwrap();
    let ml = m.config().decoder.max_length.unwrap();
    let fits = vec![5u32; ml];
    m.decode(&gpu, &[fits], &DecodeOptions::default()).unwrap();
    let long = vec![5u32; ml + 1];
    let e = m
        .decode(&gpu, &[long], &DecodeOptions::default())
        .expect_err("a longer input would be cut silently");
    let msg = e.to_string();
    assert!(
        msg.contains("max_length") && msg.contains(&format!("{}", ml + 1)),
        "{msg}"
    );
}

// ---- BERT --------------------------------------------------------------------------------------

const E: usize = 4;
const FF: usize = 8;
const V: usize = 6;

fn bert_config(layers: usize) -> Value {
    serde_json::json!({
        "vocab_size": V, "hidden_size": E, "num_hidden_layers": layers,
        "num_attention_heads": 2, "intermediate_size": FF, "max_position_embeddings": 16,
        "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12
    })
}

/// The tensors of a `layers`-layer tiny BERT, F32 with small random values.
fn bert_tensors(layers: usize) -> Vec<Raw> {
    let mut rng = common::Rng::new(7);
    let mut t = |name: String, shape: Vec<usize>| -> Raw {
        let n: usize = shape.iter().product();
        let v = rng.vec(n, -0.5, 0.5);
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        (name, "F32".into(), shape, bytes)
    };
    let mut out = vec![
        t("embeddings.word_embeddings.weight".into(), vec![V, E]),
        t("embeddings.position_embeddings.weight".into(), vec![16, E]),
        t("embeddings.token_type_embeddings.weight".into(), vec![2, E]),
        t("embeddings.LayerNorm.weight".into(), vec![E]),
        t("embeddings.LayerNorm.bias".into(), vec![E]),
    ];
    for l in 0..layers {
        let at = format!("encoder.layer.{l}.attention");
        for n in ["query", "key", "value"] {
            out.push(t(format!("{at}.self.{n}.weight"), vec![E, E]));
            out.push(t(format!("{at}.self.{n}.bias"), vec![E]));
        }
        out.push(t(format!("{at}.output.dense.weight"), vec![E, E]));
        out.push(t(format!("{at}.output.dense.bias"), vec![E]));
        out.push(t(format!("{at}.output.LayerNorm.weight"), vec![E]));
        out.push(t(format!("{at}.output.LayerNorm.bias"), vec![E]));
        let lay = format!("encoder.layer.{l}");
        out.push(t(format!("{lay}.intermediate.dense.weight"), vec![FF, E]));
        out.push(t(format!("{lay}.intermediate.dense.bias"), vec![FF]));
        out.push(t(format!("{lay}.output.dense.weight"), vec![E, FF]));
        out.push(t(format!("{lay}.output.dense.bias"), vec![E]));
        out.push(t(format!("{lay}.output.LayerNorm.weight"), vec![E]));
        out.push(t(format!("{lay}.output.LayerNorm.bias"), vec![E]));
    }
    out
}

/// A word-level tokenizer: ids 0..6 are in the table; "big" maps to 9, past it.
const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
"model":{"type":"WordLevel","vocab":{"[UNK]":0,"a":1,"b":2,"c":3,"d":4,"e":5,"big":9},
"unk_token":"[UNK]"}}"#;

/// Writes a tiny BERT folder; returns its path.
fn bert_dir(name: &str, config: &Value, tensors: &[Raw], st_config: Option<&str>) -> PathBuf {
    let dir = temp(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER).unwrap();
    if let Some(s) = st_config {
        std::fs::write(dir.join("sentence_bert_config.json"), s).unwrap();
    }
    write_safetensors(&dir.join("model.safetensors"), tensors, &Default::default());
    dir
}

#[track_caller]
fn bert_refuses(dir: &Path, opts: &LoadOptions, needles: &[&str]) -> Error {
    let gpu = common::gpu();
    let Err(e) = BertEncoder::load(&gpu, dir, opts) else {
        panic!("the load of {} must be refused", dir.display());
    };
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "{n:?} not in: {msg}");
    }
    e
}

#[test]
fn bert_token_ids_past_the_table_are_errors() {
    let gpu = common::gpu();
    let dir = bert_dir("bert-ids", &bert_config(2), &bert_tensors(2), None);
    let m = BertEncoder::load(&gpu, &dir, &LoadOptions::default()).unwrap();
    let s = m.session();
    let ok = m.embed(&s, &["a b c", "e"]).unwrap();
    assert_eq!(ok.len(), 2);
    let norm: f32 = ok[0].iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-3, "normalized: {norm}");
    let e = m
        .embed(&s, &["a big b"])
        .expect_err("id 9 is past the 6-row table");
    let msg = e.to_string();
    assert!(
        msg.contains("= 9") && msg.contains("word_embeddings") && msg.contains("[0, 1]"),
        "{msg}"
    );
    // Ids given to the graph directly are checked too, before the upload.
    let mut inputs = m.encode_batch(&["a b"]).unwrap();
    inputs[0].1 = HostInput::i32(vec![1, 6], &[1, 2]);
    let e = s.run(&inputs).expect_err("id 6 is past the table");
    assert!(e.to_string().contains("id 6 at position 1"), "{e}");
    inputs[0].1 = HostInput::i32(vec![-1, 2], &[1, 2]);
    let e = s.run(&inputs).expect_err("a negative id");
    assert!(e.to_string().contains("id -1 at position 0"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bert_config_must_match_the_file() {
    // Fewer layers than the file holds.
    let dir = bert_dir("bert-fewer", &bert_config(1), &bert_tensors(2), None);
    let e = bert_refuses(
        &dir,
        &LoadOptions::default(),
        &["encoder.layer.1.", "num_hidden_layers = 1"],
    );
    assert_eq!(e.weights_kind(), Some(K::ShapeMismatch), "{e}");
    // 10^9 layers: refused at once, naming the field.
    let dir = bert_dir(
        "bert-many",
        &bert_config(1_000_000_000),
        &bert_tensors(2),
        None,
    );
    bert_refuses(
        &dir,
        &LoadOptions::default(),
        &["num_hidden_layers = 1000000000"],
    );
    // hidden 2^62: refused by the config check, naming the field.
    let mut c = bert_config(2);
    c["hidden_size"] = Value::from(1u64 << 62);
    let dir = bert_dir("bert-hidden", &c, &bert_tensors(2), None);
    bert_refuses(
        &dir,
        &LoadOptions::default(),
        &["hidden_size", "config.json"],
    );
    // A missing bias.
    let mut ts = bert_tensors(2);
    ts.retain(|t| t.0 != "encoder.layer.1.output.dense.bias");
    let dir = bert_dir("bert-nobias", &bert_config(2), &ts, None);
    let e = bert_refuses(
        &dir,
        &LoadOptions::default(),
        &["encoder.layer.1.output.dense.bias"],
    );
    assert_eq!(e.weights_kind(), Some(K::MissingTensor), "{e}");
    // A non-float word embedding names the file and tensor (not only the kernel).
    let mut ts = bert_tensors(2);
    ts[0].1 = "I32".into();
    let dir = bert_dir("bert-int", &bert_config(2), &ts, None);
    let e = bert_refuses(
        &dir,
        &LoadOptions::default(),
        &[
            "model.safetensors",
            "embeddings.word_embeddings.weight",
            "I32",
        ],
    );
    assert_eq!(e.weights_kind(), Some(K::UnsupportedDtype), "{e}");
    // max_seq_length 0 would switch truncation off.
    let dir = bert_dir(
        "bert-trunc",
        &bert_config(2),
        &bert_tensors(2),
        Some(r#"{"max_seq_length": 0}"#),
    );
    bert_refuses(&dir, &LoadOptions::default(), &["max_seq_length"]);
    for d in [
        "bert-fewer",
        "bert-many",
        "bert-hidden",
        "bert-nobias",
        "bert-int",
        "bert-trunc",
    ] {
        let _ = std::fs::remove_dir_all(temp(d));
    }
}

#[test]
fn bert_weights_outside_f16_are_refused_or_kept_in_f32() {
    let gpu = common::gpu();
    let mut ts = bert_tensors(2);
    let name = "encoder.layer.0.attention.self.key.weight";
    let t = ts.iter_mut().find(|t| t.0 == name).unwrap();
    t.3[12..16].copy_from_slice(&1.0e5f32.to_le_bytes()); // flat index 3
    let dir = bert_dir("bert-range", &bert_config(2), &ts, None);
    let e = bert_refuses(&dir, &LoadOptions::default(), &[name, "index 3"]);
    assert_eq!(e.weights_kind(), Some(K::OutOfRange), "{e}");
    // Kept in f32 (with its query and value, stacked with it), it loads and matches an all-f32
    // load closely (the other tensors are still f16).
    let keep = LoadOptions {
        keep_f32: vec![name.to_string()],
        ..Default::default()
    };
    let m = BertEncoder::load(&gpu, &dir, &keep).unwrap();
    let all32 = LoadOptions {
        hold: heedful::weights::Hold::F32,
        ..Default::default()
    };
    let r = BertEncoder::load(&gpu, &dir, &all32).unwrap();
    let a = m.embed(&m.session(), &["a b c d"]).unwrap();
    let b = r.embed(&r.session(), &["a b c d"]).unwrap();
    assert!(a[0].iter().all(|x| x.is_finite()), "{a:?}");
    common::assert_close("keep_f32 vs f32", &a[0], &b[0], 1e-2, 1e-2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bert_config_parser_names_fields() {
    let base = bert_config(2);
    let parse = |edit: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        edit(&mut c);
        BertConfig::from_json_str(&c.to_string())
    };
    parse(&|_| {}).unwrap();
    for (field, v, needle) in [
        ("hidden_size", Value::from(1u64 << 62), "hidden_size"),
        ("vocab_size", Value::from(0), "vocab_size"),
        (
            "intermediate_size",
            Value::from(1u64 << 40),
            "intermediate_size",
        ),
        ("num_attention_heads", Value::from(3), "num_attention_heads"),
        ("layer_norm_eps", Value::from(-1.0), "layer_norm_eps"),
        ("hidden_act", Value::from("swish"), "swish"),
    ] {
        let e = parse(&|c| c[field] = v.clone()).expect_err(field);
        assert!(e.to_string().contains(needle), "{field}: {e}");
    }
    assert!(BertConfig::from_json_str("{").is_err());
    assert!(BertConfig::from_json_str("[]").is_err());
}
