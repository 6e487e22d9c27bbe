//! Reference for `kernels::beam`: one beam selection step for one batch item, as
//! `weights/seq2seq.py::beam_search` does it.

/// A finished hypothesis: the step it ended at, the row it continued, its (normalized) score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Finished {
    /// Step index (0-based) at which the end token was chosen.
    pub step: u32,
    /// Row (within the item) whose hypothesis it extends.
    pub parent: u32,
    /// Score, divided by its length (step + 1) with length normalization.
    pub score: f32,
}

/// Result of one step: new rows (parent row, token, score; dead rows are absent), finished ones,
/// and whether the item is done.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    /// (parent row, token, score) of each new live row, best first.
    pub rows: Vec<(u32, u32, f32)>,
    /// Hypotheses finished at this step, in candidate order.
    pub finished: Vec<Finished>,
    /// The item stops here.
    pub done: bool,
}

/// One step: `scores [K]` (row scores, -inf for dead rows), `cand_ids`, `cand_lp [K, K]`,
/// `best_fin` (best finished score so far, if any) and `fin_before` (finished count so far).
#[allow(clippy::too_many_arguments)]
pub fn beam_step(
    scores: &[f32],
    cand_ids: &[u32],
    cand_lp: &[f32],
    k: usize,
    step: u32,
    eos: u32,
    length_norm: bool,
    best_fin: Option<f32>,
    fin_before: usize,
) -> StepResult {
    let mut cands = Vec::new();
    for r in 0..k {
        if !scores[r].is_finite() {
            continue;
        }
        for j in 0..k {
            let s = scores[r] + cand_lp[r * k + j];
            if s.is_finite() {
                cands.push((s, r as u32, cand_ids[r * k + j]));
            }
        }
    }
    // Stable: equal scores keep row-major order.
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut rows = Vec::new();
    let mut finished = Vec::new();
    let mut best = best_fin;
    for (s, r, tok) in cands {
        if tok == eos {
            let score = if length_norm {
                s / (step + 1) as f32
            } else {
                s
            };
            finished.push(Finished {
                step,
                parent: r,
                score,
            });
            best = Some(best.map_or(score, |b: f32| b.max(score)));
        } else {
            rows.push((r, tok, s));
            if rows.len() == k {
                break;
            }
        }
    }
    let mut done = fin_before + finished.len() >= k || rows.is_empty();
    if !length_norm {
        if let (Some(b), Some(l)) = (best, rows.first()) {
            done |= b >= l.2;
        }
    }
    StepResult {
        rows,
        finished,
        done,
    }
}
