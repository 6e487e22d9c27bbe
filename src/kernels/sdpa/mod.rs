//! Scaled dot-product attention kernels: flash (`shaders/sdpa.wgsl`), flash-decoding split-key pass
//! (`shaders/sdpa_decode.wgsl`) and its merge (`shaders/sdpa_merge.wgsl`). The attention-weights
//! pass lives in [`crate::kernels::attention_probs`].
//!
//! Shapes (legend in [`crate::tensor`]): q `[B, H, Tq, D]`, k `[B, H, Tk, D]`, v `[B, H, Tk, Dv]`,
//! out `[B, H, Tq, Dv]`, all f32, each addressed through a [`Heads`] view (offset and batch, head
//! and row strides) so that multi-head attention reads the `[B, T, H*D]` projections in place.
//! D and Dv may be anything from 1 to 256.
//!
//! Plan, chosen per call by [`plan`]:
//! - Few query rows (Tq <= 4) and enough keys: the decode kernel splits each row's keys into
//!   chunks and the merge kernel combines them (flash-decoding). On GPUs a workgroup shares each
//!   chunk (`shaders/sdpa_decode_wg.wgsl`); on CPU adapters one invocation runs it
//!   (`shaders/sdpa_decode.wgsl`).
//! - Otherwise the flash kernel, one invocation per query row; when its workgroups would not fill
//!   the device, the keys are split as well and the merge kernel combines the splits. Where the
//!   tuning table asks for it and the adapter has cooperative matrices, the tensor-core flash
//!   kernel (`shaders/sdpa_coop.wgsl`, 16 query rows per subgroup) runs instead.
//!
//! Extra memory: none on the flash path; `B*H*Tq*nsplit*(Dv+2)` floats of partials when split.
//!
//! Here: pipelines and dispatches; `params.rs`: the parameters every attention kernel shares and
//! the checks of dims and masks; `tuning.rs`: per-adapter tuning and the plan; `views.rs`: the
//! head views and masks; `cpu_source.rs`: the generated unrolled flash kernel for CPU adapters;
//! `coop.rs`: the cooperative-matrix flash kernel (hardware and emulated forms).

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Elem, Gpu, Recorder};
use crate::graph::{Graph, Value};
use crate::kernels::check_dtype;
use crate::kernels::op::{KernelOp, ShapeDType};
use crate::tensor::{DType, Tensor};

mod coop;
mod cpu_source;
mod params;
mod tuning;
mod views;

pub use coop::{
    coop_attn_fits, coop_attn_tile, workgroup_bytes, CoopAttnTile, CoopForm, EMULATED_SG,
};
use cpu_source::{unrolled_flash_source, FlashForm};
use params::view_params;
pub(crate) use params::{base_params, check_dims, check_mask, Params};
use tuning::decode_wg_size;
pub use tuning::{decode_plan, plan, Plan, DECODE_WG_MAX_CHUNK, UNROLLED_MAX_D};
pub(crate) use tuning::{flash_rows, flash_wg, tuning, Tuning};
use tuning::{flash_subgroup, unrolled_applies};
pub use views::{AttnDims, Causal, Heads, MaskKind, MaskView};

/// The shared fragment: the masked-score constant and the causal rule.
const COMMON_SRC: &str = include_str!("../../../shaders/common/attention.wgsl");
/// The shared fragment: the mask binding (4) and the masked score.
const MASK_SRC: &str = include_str!("../../../shaders/common/attention_mask.wgsl");

/// The generated uniform declaration plus the shared attention fragment.
pub(crate) fn params_prologue() -> String {
    Params::wgsl() + COMMON_SRC
}
const FLASH_SRC: &str = include_str!("../../../shaders/sdpa.wgsl");
const FLASH_CPU_SRC: &str = include_str!("../../../shaders/sdpa_cpu.wgsl");
const DECODE_SRC: &str = include_str!("../../../shaders/sdpa_decode.wgsl");
const DECODE_WG_SRC: &str = include_str!("../../../shaders/sdpa_decode_wg.wgsl");
const MERGE_SRC: &str = include_str!("../../../shaders/sdpa_merge.wgsl");

