//! CPU reference of Hugging Face `generate` (transformers 5.25, `_sample` without sampling and
//! `_beam_search`) for an encoder-decoder, driven by a logits closure: the oracle of the GPU search
//! (`models::marian::search`) and what a CPU model forward plugs into.
//!
//! It follows the installed version's tensor code step by step, in f32 where torch computes in f32
//! (the `-1e9` penalties, the length-penalty division, the running scores), so rows and scores
//! equal HF's (`weights/make_search_fixtures.py`, `tests/marian_search.rs`). torch.topk's order
//! among exactly equal scores is unspecified; here equal scores keep the lower flat index first
//! (beam-major: `beam * V + token`), the rule the GPU kernels follow too.
//!
//! The closure gets `(step, tokens [R], parents)` and returns logits `[R, V]`: `tokens` are the
//! tokens step `step` consumes (the decoder start at step 0), `parents` (beam search, from step 1)
//! the row each row continues, so a model with a cache gathers its rows by it first.

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::models::marian::search::{GenerateOptions, Hypothesis};

const OP: &str = "reference generate";
/// HF's `-1.0e9` "never" score.
const NEG: f32 = -1.0e9;

/// Applies `generate`'s logits processors (bad words, min length, forced EOS, in HF's order) to
/// one row `x [V]` whose sequence so far is `seq` (decoder start first).
pub fn process_row(opts: &GenerateOptions, bad_words: &[Vec<u32>], seq: &[u32], x: &mut [f32]) {
    let cur_len = seq.len();
    // NoBadWordsLogitsProcessor: bias = 0, -inf where a banned sequence would complete; x + bias.
    let mut banned = vec![false; x.len()];
    for w in bad_words {
        let (last, prefix) = match w.split_last() {
            Some(p) => p,
            None => continue,
        };
        if prefix.len() <= seq.len() && seq.ends_with(prefix) {
            if let Some(b) = banned.get_mut(*last as usize) {
                *b = true;
            }
        }
    }
    for (v, b) in x.iter_mut().zip(&banned) {
        *v += if *b { f32::NEG_INFINITY } else { 0.0 };
    }
    let eos = opts.eos_token_id as usize;
    // MinLengthLogitsProcessor (min_new_tokens folds into min_length()).
    if cur_len < opts.min_length() {
        if let Some(v) = x.get_mut(eos) {
            *v = f32::NEG_INFINITY;
        }
    }
    // ForcedEOSTokenLogitsProcessor.
    if let Some(f) = opts.forced_eos_token_id {
        if cur_len + 1 == opts.max_length() {
            x.fill(f32::NEG_INFINITY);
            if let Some(v) = x.get_mut(f as usize) {
                *v = 0.0;
            }
        }
    }
}

/// `log_softmax` of one row in place: `(x - max) - log(sum(exp(x - max)))`.
pub fn log_softmax_row(x: &mut [f32]) {
    let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        x.fill(f32::NAN);
        return;
    }
    let s: f64 = x.iter().map(|&v| ((v - m) as f64).exp()).sum();
    let ls = s.ln() as f32;
    for v in x.iter_mut() {
        *v = (*v - m) - ls;
    }
}

/// The order torch.topk / argmax give (descending, NaN largest), ties to the lower index.
pub fn better(a: f32, ai: usize, b: f32, bi: usize) -> bool {
    match (a.is_nan(), b.is_nan()) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => ai < bi,
        _ => a > b || (a == b && ai < bi),
    }
}

fn order(a: (f32, usize), b: (f32, usize)) -> Ordering {
    if better(a.0, a.1, b.0, b.1) {
        Ordering::Less
    } else if better(b.0, b.1, a.0, a.1) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// Indices of the `k` best of `vals` in order (see [`better`]).
pub fn top_k(vals: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<(f32, usize)> = vals.iter().cloned().zip(0..).collect();
    let k = k.min(idx.len());
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, |&a, &b| order(a, b));
        idx.truncate(k);
    }
    idx.sort_by(|&a, &b| order(a, b));
    idx.truncate(k);
    idx.into_iter().map(|(_, i)| i).collect()
}

/// HF generate for `batch` items of a model with `vocab` tokens: per item,
/// `num_return_sequences` hypotheses in HF's order, and the steps run.
pub fn generate<F>(
    opts: &GenerateOptions,
    batch: usize,
    vocab: usize,
    logits: F,
) -> Result<(Vec<Vec<Hypothesis>>, usize)>
where
    F: FnMut(usize, &[u32], Option<&[u32]>) -> Result<Vec<f32>>,
{
    opts.validate(Some(vocab))?;
    if opts.is_beam() {
        beam(opts, batch, vocab, logits)
    } else {
        greedy(opts, batch, vocab, logits)
    }
}

