//! `heedful translate` as a user runs it: the bundled model's `--json` output equals Hugging
//! Face's greedy `generate` rows (weights/fixtures/marian_generate_greedy.json), `--ids` works on a
//! folder without tokenizer files, `--attention` writes a PNG, `--input -` reads standard input in
//! order, and bad input is a clear error with a failing exit status.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn heedful() -> Command {
    Command::new(env!("CARGO_BIN_EXE_heedful"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("marian_cli_{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The greedy run's (text, source ids, HF ids) of the first `n` inputs.
fn greedy_cases(n: usize) -> Vec<(String, Vec<u32>, Vec<u32>)> {
    let fix: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("weights/fixtures/marian_generate_greedy.json"))
            .unwrap(),
    )
    .unwrap();
    let run = fix["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "greedy")
        .unwrap();
    run["results"]
        .as_array()
        .unwrap()
        .iter()
        .take(n)
        .map(|r| {
            let x = &fix["inputs"][r["input"].as_u64().unwrap() as usize];
            (
                x["text"].as_str().unwrap().to_string(),
                serde_json::from_value(x["source_ids"].clone()).unwrap(),
                serde_json::from_value(r["ids"][0].clone()).unwrap(),
            )
        })
        .collect()
}

fn json_ids(stdout: &str) -> Vec<Vec<u32>> {
    let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
    v["translations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| serde_json::from_value(t["ids"].clone()).unwrap())
        .collect()
}

#[test]
fn json_output_equals_hugging_face_greedy() {
    let cases = greedy_cases(6);
    let mut cmd = heedful();
    cmd.args(["translate", "--beam", "1", "--json"]);
    cmd.args(cases.iter().map(|c| c.0.as_str()));
    let got = json_ids(&run_ok(&mut cmd));
    let want: Vec<Vec<u32>> = cases.iter().map(|c| c.2.clone()).collect();
    assert_eq!(got, want);
}

#[test]
fn ids_mode_needs_no_tokenizer_files() {
    let dir = tmp("ids");
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(root().join("weights/marian").join(f), dir.join(f)).unwrap();
    }
    let cases = greedy_cases(3);
    let mut cmd = heedful();
    cmd.args(["translate", "--model"]).arg(&dir);
    cmd.args(["--ids", "--beam", "1", "--json"]);
    for c in &cases {
        let line: Vec<String> = c.1.iter().map(u32::to_string).collect();
        cmd.arg(line.join(" "));
    }
    let got = json_ids(&run_ok(&mut cmd));
    let want: Vec<Vec<u32>> = cases.iter().map(|c| c.2.clone()).collect();
    assert_eq!(got, want);
    // Texts need the tokenizer: a clear error.
    let out = heedful()
        .args(["translate", "--model"])
        .arg(&dir)
        .arg("hello")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tokenizer files") && err.contains("--ids"),
        "{err}"
    );
}

#[test]
fn stdin_lines_in_order_and_heatmap() {
    let cases = greedy_cases(4);
    let png = tmp("png").join("attn.png");
    let mut child = heedful()
        .args([
            "translate",
            "--beam",
            "1",
            "--json",
            "--input",
            "-",
            "--attention",
        ])
        .arg(&png)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for c in &cases {
            writeln!(stdin, "{}", c.0).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = json_ids(&String::from_utf8(out.stdout).unwrap());
    let want: Vec<Vec<u32>> = cases.iter().map(|c| c.2.clone()).collect();
    assert_eq!(got, want);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

#[test]
fn bad_input_is_a_clear_error() {
    let long: Vec<String> = (0..300).map(|_| "5".to_string()).collect();
    let out = heedful()
        .args(["translate", "--ids"])
        .arg(long.join(" "))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_position_embeddings"), "{err}");
    let out = heedful()
        .args(["translate", "--early-stopping=sometimes", "tea"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("true, false or never"));
    let out = heedful()
        .args(["translate", "--model", "/nonexistent/marian", "tea"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/marian"));
    // A bad input deep in a list split into runs is named by its number in the whole list
    // (1-based, as the lines of the file), not by its index in its run.
    let file = tmp("bad_ids").join("ids.txt");
    std::fs::write(&file, "5 0\n5 0\n5 0\n5 0\n5 0\n5 0\n5 99999 0\n5 0\n\n").unwrap();
    let out = heedful()
        .args(["translate", "--ids", "--batch", "3", "--input"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("input 7: token 1 (id 99999) is outside the source vocabulary"),
        "{err}"
    );
    // A heatmap head the decoder lacks fails before any translation is printed.
    let png = tmp("bad_head").join("attn.png");
    let out = heedful()
        .args(["translate", "--head", "99", "--attention"])
        .arg(&png)
        .arg("tea")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--head 99") && err.contains("4 heads"),
        "{err}"
    );
    assert!(!png.exists());
    // So does a heatmap path in a folder that does not exist.
    let png = tmp("bad_folder").join("missing").join("attn.png");
    let out = heedful()
        .args(["translate", "--attention"])
        .arg(&png)
        .arg("tea")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing") && err.contains("does not exist"),
        "{err}"
    );
    // `--layer` and `--head` only choose what `--attention` draws.
    for flag in ["--layer", "--head"] {
        let out = heedful()
            .args(["translate", flag, "0", "tea"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} without --attention");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--attention"));
    }
}

/// A folder saved before generation_config.json existed keeps generate's settings in config.json
/// (num_beams, max_length, bad_words_ids): they are the defaults, as transformers'
/// `GenerationConfig.from_model_config` makes them.
#[test]
fn config_json_generation_fields_are_the_defaults_without_generation_config() {
    let dir = tmp("legacy");
    let mut cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("weights/marian/config.json")).unwrap(),
    )
    .unwrap();
    cfg["num_beams"] = 2.into();
    cfg["max_length"] = 6.into();
    cfg["bad_words_ids"] = serde_json::json!([[4496]]);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(
        root().join("weights/marian/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let cases = greedy_cases(4);
    let lines: Vec<String> = cases
        .iter()
        .map(|c| {
            let v: Vec<String> = c.1.iter().map(u32::to_string).collect();
            v.join(" ")
        })
        .collect();
    let legacy = json_ids(&run_ok(
        heedful()
            .args(["translate", "--model"])
            .arg(&dir)
            .args(["--ids", "--json"])
            .args(&lines),
    ));
    // The bundled folder with the same settings given on the command line.
    let explicit = json_ids(&run_ok(
        heedful()
            .args([
                "translate",
                "--ids",
                "--json",
                "--beam",
                "2",
                "--max-length",
                "6",
            ])
            .args(&lines),
    ));
    assert_eq!(legacy, explicit);
    assert!(legacy.iter().all(|ids| ids.len() <= 6), "{legacy:?}");
}
