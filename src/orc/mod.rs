//! ORC, the x86-64 kernel's unwind tables: `.orc_unwind_ip` (self-relative
//! s32 addresses), `.orc_unwind` (6-byte entries in parallel) and, from 6.4,
//! `.orc_header` (a SHA-1 naming the entry layout).
//!
//! - `entry`: the three entry layouts, decoded into one [`OrcEntry`].
//! - `format`: which layout a table uses, from its header or kernel release.
//! - `table`: a zero-copy table with a kernel-style block index.
//! - `elf`: tables read from a vmlinux or module file.
//! - `objtool`: text output identical to `objtool --dump=orc`.
//! - `step`: one `unwind_next_frame` step over a table.

mod entry;
mod error;
mod format;
mod table;

pub mod elf;
pub mod objtool;

pub use entry::{ORC_ENTRY_SIZE, OrcEntry, OrcReg, OrcType};
pub use error::OrcError;
pub use format::{KNOWN_HEADERS, OrcFormat, format_from_header, format_from_release};
pub use table::{LOOKUP_BLOCK_SIZE, OrcFinder, OrcTable, OrcTables};
