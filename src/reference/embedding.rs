//! Reference embedding lookup.

/// Rows of `weight` (`[V, d]`, row-major) picked by `ids`; an id outside `[0, V)` gives zeros, as
/// the GPU kernel does.
pub fn embedding(ids: &[i64], weight: &[f32], d: usize) -> Vec<f32> {
    let v = weight.len().checked_div(d).unwrap_or(0);
    let mut out = Vec::with_capacity(ids.len() * d);
    for &id in ids {
        match usize::try_from(id) {
            Ok(i) if i < v => out.extend_from_slice(&weight[i * d..(i + 1) * d]),
            _ => out.extend(std::iter::repeat_n(0.0, d)),
        }
    }
    out
}
