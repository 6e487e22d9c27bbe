//! What the fused RNN kernels (`decoder_loop`, `encoder_loop`) share: the WGSL body
//! (`shaders/rnn_fused.wgsl`: weight blob, shared vector, vec4 products, cell update), the weight
//! packer and the workgroup size.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// The shared WGSL body, composed in front of each fused kernel.
pub(crate) const RNN_FUSED_SRC: &str = include_str!("../../shaders/rnn_fused.wgsl");

/// Invocations per workgroup. CPU drivers run a workgroup's lanes as one SIMD vector per 8 and
/// switch between vectors at every barrier: one vector (8) was fastest on lavapipe (G2P rnn_dot
/// step: 105 us at 8, 115 at 16, 154 at 32, 244 at 64). GPUs: 64, so that hidden sizes of a few
/// hundred fill the lanes with the 4-row blocks (not yet measured on a GPU).
pub(crate) fn wg(gpu: &Gpu) -> u32 {
    if gpu.caps().is_cpu() {
        8
    } else {
        64
    }
}

/// `x` rounded up to a multiple of 8.
pub(crate) fn p8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

/// Width of segments each padded to 8.
pub(crate) fn padded(segments: &[usize]) -> usize {
    segments.iter().map(|&s| p8(s)).sum()
}

/// Appends matrices to the blob.
pub(crate) struct Packer {
    /// The packed values.
    pub data: Vec<f32>,
    op: &'static str,
}

impl Packer {
    /// An empty blob for kernel `op` (named in errors).
    pub fn new(op: &'static str) -> Packer {
        Packer {
            data: Vec::new(),
            op,
        }
    }

    /// Appends `[rows, sum(segments)]` (`src` empty: zeros) with each column segment padded to a
    /// multiple of 8 (as the shared vector it multiplies) and rows to at least `min_ld`; returns
    /// (offset, row stride).
    pub fn matrix_segments(
        &mut self,
        what: &str,
        src: &[f32],
        rows: usize,
        segments: &[usize],
        min_ld: usize,
    ) -> Result<(u32, u32)> {
        let cols: usize = segments.iter().sum();
        if !src.is_empty() && src.len() != rows * cols {
            return Err(Error::shape(
                self.op,
                format!("{what}: {} values, expected [{rows}, {cols}]", src.len()),
            ));
        }
        let ld = padded(segments).max(min_ld);
        let at = self.data.len();
        self.data.resize(at + rows * ld, 0.0);
        if !src.is_empty() {
            for r in 0..rows {
                let (mut from, mut to) = (r * cols, at + r * ld);
                for &seg in segments {
                    self.data[to..to + seg].copy_from_slice(&src[from..from + seg]);
                    from += seg;
                    to += p8(seg);
                }
            }
        }
        let off = u32::try_from(at).map_err(|_| Error::invalid(self.op, "weights too large"))?;
        Ok((off, ld as u32))
    }

    /// Appends `[rows, cols]` with rows padded to a multiple of 8.
    pub fn matrix(
        &mut self,
        what: &str,
        src: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<(u32, u32)> {
        self.matrix_segments(what, src, rows, &[cols], 0)
    }
}
