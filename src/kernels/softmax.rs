//! Softmax over the last dim (`shaders/softmax.wgsl`), plus the row-schedule choice and output
//! declaration shared by the other row-wise kernels.
//!
//! Shapes: x `[*, N]` f32 -> out `[*, N]` f32 (R = product of the leading dims, rows).
//!
//! Design: memory-bound, so each row is read twice (one online pass for max and sum, one to write) and
//! written once, in vec4 units when `N % 4 == 0`. Two schedules:
//! - [`RowSchedule::WorkgroupPerRow`]: threads stride over one row and meet in a shared-memory tree;
//!   the choice for long rows and for GPUs, where barriers are cheap.
//! - [`RowSchedule::ThreadPerRow`]: one thread walks a whole row with no barriers; the choice for
//!   short rows and for CPU adapters (lavapipe) with 8 or more rows.
//!
//! Not yet used: subgroup reductions (one barrier instead of log2(WG)); the tree runs once per row,
//! so it matters only for many short rows on GPUs.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Elem, Gpu, Recorder, Tuning};
use crate::graph::{Graph, Value};
use crate::kernels::op::{BenchBound, BenchCase, KernelOp, OpEntry, Operand, ShapeDType};
use crate::kernels::{check_dtype, grid_1d};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/softmax.wgsl");

/// How a row-wise kernel (softmax, layer norm) maps rows onto threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowSchedule {
    /// Pick from the adapter and the shape (see [`RowSchedule::choose`]).
    Auto,
    /// One thread per row, `wg` threads (rows) per workgroup; no barriers.
    ThreadPerRow {
        /// Workgroup size (a power of two).
        wg: u32,
    },
    /// One workgroup of `wg` threads per row with a shared-memory tree reduction.
    WorkgroupPerRow {
        /// Workgroup size (a power of two).
        wg: u32,
    },
}

impl RowSchedule {
    /// The schedule `Auto` resolves to for `rows` rows of `n` elements on an adapter with the tuning
    /// table `tuning` ([`RowTuning`](crate::gpu::RowTuning) holds the values, already clamped to
    /// the device's workgroup limit).
    ///
    /// - Short rows (n <= 32): one thread per row everywhere.
    /// - CPU adapters (lavapipe), where a workgroup barrier costs far more than on a GPU: one thread
    ///   per row in workgroups of 8 once there are 8 rows (measured 1.5-6x faster than a workgroup per
    ///   row for 8..4096 rows of 768..30522); below that a workgroup of 8 per row, so that the few
    ///   rows still spread over the cores.
    /// - GPUs: a workgroup per row (coalesced loads), 64 threads up to 1024 elements, 256 beyond.
    pub fn choose(tuning: &Tuning, rows: usize, n: usize) -> RowSchedule {
        let t = &tuning.rows;
        if n <= t.short_n {
            RowSchedule::ThreadPerRow { wg: t.short_wg }
        } else if rows >= t.thread_per_row_min_rows {
            RowSchedule::ThreadPerRow {
                wg: t.thread_per_row_wg,
            }
        } else if n <= t.large_n {
            RowSchedule::WorkgroupPerRow { wg: t.wg_small }
        } else {
            RowSchedule::WorkgroupPerRow { wg: t.wg_large }
        }
    }

    /// Resolves `Auto` and checks the workgroup size.
    pub(crate) fn resolve(self, op: &str, gpu: &Gpu, rows: usize, n: usize) -> Result<RowSchedule> {
        let s = match self {
            RowSchedule::Auto => RowSchedule::choose(gpu.tuning(), rows, n),
            s => s,
        };
        let wg = s.wg();
        if !wg.is_power_of_two() || wg > gpu.caps().max_invocations {
            return Err(Error::invalid(
                op,
                format!(
                    "workgroup size {wg} must be a power of two no larger than the device's {}",
                    gpu.caps().max_invocations
                ),
            ));
        }
        Ok(s)
    }

    /// Workgroup size (0 for `Auto`).
    pub fn wg(self) -> u32 {
        match self {
            RowSchedule::Auto => 0,
            RowSchedule::ThreadPerRow { wg } | RowSchedule::WorkgroupPerRow { wg } => wg,
        }
    }

    /// True for a workgroup per row.
    pub fn per_row(self) -> bool {
        matches!(self, RowSchedule::WorkgroupPerRow { .. })
    }

    /// The dispatch grid for `rows` rows.
    pub(crate) fn grid(self, gpu: &Gpu, rows: usize) -> Result<[u32; 3]> {
        if self.per_row() {
            grid_1d(gpu, rows, 1)
        } else {
            grid_1d(gpu, rows, self.wg())
        }
    }
}

/// Generates a read-write f32 storage declaration `name` at `binding` with writers
/// `fn {name}_set(i: u32, v: f32)` and `fn {name}_set4(i: u32, v: vec4<f32>)` (elements i..i+4).
/// With `vec4 = true` the array is declared in vec4 units and `_set4` needs `i % 4 == 0`.
pub(crate) fn declare_output(name: &str, binding: u32, vec4: bool) -> String {
    let head = format!("@group(0) @binding({binding}) var<storage, read_write> {name}");
    if vec4 {
        format!(
            "{head}: array<vec4<f32>>;\n\
             fn {name}_set(i: u32, v: f32) {{ {name}[i >> 2u][i & 3u] = v; }}\n\
             fn {name}_set4(i: u32, v: vec4<f32>) {{ {name}[i >> 2u] = v; }}\n"
        )
    } else {
        format!(
            "{head}: array<f32>;\n\
             fn {name}_set(i: u32, v: f32) {{ {name}[i] = v; }}\n\
             fn {name}_set4(i: u32, v: vec4<f32>) {{ {name}[i] = v.x; {name}[i + 1u] = v.y; {name}[i + 2u] = v.z; {name}[i + 3u] = v.w; }}\n"
        )
    }
}

