//! VMCOREINFO: the `KEY=VALUE` lines a kernel leaves for dump readers
//! (kernel/vmcore_info.c and arch/*/kernel/*vmcore_info*.c).
//!
//! Values are written with fixed printf formats, and the typed getters follow
//! them: `SYMBOL(x)` and `KERNELOFFSET` are `%lx` hex without `0x`;
//! `NUMBER(x)` is `%ld` decimal and may be negative (`NUMBER(phys_base)` is,
//! when the kernel was loaded below its link address), though some
//! architectures print a few `NUMBER`s as `0x` hex; `SIZE`, `OFFSET` and
//! `LENGTH` are `%lu` decimal.

use std::collections::HashMap;

/// Why VMCOREINFO, or a value in it, could not be read. Lines are 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VmcoreInfoError {
    /// The payload, of this many bytes, is over [`MAX_SIZE`].
    #[error("VMCOREINFO is {0} bytes, more than the 1 MiB limit")]
    TooLarge(u64),
    /// A line is not UTF-8.
    #[error("VMCOREINFO line {line}: not UTF-8")]
    NotUtf8 {
        /// The line number.
        line: u32,
    },
    /// A non-empty line has no `=`.
    #[error("VMCOREINFO line {line}: no '=' in the line")]
    NoEquals {
        /// The line number.
        line: u32,
    },
    /// A value is not in its key's format.
    #[error("VMCOREINFO line {line}: bad {what} value")]
    BadValue {
        /// The line number.
        line: u32,
        /// The kind of key, e.g. `"SYMBOL"`, `"NUMBER"` or `"PAGESIZE"`.
        what: &'static str,
    },
    /// The asked-for key is absent; the value is its kind, e.g. `"SYMBOL"`.
    #[error("VMCOREINFO has no {0} line")]
    Missing(&'static str),
}

/// Real VMCOREINFO is a few KB; anything past this is not VMCOREINFO.
pub const MAX_SIZE: u64 = 1 << 20;

/// Parsed VMCOREINFO text. Keys are unique; the first line of a key wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmcoreInfo {
    text: String,
    /// key -> (value, 1-based line number)
    entries: HashMap<String, (String, u32)>,
    /// Keys in file order.
    order: Vec<String>,
}

