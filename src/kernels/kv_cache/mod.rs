//! KV-cache kernels for Transformer decoders on the loop runtime: every kernel reads the step
//! index `s` from a `[1]` u32 GPU tensor (`LoopBuilder::step_index`), so one recorded step serves
//! every step of a run.
//!
//! - [`record_kv_write`] (`shaders/kv_write.wgsl`): step s's key and value rows `[R, E]` into
//!   position s of one layer's cache planes.
//! - [`record_kv_gather`] (`shaders/kv_gather.wgsl`): beam search's reorder, `dst[.., r, t, :] =
//!   src[.., parents[r], t, :]` for `t < s` (ping-pong buffers; O(s) per step).
//! - [`record_cache_attention`] (`shaders/sdpa_cache_wg.wgsl` on GPUs, `shaders/sdpa_cache.wgsl`
//!   on CPU adapters, + `shaders/sdpa_cache_merge.wgsl`): flash-decoding of one query per row and
//!   head over positions `0..=s` of the cache, in chunks whose count comes from the GPU step
//!   (chunks past s cost nothing). On CPU adapters a cache in one chunk per row and head (rows
//!   enough to fill the threads' SIMD lanes) is attended without the merge pass.
//!
//! The cache layout is one tensor `kv [P, R, T, E]` f32 of P planes (a decoder's 2L: keys of layer
//! l in plane 2l, values in 2l+1), R rows, T positions, E = H * Dh columns (head h at `h*Dh..`, the
//! layout of a `[R, E]` projection, so a step's rows are copied as they are).
//!
//! ```no_run
//! use heedful::kernels::kv_cache::{record_cache_attention, record_kv_write, CacheLayout};
//! # fn f(rec: &mut heedful::gpu::Recorder, q: &heedful::Tensor, k: &heedful::Tensor,
//! #      v: &heedful::Tensor, kv: &heedful::Tensor, step: &heedful::Tensor,
//! #      out: &heedful::Tensor) -> heedful::Result<()> {
//! let lay = CacheLayout { planes: 2, rows: 4, positions: 64, heads: 8, width: 512 };
//! record_kv_write(rec, &lay, 0, k, v, step, kv)?; // layer 0
//! record_cache_attention(rec, &lay, 0, q, kv, step, out)?;
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Gpu, Recorder};
use crate::kernels::{check_dtype, grid_1d};
use crate::tensor::{DType, Tensor};

#[cfg(test)]
mod tests;

const WRITE_SRC: &str = include_str!("../../../shaders/kv_write.wgsl");
const GATHER_SRC: &str = include_str!("../../../shaders/kv_gather.wgsl");
const ATTEND_SRC: &str = include_str!("../../../shaders/sdpa_cache.wgsl");
const ATTEND_WG_SRC: &str = include_str!("../../../shaders/sdpa_cache_wg.wgsl");
const MERGE_SRC: &str = include_str!("../../../shaders/sdpa_cache_merge.wgsl");
/// Invocations per workgroup of the write, gather, merge and workgroup cache-attention kernels;
/// also the positions per chunk of the workgroup cache attention (`shaders/sdpa_cache_wg.wgsl`).
/// The one-invocation cache attention takes `AttnTuning::decode_wg`.
pub const WG: u32 = 64;
/// Fewest positions per chunk of the one-invocation-per-chunk cache attention
/// (`shaders/sdpa_cache.wgsl`).
pub const CHUNK: usize = 16;

/// The shape of a cache tensor `[planes, rows, positions, width]` and its heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLayout {
    /// Planes P (2 per decoder layer).
    pub planes: usize,
    /// Rows R (batch x beams).
    pub rows: usize,
    /// Positions T (the longest run).
    pub positions: usize,
    /// Heads H.
    pub heads: usize,
    /// Row width E = H * Dh.
    pub width: usize,
}

impl CacheLayout {
    /// The cache tensor's shape.
    pub fn shape(&self) -> [usize; 4] {
        [self.planes, self.rows, self.positions, self.width]
    }

    fn plane(&self) -> usize {
        self.rows * self.positions * self.width
    }

