//! Hugging Face `generate`'s per-step selection on the GPU: the logits processors with greedy
//! argmax or each row's top 2K (`shaders/search_row.wgsl`, one workgroup per row), and HF's beam
//! bookkeeping (`shaders/search_beam.wgsl`, one workgroup for the batch). The search itself (its
//! state layout, the loop plan, reading the results) is `models::marian::search`; the CPU oracle is
//! `reference::generate`.
//!
//! Shapes (R = batch * K rows, N = 2K candidates per row, S = max steps):
//! logits `[R, V]` f32, step `[1]` u32, rules `[V + ..]` u32, hist `[S, 2, R]` u32, state
//! `[4 + 7R]` u32, cand `[R, N, 2]` u32, tokens / parents `[R]` u32, div `[max_length + 1]` f32.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Recorder};
use crate::kernels::check_dtype;
use crate::tensor::{DType, Tensor};

const ROW_SRC: &str = include_str!("../../shaders/search_row.wgsl");
const BEAM_SRC: &str = include_str!("../../shaders/search_beam.wgsl");
/// Threads of the beam bookkeeping workgroup.
const BEAM_WG: u32 = 64;

/// The widest beam the kernels take (2K candidates per row live in registers and workgroup
/// memory: 64 threads x 16 x 8 bytes stays inside WebGPU's 16 KiB).
pub const MAX_BEAMS: usize = 8;
/// The most multi-token bad words the row kernel matches.
pub const MAX_MULTI_BAD_WORDS: usize = 256;

/// `search_state` word layout: stop flag, steps done, two spare words, then per-row words.
pub const STATE_HEAD: usize = 4;

crate::wgsl_params! {
    struct RowParams {
        rows: u32,
        v: u32,
        eos: u32,
        pad: u32,
        start: u32,
        max_length: u32,
        min_length: u32,
        forced: u32,
        n_multi: u32,
        _pad0: u32,
        _pad: [u32; 2],
    }
}

crate::wgsl_bindings! {
    /// See the module docs for shapes.
    struct RowBindings { logits, step, rules, hist, state, cand, tokens }
}

crate::wgsl_params! {
    struct BeamParams {
        batch: u32,
        v: u32,
        eos: u32,
        max_length: u32,
        lp_positive: u32,
        _pad0: u32,
        _pad: [u32; 2],
    }
}

crate::wgsl_bindings! {
    /// See the module docs for shapes.
    struct BeamBindings { step, div, cand, state, tokens, parents, hist }
}

/// The processors' settings, shared by both kernels.
#[derive(Clone, Copy, Debug)]
pub struct RowRules {
    /// End token.
    pub eos: u32,
    /// Padding token (greedy's finished rows).
    pub pad: u32,
    /// Decoder start token (position 0 of every sequence).
    pub start: u32,
    /// HF's effective max_length.
    pub max_length: u32,
    /// HF's effective min_length.
    pub min_length: u32,
    /// Forced end token at position max_length - 1.
    pub forced: Option<u32>,
    /// Multi-token bad words in `rules` (after the `V` ban flags).
    pub n_multi: u32,
}

/// The tensors of one search.
#[derive(Clone, Copy, Debug)]
pub struct SearchBuffers<'a> {
    /// `[1]` u32 current step.
    pub step: &'a Tensor,
    /// `[V + 2 * n_multi + tokens]` u32 ban flags and multi-token bad words.
    pub rules: &'a Tensor,
    /// `[S, 2, R]` u32 per-step tokens and parents.
    pub hist: &'a Tensor,
    /// `[4 + 7R]` u32 search state.
    pub state: &'a Tensor,
    /// `[R, N, 2]` u32 candidates (beam; a `[1]` placeholder for greedy).
    pub cand: &'a Tensor,
    /// `[R]` u32 next-step tokens.
    pub tokens: &'a Tensor,
}

