//! MarianMT (Hugging Face `MarianMTModel` folders): tokenizer, model and decoding.
//!
//! This file is a minimal stub so the tokenizer builds on its own; the model engineer owns it and
//! replaces it with the full module docs and re-exports.
//!
//! - [`spm`]: SentencePiece model files (`source.spm`, `target.spm`) and their unigram encoder.
//! - [`tokenizer`]: [`tokenizer::MarianTokenizer`], equal to transformers' `MarianTokenizer`.

pub mod spm;
pub mod tokenizer;