    /// Checks sizes (heads divide the width, head width within 1..=256, every index fits u32)
    /// and, when given, that `kv` has this layout's shape and is f32.
    pub fn check(&self, op: &str, kv: Option<&Tensor>) -> Result<()> {
        let CacheLayout {
            planes,
            rows,
            positions,
            heads,
            width,
        } = *self;
        if heads == 0 || !width.is_multiple_of(heads) || width / heads > 256 || width == 0 {
            return Err(Error::shape(
                op,
                format!("width {width} must be heads {heads} x a head width in 1..=256"),
            ));
        }
        let total = planes
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(positions))
            .and_then(|n| n.checked_mul(width));
        if total.is_none_or(|n| n > u32::MAX as usize) || positions == 0 || planes == 0 {
            return Err(Error::shape(
                op,
                format!("cache {:?} is empty or over 32-bit indexing", self.shape()),
            ));
        }
        if let Some(kv) = kv {
            check_dtype(op, "kv", kv, &[DType::F32])?;
            if kv.shape() != self.shape() {
                return Err(Error::shape(
                    op,
                    format!(
                        "kv {:?} must be [P, R, T, E] = {:?}",
                        kv.shape(),
                        self.shape()
                    ),
                ));
            }
        }
        Ok(())
    }
}

crate::wgsl_params! {
    /// Parameters shared by the four kernels (each reads the fields it needs).
    struct Params {
        n: u32,
        e: u32,
        t: u32,
        heads: u32,
        k_off: u32,
        v_off: u32,
        planes: u32,
        chunk: u32,
        nsplit: u32,
        scale: f32,
        /// Row stride C of the k/v (kv_write) or q (cache attention) source `[R, C]`.
        src_stride: u32,
        /// First column of k in its source.
        k_col: u32,
        /// First column of v in its source.
        v_col: u32,
        /// First column of q in its source.
        q_col: u32,
        /// Rows R (the one-invocation cache attention's grid covers R x H x nsplit).
        rows: u32,
        _pad1: u32,
    }
}

crate::wgsl_bindings! {
    /// k, v `[R, E]` f32, step `[1]` u32, kv `[P, R, T, E]` f32.
    struct KvWriteBindings { k, v, step, kv }
}

crate::wgsl_bindings! {
    /// src `[P, R, T, E]` f32, parents `[R]` u32, step `[1]` u32, dst `[P, R, T, E]` f32.
    struct KvGatherBindings { src, parents, step, dst }
}

crate::wgsl_bindings! {
    /// q `[R, E]`, kv `[P, R, T, E]`, step `[1]` u32, part `[R*H, nsplit, Dh]`, stats
    /// `[R*H, nsplit, 2]`.
    struct CacheAttnBindings { q, kv, step, part, stats }
}

crate::wgsl_bindings! {
    /// part `[R*H, nsplit, Dh]`, stats `[R*H, nsplit, 2]`, step `[1]` u32, out `[R, E]`.
    struct CacheMergeBindings { part, stats, step, out }
}

fn check_step(op: &str, step: &Tensor) -> Result<()> {
    check_dtype(op, "step", step, &[DType::U32])?;
    if step.numel() != 1 {
        return Err(Error::shape(
            op,
            format!("step {:?} must hold one u32", step.shape()),
        ));
    }
    Ok(())
}

/// `E` consecutive columns of every row of a `[R, C]` f32 tensor, from column `col`: a step's
/// keys, values or queries, alone (`C = E`, `col = 0`) or inside a fused projection (`[R, 3E]`
/// q/k/v rows at columns 0, E and 2E).
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    /// The `[R, C]` tensor.
    pub tensor: &'a Tensor,
    /// First column.
    pub col: usize,
}

