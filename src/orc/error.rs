/// Why an ORC table could not be used. `Copy`, with the offending index or
/// value, so callers can name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrcError {
    /// The file has no `.orc_unwind_ip` or no `.orc_unwind` section.
    #[error("no .orc_unwind_ip / .orc_unwind sections")]
    MissingSections,
    /// `.orc_unwind_ip`'s size is not a multiple of 4.
    #[error(".orc_unwind_ip is {ip_bytes} bytes, not a multiple of 4")]
    IpSectionSize {
        /// The section's size, in bytes.
        ip_bytes: u64,
    },
    /// `.orc_unwind`'s size is not a multiple of 6.
    #[error(".orc_unwind is {entry_bytes} bytes, not a multiple of 6")]
    EntrySectionSize {
        /// The section's size, in bytes.
        entry_bytes: u64,
    },
    /// The two sections hold different numbers of entries (or more than
    /// `u32::MAX`, reported with both counts equal).
    #[error(".orc_unwind_ip has {ips} entries but .orc_unwind has {entries}")]
    CountMismatch {
        /// Entries in `.orc_unwind_ip`.
        ips: u64,
        /// Entries in `.orc_unwind`.
        entries: u64,
    },
    /// An ip is below the one before it.
    #[error("ORC ip table not sorted: entry {index} at {ip:#x} is below the previous one")]
    Unsorted {
        /// Index of the entry.
        index: u64,
        /// Its address.
        ip: u64,
    },
    /// An ip entry's address falls outside the 64-bit address space.
    #[error("ORC ip table entry {index} (offset {rel} from {slot:#x}) lies outside the address space")]
    Wraps {
        /// Index of the entry.
        index: u64,
        /// Address of the entry's 4-byte slot in `.orc_unwind_ip`.
        slot: u64,
        /// The stored offset from `slot`.
        rel: i32,
    },
    /// A section extends past the end of the file.
    #[error("section {which} claims {claimed} bytes but the file holds {available}")]
    Truncated {
        /// The section's name.
        which: &'static str,
        /// Its size in the section header, in bytes.
        claimed: u64,
        /// Bytes the file holds for it (0 when they could not be read).
        available: u64,
    },
    /// `.orc_header` is not a 20-byte SHA-1.
    #[error(".orc_header is {len} bytes, expected 20")]
    HeaderSize {
        /// Its length, in bytes.
        len: u64,
    },
    /// `.orc_header` names no layout in [`KNOWN_HEADERS`](super::KNOWN_HEADERS).
    #[error(
        "unknown .orc_header hash {first_bytes:02x?}...: this kernel's ORC layout is not known to lpstack (pass an explicit ORC format if you know it)"
    )]
    UnknownHeader {
        /// The hash's first four bytes, for the message.
        first_bytes: [u8; 4],
    },
    /// Neither a header nor a usable kernel release decides the format.
    #[error("cannot tell the ORC format: no .orc_header and no kernel release (pass one)")]
    UnknownFormat,
    /// The kernel release is older than 4.14, the first with ORC.
    #[error("kernel release {major}.{minor} predates ORC (4.14)")]
    ReleaseTooOld {
        /// The release's major number.
        major: u32,
        /// The release's minor number.
        minor: u32,
    },
    /// The table has no entries.
    #[error("table is empty")]
    Empty,
    /// The file could not be parsed as ELF; the message says why.
    #[error("ELF: {0}")]
    Elf(&'static str),
    /// An ip could not be placed: its relocation is unusable, no relocation
    /// fills its slot, its section has no load address, or it lies too far
    /// from the table for an s32 offset.
    #[error("relocation {index} of .rela.orc_unwind_ip is not usable")]
    BadRelocation {
        /// Index of the relocation, or of the entry.
        index: u64,
    },
}
