//! The `heedful` binary as a user runs it: info, conformance exit status, embed output order,
//! g2p output and notes.

mod common;
use std::process::Command;

fn heedful() -> Command {
    Command::new(env!("CARGO_BIN_EXE_heedful"))
}

#[test]
fn info_lists_adapters_and_the_chosen_one() {
    let out = heedful().arg("info").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("adapters wgpu sees")
            && text.contains("chosen:")
            && text.contains("max_storage_buffer_binding_size"),
        "{text}"
    );
    let out = heedful().args(["info", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["adapters"].as_array().unwrap().is_empty());
    assert!(v["chosen"]["limits"]["max_buffer_size"].as_u64().unwrap() > 0);
}

#[test]
fn bad_backend_is_a_clear_error() {
    let out = heedful()
        .arg("info")
        .env("HEEDFUL_BACKEND", "nosuch")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown backend") && err.contains("nosuch"),
        "{err}"
    );
}

#[test]
fn no_adapter_is_one_clear_error_with_the_lavapipe_hint() {
    // No DX12 on Linux: wgpu sees no adapter at all for this backend.
    if cfg!(windows) {
        return;
    }
    let out = heedful()
        .arg("info")
        .env("HEEDFUL_BACKEND", "dx12")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no GPU adapter found") && err.contains("mesa-vulkan-drivers"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn conformance_exits_nonzero_on_failure_and_zero_on_pass() {
    let tmp = std::env::temp_dir().join(format!("heedful-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        tmp.join("bad.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage",
    )
    .unwrap();
    let out = heedful()
        .args(["conformance", tmp.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 passed, 1 failed, 0 skipped"), "{text}");
    std::fs::remove_dir_all(&tmp).ok();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance");
    if dir.is_dir() {
        let out = heedful()
            .args([
                "conformance",
                dir.to_str().unwrap(),
                "--filter",
                "softmax",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["passed"].as_u64().unwrap() >= 1 && v["failed"].as_u64().unwrap() == 0);
    }
}

#[test]
fn embed_prints_one_embedding_per_input_in_order() {
    let model = common::minilm_dir();
    let out = heedful()
        .args([
            "embed",
            "--json",
            "--batch",
            "2",
            "--model",
            model.to_str().unwrap(),
            "The cat sat on the mat.",
            "A",
            "Hello world.",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let emb = v["embeddings"].as_array().unwrap();
    assert_eq!(emb.len(), 3);
    // Compare with the committed sentence-transformers references, by text.
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/weights/fixtures/minilm_reference.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for (text, got) in ["The cat sat on the mat.", "A", "Hello world."]
        .iter()
        .zip(emb)
    {
        let r = refs["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["text"] == *text)
            .unwrap();
        let want: Vec<f64> = r["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let got: Vec<f64> = got
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let dot: f64 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
        assert!(dot > 0.9999, "{text}: cosine {dot}");
    }
    let out = heedful()
        .args(["embed", "--model", model.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no input"));
}

#[test]
fn g2p_prints_the_models_phonemes_and_notes_what_it_could_not_read() {
    // The library's greedy decode (checked against PyTorch in tests/seq2seq.rs) is the reference.
    let gpu = common::gpu();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = heedful::models::seq2seq::Seq2Seq::load(
        &gpu,
        &root.join("weights/g2p_rnn_dot.safetensors"),
    )
    .unwrap();
    let words = ["attention", "it's", "Hello"];
    let ids: Vec<Vec<u32>> = words
        .iter()
        .map(|w| model.encode_text(w).unwrap())
        .collect();
    let want = model.decode(&gpu, &ids, &Default::default()).unwrap();
    let out = heedful().arg("g2p").args(words).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), words.len(), "{stdout}");
    for ((line, w), d) in lines.iter().zip(words).zip(&want) {
        assert_eq!(*line, format!("{w}\t{}", model.target_text(&d.tokens)));
    }
    assert!(
        stderr.contains("\"it's\": characters \"'\" are not in the model's input vocabulary"),
        "{stderr}"
    );
    // An empty word is an error naming its position, and nothing is printed.
    let out = heedful().args(["g2p", "cat", ""]).output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("word 2 of 2 is empty"), "{stderr}");
}
