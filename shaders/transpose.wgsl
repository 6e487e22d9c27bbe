// Swaps dims 1 and 2 of a 4-D tensor: x [A, B, C, D] -> out [A, C, B, D], D contiguous.
// Splits Transformer heads ([B, T, H, Dh] -> [B, H, T, Dh]) and merges them back.
//
// Bindings:
//   params          uniform
//   x:   [A, B, C, D] f32
//   out: [A, C, B, D] f32
// Grid: 1-D over output elements in workgroups of WG (split into x/y past the per-dim limit).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let n = p.a * p.b * p.c * p.d;
    if (i >= n) {
        return;
    }
    // i indexes out [a, c, b, d].
    let di = i % p.d;
    let bi = (i / p.d) % p.b;
    let ci = (i / (p.d * p.b)) % p.c;
    let ai = i / (p.d * p.b * p.c);
    out[i] = x[((ai * p.b + bi) * p.c + ci) * p.d + di];
}
