//! # heedful
//!
//! A portable GPU inference engine for sequence models on wgpu compute shaders: hand-written WGSL
//! kernels for matmul, softmax, attention and recurrent gates, run on Vulkan, Metal, DX12, GL or
//! browser WebGPU.
//!
//! The embedding API: [`gpu`] (device, caps, pipelines, recording), [`tensor`] (GPU tensors),
//! [`kernels`] (one module per WGSL file), [`ops`] (eager op API), [`graph`] (graph IR, memory
//! planner, sessions), [`models`] (BERT, seq2seq with attention), [`weights`] (safetensors loading
//! and conversion), [`reference`](mod@reference) (CPU oracle), [`compare`] (tolerance checks),
//! [`error`].
//!
//! Tools, behind the `tools` feature (on by default), not the embedding API: `cli` (the `heedful`
//! subcommands, the binary's engine), `bench` (the benchmark suites of `heedful bench` and
//! `cargo bench`), `conformance` (the PyTorch-reference case runner of `heedful conformance`). An
//! embedder depends on heedful with `default-features = false` and gets none of them, nor their
//! dependencies (clap, indicatif, png, font8x8).
//!
//! The doctest below runs on whatever adapter the test machine has (lavapipe in CI):
//!
//! ```
//! use heedful::{ops, Gpu, Tensor};
//!
//! let gpu = Gpu::shared()?;
//! let x = Tensor::from_f32(&gpu, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?; // [M=2, K=3]
//! let w = Tensor::from_f32_as_f16(&gpu, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], &[2, 3])?; // [N=2, K=3] f16
//! let y = ops::linear(&gpu, &x, &w, None)?; // x W^T: [2, 2]
//! assert_eq!(y.to_vec_f32(&gpu)?, vec![1.0, 2.0, 4.0, 5.0]);
//! # Ok::<(), heedful::Error>(())
//! ```

// No panics on caller input: unwrap/expect are refused in library code (tests may use them).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "tools")]
pub mod bench;
#[cfg(feature = "tools")]
pub mod cli;
pub mod compare;
#[cfg(feature = "tools")]
pub mod conformance;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod kernels;
pub mod models;
pub mod ops;
pub mod reference;
pub mod tensor;
#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod weights;

pub use error::{Error, Result};
pub use gpu::{Caps, Gpu, GpuOptions};
pub use tensor::{DType, Tensor};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
