//! Matrix products: `matmul` (`torch.matmul`), `matmul_bt` (`a @ b^T * alpha`, attention scores) and
//! `linear` (`nn.Linear`: `x W^T + b`).
//!
//! Four kernel shapes, chosen per adapter and problem ([`MatmulKernel::Auto`]) or forced:
//!
//! - [`MatmulKernel::Unrolled`] (WGSL generated in `matmul/unrolled.rs`): a register tile per
//!   invocation as straight-line code over named registers, vec4 loads along K, no workgroup
//!   memory. The large-product kernel on CPU adapters (lavapipe), where barriers are costly and
//!   loop-indexed private arrays become scratch memory.
//! - [`MatmulKernel::Blocked`] (`shaders/matmul.wgsl`): the same idea with loops over private
//!   arrays (any adapter compiles it well that keeps such arrays in registers). With one weight row
//!   per thread it is the CPU GEMV ([`MatmulKernel::GemvRows`]).
//! - [`MatmulKernel::Tiled`] (`shaders/matmul_tiled.wgsl`): 64 x 64 workgroup tiles staged in
//!   workgroup memory; the usual choice on discrete GPUs.
//! - [`MatmulKernel::GemvSplitK`] (`shaders/gemv.wgsl`): one workgroup per weight row, K split over
//!   its threads and reduced in workgroup memory; decoding-size `linear` (few rows) on GPUs.
//!
//! Shapes: `a [*, M, K]` f32; `b [*, K, N]` (matmul) or `[*, N, K]` (matmul_bt, linear's `[N, K]`
//! weight) in f32 or f16, with batch dims equal to a's or absent (shared across the batch);
//! `out [*, M, N]` f32; bias `[N]` f32 or f16.
//!
//! Every kernel stores through one generated `epilogue(v, col)` (`MatmulBindings::prologue`):
//! `alpha * v + bias[col]`, and for [`record_linear_act`] the activation of
//! `shaders/common/activation.wgsl` on top, so an FFN's first layer and its activation are one
//! dispatch. The activation is part of every kernel's pipeline key.
//!
//! ```no_run
//! use heedful::{gpu::Recorder, kernels::matmul, Gpu, Tensor, DType};
//! let gpu = Gpu::shared()?;
//! let x = Tensor::from_f32(&gpu, &[1.0, 2.0, 3.0], &[1, 3])?;
//! let w = Tensor::from_f32_as_f16(&gpu, &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0], &[2, 3])?;
//! let y = Tensor::zeros(&gpu, &[1, 2], DType::F32)?;
//! let mut rec = Recorder::new(&gpu);
//! matmul::record_linear(&mut rec, &x, &w, None, &y)?;
//! rec.submit()?;
//! assert_eq!(y.to_vec_f32(&gpu)?, vec![6.0, 3.0]);
//! # Ok::<(), heedful::Error>(())
//! ```

mod coop;
mod kernels;
mod linear_norm;
mod problem;
mod unrolled;

use crate::error::{Error, Result};
use crate::gpu::{CoopTile, Recorder, Tuning};
use crate::graph::{Graph, Value};
use crate::kernels::elementwise::Activation;
use crate::kernels::op::{KernelOp, OpEntry, Operand, ShapeDType};
use crate::kernels::{check_dtype, gemv};
use crate::tensor::{DType, Tensor};

use kernels::{blocked_tile, record_blocked, record_tiled, record_unrolled, unrolled_tile};
pub use linear_norm::{
    record_linear_add_layer_norm, record_linear_add_layer_norm_with, NormFusion, ResidualNorm,
};
pub(crate) use problem::{grid, Problem};

/// Rows of `a` up to which [`MatmulKernel::Auto`] picks a GEMV kernel for `[N, K]` weights.
pub const GEMV_MAX_M: usize = 4;

