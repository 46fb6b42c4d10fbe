use super::OrcFormat;

/// Why an ORC table could not be used. `Copy`, with the offending index or
/// value, so callers can name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrcError {
    #[error("no .orc_unwind_ip / .orc_unwind sections")]
    MissingSections,
    #[error(".orc_unwind_ip is {ip_bytes} bytes, not a multiple of 4")]
    IpSectionSize { ip_bytes: u64 },
    #[error(".orc_unwind is {entry_bytes} bytes, not a multiple of 6")]
    EntrySectionSize { entry_bytes: u64 },
    #[error(".orc_unwind_ip has {ips} entries but .orc_unwind has {entries}")]
    CountMismatch { ips: u64, entries: u64 },
    #[error("ORC ip table not sorted: entry {index} at {ip:#x} is below the previous one")]
    Unsorted { index: u64, ip: u64 },
    #[error("ORC ip table entry {index} (offset {rel} from {slot:#x}) lies outside the address space")]
    Wraps { index: u64, slot: u64, rel: i32 },
    #[error("section {which} claims {claimed} bytes but the file holds {available}")]
    Truncated { which: &'static str, claimed: u64, available: u64 },
    #[error(".orc_header is {len} bytes, expected 20")]
    HeaderSize { len: u64 },
    #[error("unknown .orc_header hash {first_bytes:02x?}...: this kernel's ORC layout is not known to lpstack (pass an explicit ORC format if you know it)")]
    UnknownHeader { first_bytes: [u8; 4] },
    #[error("cannot tell the ORC format: no .orc_header and no kernel release (pass one)")]
    UnknownFormat,
    #[error("kernel release {major}.{minor} predates ORC (4.14)")]
    ReleaseTooOld { major: u32, minor: u32 },
    #[error("ORC format {0:?} mismatch")]
    FormatMismatch(OrcFormat),
    #[error("table is empty")]
    Empty,
    #[error("ELF: {0}")]
    Elf(&'static str),
    #[error("relocation {index} of .rela.orc_unwind_ip is not usable")]
    BadRelocation { index: u64 },
}
