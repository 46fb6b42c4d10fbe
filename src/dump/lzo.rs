//! LZO1X block decoding, for makedumpfile's `-l` pages (`lzo1x_1`).
//!
//! Written here because the permissively licensed decoder (`lzo` 0.1,
//! Apache-2.0) copies matches a byte at a time, which made it 40% of a
//! check of an lzo dump; the fast ones are GPL. This one is safe code too,
//! and gives the same output on every page of the real dumps (tests and
//! the `lzo` fuzz target compare the two). Overlapping matches, the run
//! lengths of zero pages, are copied in chunks that double.
//!
//! The format, per instruction byte `t` and the state `s` left by the one
//! before (the count of literals it copied, 4 for a long run):
//! - first byte > 17: `t - 17` literals;
//! - `t < 16`, `s == 0`: `t + 3` literals (`t == 0`: 18 + an extended count);
//! - `t < 16`, `s` in 1..=3: a 2-byte match at distance `1 + (t >> 2) + (next << 2)`;
//! - `t < 16`, `s == 4`: a 3-byte match, as above plus 2048;
//! - `t >= 64`: `(t >> 5) + 1` bytes at `1 + ((t >> 2) & 7) + (next << 3)`;
//! - `t >= 32`: `(t & 31) + 2` bytes (0: 33 + extended) at `1 + (le16 >> 2)`;
//! - `t >= 16`: `(t & 7) + 2` bytes (0: 9 + extended) at
//!   `16384 + ((t & 8) << 11) + (le16 >> 2)`; distance 16384 ends the block.
//!
//! After a match, the low two bits of its last byte (or of the le16) are
//! the count of literals that follow. An extended count is 255 per zero
//! byte plus the first non-zero byte.

/// Why an LZO1X block did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LzoError {
    /// The block ended inside an instruction.
    #[error("the block ends early")]
    InputOverrun,
    /// The output would not fit the buffer.
    #[error("the output is larger than the buffer")]
    OutputOverrun,
    /// A match reaches back before the start of the output.
    #[error("a match reaches before the output")]
    LookbehindOverrun,
    /// A bad end marker, or bytes after it.
    #[error("malformed end of block")]
    Malformed,
}

/// Reads the block's bytes.
struct Input<'a> {
    src: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Result<usize, LzoError> {
        let b = *self.src.get(self.at).ok_or(LzoError::InputOverrun)?;
        self.at += 1;
        Ok(b as usize)
    }

    fn le16(&mut self) -> Result<usize, LzoError> {
        let b = self.src.get(self.at..self.at + 2).ok_or(LzoError::InputOverrun)?;
        self.at += 2;
        Ok(b[0] as usize | (b[1] as usize) << 8)
    }

    /// `base` + 255 per zero byte + the first non-zero byte.
    fn extended(&mut self, base: usize) -> Result<usize, LzoError> {
        let rest = self.src.get(self.at..).ok_or(LzoError::InputOverrun)?;
        let zeros = rest.iter().position(|&b| b != 0).ok_or(LzoError::InputOverrun)?;
        self.at += zeros + 1;
        // Each zero is a byte of input, so this cannot overflow.
        Ok(base + zeros * 255 + rest[zeros] as usize)
    }

    /// Copies `n` literal bytes to `out` at `op`.
    fn literals(&mut self, out: &mut [u8], op: &mut usize, n: usize) -> Result<(), LzoError> {
        let from = self.src.get(self.at..self.at + n).ok_or(LzoError::InputOverrun)?;
        out.get_mut(*op..*op + n).ok_or(LzoError::OutputOverrun)?.copy_from_slice(from);
        self.at += n;
        *op += n;
        Ok(())
    }
}

/// Copies `len` bytes from `distance` back to `op`.
fn copy_match(out: &mut [u8], op: &mut usize, distance: usize, len: usize) -> Result<(), LzoError> {
    if distance == 0 || distance > *op {
        return Err(LzoError::LookbehindOverrun);
    }
    if len > out.len() - *op {
        return Err(LzoError::OutputOverrun);
    }
    let from = *op - distance;
    if distance >= len {
        out.copy_within(from..from + len, *op);
    } else {
        // The bytes repeat with period `distance`: what is copied so far
        // can be copied again, so each copy doubles.
        let mut done = 0;
        while done < len {
            let n = (*op + done - from).min(len - done);
            out.copy_within(from..from + n, *op + done);
            done += n;
        }
    }
    *op += len;
    Ok(())
}

