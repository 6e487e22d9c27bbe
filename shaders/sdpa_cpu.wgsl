// Flash attention, CPU-adapter (lavapipe) variant: same bindings, grid and results as sdpa.wgsl
// (see there), but with the per-invocation state in named registers instead of loop-indexed
// private arrays, which lavapipe turns into per-lane scratch memory (gathers and scatters).
//
//   q: [B, H, Tq, D] f32, k: [B, H, Tk, D] f32, v: [B, H, Tk, Dv] f32 (bindings 1-3, strided)
//   mask (binding 4), out (binding 5), stats (binding 6) as in sdpa.wgsl
//
// Each invocation owns R query rows (i0 + lid + r*WG) and walks its split's keys in tiles of KT:
// an R x KT score block accumulated from vec4 loads of k (each load serves R rows), an online
// softmax update per row, then P·V with each v load serving R rows. The `{{NAME}}` markers are
// filled with straight-line code by `unrolled_flash_source` in src/kernels/sdpa.rs (q_r_c: row r's
// chunk c of q times the scale; a_r_c: its accumulator chunk; s_r_t / p_r_t: score / probability of
// row r and key t of the tile).


// Writes chunk c of an output row (elements past DV are skipped).
fn st4(base: u32, c: u32, a: vec4<f32>) {
    if (4u * c < DV) { out[base + 4u * c] = a.x; }
    if (4u * c + 1u < DV) { out[base + 4u * c + 1u] = a.y; }
    if (4u * c + 2u < DV) { out[base + 4u * c + 2u] = a.z; }
    if (4u * c + 3u < DV) { out[base + 4u * c + 3u] = a.w; }
}

// Masked score of key j for a row whose keys end at `end` (NEG when not visible).
fn masked(mb: u32, j: u32, end: u32, sc: f32) -> f32 {
    var x = NEG;
    if (j < end) {
        x = apply_mask(mb, j, sc);
    }
    return x;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let rb = wid.x % p.row_blocks;
    let split = wid.x / p.row_blocks;
    let bh = wid.y;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let i0 = rb * WG * R;
    let ks = split * p.chunk;
    let ke = min(p.tk, ks + p.chunk);
    let wg_end = causal_end(min(i0 + WG * R - 1u, p.tq - 1u), ke);
    let kb = p.k.x + b * p.k.y + h * p.k.z;
    let vb = p.v.x + b * p.v.y + h * p.v.z;
{{INIT}}
    for (var j0 = ks; j0 < wg_end; j0 += KT) {
{{TILE}}
    }
{{STORE}}
}
