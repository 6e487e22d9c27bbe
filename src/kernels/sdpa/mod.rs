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
//!   chunks (one invocation each) and the merge kernel combines them (flash-decoding).
//! - Otherwise the flash kernel, one invocation per query row; when its workgroups would not fill
//!   the device, the keys are split as well and the merge kernel combines the splits.
//!
//! Extra memory: none on the flash path; `B*H*Tq*nsplit*(Dv+2)` floats of partials when split.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{compose, declare_input, Elem, Gpu, Recorder};
use crate::kernels::check_dtype;
use crate::tensor::{DType, Tensor};

mod cpu_source;
mod views;

use cpu_source::unrolled_flash_source;
pub use views::{AttnDims, Causal, Heads, MaskKind, MaskView};

const PARAMS_SRC: &str = include_str!("../../../shaders/sdpa_params.wgsl");
const MASK_SRC: &str = include_str!("../../../shaders/sdpa_mask.wgsl");
const FLASH_SRC: &str = include_str!("../../../shaders/sdpa.wgsl");
const FLASH_CPU_SRC: &str = include_str!("../../../shaders/sdpa_cpu.wgsl");
const DECODE_SRC: &str = include_str!("../../../shaders/sdpa_decode.wgsl");
const MERGE_SRC: &str = include_str!("../../../shaders/sdpa_merge.wgsl");

/// Largest head dim (of q/k and of v) the kernels take.
pub const MAX_HEAD_DIM: usize = 256;
/// Query rows up to which the split-key decode kernel is used.
pub const DECODE_MAX_TQ: usize = 4;

/// Mirrors `Params` in `shaders/sdpa_params.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct Params {
    pub tq: u32,
    pub tk: u32,
    pub heads: u32,
    pub flags: u32,
    pub q: [u32; 4],
    pub k: [u32; 4],
    pub v: [u32; 4],
    pub o: [u32; 4],
    pub m: [u32; 4],
    pub m_sj: u32,
    pub mask_kind: u32,
    pub causal: u32,
    pub causal_off: i32,
    pub scale: f32,
    pub nsplit: u32,
    pub chunk: u32,
    pub row_blocks: u32,
}

fn view_params(v: &Heads) -> [u32; 4] {
    [
        v.offset as u32,
        v.strides[0] as u32,
        v.strides[1] as u32,
        v.strides[2] as u32,
    ]
}

/// Fills the parts of [`Params`] every attention kernel shares: sizes, q/k views, mask, causal, scale.
pub(crate) fn base_params(
    dims: &AttnDims,
    q: &Heads,
    k: &Heads,
    mask: Option<&MaskView>,
    causal: Causal,
    scale: f32,
) -> Params {
    let mut p = Params {
        tq: dims.tq as u32,
        tk: dims.tk as u32,
        heads: dims.h as u32,
        q: view_params(q),
        k: view_params(k),
        scale,
        nsplit: 1,
        chunk: dims.tk.max(1) as u32,
        row_blocks: 1,
        ..Params::default()
    };
    if let Some(m) = mask {
        p.m = [
            m.offset as u32,
            m.strides[0] as u32,
            m.strides[1] as u32,
            m.strides[2] as u32,
        ];
        p.m_sj = m.strides[3] as u32;
        p.mask_kind = m.kind.code();
    }
    match causal {
        Causal::None => {}
        Causal::TopLeft => p.causal = 1,
        Causal::BottomRight => {
            p.causal = 1;
            p.causal_off = dims.tk as i32 - dims.tq as i32;
        }
    }
    p
}

/// Validates a mask view against the dims: dtype for its kind, every index in bounds.
pub(crate) fn check_mask(op: &str, m: &MaskView, dims: &AttnDims) -> Result<()> {
    let want = match m.kind {
        MaskKind::Additive => DType::F32,
        MaskKind::Keep | MaskKind::Ignore => DType::U32,
    };
    check_dtype(op, "mask", m.tensor, &[want])?;
    let ext = [dims.b, dims.h, dims.tq, dims.tk];
    if ext.contains(&0) {
        return Ok(());
    }
    let last = m.offset
        + ext
            .iter()
            .zip(m.strides)
            .map(|(&n, s)| (n - 1) * s)
            .sum::<usize>();
    if last >= m.tensor.numel() || last > u32::MAX as usize {
        return Err(Error::shape(
            op,
            format!(
                "mask {:?} (offset {}, strides {:?}) does not cover [B, H, Tq, Tk] = {ext:?}",
                m.tensor.shape(),
                m.offset,
                m.strides
            ),
        ));
    }
    Ok(())
}

