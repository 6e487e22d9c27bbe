//! Reference layer norm over the last dim, in f64 (two-pass mean and biased variance).

/// `F.layer_norm` of each row of `d = weight.len()` elements of `x`.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f64) -> Vec<f32> {
    let d = weight.len();
    let mut out = Vec::with_capacity(x.len());
    if d == 0 {
        return out;
    }
    for row in x.chunks(d) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        out.extend(
            row.iter()
                .zip(weight.iter().zip(bias))
                .map(|(&v, (&w, &b))| ((v as f64 - mean) * rstd * w as f64 + b as f64) as f32),
        );
    }
    out
}
