//! The uniform parameters every attention kernel shares (`shaders/sdpa_params.wgsl`), how they
//! are filled from the views, and the checks of head dims and masks.

use bytemuck::{Pod, Zeroable};

use super::{AttnDims, Causal, Heads, MaskKind, MaskView, MAX_HEAD_DIM};
use crate::error::{Error, Result};
use crate::kernels::check_dtype;
use crate::tensor::DType;

/// Mirrors `Params` in `shaders/sdpa_params.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct Params {
    pub tq: u32,
    pub tk: u32,
    pub heads: u32,
    pub flags: u32,
    pub q: [u32; 4],
    pub k: [u32; 4],
    pub v: [u32; 4],
    pub o: [u32; 4],
    pub m: [u32; 4],
    pub m_sj: u32,
    pub mask_kind: u32,
    pub causal: u32,
    pub causal_off: i32,
    pub scale: f32,
    pub nsplit: u32,
    pub chunk: u32,
    pub row_blocks: u32,
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
