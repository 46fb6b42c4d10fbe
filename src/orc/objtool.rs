//! Text output identical to `objtool --dump=orc` of the kernel version that
//! produced the table, so that the two diff clean.
//!
//! - 6.4 on (v3): `ffffffff81000056:type:call sp:sp+24 bp:prevsp-24 signal:0`
//! - 4.14 to 6.2 (v1): `ffffffff81000000: sp:sp+8 bp:(und) type:call end:0`
//! - 6.3 (v2): as v1 with ` signal:N` before ` end:N` (not checked against a
//!   real 6.3 objtool).

use std::fmt::Write;

use super::{OrcEntry, OrcFormat};

fn reg_name(raw: u8) -> &'static str {
    match raw {
        1 => "prevsp",
        2 => "dx",
        3 => "di",
        4 => "bp",
        5 => "sp",
        6 => "r10",
        7 => "r13",
        8 => "bp(ind)",
        9 => "sp(ind)",
        10 => "ax",
        _ => "?",
    }
}

fn push_reg(out: &mut String, raw: u8, offset: i16) {
    // Writing to a String cannot fail.
    let _ = match raw {
        8 => write!(out, "(bp{offset:+})"),
        // Since 5.12 the offset applies after the dereference, and objtool
        // prints it outside the parentheses (checked on 6.1 and 6.12).
        9 => write!(out, "(sp){offset:+}"),
        0 => write!(out, "(und)"),
        r => write!(out, "{}{offset:+}", reg_name(r)),
    };
}

fn type_name(raw: u8, format: OrcFormat) -> &'static str {
    match (format, raw) {
        (OrcFormat::V3, 0) => "(und)",
        (OrcFormat::V3, 1) => "end",
        (OrcFormat::V3, 2) => "call",
        (OrcFormat::V3, 3) => "regs",
        (OrcFormat::V3, 4) => "regs (partial)",
        (_, 0) => "call",
        (_, 1) => "regs",
        (_, 2) => "regs (partial)",
        _ => "?",
    }
}

/// Appends one line (with its newline) for the entry at `ip`.
pub fn push_line(out: &mut String, ip: u64, e: &OrcEntry, format: OrcFormat) {
    let _ = write!(out, "{ip:x}:");
    push_body(out, e, format);
}

/// Appends one line for an entry of a relocatable object (a module), named
/// by the relocation's symbol and addend as objtool does: `.text+1b50:`.
pub fn push_reloc_line(out: &mut String, symbol: &str, addend: i64, e: &OrcEntry, format: OrcFormat) {
    let _ = write!(out, "{symbol}+{addend:x}:");
    push_body(out, e, format);
}

fn push_body(out: &mut String, e: &OrcEntry, format: OrcFormat) {
    match format {
        OrcFormat::V3 => {
            let _ = write!(out, "type:{}", type_name(e.raw_type, format));
            out.push_str(" sp:");
            push_reg(out, e.raw_sp_reg, e.sp_offset);
            out.push_str(" bp:");
            push_reg(out, e.raw_bp_reg, e.bp_offset);
            let _ = writeln!(out, " signal:{}", e.signal as u8);
        }
        OrcFormat::V1 | OrcFormat::V2 => {
            out.push_str(" sp:");
            push_reg(out, e.raw_sp_reg, e.sp_offset);
            out.push_str(" bp:");
            push_reg(out, e.raw_bp_reg, e.bp_offset);
            let _ = write!(out, " type:{}", type_name(e.raw_type, format));
            if format == OrcFormat::V2 {
                let _ = write!(out, " signal:{}", e.signal as u8);
            }
            let _ = writeln!(out, " end:{}", e.end as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sp: i16, bp: i16, regs: u8, flags: u8, f: OrcFormat) -> OrcEntry {
        let s = sp.to_le_bytes();
        let b = bp.to_le_bytes();
        OrcEntry::decode([s[0], s[1], b[0], b[1], regs, flags], f)
    }

    #[test]
    fn v3_lines() {
        let mut out = String::new();
        push_line(&mut out, 0xffffffff81000056, &entry(24, -24, 0x15, 2, OrcFormat::V3), OrcFormat::V3);
        push_line(&mut out, 0xffffffff81000060, &entry(0, 0, 0x00, 0, OrcFormat::V3), OrcFormat::V3);
        push_line(&mut out, 0xffffffff81000070, &entry(-8, 0, 0x09, 4 | 8, OrcFormat::V3), OrcFormat::V3);
        push_line(&mut out, 0xffffffff81000080, &entry(16, 0, 0x04, 1, OrcFormat::V3), OrcFormat::V3);
        assert_eq!(
            out,
            "ffffffff81000056:type:call sp:sp+24 bp:prevsp-24 signal:0\n\
             ffffffff81000060:type:(und) sp:(und) bp:(und) signal:0\n\
             ffffffff81000070:type:regs (partial) sp:(sp)-8 bp:(und) signal:1\n\
             ffffffff81000080:type:end sp:bp+16 bp:(und) signal:0\n"
        );
    }

    #[test]
    fn v1_lines() {
        let mut out = String::new();
        push_line(&mut out, 0xffffffff81000000, &entry(8, 0, 0x05, 0, OrcFormat::V1), OrcFormat::V1);
        push_line(&mut out, 0xffffffff81000010, &entry(0, 0, 0x00, 4, OrcFormat::V1), OrcFormat::V1);
        push_reloc_line(&mut out, ".text", 0x1b50, &entry(160, 16, 0x85, 1, OrcFormat::V1), OrcFormat::V1);
        assert_eq!(
            out,
            "ffffffff81000000: sp:sp+8 bp:(und) type:call end:0\n\
             ffffffff81000010: sp:(und) bp:(und) type:call end:1\n\
             .text+1b50: sp:sp+160 bp:(bp+16) type:regs end:0\n"
        );
    }
}
