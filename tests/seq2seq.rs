//! The seq2seq family against PyTorch: the trained G2P set-ups (fixtures from
//! weights/make_g2p_fixtures.py; Luong and Bahdanau step orders) decoded greedily by the fused and
//! the per-op decoders (tokens equal, per-step log-probabilities within 1e-2) and with beam search
//! (k = 4, equal to weights/seq2seq.py's reference beam search, and the best hypothesis's attention
//! weights per step within 5e-3 of the reference's), the chunked loop against one submission per
//! step, the top-k and beam-select kernels against their CPU references, and error cases.

mod common;

use std::path::PathBuf;

use heedful::gpu::Recorder;
use heedful::kernels::{beam, topk};
use heedful::models::seq2seq::{
    AttentionKind, DecodeKernel, DecodeOptions, Decoded, Seq2Seq, WeightCopies,
};
use heedful::{DType, Tensor};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Value {
    let p = root().join("weights/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
        .expect("fixture JSON")
}

/// A JSON array of arrays, each element read by `elem`.
fn rows<T>(v: &Value, elem: impl Fn(&Value) -> Option<T>) -> Vec<Vec<T>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| elem(x).expect("element"))
                .collect()
        })
        .collect()
}

fn ids2(v: &Value) -> Vec<Vec<u32>> {
    rows(v, |x| x.as_u64().map(|i| i as u32))
}

fn f2(v: &Value) -> Vec<Vec<f32>> {
    rows(v, |x| x.as_f64().map(|f| f as f32))
}

/// Greedy: batched over all fixture words (two chunkings), tokens equal and log-probs within 1e-2.
fn check_greedy(setup: &str) {
    let fx = fixture(&format!("g2p_{setup}.json"));
    let gpu = common::gpu();
    let model =
        Seq2Seq::load(&gpu, &root().join(fx["model"].as_str().expect("model"))).expect("load");
    let ids = ids2(&fx["ids"]);
    let want = ids2(&fx["greedy"]);
    let want_lp = f2(&fx["logprobs"]);
    assert!(ids.len() >= 200, "{setup}: {} words", ids.len());
    // The fused kernel where it runs the architecture, and the per-op decoder always: one
    // submission per step on the first 64 words (the slow path), chunked on all.
    let fused = !matches!(
        model.attention(),
        AttentionKind::MultiHead | AttentionKind::Tutorial
    );
    let mut runs = vec![(DecodeKernel::PerOp, 8usize, ids.len())];
    if fused {
        runs.extend([
            (DecodeKernel::Fused, 1, 64),
            (DecodeKernel::Fused, 8, ids.len()),
        ]);
    } else {
        runs.push((DecodeKernel::PerOp, 1, 64));
    }
    let mut attention_of: Vec<Vec<Vec<Vec<f32>>>> = Vec::new();
    for (kernel, chunk, n) in runs {
        let opts = DecodeOptions {
            steps_per_submit: chunk,
            keep_attention: true,
            kernel,
            ..Default::default()
        };
        let chunk = format!("{kernel:?}, {chunk} steps per submission");
        // Batches of 64 and a remainder.
        let mut got = Vec::new();
        for part in ids[..n].chunks(64) {
            got.extend(model.decode(&gpu, part, &opts).expect("decode"));
        }
        let mut bad = 0;
        let mut worst = 0f32;
        for (i, g) in got.iter().enumerate() {
            if g.tokens != want[i] {
                bad += 1;
                if bad <= 5 {
                    eprintln!(
                        "{setup} {chunk}: word {} {:?}: got {:?} want {:?}",
                        i, fx["words"][i], g.tokens, want[i]
                    );
                }
                continue;
            }
            assert_eq!(
                g.logprobs.len(),
                want_lp[i].len(),
                "{setup}: word {i} step count"
            );
            // PyTorch's log-probs include the end token's exactly when it was reached.
            assert_eq!(
                g.ended,
                want_lp[i].len() == want[i].len() + 1,
                "{setup}: word {i} ended"
            );
            for (a, b) in g.logprobs.iter().zip(&want_lp[i]) {
                worst = worst.max((a - b).abs());
            }
            assert_eq!(
                g.attention.len(),
                g.logprobs.len(),
                "{setup}: attention per step"
            );
            for w in &g.attention {
                let s: f32 = w.iter().sum();
                assert!(s <= 1.0 + 1e-3, "{setup}: attention row sums to {s}");
            }
        }
        eprintln!(
            "{setup} {chunk}: {bad} of {} words differ, max |dlogp| {worst:.2e}",
            got.len()
        );
        assert_eq!(bad, 0, "{setup}: greedy outputs differ from PyTorch");
        assert!(worst < 1e-2, "{setup}: log-prob error {worst}");
        attention_of.push(got.into_iter().map(|g| g.attention).collect());
    }
    // The fused kernel's attention weights equal the per-op decoder's.
    for other in &attention_of[1..] {
        for (i, (a, b)) in attention_of[0].iter().zip(other).enumerate() {
            let (a, b): (Vec<f32>, Vec<f32>) = (a.concat(), b.concat());
            common::assert_close(&format!("{setup} word {i} attention"), &b, &a, 1e-4, 1e-3);
        }
    }
}

