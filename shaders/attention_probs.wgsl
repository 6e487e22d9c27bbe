// Attention weights on request: probs[b, h, i, j] = exp(q_i . k_j * scale + mask - lse_i), where
// lse_i is the row's log-sum-exp written by the flash kernel (sdpa.wgsl / sdpa_merge.wgsl with flags
// bit 0). A separate pass, so the flash path never materializes [Tq, Tk] unless asked; every element
// is independent (no reductions, no barriers).
//
// Bindings (q, k declared by the Rust side with loaders ld_q/ld_k):
//   p:     Params uniform (src/kernels/sdpa/params.rs)
//   q:     [B, H, Tq, D] f32 (strided, binding 1)
//   k:     [B, H, Tk, D] f32 (strided, binding 2)
//   lse:   [B*H*Tq] f32 (binding 3)
//   mask:  broadcast to [B, H, Tq, Tk] (binding 4)
//   out:   [B, H, Tq, Tk] f32, or [B, Tq, Tk] averaged over heads when flags bit 0 (binding 5)
//
// Constants: WG, D, D4, VEC. Grid: x = ceil(Tk / WG), y = Tq, z = B*H (B when averaging).
// Fully masked rows give zeros.


fn prob(b: u32, h: u32, i: u32, j: u32) -> f32 {
    let bh = b * p.heads + h;
    let r = bh * p.tq + i;
    let lz = lse[r];
    let qb = p.q.x + b * p.q.y + h * p.q.z + i * p.q.w;
    let kb = p.k.x + b * p.k.y + h * p.k.z + j * p.k.w;
    var s = 0.0;
    for (var c = 0u; c < D4; c++) {
        s += dot(ld_q(qb, c), ld_k(kb, c));
    }
    var sc = NEG;
    if (j < causal_end(i, p.tk)) {
        sc = apply_mask(p.m.x + b * p.m.y + h * p.m.z + i * p.m.w, j, s * p.scale);
    }
    return select(0.0, exp(sc - lz), sc > NEG && lz > NEG);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = wid.x * WG + lid;
    let i = wid.y;
    let z = wid.z;
    let jj = min(j, p.tk - 1u);
    if ((p.flags & 1u) != 0u) {
        let b = z;
        var acc = 0.0;
        for (var h = 0u; h < p.heads; h++) {
            acc += prob(b, h, i, jj);
        }
        if (j < p.tk) {
            out[(b * p.tq + i) * p.tk + j] = acc / f32(p.heads);
        }
    } else {
        let b = z / p.heads;
        let h = z % p.heads;
        let v = prob(b, h, i, jj);
        if (j < p.tk) {
            out[(z * p.tq + i) * p.tk + j] = v;
        }
    }
}
