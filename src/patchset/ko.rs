//! The patched functions of a livepatch module file (`.ko`), read without
//! loading it.
//!
//! A `.ko` is an ELF64 relocatable file: every pointer in its data is zero
//! in the section bytes and filled by a RELA relocation at load. So each
//! pointer field is read through the relocation whose `r_offset` is the
//! field (symbol + addend), never through the bytes; a pointer field with no
//! relocation is NULL only if its bytes are zero too.
//!
//! Three ways of building a livepatch module leave the list in three shapes
//! ([`ModuleForm`]):
//!
//! - **klp-build** (upstream, Linux 6.19+): arrays of `struct klp_object_ext`
//!   and `struct klp_func_ext` in `__klp_objects` / `__klp_funcs`, renamed
//!   `.init.klp_objects` / `.init.klp_funcs` by tip commit b525fcaf0a76
//!   ("livepatch: Free klp_{object,func}_ext data after initialization",
//!   objtool/urgent, February 2026). Both names are read.
//! - **kpatch-build** (github.com/dynup/kpatch): an array of
//!   `struct kpatch_patch_func` in `.kpatch.funcs`, strings in
//!   `.kpatch.strings`.
//! - **source-built** (samples/livepatch/livepatch-sample.c and modules
//!   written like it): a static `struct klp_patch` whose `objs` and `funcs`
//!   arrays end with an all-zero entry. Its layout is taken from BTF, never
//!   assumed; the patch is found without symbol names, through its `mod`
//!   field's relocation to `__this_module`.
//!
//! Layouts, and where each was read (facts only; no code was copied):
//!
//! - `klp_func_ext { const char *old_name; void *new_func; unsigned long
//!   sympos; }` (24 bytes) and `klp_object_ext { const char *name; struct
//!   klp_func_ext *funcs; struct klp_callbacks callbacks; unsigned int
//!   nr_funcs; }` (64 bytes: `klp_callbacks` is four pointers and a bool,
//!   40 bytes): include/linux/livepatch_external.h, torvalds/linux commit
//!   5add3c3c280a35f7e258e9cef7607db5a2e56fdc (the layout klp-build was
//!   merged with for v6.19).
//!   Strings and pointers by relocation, `sympos` and `nr_funcs` written as
//!   literals, `name` left NULL for vmlinux: `create_klp_sections()` in
//!   tools/objtool/klp-diff.c, torvalds/linux commit
//!   07f14d6af9d7791fdc2b44a3dd0693e42c71d2b8. A proposed series moves the
//!   callbacks out of `klp_object_ext` (24 bytes); when the BTF given (or
//!   the module's own `.BTF` over it) has `struct klp_object_ext`, its
//!   layout is used instead of the v6.19 one.
//! - `kpatch_patch_func { unsigned long new_addr, new_size, old_addr,
//!   old_size, sympos; char *name, *objname; }` (56 bytes):
//!   kmod/patch/kpatch-patch.h, dynup/kpatch commit
//!   7085e9dfc969ac8ba7dcaccda26ca2c2e71a313d (v0.9.11+34). `new_addr`,
//!   `name` and `objname` are relocations (kpatch-build/create-diff-object.c,
//!   `kpatch_create_patches_sections()`); objname "vmlinux" is vmlinux
//!   (kmod/patch/livepatch-patch-hook.c, `patch_alloc_new_object()`).
//! - `klp_patch` / `klp_object` / `klp_func`: from BTF. The terminators are
//!   the kernel's (`klp_for_each_object_static`: `funcs` and `name` both
//!   NULL; `klp_for_each_func_static`: `old_name`, `new_func` and
//!   `old_sympos` all zero; include/linux/livepatch.h of 6.12.117, Debian
//!   linux-source-6.12, and the same conditions back to torvalds/linux
//!   0430f78bf38f9972f0cf0522709cc63d49fa164c, where the macros had no
//!   `_static` suffix). `klp_enable_patch()` refuses an object without
//!   `funcs` and `klp_init_func()` a function without `old_name` or
//!   `new_func` (kernel/livepatch/core.c, 6.12.117); so does this reader.
//!
//! Atomic replace ([`LivepatchModule::replace`]) is in the file only for
//! source-built modules (the `replace` field of the static `klp_patch`). The
//! two tools set it in their generated init code from a compile-time macro:
//! klp-build's scripts/livepatch/init.c sets `patch->replace = true` unless
//! built with `--no-replace` (`-DKLP_NO_REPLACE`); kpatch-build's
//! livepatch-patch-hook.c sets `lpatch->replace = KLP_REPLACE_ENABLE`, true
//! unless built with `-R`/`--non-replace` (`-DKLP_REPLACE_ENABLE=false`,
//! replace by default since kpatch commit 17dcebf, v0.9.4). Neither leaves a
//! symbol, section or string saying which: only an immediate in machine
//! code. So for those two forms `replace` is `None` (both tools' default is
//! replace).

use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, Rela, SectionHeader, SectionTable, Sym, SymbolTable};
use object::{LittleEndian, SymbolIndex};

use super::FuncSpec;
use crate::kernel::btf::{Btf, BtfError};

type Header = FileHeader64<LittleEndian>;
const LE: LittleEndian = LittleEndian;

/// klp-build's `struct klp_object_ext` / `struct klp_func_ext` as released
/// in v6.19 (see the module documentation).
const KLP_EXT_V6_19: ExtLayout = ExtLayout {
    obj_size: 64,
    obj_name: 0,
    obj_funcs: 8,
    obj_nr_funcs: Field { offset: 56, size: 4 },
    func_size: 24,
    func_old_name: 0,
    func_new_func: 8,
    func_sympos: Field { offset: 16, size: 8 },
};

/// `sizeof(struct kpatch_patch_func)` and its field offsets.
const KPATCH_FUNC_SIZE: u64 = 56;
const KPATCH_NEW_ADDR: u64 = 0;
const KPATCH_SYMPOS: u64 = 32;
const KPATCH_NAME: u64 = 40;
const KPATCH_OBJNAME: u64 = 48;

/// `KSYM_NAME_LEN` since 6.1: no symbol or module name is longer.
const MAX_STRING: usize = 512;
/// More places than this that look like a static `klp_patch` is not a
/// module anyone wrote (and reading each costs a walk of its arrays).
const MAX_PATCH_CANDIDATES: usize = 64;

/// `MODULE_NAME_LEN` on 64-bit: 64 - sizeof(unsigned long).
const MODULE_NAME_LEN: u64 = 56;
/// `offsetof(struct module, name)` on x86-64 when no BTF is given: `enum
/// module_state state` (4 bytes, padded to 8) and `struct list_head list`
/// come first, unchanged since 2.6.
const MODULE_NAME_OFFSET: u64 = 24;

/// How a livepatch module was built: where its list of functions is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ModuleForm {
    /// Upstream klp-build: `.init.klp_objects` (or `__klp_objects`).
    KlpBuild,
    /// kpatch-build: `.kpatch.funcs`.
    KpatchBuild,
    /// A static `struct klp_patch`, as in samples/livepatch.
    SourceBuilt,
}

impl ModuleForm {
    /// The form's name in messages: "klp-build", "kpatch-build" or "source-built".
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleForm::KlpBuild => "klp-build",
            ModuleForm::KpatchBuild => "kpatch-build",
            ModuleForm::SourceBuilt => "source-built",
        }
    }
}

/// What a livepatch module patches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LivepatchModule {
    /// The module's name (`name=` in `.modinfo`, else the name in
    /// `.gnu.linkonce.this_module`).
    pub name: String,
    /// How it was built, hence where its list was read.
    pub form: ModuleForm,
    /// Atomic replace, when the file says: `Some` for source-built modules,
    /// `None` for klp-build and kpatch-build, whose generated init code sets
    /// it from a compile-time macro (both default to replace; see the module
    /// documentation).
    pub replace: Option<bool>,
    /// In file order. klp-build and source-built: one per `klp_object_ext`
    /// / `klp_object` record. kpatch-build: one per distinct objname, in
    /// order of first appearance (the kernel gets the same groups).
    pub objects: Vec<PatchObject>,
}

/// The functions patched in one object (vmlinux or a module).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PatchObject {
    /// `None` is vmlinux.
    pub name: Option<String>,
    /// Its patched functions, in file order.
    pub funcs: Vec<PatchFunc>,
}

/// One patched function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PatchFunc {
    /// The function being replaced, as named in the object.
    pub old_name: String,
    /// 0: the name is unique in the object; N: its Nth occurrence.
    pub sympos: u32,
    /// The replacement function's symbol in the `.ko`, when the relocation
    /// names one (a function symbol, or a section symbol + addend that lands
    /// on a named function).
    pub new_symbol: Option<String>,
}

impl PatchObject {
    /// The object name as `funcs.txt` and the symbol tables spell it.
    pub fn object_name(&self) -> &str {
        self.name.as_deref().unwrap_or("vmlinux")
    }
}

impl LivepatchModule {
    /// The old functions as specs, for [`super::PatchSet::resolve`]:
    /// `line` is the function's 1-based ordinal in the module (objects in
    /// order, functions in order within each), so a resolution error reads
    /// "line N" for "function N of the module".
    pub fn func_specs(&self) -> Vec<FuncSpec> {
        self.funcs()
            .enumerate()
            .map(|(index, (object, func))| FuncSpec {
                object: object.object_name().to_owned(),
                function: func.old_name.clone(),
                sympos: func.sympos,
                line: index + 1,
            })
            .collect()
    }

    /// The replacement functions as specs in this module's own symbol table
    /// (object = the module name), paired with [`Self::func_specs`] for
    /// [`super::PatchSet::resolve_new`]. `None` if a replacement has no
    /// symbol.
    pub fn replacement_specs(&self) -> Option<Vec<FuncSpec>> {
        self.funcs()
            .enumerate()
            .map(|(index, (_, func))| {
                Some(FuncSpec {
                    object: self.name.clone(),
                    function: func.new_symbol.clone()?,
                    sympos: 0,
                    line: index + 1,
                })
            })
            .collect()
    }

    /// Every function with its object, in ordinal order.
    pub fn funcs(&self) -> impl Iterator<Item = (&PatchObject, &PatchFunc)> {
        self.objects.iter().flat_map(|object| object.funcs.iter().map(move |func| (object, func)))
    }
}

