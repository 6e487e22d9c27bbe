//! Typed recurrent weights ([`RecurrentLayerWeights`], [`EncoderWeights`], [`DecoderWeights`])
//! packed for the fused recurrent kernels ([`crate::kernels::encoder_loop`],
//! [`crate::kernels::decoder_loop`]) and streamed to the GPU in bounded chunks.
//!
//! Who owns what: the kernel defines the blob's layout (which weight lies where, in which form:
//! `kernels::rnn_fused::BlobLayout`); this module fills it from typed weights (the embedding fold,
//! dropped columns and transposes included) and uploads it; the model maps its file's names
//! (PyTorch's, in [`crate::models::seq2seq`]) to the typed weights. Nothing here knows a name.
//!
//! Weights are [`Weight`]s: a tensor viewed in a mapped [`WeightFile`](super::WeightFile) (f16,
//! bf16, f32 or f64, read in place), an f32 host slice, or absent (zeros, for biases). Packing
//! reads them row by row into the blob's f16 slots, which go to the GPU through the chunked
//! upload's two staging buffers ([`super::upload`]). Peak host bytes while packing: one chunk of
//! the blob in f16 (`c` = [`super::DEFAULT_CHUNK_BYTES`], or the blob's size
//! if smaller) plus the two mapped staging chunks (`2c`, host memory on CPU adapters), one source
//! row in f32, and for the two weights that need a whole matrix, that one layer's f32 copies: the
//! folded table (embedding `[V, E]`, layer 0's `W_ih`, the table `[V, G*H]`; folded only when
//! `V <= 2E`) or general attention's transposed `W` `[H, M]`. Never the whole model in f32, nor
//! the whole blob unless it is smaller than a chunk.
//!
//! ```no_run
//! use heedful::ops::{CellKind, RecurrentSpec};
//! use heedful::weights::pack::{EncoderWeights, RecurrentLayerWeights, Weight};
//! let gpu = heedful::Gpu::shared()?;
//! let spec = RecurrentSpec { kind: CellKind::Gru, input_size: 4, hidden_size: 8, num_layers: 1,
//!                            bidirectional: false };
//! let (emb, w_ih, w_hh) = (vec![0.1f32; 10 * 4], vec![0.1f32; 24 * 4], vec![0.1f32; 24 * 8]);
//! let w = EncoderWeights {
//!     emb: Weight::F32(&emb),
//!     layers: vec![RecurrentLayerWeights::new(Weight::F32(&w_ih), Weight::F32(&w_hh))],
//! };
//! let blob = w.pack(&gpu, spec, 10)?; // for heedful::kernels::encoder_loop::record
//! # Ok::<(), heedful::Error>(())
//! ```

use half::{bf16, f16};

use super::file::{FileDType, TensorView};
use super::upload::{Stager, DEFAULT_CHUNK_BYTES};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::decoder_loop::{DecoderBlob, DecoderLayout, DecoderLoopDims, LoopAttention};
use crate::kernels::encoder_loop::{EncoderBlob, EncoderLayout};
use crate::kernels::recurrent::RecurrentSpec;
use crate::kernels::rnn_fused::{p8, BlobLayout, Form, Part, Slot};
use crate::tensor::{DType, Tensor};

/// One weight's values on the host, row-major.
#[derive(Clone, Copy, Debug, Default)]
pub enum Weight<'a> {
    /// Not given: zeros where that is allowed (biases), an error otherwise.
    #[default]
    Absent,
    /// f32 values.
    F32(&'a [f32]),
    /// A float tensor of a mapped file, read in place.
    View(TensorView<'a>),
}

impl<'a> From<&'a [f32]> for Weight<'a> {
    fn from(v: &'a [f32]) -> Self {
        Weight::F32(v)
    }
}

impl<'a> From<TensorView<'a>> for Weight<'a> {
    fn from(v: TensorView<'a>) -> Self {
        Weight::View(v)
    }
}

impl<'a> Weight<'a> {
    /// Number of values (0 when absent).
    pub fn len(&self) -> usize {
        match self {
            Weight::Absent => 0,
            Weight::F32(v) => v.len(),
            Weight::View(v) => v.numel(),
        }
    }

    /// Whether the weight is absent or empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor's name when it is a file's, else `what`.
    fn name(&self, what: &str) -> String {
        match self {
            Weight::View(v) => format!("{} ({what})", v.name),
            _ => what.to_string(),
        }
    }

