//! The makedumpfile flattened format: what `makedumpfile -F` and QEMU before
//! 8.2 write for the kdump formats, so that a dump can go through a pipe.
//!
//! ```text
//! 0       4096-byte header: "makedumpfile\0..." (16), be64 type = 1, be64 version = 1
//! 4096    records: be64 offset, be64 size, then `size` bytes that belong at
//!         `offset` of the reassembled file; ends with offset = size = -1
//! ```
//!
//! `makedumpfile -R` rebuilds the file by writing each record at its offset.
//! We index the records instead and read the reassembled file in place.
//! Records may overlap (makedumpfile rewrites its sub-header when it adds
//! erase info): as with `-R`, a later record wins.

use std::collections::BTreeMap;

use super::source::{ByteSource, SourceError, be_u64, out_of_bounds};

/// The signature at offset 0, NUL-padded to 16 bytes in the file.
pub const SIGNATURE: &[u8; 12] = b"makedumpfile";
/// Bytes of the flattened header; the first record follows it.
pub const HEADER_SIZE: u64 = 4096;
const RECORD_HEADER_SIZE: u64 = 16;

/// Why a flattened stream could not be indexed. `at` fields are offsets in
/// the flattened file; `offset` fields are in the reassembled one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlatError {
    /// No `makedumpfile` signature, NUL-padded to 16 bytes, at offset 0.
    #[error("flattened dump: no \"makedumpfile\" signature at offset 0")]
    BadSignature,
    /// The file is shorter than the 4096-byte header.
    #[error("flattened dump: the 4096-byte header is cut short ({file_len} bytes in the file)")]
    TruncatedHeader {
        /// The file's size, in bytes.
        file_len: u64,
    },
    /// The header's `type` (big-endian u64 at offset 0x10) is not 1.
    #[error("flattened dump: header type at offset 0x10 is {0}, expected 1")]
    BadType(u64),
    /// The header's `version` (big-endian u64 at offset 0x18) is not 1.
    #[error("flattened dump: header version at offset 0x18 is {0}, expected 1")]
    BadVersion(u64),
    /// The file ends inside a 16-byte record header.
    #[error("flattened dump: record header at file offset {at:#x} is cut short")]
    TruncatedRecordHeader {
        /// File offset of the record header.
        at: u64,
    },
    /// A record claims more data than the file holds after it.
    #[error(
        "flattened dump: record at file offset {at:#x} (target {offset:#x}) claims {size:#x} bytes, only {available:#x} follow"
    )]
    TruncatedRecordData {
        /// File offset of the record header.
        at: u64,
        /// Where the data belongs in the reassembled file.
        offset: u64,
        /// The claimed data size, in bytes.
        size: u64,
        /// Bytes left in the file after the record header.
        available: u64,
    },
    /// A record's offset or size is negative (and not the end marker), or
    /// their sum exceeds `i64::MAX`.
    #[error("flattened dump: record at file offset {at:#x} has a bad target offset {offset:#x} or size {size:#x}")]
    BadRecord {
        /// File offset of the record header.
        at: u64,
        /// The record's target offset, as a raw u64.
        offset: u64,
        /// The record's size, as a raw u64.
        size: u64,
    },
    /// The file ends without the `offset = size = -1` end marker.
    #[error("flattened dump: no end marker (offset = size = -1); data stops at file offset {at:#x}")]
    MissingEnd {
        /// Where the records stop: the file's size.
        at: u64,
    },
}

/// One stored piece of the reassembled file: `[start, end)` lives at `src`
/// in the flattened file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    start: u64,
    end: u64,
    src: usize,
}

/// How far [`FlattenedSource::parse_with`] reads between calls.
pub const SCAN_STEP: u64 = 16 << 20;

