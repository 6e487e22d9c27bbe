//! What the fused RNN kernels (`decoder_loop`, `encoder_loop`) share: the WGSL body
//! (`shaders/rnn_fused.wgsl`: weight blob, shared vector, vec4 products, cell update), the weight
//! packer and the workgroup size.

use half::f16;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// The shared WGSL body, composed in front of each fused kernel.
pub(crate) const RNN_FUSED_SRC: &str = include_str!("../../shaders/rnn_fused.wgsl");

/// Invocations per workgroup. CPU drivers run a workgroup's lanes as one SIMD vector per 8 and
/// switch between vectors at every barrier: one vector (8) was fastest on lavapipe (G2P rnn_dot
/// step: 105 us at 8, 115 at 16, 154 at 32, 244 at 64). GPUs: 64, so that hidden sizes of a few
/// hundred fill the lanes with the 4-row blocks (not yet measured on a GPU). From the tuning table
/// ([`Tuning::rnn_fused_wg`](crate::gpu::Tuning::rnn_fused_wg)).
pub(crate) fn wg(gpu: &Gpu) -> u32 {
    gpu.tuning().rnn_fused_wg
}

/// `x` rounded up to a multiple of 8.
pub(crate) fn p8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

/// Width of segments each padded to 8.
pub(crate) fn padded(segments: &[usize]) -> usize {
    segments.iter().map(|&s| p8(s)).sum()
}

/// Whether to fold a first layer's embedding into its input projection: a table `[V, G*H]` of
/// `W_ih[:, :E] emb[v] + b_ih` (f32) replaces, per step, the `G*H x E` product by one row read.
/// Folded when the table costs at most 4x the f16 weights it replaces (`V <= 2 E`): G2P-sized
/// vocabularies, not a translation model's tens of thousands of tokens.
pub(crate) fn fold_pays(vocab: usize, emb: usize) -> bool {
    vocab <= 2 * emb
}

/// The folded table `[vocab, rows]` (f32): `table[v, r] = b_ih[r] + sum_i w_ih[r, i] emb[v, i]`
/// over the first `e` of `ld` columns of `w_ih` `[rows, ld]`, `emb` `[vocab, e]`, `b_ih` `[rows]`
/// (empty: zeros). Weights and embedding are rounded to f16 first, as the kernel would read them
/// unfolded; the sum is taken in f64.
pub(crate) fn fold_embedding(
    emb: &[f32],
    vocab: usize,
    e: usize,
    w_ih: &[f32],
    rows: usize,
    ld: usize,
    b_ih: &[f32],
) -> Vec<f32> {
    let r16 = |x: f32| f64::from(f16::from_f32(x).to_f32());
    let mut out = vec![0.0f32; vocab * rows];
    for v in 0..vocab {
        let x: Vec<f64> = emb[v * e..(v + 1) * e].iter().map(|&a| r16(a)).collect();
        for r in 0..rows {
            let w = &w_ih[r * ld..r * ld + e];
            let dot: f64 = w.iter().zip(&x).map(|(&a, b)| r16(a) * b).sum();
            out[v * rows + r] = (dot + b_ih.get(r).map_or(0.0, |&b| r16(b))) as f32;
        }
    }
    out
}

/// The columns `from..` of `src` `[rows, cols]`.
pub(crate) fn drop_columns(src: &[f32], rows: usize, cols: usize, from: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| src[r * cols + from..(r + 1) * cols].iter().copied())
        .collect()
}

/// Appends matrices to the blob (f16 slots).
pub(crate) struct Packer {
    /// The packed values.
    data: Vec<f16>,
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
        self.data.resize(at + rows * ld, f16::ZERO);
        if !src.is_empty() {
            for r in 0..rows {
                let (mut from, mut to) = (r * cols, at + r * ld);
                for &seg in segments {
                    for (d, &x) in self.data[to..to + seg]
                        .iter_mut()
                        .zip(&src[from..from + seg])
                    {
                        *d = f16::from_f32(x);
                    }
                    from += seg;
                    to += p8(seg);
                }
            }
        }
        Ok((self.offset(at)?, ld as u32))
    }

    /// Appends `[rows, cols]` f32 values, each as its two 16-bit halves in two slots (read with
    /// `blob_f32` in rnn_fused.wgsl), rows padded to a multiple of 8 slots; returns (offset, row
    /// stride) in slots.
    pub fn table_f32(
        &mut self,
        what: &str,
        src: &[f32],
        rows: usize,
        cols: usize,
    ) -> Result<(u32, u32)> {
        if src.len() != rows * cols {
            return Err(Error::shape(
                self.op,
                format!("{what}: {} values, expected [{rows}, {cols}]", src.len()),
            ));
        }
        let ld = p8(2 * cols);
        let at = self.data.len();
        self.data.resize(at + rows * ld, f16::ZERO);
        for r in 0..rows {
            for (c, &x) in src[r * cols..(r + 1) * cols].iter().enumerate() {
                let bits = x.to_bits();
                let slot = at + r * ld + 2 * c;
                self.data[slot] = f16::from_bits(bits as u16);
                self.data[slot + 1] = f16::from_bits((bits >> 16) as u16);
            }
        }
        Ok((self.offset(at)?, ld as u32))
    }

    fn offset(&self, at: usize) -> Result<u32> {
        u32::try_from(at).map_err(|_| Error::invalid(self.op, "weights too large"))
    }

    /// Uploads the blob (at least one vec4 of slots, so the binding is never empty).
    pub fn upload(mut self, gpu: &Gpu) -> Result<Tensor> {
        let n = p8(self.data.len().max(1));
        self.data.resize(n, f16::ZERO);
        Tensor::from_f16(gpu, &self.data, &[n])
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