/// Which kernel computes a product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// Chosen from the adapter (CPU or GPU) and the shape.
    #[default]
    Auto,
    /// Register-blocked, no workgroup memory (CPU adapters), with the tile chosen per shape.
    Blocked,
    /// Register-blocked with a given tile: `tm` rows x `tn` columns of outputs per thread (each
    /// 1..=16, at most 128 outputs). For benchmarks and tests of other tiles.
    BlockedTile {
        /// Rows of outputs per thread.
        tm: u8,
        /// Columns of outputs per thread.
        tn: u8,
    },
    /// Unrolled register tile with named registers (CPU adapters), tile and workgroup size chosen
    /// per shape by the tuning table.
    Unrolled,
    /// Unrolled register tile with a given tile and workgroup: `tm` x `tn` outputs per invocation
    /// (`tm` 1..=32, `tn` 1..=16, at most 128 outputs), `wg` invocations per workgroup (a power of two, 0 =
    /// chosen from N). For benchmarks and tests of other tiles.
    UnrolledTile {
        /// Rows of outputs per invocation.
        tm: u8,
        /// Columns of outputs per invocation.
        tn: u8,
        /// Invocations per workgroup (0: from N, 8 to 64).
        wg: u16,
    },
    /// Workgroup-memory tiles (discrete GPUs).
    Tiled,
    /// Register-blocked with up to 4 rows of `a` and 8 weight rows per thread, f16 weights read as
    /// packed u32 on CPU adapters (CPU GEMV). `[N, K]` weights only.
    GemvRows,
    /// One weight row per workgroup, K split and reduced (GPU GEMV). `[N, K]` weights only.
    GemvSplitK,
    /// Cooperative matrices (tensor cores, `shaders/matmul_coop.wgsl`): f16 `b` on adapters with
    /// [`Caps::coop_f16`](crate::gpu::Caps::coop_f16) only (an error elsewhere); not in
    /// [`MatmulKernel::ALL`]. `Auto` picks it there for f16 `b` in place of `Tiled` only when the
    /// tuning table says so ([`MatmulTuning::coop_auto`](crate::gpu::MatmulTuning::coop_auto)).
    /// The block is the table's for the shape ([`Tuning::coop_tile_for`]).
    Coop,
    /// [`MatmulKernel::Coop`] with a given block (a [`CoopTile`] outside
    /// [`CoopTile::is_valid`]'s ranges is an error). For benchmarks and tests of other blocks.
    CoopTile(CoopTile),
}

impl MatmulKernel {
    /// Every forceable kernel (not `Auto`).
    pub const ALL: [MatmulKernel; 5] = [
        MatmulKernel::Blocked,
        MatmulKernel::Unrolled,
        MatmulKernel::Tiled,
        MatmulKernel::GemvRows,
        MatmulKernel::GemvSplitK,
    ];

    /// True for the kernels that need `b` stored `[N, K]`.
    pub fn needs_bt(self) -> bool {
        matches!(self, MatmulKernel::GemvRows | MatmulKernel::GemvSplitK)
    }
}

/// Records `out = a @ b` with `torch.matmul` semantics: `a [*, M, K]`, `b [*, K, N]` (same batch
/// dims) or `[K, N]` (shared), `out [*, M, N]`.
pub fn record_matmul(rec: &mut Recorder, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    record_matmul_with(rec, a, b, out, MatmulKernel::Auto)
}

/// [`record_matmul`] with a chosen kernel.
pub fn record_matmul_with(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    kernel: MatmulKernel,
) -> Result<()> {
    let p = batched("matmul", a, b, out, false, 1.0)?;
    record_problem(rec, &p, kernel)
}

/// Records `out = alpha * a @ b^T`: `a [*, M, K]`, `b [*, N, K]` (same batch dims) or `[N, K]`
/// (shared), `out [*, M, N]`. Attention's scores are `matmul_bt(q, k, 1/sqrt(D))`.
pub fn record_matmul_bt(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    alpha: f32,
) -> Result<()> {
    record_matmul_bt_with(rec, a, b, out, alpha, MatmulKernel::Auto)
}

/// [`record_matmul_bt`] with a chosen kernel.
pub fn record_matmul_bt_with(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    alpha: f32,
    kernel: MatmulKernel,
) -> Result<()> {
    let p = batched("matmul_bt", a, b, out, true, alpha)?;
    record_problem(rec, &p, kernel)
}