impl VmcoreInfo {
    /// Parses the note payload. Trailing NULs (note padding) are ignored, as
    /// are empty lines; any other line must be `KEY=VALUE`.
    pub fn parse(bytes: &[u8]) -> Result<Self, VmcoreInfoError> {
        if bytes.len() as u64 > MAX_SIZE {
            return Err(VmcoreInfoError::TooLarge(bytes.len() as u64));
        }
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let bytes = &bytes[..end];
        let mut entries = HashMap::new();
        let mut order = Vec::new();
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let text = std::str::from_utf8(raw).map_err(|_| VmcoreInfoError::NotUtf8 { line })?;
            let text = text.trim_end_matches('\r');
            if text.is_empty() {
                continue;
            }
            let (k, v) = text.split_once('=').ok_or(VmcoreInfoError::NoEquals { line })?;
            if !entries.contains_key(k) {
                entries.insert(k.to_owned(), (v.to_owned(), line));
                order.push(k.to_owned());
            }
        }
        let text = String::from_utf8_lossy(bytes).into_owned();
        Ok(VmcoreInfo { text, entries, order })
    }

    /// The text as found (without trailing NULs).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// The raw value of `key` (the full key, e.g. `SYMBOL(init_task)`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|(v, _)| v.as_str())
    }

    /// 1-based line number of `key`.
    pub fn line_of(&self, key: &str) -> Option<u32> {
        self.entries.get(key).map(|&(_, l)| l)
    }

    /// `OSRELEASE`: the kernel release (`uname -r`).
    pub fn osrelease(&self) -> Option<&str> {
        self.get("OSRELEASE")
    }

    /// `BUILD-ID`: hex of the kernel's GNU build-id note (5.9+).
    pub fn build_id(&self) -> Option<&str> {
        self.get("BUILD-ID")
    }

    /// `PAGESIZE`: the page size in bytes, decimal.
    pub fn page_size(&self) -> Option<u64> {
        self.try_page_size().ok()
    }

    /// `SYMBOL(name)`: an address, hex.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.try_symbol(name).ok()
    }

    /// `NUMBER(name)`: signed decimal (or `0x` hex).
    pub fn number(&self, name: &str) -> Option<i64> {
        self.try_number(name).ok()
    }

    /// `SIZE(name)`: decimal.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.decimal(&format!("SIZE({name})"), "SIZE").ok()
    }

    /// `OFFSET(struct.member)`: decimal.
    pub fn offset(&self, name: &str) -> Option<u64> {
        self.decimal(&format!("OFFSET({name})"), "OFFSET").ok()
    }

    /// `LENGTH(name)`: decimal.
    pub fn length(&self, name: &str) -> Option<u64> {
        self.decimal(&format!("LENGTH({name})"), "LENGTH").ok()
    }

    /// `KERNELOFFSET`: the KASLR slide, hex.
    pub fn kerneloffset(&self) -> Option<u64> {
        self.try_kerneloffset().ok()
    }

    /// Like [`Self::symbol`], telling a missing key from a malformed value.
    pub fn try_symbol(&self, name: &str) -> Result<u64, VmcoreInfoError> {
        self.hex(&format!("SYMBOL({name})"), "SYMBOL")
    }

    /// Like [`Self::number`], telling a missing key from a malformed value.
    pub fn try_number(&self, name: &str) -> Result<i64, VmcoreInfoError> {
        let key = format!("NUMBER({name})");
        let (v, line) = self.entries.get(&key).ok_or(VmcoreInfoError::Missing("NUMBER"))?;
        parse_signed(v).ok_or(VmcoreInfoError::BadValue { line: *line, what: "NUMBER" })
    }

    /// Like [`Self::kerneloffset`], telling a missing key from a malformed
    /// value.
    pub fn try_kerneloffset(&self) -> Result<u64, VmcoreInfoError> {
        self.hex("KERNELOFFSET", "KERNELOFFSET")
    }

    /// Like [`Self::page_size`], telling a missing key from a malformed
    /// value.
    pub fn try_page_size(&self) -> Result<u64, VmcoreInfoError> {
        self.decimal("PAGESIZE", "PAGESIZE")
    }

    fn hex(&self, key: &str, what: &'static str) -> Result<u64, VmcoreInfoError> {
        let (v, line) = self.entries.get(key).ok_or(VmcoreInfoError::Missing(what))?;
        let digits = v.strip_prefix("0x").unwrap_or(v);
        let bad = VmcoreInfoError::BadValue { line: *line, what };
        // from_str_radix would also take a leading '+'.
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad);
        }
        u64::from_str_radix(digits, 16).map_err(|_| bad)
    }

    fn decimal(&self, key: &str, what: &'static str) -> Result<u64, VmcoreInfoError> {
        let (v, line) = self.entries.get(key).ok_or(VmcoreInfoError::Missing(what))?;
        parse_decimal(v).ok_or(VmcoreInfoError::BadValue { line: *line, what })
    }
}

