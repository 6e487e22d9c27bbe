//! Fused recurrent kernels for LSTM / GRU / RNN layers (`shaders/recurrent_cell.wgsl` composed with
//! `shaders/recurrent_step.wgsl` or `shaders/recurrent_persistent.wgsl`).
//!
//! A layer runs as: one GEMM for the input projections of all timesteps and both directions
//! (`xp = x W_ih^T + b_ih`, `[B, T, D*G*H]`, [`crate::kernels::matmul::record_linear`]), then either
//! - [`record_step`] once per timestep: one dispatch computes `W_hh h_{t-1}`, the gates and the new
//!   state for every unit, batch row and direction; all steps go in one submission and the state
//!   stays on the GPU in a ping-pong buffer; or
//! - [`record_persistent`]: a single workgroup loops over all timesteps inside one dispatch
//!   (a latency win when `D*B*H` is small; see the shader for why it is one workgroup). Its
//!   [`PersistentKernel::Resident`] form (`shaders/recurrent_resident.wgsl`, chosen by the tuning
//!   table where `D*H` invocations fit one workgroup and each unit's weights fit its word budget)
//!   loads each unit's `weight_hh` once and holds it across all steps, reading `h_{t-1}` at uniform
//!   addresses; the streamed form re-reads the weights every step.
//!
//! Dimension legend: B batch, T steps, H hidden, D directions, G gates (4 LSTM, 3 GRU, 1 RNN).
//! Buffer layouts ([`StepBuffers`]): `xp [B, T, D*G*H]` f32, `lengths [B]` u32, `hs`/`cs
//! [2, D, B, H]` f32 (ping-pong halves; step t reads half `t & 1`), `out [B, T, D*H]` f32,
//! `whh_t [D, KP, G*H, 2]` f32|f16 (weight_hh in k-pairs, k-major; see [`pack_whh`]),
//! `bhh [D*G*H]` f32|f16.
//!
//! Why k-pairs: on lavapipe every 32-bit storage load costs about as much as several FMAs, whether
//! or not the lanes' addresses agree (measured: making the weight address uniform or loading vec4s
//! changed nothing; removing loads did), so a step is bound by loads. Holding f16 weights as
//! pairs makes one u32 load feed two FMAs. Each invocation computes a register block of all gates
//! of BU units for BB batch rows (the tuning table's `step_block`: 2 x 8 from B = 8 on CPU
//! adapters), so each weight load feeds BB rows and each h load G*BU outputs. Sharing h across a
//! subgroup with `subgroupBroadcast` was tried and was 2x slower on lavapipe, so it is not used.
//! Instead, on CPU adapters, the per-step kernel reads `h_{t-1}` from a uniform copy ([`stage_buffer`], one buffer copy per step): llvmpipe
//! turns a uniform load at a workgroup-uniform address into one scalar load, where a storage load
//! is a per-lane loop. On GPUs the layout keeps adjacent units' loads coalesced.
//!
//! Here: the types, weight packing, checks and dispatches; `source.rs`: the WGSL of each pipeline
//! variant (the generated register block). CPU reference: `crate::reference::recurrent`; tests:
//! `tests/recurrent.rs`.

use crate::error::{Error, Result};

use crate::gpu::{Elem, Gpu, Recorder};
use crate::kernels::check_dtype;
use crate::tensor::{DType, Tensor};

mod source;

use crate::gpu::spec::Bindings;
use source::{persistent_block, resident_words, source, RecurrentBindings, Variant};

const CELL_SRC: &str = include_str!("../../../shaders/recurrent_cell.wgsl");
const STEP_SRC: &str = include_str!("../../../shaders/recurrent_step.wgsl");
const PERSISTENT_SRC: &str = include_str!("../../../shaders/recurrent_persistent.wgsl");
const RESIDENT_SRC: &str = include_str!("../../../shaders/recurrent_resident.wgsl");

