//! Unit tests on BTF byte streams built by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

/// Writes BTF the way pahole does: types in order, strings deduplicated
/// only as far as the tests need.
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
    /// Split BTF: where this table's strings start in the combined space.
    str_base: u32,
}

/// A struct member for [`Builder::strukt`]: (name, type, bit offset,
/// bitfield size).
type M<'a> = (&'a str, u32, u32, u32);

impl Builder {
    fn new() -> Self {
        Builder { types: Vec::new(), strings: vec![0], next_id: 1, str_base: 0 }
    }

    /// Split BTF over `base`: ids and string offsets continue after it.
    fn split(base: &Btf<'_>) -> Self {
        Builder {
            types: Vec::new(),
            strings: Vec::new(),
            next_id: base.end_id().0,
            str_base: base.start_str + base.strings.len() as u32,
        }
    }

    fn s(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        let off = self.str_base + self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }

    fn words(&mut self, w: &[u32]) {
        for x in w {
            self.types.extend_from_slice(&x.to_le_bytes());
        }
    }

    fn head(&mut self, name: &str, kind: u32, vlen: u32, kflag: bool, size_or_type: u32) -> u32 {
        let n = self.s(name);
        let info = (u32::from(kflag) << 31) | (kind << 24) | vlen;
        self.words(&[n, info, size_or_type]);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn int(&mut self, name: &str, size: u32, bits: u32, signed: bool) -> u32 {
        let id = self.head(name, INT, 0, false, size);
        self.words(&[(u32::from(signed) << 24) | bits]);
        id
    }

    fn int_raw(&mut self, name: &str, size: u32, encoding: u32) -> u32 {
        let id = self.head(name, INT, 0, false, size);
        self.words(&[encoding]);
        id
    }

    fn simple(&mut self, kind: u32, name: &str, target: u32) -> u32 {
        self.head(name, kind, 0, false, target)
    }

    fn array(&mut self, elem: u32, index: u32, nelems: u32) -> u32 {
        let id = self.head("", ARRAY, 0, false, 0);
        self.words(&[elem, index, nelems]);
        id
    }

    fn composite(&mut self, kind: u32, name: &str, size: u32, members: &[M<'_>]) -> u32 {
        let kflag = members.iter().any(|m| m.3 != 0);
        let id = self.head(name, kind, members.len() as u32, kflag, size);
        for &(mname, ty, bit, bits) in members {
            let n = self.s(mname);
            let off = if kflag { (bits << 24) | bit } else { bit };
            self.words(&[n, ty, off]);
        }
        id
    }

    fn strukt(&mut self, name: &str, size: u32, members: &[M<'_>]) -> u32 {
        self.composite(STRUCT, name, size, members)
    }

    fn union(&mut self, name: &str, size: u32, members: &[M<'_>]) -> u32 {
        self.composite(UNION, name, size, members)
    }

    fn enum32(&mut self, name: &str, signed: bool, values: &[(&str, i32)]) -> u32 {
        let id = self.head(name, ENUM, values.len() as u32, signed, 4);
        for &(n, v) in values {
            let n = self.s(n);
            self.words(&[n, v as u32]);
        }
        id
    }

    fn enum64(&mut self, name: &str, signed: bool, values: &[(&str, u64)]) -> u32 {
        let id = self.head(name, ENUM64, values.len() as u32, signed, 8);
        for &(n, v) in values {
            let n = self.s(n);
            self.words(&[n, v as u32, (v >> 32) as u32]);
        }
        id
    }

    fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        let tl = self.types.len() as u32;
        for w in [24, 0, tl, tl, self.strings.len() as u32] {
            out.extend_from_slice(&u32::to_le_bytes(w));
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// A kernel-like table using every kind, reused by several tests.
fn sample() -> Vec<u8> {
    let mut b = Builder::new();
    let int = b.int("int", 4, 32, true); // 1
    let uint = b.int("unsigned int", 4, 32, false); // 2
    let ulong = b.int("long unsigned int", 8, 64, false); // 3
    let task_fwd = b.simple(FWD, "task_struct", 0); // 4
    let task_ptr = b.simple(PTR, "", task_fwd); // 5
    let list_ptr = b.simple(PTR, "", 7); // 6, forward reference
    let list = b.strukt("list_head", 16, &[("next", list_ptr, 0, 0), ("prev", list_ptr, 64, 0)]); // 7
    let char_t = b.int("char", 1, 8, true); // 8
    let comm = b.array(char_t, int, 16); // 9
    let pid_t = b.simple(TYPEDEF, "pid_t", int); // 10
    let inner = b.strukt("", 16, &[("donor", task_ptr, 0, 0), ("curr2", task_ptr, 64, 0)]); // 11
    let anon = b.union("", 16, &[("curr", task_ptr, 0, 0), ("", inner, 0, 0)]); // 12
    let thread = b.strukt("thread_struct", 16, &[("es", uint, 0, 0), ("sp", ulong, 64, 0)]); // 13
    let cthread = b.simple(CONST, "", thread); // 14
    let vthread = b.simple(VOLATILE, "", cthread); // 15
    let tthread = b.simple(TYPEDEF, "thread_t", vthread); // 16
    let task = b.strukt(
        "task_struct",
        160,
        &[
            ("__state", uint, 0, 0),
            ("on_cpu", uint, 32, 4),
            ("sched_a", uint, 36, 1),
            ("sched_b", uint, 37, 3),
            ("pid", pid_t, 64, 0),
            ("tasks", list, 128, 0),
            ("comm", comm, 256, 0),
            ("", anon, 384, 0),
            ("thread", tthread, 512, 0),
            ("flags", ulong, 640, 0),
        ],
    ); // 17
    assert_eq!(task, 17);
    let mem = b.strukt("module_memory", 16, &[("base", ulong, 0, 0), ("size", uint, 64, 0)]); // 18
    let mems = b.array(mem, int, 7); // 19
    b.strukt("module", 120, &[("state", int, 0, 0), ("mem", mems, 64, 0)]); // 20
    b.enum32("mod_mem_type", true, &[("MOD_TEXT", 0), ("MOD_MEM_NUM_TYPES", 7), ("MOD_INVALID", -1)]); // 21
    b.enum32("flags32", false, &[("BIG", -2)]); // 22
    b.enum64("big64", false, &[("HUGE", 0xffff_ffff_ffff_fffe), ("SMALL", 5)]); // 23
    let proto = b.head("", FUNC_PROTO, 2, false, int); // 24
    let p1 = b.s("a");
    b.words(&[p1, int, 0, 0]);
    b.simple(FUNC, "schedule", proto); // 25
    let var = b.head("runqueues", VAR, 0, false, task); // 26
    b.words(&[1]);
    b.head(".data..percpu", DATASEC, 1, false, 160); // 27
    b.words(&[var, 0, 160]);
    b.simple(FLOAT, "double", 8); // 28
    b.head("bpf_kfunc", DECL_TAG, 0, false, 25); // 29
    b.words(&[u32::MAX]);
    let tagged = b.simple(TYPE_TAG, "user", int); // 30
    b.simple(RESTRICT, "", tagged); // 31
    b.build()
}

fn parse(data: &[u8]) -> Btf<'_> {
    Btf::parse(data).expect("parse")
}

#[test]
fn header_errors() {
    let good = sample();
    assert_eq!(Btf::parse(&good[..10]).unwrap_err(), BtfError::TooShort { len: 10 });
    let mut bad = good.clone();
    bad[0] = 0x12;
    assert!(matches!(Btf::parse(&bad), Err(BtfError::BadMagic { found: 0xeb12 })));
    let mut swapped = good.clone();
    swapped[0..2].copy_from_slice(&[0xeb, 0x9f]);
    assert_eq!(Btf::parse(&swapped).unwrap_err(), BtfError::ByteSwapped);
    let mut v2 = good.clone();
    v2[2] = 2;
    assert_eq!(Btf::parse(&v2).unwrap_err(), BtfError::UnsupportedVersion { version: 2 });
    let mut hl = good.clone();
    hl[4] = 20;
    assert!(matches!(Btf::parse(&hl), Err(BtfError::BadHeaderLen { hdr_len: 20, .. })));
    let mut sec = good.clone();
    sec[20] = sec[20].wrapping_add(1); // str_len one past the end
    assert!(matches!(Btf::parse(&sec), Err(BtfError::SectionOutOfBounds { section: Section::Strings, .. })));
    let mut off = good.clone();
    off[8..12].copy_from_slice(&u32::MAX.to_le_bytes()); // type_off huge: no overflow
    assert!(matches!(Btf::parse(&off), Err(BtfError::SectionOutOfBounds { section: Section::Types, .. })));
    // A longer header (future fields) is accepted when the offsets agree.
    let mut longer = good[..24].to_vec();
    longer[4] = 28;
    longer.extend_from_slice(&[0; 4]);
    longer.extend_from_slice(&good[24..]);
    assert_eq!(parse(&longer).find_struct("task_struct"), Some(TypeId(17)));
}

#[test]
fn base_strings_must_start_with_nul() {
    let mut b = Builder::new();
    b.strings = b"x\0".to_vec();
    b.int("", 4, 32, true);
    assert_eq!(Btf::parse(&b.build()).unwrap_err(), BtfError::BadStringSection);
}

#[test]
fn kinds_names_and_ids() {
    let data = sample();
    let btf = parse(&data);
    assert_eq!(btf.start_id(), TypeId(1));
    assert_eq!(btf.end_id(), TypeId(32));
    assert_eq!(btf.type_ids().count(), 31);
    assert_eq!(btf.kind(TypeId(0)), Some(Kind::Void));
    let kinds: Vec<_> = [1, 4, 5, 9, 10, 12, 14, 15, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31]
        .iter()
        .map(|&i| btf.kind(TypeId(i)).unwrap())
        .collect();
    use Kind::*;
    assert_eq!(
        kinds,
        [
            Int, Fwd, Ptr, Array, Typedef, Union, Const, Volatile, Enum, Enum64, FuncProto, Func, Var, Datasec, Float,
            DeclTag, TypeTag, Restrict
        ]
    );
    assert_eq!(btf.kind(TypeId(32)), None);
    assert_eq!(btf.name(TypeId(17)), Some("task_struct"));
    assert_eq!(btf.name(TypeId(12)), None); // anonymous
    assert_eq!(btf.name(TypeId(0)), None);
    assert_eq!(btf.name(TypeId(99)), None);
    assert_eq!(btf.find_by_name("schedule", Kind::Func), Some(TypeId(25)));
    assert_eq!(btf.find_by_name("pid_t", Kind::Typedef), Some(TypeId(10)));
    assert_eq!(btf.find_by_name("pid_t", Kind::Struct), None);
    assert_eq!(btf.pointer_size(), 8);
    assert!(format!("{btf:?}").contains("types: 31"));
}

#[test]
fn fwd_versus_definition() {
    let data = sample();
    let btf = parse(&data);
    // task_struct is a FWD at 4 and a full struct at 17.
    assert_eq!(btf.find_struct("task_struct"), Some(TypeId(17)));
    assert_eq!(btf.find_by_name("task_struct", Kind::Fwd), Some(TypeId(4)));
    assert_eq!(btf.type_size(TypeId(4)), Err(BtfError::NoSize { id: TypeId(4), kind: Kind::Fwd }));
    assert_eq!(btf.find_struct("nope"), None);

    // Two definitions of one name: the first wins.
    let mut b = Builder::new();
    let int = b.int("int", 4, 32, true);
    b.simple(FWD, "dup", 0);
    let first = b.strukt("dup", 4, &[("a", int, 0, 0)]);
    b.strukt("dup", 8, &[("b", int, 32, 0)]);
    let data = b.build();
    let btf = parse(&data);
    assert_eq!(btf.find_struct("dup"), Some(TypeId(first)));
    assert_eq!(btf.member("dup", "a").unwrap().offset, 0);
}

#[test]
fn sizes_and_resolution() {
    let data = sample();
    let btf = parse(&data);
    assert_eq!(btf.type_size(TypeId(17)), Ok(160));
    assert_eq!(btf.type_size(TypeId(5)), Ok(8)); // pointer
    assert_eq!(btf.type_size(TypeId(9)), Ok(16)); // char[16]
    assert_eq!(btf.type_size(TypeId(19)), Ok(7 * 16));
    assert_eq!(btf.type_size(TypeId(16)), Ok(16)); // typedef -> volatile -> const -> struct
    assert_eq!(btf.type_size(TypeId(26)), Ok(160)); // var
    assert_eq!(btf.type_size(TypeId(27)), Ok(160)); // datasec
    assert_eq!(btf.type_size(TypeId(28)), Ok(8)); // float
    assert_eq!(btf.type_size(TypeId(31)), Ok(4)); // restrict -> type_tag -> int
    assert_eq!(btf.type_size(TypeId(23)), Ok(8));
    assert_eq!(btf.type_size(TypeId(0)), Err(BtfError::NoSize { id: TypeId(0), kind: Kind::Void }));
    assert_eq!(btf.type_size(TypeId(25)), Err(BtfError::NoSize { id: TypeId(25), kind: Kind::Func }));
    assert_eq!(btf.type_size(TypeId(24)), Err(BtfError::NoSize { id: TypeId(24), kind: Kind::FuncProto }));
    assert_eq!(btf.type_size(TypeId(77)), Err(BtfError::MissingType { id: TypeId(77), referenced_by: None }));
    assert_eq!(btf.resolve(TypeId(16)), Ok(TypeId(13)));
    assert_eq!(btf.resolve(TypeId(31)), Ok(TypeId(1)));
    assert_eq!(btf.resolve(TypeId(0)), Ok(TypeId(0)));
    assert_eq!(btf.resolve(TypeId(17)), Ok(TypeId(17)));
    assert_eq!(btf.pointee(TypeId(5)), Some(TypeId(4)));
    assert_eq!(btf.pointee(TypeId(17)), None);
    assert_eq!(btf.array_info(TypeId(9)), Some((TypeId(8), 16)));
    assert_eq!(btf.array_info(TypeId(5)), None);
}

#[test]
fn pointer_size_follows_long() {
    let mut b = Builder::new();
    b.int("long int", 4, 32, true);
    let p = b.simple(PTR, "", 1);
    let data = b.build();
    let btf = parse(&data);
    assert_eq!(btf.pointer_size(), 4);
    assert_eq!(btf.type_size(TypeId(p)), Ok(4));
}

#[test]
fn members_plain_nested_and_typedef() {
    let data = sample();
    let btf = parse(&data);
    let m = btf.member("task_struct", "__state").unwrap();
    assert_eq!(m, Member { offset: 0, bit_offset: 0, bitfield_size: 0, size: 4, type_id: TypeId(2) });
    let pid = btf.member("task_struct", "pid").unwrap();
    assert_eq!((pid.offset, pid.size, pid.type_id), (8, 4, TypeId(10)));
    assert_eq!(btf.member("task_struct", "tasks").unwrap().offset, 16);
    assert_eq!(btf.member("task_struct", "tasks.prev").unwrap().offset, 24);
    // thread is a typedef of volatile const struct thread_struct.
    let sp = btf.member("task_struct", "thread.sp").unwrap();
    assert_eq!((sp.offset, sp.size, sp.type_id), (64 + 8, 8, TypeId(3)));
    assert_eq!(btf.member("task_struct", "thread").unwrap().size, 16);
    assert_eq!(btf.member("task_struct", "comm").unwrap().size, 16);
    assert_eq!(btf.member("thread_struct", "sp").unwrap().offset, 8);
}

#[test]
fn anonymous_unions_and_structs() {
    let data = sample();
    let btf = parse(&data);
    // curr is in an anonymous union at bit 384; donor and curr2 one level
    // deeper, in an anonymous struct inside it.
    assert_eq!(btf.member("task_struct", "curr").unwrap().offset, 48);
    assert_eq!(btf.member("task_struct", "donor").unwrap().offset, 48);
    assert_eq!(btf.member("task_struct", "curr2").unwrap().offset, 56);
    assert_eq!(btf.member("task_struct", "flags").unwrap().offset, 80);
    let names: Vec<_> = btf.members(TypeId(12)).unwrap().map(|m| m.unwrap().name).collect();
    assert_eq!(names, [Some("curr"), None]);
    assert_eq!(btf.members(TypeId(12)).unwrap().size_hint(), (2, Some(2)));
    assert_eq!(btf.members(TypeId(1)).err(), Some(BtfError::NotComposite { id: TypeId(1), kind: Kind::Int }));
}

#[test]
fn bitfields_with_kind_flag() {
    let data = sample();
    let btf = parse(&data);
    let on_cpu = btf.member("task_struct", "on_cpu").unwrap();
    assert_eq!((on_cpu.offset, on_cpu.bit_offset, on_cpu.bitfield_size, on_cpu.size), (4, 0, 4, 4));
    let a = btf.member("task_struct", "sched_a").unwrap();
    assert_eq!((a.offset, a.bit_offset, a.bitfield_size), (4, 4, 1));
    let b = btf.member("task_struct", "sched_b").unwrap();
    assert_eq!((b.offset, b.bit_offset, b.bitfield_size), (4, 5, 3));
    // Non-bitfield members of a kind_flag struct keep their plain offsets.
    assert_eq!(btf.member("task_struct", "flags").unwrap().bitfield_size, 0);
    let raw: Vec<_> = btf.members(TypeId(17)).unwrap().take(3).map(|m| m.unwrap()).collect();
    assert_eq!((raw[1].bit_offset, raw[1].bitfield_size), (32, 4));
}

#[test]
fn bitfields_old_encoding() {
    // Without kind_flag the width sits in the INT type (BTF_INT_BITS) and an
    // extra offset may sit in BTF_INT_OFFSET.
    let mut b = Builder::new();
    let u32t = b.int("unsigned int", 4, 32, false);
    let three = b.int_raw("unsigned int", 4, 3);
    let shifted = b.int_raw("unsigned int", 4, (2 << 16) | 5);
    b.strukt("s", 8, &[("x", u32t, 0, 0), ("f", three, 32, 0), ("g", shifted, 35, 0)]);
    let data = b.build();
    let btf = parse(&data);
    let f = btf.member("s", "f").unwrap();
    assert_eq!((f.offset, f.bit_offset, f.bitfield_size), (4, 0, 3));
    let g = btf.member("s", "g").unwrap();
    assert_eq!((g.offset, g.bit_offset, g.bitfield_size), (4, 5, 5));
    assert_eq!(btf.member("s", "x").unwrap().bitfield_size, 0);
}

#[test]
fn array_paths() {
    let data = sample();
    let btf = parse(&data);
    let mem = btf.member("module", "mem").unwrap();
    assert_eq!((mem.offset, mem.size), (8, 112));
    assert_eq!(btf.member("module", "mem[0].base").unwrap().offset, 8);
    let s = btf.member("module", "mem[2].size").unwrap();
    assert_eq!((s.offset, s.size), (8 + 32 + 8, 4));
    assert_eq!(btf.member("task_struct", "comm[15]").unwrap().offset, 32 + 15);
    let sname = Name::new("module");
    assert_eq!(
        btf.member("module", "mem[7]").unwrap_err(),
        BtfError::IndexOutOfBounds { struct_name: sname, element: Name::new("mem"), index: 7, nelems: 7 }
    );
    assert_eq!(
        btf.member("module", "state[0]").unwrap_err(),
        BtfError::NotArray { struct_name: sname, element: Name::new("state") }
    );
    for bad in ["mem[", "mem[x]", "mem[1]x", "", "mem..base", ".mem", "mem[-1]", "[0]"] {
        assert!(matches!(btf.member("module", bad), Err(BtfError::BadPath { .. })), "{bad}");
    }
    // Multi-dimensional arrays.
    let mut b = Builder::new();
    let int = b.int("int", 4, 32, true);
    let row = b.array(int, int, 3);
    let grid = b.array(row, int, 2);
    b.strukt("g", 24, &[("cells", grid, 0, 0)]);
    let data = b.build();
    let btf = parse(&data);
    assert_eq!(btf.member("g", "cells[1][2]").unwrap().offset, 20);
    assert_eq!(btf.member("g", "cells[1]").unwrap().size, 12);
    assert_eq!(btf.type_size(TypeId(grid)), Ok(24));
}

#[test]
fn member_errors_name_struct_and_element() {
    let data = sample();
    let btf = parse(&data);
    let err = btf.member("task_struct", "thread_group").unwrap_err();
    assert_eq!(
        err,
        BtfError::NoMember {
            struct_name: Name::new("task_struct"),
            element: Name::new("thread_group"),
            container: TypeId(17)
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("task_struct") && msg.contains("thread_group"), "{msg}");
    let err = btf.member("task_struct", "thread.nope").unwrap_err();
    assert!(matches!(err, BtfError::NoMember { container: TypeId(13), .. }));
    assert!(err.to_string().contains("nope"));
    assert_eq!(
        btf.member("task_struct", "pid.x").unwrap_err(),
        BtfError::NotCompositeMember { struct_name: Name::new("task_struct"), element: Name::new("pid") }
    );
    assert_eq!(btf.member("no_such", "x").unwrap_err(), BtfError::NoStruct { name: Name::new("no_such") });
    assert!(btf.member("no_such", "x").unwrap_err().to_string().contains("no_such"));
}

#[test]
fn member_of_typedef_named_struct() {
    // binfmt_misc's `typedef struct { ... } Node;`
    let mut b = Builder::new();
    let int = b.int("int", 4, 32, true);
    let anon = b.strukt("", 8, &[("offset", int, 0, 0), ("size", int, 32, 0)]);
    b.simple(TYPEDEF, "Node", anon);
    let data = b.build();
    let btf = parse(&data);
    assert_eq!(btf.find_struct("Node"), None);
    let m = btf.member("Node", "size").unwrap();
    assert_eq!((m.offset, m.size), (4, 4));
}

#[test]
fn enums() {
    let data = sample();
    let btf = parse(&data);
    assert_eq!(btf.enum_value(Some("mod_mem_type"), "MOD_MEM_NUM_TYPES"), Some(7));
    assert_eq!(btf.enum_value(None, "MOD_MEM_NUM_TYPES"), Some(7));
    assert_eq!(btf.enum_value(Some("mod_mem_type"), "MOD_INVALID"), Some(-1)); // signed
    assert_eq!(btf.enum_value(Some("flags32"), "BIG"), Some(0xffff_fffe)); // unsigned
    assert_eq!(btf.enum_value(Some("big64"), "HUGE"), Some(-2)); // u64 wraps
    assert_eq!(btf.enum_value(None, "SMALL"), Some(5));
    assert_eq!(btf.enum_value(Some("flags32"), "MOD_TEXT"), None);
    assert_eq!(btf.enum_value(Some("task_struct"), "MOD_TEXT"), None);
    assert_eq!(btf.enum_value(None, "NOPE"), None);
}

#[test]
fn missing_type_is_named() {
    let mut b = Builder::new();
    let td = b.simple(TYPEDEF, "dangling", 99);
    let p = b.simple(PTR, "", 98);
    b.strukt("s", 8, &[("d", td, 0, 0), ("p", p, 0, 0), ("", 97, 0, 0)]);
    let data = b.build();
    let btf = parse(&data);
    let missing = BtfError::MissingType { id: TypeId(99), referenced_by: Some(TypeId(td)) };
    assert_eq!(btf.type_size(TypeId(td)), Err(missing));
    assert_eq!(btf.resolve(TypeId(td)), Err(missing));
    assert_eq!(btf.member("s", "d"), Err(missing));
    assert!(missing.to_string().contains("99"));
    // A pointer's size does not need its target.
    assert_eq!(btf.member("s", "p").unwrap().size, 8);
    assert_eq!(btf.pointee(TypeId(p)), Some(TypeId(98)));
    // Looking for a member that is not there passes the anonymous one,
    // whose type is missing.
    assert_eq!(btf.member("s", "x"), Err(BtfError::MissingType { id: TypeId(97), referenced_by: None }));
}

#[test]
fn cycles_are_bounded() {
    let mut b = Builder::new();
    let a = b.simple(TYPEDEF, "a", 2);
    b.simple(CONST, "", 1);
    let arr = b.array(4, 1, 2); // 3: array of itself (via 4)
    b.simple(TYPEDEF, "arr_t", arr); // 4
    // 5: struct whose anonymous member is itself.
    let s = b.strukt("selfish", 8, &[("", 5, 0, 0)]);
    let data = b.build();
    let btf = parse(&data);
    assert_eq!(btf.resolve(TypeId(a)), Err(BtfError::TooDeep { id: TypeId(a) }));
    assert!(matches!(btf.type_size(TypeId(a)), Err(BtfError::TooDeep { .. })));
    assert!(matches!(btf.type_size(TypeId(arr)), Err(BtfError::TooDeep { .. })));
    assert_eq!(btf.pointee(TypeId(a)), None);
    assert_eq!(btf.array_info(TypeId(a)), None);
    assert!(matches!(btf.member("selfish", "x"), Err(BtfError::TooDeep { .. })));
    assert_eq!(btf.type_size(TypeId(s)), Ok(8));
}

#[test]
fn size_overflow() {
    let mut b = Builder::new();
    let int = b.int("char", 1, 8, true);
    let big = b.array(int, int, u32::MAX);
    let bigger = b.array(big, int, u32::MAX);
    let huge = b.array(bigger, int, u32::MAX);
    let data = b.build();
    let btf = parse(&data);
    assert_eq!(btf.type_size(TypeId(bigger)), Ok(u64::from(u32::MAX) * u64::from(u32::MAX)));
    assert_eq!(btf.type_size(TypeId(huge)), Err(BtfError::SizeOverflow { id: TypeId(huge) }));
}

#[test]
fn type_section_errors() {
    // Claimed vlen with no member data: an error, no allocation.
    let mut b = Builder::new();
    b.head("s", STRUCT, 0xffff, false, 8);
    let data = b.build();
    assert_eq!(Btf::parse(&data).unwrap_err(), BtfError::TruncatedType { id: TypeId(1), offset: 0 });
    for kind in [0, 20, 31] {
        let mut b = Builder::new();
        b.int("int", 4, 32, true);
        b.head("x", kind, 0, false, 0);
        let data = b.build();
        assert_eq!(
            Btf::parse(&data).unwrap_err(),
            BtfError::UnknownKind { id: TypeId(2), offset: 16, kind: kind as u8 }
        );
    }
    let mut b = Builder::new();
    b.int("int", 4, 32, true);
    b.types.extend_from_slice(&[0; 5]);
    let data = b.build();
    assert_eq!(Btf::parse(&data).unwrap_err(), BtfError::TruncatedType { id: TypeId(2), offset: 16 });
    // Empty type section is fine.
    let data = Builder::new().build();
    assert_eq!(parse(&data).type_ids().count(), 0);
}

#[test]
fn bad_strings() {
    let mut b = Builder::new();
    let int = b.int("int", 4, 32, true);
    // member name offset past the end, struct name not terminated.
    let id = b.head("", STRUCT, 1, false, 4);
    b.words(&[1000, int, 0]);
    let data = b.build();
    let btf = parse(&data);
    let first = btf.members(TypeId(id)).unwrap().next().unwrap();
    assert_eq!(first, Err(BtfError::BadString { offset: 1000 }));
    let mut b = Builder::new();
    b.int("int", 4, 32, true);
    b.strings.extend_from_slice(b"unterminated");
    b.head("", INT, 0, false, 4);
    b.types.truncate(b.types.len() - 12);
    b.words(&[5, INT << 24, 4, 32]);
    let data = b.build();
    let btf = parse(&data);
    assert_eq!(btf.name(TypeId(2)), None);
    assert_eq!(btf.find_by_name("unterminated", Kind::Int), None);
}

#[test]
fn split_btf() {
    let mut b = Builder::new();
    let int = b.int("int", 4, 32, true);
    let ulong = b.int("long unsigned int", 8, 64, false);
    let lp = b.simple(PTR, "", 4);
    let list = b.strukt("list_head", 16, &[("next", lp, 0, 0), ("prev", lp, 64, 0)]);
    b.simple(FWD, "module_private", 0); // 5
    b.enum32("module_state", false, &[("MODULE_STATE_LIVE", 0), ("MODULE_STATE_GOING", 2)]);
    let base_data = b.build();
    let base = parse(&base_data);

    let mut m = Builder::split(&base);
    // A name string that lives in the base ("list_head" is at offset 1 of
    // the base strings... reuse the base's "int" by offset).
    let int_name = 1;
    let node = m.strukt("", 40, &[("list", list, 0, 0), ("flags", ulong, 128, 0), ("offset", int, 192, 0)]);
    m.simple(TYPEDEF, "Node", node);
    let own = m.strukt("module_private", 8, &[("users", int, 0, 0)]);
    let alias = m.head("", TYPEDEF, 0, false, own);
    m.types.truncate(m.types.len() - 12);
    m.words(&[int_name, TYPEDEF << 24, own]); // typedef named with a base string
    m.enum32("binfmt_flags", false, &[("MISC_FMT_OPEN", 4)]);
    let split_data = m.build();
    let split = Btf::parse_split(&split_data, &base).unwrap();

    assert_eq!(split.start_id(), TypeId(7));
    assert_eq!(split.end_id(), TypeId(12));
    assert_eq!(split.base().map(|b| b.end_id()), Some(TypeId(7)));
    assert_eq!(split.pointer_size(), 8);
    assert_eq!(node, 7);
    assert_eq!(split.kind(TypeId(4)), Some(Kind::Struct)); // from the base
    assert_eq!(split.name(TypeId(4)), Some("list_head"));
    assert_eq!(split.name(TypeId(alias)), Some("int"));
    assert_eq!(split.find_struct("list_head"), Some(TypeId(4)));
    // The base has only a FWD; the split's definition is found.
    assert_eq!(split.find_struct("module_private"), Some(TypeId(own)));
    assert_eq!(base.find_struct("module_private"), None);
    assert_eq!(split.find_by_name("int", Kind::Typedef), Some(TypeId(alias)));
    assert_eq!(split.find_by_name("int", Kind::Int), Some(TypeId(1)));
    let m = split.member("Node", "list.prev").unwrap();
    assert_eq!((m.offset, m.size), (8, 8));
    assert_eq!(split.member("Node", "offset").unwrap().offset, 24);
    assert_eq!(split.member("list_head", "next").unwrap().offset, 0);
    assert_eq!(split.type_size(TypeId(node)), Ok(40));
    assert_eq!(split.enum_value(Some("module_state"), "MODULE_STATE_GOING"), Some(2));
    assert_eq!(split.enum_value(None, "MISC_FMT_OPEN"), Some(4));
    assert_eq!(split.enum_value(None, "MODULE_STATE_GOING"), Some(2));
    assert_eq!(split.type_ids().next(), Some(TypeId(7)));
    // Ids beyond both tables are missing, not confused with base ids.
    assert_eq!(split.kind(TypeId(12)), None);
    assert_eq!(base.kind(TypeId(7)), None);
}

/// Runs every query on whatever parsed, to shake out panics.
fn exercise(btf: &Btf<'_>) {
    let names = ["task_struct", "list_head", "module", "thread_struct", "int", "mod_mem_type", "pid_t", "", "Node"];
    let paths = ["__state", "thread.sp", "curr", "donor", "mem[2].size", "comm[3]", "on_cpu", "x", "tasks.prev"];
    for id in 0..btf.end_id().0 + 2 {
        let id = TypeId(id);
        let _ = (btf.kind(id), btf.name(id), btf.type_size(id), btf.resolve(id));
        let _ = (btf.pointee(id), btf.array_info(id));
        if let Ok(ms) = btf.members(id) {
            for m in ms.take(100) {
                let _ = m;
            }
        }
    }
    for n in names {
        let _ = btf.find_struct(n);
        for p in paths {
            let _ = btf.member(n, p);
        }
    }
    let _ = btf.enum_value(None, "MOD_MEM_NUM_TYPES");
    let _ = btf.enum_value(Some("big64"), "HUGE");
}

#[test]
fn truncation_at_every_offset_never_panics() {
    let data = sample();
    exercise(&parse(&data));
    for len in 0..data.len() {
        let cut = &data[..len];
        if let Ok(btf) = Btf::parse(cut) {
            exercise(&btf);
        }
    }
    // Also cut the sections inside an intact header: shrink type_len.
    for type_len in 0..200u32 {
        let mut d = data.clone();
        d[12..16].copy_from_slice(&type_len.to_le_bytes());
        if let Ok(btf) = Btf::parse(&d) {
            exercise(&btf);
        }
    }
}

#[test]
fn corruption_at_every_byte_never_panics() {
    let data = sample();
    let mut d = data.clone();
    for i in 0..data.len() {
        for x in [0x01u8, 0x80, 0xff, 0x13] {
            d[i] = data[i] ^ x;
            if let Ok(btf) = Btf::parse(&d) {
                exercise(&btf);
            }
        }
        d[i] = data[i];
    }
}

#[test]
fn corrupted_split_never_panics() {
    let data = sample();
    let base = parse(&data);
    let mut m = Builder::split(&base);
    let n = m.strukt("", 24, &[("list", 7, 0, 0), ("t", 17, 0, 0), ("c", 12, 64, 3)]);
    m.simple(TYPEDEF, "Node", n);
    let split = m.build();
    exercise(&Btf::parse_split(&split, &base).unwrap());
    let mut d = split.clone();
    for i in 0..split.len() {
        for x in [0x01u8, 0x80, 0xff] {
            d[i] = split[i] ^ x;
            if let Ok(btf) = Btf::parse_split(&d, &base) {
                exercise(&btf);
            }
        }
        d[i] = split[i];
    }
}

#[test]
fn name_is_cut_at_char_boundary() {
    let n = Name::new("a_rather_long_struct_name_indeed_yes");
    assert_eq!(n.as_str().len(), 31);
    assert_eq!(n.to_string(), "a_rather_long_struct_name_indee...");
    let n = Name::new(&"é".repeat(20)); // 2 bytes each: cut at 30
    assert_eq!(n.as_str().len(), 30);
    assert_eq!(format!("{:?}", Name::new("x")), "\"x\"");
    assert!(std::mem::size_of::<BtfError>() <= 80);
}

#[test]
fn elf_section_lookup() {
    assert_eq!(elf_btf_section(b"not an elf"), None);
}

/// Each query on the sample, answered as text (`Debug`).
fn queries() -> Vec<Box<dyn Fn(&Btf<'_>) -> String>> {
    let mut q: Vec<Box<dyn Fn(&Btf<'_>) -> String>> = Vec::new();
    for id in 0..34 {
        let id = TypeId(id);
        q.push(Box::new(move |b| format!("{:?} {:?} {:?}", b.kind(id), b.name(id), b.type_size(id))));
        q.push(Box::new(move |b| format!("{:?} {:?} {:?}", b.resolve(id), b.pointee(id), b.array_info(id))));
        q.push(Box::new(move |b| format!("{:?}", b.members(id).map(|m| m.collect::<Vec<_>>()))));
    }
    for name in ["task_struct", "list_head", "module", "thread_struct", "thread_t", "absent"] {
        q.push(Box::new(move |b| format!("{:?}", b.find_struct(name))));
        for path in ["__state", "thread.sp", "curr", "donor", "mem[2].size", "comm[3]", "on_cpu", "tasks.prev", "x"] {
            q.push(Box::new(move |b| format!("{:?}", b.member(name, path))));
        }
    }
    for (name, kind) in [("schedule", Kind::Func), ("pid_t", Kind::Typedef), ("task_struct", Kind::Fwd)] {
        q.push(Box::new(move |b| format!("{:?}", b.find_by_name(name, kind))));
    }
    q.push(Box::new(|b| format!("{:?}", b.enum_value(None, "MOD_MEM_NUM_TYPES"))));
    q.push(Box::new(|b| format!("{:?}", b.enum_value(None, "SMALL"))));
    q.push(Box::new(|b| format!("{:?}", b.enum_value(Some("big64"), "HUGE"))));
    q.push(Box::new(|b| format!("{:?}", b.enum_value(Some("mod_mem_type"), "HUGE"))));
    q.push(Box::new(|b| format!("{}", b.pointer_size())));
    q.push(Box::new(|b| format!("{:?}", b.type_ids().count())));
    q
}

#[test]
fn a_prefix_answers_as_the_whole_table_or_runs_short() {
    let data = sample();
    let whole = parse(&data);
    let sections = section_ranges(&data, data.len() as u64).expect("header");
    let (types, strings) = (sections.types.len(), sections.strings.len());
    let queries = queries();
    let expected: Vec<String> = queries.iter().map(|q| q(&whole)).collect();
    assert!(!whole.ran_short());
    let (mut answered, mut short) = (0, 0);
    for t in (0..=types).step_by(4).chain([types - 1]) {
        for s in (0..=strings).step_by(9).chain([strings - 1, strings]) {
            for (q, want) in queries.iter().zip(&expected) {
                // A query at a time: a short one must not hide the others.
                let Ok(prefix) = Btf::parse_prefix(&data, t, s) else { panic!("prefix {t}/{s} does not parse") };
                let got = q(&prefix);
                if prefix.ran_short() {
                    short += 1;
                } else {
                    assert_eq!(&got, want, "types {t}, strings {s}");
                    answered += 1;
                }
            }
        }
    }
    // Both happen often: the test would catch a prefix always short.
    assert!(answered > 10_000 && short > 10_000, "{answered} answered, {short} short");
    // The whole table as a "prefix" answers everything.
    let all = Btf::parse_prefix(&data, types, strings).expect("whole");
    assert!(queries.iter().zip(&expected).all(|(q, want)| q(&all) == *want) && !all.ran_short());
    // A name not found in a prefix is no answer.
    let half = Btf::parse_prefix(&data, types / 2, strings).expect("half");
    assert_eq!(half.find_struct("module"), None);
    assert!(half.ran_short());
}

#[test]
fn a_prefix_ends_before_a_type_whose_name_is_not_at_hand() {
    // Two structs called "dup"; the first's name is stored last. A prefix
    // of the strings that holds only the second's must not answer with it.
    let mut b = Builder::new();
    let early = b.s("dup");
    let int = b.int("int", 4, 32, true);
    let first_at = b.types.len();
    b.strukt("dup", 4, &[("a", int, 0, 0)]);
    let second_at = b.types.len();
    let second = b.strukt("dup", 8, &[("b", int, 0, 0)]);
    let late = b.s("dup");
    b.types[first_at..first_at + 4].copy_from_slice(&late.to_le_bytes());
    b.types[second_at..second_at + 4].copy_from_slice(&early.to_le_bytes());
    let data = b.build();
    let sections = section_ranges(&data, data.len() as u64).expect("header");
    assert_eq!(parse(&data).find_struct("dup"), Some(TypeId(second - 1)));
    let prefix = Btf::parse_prefix(&data, sections.types.len(), late as usize).expect("prefix");
    assert_eq!(prefix.find_struct("dup"), None);
    assert!(prefix.ran_short());
}
