//! Hugging Face `generate` decoding for Marian on the GPU: options, logits processors, greedy and
//! HF-rule beam search recorded on the loop runtime.

mod options;

pub use options::{padded_sequences, EarlyStopping, GenerateOptions, GenerationParams, Hypothesis};
