//! CPU reference implementations: plain loops with f64 accumulation, written for clarity, not speed.
//! They are the oracle every GPU kernel is tested against.

pub mod attention;
pub mod beam;
pub mod decoder_loop;
pub mod elementwise;
pub mod embedding;
pub mod generate;
pub mod layout;
pub mod matmul;
pub mod recurrent;
pub mod softmax;
pub mod topk;
