//! Fairness under load: one process embeds (BERT) and decodes (seq2seq) from two threads on one
//! shared [`heedful::Gpu`]. The device runs submissions in order, so a thread waits behind the
//! submission in flight; a long embed batch goes in bounded runs (one submission each) so that a
//! decode waits behind one run, not the whole batch. The bounds below are liveness bounds against
//! starvation, not speed claims: 10x the solo time, plus two embed runs per decode submission,
//! plus a fixed slack. See ARCHITECTURE.md, "Threads and ordering".

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::minilm_dir;
use heedful::models::bert::{BertEncoder, LoadOptions};
use heedful::models::seq2seq::{DecodeOptions, Seq2Seq};

/// One decode call per word, each one submission (the whole decode fits in `steps_per_submit`).
const WORDS: [&str; 2] = ["cat", "attention"];

fn decode_words(model: &Seq2Seq, gpu: &heedful::Gpu) -> Vec<Vec<u32>> {
    let opts = DecodeOptions {
        steps_per_submit: 64,
        ..Default::default()
    };
    WORDS
        .iter()
        .map(|w| {
            let ids = model.encode_text(w).expect("ids");
            model.decode(gpu, &[ids], &opts).expect("decode")[0]
                .tokens
                .clone()
        })
        .collect()
}

fn submits(gpu: &heedful::Gpu) -> u64 {
    gpu.counters().submits.load(Ordering::SeqCst)
}

#[test]
fn a_long_embed_batch_does_not_starve_a_decoding_thread() {
    let gpu = common::gpu();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let g2p = Seq2Seq::load(&gpu, &root.join("weights/g2p_rnn_dot.safetensors")).expect("g2p");
    let mut bert = BertEncoder::load(&gpu, &minilm_dir(), &LoadOptions::default()).expect("minilm");
    // Runs of about three texts: the batch below is at least twelve runs.
    bert.set_tokens_per_run(64);
    let session = bert.session();
    let texts: Vec<String> = (0..48)
        .map(|i| format!("sentence {i} says that the quick brown fox jumps over the lazy dog"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let runs = bert.runs(&refs).expect("runs");
    assert!(runs.len() >= 12, "{runs:?}");
    let one_run = &refs[runs[0].clone()];
    // Warm up: pipelines compiled, plans built.
    let want_tokens = decode_words(&g2p, &gpu);
    let want_emb = bert.embed(&session, &refs).expect("embed");

    // Solo times (nothing else runs on this GPU: the test binary holds this one test).
    let (s0, t) = (submits(&gpu), Instant::now());
    assert_eq!(decode_words(&g2p, &gpu), want_tokens);
    let (decode_solo, decode_submits) = (t.elapsed(), submits(&gpu) - s0);
    let t = Instant::now();
    assert_eq!(bert.embed(&session, &refs).expect("embed"), want_emb);
    let embed_solo = t.elapsed();
    let run_solo = (0..2)
        .map(|_| {
            let t = Instant::now();
            bert.embed(&session, one_run).expect("one run");
            t.elapsed()
        })
        .max()
        .expect("timed");
    eprintln!(
        "solo: decode {decode_solo:?} ({decode_submits} submissions), embed {embed_solo:?} \
         ({} runs, one run {run_solo:?})",
        runs.len()
    );

    let embed_done = AtomicBool::new(false);
    let before = submits(&gpu);
    let (decode_mixed, embed_mixed, decode_first) = std::thread::scope(|s| {
        let e = s.spawn(|| {
            let t = Instant::now();
            let got = bert.embed(&session, &refs).expect("embed");
            embed_done.store(true, Ordering::SeqCst);
            (t.elapsed(), got)
        });
        let d = s.spawn(|| {
            // Start once the embed has submitted: the decode then queues behind its work.
            while submits(&gpu) == before {
                std::thread::sleep(Duration::from_millis(1));
            }
            let t = Instant::now();
            let got = decode_words(&g2p, &gpu);
            (t.elapsed(), got, !embed_done.load(Ordering::SeqCst))
        });
        let (dt, dtok, first) = d.join().expect("decode thread");
        let (et, emb) = e.join().expect("embed thread");
        assert_eq!(dtok, want_tokens, "decode under load");
        assert_eq!(emb, want_emb, "embed under load");
        (dt, et, first)
    });
    eprintln!(
        "mixed: decode {decode_mixed:?} (finished before the embed: {decode_first}), embed \
         {embed_mixed:?}"
    );
    let slack = Duration::from_millis(500);
    let decode_bound = decode_solo * 10 + run_solo * (2 * decode_submits as u32) + slack;
    assert!(
        decode_mixed <= decode_bound,
        "decode starved: {decode_mixed:?} with an embed running (bound {decode_bound:?}), \
         {decode_solo:?} alone"
    );
    let embed_bound = embed_solo * 10 + slack;
    assert!(
        embed_mixed <= embed_bound,
        "embed starved: {embed_mixed:?} with a decode running (bound {embed_bound:?}), \
         {embed_solo:?} alone"
    );
}
