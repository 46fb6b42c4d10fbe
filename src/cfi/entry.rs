//! CIE and FDE headers of `.eh_frame` and `.debug_frame`, read in place:
//! what a lookup needs (the FDE's range, the CIE's factors and encodings,
//! both instruction streams) without gimli's general parse. Anything
//! unusual is `Unsupported`, and the caller falls back to gimli.

/// Why an entry or program was not read here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Ran past the entry's end, or a length or offset points outside.
    #[error("truncated entry")]
    Truncated,
    /// Valid DWARF that this reader leaves to gimli (an augmentation or
    /// pointer encoding it does not know, `DW_CFA_set_loc`...).
    #[error("unsupported augmentation, encoding or instruction")]
    Unsupported,
    /// Not valid: a CIE where an FDE should be, a bad state pop...
    #[error("malformed entry")]
    Malformed,
}

/// Which section the entries come from: their CIE pointers and ids differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    EhFrame,
    DebugFrame,
}

/// Base addresses for `DW_EH_PE_*rel` pointers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PointerBases {
    /// Address of the section's first byte (`pcrel`).
    pub section: u64,
    pub text: u64,
    /// `.got` for `.eh_frame`, the header itself for `.eh_frame_hdr`.
    pub data: u64,
}

/// A little-endian reader over one entry.
#[derive(Clone, Copy)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

const DW_EH_PE_OMIT: u8 = 0xff;

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        Cursor { data, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], EntryError> {
        let end = self.pos.checked_add(n).ok_or(EntryError::Truncated)?;
        let b = self.data.get(self.pos..end).ok_or(EntryError::Truncated)?;
        self.pos = end;
        Ok(b)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], EntryError> {
        self.bytes(N)?.try_into().map_err(|_| EntryError::Truncated)
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, EntryError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, EntryError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, EntryError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, EntryError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    #[inline]
    pub fn uleb(&mut self) -> Result<u64, EntryError> {
        // Most operands (registers, small offsets) are one byte.
        if let Some(&b) = self.data.get(self.pos)
            && b & 0x80 == 0
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(EntryError::Malformed)
    }

    #[inline]
    pub fn sleb(&mut self) -> Result<i64, EntryError> {
        let mut v = 0i64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            if b & 0x80 == 0 {
                if shift + 7 < 64 && b & 0x40 != 0 {
                    v |= -1i64 << (shift + 7);
                }
                return Ok(v);
            }
        }
        Err(EntryError::Malformed)
    }

    /// A value in the format part (low nibble) of a `DW_EH_PE_*` encoding,
    /// without its application.
    pub fn pointer_value(&mut self, enc: u8) -> Result<u64, EntryError> {
        Ok(match enc & 0x0f {
            0x00 | 0x04 | 0x0c => self.u64()?,
            0x01 => self.uleb()?,
            0x02 => u64::from(self.u16()?),
            0x03 => u64::from(self.u32()?),
            0x09 => self.sleb()? as u64,
            0x0a => self.u16()? as i16 as u64,
            0x0b => self.u32()? as i32 as u64,
            _ => return Err(EntryError::Unsupported),
        })
    }

    /// A pointer in encoding `enc`, relative to what its application says.
    pub fn pointer(&mut self, enc: u8, bases: &PointerBases) -> Result<u64, EntryError> {
        let field = bases.section.wrapping_add(self.pos as u64);
        let v = self.pointer_value(enc)?;
        let base = match enc & 0x70 {
            0x00 => 0,
            0x10 => field,
            0x20 => bases.text,
            0x30 => bases.data,
            _ => return Err(EntryError::Unsupported),
        };
        if enc & 0x80 != 0 {
            return Err(EntryError::Unsupported); // indirect: a load at run time
        }
        Ok(base.wrapping_add(v))
    }
}

/// One entry's extent: its id field and content follow the length.
struct Extent {
    /// Offset of the CIE id / CIE pointer field.
    id_at: usize,
    /// Offset just past the entry.
    end: usize,
    /// 64-bit DWARF: 8-byte ids.
    wide: bool,
}