/// A flattened dump read in place, addressed by offsets of the reassembled file.
#[derive(Clone, Debug)]
pub struct FlattenedSource<'data> {
    data: &'data [u8],
    /// Sorted, non-overlapping.
    pieces: Vec<Piece>,
    len: u64,
    records: u64,
    overridden_bytes: u64,
}

/// True if `data` starts with the flattened signature.
pub fn is_flattened(data: &[u8]) -> bool {
    data.starts_with(SIGNATURE)
}

impl<'data> FlattenedSource<'data> {
    /// Checks the header and indexes every record up to the end marker; no
    /// record data is copied.
    pub fn parse(data: &'data [u8]) -> Result<Self, FlatError> {
        Self::parse_with(data, &mut |_| {})
    }

    /// [`FlattenedSource::parse`], calling `passed(offset)` after each
    /// [`SCAN_STEP`] bytes of the file indexed.
    pub fn parse_with(data: &'data [u8], passed: &mut dyn FnMut(u64)) -> Result<Self, FlatError> {
        Self::parse_from(data, passed, None)
    }

    /// [`FlattenedSource::parse_with`], each record header read from
    /// `file`, the file `data` maps, with a pread. Walking the mapping
    /// instead maps the file page by page (a fault per 64 KiB read around:
    /// 4-5 ms for a QEMU kdump of a 2 GiB guest, against 1.4 ms of preads).
    /// Bounds are still `data`'s: a header past its end is not read.
    pub fn parse_from(
        data: &'data [u8],
        passed: &mut dyn FnMut(u64),
        file: Option<&std::fs::File>,
    ) -> Result<Self, FlatError> {
        if !is_flattened(data) {
            return Err(FlatError::BadSignature);
        }
        let file_len = data.len() as u64;
        if file_len < HEADER_SIZE {
            return Err(FlatError::TruncatedHeader { file_len });
        }
        // The rest of the 16-byte signature field is NUL padding.
        if data[SIGNATURE.len()..16].iter().any(|&b| b != 0) {
            return Err(FlatError::BadSignature);
        }
        let ty = be_u64(data, 16).ok_or(FlatError::TruncatedHeader { file_len })?;
        if ty != 1 {
            return Err(FlatError::BadType(ty));
        }
        let version = be_u64(data, 24).ok_or(FlatError::TruncatedHeader { file_len })?;
        if version != 1 {
            return Err(FlatError::BadVersion(version));
        }

        let mut map = PieceMap::default();
        let mut records = 0u64;
        let mut at = HEADER_SIZE;
        let mut next_step = SCAN_STEP;
        loop {
            if at >= next_step {
                passed(at);
                next_step = at.saturating_add(SCAN_STEP);
            }
            let pos = at as usize; // at <= file_len, which came from a usize
            const LEN: usize = RECORD_HEADER_SIZE as usize;
            let mut header = [0u8; LEN];
            // A failed pread falls back to the mapping, which then names
            // the error (SIGBUS for a file cut short under us).
            let read = data.len().checked_sub(LEN).is_some_and(|last| pos <= last) && {
                if file.is_none_or(|f| std::os::unix::fs::FileExt::read_exact_at(f, &mut header, at).is_err()) {
                    header.copy_from_slice(&data[pos..pos + LEN]);
                }
                true
            };
            let (true, Some(offset), Some(size)) = (read, be_u64(&header, 0), be_u64(&header, 8)) else {
                return Err(if at == file_len {
                    FlatError::MissingEnd { at }
                } else {
                    FlatError::TruncatedRecordHeader { at }
                });
            };
            if offset == u64::MAX && size == u64::MAX {
                break;
            }
            // Both are signed 64-bit in the format; negative is invalid.
            let end = offset.checked_add(size);
            if offset > i64::MAX as u64 || size > i64::MAX as u64 || end.is_none_or(|e| e > i64::MAX as u64) {
                return Err(FlatError::BadRecord { at, offset, size });
            }
            let body = at + RECORD_HEADER_SIZE;
            let available = file_len - body;
            if size > available {
                return Err(FlatError::TruncatedRecordData { at, offset, size, available });
            }
            if size > 0 {
                map.insert(Piece { start: offset, end: offset + size, src: body as usize });
            }
            records += 1;
            at = body + size;
        }
        let overridden_bytes = map.overridden;
        let pieces: Vec<Piece> = map.pieces.into_values().collect();
        let len = pieces.last().map_or(0, |p| p.end);
        Ok(FlattenedSource { data, pieces, len, records, overridden_bytes })
    }

