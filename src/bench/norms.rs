//! The `norms` suite: the registered row-wise ops (softmax, layer norm over the last dim),
//! memory-bound. The cases come from each op's registration ([`crate::kernels::REGISTRY`]): shapes,
//! dtypes and the bytes counted are defined beside the kernel, so a new registered op is benchmarked
//! without code here.

use crate::bench::{BenchCtx, Bound};
use crate::error::Result;
use crate::gpu::Recorder;
use crate::kernels::op::{BenchBound, BenchCase};
use crate::kernels::REGISTRY;
use crate::tensor::{DType, Tensor};

/// Deterministic values in [-4, 4).
fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 2654435761) % 1000) as f32 / 125.0 - 4.0)
        .collect()
}

/// Runs the suite.
pub fn suite(ctx: &mut BenchCtx) -> Result<()> {
    for entry in REGISTRY.iter().filter(|e| e.suite == "norms") {
        for case in (entry.bench_cases)() {
            if ctx.wants(entry.name, &case.label) {
                run_case(ctx, entry.name, &case)?;
            }
        }
    }
    Ok(())
}

/// Times one registered case against the roofline its bound names.
fn run_case(ctx: &mut BenchCtx, name: &str, case: &BenchCase) -> Result<()> {
    let gpu = ctx.gpu.clone();
    let operands = case
        .operands
        .iter()
        .map(|(shape, dtype)| {
            let n = shape.iter().product();
            Tensor::from_f32_as(&gpu, &values(n), shape, *dtype)
        })
        .collect::<Result<Vec<_>>>()?;
    let shapes: Vec<(Vec<usize>, DType)> = operands
        .iter()
        .map(|t| (t.shape().to_vec(), t.dtype()))
        .collect();
    let outs = crate::kernels::op::infer_checked(case.op.as_ref(), &shapes)?
        .into_iter()
        .map(|(shape, dtype)| Tensor::zeros(&gpu, &shape, dtype))
        .collect::<Result<Vec<_>>>()?;
    let mut rec = Recorder::new(&gpu);
    let ins: Vec<&Tensor> = operands.iter().collect();
    let out_refs: Vec<&Tensor> = outs.iter().collect();
    case.op.record(&mut rec, &ins, &out_refs)?;
    match case.bound {
        BenchBound::Memory => {
            let t = ctx.time_against(&rec, Bound::Memory)?;
            let extra = vec![("bytes".into(), case.note.into())];
            ctx.push_memory(name, &case.label, case.dtype, t, case.work, extra);
        }
        BenchBound::Compute => {
            let t = ctx.time_against(&rec, Bound::Compute)?;
            let extra = vec![("flops".into(), case.note.into())];
            ctx.push_compute(name, &case.label, case.dtype, t, case.work, extra);
        }
    }
    Ok(())
}
