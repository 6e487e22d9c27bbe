//! Reference for `kernels::topk`: per row, the K largest logits (ties to the lower index) and
//! their log-softmax values, f64 log-sum-exp. NaN logits are skipped, as the kernel skips them.

/// `logits [R, V]` -> (ids `[R, K]`, logp `[R, K]`).
pub fn topk(logits: &[f32], v: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
    let mut ids = Vec::new();
    let mut lps = Vec::new();
    for row in logits.chunks(v) {
        let numbers = || row.iter().map(|&x| x as f64).filter(|x| !x.is_nan());
        let m = numbers().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + numbers().map(|x| (x - m).exp()).sum::<f64>().ln();
        // NaNs last, then descending, ties to the lower index.
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| {
            (row[a].is_nan().cmp(&row[b].is_nan()))
                .then(row[b].total_cmp(&row[a]))
                .then(a.cmp(&b))
        });
        for &j in &order[..k] {
            ids.push(j as u32);
            lps.push((row[j] as f64 - lse) as f32);
        }
    }
    (ids, lps)
}