/// Records `out = x @ w^T + bias` (`nn.Linear`): `x [*, K]` f32, `w [N, K]` f32 or f16, optional
/// `bias [N]` f32 or f16, `out [*, N]` f32.
pub fn record_linear(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<()> {
    record_linear_with(rec, x, w, bias, out, MatmulKernel::Auto)
}

/// [`record_linear`] with a chosen kernel.
pub fn record_linear_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    kernel: MatmulKernel,
) -> Result<()> {
    let p = linear_problem(x, w, bias, out)?;
    record_problem(rec, &p, kernel)
}

/// Records `out = act(x @ w^T + bias)`: [`record_linear`] with the activation applied in the
/// product's store (one dispatch, no `[*, N]` round trip for a separate activation), as an FFN's
/// first layer uses it.
pub fn record_linear_act(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    out: &Tensor,
) -> Result<()> {
    record_linear_act_with(rec, x, w, bias, act, out, MatmulKernel::Auto)
}

/// [`record_linear_act`] with a chosen kernel.
pub fn record_linear_act_with(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    out: &Tensor,
    kernel: MatmulKernel,
) -> Result<()> {
    let p = Problem {
        act: Some(act),
        ..linear_problem(x, w, bias, out)?
    };
    record_problem(rec, &p, kernel)
}

/// The WGSL [`MatmulKernel::Coop`] would compile with block `tile` for this linear on a subgroup
/// of `subgroup` invocations, whether or not the device offers cooperative matrices: tests validate
/// it with naga on every machine, so the shader cannot break unnoticed where no adapter runs it.
#[allow(clippy::too_many_arguments)]
pub fn linear_coop_wgsl(
    gpu: &crate::gpu::Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Option<Activation>,
    out: &Tensor,
    tile: CoopTile,
    subgroup: u32,
) -> Result<String> {
    let p = Problem {
        act,
        ..linear_problem(x, w, bias, out)?
    };
    kernels::coop_source(&Recorder::new(gpu), &p, tile, subgroup)
}

/// [`linear_coop_wgsl`] for `out = a @ b` with `b [*, K, N]` (the kernel's other staging layout).
pub fn matmul_coop_wgsl(
    gpu: &crate::gpu::Gpu,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    tile: CoopTile,
    subgroup: u32,
) -> Result<String> {
    let p = batched("matmul", a, b, out, false, 1.0)?;
    kernels::coop_source(&Recorder::new(gpu), &p, tile, subgroup)
}

/// Validates a linear: `x [*, K]`, `w [N, K]`, `bias [N]`, `out [*, N]`.
fn linear_problem<'a>(
    x: &'a Tensor,
    w: &'a Tensor,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
) -> Result<Problem<'a>> {
    let op = "linear";
    check_dtype(op, "x", x, &[DType::F32])?;
    check_dtype(op, "out", out, &[DType::F32])?;
    let (xs, ws) = (x.shape(), w.shape());
    if xs.is_empty() || ws.len() != 2 {
        return Err(Error::shape(
            op,
            format!("x {xs:?} must be [*, K] and weight {ws:?} must be [N, K]"),
        ));
    }
    let k = xs[xs.len() - 1];
    let n = ws[0];
    if ws[1] != k {
        return Err(Error::shape(
            op,
            format!(
                "x {xs:?} and weight {ws:?}: inner dims differ ({k} vs {})",
                ws[1]
            ),
        ));
    }
    let mut want = xs.to_vec();
    *want.last_mut().unwrap_or(&mut 0) = n;
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            op,
            format!(
                "out {:?} should be {want:?} for x {xs:?} and weight {ws:?}",
                out.shape()
            ),
        ));
    }
    if let Some(b) = bias {
        if b.shape() != [n] {
            return Err(Error::shape(
                op,
                format!("bias {:?} should be [{n}] for weight {ws:?}", b.shape()),
            ));
        }
    }
    let m = xs[..xs.len() - 1].iter().product::<usize>();
    Ok(Problem {
        op,
        a: x,
        b: w,
        bias,
        out,
        batch: 1,
        m,
        n,
        k,
        bt: true,
        b_shared: true,
        alpha: 1.0,
        act: None,
    })
}

