//! Which ORC entry layout a table uses.
//!
//! From 6.4 (and 6.3.10) the kernel embeds `.orc_header`: the SHA-1 of its
//! `orc_types.h`. A hash identifies the layout exactly, so an unknown hash is
//! an error, never a guess. Older kernels have no header; their release
//! number decides.

use super::OrcError;

/// The layout of an ORC entry's flag bits, which changed twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrcFormat {
    /// 4.14 to 6.2: `sp_reg:4 bp_reg:4 type:2 end:1`.
    V1,
    /// 6.3: `sp_reg:4 bp_reg:4 type:2 signal:1 end:1`.
    V2,
    /// 6.4 on: `sp_reg:4 bp_reg:4 type:3 signal:1`, with UNDEFINED and
    /// END_OF_STACK types instead of the end bit.
    V3,
}

impl OrcFormat {
    /// Parses `"1"`/`"v1"` to `"3"`/`"v3"`, as given on a command line.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1" | "v1" => Some(OrcFormat::V1),
            "2" | "v2" => Some(OrcFormat::V2),
            "3" | "v3" => Some(OrcFormat::V3),
            _ => None,
        }
    }

    /// The version number: 1, 2 or 3.
    pub fn number(self) -> u32 {
        match self {
            OrcFormat::V1 => 1,
            OrcFormat::V2 => 2,
            OrcFormat::V3 => 3,
        }
    }
}

/// A `.orc_header` value seen in a real kernel, with the layout it names.
#[derive(Clone, Copy, Debug)]
pub struct KnownHeader {
    pub sha1: [u8; 20],
    pub format: OrcFormat,
    /// Where it was seen.
    pub seen_in: &'static str,
}

/// Headers of kernels lpstack has been checked against. Add a new one only
/// after checking that kernel's orc_types.h.
pub const KNOWN_HEADERS: &[KnownHeader] = &[KnownHeader {
    sha1: [
        0xfe, 0x5d, 0x32, 0xbf, 0x58, 0x1b, 0xd6, 0x3b, 0x2c, 0xa9, 0xa5, 0xc6, 0x5b, 0xa5, 0xa6, 0x25, 0xea, 0xb3,
        0xfe, 0x24,
    ],
    format: OrcFormat::V3,
    seen_in: "Debian 6.12.117+deb12-amd64",
}];

/// The format named by a 20-byte `.orc_header`; unknown hashes are an error.
pub fn format_from_header(header: &[u8]) -> Result<OrcFormat, OrcError> {
    let header: &[u8; 20] = header.try_into().map_err(|_| OrcError::HeaderSize { len: header.len() as u64 })?;
    KNOWN_HEADERS
        .iter()
        .find(|k| &k.sha1 == header)
        .map(|k| k.format)
        .ok_or(OrcError::UnknownHeader { first_bytes: [header[0], header[1], header[2], header[3]] })
}

/// Parses "6.1.0-57-amd64", "6.12.117+deb12-amd64", "4.19.0" and the like.
pub fn format_from_release(release: &str) -> Result<OrcFormat, OrcError> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().ok());
    let major = parts.next().flatten().ok_or(OrcError::UnknownFormat)?;
    let minor = parts.next().flatten().ok_or(OrcError::UnknownFormat)?;
    match (major, minor) {
        (0..=3, _) | (4, 0..=13) => Err(OrcError::ReleaseTooOld { major, minor }),
        (4, _) | (5, _) | (6, 0..=2) => Ok(OrcFormat::V1),
        (6, 3) => Ok(OrcFormat::V2),
        _ => Ok(OrcFormat::V3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(format_from_release("6.1.0-57-amd64"), Ok(OrcFormat::V1));
        assert_eq!(format_from_release("4.14.0"), Ok(OrcFormat::V1));
        assert_eq!(format_from_release("5.10.209-1"), Ok(OrcFormat::V1));
        assert_eq!(format_from_release("6.2.16"), Ok(OrcFormat::V1));
        assert_eq!(format_from_release("6.3.1"), Ok(OrcFormat::V2));
        assert_eq!(format_from_release("6.4.0"), Ok(OrcFormat::V3));
        assert_eq!(format_from_release("6.12.117+deb12-amd64"), Ok(OrcFormat::V3));
        assert_eq!(format_from_release("7.0"), Ok(OrcFormat::V3));
        assert_eq!(format_from_release("4.13.1"), Err(OrcError::ReleaseTooOld { major: 4, minor: 13 }));
        assert_eq!(format_from_release("linux"), Err(OrcError::UnknownFormat));
        assert_eq!(format_from_release("6"), Err(OrcError::UnknownFormat));
    }

    #[test]
    fn unknown_header_is_an_error() {
        let h = [0xabu8; 20];
        assert_eq!(format_from_header(&h), Err(OrcError::UnknownHeader { first_bytes: [0xab; 4] }));
        assert_eq!(format_from_header(&h[..19]), Err(OrcError::HeaderSize { len: 19 }));
    }
}
