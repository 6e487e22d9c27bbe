// KV cache reorder for beam search: row r of every cache plane takes row parents[r] of the other
// (ping-pong) buffer, positions 0 .. s-1 only (step s writes position s itself afterwards).
//
// Bindings (generated from `KvGatherBindings` in src/kernels/kv_cache/mod.rs):
//   p        uniform Params
//   src:     [P, R, T, E] f32   binding 1 (the previous step's caches)
//   parents: [R] u32            binding 2 (the row each row continues; out of range = itself)
//   step:    [1] u32            binding 3 (s)
//   dst:     [P, R, T, E] f32   binding 4
//
// Constants: WG. Grid: 1-D over R * E; each invocation copies one column of one row over every
// plane and position (O(s) work per step, not O(T)).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let r = i / p.e;
    let c = i - r * p.e;
    let rows = p.n / p.e;
    var src_row = parents[r];
    if (src_row >= rows) {
        src_row = r;
    }
    let s = min(step[0], p.t);
    let plane = rows * p.t * p.e;
    for (var pl = 0u; pl < p.planes; pl++) {
        for (var t = 0u; t < s; t++) {
            dst[pl * plane + (r * p.t + t) * p.e + c] = src[pl * plane + (src_row * p.t + t) * p.e + c];
        }
    }
}