/// Validates `a [*, M, K]`, `b [*, K, N]` (or `[*, N, K]` when `bt`), `out [*, M, N]`.
fn batched<'a>(
    op: &'static str,
    a: &'a Tensor,
    b: &'a Tensor,
    out: &'a Tensor,
    bt: bool,
    alpha: f32,
) -> Result<Problem<'a>> {
    check_dtype(op, "a", a, &[DType::F32])?;
    check_dtype(op, "out", out, &[DType::F32])?;
    let (as_, bs) = (a.shape(), b.shape());
    let b_form = if bt { "[*, N, K]" } else { "[*, K, N]" };
    if as_.len() < 2 || bs.len() < 2 {
        return Err(Error::shape(
            op,
            format!("a {as_:?} must be [*, M, K] and b {bs:?} must be {b_form}"),
        ));
    }
    let (m, k) = (as_[as_.len() - 2], as_[as_.len() - 1]);
    let (bk, n) = if bt {
        (bs[bs.len() - 1], bs[bs.len() - 2])
    } else {
        (bs[bs.len() - 2], bs[bs.len() - 1])
    };
    if bk != k {
        return Err(Error::shape(
            op,
            format!("a {as_:?} and b {bs:?}: inner dims differ ({k} vs {bk})"),
        ));
    }
    let a_batch = &as_[..as_.len() - 2];
    let b_batch = &bs[..bs.len() - 2];
    let b_shared = b_batch.is_empty();
    if !b_shared && b_batch != a_batch {
        return Err(Error::shape(
            op,
            format!(
                "a {as_:?} and b {bs:?}: batch dims differ (b may have the same batch dims as a, or none)"
            ),
        ));
    }
    let mut want = a_batch.to_vec();
    want.extend([m, n]);
    if out.shape() != want.as_slice() {
        return Err(Error::shape(
            op,
            format!(
                "out {:?} should be {want:?} for a {as_:?} and b {bs:?}",
                out.shape()
            ),
        ));
    }
    Ok(Problem {
        op,
        a,
        b,
        bias: None,
        out,
        batch: a_batch.iter().product(),
        m,
        n,
        k,
        bt,
        b_shared,
        alpha,
        act: None,
    })
}

/// The kernel [`MatmulKernel::Auto`] picks on an adapter with the tuning table `tuning`
/// ([`Gpu::tuning`](crate::gpu::Gpu::tuning)) for `m` rows of `a`, with `b` stored `[N, K]`
/// (`b_transposed`: linear, matmul_bt) or `[K, N]` (matmul): the table's GEMV kernel for few
/// rows against `[N, K]`, its large kernels otherwise (see
/// [`MatmulTuning`](crate::gpu::MatmulTuning)).
pub fn auto_kernel(tuning: &Tuning, m: usize, b_transposed: bool) -> MatmulKernel {
    let t = &tuning.matmul;
    if b_transposed && m <= t.gemv_max_m.min(GEMV_MAX_M) {
        t.gemv
    } else if b_transposed {
        t.large_bt
    } else {
        t.large
    }
}

/// The kernel [`MatmulKernel::Auto`] picks on `gpu` for `batch` products `[m, k] x [k, n]` with
/// `b` stored `[N, K]` (`b_transposed`) or `[K, N]`, held as native f16 (`f16_b`): [`auto_kernel`],
/// except that where it names the tiled kernel, f16 weights take the cooperative-matrix kernel when
/// the adapter has tensor cores, the table says they pay
/// ([`MatmulTuning::coop_auto`](crate::gpu::MatmulTuning::coop_auto)) and the table's block for
/// this shape fits the device (else the tiled kernel stays).
pub fn auto_kernel_on(
    gpu: &crate::gpu::Gpu,
    batch: usize,
    [m, _, n]: [usize; 3],
    b_transposed: bool,
    f16_b: bool,
) -> MatmulKernel {
    let kernel = auto_kernel(gpu.tuning(), m, b_transposed);
    let tile = gpu.tuning().coop_tile_for(batch, m, n);
    if kernel == MatmulKernel::Tiled
        && f16_b
        && gpu.tuning().matmul.coop_auto
        && gpu.caps().coop_f16
        && kernels::coop_fits(gpu.caps(), tile)
    {
        MatmulKernel::Coop
    } else {
        kernel
    }
}

