//! One ORC entry: `s16 sp_offset; s16 bp_offset;` then 16 flag bits whose
//! layout depends on the kernel version (see [`OrcFormat`]).

use super::OrcFormat;

/// Bytes per `.orc_unwind` entry.
pub const ORC_ENTRY_SIZE: usize = 6;

/// Base registers of the ORC format (arch/x86/include/asm/orc_types.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrcReg {
    /// 0. As `sp_reg`: no unwind data. As `bp_reg`: this frame did not save rbp.
    Undefined,
    /// 1, `bp_reg` only: rbp is saved at CFA + `bp_offset`.
    PrevSp,
    /// 2, `sp_reg` only: CFA = rdx (from saved registers), no offset.
    Dx,
    /// 3, `sp_reg` only: CFA = rdi (from saved registers), no offset.
    Di,
    /// 4. As `sp_reg`: CFA = rbp + `sp_offset`. As `bp_reg`: rbp is saved at rbp + `bp_offset`.
    Bp,
    /// 5, `sp_reg` only: CFA = rsp + `sp_offset`.
    Sp,
    /// 6, `sp_reg` only: CFA = r10 (from saved registers), no offset.
    R10,
    /// 7, `sp_reg` only: CFA = r13 (from saved registers), no offset.
    R13,
    /// 8, `sp_reg` only: CFA = the word at rbp + `sp_offset`.
    BpIndirect,
    /// 9, `sp_reg` only: CFA = the word at rsp, plus `sp_offset` (since 5.12).
    SpIndirect,
    /// 10, added by newer kernels for clang-built entry code.
    Ax,
    /// Any other value (11-15), kept raw.
    Unknown(u8),
}

impl OrcReg {
    /// Decodes a 4-bit `sp_reg`/`bp_reg` field; unknown values become `Unknown`.
    #[inline]
    pub fn from_raw(raw: u8) -> Self {
        match raw {
            0 => OrcReg::Undefined,
            1 => OrcReg::PrevSp,
            2 => OrcReg::Dx,
            3 => OrcReg::Di,
            4 => OrcReg::Bp,
            5 => OrcReg::Sp,
            6 => OrcReg::R10,
            7 => OrcReg::R13,
            8 => OrcReg::BpIndirect,
            9 => OrcReg::SpIndirect,
            10 => OrcReg::Ax,
            other => OrcReg::Unknown(other),
        }
    }
}

/// The frame kind, normalised over all formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrcType {
    /// No unwind data: unwinding must fail (v3 type 0; v1/v2 sp_reg
    /// UNDEFINED without the end bit).
    Undefined,
    /// The outermost frame: a clean end (v3 type 1; v1/v2 end bit).
    EndOfStack,
    /// A call frame: return address at CFA - 8, the caller's sp is the CFA.
    Call,
    /// A full `pt_regs` at the CFA.
    Regs,
    /// An iret frame at the CFA (was REGS_IRET).
    RegsPartial,
    /// A type value with no known meaning, kept raw.
    Unknown(u8),
}

const V3_TYPES: [OrcType; 8] = [
    OrcType::Undefined,
    OrcType::EndOfStack,
    OrcType::Call,
    OrcType::Regs,
    OrcType::RegsPartial,
    OrcType::Unknown(5),
    OrcType::Unknown(6),
    OrcType::Unknown(7),
];

const OLD_TYPES: [OrcType; 4] = [OrcType::Call, OrcType::Regs, OrcType::RegsPartial, OrcType::Unknown(3)];

/// A decoded entry. `raw_type` and `end` keep what the bytes said, for
/// printing exactly as objtool does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrcEntry {
    /// `orc_entry.sp_offset`: CFA = `sp_reg` + this, in bytes (see [`OrcReg`] for the exceptions).
    pub sp_offset: i16,
    /// `orc_entry.bp_offset`: rbp is saved at `bp_reg` + this, in bytes.
    pub bp_offset: i16,
    /// `orc_entry.sp_reg`: what the CFA is computed from.
    pub sp_reg: OrcReg,
    /// `orc_entry.bp_reg`: where the caller's rbp is saved, if anywhere.
    pub bp_reg: OrcReg,
    /// `orc_entry.type`, normalised over the formats.
    pub kind: OrcType,
    /// The ip is not a return address (an interrupted or signalled frame):
    /// look up the next frame at ip, not ip-1.
    pub signal: bool,
    /// `sp_reg` as stored: the low nibble of byte 4.
    pub raw_sp_reg: u8,
    /// `bp_reg` as stored: the high nibble of byte 4.
    pub raw_bp_reg: u8,
    /// The type bits as stored: 2 bits in v1/v2, 3 in v3.
    pub raw_type: u8,
    /// The v1/v2 end bit (always false for v3).
    pub end: bool,
}

