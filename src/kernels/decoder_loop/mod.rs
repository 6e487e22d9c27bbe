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
//!
//! Here: the buffers, parameters and dispatches; `dims.rs`: sizes, options and their checks;
//! `blob.rs`: the blob layout (the
//! packing itself is [`crate::weights::pack`]'s). CPU reference: `crate::reference::decoder_loop`; tests:
//! `tests/decoder_loop.rs`.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::gpu::spec::UniformParams;
use crate::gpu::spec::{Bind, Bindings};
use crate::gpu::{compose, Dispatch, Elem, Gpu};
use crate::kernels::recurrent::CellKind;
use crate::kernels::rnn_fused::{p8, padded, wg, RNN_FUSED_SRC};
use crate::tensor::{DType, Tensor};

mod blob;
mod dims;

pub use blob::DecoderBlob;
pub(crate) use blob::DecoderLayout;
use dims::tmax;
pub use dims::{DecoderLoopDims, LoopAttention};

const SRC: &str = include_str!("../../../shaders/decoder_loop.wgsl");
const OP: &str = "decoder_loop";

crate::wgsl_params! {
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
}

crate::wgsl_bindings! {
    /// The storage bindings of `shaders/decoder_loop.wgsl` in binding order (shapes there): the
    /// packed f16 weight blob, mem, kp, state, ctl, toks, logps, attn.
    struct DecoderLoopBindings { blob, mem, kp, state, ctl, toks, logps, attn }
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
        ..bytemuck::Zeroable::zeroed()
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
            ..bytemuck::Zeroable::zeroed()
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
    let key = (*d, beam, wg, tm, blob.layout.clone());
    let [state, ctl, tokens, logps, attn] = io;
    let binds = DecoderLoopBindings {
        blob: Bind::read(&blob.blob, "vec4<u32>"),
        mem: Bind::input(mem, Elem::F32, d.mem.is_multiple_of(4)),
        kp: Bind::input(
            keys_proj,
            Elem::F32,
            d.attention == LoopAttention::Additive && d.attn_dim.is_multiple_of(4),
        ),
        state: Bind::read_write(state, "f32"),
        ctl: Bind::read_write(ctl, "u32"),
        toks: Bind::read_write(tokens, "u32"),
        logps: Bind::read_write(logps, "f32"),
        attn: Bind::read_write(attn, "f32"),
    };
    let pipeline = gpu.pipeline(OP, &key, || {
        compose(
            &format!("{RNN_FUSED_SRC}\n{SRC}"),
            false,
            &consts,
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
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
    gpu.dispatch(
        OP,
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        gpu.grid(u(r)),
    )
}