/// Which kernel [`record_persistent`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PersistentKernel {
    /// The tuning table's choice ([`Tuning::resident_fits`](crate::gpu::Tuning::resident_fits)):
    /// resident where it fits, else streamed.
    #[default]
    Auto,
    /// `shaders/recurrent_persistent.wgsl`: invocations stride over register blocks and re-read
    /// `weight_hh` from storage every step.
    Streamed,
    /// `shaders/recurrent_resident.wgsl`: invocation `dir*H + j` loads its unit's weights once and
    /// holds them across all steps; needs `D*H` invocations in one workgroup and `G*KP` (f16) or
    /// `2*G*KP` (f32) words per invocation within the table's limit.
    Resident,
}

/// Workgroup width of the per-step kernel (units per workgroup).
const STEP_WG: u32 = 64;

/// The recurrence a layer or cell computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// `nn.LSTM`: gates i, f, g, o.
    Lstm,
    /// `nn.GRU`: gates r, z, n with `b_hn` inside the reset product.
    Gru,
    /// `nn.RNN(nonlinearity="tanh")`.
    RnnTanh,
    /// `nn.RNN(nonlinearity="relu")`.
    RnnRelu,
}

impl CellKind {
    /// Gates per unit: 4 (LSTM), 3 (GRU), 1 (RNN).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
        }
    }

    /// The `CELL` constant of the shaders.
    pub(crate) fn code(self) -> u32 {
        match self {
            CellKind::Lstm => 0,
            CellKind::Gru => 1,
            CellKind::RnnTanh => 2,
            CellKind::RnnRelu => 3,
        }
    }

    /// Lower-case op name: lstm, gru, rnn_tanh, rnn_relu.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
            CellKind::RnnTanh => "rnn_tanh",
            CellKind::RnnRelu => "rnn_relu",
        }
    }
}

/// The hyper-parameters of a recurrent stack, as in the PyTorch constructor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecurrentSpec {
    /// LSTM, GRU or RNN (tanh/relu).
    pub kind: CellKind,
    /// Features of `x` (I).
    pub input_size: usize,
    /// Hidden units (H).
    pub hidden_size: usize,
    /// Stacked layers (L >= 1).
    pub num_layers: usize,
    /// Two directions (D = 2) when true.
    pub bidirectional: bool,
}

impl RecurrentSpec {
    /// D: 2 when bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
}

/// Sizes of one layer's recurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepDims {
    /// B.
    pub batch: usize,
    /// T.
    pub steps: usize,
    /// H.
    pub hidden: usize,
    /// D (1 or 2).
    pub dirs: usize,
}

/// The GPU buffers one layer's recurrence reads and writes (layouts in the module docs).
#[derive(Clone, Copy, Debug)]
pub struct StepBuffers<'a> {
    /// `[B, T, D*G*H]` f32: input projections with `b_ih`.
    pub xp: &'a Tensor,
    /// `[B]` u32: valid steps per sequence (1..=T).
    pub lengths: &'a Tensor,
    /// `[2, D, B, H]` f32: hidden state ping-pong.
    pub hs: &'a Tensor,
    /// `[2, D, B, H]` f32 for the LSTM; any f32 tensor (unused) otherwise.
    pub cs: &'a Tensor,
    /// `[B, T, D*H]` f32.
    pub out: &'a Tensor,
    /// `[D, KP, G*H, 2]` f32|f16: `weight_hh` in k-pairs, built by [`pack_whh`].
    pub whh_t: &'a Tensor,
    /// `[D*G*H]` f32|f16.
    pub bhh: &'a Tensor,
    /// Optional staging buffer from [`stage_buffer`]: when present, [`record_step`] copies
    /// `h_{t-1}` into it and the kernel reads h through a uniform binding (faster on lavapipe).
    pub h_stage: Option<&'a wgpu::Buffer>,
}

/// Bytes of a staging buffer (the uniform array `hu` of the shaders).
const STAGE_BYTES: u64 = 65536;

