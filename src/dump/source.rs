//! Random access to the bytes of a dump file that may not be stored in one
//! piece: a plain slice (the mmapped file) or a makedumpfile flattened
//! stream read in place. The kdump reader is generic over this.

use std::borrow::Cow;

/// Why a byte range could not be read from a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The range runs past the end of the (logical) file, or wraps around.
    #[error("file offset {offset:#x}+{len:#x} is past the end of the data ({file_len:#x} bytes)")]
    OutOfBounds {
        /// Start of the range.
        offset: u64,
        /// Length of the range, in bytes.
        len: u64,
        /// Size of the (logical) file, in bytes.
        file_len: u64,
    },
    /// A flattened dump has no record for part of the range.
    #[error("flattened dump: no record holds file offset {offset:#x}")]
    Hole {
        /// The first offset no record covers.
        offset: u64,
    },
}

/// A read-only file image addressed by file offset.
pub trait ByteSource<'data> {
    /// Size of the (logical) file.
    fn len(&self) -> u64;

    /// True if the file has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes at `offset..offset+len` when they are stored contiguously.
    fn slice(&self, offset: u64, len: usize) -> Option<&'data [u8]>;

    /// Copies `offset..offset+buf.len()` into `buf`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError>;

    /// Fails unless every byte of the range is present. Called before
    /// allocating a buffer for a range, so that a size claimed by the input
    /// never turns into an allocation the file cannot back.
    fn check(&self, offset: u64, len: u64) -> Result<(), SourceError>;

    /// The range, borrowed when contiguous, else copied (after `check`).
    fn range(&self, offset: u64, len: u64) -> Result<Cow<'data, [u8]>, SourceError> {
        self.check(offset, len)?;
        let n = usize::try_from(len).map_err(|_| out_of_bounds(offset, len, self.len()))?;
        if let Some(s) = self.slice(offset, n) {
            return Ok(Cow::Borrowed(s));
        }
        let mut v = vec![0u8; n];
        self.read_at(offset, &mut v)?;
        Ok(Cow::Owned(v))
    }
}

pub(crate) fn out_of_bounds(offset: u64, len: u64, file_len: u64) -> SourceError {
    SourceError::OutOfBounds { offset, len, file_len }
}

/// The whole file in memory (or mmapped).
#[derive(Clone, Copy, Debug)]
pub struct SliceSource<'data>(pub &'data [u8]);

impl<'data> ByteSource<'data> for SliceSource<'data> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn slice(&self, offset: u64, len: usize) -> Option<&'data [u8]> {
        let start = usize::try_from(offset).ok()?;
        self.0.get(start..start.checked_add(len)?)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let src = self.slice(offset, buf.len()).ok_or(out_of_bounds(offset, buf.len() as u64, self.len()))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), SourceError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(out_of_bounds(offset, len, self.len())),
        }
    }
}

/// Little-endian field readers over a byte slice; `None` past the end.
pub(crate) fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

pub(crate) fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_source_bounds() {
        let data = [1u8, 2, 3, 4];
        let s = SliceSource(&data);
        assert_eq!(s.slice(1, 2), Some(&data[1..3]));
        assert_eq!(s.slice(3, 2), None);
        assert_eq!(s.slice(u64::MAX, 1), None);
        let mut b = [0u8; 2];
        s.read_at(2, &mut b).unwrap();
        assert_eq!(b, [3, 4]);
        assert!(s.read_at(3, &mut b).is_err());
        assert!(s.check(0, 4).is_ok());
        assert!(s.check(1, u64::MAX).is_err());
        // A huge claimed range fails before any allocation.
        assert_eq!(s.range(0, 1 << 40).unwrap_err(), SourceError::OutOfBounds { offset: 0, len: 1 << 40, file_len: 4 });
    }

    #[test]
    fn field_readers() {
        let b = [1u8, 0, 0, 0, 0, 0, 0, 0, 9];
        assert_eq!(le_u32(&b, 0), Some(1));
        assert_eq!(le_u64(&b, 0), Some(1));
        assert_eq!(be_u64(&b, 1), Some(9));
        assert_eq!(le_u64(&b, 2), None);
        assert_eq!(le_u16(&b, usize::MAX), None);
    }
}
