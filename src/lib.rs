//! lpstack decides, for every thread of a Linux kernel or process, whether it
//! may switch to live-patched code now: no patched function on its stack, and
//! a stack that was read reliably. When in doubt the answer is "unreliable".
//!
//! Data flows one way, and the modules follow it:
//!
//! ```text
//! format readers (orc)  ->  memory  ->  symbols  ->  unwind (walk)
//!     ->  patchset  ->  verdict, model  ->  front-ends (cli)
//! ```
//!
//! Each layer works on plain bytes and knows only the layers to its left.

#![warn(missing_docs)]

pub mod arch;
pub mod cfi;
pub mod dump;
pub mod kernel;
pub mod memory;
pub mod model;
pub mod name_index;
pub mod orc;
pub mod patchset;
pub mod process;
pub mod symbols;
pub mod verdict;
pub mod walk;

/// A seeded xorshift64 generator for tests that try many random inputs.
#[cfg(test)]
pub(crate) fn test_rng(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

pub use memory::{Memory, MemoryError};
pub use verdict::Verdict;
