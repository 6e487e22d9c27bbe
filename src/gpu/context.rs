//! Instance, adapter choice and device creation.
//!
//! ```no_run
//! let gpu = heedful::Gpu::new(&heedful::GpuOptions::from_env())?;
//! println!("running on {} ({:?})", gpu.caps().adapter_name, gpu.caps().backend);
//! # Ok::<(), heedful::Error>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::caps::Caps;
use super::dispatch_profile::DispatchProfile;
use super::env::{EnvConfig, EnvError, F16Mode, TuningOverrides};
use super::pipeline::PipelineCache;
use super::serial::{DeviceGuard, DeviceLock, Guarded};
use super::tuning::Tuning;
use crate::error::{Error, Result};

/// How to choose and configure the GPU.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Use the first adapter whose name contains this substring (case-insensitive).
    /// From `HEEDFUL_ADAPTER` in [`GpuOptions::from_env`].
    pub adapter: Option<String>,
    /// Comma-separated backends to consider (vulkan, metal, dx12, gl, webgpu).
    /// From `HEEDFUL_BACKEND` in [`GpuOptions::from_env`].
    pub backends: Option<String>,
    /// Read f16 data through packed `u32` + `unpack2x16float` even when the device has `SHADER_F16`.
    /// From `HEEDFUL_F16=packed` in [`GpuOptions::from_env`] (`native`, the default, leaves it
    /// off). Used by tests to cover both paths.
    pub packed_f16: bool,
    /// Benchmark overrides of the tuning table. From `HEEDFUL_ATTN_*` in [`GpuOptions::from_env`].
    pub overrides: TuningOverrides,
    /// A `HEEDFUL_*` variable [`GpuOptions::from_env`] could not parse: [`Gpu::new`] returns it as
    /// its error, so a mistyped setting is never silently ignored.
    pub env_error: Option<EnvError>,
    /// Refuse buffer allocations that would take a memory heap over this percent of the budget the
    /// driver reports (wgpu's `MemoryBudgetThresholds::for_resource_creation`; Vulkan and DX12
    /// adapters with a memory budget): such an allocation is then an [`Error::OutOfMemory`]
    /// instead of driver paging or a lost device. Set by the embedding application; not read from
    /// the environment.
    pub memory_budget_percent: Option<u8>,
    /// Request at most this `max_storage_buffer_binding_size` (bytes) instead of the adapter's:
    /// natively, runs under a browser's smaller limit (WebGPU's default is 128 MiB) can then be
    /// tried and tested. Set by the embedding application or a test; not read from the
    /// environment.
    pub max_storage_binding: Option<u64>,
    /// Time every recorded dispatch with GPU timestamps (one compute pass each, waiting after
    /// each submission), summed per kernel in [`Gpu::dispatch_profile`]: a diagnosis mode that
    /// changes the timing it measures. From `HEEDFUL_PROFILE=1` in [`GpuOptions::from_env`];
    /// ignored on adapters without timestamp queries.
    pub profile_dispatches: bool,
    /// Never use cooperative matrices even where the adapter offers them (the f16 linear then
    /// runs the tiled kernel). From `HEEDFUL_COOP=0` in [`GpuOptions::from_env`].
    pub no_coop: bool,
}

impl GpuOptions {
    /// Options from the environment (see [`EnvConfig`] for the variables and their accepted values),
    /// read once here. An unaccepted value is kept in [`GpuOptions::env_error`] and reported by
    /// [`Gpu::new`]; [`GpuOptions::try_from_env`] reports it at once.
    pub fn from_env() -> Self {
        Self::from_config(EnvConfig::from_process())
    }

    /// Options from the environment, or the error of the first unaccepted `HEEDFUL_*` value.
    pub fn try_from_env() -> Result<Self> {
        Ok(Self::from_config(Ok(
            EnvConfig::from_process().map_err(Error::Env)?
        )))
    }

    /// Options from a parsed configuration ([`EnvConfig::parse`]); an error is kept for [`Gpu::new`].
    pub fn from_config(config: std::result::Result<EnvConfig, EnvError>) -> Self {
        match config {
            Ok(c) => GpuOptions {
                adapter: c.adapter,
                backends: c.backends,
                packed_f16: c.f16 == F16Mode::Packed,
                overrides: c.overrides,
                env_error: None,
                memory_budget_percent: None,
                max_storage_binding: None,
                profile_dispatches: c.profile,
                no_coop: c.no_coop,
            },
            Err(e) => GpuOptions {
                env_error: Some(e),
                ..GpuOptions::default()
            },
        }
    }
}

