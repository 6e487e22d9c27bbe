//! The fused greedy decoder ([`crate::kernels::decoder_loop`]) for seq2seq models it fits: the
//! kernel's sizes for a config, and a plan's state, control words and dispatches.
//!
//! It runs decoders with LSTM / GRU / RNN cells (any number of layers), no / dot / general /
//! additive attention in Luong or Bahdanau order, input feeding and the attentional layer.
//! Multi-head and the tutorial's attention, and beam search, use the per-op decoder.

use crate::error::Result;
use crate::gpu::{Dispatch, Recorder};
use crate::graph::{LoopBuilder, Writes};
use crate::kernels::decoder_loop::{
    self as dl, DecoderBlob, DecoderLoopDims, LoopAttention, LoopBuffers,
};
use crate::tensor::{DType, Tensor};

use super::{config, AttentionKind, AttentionOrder, Config};

/// The fused kernel's sizes for `cfg`, or `None` when it does not run this architecture.
pub(super) fn loop_dims(cfg: &Config) -> Result<Option<DecoderLoopDims>> {
    let d = &cfg.decoder;
    let attention = match cfg.attention()? {
        AttentionKind::None => LoopAttention::None,
        AttentionKind::Dot => LoopAttention::Dot,
        AttentionKind::General => LoopAttention::General,
        AttentionKind::Additive => LoopAttention::Additive,
        AttentionKind::MultiHead | AttentionKind::Tutorial => return Ok(None),
    };
    let with_attn = attention != LoopAttention::None;
    Ok(Some(DecoderLoopDims {
        cell: config::cell_kind(&d.cell)?,
        layers: d.layers,
        emb: d.emb,
        hidden: d.hidden,
        mem: if with_attn { cfg.mem_dim() } else { 0 },
        attn_dim: if attention == LoopAttention::Additive {
            d.attn_dim.unwrap_or(d.hidden)
        } else {
            0
        },
        vocab: cfg.tgt_vocab,
        attention,
        input_feeding: d.input_feeding && with_attn,
        attn_layer: d.attn_layer && with_attn,
        bahdanau: cfg.attention_order()? == AttentionOrder::Bahdanau,
    }))
}

/// A plan's buffers for the fused loop; its dispatch runs once per chunk.
#[derive(Debug)]
pub(super) struct FusedLoop {
    /// Decoder state ([`dl::state_layout`]), named `loop.state`.
    state: Tensor,
    /// `[R + 1, 4]` u32 control words, named `loop.ctl`; row R word 0 is the chunk's stop step.
    ctl: Tensor,
}

impl FusedLoop {
    /// Buffers and the chunk's dispatch for `r` rows over `mem [R, T, M]` (with `keys_proj` for
    /// additive attention), writing the histories `tokens`/`logps` `[max_len, R]` and, when given,
    /// `attn [max_len, R, T]`. The initial states are copied in by [`FusedLoop::record_start`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        bld: &mut LoopBuilder,
        blob: &DecoderBlob,
        mem: &Tensor,
        keys_proj: Option<&Tensor>,
        tokens: &Tensor,
        logps: &Tensor,
        attn: Option<&Tensor>,
        eos: u32,
    ) -> Result<FusedLoop> {
        let (r, max_len) = (tokens.shape()[1], tokens.shape()[0]);
        let layout = dl::state_layout(blob.dims(), r);
        let state = bld.named("loop.state", &[layout[2].end.max(1)], DType::F32)?;
        let ctl = bld.named("loop.ctl", &[r + 1, 4], DType::U32)?;
        // Stand-ins for unused bindings (one each: a read-only and a read-write binding may not
        // share a buffer).
        let no_keys = bld.buffer(&[4], DType::F32)?;
        let no_attn = bld.buffer(&[4], DType::F32)?;
        let bufs = LoopBuffers {
            mem,
            keys_proj: keys_proj.unwrap_or(&no_keys),
            state: &state,
            ctl: &ctl,
            tokens,
            logps,
            attn: attn.unwrap_or(&no_attn),
        };
        let dispatch = dl::dispatch(bld.gpu(), blob, &bufs, max_len, eos, attn.is_some())?;
        // One dispatch runs a chunk of steps, up to the stop step the runtime writes into ctl[R].
        bld.chunk().push(dispatch);
        bld.chunk_counter(&ctl, (r * 16) as u64);
        Ok(FusedLoop { state, ctl })
    }

    /// Records the copies of the initial states (per layer `[R, H]`) into the state buffer.
    pub(super) fn record_start(
        &self,
        bld: &mut LoopBuilder,
        blob: &DecoderBlob,
        h0: &[Tensor],
        c0: &[Tensor],
    ) {
        let r = self.ctl.shape()[0] - 1;
        record_state_copies(bld.init(), blob, &self.state, r, h0, c0);
    }

    /// A call's control words (first input `bos`, input lengths) and the zeroed context.
    pub(super) fn write_inputs(w: &mut Writes, blob: &DecoderBlob, bos: u32, lengths: &[usize]) {
        let ctl: Vec<u32> = lengths
            .iter()
            .flat_map(|&len| [bos, 0, len as u32, 0])
            .collect();
        w.u32s("loop.ctl", &ctl);
        zero_context(w, blob, lengths.len());
    }
}

