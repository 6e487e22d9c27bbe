//! Views and problem sizes of an attention call: causal rule, masks broadcast by strides, and
//! `[B, H, T, D]` head views of tensors addressed by offset and strides.

use crate::error::{Error, Result};
use crate::kernels::check_dtype;
use crate::tensor::{DType, Tensor};

/// Causal masking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Causal {
    /// No causal mask.
    #[default]
    None,
    /// PyTorch's `is_causal=True`: query i sees keys `j <= i` (top-left aligned; with Tq != Tk the
    /// last queries of a longer query block see all keys and, with Tq < Tk, later keys are never
    /// seen).
    TopLeft,
    /// Bottom-right aligned, for decoding with a key/value cache: the last query is aligned with the
    /// last key, so query i sees keys `j <= i + (Tk - Tq)`. Equals `TopLeft` when Tq == Tk.
    BottomRight,
}

/// How the values of an attention mask are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaskKind {
    /// u32 holding a bool, non-zero = may attend (PyTorch's boolean `attn_mask`).
    Keep,
    /// u32 holding a bool, non-zero = ignore this key (PyTorch's `key_padding_mask`).
    Ignore,
    /// f32 added to the scores; `-inf` (or anything <= -1e30) masks the key out.
    Additive,
}

impl MaskKind {
    pub(super) fn code(self) -> u32 {
        match self {
            MaskKind::Keep => 1,
            MaskKind::Ignore => 2,
            MaskKind::Additive => 3,
        }
    }
}

/// An attention mask broadcast over `[B, H, Tq, Tk]` by element strides (0 = broadcast).
#[derive(Clone, Copy, Debug)]
pub struct MaskView<'a> {
    /// The mask: u32 for [`MaskKind::Keep`]/[`MaskKind::Ignore`], f32 for [`MaskKind::Additive`].
    pub tensor: &'a Tensor,
    /// How its values are read.
    pub kind: MaskKind,
    /// Element offset of (0, 0, 0, 0).
    pub offset: usize,
    /// Element strides over (b, h, i, j).
    pub strides: [usize; 4],
}

impl<'a> MaskView<'a> {
    /// A mask whose shape broadcasts to `[B, H, Tq, Tk]` as in PyTorch: its dims align to the right
    /// and each is 1 or the full size (for example `[Tq, Tk]`, `[B, 1, Tq, Tk]`, `[B, 1, 1, Tk]`).
    pub fn broadcast(
        op: &str,
        tensor: &'a Tensor,
        kind: MaskKind,
        bhqk: [usize; 4],
    ) -> Result<MaskView<'a>> {
        let shape = tensor.shape();
        if shape.len() > 4 {
            return Err(Error::shape(
                op,
                format!("mask {shape:?} has more than 4 dims; it must broadcast to {bhqk:?}"),
            ));
        }
        let mut strides = [0usize; 4];
        let mut stride = 1usize;
        for (k, &n) in shape.iter().enumerate().rev() {
            let axis = 4 - shape.len() + k;
            if n != 1 && n != bhqk[axis] {
                return Err(Error::shape(
                    op,
                    format!("mask {shape:?} does not broadcast to [B, H, Tq, Tk] = {bhqk:?}"),
                ));
            }
            strides[axis] = if n == 1 { 0 } else { stride };
            stride *= n;
        }
        Ok(MaskView {
            tensor,
            kind,
            offset: 0,
            strides,
        })
    }

    /// A per-key mask `[B, Tk]` (for example `key_padding_mask`) broadcast over heads and queries.
    pub fn per_key(
        op: &str,
        tensor: &'a Tensor,
        kind: MaskKind,
        b: usize,
        tk: usize,
    ) -> Result<MaskView<'a>> {
        if tensor.shape() != [b, tk] {
            return Err(Error::shape(
                op,
                format!(
                    "key mask {:?} must be [B, Tk] = [{b}, {tk}]",
                    tensor.shape()
                ),
            ));
        }
        Ok(MaskView {
            tensor,
            kind,
            offset: 0,
            strides: [tk, 0, 0, 1],
        })
    }
}

/// A `[B, H, T, D]` view of an f32 tensor by element offset and strides (the last dim is dense).
#[derive(Clone, Copy, Debug)]
pub struct Heads<'a> {
    /// The tensor holding the data.
    pub tensor: &'a Tensor,
    /// Element offset of (0, 0, 0, 0).
    pub offset: usize,
    /// Element strides over (b, h, t).
    pub strides: [usize; 3],
}

impl<'a> Heads<'a> {
    /// A dense `[B, H, T, D]` tensor.
    pub fn dense(tensor: &'a Tensor) -> Heads<'a> {
        let s = tensor.shape();
        let (h, t, d) = if s.len() == 4 {
            (s[1], s[2], s[3])
        } else {
            (1, 1, 1)
        };
        Heads {
            tensor,
            offset: 0,
            strides: [h * t * d, t * d, d],
        }
    }

    /// Heads `h` of a `[B, T, W]` tensor whose columns `col + h*D .. col + (h+1)*D` hold head h
    /// (the layout of a fused `[B, T, 3E]` or a `[B, T, E]` projection).
    pub fn interleaved(
        tensor: &'a Tensor,
        t: usize,
        row_width: usize,
        col: usize,
        d: usize,
    ) -> Self {
        Heads {
            tensor,
            offset: col,
            strides: [t * row_width, d, row_width],
        }
    }

    pub(crate) fn aligned(&self) -> bool {
        self.offset.is_multiple_of(4) && self.strides.iter().all(|s| s.is_multiple_of(4))
    }

    /// Checks the dtype and that every element of a `[b, h, t, d]` view lies inside the tensor.
    pub(crate) fn check(&self, op: &str, name: &str, [b, h, t, d]: [usize; 4]) -> Result<()> {
        check_dtype(op, name, self.tensor, &[DType::F32])?;
        if b * h * t * d == 0 {
            return Ok(());
        }
        let last = self.offset
            + (b - 1) * self.strides[0]
            + (h - 1) * self.strides[1]
            + (t - 1) * self.strides[2]
            + d;
        if last > self.tensor.numel() {
            return Err(Error::shape(
                op,
                format!(
                    "{name}: a [{b}, {h}, {t}, {d}] view (offset {}, strides {:?}) needs {last} \
                     elements but the tensor {:?} has {}",
                    self.offset,
                    self.strides,
                    self.tensor.shape(),
                    self.tensor.numel()
                ),
            ));
        }
        if last > u32::MAX as usize {
            return Err(Error::shape(
                op,
                format!("{name}: {last} elements exceed the kernels' 32-bit indexing"),
            ));
        }
        Ok(())
    }
}

/// Problem sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    /// Batch.
    pub b: usize,
    /// Heads.
    pub h: usize,
    /// Query rows.
    pub tq: usize,
    /// Keys (and values).
    pub tk: usize,
    /// Head dim of q and k.
    pub d: usize,
    /// Head dim of v and the output.
    pub dv: usize,
}
