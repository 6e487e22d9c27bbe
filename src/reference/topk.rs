//! Reference for `kernels::topk`: per row, the K largest logits (ties to the lower index) and
//! their log-softmax values, f64 log-sum-exp.

/// `logits [R, V]` -> (ids `[R, K]`, logp `[R, K]`).
pub fn topk(logits: &[f32], v: usize, k: usize) -> (Vec<u32>, Vec<f32>) {
    let mut ids = Vec::new();
    let mut lps = Vec::new();
    for row in logits.chunks(v) {
        let m = row
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, |a, x| a.max(x as f64));
        let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &j in &order[..k] {
            ids.push(j as u32);
            lps.push((row[j] as f64 - lse) as f32);
        }
    }
    (ids, lps)
}