/// Beam k = 4 on every fixture word (batched), and with length normalization on the first 50.
fn check_beam(setup: &str) {
    let fx = fixture(&format!("g2p_{setup}.json"));
    let gpu = common::gpu();
    let model =
        Seq2Seq::load(&gpu, &root().join(fx["model"].as_str().expect("model"))).expect("load");
    let ids = ids2(&fx["ids"]);
    // The fused beam step where the model allows it (Auto), and the per-op one on fewer words.
    for (key, ln, n, kernel) in [
        ("beam4", false, ids.len(), DecodeKernel::Auto),
        ("beam4_ln", true, 50, DecodeKernel::Auto),
        ("beam4", false, 64, DecodeKernel::PerOp),
    ] {
        let want = ids2(&fx[key]);
        let want_score: Vec<f32> = fx[format!("{key}_score")]
            .as_array()
            .expect("scores")
            .iter()
            .map(|x| x.as_f64().expect("f") as f32)
            .collect();
        let opts = DecodeOptions {
            beam: 4,
            length_norm: ln,
            steps_per_submit: 8,
            kernel,
            ..Default::default()
        };
        let key = format!("{key} {kernel:?}");
        let key = key.as_str();
        let mut got = Vec::new();
        for part in ids[..n].chunks(32) {
            got.extend(model.decode(&gpu, part, &opts).expect("beam"));
        }
        let mut bad = 0;
        for (i, g) in got.iter().enumerate() {
            if g.tokens != want[i] || (g.score - want_score[i]).abs() > 2e-2 {
                bad += 1;
                if bad <= 5 {
                    eprintln!(
                        "{setup} {key}: word {i} {:?}: got {:?} ({}) want {:?} ({})",
                        fx["words"][i], g.tokens, g.score, want[i], want_score[i]
                    );
                }
            }
        }
        eprintln!("{setup} {key}: {bad} of {n} differ");
        assert_eq!(
            bad, 0,
            "{setup}: {key} differs from the reference beam search"
        );
    }
}

