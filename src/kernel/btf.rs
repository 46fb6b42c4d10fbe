//! BTF (BPF Type Format) reader: struct layouts without debuginfo.
//!
//! The kernel carries its own type information as BTF: in memory between
//! `__start_BTF` and `__stop_BTF`, as `/sys/kernel/btf/vmlinux` on a live
//! system, as the `.BTF` section of a vmlinux, and as a module's `.BTF`
//! section ("split" BTF, which continues the type ids and string offsets of
//! the vmlinux BTF it was built against). The layout is defined by the
//! kernel's `include/uapi/linux/btf.h`.
//!
//! [`Btf`] borrows the bytes (zero-copy): parsing walks the type section once
//! to record where each type starts (one `u32` per type present) and builds a
//! name index (one `u32` per named type). Everything else is read on demand,
//! and every read is bounds-checked: corrupt input gives a [`BtfError`], never
//! a panic, and nothing is allocated in proportion to a size the data only
//! claims.
//!
//! Only little-endian BTF is read (lpstack targets x86-64); byte-swapped data
//! is recognised and refused with [`BtfError::ByteSwapped`].

use std::fmt;

use crate::name_index::NameIndex;

/// `BTF_MAGIC` as stored little-endian.
pub const BTF_MAGIC: u16 = 0xeb9f;
/// `sizeof(struct btf_header)` for version 1.
pub const HEADER_LEN: usize = 24;
/// `sizeof(struct btf_type)`.
const TYPE_LEN: usize = 12;
/// How many typedef/modifier/anonymous-member hops we follow before calling
/// it a cycle (libbpf's `MAX_RESOLVE_DEPTH` is 32 too).
const MAX_DEPTH: u32 = 32;

/// A BTF type id. 0 is `void`; real types are numbered from 1 in order of
/// appearance; split BTF continues after its base's last id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypeId(pub u32);

impl TypeId {
    /// Type id 0: `void`.
    pub const VOID: TypeId = TypeId(0);
}

impl fmt::Display for TypeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0)
    }
}

/// `BTF_KIND_*`, plus `Void` for type id 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Type id 0, `void` (no record in the type section).
    Void,
    /// `BTF_KIND_INT` (1): an integer, `char` or `_Bool`.
    Int,
    /// `BTF_KIND_PTR` (2): a pointer.
    Ptr,
    /// `BTF_KIND_ARRAY` (3): a fixed-size array.
    Array,
    /// `BTF_KIND_STRUCT` (4).
    Struct,
    /// `BTF_KIND_UNION` (5).
    Union,
    /// `BTF_KIND_ENUM` (6): an enum with 32-bit values.
    Enum,
    /// `BTF_KIND_FWD` (7): a forward declaration of a struct or union.
    Fwd,
    /// `BTF_KIND_TYPEDEF` (8).
    Typedef,
    /// `BTF_KIND_VOLATILE` (9): the `volatile` qualifier.
    Volatile,
    /// `BTF_KIND_CONST` (10): the `const` qualifier.
    Const,
    /// `BTF_KIND_RESTRICT` (11): the `restrict` qualifier.
    Restrict,
    /// `BTF_KIND_FUNC` (12): a function, naming its prototype.
    Func,
    /// `BTF_KIND_FUNC_PROTO` (13): a function's signature.
    FuncProto,
    /// `BTF_KIND_VAR` (14): a global variable.
    Var,
    /// `BTF_KIND_DATASEC` (15): a data section and its variables.
    Datasec,
    /// `BTF_KIND_FLOAT` (16).
    Float,
    /// `BTF_KIND_DECL_TAG` (17): a `btf_decl_tag` attribute.
    DeclTag,
    /// `BTF_KIND_TYPE_TAG` (18): a `btf_type_tag` attribute (e.g. `__user`).
    TypeTag,
    /// `BTF_KIND_ENUM64` (19): an enum with 64-bit values.
    Enum64,
}

