//! The one error type of heedful.
//!
//! Every error names what failed (the op, file or tensor) and the shapes or sizes involved, and where
//! it helps, a hint for the fix. Nothing a caller passes in makes heedful panic: bad shapes, dtypes,
//! sizes over device limits and malformed files all come back as an [`Error`].

use std::path::PathBuf;

/// Result alias used throughout heedful.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in heedful.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wgpu found no adapter at all.
    #[error(
        "no GPU adapter found (backends tried: {backends}).\n  hint: on a headless Linux box install \
         Mesa's software Vulkan driver (lavapipe), e.g. on Debian bookworm:\n    echo 'deb \
         http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list\n    \
         apt-get update && apt-get install -y -t bookworm-backports mesa-vulkan-drivers"
    )]
    NoAdapter {
        /// The backends wgpu was allowed to use.
        backends: String,
    },
    /// A backend was forced (`HEEDFUL_BACKEND` or [`crate::GpuOptions::backends`]) and wgpu found no
    /// adapter on it.
    #[error(
        "no GPU adapter found on the backends forced by HEEDFUL_BACKEND={requested:?} (tried: \
         {backends}).\n  hint: unset HEEDFUL_BACKEND to consider every backend (`heedful info` \
         lists the adapters); for Vulkan on a headless Linux box install Mesa's software Vulkan \
         driver (lavapipe), e.g. on Debian bookworm:\n    echo 'deb \
         http://deb.debian.org/debian bookworm-backports main' > \
         /etc/apt/sources.list.d/backports.list\n    apt-get update && apt-get install -y -t \
         bookworm-backports mesa-vulkan-drivers"
    )]
    NoAdapterForced {
        /// The backend list as given.
        requested: String,
        /// The backends wgpu was allowed to use.
        backends: String,
    },
    /// A `HEEDFUL_*` environment variable held a value it does not accept.
    #[error(transparent)]
    Env(crate::gpu::EnvError),
    /// `HEEDFUL_ADAPTER` named an adapter that is not there.
    #[error("no adapter name contains {wanted:?} (from HEEDFUL_ADAPTER); adapters seen: {seen}")]
    AdapterNotFound {
        /// The requested substring.
        wanted: String,
        /// Names of the adapters wgpu reported.
        seen: String,
    },
    /// `HEEDFUL_BACKEND` held something that is not a backend name.
    #[error(
        "unknown backend {0:?} (from HEEDFUL_BACKEND or GpuOptions::backends); use one of: vulkan, \
         metal, dx12, gl, webgpu (comma separated)"
    )]
    BadBackend(String),
    /// The adapter refused to create a device.
    #[error("could not create a device on adapter {adapter:?}: {message}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// Shapes of the operands do not fit the op.
    #[error("{op}: {detail}")]
    Shape {
        /// The op that rejected its operands.
        op: String,
        /// What was expected and what was given, with the shapes.
        detail: String,
    },
    /// An operand has a dtype the op does not take.
    #[error("{op}: operand {operand} has dtype {got}, expected {expected}")]
    DType {
        /// The op.
        op: String,
        /// Which operand.
        operand: String,
        /// Its dtype.
        got: String,
        /// What the op takes.
        expected: String,
    },
    /// A buffer or dispatch would exceed a device limit.
    #[error("{what}: needs {needed}, the device limit ({limit_name}) is {limit}")]
    Limit {
        /// What was being created.
        what: String,
        /// How much was needed.
        needed: u64,
        /// Which wgpu limit.
        limit_name: &'static str,
        /// The limit's value.
        limit: u64,
    },
    /// wgpu reported a validation or out-of-memory error.
    #[error("GPU error during {during}: {message}")]
    Gpu {
        /// What heedful was doing.
        during: String,
        /// wgpu's message.
        message: String,
    },
    /// The device refused an allocation: it does not fit in the memory the device has left. The
    /// `Gpu` stays usable; a smaller batch (or fewer tokens per run) may fit.
    #[error(
        "{what}: the device is out of memory for {bytes} bytes: {message}\n  hint: use a smaller \
         batch (or fewer tokens per run), or free other GPU work first"
    )]
    OutOfMemory {
        /// What was being allocated (buffer label, with the tensor or graph slot it is for).
        what: String,
        /// Bytes asked for.
        bytes: u64,
        /// wgpu's message.
        message: String,
    },
    /// The device was lost (driver reset, GPU removed, out of memory at the driver level, or
    /// destroyed): this `Gpu` fails every call from then on; a new [`crate::Gpu`] may work.
    #[error(
        "GPU device lost during {during}: {reason}\n  hint: create a new Gpu (Gpu::new) and \
         reload the models; the lost one cannot run anything again"
    )]
    DeviceLost {
        /// What heedful was doing when it noticed.
        during: String,
        /// wgpu's reason and message.
        reason: String,
    },
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is malformed or does not hold what it should.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor where one is at fault.
        detail: String,
    },
    /// A weight file is malformed, or lacks or mis-shapes a tensor the model needs.
    #[error("{path}: {}{detail}\n  hint: {hint}", .tensor.as_ref().map(|t| format!("tensor {t:?}: ")).unwrap_or_default())]
    Weights {
        /// The file.
        path: PathBuf,
        /// The tensor at fault, where one is.
        tensor: Option<String>,
        /// What kind of fault, for callers that act on it.
        kind: crate::weights::WeightsErrorKind,
        /// What is wrong, with the numbers involved.
        detail: String,
        /// How to fix it.
        hint: String,
    },
    /// A feature or op that this build or adapter does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An argument outside its allowed range.
    #[error("{op}: invalid argument: {detail}")]
    Invalid {
        /// The op.
        op: String,
        /// What is wrong.
        detail: String,
    },
}

impl Error {
    /// A shape error for `op`.
    pub fn shape(op: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Shape {
            op: op.into(),
            detail: detail.into(),
        }
    }

    /// The same error with `ctx` (what the failed allocation was for, e.g. `graph input "x"`)
    /// put before what a resource error names; other errors are returned unchanged.
    pub fn within(self, ctx: &str) -> Self {
        match self {
            Error::Limit {
                what,
                needed,
                limit_name,
                limit,
            } => Error::Limit {
                what: format!("{ctx}: {what}"),
                needed,
                limit_name,
                limit,
            },
            Error::OutOfMemory {
                what,
                bytes,
                message,
            } => Error::OutOfMemory {
                what: format!("{ctx}: {what}"),
                bytes,
                message,
            },
            Error::Gpu { during, message } => Error::Gpu {
                during: format!("{ctx}: {during}"),
                message,
            },
            other => other,
        }
    }

    /// An invalid-argument error for `op`.
    pub fn invalid(op: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid {
            op: op.into(),
            detail: detail.into(),
        }
    }

    /// The kind of a weight-file error, if this is one.
    pub fn weights_kind(&self) -> Option<crate::weights::WeightsErrorKind> {
        match self {
            Error::Weights { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// A malformed-file error.
    pub fn file(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
