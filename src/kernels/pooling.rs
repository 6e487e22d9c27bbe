//! Pooling kernel (`shaders/pooling.wgsl`): masked mean over tokens and optional L2 normalization,
//! the sentence-embedding head of sentence-transformers models.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Recorder};
use crate::graph::{Graph, Value};
use crate::kernels::check_dtype;
use crate::kernels::op::{KernelOp, ShapeDType};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/pooling.wgsl");
const WG: u32 = 64;

crate::wgsl_params! {
    struct Params {
        b: u32,
        t: u32,
        e: u32,
        normalize: u32,
    }
}

crate::wgsl_bindings! {
    /// x `[B, T, E]` f32, mask `[B, T]` i32, out `[B, E]` f32.
    struct PoolBindings { x, mask, out }
}

/// Records `out[b] = mean over t with mask[b, t] != 0 of x[b, t]`, then L2-normalized when
/// `normalize`. x `[B, T, E]` f32, mask `[B, T]` i32 or u32 (non-zero = token), out `[B, E]` f32. A row with no valid token
/// gives zeros.
pub fn record_mean_pool(
    rec: &mut Recorder,
    x: &Tensor,
    mask: &Tensor,
    out: &Tensor,
    normalize: bool,
) -> Result<()> {
    check_dtype("mean_pool", "x", x, &[DType::F32])?;
    check_dtype("mean_pool", "mask", mask, &[DType::I32, DType::U32])?;
    check_dtype("mean_pool", "out", out, &[DType::F32])?;
    let [b, t, e] = *x.shape() else {
        return Err(Error::shape(
            "mean_pool",
            format!("x must be [B, T, E], got {:?}", x.shape()),
        ));
    };
    if mask.shape() != [b, t] || out.shape() != [b, e] {
        return Err(Error::shape(
            "mean_pool",
            format!(
                "x {:?} needs mask [{b}, {t}] and out [{b}, {e}]; got mask {:?}, out {:?}",
                x.shape(),
                mask.shape(),
                out.shape()
            ),
        ));
    }
    if b == 0 || e == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let binds = PoolBindings {
        x: Bind::read(x, "f32"),
        mask: Bind::read(mask, "i32"),
        out: Bind::read_write(out, "f32"),
    };
    let pipeline = gpu.pipeline("mean_pool", &(), || {
        compose(
            SRC,
            false,
            &[("WG", WG)],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let params = Params {
        b: b as u32,
        t: t as u32,
        e: e as u32,
        normalize: normalize as u32,
    };
    rec.push(gpu.dispatch(
        "mean_pool",
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        [b as u32, 1, 1],
    )?);
    Ok(())
}

/// The op: masked mean over tokens, L2-normalized when `normalize`:
/// `[x [B, T, E], mask [B, T] i32] -> [y [B, E]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeanPool {
    /// L2-normalize each pooled row.
    pub normalize: bool,
}

impl KernelOp for MeanPool {
    fn name(&self) -> &'static str {
        "mean_pool"
    }
    fn arity(&self) -> &'static [usize] {
        &[2]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        match ins[0].0.as_slice() {
            &[b, _, e] => Ok(vec![(vec![b, e], DType::F32)]),
            x => Err(Error::shape(
                "mean_pool",
                format!("x must be [B, T, E], got {x:?}"),
            )),
        }
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_mean_pool(rec, ins[0], ins[1], outs[0], self.normalize)
    }
}

impl Graph {
    /// Masked mean over tokens (mask `[B, T]` i32), L2-normalized when `normalize`.
    pub fn mean_pool(&mut self, x: Value, mask: Value, normalize: bool) -> Value {
        self.op(MeanPool { normalize }, &[x, mask])
    }
}