    /// Appends values `from..from + n` as f32 to `out` (zeros when absent).
    fn read(&self, from: usize, n: usize, out: &mut Vec<f32>) -> Result<()> {
        match self {
            Weight::Absent => out.resize(out.len() + n, 0.0),
            Weight::F32(v) => out.extend_from_slice(&v[from..from + n]),
            Weight::View(v) => {
                let s = v.dtype.size();
                let d = &v.data[from * s..(from + n) * s];
                match v.dtype {
                    FileDType::F16 => out.extend(
                        d.chunks_exact(2)
                            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
                    ),
                    FileDType::BF16 => out.extend(
                        d.chunks_exact(2)
                            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
                    ),
                    FileDType::F32 => out.extend(
                        d.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    ),
                    _ => out.extend(v.to_f32_vec()?.into_iter().skip(from).take(n)),
                }
            }
        }
        Ok(())
    }

    /// All values as f32.
    fn values(&self) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.len());
        self.read(0, self.len(), &mut out)?;
        Ok(out)
    }
}

/// One recurrent layer's weights for one direction, in PyTorch's layouts (`nn.LSTM`'s
/// `weight_ih_l{k}` etc.; gate order i, f, g, o for the LSTM and r, z, n for the GRU).
#[derive(Clone, Copy, Debug, Default)]
pub struct RecurrentLayerWeights<'a> {
    /// `[G*H, IN]`.
    pub w_ih: Weight<'a>,
    /// `[G*H, H]`.
    pub w_hh: Weight<'a>,
    /// `[G*H]` (absent: zeros, as `bias=False`).
    pub b_ih: Weight<'a>,
    /// `[G*H]` (absent: zeros).
    pub b_hh: Weight<'a>,
}

impl<'a> RecurrentLayerWeights<'a> {
    /// Weights without biases (set `b_ih` / `b_hh` to add them).
    pub fn new(w_ih: Weight<'a>, w_hh: Weight<'a>) -> Self {
        RecurrentLayerWeights {
            w_ih,
            w_hh,
            ..Default::default()
        }
    }
}

/// An encoder's weights: the embedding and an LSTM / GRU / RNN stack.
#[derive(Clone, Debug, Default)]
pub struct EncoderWeights<'a> {
    /// `[V, E]`.
    pub emb: Weight<'a>,
    /// Per layer and direction, layer-major (`layers[l * D + d]`, as `h_n`'s rows).
    pub layers: Vec<RecurrentLayerWeights<'a>>,
}

/// The decoder's attention parameters by kind (what the fused decoder runs).
#[derive(Clone, Copy, Debug, Default)]
pub enum AttentionWeights<'a> {
    /// No attention, or dot attention (no parameters).
    #[default]
    None,
    /// Luong general: `W` `[H, M]`.
    General {
        /// `[H, M]`.
        w: Weight<'a>,
    },
    /// Bahdanau additive `v . tanh(W_q h + W_k m + b)`: the keys' projection `mem W_k^T` is
    /// computed beside the kernel, its bias is added here.
    Additive {
        /// `W_q` `[A, H]`.
        w_q: Weight<'a>,
        /// The bias of `W_k` `[A]` (absent: zeros).
        b_k: Weight<'a>,
        /// `v` `[A]`.
        v: Weight<'a>,
    },
}

/// A decoder's weights for the fused decoder ([`DecoderLoopDims`] says the sizes).
#[derive(Clone, Debug, Default)]
pub struct DecoderWeights<'a> {
    /// `[V, E]`.
    pub emb: Weight<'a>,
    /// Per layer: the cell's weights (`w_ih` `[G*H, IN_l]`).
    pub cells: Vec<RecurrentLayerWeights<'a>>,
    /// Attention parameters (must match the dims' attention).
    pub attention: AttentionWeights<'a>,
    /// Luong attentional layer `W_c` `[H, C + H]` (with `attn_layer`).
    pub w_c: Weight<'a>,
    /// Output projection `[V, OUT_IN]`.
    pub out_w: Weight<'a>,
    /// Output bias `[V]` (absent: zeros).
    pub out_b: Weight<'a>,
}

