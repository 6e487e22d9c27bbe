//! MarianMT (Hugging Face's Marian encoder-decoder).

pub mod search;