/// A beam plan's buffers for the fused beam step: the ping-pong state with the rows' lengths, the
/// logits, and the even / odd step dispatches.
#[derive(Debug)]
pub(super) struct FusedBeam {
    /// Named `loop.state`.
    state: Tensor,
    /// `[R, V]` logits of the step (read by top-k).
    pub(super) logits: Tensor,
    /// Steps 0, 2, 4, ... read state half 0 and write half 1; odd steps the reverse.
    pub(super) steps: [Dispatch; 2],
}

impl FusedBeam {
    /// Buffers and dispatches for rows continuing `parent [R]` with `tokens [R]` over `mem
    /// [R, T, M]` (with `keys_proj` for additive attention), writing the step's attention weights to
    /// `weights [R, T]` when given; rows fed `skip_eos` skip the step.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        bld: &mut LoopBuilder,
        blob: &DecoderBlob,
        mem: &Tensor,
        keys_proj: Option<&Tensor>,
        parent: &Tensor,
        tokens: &Tensor,
        weights: Option<&Tensor>,
        skip_eos: Option<u32>,
    ) -> Result<FusedBeam> {
        let r = mem.shape()[0];
        let d = blob.dims();
        let state = bld.named("loop.state", &[dl::beam_state_len(d, r)], DType::F32)?;
        let logits = bld.buffer(&[r, d.vocab], DType::F32)?;
        let no_keys = bld.buffer(&[4], DType::F32)?;
        let no_weights = bld.buffer(&[4], DType::F32)?;
        let bufs = dl::BeamStepBuffers {
            mem,
            keys_proj: keys_proj.unwrap_or(&no_keys),
            state: &state,
            parent,
            tokens,
            logits: &logits,
            weights: weights.unwrap_or(&no_weights),
        };
        let steps = dl::beam_step_dispatches(bld.gpu(), blob, &bufs, weights.is_some(), skip_eos)?;
        Ok(FusedBeam {
            state,
            logits,
            steps,
        })
    }

    /// Records the copies of the initial states (per layer `[R, H]`) into state half 0.
    pub(super) fn record_start(
        &self,
        bld: &mut LoopBuilder,
        blob: &DecoderBlob,
        h0: &[Tensor],
        c0: &[Tensor],
    ) {
        let r = self.logits.shape()[0];
        record_state_copies(bld.init(), blob, &self.state, r, h0, c0);
    }

    /// A call's per-row input lengths (after both state halves, as
    /// [`dl::write_beam_lengths`] places them) and the zeroed context of state half 0.
    pub(super) fn write_inputs(w: &mut Writes, blob: &DecoderBlob, lengths: &[u32]) {
        let at = 2 * dl::state_layout(blob.dims(), lengths.len())[2].end;
        w.bytes(
            "loop.state",
            (at * 4) as u64,
            bytemuck::cast_slice(lengths).to_vec(),
        );
        zero_context(w, blob, lengths.len());
    }
}

/// Copies per-layer `[R, H]` states into the h and c sections of `state` (laid out by
/// [`dl::state_layout`] from offset 0).
fn record_state_copies(
    rec: &mut Recorder,
    blob: &DecoderBlob,
    state: &Tensor,
    r: usize,
    h0: &[Tensor],
    c0: &[Tensor],
) {
    let layout = dl::state_layout(blob.dims(), r);
    let row = (r * blob.dims().hidden * 4) as u64;
    for (l, h) in h0.iter().enumerate() {
        rec.copy(h.buffer(), 0, state.buffer(), l as u64 * row, row);
    }
    for (l, c) in c0.iter().enumerate() {
        let at = (layout[1].start * 4) as u64 + l as u64 * row;
        rec.copy(c.buffer(), 0, state.buffer(), at, row);
    }
}

/// Zeroes the context section of `loop.state` (laid out from offset 0) for `r` rows.
fn zero_context(w: &mut Writes, blob: &DecoderBlob, r: usize) {
    let layout = dl::state_layout(blob.dims(), r);
    if !layout[2].is_empty() {
        w.bytes(
            "loop.state",
            (layout[2].start * 4) as u64,
            vec![0u8; layout[2].len() * 4],
        );
    }
}
