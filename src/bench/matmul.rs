//! The `matmul` and `gemv` suites.
//!
//! - `matmul`: square f32 products (256 to 2048), the unrolled, register-blocked and tiled kernels
//!   side by side at 1024, and the `linear` shapes of a 384- and a 512-wide Transformer layer at 128
//!   tokens (QKV, attention out, FFN up, FFN down) with f16 weights and bias, chosen kernel beside
//!   the blocked one. Compute-bound: share of the FMA peak. `HEEDFUL_BENCH_MM_TILES` adds unrolled
//!   tiles to both (see `extra_tiles`).
//! - `gemv`: decode-size linears, 1 or 4 rows (a 4096 x 4096 weight, an opus-mt-sized decoder's
//!   layers and its 65 001-word output layer, wide weights), f16 and f32 weights, each GEMV
//!   kernel. Memory-bound: GB/s counting the weight bytes, share of the copy bandwidth.

use crate::bench::{BenchCtx, Bound};
use crate::error::Result;
use crate::gpu::{CoopTile, Gpu, Recorder};
use crate::kernels::matmul::{self as mm, MatmulKernel};
use crate::tensor::{DType, Tensor};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn kernel_name(k: MatmulKernel) -> String {
    match k {
        MatmulKernel::Auto => "auto".into(),
        MatmulKernel::Blocked => "blocked".into(),
        MatmulKernel::BlockedTile { tm, tn } => format!("blocked{tm}x{tn}"),
        MatmulKernel::Unrolled => "unrolled".into(),
        MatmulKernel::UnrolledTile { tm, tn, wg } => format!("unrolled{tm}x{tn}w{wg}"),
        MatmulKernel::Tiled => "tiled".into(),
        MatmulKernel::GemvRows => "gemv_rows".into(),
        MatmulKernel::GemvSplitK => "gemv_splitk".into(),
        MatmulKernel::Coop => "coop".into(),
        MatmulKernel::CoopTile(t) => format!("coop{t}"),
    }
}

/// The kernel `Auto` picks, by name, for the `extra` column (`f16_b`: the weights are f16, which
/// the cooperative-matrix kernel takes where the adapter offers it).
fn auto_choice(gpu: &Gpu, bt: bool, [m, k, n]: [usize; 3], f16_b: bool) -> String {
    match mm::auto_kernel_on(gpu, 1, [m, k, n], bt, f16_b) {
        MatmulKernel::Coop => format!("coop{}", gpu.tuning().coop_tile_for(1, m, n)),
        k => kernel_name(k),
    }
}

/// Times `a [M, K] @ b [K, N]` (f32) with `kernel`.
fn bench_matmul(
    ctx: &mut BenchCtx,
    m: usize,
    k: usize,
    n: usize,
    kernel: MatmulKernel,
) -> Result<()> {
    let op = format!("matmul:{}", kernel_name(kernel));
    let shape = format!("{m}x{k}x{n}");
    if !ctx.wants(&op, &shape) {
        return Ok(());
    }
    let gpu = ctx.gpu.clone();
    let a = Tensor::from_f32(&gpu, &values(m * k, 1), &[m, k])?;
    let b = Tensor::from_f32(&gpu, &values(k * n, 2), &[k, n])?;
    let out = Tensor::zeros(&gpu, &[m, n], DType::F32)?;
    let mut rec = Recorder::new(&gpu);
    mm::record_matmul_with(&mut rec, &a, &b, &out, kernel)?;
    let t = ctx.time_against(&rec, Bound::Compute)?;
    let chosen = if kernel == MatmulKernel::Auto {
        auto_choice(&gpu, false, [m, k, n], false)
    } else {
        kernel_name(kernel)
    };
    ctx.push_compute(
        &op,
        &shape,
        "f32",
        t,
        2.0 * (m * k * n) as f64,
        vec![("kernel".into(), chosen)],
    );
    Ok(())
}

