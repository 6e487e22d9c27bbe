//! Fused decoding of RNN decoders with attention (`shaders/decoder_loop.wgsl`).
//!
//! - Greedy ([`dispatch`]): one workgroup per sequence runs whole decoder steps (embedding, cell
//!   stack, dot / general / additive attention in Luong or Bahdanau order, Luong attentional layer,
//!   output projection, argmax and log-softmax) up to a stop step per dispatch, each step's argmax
//!   feeding the next step's embedding lookup. A sequence's workgroup stops at its end token or at
//!   `max_len` steps, so chunks of many steps cost nothing past the end.
//! - Beam search ([`beam_step_dispatches`]): one step of every hypothesis per dispatch, each row
//!   continuing its parent row's state (ping-pong state halves) and writing its logits, for the
//!   top-k and beam-select kernels that follow.
//!
//! One dispatch per chunk of steps instead of about ten per step: on drivers where a dispatch is
//! expensive (lavapipe: ~30 us each) this is what makes a step cheap next to a submission. It
//! suits decoders whose step fits one workgroup (hidden and vocabulary sizes of hundreds to a few
//! thousands); [`DecoderLoopDims::check`] says when a model does not fit.
//!
//! Weights live in one f16 blob ([`DecoderBlob`]): every decoder matrix with rows padded to a
//! multiple of 8, so one binding holds them all (the kernel uses 8 storage bindings, WebGPU's
//! default limit) and a lane loads 8 weights at once (a `vec4<u32>`, read without `SHADER_F16`).

use std::ops::Range;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{compose, declare_input, Dispatch, Elem, Gpu};
use crate::kernels::recurrent::CellKind;
use crate::kernels::rnn_fused::{
    drop_columns, fold_embedding, fold_pays, p8, padded, wg, Packer, RNN_FUSED_SRC,
};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/decoder_loop.wgsl");
const OP: &str = "decoder_loop";

/// Attention of the fused decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoopAttention {
    /// No attention: the output projection reads the top hidden state.
    None,
    /// Luong dot: `h . m_t` (needs H = M).
    Dot,
    /// Luong general: `h . (W m_t)`, `W [H, M]`.
    General,
    /// Bahdanau additive: `v . tanh(W_q h + b + kp_t)` with `kp = mem W_k^T` precomputed.
    Additive,
}

/// Sizes and options of a decoder the fused kernel runs. In Luong order the cell stack runs first
/// and its new top hidden state is the query; in Bahdanau order the previous top hidden state is
/// the query, the cell input is `[emb; ctx]` and the output layer reads `[h; ctx; emb]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecoderLoopDims {
    /// Cell of every layer.
    pub cell: CellKind,
    /// Stacked layers L.
    pub layers: usize,
    /// Embedding width E.
    pub emb: usize,
    /// Hidden units H.
    pub hidden: usize,
    /// Encoder memory width M.
    pub mem: usize,
    /// Additive score width A (0 otherwise).
    pub attn_dim: usize,
    /// Target vocabulary V.
    pub vocab: usize,
    /// Attention.
    pub attention: LoopAttention,
    /// The previous context is concatenated to the embedded input.
    pub input_feeding: bool,
    /// Luong attentional layer `tanh(W_c [ctx; h])` before the output projection.
    pub attn_layer: bool,
    /// Bahdanau step order (needs attention; excludes input feeding and the attentional layer).
    pub bahdanau: bool,
}

impl DecoderLoopDims {
    /// Context width C (0 without attention).
    pub fn ctx(&self) -> usize {
        if self.attention == LoopAttention::None {
            0
        } else {
            self.mem
        }
    }

    /// Width of layer 0's input: E, plus C with input feeding or in Bahdanau order.
    pub fn input0(&self) -> usize {
        self.input0_segments().iter().sum()
    }

    /// Whether [`DecoderBlob::new`] folds the embedding into layer 0's input projection (a table
    /// `[V, G*H]` of `W_ih[:, :E] emb[v] + b_ih`): when the table costs at most 4x the weights it
    /// replaces.
    pub fn folds_embedding(&self) -> bool {
        fold_pays(self.vocab, self.emb)
    }

    /// Width of the output projection's input.
    pub fn out_in(&self) -> usize {
        self.out_segments().iter().sum()
    }