fn dims(op: &str, logits: &Tensor, b: &SearchBuffers, k: usize) -> Result<(usize, usize)> {
    check_dtype(op, "logits", logits, &[DType::F32])?;
    for (n, t) in [
        ("step", b.step),
        ("rules", b.rules),
        ("hist", b.hist),
        ("state", b.state),
        ("cand", b.cand),
        ("tokens", b.tokens),
    ] {
        check_dtype(op, n, t, &[DType::U32])?;
    }
    let &[r, v] = logits.shape() else {
        return Err(Error::shape(
            op,
            format!("logits {:?} must be [R, V]", logits.shape()),
        ));
    };
    let ok = r > 0
        && v > 0
        && (1..=MAX_BEAMS).contains(&k)
        && r.is_multiple_of(k)
        && b.step.shape() == [1]
        && b.rules.numel() >= v
        && b.hist.shape().len() == 3
        && b.hist.shape()[1..] == [2, r]
        && b.state.shape() == [STATE_HEAD + 7 * r]
        && b.tokens.shape() == [r]
        && (k == 1 || b.cand.shape() == [r, 2 * k, 2]);
    if !ok {
        return Err(Error::shape(
            op,
            format!(
                "logits {:?} (R = batch * {k} beams, K <= {MAX_BEAMS}), step {:?} [1], rules {:?} \
                 [>= V], hist {:?} [S, 2, R], state {:?} [4 + 7R], cand {:?} [R, 2K, 2], tokens {:?} \
                 [R]",
                logits.shape(),
                b.step.shape(),
                b.rules.shape(),
                b.hist.shape(),
                b.state.shape(),
                b.cand.shape(),
                b.tokens.shape()
            ),
        ));
    }
    Ok((r, v))
}

/// Records the per-row kernel: greedy (`k == 1`: processors, argmax, pad for finished rows, the
/// token into `tokens` and the history, the status word) or beam (`k > 1`: log-softmax,
/// processors, + running score, the row's top 2K into `cand`).
pub fn record_search_row(
    rec: &mut Recorder,
    logits: &Tensor,
    bufs: &SearchBuffers,
    k: usize,
    rules: &RowRules,
) -> Result<()> {
    const OP: &str = "search_row";
    let (r, v) = dims(OP, logits, bufs, k)?;
    if rules.n_multi as usize > MAX_MULTI_BAD_WORDS {
        return Err(Error::invalid(
            OP,
            format!(
                "{} multi-token bad words; at most {MAX_MULTI_BAD_WORDS} are supported",
                rules.n_multi
            ),
        ));
    }
    let gpu = rec.gpu().clone();
    let binds = RowBindings {
        logits: Bind::read(logits, "f32"),
        step: Bind::read(bufs.step, "u32"),
        rules: Bind::read(bufs.rules, "u32"),
        hist: Bind::read_write(bufs.hist, "u32"),
        state: Bind::read_write(bufs.state, "u32"),
        cand: Bind::read_write(bufs.cand, "u32"),
        tokens: Bind::read_write(bufs.tokens, "u32"),
    };
    let beam = k > 1;
    let n = if beam { 2 * k } else { 1 };
    let wg = row_threads(&gpu, n as u32);
    let pipeline = gpu.pipeline(OP, &(n, wg), || {
        compose(
            ROW_SRC,
            false,
            &[
                ("WG", wg),
                ("N", n as u32),
                ("BEAM", beam as u32),
                ("MAXB", MAX_MULTI_BAD_WORDS as u32),
            ],
            &[
                vec![RowParams::wgsl(), super::FLOAT_ORDER_SRC.into()],
                binds.wgsl(),
            ]
            .concat(),
        )
    })?;
    let params = RowParams {
        rows: r as u32,
        v: v as u32,
        eos: rules.eos,
        pad: rules.pad,
        start: rules.start,
        max_length: rules.max_length,
        min_length: rules.min_length,
        forced: rules.forced.unwrap_or(u32::MAX),
        n_multi: rules.n_multi,
        _pad0: 0,
        _pad: [0; 2],
    };
    let groups = u32::try_from(r).map_err(|_| Error::invalid(OP, format!("{r} rows")))?;
    rec.push(gpu.dispatch(
        OP,
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        gpu.grid(groups),
    )?);
    Ok(())
}