impl Kind {
    fn from_raw(kind: u8) -> Option<Kind> {
        Some(match kind {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data after `struct btf_type`.
    fn extra_len(self, vlen: usize) -> usize {
        match self {
            Kind::Int | Kind::Var | Kind::DeclTag => 4,
            Kind::Array => 12,
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => vlen * 12,
            Kind::Enum | Kind::FuncProto => vlen * 8,
            _ => 0,
        }
    }

    /// Kinds that only qualify or rename another type.
    fn is_modifier(self) -> bool {
        matches!(self, Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag)
    }
}

/// A short name carried inside an error by value, so that [`BtfError`] stays
/// `Copy` and free of lifetimes. Longer names are cut (at a char boundary)
/// and shown with a trailing `...`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name {
    len: u8,
    truncated: bool,
    buf: [u8; Name::CAP],
}

impl Name {
    const CAP: usize = 31;

    /// `s`, cut at a char boundary to at most 31 bytes.
    pub fn new(s: &str) -> Name {
        let mut end = s.len().min(Name::CAP);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut buf = [0u8; Name::CAP];
        buf[..end].copy_from_slice(&s.as_bytes()[..end]);
        Name { len: end as u8, truncated: end < s.len(), buf }
    }

    /// The (possibly cut) name.
    pub fn as_str(&self) -> &str {
        // Built from a &str cut at a char boundary, so this cannot fail.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Which section of the BTF blob an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// The type section (`type_off`, `type_len` in the header).
    Types,
    /// The string section (`str_off`, `str_len` in the header).
    Strings,
}

/// Why BTF could not be read or a lookup failed. `Copy`, naming the offset,
/// type id or names involved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    /// The data is shorter than the 24-byte header.
    #[error("BTF data is {len} bytes, too short for a header")]
    TooShort {
        /// Length of the data, in bytes.
        len: u64,
    },
    /// The magic is not `BTF_MAGIC`.
    #[error("bad BTF magic {found:#06x} (expected 0xeb9f)")]
    BadMagic {
        /// The magic read (little-endian).
        found: u16,
    },
    /// The magic is `BTF_MAGIC` byte-swapped: big-endian BTF, not supported.
    #[error("BTF data is byte-swapped (big-endian); only little-endian BTF is supported")]
    ByteSwapped,
    /// The header's version is not 1.
    #[error("unsupported BTF version {version}")]
    UnsupportedVersion {
        /// The version read.
        version: u8,
    },
    /// `hdr_len` is below 24 or past the end of the data.
    #[error("BTF header length {hdr_len} is invalid for {len} bytes of data")]
    BadHeaderLen {
        /// `hdr_len` as read.
        hdr_len: u32,
        /// Length of the data, in bytes.
        len: u64,
    },
    /// A section the header places runs past the end of the data.
    #[error("BTF {section:?} section at {offset}+{len} lies outside the {available} bytes after the header")]
    SectionOutOfBounds {
        /// Which section.
        section: Section,
        /// Its offset after the header, in bytes.
        offset: u32,
        /// Its length, in bytes.
        len: u32,
        /// Bytes of data after the header.
        available: u64,
    },
    /// A base BTF's string section does not start with the empty string.
    #[error("BTF string section of the base BTF does not start with a NUL byte")]
    BadStringSection,
    /// A type record runs past the end of the type section.
    #[error("BTF type {id} at offset {offset} of the type section is truncated")]
    TruncatedType {
        /// The id the type would have.
        id: TypeId,
        /// Its offset in the type section, in bytes.
        offset: u64,
    },
    /// A type record has a kind this reader does not know.
    #[error("BTF type {id} at offset {offset} of the type section has unknown kind {kind}")]
    UnknownKind {
        /// The id the type would have.
        id: TypeId,
        /// Its offset in the type section, in bytes.
        offset: u64,
        /// The raw `BTF_KIND_*` value.
        kind: u8,
    },
    /// Type ids would not fit in 32 bits.
    #[error("too many BTF types (ids would pass 2^32)")]
    TooManyTypes,
    /// A string offset is outside the string table, or its string has no NUL.
    #[error("BTF string offset {offset} is outside the string section or not NUL-terminated")]
    BadString {
        /// The offset, in the string table of base and split BTF together.
        offset: u32,
    },
    /// A type id refers to no type.
    #[error("BTF type {id} does not exist (referenced by {referenced_by:?})")]
    MissingType {
        /// The id with no type.
        id: TypeId,
        /// The type that refers to it; None when it was asked for directly.
        referenced_by: Option<TypeId>,
    },
    /// A chain of typedefs, modifiers, arrays or anonymous members is
    /// longer than 32 (a cycle?).
    #[error("BTF type chain starting at {id} is deeper than 32 (a cycle?)")]
    TooDeep {
        /// Where the chain starts.
        id: TypeId,
    },
    /// The size of a type that has none (void, forward declaration, function).
    #[error("BTF type {id} ({kind:?}) has no size")]
    NoSize {
        /// The sizeless type.
        id: TypeId,
        /// Its kind.
        kind: Kind,
    },
    /// A size or member offset overflows 64 bits.
    #[error("size of BTF type {id} overflows")]
    SizeOverflow {
        /// The type being measured or searched.
        id: TypeId,
    },
    /// Members of a type that is not a struct or union.
    #[error("BTF type {id} ({kind:?}) is not a struct or union")]
    NotComposite {
        /// The type, after typedefs and modifiers.
        id: TypeId,
        /// Its kind.
        kind: Kind,
    },
    /// No struct, union, or typedef of one, has this name.
    #[error("no struct or union named {name} in BTF")]
    NoStruct {
        /// The name looked for.
        name: Name,
    },
    /// A member path names a member that does not exist.
    #[error("{struct_name}: no member {element} (searched type {container})")]
    NoMember {
        /// The struct the path starts from.
        struct_name: Name,
        /// The member name not found.
        element: Name,
        /// The struct or union searched.
        container: TypeId,
    },
    /// A member path goes on past a member that is not a struct or union.
    #[error("{struct_name}: member {element} is not a struct or union, cannot descend into it")]
    NotCompositeMember {
        /// The struct the path starts from.
        struct_name: Name,
        /// The member the path goes on from.
        element: Name,
    },
    /// A member path indexes a member that is not an array.
    #[error("{struct_name}: member {element} is not an array, cannot index it")]
    NotArray {
        /// The struct the path starts from.
        struct_name: Name,
        /// The indexed member.
        element: Name,
    },
    /// A member path's index is past the end of its array.
    #[error("{struct_name}: index {index} is out of bounds for {element}[{nelems}]")]
    IndexOutOfBounds {
        /// The struct the path starts from.
        struct_name: Name,
        /// The indexed member.
        element: Name,
        /// The index given.
        index: u32,
        /// Elements in the array.
        nelems: u32,
    },
    /// A member path does not parse (an empty name, a bad index).
    #[error("{struct_name}: malformed member path {path}")]
    BadPath {
        /// The struct the path starts from.
        struct_name: Name,
        /// The path.
        path: Name,
    },
}

/// Where a member lies inside the struct a path started from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Byte offset from the start of the outer struct.
    pub offset: u64,
    /// Bit offset within that byte (non-zero only for bitfields).
    pub bit_offset: u32,
    /// Width in bits for a bitfield, 0 for an ordinary member.
    pub bitfield_size: u32,
    /// Size in bytes of the member's type (for a bitfield: of its declared
    /// type, e.g. 4 for `unsigned int x:1`).
    pub size: u64,
    /// The member's type as declared (typedefs and modifiers not stripped).
    pub type_id: TypeId,
}

/// One `struct btf_member` as stored, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberInfo<'data> {
    /// `None` for anonymous struct/union members.
    pub name: Option<&'data str>,
    /// The member's type as declared.
    pub type_id: TypeId,
    /// Offset in bits from the start of the containing struct.
    pub bit_offset: u32,
    /// Bitfield width (0 = not a bitfield, or the old encoding without
    /// kind_flag; [`Btf::member`] handles both).
    pub bitfield_size: u32,
}

