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
    /// Sorted, non-overlapping; shared by the readers a check splits off.
    pieces: std::sync::Arc<[Piece]>,
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

        // A file read with preads, large and with a second thread to
        // spare, is walked from both ends of the chain at once.
        let chain = match file {
            Some(f) if data.len() >= SPLIT_WALK && rayon::current_num_threads() > 1 => walk_split(data, f, passed),
            _ => walk_chain(data, file, HEADER_SIZE, None, passed),
        };
        match chain.end {
            ChainEnd::Marker(_) => {}
            ChainEnd::Failed(_, e) => return Err(e),
            ChainEnd::Stopped(at) => return Err(FlatError::TruncatedRecordHeader { at }),
        }
        let (pieces, overridden_bytes) = assemble(&chain.records);
        let records = chain.count;
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

/// Files from this size on have their record index walked from both ends
/// at once ([`walk_split`]).
const SPLIT_WALK: usize = 16 << 20;

/// How a walk along the chain of record headers ended, at which file offset.
#[derive(Clone, Copy, Debug)]
enum ChainEnd {
    /// At the end marker.
    Marker(u64),
    /// At a header that is not valid: what the index reports.
    Failed(u64, FlatError),
    /// At or past the offset it was told to stop at.
    Stopped(u64),
}

/// Records along a chain of headers that hold data: (file offset of the
/// header, target offset, size, how many records came before it), in file
/// order; how many records there were, empty ones too (kept as a count
/// only: an empty record costs 16 bytes of input); and how the walk ended.
struct Chain {
    records: Vec<(u64, u64, u64, u64)>,
    count: u64,
    end: ChainEnd,
}

/// The 16 bytes at `at`: from `file` (a pread) when given, else (or when
/// the pread fails) from `data`. None past `data`'s end.
fn header_at(data: &[u8], file: Option<&std::fs::File>, at: u64) -> Option<[u8; RECORD_HEADER_SIZE as usize]> {
    const LEN: usize = RECORD_HEADER_SIZE as usize;
    let last = data.len().checked_sub(LEN)?;
    let pos = usize::try_from(at).ok().filter(|&p| p <= last)?;
    let mut header = [0u8; LEN];
    // A failed pread falls back to the mapping, which then names the error
    // (SIGBUS for a file cut short under us).
    if file.is_none_or(|f| std::os::unix::fs::FileExt::read_exact_at(f, &mut header, at).is_err()) {
        header.copy_from_slice(&data[pos..pos + LEN]);
    }
    Some(header)
}

/// Follows the record headers from `start` to the end marker, an invalid
/// header, or (with `stop`) the first header at or past `stop`, calling
/// `passed(offset)` after each [`SCAN_STEP`] bytes.
fn walk_chain(
    data: &[u8],
    file: Option<&std::fs::File>,
    start: u64,
    stop: Option<u64>,
    passed: &mut dyn FnMut(u64),
) -> Chain {
    let file_len = data.len() as u64;
    let (mut records, mut count) = (Vec::new(), 0);
    let mut at = start;
    let mut next_step = SCAN_STEP;
    let end = loop {
        if stop.is_some_and(|stop| at >= stop) {
            break ChainEnd::Stopped(at);
        }
        if at >= next_step {
            passed(at);
            next_step = at.saturating_add(SCAN_STEP);
        }
        let header = header_at(data, file, at);
        let (Some(offset), Some(size)) = (header.and_then(|h| be_u64(&h, 0)), header.and_then(|h| be_u64(&h, 8)))
        else {
            let e = if at == file_len { FlatError::MissingEnd { at } } else { FlatError::TruncatedRecordHeader { at } };
            break ChainEnd::Failed(at, e);
        };
        if offset == u64::MAX && size == u64::MAX {
            break ChainEnd::Marker(at);
        }
        if let Err(e) = check_record(at, offset, size, file_len) {
            break ChainEnd::Failed(at, e);
        }
        let body = at + RECORD_HEADER_SIZE;
        if size > 0 {
            records.push((at, offset, size, count));
        }
        count += 1;
        at = body + size;
    };
    Chain { records, count, end }
}

/// Whether the record whose header is at `at` holds `offset` and `size`
/// that can be (both are signed 64-bit in the format; negative is invalid)
/// and its data lies within the file.
fn check_record(at: u64, offset: u64, size: u64, file_len: u64) -> Result<(), FlatError> {
    let end = offset.checked_add(size);
    if offset > i64::MAX as u64 || size > i64::MAX as u64 || end.is_none_or(|e| e > i64::MAX as u64) {
        return Err(FlatError::BadRecord { at, offset, size });
    }
    let available = file_len.saturating_sub(at + RECORD_HEADER_SIZE);
    if size > available {
        return Err(FlatError::TruncatedRecordData { at, offset, size, available });
    }
    Ok(())
}