/// A uniform staging buffer for `h_{t-1}` when it helps and fits: where the tuning table says so
/// ([`RecurrentTuning::stage_h`](crate::gpu::RecurrentTuning::stage_h): CPU adapters), when one
/// direction-set of state `D*B*H` f32 fits `STAGE_BYTES` (64 KiB) and the adapter's uniform binding limit.
/// None otherwise (the kernel then reads h from storage).
pub fn stage_buffer(
    gpu: &crate::gpu::Gpu,
    dims: StepDims,
) -> Option<crate::gpu::Guarded<wgpu::Buffer>> {
    let bytes = (dims.dirs * dims.batch * dims.hidden * 4) as u64;
    let limit = gpu.device().limits().max_uniform_buffer_binding_size;
    if !gpu.tuning().recurrent.stage_h || bytes > STAGE_BYTES || STAGE_BYTES > limit {
        return None;
    }
    let _g = gpu.lock_device();
    Some(
        gpu.guarded(gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("recurrent h stage"),
            size: STAGE_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })),
    )
}

crate::wgsl_params! {
    struct Params {
        b: u32,
        t_len: u32,
        h: u32,
        d: u32,
        step: u32,
        nb: u32,
        kp: u32,
        nu: u32,
    }
}

/// KP: k-pairs per weight row for hidden size `hidden` (`ceil(H/2)`).
pub fn pair_rows(hidden: usize) -> usize {
    hidden.div_ceil(2)
}

/// Lays out `weight_hh` of each direction (`[G*H, H]` row-major, PyTorch layout) as the kernels'
/// `[D, KP, G*H, 2]`: `out[d][k2][r][e] = weight_hh_d[r][2*k2 + e]`, zero for `2*k2 + e >= H`.
pub fn pack_whh(per_dir: &[Vec<f32>], gates: usize, hidden: usize, kp: usize) -> Vec<f32> {
    let gh = gates * hidden;
    let mut out = vec![0.0f32; per_dir.len() * kp * gh * 2];
    for (d, w) in per_dir.iter().enumerate() {
        for r in 0..gh {
            for k in 0..hidden {
                out[((d * kp + k / 2) * gh + r) * 2 + k % 2] = w[r * hidden + k];
            }
        }
    }
    out
}

fn elem(rec: &Recorder, op: &str, operand: &str, t: &Tensor) -> Result<Elem> {
    Elem::for_dtype(rec.gpu(), t.dtype()).ok_or_else(|| Error::DType {
        op: op.into(),
        operand: operand.into(),
        got: t.dtype().to_string(),
        expected: "f32 or f16".into(),
    })
}

fn expect_numel(op: &str, name: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    let n: usize = want.iter().product();
    if t.numel() != n {
        return Err(Error::shape(
            op,
            format!(
                "{name} has shape {:?} ({} elements), expected {want:?}",
                t.shape(),
                t.numel()
            ),
        ));
    }
    Ok(())
}

