//! The PyTorch-reference conformance cases (`../shared/conformance`, or HEEDFUL_CONFORMANCE_DIR) run
//! through the same runner as `heedful conformance`, on both f16 paths. Every case of an implemented
//! op must pass; cases of ops not implemented yet are skipped, never counted as passed.

mod common;
use common::*;
use heedful::conformance;
use heedful::ops::RecurrentPath;
use std::path::PathBuf;

fn dir() -> Option<PathBuf> {
    let d = match std::env::var("HEEDFUL_CONFORMANCE_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    };
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("note: conformance dir {} is absent; skipping", d.display());
        None
    }
}

fn check_ops(ops: &[&str]) {
    check_ops_with(ops, &conformance::RunOptions::default());
}

fn check_ops_with(ops: &[&str], opts: &conformance::RunOptions) {
    let Some(dir) = dir() else { return };
    for (path, gpu) in gpus() {
        let outcomes = conformance::run_dir_with(&gpu, &dir, None, opts).unwrap();
        let mine: Vec<_> = outcomes
            .iter()
            .filter(|o| ops.contains(&o.op.as_str()))
            .collect();
        assert!(!mine.is_empty(), "no cases of {ops:?} in {}", dir.display());
        let bad: Vec<String> = mine
            .iter()
            .filter(|o| o.status != "pass")
            .map(|o| format!("{} ({}): {} {}", o.name, o.op, o.status, o.detail))
            .collect();
        assert!(
            bad.is_empty(),
            "{path}: {} of {} cases not passing:\n{}",
            bad.len(),
            mine.len(),
            bad.join("\n")
        );
    }
}

#[test]
fn engine_core_ops_pass_every_case() {
    check_ops(&[
        "linear",
        "matmul",
        "softmax",
        "layer_norm",
        "activation",
        "embedding",
    ]);
}

#[test]
fn attention_ops_pass_every_case() {
    check_ops(&[
        "sdpa",
        "mha",
        "additive_attention",
        "dot_attention",
        "general_attention",
    ]);
}

#[test]
fn recurrent_ops_pass_every_case_on_both_paths() {
    for recurrent_path in [RecurrentPath::PerStep, RecurrentPath::Persistent] {
        eprintln!("recurrent path {recurrent_path:?}");
        check_ops_with(
            &["lstm", "gru", "rnn", "lstm_cell", "gru_cell", "rnn_cell"],
            &conformance::RunOptions { recurrent_path },
        );
    }
}

#[test]
fn runner_skips_unimplemented_ops_and_reports_errors_for_bad_files() {
    let tmp = std::env::temp_dir().join(format!("heedful-conf-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("broken.safetensors"), b"not a safetensors file").unwrap();
    let gpu = gpu();
    let outcomes = conformance::run_dir(&gpu, &tmp, None).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].status, "error");
    assert!(
        outcomes[0].detail.contains("broken.safetensors"),
        "{}",
        outcomes[0].detail
    );
    let s = conformance::summary(&outcomes);
    assert!(s.starts_with("0 passed, 1 failed, 0 skipped"), "{s}");
    std::fs::remove_dir_all(&tmp).ok();
}
