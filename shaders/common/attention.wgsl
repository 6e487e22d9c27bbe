// A fragment shared by the attention kernels (sdpa.wgsl, sdpa_cpu.wgsl, sdpa_decode.wgsl,
// sdpa_merge.wgsl, attention_probs.wgsl): the masked-score constant and the causal rule. Their
// uniform `p` is generated from `Params` in src/kernels/sdpa/params.rs (fields documented there).
//
// Legend: B batch, H heads, Tq queries, Tk keys, D head dim of q/k, Dv head dim of v.
// q/k/v/out are addressed through (offset, batch stride, head stride, row stride) in elements, so a
// kernel reads [B,H,T,D] tensors and the [B,T,H*D] slices of a fused projection alike (MHA).
// The element stride inside a row is 1.

// A masked score. Every real score is finite and far above it, so exp(NEG - m) == 0 for any real
// max m, and no infinity ever enters the arithmetic (shader compilers may assume there are none).
const NEG: f32 = -3.0e38;

// One past the last key query row i may see, within [0, ke].
fn causal_end(i: u32, ke: u32) -> u32 {
    if (p.causal == 0u) {
        return ke;
    }
    let lim = i32(i) + p.causal_off + 1;
    return u32(clamp(lim, 0, i32(ke)));
}