/// One type record: `struct btf_type` and the bytes after it.
#[derive(Clone, Copy)]
struct Raw<'data> {
    id: TypeId,
    name_off: u32,
    kind: Kind,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
    extra: &'data [u8],
}

/// Where a BTF table's sections lie, in bytes from its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sections {
    /// The type section.
    pub types: std::ops::Range<usize>,
    /// The string section.
    pub strings: std::ops::Range<usize>,
}

/// Checks the header at the start of `header` (at least its first 24
/// bytes) of a table `len` bytes long, and says where its sections are.
pub fn section_ranges(header: &[u8], len: u64) -> Result<Sections, BtfError> {
    let header = header.get(..HEADER_LEN).filter(|_| len >= HEADER_LEN as u64).ok_or(BtfError::TooShort { len })?;
    let magic = u16::from_le_bytes([header[0], header[1]]);
    if magic == BTF_MAGIC.swap_bytes() {
        return Err(BtfError::ByteSwapped);
    }
    if magic != BTF_MAGIC {
        return Err(BtfError::BadMagic { found: magic });
    }
    if header[2] != 1 {
        return Err(BtfError::UnsupportedVersion { version: header[2] });
    }
    // hdr_len may grow in later versions of the format; the fields we know
    // keep their place, so only require it to cover them.
    let field = |i: usize| u32_at(header, 4 + 4 * i).unwrap_or(0);
    let hdr_len = field(0);
    if (hdr_len as usize) < HEADER_LEN || u64::from(hdr_len) > len {
        return Err(BtfError::BadHeaderLen { hdr_len, len });
    }
    let available = len - u64::from(hdr_len);
    let section = |section, offset: u32, sec_len: u32| {
        let end = u64::from(offset) + u64::from(sec_len);
        if end > available {
            return Err(BtfError::SectionOutOfBounds { section, offset, len: sec_len, available });
        }
        let start = hdr_len as usize + offset as usize;
        Ok(start..start + sec_len as usize)
    };
    Ok(Sections {
        types: section(Section::Types, field(1), field(2))?,
        strings: section(Section::Strings, field(3), field(4))?,
    })
}

/// Where the string at `offset` of `strings` ends (its NUL), if it does.
fn nul_at(strings: &[u8], offset: u32) -> Option<usize> {
    let start = offset as usize;
    memchr::memchr(0, strings.get(start..)?).map(|n| start + n)
}

fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    let bytes = data.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Parsed BTF: a base (vmlinux) or split (module) type table over borrowed
/// bytes, or a prefix of a base table (see [`Btf::parse_prefix`]).
pub struct Btf<'data> {
    types: &'data [u8],
    strings: &'data [u8],
    /// `offsets[i]`: where type `start_id + i` begins in `types`.
    offsets: Vec<u32>,
    /// First type id defined here: 1 for base BTF, base's end for split.
    start_id: u32,
    /// First string offset defined here: 0 for base, base's end for split.
    start_str: u32,
    base: Option<&'data Btf<'data>>,
    /// This table's named types by name, but functions. Built at parse.
    by_name: NameIndex,
    /// Its functions by name: half of a vmlinux's named types, and looked
    /// up only as `Kind::Func`, so indexed on the first such lookup.
    funcs_by_name: std::sync::OnceLock<NameIndex>,
    pointer_size: u64,
    /// Parsed from a prefix of the table: an answer that needs more than
    /// the prefix sets `ran_short` instead of being trusted.
    prefix: bool,
    ran_short: std::sync::atomic::AtomicBool,
}