/// Parses a comma-separated backend list such as `"vulkan,gl"`.
pub fn parse_backends(s: Option<&str>) -> Result<wgpu::Backends> {
    let Some(s) = s else {
        return Ok(wgpu::Backends::all());
    };
    let mut out = wgpu::Backends::empty();
    for part in s.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        out |= match part.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "webgpu" | "browser" => wgpu::Backends::BROWSER_WEBGPU,
            "" => continue,
            _ => return Err(Error::BadBackend(part)),
        };
    }
    if out.is_empty() {
        return Err(Error::BadBackend(s.to_string()));
    }
    Ok(out)
}

/// Whether `adapter` offers what [`Caps::coop_f16`] needs (native back ends; never when the options
/// ask for packed f16 reads or `HEEDFUL_COOP=0`).
fn coop_f16_offered(adapter: &wgpu::Adapter, options: &GpuOptions) -> bool {
    if cfg!(target_arch = "wasm32") || options.packed_f16 || options.no_coop {
        return false;
    }
    let info = adapter.get_info();
    let features = adapter.features();
    features.contains(
        wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
            | wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP,
    ) && info.subgroup_min_size == info.subgroup_max_size
        && info.subgroup_max_size > 0
        && adapter.cooperative_matrix_properties().iter().any(|c| {
            (c.m_size, c.n_size, c.k_size) == (16, 16, 16)
                && c.ab_type == wgpu::CooperativeScalarType::F16
                && c.cr_type == wgpu::CooperativeScalarType::F32
        })
}

fn make_instance(backends: wgpu::Backends, memory_budget_percent: Option<u8>) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    desc.memory_budget_thresholds.for_resource_creation = memory_budget_percent;
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu sees for the given backends (all when `None`).
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(backends: Option<&str>) -> Result<Vec<wgpu::AdapterInfo>> {
    pollster::block_on(list_adapters_async(backends))
}

/// [`list_adapters`] without blocking (the browser, where adapters come from a JavaScript promise).
pub async fn list_adapters_async(backends: Option<&str>) -> Result<Vec<wgpu::AdapterInfo>> {
    let backends = parse_backends(backends)?;
    let instance = make_instance(backends, None);
    let adapters = instance.enumerate_adapters(backends).await;
    Ok(adapters.iter().map(|a| a.get_info()).collect())
}

/// Pops an error scope. Native back ends answer at once; in the browser the answer is a promise
/// that a blocking wait would never see resolved, so there heedful pushes no scopes
/// ([`push_scope`] gives `None`) and errors reach the uncaptured-error sink
/// ([`Gpu::check_errors`]) instead.
pub(crate) fn pop_scope(scope: Option<wgpu::ErrorScopeGuard>) -> Option<wgpu::Error> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        scope.and_then(|s| pollster::block_on(s.pop()))
    }
    #[cfg(target_arch = "wasm32")]
    {
        drop(scope);
        None
    }
}

/// Pushes an error scope where it can be popped synchronously (not in the browser; see
/// [`pop_scope`]).
pub(crate) fn push_scope(
    device: &wgpu::Device,
    filter: wgpu::ErrorFilter,
) -> Option<wgpu::ErrorScopeGuard> {
    if cfg!(target_arch = "wasm32") {
        None
    } else {
        Some(device.push_error_scope(filter))
    }
}

/// Preference order: discrete > integrated > virtual > CPU > other.
fn device_type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// Counts of GPU objects created, so tests can prove a warmed-up run allocates nothing.
#[derive(Debug, Default)]
pub struct Counters {
    /// Buffers created through [`Gpu`].
    pub buffers: AtomicU64,
    /// Bind groups created through [`Gpu`].
    pub bind_groups: AtomicU64,
    /// Compute pipelines created (cache misses).
    pub pipelines: AtomicU64,
    /// Queue submissions.
    pub submits: AtomicU64,
    /// Buffers alive now that are held through a [`crate::Tensor`] (weights, activations, plan
    /// slots, runtime state; a tensor and its views and reshapes count once) or a runtime
    /// readback buffer: what a plan cache keeps alive. Shared with the buffers' drop guards.
    pub live_buffers: Arc<AtomicU64>,
}

