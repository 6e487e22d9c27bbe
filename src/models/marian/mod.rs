//! MarianMT (transformers' `MarianMTModel`) from a Hugging Face model folder: config, typed
//! weights, a CPU reference forward, the encoder as a graph on the graph runtime and the
//! KV-cached decoder step on the loop runtime.
//!
//! Files of a folder: `config.json` ([`config::MarianConfig`]), `generation_config.json`
//! ([`config::GenerationConfig`]), `model.safetensors` ([`weights`]), and the tokenizer files.

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
pub use translator::{CrossAttention, Translation, Translator};