    /// Segments of layer 0's input ([emb | ctx] or [emb]), each padded to 8 in the shared vector.
    fn input0_segments(&self) -> Vec<usize> {
        if (self.input_feeding || self.bahdanau) && self.attention != LoopAttention::None {
            vec![self.emb, self.ctx()]
        } else {
            vec![self.emb]
        }
    }

    /// Segments of the output projection's input ([ctx | h], [h], or [h | ctx | emb] in Bahdanau
    /// order).
    fn out_segments(&self) -> Vec<usize> {
        if self.bahdanau {
            return vec![self.hidden, self.ctx(), self.emb];
        }
        match (self.attention, self.attn_layer) {
            (LoopAttention::None, _) | (_, true) => vec![self.hidden],
            _ => vec![self.ctx(), self.hidden],
        }
    }

    /// Float offsets in the shared vector (all multiples of 8): x, h per layer, c per layer, gate
    /// pre-activations, [ctx | h], query projection, attentional-layer output, and the end.
    fn shared_layout(&self) -> [usize; 8] {
        let h8 = p8(self.hidden);
        let lh = self.layers * h8;
        let x = 0;
        let h = x + padded(&self.input0_segments());
        let c = h + lh;
        let gates = c + if self.cell == CellKind::Lstm { lh } else { 0 };
        let ctx = gates + 2 * self.cell.gates() * h8;
        let qp = ctx + p8(self.ctx()) + h8;
        let o = qp + p8(self.mem.max(self.attn_dim));
        let o_len = if self.bahdanau {
            padded(&self.out_segments())
        } else {
            h8
        };
        [x, h, c, gates, ctx, qp, o, o + o_len]
    }

    /// Checks the sizes against each other and the device for encoder length `t`; the error says
    /// what does not fit (callers fall back to the per-op decoder).
    pub fn check(&self, gpu: &Gpu, t: usize) -> Result<()> {
        let d = self;
        for (what, v) in [
            ("layers", d.layers),
            ("emb", d.emb),
            ("hidden", d.hidden),
            ("vocab", d.vocab),
            ("encoder length", t),
        ] {
            if v == 0 {
                return Err(Error::invalid(OP, format!("{what} must be >= 1")));
            }
        }
        if d.attention != LoopAttention::None && d.mem == 0 {
            return Err(Error::invalid(OP, "attention needs a memory width >= 1"));
        }
        if d.attention == LoopAttention::Dot && d.hidden != d.mem {
            return Err(Error::shape(
                OP,
                format!("dot attention needs hidden {} = memory {}", d.hidden, d.mem),
            ));
        }
        if d.bahdanau && (d.attention == LoopAttention::None || d.input_feeding || d.attn_layer) {
            return Err(Error::invalid(
                OP,
                "the Bahdanau order needs attention, without input feeding or the attentional layer",
            ));
        }
        if d.attention == LoopAttention::Additive && d.attn_dim == 0 {
            return Err(Error::invalid(OP, "additive attention needs attn_dim >= 1"));
        }
        let shared = 4 * (d.shared_layout()[7] + tmax(t) + 3 * wg(gpu) as usize + 2);
        let limit = gpu.caps().max_workgroup_storage as usize;
        if shared > limit {
            return Err(Error::Limit {
                what: format!(
                    "{OP}: one sequence's decoder state in workgroup memory ({d:?}, T {t})"
                ),
                needed: shared as u64,
                limit_name: "max_compute_workgroup_storage_size",
                limit: limit as u64,
            });
        }
        if gpu.caps().max_storage_buffers < 8 {
            return Err(Error::Limit {
                what: format!("{OP}: storage bindings"),
                needed: 8,
                limit_name: "max_storage_buffers_per_shader_stage",
                limit: gpu.caps().max_storage_buffers as u64,
            });
        }
        Ok(())
    }
}