/// Threads per row of the row kernel: the tuning table's (a power of two; CPU adapters 8), halved
/// while it is over 64 and its workgroup arrays do not fit the device (64 fits WebGPU's 16 KiB for
/// the widest beam): candidates `wg_v`/`wg_i` `[WG, N]`, the reductions' `wg_m`/`wg_s` `[WG]`, the
/// banned tokens.
fn row_threads(gpu: &crate::gpu::Gpu, n: u32) -> u32 {
    let bytes = |wg: u32| wg * (8 * n + 8) + 4 * MAX_MULTI_BAD_WORDS as u32 + 16;
    let storage = gpu.caps().max_workgroup_storage;
    let mut wg = gpu.tuning().search_row_wg.max(1);
    while wg > 64 && bytes(wg) > storage {
        wg /= 2;
    }
    wg
}

/// Records HF's beam step for `batch` items of `k` beams (after [`record_search_row`]): new
/// running rows (`tokens`, `parents`, scores), finished slots, heuristic flags, the stop word.
/// `mode`: 0 early_stopping=False, 1 True, 2 "never".
#[allow(clippy::too_many_arguments)]
pub fn record_search_beam(
    rec: &mut Recorder,
    bufs: &SearchBuffers,
    parents: &Tensor,
    div: &Tensor,
    v: usize,
    k: usize,
    mode: u32,
    length_penalty_positive: bool,
    rules: &RowRules,
) -> Result<()> {
    const OP: &str = "search_beam";
    check_dtype(OP, "div", div, &[DType::F32])?;
    check_dtype(OP, "parents", parents, &[DType::U32])?;
    let r = bufs.tokens.numel();
    let ok = (2..=MAX_BEAMS).contains(&k)
        && r.is_multiple_of(k)
        && r > 0
        && parents.shape() == [r]
        && bufs.cand.shape() == [r, 2 * k, 2]
        && bufs.state.shape() == [STATE_HEAD + 7 * r]
        && bufs.hist.shape().len() == 3
        && bufs.hist.shape()[1..] == [2, r]
        && div.numel() > rules.max_length as usize
        && mode <= 2;
    if !ok {
        return Err(Error::shape(
            OP,
            format!(
                "k {k} (2..={MAX_BEAMS}), mode {mode}: tokens {:?}, parents {:?} [R], cand {:?} \
                 [R, 2K, 2], state {:?} [4 + 7R], hist {:?} [S, 2, R], div {:?} [> max_length {}]",
                bufs.tokens.shape(),
                parents.shape(),
                bufs.cand.shape(),
                bufs.state.shape(),
                bufs.hist.shape(),
                div.shape(),
                rules.max_length
            ),
        ));
    }
    let gpu = rec.gpu().clone();
    let binds = BeamBindings {
        step: Bind::read(bufs.step, "u32"),
        div: Bind::read(div, "f32"),
        cand: Bind::read(bufs.cand, "u32"),
        state: Bind::read_write(bufs.state, "u32"),
        tokens: Bind::read_write(bufs.tokens, "u32"),
        parents: Bind::read_write(parents, "u32"),
        hist: Bind::read_write(bufs.hist, "u32"),
    };
    let pipeline = gpu.pipeline(OP, &(k, mode), || {
        compose(
            BEAM_SRC,
            false,
            &[
                ("WG", BEAM_WG),
                ("K", k as u32),
                ("N", 2 * k as u32),
                ("M", 3 * k as u32),
                ("MODE", mode),
            ],
            &[
                vec![BeamParams::wgsl(), super::FLOAT_ORDER_SRC.into()],
                binds.wgsl(),
            ]
            .concat(),
        )
    })?;
    let params = BeamParams {
        batch: (r / k) as u32,
        v: v as u32,
        eos: rules.eos,
        max_length: rules.max_length,
        lp_positive: length_penalty_positive as u32,
        _pad0: 0,
        _pad: [0; 2],
    };
    rec.push(gpu.dispatch(
        OP,
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        [1, 1, 1],
    )?);
    Ok(())
}