/// Times `linear(x [M, K], w [N, K] wdtype, bias)` with `kernel`; compute-bound or memory-bound line.
#[allow(clippy::too_many_arguments)]
fn bench_linear(
    ctx: &mut BenchCtx,
    name: &str,
    m: usize,
    k: usize,
    n: usize,
    wdtype: DType,
    bias: bool,
    kernel: MatmulKernel,
    memory_bound: bool,
) -> Result<()> {
    let op = format!("{name}:{}", kernel_name(kernel));
    let shape = format!("{m}x{k}->{n}");
    if !ctx.wants(&op, &shape) {
        return Ok(());
    }
    let gpu = ctx.gpu.clone();
    let x = Tensor::from_f32(&gpu, &values(m * k, 3), &[m, k])?;
    let w = Tensor::from_f32_as(&gpu, &values(n * k, 4), &[n, k], wdtype)?;
    let b = Tensor::from_f32_as(&gpu, &values(n, 5), &[n], wdtype)?;
    let out = Tensor::zeros(&gpu, &[m, n], DType::F32)?;
    let mut rec = Recorder::new(&gpu);
    mm::record_linear_with(&mut rec, &x, &w, bias.then_some(&b), &out, kernel)?;
    let bound = if memory_bound {
        Bound::Memory
    } else {
        Bound::Compute
    };
    let t = ctx.time_against(&rec, bound)?;
    let chosen = match kernel {
        MatmulKernel::Auto => auto_choice(&gpu, true, [m, k, n], wdtype == DType::F16),
        // The table's block, so lines of different blocks can be told apart.
        MatmulKernel::Coop => format!("coop{}", gpu.tuning().coop_tile_for(1, m, n)),
        k => kernel_name(k),
    };
    let dtype = format!("f32 x {wdtype}");
    let mut extra = vec![("kernel".to_string(), chosen)];
    if memory_bound {
        let bytes = (n * k * wdtype.size()) as f64;
        extra.push(("bytes".into(), "weights only".into()));
        ctx.push_memory(&op, &shape, &dtype, t, bytes, extra);
    } else {
        ctx.push_compute(&op, &shape, &dtype, t, 2.0 * (m * k * n) as f64, extra);
    }
    Ok(())
}

/// The `matmul` suite.
pub fn suite_matmul(ctx: &mut BenchCtx) -> Result<()> {
    let big_reps = ctx.gpu.tuning().bench.matmul_2048_reps;
    for s in [256usize, 512, 1024, 2048] {
        // 2048^3 takes over a second per run on a CPU adapter: fewer repetitions there.
        let saved = ctx.max_reps;
        if let Some(reps) = big_reps.filter(|_| s >= 2048) {
            ctx.max_reps = reps;
        }
        bench_matmul(ctx, s, s, s, MatmulKernel::Auto)?;
        ctx.max_reps = saved;
    }
    let extra = extra_tiles();
    // Kernel shapes side by side: the unrolled and blocked register tiles, the blocked 4x4
    // baseline, workgroup tiles, and any tiles asked for in HEEDFUL_BENCH_MM_TILES.
    let mut kernels = vec![
        MatmulKernel::Unrolled,
        MatmulKernel::Blocked,
        MatmulKernel::BlockedTile { tm: 4, tn: 4 },
        MatmulKernel::Tiled,
    ];
    kernels.extend(&extra);
    for kernel in kernels {
        bench_matmul(ctx, 1024, 1024, 1024, kernel)?;
    }
    // The same product with b stored [N, K] (a linear with f32 weights): the layout the unrolled
    // kernel's subgroup form reads fastest on CPUs.
    for kernel in [MatmulKernel::Auto]
        .into_iter()
        .chain(extra.iter().copied())
    {
        bench_linear(
            ctx,
            "linear_f32",
            1024,
            1024,
            1024,
            DType::F32,
            false,
            kernel,
            false,
        )?;
    }
    // Transformer layer linears at 128 tokens, f16 weights with bias: the chosen kernel, the
    // blocked kernel (the CPU choice before the unrolled one) and the extra tiles.
    let mut kernels = vec![MatmulKernel::Auto, MatmulKernel::Blocked];
    kernels.extend(&extra);
    for d in [384usize, 512] {
        let t = 128;
        for (name, k, n) in [
            ("linear_qkv", d, 3 * d),
            ("linear_out", d, d),
            ("linear_ffn_up", d, 4 * d),
            ("linear_ffn_down", 4 * d, d),
        ] {
            for &kernel in &kernels {
                bench_linear(ctx, name, t, k, n, DType::F16, true, kernel, false)?;
            }
        }
    }
    // Where the adapter has cooperative matrices (tensor cores): the f16 linear on them against
    // the tiled kernel, at a Marian decode step's 512 -> 512 linear (128 rows: batch 32, beam 4)
    // and FFN, MiniLM's FFN at batch 32 and a size that fills a
    // large GPU, with the table's block and any asked for in HEEDFUL_BENCH_COOP_TILES.
    if ctx.gpu.caps().coop_f16 {
        let mut kernels = vec![MatmulKernel::Tiled, MatmulKernel::Coop];
        kernels.extend(extra_coop_tiles());
        for (name, m, k, n) in [
            ("linear_out", 128, 512, 512),
            ("linear_ffn_up", 128, 512, 2048),
            ("linear_ffn_up", 4096, 384, 1536),
            ("linear_big", 4096, 4096, 4096),
        ] {
            for &kernel in &kernels {
                let r = bench_linear(ctx, name, m, k, n, DType::F16, true, kernel, false);
                match (r, kernel) {
                    // An asked-for block over this device's limits is reported and skipped, so
                    // one bad entry does not cost the suite's other lines.
                    (Err(e), MatmulKernel::CoopTile(_)) => eprintln!("skipping: {e}"),
                    (r, _) => r?,
                }
            }
        }
    }
    Ok(())
}