/// Encoder length rounded up for the shared weights row (few pipeline variants).
fn tmax(t: usize) -> usize {
    t.next_power_of_two().max(16)
}

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
struct Layout {
    consts: Vec<(&'static str, u32)>,
}

/// The decoder's weights packed into one f16 tensor, with the offsets the kernel reads.
#[derive(Debug)]
pub struct DecoderBlob {
    /// All weights, rows padded to multiples of 8.
    pub blob: Tensor,
    dims: DecoderLoopDims,
    layout: Layout,
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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    r: u32,
    t: u32,
    max_len: u32,
    gates: u32,
    eos: u32,
    keep_attn: u32,
    c_base: u32,
    ctx_base: u32,
    in_half: u32,
    out_half: u32,
    len_base: u32,
    skip_eos: u32,
}

/// Buffers of a fused decode over `R` sequences and `T` encoder positions.
#[derive(Clone, Copy, Debug)]
pub struct LoopBuffers<'a> {
    /// Encoder states `[R, T, M]` f32.
    pub mem: &'a Tensor,
    /// Additive: `mem W_k^T` `[R, T, A]` f32; otherwise any f32 tensor (unused).
    pub keys_proj: &'a Tensor,
    /// Decoder state, f32, laid out by [`state_layout`].
    pub state: &'a Tensor,
    /// `[R + 1, 4]` u32: per sequence the current input token, done flag, input length (1..=T)
    /// and steps taken; row R holds the stop step of the next run ([`write_stop`]).
    pub ctl: &'a Tensor,
    /// `[max_len, R]` u32 chosen tokens.
    pub tokens: &'a Tensor,
    /// `[max_len, R]` (f32 bits) their log-probabilities.
    pub logps: &'a Tensor,
    /// `[max_len, R, T]` f32 attention weights when kept; otherwise any tensor (unused).
    pub attn: &'a Tensor,
}

/// Ranges (in f32 elements) of the state tensor for `r` rows: h `[L, R, H]`, LSTM c `[L, R, H]`,
/// context `[R, C]`; the total is the third range's end.
pub fn state_layout(dims: &DecoderLoopDims, r: usize) -> [Range<usize>; 3] {
    let lh = dims.layers * r * dims.hidden;
    let c = if dims.cell == CellKind::Lstm { lh } else { 0 };
    [0..lh, lh..lh + c, lh + c..lh + c + r * dims.ctx()]
}

fn want(what: &str, t: &Tensor, shape: &[usize], dtypes: &[DType]) -> Result<()> {
    if t.shape() != shape || !dtypes.contains(&t.dtype()) {
        return Err(Error::shape(
            OP,
            format!(
                "{what} {:?} {} must be {shape:?} {:?}",
                t.shape(),
                t.dtype(),
                dtypes
            ),
        ));
    }
    Ok(())
}

/// Sets the step at which the next run of the dispatch stops (exclusive): a sequence that has taken
/// `n` steps runs `stop - n` more unless it ends first. Queue writes land before the next
/// submission, so submit each run separately when the stop changes between runs.
pub fn write_stop(gpu: &Gpu, ctl: &Tensor, stop: usize) -> Result<()> {
    let rows = match ctl.shape() {
        &[rows, 4] if rows >= 2 => rows - 1,
        s => return Err(Error::shape(OP, format!("ctl {s:?} must be [R + 1, 4]"))),
    };
    let stop = u32::try_from(stop).unwrap_or(u32::MAX);
    ctl.write_bytes(
        gpu,
        (rows * 16) as u64,
        bytemuck::cast_slice(&[stop, 0, 0, 0]),
    );
    Ok(())
}

/// Builds the dispatch that runs decoder steps of every unfinished sequence up to the stop step in
/// `ctl` ([`write_stop`]): `max_len` caps the steps a sequence takes in all, `eos` ends it;
/// attention weights are written when `keep_attn`. Record it as often as needed; each run
/// continues from `ctl` and `state`.
pub fn dispatch(
    gpu: &Gpu,
    blob: &DecoderBlob,
    bufs: &LoopBuffers,
    max_len: usize,
    eos: u32,
    keep_attn: bool,
) -> Result<Dispatch> {
    let (r, t) = mem_rows(gpu, blob, bufs.mem)?;
    if max_len == 0 {
        return Err(Error::invalid(OP, "max_len must be >= 1"));
    }
    let layout = state_layout(&blob.dims, r);
    want("state", bufs.state, &[layout[2].end.max(1)], &[DType::F32])?;
    want("ctl", bufs.ctl, &[r + 1, 4], &[DType::U32])?;
    want("tokens", bufs.tokens, &[max_len, r], &[DType::U32])?;
    want(
        "logps",
        bufs.logps,
        &[max_len, r],
        &[DType::F32, DType::U32],
    )?;
    if keep_attn {
        want("attn", bufs.attn, &[max_len, r, t], &[DType::F32])?;
    }
    let extra = Params {
        max_len: max_len as u32,
        eos,
        ..Params::zeroed()
    };
    let io = [bufs.state, bufs.ctl, bufs.tokens, bufs.logps, bufs.attn];
    build(
        gpu,
        blob,
        bufs.mem,
        bufs.keys_proj,
        io,
        extra,
        keep_attn,
        false,
    )
}

