//! One beam-search selection step for a batch of items on the GPU (`shaders/beam_select.wgsl`).
//!
//! Item b owns hypothesis rows `b*K .. b*K+K`. From the top-k kernel's candidates `cand_ids`,
//! `cand_lp [B*K, K]` and the rows' `scores [B*K]` it writes the new rows' `parent` and `tokens`
//! (`[B*K]` u32) and scores, appends finished hypotheses to `fin [B, CAP, 3]` u32 (step, parent
//! row, score bits) and keeps per-item control words `ctl [B, 4]` u32 (done, step, finished count,
//! best finished score bits). Semantics (candidate order, stop rule) are those of
//! `weights/seq2seq.py::beam_search`, checked by `tests/seq2seq.rs`; [`crate::reference::beam`]
//! is the CPU reference of this kernel.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Recorder};
use crate::kernels::{check_dtype, grid_1d};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/beam_select.wgsl");
const WG: u32 = 64;

/// The beam's buffers, all on the GPU.
#[derive(Clone, Copy, Debug)]
pub struct BeamBuffers<'a> {
    /// `[B*K, K]` u32 candidate tokens of each row.
    pub cand_ids: &'a Tensor,
    /// `[B*K, K]` f32 their log-probabilities.
    pub cand_lp: &'a Tensor,
    /// `[B*K]` f32 cumulative scores (-inf: dead row); updated.
    pub scores: &'a Tensor,
    /// `[B*K]` u32 parent row of each new row.
    pub parent: &'a Tensor,
    /// `[B*K]` u32 token of each new row.
    pub tokens: &'a Tensor,
    /// `[B, 4]` u32 control words.
    pub ctl: &'a Tensor,
    /// `[B, CAP, 3]` u32 finished hypotheses.
    pub fin: &'a Tensor,
}

crate::wgsl_params! {
    struct Params {
        batch: u32,
        eos: u32,
        length_norm: u32,
        cap: u32,
    }
}

crate::wgsl_bindings! {
    /// The beam buffers (see [`BeamBuffers`]) in binding order.
    struct BeamSelectBindings { cand_ids, cand_lp, scores, parent, tokens, ctl, fin }
}

/// Records one selection step for `batch` items of beam width `k`.
pub fn record_beam_select(
    rec: &mut Recorder,
    bufs: &BeamBuffers,
    batch: usize,
    k: usize,
    eos: u32,
    length_norm: bool,
) -> Result<()> {
    const OP: &str = "beam_select";
    check_dtype(OP, "cand_ids", bufs.cand_ids, &[DType::U32])?;
    check_dtype(OP, "cand_lp", bufs.cand_lp, &[DType::F32])?;
    check_dtype(OP, "scores", bufs.scores, &[DType::F32])?;
    for (n, t) in [
        ("parent", bufs.parent),
        ("tokens", bufs.tokens),
        ("ctl", bufs.ctl),
        ("fin", bufs.fin),
    ] {
        check_dtype(OP, n, t, &[DType::U32])?;
    }
    let rows = batch * k;
    let cap = bufs.fin.shape().get(1).copied().unwrap_or(0);
    let ok = (1..=crate::kernels::topk::MAX_K).contains(&k)
        && bufs.cand_ids.shape() == [rows, k]
        && bufs.cand_lp.shape() == [rows, k]
        && bufs.scores.shape() == [rows]
        && bufs.parent.shape() == [rows]
        && bufs.tokens.shape() == [rows]
        && bufs.ctl.shape() == [batch, 4]
        && bufs.fin.shape() == [batch, cap, 3]
        && cap >= 2 * k;
    if !ok {
        return Err(Error::shape(
            OP,
            format!(
                "batch {batch}, k {k}: cand_ids {:?}, cand_lp {:?} must be [B*K, K]; scores {:?}, \
                 parent {:?}, tokens {:?} [B*K]; ctl {:?} [B, 4]; fin {:?} [B, CAP >= 2K, 3]",
                bufs.cand_ids.shape(),
                bufs.cand_lp.shape(),
                bufs.scores.shape(),
                bufs.parent.shape(),
                bufs.tokens.shape(),
                bufs.ctl.shape(),
                bufs.fin.shape()
            ),
        ));
    }
    if batch == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let binds = BeamSelectBindings {
        cand_ids: Bind::read(bufs.cand_ids, "u32"),
        cand_lp: Bind::read(bufs.cand_lp, "f32"),
        scores: Bind::read_write(bufs.scores, "f32"),
        parent: Bind::read_write(bufs.parent, "u32"),
        tokens: Bind::read_write(bufs.tokens, "u32"),
        ctl: Bind::read_write(bufs.ctl, "u32"),
        fin: Bind::read_write(bufs.fin, "u32"),
    };
    let pipeline = gpu.pipeline(OP, &k, || {
        compose(
            SRC,
            false,
            &[("WG", WG), ("K", k as u32), ("KK", (k * k) as u32)],
            &[
                vec![Params::wgsl(), super::FLOAT_ORDER_SRC.into()],
                binds.wgsl(),
            ]
            .concat(),
        )
    })?;
    let params = Params {
        batch: batch as u32,
        eos,
        length_norm: length_norm as u32,
        cap: cap as u32,
    };
    rec.push(gpu.dispatch(
        OP,
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        grid_1d(&gpu, batch, WG)?,
    )?);
    Ok(())
}
