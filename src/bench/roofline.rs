//! The adapter's roofline, measured in the same run as the kernels it judges: an FMA-peak shader
//! (`shaders/roofline_fma.wgsl`: independent vec4 FMA chains, no memory traffic) and a copy-bandwidth
//! shader (`shaders/roofline_copy.wgsl`: vec4 copy of a large buffer, read + write bytes counted).
//!
//! Each is run in a few configurations and the best is the roofline, so the peak does not depend on
//! one guess of chain count or access pattern suiting the adapter.

use crate::gpu::spec::{Bind, Bindings, UniformParams};

use crate::bench::{BenchCtx, Reference};
use crate::error::Result;
use crate::gpu::pipeline::fill_template;
use crate::gpu::{compose, Gpu, Recorder};
use crate::tensor::{DType, Tensor};

const SRC_FMA: &str = include_str!("../../shaders/roofline_fma.wgsl");
const SRC_COPY: &str = include_str!("../../shaders/roofline_copy.wgsl");

/// Peak rates of the adapter.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Roofline {
    /// f32 FMA throughput, GFLOP/s (an FMA counts as 2 flops).
    pub fma_gflops: f64,
    /// Shader copy bandwidth, GB/s (bytes read + bytes written).
    pub copy_gbps: f64,
}

crate::wgsl_params! {
    struct FmaParams {
        iters: u32,
        mul: f32,
        add: f32,
        _pad: u32,
    }
}

crate::wgsl_params! {
    struct CopyParams {
        n: u32,
        stride: u32,
        _pad: [u32; 2],
    }
}

crate::wgsl_bindings! {
    /// out `[threads]` f32: each thread's sum of its chains.
    struct FmaBindings { out }
}

crate::wgsl_bindings! {
    /// src, dst `[n]` vec4<f32>.
    struct CopyBindings { src, dst }
}

/// The `roofline` suite: measures (again) and reports the FMA peak and copy bandwidth.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    ctx.roofline = measure(ctx)?;
    Ok(())
}

/// Measures both rooflines, pushing one line per configuration tried, and keeps short runs of the
/// best configurations as the references later cases are timed against.
pub fn measure(ctx: &mut BenchCtx) -> Result<Roofline> {
    let (fma, fma_ref) = measure_fma(ctx)?;
    ctx.roofline.fma_gflops = fma;
    let (copy, copy_ref) = measure_copy(ctx)?;
    ctx.roofline.copy_gbps = copy;
    ctx.refs = Some((fma_ref, copy_ref));
    Ok(Roofline {
        fma_gflops: fma,
        copy_gbps: copy,
    })
}

/// The FMA shader with `chains` vec4 chains: named registers `x0..x{chains-1}` (`named`), or one
/// loop-indexed private array, as the shader was before (kept as a reference line: the roofline
/// shares in the issues and BENCHMARKS.md before 2026-12-04 are shares of that array form).
fn fma_source(chains: u32, named: bool) -> String {
    let lines = |f: &dyn Fn(u32) -> String| (0..chains).map(f).collect::<Vec<_>>().join("\n");
    let (init, step, sum) = if named {
        (
            lines(&|c| format!("    var x{c} = vec4<f32>(f32(i), {c}.0, 1.0, 2.0);")),
            lines(&|c| format!("        x{c} = fma(x{c}, m, a);")),
            lines(&|c| format!("    s += x{c};")),
        )
    } else {
        (
            format!(
                "    var x: array<vec4<f32>, {chains}>;\n    \
                 for (var c = 0u; c < {chains}u; c++) {{ x[c] = vec4<f32>(f32(i), f32(c), 1.0, 2.0); }}"
            ),
            format!("        for (var c = 0u; c < {chains}u; c++) {{ x[c] = fma(x[c], m, a); }}"),
            format!("    for (var c = 0u; c < {chains}u; c++) {{ s += x[c]; }}"),
        )
    };
    fill_template(SRC_FMA, &[("INIT", &init), ("STEP", &step), ("SUM", &sum)])
}