impl EncoderWeights<'_> {
    /// Packs the weights of an encoder of `spec` over `vocab` ids for the fused encoder kernel and
    /// uploads them (f16), folding the embedding into layer 0's input projection where that pays
    /// (see [`EncoderWeights::pack_with_fold`]).
    pub fn pack(&self, gpu: &Gpu, spec: RecurrentSpec, vocab: usize) -> Result<EncoderBlob> {
        self.pack_with_fold(gpu, spec, vocab, EncoderLayout::folds(&spec, vocab))
    }

    /// [`EncoderWeights::pack`] with the choice made by the caller. `fold`: layer 0 reads, per
    /// direction, an f32 table `[vocab, G*H]` of `W_ih emb[v] + b_ih` (one row read per step
    /// instead of the embedding lookup and a `G*H x E` product).
    pub fn pack_with_fold(
        &self,
        gpu: &Gpu,
        spec: RecurrentSpec,
        vocab: usize,
        fold: bool,
    ) -> Result<EncoderBlob> {
        let layout = EncoderLayout::new(spec, vocab, fold)?;
        let op = layout.blob.op();
        let dirs = spec.directions();
        if self.layers.len() != spec.num_layers * dirs {
            return Err(Error::shape(
                op,
                format!(
                    "{} layer weight sets for {} layers x {dirs} directions",
                    self.layers.len(),
                    spec.num_layers
                ),
            ));
        }
        let (e, gh) = (spec.input_size, spec.kind.gates() * spec.hidden_size);
        let blob = stream(gpu, &layout.blob, |slot, w| {
            let lw = |l: usize, d: usize| &self.layers[l * dirs + d];
            match slot.part {
                Part::Embedding => w.slot(slot, &self.emb, "embedding"),
                Part::FoldedTable { l, d } => {
                    let c = lw(l, d);
                    let table = fold_embedding(op, &self.emb, vocab, e, c, gh, e)?;
                    w.slot(slot, &Weight::F32(&table), "folded table")
                }
                Part::WeightIh { l, d } => w.slot(slot, &lw(l, d).w_ih, &desc("weight_ih", l, d)),
                Part::WeightHh { l, d } => w.slot(slot, &lw(l, d).w_hh, &desc("weight_hh", l, d)),
                Part::BiasIh { l, d } => w.slot(slot, &lw(l, d).b_ih, &desc("bias_ih", l, d)),
                Part::BiasHh { l, d } => w.slot(slot, &lw(l, d).b_hh, &desc("bias_hh", l, d)),
                p => Err(Error::invalid(op, format!("no {p:?} in an encoder"))),
            }
        })?;
        EncoderBlob::from_packed(layout, blob)
    }
}