impl Clone for Btf<'_> {
    fn clone(&self) -> Self {
        Btf {
            types: self.types,
            strings: self.strings,
            offsets: self.offsets.clone(),
            start_id: self.start_id,
            start_str: self.start_str,
            base: self.base,
            by_name: self.by_name.clone(),
            funcs_by_name: self.funcs_by_name.clone(),
            pointer_size: self.pointer_size,
            prefix: self.prefix,
            ran_short: std::sync::atomic::AtomicBool::new(self.ran_short()),
        }
    }
}

impl fmt::Debug for Btf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("start_id", &self.start_id)
            .field("types", &self.offsets.len())
            .field("start_str", &self.start_str)
            .field("strings_len", &self.strings.len())
            .field("split", &self.base.is_some())
            .finish()
    }
}

impl<'data> Btf<'data> {
    /// Parses base BTF (a vmlinux's `.BTF`, `/sys/kernel/btf/vmlinux`, or the
    /// bytes between `__start_BTF` and `__stop_BTF`).
    pub fn parse(data: &'data [u8]) -> Result<Self, BtfError> {
        Self::parse_inner(data, None, None)
    }

    /// Parses base BTF of which only the first `types_len` bytes of the
    /// type section and `strings_len` of the string section are at hand
    /// (`data` is the whole table's length; the rest may be anything).
    /// Types are taken up to the last whole one whose name is at hand.
    ///
    /// A table's lookups go by lowest id, so an answer found in a prefix is
    /// the whole table's answer. One the prefix cannot give (a name not
    /// found, an id or string past it, a walk over every type) is left
    /// unanswered and sets [`Btf::ran_short`]: then read more and parse
    /// again. The kernel's BTF starts with the core types, so struct
    /// layouts are usually found in its first quarter.
    pub fn parse_prefix(data: &'data [u8], types_len: usize, strings_len: usize) -> Result<Self, BtfError> {
        Self::parse_inner(data, None, Some((types_len, strings_len)))
    }

