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
    pub fn logits(
        &self,
        step: usize,
        toks: &[u32],
        classes: &[usize],
        per_item: usize,
    ) -> Vec<f32> {
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
            assert!(
                got.is_err(),
                "case {n} {o}: HF refused it ({err}), the reference ran"
            );
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

// ---- The GPU search against the CPU reference ----

use heedful::graph::{LoopBuilder, Schedule, Writes};
use heedful::kernels::elementwise::{record_binary, Binary};
use heedful::kernels::embedding::record_embedding;
use heedful::models::marian::search::{Hypothesis, Search};
use heedful::{DType, Tensor};

/// A small deterministic generator (xorshift) for tables.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Tables of `v` tokens, `c` classes, `s` steps: normal-ish values, or quarter steps (`ties`);
/// `neg_inf` sets some entries (never a whole row) to -inf; the end token (0) grows likelier with
/// the step, by `eos_bias` per step (and starts there when `eos_first`).
fn tables(
    seed: u64,
    v: usize,
    c: usize,
    s: usize,
    ties: bool,
    neg_inf: bool,
    eos_first: bool,
) -> Tables {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut gen = |rows: usize| -> Vec<f32> {
        (0..rows * v)
            .map(|i| {
                let x = rng.unit();
                if neg_inf && i % v != 0 && i % v != 2 && rng.unit() < 0.15 {
                    f32::NEG_INFINITY
                } else if ties {
                    ((x * 16.0).floor() - 8.0) / 4.0
                } else {
                    (x - 0.5) * 6.0
                }
            })
            .collect()
    };
    let tok = gen(v);
    let cls = gen(c);
    let mut pos = gen(s);
    for step in 0..s {
        pos[step * v] += if eos_first && step == 0 {
            40.0
        } else {
            step as f32 * 0.75 - 1.0
        };
    }
    Tables { v, tok, cls, pos }
}

/// The GPU search over the table model: logits = (tok[token] + cls[class]) + pos[step], looked
/// up with the embedding kernel and added with the elementwise kernel (bit-equal to
/// `Tables::logits`), chunks of 2 then 3 steps.
fn gpu_generate(
    opts: &GenerateOptions,
    t: &Tables,
    classes: &[usize],
) -> heedful::Result<(Vec<Vec<Hypothesis>>, usize)> {
    let gpu = common::gpu();
    let (v, k, b) = (t.v, opts.num_beams, classes.len());
    let r = b * k;
    let steps = t.pos.len() / v;
    let mut bld = LoopBuilder::new(&gpu, opts.max_steps());
    let step = bld.step_index()?;
    let search = Search::declare(&mut bld, opts, b, v)?;
    let tok = bld.constant_f32(&t.tok, &[v, v])?;
    let cls = bld.constant_f32(&t.cls, &[t.cls.len() / v, v])?;
    let pos = bld.constant_f32(&t.pos, &[steps, v])?;
    let items: Vec<u32> = (0..r).map(|i| classes[i / k] as u32).collect();
    let items = bld.constant_u32(&items, &[r])?;
    let e1 = bld.buffer(&[r, v], DType::F32)?;
    let e3 = bld.buffer(&[r, v], DType::F32)?;
    let e2 = bld.buffer(&[1, v], DType::F32)?;
    let x = bld.buffer(&[r, v], DType::F32)?;
    let logits = bld.buffer(&[r, v], DType::F32)?;
    let tokens: Tensor = search.tokens().clone();
    {
        let rec = bld.step(0);
        record_embedding(rec, &tokens, &tok, &e1)?;
        record_embedding(rec, &items, &cls, &e3)?;
        record_embedding(rec, &step, &pos, &e2)?;
        record_binary(rec, &e1, &e3, &x, Binary::Add)?;
        record_binary(rec, &x, &e2.reshape(&[v])?, &logits, Binary::Add)?;
    }
    search.record_step(&mut bld, 0, &logits, &step)?;
    let plan = bld.build()?;
    let sched = Schedule {
        max_steps: opts.max_steps(),
        first_chunk: 2,
        chunk: 3,
    };
    // Twice: the second run must not see the first's state.
    let mut last = None;
    for _ in 0..2 {
        let res = plan.run(&Writes::new(), sched)?;
        let hyps = search.finish(&res, res.steps_run)?;
        let steps = search.steps_taken(&res, res.steps_run)?;
        if let Some((prev, prev_steps)) = &last {
            // On the bits, so NaN scores compare equal to themselves.
            let bits = |h: &Vec<Vec<Hypothesis>>| -> Vec<(Vec<u32>, Vec<usize>, u32)> {
                h.iter()
                    .flatten()
                    .map(|x| (x.ids.clone(), x.rows.clone(), x.score.to_bits()))
                    .collect()
            };
            assert_eq!(
                (bits(prev), prev_steps),
                (bits(&hyps), &steps),
                "a second run differs"
            );
        }
        last = Some((hyps, steps));
    }
    Ok(last.expect("ran"))
}

/// Bad words with tokens taken modulo `v`.
fn within(words: &[&[u32]], v: usize) -> Vec<Vec<u32>> {
    words
        .iter()
        .map(|w| w.iter().map(|&t| t % v as u32).collect())
        .collect()
}

fn opts(k: usize, max_length: usize) -> GenerateOptions {
    GenerateOptions {
        num_beams: k,
        max_length,
        max_new_tokens: None,
        min_length: 0,
        min_new_tokens: None,
        length_penalty: 1.0,
        early_stopping: EarlyStopping::Heuristic,
        num_return_sequences: 1,
        bad_words_ids: Vec::new(),
        forced_eos_token_id: None,
        eos_token_id: 0,
        pad_token_id: 1,
        decoder_start_token_id: 2,
    }
}

/// One case: ids, rows and steps equal, scores within 1e-4 (or both NaN). Returns the
/// reference's hypotheses.
fn check(name: &str, o: &GenerateOptions, t: &Tables, classes: &[usize]) -> Vec<Vec<Hypothesis>> {
    let k = o.num_beams;
    let (want, want_steps) = generate(o, classes.len(), t.v, |s, toks, _| {
        Ok(t.logits(s, toks, classes, k))
    })
    .unwrap_or_else(|e| panic!("{name}: reference: {e}"));
    let (got, got_steps) = gpu_generate(o, t, classes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got_steps, want_steps, "{name}: steps");
    assert_eq!(got.len(), want.len(), "{name}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let gi: Vec<&Vec<u32>> = g.iter().map(|h| &h.ids).collect();
        let wi: Vec<&Vec<u32>> = w.iter().map(|h| &h.ids).collect();
        assert_eq!(gi, wi, "{name}: item {i} ids (GPU vs reference)");
        for (gh, wh) in g.iter().zip(w) {
            assert_eq!(gh.rows, wh.rows, "{name}: item {i} rows");
            let ok = (gh.score - wh.score).abs() <= 1e-4 + 1e-5 * wh.score.abs()
                || gh.score == wh.score
                || (gh.score.is_nan() && wh.score.is_nan());
            assert!(ok, "{name}: item {i} score {} vs {}", gh.score, wh.score);
        }
    }
    want
}

/// Greedy on awkward shapes: V not a multiple of the workgroup, ties (first index), -inf
/// entries, the end token at step 0, max_length 2, batch 1..7, bad words, min length, forced EOS.
#[test]
fn gpu_greedy_equals_reference() {
    let cases: Vec<(&str, usize, usize, bool, bool, bool, usize)> = vec![
        // name, V, batch, ties, -inf, eos first, max_length
        ("v67", 67, 3, false, false, false, 12),
        ("v5 ties", 5, 7, true, false, false, 9),
        ("v130 -inf", 130, 2, false, true, false, 10),
        ("eos first", 40, 4, false, false, true, 6),
        ("max_length 2", 33, 5, false, false, false, 2),
        ("batch 1 ties", 64, 1, true, true, false, 15),
    ];
    for (n, &(name, v, b, ties, ninf, eos0, ml)) in cases.iter().enumerate() {
        let t = tables(n as u64 + 11, v, 3, 20, ties, ninf, eos0);
        let classes: Vec<usize> = (0..b).map(|i| i % 3).collect();
        let mut o = opts(1, ml);
        check(name, &o, &t, &classes);
        o.bad_words_ids = within(&[&[1], &[3], &[4, 4], &[2, 5], &[5, 6, 3]], v);
        o.min_length = 4;
        check(&format!("{name} bad words min_length"), &o, &t, &classes);
        o.forced_eos_token_id = Some(0);
        o.min_new_tokens = Some(2);
        check(&format!("{name} forced eos"), &o, &t, &classes);
    }
}

/// Greedy with NaN and +inf logits, as torch.argmax orders them (NaN largest, the first of
/// equals) after HF's processors (a ban adds -inf, so a banned +inf turns NaN). The GPU kernel
/// skips the processors for entries that cannot beat its list unprocessed; these are the
/// entries that can.
#[test]
fn gpu_greedy_nan_and_inf_logits_follow_torch_argmax() {
    let v = 70;
    let mut t = tables(77, v, 3, 20, false, false, false);
    let inf = f32::INFINITY;
    // (step, token, value): two +inf (the first wins); a banned +inf (NaN) over an unbanned
    // +inf; two NaNs (the first wins); a NaN past a +inf; a NaN on the end token under
    // min_length (-inf then).
    for (step, tok, x) in [
        (1, 30, inf),
        (1, 9, inf),
        (2, 40, inf),
        (2, 5, inf),
        (3, 50, f32::NAN),
        (3, 12, f32::NAN),
        (4, 20, inf),
        (4, 61, f32::NAN),
        (5, 0, f32::NAN),
        (5, 66, 50.0),
    ] {
        t.pos[step * v + tok] = x;
    }
    let classes = [0, 1, 2];
    let mut o = opts(1, 12);
    o.bad_words_ids = vec![vec![5]];
    o.min_length = 8;
    let want = check("nan and inf", &o, &t, &classes);
    // The reference (torch's order) picks what the cases above aim at.
    for item in &want {
        assert_eq!(&item[0].ids[2..7], &[9, 5, 12, 61, 66], "{:?}", item[0].ids);
    }
}

/// Beam search over NaN and +inf logits. torch's log_softmax turns a row holding a NaN into all
/// NaN, and topk ranks NaN above every number (ties to the lower index here), so the NaN beam's
/// first tokens take the top slots and their NaN scores rank first among finished hypotheses.
/// A row with +inf (and no NaN) has NaN log-probabilities too (inf - inf). The GPU's row max and
/// sum-exp must give NaN wherever torch does, whatever WGSL's `max` makes of NaN.
#[test]
fn gpu_beam_nan_and_inf_logits_follow_torch() {
    let v = 70;
    let inf = f32::INFINITY;
    // (name, K, (step, token, value) cells of the step table, value of token 3 in the rows that
    // follow tokens 10, 14, 18, ...)
    type Cell = (usize, usize, f32);
    let cases: [(&str, usize, Vec<Cell>, Option<f32>); 5] = [
        // One NaN in every row of step 2 (all beams NaN from there on).
        ("nan at step 2", 3, vec![(2, 31, f32::NAN)], None),
        // A NaN at step 1 and an +inf at step 3, beam 4.
        (
            "nan step 1, inf step 3",
            4,
            vec![(1, 12, f32::NAN), (3, 40, inf)],
            None,
        ),
        // Two NaNs in the first step's row (the lower token must not matter: the row is NaN).
        (
            "two nans at step 0",
            2,
            vec![(0, 50, f32::NAN), (0, 7, f32::NAN)],
            None,
        ),
        // Rows after some tokens only: beams whose last token is one of these have NaN rows
        // while their siblings' rows are numbers, so NaN must outrank finite candidates.
        ("nan after some tokens", 4, vec![], Some(f32::NAN)),
        ("+inf after some tokens", 3, vec![], Some(inf)),
    ];
    for (name, k, cells, after_tokens) in cases {
        for es in [EarlyStopping::Heuristic, EarlyStopping::Done] {
            let mut t = tables(5 + k as u64, v, 3, 20, false, false, false);
            for &(step, tok, x) in &cells {
                t.pos[step * v + tok] = x;
            }
            if let Some(x) = after_tokens {
                for prev in (10..v).step_by(4) {
                    t.tok[prev * v + 3] = x;
                }
            }
            let mut o = opts(k, 8);
            o.early_stopping = es;
            o.num_return_sequences = k;
            o.bad_words_ids = vec![vec![5]];
            let want = check(&format!("{name} {es:?}"), &o, &t, &[0, 1, 2]);
            // The case reaches what it is for: some hypothesis went through a NaN row.
            assert!(
                want.iter().flatten().any(|h| h.score.is_nan()),
                "{name}: no NaN score"
            );
        }
    }
}

/// Beam search, K 2..5 (and 8), on the same awkward shapes and option grid.
#[test]
fn gpu_beam_equals_reference() {
    let mut n = 0u64;
    for &(v, b, ties, ninf, eos0) in &[
        (67usize, 3usize, false, false, false),
        (5, 2, false, false, false),
        (130, 1, false, true, false),
        (40, 7, false, false, true),
        (24, 4, true, false, false),
    ] {
        for k in [2usize, 3, 5] {
            for (es, lp, ml) in [
                (EarlyStopping::Heuristic, 1.0, 9),
                (EarlyStopping::Done, 0.6, 7),
                (EarlyStopping::Never, 2.0, 8),
                (EarlyStopping::Heuristic, -0.5, 2),
                (EarlyStopping::Never, 0.0, 3),
            ] {
                n += 1;
                let t = tables(n, v, 3, 20, ties, ninf, eos0);
                let classes: Vec<usize> = (0..b).map(|i| (i + n as usize) % 3).collect();
                let mut o = opts(k, ml);
                o.early_stopping = es;
                o.length_penalty = lp;
                o.num_return_sequences = 1 + (n as usize) % k;
                if n.is_multiple_of(2) {
                    o.bad_words_ids = within(&[&[1], &[3, 4], &[2, 6], &[4, 3, 7]], v);
                    o.min_length = 3;
                }
                if n.is_multiple_of(3) {
                    o.forced_eos_token_id = Some(0);
                }
                let name = format!(
                    "V {v} batch {b} K {k} ties {ties} -inf {ninf} eos0 {eos0} {es:?} lp {lp} \
                     max_length {ml} nrs {} bad {} forced {:?}",
                    o.num_return_sequences,
                    o.bad_words_ids.len(),
                    o.forced_eos_token_id
                );
                check(&name, &o, &t, &classes);
            }
        }
    }
    let t = tables(99, 70, 2, 20, false, false, false);
    let mut o = opts(8, 10);
    o.num_return_sequences = 8;
    check("K 8", &o, &t, &[0, 1, 1]);
}

/// Caller errors come back as errors: bad options, a plan too short, wrong logits shapes.
#[test]
fn gpu_search_refuses_bad_input() {
    let gpu = common::gpu();
    let mut b = LoopBuilder::new(&gpu, 5);
    let o = opts(2, 10);
    assert!(
        Search::declare(&mut b, &o, 2, 30).is_err(),
        "plan shorter than max_length"
    );
    let mut b = LoopBuilder::new(&gpu, 9);
    assert!(
        Search::declare(&mut b, &opts(0, 10), 2, 30).is_err(),
        "num_beams 0"
    );
    assert!(
        Search::declare(&mut b, &opts(9, 10), 2, 30).is_err(),
        "num_beams 9"
    );
    assert!(Search::declare(&mut b, &o, 0, 30).is_err(), "batch 0");
    assert!(
        Search::declare(&mut b, &o, 2, 1).is_err(),
        "vocab smaller than the ids"
    );
    let mut bad = o.clone();
    bad.bad_words_ids = vec![vec![3, 40]];
    assert!(
        Search::declare(&mut b, &bad, 2, 30).is_err(),
        "bad word out of vocab"
    );
    let s = Search::declare(&mut b, &o, 2, 30).expect("declare");
    let step = b.step_index().expect("step");
    let wrong = Tensor::zeros(&gpu, &[4, 31], DType::F32).expect("tensor");
    assert!(
        s.record_step(&mut b, 0, &wrong, &step).is_err(),
        "logits [4, 31]"
    );
    let wrong = Tensor::zeros(&gpu, &[4, 30], DType::U32).expect("tensor");
    assert!(
        s.record_step(&mut b, 0, &wrong, &step).is_err(),
        "u32 logits"
    );
}

/// Option resolution and refusals that HF's fixture does not cover.
#[test]
fn options_resolve_like_generate() {
    let model = GenerationParams {
        eos_token_id: Some(0),
        pad_token_id: Some(7),
        decoder_start_token_id: Some(7),
        num_beams: Some(4),
        max_length: Some(512),
        ..Default::default()
    };
    let o = GenerateOptions::resolve(&model, &GenerationParams::default(), Some(512)).unwrap();
    assert_eq!((o.max_length(), o.max_steps(), o.num_beams), (512, 511, 4));
    let caller = GenerationParams {
        max_new_tokens: Some(3),
        min_new_tokens: Some(2),
        ..Default::default()
    };
    let o = GenerateOptions::resolve(&model, &caller, Some(512)).unwrap();
    assert_eq!((o.max_length(), o.min_length()), (4, 3));
    // No max_length anywhere: 20 new tokens, capped by max_position_embeddings.
    let bare = GenerationParams {
        max_length: None,
        ..model.clone()
    };
    let o = GenerateOptions::resolve(&bare, &GenerationParams::default(), Some(8)).unwrap();
    assert_eq!(o.max_length(), 8);
    let o = GenerateOptions::resolve(&bare, &GenerationParams::default(), None).unwrap();
    assert_eq!(o.max_length(), 21);
    // Pad falls back to eos; the decoder start to bos; neither present is an error.
    let few = GenerationParams {
        eos_token_id: Some(3),
        bos_token_id: Some(5),
        ..Default::default()
    };
    let o = GenerateOptions::resolve(&few, &GenerationParams::default(), None).unwrap();
    assert_eq!((o.pad_token_id, o.decoder_start_token_id), (3, 5));
    let none = GenerationParams {
        eos_token_id: Some(3),
        ..Default::default()
    };
    assert!(GenerateOptions::resolve(&none, &GenerationParams::default(), None).is_err());
    let sample = GenerationParams {
        do_sample: Some(true),
        ..Default::default()
    };
    assert!(GenerateOptions::resolve(&model, &sample, None).is_err());
    assert!(EarlyStopping::from_json(&serde_json::json!("always")).is_err());
    assert_eq!(
        EarlyStopping::from_json(&serde_json::json!("never")).unwrap(),
        EarlyStopping::Never
    );
}

/// A seeded sweep of beam cases (K 2..6, V 6..90, batch 1..6, max_length 3..18, every early
/// stopping mode and length penalties -1..3, the end token's pull varied so items finish at
/// different steps): the GPU equals the reference on each.
#[test]
fn gpu_beam_sweep_equals_reference() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut pick = |n: usize| (rng.next() % n as u64) as usize;
    for case in 0..60u64 {
        let k = 2 + pick(5);
        let v = 6 + pick(85);
        let b = 1 + pick(6);
        let ml = 3 + pick(16);
        let mut t = tables(1000 + case, v, 4, 20, pick(4) == 0, pick(5) == 0, false);
        let pull = [0.2f32, 0.5, 1.0, 2.0][pick(4)];
        for s in 0..20 {
            t.pos[s * v] += s as f32 * pull;
        }
        let classes: Vec<usize> = (0..b).map(|_| pick(4)).collect();
        let mut o = opts(k, ml);
        o.early_stopping = [
            EarlyStopping::Heuristic,
            EarlyStopping::Done,
            EarlyStopping::Never,
        ][pick(3)];
        o.length_penalty = [-1.0, 0.0, 0.6, 1.0, 2.0, 3.0][pick(6)];
        o.num_return_sequences = 1 + pick(k);
        if pick(3) == 0 {
            o.min_length = pick(6);
        }
        let name = format!(
            "sweep {case}: K {k} V {v} batch {b} max_length {ml} pull {pull} {:?} lp {} nrs {} \
             min_length {}",
            o.early_stopping, o.length_penalty, o.num_return_sequences, o.min_length
        );
        check(&name, &o, &t, &classes);
    }
}
