//! The `attention` suite: flash sdpa against the materialized path (matmul_bt, softmax, matmul)
//! in the same run, and the decoding shape (Tq = 1) with the split-key plan against one workgroup
//! per head; where the adapter has cooperative matrices, the tensor-core flash kernel beside them.
//!
//! Shapes: B = 1, H = 8, D = 64; T in {128, 512, 2048, 8192}, causal and not; Tq = 1 with
//! Tk in {1024, 16384}. Effective GFLOP/s count `4·B·H·Tq·Tk·D` (halved when causal). Each line's
//! `extra` holds the ratio to a 1024^3 matmul timed at the start of the suite (`x_matmul`) and the
//! bytes of GPU memory the op allocates beyond q, k, v and the output (`alloc_bytes`; the
//! materialized path's two score matrices, the flash path's key-split partials). The materialized
//! path runs only where a score matrix fits one storage binding.

use crate::bench::{BenchCtx, Bound};
use crate::error::Result;
use crate::gpu::Recorder;
use crate::kernels::elementwise::{self, Binary};
use crate::kernels::sdpa::{self, AttnDims, Causal, Heads, Plan, SdpaArgs};
use crate::kernels::{matmul, softmax};
use crate::tensor::{DType, Tensor};

const T: [usize; 4] = [128, 512, 2048, 8192];
const DECODE_TK: [usize; 2] = [1024, 16384];
const B: usize = 1;
const H: usize = 8;
const D: usize = 64;

fn values(n: usize, salt: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + salt) * 2654435761) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn plan_name(p: Plan) -> String {
    match p {
        Plan::Flash => "flash".into(),
        Plan::FlashSplit { nsplit, .. } => format!("flash_split{nsplit}"),
        Plan::Decode { nsplit, .. } => format!("decode_split{nsplit}"),
        Plan::DecodeWorkgroup { nsplit, .. } => format!("decode_wg_split{nsplit}"),
        Plan::FlashCoop => "flash_coop".into(),
    }
}

fn partial_bytes(p: Plan, rows: usize) -> usize {
    match p {
        Plan::Flash | Plan::FlashCoop => 0,
        Plan::FlashSplit { nsplit, .. }
        | Plan::Decode { nsplit, .. }
        | Plan::DecodeWorkgroup { nsplit, .. } => rows * nsplit * (D + 2) * 4,
    }
}

