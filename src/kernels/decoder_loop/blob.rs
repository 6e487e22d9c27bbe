//! Packing of a decoder's weights into the fused kernel's f16 blob ([`DecoderBlob`]): every
//! matrix row-major with rows padded to a multiple of 8, and the offsets the kernel reads as WGSL
//! constants.

use super::{DecoderLoopDims, LoopAttention, OP};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::rnn_fused::{drop_columns, fold_embedding, p8, padded, Packer};
use crate::tensor::Tensor;

/// Host weights of a decoder (f32, PyTorch layouts), packed by [`DecoderBlob::new`].
#[derive(Clone, Copy, Debug)]
pub struct DecoderWeights<'a> {
    /// `[V, E]`.
    pub emb: &'a [f32],
    /// Per layer: `weight_ih [G*H, IN_l]`, `weight_hh [G*H, H]`, `bias_ih`, `bias_hh [G*H]` (empty:
    /// zeros).
    pub cells: &'a [[&'a [f32]; 4]],
    /// General: `W [H, M]`.
    pub general: &'a [f32],
    /// Additive: `W_q [A, H]`, the bias of `W_k` `[A]`, `v [A]`.
    pub additive: [&'a [f32]; 3],
    /// Attentional layer `W_c [H, C + H]`.
    pub w_c: &'a [f32],
    /// Output projection `[V, OUT_IN]` and bias `[V]` (empty: zeros).
    pub out: [&'a [f32]; 2],
}

/// Where each weight lives in the blob (element offsets, multiples of 8) and its row stride.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct Layout {
    /// `(name, value)` WGSL constants of the offsets and strides.
    pub(super) consts: Vec<(&'static str, u32)>,
}

/// The decoder's weights packed into one f16 tensor, with the offsets the kernel reads.
#[derive(Debug)]
pub struct DecoderBlob {
    /// All weights, rows padded to multiples of 8.
    pub blob: Tensor,
    pub(super) dims: DecoderLoopDims,
    pub(super) layout: Layout,
}

fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = src[r * cols + c];
        }
    }
    out
}

impl DecoderBlob {
    /// Packs `w` (shapes checked against `dims`) and uploads it in f16, folding the embedding
    /// into layer 0's input projection where that pays (see [`DecoderBlob::with_fold`]).
    pub fn new(gpu: &Gpu, dims: DecoderLoopDims, w: &DecoderWeights) -> Result<Self> {
        Self::with_fold(gpu, dims, w, dims.folds_embedding())
    }

