//! What the fused RNN kernels (`decoder_loop`, `encoder_loop`) share: the WGSL body
//! (`shaders/common/rnn_fused.wgsl`: weight blob, shared vector, vec4 products, cell update), the blob
//! layout contract ([`BlobLayout`]: which weight lies where, in which form) and the workgroup size.
//!
//! Who owns what: the kernels (here, `encoder_loop`, `decoder_loop/blob.rs`) define the layout the
//! WGSL reads, as a list of [`Slot`]s (offset, rows, column segments, row stride, f16 or f32
//! pairs) and the WGSL constants of their offsets; they never see weight values. The packer
//! ([`crate::weights::pack`]) takes typed weights, fills the slots (embedding fold, dropped
//! columns, transposes included) and streams the blob to the GPU in bounded chunks; the model
//! ([`crate::models::seq2seq`]) maps PyTorch names to the typed weights.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// The shared WGSL body, composed in front of each fused kernel.
pub(crate) const RNN_FUSED_SRC: &str = include_str!("../../shaders/common/rnn_fused.wgsl");

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

/// Which weight a [`Slot`] holds (per layer `l` and direction `d`; the decoder has `d` = 0). The
/// packer reads each from the typed weights in the PyTorch layout given here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    /// The embedding `[V, E]`.
    Embedding,
    /// `weight_ih` `[G*H, IN]` (the slot's `skip` leading columns dropped: they are in the
    /// folded table).
    WeightIh { l: usize, d: usize },
    /// The folded table `[V, G*H]` (f32): `t[v, r] = b_ih[r] + sum_i w_ih[r, i] emb[v, i]` over the
    /// first E columns of `weight_ih`, weights, bias and embedding rounded to f16 first (as the
    /// kernel would read them unfolded), the sum in f64.
    FoldedTable { l: usize, d: usize },
    /// `weight_hh` `[G*H, H]`.
    WeightHh { l: usize, d: usize },
    /// `bias_ih` `[G*H]` (absent: zeros).
    BiasIh { l: usize, d: usize },
    /// `bias_hh` `[G*H]` (absent: zeros).
    BiasHh { l: usize, d: usize },
    /// General attention's `W^T` `[M, H]` (`W` `[H, M]` transposed).
    GeneralT,
    /// Additive attention's `W_q` `[A, H]`.
    AttnQuery,
    /// Additive attention's key bias `[A]` (absent: zeros).
    AttnKeyBias,
    /// Additive attention's `v` `[A]`.
    AttnV,
    /// The Luong attentional layer `W_c` `[H, C + H]`.
    AttnLayer,
    /// The output projection `[V, OUT_IN]`.
    Output,
    /// The output bias `[V]` (absent: zeros).
    OutputBias,
    /// Zeros (keeps per-layer blocks the same size).
    Zeros,
}

impl Part {
    /// Whether the packer may fill an absent weight with zeros.
    pub(crate) fn optional(self) -> bool {
        matches!(
            self,
            Part::BiasIh { .. }
                | Part::BiasHh { .. }
                | Part::AttnKeyBias
                | Part::OutputBias
                | Part::Zeros
        )
    }
}

/// How a slot's values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Form {
    /// One f16 per value.
    F16,
    /// One f32 per value as its two 16-bit halves (low first) in two slots, read with `blob_f32`
    /// in rnn_fused.wgsl.
    F32Pairs,
}

/// One weight's region of the blob: `rows` rows of `ld` slots from `offset`. In [`Form::F16`] each
/// row holds the source row's columns `skip..` split into `segments`, each segment padded with
/// zeros to a multiple of 8 (as the shared vector it multiplies); in [`Form::F32Pairs`] one
/// segment of `cols` values takes `2 * cols` slots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    /// The weight.
    pub(crate) part: Part,
    /// First slot (a multiple of 8).
    pub(crate) offset: usize,
    /// Rows.
    pub(crate) rows: usize,
    /// Leading source columns not stored.
    pub(crate) skip: usize,
    /// Stored column segments (source columns `skip..`).
    pub(crate) segments: Vec<usize>,
    /// Row stride in slots (a multiple of 8).
    pub(crate) ld: usize,
    /// Storage form.
    pub(crate) form: Form,
}

impl Slot {
    /// Columns of the source matrix (`[rows, src_cols]`).
    pub(crate) fn src_cols(&self) -> usize {
        self.skip + self.segments.iter().sum::<usize>()
    }
}

/// A blob's slots in increasing offset order and its length (f16 slots, a multiple of 8, at
/// least 8 so the binding is never empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct BlobLayout {
    slots: Vec<Slot>,
    end: usize,
    op: &'static str,
}

impl BlobLayout {
    /// An empty layout for kernel `op` (named in errors).
    pub(crate) fn new(op: &'static str) -> Self {
        BlobLayout {
            slots: Vec::new(),
            end: 0,
            op,
        }
    }

    /// The kernel's name.
    pub(crate) fn op(&self) -> &'static str {
        self.op
    }

    /// The slots, in increasing offset order.
    pub(crate) fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Slots of the blob.
    pub(crate) fn len(&self) -> usize {
        p8(self.end.max(1))
    }

    fn push(&mut self, slot: Slot) -> Result<(u32, u32)> {
        let at = self.end;
        let ld = slot.ld;
        self.end = at
            .checked_add(slot.rows.saturating_mul(ld))
            .filter(|&e| u32::try_from(e).is_ok())
            .ok_or_else(|| {
                Error::invalid(self.op, "weights too large for the blob's u32 offsets")
            })?;
        self.slots.push(Slot { offset: at, ..slot });
        Ok((at as u32, ld as u32))
    }

    /// Appends `[rows, skip + sum(segments)]` (columns `skip..` stored) with each column segment
    /// padded to a multiple of 8 and rows to at least `min_ld`; returns (offset, row stride).
    pub(crate) fn matrix_segments(
        &mut self,
        part: Part,
        rows: usize,
        skip: usize,
        segments: &[usize],
        min_ld: usize,
    ) -> Result<(u32, u32)> {
        self.push(Slot {
            part,
            offset: 0,
            rows,
            skip,
            segments: segments.to_vec(),
            ld: padded(segments).max(min_ld),
            form: Form::F16,
        })
    }

    /// Appends `[rows, cols]` with rows padded to a multiple of 8.
    pub(crate) fn matrix(&mut self, part: Part, rows: usize, cols: usize) -> Result<(u32, u32)> {
        self.matrix_segments(part, rows, 0, &[cols], 0)
    }

    /// Appends `[rows, cols]` f32 values in [`Form::F32Pairs`], rows padded to a multiple of 8
    /// slots; returns (offset, row stride) in slots.
    pub(crate) fn table_f32(&mut self, part: Part, rows: usize, cols: usize) -> Result<(u32, u32)> {
        self.push(Slot {
            part,
            offset: 0,
            rows,
            skip: 0,
            segments: vec![cols],
            ld: p8(2 * cols),
            form: Form::F32Pairs,
        })
    }
}

/// Checks that a packed blob is `[len]` f16, as its layout says (the encoder and decoder blobs).
pub(crate) fn check_packed(
    op: &str,
    blob: &crate::tensor::Tensor,
    len: usize,
) -> crate::error::Result<()> {
    if blob.shape() != [len] || blob.dtype() != crate::tensor::DType::F16 {
        return Err(crate::error::Error::shape(
            op,
            format!(
                "packed blob {:?} {} must be [{len}] f16",
                blob.shape(),
                blob.dtype()
            ),
        ));
    }
    Ok(())
}