/// Runs the suite.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    let mut cases: Vec<(usize, usize, bool)> = Vec::new();
    for t in T {
        cases.push((t, t, false));
        cases.push((t, t, true));
    }
    for tk in DECODE_TK {
        cases.push((1, tk, false));
    }
    let shape_of = |tq: usize, tk: usize, causal: bool| {
        format!(
            "B{B}xH{H}xTq{tq}xTk{tk}xD{D}{}",
            if causal { "_causal" } else { "" }
        )
    };
    // Nothing to do (and no matmul reference to time) when the filter selects no case.
    if !cases.iter().any(|&(tq, tk, c)| {
        let shape = shape_of(tq, tk, c);
        ctx.wants("sdpa", &shape) || ctx.wants("sdpa_materialized", &shape)
    }) {
        return Ok(());
    }
    let gpu = ctx.gpu.clone();
    // Matmul rate of this run, for the x_matmul ratios.
    let n = 1024;
    let a = Tensor::from_f32(&gpu, &values(n * n, 0), &[n, n])?;
    let c = Tensor::zeros(&gpu, &[n, n], DType::F32)?;
    let mut rec = Recorder::new(&gpu);
    matmul::record_matmul(&mut rec, &a, &a, &c)?;
    let t = ctx.time_against(&rec, Bound::Compute)?;
    let mm_flops = 2.0 * (n * n * n) as f64;
    let mm = mm_flops / t.median_s * 1e-9;
    ctx.push_compute("matmul_ref", "1024x1024x1024", "f32", t, mm_flops, vec![]);

    for (tq, tk, causal) in cases {
        let shape = shape_of(tq, tk, causal);
        let dims = AttnDims {
            b: B,
            h: H,
            tq,
            tk,
            d: D,
            dv: D,
        };
        let flops = 4.0 * (B * H * tq * tk * D) as f64 / if causal { 2.0 } else { 1.0 };
        let wants_flash = ctx.wants("sdpa", &shape);
        let wants_mat = ctx.wants("sdpa_materialized", &shape);
        if !wants_flash && !wants_mat {
            continue;
        }
        let q = Tensor::from_f32(&gpu, &values(B * H * tq * D, 1), &[B, H, tq, D])?;
        let k = Tensor::from_f32(&gpu, &values(B * H * tk * D, 2), &[B, H, tk, D])?;
        let v = Tensor::from_f32(&gpu, &values(B * H * tk * D, 3), &[B, H, tk, D])?;
        let y = Tensor::zeros(&gpu, &[B, H, tq, D], DType::F32)?;
        let causal_mode = if causal {
            Causal::TopLeft
        } else {
            Causal::None
        };
        if wants_flash {
            let auto = sdpa::plan(&gpu, &dims);
            let mut plans = vec![auto];
            // The tensor-core flash kernel beside the table's choice, where the adapter has
            // cooperative matrices and the kernel's block fits (the emulated form elsewhere is
            // a test vehicle, not worth timing).
            let caps = gpu.caps();
            let form = sdpa::CoopForm::for_caps(caps);
            let coop_fits = sdpa::coop_attn_tile(caps, form, D, D, gpu.tuning().attn.coop_tile);
            if tq > 4 && caps.coop_f16 && coop_fits.is_some() && auto != Plan::FlashCoop {
                plans.push(Plan::FlashCoop);
            }
            if tq == 1 {
                // The baseline split-key decoding must beat: one workgroup per head; and the other
                // decode kernel (one invocation or one workgroup per chunk) side by side.
                plans.push(Plan::Flash);
                for workgroup in [false, true] {
                    if let Some(p) = sdpa::decode_plan(&gpu, &dims, workgroup) {
                        if p != auto {
                            plans.push(p);
                        }
                    }
                }
            }
            for plan in plans {
                let args = SdpaArgs {
                    mask: None,
                    causal: causal_mode,
                    scale: None,
                    plan: Some(plan),
                    rows: None,
                };
                let mut rec = Recorder::new(&gpu);
                sdpa::record_sdpa(
                    &mut rec,
                    &dims,
                    Heads::dense(&q),
                    Heads::dense(&k),
                    Heads::dense(&v),
                    Heads::dense(&y),
                    &args,
                    None,
                )?;
                let t = ctx.time_against(&rec, Bound::Compute)?;
                let g = flops / t.median_s * 1e-9;
                let op = match plan {
                    _ if plan == auto => "sdpa",
                    Plan::Flash => "sdpa:one_wg_per_head",
                    Plan::DecodeWorkgroup { .. } => "sdpa:decode_workgroup",
                    Plan::FlashCoop => "sdpa:coop",
                    _ => "sdpa:decode_invocation",
                };
                ctx.push_compute(
                    op,
                    &shape,
                    "f32",
                    t,
                    flops,
                    vec![
                        ("plan".into(), plan_name(plan)),
                        ("x_matmul".into(), format!("{:.2}", g / mm)),
                        (
                            "alloc_bytes".into(),
                            partial_bytes(plan, B * H * tq).to_string(),
                        ),
                    ],
                );
            }
        }
        let s_bytes = (B * H * tq * tk * 4) as u64;
        if wants_mat && s_bytes <= gpu.caps().max_storage_binding.min(1 << 30) {
            let s = Tensor::zeros(&gpu, &[B, H, tq, tk], DType::F32)?;
            let p = Tensor::zeros(&gpu, &[B, H, tq, tk], DType::F32)?;
            let mask = if causal {
                let m: Vec<f32> = (0..tq * tk)
                    .map(|x| {
                        if x % tk > x / tk {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                    .collect();
                Some(Tensor::from_f32(&gpu, &m, &[tq, tk])?)
            } else {
                None
            };
            let mut rec = Recorder::new(&gpu);
            matmul::record_matmul_bt(&mut rec, &q, &k, &s, 1.0 / (D as f32).sqrt())?;
            let probs = match &mask {
                Some(m) => {
                    elementwise::record_binary(&mut rec, &s, m, &p, Binary::Add)?;
                    softmax::record_softmax(&mut rec, &p, &s)?;
                    &s
                }
                None => {
                    softmax::record_softmax(&mut rec, &s, &p)?;
                    &p
                }
            };
            matmul::record_matmul(&mut rec, probs, &v, &y)?;
            let t = ctx.time_against(&rec, Bound::Compute)?;
            let g = flops / t.median_s * 1e-9;
            let mask_bytes = mask.as_ref().map_or(0, |m| m.byte_len());
            ctx.push_compute(
                "sdpa_materialized",
                &shape,
                "f32",
                t,
                flops,
                vec![
                    ("x_matmul".into(), format!("{:.2}", g / mm)),
                    ("alloc_bytes".into(), (2 * s_bytes + mask_bytes).to_string()),
                ],
            );
        }
    }
    Ok(())
}