/// Extra cooperative-matrix blocks from the bench-only variable `HEEDFUL_BENCH_COOP_TILES`:
/// comma-separated `WMxWNxFMxFN[xKF]` (see [`CoopTile::parse`]); malformed entries are reported and
/// skipped.
fn extra_coop_tiles() -> Vec<MatmulKernel> {
    let Ok(spec) = std::env::var("HEEDFUL_BENCH_COOP_TILES") else {
        return Vec::new();
    };
    spec.split(',')
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| match CoopTile::parse(e.trim()) {
            Some(t) => Some(MatmulKernel::CoopTile(t)),
            None => {
                eprintln!(
                    "HEEDFUL_BENCH_COOP_TILES: skipping {e:?} (want WMxWNxFMxFN, each 1..=8)"
                );
                None
            }
        })
        .collect()
}

/// Extra unrolled tiles for the 1024^3 matmul and the linear shapes, from the bench-only variable
/// `HEEDFUL_BENCH_MM_TILES`: comma-separated `TMxTN` or `TMxTNwWG` (e.g. `8x4,4x8w8`; `WG` a
/// power of two, 0 or absent = from N). For tuning the table on a new adapter; malformed entries
/// are reported and skipped.
fn extra_tiles() -> Vec<MatmulKernel> {
    let Ok(spec) = std::env::var("HEEDFUL_BENCH_MM_TILES") else {
        return Vec::new();
    };
    let parse = |e: &str| -> Option<MatmulKernel> {
        let (tile, wg) = e.split_once('w').unwrap_or((e, "0"));
        let (tm, tn) = tile.split_once('x')?;
        Some(MatmulKernel::UnrolledTile {
            tm: tm.trim().parse().ok()?,
            tn: tn.trim().parse().ok()?,
            wg: wg.trim().parse().ok()?,
        })
    };
    spec.split(',')
        .filter(|e| !e.trim().is_empty())
        .filter_map(|e| {
            let k = parse(e.trim());
            if k.is_none() {
                eprintln!("HEEDFUL_BENCH_MM_TILES: skipping {e:?} (want TMxTN or TMxTNwWG)");
            }
            k
        })
        .collect()
}

