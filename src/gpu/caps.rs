//! What the chosen adapter can do, as the rest of the engine needs to know it.

use super::tuning::AdapterClass;

/// Capabilities of the device heedful runs on: features it enabled and limits it requested.
///
/// Kernel modules read these to refuse work that exceeds a limit with a clear error; the variant
/// choices derived from them (the matmul kernel of a CPU adapter versus a discrete GPU, ...) are in
/// the tuning table ([`crate::gpu::Tuning`]), built once from these.
#[derive(Clone, Debug)]
pub struct Caps {
    /// Adapter name as the driver reports it.
    pub adapter_name: String,
    /// Backend in use (Vulkan, Metal, Dx12, Gl, BrowserWebGpu).
    pub backend: wgpu::Backend,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name and version.
    pub driver: String,
    /// The device has `SHADER_F16` enabled.
    pub shader_f16: bool,
    /// Kernels read f16 natively (`SHADER_F16` present and not disabled by [`crate::GpuOptions`]);
    /// otherwise f16 data is read as packed `u32` and unpacked with `unpack2x16float`.
    pub native_f16: bool,
    /// The device has `SUBGROUP` enabled.
    pub subgroups: bool,
    /// Smallest subgroup size the adapter may use.
    pub subgroup_min_size: u32,
    /// Largest subgroup size the adapter may use.
    pub subgroup_max_size: u32,
    /// The device has `TIMESTAMP_QUERY` enabled (timestamps at pass boundaries).
    pub timestamps: bool,
    /// Nanoseconds per timestamp tick.
    pub timestamp_period_ns: f32,
    /// The device has `PIPELINE_CACHE` enabled.
    pub pipeline_cache: bool,
    /// Largest storage buffer binding in bytes.
    pub max_storage_binding: u64,
    /// Largest buffer in bytes.
    pub max_buffer_size: u64,
    /// Workgroup (shared) memory per workgroup in bytes.
    pub max_workgroup_storage: u32,
    /// Invocations per workgroup.
    pub max_invocations: u32,
    /// Workgroups per dispatch dimension.
    pub max_workgroups_per_dim: u32,
    /// Storage buffers a compute shader may bind.
    pub max_storage_buffers: u32,
    /// Dispatches may take their workgroup counts from a GPU buffer (wgpu's
    /// `DownlevelFlags::INDIRECT_EXECUTION`; every WebGPU, Vulkan, Metal and DX12 device, GL ES 3.1):
    /// the loop runtime then skips the steps after a GPU-side stop.
    pub indirect_dispatch: bool,
    /// Cooperative matrices (tensor cores) usable by heedful's kernels: wgpu's
    /// `EXPERIMENTAL_COOPERATIVE_MATRIX` enabled with a 16x16x16 configuration of f16 A and B and
    /// f32 C at subgroup scope, native f16, and one fixed subgroup size (the coop kernels run one
    /// subgroup per workgroup: `subgroup_max_size` invocations). Native back ends only.
    pub coop_f16: bool,
}

impl Caps {
    /// Whether every subgroup has exactly `lanes` invocations (lavapipe at 256 bits: 8), which the
    /// kernels that spread loads with `subgroupBroadcast` from fixed lanes rely on.
    pub fn subgroups_of_exactly(&self, lanes: u32) -> bool {
        self.subgroups && self.subgroup_min_size == lanes && self.subgroup_max_size == lanes
    }

    /// True for software rasterizers such as Mesa's lavapipe (llvmpipe), where workgroup barriers are
    /// expensive and register-blocked kernels without shared memory win ([`AdapterClass::Cpu`]).
    /// Kernels do not ask this: they read the decisions from the tuning table
    /// ([`Gpu::tuning`](crate::Gpu::tuning)).
    pub fn is_cpu(&self) -> bool {
        AdapterClass::of(self) == AdapterClass::Cpu
    }

    /// Device features as short names, for `heedful info`.
    pub fn feature_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.shader_f16 {
            v.push("SHADER_F16");
        }
        if self.subgroups {
            v.push("SUBGROUP");
        }
        if self.timestamps {
            v.push("TIMESTAMP_QUERY");
        }
        if self.pipeline_cache {
            v.push("PIPELINE_CACHE");
        }
        if self.indirect_dispatch {
            // A downlevel flag rather than a feature, listed here so `heedful info` shows it.
            v.push("INDIRECT_EXECUTION");
        }
        if self.coop_f16 {
            v.push("COOPERATIVE_MATRIX(16x16x16 f16->f32)");
        }
        v
    }
}
