//! The GPU layer: instance and adapter choice ([`Gpu`]), capabilities ([`Caps`]), shader composition
//! and the pipeline cache ([`Dispatch`]), recording and submission ([`Recorder`]), and GPU timing
//! ([`Timer`]).

pub mod caps;
pub mod context;
pub mod pipeline;
pub mod recorder;
pub mod timer;

pub use caps::Caps;
pub(crate) use context::LiveBuffer;
pub use context::{list_adapters, parse_backends, Counters, Gpu, GpuOptions};
pub use pipeline::{compose, declare_input, Dispatch, Elem};
pub use recorder::{PassTimestamps, Recorder, Step};
pub use timer::Timer;