    /// [`DecoderBlob::new`] with the choice made by the caller. `fold`: layer 0 reads the f32 table
    /// `[V, G*H]` of `W_ih[:, :E] emb[v] + b_ih` (one row read per step instead of a `G*H x E`
    /// product; the kernel then skips the embedding lookup except in Bahdanau order, whose output
    /// layer reads the embedding).
    pub fn with_fold(
        gpu: &Gpu,
        dims: DecoderLoopDims,
        w: &DecoderWeights,
        fold: bool,
    ) -> Result<Self> {
        let d = &dims;
        let (g, h, e, m, a, v) = (d.cell.gates(), d.hidden, d.emb, d.mem, d.attn_dim, d.vocab);
        if w.cells.len() != d.layers {
            return Err(Error::shape(
                OP,
                format!("{} cell weight sets for {} layers", w.cells.len(), d.layers),
            ));
        }
        let mut p = Packer::new(OP);
        let mut c: Vec<(&'static str, u32)> = Vec::new();
        if w.emb.len() != v * e {
            return Err(Error::shape(
                OP,
                format!("embedding: {} values, expected [{v}, {e}]", w.emb.len()),
            ));
        }
        let (o, ld) = if fold && !d.bahdanau {
            (0, 0)
        } else {
            p.matrix("embedding", w.emb, v, e)?
        };
        c.extend([("O_EMB", o), ("LD_EMB", ld)]);
        // Every layer's block (w_ih, w_hh, b_ih, b_hh) has the same size: w_ih rows get the stride
        // of the wider of layer 0's padded input and H, so layer l starts at l * block.
        let ld_ih = padded(&d.input0_segments()).max(p8(h));
        let gh = g * h;
        let mut first = [0u32; 4];
        let (mut o_tab, mut ld_tab) = (0, 0);
        for (l, cw) in w.cells.iter().enumerate() {
            let segs = if l == 0 { d.input0_segments() } else { vec![h] };
            let n_in: usize = segs.iter().sum();
            if cw[0].len() != gh * n_in {
                return Err(Error::shape(
                    OP,
                    format!(
                        "layer {l} weight_ih: {} values, expected [{gh}, {n_in}]",
                        cw[0].len()
                    ),
                ));
            }
            let o_ih = if l == 0 && fold {
                if !cw[2].is_empty() && cw[2].len() != gh {
                    return Err(Error::shape(
                        OP,
                        format!("layer 0 bias_ih: {} values, expected {gh}", cw[2].len()),
                    ));
                }
                let table = fold_embedding(w.emb, v, e, cw[0], gh, n_in, cw[2]);
                (o_tab, ld_tab) = p.table_f32("embedding x layer 0 weight_ih", &table, v, gh)?;
                // The rest of the input (the context) keeps its product; nothing is left of a
                // single layer without one.
                let rest = drop_columns(cw[0], gh, n_in, e);
                if rest.is_empty() && d.layers == 1 {
                    o_tab
                } else {
                    p.matrix_segments("layer 0 weight_ih", &rest, gh, &segs[1..], ld_ih)?
                        .0
                }
            } else {
                p.matrix_segments(&format!("layer {l} weight_ih"), cw[0], gh, &segs, ld_ih)?
                    .0
            };
            let (o_hh, _) = p.matrix(&format!("layer {l} weight_hh"), cw[1], gh, h)?;
            let (o_bih, _) = p.matrix("bias_ih", cw[2], 1, gh)?;
            let (o_bhh, _) = p.matrix("bias_hh", cw[3], 1, gh)?;
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
        let block = |k: &str| c.iter().find(|(n, _)| *n == k).map(|x| x.1);
        if block("S_WIH").is_none() {
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
            LoopAttention::General => {
                if w.general.len() != h * m {
                    return Err(Error::shape(
                        OP,
                        format!("general W: {} values, expected [{h}, {m}]", w.general.len()),
                    ));
                }
                o_wg = p
                    .matrix("general W^T", &transpose(w.general, h, m), m, h)?
                    .0;
            }
            LoopAttention::Additive => {
                o_wq = p.matrix("W_q", w.additive[0], a, h)?.0;
                o_bk = p.matrix("W_k bias", w.additive[1], 1, a)?.0;
                o_v = p.matrix("v", w.additive[2], 1, a)?.0;
                if w.additive[0].is_empty() || w.additive[2].is_empty() {
                    return Err(Error::invalid(OP, "additive attention needs W_q and v"));
                }
            }
            _ => {}
        }
        c.extend([("O_WG", o_wg), ("O_WQ", o_wq), ("O_BK", o_bk), ("O_V", o_v)]);
        let mut o_wc = 0;
        if d.attn_layer && d.attention != LoopAttention::None {
            if w.w_c.is_empty() {
                return Err(Error::invalid(OP, "the attentional layer needs W_c"));
            }
            o_wc = p.matrix_segments("W_c", w.w_c, h, &[d.ctx(), h], 0)?.0;
        }
        c.push(("O_WC", o_wc));
        if w.out[0].is_empty() {
            return Err(Error::invalid(OP, "output projection weights are required"));
        }
        let o_out = p
            .matrix_segments("output weight", w.out[0], v, &d.out_segments(), 0)?
            .0;
        let (o_bout, _) = p.matrix("output bias", w.out[1], 1, v)?;
        c.extend([("O_OUT", o_out), ("O_BOUT", o_bout)]);
        let blob = p.upload(gpu)?;
        Ok(DecoderBlob {
            blob,
            dims,
            layout: Layout { consts: c },
        })
    }

    /// The decoder's sizes.
    pub fn dims(&self) -> &DecoderLoopDims {
        &self.dims
    }
}