/// Counts one live buffer in [`Counters::live_buffers`] until dropped; held (behind an `Arc`) by
/// every handle to that buffer.
#[derive(Debug)]
pub(crate) struct LiveBuffer(Arc<AtomicU64>);

impl Drop for LiveBuffer {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct GpuInner {
    pub(crate) instance: wgpu::Instance,
    pub(crate) adapter: wgpu::Adapter,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) caps: Caps,
    pub(crate) tuning: Tuning,
    pub(crate) pipelines: PipelineCache,
    pub(crate) counters: Counters,
    /// Validation/out-of-memory errors that escaped error scopes; drained by [`Gpu::check_errors`].
    pub(crate) errors: Arc<Mutex<Vec<String>>>,
    /// Why the device was lost, once wgpu's device-lost callback has run; see [`Gpu::check_lost`].
    pub(crate) lost: Arc<Mutex<Option<String>>>,
    /// On GL, the lock every call into the device takes ([`Gpu::lock_device`]); `None` on
    /// thread-safe back ends.
    pub(crate) serial: Option<Arc<DeviceLock>>,
    /// Per-kernel GPU times when [`GpuOptions::profile_dispatches`] is on and the adapter has
    /// timestamp queries.
    pub(crate) dispatch_profile: Option<DispatchProfile>,
}

/// A handle to the GPU heedful runs on: device, queue, capabilities and the pipeline cache.
///
/// Cheap to clone (an `Arc`); share one across threads.
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<GpuInner>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.inner.caps.adapter_name)
            .field("backend", &self.inner.caps.backend)
            .finish()
    }
}