/// Largest head dim (of q/k and of v) the kernels take.
pub const MAX_HEAD_DIM: usize = 256;
/// Query rows up to which the split-key decode kernel is used.
pub const DECODE_MAX_TQ: usize = 4;

/// Pipeline variant of the q/k/v-reading kernels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Variant {
    kernel: &'static str,
    wg: u32,
    rows: u32,
    kt: u32,
    shared: bool,
    unrolled: bool,
    /// The unrolled variant shares k/v loads over 8-lane subgroups.
    sg: bool,
    /// The unrolled variant reads a mask (the others read `p.mask_kind` at run time).
    masked: bool,
    d: usize,
    dv: usize,
    vec: bool,
    /// The unrolled variant stores its output rows as vec4s (`out` bound as `array<vec4<f32>>`).
    vec_out: bool,
}

crate::wgsl_bindings! {
    /// Storage bindings of the q/k/v-reading kernels (sdpa.wgsl, sdpa_cpu.wgsl, sdpa_decode.wgsl),
    /// in `@binding` order: the q, k, v views (f32, read through `ld_*`), the mask (u32 bool or
    /// f32 bits, a 4-element dummy when unmasked), out (the output view, or the per-split partials
    /// `[B*H*Tq, nsplit, Dv]`), stats (per-row log-sum-exp `[B*H*Tq]`, or per split `[.., 2]`).
    pub(crate) struct AttnBindings { q, k, v, mask, out, stats }
}

crate::wgsl_bindings! {
    /// Storage bindings of sdpa_merge.wgsl: the split partials and their (max, sum) stats, the
    /// output view, the per-row log-sum-exp (a dummy when not asked for).
    struct MergeBindings { part, stats, out, lse }
}

/// The bindings of a q/k/v-reading kernel: `qkvm` = q, k, v, mask; q/k/v in vec4 units when `vec`,
/// out when `vec_out`.
fn attn_bindings<'a>(
    qkvm: [&'a Tensor; 4],
    out: &'a Tensor,
    stats: &'a Tensor,
    vec: bool,
    vec_out: bool,
) -> AttnBindings<'a> {
    AttnBindings {
        q: Bind::input(qkvm[0], Elem::F32, vec),
        k: Bind::input(qkvm[1], Elem::F32, vec),
        v: Bind::input(qkvm[2], Elem::F32, vec),
        mask: Bind::read(qkvm[3], "u32"),
        out: Bind::read_write(out, if vec_out { "vec4<f32>" } else { "f32" }),
        stats: Bind::read_write(stats, "f32"),
    }
}

/// Keys per tile of the workgroup-memory flash variant: as many as fit (4..=32) in the limit.
fn shared_kt(gpu: &Gpu, dims: &AttnDims) -> u32 {
    let per_key = 16 * (dims.d.div_ceil(4) + dims.dv.div_ceil(4)) as u32;
    let fit = gpu.caps().max_workgroup_storage.min(32768) / per_key.max(1);
    fit.clamp(4, 32) / 4 * 4
}

/// `fn ld_{name}(base, c) -> vec4<f32>`: elements 4c..4c+3 of the row at `base`, zero past `len`.
pub(crate) fn loader(name: &str, len: &str) -> String {
    format!(
        "fn ld_{name}(base: u32, c: u32) -> vec4<f32> {{\n\
         \x20   if (VEC == 1u || 4u * c + 4u <= {len}) {{ return {name}_at4(base + 4u * c); }}\n\
         \x20   var r = vec4<f32>(0.0);\n\
         \x20   for (var e = 0u; e < 4u; e++) {{ if (4u * c + e < {len}) {{ r[e] = {name}_at(base + 4u * c + e); }} }}\n\
         \x20   return r;\n}}\n"
    )
}

