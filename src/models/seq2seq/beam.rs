//! Rebuilding beam-search results on the CPU from the histories read back once per chunk: each
//! finished or live hypothesis's tokens (and attention rows) by following parent rows back.

use super::decode::Decoded;

/// Tokens of row `row` after step `step` (inclusive), by following parents back.
fn backtrack(toks: &[u32], parents: &[u32], r: usize, step: usize, row: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(step + 1);
    let mut row = row;
    let mut s = step as isize;
    while s >= 0 {
        let i = s as usize * r + row;
        out.push(toks[i]);
        row = parents[i] as usize;
        s -= 1;
    }
    out.reverse();
    out
}

/// Attention history rows (`step * r + row`) of steps `0..=step` of the hypothesis whose step
/// `step` was computed in beam row `row` (the row before that step's selection), by following
/// parents back: row q of step s was row `parents[(s - 1) * r + q]` at step s - 1.
fn attention_rows(parents: &[u32], r: usize, step: usize, row: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(step + 1);
    let mut row = row;
    for s in (0..=step).rev() {
        out.push(s * r + row);
        if s > 0 {
            row = parents[(s - 1) * r + row] as usize;
        }
    }
    out.reverse();
    out
}

/// The best hypothesis per item, and per item the attention history rows of its steps (see
/// [`attention_rows`]; the end token's step included when it finished with one).
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_beam(
    toks: &[u32],
    parents: &[u32],
    scores: &[f32],
    ctl: &[u32],
    fin: &[u32],
    b: usize,
    k: usize,
    cap: usize,
    steps_run: usize,
    length_norm: bool,
) -> (Vec<Decoded>, Vec<Vec<usize>>) {
    let r = b * k;
    let mut out = Vec::with_capacity(b);
    let mut attn = Vec::with_capacity(b);
    for i in 0..b {
        // (tokens, score, attention rows, ended) in the order the reference appends them.
        let mut cands: Vec<(Vec<u32>, f32, Vec<usize>, bool)> = Vec::new();
        let count = (ctl[i * 4 + 2] as usize).min(cap);
        for f in 0..count {
            let base = (i * cap + f) * 3;
            let (step, prow, score) = (
                fin[base] as usize,
                fin[base + 1] as usize,
                f32::from_bits(fin[base + 2]),
            );
            let toks_f = if step == 0 {
                Vec::new()
            } else {
                backtrack(toks, parents, r, step - 1, prow)
            };
            cands.push((toks_f, score, attention_rows(parents, r, step, prow), true));
        }
        if ctl[i * 4] == 0 {
            // Ran out of steps: live hypotheses finish as they are.
            for j in 0..k {
                let row = i * k + j;
                if scores[row].is_finite() {
                    let t = backtrack(toks, parents, r, steps_run - 1, row);
                    let s = if length_norm {
                        scores[row] / t.len() as f32
                    } else {
                        scores[row]
                    };
                    let last = steps_run - 1;
                    let q = parents[last * r + row] as usize;
                    cands.push((t, s, attention_rows(parents, r, last, q), false));
                }
            }
        }
        let mut best: Option<usize> = None;
        for (j, c) in cands.iter().enumerate() {
            if best.is_none_or(|bj| c.1 > cands[bj].1) {
                best = Some(j);
            }
        }
        let d = match best {
            Some(j) => {
                attn.push(std::mem::take(&mut cands[j].2));
                Decoded {
                    tokens: cands[j].0.clone(),
                    score: cands[j].1,
                    ended: cands[j].3,
                    ..Default::default()
                }
            }
            None => {
                attn.push(Vec::new());
                Decoded::default()
            }
        };
        out.push(d);
    }
    (out, attn)
}