/// Validates buffers against `dims` and returns the pipeline variant.
fn validate(
    rec: &Recorder,
    kind: CellKind,
    b: &StepBuffers<'_>,
    dims: StepDims,
    persistent: Option<PersistentKernel>,
) -> Result<(Variant, usize)> {
    let op = kind.name();
    let StepDims {
        batch,
        steps,
        hidden,
        dirs,
    } = dims;
    if batch == 0 || steps == 0 || hidden == 0 || !(1..=2).contains(&dirs) {
        return Err(Error::shape(
            op,
            format!("batch {batch}, steps {steps}, hidden {hidden} must be >= 1 and directions {dirs} 1 or 2"),
        ));
    }
    let gh = kind.gates() * hidden;
    check_dtype(op, "xp", b.xp, &[DType::F32])?;
    check_dtype(op, "lengths", b.lengths, &[DType::U32])?;
    check_dtype(op, "hs", b.hs, &[DType::F32])?;
    check_dtype(op, "cs", b.cs, &[DType::F32])?;
    check_dtype(op, "out", b.out, &[DType::F32])?;
    expect_numel(op, "xp", b.xp, &[batch, steps, dirs * gh])?;
    expect_numel(op, "lengths", b.lengths, &[batch])?;
    expect_numel(op, "hs", b.hs, &[2, dirs, batch, hidden])?;
    if kind == CellKind::Lstm {
        expect_numel(op, "cs", b.cs, &[2, dirs, batch, hidden])?;
    } else if b.cs.numel() == 0 {
        return Err(Error::shape(op, "cs must hold at least one element"));
    }
    expect_numel(op, "out", b.out, &[batch, steps, dirs * hidden])?;
    let kp = b.whh_t.numel() / (dirs * gh * 2);
    if kp < hidden.div_ceil(2) || b.whh_t.numel() != dirs * kp * gh * 2 {
        return Err(Error::shape(
            op,
            format!(
                "whh_t {:?} must be [D, KP, G*H, 2] = [{dirs}, >= {}, {gh}, 2] (see pack_whh)",
                b.whh_t.shape(),
                hidden.div_ceil(2)
            ),
        ));
    }
    expect_numel(op, "bhh", b.bhh, &[dirs * gh])?;
    // u32 index arithmetic in the shaders.
    let biggest = (batch * steps * dirs * gh).max(dirs * hidden * gh);
    if u32::try_from(biggest).is_err() {
        return Err(Error::shape(
            op,
            format!("{biggest} elements overflow the kernel's u32 indexing"),
        ));
    }
    let whh = elem(rec, op, "whh_t", b.whh_t)?;
    let gpu = rec.gpu();
    let max_wg = resident_max_wg(gpu);
    let lanes = dirs * hidden;
    let resident = match persistent {
        Some(PersistentKernel::Auto) => resident_auto(gpu, kind, hidden, dirs, whh),
        Some(PersistentKernel::Resident) => {
            if lanes > max_wg as usize {
                return Err(Error::invalid(
                    op,
                    format!(
                        "the resident persistent kernel needs D*H = {dirs}*{hidden} = {lanes} \
                         invocations in one workgroup; this adapter allows {max_wg}"
                    ),
                ));
            }
            true
        }
        _ => false,
    };
    let (bu, bb) = if persistent.is_some() {
        persistent_block(batch)
    } else {
        gpu.tuning().step_block(batch)
    };
    let wg = match persistent {
        _ if resident => lanes as u32,
        Some(_) => max_wg,
        None => STEP_WG,
    };
    Ok((
        Variant {
            kind,
            whh,
            bhh: elem(rec, op, "bhh", b.bhh)?,
            bb,
            bu,
            wg,
            persistent: persistent.is_some(),
            hu: persistent.is_none() && b.h_stage.is_some(),
            resident: resident.then_some((hidden as u32, dirs as u32)),
            subgroup: resident && resident_subgroup(gpu, hidden),
        },
        kp,
    ))
}

fn params(dims: StepDims, step: usize, v: &Variant, kp: usize) -> Params {
    Params {
        b: dims.batch as u32,
        t_len: dims.steps as u32,
        h: dims.hidden as u32,
        d: dims.dirs as u32,
        step: step as u32,
        nb: dims.batch.div_ceil(v.bb as usize) as u32,
        kp: kp as u32,
        nu: dims.hidden.div_ceil(v.bu as usize) as u32,
    }
}

/// Largest workgroup the resident kernel may take (its invocations are `D*H`).
fn resident_max_wg(gpu: &Gpu) -> u32 {
    gpu.caps().max_invocations.clamp(1, 256)
}

/// Whether [`PersistentKernel::Auto`] runs the resident kernel for this layer: one workgroup fits
/// `D*H` invocations and each holds few enough weight words (the tuning table's limit).
fn resident_auto(gpu: &Gpu, kind: CellKind, hidden: usize, dirs: usize, whh: Elem) -> bool {
    let words = resident_words(kind.gates(), hidden, whh);
    gpu.tuning()
        .resident_fits(dirs * hidden, words, resident_max_wg(gpu))
}