impl Gpu {
    /// Picks an adapter (discrete > integrated > virtual > CPU, or the one `options.adapter` names),
    /// and creates a device with the adapter's real limits and the features that help heedful.
    ///
    /// Errors: an unaccepted `HEEDFUL_*` value ([`GpuOptions::env_error`]), an unknown backend
    /// name, no adapter (under a forced backend the error says so and names `HEEDFUL_BACKEND`), no
    /// adapter matching `options.adapter`, or an overridden tuning value over the device's limits.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(options: &GpuOptions) -> Result<Gpu> {
        pollster::block_on(Self::new_async(options))
    }

    /// [`Gpu::new`] without blocking: the one implementation, which [`Gpu::new`] waits on. In the
    /// browser (WebGPU) the adapter and device come from JavaScript promises, so only this works.
    pub async fn new_async(options: &GpuOptions) -> Result<Gpu> {
        if let Some(e) = &options.env_error {
            return Err(Error::Env(e.clone()));
        }
        let backends = parse_backends(options.backends.as_deref())?;
        let instance = make_instance(backends, options.memory_budget_percent);
        let mut adapters = instance.enumerate_adapters(backends).await;
        if adapters.is_empty() {
            return Err(match &options.backends {
                Some(requested) => Error::NoAdapterForced {
                    requested: requested.clone(),
                    backends: format!("{backends:?}"),
                },
                None => Error::NoAdapter {
                    backends: format!("{backends:?}"),
                },
            });
        }
        adapters.sort_by_key(|a| {
            let info = a.get_info();
            (
                device_type_rank(info.device_type),
                info.backend != wgpu::Backend::Vulkan,
            )
        });
        let adapter = match &options.adapter {
            Some(wanted) => {
                let w = wanted.to_lowercase();
                let pos = adapters
                    .iter()
                    .position(|a| a.get_info().name.to_lowercase().contains(&w));
                match pos {
                    Some(i) => adapters.swap_remove(i),
                    None => {
                        let seen = adapters
                            .iter()
                            .map(|a| format!("{:?}", a.get_info().name))
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Err(Error::AdapterNotFound {
                            wanted: wanted.clone(),
                            seen,
                        });
                    }
                }
            }
            None => adapters.swap_remove(0),
        };
        Self::from_adapter(instance, adapter, options).await
    }

    /// The process-wide default GPU (options from the environment), created on first use.
    ///
    /// Tests and the CLI share it so that pipelines are compiled once per process. (Not in the
    /// browser, where a device can only be awaited: use [`Gpu::new_async`] there.)
    #[cfg(not(target_arch = "wasm32"))]
    pub fn shared() -> Result<Gpu> {
        use std::sync::OnceLock;
        static SHARED: OnceLock<std::result::Result<Gpu, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Gpu::new(&GpuOptions::from_env()).map_err(|e| e.to_string()))
            .clone()
            .map_err(|message| Error::Gpu {
                during: "creating the shared GPU".into(),
                message,
            })
    }

    async fn from_adapter(
        instance: wgpu::Instance,
        adapter: wgpu::Adapter,
        options: &GpuOptions,
    ) -> Result<Gpu> {
        let info = adapter.get_info();
        let available = adapter.features();
        let wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::PIPELINE_CACHE;
        let mut features = available & wanted;
        // Tensor cores through wgpu's experimental cooperative matrices, when the adapter has the
        // one configuration the coop kernels use (see `Caps::coop_f16`).
        let coop_f16 = coop_f16_offered(&adapter, options);
        if coop_f16 {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        // The adapter's own limits, not WebGPU's defaults: large storage bindings matter for weights.
        let mut limits = adapter.limits();
        if let Some(cap) = options.max_storage_binding {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("heedful"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: if coop_f16 {
                // SAFETY: wgpu asks the caller to accept that its experimental features may have
                // bugs; heedful uses only cooperative matrices (load, multiply-add, store on
                // workgroup memory, in-bounds by construction in shaders/matmul_coop.wgsl), and
                // only when the adapter reports the configuration the kernel uses.
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) =
            adapter
                .request_device(&desc)
                .await
                .map_err(|e| Error::RequestDevice {
                    adapter: info.name.clone(),
                    message: e.to_string(),
                })?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        // A lost device (driver reset, removal, `destroy`) turns every later call into
        // Error::DeviceLost. The callback also runs when the device is dropped; nobody is left to
        // read it then.
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = lost_sink.lock() {
                l.get_or_insert(format!("{reason:?}: {message}"));
            }
        });
        let shader_f16 = features.contains(wgpu::Features::SHADER_F16);
        let caps = Caps {
            adapter_name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            shader_f16,
            native_f16: shader_f16 && !options.packed_f16,
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamp_period_ns: queue.get_timestamp_period(),
            pipeline_cache: features.contains(wgpu::Features::PIPELINE_CACHE),
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations: limits.max_compute_invocations_per_workgroup,
            max_workgroups_per_dim: limits.max_compute_workgroups_per_dimension,
            max_storage_buffers: limits.max_storage_buffers_per_shader_stage,
            indirect_dispatch: adapter
                .get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::INDIRECT_EXECUTION),
            coop_f16: coop_f16 && shader_f16 && !options.packed_f16,
        };
        let tuning = Tuning::for_caps(&caps)
            .with_overrides(&options.overrides, &caps)
            .map_err(Error::Env)?;
        // Native only: the profile blocks on its readbacks.
        let dispatch_profile =
            (options.profile_dispatches && caps.timestamps && !cfg!(target_arch = "wasm32"))
                .then(DispatchProfile::default);
        Ok(Gpu {
            inner: Arc::new(GpuInner {
                instance,
                adapter,
                device,
                queue,
                caps,
                tuning,
                pipelines: PipelineCache::default(),
                counters: Counters::default(),
                errors,
                lost,
                // wgpu's GL back end has one context behind a lock that panics after 6 s; see
                // `gpu::serial`.
                serial: (info.backend == wgpu::Backend::Gl).then(Arc::default),
                dispatch_profile,
            }),
        })
    }

    /// The per-kernel GPU times of this device's submissions, when it was created with
    /// [`GpuOptions::profile_dispatches`] (`HEEDFUL_PROFILE=1`) on an adapter with timestamp
    /// queries; `None` otherwise.
    pub fn dispatch_profile(&self) -> Option<&DispatchProfile> {
        self.inner.dispatch_profile.as_ref()
    }

    /// The device's capabilities.
    pub fn caps(&self) -> &Caps {
        &self.inner.caps
    }

    /// The tuning table of the device's adapter class (with the options' overrides): every kernel,
    /// op and bench decision that differs per adapter.
    pub fn tuning(&self) -> &Tuning {
        &self.inner.tuning
    }

    /// The wgpu device, for embedding applications that record their own work.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// The adapter the device was created on.
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.inner.adapter
    }

    /// The wgpu instance.
    pub fn instance(&self) -> &wgpu::Instance {
        &self.inner.instance
    }

    /// Serializes calls into the device where the back end needs it: on GL (one GL context, which
    /// wgpu locks with a 6-second time-out and a panic) the guard holds a reentrant lock that every
    /// heedful call into wgpu takes; elsewhere it holds nothing. An application that calls into
    /// [`Gpu::device`] or [`Gpu::queue`] itself from several threads on a GL device should hold it
    /// around those calls (and around dropping wgpu objects it created there).
    pub fn lock_device(&self) -> DeviceGuard<'_> {
        DeviceGuard::of(self.inner.serial.as_deref())
    }

    /// Wraps a wgpu object so that its drop happens under [`Gpu::lock_device`].
    pub(crate) fn guarded<T>(&self, value: T) -> Guarded<T> {
        Guarded::new(value, self.inner.serial.clone())
    }

    /// Submits one command buffer under [`Gpu::lock_device`] (does not wait).
    pub fn submit(&self, commands: wgpu::CommandBuffer) -> wgpu::SubmissionIndex {
        let _g = self.lock_device();
        self.inner.queue.submit(Some(commands))
    }

    /// A timestamp query set of `count` queries, created (and later dropped) under
    /// [`Gpu::lock_device`].
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // profiles and timers are native-only
    pub(crate) fn timestamp_queries(&self, label: &str, count: u32) -> Guarded<wgpu::QuerySet> {
        let _g = self.lock_device();
        let set = self
            .inner
            .device
            .create_query_set(&wgpu::QuerySetDescriptor {
                label: Some(label),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
        self.guarded(set)
    }

    /// `queue.write_buffer` under [`Gpu::lock_device`].
    pub(crate) fn write_buffer(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        let _g = self.lock_device();
        self.inner.queue.write_buffer(buffer, offset, bytes);
    }

    /// Counts of buffers, bind groups, pipelines and submissions created so far.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Blocks until all submitted work has finished (every thread's, up to the latest submission).
    pub fn wait(&self) -> Result<()> {
        self.poll_until(None, "waiting for the queue")
    }

    /// Blocks until the submission `index` (and what was submitted before it) has finished, not
    /// waiting for work other threads submitted after it.
    pub fn wait_for(&self, index: &wgpu::SubmissionIndex) -> Result<()> {
        self.poll_until(Some(index), "waiting for a submission")
    }

    fn poll_until(&self, index: Option<&wgpu::SubmissionIndex>, during: &str) -> Result<()> {
        self.check_lost(during)?;
        let poll = match index {
            Some(i) => wgpu::PollType::Wait {
                submission_index: Some(i.clone()),
                timeout: None,
            },
            None => wgpu::PollType::wait_indefinitely(),
        };
        let polled = {
            let _g = self.lock_device();
            self.inner.device.poll(poll)
        };
        if let Err(e) = polled {
            self.check_lost_now(during)?;
            return Err(Error::Gpu {
                during: during.into(),
                message: e.to_string(),
            });
        }
        self.check_lost(during)?;
        self.check_errors(during)
    }

    /// Maps `buffer` (`MAP_READ`) once the submitted work is done and returns its first `len`
    /// bytes, then unmaps it; errors name `during`. It waits for the map callback itself, not only
    /// for its own poll: with several threads on one device the callback may run in another
    /// thread's poll.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_mapped(&self, buffer: &wgpu::Buffer, len: u64, during: &str) -> Result<Vec<u8>> {
        self.read_mapped_after(buffer, len, None, during)
    }

    /// [`Gpu::read_mapped`] that waits only for the submission `after` (the one that wrote
    /// `buffer`), not for work other threads submitted since.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_mapped_after(
        &self,
        buffer: &wgpu::Buffer,
        len: u64,
        after: Option<&wgpu::SubmissionIndex>,
        during: &str,
    ) -> Result<Vec<u8>> {
        pollster::block_on(self.read_mapped_after_async(buffer, len, after, during))
    }

    /// [`Gpu::read_mapped_after`] without blocking on the map: the one implementation (the
    /// blocking call waits on it). Natively it still blocks in `device.poll` until the submission
    /// is done; in the browser it yields until WebGPU's map promise resolves.
    pub async fn read_mapped_after_async(
        &self,
        buffer: &wgpu::Buffer,
        len: u64,
        after: Option<&wgpu::SubmissionIndex>,
        during: &str,
    ) -> Result<Vec<u8>> {
        let err = |m: String| Error::Gpu {
            during: during.into(),
            message: m,
        };
        if len > buffer.size() {
            return Err(err(format!(
                "reading {len} bytes of a {}-byte buffer",
                buffer.size()
            )));
        }
        let slice = buffer.slice(..);
        let (tx, rx) = super::oneshot::channel();
        {
            let _g = self.lock_device();
            slice.map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        }
        match after {
            Some(i) => self.wait_for(i)?,
            None => self.wait()?,
        }
        rx.await
            .ok_or_else(|| err("the map callback was dropped".into()))?
            .map_err(|e| err(e.to_string()))?;
        let _g = self.lock_device();
        let out =
            slice.get_mapped_range().map_err(|e| err(e.to_string()))?[..len as usize].to_vec();
        buffer.unmap();
        Ok(out)
    }

    /// Returns the first GPU error reported since the last check, naming `during`.
    pub fn check_errors(&self, during: &str) -> Result<()> {
        let mut errs = self.inner.errors.lock().map_err(|_| Error::Gpu {
            during: during.into(),
            message: "error sink poisoned".into(),
        })?;
        if errs.is_empty() {
            return Ok(());
        }
        let message = errs.join("\n");
        errs.clear();
        Err(Error::Gpu {
            during: during.into(),
            message,
        })
    }

    /// Buffers alive now (see [`Counters::live_buffers`]).
    pub fn live_buffers(&self) -> u64 {
        self.inner.counters.live_buffers.load(Ordering::Relaxed)
    }

    /// A guard that counts one live buffer until dropped.
    pub(crate) fn live_guard(&self) -> Arc<LiveBuffer> {
        let live = self.inner.counters.live_buffers.clone();
        live.fetch_add(1, Ordering::Relaxed);
        Arc::new(LiveBuffer(live))
    }

    /// `Err(Error::DeviceLost)` once the device has been lost (wgpu's device-lost callback ran):
    /// nothing on this `Gpu` can work again; create a new one with [`Gpu::new`].
    pub fn check_lost(&self, during: &str) -> Result<()> {
        let lost = self.inner.lost.lock().map_err(|_| Error::Gpu {
            during: during.into(),
            message: "device-lost flag poisoned".into(),
        })?;
        match lost.as_ref() {
            None => Ok(()),
            Some(reason) => Err(Error::DeviceLost {
                during: during.into(),
                reason: reason.clone(),
            }),
        }
    }

    /// [`Gpu::check_lost`] after an error: a device that was destroyed is marked lost only by the
    /// next poll (wgpu runs the lost callback there, once its queue is empty), so poll first.
    fn check_lost_now(&self, during: &str) -> Result<()> {
        {
            let _g = self.lock_device();
            let _ = self.inner.device.poll(wgpu::PollType::Poll);
        }
        self.check_lost(during)
    }

    /// Creates a buffer after checking the size against the device limits. An allocation the
    /// device refuses (out of memory, or a validation error) is an error naming `label` and the
    /// size, caught in this thread's error scopes so it neither reaches another thread's
    /// [`Gpu::check_errors`] nor leaves an invalid buffer behind; the device stays usable.
    pub(crate) fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<Guarded<wgpu::Buffer>> {
        let caps = &self.inner.caps;
        // Zero-sized storage bindings are invalid; round up to 16 bytes so vec4 loads stay in bounds.
        let padded = size.max(16).div_ceil(16).saturating_mul(16);
        if padded > caps.max_buffer_size {
            return Err(Error::Limit {
                what: format!("buffer {label}"),
                needed: size,
                limit_name: "max_buffer_size",
                limit: caps.max_buffer_size,
            });
        }
        let during = format!("creating buffer {label} ({size} bytes)");
        self.check_lost(&during)?;
        let device = &self.inner.device;
        let _g = self.lock_device();
        // Scopes are per thread; the inner one is popped first.
        let oom = push_scope(device, wgpu::ErrorFilter::OutOfMemory);
        let invalid = push_scope(device, wgpu::ErrorFilter::Validation);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded,
            usage,
            mapped_at_creation: false,
        });
        let invalid = pop_scope(invalid);
        let oom = pop_scope(oom);
        self.inner.counters.buffers.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = oom {
            return Err(Error::OutOfMemory {
                what: format!("buffer {label}"),
                bytes: size,
                message: e.to_string(),
            });
        }
        if let Some(e) = invalid {
            self.check_lost_now(&during)?;
            return Err(Error::Gpu {
                during,
                message: e.to_string(),
            });
        }
        Ok(self.guarded(buffer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::AdapterClass;

    fn options(pairs: &[(&str, &str)]) -> GpuOptions {
        GpuOptions::from_config(EnvConfig::parse(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }))
    }

    /// The old `from_env` took `HEEDFUL_F16=pakced` as native f16 without a word.
    #[test]
    fn f16_garbage_fails_gpu_creation_naming_the_variable() {
        let o = options(&[("HEEDFUL_F16", "pakced")]);
        let msg = Gpu::new(&o).unwrap_err().to_string();
        for want in ["HEEDFUL_F16", "pakced", "native, packed"] {
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        }
        assert!(options(&[("HEEDFUL_F16", "Packed")]).packed_f16);
        assert!(!options(&[("HEEDFUL_F16", "native")]).packed_f16);
    }

    /// The old error did not say where the backend name came from.
    #[test]
    fn unknown_backend_names_the_variable_and_the_accepted_ones() {
        let from_env = Gpu::new(&options(&[("HEEDFUL_BACKEND", "vulkun")]))
            .unwrap_err()
            .to_string();
        let set = GpuOptions {
            backends: Some("vulkun".into()),
            ..GpuOptions::default()
        };
        let from_options = Gpu::new(&set).unwrap_err().to_string();
        for msg in [from_env, from_options] {
            for want in [
                "HEEDFUL_BACKEND",
                "vulkun",
                "vulkan, metal, dx12, gl, webgpu",
            ] {
                assert!(msg.contains(want), "{msg:?} lacks {want:?}");
            }
        }
    }

    /// A forced backend with no adapter: the old error only gave the lavapipe install hint.
    #[test]
    fn no_adapter_under_a_forced_backend_names_the_variable() {
        // A backend this machine has no adapter on: no OS has both Metal and DX12.
        let empty = ["metal", "dx12"]
            .into_iter()
            .find(|b| list_adapters(Some(b)).is_ok_and(|v| v.is_empty()))
            .expect("Metal or DX12 has no adapter");
        let o = options(&[("HEEDFUL_BACKEND", empty)]);
        let e = Gpu::new(&o).unwrap_err();
        assert!(matches!(e, Error::NoAdapterForced { .. }), "{e:?}");
        let msg = e.to_string();
        for want in ["no GPU adapter found", "HEEDFUL_BACKEND", empty] {
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        }
    }

    /// The table the device holds is its class's, with the options' overrides applied; an
    /// override over the device's limits fails creation.
    #[test]
    fn gpu_holds_its_class_table_and_overrides() {
        let gpu = Gpu::shared().unwrap();
        let caps = gpu.caps();
        let class = AdapterClass::of(caps);
        assert_eq!(gpu.tuning().class, class);
        // HEEDFUL_ATTN_* may be set for this process; without them the table is the class's.
        if GpuOptions::from_env().overrides == TuningOverrides::default() {
            assert_eq!(*gpu.tuning(), Tuning::for_class(class, caps));
        }
        let o = GpuOptions {
            overrides: TuningOverrides {
                attn_rows: Some(2),
                ..Default::default()
            },
            ..GpuOptions::default()
        };
        let own = Gpu::new(&o).unwrap();
        if own.caps().adapter_name == caps.adapter_name {
            assert_eq!(own.tuning().attn.rows, 2);
            assert_eq!(own.tuning().attn.unrolled_rows, 2);
        }
        let too_big = GpuOptions {
            overrides: TuningOverrides {
                attn_wg: Some(own.caps().max_invocations + 1),
                ..Default::default()
            },
            ..GpuOptions::default()
        };
        let msg = Gpu::new(&too_big).unwrap_err().to_string();
        assert!(msg.contains("HEEDFUL_ATTN_WG"), "{msg}");
    }
}
