//! MarianMT (transformers' `MarianMTModel`) from a Hugging Face model folder, on the GPU, token
//! for token as `generate`.
//!
//! - [`config`]: `config.json` ([`MarianConfig`]) and `generation_config.json`
//!   ([`GenerationConfig`]), checked before anything is read.
//! - [`weights`]: typed weights by the state dict's names from `model.safetensors` (F32, F16,
//!   BF16), tied embeddings, learned or sinusoidal positions, every shape checked.
//! - [`reference`](mod@reference): the CPU reference forward (f64), the oracle of the GPU tests.
//! - [`encoder`]: the encoder as a graph on the graph runtime (padding masks, one run per batch).
//! - [`decoder`]: [`MarianModel`], the KV-cached decoder step on the loop runtime (cross K/V once
//!   per sentence, flash-decoding over the cache, optional cross-attention probabilities).
//! - [`search`]: `generate`'s options and the greedy / beam search on the GPU.
//! - [`spm`], [`tokenizer`]: SentencePiece and `MarianTokenizer` in Rust.
//! - [`translator`]: [`Translator`], the API (`heedful translate` is its command line).
//!
//! ```no_run
//! use heedful::models::marian::Translator;
//! let gpu = heedful::Gpu::shared()?;
//! let t = Translator::load(&gpu, "weights/marian".as_ref())?;
//! let out = t.translate(&["green tea"], &t.default_options())?;
//! println!("{}", out[0].text.as_deref().unwrap_or(""));
//! # Ok::<(), heedful::Error>(())
//! ```

pub mod config;
pub mod decoder;
pub mod encoder;
pub mod reference;
pub mod search;
pub mod spm;
pub mod tokenizer;
pub mod translator;
pub mod weights;

pub use config::{GenerationConfig, MarianConfig};
pub use decoder::MarianModel;
pub use tokenizer::MarianTokenizerFiles;
pub use translator::{CrossAttention, MarianFiles, StepSchedule, Translation, Translator};