/// The cooperative-matrix flash kernel's whole WGSL for `dims` (q, k, v read in vec4 units when
/// `vec`) with block `tile` in `form`, whether or not this adapter runs that form: the tests
/// validate the hardware form with naga everywhere.
pub fn coop_flash_source(
    gpu: &Gpu,
    dims: &AttnDims,
    vec: bool,
    tile: CoopAttnTile,
    form: CoopForm,
) -> Result<String> {
    let t = Tensor::zeros(gpu, &[4], DType::F32)?;
    let m = Tensor::zeros(gpu, &[4], DType::U32)?;
    let binds = attn_bindings([&t, &t, &t, &m], &t, &t, vec, false);
    Ok(coop::coop_flash_wgsl(&binds, tile, dims, vec, form))
}

/// Composes and caches a kernel that reads q/k (and v unless `with_v` is false); its storage
/// declarations are generated from `binds`. `masked`: the call has a mask (the unrolled flash
/// variant is generated with or without the mask lookup).
#[allow(clippy::too_many_arguments)]
pub(crate) fn qkv_pipeline(
    gpu: &Gpu,
    kernel: &'static str,
    body: &str,
    binds: &dyn Bindings,
    tu: &Tuning,
    dims: &AttnDims,
    vec: bool,
    vec_out: bool,
    with_v: bool,
    rows: u32,
    masked: bool,
) -> Result<wgpu::ComputePipeline> {
    let shared = tu.shared && kernel == "sdpa";
    let rows = if kernel == "sdpa" { rows } else { 1 };
    let unrolled = kernel == "sdpa" && unrolled_applies(tu, dims);
    let sg = unrolled && flash_subgroup(gpu, tu, dims);
    let kt = if shared {
        shared_kt(gpu, dims)
    } else if unrolled {
        tu.unrolled_kt
    } else {
        tu.kt
    };
    let wg = match kernel {
        "sdpa" => flash_wg(tu, dims),
        "sdpa_decode_wg" => decode_wg_size(tu),
        "sdpa_decode" => tu.decode_wg,
        _ => tu.wg,
    };
    let variant = Variant {
        kernel,
        wg,
        rows,
        kt,
        shared,
        unrolled,
        sg,
        masked: unrolled && masked,
        d: dims.d,
        dv: if with_v { dims.dv } else { 0 },
        vec,
        vec_out: unrolled && vec_out,
    };
    gpu.pipeline(kernel, &variant, || {
        let mut decls = vec![params_prologue()];
        decls.extend(binds.wgsl());
        decls.push(loader("q", "D"));
        decls.push(loader("k", "D"));
        if with_v {
            decls.push(loader("v", "DV"));
        }
        decls.push(MASK_SRC.to_string());
        if kernel == "sdpa_decode_wg" {
            decls.push(crate::kernels::WORKGROUP_REDUCE_SRC.to_string());
        }
        let generated;
        let body = if unrolled {
            let form = FlashForm {
                sg,
                vec,
                vec_out,
                masked,
            };
            generated = unrolled_flash_source(rows as usize, kt as usize, dims.d, dims.dv, form);
            generated.as_str()
        } else {
            body
        };
        compose(
            body,
            false,
            &[
                ("WG", wg),
                ("KT", kt),
                ("R", rows),
                ("SHARED", shared as u32),
                ("D", dims.d as u32),
                ("DV", dims.dv as u32),
                ("D4", dims.d.div_ceil(4) as u32),
                ("DV4", dims.dv.div_ceil(4) as u32),
                ("VEC", vec as u32),
                // The workgroup decode kernel's key groups and largest chunk.
                ("G", (wg / dims.dv.div_ceil(4).max(1) as u32).max(1)),
                ("MAXC", DECODE_WG_MAX_CHUNK as u32),
            ],
            &decls,
        )
    })
}