/// Why a `.ko` could not be read as a livepatch module. Places are given as
/// `section+0xoffset` (offsets within the section, as in `readelf -r`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KoError {
    /// The file is not an ELF64 little-endian x86-64 `ET_REL` file.
    #[error("not an ELF64 little-endian x86-64 relocatable file: {reason}")]
    NotElf {
        /// Which check failed.
        reason: String,
    },
    /// The ELF structure is broken or unsupported (e.g. REL rather than
    /// RELA relocations).
    #[error("malformed ELF: {reason}")]
    Elf {
        /// What is broken, and where.
        reason: String,
    },
    /// No klp-build or kpatch-build section, and no static `klp_patch` found
    /// (or only one whose `objs` is NULL).
    #[error("not a livepatch module: no __klp_objects/.init.klp_objects, .kpatch.funcs or klp_patch found")]
    NotLivepatch,
    /// Neither klp-build nor kpatch-build sections, and no BTF with
    /// `struct klp_patch` to look for a source-built one.
    #[error(
        "no __klp_objects/.init.klp_objects or .kpatch.funcs section{tag}; a source-built module's static struct klp_patch can only be found with BTF that has struct klp_patch (the target kernel's vmlinux BTF)",
        tag = if *livepatch_tag { " (.modinfo says livepatch=Y)" } else { "" }
    )]
    NeedBtf {
        /// `.modinfo` has a `livepatch=` entry.
        livepatch_tag: bool,
    },
    /// A struct or member the reader needs is missing from the BTF, or
    /// unreadable.
    #[error("BTF: {what}: {source}")]
    Btf {
        /// The struct, or `struct.member`, looked up.
        what: &'static str,
        /// The BTF reader's error.
        #[source]
        source: BtfError,
    },
    /// A BTF struct or member has a size the reader cannot use (or is a
    /// bitfield).
    #[error("BTF: {what} is {size} bytes, expected {expected}")]
    BtfFieldSize {
        /// The struct, or `struct.member`.
        what: &'static str,
        /// Its size in BTF, in bytes.
        size: u64,
        /// The sizes accepted, in words.
        expected: &'static str,
    },
    /// Two of the sections that can hold the list are present.
    #[error("the module has both {first} and {second}; cannot tell which the kernel gets")]
    MultipleForms {
        /// The first, in the order `.init.klp_objects`, `__klp_objects`,
        /// `.kpatch.funcs`.
        first: &'static str,
        /// The second, in that order.
        second: &'static str,
    },
    /// A section of fixed-size records is not a whole number of them.
    #[error("{section} is {size:#x} bytes, not a multiple of sizeof(struct {what}) = {record}")]
    BadSectionSize {
        /// The section's name.
        section: String,
        /// Its size in bytes.
        size: u64,
        /// The record's struct name.
        what: &'static str,
        /// The record's size in bytes.
        record: u64,
    },
    /// A section that must be read has no bytes in the file.
    #[error("{section} has no data in the file ({why})")]
    NoData {
        /// The section's name.
        section: String,
        /// Why: `SHT_NOBITS`, or a file range outside the file.
        why: &'static str,
    },
    /// A field or record runs past the end of its section.
    #[error("{what} at {at} needs {len} bytes but {section} has {size:#x}")]
    Truncated {
        /// The field or struct read.
        what: &'static str,
        /// Where it starts, `section+0xoffset`.
        at: String,
        /// Bytes needed.
        len: u64,
        /// The section's name.
        section: String,
        /// The section's size in bytes.
        size: u64,
    },
    /// A pointer's target (symbol value + addend) lies outside the section
    /// it names.
    #[error("relocation at {at} points outside {target} (offset {}, size {size:#x})", signed_hex(*offset))]
    RelocOutside {
        /// The pointer field, `section+0xoffset`.
        at: String,
        /// The section pointed into.
        target: String,
        /// The target's offset in that section; may be negative.
        offset: i128,
        /// That section's size in bytes.
        size: u64,
    },
    /// A relocation the reader cannot follow: e.g. not `R_X86_64_64`, no
    /// symbol, not at the field's start, past its section's end.
    #[error("relocation at {at}: {reason}")]
    BadReloc {
        /// The relocation's or field's place, `section+0xoffset`.
        at: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A pointer field holds a non-zero value but has no relocation.
    #[error("{what} at {at} holds {value:#x} without a relocation (a pointer in a .ko is either relocated or NULL)")]
    UnrelocatedPointer {
        /// The field, as `struct.member`.
        what: &'static str,
        /// Its place, `section+0xoffset`.
        at: String,
        /// The bytes it holds, as a little-endian number.
        value: u64,
    },
    /// A number field (count, sympos, flag) has a relocation: likely the
    /// wrong layout.
    #[error("{what} at {at} has a relocation, but it is a plain number in this layout (wrong layout?)")]
    RelocatedLiteral {
        /// The field, as `struct.member`.
        what: &'static str,
        /// Its place, `section+0xoffset`.
        at: String,
    },
    /// A string or array pointer is relocated to a symbol the module does
    /// not define.
    #[error("{what} at {at} points to the undefined symbol `{symbol}`, not into the module")]
    ExternalPointer {
        /// The field, as `struct.member`.
        what: &'static str,
        /// Its place, `section+0xoffset`.
        at: String,
        /// The undefined symbol's name.
        symbol: String,
    },
    /// A string runs to the end of its section without a NUL.
    #[error("string at {at} has no NUL before the end of its section")]
    UnterminatedString {
        /// The string's start, `section+0xoffset`.
        at: String,
    },
    /// A string is longer than `KSYM_NAME_LEN` (512) bytes.
    #[error("string at {at} is longer than 512 bytes (KSYM_NAME_LEN)")]
    LongString {
        /// The string's start, `section+0xoffset`.
        at: String,
    },
    /// More than 64 places look like a static `klp_patch`.
    #[error("{count} places look like a struct klp_patch (more than 64); not a module anyone wrote")]
    TooManyPatchCandidates {
        /// How many were found.
        count: usize,
    },
    /// A name string is not valid UTF-8.
    #[error("string at {at} is not UTF-8")]
    NonUtf8String {
        /// The string's start, `section+0xoffset`.
        at: String,
    },
    /// A name string is empty (or lies in a NOBITS section).
    #[error("string at {at} is empty")]
    EmptyString {
        /// The string's start, `section+0xoffset`.
        at: String,
    },
    /// A source-built `objs` or `funcs` array has no all-zero entry before
    /// the end of its section.
    #[error("array of struct {what} at {at} runs to the end of {section} without its all-zero terminator")]
    NoTerminator {
        /// The element's struct name: `klp_object` or `klp_func`.
        what: &'static str,
        /// The array's start, `section+0xoffset`.
        at: String,
        /// The section's name.
        section: String,
    },
    /// A function record lacks a field the kernel requires (its old name,
    /// its replacement, a kpatch objname).
    #[error("function {ordinal} of object `{object}` (at {at}): {field} is NULL")]
    NullField {
        /// 1-based position of the function in the module, counted across objects.
        ordinal: usize,
        /// Its object's name (`vmlinux` for none; empty when the objname is NULL).
        object: String,
        /// The record's place, `section+0xoffset`.
        at: String,
        /// The NULL field's name.
        field: &'static str,
    },
    /// An object record names an object (or counts functions) but has no
    /// `funcs` array.
    #[error("object {ordinal} (at {at}) has a name but no funcs array")]
    ObjectWithoutFuncs {
        /// 1-based position of the object in the module.
        ordinal: usize,
        /// The record's place, `section+0xoffset`.
        at: String,
    },
    /// A sympos does not fit lpstack's `u32`.
    #[error("sympos {value} at {at} does not fit in 32 bits")]
    SymposTooLarge {
        /// The field's place, `section+0xoffset`.
        at: String,
        /// The value read.
        value: u64,
    },
    /// A function count claims more records than the section holds.
    #[error("{what} at {at} claims {count} functions; at most {fit} fit in {section}")]
    TooMany {
        /// The count field, as `struct.member`.
        what: &'static str,
        /// Its place, `section+0xoffset`.
        at: String,
        /// The count read.
        count: u64,
        /// How many records fit between the array's start and the section's end.
        fit: u64,
        /// The array's section.
        section: String,
    },
    /// More than one static `klp_patch` reads correctly.
    #[error("several struct klp_patch found: {}; cannot tell which one the module registers", candidates.join(", "))]
    AmbiguousPatch {
        /// Each one: its symbol and place, or its place alone.
        candidates: Vec<String>,
    },
    /// No `name=` in `.modinfo` and no readable `struct module` name.
    #[error("no module name: no name= in .modinfo and no readable name in .gnu.linkonce.this_module")]
    NoModuleName,
}
/// `-0x9` rather than a 128-bit two's complement.
fn signed_hex(value: i128) -> String {
    if value < 0 { format!("-{:#x}", value.unsigned_abs()) } else { format!("{value:#x}") }
}

/// Reads which functions the livepatch module `elf` patches.
///
/// `btf` is the target kernel's BTF (its vmlinux BTF, or a module's split
/// BTF on top of it): needed for source-built modules (the layouts of
/// `klp_patch`, `klp_object` and `klp_func`), optional otherwise. The form is
/// recognised from the file: klp-build and kpatch-build sections first, then
/// a static `klp_patch`.
pub fn read_livepatch_module(elf: &[u8], btf: Option<&Btf<'_>>) -> Result<LivepatchModule, KoError> {
    let image = Image::parse(elf)?;
    let klp_objects = image.section_named(".init.klp_objects");
    let old_klp_objects = image.section_named("__klp_objects");
    let kpatch_funcs = image.section_named(".kpatch.funcs");
    let forms = [
        klp_objects.map(|s| (".init.klp_objects", s)),
        old_klp_objects.map(|s| ("__klp_objects", s)),
        kpatch_funcs.map(|s| (".kpatch.funcs", s)),
    ];
    let mut present = forms.iter().flatten();
    let first = present.next().copied();
    if let (Some((first, _)), Some((second, _))) = (first, present.next()) {
        return Err(KoError::MultipleForms { first, second });
    }
    let (form, replace, objects) = match first {
        Some((".kpatch.funcs", section)) => (ModuleForm::KpatchBuild, None, read_kpatch(&image, section)?),
        Some((_, section)) => {
            let layout = ext_layout(elf, btf)?;
            (ModuleForm::KlpBuild, None, read_klp_build(&image, section, &layout)?)
        }
        None => {
            let layout = match btf {
                Some(btf) if btf.find_struct("klp_patch").is_some() => SourceLayout::from_btf(btf)?,
                _ => {
                    return Err(KoError::NeedBtf { livepatch_tag: image.modinfo("livepatch").is_some() });
                }
            };
            let (objects, replace) = read_source_built(&image, &layout)?;
            (ModuleForm::SourceBuilt, Some(replace), objects)
        }
    };
    Ok(LivepatchModule { name: image.module_name(btf)?, form, replace, objects })
}

// ---------------------------------------------------------------------------
// The ELF file: sections, symbols, RELA relocations by target section.

/// One RELA entry, kept by the section it applies to.
#[derive(Clone, Copy, Debug)]
struct Reloc {
    offset: u64,
    r_type: u32,
    symbol: u32,
    addend: i64,
}

/// Where a relocated pointer field points.
#[derive(Clone, Copy, Debug)]
enum Pointer<'a> {
    Null,
    /// `offset` within section `section` (symbol value + addend; may lie
    /// outside the section: checked by the reader). `symbol` is the
    /// relocation's symbol.
    Local {
        section: usize,
        offset: i128,
        symbol: u32,
    },
    /// An undefined symbol (resolved by the kernel at load).
    External {
        name: &'a [u8],
    },
}

struct Image<'a> {
    data: &'a [u8],
    sections: SectionTable<'a, Header>,
    symbols: SymbolTable<'a, Header>,
    /// RELA entries by the section they apply to, sorted by offset.
    relocs: Vec<Vec<Reloc>>,
    /// See [`Image::index_places`].
    places: std::cell::OnceCell<Vec<(usize, u64, bool, usize)>>,
}

