//! The GPU layer: instance and adapter choice ([`Gpu`]), capabilities ([`Caps`]), shader composition
//! and the pipeline cache ([`Dispatch`]), recording and submission ([`Recorder`]), GPU timing
//! ([`Timer`]), the per-adapter tuning table ([`Tuning`]) and the `HEEDFUL_*` settings
//! ([`EnvConfig`]), each read once when the [`Gpu`] or its options are built.

pub mod caps;
pub mod context;
pub mod dispatch_profile;
pub mod env;
pub(crate) mod oneshot;
pub mod pipeline;
pub mod recorder;
pub mod serial;
pub mod spec;
#[cfg(not(target_arch = "wasm32"))]
pub mod timer;
pub mod tuning;

pub use caps::Caps;
#[cfg(not(target_arch = "wasm32"))]
pub use context::list_adapters;
pub(crate) use context::LiveBuffer;
pub use context::{list_adapters_async, parse_backends, Counters, Gpu, GpuOptions};
pub use dispatch_profile::{DispatchProfile, KernelTime};
pub use env::{EnvConfig, EnvError, F16Mode, TuningOverrides};
pub use pipeline::{compose, declare_input, Dispatch, Elem, VariantKey};
pub use recorder::{PassTimestamps, Recorder, Step};
pub use serial::{DeviceGuard, DeviceLock, Guarded};
#[cfg(not(target_arch = "wasm32"))]
pub use timer::Timer;
pub use tuning::{
    AdapterClass, AttnTuning, BenchTuning, CoopAttnTile, CoopTile, LinearNorm, MatmulTuning,
    RecurrentTuning, RowTuning, Tuning, WideGemv,
};
