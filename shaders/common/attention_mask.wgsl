// Optional attention mask, broadcast over [B, H, Tq, Tk] by strides (Params.m, m_sj in src/kernels/sdpa/params.rs).
//   mask: [*] u32 (bool as 0/1) or f32 bits (additive), binding 4 in every kernel that masks
//   (declared from the kernel's bindings struct).

// The score after masking: NEG where the key is masked out, the score plus the additive mask else.
// Additive values <= -1e30 (including -inf) count as masked, so -inf never enters the arithmetic.
fn apply_mask(mb: u32, j: u32, sc: f32) -> f32 {
    switch p.mask_kind {
        case 1u: {
            return select(NEG, sc, mask[mb + j * p.m_sj] != 0u);
        }
        case 2u: {
            return select(sc, NEG, mask[mb + j * p.m_sj] != 0u);
        }
        case 3u: {
            let a = bitcast<f32>(mask[mb + j * p.m_sj]);
            return select(sc + a, NEG, a <= -1.0e30);
        }
        default: {
            return sc;
        }
    }
}