/// Buffers of beam-search steps over `R` rows (hypotheses) and `T` encoder positions.
#[derive(Clone, Copy, Debug)]
pub struct BeamStepBuffers<'a> {
    /// Encoder states `[R, T, M]` f32.
    pub mem: &'a Tensor,
    /// Additive: `mem W_k^T` `[R, T, A]` f32; otherwise any f32 tensor of 4 or more elements.
    pub keys_proj: &'a Tensor,
    /// `[beam_state_len(R)]` f32: two halves laid out by [`state_layout`] (ping-pong), then the
    /// rows' input lengths `[R]` (u32 bits, written by [`write_beam_lengths`]).
    pub state: &'a Tensor,
    /// `[R]` u32: the row each row continues (identity before the first step).
    pub parent: &'a Tensor,
    /// `[R]` u32: each row's input token.
    pub tokens: &'a Tensor,
    /// `[R, V]` f32: the step's logits.
    pub logits: &'a Tensor,
    /// `[R, T]` f32: the step's attention weights (when kept; otherwise any f32 tensor).
    pub weights: &'a Tensor,
}

/// Floats of a beam state tensor for `r` rows.
pub fn beam_state_len(dims: &DecoderLoopDims, r: usize) -> usize {
    2 * state_layout(dims, r)[2].end + r
}

/// Writes the rows' input lengths into a beam state tensor of `lengths.len()` rows.
pub fn write_beam_lengths(
    gpu: &Gpu,
    dims: &DecoderLoopDims,
    state: &Tensor,
    lengths: &[u32],
) -> Result<()> {
    let r = lengths.len();
    want("state", state, &[beam_state_len(dims, r)], &[DType::F32])?;
    let at = 2 * state_layout(dims, r)[2].end;
    state.write_bytes(gpu, (at * 4) as u64, bytemuck::cast_slice(lengths));
    Ok(())
}

/// Builds the two dispatches of one beam-search step (reading state half 0 and writing half 1,
/// and the reverse): each row continues its parent's state with its token and writes the step's
/// logits (and attention weights when `keep_attn`); top-k and the selection run after it. With
/// `skip_eos`, rows whose token is that id skip the step (the selection feeds the end token to
/// finished items and dead rows, whose results nothing reads); pass it only when the first input
/// is not the end token.
pub fn beam_step_dispatches(
    gpu: &Gpu,
    blob: &DecoderBlob,
    bufs: &BeamStepBuffers,
    keep_attn: bool,
    skip_eos: Option<u32>,
) -> Result<[Dispatch; 2]> {
    let (r, t) = mem_rows(gpu, blob, bufs.mem)?;
    let d = &blob.dims;
    want("state", bufs.state, &[beam_state_len(d, r)], &[DType::F32])?;
    want("parent", bufs.parent, &[r], &[DType::U32])?;
    want("tokens", bufs.tokens, &[r], &[DType::U32])?;
    want("logits", bufs.logits, &[r, d.vocab], &[DType::F32])?;
    if keep_attn {
        want("weights", bufs.weights, &[r, t], &[DType::F32])?;
    }
    let half = state_layout(d, r)[2].end as u32;
    let io = [
        bufs.state,
        bufs.parent,
        bufs.tokens,
        bufs.logits,
        bufs.weights,
    ];
    let mut out = Vec::new();
    for (in_half, out_half) in [(0, half), (half, 0)] {
        let extra = Params {
            in_half,
            out_half,
            len_base: 2 * half,
            eos: skip_eos.unwrap_or(0),
            skip_eos: u32::from(skip_eos.is_some()),
            ..Params::zeroed()
        };
        out.push(build(
            gpu,
            blob,
            bufs.mem,
            bufs.keys_proj,
            io,
            extra,
            keep_attn,
            true,
        )?);
    }
    let odd = out.pop().ok_or_else(|| Error::invalid(OP, "no dispatch"))?;
    let even = out.pop().ok_or_else(|| Error::invalid(OP, "no dispatch"))?;
    Ok([even, odd])
}