/// Decodes one LZO1X block into `out`; returns the bytes written. The
/// whole of `src` must be the block, up to and including its end marker.
pub fn decompress_into(src: &[u8], out: &mut [u8]) -> Result<usize, LzoError> {
    let mut input = Input { src, at: 0 };
    let mut op = 0usize;
    let mut state = 0usize;
    if let Some(&first) = src.first()
        && first > 17
    {
        input.at = 1;
        let n = first as usize - 17;
        input.literals(out, &mut op, n)?;
        state = n.min(4);
    }
    loop {
        let t = input.byte()?;
        let (distance, len, next);
        if t >= 64 {
            next = t & 3;
            distance = 1 + ((t >> 2) & 7) + (input.byte()? << 3);
            len = (t >> 5) + 1;
        } else if t >= 32 {
            len = if t & 31 == 0 { input.extended(33)? } else { (t & 31) + 2 };
            let d = input.le16()?;
            distance = 1 + (d >> 2);
            next = d & 3;
        } else if t >= 16 {
            len = if t & 7 == 0 { input.extended(9)? } else { (t & 7) + 2 };
            let d = input.le16()?;
            next = d & 3;
            let far = ((t & 8) << 11) + (d >> 2);
            if far == 0 {
                // The end marker: `11 00 00`, and nothing after it.
                return if len == 3 && input.at == src.len() { Ok(op) } else { Err(LzoError::Malformed) };
            }
            distance = far + 0x4000;
        } else if state == 0 {
            let n = if t == 0 { input.extended(18)? } else { t + 3 };
            input.literals(out, &mut op, n)?;
            state = 4;
            continue;
        } else {
            next = t & 3;
            let high = input.byte()? << 2;
            (distance, len) = if state == 4 { (2049 + (t >> 2) + high, 3) } else { (1 + (t >> 2) + high, 2) };
        }
        copy_match(out, &mut op, distance, len)?;
        input.literals(out, &mut op, next)?;
        state = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const END: [u8; 3] = [0x11, 0, 0];

    fn decode(src: &[u8], room: usize) -> Result<Vec<u8>, LzoError> {
        let mut out = vec![0u8; room];
        let n = decompress_into(src, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn literals_then_end() {
        let mut s = vec![17 + 5];
        s.extend_from_slice(b"hello");
        s.extend_from_slice(&END);
        assert_eq!(decode(&s, 64).unwrap(), b"hello");
        // A long literal run after a state-0 start: t = 0, extended by
        // one zero byte and 7: 18 + 255 + 7 = 280 bytes.
        let run: Vec<u8> = (0..280u32).map(|i| i as u8).collect();
        let mut s = vec![0, 0, 7];
        s.extend_from_slice(&run);
        s.extend_from_slice(&END);
        assert_eq!(decode(&s, 512).unwrap(), run);
    }

    #[test]
    fn every_match_form() {
        // "abcd", then an M2 match (t >= 64) of 4 bytes at distance 4 with
        // one trailing literal, then a 2-byte short match (state 1) at
        // distance 1, then an M3 match of 5 bytes at distance 9.
        let mut s = vec![17 + 4];
        s.extend_from_slice(b"abcd");
        // M2: len 4 -> t >> 5 = 3; distance 4 -> ((t >> 2) & 7) = 3, next 0; 1 literal.
        s.push((3 << 5) | (3 << 2) | 1);
        s.push(0);
        s.push(b'x');
        // State 1: t < 16 is a 2-byte match at 1 + (t >> 2) + (h << 2) = 1.
        s.push(0);
        s.push(0);
        // M3: len 5 -> t = 32 | 3; le16 = (distance - 1) << 2 = 8 << 2, next 0.
        s.push(32 | 3);
        s.extend_from_slice(&((8u16) << 2).to_le_bytes());
        s.extend_from_slice(&END);
        assert_eq!(decode(&s, 64).unwrap(), b"abcdabcdxxxcdabc");
    }

    #[test]
    fn far_match() {
        // 16,400 literals (t = 0, 64 zero bytes and 62: 18 + 64 * 255 + 62),
        // then an M4 match of 4 bytes at distance 16384 + 6.
        let run: Vec<u8> = (0..16_400u32).map(|i| (i * 7 + i / 256) as u8).collect();
        let mut s = vec![0];
        s.extend(std::iter::repeat_n(0, 64));
        s.push(62);
        s.extend_from_slice(&run);
        s.push(16 | 2);
        s.extend_from_slice(&((6u16) << 2).to_le_bytes());
        s.extend_from_slice(&END);
        let mut want = run.clone();
        want.extend_from_slice(&run[10..14]);
        assert_eq!(decode(&s, 20_000).unwrap(), want);
    }

    #[test]
    fn overlapping_run_of_one_byte() {
        // One zero literal, then an M3 match at distance 1 for 4095 bytes:
        // a zero page, the common case in kernel memory.
        let mut s = vec![17 + 1, 0, 0x20];
        let mut t = 4095 - 33;
        while t > 255 {
            s.push(0);
            t -= 255;
        }
        s.push(t as u8);
        s.extend_from_slice(&0u16.to_le_bytes());
        s.extend_from_slice(&END);
        assert_eq!(decode(&s, 4096).unwrap(), vec![0u8; 4096]);
    }

    #[test]
    fn bad_blocks_are_named_errors() {
        let mut ok = vec![17 + 4];
        ok.extend_from_slice(b"abcd");
        ok.extend_from_slice(&END);
        assert_eq!(decode(&ok, 4), Ok(b"abcd".to_vec()));
        assert_eq!(decode(&ok, 3), Err(LzoError::OutputOverrun));
        assert_eq!(decode(&ok[..ok.len() - 1], 8), Err(LzoError::InputOverrun));
        assert_eq!(decode(&[], 8), Err(LzoError::InputOverrun));
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing, 8), Err(LzoError::Malformed));
        // A match 5 bytes back after 4 bytes of output.
        let mut far = vec![17 + 4];
        far.extend_from_slice(b"abcd");
        far.push(32 | 3);
        far.extend_from_slice(&((4u16) << 2).to_le_bytes());
        far.extend_from_slice(&END);
        assert_eq!(decode(&far, 64), Err(LzoError::LookbehindOverrun));
        // A literal count past the end of the input.
        assert_eq!(decode(&[17 + 9, b'a'], 64), Err(LzoError::InputOverrun));
        // An extended count that never ends.
        assert_eq!(decode(&[0, 0, 0], 64), Err(LzoError::InputOverrun));
    }

    /// Streams of random instructions, valid and not: the same output or
    /// failure as the `lzo` crate's decoder.
    #[test]
    fn agrees_with_the_lzo_crate() {
        let mut next = crate::test_rng(0x9e3779b97f4a7c15);
        let (mut ours, mut theirs) = (vec![0u8; 4096], vec![0u8; 4096]);
        let mut decoded = 0;
        for _ in 0..20_000 {
            let mut s = vec![17 + 8];
            s.extend((0..8).map(|_| next() as u8));
            for _ in 0..(next() % 24) {
                let r = next();
                let kind = r % 4;
                let byte = (r >> 8) as u8;
                match kind {
                    0 => s.extend_from_slice(&[64 | (byte & 0x3f) | 0x80 * (byte & 1), (r >> 16) as u8 & 3]),
                    1 => s.extend_from_slice(&[32 | (byte & 31), (r >> 16) as u8, (r >> 24) as u8 & 1]),
                    2 => s.extend_from_slice(&[(byte & 15), (r >> 16) as u8 & 1]),
                    _ => s.extend((0..(r >> 16) % 4).map(|_| next() as u8)),
                }
            }
            s.extend_from_slice(&END);
            let a = decompress_into(&s, &mut ours);
            let b = lzo::decompress_into(&s, &mut theirs);
            assert_eq!(a.is_ok(), b.is_ok(), "{s:02x?}: {a:?} vs {b:?}");
            if let (Ok(n), Ok(m)) = (a, b) {
                assert_eq!(n, m);
                assert_eq!(ours[..n], theirs[..m]);
                decoded += 1;
            }
        }
        assert!(decoded > 500, "only {decoded} streams were valid");
    }
}
