// Concatenation along the last dim: out[r, :] = [a[r, :]; b[r, :]] (a decoder's [emb; context]
// input and the [context; h] of the attentional layer).
//
// Bindings:
//   p    uniform Params
//   a:   [R, DA] f32        binding 1
//   b:   [R, DB] f32        binding 2
//   out: [R, DA + DB] f32   binding 3
//
// Constants from the Rust side: WG.
// Grid: 1-D over R * (DA + DB) elements, linear index (wid.x + wid.y * nwg.x) * WG + lid.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let w = p.da + p.db;
    let r = i / w;
    let j = i - r * w;
    if (j < p.da) {
        out[i] = a[r * p.da + j];
    } else {
        out[i] = b[r * p.db + (j - p.da)];
    }
}