fn call<F>(f: &mut F, step: usize, toks: &[u32], par: Option<&[u32]>, n: usize) -> Result<Vec<f32>>
where
    F: FnMut(usize, &[u32], Option<&[u32]>) -> Result<Vec<f32>>,
{
    let l = f(step, toks, par)?;
    if l.len() != n {
        return Err(Error::shape(
            OP,
            format!(
                "the logits closure returned {} values at step {step}, expected {n}",
                l.len()
            ),
        ));
    }
    Ok(l)
}

fn greedy<F>(
    opts: &GenerateOptions,
    b: usize,
    v: usize,
    mut logits: F,
) -> Result<(Vec<Vec<Hypothesis>>, usize)>
where
    F: FnMut(usize, &[u32], Option<&[u32]>) -> Result<Vec<f32>>,
{
    let bad = opts.bad_words();
    let mut seqs: Vec<Vec<u32>> = vec![vec![opts.decoder_start_token_id]; b];
    let mut unfinished = vec![true; b];
    let mut steps = 0;
    while steps < opts.max_steps() && b > 0 {
        let s = steps;
        let toks: Vec<u32> = seqs.iter().map(|q| q[q.len() - 1]).collect();
        let mut l = call(&mut logits, s, &toks, None, b * v)?;
        for (r, row) in l.chunks_mut(v).enumerate() {
            process_row(opts, &bad, &seqs[r], row);
            let best = top_k(row, 1)[0] as u32;
            let next = if unfinished[r] {
                best
            } else {
                opts.pad_token_id
            };
            seqs[r].push(next);
            // EosTokenCriteria and MaxLengthCriteria on the new sequence.
            let ends = next == opts.eos_token_id || seqs[r].len() >= opts.max_length();
            unfinished[r] = unfinished[r] && !ends;
        }
        steps += 1;
        if unfinished.iter().all(|u| !u) {
            break;
        }
    }
    let out = seqs
        .into_iter()
        .enumerate()
        .map(|(r, q)| {
            let end = q[1..]
                .iter()
                .position(|&t| t == opts.eos_token_id)
                .map_or(q.len(), |p| p + 2);
            let ids = q[..end].to_vec();
            let rows = (0..ids.len() - 1).map(|s| s * b + r).collect();
            vec![Hypothesis {
                ids,
                score: 0.0,
                rows,
            }]
        })
        .collect();
    Ok((out, steps))
}

/// A running beam or a kept finished hypothesis.
#[derive(Clone, Debug)]
struct Beam {
    seq: Vec<u32>,
    rows: Vec<usize>,
}

