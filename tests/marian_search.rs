//! Hugging Face `generate` decoding: the CPU reference (`heedful::reference::generate`) against HF
//! itself (weights/fixtures/marian_search.json from weights/make_search_fixtures.py: every row and
//! beam score over the option grid), and the GPU search (`models::marian::search::Search` on the
//! loop runtime) against the CPU reference with a GPU-cheap table "model" on awkward shapes.

mod common;

use std::path::PathBuf;

use heedful::models::marian::search::{
    padded_sequences, EarlyStopping, GenerateOptions, GenerationParams,
};
use heedful::reference::generate::generate;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Value {
    let p = root().join("weights/fixtures/marian_search.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
        .expect("fixture JSON")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// The fixture's `TableModel`: logits `(tok[last] + cls[class]) + pos[step]`, f32 in this order.
pub struct Tables {
    pub v: usize,
    pub tok: Vec<f32>,
    pub cls: Vec<f32>,
    pub pos: Vec<f32>,
}

impl Tables {
    /// Logits `[R, V]` of rows whose items have classes `classes` (row r is item r / per_item).
    pub fn logits(&self, step: usize, toks: &[u32], classes: &[usize], per_item: usize) -> Vec<f32> {
        let v = self.v;
        let mut out = Vec::with_capacity(toks.len() * v);
        for (r, &t) in toks.iter().enumerate() {
            let c = classes[r / per_item];
            for j in 0..v {
                out.push(
                    (self.tok[t as usize * v + j] + self.cls[c * v + j]) + self.pos[step * v + j],
                );
            }
        }
        out
    }
}

/// HF's generate kwargs of a case as the caller's parameters.
fn params(o: &Value) -> GenerationParams {
    let u = |k: &str| o.get(k).and_then(Value::as_u64).map(|x| x as usize);
    let id = |k: &str| o.get(k).and_then(Value::as_u64).map(|x| x as u32);
    GenerationParams {
        num_beams: u("num_beams"),
        max_length: u("max_length"),
        max_new_tokens: u("max_new_tokens"),
        min_length: u("min_length"),
        min_new_tokens: u("min_new_tokens"),
        length_penalty: o.get("length_penalty").and_then(Value::as_f64),
        early_stopping: None,
        num_return_sequences: u("num_return_sequences"),
        bad_words_ids: o
            .get("bad_words_ids")
            .map(|b| b.as_array().expect("list").iter().map(u32s).collect()),
        forced_eos_token_id: id("forced_eos_token_id"),
        eos_token_id: id("eos_token_id"),
        pad_token_id: id("pad_token_id"),
        decoder_start_token_id: id("decoder_start_token_id"),
        ..Default::default()
    }
}

fn resolve(o: &Value) -> heedful::Result<GenerateOptions> {
    let mut p = params(o);
    if let Some(es) = o.get("early_stopping") {
        p.early_stopping = Some(EarlyStopping::from_json(es)?);
    }
    GenerateOptions::resolve(&GenerationParams::default(), &p, None)
}

/// Every fixture case: the reference's padded rows equal HF's `sequences`, its beam scores HF's
/// `sequences_scores` within 1e-5 (log-softmax sums may differ in the last bits), and the options
/// HF refuses are refused.
#[test]
fn reference_equals_hugging_face() {
    let fx = fixture();
    let mut checked = 0;
    for (n, case) in fx["cases"].as_array().expect("cases").iter().enumerate() {
        let o = &case["options"];
        let name = case["model"].as_str().expect("model");
        let m = &fx["models"][name];
        let t = Tables {
            v: m["vocab"].as_u64().expect("vocab") as usize,
            tok: f32s(&m["tok"]),
            cls: f32s(&m["cls"]),
            pos: f32s(&m["pos"]),
        };
        let classes: Vec<usize> = u32s(&case["classes"]).iter().map(|&c| c as usize).collect();
        let got = resolve(o).and_then(|opts| {
            let k = opts.num_beams;
            generate(&opts, classes.len(), t.v, |s, toks, _| {
                Ok(t.logits(s, toks, &classes, k))
            })
            .map(|(h, steps)| (opts, h, steps))
        });
        if let Some(err) = case.get("error") {
            assert!(got.is_err(), "case {n} {o}: HF refused it ({err}), the reference ran");
            continue;
        }
        let (opts, hyps, steps) = got.unwrap_or_else(|e| panic!("case {n} {o}: {e}"));
        let want: Vec<Vec<u32>> = case["sequences"]
            .as_array()
            .expect("sequences")
            .iter()
            .map(u32s)
            .collect();
        let rows = padded_sequences(&opts, &hyps, steps);
        assert_eq!(rows, want, "case {n} {o} classes {classes:?}");
        if let Some(s) = case.get("scores") {
            let want = f32s(s);
            let got: Vec<f32> = hyps.iter().flatten().map(|h| h.score).collect();
            assert_eq!(got.len(), want.len(), "case {n}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                    "case {n} {o}: scores {got:?} vs HF {want:?}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 250, "only {checked} cases ran");
}
