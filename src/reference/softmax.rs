//! Reference softmax over the last dim, in f64.

/// Softmax of each row of `n` elements of `x` (`x.len()` a multiple of `n`).
///
/// `-inf` entries get 0; a row that is entirely `-inf` gives all zeros (as the GPU kernel does).
pub fn softmax(x: &[f32], n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    if n == 0 {
        return out;
    }
    for row in x.chunks(n) {
        let m = row
            .iter()
            .map(|&v| v as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            out.extend(std::iter::repeat_n(0.0, row.len()));
            continue;
        }
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|&v| (v / s) as f32));
    }
    out
}