/// The `gemv` suite.
pub fn suite_gemv(ctx: &mut BenchCtx) -> Result<()> {
    let extra = extra_tiles();
    for wdtype in [DType::F16, DType::F32] {
        for kernel in [
            MatmulKernel::Auto,
            MatmulKernel::GemvRows,
            MatmulKernel::GemvSplitK,
            MatmulKernel::Unrolled,
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            // A large decoding linear, a beam step's FFN of a Marian-sized model, the output
            // layer of opus-mt-en-zh (vocabulary 65 001) greedy and at beam 4, a greedy step's
            // other linears there, and two wide weights either side of the CPU table's K bound
            // for more columns per lane (`MatmulTuning::wide_gemv`).
            for (m, k, n) in [
                (1, 4096, 4096),
                (4, 512, 2048),
                (1, 512, 65001),
                (4, 512, 65001),
                (1, 512, 512),
                (1, 512, 2048),
                (1, 2048, 512),
                (1, 512, 8192),
                (1, 768, 32768),
            ] {
                bench_linear(ctx, "gemv", m, k, n, wdtype, false, kernel, true)?;
            }
        }
    }
    // A post-LN block's output projection, residual add and LayerNorm at decode sizes, fused
    // into one dispatch and as the separate linear and norm: the bundled Marian's 128-wide
    // layers (attention out, FFN down), a 256-wide model's, and opus-mt's 512-wide ones, greedy
    // and at beam 4. `Auto` shows where the tuning table fuses (`MatmulTuning::linear_norm`).
    for (m, k, n) in [
        (1, 128, 128),
        (4, 128, 128),
        (1, 512, 128),
        (4, 512, 128),
        (1, 256, 256),
        (4, 256, 256),
        (1, 1024, 256),
        (1, 512, 512),
        (4, 512, 512),
        (1, 2048, 512),
    ] {
        for fusion in [
            mm::NormFusion::Auto,
            mm::NormFusion::Fused,
            mm::NormFusion::Separate,
        ] {
            bench_linear_norm(ctx, m, k, n, fusion)?;
        }
    }
    Ok(())
}

/// Times `LayerNorm(x [M, K] @ w^T + bias + residual)` with f16 weights, fused or not.
fn bench_linear_norm(
    ctx: &mut BenchCtx,
    m: usize,
    k: usize,
    n: usize,
    fusion: mm::NormFusion,
) -> Result<()> {
    let op = format!("linear_norm:{}", format!("{fusion:?}").to_lowercase());
    let shape = format!("{m}x{k}->{n}");
    if !ctx.wants(&op, &shape) {
        return Ok(());
    }
    let gpu = ctx.gpu.clone();
    let x = Tensor::from_f32(&gpu, &values(m * k, 3), &[m, k])?;
    let w = Tensor::from_f32_as(&gpu, &values(n * k, 4), &[n, k], DType::F16)?;
    let b = Tensor::from_f32_as(&gpu, &values(n, 5), &[n], DType::F16)?;
    let residual = Tensor::from_f32(&gpu, &values(m * n, 6), &[m, n])?;
    let ln_w = Tensor::from_f32_as(&gpu, &values(n, 7), &[n], DType::F16)?;
    let out = Tensor::zeros(&gpu, &[m, n], DType::F32)?;
    let scratch = Tensor::zeros(&gpu, &[m, n], DType::F32)?;
    let norm = mm::ResidualNorm {
        residual: &residual,
        weight: &ln_w,
        bias: &b,
        eps: 1e-5,
    };
    let mut rec = Recorder::new(&gpu);
    mm::record_linear_add_layer_norm_with(
        &mut rec,
        &x,
        &w,
        Some(&b),
        &norm,
        &scratch,
        &out,
        fusion,
    )?;
    let dispatches = rec.dispatch_count();
    let t = ctx.time_against(&rec, Bound::Memory)?;
    let extra = vec![
        ("dispatches".to_string(), dispatches.to_string()),
        ("bytes".into(), "weights only".into()),
    ];
    ctx.push_memory(&op, &shape, "f32 x f16", t, (n * k * 2) as f64, extra);
    Ok(())
}