impl<'a> Rows<'a> {
    /// All columns of an `[R, E]` tensor.
    pub fn all(tensor: &'a Tensor) -> Rows<'a> {
        Rows { tensor, col: 0 }
    }

    /// Checks dtype, rows and that `E` columns from `col` fit; returns the row stride C.
    fn check(&self, op: &str, name: &str, lay: &CacheLayout) -> Result<usize> {
        let t = self.tensor;
        check_dtype(op, name, t, &[DType::F32])?;
        if t.numel() > u32::MAX as usize {
            return Err(Error::shape(
                op,
                format!("{name} {:?} is over 32-bit indexing", t.shape()),
            ));
        }
        match *t.shape() {
            [r, c]
                if r == lay.rows && self.col.checked_add(lay.width).is_some_and(|end| end <= c) =>
            {
                Ok(c)
            }
            _ => Err(Error::shape(
                op,
                format!(
                    "{name} {:?} from column {} must be [R, C] with R = {} and E = {} columns \
                     from there",
                    t.shape(),
                    self.col,
                    lay.rows,
                    lay.width
                ),
            )),
        }
    }
}

fn check_rows(op: &str, name: &str, t: &Tensor, lay: &CacheLayout) -> Result<()> {
    check_dtype(op, name, t, &[DType::F32])?;
    if t.shape() != [lay.rows, lay.width] {
        return Err(Error::shape(
            op,
            format!(
                "{name} {:?} must be [R, E] = [{}, {}]",
                t.shape(),
                lay.rows,
                lay.width
            ),
        ));
    }
    Ok(())
}

fn check_layer(op: &str, lay: &CacheLayout, layer: usize) -> Result<()> {
    if 2 * layer + 1 >= lay.planes {
        return Err(Error::shape(
            op,
            format!(
                "layer {layer} needs planes {} and {}, the cache has {}",
                2 * layer,
                2 * layer + 1,
                lay.planes
            ),
        ));
    }
    Ok(())
}

fn params(lay: &CacheLayout, layer: usize) -> Params {
    let plane = lay.plane() as u32;
    Params {
        n: (lay.rows * lay.width) as u32,
        e: lay.width as u32,
        t: lay.positions as u32,
        heads: lay.heads as u32,
        k_off: (2 * layer) as u32 * plane,
        v_off: (2 * layer + 1) as u32 * plane,
        planes: lay.planes as u32,
        chunk: CHUNK as u32,
        nsplit: lay.positions.div_ceil(CHUNK) as u32,
        scale: 1.0 / ((lay.width / lay.heads) as f32).sqrt(),
        src_stride: lay.width as u32,
        k_col: 0,
        v_col: 0,
        q_col: 0,
        rows: lay.rows as u32,
        _pad1: 0,
    }
}

/// Records `kv[2l, r, s, :] = k[r, :]`, `kv[2l+1, r, s, :] = v[r, :]` with `s = step[0]`
/// (nothing when `s >= T`); k and v `[R, E]` f32.
pub fn record_kv_write(
    rec: &mut Recorder,
    lay: &CacheLayout,
    layer: usize,
    k: &Tensor,
    v: &Tensor,
    step: &Tensor,
    kv: &Tensor,
) -> Result<()> {
    const OP: &str = "kv_write";
    check_rows(OP, "k", k, lay)?;
    check_rows(OP, "v", v, lay)?;
    record_kv_write_from(rec, lay, layer, Rows::all(k), Rows::all(v), step, kv)
}

/// [`record_kv_write`] with keys and values read from column ranges of `[R, C]` tensors (both
/// the same C; for example the k and v thirds of a fused `[R, 3E]` q/k/v projection).
pub fn record_kv_write_from(
    rec: &mut Recorder,
    lay: &CacheLayout,
    layer: usize,
    k: Rows<'_>,
    v: Rows<'_>,
    step: &Tensor,
    kv: &Tensor,
) -> Result<()> {
    const OP: &str = "kv_write";
    lay.check(OP, Some(kv))?;
    check_layer(OP, lay, layer)?;
    let stride = k.check(OP, "k", lay)?;
    if v.check(OP, "v", lay)? != stride {
        return Err(Error::shape(
            OP,
            format!(
                "k {:?} and v {:?} must have the same row width",
                k.tensor.shape(),
                v.tensor.shape()
            ),
        ));
    }
    check_step(OP, step)?;
    let gpu = rec.gpu().clone();
    let binds = KvWriteBindings {
        k: Bind::read(k.tensor, "f32"),
        v: Bind::read(v.tensor, "f32"),
        step: Bind::read(step, "u32"),
        kv: Bind::read_write(kv, "f32"),
    };
    let pipe = gpu.pipeline(OP, &(), || {
        compose(
            WRITE_SRC,
            false,
            &[("WG", WG)],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let p = Params {
        src_stride: stride as u32,
        k_col: k.col as u32,
        v_col: v.col as u32,
        ..params(lay, layer)
    };
    rec.push(gpu.dispatch(
        OP,
        &pipe,
        bytemuck::bytes_of(&p),
        &binds.buffers(),
        grid_1d(&gpu, lay.rows * lay.width, WG)?,
    )?);
    Ok(())
}

/// Records `dst[p, r, t, :] = src[p, parents[r], t, :]` for every plane and `t < step[0]`
/// (a parent outside `[0, R)` keeps the row's own history).
pub fn record_kv_gather(
    rec: &mut Recorder,
    lay: &CacheLayout,
    src: &Tensor,
    parents: &Tensor,
    step: &Tensor,
    dst: &Tensor,
) -> Result<()> {
    const OP: &str = "kv_gather";
    lay.check(OP, Some(src))?;
    lay.check(OP, Some(dst))?;
    check_step(OP, step)?;
    check_dtype(OP, "parents", parents, &[DType::U32])?;
    if parents.numel() != lay.rows {
        return Err(Error::shape(
            OP,
            format!("parents {:?} must be [R] = [{}]", parents.shape(), lay.rows),
        ));
    }
    let gpu = rec.gpu().clone();
    let binds = KvGatherBindings {
        src: Bind::read(src, "f32"),
        parents: Bind::read(parents, "u32"),
        step: Bind::read(step, "u32"),
        dst: Bind::read_write(dst, "f32"),
    };
    let pipe = gpu.pipeline(OP, &(), || {
        compose(
            GATHER_SRC,
            false,
            &[("WG", WG)],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let p = params(lay, 0);
    rec.push(gpu.dispatch(
        OP,
        &pipe,
        bytemuck::bytes_of(&p),
        &binds.buffers(),
        grid_1d(&gpu, lay.rows * lay.width, WG)?,
    )?);
    Ok(())
}

/// Records causal single-query attention over the cache of layer `layer`: `out[r, h*Dh..] =
/// softmax(q_h k_h[0..=s]^T / sqrt(Dh)) v_h[0..=s]` with `s = min(step[0], T - 1)`; q and out
/// `[R, E]` f32.
pub fn record_cache_attention(
    rec: &mut Recorder,
    lay: &CacheLayout,
    layer: usize,
    q: &Tensor,
    kv: &Tensor,
    step: &Tensor,
    out: &Tensor,
) -> Result<()> {
    check_rows("cache_attention", "q", q, lay)?;
    record_cache_attention_from(rec, lay, layer, Rows::all(q), kv, step, out)
}

/// [`record_cache_attention`] with the queries read from a column range of an `[R, C]` tensor
/// (for example the q third of a fused `[R, 3E]` q/k/v projection).
pub fn record_cache_attention_from(
    rec: &mut Recorder,
    lay: &CacheLayout,
    layer: usize,
    q: Rows<'_>,
    kv: &Tensor,
    step: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let kernel = CacheKernel::tuned(rec.gpu());
    record_cache_attention_kernel(rec, lay, layer, q, None, kv, step, out, kernel)
}

/// [`record_kv_write_from`] and [`record_cache_attention_from`] in one pass, for a fused q/k/v
/// projection: this step's keys and values are columns `k_col ..` and `v_col ..` of q's `[R, C]`
/// tensor, and the (row, head) chunk that holds position `s` appends them to the cache before it
/// attends (nothing is appended when `s >= T`). One dispatch fewer per layer and step than the
/// write and the attention apart: a decoder step at batch 1 is mostly dispatch overhead on CPU
/// adapters.
#[allow(clippy::too_many_arguments)]
pub fn record_cache_attention_appending(
    rec: &mut Recorder,
    lay: &CacheLayout,
    layer: usize,
    q: Rows<'_>,
    k_col: usize,
    v_col: usize,
    kv: &Tensor,
    step: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let kernel = CacheKernel::tuned(rec.gpu());
    record_cache_attention_kernel(
        rec,
        lay,
        layer,
        q,
        Some((k_col, v_col)),
        kv,
        step,
        out,
        kernel,
    )
}

/// The first pass of the cache attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CacheKernel {
    /// One workgroup per chunk of [`WG`] positions (`shaders/sdpa_cache_wg.wgsl`, GPUs).
    Workgroup,
    /// One invocation per (row, head) and chunk (`shaders/sdpa_cache.wgsl`, CPU adapters), the
    /// chunks at least `min_chunk` positions long (see `cpu_chunk`).
    Lanes {
        /// Fewest positions per chunk.
        min_chunk: usize,
    },
}

impl CacheKernel {
    /// The tuning table's choice ([`AttnTuning::decode_workgroup`] and
    /// [`AttnTuning::cache_min_chunk`]).
    ///
    /// [`AttnTuning::decode_workgroup`]: crate::gpu::AttnTuning::decode_workgroup
    /// [`AttnTuning::cache_min_chunk`]: crate::gpu::AttnTuning::cache_min_chunk
    fn tuned(gpu: &Gpu) -> CacheKernel {
        let tu = gpu.tuning().attn;
        if tu.decode_workgroup {
            CacheKernel::Workgroup
        } else {
            CacheKernel::Lanes {
                min_chunk: tu.cache_min_chunk,
            }
        }
    }
}

/// [`record_cache_attention_from`] with the first pass chosen: one workgroup per chunk of [`WG`]
/// positions (`shaders/sdpa_cache_wg.wgsl`, GPUs) or one invocation per (row, head) and chunk of
/// at least the tuning table's `cache_min_chunk` positions (`shaders/sdpa_cache.wgsl`, CPU adapters;
/// see `cpu_chunk`); the tuning table's
/// [`AttnTuning::decode_workgroup`](crate::gpu::AttnTuning::decode_workgroup) picks for the
/// public functions, tests run every form. `append`: the columns of this step's keys and values in q's
/// tensor, appended first ([`record_cache_attention_appending`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_cache_attention_kernel(
    rec: &mut Recorder,
    lay: &CacheLayout,
    layer: usize,
    q: Rows<'_>,
    append: Option<(usize, usize)>,
    kv: &Tensor,
    step: &Tensor,
    out: &Tensor,
    kernel: CacheKernel,
) -> Result<()> {
    const OP: &str = "cache_attention";
    let workgroup = kernel == CacheKernel::Workgroup;
    lay.check(OP, Some(kv))?;
    check_layer(OP, lay, layer)?;
    let stride = q.check(OP, "q", lay)?;
    check_rows(OP, "out", out, lay)?;
    check_step(OP, step)?;
    if let Some((k_col, v_col)) = append {
        for (name, col) in [("k", k_col), ("v", v_col)] {
            let rows = Rows {
                tensor: q.tensor,
                col,
            };
            rows.check(OP, name, lay)?;
        }
    }
    let gpu = rec.gpu().clone();
    let dh = lay.width / lay.heads;
    // Invocations per workgroup of the one-invocation kernel (the tuning table's `decode_wg`).
    let lanes_wg = gpu.tuning().attn.decode_wg;
    let chunk = match kernel {
        CacheKernel::Workgroup => WG as usize,
        CacheKernel::Lanes { min_chunk } => cpu_chunk(
            lay,
            gpu.tuning().attn.target_groups * lanes_wg as usize,
            min_chunk,
        ),
    };
    let p = Params {
        src_stride: stride as u32,
        q_col: q.col as u32,
        k_col: append.map_or(0, |(k, _)| k as u32),
        v_col: append.map_or(0, |(_, v)| v as u32),
        chunk: chunk as u32,
        nsplit: lay.positions.div_ceil(chunk) as u32,
        ..params(lay, layer)
    };
    let rh = lay.rows * lay.heads;
    let rh32 = u32::try_from(rh)
        .ok()
        .filter(|&n| n <= gpu.caps().max_workgroups_per_dim)
        .ok_or_else(|| {
            Error::shape(
                OP,
                format!("R x H = {rh} is over the device's workgroups per dimension"),
            )
        })?;
    // One chunk per row and head (CPU kernel only): the first pass writes the normalized rows
    // into `out` (laid out as the partials `[R*H, 1, Dh]`) and there is no merge pass.
    let direct = !workgroup && p.nsplit == 1;
    let (part, stats) = if direct {
        (None, Tensor::zeros(&gpu, &[4], DType::F32)?)
    } else {
        (
            Some(Tensor::zeros(
                &gpu,
                &[rh, p.nsplit as usize, dh],
                DType::F32,
            )?),
            Tensor::zeros(&gpu, &[rh, p.nsplit as usize, 2], DType::F32)?,
        )
    };
    let binds = CacheAttnBindings {
        q: Bind::read(q.tensor, "f32"),
        kv: if append.is_some() {
            Bind::read_write(kv, "f32")
        } else {
            Bind::read(kv, "f32")
        },
        step: Bind::read(step, "u32"),
        part: Bind::read_write(part.as_ref().unwrap_or(out), "f32"),
        stats: Bind::read_write(&stats, "f32"),
    };
    let (label, grid) = if workgroup {
        ("cache_attention_wg", [p.nsplit, rh32, 1])
    } else {
        let invocations = u32::try_from(rh * p.nsplit as usize).unwrap_or(u32::MAX);
        (OP, gpu.grid(invocations.div_ceil(lanes_wg)))
    };
    let appends = append.is_some();
    let pipe = gpu.pipeline(label, &(dh, direct, appends), || {
        let mut decls = [vec![Params::wgsl()], binds.wgsl()].concat();
        // Only the appending variant writes kv (bound read-write there): the store exists only
        // in its WGSL.
        decls.push(if appends { APPEND_KV } else { NO_APPEND_KV }.to_string());
        if workgroup {
            decls.push(crate::kernels::WORKGROUP_REDUCE_SRC.to_string());
            // Lanes per key group and key groups of the P·V step (see the shader).
            let lg = (dh as u32).min(WG);
            let g = WG / lg;
            compose(
                ATTEND_WG_SRC,
                false,
                &[
                    ("WG", WG),
                    ("DH", dh as u32),
                    ("LG", lg),
                    ("G", g),
                    ("ACCN", g * dh as u32),
                    ("APPEND", appends as u32),
                ],
                &decls,
            )
        } else {
            compose(
                ATTEND_SRC,
                false,
                &[
                    ("WG", lanes_wg),
                    ("DH", dh as u32),
                    ("DIRECT", direct as u32),
                    ("APPEND", appends as u32),
                ],
                &decls,
            )
        }
    })?;
    rec.push(gpu.dispatch(label, &pipe, bytemuck::bytes_of(&p), &binds.buffers(), grid)?);
    let Some(part) = part else {
        return Ok(());
    };
    let mb = CacheMergeBindings {
        part: Bind::read(&part, "f32"),
        stats: Bind::read(&stats, "f32"),
        step: Bind::read(step, "u32"),
        out: Bind::read_write(out, "f32"),
    };
    let pipe = gpu.pipeline("cache_attention_merge", &dh, || {
        compose(
            MERGE_SRC,
            false,
            &[("WG", WG), ("DH", dh as u32)],
            &[vec![Params::wgsl()], mb.wgsl()].concat(),
        )
    })?;
    rec.push(gpu.dispatch(
        "cache_attention_merge",
        &pipe,
        bytemuck::bytes_of(&p),
        &mb.buffers(),
        [(dh as u32).div_ceil(WG), rh32, 1],
    )?);
    Ok(())
}

/// `append_kv(r, h, s, first, stride)` of the appending cache attention: head `h`'s slice of row
/// `r`'s keys and values (columns `p.k_col`, `p.v_col` of `q`) to position `s`, elements
/// `first, first + stride, ...` of it.
const APPEND_KV: &str = "\
fn append_kv(r: u32, h: u32, s: u32, first: u32, stride: u32) {
    let src = r * p.src_stride + h * DH;
    let at = (r * p.t + s) * p.e + h * DH;
    for (var c = first; c < DH; c += stride) {
        kv[p.k_off + at + c] = q[src + p.k_col + c];
        kv[p.v_off + at + c] = q[src + p.v_col + c];
    }
}
";

/// The plain cache attention's `append_kv`, never called (its call sits under `APPEND == 1`).
const NO_APPEND_KV: &str = "fn append_kv(r: u32, h: u32, s: u32, first: u32, stride: u32) {}\n";

/// Positions per chunk of the one-invocation cache attention (`shaders/sdpa_cache.wgsl`): the
/// whole cache (one chunk, no merge pass) when rows x heads alone give the `lanes` wanted, else
/// chunks of at least `min_chunk` positions until they do. Every invocation runs its keys in
/// order over whole rows, so lanes take rows, not positions, wherever rows are enough.
fn cpu_chunk(lay: &CacheLayout, lanes: usize, min_chunk: usize) -> usize {
    let splits = lanes
        .div_ceil((lay.rows * lay.heads).max(1))
        .min(lay.positions / min_chunk.max(1))
        .max(1);
    lay.positions.div_ceil(splits).max(1)
}

/// CPU references (f64 accumulation).
pub mod reference {
    use super::CacheLayout;

    /// [`super::record_kv_write`] on host arrays.
    pub fn kv_write(
        lay: &CacheLayout,
        layer: usize,
        k: &[f32],
        v: &[f32],
        s: usize,
        kv: &mut [f32],
    ) {
        if s >= lay.positions {
            return;
        }
        let (e, t) = (lay.width, lay.positions);
        let plane = lay.rows * t * e;
        for r in 0..lay.rows {
            for c in 0..e {
                kv[2 * layer * plane + (r * t + s) * e + c] = k[r * e + c];
                kv[(2 * layer + 1) * plane + (r * t + s) * e + c] = v[r * e + c];
            }
        }
    }

    /// [`super::record_kv_gather`] on host arrays.
    pub fn kv_gather(lay: &CacheLayout, src: &[f32], parents: &[u32], s: usize, dst: &mut [f32]) {
        let (e, t) = (lay.width, lay.positions);
        let plane = lay.rows * t * e;
        for pl in 0..lay.planes {
            for (r, &from) in parents.iter().enumerate() {
                let from = if (from as usize) < lay.rows {
                    from as usize
                } else {
                    r
                };
                for p in 0..s.min(t) {
                    for c in 0..e {
                        dst[pl * plane + (r * t + p) * e + c] =
                            src[pl * plane + (from * t + p) * e + c];
                    }
                }
            }
        }
    }

    /// [`super::record_cache_attention`] on host arrays.
    pub fn cache_attention(
        lay: &CacheLayout,
        layer: usize,
        q: &[f32],
        kv: &[f32],
        s: usize,
    ) -> Vec<f32> {
        let (e, t, h) = (lay.width, lay.positions, lay.heads);
        let dh = e / h;
        let plane = lay.rows * t * e;
        let n = (s + 1).min(t);
        let scale = 1.0 / (dh as f64).sqrt();
        let mut out = vec![0f32; lay.rows * e];
        for r in 0..lay.rows {
            for hh in 0..h {
                let qv = &q[r * e + hh * dh..r * e + (hh + 1) * dh];
                let at = |pl: usize, j: usize| pl * plane + (r * t + j) * e + hh * dh;
                let sc: Vec<f64> = (0..n)
                    .map(|j| {
                        let k = &kv[at(2 * layer, j)..at(2 * layer, j) + dh];
                        qv.iter()
                            .zip(k)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = w.iter().sum();
                for c in 0..dh {
                    let acc: f64 = (0..n)
                        .map(|j| w[j] * kv[at(2 * layer + 1, j) + c] as f64)
                        .sum();
                    out[r * e + hh * dh + c] = (acc / z) as f32;
                }
            }
        }
        out
    }
}