/// [`walk_chain`] from the start, with a second walk on another thread
/// from a header found near the middle of the file. The first walk stops
/// at the middle; if it is then at a header the second one went through,
/// the rest is the second one's (from a header, the chain is the same
/// whoever follows it), else it goes on alone. A second walk that started
/// on bytes that only look like a header costs time, never a record.
fn walk_split(data: &[u8], file: &std::fs::File, passed: &mut dyn FnMut(u64)) -> Chain {
    let mid = data.len() as u64 / 2;
    let back = std::sync::Mutex::new(None);
    let mut front = rayon::in_place_scope(|s| {
        s.spawn(|_| {
            let chain = header_near(data, file, mid).map(|at| walk_chain(data, Some(file), at, None, &mut |_| {}));
            *back.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = chain;
        });
        walk_chain(data, Some(file), HEADER_SIZE, Some(mid), passed)
    });
    let ChainEnd::Stopped(at) = front.end else { return front };
    let back = back.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    let joined = back.and_then(|back| {
        let end_at = match back.end {
            ChainEnd::Marker(at) | ChainEnd::Failed(at, _) | ChainEnd::Stopped(at) => at,
        };
        // Where the first walk stands: a header with data the second went
        // through, or the second's end. (At an empty record, or anywhere
        // else, the first walk goes on alone.) The records counted from
        // there are the second walk's, but those before.
        let (from, before) = match back.records.binary_search_by_key(&at, |r| r.0) {
            Ok(i) => (i, back.records[i].3),
            Err(_) if end_at == at => (back.records.len(), back.count),
            Err(_) => return None,
        };
        let records = back.records[from..].iter().map(|&(a, o, n, k)| (a, o, n, k - before)).collect();
        Some(Chain { records, count: back.count - before, end: back.end })
    });
    let rest = joined.unwrap_or_else(|| walk_chain(data, Some(file), at, None, &mut |_| {}));
    let mut step = at.next_multiple_of(SCAN_STEP).max(SCAN_STEP);
    for &(at, ..) in &rest.records {
        if at >= step {
            passed(at);
            step = at.saturating_add(SCAN_STEP);
        }
    }
    let before = front.count;
    front.records.extend(rest.records.into_iter().map(|(a, o, n, k)| (a, o, n, k + before)));
    front.count += rest.count;
    front.end = rest.end;
    front
}

/// The first offset at or after `from` whose 16 bytes are a valid record
/// header with data, followed (when it is in the same 64 KiB) by another
/// one or the end marker: where a second walk can start.
fn header_near(data: &[u8], file: &std::fs::File, from: u64) -> Option<u64> {
    const WINDOW: usize = 64 << 10;
    let file_len = data.len() as u64;
    let mut window = vec![0u8; WINDOW.min(data.len().saturating_sub(from as usize))];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut window, from).ok()?;
    let valid = |q: usize| -> Option<u64> {
        let (offset, size) = (be_u64(&window, q)?, be_u64(&window, q + 8)?);
        (size > 0 && check_record(from + q as u64, offset, size, file_len).is_ok()).then_some(size)
    };
    (0..window.len().saturating_sub(RECORD_HEADER_SIZE as usize)).find_map(|q| {
        let size = valid(q)?;
        let next = q + RECORD_HEADER_SIZE as usize + usize::try_from(size).ok()?;
        let marker = be_u64(&window, next) == Some(u64::MAX) && be_u64(&window, next + 8) == Some(u64::MAX);
        (next + 16 > window.len() || marker || valid(next).is_some()).then_some(from + q as u64)
    })
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

