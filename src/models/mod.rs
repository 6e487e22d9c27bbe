//! Model architectures built on the ops and the graph builder.

pub mod bert;
pub mod marian;
pub mod seq2seq;