/// Rows and positions of `mem [R, T, M]`, checked against the decoder and the device.
fn mem_rows(gpu: &Gpu, blob: &DecoderBlob, mem: &Tensor) -> Result<(usize, usize)> {
    let d = &blob.dims;
    let [r, t, m] = match mem.shape() {
        &[r, t, m] if mem.dtype() == DType::F32 => [r, t, m],
        s => {
            return Err(Error::shape(
                OP,
                format!("mem {s:?} {} must be [R, T, M] f32", mem.dtype()),
            ))
        }
    };
    d.check(gpu, t)?;
    if d.attention != LoopAttention::None && m != d.mem {
        return Err(Error::shape(
            OP,
            format!("mem {:?}: width must be {}", mem.shape(), d.mem),
        ));
    }
    if r == 0 {
        return Err(Error::invalid(OP, "mem has no rows"));
    }
    Ok((r, t))
}

/// The pipeline (greedy loop or beam step) and its dispatch over `io` = (state, ctl or parent,
/// tokens, logps or logits, attention) with `extra`'s mode-specific parameters.
#[allow(clippy::too_many_arguments)]
fn build(
    gpu: &Gpu,
    blob: &DecoderBlob,
    mem: &Tensor,
    keys_proj: &Tensor,
    io: [&Tensor; 5],
    extra: Params,
    keep_attn: bool,
    beam: bool,
) -> Result<Dispatch> {
    let d = &blob.dims;
    let (r, t) = mem_rows(gpu, blob, mem)?;
    if d.attention == LoopAttention::Additive {
        want("keys_proj", keys_proj, &[r, t, d.attn_dim], &[DType::F32])?;
    }
    let wg = wg(gpu);
    let tm = tmax(t) as u32;
    let u = |x: usize| x as u32;
    let sv = d.shared_layout().map(u);
    let attn_code = match d.attention {
        LoopAttention::None => 0,
        LoopAttention::Dot => 1,
        LoopAttention::General => 2,
        LoopAttention::Additive => 3,
    };
    let attn_layer = d.attn_layer && d.attention != LoopAttention::None;
    let mut consts: Vec<(&str, u32)> = vec![
        ("CELL", d.cell.code()),
        ("G", u(d.cell.gates())),
        ("L", u(d.layers)),
        ("E", u(d.emb)),
        ("H", u(d.hidden)),
        ("C", u(d.ctx())),
        ("E8", u(p8(d.emb))),
        ("C8", u(p8(d.ctx()))),
        ("H8", u(p8(d.hidden))),
        ("M", u(d.mem)),
        ("A", u(d.attn_dim)),
        ("V", u(d.vocab)),
        ("IN0", u(padded(&d.input0_segments()))),
        ("OUT_IN", u(padded(&d.out_segments()))),
        (
            "FEED",
            u32::from(d.input_feeding && d.attention != LoopAttention::None),
        ),
        ("ATTN", attn_code),
        ("ATTN_LAYER", u32::from(attn_layer)),
        ("BAHDANAU", u32::from(d.bahdanau)),
        ("BEAM", u32::from(beam)),
        ("WG", wg),
        ("TMAX", tm),
        ("SV_X", sv[0]),
        ("SV_H", sv[1]),
        ("SV_C", sv[2]),
        ("SV_GATES", sv[3]),
        ("SV_CTX", sv[4]),
        ("SV_QP", sv[5]),
        ("SV_O", sv[6]),
        ("NV4", sv[7] / 4),
    ];
    consts.extend(blob.layout.consts.iter().copied());
    let key = (d, beam, wg, tm, &blob.layout);
    let pipeline = gpu.pipeline(OP, &key, || {
        let decls = [
            declare_input("mem", 2, Elem::F32, d.mem.is_multiple_of(4)),
            declare_input(
                "kp",
                3,
                Elem::F32,
                d.attention == LoopAttention::Additive && d.attn_dim.is_multiple_of(4),
            ),
        ];
        compose(&format!("{RNN_FUSED_SRC}\n{SRC}"), false, &consts, &decls)
    })?;
    let layout = state_layout(d, r);
    let params = Params {
        r: u(r),
        t: u(t),
        gates: u(d.cell.gates()),
        keep_attn: u32::from(keep_attn && d.attention != LoopAttention::None),
        c_base: u(layout[1].start),
        ctx_base: u(layout[2].start),
        ..extra
    };
    let [state, ctl, tokens, logps, attn] = io;
    gpu.dispatch(
        OP,
        &pipeline,
        bytemuck::bytes_of(&params),
        &[
            blob.blob.buffer(),
            mem.buffer(),
            keys_proj.buffer(),
            state.buffer(),
            ctl.buffer(),
            tokens.buffer(),
            logps.buffer(),
            attn.buffer(),
        ],
        gpu.grid(u(r)),
    )
}