fn extent(section: &[u8], offset: usize) -> Result<Option<Extent>, EntryError> {
    let mut c = Cursor::new(section, offset);
    let len32 = c.u32()?;
    let (len, wide) = match len32 {
        0 => return Ok(None), // .eh_frame's terminator
        0xffff_ffff => (c.u64()?, true),
        0xffff_fff0.. => return Err(EntryError::Malformed),
        n => (u64::from(n), false),
    };
    let id_at = c.pos();
    let end = usize::try_from(len).ok().and_then(|l| id_at.checked_add(l)).ok_or(EntryError::Truncated)?;
    if end > section.len() {
        return Err(EntryError::Truncated);
    }
    Ok(Some(Extent { id_at, end, wide }))
}

/// The offset of the entry after the one at `offset`, if its length is
/// readable.
pub(crate) fn next_entry(section: &[u8], offset: usize) -> Option<usize> {
    extent(section, offset).ok().flatten().map(|e| e.end)
}

/// The parts of a CIE a lookup needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cie<'a> {
    pub code_align: u64,
    pub data_align: i64,
    pub ra_register: u64,
    /// Encoding of the FDEs' pc_begin and pc_range.
    pub fde_encoding: u8,
    /// Augmentation data in FDEs (a 'z' augmentation).
    pub fde_has_augmentation: bool,
    /// 'S': a signal trampoline, whose caller's pc is exact.
    pub signal: bool,
    pub instructions: &'a [u8],
}

/// The parts of an FDE a lookup needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fde<'a> {
    pub cie: Cie<'a>,
    pub pc_begin: u64,
    pub pc_end: u64,
    pub instructions: &'a [u8],
    /// Offset just past the entry: the next entry starts there.
    pub next: usize,
}

/// What the entry at `offset` is.
pub(crate) enum Entry<'a> {
    Cie {
        next: usize,
    },
    Fde(Fde<'a>),
    /// `.eh_frame`'s zero terminator.
    End,
}

fn is_cie_id(flavor: Flavor, id: u64, wide: bool) -> bool {
    match flavor {
        Flavor::EhFrame => id == 0,
        Flavor::DebugFrame => id == if wide { u64::MAX } else { u64::from(u32::MAX) },
    }
}

fn parse_cie(section: &[u8], offset: usize, flavor: Flavor) -> Result<Cie<'_>, EntryError> {
    let ext = extent(section, offset)?.ok_or(EntryError::Malformed)?;
    let entry = section.get(..ext.end).ok_or(EntryError::Truncated)?;
    let mut c = Cursor::new(entry, ext.id_at);
    let id = if ext.wide { c.u64()? } else { u64::from(c.u32()?) };
    if !is_cie_id(flavor, id, ext.wide) {
        return Err(EntryError::Malformed);
    }
    let version = c.u8()?;
    if !matches!(version, 1 | 3 | 4) {
        return Err(EntryError::Unsupported);
    }
    let aug_start = c.pos();
    let aug_len = entry[aug_start..].iter().position(|&b| b == 0).ok_or(EntryError::Truncated)?;
    let augmentation = c.bytes(aug_len + 1)?;
    let augmentation = &augmentation[..aug_len];
    if version == 4 {
        let (address_size, segment_size) = (c.u8()?, c.u8()?);
        if address_size != 8 || segment_size != 0 {
            return Err(EntryError::Unsupported);
        }
    }
    let code_align = c.uleb()?;
    let data_align = c.sleb()?;
    let ra_register = if version == 1 { u64::from(c.u8()?) } else { c.uleb()? };
    let mut cie = Cie {
        code_align,
        data_align,
        ra_register,
        fde_encoding: 0,
        fde_has_augmentation: false,
        signal: false,
        instructions: &[],
    };
    match augmentation.split_first() {
        None => {}
        Some((b'z', letters)) => {
            let len = usize::try_from(c.uleb()?).map_err(|_| EntryError::Truncated)?;
            let data_end = c.pos().checked_add(len).ok_or(EntryError::Truncated)?;
            // Pointers in augmentation data are relative to the whole
            // section, as the cursor is.
            let mut a = Cursor::new(entry.get(..data_end).ok_or(EntryError::Truncated)?, c.pos());
            for &l in letters {
                match l {
                    b'L' => {
                        a.u8()?;
                    }
                    b'P' => {
                        let enc = a.u8()?;
                        a.pointer_value(enc)?;
                    }
                    b'R' => cie.fde_encoding = a.u8()?,
                    b'S' => cie.signal = true,
                    _ => return Err(EntryError::Unsupported),
                }
            }
            cie.fde_has_augmentation = true;
            c = Cursor::new(entry, data_end);
        }
        Some(_) => return Err(EntryError::Unsupported),
    }
    if cie.fde_encoding == DW_EH_PE_OMIT {
        return Err(EntryError::Unsupported);
    }
    cie.instructions = entry.get(c.pos()..).ok_or(EntryError::Truncated)?;
    Ok(cie)
}

