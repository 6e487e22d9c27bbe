//! The layout of a decoder's weights in the fused kernel's f16 blob ([`DecoderLayout`]): every
//! matrix row-major with rows padded to a multiple of 8, and the offsets the kernel reads as WGSL
//! constants. The values are packed by [`crate::weights::pack::DecoderWeights::pack`].

use super::{DecoderLoopDims, LoopAttention, OP};
use crate::error::{Error, Result};
use crate::kernels::rnn_fused::{p8, padded, BlobLayout, Part};
use crate::tensor::Tensor;

/// Where each weight lives in the blob (element offsets, multiples of 8) and its row stride.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct Layout {
    /// `(name, value)` WGSL constants of the offsets and strides.
    pub(super) consts: Vec<(&'static str, u32)>,
}

/// A decoder blob's slots (what the packer fills) and the WGSL constants of their offsets.
#[derive(Clone, Debug)]
pub(crate) struct DecoderLayout {
    /// The blob's slots.
    pub(crate) blob: BlobLayout,
    dims: DecoderLoopDims,
    consts: Layout,
}

/// The decoder's weights packed into one f16 tensor, with the offsets the kernel reads. Built by
/// [`crate::weights::pack::DecoderWeights::pack`].
#[derive(Debug)]
pub struct DecoderBlob {
    /// All weights, rows padded to multiples of 8.
    pub blob: Tensor,
    pub(super) dims: DecoderLoopDims,
    pub(super) layout: Layout,
}

impl DecoderLayout {
    /// The layout for `dims`. `fold`: layer 0 reads the f32 table `[V, G*H]` of
    /// `W_ih[:, :E] emb[v] + b_ih` (one row read per step instead of a `G*H x E` product; the
    /// kernel then skips the embedding lookup except in Bahdanau order, whose output layer reads
    /// the embedding), and its `W_ih` keeps only the context columns.
    pub(crate) fn new(dims: DecoderLoopDims, fold: bool) -> Result<DecoderLayout> {
        let d = &dims;
        let (g, h, e, m, a, v) = (d.cell.gates(), d.hidden, d.emb, d.mem, d.attn_dim, d.vocab);
        if d.layers == 0 || h == 0 || e == 0 || v == 0 {
            return Err(Error::invalid(
                OP,
                format!("{d:?}: layers, hidden, emb and vocab must be >= 1"),
            ));
        }
        let mut p = BlobLayout::new(OP);
        let mut c: Vec<(&'static str, u32)> = Vec::new();
        let (o, ld) = if fold && !d.bahdanau {
            (0, 0)
        } else {
            p.matrix(Part::Embedding, v, e)?
        };
        c.extend([("O_EMB", o), ("LD_EMB", ld)]);
        // Every layer's block (w_ih, w_hh, b_ih, b_hh) has the same size: w_ih rows get the stride
        // of the wider of layer 0's padded input and H, so layer l starts at l * block.
        let ld_ih = padded(&d.input0_segments()).max(p8(h));
        let gh = g * h;
        let mut first = [0u32; 4];
        let (mut o_tab, mut ld_tab) = (0, 0);
        for l in 0..d.layers {
            let segs = if l == 0 { d.input0_segments() } else { vec![h] };
            let o_ih = if l == 0 && fold {
                (o_tab, ld_tab) = p.table_f32(Part::FoldedTable { l, d: 0 }, v, gh)?;
                // The rest of the input (the context) keeps its product; nothing is left of a
                // single layer without one.
                if segs.len() > 1 {
                    p.matrix_segments(Part::WeightIh { l, d: 0 }, gh, e, &segs[1..], ld_ih)?
                        .0
                } else if d.layers == 1 {
                    o_tab
                } else {
                    p.matrix_segments(Part::Zeros, gh, 0, &[], ld_ih)?.0
                }
            } else {
                p.matrix_segments(Part::WeightIh { l, d: 0 }, gh, 0, &segs, ld_ih)?
                    .0
            };
            let (o_hh, _) = p.matrix(Part::WeightHh { l, d: 0 }, gh, h)?;
            let (o_bih, _) = p.matrix(Part::BiasIh { l, d: 0 }, 1, gh)?;
            let (o_bhh, _) = p.matrix(Part::BiasHh { l, d: 0 }, 1, gh)?;
            if l == 0 {
                first = [o_ih, o_hh, o_bih, o_bhh];
            } else if l == 1 {
                c.extend([
                    ("S_WIH", o_ih - first[0]),
                    ("S_WHH", o_hh - first[1]),
                    ("S_B", o_bih - first[2]),
                ]);
            }
        }
        c.extend([
            ("TABLE", u32::from(fold)),
            ("O_TAB", o_tab),
            ("LD_TAB", ld_tab),
        ]);
        if d.layers == 1 {
            c.extend([("S_WIH", 0), ("S_WHH", 0), ("S_B", 0)]);
        }
        c.extend([
            ("O_WIH", first[0]),
            ("LD_WIH", ld_ih as u32),
            ("O_WHH", first[1]),
            ("O_BIH", first[2]),
            ("O_BHH", first[3]),
        ]);
        let (mut o_wg, mut o_wq, mut o_bk, mut o_v) = (0, 0, 0, 0);
        match d.attention {
            LoopAttention::General => o_wg = p.matrix(Part::GeneralT, m, h)?.0,
            LoopAttention::Additive => {
                o_wq = p.matrix(Part::AttnQuery, a, h)?.0;
                o_bk = p.matrix(Part::AttnKeyBias, 1, a)?.0;
                o_v = p.matrix(Part::AttnV, 1, a)?.0;
            }
            _ => {}
        }
        c.extend([("O_WG", o_wg), ("O_WQ", o_wq), ("O_BK", o_bk), ("O_V", o_v)]);
        let mut o_wc = 0;
        if d.attn_layer && d.attention != LoopAttention::None {
            o_wc = p
                .matrix_segments(Part::AttnLayer, h, 0, &[d.ctx(), h], 0)?
                .0;
        }
        c.push(("O_WC", o_wc));
        let o_out = p
            .matrix_segments(Part::Output, v, 0, &d.out_segments(), 0)?
            .0;
        let (o_bout, _) = p.matrix(Part::OutputBias, 1, v)?;
        c.extend([("O_OUT", o_out), ("O_BOUT", o_bout)]);
        Ok(DecoderLayout {
            blob: p,
            dims,
            consts: Layout { consts: c },
        })
    }

    /// The decoder's sizes.
    pub(crate) fn dims(&self) -> &DecoderLoopDims {
        &self.dims
    }
}

impl DecoderBlob {
    /// The blob `blob` (`[layout.blob.len()]` f16) packed by `layout`.
    pub(crate) fn from_packed(layout: DecoderLayout, blob: Tensor) -> Result<DecoderBlob> {
        crate::kernels::rnn_fused::check_packed(OP, &blob, layout.blob.len())?;
        Ok(DecoderBlob {
            blob,
            dims: layout.dims,
            layout: layout.consts,
        })
    }

    /// The decoder's sizes.
    pub fn dims(&self) -> &DecoderLoopDims {
        &self.dims
    }
}