/// Checks head dims and the sizes the 32-bit kernels index.
pub(crate) fn check_dims(op: &str, dims: &AttnDims) -> Result<()> {
    for (name, d) in [("D", dims.d), ("Dv", dims.dv)] {
        if d == 0 || d > MAX_HEAD_DIM {
            return Err(Error::shape(
                op,
                format!("head dim {name} = {d} is outside 1..={MAX_HEAD_DIM} ({dims:?})"),
            ));
        }
    }
    let rows = dims.b * dims.h * dims.tq;
    if rows > u32::MAX as usize / 2 || dims.tk > u32::MAX as usize / 2 {
        return Err(Error::shape(op, format!("{dims:?} is too large")));
    }
    Ok(())
}

/// Tuning of the attention kernels for one adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Tuning {
    /// Invocations (query rows, or key chunks when decoding) per workgroup.
    pub wg: u32,
    /// Keys per tile.
    pub kt: u32,
    /// Workgroups wanted in flight to fill the device.
    pub target_groups: usize,
    /// Flash kernel stages K/V tiles in workgroup memory.
    pub shared: bool,
    /// Query rows per invocation in the flash kernel (register blocking: each k/v load serves R
    /// rows).
    pub rows: u32,
    /// Flash kernel with straight-line code over named registers (`shaders/sdpa_cpu.wgsl`) for
    /// head dims up to [`UNROLLED_MAX_D`].
    pub unrolled: bool,
    /// Query rows per invocation of the unrolled variant.
    pub unrolled_rows: u32,
    /// Keys per tile of the unrolled variant.
    pub unrolled_kt: u32,
}

/// Largest head dim (of q/k and of v) the unrolled CPU flash variant is generated for (its code
/// grows with R * KT * D / 4).
pub const UNROLLED_MAX_D: usize = 64;

