//! Reference layout and pooling ops.

/// `x.transpose(1, 2)` for x `[a, b, c, d]` -> `[a, c, b, d]`.
pub fn transpose12(x: &[f32], [a, b, c, d]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for ai in 0..a {
        for bi in 0..b {
            for ci in 0..c {
                for di in 0..d {
                    out[((ai * c + ci) * b + bi) * d + di] = x[((ai * b + bi) * c + ci) * d + di];
                }
            }
        }
    }
    out
}

/// Masked mean over t of x `[b, t, e]` with mask `[b, t]`, then L2-normalized when `normalize`
/// (sentence-transformers: denominators clamped at 1e-9 and 1e-12).
pub fn mean_pool(x: &[f32], mask: &[i32], [b, t, e]: [usize; 3], normalize: bool) -> Vec<f32> {
    let mut out = vec![0.0f32; b * e];
    for bi in 0..b {
        let count = (0..t).filter(|&ti| mask[bi * t + ti] != 0).count() as f64;
        let mut row = vec![0.0f64; e];
        for ti in 0..t {
            if mask[bi * t + ti] != 0 {
                for (ei, r) in row.iter_mut().enumerate() {
                    *r += x[(bi * t + ti) * e + ei] as f64;
                }
            }
        }
        for r in row.iter_mut() {
            *r /= count.max(1e-9);
        }
        if normalize {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            for r in row.iter_mut() {
                *r /= norm;
            }
        }
        for ei in 0..e {
            out[bi * e + ei] = row[ei] as f32;
        }
    }
    out
}