impl DecoderWeights<'_> {
    /// Packs the weights (shapes checked against `dims`) for the fused decoder and uploads them
    /// (f16), folding the embedding into layer 0's input projection where that pays (see
    /// [`DecoderWeights::pack_with_fold`]).
    pub fn pack(&self, gpu: &Gpu, dims: DecoderLoopDims) -> Result<DecoderBlob> {
        self.pack_with_fold(gpu, dims, dims.folds_embedding())
    }

    /// [`DecoderWeights::pack`] with the choice made by the caller. `fold`: layer 0 reads the f32
    /// table `[V, G*H]` of `W_ih[:, :E] emb[v] + b_ih` instead of a `G*H x E` product per step.
    pub fn pack_with_fold(
        &self,
        gpu: &Gpu,
        dims: DecoderLoopDims,
        fold: bool,
    ) -> Result<DecoderBlob> {
        let layout = DecoderLayout::new(dims, fold)?;
        let op = layout.blob.op();
        let d = layout.dims();
        if self.cells.len() != d.layers {
            return Err(Error::shape(
                op,
                format!(
                    "{} cell weight sets for {} layers",
                    self.cells.len(),
                    d.layers
                ),
            ));
        }
        let (h, m, gh) = (d.hidden, d.mem, d.cell.gates() * d.hidden);
        let attention = match (d.attention, self.attention) {
            (LoopAttention::None | LoopAttention::Dot, AttentionWeights::None)
            | (LoopAttention::General, AttentionWeights::General { .. })
            | (LoopAttention::Additive, AttentionWeights::Additive { .. }) => self.attention,
            (want, got) => {
                return Err(Error::invalid(
                    op,
                    format!("{want:?} attention was given {got:?} weights"),
                ))
            }
        };
        let (w_q, b_k, v) = match attention {
            AttentionWeights::Additive { w_q, b_k, v } => (w_q, b_k, v),
            _ => Default::default(),
        };
        let blob = stream(gpu, &layout.blob, |slot, w| match slot.part {
            Part::Embedding => w.slot(slot, &self.emb, "embedding"),
            Part::FoldedTable { l, .. } => {
                let n_in = d.input0();
                let table =
                    fold_embedding(op, &self.emb, d.vocab, d.emb, &self.cells[l], gh, n_in)?;
                w.slot(slot, &Weight::F32(&table), "folded table")
            }
            Part::WeightIh { l, .. } => w.slot(slot, &self.cells[l].w_ih, &desc("weight_ih", l, 0)),
            Part::WeightHh { l, .. } => w.slot(slot, &self.cells[l].w_hh, &desc("weight_hh", l, 0)),
            Part::BiasIh { l, .. } => w.slot(slot, &self.cells[l].b_ih, &desc("bias_ih", l, 0)),
            Part::BiasHh { l, .. } => w.slot(slot, &self.cells[l].b_hh, &desc("bias_hh", l, 0)),
            Part::GeneralT => {
                let AttentionWeights::General { w: g } = attention else {
                    return Err(Error::invalid(op, "general attention needs W"));
                };
                if g.len() != h * m {
                    return Err(Error::shape(
                        op,
                        format!(
                            "{}: {} values, expected [{h}, {m}]",
                            g.name("general attention W"),
                            g.len()
                        ),
                    ));
                }
                let g = g.values()?;
                let mut t = vec![0.0; h * m];
                for r in 0..h {
                    for c in 0..m {
                        t[c * h + r] = g[r * m + c];
                    }
                }
                w.slot(slot, &Weight::F32(&t), "general attention W^T")
            }
            Part::AttnQuery => w.slot(slot, &w_q, "additive attention W_q"),
            Part::AttnKeyBias => w.slot(slot, &b_k, "additive attention W_k bias"),
            Part::AttnV => w.slot(slot, &v, "additive attention v"),
            Part::AttnLayer => w.slot(slot, &self.w_c, "attentional layer W_c"),
            Part::Output => w.slot(slot, &self.out_w, "output weight"),
            Part::OutputBias => w.slot(slot, &self.out_b, "output bias"),
            Part::Zeros => w.slot(slot, &Weight::Absent, "padding"),
        })?;
        DecoderBlob::from_packed(layout, blob)
    }
}

/// "layer {l} direction {d} {what}" for errors about host slices (file tensors give their name).
fn desc(what: &str, l: usize, d: usize) -> String {
    if d == 0 {
        format!("layer {l} {what}")
    } else {
        format!("layer {l} reverse {what}")
    }
}

/// The folded table `[vocab, rows]` (f32): `table[v, r] = b_ih[r] + sum_i w_ih[r, i] emb[v, i]`
/// over the first `e` of `ld` columns of `c.w_ih` `[rows, ld]`, `emb` `[vocab, e]`, `c.b_ih`
/// `[rows]` (absent: zeros). Weights and embedding are rounded to f16 first, as the kernel would
/// read them unfolded; the sum is taken in f64.
fn fold_embedding(
    op: &str,
    emb: &Weight,
    vocab: usize,
    e: usize,
    c: &RecurrentLayerWeights,
    rows: usize,
    ld: usize,
) -> Result<Vec<f32>> {
    for (w, what, len) in [
        (emb, "embedding", vocab * e),
        (&c.w_ih, "layer 0 weight_ih", rows * ld),
    ] {
        if w.len() != len {
            return Err(Error::shape(
                op,
                format!("{}: {} values, expected {len}", w.name(what), w.len()),
            ));
        }
    }
    if !c.b_ih.is_empty() && c.b_ih.len() != rows {
        return Err(Error::shape(
            op,
            format!(
                "{}: {} values, expected {rows}",
                c.b_ih.name("layer 0 bias_ih"),
                c.b_ih.len()
            ),
        ));
    }
    let (emb, w_ih, b_ih) = (emb.values()?, c.w_ih.values()?, c.b_ih.values()?);
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
    Ok(out)
}

