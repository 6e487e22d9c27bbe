//! `heedful convert`: rewrites a checkpoint with float tensors in another dtype.
