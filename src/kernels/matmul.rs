//! Matrix products: `matmul` (`torch.matmul`), `matmul_bt` (`a @ b^T * alpha`, attention scores) and
//! `linear` (`nn.Linear`: `x W^T + b`).
//!
//! Three kernel shapes, chosen per adapter and problem ([`MatmulKernel::Auto`]) or forced:
//!
//! - [`MatmulKernel::Blocked`] (`shaders/matmul.wgsl`): every thread computes a small block of outputs
//!   from its own vec4 loads, no workgroup memory. Fastest on CPU adapters (lavapipe), where barriers
//!   are costly. With one weight row per thread it is also the CPU GEMV ([`MatmulKernel::GemvRows`]).
//! - [`MatmulKernel::Tiled`] (`shaders/matmul_tiled.wgsl`): 64 x 64 workgroup tiles staged in
//!   workgroup memory; the usual choice on discrete GPUs.
//! - [`MatmulKernel::GemvSplitK`] (`shaders/gemv.wgsl`): one workgroup per weight row, K split over
//!   its threads and reduced in workgroup memory; decoding-size `linear` (few rows) on GPUs.
//!
//! Shapes: `a [*, M, K]` f32; `b [*, K, N]` (matmul) or `[*, N, K]` (matmul_bt, linear's `[N, K]`
//! weight) in f32 or f16, with batch dims equal to a's or absent (shared across the batch);
//! `out [*, M, N]` f32; bias `[N]` f32 or f16.
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

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{compose, declare_input, Elem, Recorder};
use crate::kernels::{check_dtype, gemv};
use crate::tensor::{DType, Tensor};

const SRC_BLOCKED: &str = include_str!("../../shaders/matmul.wgsl");
const SRC_TILED: &str = include_str!("../../shaders/matmul_tiled.wgsl");

/// Rows of `a` up to which [`MatmulKernel::Auto`] picks a GEMV kernel for `[N, K]` weights.
pub const GEMV_MAX_M: usize = 4;

/// Which kernel computes a product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// Chosen from the adapter (CPU or GPU) and the shape.
    #[default]
    Auto,
    /// Register-blocked, no workgroup memory (CPU adapters).
    Blocked,
    /// Workgroup-memory tiles (discrete GPUs).
    Tiled,
    /// One weight row per thread, all rows of `a` against it (CPU GEMV). `[N, K]` weights only.
    GemvRows,
    /// One weight row per workgroup, K split and reduced (GPU GEMV). `[N, K]` weights only.
    GemvSplitK,
}

impl MatmulKernel {
    /// Every forceable kernel (not `Auto`).
    pub const ALL: [MatmulKernel; 4] = [
        MatmulKernel::Blocked,
        MatmulKernel::Tiled,
        MatmulKernel::GemvRows,
        MatmulKernel::GemvSplitK,
    ];

    /// True for the kernels that need `b` stored `[N, K]`.
    pub fn needs_bt(self) -> bool {
        matches!(self, MatmulKernel::GemvRows | MatmulKernel::GemvSplitK)
    }
}

/// Mirrors `Params` in matmul.wgsl, matmul_tiled.wgsl and gemv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch: u32,
    pub a_bs: u32,
    pub b_bs: u32,
    pub o_bs: u32,
    pub tiles_n: u32,
    pub tiles_m: u32,
    pub alpha: f32,
    pub _pad: [u32; 2],
}

/// A validated product: `out[b] = alpha * a[b] @ B[b] + bias`.
pub(crate) struct Problem<'a> {
    pub op: &'static str,
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// b is `[N, K]` (transposed) rather than `[K, N]`.
    pub bt: bool,
    /// b has no batch dims (shared).
    pub b_shared: bool,
    pub alpha: f32,
}

impl Problem<'_> {
    pub(crate) fn params(&self, tiles_n: usize, tiles_m: usize) -> Params {
        Params {
            m: self.m as u32,
            n: self.n as u32,
            k: self.k as u32,
            batch: self.batch as u32,
            a_bs: (self.m * self.k) as u32,
            b_bs: if self.b_shared {
                0
            } else {
                (self.n * self.k) as u32
            },
            o_bs: (self.m * self.n) as u32,
            tiles_n: tiles_n as u32,
            tiles_m: tiles_m as u32,
            alpha: self.alpha,
            _pad: [0; 2],
        }
    }

    /// How this device reads b (f32, native f16 or packed f16).
    pub(crate) fn b_elem(&self, rec: &Recorder) -> Result<Elem> {
        elem_of(rec, self.op, "b", self.b)
    }

    /// How this device reads the bias, if any.
    pub(crate) fn bias_elem(&self, rec: &Recorder) -> Result<Option<Elem>> {
        self.bias
            .map(|t| elem_of(rec, self.op, "bias", t))
            .transpose()
    }

    /// Buffers in binding order 1.. (a, b, out, bias).
    pub(crate) fn buffers(&self) -> Vec<&wgpu::Buffer> {
        let mut v = vec![self.a.buffer(), self.b.buffer(), self.out.buffer()];
        if let Some(bias) = self.bias {
            v.push(bias.buffer());
        }
        v
    }
}

fn elem_of(rec: &Recorder, op: &str, operand: &str, t: &Tensor) -> Result<Elem> {
    check_dtype(op, operand, t, &[DType::F32, DType::F16])?;
    Elem::for_dtype(rec.gpu(), t.dtype()).ok_or_else(|| Error::DType {
        op: op.into(),
        operand: operand.into(),
        got: t.dtype().to_string(),
        expected: "f32 or f16".into(),
    })
}