/// Allocates the blob of `layout` (f16) and fills it slot by slot with `fill`, streaming it to the
/// GPU in chunks.
fn stream(
    gpu: &Gpu,
    layout: &BlobLayout,
    mut fill: impl FnMut(&Slot, &mut BlobWriter) -> Result<()>,
) -> Result<Tensor> {
    let len = layout.len();
    let tensor = Tensor::zeros(gpu, &[len], DType::F16)?;
    // Even element counts per chunk keep every write a whole number of 4-byte words.
    let cap = ((DEFAULT_CHUNK_BYTES / 2).min(len) + 1) & !1;
    let mut w = BlobWriter {
        gpu,
        op: layout.op(),
        stager: Stager::new(gpu, (cap * 2) as u64),
        tensor,
        buf: Vec::with_capacity(cap),
        cap,
        base: 0,
        row: Vec::new(),
    };
    for slot in layout.slots() {
        w.seek(slot.offset)?;
        fill(slot, &mut w)?;
    }
    w.seek(len)?;
    w.flush()?;
    let op = w.op;
    let during = || format!("uploading the {op} weight blob");
    w.stager.finish(gpu, &during)?;
    gpu.check_errors(&during())?;
    Ok(w.tensor)
}

/// Writes a blob front to back through a bounded host chunk.
struct BlobWriter<'g> {
    gpu: &'g Gpu,
    op: &'static str,
    stager: Stager,
    tensor: Tensor,
    /// Slots `base..base + buf.len()` not yet written.
    buf: Vec<f16>,
    cap: usize,
    base: usize,
    /// One source row in f32.
    row: Vec<f32>,
}

impl BlobWriter<'_> {
    fn pos(&self) -> usize {
        self.base + self.buf.len()
    }

    fn put(&mut self, x: f16) -> Result<()> {
        self.buf.push(x);
        if self.buf.len() == self.cap {
            self.flush()?;
        }
        Ok(())
    }

    /// Zeros up to slot `at` (slots are written in increasing order).
    fn seek(&mut self, at: usize) -> Result<()> {
        if at < self.pos() {
            return Err(Error::invalid(
                self.op,
                format!("blob slot at {at} is behind the writer at {}", self.pos()),
            ));
        }
        while self.pos() < at {
            self.put(f16::ZERO)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.len() % 2 == 1 {
            self.buf.push(f16::ZERO);
        }
        let op = self.op;
        let during = || format!("uploading the {op} weight blob");
        self.stager.write(
            self.gpu,
            self.tensor.buffer(),
            (self.base * 2) as u64,
            bytemuck::cast_slice(&self.buf),
            &during,
        )?;
        self.base += self.buf.len();
        self.buf.clear();
        Ok(())
    }

    /// Writes `src` (`[slot.rows, slot.src_cols()]`) into `slot`; `what` names it in errors.
    fn slot(&mut self, slot: &Slot, src: &Weight, what: &str) -> Result<()> {
        let cols = slot.src_cols();
        let want = slot.rows * cols;
        match src {
            Weight::Absent if !slot.part.optional() => {
                return Err(Error::invalid(
                    self.op,
                    format!("{what} [{}, {cols}] is missing", slot.rows),
                ))
            }
            Weight::Absent => {}
            _ if src.len() != want => {
                return Err(Error::shape(
                    self.op,
                    format!(
                        "{}: {} values, expected [{}, {cols}]",
                        src.name(what),
                        src.len(),
                        slot.rows
                    ),
                ))
            }
            _ => {}
        }
        let mut row = std::mem::take(&mut self.row);
        for r in 0..slot.rows {
            let start = self.pos();
            row.clear();
            src.read(r * cols + slot.skip, cols - slot.skip, &mut row)?;
            match slot.form {
                Form::F16 => {
                    let mut at = 0;
                    for &seg in &slot.segments {
                        for &x in &row[at..at + seg] {
                            self.put(f16::from_f32(x))?;
                        }
                        for _ in seg..p8(seg) {
                            self.put(f16::ZERO)?;
                        }
                        at += seg;
                    }
                }
                Form::F32Pairs => {
                    for &x in &row {
                        let bits = x.to_bits();
                        self.put(f16::from_bits(bits as u16))?;
                        self.put(f16::from_bits((bits >> 16) as u16))?;
                    }
                }
            }
            self.seek(start + slot.ld)?;
        }
        self.row = row;
        Ok(())
    }
}