/// Plain decimal digits only (Rust's parser would also take a leading '+').
fn parse_decimal(v: &str) -> Option<u64> {
    if !v.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_signed(v: &str) -> Option<i64> {
    let (neg, mag) = match v.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, v),
    };
    let (m, hex): (i128, bool) = match mag.strip_prefix("0x") {
        Some(h) if h.bytes().all(|b| b.is_ascii_hexdigit()) => (i128::from(u64::from_str_radix(h, 16).ok()?), true),
        Some(_) => return None,
        None => (i128::from(parse_decimal(mag)?), false),
    };
    // 0x hex may be a full 64-bit pattern (arm64 kimage_voffset): wrap it.
    if hex && !neg {
        return Some(m as u64 as i64);
    }
    i64::try_from(if neg { -m } else { m }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"OSRELEASE=6.12.117+deb12-amd64\n\
BUILD-ID=4c5f0e1f2a\n\
PAGESIZE=4096\n\
SYMBOL(init_uts_ns)=ffffffff9a81e8e0\n\
OFFSET(uts_namespace.name)=0\n\
SIZE(list_head)=16\n\
LENGTH(zone.free_area)=11\n\
NUMBER(phys_base)=-119537664\n\
NUMBER(pgtable_l5_enabled)=0\n\
NUMBER(kimage_voffset)=0xffffffc008000000\n\
KERNELOFFSET=18a00000\n\
SYMBOL(bad)=zz\n\
\n\0\0\0";

    #[test]
    fn typed_getters() {
        let vi = VmcoreInfo::parse(SAMPLE).unwrap();
        assert_eq!(vi.osrelease(), Some("6.12.117+deb12-amd64"));
        assert_eq!(vi.build_id(), Some("4c5f0e1f2a"));
        assert_eq!(vi.page_size(), Some(4096));
        assert_eq!(vi.symbol("init_uts_ns"), Some(0xffffffff9a81e8e0));
        assert_eq!(vi.offset("uts_namespace.name"), Some(0));
        assert_eq!(vi.size("list_head"), Some(16));
        assert_eq!(vi.length("zone.free_area"), Some(11));
        assert_eq!(vi.number("phys_base"), Some(-119537664));
        assert_eq!(vi.number("pgtable_l5_enabled"), Some(0));
        assert_eq!(vi.number("kimage_voffset"), Some(0xffffffc008000000u64 as i64));
        assert_eq!(vi.kerneloffset(), Some(0x18a00000));
        assert_eq!(vi.get("SYMBOL(init_uts_ns)"), Some("ffffffff9a81e8e0"));
        assert_eq!(vi.keys().count(), 12);
        assert_eq!(vi.line_of("PAGESIZE"), Some(3));
        assert!(vi.text().ends_with("SYMBOL(bad)=zz\n\n"));
    }

    #[test]
    fn errors_name_the_line() {
        let vi = VmcoreInfo::parse(SAMPLE).unwrap();
        assert_eq!(vi.symbol("bad"), None);
        assert_eq!(vi.try_symbol("bad"), Err(VmcoreInfoError::BadValue { line: 12, what: "SYMBOL" }));
        assert_eq!(vi.try_symbol("nope"), Err(VmcoreInfoError::Missing("SYMBOL")));
        let plus = VmcoreInfo::parse(b"SYMBOL(a)=+ff\nSIZE(b)=+1\nKERNELOFFSET=\n").unwrap();
        assert_eq!(plus.symbol("a"), None);
        assert_eq!(plus.size("b"), None);
        assert_eq!(plus.kerneloffset(), None);
        assert_eq!(VmcoreInfo::parse(b"A=1\nnot a pair\n").unwrap_err(), VmcoreInfoError::NoEquals { line: 2 });
        assert_eq!(VmcoreInfo::parse(b"A=1\nB=\xff\n").unwrap_err(), VmcoreInfoError::NotUtf8 { line: 2 });
        assert!(VmcoreInfo::parse(&vec![b'a'; (MAX_SIZE + 1) as usize]).is_err());
    }

    #[test]
    fn signed_numbers() {
        assert_eq!(parse_signed("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_signed("-9223372036854775809"), None);
        assert_eq!(parse_signed("18446744073709551615"), None);
        assert_eq!(parse_signed("0xffffffffffffffff"), Some(-1));
        assert_eq!(parse_signed("-0x10"), Some(-16));
        assert_eq!(parse_signed(""), None);
        assert_eq!(parse_signed("+5"), None);
    }

    #[test]
    fn first_key_wins_and_crlf() {
        let vi = VmcoreInfo::parse(b"A=1\r\nA=2\n").unwrap();
        assert_eq!(vi.get("A"), Some("1"));
    }
}