    /// Whether a query needed more than this prefix holds (always false
    /// for a whole table). Answers given since may be incomplete.
    pub fn ran_short(&self) -> bool {
        self.ran_short.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks a query the prefix could not answer (a no-op on a whole table).
    fn short(&self) {
        if self.prefix {
            self.ran_short.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Parses split BTF (a module's `.BTF`, `/sys/kernel/btf/<module>`) on
    /// top of the BTF it was built against. The result borrows `base`.
    pub fn parse_split(data: &'data [u8], base: &'data Btf<'data>) -> Result<Self, BtfError> {
        Self::parse_inner(data, Some(base), None)
    }

    /// `prefix`: the lengths of the type and string sections at hand.
    fn parse_inner(
        data: &'data [u8],
        base: Option<&'data Btf<'data>>,
        prefix: Option<(usize, usize)>,
    ) -> Result<Self, BtfError> {
        let Sections { types, strings } = section_ranges(data, data.len() as u64)?;
        let (mut types, mut strings) = (&data[types], &data[strings]);
        let cut = prefix.filter(|&(t, s)| t < types.len() || s < strings.len());
        if let Some((t, s)) = cut {
            types = &types[..t.min(types.len())];
            strings = &strings[..s.min(strings.len())];
        }
        // Offset 0 is the empty name; base BTF must hold it. Split BTF's
        // strings continue the base's and need not start with NUL.
        if base.is_none() && strings.first().is_some_and(|&b| b != 0) {
            return Err(BtfError::BadStringSection);
        }

        let (start_id, start_str) = match base {
            None => (1, 0),
            Some(b) => (b.end_id().0, b.start_str.saturating_add(b.strings.len() as u32)),
        };
        let mut offsets = Vec::new();
        let mut named = Vec::new();
        let mut pos = 0usize;
        // In a prefix, a name is whole when a NUL follows it: when it
        // starts at or before the last NUL read.
        let last_nul = memchr::memrchr(0, strings);
        while pos < types.len() {
            let id = u32::try_from(offsets.len())
                .ok()
                .and_then(|n| n.checked_add(start_id))
                .map(TypeId)
                .ok_or(BtfError::TooManyTypes)?;
            let truncated = BtfError::TruncatedType { id, offset: pos as u64 };
            if types.len() - pos < TYPE_LEN {
                if cut.is_some() {
                    break;
                }
                return Err(truncated);
            }
            let info = u32_at(types, pos + 4).ok_or(truncated)?;
            let raw_kind = ((info >> 24) & 0x1f) as u8;
            let kind =
                Kind::from_raw(raw_kind).ok_or(BtfError::UnknownKind { id, offset: pos as u64, kind: raw_kind })?;
            let end = pos + TYPE_LEN + kind.extra_len((info & 0xffff) as usize);
            let name_off = u32_at(types, pos).unwrap_or(0);
            // A prefix ends before a type cut off, or whose name is not at
            // hand: every type it holds is then in the name index.
            if cut.is_some() && (end > types.len() || last_nul.is_none_or(|nul| name_off as usize > nul)) {
                break;
            }
            if end > types.len() {
                return Err(truncated);
            }
            offsets.push(pos as u32);
            // Named types but functions, for the index (see `by_name`).
            if name_off != 0 && kind != Kind::Func {
                named.push((id.0, name_off));
            }
            pos = end;
        }
        // Every id must be representable: the last is start_id + len - 1.
        u32::try_from(offsets.len()).ok().and_then(|n| n.checked_add(start_id)).ok_or(BtfError::TooManyTypes)?;
        types = &types[..pos.min(types.len())];

        let mut btf = Btf {
            types,
            strings,
            offsets,
            start_id,
            start_str,
            base,
            by_name: NameIndex::default(),
            funcs_by_name: std::sync::OnceLock::new(),
            pointer_size: base.map_or(8, |b| b.pointer_size),
            prefix: cut.is_some(),
            ran_short: std::sync::atomic::AtomicBool::new(false),
        };
        btf.build_index(&named);
        Ok(btf)
    }

    /// `named`: (id, name offset) of the named types but functions.
    fn build_index(&mut self, named: &[(u32, u32)]) {
        self.by_name = self.name_index(named.iter().copied());
        if self.base.is_none() {
            // BTF does not record the pointer size; like libbpf, take the
            // size of `long`.
            let long = self.ids().filter_map(|id| self.raw(id)).find(|raw| {
                raw.kind == Kind::Int
                    && matches!(self.str_bytes(raw.name_off), Ok(b"long int" | b"long unsigned int"))
                    && matches!(raw.size_or_type, 4 | 8)
            });
            if long.is_none() {
                self.short();
            }
            self.pointer_size = long.map_or(8, |raw| u64::from(raw.size_or_type));
        }
    }

    /// The types `named` (id, name offset), by name.
    fn name_index(&self, named: impl Iterator<Item = (u32, u32)> + Clone) -> NameIndex {
        let names = named.clone().filter_map(|(id, name_off)| {
            let name = self.str_bytes(name_off).ok()?;
            (!name.is_empty()).then_some((id, name))
        });
        NameIndex::build(named.count(), names)
    }

    /// The functions, by name: (id, name offset) of each read from its
    /// first two words (the offsets were checked at parse).
    fn func_index(&self) -> NameIndex {
        let funcs = self.offsets.iter().enumerate().filter_map(|(i, &pos)| {
            let name_off = u32_at(self.types, pos as usize)?;
            let kind = Kind::from_raw(((u32_at(self.types, pos as usize + 4)? >> 24) & 0x1f) as u8);
            (name_off != 0 && kind == Some(Kind::Func)).then_some((self.start_id + i as u32, name_off))
        });
        self.name_index(funcs)
    }

    /// One past the last type id defined here (the first id a split BTF on
    /// top of this one would use). A prefix cannot say: see [`Btf::ran_short`].
    pub fn end_id(&self) -> TypeId {
        self.short();
        self.id_end()
    }

    fn id_end(&self) -> TypeId {
        TypeId(self.start_id + self.offsets.len() as u32)
    }

    /// The first type id defined by this table (1, or after the base's).
    pub fn start_id(&self) -> TypeId {
        TypeId(self.start_id)
    }

    /// The base this split BTF sits on, if any.
    pub fn base(&self) -> Option<&'data Btf<'data>> {
        self.base
    }

    /// Pointer size in bytes (the size of `long`; 8 when BTF has no `long`).
    pub fn pointer_size(&self) -> u64 {
        self.pointer_size
    }

    /// Ids of the types defined by this table (not its base). A prefix
    /// cannot list them all: see [`Btf::ran_short`].
    pub fn type_ids(&self) -> impl Iterator<Item = TypeId> + '_ {
        self.short();
        self.ids()
    }

    fn ids(&self) -> impl Iterator<Item = TypeId> + use<> {
        (self.start_id..self.id_end().0).map(TypeId)
    }

    fn raw(&self, id: TypeId) -> Option<Raw<'data>> {
        if id.0 < self.start_id {
            return self.base?.raw(id);
        }
        let Some(&pos) = self.offsets.get((id.0 - self.start_id) as usize) else {
            self.short();
            return None;
        };
        let pos = pos as usize;
        let info = u32_at(self.types, pos + 4)?;
        let kind = Kind::from_raw(((info >> 24) & 0x1f) as u8)?;
        let vlen = (info & 0xffff) as usize;
        let start = pos + TYPE_LEN;
        Some(Raw {
            id,
            name_off: u32_at(self.types, pos)?,
            kind,
            vlen,
            kind_flag: info >> 31 != 0,
            size_or_type: u32_at(self.types, pos + 8)?,
            extra: self.types.get(start..start + kind.extra_len(vlen))?,
        })
    }

    fn raw_or_missing(&self, id: TypeId, referenced_by: Option<TypeId>) -> Result<Raw<'data>, BtfError> {
        self.raw(id).ok_or(BtfError::MissingType { id, referenced_by })
    }

    /// The NUL-terminated string at `offset` of the (combined) string table.
    fn str_bytes(&self, offset: u32) -> Result<&'data [u8], BtfError> {
        if offset < self.start_str {
            return match self.base {
                Some(b) => b.str_bytes(offset),
                None => Err(BtfError::BadString { offset }),
            };
        }
        if offset == 0 && self.strings.is_empty() {
            return Ok(b"");
        }
        match nul_at(self.strings, offset - self.start_str) {
            Some(nul) => Ok(&self.strings[(offset - self.start_str) as usize..nul]),
            None => {
                self.short();
                Err(BtfError::BadString { offset })
            }
        }
    }

