//! Eager ops: functions on [`Tensor`]s that allocate their output, record one kernel and submit.
//!
//! This is the API tests, the conformance runner and quick experiments use. Each op validates its
//! operands and returns an [`crate::Error`] naming the op and the shapes on a mismatch.
//!
//! ```no_run
//! use heedful::{ops, Gpu, Tensor};
//! let gpu = Gpu::shared()?;
//! let x = Tensor::from_f32(&gpu, &[-1.0, 0.5, 2.0], &[3])?;
//! let y = ops::activation(&gpu, &x, ops::Activation::Relu)?;
//! assert_eq!(y.to_vec_f32(&gpu)?, vec![0.0, 0.5, 2.0]);
//! # Ok::<(), heedful::Error>(())
//! ```

mod layout;
mod matmul;
mod norms;

pub use self::layout::*;
pub use self::matmul::*;
pub use self::norms::*;
mod attention;
pub use self::attention::*;
mod mha;
pub use self::mha::*;

use crate::error::Result;
use crate::gpu::{Gpu, Recorder};
use crate::kernels::op::eager1;
use crate::tensor::Tensor;

pub use crate::kernels::elementwise::{Activation, Binary};
pub use crate::kernels::layer_norm::layer_norm;

mod recurrent;
pub use self::recurrent::*;

/// Runs `f` on a fresh recorder and submits what it recorded.
pub(crate) fn run(gpu: &Gpu, f: impl FnOnce(&mut Recorder) -> Result<()>) -> Result<()> {
    let mut rec = Recorder::new(gpu);
    f(&mut rec)?;
    rec.submit()?;
    Ok(())
}

/// `f(x)` elementwise.
pub fn activation(gpu: &Gpu, x: &Tensor, f: Activation) -> Result<Tensor> {
    eager1(gpu, &f, &[x])
}

/// `a + b`, b broadcast over a's leading dims.
pub fn add(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    eager1(gpu, &Binary::Add, &[a, b])
}

/// `a * b`, b broadcast over a's leading dims.
pub fn mul(gpu: &Gpu, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    eager1(gpu, &Binary::Mul, &[a, b])
}
