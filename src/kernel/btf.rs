//! BTF reader (in progress)
