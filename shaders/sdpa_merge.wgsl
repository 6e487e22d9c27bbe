// Flash-decoding, second pass: combines the per-split partial softmax results of sdpa_decode.wgsl
// (or sdpa.wgsl with nsplit > 1) into the output rows.
//
//   y = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s,   M = max_s m_s
//
// Bindings:
//   p:     Params uniform (src/kernels/sdpa/params.rs; uses tq, heads, nsplit, o, flags)
//   part:  [B*H*Tq, nsplit, Dv] f32 (binding 1)
//   stats: [B*H*Tq, nsplit, 2] f32 (max, sum) (binding 2)
//   out:   [B, H, Tq, Dv] f32 (strided by o_*) (binding 3)
//   lse:   [B*H*Tq] f32 log-sum-exp per row, written when flags bit 0 (binding 4)
//
// Constants: WG, DV. Grid: x = ceil(Dv / WG), y = B*H*Tq. Each invocation owns one output column
// and walks the splits; the (max, sum) pairs are the same for the whole workgroup (uniform loads).


@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.y;
    let d = wid.x * WG + lid;
    let s0 = r * p.nsplit;
    var mx = NEG;
    for (var s = 0u; s < p.nsplit; s++) {
        mx = max(mx, stats[2u * (s0 + s)]);
    }
    var l = 0.0;
    var a = 0.0;
    let dd = min(d, DV - 1u);
    for (var s = 0u; s < p.nsplit; s++) {
        let w = exp(stats[2u * (s0 + s)] - mx);
        l += w * stats[2u * (s0 + s) + 1u];
        a += w * part[(s0 + s) * DV + dd];
    }
    if (d >= DV) {
        return;
    }
    let bh = r / p.tq;
    let i = r % p.tq;
    let b = bh / p.heads;
    let h = bh % p.heads;
    out[p.o.x + b * p.o.y + h * p.o.z + i * p.o.w + d] = select(0.0, a / l, l > 0.0);
    if (d == 0u && (p.flags & 1u) != 0u) {
        lse[r] = select(NEG, mx + log(l), l > 0.0);
    }
}