/// Options of one sdpa call.
#[derive(Clone, Copy, Debug, Default)]
pub struct SdpaArgs<'a> {
    /// Optional mask broadcast over `[B, H, Tq, Tk]`.
    pub mask: Option<MaskView<'a>>,
    /// Causal masking (combined with `mask` when both are given).
    pub causal: Causal,
    /// Score scale; `None` = `1 / sqrt(D)`.
    pub scale: Option<f32>,
    /// Forces a plan (benchmarks compare plans); `None` = [`plan`].
    pub plan: Option<Plan>,
    /// Forces the flash kernel's query rows per invocation (1..=8; tests and benchmarks);
    /// `None` = tuned for the adapter and shape.
    pub rows: Option<u32>,
}

/// Records `out = softmax(q k^T * scale + mask) v` (flash attention, see the module docs).
///
/// With `lse`, also writes each row's log-sum-exp of the masked, scaled scores into `lse`
/// (`[B*H*Tq]` f32), which [`crate::kernels::attention_probs`] uses to produce the weights.
/// Rows whose keys are all masked give zeros.
#[allow(clippy::too_many_arguments)]
pub fn record_sdpa(
    rec: &mut Recorder,
    dims: &AttnDims,
    q: Heads,
    k: Heads,
    v: Heads,
    out: Heads,
    args: &SdpaArgs,
    lse: Option<&Tensor>,
) -> Result<()> {
    const OP: &str = "sdpa";
    check_dims(OP, dims)?;
    let AttnDims {
        b,
        h,
        tq,
        tk,
        d,
        dv,
    } = *dims;
    q.check(OP, "q", [b, h, tq, d])?;
    k.check(OP, "k", [b, h, tk, d])?;
    v.check(OP, "v", [b, h, tk, dv])?;
    out.check(OP, "out", [b, h, tq, dv])?;
    if let Some(m) = &args.mask {
        check_mask(OP, m, dims)?;
    }
    let rows = b * h * tq;
    if let Some(l) = lse {
        check_dtype(OP, "lse", l, &[DType::F32])?;
        if l.numel() < rows {
            return Err(Error::shape(
                OP,
                format!("lse {:?} must hold B*H*Tq = {rows} values", l.shape()),
            ));
        }
    }
    if rows == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let tu = tuning(&gpu);
    let vec = d % 4 == 0 && dv % 4 == 0 && q.aligned() && k.aligned() && v.aligned();
    let plan = args.plan.unwrap_or_else(|| plan(&gpu, dims));
    let scale = args.scale.unwrap_or(1.0 / (d as f32).sqrt());
    let mut p = base_params(dims, &q, &k, args.mask.as_ref(), args.causal, scale);
    p.v = view_params(&v);
    p.o = view_params(&out);
    p.flags = lse.is_some() as u32;
    let rpi = match args.rows {
        Some(r) if (1..=8).contains(&r) => r,
        Some(r) => {
            return Err(Error::invalid(
                OP,
                format!("rows per invocation {r} is outside 1..=8"),
            ))
        }
        None => flash_rows(&tu, dims),
    };
    let dummy;
    let mask_t = match &args.mask {
        Some(m) => m.tensor,
        None => {
            dummy = Tensor::zeros(&gpu, &[4], DType::U32)?;
            &dummy
        }
    };
    let masked = args.mask.is_some();
    let qkvm = [q.tensor, k.tensor, v.tensor, mask_t];
    // The unrolled flash kernel stores vec4s where its output rows are vec4-aligned (the split
    // partials `[rows, nsplit, Dv]` are when Dv is a multiple of 4).
    let unrolled = unrolled_applies(&tu, dims);
    let binds = |out, stats, vec_out| attn_bindings(qkvm, out, stats, vec, vec_out);
    let bh = u32::try_from(b * h).unwrap_or(u32::MAX);
    let (nsplit, chunk) = match plan {
        Plan::Flash => {
            let stats = match lse {
                Some(l) => l.clone(),
                None => Tensor::zeros(&gpu, &[4], DType::F32)?,
            };
            let vec_out = unrolled && vec && out.aligned();
            let b = binds(out.tensor, &stats, vec_out);
            let pipe = qkv_pipeline(
                &gpu, "sdpa", FLASH_SRC, &b, &tu, dims, vec, vec_out, true, rpi, masked,
            )?;
            p.row_blocks = tq.div_ceil((flash_wg(&tu, dims) * rpi) as usize) as u32;
            let disp = gpu.dispatch(
                "sdpa",
                &pipe,
                bytemuck::bytes_of(&p),
                &b.buffers(),
                [p.row_blocks, bh, 1],
            )?;
            rec.push(disp);
            return Ok(());
        }
        Plan::FlashSplit { nsplit, chunk }
        | Plan::Decode { nsplit, chunk }
        | Plan::DecodeWorkgroup { nsplit, chunk } => (nsplit, chunk),
        Plan::FlashCoop => return coop::record_flash_coop(rec, dims, qkvm, &out, p, vec, lse, OP),
    };
    // The splits must cover Tk (splits past it write empty partials); the workgroup decode
    // kernel holds a chunk's scores in workgroup memory.
    let wg_chunk_ok = !matches!(plan, Plan::DecodeWorkgroup { .. }) || chunk <= DECODE_WG_MAX_CHUNK;
    if nsplit == 0 || chunk == 0 || nsplit * chunk < tk || !wg_chunk_ok {
        return Err(Error::invalid(
            OP,
            format!("bad plan {plan:?} for {dims:?}"),
        ));
    }
    p.nsplit = nsplit as u32;
    p.chunk = chunk as u32;
    let invocations = rows
        .checked_mul(nsplit)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| Error::invalid(OP, format!("{rows} rows x {nsplit} splits")))?;
    p.rows = rows as u32;
    // A one-chunk plan of the one-invocation decode kernel writes the output (and the
    // log-sum-exp) itself, as the flash kernel does: no partials, no merge pass.
    let direct = matches!(plan, Plan::Decode { nsplit: 1, .. });
    let split_bufs = if direct {
        None
    } else {
        Some((
            Tensor::zeros(&gpu, &[rows, nsplit, dv], DType::F32)?,
            Tensor::zeros(&gpu, &[rows, nsplit, 2], DType::F32)?,
        ))
    };
    // The split pass: the kernel the plan names, then its grid (row_blocks is read by the flash
    // kernel).
    let (kernel, src, kernel_rows) = match plan {
        Plan::Decode { .. } => ("sdpa_decode", DECODE_SRC, 1),
        Plan::DecodeWorkgroup { .. } => ("sdpa_decode_wg", DECODE_WG_SRC, 1),
        _ => ("sdpa", FLASH_SRC, rpi),
    };
    let direct_stats;
    let vec_out = kernel == "sdpa" && unrolled && vec;
    let b = match &split_bufs {
        Some((part, stats)) => binds(part, stats, vec_out),
        None => {
            // The caller's log-sum-exp, or a dummy (flags bit 0 is off then).
            direct_stats = match lse {
                Some(l) => l.clone(),
                None => Tensor::zeros(&gpu, &[4], DType::F32)?,
            };
            binds(out.tensor, &direct_stats, false)
        }
    };
    let pipe = qkv_pipeline(
        &gpu,
        kernel,
        src,
        &b,
        &tu,
        dims,
        vec,
        vec_out && split_bufs.is_some(),
        true,
        kernel_rows,
        masked,
    )?;
    let rows32 = u32::try_from(rows).unwrap_or(u32::MAX);
    let grid = match plan {
        Plan::Decode { .. } => gpu.grid(invocations.div_ceil(tu.decode_wg)),
        Plan::DecodeWorkgroup { .. } => [nsplit as u32, rows32, 1],
        _ => {
            p.row_blocks = tq.div_ceil((flash_wg(&tu, dims) * rpi) as usize) as u32;
            [p.row_blocks * nsplit as u32, bh, 1]
        }
    };
    let disp = gpu.dispatch(kernel, &pipe, bytemuck::bytes_of(&p), &b.buffers(), grid)?;
    rec.push(disp);
    match &split_bufs {
        Some((part, stats)) => record_merge(rec, &tu, dims, &p, part, stats, out.tensor, lse),
        None => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn record_merge(
    rec: &mut Recorder,
    tu: &Tuning,
    dims: &AttnDims,
    p: &Params,
    part: &Tensor,
    stats: &Tensor,
    out: &Tensor,
    lse: Option<&Tensor>,
) -> Result<()> {
    let gpu = rec.gpu().clone();
    let wg = tu.wg;
    let lse_buf = match lse {
        Some(l) => l.clone(),
        None => Tensor::zeros(&gpu, &[4], DType::F32)?,
    };
    let binds = MergeBindings {
        part: Bind::read(part, "f32"),
        stats: Bind::read(stats, "f32"),
        out: Bind::read_write(out, "f32"),
        lse: Bind::read_write(&lse_buf, "f32"),
    };
    let pipe = gpu.pipeline("sdpa_merge", &(wg, dims.dv), || {
        compose(
            MERGE_SRC,
            false,
            &[("WG", wg), ("DV", dims.dv as u32)],
            &[vec![params_prologue()], binds.wgsl()].concat(),
        )
    })?;
    let rows = u32::try_from(dims.b * dims.h * dims.tq).unwrap_or(u32::MAX);
    let disp = gpu.dispatch(
        "sdpa_merge",
        &pipe,
        bytemuck::bytes_of(p),
        &binds.buffers(),
        [dims.dv.div_ceil(wg as usize) as u32, rows, 1],
    )?;
    rec.push(disp);
    Ok(())
}

/// The op: multi-head self-attention whose q, k, v heads are column blocks of one packed
/// projection, read in place (no transposes): `[qkv [B, T, 3E], mask [B, T] u32 (non-zero = may
/// attend)] -> [y [B, T, E]]`, scale `1/sqrt(E/H)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfAttentionPacked {
    /// Number of heads H.
    pub heads: usize,
}