/// Sizes must fit the kernels' u32 indexing.
fn check_u32_operands(p: &Problem) -> Result<()> {
    for (name, t) in [("a", p.a), ("b", p.b), ("out", p.out)] {
        if t.numel() > u32::MAX as usize - 16 {
            return Err(Error::Limit {
                what: format!("{}: operand {name} {:?}", p.op, t.shape()),
                needed: t.numel() as u64,
                limit_name: "u32 element indexing",
                limit: u32::MAX as u64 - 16,
            });
        }
    }
    Ok(())
}

fn record_problem(rec: &mut Recorder, p: &Problem, kernel: MatmulKernel) -> Result<()> {
    check_u32_operands(p)?;
    let kernel = match kernel {
        MatmulKernel::Auto => {
            let f16_b = p.b_elem(rec)? == crate::gpu::Elem::F16;
            auto_kernel_on(rec.gpu(), p.batch, [p.m, p.k, p.n], p.bt, f16_b)
        }
        k => k,
    };
    if kernel.needs_bt() && !p.bt {
        return Err(Error::invalid(
            p.op,
            format!(
                "kernel {kernel:?} needs b stored [N, K]; {} has b [K, N]",
                p.op
            ),
        ));
    }
    if p.batch == 0 || p.m == 0 || p.n == 0 {
        return Ok(());
    }
    match kernel {
        MatmulKernel::Auto | MatmulKernel::Blocked => {
            record_blocked(rec, p, blocked_tile(rec, p), false)
        }
        MatmulKernel::BlockedTile { tm, tn } => {
            record_blocked(rec, p, (tm as u32, tn as u32), false)
        }
        MatmulKernel::GemvRows => {
            let packed = rec.gpu().tuning().matmul.gemv_rows_packed_f16;
            record_blocked(rec, p, (p.m.min(GEMV_MAX_M) as u32, 8), packed)
        }
        MatmulKernel::Unrolled => record_unrolled(rec, p, unrolled_tile(rec, p)?),
        MatmulKernel::UnrolledTile { tm, tn, wg } => {
            record_unrolled(rec, p, (tm as u32, tn as u32, wg as u32))
        }
        MatmulKernel::Tiled => record_tiled(rec, p),
        MatmulKernel::Coop => kernels::record_coop(rec, p, None),
        MatmulKernel::CoopTile(tile) => {
            if !tile.is_valid() {
                return Err(Error::invalid(
                    p.op,
                    format!(
                        "cooperative-matrix block {tile:?}: subgroup and fragment counts must be \
                         1..=8, kf 1..=4"
                    ),
                ));
            }
            kernels::record_coop(rec, p, Some(tile))
        }
        MatmulKernel::GemvSplitK => gemv::record_split_k(rec, p),
    }
}

/// `[*, M]`-shaped output of a product whose left operand is `[*, M, K]`-like: its leading dims
/// and `n` columns.
fn product_shape(op: &str, a: &[usize], b: &[usize], n: usize) -> Result<Vec<ShapeDType>> {
    if a.len() < 2 || b.len() < 2 {
        return Err(Error::shape(
            op,
            format!("a {a:?} and b {b:?} must be at least 2-D"),
        ));
    }
    let mut s = a[..a.len() - 1].to_vec();
    s.push(n);
    Ok(vec![(s, DType::F32)])
}

/// The op: `nn.Linear`, `[x [*, K], w [N, K]] -> [y [*, N]]`, or with a bias `[x, w, b [N]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear;

