//! The uniform parameters every attention kernel shares (their WGSL is generated from [`Params`]),
//! how they are filled from the views, and the checks of head dims and masks.

use super::{AttnDims, Causal, Heads, MaskKind, MaskView, MAX_HEAD_DIM};
use crate::error::{Error, Result};
use crate::kernels::check_dtype;
use crate::tensor::DType;

crate::wgsl_params! {
    /// The uniform of every attention kernel. q/k/v/out are addressed through (offset, batch
    /// stride, head stride, row stride) in elements (`.x .y .z .w` in WGSL), so a kernel reads
    /// `[B, H, T, D]` tensors and the `[B, T, H*D]` slices of a fused projection alike; the
    /// element stride inside a row is 1.
    #[derive(Default)]
    pub(crate) struct Params {
        tq: u32,
        tk: u32,
        heads: u32,
        /// Bit 0: write the row's log-sum-exp to `stats` (sdpa) / average over heads (probs).
        flags: u32,
        q: [u32; 4],
        k: [u32; 4],
        v: [u32; 4],
        o: [u32; 4],
        /// Mask element (b, h, i, j) is at `m.x + b*m.y + h*m.z + i*m.w + j*m_sj` (0 strides
        /// broadcast).
        m: [u32; 4],
        m_sj: u32,
        /// 0 none, 1 bool (non-zero = may attend), 2 bool (non-zero = ignore), 3 additive f32 bits.
        mask_kind: u32,
        /// 0: no causal mask; 1: query i sees keys j <= i + causal_off.
        causal: u32,
        causal_off: i32,
        scale: f32,
        /// Key splits per row (flash-decoding); 1 = the kernel writes the final output itself.
        nsplit: u32,
        /// Keys per split.
        chunk: u32,
        /// Workgroups along the query rows of one (b, h) (sdpa.wgsl).
        row_blocks: u32,
        /// Query rows B*H*Tq (sdpa_decode.wgsl: its lanes take (row, split) pairs).
        rows: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

pub(super) fn view_params(v: &Heads) -> [u32; 4] {
    [
        v.offset as u32,
        v.strides[0] as u32,
        v.strides[1] as u32,
        v.strides[2] as u32,
    ]
}

/// Fills the parts of [`Params`] every attention kernel shares: sizes, q/k views, mask, causal, scale.
pub(crate) fn base_params(
    dims: &AttnDims,
    q: &Heads,
    k: &Heads,
    mask: Option<&MaskView>,
    causal: Causal,
    scale: f32,
) -> Params {
    let mut p = Params {
        tq: dims.tq as u32,
        tk: dims.tk as u32,
        heads: dims.h as u32,
        q: view_params(q),
        k: view_params(k),
        scale,
        nsplit: 1,
        chunk: dims.tk.max(1) as u32,
        row_blocks: 1,
        ..Params::default()
    };
    if let Some(m) = mask {
        p.m = [
            m.offset as u32,
            m.strides[0] as u32,
            m.strides[1] as u32,
            m.strides[2] as u32,
        ];
        p.m_sj = m.strides[3] as u32;
        p.mask_kind = m.kind.code();
    }
    match causal {
        Causal::None => {}
        Causal::TopLeft => p.causal = 1,
        Causal::BottomRight => {
            p.causal = 1;
            p.causal_off = dims.tk as i32 - dims.tq as i32;
        }
    }
    p
}

/// Validates a mask view against the dims: dtype for its kind, every index in bounds.
pub(crate) fn check_mask(op: &str, m: &MaskView, dims: &AttnDims) -> Result<()> {
    let want = match m.kind {
        MaskKind::Additive => DType::F32,
        MaskKind::Keep | MaskKind::Ignore => DType::U32,
    };
    check_dtype(op, "mask", m.tensor, &[want])?;
    let ext = [dims.b, dims.h, dims.tq, dims.tk];
    if ext.contains(&0) {
        return Ok(());
    }
    let last = m.offset
        + ext
            .iter()
            .zip(m.strides)
            .map(|(&n, s)| (n - 1) * s)
            .sum::<usize>();
    if last >= m.tensor.numel() || last > u32::MAX as usize {
        return Err(Error::shape(
            op,
            format!(
                "mask {:?} (offset {}, strides {:?}) does not cover [B, H, Tq, Tk] = {ext:?}",
                m.tensor.shape(),
                m.offset,
                m.strides
            ),
        ));
    }
    Ok(())
}

/// Checks head dims and the sizes the 32-bit kernels index.
pub(crate) fn check_dims(op: &str, dims: &AttnDims) -> Result<()> {
    for (name, d) in [("D", dims.d), ("Dv", dims.dv)] {
        if d == 0 || d > MAX_HEAD_DIM {
            return Err(Error::shape(
                op,
                format!("head dim {name} = {d} is outside 1..={MAX_HEAD_DIM} ({dims:?})"),
            ));
        }
    }
    let rows = dims.b * dims.h * dims.tq;
    if rows > u32::MAX as usize / 2 || dims.tk > u32::MAX as usize / 2 {
        return Err(Error::shape(op, format!("{dims:?} is too large")));
    }
    Ok(())
}