/// One dispatch of the FMA shader with `chains` vec4 chains and `iters` iterations per thread.
fn fma_run(
    gpu: &Gpu,
    out: &Tensor,
    groups: u32,
    chains: u32,
    iters: u32,
    named: bool,
) -> Result<Recorder> {
    let binds = FmaBindings {
        out: Bind::read_write(out, "f32"),
    };
    let pipeline = gpu.pipeline("roofline_fma", &(chains, named), || {
        compose(
            &fma_source(chains, named),
            false,
            &[("WG", FMA_WG)],
            &[vec![FmaParams::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let params = FmaParams {
        iters,
        mul: 0.999_999,
        add: 1e-6,
        _pad: 0,
    };
    let mut rec = Recorder::new(gpu);
    rec.push(gpu.dispatch(
        "roofline_fma",
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        gpu.grid(groups),
    )?);
    Ok(rec)
}

/// One dispatch of the copy shader over `n` vec4 elements with `per` elements per thread.
pub(super) fn copy_run(
    gpu: &Gpu,
    src: &Tensor,
    dst: &Tensor,
    n: usize,
    per: u32,
) -> Result<Recorder> {
    let binds = CopyBindings {
        src: Bind::read(src, "vec4<f32>"),
        dst: Bind::read_write(dst, "vec4<f32>"),
    };
    let pipeline = gpu.pipeline("roofline_copy", &per, || {
        compose(
            SRC_COPY,
            false,
            &[("WG", COPY_WG), ("PER", per)],
            &[vec![CopyParams::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let groups = n.div_ceil((COPY_WG * per) as usize) as u32;
    let params = CopyParams {
        n: n as u32,
        stride: groups * COPY_WG,
        _pad: [0; 2],
    };
    let mut rec = Recorder::new(gpu);
    rec.push(gpu.dispatch(
        "roofline_copy",
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        gpu.grid(groups),
    )?);
    Ok(rec)
}

const FMA_WG: u32 = 64;
const COPY_WG: u32 = 64;

fn measure_fma(ctx: &mut BenchCtx) -> Result<(f64, Reference)> {
    let gpu = ctx.gpu.clone();
    // Enough threads to fill the device; iterations so that every configuration does the same
    // work per run (several milliseconds).
    let bench = gpu.tuning().bench;
    let (groups, chain_iters) = (bench.fma_groups, bench.fma_chain_iters);
    let threads = (groups * FMA_WG) as usize;
    let out = Tensor::zeros(&gpu, &[threads], DType::F32)?;
    let flops_per_iter = |chains: u32| threads as f64 * chains as f64 * 8.0;
    let mut best = (0.0f64, 4u32, chain_iters / 4);
    // More chains hide more latency and amortize the loop (named registers: see `fma_source`).
    for chains in [4u32, 8, 16, 32] {
        let iters = chain_iters / chains;
        let rec = fma_run(&gpu, &out, groups, chains, iters, true)?;
        let t = ctx.time(&rec)?;
        let flops = flops_per_iter(chains) * iters as f64;
        ctx.push_compute(
            &format!("fma_peak:{chains}x4"),
            &format!("{threads}thr x{iters}"),
            "f32",
            t,
            flops,
            vec![],
        );
        let rate = flops / t.median_s * 1e-9;
        if rate > best.0 {
            best = (rate, chains, iters);
        }
    }
    // The array form the roofline used before (not a candidate for the peak): 4 chains were its
    // best on discrete GPUs, 32 on lavapipe.
    for chains in [4u32, 32] {
        let iters = chain_iters / chains;
        let rec = fma_run(&gpu, &out, groups, chains, iters, false)?;
        let t = ctx.time(&rec)?;
        ctx.push_compute(
            &format!("fma_peak_array:{chains}x4"),
            &format!("{threads}thr x{iters}"),
            "f32",
            t,
            flops_per_iter(chains) * iters as f64,
            vec![],
        );
    }
    // The interleaved reference: the best configuration, a quarter as long.
    let short = (best.2 / 4).max(1);
    let reference = Reference {
        rec: fma_run(&gpu, &out, groups, best.1, short, true)?,
        work: flops_per_iter(best.1) * short as f64,
    };
    Ok((best.0, reference))
}

fn measure_copy(ctx: &mut BenchCtx) -> Result<(f64, Reference)> {
    let gpu = ctx.gpu.clone();
    let bytes = gpu
        .tuning()
        .bench
        .copy_bytes
        .min((gpu.caps().max_storage_binding as usize / 16) * 16);
    let n = bytes / 16;
    let src = Tensor::zeros(&gpu, &[n * 4], DType::F32)?;
    let dst = Tensor::zeros(&gpu, &[n * 4], DType::F32)?;
    let moved = 2.0 * bytes as f64;
    let mut best = (0.0f64, 1u32);
    for per in [1u32, 4, 8] {
        let rec = copy_run(&gpu, &src, &dst, n, per)?;
        let t = ctx.time(&rec)?;
        ctx.push_memory(
            &format!("copy_bw:{per}/thread"),
            &format!("{} MiB", bytes >> 20),
            "f32",
            t,
            moved,
            vec![("bytes".into(), "read + write".into())],
        );
        let rate = moved / t.median_s * 1e-9;
        if rate > best.0 {
            best = (rate, per);
        }
    }
    let reference = Reference {
        rec: copy_run(&gpu, &src, &dst, n, best.1)?,
        work: moved,
    };
    Ok((best.0, reference))
}