impl KernelOp for SelfAttentionPacked {
    fn name(&self) -> &'static str {
        "self_attention"
    }
    fn arity(&self) -> &'static [usize] {
        &[2]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        let heads = self.heads;
        match ins[0].0.as_slice() {
            &[b, t, e3] if heads > 0 && e3 % (3 * heads) == 0 => {
                Ok(vec![(vec![b, t, e3 / 3], DType::F32)])
            }
            x => Err(Error::shape(
                "self_attention",
                format!("qkv {x:?} must be [B, T, 3E] with E a multiple of heads = {heads}"),
            )),
        }
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_packed_attention(rec, ins[0], ins[1], outs[0], self.heads)
    }
}

impl Graph {
    /// Multi-head self-attention over a packed `[B, T, 3E]` q/k/v projection with a key mask
    /// `[B, T]` u32 (non-zero = may attend): `[B, T, E]`.
    pub fn self_attention_packed(&mut self, qkv: Value, mask: Value, heads: usize) -> Value {
        self.op(SelfAttentionPacked { heads }, &[qkv, mask])
    }
}

/// Self-attention whose q, k, v heads are column blocks of one `[B, T, 3E]` projection.
fn record_packed_attention(
    rec: &mut Recorder,
    qkv: &Tensor,
    mask: &Tensor,
    out: &Tensor,
    heads: usize,
) -> Result<()> {
    let [b, t, e3] = *qkv.shape() else {
        return Err(Error::shape(
            "self_attention",
            format!("qkv {:?} must be [B, T, 3E]", qkv.shape()),
        ));
    };
    let e = e3 / 3;
    let d = e / heads;
    let dims = AttnDims {
        b,
        h: heads,
        tq: t,
        tk: t,
        d,
        dv: d,
    };
    let args = SdpaArgs {
        mask: Some(MaskView::per_key(
            "self_attention",
            mask,
            MaskKind::Keep,
            b,
            t,
        )?),
        ..Default::default()
    };
    record_sdpa(
        rec,
        &dims,
        Heads::interleaved(qkv, t, e3, 0, d),
        Heads::interleaved(qkv, t, e3, e, d),
        Heads::interleaved(qkv, t, e3, 2 * e, d),
        Heads::interleaved(out, t, e, 0, d),
        &args,
        None,
    )
}