/// Largest |a - b| over two weight matrices of equal shape (panics naming `what` otherwise).
fn max_diff(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    let mut worst = 0f32;
    for (s, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row {s} length");
        for (a, b) in g.iter().zip(w) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

/// Beam k = 4 with `keep_attention` on the fixture's first words: tokens as the reference's, one
/// attention row per step (the end token's step included), rows within 5e-3 of the reference's
/// (observed: ~1e-5), summing to 1 over the input (the tutorial attention's rows, softmaxed over
/// `max_length` positions, to at most 1); also cut at `max_len` 3 (the live hypotheses' path),
/// and equal to greedy's rows where the beam's best is the greedy output.
fn check_beam_attention(setup: &str) {
    let fx = fixture(&format!("g2p_{setup}.json"));
    let gpu = common::gpu();
    let model =
        Seq2Seq::load(&gpu, &root().join(fx["model"].as_str().expect("model"))).expect("load");
    let want_attn: Vec<Vec<Vec<f32>>> = fx["beam4_attention"]
        .as_array()
        .expect("beam4_attention")
        .iter()
        .map(f2)
        .collect();
    let n = want_attn.len();
    assert!(n >= 5, "{setup}: {n} attention words");
    let ids = ids2(&fx["ids"])[..n].to_vec();
    let tutorial = setup.contains("tutorial");
    let check_rows = |what: &str, rows: &[Vec<f32>], input: usize| {
        for (s, w) in rows.iter().enumerate() {
            assert_eq!(w.len(), input, "{what}: step {s} row length");
            let sum: f32 = w.iter().sum();
            if tutorial {
                assert!(
                    (0.0..=1.0 + 1e-3).contains(&sum),
                    "{what}: step {s} sums to {sum}"
                );
            } else {
                assert!((sum - 1.0).abs() < 1e-3, "{what}: step {s} sums to {sum}");
            }
        }
    };
    let greedy = model
        .decode(
            &gpu,
            &ids,
            &DecodeOptions {
                keep_attention: true,
                ..Default::default()
            },
        )
        .expect("greedy");
    let want_greedy = ids2(&fx["greedy"]);
    for (i, g) in greedy.iter().enumerate() {
        assert_eq!(g.tokens, want_greedy[i], "{setup}: greedy word {i}");
        assert_eq!(g.attention.len(), g.logprobs.len(), "{setup}: greedy rows");
        check_rows(
            &format!("{setup} greedy word {i}"),
            &g.attention,
            ids[i].len(),
        );
    }
    let mut same_as_greedy = 0;
    for (key, max_len) in [("beam4", None), ("beam4_max3", Some(3))] {
        let want = ids2(&fx[key]);
        let want_attn: Vec<Vec<Vec<f32>>> = fx[format!("{key}_attention")]
            .as_array()
            .expect("attention")
            .iter()
            .map(f2)
            .collect();
        for chunk in [1usize, 8] {
            let opts = DecodeOptions {
                beam: 4,
                max_len,
                steps_per_submit: chunk,
                keep_attention: true,
                ..Default::default()
            };
            let got = model.decode(&gpu, &ids, &opts).expect("beam");
            // Keeping the weights changes nothing else.
            let plain = DecodeOptions {
                keep_attention: false,
                ..opts
            };
            let without = model.decode(&gpu, &ids, &plain).expect("beam");
            let mut worst = 0f32;
            for (i, g) in got.iter().enumerate() {
                let what = format!("{setup} {key} chunk {chunk} word {i} {:?}", fx["words"][i]);
                assert_eq!(g.tokens, want[i], "{what}: tokens");
                assert_eq!(
                    g.tokens, without[i].tokens,
                    "{what}: tokens without attention"
                );
                assert_eq!(g.score, without[i].score, "{what}: score without attention");
                assert!(
                    without[i].attention.is_empty(),
                    "{what}: attention not kept"
                );
                let ended = max_len.is_none_or(|m| g.tokens.len() < m);
                assert_eq!(
                    g.attention.len(),
                    g.tokens.len() + usize::from(ended),
                    "{what}: one row per step"
                );
                check_rows(&what, &g.attention, ids[i].len());
                worst = worst.max(max_diff(&what, &g.attention, &want_attn[i]));
                if max_len.is_none() && g.tokens == greedy[i].tokens {
                    same_as_greedy += 1;
                    let d = max_diff(&what, &g.attention, &greedy[i].attention);
                    assert!(d < 1e-3, "{what}: beam rows differ from greedy's by {d}");
                }
            }
            eprintln!("{setup} {key} chunk {chunk}: max |dw| {worst:.2e} over {n} words");
            assert!(worst < 5e-3, "{setup} {key}: attention error {worst}");
        }
    }
    // Some words' best hypothesis is not the greedy one, so the rows are really followed back.
    assert!(same_as_greedy < 2 * n, "{setup}: every beam equals greedy");
}

#[test]
fn beam_attention_matches_pytorch() {
    for setup in [
        "rnn_dot",
        "lstm_mha",
        "gru_tutorial",
        "gru_additive",
        "lstm_general",
    ] {
        check_beam_attention(setup);
    }
}

#[test]
fn greedy_lstm_multihead() {
    check_greedy("lstm_mha");
}

#[test]
fn greedy_gru_tutorial() {
    check_greedy("gru_tutorial");
}

#[test]
fn greedy_rnn_dot() {
    check_greedy("rnn_dot");
}

#[test]
fn beam_lstm_multihead() {
    check_beam("lstm_mha");
}

#[test]
fn beam_gru_tutorial() {
    check_beam("gru_tutorial");
}

#[test]
fn beam_rnn_dot() {
    check_beam("rnn_dot");
}

#[test]
fn greedy_gru_additive_input_feeding() {
    check_greedy("gru_additive");
}

#[test]
fn greedy_lstm_general_stack() {
    check_greedy("lstm_general");
}

#[test]
fn beam_gru_additive_input_feeding() {
    check_beam("gru_additive");
}

#[test]
fn beam_lstm_general_stack() {
    check_beam("lstm_general");
}

#[test]
fn greedy_gru_bahdanau() {
    check_greedy("gru_bahdanau");
}

#[test]
fn beam_gru_bahdanau() {
    check_beam("gru_bahdanau");
}

/// An edit of a config's `decoder` object.
type Edit = fn(&mut Value);

/// The Bahdanau order's config checks: errors name the key and the value at fault.
#[test]
fn bahdanau_config_errors() {
    use heedful::models::seq2seq::{AttentionOrder, Config};
    let fx = fixture("g2p_gru_bahdanau.json");
    let model_path = root().join(fx["model"].as_str().expect("model"));
    let file = heedful::weights::WeightFile::open(&model_path).expect("open");
    let base = file.config_json().expect("config").clone();
    let cfg = Config::from_json(&base).expect("the exported config parses");
    assert_eq!(
        cfg.attention_order().expect("order"),
        AttentionOrder::Bahdanau
    );
    let with = |edit: Edit| {
        let mut v = base.clone();
        edit(&mut v["decoder"]);
        Config::from_json(&v)
    };
    // The default is the Luong order.
    let luong = with(|d| {
        d.as_object_mut()
            .expect("decoder")
            .remove("attention_order");
    })
    .expect("no attention_order");
    assert_eq!(
        luong.attention_order().expect("order"),
        AttentionOrder::Luong
    );
    let cases: [(Edit, &[&str]); 5] = [
        (
            |d| {
                d["attention"] = "tutorial".into();
                d["max_length"] = 21.into();
            },
            &["decoder.attention_order", "bahdanau", "tutorial"],
        ),
        (
            |d| d["attention"] = "none".into(),
            &["decoder.attention_order", "bahdanau", "none"],
        ),
        (
            |d| d["input_feeding"] = true.into(),
            &[
                "decoder.input_feeding",
                "decoder.attention_order",
                "bahdanau",
            ],
        ),
        (
            |d| d["attn_layer"] = true.into(),
            &["decoder.attn_layer", "decoder.attention_order", "bahdanau"],
        ),
        (
            |d| d["attention_order"] = "sideways".into(),
            &["decoder.attention_order", "sideways"],
        ),
    ];
    for (i, (edit, words)) in cases.iter().enumerate() {
        let e = with(*edit).expect_err("must be refused").to_string();
        for w in *words {
            assert!(e.contains(w), "case {i}: {e:?} does not name {w:?}");
        }
    }
}

#[test]
fn topk_matches_reference() {
    let mut rng = common::Rng::new(7);
    for (name, gpu) in common::gpus() {
        for (r, v, k) in [
            (1usize, 5usize, 1usize),
            (3, 74, 4),
            (7, 33, 16),
            (64, 1000, 1),
        ] {
            let mut logits = rng.vec(r * v, -8.0, 8.0);
            // A tie: the lower index must win.
            logits[v - 1] = logits[0];
            // NaN logits are skipped (they neither rank nor enter the log-sum-exp).
            if v > 8 {
                logits[1] = f32::NAN;
                logits[r * v - 3] = f32::NAN;
            }
            let x = Tensor::from_f32(&gpu, &logits, &[r, v]).expect("x");
            let ids = Tensor::zeros(&gpu, &[r, k], DType::U32).expect("ids");
            let lp = Tensor::zeros(&gpu, &[r, k], DType::F32).expect("lp");
            let mut rec = Recorder::new(&gpu);
            topk::record_topk(&mut rec, &x, &ids, &lp).expect("record");
            rec.submit().expect("submit");
            let (want_ids, want_lp) = heedful::reference::topk::topk(&logits, v, k);
            let got_ids: Vec<u32> = ids
                .to_vec_i64(&gpu)
                .expect("read")
                .iter()
                .map(|&x| x as u32)
                .collect();
            assert_eq!(got_ids, want_ids, "{name}: topk ids r={r} v={v} k={k}");
            common::assert_close(
                &format!("{name} topk logp"),
                &lp.to_vec_f32(&gpu).expect("read"),
                &want_lp,
                1e-4,
                1e-4,
            );
        }
        // Errors: K > V, mismatched rows, wrong dtype.
        let x = Tensor::from_f32(&gpu, &[0.0; 6], &[2, 3]).expect("x");
        let bad = Tensor::zeros(&gpu, &[2, 4], DType::U32).expect("ids");
        let lp = Tensor::zeros(&gpu, &[2, 4], DType::F32).expect("lp");
        let mut rec = Recorder::new(&gpu);
        let e = topk::record_topk(&mut rec, &x, &bad, &lp)
            .unwrap_err()
            .to_string();
        assert!(e.contains("topk"), "{e}");
        let ids_f = Tensor::zeros(&gpu, &[2, 1], DType::F32).expect("ids");
        assert!(topk::record_topk(&mut rec, &x, &ids_f, &lp).is_err());
    }
}

#[test]
fn beam_select_matches_reference() {
    let gpu = common::gpu();
    let mut rng = common::Rng::new(11);
    let (b, k, eos) = (5usize, 4usize, 3u32);
    let r = b * k;
    let mut scores = vec![f32::NEG_INFINITY; r];
    for i in 0..b {
        for j in 0..=(i % k) {
            scores[i * k + j] = -(j as f32) * 0.5 - rng.uniform(0.0, 1.0);
        }
    }
    let mut cand_ids = Vec::new();
    let mut cand_lp = Vec::new();
    for _ in 0..r {
        let mut used = Vec::new();
        let mut lp = -0.1f32;
        for _ in 0..k {
            let mut t = rng.below(6) as u32;
            while used.contains(&t) {
                t = (t + 1) % 6;
            }
            used.push(t);
            cand_ids.push(t);
            cand_lp.push(lp);
            lp -= rng.uniform(0.0, 2.0);
        }
    }
    let t = |d: &[f32], s: &[usize]| Tensor::from_f32(&gpu, d, s).expect("t");
    let u = |d: &[u32], s: &[usize]| Tensor::from_u32(&gpu, d, s).expect("u");
    let cid = u(&cand_ids, &[r, k]);
    let clp = t(&cand_lp, &[r, k]);
    let sc = t(&scores, &[r]);
    let parent = u(&vec![0; r], &[r]);
    let tokens = u(&vec![0; r], &[r]);
    let mut ctl0 = vec![0u32; b * 4];
    for i in 0..b {
        ctl0[i * 4 + 1] = 2; // step
        ctl0[i * 4 + 3] = f32::NEG_INFINITY.to_bits();
    }
    let ctl = u(&ctl0, &[b, 4]);
    let fin = u(&vec![0; b * 2 * k * 3], &[b, 2 * k, 3]);
    let bufs = beam::BeamBuffers {
        cand_ids: &cid,
        cand_lp: &clp,
        scores: &sc,
        parent: &parent,
        tokens: &tokens,
        ctl: &ctl,
        fin: &fin,
    };
    let mut rec = Recorder::new(&gpu);
    beam::record_beam_select(&mut rec, &bufs, b, k, eos, false).expect("record");
    rec.submit().expect("submit");
    let read = |x: &Tensor| -> Vec<u32> {
        x.to_vec_i64(&gpu)
            .expect("read")
            .iter()
            .map(|&v| v as u32)
            .collect()
    };
    let (g_par, g_tok, g_ctl, g_fin) = (read(&parent), read(&tokens), read(&ctl), read(&fin));
    let g_sc = sc.to_vec_f32(&gpu).expect("read");
    for i in 0..b {
        let w = heedful::reference::beam::beam_step(
            &scores[i * k..i * k + k],
            &cand_ids[i * k * k..(i + 1) * k * k],
            &cand_lp[i * k * k..(i + 1) * k * k],
            k,
            2,
            eos,
            false,
            None,
            0,
        );
        for (j, &(p, tok, s)) in w.rows.iter().enumerate() {
            assert_eq!(
                g_par[i * k + j],
                (i * k) as u32 + p,
                "item {i} row {j} parent"
            );
            assert_eq!(g_tok[i * k + j], tok, "item {i} row {j} token");
            assert!((g_sc[i * k + j] - s).abs() < 1e-5, "item {i} row {j} score");
        }
        for j in w.rows.len()..k {
            assert!(
                g_sc[i * k + j] == f32::NEG_INFINITY,
                "item {i} row {j} dead"
            );
        }
        assert_eq!(g_ctl[i * 4] != 0, w.done, "item {i} done");
        assert_eq!(g_ctl[i * 4 + 1], 3, "item {i} step");
        assert_eq!(
            g_ctl[i * 4 + 2] as usize,
            w.finished.len(),
            "item {i} finished"
        );
        for (f, want) in w.finished.iter().enumerate() {
            let base = (i * 2 * k + f) * 3;
            assert_eq!(g_fin[base], 2);
            assert_eq!(g_fin[base + 1], (i * k) as u32 + want.parent);
            assert!((f32::from_bits(g_fin[base + 2]) - want.score).abs() < 1e-5);
        }
    }
    // A too-small finished buffer is an error, not a panic.
    let small = u(&vec![0; b * 3], &[b, 1, 3]);
    let bufs = beam::BeamBuffers {
        fin: &small,
        ..bufs
    };
    let e = beam::record_beam_select(&mut rec, &bufs, b, k, eos, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("beam_select"), "{e}");
}

#[test]
fn decode_errors() {
    let gpu = common::gpu();
    let model = Seq2Seq::load(&gpu, &root().join("weights/g2p_rnn_dot.safetensors")).expect("load");
    let ok = vec![model.encode_text("cat").expect("ids")];
    for opts in [
        DecodeOptions {
            beam: 0,
            ..Default::default()
        },
        DecodeOptions {
            beam: 99,
            ..Default::default()
        },
        DecodeOptions {
            steps_per_submit: 0,
            ..Default::default()
        },
        DecodeOptions {
            max_len: Some(0),
            ..Default::default()
        },
        // Histories too large to allocate: an error, not a panic or an overflow.
        DecodeOptions {
            max_len: Some(usize::MAX),
            ..Default::default()
        },
        DecodeOptions {
            max_len: Some(1_000_000_000),
            ..Default::default()
        },
    ] {
        assert!(model.decode(&gpu, &ok, &opts).is_err(), "{opts:?}");
    }
    // Odd schedules still decode the same tokens as the default one.
    let default = model
        .decode(&gpu, &ok, &DecodeOptions::default())
        .expect("decode");
    for opts in [
        DecodeOptions {
            steps_per_submit: usize::MAX,
            ..Default::default()
        },
        DecodeOptions {
            first_steps_per_input: f32::NAN,
            ..Default::default()
        },
        DecodeOptions {
            first_steps_per_input: -5.0,
            ..Default::default()
        },
        DecodeOptions {
            first_steps_per_input: 1e30,
            ..Default::default()
        },
    ] {
        let got = model.decode(&gpu, &ok, &opts).expect("decode");
        assert_eq!(got[0].tokens, default[0].tokens, "{opts:?}");
    }
    assert!(model.decode(&gpu, &[], &DecodeOptions::default()).is_err());
    assert!(model
        .decode(&gpu, &[vec![]], &DecodeOptions::default())
        .is_err());
    assert!(model
        .decode(&gpu, &[vec![9999]], &DecodeOptions::default())
        .is_err());
    // max_len cuts decoding ("cat" is K AE1 T and the end token), and the output says so, for
    // greedy (fused and per-op) and beam.
    for (beam, kernel) in [
        (1, DecodeKernel::Fused),
        (1, DecodeKernel::PerOp),
        (4, DecodeKernel::Auto),
    ] {
        let opts = DecodeOptions {
            beam,
            kernel,
            ..Default::default()
        };
        let full = model.decode(&gpu, &ok, &opts).expect("decode");
        assert_eq!(model.target_text(&full[0].tokens), "K AE1 T", "{opts:?}");
        assert!(full[0].ended, "{opts:?}");
        let cut = DecodeOptions {
            max_len: Some(2),
            ..opts
        };
        let out = model.decode(&gpu, &ok, &cut).expect("decode");
        assert_eq!(out[0].tokens, full[0].tokens[..2], "{cut:?}");
        assert!(!out[0].ended, "{cut:?}");
    }
    // Characters outside the vocabulary read as the unknown id, and are listed.
    assert_eq!(model.unknown_chars("Cat's 4a"), vec!['\'', ' ', '4']);
    assert!(model.unknown_chars("CAT").is_empty());
    let unk = model.config().src_unk_id.expect("unk id") as u32;
    let cat = model.encode_text("cat").expect("ids");
    let with_unk = model.encode_text("c'at").expect("ids");
    assert_eq!(with_unk, vec![cat[0], unk, cat[1], cat[2]]);
    assert!(model.encode_text("").is_err());
    // A file of another architecture is refused with a message naming it.
    let e =
        Seq2Seq::load(&gpu, &root().join("weights/fixtures/minilm_reference.json")).unwrap_err();
    assert!(!e.to_string().is_empty());
}

/// The pretrained g2p-en network, converted by weights/convert_g2p_en.py: heedful's phonemes
/// equal the package's own numpy `predict` on every fixture word (>= 500 cmudict words).
#[test]
fn g2p_en_matches_package_predict() {
    let fx = fixture("g2p_en.json");
    let gpu = common::gpu();
    let model =
        Seq2Seq::load(&gpu, &root().join(fx["model"].as_str().expect("model"))).expect("load");
    let words: Vec<&str> = fx["words"]
        .as_array()
        .expect("words")
        .iter()
        .map(|w| w.as_str().expect("w"))
        .collect();
    let want: Vec<&str> = fx["predict"]
        .as_array()
        .expect("predict")
        .iter()
        .map(|w| w.as_str().expect("p"))
        .collect();
    assert!(words.len() >= 500);
    let ids: Vec<Vec<u32>> = words
        .iter()
        .map(|w| model.encode_text(w).expect("ids"))
        .collect();
    let mut bad = 0;
    for (c, part) in ids.chunks(100).enumerate() {
        let out = model
            .decode(&gpu, part, &DecodeOptions::default())
            .expect("decode");
        for (j, o) in out.iter().enumerate() {
            let i = c * 100 + j;
            let got = model.target_text(&o.tokens);
            if got != want[i] {
                bad += 1;
                if bad <= 5 {
                    eprintln!("{}: got {got:?} want {:?}", words[i], want[i]);
                }
            }
        }
    }
    assert_eq!(
        bad,
        0,
        "{bad} of {} words differ from g2p-en's predict",
        words.len()
    );
}

#[test]
fn warm_decodes_create_no_gpu_objects() {
    use std::sync::atomic::Ordering;
    // A private device: tests running in parallel on the shared one would move its counters.
    let gpu = heedful::Gpu::new(&heedful::GpuOptions::from_env()).unwrap();
    let model = Seq2Seq::load(&gpu, &root().join("weights/g2p_rnn_dot.safetensors")).expect("load");
    let ids = ids2(&fixture("g2p_rnn_dot.json")["ids"]);
    let x: Vec<Vec<u32>> = ids[..5].to_vec();
    let mut x_rev = x.clone();
    x_rev.reverse();
    let opts = |beam: usize, steps: usize| DecodeOptions {
        beam,
        steps_per_submit: steps,
        keep_attention: true,
        ..Default::default()
    };
    // Cold: one decode per option set (the plan depends on the beam, not on the chunking).
    let cold: Vec<_> = [1, 4]
        .iter()
        .map(|&k| model.decode(&gpu, &x, &opts(k, 8)).unwrap())
        .collect();
    let c = gpu.counters();
    let count = || {
        (
            c.buffers.load(Ordering::SeqCst),
            c.bind_groups.load(Ordering::SeqCst),
            c.pipelines.load(Ordering::SeqCst),
        )
    };
    let before = count();
    for (i, &k) in [1usize, 4].iter().enumerate() {
        for steps in [1, 3, 8] {
            // Same shape, rows permuted: the lengths-dependent buffers are rewritten.
            let mut rev = model.decode(&gpu, &x_rev, &opts(k, steps)).unwrap();
            rev.reverse();
            assert_eq!(rev, cold[i], "beam {k}, {steps} steps, reversed rows");
            let again = model.decode(&gpu, &x, &opts(k, steps)).unwrap();
            assert_eq!(again, cold[i], "beam {k}, {steps} steps, repeated");
            // Input-sized first submission: same results.
            let sized = DecodeOptions {
                first_steps_per_input: 0.5,
                ..opts(k, steps)
            };
            let again = model.decode(&gpu, &x, &sized).unwrap();
            assert_eq!(again, cold[i], "beam {k}, {steps} steps, input-sized first");
        }
    }
    assert_eq!(
        before,
        count(),
        "(buffers, bind groups, pipelines) created by warm decodes"
    );
    // A fresh model (fresh buffers) agrees with the replayed plans.
    let fresh = Seq2Seq::load(&gpu, &root().join("weights/g2p_rnn_dot.safetensors")).unwrap();
    assert_eq!(fresh.decode(&gpu, &x, &opts(4, 8)).unwrap(), cold[1]);
}

#[test]
fn fused_kernel_refuses_what_it_does_not_run() {
    let gpu = common::gpu();
    let word = |m: &Seq2Seq| vec![m.encode_text("kernel").expect("encode")];
    let fused = |beam: usize| DecodeOptions {
        kernel: DecodeKernel::Fused,
        beam,
        ..Default::default()
    };
    for (model, what) in [
        ("g2p_lstm_mha", "multihead"),
        ("g2p_gru_tutorial", "tutorial"),
    ] {
        let m = Seq2Seq::load(&gpu, &root().join(format!("weights/{model}.safetensors")))
            .expect("load");
        let e = m.decode(&gpu, &word(&m), &fused(1)).unwrap_err();
        assert!(e.to_string().contains(what), "{model}: {e}");
        // Auto falls back to the per-op decoder.
        assert!(m.decode(&gpu, &word(&m), &DecodeOptions::default()).is_ok());
    }
    let m = Seq2Seq::load(&gpu, &root().join("weights/g2p_rnn_dot.safetensors")).expect("load");
    assert!(m.decode(&gpu, &word(&m), &fused(4)).is_ok());
    assert!(m.decode(&gpu, &word(&m), &fused(1)).is_ok());
}

#[test]
fn only_the_weight_copy_a_decode_needs_is_uploaded() {
    let gpu = common::gpu();
    let copies = |fe, fd, pe, pd| WeightCopies {
        fused_encoder: fe,
        fused_decoder: fd,
        per_op_encoder: pe,
        per_op_decoder: pd,
    };
    let fx = fixture("g2p_rnn_dot.json");
    let model = Seq2Seq::load(&gpu, &root().join("weights/g2p_rnn_dot.safetensors")).expect("load");
    // Loaded for the fused kernels (the default): no per-op recurrent weights on the GPU.
    assert_eq!(model.weight_copies(), copies(true, true, false, false));
    let x = ids2(&fx["ids"])[..8].to_vec();
    let want = &ids2(&fx["greedy"])[..8];
    let tokens = |d: Vec<Decoded>| d.into_iter().map(|d| d.tokens).collect::<Vec<_>>();
    let fused = tokens(model.decode(&gpu, &x, &DecodeOptions::default()).unwrap());
    let beam = DecodeOptions {
        beam: 4,
        ..Default::default()
    };
    model.decode(&gpu, &x, &beam).unwrap();
    assert_eq!(
        model.weight_copies(),
        copies(true, true, false, false),
        "fused greedy and beam decodes"
    );
    // A per-op decode builds the per-op copy once, and gives the same tokens.
    let per_op = DecodeOptions {
        kernel: DecodeKernel::PerOp,
        ..Default::default()
    };
    let got = tokens(model.decode(&gpu, &x, &per_op).unwrap());
    assert_eq!(model.weight_copies(), copies(true, true, true, true));
    assert_eq!(got, want, "per-op decode built on demand");
    assert_eq!(fused, want, "fused decode");
    assert_eq!(tokens(model.decode(&gpu, &x, &per_op).unwrap()), want);
    // Multi-head attention: the fused encoder, the per-op decoder.
    let mha = Seq2Seq::load(&gpu, &root().join("weights/g2p_lstm_mha.safetensors")).expect("load");
    assert_eq!(mha.weight_copies(), copies(true, false, false, true));
    let word = vec![mha.encode_text("kernel").unwrap()];
    mha.decode(&gpu, &word, &DecodeOptions::default()).unwrap();
    assert_eq!(mha.weight_copies(), copies(true, false, false, true));
}
