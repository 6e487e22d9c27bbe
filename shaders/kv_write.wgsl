// KV cache write: step s's key and value rows go to position s of one layer's cache planes.
//   out-of-range steps (s >= T) write nothing.
//
// Bindings (generated from `KvWriteBindings` in src/kernels/kv_cache/mod.rs):
//   p      uniform Params
//   k:     [R, C] f32                      binding 1 (this step's keys: E columns from p.k_col)
//   v:     [R, C] f32                      binding 2 (values: E columns from p.v_col; the same
//                                          buffer as k when one projection made both)
//   (C = p.src_stride: E for separate k and v rows, 3E for a fused q/k/v projection)
//   step:  [1] u32                         binding 3 (s, from the loop runtime)
//   kv:    [2L, R, T, E] f32 cache planes  binding 4 (keys at p.k_off, values at p.v_off)
//
// Constants: WG. Grid: 1-D over R * E, index (wid.x + wid.y * nwg.x) * WG + lid.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let s = step[0];
    if (i >= p.n || s >= p.t) {
        return;
    }
    let r = i / p.e;
    let c = i - r * p.e;
    let at = (r * p.t + s) * p.e + c;
    let src = r * p.src_stride + c;
    kv[p.k_off + at] = k[src + p.k_col];
    kv[p.v_off + at] = v[src + p.v_col];
}