impl<'a> Image<'a> {
    fn parse(data: &'a [u8]) -> Result<Image<'a>, KoError> {
        let not_elf = |reason: &str| KoError::NotElf { reason: reason.to_owned() };
        let header = Header::parse(data).map_err(|e| not_elf(&e.to_string()))?;
        header.endian().map_err(|_| not_elf("big-endian"))?;
        if header.e_type(LE) != elf::ET_REL {
            return Err(not_elf(&format!("e_type {}, expected ET_REL", header.e_type(LE).0)));
        }
        if header.e_machine(LE) != elf::EM_X86_64 {
            return Err(not_elf(&format!("e_machine {}, expected EM_X86_64", header.e_machine(LE).0)));
        }
        let malformed = |what: &str, e: object::read::Error| KoError::Elf { reason: format!("{what}: {e}") };
        let sections = header.sections(LE, data).map_err(|e| malformed("section headers", e))?;
        let symbols = sections.symbols(LE, data, elf::SHT_SYMTAB).map_err(|e| malformed("symbol table", e))?;
        let mut image = Image { data, sections, symbols, relocs: Vec::new(), places: std::cell::OnceCell::new() };
        image.relocs = vec![Vec::new(); image.sections.len()];
        for (index, section) in image.sections.enumerate() {
            let kind = section.sh_type(LE);
            if kind == elf::SHT_REL || kind == elf::SHT_CREL {
                return Err(KoError::Elf {
                    reason: format!("{} holds REL/CREL relocations; only RELA is read (x86-64)", image.name(index.0)),
                });
            }
            let Some((relas, link)) =
                section.rela(LE, data).map_err(|e| malformed(&format!("relocations in {}", image.name(index.0)), e))?
            else {
                continue;
            };
            // sh_info 0: not applying to a section (none in a .ko).
            if section.sh_info(LE) == 0 {
                continue;
            }
            if link != image.symbols.section() || image.symbols.is_empty() {
                return Err(KoError::Elf {
                    reason: format!("{} links to section {}, not to the symbol table", image.name(index.0), link.0),
                });
            }
            let target = section.sh_info(LE) as usize;
            let Some(list) = image.relocs.get_mut(target) else {
                return Err(KoError::Elf {
                    reason: format!("{} applies to section {target}, which does not exist", image.name(index.0)),
                });
            };
            list.extend(relas.iter().map(|rela| Reloc {
                offset: rela.r_offset(LE),
                r_type: rela.r_type(LE, false).0,
                symbol: rela.r_sym(LE, false),
                addend: rela.r_addend(LE),
            }));
        }
        for (section, list) in image.relocs.iter_mut().enumerate() {
            list.sort_by_key(|reloc| reloc.offset);
            // The loader would write outside the section: a broken file.
            if let Some(last) = list.last() {
                let size = image.sections.section(object::SectionIndex(section)).map_or(0, |h| h.sh_size(LE));
                // R_X86_64_64 writes 8 bytes; others at least one.
                let width = if last.r_type == elf::R_X86_64_64.0 { 8 } else { 1 };
                if last.offset.checked_add(width).is_none_or(|end| end > size) {
                    let name = image
                        .sections
                        .section(object::SectionIndex(section))
                        .ok()
                        .and_then(|h| image.sections.section_name(LE, h).ok());
                    let name = name.map_or_else(|| format!("[{section}]"), |n| String::from_utf8_lossy(n).into_owned());
                    return Err(KoError::BadReloc {
                        at: format!("{name}+{:#x}", last.offset),
                        reason: format!("past the end of {name} ({size:#x} bytes)"),
                    });
                }
            }
        }
        Ok(image)
    }

    /// A section's name for messages (`[N]` if it has none readable).
    fn name(&self, index: usize) -> String {
        self.sections
            .section(object::SectionIndex(index))
            .ok()
            .and_then(|section| self.sections.section_name(LE, section).ok())
            .map_or_else(|| format!("[{index}]"), |name| String::from_utf8_lossy(name).into_owned())
    }

    fn loc(&self, section: usize, offset: u64) -> String {
        format!("{}+{offset:#x}", self.name(section))
    }

    fn section_is(&self, index: usize, name: &str) -> bool {
        self.header(index).and_then(|section| self.sections.section_name(LE, section).ok()) == Some(name.as_bytes())
    }

    fn section_named(&self, name: &str) -> Option<usize> {
        self.sections
            .enumerate()
            .find(|(_, section)| self.sections.section_name(LE, section).ok() == Some(name.as_bytes()))
            .map(|(index, _)| index.0)
    }

    fn header(&self, section: usize) -> Option<&'a elf::SectionHeader64<LittleEndian>> {
        self.sections.section(object::SectionIndex(section)).ok()
    }