/// The file's pieces in offset order from its records `(at, offset, size,
/// ordinal)` in file order, and the bytes later records overwrote.
fn assemble(records: &[(u64, u64, u64, u64)]) -> (std::sync::Arc<[Piece]>, u64) {
    let piece = |&(at, offset, size, _): &(u64, u64, u64, u64)| Piece {
        start: offset,
        end: offset + size,
        src: (at + RECORD_HEADER_SIZE) as usize,
    };
    // Two streams written side by side (QEMU: page descriptors and page
    // data) are out of order but disjoint: sorting is then enough.
    let mut sorted: Vec<Piece> = records.iter().map(piece).collect();
    sorted.sort_unstable_by_key(|p| p.start);
    if sorted.windows(2).all(|w| w[0].end <= w[1].start) {
        return (sorted.into(), 0);
    }
    let mut map = PieceMap::default();
    for r in records {
        map.insert(piece(r));
    }
    (map.pieces.into_values().collect(), map.overridden)
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

    /// A flattened file of about `mib` MiB: records of odd sizes, some
    /// overwriting others, runs of zeros and of bytes that look like
    /// headers inside the data.
    fn big_flat(mib: usize, seed: u64) -> Vec<u8> {
        let mut next = crate::test_rng(seed);
        let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut total = 0usize;
        while total < mib << 20 {
            let size = match next() % 5 {
                0 => 16384,
                1 => 16368,
                2 => 1 + (next() % 20000) as usize,
                3 => 4096,
                // Empty records, counted but not kept.
                _ => (next() % 2) as usize * 4096,
            };
            let mut bytes: Vec<u8> = (0..size.div_ceil(8)).flat_map(|_| next().to_le_bytes()).take(size).collect();
            match next() % 5 {
                0 => bytes.iter_mut().take(4000).for_each(|b| *b = 0),
                1 if size > 64 => {
                    // A fake header: a small offset and size, then zeros.
                    bytes[..8].copy_from_slice(&0x1000u64.to_be_bytes());
                    bytes[8..16].copy_from_slice(&32u64.to_be_bytes());
                }
                _ => {}
            }
            let offset = if next() % 7 == 0 && total > 0 { next() % total as u64 } else { total as u64 };
            total += size;
            records.push((offset, bytes));
        }
        flatten(records.iter().map(|(o, b)| (*o, &b[..])))
    }

    #[test]
    fn a_walk_from_both_ends_finds_what_one_walk_finds() {
        let dir = std::env::temp_dir();
        for (seed, cut) in [(1u64, 0usize), (2, 0), (3, 1 << 20), (4, 3)] {
            let mut flat = big_flat(20, seed);
            let len = flat.len() - cut;
            flat.truncate(len);
            let path = dir.join(format!("lpstack-split-{}-{seed}", std::process::id()));
            std::fs::write(&path, &flat).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let one = walk_chain(&flat, None, HEADER_SIZE, None, &mut |_| {});
            let mut steps = Vec::new();
            let both = walk_split(&flat, &file, &mut |at| steps.push(at));
            let _ = std::fs::remove_file(&path);
            assert_eq!(both.records, one.records, "seed {seed}");
            assert_eq!(both.count, one.count, "seed {seed}");
            assert!(one.count > one.records.len() as u64, "seed {seed}: no empty records");
            assert_eq!(format!("{:?}", both.end), format!("{:?}", one.end), "seed {seed}");
            assert!(one.records.len() > 1000, "seed {seed}: {} records", one.records.len());
            if cut == 0 {
                assert!(matches!(one.end, ChainEnd::Marker(_)), "seed {seed}: {:?}", one.end);
            }
            assert!(steps.len() >= 1 && steps.is_sorted(), "seed {seed}: {steps:?}");
            // And through the public entry point, as the mapping gives it.
            let mapped = FlattenedSource::parse(&flat).map(|s| format!("{s:?}"));
            let read = FlattenedSource::parse_from(&flat, &mut |_| {}, Some(&file)).map(|s| format!("{s:?}"));
            assert_eq!(read, mapped, "seed {seed}");
        }
    }

    #[test]
    fn a_second_walk_that_starts_on_bytes_that_look_like_headers_changes_nothing() {
        // The middle of the file is a run of fake headers: the second walk
        // starts on them; what it gives is used only from a header the
        // first walk reaches.
        let mut fake = vec![0u8; 9 << 20];
        for chunk in fake.chunks_exact_mut(32) {
            chunk[..8].copy_from_slice(&0x2000u64.to_be_bytes());
            chunk[8..16].copy_from_slice(&16u64.to_be_bytes());
        }
        let tail: Vec<u8> = vec![7u8; 8 << 20];
        let flat = flatten([(0u64, &fake[..]), (fake.len() as u64, &tail[..])]);
        let path = std::env::temp_dir().join(format!("lpstack-split-fake-{}", std::process::id()));
        std::fs::write(&path, &flat).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let both = walk_split(&flat, &file, &mut |_| {});
        let _ = std::fs::remove_file(&path);
        assert_eq!(both.records, walk_chain(&flat, None, HEADER_SIZE, None, &mut |_| {}).records);
        assert_eq!(both.records.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(), [(0, 9 << 20), (9 << 20, 8 << 20)]);
        assert!(matches!(both.end, ChainEnd::Marker(_)), "{:?}", both.end);
    }
}