/// Declaration of the optional bias (binding 4) plus `fn bias_value(n) -> f32`.
pub(crate) fn bias_decl(bias: Option<Elem>) -> String {
    match bias {
        Some(e) => {
            declare_input("bias", 4, e, false)
                + "fn bias_value(i: u32) -> f32 { return bias_at(i); }\n"
        }
        None => "fn bias_value(i: u32) -> f32 { return 0.0; }\n".to_string(),
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
    let p = Problem {
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
    };
    record_problem(rec, &p, kernel)
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
    })
}

/// The kernel `Auto` resolves to for this problem on this adapter.
pub(crate) fn choose(rec: &Recorder, p: &Problem, kernel: MatmulKernel) -> MatmulKernel {
    if kernel != MatmulKernel::Auto {
        return kernel;
    }
    let cpu = rec.gpu().caps().is_cpu();
    match (cpu, p.bt && p.m <= GEMV_MAX_M) {
        (true, true) => MatmulKernel::GemvRows,
        (true, false) => MatmulKernel::Blocked,
        (false, true) => MatmulKernel::GemvSplitK,
        (false, false) => MatmulKernel::Tiled,
    }
}

fn record_problem(rec: &mut Recorder, p: &Problem, kernel: MatmulKernel) -> Result<()> {
    // Sizes must fit the kernels' u32 indexing.
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
    let kernel = choose(rec, p, kernel);
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
        MatmulKernel::Auto | MatmulKernel::Blocked => record_blocked(rec, p, None),
        MatmulKernel::GemvRows => record_blocked(rec, p, Some(p.m.min(GEMV_MAX_M))),
        MatmulKernel::Tiled => record_tiled(rec, p),
        MatmulKernel::GemvSplitK => gemv::record_split_k(rec, p),
    }
}

/// Pipeline key of the register-blocked kernel.
#[derive(Debug, Hash)]
struct BlockedKey {
    tm: u32,
    tn: u32,
    wg: u32,
    bt: bool,
    vk: bool,
    vn: bool,
    b: Elem,
    bias: Option<Elem>,
}

/// Register-blocked kernel; `gemv_rows` = Some(rows of a per thread) selects the one-weight-row-per-
/// thread configuration.
fn record_blocked(rec: &mut Recorder, p: &Problem, gemv_rows: Option<usize>) -> Result<()> {
    let gpu = rec.gpu().clone();
    let vk = p.k.is_multiple_of(4);
    let vn = !p.bt && p.n.is_multiple_of(4);
    let (tm, tn) = match gemv_rows {
        Some(rows) => (rows as u32, 1),
        None => (4, 4),
    };
    let key = BlockedKey {
        tm,
        tn,
        wg: 64,
        bt: p.bt,
        vk,
        vn,
        b: p.b_elem(rec)?,
        bias: p.bias_elem(rec)?,
    };
    let pipeline = gpu.pipeline("matmul", &key, || {
        let f16 = key.b.needs_f16() || key.bias.is_some_and(Elem::needs_f16);
        compose(
            SRC_BLOCKED,
            f16,
            &[
                ("TM", key.tm),
                ("TN", key.tn),
                ("TN4", (key.tn / 4).max(1)),
                ("WG", key.wg),
                ("BT", key.bt as u32),
                ("VK", key.vk as u32),
                ("VN", key.vn as u32),
            ],
            &[
                declare_input("a", 1, Elem::F32, key.vk),
                declare_input("b", 2, key.b, if key.bt { key.vk } else { key.vn }),
                bias_decl(key.bias),
            ],
        )
    })?;
    let tiles_n = p.n.div_ceil((key.wg * key.tn) as usize);
    let tiles_m = p.m.div_ceil(key.tm as usize);
    let groups = tiles_n * tiles_m * p.batch;
    let params = p.params(tiles_n, tiles_m);
    let d = gpu.dispatch(
        "matmul",
        &pipeline,
        bytemuck::bytes_of(&params),
        &p.buffers(),
        grid(rec, p.op, groups)?,
    )?;
    rec.push(d);
    Ok(())
}

/// Pipeline key of the tiled kernel.
#[derive(Debug, Hash)]
struct TiledKey {
    bt: bool,
    b: Elem,
    bias: Option<Elem>,
}

fn record_tiled(rec: &mut Recorder, p: &Problem) -> Result<()> {
    let gpu = rec.gpu().clone();
    let key = TiledKey {
        bt: p.bt,
        b: p.b_elem(rec)?,
        bias: p.bias_elem(rec)?,
    };
    let pipeline = gpu.pipeline("matmul_tiled", &key, || {
        let f16 = key.b.needs_f16() || key.bias.is_some_and(Elem::needs_f16);
        compose(
            SRC_TILED,
            f16,
            &[("BT", key.bt as u32)],
            &[
                declare_input("a", 1, Elem::F32, false),
                declare_input("b", 2, key.b, false),
                bias_decl(key.bias),
            ],
        )
    })?;
    let tiles_n = p.n.div_ceil(64);
    let tiles_m = p.m.div_ceil(64);
    let params = p.params(tiles_n, tiles_m);
    let d = gpu.dispatch(
        "matmul_tiled",
        &pipeline,
        bytemuck::bytes_of(&params),
        &p.buffers(),
        grid(rec, p.op, tiles_n * tiles_m * p.batch)?,
    )?;
    rec.push(d);
    Ok(())
}

/// A grid of `groups` workgroups split to fit the per-dimension limit.
pub(crate) fn grid(rec: &Recorder, op: &str, groups: usize) -> Result<[u32; 3]> {
    let g = u32::try_from(groups).map_err(|_| Error::Limit {
        what: format!("{op}: dispatch of {groups} workgroups"),
        needed: groups as u64,
        limit_name: "u32 workgroup count",
        limit: u32::MAX as u64,
    })?;
    Ok(rec.gpu().grid(g))
}