    /// Number of data records (not counting the end marker).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written by a record and later overwritten by another one.
    pub fn overridden_bytes(&self) -> u64 {
        self.overridden_bytes
    }

    /// The piece holding `offset`, if any.
    fn piece(&self, offset: u64) -> Option<&Piece> {
        let i = self.pieces.partition_point(|p| p.end <= offset);
        self.pieces.get(i).filter(|p| p.start <= offset)
    }

    /// Walks `[offset, offset+len)` piece by piece; `f(range_offset, src, n)`.
    fn walk(&self, offset: u64, len: u64, mut f: impl FnMut(usize, usize, usize)) -> Result<(), SourceError> {
        let end = offset.checked_add(len).ok_or(out_of_bounds(offset, len, self.len))?;
        if end > self.len {
            return Err(out_of_bounds(offset, len, self.len));
        }
        let mut at = offset;
        while at < end {
            let p = self.piece(at).ok_or(SourceError::Hole { offset: at })?;
            let n = (p.end.min(end) - at) as usize;
            f((at - offset) as usize, p.src + (at - p.start) as usize, n);
            at += n as u64;
        }
        Ok(())
    }
}

impl<'data> ByteSource<'data> for FlattenedSource<'data> {
    fn len(&self) -> u64 {
        self.len
    }

    fn slice(&self, offset: u64, len: usize) -> Option<&'data [u8]> {
        let p = self.piece(offset)?;
        let end = offset.checked_add(len as u64)?;
        if end > p.end {
            return None;
        }
        let src = p.src + (offset - p.start) as usize;
        self.data.get(src..src + len)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let data = self.data;
        self.walk(offset, buf.len() as u64, |dst, src, n| {
            buf[dst..dst + n].copy_from_slice(&data[src..src + n]);
        })
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), SourceError> {
        self.walk(offset, len, |_, _, _| {})
    }
}

/// Non-overlapping pieces keyed by start; inserting trims what it covers.
#[derive(Default)]
struct PieceMap {
    pieces: BTreeMap<u64, Piece>,
    overridden: u64,
}

impl PieceMap {
    fn insert(&mut self, new: Piece) {
        // Fast path: records usually come in increasing, disjoint order.
        let last_end = self.pieces.last_key_value().map_or(0, |(_, p)| p.end);
        if new.start >= last_end {
            self.pieces.insert(new.start, new);
            return;
        }
        // A piece starting before `new` may reach into it: split it.
        let before = self.pieces.range(..new.start).next_back().map(|(&k, &p)| (k, p));
        if let Some((k, p)) = before.filter(|(_, p)| p.end > new.start) {
            self.pieces.insert(k, Piece { end: new.start, ..p });
            self.overridden += p.end.min(new.end) - new.start;
            if p.end > new.end {
                let tail = Piece { start: new.end, end: p.end, src: p.src + (new.end - p.start) as usize };
                self.pieces.insert(new.end, tail);
            }
        }
        // Pieces starting inside `new` are dropped or keep their tail.
        let inside: Vec<u64> = self.pieces.range(new.start..new.end).map(|(&k, _)| k).collect();
        for k in inside {
            if let Some(p) = self.pieces.remove(&k) {
                self.overridden += p.end.min(new.end) - p.start;
                if p.end > new.end {
                    let tail = Piece { start: new.end, end: p.end, src: p.src + (new.end - p.start) as usize };
                    self.pieces.insert(new.end, tail);
                }
            }
        }
        self.pieces.insert(new.start, new);
    }
}