/// Checks that every element index of `t` fits the kernels' u32 arithmetic.
pub(crate) fn check_u32_index(op: &str, name: &str, t: &Tensor) -> Result<()> {
    if t.numel() > u32::MAX as usize {
        return Err(Error::Limit {
            what: format!("{op}: {name} {:?}", t.shape()),
            needed: t.numel() as u64,
            limit_name: "u32 element index",
            limit: u32::MAX as u64,
        });
    }
    Ok(())
}

crate::wgsl_params! {
    struct Params {
        rows: u32,
        n: u32,
        _pad: [u32; 2],
    }
}

crate::wgsl_bindings! {
    /// x `[R, N]` f32, out `[R, N]` f32.
    struct SoftmaxBindings { x, out }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Variant {
    schedule: RowSchedule,
    vec4: bool,
}

/// Records `out = softmax(x)` over the last dim with the schedule chosen for the adapter.
///
/// x and out are f32 of the same shape (a scalar counts as one row of one element). `-inf` entries
/// get probability 0; a row that is entirely `-inf` is written as all zeros (PyTorch gives NaN).
pub fn record_softmax(rec: &mut Recorder, x: &Tensor, out: &Tensor) -> Result<()> {
    record_softmax_with(rec, x, out, RowSchedule::Auto)
}

/// [`record_softmax`] with an explicit schedule (tests and benchmarks compare them).
pub fn record_softmax_with(
    rec: &mut Recorder,
    x: &Tensor,
    out: &Tensor,
    schedule: RowSchedule,
) -> Result<()> {
    check_dtype("softmax", "x", x, &[DType::F32])?;
    check_dtype("softmax", "out", out, &[DType::F32])?;
    if out.shape() != x.shape() {
        return Err(Error::shape(
            "softmax",
            format!("out {:?} does not match x {:?}", out.shape(), x.shape()),
        ));
    }
    check_u32_index("softmax", "x", x)?;
    let n = x.shape().last().copied().unwrap_or(1);
    if x.numel() == 0 {
        return Ok(());
    }
    let rows = x.numel() / n;
    let gpu = rec.gpu().clone();
    let schedule = schedule.resolve("softmax", &gpu, rows, n)?;
    let variant = Variant {
        schedule,
        vec4: n % 4 == 0,
    };
    let binds = SoftmaxBindings {
        x: Bind::input(x, Elem::F32, variant.vec4),
        out: Bind::output(out, variant.vec4),
    };
    let pipeline = gpu.pipeline("softmax", &variant, || {
        compose(
            SRC,
            false,
            &[
                ("WG", schedule.wg()),
                ("VEC4", variant.vec4 as u32),
                ("PER_ROW", schedule.per_row() as u32),
            ],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let params = Params {
        rows: rows as u32,
        n: n as u32,
        _pad: [0; 2],
    };
    let d = gpu.dispatch(
        "softmax",
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        schedule.grid(&gpu, rows)?,
    )?;
    rec.push(d);
    Ok(())
}

/// The op: softmax over the last dim, `[x] -> [y]` f32 (see [`crate::ops::softmax`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax;

impl KernelOp for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }
    fn arity(&self) -> &'static [usize] {
        &[1]
    }
    fn infer(&self, ins: &[ShapeDType]) -> Result<Vec<ShapeDType>> {
        Ok(vec![(ins[0].0.clone(), DType::F32)])
    }
    fn record(&self, rec: &mut Recorder, ins: &[&Tensor], outs: &[&Tensor]) -> Result<()> {
        record_softmax(rec, ins[0], outs[0])
    }
}

/// The registration line's entry: conformance `in.x` -> `out.y`, attribute `dim` (only the last
/// dim, -1); bench cases in the `norms` suite.
pub const ENTRY: OpEntry = OpEntry {
    name: "softmax",
    suite: "norms",
    operands: &[Operand::Input("x")],
    outputs: &["y"],
    from_attrs: |attrs| match attrs.get("dim").map(|d| d.as_i64()) {
        None | Some(Some(-1)) => Ok(Box::new(Softmax)),
        Some(d) => Err(Error::invalid(
            "softmax",
            format!("only the last dim (-1) is supported, case has dim={d:?}"),
        )),
    },
    bench_cases,
};

/// Rows x N: attention scores (8 heads x 512 queries over 512 keys), a long row, a vocabulary.
/// Bytes: x read and y written once.
fn bench_cases() -> Vec<BenchCase> {
    [
        (4096usize, 128usize),
        (4096, 512),
        (1024, 4096),
        (64, 30522),
    ]
    .into_iter()
    .map(|(rows, n)| BenchCase {
        label: format!("{rows}x{n}"),
        op: std::sync::Arc::new(Softmax),
        operands: vec![(vec![rows, n], DType::F32)],
        dtype: "f32",
        work: 2.0 * (rows * n * 4) as f64,
        bound: BenchBound::Memory,
        note: "x read + y written once",
    })
    .collect()
}

impl Graph {
    /// Softmax over the last dim.
    pub fn softmax(&mut self, x: Value) -> Value {
        self.op(Softmax, &[x])
    }
}
