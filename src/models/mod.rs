//! Model architectures built on the graph builder.

pub mod bert;