fn beam<F>(
    opts: &GenerateOptions,
    b: usize,
    v: usize,
    mut logits: F,
) -> Result<(Vec<Vec<Hypothesis>>, usize)>
where
    F: FnMut(usize, &[u32], Option<&[u32]>) -> Result<Vec<f32>>,
{
    let k = opts.num_beams;
    let r = b * k;
    let keep = 2 * k;
    let bad = opts.bad_words();
    let start = Beam {
        seq: vec![opts.decoder_start_token_id],
        rows: Vec::new(),
    };
    let never = opts.early_stopping == crate::models::marian::search::EarlyStopping::Never;
    let es_true = opts.early_stopping == crate::models::marian::search::EarlyStopping::Done;
    // running_sequences / running_beam_scores: beam 0 at 0, the others at -1e9.
    let mut running: Vec<Beam> = vec![start.clone(); r];
    let mut run_scores: Vec<f32> = (0..r).map(|i| if i % k == 0 { 0.0 } else { NEG }).collect();
    // sequences / beam_scores / is_sent_finished: K slots per item (placeholders hold no
    // hypothesis: HF's start-then-fill rows).
    let mut fin: Vec<Option<Beam>> = vec![None; r];
    let mut fin_scores = vec![NEG; r];
    let mut is_fin = vec![false; r];
    let mut unsat = vec![true; b];
    let mut parents: Option<Vec<u32>> = None;
    let mut steps = 0;
    while steps < opts.max_steps() && b > 0 {
        let s = steps;
        let cur_len = 1 + s;
        let toks: Vec<u32> = running.iter().map(|q| q.seq[q.seq.len() - 1]).collect();
        let mut l = call(&mut logits, s, &toks, parents.as_deref(), r * v)?;
        for (row, x) in l.chunks_mut(v).enumerate() {
            log_softmax_row(x);
            process_row(opts, &bad, &running[row].seq, x);
            for val in x.iter_mut() {
                *val += run_scores[row];
            }
        }
        let mut new_running = Vec::with_capacity(r);
        let mut new_scores = Vec::with_capacity(r);
        let mut new_parents = Vec::with_capacity(r);
        let mut all_hit = true;
        for i in 0..b {
            let cand = &l[i * k * v..(i + 1) * k * v];
            let top = top_k(cand, keep);
            let lp: Vec<f32> = top.iter().map(|&j| cand[j]).collect();
            let src: Vec<usize> = top.iter().map(|&j| i * k + j / v).collect();
            let tok: Vec<u32> = top.iter().map(|&j| (j % v) as u32).collect();
            let hits: Vec<bool> = tok
                .iter()
                .map(|&t| t == opts.eos_token_id || cur_len + 1 >= opts.max_length())
                .collect();
            all_hit &= hits.iter().all(|&h| h);
            let cand_beam = |j: usize| {
                let p = &running[src[j]];
                let mut seq = p.seq.clone();
                seq.push(tok[j]);
                let mut rows = p.rows.clone();
                rows.push(s * r + src[j]);
                Beam { seq, rows }
            };
            // _get_running_beams_for_next_iteration.
            let run_lp: Vec<f32> = lp
                .iter()
                .zip(&hits)
                .map(|(&x, &h)| x + if h { NEG } else { 0.0 })
                .collect();
            for j in top_k(&run_lp, k) {
                new_running.push(cand_beam(j));
                new_scores.push(run_lp[j]);
                new_parents.push(src[j] as u32);
            }
            // _update_finished_beams.
            let full = es_true && is_fin[i * k..(i + 1) * k].iter().all(|&f| f);
            let div = opts.length_divisor(cur_len);
            let fs: Vec<f32> = (0..keep)
                .map(|j| {
                    let did = hits[j] && j < k;
                    let mut x = lp[j] / div;
                    x += if full { NEG } else { 0.0 };
                    x += if unsat[i] { 0.0 } else { NEG };
                    x += if did { 0.0 } else { NEG };
                    x
                })
                .collect();
            let mut merged: Vec<f32> = fin_scores[i * k..(i + 1) * k].to_vec();
            merged.extend_from_slice(&fs);
            let old: Vec<(Option<Beam>, bool)> = (0..k)
                .map(|j| (fin[i * k + j].clone(), is_fin[i * k + j]))
                .collect();
            for (slot, m) in top_k(&merged, k).into_iter().enumerate() {
                let at = i * k + slot;
                fin_scores[at] = merged[m];
                if m < k {
                    fin[at] = old[m].0.clone();
                    is_fin[at] = old[m].1;
                } else {
                    let j = m - k;
                    fin[at] = Some(cand_beam(j));
                    is_fin[at] = hits[j] && j < k;
                }
            }
        }
        running = new_running;
        run_scores = new_scores;
        parents = Some(new_parents);
        steps += 1;
        // _check_early_stop_heuristic with cur_len + 1.
        let best_len = if never && opts.length_penalty > 0.0 {
            opts.max_length() - 1
        } else {
            cur_len
        };
        let div = opts.length_divisor(best_len);
        for i in 0..b {
            let best = run_scores[i * k] / div;
            let slots = i * k..(i + 1) * k;
            let worst_fin = fin_scores[slots.clone()]
                .iter()
                .cloned()
                .fold(f32::INFINITY, f32::min);
            let any = slots
                .map(|at| if is_fin[at] { worst_fin } else { NEG })
                .any(|w| best > w);
            unsat[i] = unsat[i] && any;
        }
        let improvement = unsat.iter().any(|&u| u);
        let open = !(is_fin.iter().all(|&f| f) && es_true);
        if !(improvement && open && !all_hit) {
            break;
        }
    }
    let out = (0..b)
        .map(|i| {
            (0..opts.num_return_sequences)
                .map(|j| {
                    let at = i * k + j;
                    match &fin[at] {
                        Some(h) => Hypothesis {
                            ids: h.seq.clone(),
                            score: fin_scores[at],
                            rows: h.rows.clone(),
                        },
                        None => Hypothesis {
                            ids: vec![opts.decoder_start_token_id],
                            score: fin_scores[at],
                            rows: Vec::new(),
                        },
                    }
                })
                .collect()
        })
        .collect();
    Ok((out, steps))
}