impl OrcEntry {
    /// Decodes six bytes in the given format.
    #[inline]
    pub fn decode(bytes: [u8; ORC_ENTRY_SIZE], format: OrcFormat) -> Self {
        let raw_sp_reg = bytes[4] & 0xf;
        let raw_bp_reg = bytes[4] >> 4;
        let flags = bytes[5];
        // type, signal, end per layout; v1 has no signal bit (see below).
        let (raw_type, signal_bit, end) = match format {
            OrcFormat::V1 => (flags & 3, false, flags & 4 != 0),
            OrcFormat::V2 => (flags & 3, flags & 4 != 0, flags & 8 != 0),
            OrcFormat::V3 => (flags & 7, flags & 8 != 0, false),
        };
        let kind = if format == OrcFormat::V3 {
            V3_TYPES[raw_type as usize]
        } else if raw_sp_reg == 0 {
            // The v1/v2 unwinder checks sp_reg before the type.
            if end { OrcType::EndOfStack } else { OrcType::Undefined }
        } else {
            OLD_TYPES[raw_type as usize]
        };
        // v1 has no signal bit: the unwinder treats regs frames as signal frames.
        let signal = match format {
            OrcFormat::V1 => matches!(kind, OrcType::Regs | OrcType::RegsPartial),
            _ => signal_bit,
        };
        OrcEntry {
            sp_offset: i16::from_le_bytes([bytes[0], bytes[1]]),
            bp_offset: i16::from_le_bytes([bytes[2], bytes[3]]),
            sp_reg: OrcReg::from_raw(raw_sp_reg),
            bp_reg: OrcReg::from_raw(raw_bp_reg),
            kind,
            signal,
            raw_sp_reg,
            raw_bp_reg,
            raw_type,
            end,
        }
    }

    /// The kernel's fallback when no entry exists: assume a frame pointer.
    pub fn frame_pointer_guess() -> Self {
        OrcEntry {
            sp_offset: 16,
            bp_offset: -16,
            sp_reg: OrcReg::Bp,
            bp_reg: OrcReg::PrevSp,
            kind: OrcType::Call,
            signal: false,
            raw_sp_reg: 4,
            raw_bp_reg: 1,
            raw_type: 2,
            end: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(sp: i16, bp: i16, regs: u8, flags: u8) -> [u8; 6] {
        let s = sp.to_le_bytes();
        let b = bp.to_le_bytes();
        [s[0], s[1], b[0], b[1], regs, flags]
    }

    #[test]
    fn v3_types_and_signal() {
        // sp:sp+8 bp:prevsp-16 type:call signal:0
        let e = OrcEntry::decode(bytes(8, -16, 0x15, 2), OrcFormat::V3);
        assert_eq!((e.sp_offset, e.bp_offset), (8, -16));
        assert_eq!((e.sp_reg, e.bp_reg), (OrcReg::Sp, OrcReg::PrevSp));
        assert_eq!(e.kind, OrcType::Call);
        assert!(!e.signal);
        let want = [
            (0, OrcType::Undefined),
            (1, OrcType::EndOfStack),
            (2, OrcType::Call),
            (3, OrcType::Regs),
            (4, OrcType::RegsPartial),
            (5, OrcType::Unknown(5)),
            (7, OrcType::Unknown(7)),
        ];
        for (raw, kind) in want {
            let e = OrcEntry::decode(bytes(0, 0, 0x05, raw | 8), OrcFormat::V3);
            assert_eq!(e.kind, kind, "raw type {raw}");
            assert!(e.signal);
        }
    }

    #[test]
    fn v1_end_bit_and_implicit_signal() {
        // sp:(und) end:1 is the clean end; without end it is an error.
        let e = OrcEntry::decode(bytes(0, 0, 0x00, 4), OrcFormat::V1);
        assert_eq!(e.kind, OrcType::EndOfStack);
        assert!(e.end);
        let e = OrcEntry::decode(bytes(0, 0, 0x00, 0), OrcFormat::V1);
        assert_eq!(e.kind, OrcType::Undefined);
        let e = OrcEntry::decode(bytes(8, 0, 0x05, 1), OrcFormat::V1);
        assert_eq!(e.kind, OrcType::Regs);
        assert!(e.signal, "v1 regs frames are signal frames");
        let e = OrcEntry::decode(bytes(8, 0, 0x05, 2), OrcFormat::V1);
        assert_eq!(e.kind, OrcType::RegsPartial);
        let e = OrcEntry::decode(bytes(8, 0, 0x05, 0), OrcFormat::V1);
        assert_eq!(e.kind, OrcType::Call);
        assert!(!e.signal);
        let e = OrcEntry::decode(bytes(8, 0, 0x05, 3), OrcFormat::V1);
        assert_eq!(e.kind, OrcType::Unknown(3));
    }

    #[test]
    fn v2_signal_and_end() {
        let e = OrcEntry::decode(bytes(8, 0, 0x05, 0b0100), OrcFormat::V2);
        assert_eq!(e.kind, OrcType::Call);
        assert!(e.signal);
        assert!(!e.end);
        let e = OrcEntry::decode(bytes(0, 0, 0x00, 0b1000), OrcFormat::V2);
        assert_eq!(e.kind, OrcType::EndOfStack);
        let e = OrcEntry::decode(bytes(0, 0, 0x00, 0b0000), OrcFormat::V2);
        assert_eq!(e.kind, OrcType::Undefined);
    }

    #[test]
    fn registers() {
        for raw in 0u8..16 {
            let r = OrcReg::from_raw(raw);
            match raw {
                0..=10 => assert!(!matches!(r, OrcReg::Unknown(_))),
                _ => assert_eq!(r, OrcReg::Unknown(raw)),
            }
        }
        let e = OrcEntry::decode(bytes(-8, 16, 0x49, 2), OrcFormat::V3);
        assert_eq!(e.sp_reg, OrcReg::SpIndirect);
        assert_eq!(e.bp_reg, OrcReg::Bp);
    }
}
