//! Reference matrix products on flat row-major slices with explicit dims, f64 accumulation.
//!
//! Batched operands are `batch` matrices back to back; `b_shared` means b is one matrix used for
//! every batch entry.

/// `out[b][i, j] = alpha * sum_t a[b][i, t] * b_elem(b[b], t, j)` for every batch entry: the loop both
/// products share, with `b_elem(bb, t, j)` reading b in its own layout.
fn batched(
    a: &[f32],
    b: &[f32],
    (batch, m, k, n): (usize, usize, usize, usize),
    b_shared: bool,
    alpha: f64,
    b_elem: impl Fn(&[f32], usize, usize) -> f32,
) -> Vec<f32> {
    let mut out = vec![0.0f32; batch * m * n];
    for bi in 0..batch {
        let ab = &a[bi * m * k..(bi + 1) * m * k];
        let bb = if b_shared {
            &b[..k * n]
        } else {
            &b[bi * k * n..(bi + 1) * k * n]
        };
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|t| ab[i * k + t] as f64 * b_elem(bb, t, j) as f64)
                    .sum();
                out[bi * m * n + i * n + j] = (alpha * s) as f32;
            }
        }
    }
    out
}

/// `out[b] = a[b] @ b[b]`: a `[batch, m, k]`, b `[batch|1, k, n]` -> `[batch, m, n]`.
pub fn matmul(
    a: &[f32],
    b: &[f32],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    b_shared: bool,
) -> Vec<f32> {
    batched(a, b, (batch, m, k, n), b_shared, 1.0, |bb, t, j| {
        bb[t * n + j]
    })
}

/// `out[b] = alpha * a[b] @ b[b]^T`: a `[batch, m, k]`, b `[batch|1, n, k]` -> `[batch, m, n]`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_bt(
    a: &[f32],
    b: &[f32],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    b_shared: bool,
    alpha: f32,
) -> Vec<f32> {
    batched(
        a,
        b,
        (batch, m, k, n),
        b_shared,
        alpha as f64,
        |bb, t, j| bb[j * k + t],
    )
}

/// `nn.Linear`: x `[m, k]`, w `[n, k]`, optional bias `[n]` -> `[m, n]`.
pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                .sum();
            out[i * n + j] = (s + bias.map_or(0.0, |b| b[j] as f64)) as f32;
        }
    }
    out
}