impl KernelOp for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn arity(&self) -> &'static [usize] {
        &[2, 3]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        let (x, w) = (&ins[0].0, &ins[1].0);
        let mut s = x[..x.len().saturating_sub(1)].to_vec();
        s.push(w.first().copied().unwrap_or(0));
        Ok(vec![(s, DType::F32)])
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_linear(rec, ins[0], ins[1], ins.get(2).copied(), outs[0])
    }
}

/// The op: `act(nn.Linear(x))` in one dispatch, operands as [`Linear`] (an FFN's first layer
/// with its activation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearAct {
    /// Applied to each output before the store.
    pub act: Activation,
}

impl KernelOp for LinearAct {
    fn name(&self) -> &'static str {
        "linear_act"
    }
    fn arity(&self) -> &'static [usize] {
        &[2, 3]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        Linear.infer(ins)
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_linear_act(rec, ins[0], ins[1], ins.get(2).copied(), self.act, outs[0])
    }
}

/// The op: `torch.matmul`, `[a [*, M, K], b [*, K, N]] -> [y [*, M, N]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matmul;

impl KernelOp for Matmul {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn arity(&self) -> &'static [usize] {
        &[2]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        let (a, b) = (&ins[0].0, &ins[1].0);
        product_shape("matmul", a, b, b.last().copied().unwrap_or(1))
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_matmul(rec, ins[0], ins[1], outs[0])
    }
}

/// The op: `a @ b^T * alpha`, `[a [*, M, K], b [*, N, K]] -> [y [*, M, N]]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatmulBt {
    /// Scale of the product.
    pub alpha: f32,
}

impl KernelOp for MatmulBt {
    fn name(&self) -> &'static str {
        "matmul_bt"
    }
    fn arity(&self) -> &'static [usize] {
        &[2]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        let (a, b) = (&ins[0].0, &ins[1].0);
        let n = if b.len() >= 2 { b[b.len() - 2] } else { 0 };
        product_shape("matmul_bt", a, b, n)
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_matmul_bt(rec, ins[0], ins[1], outs[0], self.alpha)
    }
}

/// Registration of `linear`: conformance `in.x`, `w.weight`, optional `w.bias` -> `out.y`.
pub const LINEAR_ENTRY: OpEntry = OpEntry {
    name: "linear",
    suite: "matmul",
    operands: &[
        Operand::Input("x"),
        Operand::Weight("weight"),
        Operand::OptionalWeight("bias"),
    ],
    outputs: &["y"],
    from_attrs: |_| Ok(Box::new(Linear)),
    bench_cases: Vec::new,
};

/// Registration of `matmul`: conformance `in.a`, `in.b` -> `out.y` (b is an input, held in f32).
pub const MATMUL_ENTRY: OpEntry = OpEntry {
    name: "matmul",
    suite: "matmul",
    operands: &[Operand::Input("a"), Operand::Input("b")],
    outputs: &["y"],
    from_attrs: |_| Ok(Box::new(Matmul)),
    bench_cases: Vec::new,
};

impl Graph {
    /// `nn.Linear`: `x [*, K] W^T + b`, w `[N, K]`.
    pub fn linear(&mut self, x: Value, w: Value, b: Option<Value>) -> Value {
        match b {
            Some(b) => self.op(Linear, &[x, w, b]),
            None => self.op(Linear, &[x, w]),
        }
    }

    /// `act(nn.Linear(x))` in one node and dispatch (see [`LinearAct`]).
    pub fn linear_act(&mut self, x: Value, w: Value, b: Option<Value>, act: Activation) -> Value {
        match b {
            Some(b) => self.op(LinearAct { act }, &[x, w, b]),
            None => self.op(LinearAct { act }, &[x, w]),
        }
    }

    /// `torch.matmul(a, b)`.
    pub fn matmul(&mut self, a: Value, b: Value) -> Value {
        self.op(Matmul, &[a, b])
    }

    /// `a @ b^T * alpha`.
    pub fn matmul_bt(&mut self, a: Value, b: Value, alpha: f32) -> Value {
        self.op(MatmulBt { alpha }, &[a, b])
    }
}