/// Builds a flattened stream from `(offset, bytes)` records (tests, fixtures).
pub fn flatten<'a>(records: impl IntoIterator<Item = (u64, &'a [u8])>) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_SIZE as usize];
    out[..SIGNATURE.len()].copy_from_slice(SIGNATURE);
    out[16..24].copy_from_slice(&1u64.to_be_bytes());
    out[24..32].copy_from_slice(&1u64.to_be_bytes());
    for (offset, bytes) in records {
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(&u64::MAX.to_be_bytes());
    out.extend_from_slice(&u64::MAX.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_with_reports_progress_through_the_file() {
        // 40 one-MiB records: the index passes 16 and 32 MiB.
        let chunk = vec![7u8; 1 << 20];
        let records: Vec<(u64, &[u8])> = (0..40u64).map(|i| (i << 20, &chunk[..])).collect();
        let file = flatten(records);
        let mut seen = Vec::new();
        let src = FlattenedSource::parse_with(&file, &mut |at| seen.push(at)).unwrap();
        assert_eq!(src.records(), 40);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0] >= SCAN_STEP && seen[1] >= seen[0] + SCAN_STEP, "{seen:?}");
        assert!(seen.iter().all(|&at| at < file.len() as u64));
    }

    fn reassemble(src: &FlattenedSource) -> Vec<u8> {
        let mut v = vec![0u8; src.len() as usize];
        src.read_at(0, &mut v).unwrap();
        v
    }

    #[test]
    fn in_order_and_out_of_order() {
        let a: Vec<u8> = (0..10).collect();
        let b: Vec<u8> = (10..20).collect();
        let c: Vec<u8> = (20..25).collect();
        let want: Vec<u8> = (0..25).collect();
        for order in [[0usize, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]] {
            let recs = [(0u64, &a[..]), (10, &b[..]), (20, &c[..])];
            let flat = flatten(order.iter().map(|&i| recs[i]));
            let src = FlattenedSource::parse(&flat).unwrap();
            assert_eq!(src.records(), 3);
            assert_eq!(src.len(), 25);
            assert_eq!(reassemble(&src), want);
            // Across a record boundary: copied, not borrowed.
            assert_eq!(src.slice(8, 4), None);
            assert_eq!(&*src.range(8, 4).unwrap(), &want[8..12]);
            assert_eq!(src.slice(11, 4), Some(&want[11..15]));
            assert_eq!(src.overridden_bytes(), 0);
        }
    }

    #[test]
    fn later_record_wins() {
        let base = [1u8; 20];
        let mid = [2u8; 4];
        let head = [3u8; 6];
        let flat = flatten([(0u64, &base[..]), (8, &mid[..]), (0, &head[..]), (18, &mid[..])]);
        let src = FlattenedSource::parse(&flat).unwrap();
        let mut want = vec![1u8; 22];
        want[8..12].fill(2);
        want[..6].fill(3);
        want[18..22].fill(2);
        assert_eq!(reassemble(&src), want);
        assert_eq!(src.overridden_bytes(), 4 + 6 + 2);
        // One record covering several earlier ones.
        let flat = flatten([(0u64, &mid[..]), (6, &mid[..]), (2, &base[..10])]);
        let src = FlattenedSource::parse(&flat).unwrap();
        assert_eq!(reassemble(&src), [2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn holes_are_errors_not_zeros() {
        let a = [7u8; 4];
        let flat = flatten([(0u64, &a[..]), (8, &a[..])]);
        let src = FlattenedSource::parse(&flat).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(src.read_at(2, &mut b), Err(SourceError::Hole { offset: 4 }));
        assert_eq!(src.check(4, 1), Err(SourceError::Hole { offset: 4 }));
        assert!(src.check(8, 4).is_ok());
        assert!(src.read_at(10, &mut b).is_err());
    }

    #[test]
    fn header_errors() {
        let good = flatten([(0u64, &[1u8, 2][..])]);
        assert!(FlattenedSource::parse(&good).is_ok());
        let mut bad = good.clone();
        bad[19 + 4] = 2;
        assert_eq!(FlattenedSource::parse(&bad).unwrap_err(), FlatError::BadType(2));
        let mut bad = good.clone();
        bad[31] = 2;
        assert_eq!(FlattenedSource::parse(&bad).unwrap_err(), FlatError::BadVersion(2));
        assert_eq!(FlattenedSource::parse(b"KDUMP   ").unwrap_err(), FlatError::BadSignature);
        assert_eq!(FlattenedSource::parse(&good[..100]).unwrap_err(), FlatError::TruncatedHeader { file_len: 100 });
    }

    #[test]
    fn record_errors() {
        // A record claiming 4 GB in a tiny file fails fast.
        let mut flat = flatten([]);
        flat.truncate(4096);
        flat.extend_from_slice(&0u64.to_be_bytes());
        flat.extend_from_slice(&(4u64 << 30).to_be_bytes());
        flat.extend_from_slice(&[0u8; 100]);
        assert_eq!(
            FlattenedSource::parse(&flat).unwrap_err(),
            FlatError::TruncatedRecordData { at: 4096, offset: 0, size: 4 << 30, available: 100 }
        );
        // Negative offset that is not the end marker.
        let mut flat = flatten([]);
        flat.truncate(4096);
        flat.extend_from_slice(&u64::MAX.to_be_bytes());
        flat.extend_from_slice(&1u64.to_be_bytes());
        assert!(matches!(FlattenedSource::parse(&flat), Err(FlatError::BadRecord { at: 4096, .. })));
        // Every truncation point gives an error, never a panic.
        let full = flatten([(0u64, &[5u8; 40][..]), (100, &[6u8; 3][..])]);
        for n in 0..full.len() {
            assert!(FlattenedSource::parse(&full[..n]).is_err(), "cut at {n}");
        }
        assert_eq!(FlattenedSource::parse(&full[..4096]).unwrap_err(), FlatError::MissingEnd { at: 4096 });
    }

    #[test]
    fn headers_read_from_the_file_give_the_same_index() {
        let path = format!("{}/tests/fixtures/dump/qemu-zlib-cut.flat", env!("CARGO_MANIFEST_DIR"));
        let data = std::fs::read(&path).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mapped = FlattenedSource::parse(&data).unwrap();
        let read = FlattenedSource::parse_from(&data, &mut |_| {}, Some(&file)).unwrap();
        assert!(mapped.records() > 10, "{} records", mapped.records());
        assert_eq!(format!("{read:?}"), format!("{mapped:?}"));
        // Bounds are the mapping's: cut short, it ends where the mapping
        // does, whatever the file holds.
        let cut = &data[..data.len() - 40];
        let mapped = FlattenedSource::parse(cut).unwrap_err();
        assert_eq!(FlattenedSource::parse_from(cut, &mut |_| {}, Some(&file)).unwrap_err(), mapped);
        // Record headers come from the file: one changed there is seen.
        let other = std::env::temp_dir().join(format!("lpstack-flat-{}", std::process::id()));
        let mut changed = data.clone();
        changed[HEADER_SIZE as usize + 8..HEADER_SIZE as usize + 16].copy_from_slice(&u64::MAX.to_be_bytes());
        std::fs::write(&other, &changed).unwrap();
        let file = std::fs::File::open(&other).unwrap();
        let err = FlattenedSource::parse_from(&data, &mut |_| {}, Some(&file)).unwrap_err();
        let _ = std::fs::remove_file(&other);
        assert!(matches!(err, FlatError::BadRecord { at: HEADER_SIZE, .. }), "{err:?}");
    }
}