/// Reads the entry at `offset` of `section` (whose first byte is at
/// `bases.section`). A CIE is skipped, not parsed.
pub(crate) fn parse_entry<'a>(
    section: &'a [u8],
    offset: usize,
    flavor: Flavor,
    bases: &PointerBases,
) -> Result<Entry<'a>, EntryError> {
    let Some(ext) = extent(section, offset)? else { return Ok(Entry::End) };
    let entry = &section[..ext.end];
    let mut c = Cursor::new(entry, ext.id_at);
    let id = if ext.wide { c.u64()? } else { u64::from(c.u32()?) };
    if is_cie_id(flavor, id, ext.wide) {
        return Ok(Entry::Cie { next: ext.end });
    }
    let cie_offset = match flavor {
        // Relative to the pointer field itself.
        Flavor::EhFrame => (ext.id_at as u64).checked_sub(id).ok_or(EntryError::Malformed)?,
        Flavor::DebugFrame => id,
    };
    let cie_offset = usize::try_from(cie_offset).map_err(|_| EntryError::Malformed)?;
    let cie = parse_cie(section, cie_offset, flavor)?;
    let enc = match flavor {
        Flavor::EhFrame => cie.fde_encoding,
        Flavor::DebugFrame => 0, // absolute, address-sized
    };
    let pc_begin = c.pointer(enc, bases)?;
    let pc_range = c.pointer_value(enc)?;
    if cie.fde_has_augmentation {
        let len = usize::try_from(c.uleb()?).map_err(|_| EntryError::Truncated)?;
        c.bytes(len)?;
    }
    let instructions = entry.get(c.pos()..).ok_or(EntryError::Truncated)?;
    Ok(Entry::Fde(Fde { cie, pc_begin, pc_end: pc_begin.wrapping_add(pc_range), instructions, next: ext.end }))
}