/// Whether the resident kernel shares its `h_{t-1}` loads over 8-lane subgroups here.
fn resident_subgroup(gpu: &Gpu, hidden: usize) -> bool {
    gpu.tuning().recurrent.resident_subgroup
        && gpu.caps().subgroups_of_exactly(8)
        && hidden.is_multiple_of(8)
}

/// Whether the persistent path with [`PersistentKernel::Auto`] would run the resident kernel in
/// its subgroup form for a layer with `dtype` weights: the case the tuning table's
/// [`RecurrentTuning::resident_max_items`](crate::gpu::RecurrentTuning::resident_max_items) was
/// measured for.
pub fn resident_subgroup_applies(
    gpu: &Gpu,
    kind: CellKind,
    hidden: usize,
    dirs: usize,
    dtype: crate::tensor::DType,
) -> bool {
    let whh = if dtype == crate::tensor::DType::F32 {
        Elem::F32
    } else {
        Elem::F16
    };
    resident_auto(gpu, kind, hidden, dirs, whh) && resident_subgroup(gpu, hidden)
}

/// Records timestep `step` of one layer (all directions) as one dispatch: reads state half
/// `step & 1`, writes half `(step + 1) & 1` and the outputs of that step.
pub fn record_step(
    rec: &mut Recorder,
    kind: CellKind,
    bufs: &StepBuffers<'_>,
    dims: StepDims,
    step: usize,
) -> Result<()> {
    let (v, kp) = validate(rec, kind, bufs, dims, None)?;
    if step >= dims.steps {
        return Err(Error::invalid(
            kind.name(),
            format!("step {step} is past the sequence length {}", dims.steps),
        ));
    }
    let gpu = rec.gpu().clone();
    let binds = RecurrentBindings::new(&v, bufs);
    let pipeline = gpu.pipeline("recurrent_step", &v, || source(&v, &binds))?;
    let p = params(dims, step, &v, kp);
    let grid = [p.nu.div_ceil(v.wg), p.nb, dims.dirs as u32];
    let mut buffers = binds.buffers();
    if let Some(stage) = bufs.h_stage {
        let bytes = (dims.dirs * dims.batch * dims.hidden * 4) as u64;
        if bytes > stage.size() {
            return Err(Error::shape(
                kind.name(),
                format!(
                    "h_stage holds {} bytes, the state needs {bytes} (see stage_buffer)",
                    stage.size()
                ),
            ));
        }
        rec.copy(bufs.hs.buffer(), (step % 2) as u64 * bytes, stage, 0, bytes);
        buffers.push(stage);
    }
    let d = gpu.dispatch(
        "recurrent_step",
        &pipeline,
        bytemuck::bytes_of(&p),
        &buffers,
        grid,
    )?;
    rec.push(d);
    Ok(())
}

/// Records all timesteps of one layer (all directions) as one single-workgroup dispatch of
/// `kernel`. The final state lands in half `steps & 1` of `hs`/`cs`.
pub fn record_persistent(
    rec: &mut Recorder,
    kind: CellKind,
    bufs: &StepBuffers<'_>,
    dims: StepDims,
    kernel: PersistentKernel,
) -> Result<()> {
    let (v, kp) = validate(rec, kind, bufs, dims, Some(kernel))?;
    let gpu = rec.gpu().clone();
    let binds = RecurrentBindings::new(&v, bufs);
    let pipeline = gpu.pipeline("recurrent_persistent", &v, || source(&v, &binds))?;
    let p = params(dims, 0, &v, kp);
    let d = gpu.dispatch(
        "recurrent_persistent",
        &pipeline,
        bytemuck::bytes_of(&p),
        &binds.buffers(),
        [1, 1, 1],
    )?;
    rec.push(d);
    Ok(())
}