    /// The string at `offset`, `None` if empty, out of range or not UTF-8.
    fn str_at(&self, offset: u32) -> Option<&'data str> {
        let bytes = self.str_bytes(offset).ok()?;
        if bytes.is_empty() { None } else { std::str::from_utf8(bytes).ok() }
    }

    /// The kind of a type; `Kind::Void` for id 0, `None` if there is no such
    /// type.
    pub fn kind(&self, id: TypeId) -> Option<Kind> {
        if id == TypeId::VOID {
            return Some(Kind::Void);
        }
        self.raw(id).map(|r| r.kind)
    }

    /// The name of a type; `None` for anonymous types, void and unknown ids.
    pub fn name(&self, id: TypeId) -> Option<&'data str> {
        self.str_at(self.raw(id)?.name_off)
    }

    /// First type (lowest id, base before split) with this name and kind.
    pub fn find_by_name(&self, name: &str, kind: Kind) -> Option<TypeId> {
        self.find_by_name_where(name, |k| k == kind)
    }

    fn find_by_name_where(&self, name: &str, want: impl Fn(Kind) -> bool + Copy) -> Option<TypeId> {
        let funcs = want(Kind::Func);
        self.find_named(name, funcs, &mut |raw| want(raw.kind).then_some(raw.id))
    }

    /// Calls `f` on each type called `name`, base before split, in id
    /// order, until it returns `Some`: functions with `funcs`, else the
    /// other kinds.
    fn find_named<T>(&self, name: &str, funcs: bool, f: &mut impl FnMut(&Raw<'data>) -> Option<T>) -> Option<T> {
        if let Some(found) = self.base.and_then(|b| b.find_named(name, funcs, f)) {
            return Some(found);
        }
        let key = name.as_bytes();
        let name_of = |id: u32| self.raw(TypeId(id)).and_then(|r| self.str_bytes(r.name_off).ok()).unwrap_or(b"");
        let index = if funcs { self.funcs_by_name.get_or_init(|| self.func_index()) } else { &self.by_name };
        let found = index.find(key, name_of).filter_map(|id| self.raw(TypeId(id))).find_map(|raw| f(&raw));
        if found.is_none() {
            self.short();
        }
        found
    }

    /// The struct or union called `name`: the first complete definition
    /// (forward declarations are `Kind::Fwd` and never returned).
    pub fn find_struct(&self, name: &str) -> Option<TypeId> {
        self.find_by_name_where(name, |k| matches!(k, Kind::Struct | Kind::Union))
    }

    /// Strips typedefs and const/volatile/restrict/type_tag.
    pub fn resolve(&self, id: TypeId) -> Result<TypeId, BtfError> {
        let mut cur = id;
        let mut from = None;
        for _ in 0..=MAX_DEPTH {
            if cur == TypeId::VOID {
                return Ok(cur);
            }
            let raw = self.raw_or_missing(cur, from)?;
            if !raw.kind.is_modifier() {
                return Ok(cur);
            }
            from = Some(cur);
            cur = TypeId(raw.size_or_type);
        }
        Err(BtfError::TooDeep { id })
    }

    /// Size in bytes of a type, through typedefs and modifiers; arrays are
    /// element size times element count, pointers [`Btf::pointer_size`].
    pub fn type_size(&self, id: TypeId) -> Result<u64, BtfError> {
        self.size_at_depth(id, None, 0)
    }

    fn size_at_depth(&self, id: TypeId, from: Option<TypeId>, depth: u32) -> Result<u64, BtfError> {
        let mut cur = id;
        let mut from = from;
        for d in depth..=MAX_DEPTH {
            if cur == TypeId::VOID {
                return Err(BtfError::NoSize { id: cur, kind: Kind::Void });
            }
            let raw = self.raw_or_missing(cur, from)?;
            match raw.kind {
                Kind::Int | Kind::Enum | Kind::Enum64 | Kind::Struct | Kind::Union | Kind::Datasec | Kind::Float => {
                    return Ok(u64::from(raw.size_or_type));
                }
                Kind::Ptr => return Ok(self.pointer_size),
                Kind::Array => {
                    let (elem, nelems) = array_fields(&raw);
                    let elem_size = self.size_at_depth(elem, Some(cur), d + 1)?;
                    return elem_size.checked_mul(u64::from(nelems)).ok_or(BtfError::SizeOverflow { id: cur });
                }
                Kind::Typedef
                | Kind::Volatile
                | Kind::Const
                | Kind::Restrict
                | Kind::TypeTag
                | Kind::Var
                | Kind::DeclTag => {
                    from = Some(cur);
                    cur = TypeId(raw.size_or_type);
                }
                kind @ (Kind::Void | Kind::Fwd | Kind::Func | Kind::FuncProto) => {
                    return Err(BtfError::NoSize { id: cur, kind });
                }
            }
        }
        Err(BtfError::TooDeep { id })
    }

    /// For a pointer (after stripping typedefs/modifiers): the pointed-to
    /// type, as declared.
    pub fn pointee(&self, id: TypeId) -> Option<TypeId> {
        let raw = self.raw(self.resolve(id).ok()?)?;
        (raw.kind == Kind::Ptr).then_some(TypeId(raw.size_or_type))
    }

    /// For an array (after stripping typedefs/modifiers): element type as
    /// declared, and element count.
    pub fn array_info(&self, id: TypeId) -> Option<(TypeId, u32)> {
        let raw = self.raw(self.resolve(id).ok()?)?;
        (raw.kind == Kind::Array).then(|| array_fields(&raw))
    }

    /// The members of a struct or union (after stripping typedefs and
    /// modifiers), in declaration order, anonymous members included.
    pub fn members(&self, id: TypeId) -> Result<Members<'_, 'data>, BtfError> {
        let id = self.resolve(id)?;
        let raw = self.raw_or_missing(id, None)?;
        match raw.kind {
            Kind::Struct | Kind::Union => Ok(Members { btf: self, raw, next: 0 }),
            kind => Err(BtfError::NotComposite { id, kind }),
        }
    }

    /// Where `path` lies inside the struct (or union, or typedef of one)
    /// called `struct_name`. `path` is dot-separated member names, each
    /// optionally indexed (`mem[1].base`); members of anonymous structs and
    /// unions are found as if they were direct members, as in C.
    pub fn member(&self, struct_name: &str, path: &str) -> Result<Member, BtfError> {
        let sname = Name::new(struct_name);
        let root = self
            .find_struct(struct_name)
            .or_else(|| {
                let td = self.find_by_name(struct_name, Kind::Typedef)?;
                let r = self.resolve(td).ok()?;
                matches!(self.kind(r), Some(Kind::Struct | Kind::Union)).then_some(td)
            })
            .ok_or(BtfError::NoStruct { name: sname })?;
        let bad_path = BtfError::BadPath { struct_name: sname, path: Name::new(path) };

        let mut cur = root;
        let mut bits: u64 = 0;
        let mut bitfield_size = 0;
        let mut prev: Option<&str> = None;
        for element in path.split('.') {
            let (name, mut indices) = match element.find('[') {
                Some(i) => (&element[..i], &element[i..]),
                None => (element, ""),
            };
            if name.is_empty() {
                return Err(bad_path);
            }
            let container = self.resolve(cur)?;
            if !matches!(self.kind(container), Some(Kind::Struct | Kind::Union)) {
                return Err(BtfError::NotCompositeMember {
                    struct_name: sname,
                    element: Name::new(prev.unwrap_or(struct_name)),
                });
            }
            let found = self.find_member(container, name, 0)?.ok_or(BtfError::NoMember {
                struct_name: sname,
                element: Name::new(name),
                container,
            })?;
            bits = bits.checked_add(found.0).ok_or(BtfError::SizeOverflow { id: container })?;
            cur = found.1;
            bitfield_size = found.2;
            while !indices.is_empty() {
                let close = indices.find(']').ok_or(bad_path)?;
                let index: u32 = indices.get(1..close).and_then(|s| s.parse().ok()).ok_or(bad_path)?;
                indices = &indices[close + 1..];
                if !indices.is_empty() && !indices.starts_with('[') {
                    return Err(bad_path);
                }
                let (elem, nelems) =
                    self.array_info(cur).ok_or(BtfError::NotArray { struct_name: sname, element: Name::new(name) })?;
                if index >= nelems {
                    return Err(BtfError::IndexOutOfBounds {
                        struct_name: sname,
                        element: Name::new(name),
                        index,
                        nelems,
                    });
                }
                let step = self
                    .type_size(elem)?
                    .checked_mul(u64::from(index))
                    .and_then(|b| b.checked_mul(8))
                    .ok_or(BtfError::SizeOverflow { id: cur })?;
                bits = bits.checked_add(step).ok_or(BtfError::SizeOverflow { id: cur })?;
                cur = elem;
                bitfield_size = 0;
            }
            prev = Some(name);
        }
        Ok(Member {
            offset: bits / 8,
            bit_offset: (bits % 8) as u32,
            bitfield_size,
            size: self.type_size(cur)?,
            type_id: cur,
        })
    }

    /// Finds `name` among the members of `container` (a resolved struct or
    /// union), descending into anonymous members. Returns (bit offset,
    /// type, bitfield size).
    fn find_member(&self, container: TypeId, name: &str, depth: u32) -> Result<Option<(u64, TypeId, u32)>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id: container });
        }
        for m in self.members(container)? {
            let m = m?;
            match m.name {
                Some(n) if n == name => {
                    let (bit_offset, bitfield_size) = self.old_style_bitfield(&m)?;
                    return Ok(Some((bit_offset, m.type_id, bitfield_size)));
                }
                None => {
                    let inner = self.resolve(m.type_id)?;
                    let nested = match self.kind(inner) {
                        Some(Kind::Struct | Kind::Union) => self.find_member(inner, name, depth + 1)?,
                        _ => None,
                    };
                    if let Some((off, ty, bf)) = nested {
                        return Ok(Some((u64::from(m.bit_offset) + off, ty, bf)));
                    }
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// Without kind_flag, a bitfield is a member whose type is an INT
    /// narrower than its storage (BTF_INT_BITS), possibly with an extra
    /// BTF_INT_OFFSET. Old pahole wrote that; the kernel still accepts it.
    fn old_style_bitfield(&self, m: &MemberInfo<'data>) -> Result<(u64, u32), BtfError> {
        let plain = (u64::from(m.bit_offset), m.bitfield_size);
        if m.bitfield_size != 0 {
            return Ok(plain);
        }
        let ty = self.resolve(m.type_id)?;
        let Some(raw) = self.raw(ty) else { return Ok(plain) };
        if raw.kind != Kind::Int {
            return Ok(plain);
        }
        let enc = u32_at(raw.extra, 0).unwrap_or(0);
        let (bits, int_off) = (enc & 0xff, (enc >> 16) & 0xff);
        if int_off == 0 && u64::from(bits) == u64::from(raw.size_or_type) * 8 {
            return Ok(plain);
        }
        Ok((plain.0 + u64::from(int_off), bits))
    }

    /// The value of enumerator `enumerator`, in the enum called `enum_name`
    /// or, with `None`, in any enum (first match by type id). ENUM and ENUM64
    /// are both searched; unsigned values above `i64::MAX` wrap. A 32-bit
    /// enum's value is sign-extended when the enum is marked signed
    /// (kind_flag), zero-extended otherwise, as libbpf reads it.
    pub fn enum_value(&self, enum_name: Option<&str>, enumerator: &str) -> Option<i64> {
        let is_enum = |k| matches!(k, Kind::Enum | Kind::Enum64);
        match enum_name {
            Some(n) => self.find_named(n, false, &mut |raw| {
                if is_enum(raw.kind) { self.enumerator_in(raw, enumerator) } else { None }
            }),
            None => self.base.and_then(|b| b.enum_value(None, enumerator)).or_else(|| {
                let found = self
                    .ids()
                    .filter_map(|id| self.raw(id))
                    .filter(|r| is_enum(r.kind))
                    .find_map(|r| self.enumerator_in(&r, enumerator));
                if found.is_none() {
                    self.short();
                }
                found
            }),
        }
    }

    fn enumerator_in(&self, raw: &Raw<'data>, enumerator: &str) -> Option<i64> {
        let key = enumerator.as_bytes();
        let stride = if raw.kind == Kind::Enum64 { 12 } else { 8 };
        raw.extra.chunks_exact(stride).find_map(|e| {
            let name_off = u32_at(e, 0)?;
            if self.str_bytes(name_off).ok()? != key {
                return None;
            }
            let lo = u32_at(e, 4)?;
            Some(match (raw.kind, raw.kind_flag) {
                (Kind::Enum64, _) => ((u64::from(u32_at(e, 8)?) << 32) | u64::from(lo)) as i64,
                (_, true) => i64::from(lo as i32),
                (_, false) => i64::from(lo),
            })
        })
    }
}

fn array_fields(raw: &Raw<'_>) -> (TypeId, u32) {
    (TypeId(u32_at(raw.extra, 0).unwrap_or(0)), u32_at(raw.extra, 8).unwrap_or(0))
}

/// Iterator over a struct's or union's [`MemberInfo`]s; yields an error for
/// a member whose name offset is bad.
pub struct Members<'a, 'data> {
    btf: &'a Btf<'data>,
    raw: Raw<'data>,
    next: usize,
}

impl<'data> Iterator for Members<'_, 'data> {
    type Item = Result<MemberInfo<'data>, BtfError>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.next.checked_mul(12)?;
        let chunk = self.raw.extra.get(start..start + 12)?;
        self.next += 1;
        let name_off = u32_at(chunk, 0)?;
        let type_id = TypeId(u32_at(chunk, 4)?);
        let offset = u32_at(chunk, 8)?;
        let name = match self.btf.str_bytes(name_off) {
            Ok([]) => None,
            Ok(b) => match std::str::from_utf8(b) {
                Ok(s) => Some(s),
                Err(_) => return Some(Err(BtfError::BadString { offset: name_off })),
            },
            Err(e) => return Some(Err(e)),
        };
        // With kind_flag, the high 8 bits hold the bitfield width.
        let (bit_offset, bitfield_size) =
            if self.raw.kind_flag { (offset & 0x00ff_ffff, offset >> 24) } else { (offset, 0) };
        Some(Ok(MemberInfo { name, type_id, bit_offset, bitfield_size }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.raw.vlen.saturating_sub(self.next);
        (left, Some(left))
    }
}

/// The `.BTF` section of an ELF file (a vmlinux or a module `.ko`), if any.
pub fn elf_btf_section(elf: &[u8]) -> Option<&[u8]> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(elf).ok()?;
    file.section_by_name(".BTF")?.data().ok()
}

#[cfg(test)]
mod tests;
