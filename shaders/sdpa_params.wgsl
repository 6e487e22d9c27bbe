// Shared by the attention kernels (sdpa.wgsl, sdpa_decode.wgsl, sdpa_merge.wgsl,
// attention_probs.wgsl): the uniform they all take, and the causal rule.
//
// Legend: B batch, H heads, Tq queries, Tk keys, D head dim of q/k, Dv head dim of v.
// q/k/v/out are addressed through (offset, batch stride, head stride, row stride) in elements, so a
// kernel reads [B,H,T,D] tensors and the [B,T,H*D] slices of a fused projection alike (MHA).
// The element stride inside a row is 1.

struct Params {
    tq: u32,
    tk: u32,
    heads: u32,
    // bit 0: write the row's log-sum-exp to `stats` (sdpa) / average over heads (probs).
    flags: u32,
    q_off: u32, q_sb: u32, q_sh: u32, q_st: u32,
    k_off: u32, k_sb: u32, k_sh: u32, k_st: u32,
    v_off: u32, v_sb: u32, v_sh: u32, v_st: u32,
    o_off: u32, o_sb: u32, o_sh: u32, o_st: u32,
    // mask element (b, h, i, j) is at m_off + b*m_sb + h*m_sh + i*m_si + j*m_sj (0 strides broadcast).
    m_off: u32, m_sb: u32, m_sh: u32, m_si: u32,
    m_sj: u32,
    // 0 none, 1 bool (non-zero = may attend), 2 bool (non-zero = ignore), 3 additive f32 bits.
    mask_kind: u32,
    // 0: no causal mask; 1: query i sees keys j <= i + causal_off.
    causal: u32,
    causal_off: i32,
    scale: f32,
    // Key splits per row (flash-decoding); 1 = the kernel writes the final output itself.
    nsplit: u32,
    // Keys per split.
    chunk: u32,
    // Workgroups along the query rows of one (b, h) (sdpa.wgsl), or splits groups (decode).
    row_blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

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
