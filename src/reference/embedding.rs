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

/// `embedding(ids) * scale + embedding(pos_ids)` of two tables with `d` columns, the sum and
/// product in f32 as the kernel computes them; `pos_ids` holds one id per row of `ids`, or one id
/// for every row. Out-of-range ids contribute zero rows.
pub fn embedding_positioned(
    ids: &[i64],
    weight: &[f32],
    scale: f32,
    pos_ids: &[i64],
    pos_weight: &[f32],
    d: usize,
) -> Vec<f32> {
    let tok = embedding(ids, weight, d);
    let per_row: Vec<i64> = if pos_ids.len() == 1 {
        vec![pos_ids[0]; ids.len()]
    } else {
        pos_ids.to_vec()
    };
    let pos = embedding(&per_row, pos_weight, d);
    tok.iter().zip(&pos).map(|(t, p)| t * scale + p).collect()
}
