// Merge of sdpa_cache.wgsl's chunk partials: out[r, h*DH + c] = sum_k acc_k[c] e^(m_k - M) /
// sum_k l_k e^(m_k - M) over the live chunks k < ceil((s + 1) / chunk), M = max_k m_k.
//
// Bindings (generated from `CacheMergeBindings` in src/kernels/kv_cache/mod.rs):
//   p      uniform Params
//   part:  [R*H, nsplit, DH] f32   binding 1
//   stats: [R*H, nsplit, 2] f32    binding 2
//   step:  [1] u32                 binding 3
//   out:   [R, E] f32              binding 4
//
// Constants: WG, DH. Grid: x = ceil(DH / WG), y = R * H.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x * WG + lid;
    let rh = wid.y;
    if (c >= DH) {
        return;
    }
    let r = rh / p.heads;
    let h = rh - r * p.heads;
    let n = min(step[0] + 1u, p.t);
    let live = min((n + p.chunk - 1u) / p.chunk, p.nsplit);
    let sb = rh * p.nsplit;
    var mx = -3.0e38;
    for (var k = 0u; k < live; k++) {
        mx = max(mx, stats[2u * (sb + k)]);
    }
    var den = 0.0;
    var num = 0.0;
    for (var k = 0u; k < live; k++) {
        let w = exp(stats[2u * (sb + k)] - mx);
        den += stats[2u * (sb + k) + 1u] * w;
        num += part[(sb + k) * DH + c] * w;
    }
    out[r * p.e + h * DH + c] = select(0.0, num / den, den > 0.0);
}
