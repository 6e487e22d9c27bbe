//! Model families built on the ops.

pub mod seq2seq;