/// The FDE at `offset`; a CIE or terminator there is malformed.
pub(crate) fn parse_fde<'a>(
    section: &'a [u8],
    offset: usize,
    flavor: Flavor,
    bases: &PointerBases,
) -> Result<Fde<'a>, EntryError> {
    match parse_entry(section, offset, flavor, bases)? {
        Entry::Fde(f) => Ok(f),
        _ => Err(EntryError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uleb(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    #[test]
    fn leb128() {
        for v in [0u64, 1, 127, 128, 300, 1 << 40, u64::MAX] {
            let mut b = Vec::new();
            uleb(v, &mut b);
            assert_eq!(Cursor::new(&b, 0).uleb(), Ok(v));
        }
        for (bytes, v) in
            [(&[0x7f][..], -1i64), (&[0x78], -8), (&[0x80, 0x7f], -128), (&[0x3f], 63), (&[0xc0, 0x00], 64)]
        {
            assert_eq!(Cursor::new(bytes, 0).sleb(), Ok(v), "{bytes:x?}");
        }
        assert_eq!(Cursor::new(&[0x80; 3], 0).uleb(), Err(EntryError::Truncated));
        assert_eq!(Cursor::new(&[0x80; 12], 0).uleb(), Err(EntryError::Malformed));
    }

    #[test]
    fn pointer_encodings() {
        let bases = PointerBases { section: 0x1000, text: 0x2000, data: 0x3000 };
        let bytes = (-16i32).to_le_bytes();
        // pcrel sdata4 at offset 0: field address 0x1000.
        assert_eq!(Cursor::new(&bytes, 0).pointer(0x1b, &bases), Ok(0x1000 - 16));
        assert_eq!(Cursor::new(&bytes, 0).pointer(0x3b, &bases), Ok(0x3000 - 16));
        assert_eq!(Cursor::new(&bytes, 0).pointer(0x23, &bases), Ok(0x2000 + 0xffff_fff0));
        assert_eq!(Cursor::new(&bytes, 0).pointer(0x9b, &bases), Err(EntryError::Unsupported));
        assert_eq!(Cursor::new(&bytes, 0).pointer(0x4b, &bases), Err(EntryError::Unsupported));
        assert_eq!(Cursor::new(&bytes, 0).pointer(0x0c, &bases), Err(EntryError::Truncated));
    }

    /// A hand-built `.eh_frame`: CIE "zR" (pcrel sdata4), one FDE, end.
    fn eh_frame() -> Vec<u8> {
        let mut s = Vec::new();
        let mut cie = vec![0, 0, 0, 0, 1];
        cie.extend(b"zR\0");
        cie.extend([1, 0x78, 16, 1, 0x1b]); // caf 1, daf -8, ra 16, aug len 1, R
        cie.extend([0x0c, 7, 8, 0x90, 1]); // def_cfa rsp+8; offset ra, cfa-8
        s.extend((cie.len() as u32).to_le_bytes());
        s.extend(cie);
        let fde_at = s.len();
        let mut fde = Vec::new();
        fde.extend(((fde_at + 4) as u32).to_le_bytes()); // back to offset 0
        let field = 0x5000u64 + (fde_at + 8) as u64;
        fde.extend(((0x4000i64 - field as i64) as i32).to_le_bytes()); // pc_begin 0x4000
        fde.extend(0x40u32.to_le_bytes());
        fde.push(0);
        fde.extend([0x41, 0x0e, 16]); // advance 1, def_cfa_offset 16
        s.extend((fde.len() as u32).to_le_bytes());
        s.extend(fde);
        s.extend([0, 0, 0, 0]);
        s
    }

    #[test]
    fn reads_hand_built_entries() {
        let s = eh_frame();
        let bases = PointerBases { section: 0x5000, ..Default::default() };
        let Ok(Entry::Cie { next }) = parse_entry(&s, 0, Flavor::EhFrame, &bases) else { panic!() };
        let f = parse_fde(&s, next, Flavor::EhFrame, &bases).unwrap();
        assert_eq!((f.pc_begin, f.pc_end), (0x4000, 0x4040));
        assert_eq!((f.cie.code_align, f.cie.data_align, f.cie.ra_register), (1, -8, 16));
        assert!(!f.cie.signal);
        assert_eq!(f.cie.instructions, &[0x0c, 7, 8, 0x90, 1]);
        assert_eq!(f.instructions, &[0x41, 0x0e, 16]);
        assert!(matches!(parse_entry(&s, f.next, Flavor::EhFrame, &bases), Ok(Entry::End)));
        // A CIE where an FDE is expected; truncation anywhere.
        assert_eq!(parse_fde(&s, 0, Flavor::EhFrame, &bases).err(), Some(EntryError::Malformed));
        for cut in 0..s.len() - 4 {
            let r = parse_fde(&s[..cut], next, Flavor::EhFrame, &bases);
            assert!(r.is_err() || cut >= f.next, "cut {cut}");
        }
        // An unknown augmentation letter is left to gimli.
        let mut odd = s.clone();
        odd[10] = b'X';
        assert_eq!(parse_fde(&odd, next, Flavor::EhFrame, &bases).err(), Some(EntryError::Unsupported));
    }
}