/// Per-adapter tuning. On CPU adapters (lavapipe) the flash kernel reads k/v straight from the
/// storage buffers (uniform loads; staging tiles in workgroup memory behind barriers measured
/// slower there) with R = 4 query rows per invocation (measured at T = 2048, D = 64: about 2x
/// R = 1; R = 8 was no better). For head dims up to [`UNROLLED_MAX_D`] the unrolled variant
/// (`shaders/sdpa_cpu.wgsl`, R = 8, KT = 4) runs instead: at T = 2048, D = 64 about 2.3x the loop
/// kernel and 1.4x the materialized path (2.8x causal). Discrete GPUs stage K/V tiles in workgroup
/// memory.
///
/// Benchmarks may override the CPU choice with `HEEDFUL_ATTN_R`, `HEEDFUL_ATTN_KT`,
/// `HEEDFUL_ATTN_WG`, `HEEDFUL_ATTN_SHARED=1` and `HEEDFUL_ATTN_UNROLL=0` (loop kernel only).
pub(crate) fn tuning(gpu: &Gpu) -> Tuning {
    if gpu.caps().is_cpu() {
        // lavapipe runs one workgroup per core thread; a few per thread balance causal rows.
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let kt = std::env::var("HEEDFUL_ATTN_KT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8);
        let wg = std::env::var("HEEDFUL_ATTN_WG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64);
        let shared = std::env::var("HEEDFUL_ATTN_SHARED").is_ok_and(|v| v == "1");
        let env_r = std::env::var("HEEDFUL_ATTN_R")
            .ok()
            .and_then(|v| v.parse().ok());
        let env_kt = std::env::var("HEEDFUL_ATTN_KT")
            .ok()
            .and_then(|v| v.parse().ok());
        Tuning {
            wg,
            kt,
            target_groups: 4 * threads,
            shared,
            rows: env_r.unwrap_or(4),
            unrolled: !std::env::var("HEEDFUL_ATTN_UNROLL").is_ok_and(|v| v == "0"),
            // Measured at T = 2048, D = 64: R = 8 about 1.5x R = 4; KT = 4 as fast as KT = 8 with
            // half the code (KT = 16 much slower: spills).
            unrolled_rows: env_r.unwrap_or(8),
            unrolled_kt: env_kt.unwrap_or(4),
        }
    } else {
        Tuning {
            wg: 64,
            kt: 8,
            target_groups: 1024,
            shared: true,
            rows: 1,
            unrolled: false,
            unrolled_rows: 1,
            unrolled_kt: 8,
        }
    }
}

/// Query rows per invocation of the flash kernel for `dims`: the tuned R where the query rows fill
/// R-row invocations and enough workgroups, else 1 (short sequences keep their lanes busy).
/// Falls back to fewer rows (halving) where the tuned R would leave the device underfilled.
pub(crate) fn flash_rows(tu: &Tuning, dims: &AttnDims) -> u32 {
    let mut r = if unrolled_applies(tu, dims) {
        tu.unrolled_rows
    } else {
        tu.rows
    }
    .max(1);
    while r > 1 {
        let groups = dims.b * dims.h * dims.tq.div_ceil((tu.wg * r) as usize);
        if dims.tq >= (tu.wg * r) as usize && groups >= tu.target_groups {
            return r;
        }
        r /= 2;
    }
    1
}

/// Whether the flash kernel for `dims` is the unrolled CPU variant (`shaders/sdpa_cpu.wgsl`).
fn unrolled_applies(tu: &Tuning, dims: &AttnDims) -> bool {
    tu.unrolled && !tu.shared && dims.d <= UNROLLED_MAX_D && dims.dv <= UNROLLED_MAX_D
}

/// Which kernels a call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// One flash dispatch writing the output.
    Flash,
    /// Flash over `nsplit` key splits of `chunk` keys, then the merge kernel.
    FlashSplit {
        /// Key splits per row.
        nsplit: usize,
        /// Keys per split.
        chunk: usize,
    },
    /// The decode kernel over `nsplit` key chunks per row, then the merge kernel.
    Decode {
        /// Key chunks per row.
        nsplit: usize,
        /// Keys per chunk.
        chunk: usize,
    },
}

/// The plan [`record_sdpa`] uses for `dims` on `gpu` (exposed for benchmarks and tests).
pub fn plan(gpu: &Gpu, dims: &AttnDims) -> Plan {
    let tu = tuning(gpu);
    let kt = tu.kt as usize;
    let rows = dims.b * dims.h * dims.tq;
    if dims.tk == 0 || rows == 0 {
        return Plan::Flash;
    }
    if dims.tq <= DECODE_MAX_TQ && dims.tk >= 2 * kt {
        // Enough chunks for every lane of target_groups workgroups, at least 2 tiles per chunk.
        let lanes = tu.target_groups * tu.wg as usize;
        let chunk = (dims.tk * rows)
            .div_ceil(lanes)
            .max(2 * kt)
            .next_multiple_of(kt);
        return Plan::Decode {
            nsplit: dims.tk.div_ceil(chunk),
            chunk,
        };
    }
    let rows = flash_rows(&tu, dims);
    let groups = dims.b * dims.h * dims.tq.div_ceil((tu.wg * rows) as usize);
    let min_chunk = 256;
    if groups < tu.target_groups && dims.tk >= 2 * min_chunk {
        let want = tu.target_groups.div_ceil(groups);
        let chunk = dims.tk.div_ceil(want).max(min_chunk).next_multiple_of(kt);
        let nsplit = dims.tk.div_ceil(chunk);
        if nsplit > 1 {
            return Plan::FlashSplit { nsplit, chunk };
        }
    }
    Plan::Flash
}

/// Pipeline variant of the q/k/v-reading kernels.
#[derive(Debug, Hash)]
struct Variant {
    kernel: &'static str,
    wg: u32,
    rows: u32,
    kt: u32,
    shared: bool,
    unrolled: bool,
    d: usize,
    dv: usize,
    vec: bool,
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

/// Composes and caches a kernel that reads q/k (and v unless `with_v` is false).
#[allow(clippy::too_many_arguments)]
pub(crate) fn qkv_pipeline(
    gpu: &Gpu,
    kernel: &'static str,
    body: &str,
    tu: &Tuning,
    dims: &AttnDims,
    vec: bool,
    with_v: bool,
    rows: u32,
) -> Result<wgpu::ComputePipeline> {
    let shared = tu.shared && kernel == "sdpa";
    let rows = if kernel == "sdpa" { rows } else { 1 };
    let unrolled = kernel == "sdpa" && unrolled_applies(tu, dims);
    let kt = if shared {
        shared_kt(gpu, dims)
    } else if unrolled {
        tu.unrolled_kt
    } else {
        tu.kt
    };
    let variant = Variant {
        kernel,
        wg: tu.wg,
        rows,
        kt,
        shared,
        unrolled,
        d: dims.d,
        dv: if with_v { dims.dv } else { 0 },
        vec,
    };
    gpu.pipeline(kernel, &variant, || {
        let mut decls = vec![
            declare_input("q", 1, Elem::F32, vec),
            declare_input("k", 2, Elem::F32, vec),
            loader("q", "D"),
            loader("k", "D"),
        ];
        if with_v {
            decls.push(declare_input("v", 3, Elem::F32, vec));
            decls.push(loader("v", "DV"));
        }
        decls.push(PARAMS_SRC.to_string());
        decls.push(MASK_SRC.to_string());
        let generated;
        let body = if unrolled {
            generated = unrolled_flash_source(
                rows as usize,
                kt as usize,
                dims.d.div_ceil(4),
                dims.dv.div_ceil(4),
            );
            generated.as_str()
        } else {
            body
        };
        compose(
            body,
            false,
            &[
                ("WG", tu.wg),
                ("KT", kt),
                ("R", rows),
                ("SHARED", shared as u32),
                ("D", dims.d as u32),
                ("DV", dims.dv as u32),
                ("D4", dims.d.div_ceil(4) as u32),
                ("DV4", dims.dv.div_ceil(4) as u32),
                ("VEC", vec as u32),
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
    let scale = args.scale.unwrap_or(1.0 / (d as f32).sqrt());
    let mut p = base_params(dims, &q, &k, args.mask.as_ref(), args.causal, scale);
    p.v = view_params(&v);
    p.o = view_params(&out);
    p.flags = lse.is_some() as u32;
    let plan = args.plan.unwrap_or_else(|| plan(&gpu, dims));
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
    let mask_buf = match &args.mask {
        Some(m) => m.tensor.buffer(),
        None => {
            dummy = Tensor::zeros(&gpu, &[4], DType::U32)?;
            dummy.buffer()
        }
    };
    let bh = u32::try_from(b * h).unwrap_or(u32::MAX);
    let (nsplit, chunk) = match plan {
        Plan::Flash => {
            let pipe = qkv_pipeline(&gpu, "sdpa", FLASH_SRC, &tu, dims, vec, true, rpi)?;
            p.row_blocks = tq.div_ceil((tu.wg * rpi) as usize) as u32;
            let stats = match lse {
                Some(l) => l.clone(),
                None => Tensor::zeros(&gpu, &[4], DType::F32)?,
            };
            let disp = gpu.dispatch(
                "sdpa",
                &pipe,
                bytemuck::bytes_of(&p),
                &[
                    q.tensor.buffer(),
                    k.tensor.buffer(),
                    v.tensor.buffer(),
                    mask_buf,
                    out.tensor.buffer(),
                    stats.buffer(),
                ],
                [p.row_blocks, bh, 1],
            )?;
            rec.push(disp);
            return Ok(());
        }
        Plan::FlashSplit { nsplit, chunk } | Plan::Decode { nsplit, chunk } => (nsplit, chunk),
    };
    if nsplit == 0 || chunk == 0 || nsplit * chunk < tk {
        return Err(Error::invalid(
            OP,
            format!("bad plan {plan:?} for {dims:?}"),
        ));
    }
    p.nsplit = nsplit as u32;
    p.chunk = chunk as u32;
    let part = Tensor::zeros(&gpu, &[rows, nsplit, dv], DType::F32)?;
    let stats = Tensor::zeros(&gpu, &[rows, nsplit, 2], DType::F32)?;
    let disp = match plan {
        Plan::Decode { .. } => {
            let pipe = qkv_pipeline(&gpu, "sdpa_decode", DECODE_SRC, &tu, dims, vec, true, 1)?;
            p.row_blocks = nsplit.div_ceil(tu.wg as usize) as u32;
            let rows32 = u32::try_from(rows).unwrap_or(u32::MAX);
            gpu.dispatch(
                "sdpa_decode",
                &pipe,
                bytemuck::bytes_of(&p),
                &[
                    q.tensor.buffer(),
                    k.tensor.buffer(),
                    v.tensor.buffer(),
                    mask_buf,
                    part.buffer(),
                    stats.buffer(),
                ],
                [p.row_blocks, rows32, 1],
            )?
        }
        _ => {
            let pipe = qkv_pipeline(&gpu, "sdpa", FLASH_SRC, &tu, dims, vec, true, rpi)?;
            p.row_blocks = tq.div_ceil((tu.wg * rpi) as usize) as u32;
            gpu.dispatch(
                "sdpa",
                &pipe,
                bytemuck::bytes_of(&p),
                &[
                    q.tensor.buffer(),
                    k.tensor.buffer(),
                    v.tensor.buffer(),
                    mask_buf,
                    part.buffer(),
                    stats.buffer(),
                ],
                [p.row_blocks * nsplit as u32, bh, 1],
            )?
        }
    };
    rec.push(disp);
    record_merge(rec, &tu, dims, &p, &part, &stats, out.tensor, lse)
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
    let pipe = gpu.pipeline("sdpa_merge", &(wg, dims.dv), || {
        compose(
            MERGE_SRC,
            false,
            &[("WG", wg), ("DV", dims.dv as u32)],
            &[PARAMS_SRC.to_string()],
        )
    })?;
    let lse_buf = match lse {
        Some(l) => l.clone(),
        None => Tensor::zeros(&gpu, &[4], DType::F32)?,
    };
    let rows = u32::try_from(dims.b * dims.h * dims.tq).unwrap_or(u32::MAX);
    let disp = gpu.dispatch(
        "sdpa_merge",
        &pipe,
        bytemuck::bytes_of(p),
        &[
            part.buffer(),
            stats.buffer(),
            out.buffer(),
            lse_buf.buffer(),
        ],
        [dims.dv.div_ceil(wg as usize) as u32, rows, 1],
    )?;
    rec.push(disp);
    Ok(())
}