    /// A section's bytes; NOBITS sections (zero-filled at load) and
    /// sections whose range is outside the file are errors.
    fn bytes(&self, section: usize) -> Result<&'a [u8], KoError> {
        let header =
            self.header(section).ok_or_else(|| KoError::Elf { reason: format!("section {section} does not exist") })?;
        if header.sh_type(LE) == elf::SHT_NOBITS {
            return Err(KoError::NoData { section: self.name(section), why: "SHT_NOBITS" });
        }
        header
            .data(LE, self.data)
            .map_err(|_| KoError::NoData { section: self.name(section), why: "its file range is outside the file" })
    }

    fn is_executable(&self, section: usize) -> bool {
        self.header(section).is_some_and(|header| header.sh_flags(LE).0 & elf::SHF_EXECINSTR.0 != 0)
    }

    /// `len` bytes at `offset` of `section`.
    fn slice(&self, section: usize, offset: u64, len: u64, what: &'static str) -> Result<&'a [u8], KoError> {
        let bytes = self.bytes(section)?;
        offset
            .checked_add(len)
            .and_then(|end| bytes.get(usize::try_from(offset).ok()?..usize::try_from(end).ok()?))
            .ok_or_else(|| KoError::Truncated {
                what,
                at: self.loc(section, offset),
                len,
                section: self.name(section),
                size: bytes.len() as u64,
            })
    }

    fn is_nobits(&self, section: usize) -> bool {
        self.header(section).is_some_and(|header| header.sh_type(LE) == elf::SHT_NOBITS)
    }

    /// A section's size as loaded: its bytes in the file, or `sh_size` of
    /// zeros for NOBITS (`.bss`, where the compiler puts an array that is
    /// only its zero terminator).
    fn size(&self, section: usize) -> Result<u64, KoError> {
        if self.is_nobits(section) {
            return Ok(self.header(section).map_or(0, |header| header.sh_size(LE)));
        }
        Ok(self.bytes(section)?.len() as u64)
    }

    /// A little-endian number of `len` (1..=8) bytes at `offset`; zero in
    /// a NOBITS section.
    fn number(&self, section: usize, offset: u64, len: u64, what: &'static str) -> Result<u64, KoError> {
        let len = len.min(8);
        if self.is_nobits(section) {
            let size = self.size(section)?;
            return match offset.checked_add(len) {
                Some(end) if end <= size => Ok(0),
                _ => Err(KoError::Truncated {
                    what,
                    at: self.loc(section, offset),
                    len,
                    section: self.name(section),
                    size,
                }),
            };
        }
        let bytes = self.slice(section, offset, len, what)?;
        Ok(bytes.iter().rev().fold(0u64, |value, &b| (value << 8) | u64::from(b)))
    }

    /// The relocations applying to `[offset, offset + len)` of `section`.
    fn relocs_in(&self, section: usize, offset: u64, len: u64) -> &[Reloc] {
        let list = self.relocs.get(section).map_or(&[][..], Vec::as_slice);
        let start = list.partition_point(|reloc| reloc.offset < offset);
        let end = list.partition_point(|reloc| reloc.offset < offset.saturating_add(len));
        list.get(start..end).unwrap_or(&[])
    }

    /// A little-endian number of `size` bytes (1..=8) that must not be
    /// relocated: counts, sympos, flags.
    fn literal(&self, section: usize, offset: u64, size: u64, what: &'static str) -> Result<u64, KoError> {
        if !self.relocs_in(section, offset, size).is_empty() {
            return Err(KoError::RelocatedLiteral { what, at: self.loc(section, offset) });
        }
        self.number(section, offset, size, what)
    }

    /// The 8-byte pointer field at `offset` of `section`.
    fn pointer(&self, section: usize, offset: u64, what: &'static str) -> Result<Pointer<'a>, KoError> {
        let at = || self.loc(section, offset);
        let value = self.number(section, offset, 8, what)?;
        let relocs = self.relocs_in(section, offset, 8);
        let reloc = match relocs {
            [] => {
                return if value == 0 {
                    Ok(Pointer::Null)
                } else {
                    Err(KoError::UnrelocatedPointer { what, at: at(), value })
                };
            }
            [reloc] if reloc.offset == offset => reloc,
            [reloc] => {
                return Err(KoError::BadReloc {
                    at: self.loc(section, reloc.offset),
                    reason: format!("inside the 8-byte {what} at {}", at()),
                });
            }
            [..] => {
                return Err(KoError::BadReloc {
                    at: at(),
                    reason: format!("{} relocations on one {what}", relocs.len()),
                });
            }
        };
        let bad = |reason: String| KoError::BadReloc { at: at(), reason };
        if reloc.r_type != elf::R_X86_64_64.0 {
            return Err(bad(format!("type {}, expected R_X86_64_64 for {what}", reloc.r_type)));
        }
        if reloc.symbol == 0 {
            return Err(bad("no symbol".to_owned()));
        }
        let index = SymbolIndex(reloc.symbol as usize);
        let symbol =
            self.symbols.symbol(index).map_err(|_| bad(format!("symbol index {} is out of range", reloc.symbol)))?;
        if symbol.st_shndx(LE) == elf::SHN_UNDEF {
            let name = self
                .symbols
                .symbol_name(LE, symbol)
                .map_err(|_| bad(format!("symbol {} has a bad name", reloc.symbol)))?;
            return Ok(Pointer::External { name });
        }
        let target = self
            .symbols
            .symbol_section(LE, symbol, index)
            .ok()
            .flatten()
            .filter(|target| target.0 < self.sections.len())
            .ok_or_else(|| bad(format!("symbol {} is not in a section of the file", reloc.symbol)))?;
        Ok(Pointer::Local {
            section: target.0,
            offset: i128::from(symbol.st_value(LE)) + i128::from(reloc.addend),
            symbol: reloc.symbol,
        })
    }

    /// Where a local pointer lands, checked against its section's size.
    fn target(&self, at: (usize, u64), section: usize, offset: i128) -> Result<(usize, u64), KoError> {
        let size = self.size(section)?;
        match u64::try_from(offset) {
            Ok(offset) if offset < size => Ok((section, offset)),
            _ => Err(KoError::RelocOutside { at: self.loc(at.0, at.1), target: self.name(section), offset, size }),
        }
    }

    /// The pointer at `offset` of `section`, which must be a string in the
    /// module (`None` for NULL).
    fn string(&self, section: usize, offset: u64, what: &'static str) -> Result<Option<String>, KoError> {
        let (target, start) = match self.pointer(section, offset, what)? {
            Pointer::Null => return Ok(None),
            Pointer::External { name } => {
                return Err(KoError::ExternalPointer {
                    what,
                    at: self.loc(section, offset),
                    symbol: String::from_utf8_lossy(name).into_owned(),
                });
            }
            Pointer::Local { section: target, offset: target_offset, .. } => {
                self.target((section, offset), target, target_offset)?
            }
        };
        if self.is_nobits(target) {
            return Err(KoError::EmptyString { at: self.loc(target, start) });
        }
        let bytes = self.bytes(target)?;
        let rest = usize::try_from(start).ok().and_then(|s| bytes.get(s..)).unwrap_or(&[]);
        let at = || self.loc(target, start);
        // Only the first KSYM_NAME_LEN bytes are searched: many pointers
        // into one long string must not each scan (and copy) all of it.
        let window = rest.get(..rest.len().min(MAX_STRING + 1)).unwrap_or(rest);
        let len = match window.iter().position(|&b| b == 0) {
            Some(len) => len,
            None if window.len() > MAX_STRING => return Err(KoError::LongString { at: at() }),
            None => return Err(KoError::UnterminatedString { at: at() }),
        };
        let text =
            std::str::from_utf8(rest.get(..len).unwrap_or(&[])).map_err(|_| KoError::NonUtf8String { at: at() })?;
        if text.is_empty() {
            return Err(KoError::EmptyString { at: at() });
        }
        Ok(Some(text.to_owned()))
    }

    /// The array a pointer field points to: `(section, offset)` of its
    /// first element, or `None` for NULL.
    fn array(&self, section: usize, offset: u64, what: &'static str) -> Result<Option<(usize, u64)>, KoError> {
        match self.pointer(section, offset, what)? {
            Pointer::Null => Ok(None),
            Pointer::External { name } => Err(KoError::ExternalPointer {
                what,
                at: self.loc(section, offset),
                symbol: String::from_utf8_lossy(name).into_owned(),
            }),
            Pointer::Local { section: target, offset: target_offset, .. } => {
                self.target((section, offset), target, target_offset).map(Some)
            }
        }
    }

    /// The replacement function's symbol name: the relocation's own symbol
    /// if it is a named, non-section symbol at the exact target, else a
    /// function symbol (or, failing that, a label) at that offset of that
    /// section.
    fn function_symbol(&self, pointer: Pointer<'a>) -> Option<String> {
        let Pointer::Local { section, offset, symbol } = pointer else {
            return None;
        };
        let offset = u64::try_from(offset).ok()?;
        let own = self.symbols.symbol(SymbolIndex(symbol as usize)).ok()?;
        if own.st_value(LE) == offset
            && own.st_type() != elf::STT_SECTION
            && let Some(name) = self.code_name(own)
        {
            return Some(name);
        }
        let places = self.places.get_or_init(|| self.index_places());
        let start = places.partition_point(|p| (p.0, p.1) < (section, offset));
        let &(s, value, _, index) = places.get(start)?;
        if (s, value) != (section, offset) {
            return None;
        }
        self.code_name(self.symbols.symbol(SymbolIndex(index)).ok()?)
    }

    /// A FUNC or NOTYPE symbol's non-empty name.
    fn code_name(&self, sym: &elf::Sym64<LittleEndian>) -> Option<String> {
        let kind = sym.st_type();
        if kind != elf::STT_FUNC && kind != elf::STT_NOTYPE {
            return None;
        }
        let name = self.symbols.symbol_name(LE, sym).ok()?;
        (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
    }

    /// Named FUNC and NOTYPE symbols by (section, value), functions before
    /// labels, then in symbol table order: one sort instead of a scan of the
    /// symbol table per function.
    fn index_places(&self) -> Vec<(usize, u64, bool, usize)> {
        let mut places: Vec<(usize, u64, bool, usize)> = self
            .symbols
            .enumerate()
            .filter(|(_, sym)| self.code_name(sym).is_some())
            .filter_map(|(index, sym)| {
                let section = self.symbols.symbol_section(LE, sym, index).ok().flatten()?;
                Some((section.0, sym.st_value(LE), sym.st_type() != elf::STT_FUNC, index.0))
            })
            .collect();
        places.sort_unstable();
        places
    }

    /// The value of `key=` in `.modinfo`, if any.
    fn modinfo(&self, key: &str) -> Option<&'a [u8]> {
        let bytes = self.bytes(self.section_named(".modinfo")?).ok()?;
        bytes
            .split(|&b| b == 0)
            .find_map(|entry| entry.strip_prefix(key.as_bytes()).and_then(|rest| rest.strip_prefix(b"=")))
    }

    /// `name=` in `.modinfo` (modpost writes it), else `struct module`'s
    /// `name` in `.gnu.linkonce.this_module` (BTF offset, or the x86-64 one).
    fn module_name(&self, btf: Option<&Btf<'_>>) -> Result<String, KoError> {
        if let Some(name) = self.modinfo("name").and_then(|name| std::str::from_utf8(name).ok())
            && !name.is_empty()
        {
            return Ok(name.to_owned());
        }
        let section = self.section_named(".gnu.linkonce.this_module").ok_or(KoError::NoModuleName)?;
        let offset =
            btf.and_then(|btf| btf.member("module", "name").ok()).map_or(MODULE_NAME_OFFSET, |member| member.offset);
        let bytes =
            self.slice(section, offset, MODULE_NAME_LEN, "struct module name").map_err(|_| KoError::NoModuleName)?;
        let len = bytes.iter().position(|&b| b == 0).ok_or(KoError::NoModuleName)?;
        match std::str::from_utf8(bytes.get(..len).unwrap_or(&[])) {
            Ok(name) if !name.is_empty() => Ok(name.to_owned()),
            _ => Err(KoError::NoModuleName),
        }
    }

    /// `sympos` as the kernel keeps it (`unsigned long`), narrowed to the
    /// `u32` lpstack uses; larger values cannot name a real occurrence.
    fn sympos(&self, section: usize, field: Field, what: &'static str) -> Result<u32, KoError> {
        let value = self.literal(section, field.offset, field.size, what)?;
        u32::try_from(value).map_err(|_| KoError::SymposTooLarge { at: self.loc(section, field.offset), value })
    }
}

/// A number field: offset and size in bytes.
#[derive(Clone, Copy, Debug)]
struct Field {
    offset: u64,
    size: u64,
}

impl Field {
    fn at(self, base: u64) -> Field {
        Field { offset: base.saturating_add(self.offset), size: self.size }
    }
}

// ---------------------------------------------------------------------------
// klp-build.

#[derive(Clone, Copy, Debug)]
struct ExtLayout {
    obj_size: u64,
    obj_name: u64,
    obj_funcs: u64,
    obj_nr_funcs: Field,
    func_size: u64,
    func_old_name: u64,
    func_new_func: u64,
    func_sympos: Field,
}

/// `klp_object_ext` / `klp_func_ext` from BTF when it has them (the
/// target kernel's, or the module's own `.BTF` over it), else v6.19's.
fn ext_layout(elf: &[u8], btf: Option<&Btf<'_>>) -> Result<ExtLayout, KoError> {
    let Some(btf) = btf else {
        return Ok(KLP_EXT_V6_19);
    };
    if btf.find_struct("klp_object_ext").is_some() {
        return ExtLayout::from_btf(btf);
    }
    let split = crate::kernel::btf::elf_btf_section(elf).and_then(|data| Btf::parse_split(data, btf).ok());
    match split {
        Some(split) if split.find_struct("klp_object_ext").is_some() => ExtLayout::from_btf(&split),
        _ => Ok(KLP_EXT_V6_19),
    }
}

/// Offset of a member, and its size checked against `sizes`.
fn btf_field(btf: &Btf<'_>, what: &'static str, sizes: &[u64], expected: &'static str) -> Result<Field, KoError> {
    let (strukt, path) = what.split_once('.').unwrap_or((what, ""));
    let member = btf.member(strukt, path).map_err(|source| KoError::Btf { what, source })?;
    if member.bitfield_size != 0 || !sizes.contains(&member.size) {
        return Err(KoError::BtfFieldSize { what, size: member.size, expected });
    }
    Ok(Field { offset: member.offset, size: member.size })
}

fn btf_pointer(btf: &Btf<'_>, what: &'static str) -> Result<u64, KoError> {
    btf_field(btf, what, &[8], "8 (a pointer)").map(|field| field.offset)
}

fn btf_size(btf: &Btf<'_>, name: &'static str) -> Result<u64, KoError> {
    let id = btf
        .find_struct(name)
        .ok_or(KoError::Btf { what: name, source: BtfError::NoStruct { name: crate::kernel::btf::Name::new(name) } })?;
    match btf.type_size(id) {
        Ok(0) => Err(KoError::BtfFieldSize { what: name, size: 0, expected: "a non-zero size" }),
        Ok(size) => Ok(size),
        Err(source) => Err(KoError::Btf { what: name, source }),
    }
}

impl ExtLayout {
    fn from_btf(btf: &Btf<'_>) -> Result<ExtLayout, KoError> {
        Ok(ExtLayout {
            obj_size: btf_size(btf, "klp_object_ext")?,
            obj_name: btf_pointer(btf, "klp_object_ext.name")?,
            obj_funcs: btf_pointer(btf, "klp_object_ext.funcs")?,
            obj_nr_funcs: btf_field(btf, "klp_object_ext.nr_funcs", &[4, 8], "4 or 8")?,
            func_size: btf_size(btf, "klp_func_ext")?,
            func_old_name: btf_pointer(btf, "klp_func_ext.old_name")?,
            func_new_func: btf_pointer(btf, "klp_func_ext.new_func")?,
            func_sympos: btf_field(btf, "klp_func_ext.sympos", &[4, 8], "4 or 8")?,
        })
    }
}

fn read_klp_build(image: &Image<'_>, objects: usize, layout: &ExtLayout) -> Result<Vec<PatchObject>, KoError> {
    let size = image.size(objects)?;
    if !size.is_multiple_of(layout.obj_size) {
        return Err(KoError::BadSectionSize {
            section: image.name(objects),
            size,
            what: "klp_object_ext",
            record: layout.obj_size,
        });
    }
    let mut out = Vec::new();
    let mut ordinal = 0;
    for record in (0..size / layout.obj_size).map(|i| i * layout.obj_size) {
        let name = image.string(objects, record + layout.obj_name, "klp_object_ext.name")?;
        let object = name.clone().unwrap_or_else(|| "vmlinux".to_owned());
        let nr_funcs = image.literal(
            objects,
            record + layout.obj_nr_funcs.offset,
            layout.obj_nr_funcs.size,
            "klp_object_ext.nr_funcs",
        )?;
        let funcs_at = record + layout.obj_funcs;
        let mut funcs = Vec::new();
        match image.array(objects, funcs_at, "klp_object_ext.funcs")? {
            None if nr_funcs == 0 => {}
            None => {
                return Err(KoError::ObjectWithoutFuncs { ordinal: out.len() + 1, at: image.loc(objects, record) });
            }
            Some((section, start)) => {
                // nr_funcs comes from the file: check it against the bytes
                // there before reserving anything.
                let fit = image.size(section)?.saturating_sub(start) / layout.func_size;
                if nr_funcs > fit {
                    return Err(KoError::TooMany {
                        what: "klp_object_ext.nr_funcs",
                        at: image.loc(objects, record + layout.obj_nr_funcs.offset),
                        count: nr_funcs,
                        fit,
                        section: image.name(section),
                    });
                }
                funcs.reserve(usize::try_from(nr_funcs).unwrap_or(0));
                for func in (0..nr_funcs).map(|i| start + i * layout.func_size) {
                    ordinal += 1;
                    let null = |field| KoError::NullField {
                        ordinal,
                        object: object.clone(),
                        at: image.loc(section, func),
                        field,
                    };
                    let old_name = image
                        .string(section, func + layout.func_old_name, "klp_func_ext.old_name")?
                        .ok_or_else(|| null("old_name"))?;
                    let new_func = image.pointer(section, func + layout.func_new_func, "klp_func_ext.new_func")?;
                    if matches!(new_func, Pointer::Null) {
                        return Err(null("new_func"));
                    }
                    let sympos = image.sympos(section, layout.func_sympos.at(func), "klp_func_ext.sympos")?;
                    funcs.push(PatchFunc { old_name, sympos, new_symbol: image.function_symbol(new_func) });
                }
            }
        }
        out.push(PatchObject { name, funcs });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// kpatch-build.

fn read_kpatch(image: &Image<'_>, funcs: usize) -> Result<Vec<PatchObject>, KoError> {
    let size = image.size(funcs)?;
    if !size.is_multiple_of(KPATCH_FUNC_SIZE) {
        return Err(KoError::BadSectionSize {
            section: image.name(funcs),
            size,
            what: "kpatch_patch_func",
            record: KPATCH_FUNC_SIZE,
        });
    }
    let mut objects: Vec<PatchObject> = Vec::new();
    let mut by_name: std::collections::HashMap<Option<String>, usize> = std::collections::HashMap::new();
    for (index, record) in (0..size / KPATCH_FUNC_SIZE).map(|i| (i as usize, i * KPATCH_FUNC_SIZE)) {
        let objname = image.string(funcs, record + KPATCH_OBJNAME, "kpatch_patch_func.objname")?;
        let null = |field| KoError::NullField {
            ordinal: index + 1,
            object: objname.clone().unwrap_or_default(),
            at: image.loc(funcs, record),
            field,
        };
        let objname = objname.clone().ok_or_else(|| null("objname"))?;
        let old_name =
            image.string(funcs, record + KPATCH_NAME, "kpatch_patch_func.name")?.ok_or_else(|| null("name"))?;
        let new_addr = image.pointer(funcs, record + KPATCH_NEW_ADDR, "kpatch_patch_func.new_addr")?;
        if matches!(new_addr, Pointer::Null) {
            return Err(null("new_addr"));
        }
        let sympos =
            image.sympos(funcs, Field { offset: record + KPATCH_SYMPOS, size: 8 }, "kpatch_patch_func.sympos")?;
        let name = (objname != "vmlinux").then_some(objname);
        let func = PatchFunc { old_name, sympos, new_symbol: image.function_symbol(new_addr) };
        match by_name.get(&name).and_then(|&i| objects.get_mut(i)) {
            Some(object) => object.funcs.push(func),
            None => {
                by_name.insert(name.clone(), objects.len());
                objects.push(PatchObject { name, funcs: vec![func] });
            }
        }
    }
    Ok(objects)
}

// ---------------------------------------------------------------------------
// Source-built: a static struct klp_patch.

#[derive(Clone, Copy, Debug)]
struct SourceLayout {
    patch_size: u64,
    patch_mod: u64,
    patch_objs: u64,
    /// Absent before atomic replace (5.1).
    patch_replace: Option<Field>,
    obj_size: u64,
    obj_name: u64,
    obj_funcs: u64,
    func_size: u64,
    func_old_name: u64,
    func_new_func: u64,
    func_old_sympos: Field,
}

impl SourceLayout {
    fn from_btf(btf: &Btf<'_>) -> Result<SourceLayout, KoError> {
        let patch_replace = match btf.member("klp_patch", "replace") {
            Err(BtfError::NoMember { .. }) => None,
            _ => Some(btf_field(btf, "klp_patch.replace", &[1], "1 (a bool)")?),
        };
        Ok(SourceLayout {
            patch_size: btf_size(btf, "klp_patch")?,
            patch_mod: btf_pointer(btf, "klp_patch.mod")?,
            patch_objs: btf_pointer(btf, "klp_patch.objs")?,
            patch_replace,
            obj_size: btf_size(btf, "klp_object")?,
            obj_name: btf_pointer(btf, "klp_object.name")?,
            obj_funcs: btf_pointer(btf, "klp_object.funcs")?,
            func_size: btf_size(btf, "klp_func")?,
            func_old_name: btf_pointer(btf, "klp_func.old_name")?,
            func_new_func: btf_pointer(btf, "klp_func.new_func")?,
            func_old_sympos: btf_field(btf, "klp_func.old_sympos", &[4, 8], "4 or 8")?,
        })
    }
}

/// Is this relocation a pointer to `__this_module`? By name when the
/// symbol has one, else by place: offset 0 of `.gnu.linkonce.this_module`.
fn is_this_module(image: &Image<'_>, reloc: &Reloc) -> bool {
    if reloc.r_type != elf::R_X86_64_64.0 {
        return false;
    }
    let index = SymbolIndex(reloc.symbol as usize);
    let Ok(symbol) = image.symbols.symbol(index) else {
        return false;
    };
    if image.symbols.symbol_name(LE, symbol).ok() == Some(b"__this_module".as_slice()) {
        return true;
    }
    let section = image.symbols.symbol_section(LE, symbol, index).ok().flatten();
    section.is_some_and(|section| {
        i128::from(symbol.st_value(LE)) + i128::from(reloc.addend) == 0
            && image.section_is(section.0, ".gnu.linkonce.this_module")
    })
}

/// Every place that looks like a static `klp_patch`: its `mod` relocated to
/// `__this_module`, its `objs` relocated into a data section.
fn patch_candidates(image: &Image<'_>, layout: &SourceLayout) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    for (section, relocs) in image.relocs.iter().enumerate() {
        for reloc in relocs.iter().filter(|reloc| is_this_module(image, reloc)) {
            let Some(start) = reloc.offset.checked_sub(layout.patch_mod) else {
                continue;
            };
            if image.slice(section, start, layout.patch_size, "struct klp_patch").is_err() {
                continue;
            }
            let objs = image.pointer(section, start + layout.patch_objs, "klp_patch.objs");
            if let Ok(Pointer::Local { section: target, .. }) = objs
                && !image.is_executable(target)
                && !out.contains(&(section, start))
            {
                out.push((section, start));
            }
        }
    }
    out
}

/// A candidate's name for messages: a symbol starting there, else its place.
fn describe(image: &Image<'_>, (section, offset): (usize, u64)) -> String {
    let place = image.loc(section, offset);
    image
        .symbols
        .enumerate()
        .find(|(index, sym)| {
            sym.st_value(LE) == offset
                && sym.st_type() == elf::STT_OBJECT
                && image.symbols.symbol_section(LE, sym, *index).ok().flatten().map(|s| s.0) == Some(section)
        })
        .and_then(|(_, sym)| image.symbols.symbol_name(LE, sym).ok())
        .map_or(place.clone(), |name| format!("`{}` ({place})", String::from_utf8_lossy(name)))
}

fn read_source_built(image: &Image<'_>, layout: &SourceLayout) -> Result<(Vec<PatchObject>, bool), KoError> {
    let candidates = patch_candidates(image, layout);
    if candidates.len() > MAX_PATCH_CANDIDATES {
        return Err(KoError::TooManyPatchCandidates { count: candidates.len() });
    }
    let mut found = Vec::new();
    let mut first_error = None;
    for &candidate in &candidates {
        match read_patch(image, layout, candidate) {
            Ok(patch) => found.push((candidate, patch)),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match found.len() {
        1 => Ok(found.swap_remove(0).1),
        0 => Err(first_error.unwrap_or(KoError::NotLivepatch)),
        _ => Err(KoError::AmbiguousPatch {
            candidates: found.iter().map(|(place, _)| describe(image, *place)).collect(),
        }),
    }
}

fn read_patch(
    image: &Image<'_>,
    layout: &SourceLayout,
    (section, patch): (usize, u64),
) -> Result<(Vec<PatchObject>, bool), KoError> {
    let replace = match layout.patch_replace {
        Some(field) => image.literal(section, patch + field.offset, field.size, "klp_patch.replace")? != 0,
        None => false,
    };
    let Some((objs, first)) = image.array(section, patch + layout.patch_objs, "klp_patch.objs")? else {
        return Err(KoError::NotLivepatch);
    };
    let objs_size = image.size(objs)?;
    let mut objects = Vec::new();
    let mut ordinal = 0;
    for index in 0u64.. {
        let Some(record) = nth_record(first, index, layout.obj_size, objs_size) else {
            return Err(KoError::NoTerminator {
                what: "klp_object",
                at: image.loc(objs, first),
                section: image.name(objs),
            });
        };
        let name = image.string(objs, record + layout.obj_name, "klp_object.name")?;
        let funcs = image.array(objs, record + layout.obj_funcs, "klp_object.funcs")?;
        let (funcs_section, funcs_first) = match (&name, funcs) {
            (None, None) => break,
            (Some(_), None) => {
                return Err(KoError::ObjectWithoutFuncs { ordinal: objects.len() + 1, at: image.loc(objs, record) });
            }
            (_, Some(funcs)) => funcs,
        };
        let object = name.clone().unwrap_or_else(|| "vmlinux".to_owned());
        let funcs = read_funcs(image, layout, funcs_section, funcs_first, &object, &mut ordinal)?;
        objects.push(PatchObject { name, funcs });
    }
    Ok((objects, replace))
}

/// Offset of record `index` of `size` bytes from `first`, if it ends
/// within `limit`.
fn nth_record(first: u64, index: u64, size: u64, limit: u64) -> Option<u64> {
    let at = index.checked_mul(size)?.checked_add(first)?;
    at.checked_add(size).is_some_and(|end| end <= limit).then_some(at)
}

fn read_funcs(
    image: &Image<'_>,
    layout: &SourceLayout,
    section: usize,
    first: u64,
    object: &str,
    ordinal: &mut usize,
) -> Result<Vec<PatchFunc>, KoError> {
    let size = image.size(section)?;
    let mut funcs = Vec::new();
    for index in 0u64.. {
        let Some(func) = nth_record(first, index, layout.func_size, size) else {
            return Err(KoError::NoTerminator {
                what: "klp_func",
                at: image.loc(section, first),
                section: image.name(section),
            });
        };
        let old_name = image.string(section, func + layout.func_old_name, "klp_func.old_name")?;
        let new_func = image.pointer(section, func + layout.func_new_func, "klp_func.new_func")?;
        let sympos = image.literal(
            section,
            func + layout.func_old_sympos.offset,
            layout.func_old_sympos.size,
            "klp_func.old_sympos",
        )?;
        if old_name.is_none() && matches!(new_func, Pointer::Null) && sympos == 0 {
            break;
        }
        *ordinal += 1;
        let null = |field| KoError::NullField {
            ordinal: *ordinal,
            object: object.to_owned(),
            at: image.loc(section, func),
            field,
        };
        // klp_init_func() refuses both.
        let old_name = old_name.ok_or_else(|| null("old_name"))?;
        if matches!(new_func, Pointer::Null) {
            return Err(null("new_func"));
        }
        let sympos = u32::try_from(sympos).map_err(|_| KoError::SymposTooLarge {
            at: image.loc(section, func + layout.func_old_sympos.offset),
            value: sympos,
        })?;
        funcs.push(PatchFunc { old_name, sympos, new_symbol: image.function_symbol(new_func) });
    }
    Ok(funcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-built ELF64 relocatable x86-64 files (the crate's `object` has
    // no writer): user sections, a .rela section for each with relocations,
    // .symtab with a section symbol per user section, .strtab, .shstrtab.

    const SHT_PROGBITS: u32 = 1;
    const SHT_NOBITS: u32 = 8;
    const ALLOC_WRITE: u64 = 0x3;
    const ALLOC_EXEC: u64 = 0x6;
    const R_64: u32 = 1;

    #[derive(Clone)]
    enum To {
        /// The section symbol of the named section.
        Section(&'static str),
        /// A named symbol (see `Builder::symbol`).
        Symbol(&'static str),
        /// A raw symbol index.
        Index(u32),
    }

    #[derive(Clone)]
    struct Sec {
        name: &'static str,
        kind: u32,
        flags: u64,
        data: Vec<u8>,
        relocs: Vec<(u64, u32, To, i64)>,
    }

    #[derive(Clone)]
    struct TSym {
        name: &'static str,
        kind: u8,
        global: bool,
        section: Option<&'static str>,
        value: u64,
    }

    #[derive(Clone, Default)]
    struct Builder {
        sections: Vec<Sec>,
        symbols: Vec<TSym>,
    }

    fn put(data: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
        if data.len() < offset + bytes.len() {
            data.resize(offset + bytes.len(), 0);
        }
        data[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    impl Builder {
        fn section(&mut self, name: &'static str, kind: u32, flags: u64, data: Vec<u8>) -> &mut Self {
            self.sections.push(Sec { name, kind, flags, data, relocs: Vec::new() });
            self
        }

        fn sec(&mut self, name: &str) -> &mut Sec {
            self.sections.iter_mut().find(|s| s.name == name).expect("test section")
        }

        fn reloc(&mut self, section: &str, offset: u64, to: To, addend: i64) -> &mut Self {
            self.sec(section).relocs.push((offset, R_64, to, addend));
            self
        }

        fn write(&mut self, section: &str, offset: u64, bytes: &[u8]) -> &mut Self {
            put(&mut self.sec(section).data, offset as usize, bytes);
            self
        }

        fn symbol(
            &mut self,
            name: &'static str,
            kind: u8,
            global: bool,
            section: Option<&'static str>,
            value: u64,
        ) -> &mut Self {
            self.symbols.push(TSym { name, kind, global, section, value });
            self
        }

        fn modinfo(&mut self, text: &str) -> &mut Self {
            let data = text.replace(';', "\0").into_bytes();
            self.section(".modinfo", SHT_PROGBITS, 2, data)
        }

        fn build(&self) -> Vec<u8> {
            let user = self.sections.len();
            let index_of = |name: &str| 1 + self.sections.iter().position(|s| s.name == name).expect("section") as u32;
            // Symbols: null, section symbols, locals, globals.
            let mut strtab = vec![0u8];
            let mut syms: Vec<[u8; 24]> = vec![[0; 24]];
            let mut named: Vec<(&str, u32)> = Vec::new();
            let mut sym = |name: &str, info: u8, shndx: u16, value: u64, strtab: &mut Vec<u8>| {
                let mut s = [0u8; 24];
                if !name.is_empty() {
                    s[0..4].copy_from_slice(&(strtab.len() as u32).to_le_bytes());
                    strtab.extend_from_slice(name.as_bytes());
                    strtab.push(0);
                }
                s[4] = info;
                s[6..8].copy_from_slice(&shndx.to_le_bytes());
                s[8..16].copy_from_slice(&value.to_le_bytes());
                syms.push(s);
                syms.len() as u32 - 1
            };
            for i in 0..user {
                sym("", 3, i as u16 + 1, 0, &mut strtab);
            }
            let mut ordered: Vec<&TSym> = self.symbols.iter().filter(|s| !s.global).collect();
            let first_global = 1 + user as u32 + ordered.len() as u32;
            ordered.extend(self.symbols.iter().filter(|s| s.global));
            for s in ordered {
                let shndx = s.section.map_or(0, |n| index_of(n) as u16);
                let info = (u8::from(s.global) << 4) | s.kind;
                let index = sym(s.name, info, shndx, s.value, &mut strtab);
                named.push((s.name, index));
            }
            let symbol_index = |to: &To| match to {
                To::Section(name) => index_of(name),
                To::Symbol(name) => named.iter().find(|(n, _)| n == name).expect("symbol").1,
                To::Index(i) => *i,
            };
            // Sections after the user ones: relas, .symtab, .strtab, .shstrtab.
            let with_relocs: Vec<usize> = (0..user).filter(|&i| !self.sections[i].relocs.is_empty()).collect();
            let symtab_index = 1 + user + with_relocs.len();
            let mut shstrtab = vec![0u8];
            let mut name_off = |name: &str| {
                let off = shstrtab.len() as u32;
                shstrtab.extend_from_slice(name.as_bytes());
                shstrtab.push(0);
                off
            };
            let mut headers: Vec<SecHeader> = Vec::new();
            for s in &self.sections {
                headers.push((name_off(s.name), s.kind, s.flags, s.data.clone(), 0, 0, 0));
            }
            for &i in &with_relocs {
                let s = &self.sections[i];
                let mut data = Vec::new();
                for (offset, r_type, to, addend) in &s.relocs {
                    data.extend_from_slice(&offset.to_le_bytes());
                    data.extend_from_slice(&((u64::from(symbol_index(to)) << 32) | u64::from(*r_type)).to_le_bytes());
                    data.extend_from_slice(&addend.to_le_bytes());
                }
                let name = format!(".rela{}", s.name);
                headers.push((name_off(&name), 4, 0x40, data, symtab_index as u32, i as u32 + 1, 24));
            }
            let symtab: Vec<u8> = syms.concat();
            headers.push((name_off(".symtab"), 2, 0, symtab, symtab_index as u32 + 1, first_global, 24));
            headers.push((name_off(".strtab"), 3, 0, strtab, 0, 0, 0));
            let shstr_name = name_off(".shstrtab");
            headers.push((shstr_name, 3, 0, shstrtab.clone(), 0, 0, 0));
            let shnum = headers.len() + 1;
            // Lay out: ELF header, data, section headers.
            let mut out = vec![0u8; 64];
            let mut places = Vec::new();
            for h in &headers {
                while !out.len().is_multiple_of(8) {
                    out.push(0);
                }
                places.push(out.len() as u64);
                if h.1 != SHT_NOBITS {
                    out.extend_from_slice(&h.3);
                }
            }
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            let shoff = out.len() as u64;
            out.extend_from_slice(&[0u8; 64]);
            for (h, place) in headers.iter().zip(&places) {
                let mut sh = [0u8; 64];
                sh[0..4].copy_from_slice(&h.0.to_le_bytes());
                sh[4..8].copy_from_slice(&h.1.to_le_bytes());
                sh[8..16].copy_from_slice(&h.2.to_le_bytes());
                sh[24..32].copy_from_slice(&place.to_le_bytes());
                sh[32..40].copy_from_slice(&(h.3.len() as u64).to_le_bytes());
                sh[40..44].copy_from_slice(&h.4.to_le_bytes());
                sh[44..48].copy_from_slice(&h.5.to_le_bytes());
                sh[48..56].copy_from_slice(&8u64.to_le_bytes());
                sh[56..64].copy_from_slice(&h.6.to_le_bytes());
                out.extend_from_slice(&sh);
            }
            out[0..4].copy_from_slice(b"\x7fELF");
            out[4] = 2; // ELFCLASS64
            out[5] = 1; // little-endian
            out[6] = 1;
            out[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
            out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
            out[20..24].copy_from_slice(&1u32.to_le_bytes());
            out[40..48].copy_from_slice(&shoff.to_le_bytes());
            out[52..54].copy_from_slice(&64u16.to_le_bytes());
            out[58..60].copy_from_slice(&64u16.to_le_bytes());
            out[60..62].copy_from_slice(&(shnum as u16).to_le_bytes());
            out[62..64].copy_from_slice(&(shnum as u16 - 1).to_le_bytes());
            out
        }
    }

    /// A section header's (name offset, type, flags, data, link, info,
    /// entsize).
    type SecHeader = (u32, u32, u64, Vec<u8>, u32, u32, u64);

    fn strings(list: &[&str]) -> Vec<u8> {
        list.iter().flat_map(|s| s.bytes().chain([0])).collect()
    }

    fn read(b: &Builder) -> Result<LivepatchModule, KoError> {
        read_livepatch_module(&b.build(), None)
    }

    fn message(result: Result<LivepatchModule, KoError>) -> String {
        match result {
            Ok(module) => panic!("expected an error, got {module:?}"),
            Err(error) => error.to_string(),
        }
    }

    /// A kpatch-build shaped module: two records, vmlinux then ext4.
    fn kpatch() -> Builder {
        let mut b = Builder::default();
        b.section(".text", SHT_PROGBITS, ALLOC_EXEC, vec![0xc3; 0x20])
            .section(
                ".kpatch.strings",
                SHT_PROGBITS,
                2,
                strings(&["vmlinux", "cmdline_proc_show", "ext4", "ext4_readdir"]),
            )
            .section(".kpatch.funcs", SHT_PROGBITS, ALLOC_WRITE, vec![0; 112])
            .symbol("cmdline_proc_show", 2, false, Some(".text"), 0)
            .symbol("ext4_readdir", 2, false, Some(".text"), 0x10)
            .modinfo("livepatch=Y;name=kp")
            .reloc(".kpatch.funcs", 0, To::Symbol("cmdline_proc_show"), 0)
            .reloc(".kpatch.funcs", 40, To::Section(".kpatch.strings"), 8)
            .reloc(".kpatch.funcs", 48, To::Section(".kpatch.strings"), 0)
            .reloc(".kpatch.funcs", 56, To::Section(".text"), 0x10)
            .reloc(".kpatch.funcs", 56 + 40, To::Section(".kpatch.strings"), 31)
            .reloc(".kpatch.funcs", 56 + 48, To::Section(".kpatch.strings"), 26)
            .write(".kpatch.funcs", 56 + 32, &3u64.to_le_bytes());
        b
    }

    #[test]
    fn kpatch_records_by_relocation() {
        let module = read(&kpatch()).expect("kpatch module");
        assert_eq!(module.name, "kp");
        assert_eq!(module.form, ModuleForm::KpatchBuild);
        assert_eq!(module.replace, None);
        let got: Vec<_> = module
            .funcs()
            .map(|(o, f)| (o.object_name().to_owned(), f.old_name.as_str(), f.sympos, f.new_symbol.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("vmlinux".to_owned(), "cmdline_proc_show", 0, Some("cmdline_proc_show")),
                ("ext4".to_owned(), "ext4_readdir", 3, Some("ext4_readdir")),
            ]
        );
        let specs = module.func_specs();
        assert_eq!((specs[1].object.as_str(), specs[1].line, specs[1].sympos), ("ext4", 2, 3));
        let new = module.replacement_specs().expect("all replacements named");
        assert_eq!((new[0].object.as_str(), new[0].function.as_str()), ("kp", "cmdline_proc_show"));
    }

    #[test]
    fn the_bytes_under_a_relocation_are_ignored() {
        // Garbage where the relocation applies: the relocation wins.
        let mut b = kpatch();
        b.write(".kpatch.funcs", 40, &0xdead_beefu64.to_le_bytes());
        assert_eq!(read(&b).map(|m| m.objects[0].funcs[0].old_name.clone()), Ok("cmdline_proc_show".into()));
    }

    #[test]
    fn truncated_and_misaligned_sections() {
        let mut b = kpatch();
        b.sec(".kpatch.funcs").data.truncate(100);
        b.sec(".kpatch.funcs").relocs.retain(|r| r.0 < 56);
        assert_eq!(
            message(read(&b)),
            ".kpatch.funcs is 0x64 bytes, not a multiple of sizeof(struct kpatch_patch_func) = 56"
        );
        // A relocation past the end of the section it applies to.
        let mut b = kpatch();
        b.sec(".kpatch.funcs").data.truncate(56);
        assert_eq!(message(read(&b)), "relocation at .kpatch.funcs+0x68: past the end of .kpatch.funcs (0x38 bytes)");
        // The whole file cut short: the section table is gone.
        let bytes = kpatch().build();
        let cut = read_livepatch_module(&bytes[..bytes.len() - 100], None);
        assert!(matches!(cut, Err(KoError::Elf { .. }) | Err(KoError::NotElf { .. })), "{cut:?}");
        assert!(matches!(read_livepatch_module(&bytes[..40], None), Err(KoError::NotElf { .. })));
        assert!(matches!(read_livepatch_module(b"", None), Err(KoError::NotElf { .. })));
        // A section whose data lies past the end of the file.
        let mut bytes = kpatch().build();
        let shoff = u64::from_le_bytes(bytes[40..48].try_into().expect("8")) as usize;
        let funcs = shoff + 64 * 3; // [3] is .kpatch.funcs
        bytes[funcs + 24..funcs + 32].copy_from_slice(&0xffff_0000u64.to_le_bytes());
        assert!(matches!(read_livepatch_module(&bytes, None), Err(KoError::NoData { .. })));
    }

    #[test]
    fn relocation_outside_its_target() {
        let mut b = kpatch();
        b.sec(".kpatch.funcs").relocs[1].3 = 0x100;
        assert_eq!(
            message(read(&b)),
            "relocation at .kpatch.funcs+0x28 points outside .kpatch.strings (offset 0x100, size 0x2c)"
        );
        let mut b = kpatch();
        b.sec(".kpatch.funcs").relocs[1].3 = -9;
        assert!(message(read(&b)).contains("points outside .kpatch.strings (offset -0x9, size 0x2c)"));
    }

    #[test]
    fn bad_relocations_are_named() {
        let mut b = kpatch();
        b.sec(".kpatch.funcs").relocs[1].1 = 2; // R_X86_64_PC32
        assert_eq!(
            message(read(&b)),
            "relocation at .kpatch.funcs+0x28: type 2, expected R_X86_64_64 for kpatch_patch_func.name"
        );
        let mut b = kpatch();
        b.sec(".kpatch.funcs").relocs[1].2 = To::Index(999);
        assert!(message(read(&b)).contains("symbol index 999 is out of range"));
        let mut b = kpatch();
        b.sec(".kpatch.funcs").relocs[1].0 = 44; // inside the name pointer
        assert!(
            message(read(&b)).contains("relocation at .kpatch.funcs+0x2c: inside the 8-byte kpatch_patch_func.name")
        );
        // A pointer with no relocation but non-zero bytes.
        let mut b = kpatch();
        b.sec(".kpatch.funcs").relocs.remove(1);
        b.write(".kpatch.funcs", 40, &0x1234u64.to_le_bytes());
        assert!(message(read(&b)).contains("holds 0x1234 without a relocation"));
        // A relocated sympos: a layout mismatch.
        let mut b = kpatch();
        b.reloc(".kpatch.funcs", 32, To::Section(".text"), 0);
        assert!(message(read(&b)).contains("kpatch_patch_func.sympos at .kpatch.funcs+0x20 has a relocation"));
        // A string pointer to an undefined symbol.
        let mut b = kpatch();
        b.symbol("elsewhere", 0, true, None, 0);
        b.sec(".kpatch.funcs").relocs[1].2 = To::Symbol("elsewhere");
        assert!(message(read(&b)).contains("points to the undefined symbol `elsewhere`"));
        // NULL name.
        let mut b = kpatch();
        b.sec(".kpatch.funcs").relocs.remove(1);
        assert!(message(read(&b)).contains("function 1 of object `vmlinux` (at .kpatch.funcs+0x0): name is NULL"));
    }

    #[test]
    fn strings_must_end_in_their_section() {
        let mut b = kpatch();
        // The last string loses its NUL.
        b.sec(".kpatch.strings").data.pop();
        assert_eq!(message(read(&b)), "string at .kpatch.strings+0x1f has no NUL before the end of its section");
        let mut b = kpatch();
        b.write(".kpatch.strings", 8, &[0xff]);
        assert_eq!(message(read(&b)), "string at .kpatch.strings+0x8 is not UTF-8");
        let mut b = kpatch();
        b.sec(".kpatch.funcs").relocs[1].3 = 7; // the NUL after "vmlinux"
        assert_eq!(message(read(&b)), "string at .kpatch.strings+0x7 is empty");
    }

    #[test]
    fn long_strings_and_many_candidates_are_bounded() {
        let mut b = kpatch();
        let mut long = vec![b'a'; 600];
        long.push(0);
        b.write(".kpatch.strings", 44, &long);
        b.sec(".kpatch.funcs").relocs[1].3 = 44;
        assert_eq!(message(read(&b)), "string at .kpatch.strings+0x2c is longer than 512 bytes (KSYM_NAME_LEN)");
        // 512 bytes exactly is a name.
        let mut b = kpatch();
        b.write(".kpatch.strings", 44, &[vec![b'a'; 512], vec![0]].concat());
        b.sec(".kpatch.funcs").relocs[1].3 = 44;
        assert_eq!(read(&b).map(|m| m.objects[0].funcs[0].old_name.len()), Ok(512));

        let mut b = source_built();
        b.sec(".data").data.resize(0xf0 + 65 * 32, 0);
        for i in 0..65u64 {
            let at = 0xf0 + i * 32;
            b.reloc(".data", at, To::Section(".data"), 0x20).reloc(".data", at + 8, To::Symbol("__this_module"), 0);
        }
        assert_eq!(
            message(read_btf(&b)),
            "66 places look like a struct klp_patch (more than 64); not a module anyone wrote"
        );
    }

    #[test]
    fn huge_sympos_is_refused() {
        let mut b = kpatch();
        b.write(".kpatch.funcs", 32, &(1u64 << 40).to_le_bytes());
        assert_eq!(message(read(&b)), "sympos 1099511627776 at .kpatch.funcs+0x20 does not fit in 32 bits");
    }

    /// A klp-build shaped module: one vmlinux object with `nr` functions.
    fn klp_build(objects: &'static str, funcs: &'static str, nr: u32) -> Builder {
        let mut b = Builder::default();
        b.section(".text", SHT_PROGBITS, ALLOC_EXEC, vec![0xc3; 0x40])
            .section(".rodata.klp.str1.1", SHT_PROGBITS, 0x32, strings(&["show_val", "foo"]))
            .section(objects, SHT_PROGBITS, ALLOC_WRITE, vec![0; 64])
            .section(funcs, SHT_PROGBITS, ALLOC_WRITE, vec![0; 48])
            .symbol("new_show_val", 2, false, Some(".text"), 0x20)
            .symbol("label", 0, false, Some(".text"), 0x30)
            .modinfo("name=klp;livepatch=Y")
            .reloc(objects, 8, To::Section(funcs), 0)
            .write(objects, 56, &nr.to_le_bytes())
            .reloc(funcs, 0, To::Section(".rodata.klp.str1.1"), 0)
            .reloc(funcs, 8, To::Section(".text"), 0x20)
            .write(funcs, 16, &2u64.to_le_bytes())
            .reloc(funcs, 24, To::Section(".rodata.klp.str1.1"), 9)
            .reloc(funcs, 32, To::Section(".text"), 0x30);
        b
    }

    #[test]
    fn klp_build_both_section_names() {
        for (objects, funcs) in [(".init.klp_objects", ".init.klp_funcs"), ("__klp_objects", "__klp_funcs")] {
            let module = read(&klp_build(objects, funcs, 2)).expect("klp-build module");
            assert_eq!((module.name.as_str(), module.form, module.replace), ("klp", ModuleForm::KlpBuild, None));
            assert_eq!(module.objects.len(), 1);
            assert_eq!(module.objects[0].name, None);
            let f = &module.objects[0].funcs;
            assert_eq!(
                (f[0].old_name.as_str(), f[0].sympos, f[0].new_symbol.as_deref()),
                ("show_val", 2, Some("new_show_val"))
            );
            // A NOTYPE label when no function starts there.
            assert_eq!((f[1].old_name.as_str(), f[1].new_symbol.as_deref()), ("foo", Some("label")));
        }
        // Both names at once: refused.
        let mut b = klp_build(".init.klp_objects", ".init.klp_funcs", 2);
        b.section("__klp_objects", SHT_PROGBITS, ALLOC_WRITE, vec![0; 64]);
        assert_eq!(
            message(read(&b)),
            "the module has both .init.klp_objects and __klp_objects; cannot tell which the kernel gets"
        );
    }

    #[test]
    fn klp_build_counts_are_bounded_by_the_bytes() {
        // nr_funcs far beyond the section: refused before reserving.
        let error = message(read(&klp_build(".init.klp_objects", ".init.klp_funcs", u32::MAX)));
        assert_eq!(
            error,
            "klp_object_ext.nr_funcs at .init.klp_objects+0x38 claims 4294967295 functions; at most 2 fit in .init.klp_funcs"
        );
        assert!(message(read(&klp_build(".init.klp_objects", ".init.klp_funcs", 3))).contains("at most 2 fit"));
        // Fewer is fine: the rest is not read.
        assert_eq!(
            read(&klp_build(".init.klp_objects", ".init.klp_funcs", 1)).map(|m| m.objects[0].funcs.len()),
            Ok(1)
        );
        let mut b = klp_build(".init.klp_objects", ".init.klp_funcs", 2);
        b.sec(".init.klp_objects").data.truncate(60);
        assert!(message(read(&b)).contains("not a multiple of sizeof(struct klp_object_ext) = 64"));
        // No funcs array but a count.
        let mut b = klp_build(".init.klp_objects", ".init.klp_funcs", 2);
        b.sec(".init.klp_objects").relocs.clear();
        assert_eq!(message(read(&b)), "object 1 (at .init.klp_objects+0x0) has a name but no funcs array");
    }

    #[test]
    fn no_livepatch_content() {
        let mut b = Builder::default();
        b.section(".text", SHT_PROGBITS, ALLOC_EXEC, vec![0xc3; 16])
            .section(".data", SHT_PROGBITS, ALLOC_WRITE, vec![0; 16])
            .section(".gnu.linkonce.this_module", SHT_PROGBITS, ALLOC_WRITE, vec![0; 64])
            .symbol("__this_module", 1, true, Some(".gnu.linkonce.this_module"), 0)
            .modinfo("name=plain");
        // Without BTF: the static klp_patch cannot be looked for.
        assert_eq!(
            message(read(&b)),
            "no __klp_objects/.init.klp_objects or .kpatch.funcs section; a source-built module's static struct klp_patch can only be found with BTF that has struct klp_patch (the target kernel's vmlinux BTF)"
        );
        // With it: nothing found.
        let btf_bytes = klp_btf();
        let btf = Btf::parse(&btf_bytes).expect("test BTF");
        assert_eq!(read_livepatch_module(&b.build(), Some(&btf)), Err(KoError::NotLivepatch));
        assert_eq!(
            KoError::NotLivepatch.to_string(),
            "not a livepatch module: no __klp_objects/.init.klp_objects, .kpatch.funcs or klp_patch found"
        );
        // Not x86-64 / not relocatable.
        let mut bytes = b.build();
        bytes[18] = 183; // EM_AARCH64
        assert!(message(read_livepatch_module(&bytes, None)).contains("expected EM_X86_64"));
        bytes[18] = 62;
        bytes[5] = 2; // big-endian
        assert!(message(read_livepatch_module(&bytes, None)).contains("not an ELF64 little-endian"));
        bytes[5] = 1;
        bytes[16] = 3; // ET_DYN
        assert!(message(read_livepatch_module(&bytes, None)).contains("expected ET_REL"));
    }

    // A BTF with its own layout of klp_func (32 bytes), klp_object (24) and
    // klp_patch (32), to show the offsets come from BTF.
    fn klp_btf() -> Vec<u8> {
        let mut strs = vec![0u8];
        let mut s = |name: &str| {
            let off = strs.len() as u32;
            strs.extend_from_slice(name.as_bytes());
            strs.push(0);
            off
        };
        let mut types: Vec<u32> = Vec::new();
        let mut ty = |name: u32, kind: u32, vlen: u32, size_or_type: u32, extra: &[u32]| {
            types.extend_from_slice(&[name, (kind << 24) | vlen, size_or_type]);
            types.extend_from_slice(extra);
        };
        let (ulong, char_, bool_) = (s("unsigned long"), s("char"), s("_Bool"));
        ty(ulong, 1, 0, 8, &[64]); // [1]
        ty(char_, 1, 0, 1, &[8]); // [2]
        ty(0, 2, 0, 2, &[]); // [3] char *
        let (func, old_name, new_func, old_sympos) = (s("klp_func"), s("old_name"), s("new_func"), s("old_sympos"));
        ty(func, 4, 3, 32, &[old_name, 3, 64, new_func, 3, 0, old_sympos, 1, 128]); // [4], old_name at 8
        ty(0, 2, 0, 4, &[]); // [5]
        let (object, name, funcs) = (s("klp_object"), s("name"), s("funcs"));
        ty(object, 4, 2, 24, &[funcs, 5, 0, name, 3, 128]); // [6]: funcs at 0, name at 16
        ty(0, 2, 0, 6, &[]); // [7]
        ty(bool_, 1, 0, 1, &[8]); // [8]
        let (patch, mod_, objs, replace) = (s("klp_patch"), s("mod"), s("objs"), s("replace"));
        ty(patch, 4, 3, 32, &[objs, 7, 0, mod_, 3, 64, replace, 8, 192]); // [9]: objs 0, mod 8, replace 24
        let types: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [24u32, 0, types.len() as u32, types.len() as u32, strs.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strs);
        out
    }

    /// A source-built module in the test BTF's layout: klp_patch at .data+0
    /// (objs 0, mod 8, replace 24); three klp_object (24 bytes: funcs 0,
    /// name 16) at 0x20, the last the terminator; the module's klp_func
    /// array (32 bytes: new_func 0, old_name 8, old_sympos 16) at 0x70 and
    /// the vmlinux one at 0xb0, each ending in a zero entry.
    fn source_built() -> Builder {
        let mut b = Builder::default();
        b.section(".text", SHT_PROGBITS, ALLOC_EXEC, vec![0xc3; 0x40])
            .section(".rodata.str1.1", SHT_PROGBITS, 0x32, strings(&["cmdline_proc_show", "ext4", "ext4_readdir"]))
            .section(".data", SHT_PROGBITS, ALLOC_WRITE, vec![0; 0xf0])
            .section(".gnu.linkonce.this_module", SHT_PROGBITS, ALLOC_WRITE, vec![0; 0x80])
            .symbol("patch", 1, false, Some(".data"), 0)
            .symbol("new_show", 2, false, Some(".text"), 0x10)
            .symbol("new_readdir", 2, false, Some(".text"), 0x20)
            .symbol("__this_module", 1, true, Some(".gnu.linkonce.this_module"), 0)
            .write(".gnu.linkonce.this_module", 24, b"srcmod\0")
            .write(".data", 24, &[1])
            .reloc(".data", 0, To::Section(".data"), 0x20)
            .reloc(".data", 8, To::Symbol("__this_module"), 0)
            // objs[0]: vmlinux
            .reloc(".data", 0x20, To::Section(".data"), 0xb0)
            // objs[1]: ext4
            .reloc(".data", 0x38, To::Section(".data"), 0x70)
            .reloc(".data", 0x48, To::Section(".rodata.str1.1"), 18)
            // ext4 funcs[0]
            .reloc(".data", 0x70, To::Section(".text"), 0x20)
            .reloc(".data", 0x78, To::Section(".rodata.str1.1"), 23)
            .write(".data", 0x80, &2u64.to_le_bytes())
            // vmlinux funcs[0]
            .reloc(".data", 0xb0, To::Symbol("new_show"), 0)
            .reloc(".data", 0xb8, To::Section(".rodata.str1.1"), 0);
        b
    }

    fn read_btf(b: &Builder) -> Result<LivepatchModule, KoError> {
        let btf_bytes = klp_btf();
        let btf = Btf::parse(&btf_bytes).expect("test BTF");
        read_livepatch_module(&b.build(), Some(&btf))
    }

    #[test]
    fn source_built_layout_from_btf() {
        let module = read_btf(&source_built()).expect("source-built");
        assert_eq!(
            (module.name.as_str(), module.form, module.replace),
            ("srcmod", ModuleForm::SourceBuilt, Some(true))
        );
        let got: Vec<_> = module
            .funcs()
            .map(|(o, f)| (o.name.as_deref(), f.old_name.as_str(), f.sympos, f.new_symbol.as_deref()))
            .collect();
        assert_eq!(
            got,
            [(None, "cmdline_proc_show", 0, Some("new_show")), (Some("ext4"), "ext4_readdir", 2, Some("new_readdir")),]
        );
        // Found without symbol names, and __this_module by place.
        let mut b = source_built();
        for r in &mut b.sec(".data").relocs {
            match r.2 {
                To::Symbol("__this_module") => r.2 = To::Section(".gnu.linkonce.this_module"),
                To::Symbol("new_show") => (r.2, r.3) = (To::Section(".text"), 0x10),
                _ => {}
            }
        }
        b.symbols.clear();
        let module = read_btf(&b).expect("no names");
        assert_eq!(module.name, "srcmod");
        assert_eq!(module.funcs().map(|(_, f)| f.new_symbol.clone()).collect::<Vec<_>>(), [None, None]);
        // replace false.
        let mut b = source_built();
        b.write(".data", 24, &[0]);
        assert_eq!(read_btf(&b).map(|m| m.replace), Ok(Some(false)));
    }

    #[test]
    fn source_built_terminators() {
        // The klp_object array loses its terminator: .data ends right after
        // objs[1], the funcs moved to a section of their own.
        let mut b = source_built();
        b.sec(".data").data.truncate(0x50);
        b.sec(".data").relocs.retain(|r| r.0 < 0x50);
        b.section(".data.funcs", SHT_PROGBITS, ALLOC_WRITE, vec![0; 0x80]);
        b.sec(".data").relocs[2].2 = To::Section(".data.funcs");
        b.sec(".data").relocs[2].3 = 0x40;
        b.sec(".data").relocs[3].2 = To::Section(".data.funcs");
        b.sec(".data").relocs[3].3 = 0;
        b.reloc(".data.funcs", 0, To::Section(".text"), 0x20)
            .reloc(".data.funcs", 8, To::Section(".rodata.str1.1"), 23)
            .reloc(".data.funcs", 0x40, To::Symbol("new_show"), 0)
            .reloc(".data.funcs", 0x48, To::Section(".rodata.str1.1"), 0);
        assert_eq!(
            message(read_btf(&b)),
            "array of struct klp_object at .data+0x20 runs to the end of .data without its all-zero terminator"
        );
        // The funcs array loses its terminator.
        let mut b = source_built();
        b.sec(".data").data.truncate(0xd0);
        assert_eq!(
            message(read_btf(&b)),
            "array of struct klp_func at .data+0xb0 runs to the end of .data without its all-zero terminator"
        );
        // A func with a sympos but no name is not a terminator.
        let mut b = source_built();
        b.write(".data", 0xd0 + 16, &1u64.to_le_bytes());
        assert_eq!(message(read_btf(&b)), "function 2 of object `vmlinux` (at .data+0xd0): old_name is NULL");
        // A named object without funcs.
        let mut b = source_built();
        b.sec(".data").relocs.retain(|r| r.0 != 0x38);
        assert_eq!(message(read_btf(&b)), "object 2 (at .data+0x38) has a name but no funcs array");
    }

    #[test]
    fn two_patches_are_ambiguous() {
        let mut b = source_built();
        b.sec(".data").data.resize(0x110, 0);
        b.symbol("patch2", 1, false, Some(".data"), 0xf0).reloc(".data", 0xf0, To::Section(".data"), 0x20).reloc(
            ".data",
            0xf8,
            To::Symbol("__this_module"),
            0,
        );
        assert_eq!(
            message(read_btf(&b)),
            "several struct klp_patch found: `patch` (.data+0x0), `patch2` (.data+0xf0); cannot tell which one the module registers"
        );
        // A look-alike whose objs points into code is not a candidate.
        let mut b = source_built();
        b.sec(".data").data.resize(0x110, 0);
        b.reloc(".data", 0xf0, To::Section(".text"), 0).reloc(".data", 0xf8, To::Symbol("__this_module"), 0);
        assert!(read_btf(&b).is_ok());
    }

    #[test]
    fn btf_without_klp_structs() {
        let btf_bytes = klp_btf();
        let btf = Btf::parse(&btf_bytes).expect("test BTF");
        // The replace member is optional (kernels before 5.1)...
        assert!(SourceLayout::from_btf(&btf).is_ok());
        // A BTF of just `unsigned long` (the type section cut after the
        // first type) has no klp_patch at all.
        let mut only_int = klp_btf();
        only_int[12..16].copy_from_slice(&16u32.to_le_bytes());
        let int_btf = Btf::parse(&only_int).expect("cut BTF");
        assert_eq!(
            read_livepatch_module(&source_built().build(), Some(&int_btf)),
            Err(KoError::NeedBtf { livepatch_tag: false })
        );
    }

    #[test]
    fn module_name_falls_back_to_this_module() {
        let mut b = kpatch();
        b.sections.retain(|s| s.name != ".modinfo");
        assert_eq!(read(&b).map(|m| m.name), Err(KoError::NoModuleName));
        b.section(".gnu.linkonce.this_module", SHT_PROGBITS, ALLOC_WRITE, vec![0; 0x80]);
        b.write(".gnu.linkonce.this_module", 24, b"from_struct\0");
        assert_eq!(read(&b).map(|m| m.name), Ok("from_struct".into()));
    }

    #[test]
    fn nobits_sections_read_as_zeros() {
        // Strings in .bss are empty; an array there is all terminator.
        let mut b = kpatch();
        b.sec(".kpatch.strings").kind = SHT_NOBITS;
        assert_eq!(message(read(&b)), "string at .kpatch.strings+0x0 is empty");
        let mut b = source_built();
        b.section(".bss", SHT_NOBITS, ALLOC_WRITE, vec![0; 0x40]);
        b.sec(".data").relocs[3].2 = To::Section(".bss");
        b.sec(".data").relocs[3].3 = 0x20;
        let module = read_btf(&b).expect("funcs in .bss");
        assert_eq!((module.objects[1].name.as_deref(), module.objects[1].funcs.len()), (Some("ext4"), 0));
        b.sec(".data").relocs[3].3 = 0x30; // 16 bytes left, a klp_func is 32
        assert!(message(read_btf(&b)).contains("klp_func at .bss+0x30 runs to the end of .bss"));
    }
}
