//! The patched set: which address ranges a thread's stack must not contain.
//!
//! Mirrors Linux livepatch. Functions are named in a `funcs.txt`
//! (`[object:]function[,sympos]` per line) and resolved like
//! `klp_find_object_symbol` (kernel/livepatch/core.c); the range checked
//! for each follows `klp_check_stack_func` (kernel/livepatch/transition.c),
//! see [`Direction`]. Matching a PC is `start <= pc < start + size` on the
//! raw address, exactly as the kernel compares return addresses.

pub mod ko;

use std::collections::HashMap;

use serde::Serialize;

use crate::symbols::{SymbolKind, Symbolizer};

pub mod klp;

/// Errors in a `funcs.txt` or while resolving it. `line` is 1-based in the
/// file the spec came from; the caller adds the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchSetError {
    /// A line that is not `[object:]function[,sympos]`.
    #[error("line {line}: cannot parse `{text}`: expected `[object:]function[,sympos]`")]
    Unparsable {
        /// 1-based line.
        line: usize,
        /// The line, comment and surrounding whitespace removed.
        text: String,
    },
    /// The part after `,` is not a decimal `u32`.
    #[error("line {line}: bad sympos in `{text}`: expected a decimal number")]
    BadSympos {
        /// 1-based line.
        line: usize,
        /// The line, comment and surrounding whitespace removed.
        text: String,
    },
    /// The same object, function and sympos twice (after defaulting the object).
    #[error("line {line}: `{text}` repeats line {first_line}")]
    Duplicate {
        /// 1-based line of the repeat.
        line: usize,
        /// 1-based line that named it first.
        first_line: usize,
        /// The repeated line, comment and surrounding whitespace removed.
        text: String,
    },
    /// No symbol table is loaded for the object.
    #[error("line {line}: no symbols for object `{object}`")]
    UnknownObject {
        /// 1-based line.
        line: usize,
        /// The object named.
        object: String,
    },
    /// The object has no symbol of that name.
    #[error("line {line}: no symbol `{function}` in `{object}`")]
    UnknownFunction {
        /// 1-based line.
        line: usize,
        /// The object searched.
        object: String,
        /// The name not found.
        function: String,
    },
    /// Sympos 0 (unique) was given, but the name occurs several times.
    #[error("line {line}: `{function}` occurs {count} times in `{object}`; add `,sympos` (1..={count})")]
    Ambiguous {
        /// 1-based line.
        line: usize,
        /// The object searched.
        object: String,
        /// The name that is not unique.
        function: String,
        /// How many symbols of the object bear it (data symbols included).
        count: usize,
    },
    /// The sympos is past the name's last occurrence.
    #[error("line {line}: sympos {sympos} for `{function}` in `{object}`, but it occurs only {count} time(s)")]
    SymposOutOfRange {
        /// 1-based line.
        line: usize,
        /// The object searched.
        object: String,
        /// The name looked up.
        function: String,
        /// The sympos asked for (1-based occurrence).
        sympos: u32,
        /// How many symbols of the object bear the name.
        count: usize,
    },
    /// The symbol has size 0 or an unknown size, so it has no range to check.
    #[error("line {line}: `{function}` in `{object}` at {address:#x} has zero or unknown size")]
    ZeroSize {
        /// 1-based line.
        line: usize,
        /// The object searched.
        object: String,
        /// The symbol's name.
        function: String,
        /// The symbol's address.
        address: u64,
    },
    /// The symbol is data or absolute, not code: it cannot be patched.
    #[error("line {line}: `{function}` in `{object}` at {address:#x} is not a function")]
    NotAFunction {
        /// 1-based line.
        line: usize,
        /// The object searched.
        object: String,
        /// The symbol's name.
        function: String,
        /// The symbol's address.
        address: u64,
    },
    /// Old and new (replacement) specs differ in number.
    #[error("{old} old functions but {new} new functions; they pair up line by line")]
    CountMismatch {
        /// Number of old specs.
        old: usize,
        /// Number of new specs.
        new: usize,
    },
    /// Unpatching, without the replacement functions to check.
    #[error("unpatching checks the new (replacement) functions, but none were given")]
    MissingNewFunctions,
    /// Unpatching was asked for, but the kernel's transition is patching.
    #[error("--unpatch, but the kernel is applying livepatch {module}, not removing it")]
    DirectionConflict {
        /// The livepatch module in transition ("?" when unknown).
        module: String,
    },
    /// Unpatching a function that no livepatch in the kernel replaces.
    #[error("line {line}: --unpatch, but no livepatch replaces `{function}` in `{object}`")]
    NotPatched {
        /// 1-based line.
        line: usize,
        /// The function's object.
        object: String,
        /// The function named.
        function: String,
    },
    /// A raw range given to [`PatchSet::from_ranges`] has size 0.
    #[error("range {number} (`{function}` in `{object}`) has size 0")]
    ZeroSizeRange {
        /// 1-based position of the range in the input.
        number: usize,
        /// The range's object.
        object: String,
        /// The range's function.
        function: String,
    },
}

/// One line of a `funcs.txt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FuncSpec {
    /// Object holding the function (`vmlinux`, a module, an object of a
    /// process); the default object when the line names none.
    pub object: String,
    /// Symbol name of the function.
    pub function: String,
    /// 0: the name must be unique in `object`; N: its Nth occurrence.
    pub sympos: u32,
    /// 1-based line in the file.
    pub line: usize,
}

/// Parses `funcs.txt`: one `[object:]function[,sympos]` per line; `#`
/// starts a comment; blank lines are skipped; whitespace around the line
/// and its parts is trimmed. `object` defaults to `default_object`
/// ("vmlinux" for the kernel, the main executable for a process).
pub fn parse_funcs(text: &str, default_object: &str) -> Result<Vec<FuncSpec>, PatchSetError> {
    let mut specs: Vec<FuncSpec> = Vec::new();
    let mut seen: HashMap<(&str, &str, u32), usize> = HashMap::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw_line.split_once('#').map_or(raw_line, |(before, _)| before).trim();
        if content.is_empty() {
            continue;
        }
        let unparsable = || PatchSetError::Unparsable { line, text: content.to_owned() };
        let (target, sympos) = match content.split_once(',') {
            Some((target, sympos)) => {
                let sympos = sympos.trim();
                if sympos.is_empty() || !sympos.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PatchSetError::BadSympos { line, text: content.to_owned() });
                }
                let sympos =
                    sympos.parse::<u32>().map_err(|_| PatchSetError::BadSympos { line, text: content.to_owned() })?;
                (target.trim(), sympos)
            }
            None => (content, 0),
        };
        let (object, function) = match target.split_once(':') {
            Some((object, function)) => (object.trim(), function.trim()),
            None => (default_object, target),
        };
        let is_name =
            |name: &str| !name.is_empty() && !name.contains(|c: char| c.is_whitespace() || matches!(c, ':' | ','));
        if !is_name(object) || !is_name(function) {
            return Err(unparsable());
        }
        if let Some(&first_line) = seen.get(&(object, function, sympos)) {
            return Err(PatchSetError::Duplicate { line, first_line, text: content.to_owned() });
        }
        seen.insert((object, function, sympos), line);
        specs.push(FuncSpec { object: object.to_owned(), function: function.to_owned(), sympos, line });
    }
    Ok(specs)
}

/// Which way the transition goes; decides which range is checked
/// (`klp_check_stack_func`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    /// Patching: check the function being replaced — the original
    /// `[old_func, old_func + old_size)` for the first patch of a function,
    /// or the previous patch's replacement when patches are stacked.
    Patch,
    /// Unpatching: check `[new_func, new_func + new_size)`, the replacement
    /// currently live.
    Unpatch,
}

/// A resolved patched function and the range checked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchedFunc {
    /// The patched (old) function, as reported to the user.
    pub object: String,
    /// Name of the patched (old) function, as reported to the user.
    pub function: String,
    /// Its sympos (0: the name is unique in `object`).
    pub sympos: u32,
    /// Line of the old function's spec; 0 for `from_ranges`.
    pub line: usize,
    /// The checked range: `[address, address + size)`. Size 0 (address 0)
    /// for a function with only inlined copies: no pc is in it, and its
    /// copies are found through DWARF by name.
    pub address: u64,
    /// Length of the checked range in bytes.
    pub size: u64,
    /// The symbol whose range is checked: the old function itself, or the
    /// replacement for unpatching / stacked patches.
    pub checked_object: String,
    /// Name of that symbol: `name+0x10` when the range starts inside one,
    /// the address when no symbol covers it, `*` for [`CheckedVersion::AnyOfModule`].
    pub checked_function: String,
    /// Which code of the function that range is.
    pub version: CheckedVersion,
}

/// Which code of a patched function a task is checked against
/// (`klp_check_stack_func`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckedVersion {
    /// The original function: no earlier livepatch replaces it.
    Original,
    /// An earlier livepatch's replacement, live under the patch being
    /// applied (stacked patches), from livepatch module `module`.
    PreviousPatch {
        /// Name of the livepatch module holding that replacement.
        module: String,
    },
    /// The patch's own replacement, checked when it is being removed.
    Replacement {
        /// Name of the livepatch module being removed.
        module: String,
    },
    /// Any code of livepatch module `module`: the kernel's livepatch state
    /// could not be read, so any of its functions may be the live version.
    AnyOfModule {
        /// Name of the livepatch module.
        module: String,
    },
}

impl CheckedVersion {
    /// "original", "previous patch", "replacement" or "livepatch module".
    pub fn name(&self) -> &'static str {
        match self {
            CheckedVersion::Original => "original",
            CheckedVersion::PreviousPatch { .. } => "previous patch",
            CheckedVersion::Replacement { .. } => "replacement",
            CheckedVersion::AnyOfModule { .. } => "livepatch module",
        }
    }
}

impl PatchedFunc {
    /// The line's own function at `[address, address + size)`: no earlier
    /// patch replaces it, so the original is what is checked.
    pub fn original(spec: &FuncSpec, address: u64, size: u64) -> PatchedFunc {
        PatchedFunc {
            object: spec.object.clone(),
            function: spec.function.clone(),
            sympos: spec.sympos,
            line: spec.line,
            address,
            size,
            checked_object: spec.object.clone(),
            checked_function: spec.function.clone(),
            version: CheckedVersion::Original,
        }
    }

    /// `address <= pc < address + size`, without overflow.
    pub fn contains(&self, pc: u64) -> bool {
        pc >= self.address && pc - self.address < self.size
    }

    /// Last address in the range (for an inline-only entry, size 0, its
    /// address; such entries are not in the address index).
    fn last(&self) -> u64 {
        self.address.saturating_add(self.size.saturating_sub(1))
    }
}

/// The patched functions, indexed by address.
///
/// Ranges may overlap (aliases, a function patched by two specs); `find`
/// then reports the lowest index. A "nop" function of an atomic-replace
/// patch (new == old) needs nothing special: give the same spec as old and
/// new, and its original range is checked both ways.
#[derive(Debug, Clone, Default)]
pub struct PatchSet {
    funcs: Vec<PatchedFunc>,
    /// Indexes into `funcs` sorted by start address (stable: equal starts
    /// keep index order).
    by_address: Vec<usize>,
    /// `max_last[i]`: highest last address among `by_address[..=i]`, so a
    /// search can stop walking back once no earlier range reaches the PC.
    max_last: Vec<u64>,
}

/// Resolves one spec like `klp_find_object_symbol`: sympos 0 requires a
/// unique name, N picks the Nth occurrence in the table's source order.
/// Returns the symbol's `(address, size)`.
fn resolve_spec(spec: &FuncSpec, symbols: &Symbolizer) -> Result<(u64, u64), PatchSetError> {
    let table = symbols
        .table(&spec.object)
        .ok_or_else(|| PatchSetError::UnknownObject { line: spec.line, object: spec.object.clone() })?;
    let unknown_function = || PatchSetError::UnknownFunction {
        line: spec.line,
        object: spec.object.clone(),
        function: spec.function.clone(),
    };
    let count = table.find_by_name(&spec.function).count();
    let position = match (count, spec.sympos) {
        (0, _) => return Err(unknown_function()),
        (1, 0) => 0,
        (count, 0) => {
            return Err(PatchSetError::Ambiguous {
                line: spec.line,
                object: spec.object.clone(),
                function: spec.function.clone(),
                count,
            });
        }
        (count, sympos) => {
            let position = usize::try_from(sympos - 1).unwrap_or(usize::MAX);
            if position >= count {
                return Err(PatchSetError::SymposOutOfRange {
                    line: spec.line,
                    object: spec.object.clone(),
                    function: spec.function.clone(),
                    sympos,
                    count,
                });
            }
            position
        }
    };
    let symbol = table.find_by_name(&spec.function).nth(position).ok_or_else(unknown_function)?;
    // Data and absolute symbols count for sympos (kallsyms lists them:
    // livepatch requires KALLSYMS_ALL), but only code can be patched.
    if symbol.kind != SymbolKind::Text {
        return Err(PatchSetError::NotAFunction {
            line: spec.line,
            object: spec.object.clone(),
            function: spec.function.clone(),
            address: symbol.address,
        });
    }
    if symbol.size == 0 {
        return Err(PatchSetError::ZeroSize {
            line: spec.line,
            object: spec.object.clone(),
            function: spec.function.clone(),
            address: symbol.address,
        });
    }
    Ok((symbol.address, symbol.size))
}

impl PatchSet {
    /// Patching, first patch of each function: `specs` name the old
    /// functions; their own ranges are checked.
    pub fn resolve(specs: &[FuncSpec], symbols: &Symbolizer) -> Result<PatchSet, PatchSetError> {
        let mut funcs = Vec::with_capacity(specs.len());
        for spec in specs {
            let (address, size) = resolve_spec(spec, symbols)?;
            funcs.push(PatchedFunc::original(spec, address, size));
        }
        Ok(PatchSet::from_funcs(funcs))
    }

    /// Unpatching, or patching over a stacked patch: the checked range is a
    /// replacement function (e.g. `livepatch_sample:livepatch_cmdline_proc_show`).
    /// `new_specs[i]` is the replacement of `old_specs[i]`. Both are
    /// resolved (so a typo in either is reported); the old names are what
    /// gets reported, the new ranges are what gets checked.
    pub fn resolve_new(
        old_specs: &[FuncSpec],
        new_specs: &[FuncSpec],
        symbols: &Symbolizer,
    ) -> Result<PatchSet, PatchSetError> {
        Self::resolve_new_as(old_specs, new_specs, symbols, Direction::Patch)
    }

    fn resolve_new_as(
        old_specs: &[FuncSpec],
        new_specs: &[FuncSpec],
        symbols: &Symbolizer,
        direction: Direction,
    ) -> Result<PatchSet, PatchSetError> {
        if old_specs.len() != new_specs.len() {
            return Err(PatchSetError::CountMismatch { old: old_specs.len(), new: new_specs.len() });
        }
        let mut funcs = Vec::with_capacity(old_specs.len());
        for (old, new) in old_specs.iter().zip(new_specs) {
            resolve_spec(old, symbols)?;
            let (address, size) = resolve_spec(new, symbols)?;
            funcs.push(PatchedFunc {
                object: old.object.clone(),
                function: old.function.clone(),
                sympos: old.sympos,
                line: old.line,
                address,
                size,
                checked_object: new.object.clone(),
                checked_function: new.function.clone(),
                version: match direction {
                    Direction::Patch => CheckedVersion::PreviousPatch { module: new.object.clone() },
                    Direction::Unpatch => CheckedVersion::Replacement { module: new.object.clone() },
                },
            });
        }
        Ok(PatchSet::from_funcs(funcs))
    }

    /// Picks the checked ranges for `direction`, as `klp_check_stack_func`:
    ///
    /// - `Patch`, no `new_specs`: first patch, the old functions.
    /// - `Patch`, `new_specs` = the previous (stacked) patch's replacements.
    /// - `Unpatch`: `new_specs` = this patch's replacements (required).
    pub fn resolve_for(
        direction: Direction,
        old_specs: &[FuncSpec],
        new_specs: Option<&[FuncSpec]>,
        symbols: &Symbolizer,
    ) -> Result<PatchSet, PatchSetError> {
        match (direction, new_specs) {
            (Direction::Patch, None) => PatchSet::resolve(old_specs, symbols),
            (_, Some(new_specs)) => PatchSet::resolve_new_as(old_specs, new_specs, symbols, direction),
            (Direction::Unpatch, None) => Err(PatchSetError::MissingNewFunctions),
        }
    }

    /// As [`PatchSet::resolve_for`], for a process: a line whose function
    /// has no symbol, but that `inline_only` says the object's DWARF knows
    /// as inlined (a static inline function with no out-of-line copy), is
    /// accepted with no address range (size 0, never matched by address);
    /// its inlined copies are what is checked, by name, through DWARF.
    /// Each such line gets a note. Only for a first patch (no `new_specs`,
    /// not unpatching) and without sympos; anything else stays an error.
    pub fn resolve_for_with_inline_only(
        direction: Direction,
        old_specs: &[FuncSpec],
        new_specs: Option<&[FuncSpec]>,
        symbols: &Symbolizer,
        inline_only: &mut dyn FnMut(&FuncSpec) -> bool,
    ) -> Result<(PatchSet, Vec<String>), PatchSetError> {
        if direction != Direction::Patch || new_specs.is_some() {
            return PatchSet::resolve_for(direction, old_specs, new_specs, symbols).map(|s| (s, Vec::new()));
        }
        let mut funcs = Vec::with_capacity(old_specs.len());
        let mut notes = Vec::new();
        for spec in old_specs {
            let (address, size) = match resolve_spec(spec, symbols) {
                Ok(range) => range,
                Err(e @ PatchSetError::UnknownFunction { .. }) => {
                    if spec.sympos != 0 || !inline_only(spec) {
                        return Err(e);
                    }
                    notes.push(format!(
                        "line {}: `{}` has no symbol in `{}`, only inlined copies: checked through DWARF",
                        spec.line, spec.function, spec.object
                    ));
                    (0, 0)
                }
                Err(e) => return Err(e),
            };
            funcs.push(PatchedFunc::original(spec, address, size));
        }
        Ok((PatchSet::from_funcs(funcs), notes))
    }

    /// From raw `(object, function, address, size)` ranges (C API, tests);
    /// the function is both reported and checked. Size 0 is rejected.
    pub fn from_ranges<'a>(
        ranges: impl IntoIterator<Item = (&'a str, &'a str, u64, u64)>,
    ) -> Result<PatchSet, PatchSetError> {
        let mut funcs = Vec::new();
        for (index, (object, function, address, size)) in ranges.into_iter().enumerate() {
            if size == 0 {
                return Err(PatchSetError::ZeroSizeRange {
                    number: index + 1,
                    object: object.to_owned(),
                    function: function.to_owned(),
                });
            }
            funcs.push(PatchedFunc {
                object: object.to_owned(),
                function: function.to_owned(),
                sympos: 0,
                line: 0,
                address,
                size,
                checked_object: object.to_owned(),
                checked_function: function.to_owned(),
                version: CheckedVersion::Original,
            });
        }
        Ok(PatchSet::from_funcs(funcs))
    }

    /// Entries of size 0 (inline-only functions: no out-of-line copy) are
    /// left out of the address index: no pc is ever found in them.
    pub(crate) fn from_funcs(funcs: Vec<PatchedFunc>) -> PatchSet {
        let mut by_address: Vec<usize> =
            (0..funcs.len()).filter(|&i| funcs.get(i).is_some_and(|f| f.size > 0)).collect();
        by_address.sort_by_key(|&index| funcs.get(index).map_or(0, |func| func.address));
        let mut max_last = Vec::with_capacity(by_address.len());
        let mut highest = 0;
        for &index in &by_address {
            highest = funcs.get(index).map_or(highest, |func| highest.max(func.last()));
            max_last.push(highest);
        }
        PatchSet { funcs, by_address, max_last }
    }

    /// The functions in set order; indexes returned by
    /// [`PatchSet::find`] and [`PatchSet::find_all`] point into it.
    pub fn funcs(&self) -> &[PatchedFunc] {
        &self.funcs
    }

    /// Number of functions, inline-only ones included.
    pub fn len(&self) -> usize {
        self.funcs.len()
    }

    /// True when the set has no function.
    pub fn is_empty(&self) -> bool {
        self.funcs.is_empty()
    }

    /// The lowest index (into `funcs()`) whose range contains `pc`:
    /// `address <= pc < address + size`, the raw address as livepatch
    /// compares it (not `pc - 1`).
    pub fn find(&self, pc: u64) -> Option<usize> {
        self.find_all(pc).min()
    }

    /// Every index whose range contains `pc`, by descending start address
    /// (descending index among equal starts). Does not allocate.
    pub fn find_all(&self, pc: u64) -> impl Iterator<Item = usize> + '_ {
        let end =
            self.by_address.partition_point(|&index| self.funcs.get(index).is_some_and(|func| func.address <= pc));
        let candidates = self.by_address.get(..end).unwrap_or(&[]);
        let reach = self.max_last.get(..end).unwrap_or(&[]);
        candidates
            .iter()
            .zip(reach)
            .rev()
            .take_while(move |&(_, &last)| last >= pc)
            .map(|(&index, _)| index)
            .filter(move |&index| self.funcs.get(index).is_some_and(|func| func.contains(pc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::{SymbolSize, SymbolTable, parse_system_map, symbols_from_list};

    fn specs(text: &str) -> Vec<FuncSpec> {
        match parse_funcs(text, "vmlinux") {
            Ok(specs) => specs,
            Err(error) => panic!("{error}"),
        }
    }

    fn spec(object: &str, function: &str, sympos: u32, line: usize) -> FuncSpec {
        FuncSpec { object: object.into(), function: function.into(), sympos, line }
    }

    /// A line with no symbol is accepted only when the object's DWARF
    /// knows the function as inlined; it has no range, so no pc is ever
    /// found in it, and other lines still resolve as before.
    #[test]
    fn inline_only_lines_have_no_range() {
        let symbols = symbolizer();
        let s = specs("cmdline_proc_show\nonly_inlined\n");
        let mut asked = Vec::new();
        let (set, notes) = PatchSet::resolve_for_with_inline_only(Direction::Patch, &s, None, &symbols, &mut |f| {
            asked.push(f.function.clone());
            true
        })
        .unwrap();
        assert_eq!(asked, ["only_inlined"]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("line 2") && notes[0].contains("only inlined copies"), "{}", notes[0]);
        let f = &set.funcs()[1];
        assert_eq!((f.function.as_str(), f.address, f.size), ("only_inlined", 0, 0));
        for pc in [0, 1, u64::MAX, set.funcs()[0].address] {
            assert!(set.find_all(pc).all(|i| i == 0), "pc {pc:#x}");
        }
        assert_eq!(set.find(set.funcs()[0].address), Some(0));
        // No DWARF (or DWARF that does not know it): still an error.
        let e =
            PatchSet::resolve_for_with_inline_only(Direction::Patch, &s, None, &symbols, &mut |_| false).unwrap_err();
        assert!(matches!(e, PatchSetError::UnknownFunction { line: 2, .. }), "{e}");
        // With a sympos, or unpatching, it is not accepted either.
        let e = PatchSet::resolve_for_with_inline_only(
            Direction::Patch,
            &specs("only_inlined,1\n"),
            None,
            &symbols,
            &mut |_| true,
        );
        assert!(e.is_err());
        let e = PatchSet::resolve_for_with_inline_only(Direction::Unpatch, &s, Some(&s), &symbols, &mut |_| true);
        assert!(e.is_err());
    }

    /// vmlinux with a unique function, a name used three times (two
    /// functions and a data symbol), and a zero-size one; plus a
    /// livepatch module carrying the replacements.
    fn symbolizer() -> Symbolizer {
        let map = "\
ffffffff81000000 T _stext
ffffffff81000ff0 t __pfx_cmdline_proc_show
ffffffff81001000 t cmdline_proc_show
ffffffff81001100 t show_val
ffffffff81001200 t show_val
ffffffff81001300 T meminfo_proc_show
ffffffff81001400 T _etext
ffffffff82000000 d show_val
ffffffff82000100 D last_data
";
        let mut symbols = Symbolizer::new();
        match parse_system_map("vmlinux", map) {
            Ok(table) => symbols.add(table),
            Err(error) => panic!("{error}"),
        }
        symbols.add(symbols_from_list(
            "livepatch_sample",
            [
                ("livepatch_cmdline_proc_show", 0xffff_ffff_c000_0000, 0x40),
                ("livepatch_show_val", 0xffff_ffff_c000_0040, 0x20),
            ],
        ));
        let mut zero = SymbolTable::new("zero");
        zero.push_symbol("empty_fn", 0x1000, SymbolSize::Known(0), SymbolKind::Text);
        zero.finish();
        symbols.add(zero);
        symbols
    }

    #[test]
    fn parse_comments_blanks_defaults_and_sympos() {
        let text = "\
# a whole-line comment

  cmdline_proc_show   # trailing comment
livepatch_sample:livepatch_cmdline_proc_show
 ext4 : ext4_readdir , 2
show_val,0
\t
";
        assert_eq!(
            specs(text),
            [
                spec("vmlinux", "cmdline_proc_show", 0, 3),
                spec("livepatch_sample", "livepatch_cmdline_proc_show", 0, 4),
                spec("ext4", "ext4_readdir", 2, 5),
                spec("vmlinux", "show_val", 0, 6),
            ]
        );
        // Userspace defaults to the main executable.
        assert_eq!(parse_funcs("parse_request", "nginx").map(|s| s[0].object.clone()), Ok("nginx".into()));
        assert_eq!(parse_funcs("# only a comment\n\n", "vmlinux"), Ok(vec![]));
    }

    #[test]
    fn parse_errors_name_line_and_text() {
        let error = parse_funcs("ok_fn\nfoo bar\n", "vmlinux");
        assert_eq!(error, Err(PatchSetError::Unparsable { line: 2, text: "foo bar".into() }));
        let message = error.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("line 2") && message.contains("foo bar"), "{message}");

        for bad in [":foo", "ext4:", "a:b:c", "foo,1,2"] {
            assert!(
                matches!(
                    parse_funcs(bad, "vmlinux"),
                    Err(PatchSetError::Unparsable { line: 1, .. }) | Err(PatchSetError::BadSympos { line: 1, .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse_funcs("\n\nfoo,x # c", "vmlinux"),
            Err(PatchSetError::BadSympos { line: 3, text: "foo,x".into() })
        );
        assert!(matches!(parse_funcs("foo,-1", "vmlinux"), Err(PatchSetError::BadSympos { .. })));
        assert!(matches!(parse_funcs("foo,", "vmlinux"), Err(PatchSetError::BadSympos { .. })));
        assert!(matches!(parse_funcs("foo,99999999999", "vmlinux"), Err(PatchSetError::BadSympos { .. })));
        assert!(matches!(parse_funcs("foo,1,2", "vmlinux"), Err(PatchSetError::BadSympos { .. })));
    }

    #[test]
    fn parse_rejects_duplicates_after_defaulting() {
        assert_eq!(
            parse_funcs("foo\nvmlinux:foo\n", "vmlinux"),
            Err(PatchSetError::Duplicate { line: 2, first_line: 1, text: "vmlinux:foo".into() })
        );
        // Different sympos or object: not duplicates.
        assert_eq!(parse_funcs("foo\nfoo,1\next4:foo\n", "vmlinux").map(|s| s.len()), Ok(3));
    }

    #[test]
    fn resolve_unique_and_sympos() {
        let symbols = symbolizer();
        let set = PatchSet::resolve(&specs("cmdline_proc_show\nshow_val,2\nshow_val,1"), &symbols);
        let set = match set {
            Ok(set) => set,
            Err(error) => panic!("{error}"),
        };
        let ranges: Vec<(&str, u64, u64)> =
            set.funcs().iter().map(|f| (f.function.as_str(), f.address, f.size)).collect();
        assert_eq!(
            ranges,
            [
                ("cmdline_proc_show", 0xffff_ffff_8100_1000, 0x100),
                ("show_val", 0xffff_ffff_8100_1200, 0x100),
                ("show_val", 0xffff_ffff_8100_1100, 0x100),
            ]
        );
        assert_eq!(set.funcs()[0].checked_function, "cmdline_proc_show");
        assert_eq!(set.funcs()[1].sympos, 2);
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn resolve_errors() {
        let symbols = symbolizer();
        let resolve = |text: &str| PatchSet::resolve(&specs(text), &symbols).map(|set| set.len());
        assert_eq!(
            resolve("\nshow_val"),
            Err(PatchSetError::Ambiguous { line: 2, object: "vmlinux".into(), function: "show_val".into(), count: 3 })
        );
        assert_eq!(
            resolve("show_val,4"),
            Err(PatchSetError::SymposOutOfRange {
                line: 1,
                object: "vmlinux".into(),
                function: "show_val".into(),
                sympos: 4,
                count: 3,
            })
        );
        assert_eq!(
            resolve("show_val,3"),
            Err(PatchSetError::NotAFunction {
                line: 1,
                object: "vmlinux".into(),
                function: "show_val".into(),
                address: 0xffff_ffff_8200_0000,
            })
        );
        assert_eq!(
            resolve("no_such_fn"),
            Err(PatchSetError::UnknownFunction { line: 1, object: "vmlinux".into(), function: "no_such_fn".into() })
        );
        assert_eq!(
            resolve("cmdline_proc_show,2"),
            Err(PatchSetError::SymposOutOfRange {
                line: 1,
                object: "vmlinux".into(),
                function: "cmdline_proc_show".into(),
                sympos: 2,
                count: 1,
            })
        );
        assert_eq!(resolve("cmdline_proc_show,1"), Ok(1));
        assert_eq!(resolve("xfs:xfs_foo"), Err(PatchSetError::UnknownObject { line: 1, object: "xfs".into() }));
        assert_eq!(
            resolve("zero:empty_fn"),
            Err(PatchSetError::ZeroSize {
                line: 1,
                object: "zero".into(),
                function: "empty_fn".into(),
                address: 0x1000
            })
        );
        // The last data symbol has nothing after it: unknown size, but it is
        // rejected as data first.
        assert!(matches!(resolve("last_data"), Err(PatchSetError::NotAFunction { .. })));
        let message =
            PatchSetError::Ambiguous { line: 9, object: "vmlinux".into(), function: "f".into(), count: 3 }.to_string();
        assert!(message.contains("line 9") && message.contains("3 times"), "{message}");
    }

    #[test]
    fn resolve_new_checks_replacement_ranges() {
        let symbols = symbolizer();
        let old = specs("cmdline_proc_show\nshow_val,1");
        let new = match parse_funcs("livepatch_cmdline_proc_show\nlivepatch_show_val", "livepatch_sample") {
            Ok(specs) => specs,
            Err(error) => panic!("{error}"),
        };
        let set = match PatchSet::resolve_for(Direction::Unpatch, &old, Some(&new), &symbols) {
            Ok(set) => set,
            Err(error) => panic!("{error}"),
        };
        let first = &set.funcs()[0];
        assert_eq!((first.object.as_str(), first.function.as_str()), ("vmlinux", "cmdline_proc_show"));
        assert_eq!(
            (first.checked_object.as_str(), first.checked_function.as_str()),
            ("livepatch_sample", "livepatch_cmdline_proc_show")
        );
        assert_eq!((first.address, first.size), (0xffff_ffff_c000_0000, 0x40));
        // The old function is not checked when unpatching.
        assert_eq!(set.find(0xffff_ffff_8100_1000), None);
        assert_eq!(set.find(0xffff_ffff_c000_0010), Some(0));
        assert_eq!(set.find(0xffff_ffff_c000_0040), Some(1));

        // Patching without a previous patch checks the old functions.
        let patch = PatchSet::resolve_for(Direction::Patch, &old, None, &symbols);
        assert_eq!(patch.map(|set| set.find(0xffff_ffff_8100_1000)), Ok(Some(0)));
        assert_eq!(
            PatchSet::resolve_for(Direction::Unpatch, &old, None, &symbols).map(|s| s.len()),
            Err(PatchSetError::MissingNewFunctions)
        );
        assert_eq!(
            PatchSet::resolve_new(&old, &new[..1], &symbols).map(|s| s.len()),
            Err(PatchSetError::CountMismatch { old: 2, new: 1 })
        );
        // A typo in the old spec is caught even though its range is unused.
        let typo = specs("cmdline_proc_shw\nshow_val,1");
        assert!(matches!(PatchSet::resolve_new(&typo, &new, &symbols), Err(PatchSetError::UnknownFunction { .. })));
    }

    #[test]
    fn nop_func_checks_the_original_both_ways() {
        let symbols = symbolizer();
        let old = specs("meminfo_proc_show");
        let set = PatchSet::resolve_for(Direction::Unpatch, &old, Some(&old), &symbols);
        assert_eq!(set.map(|set| set.find(0xffff_ffff_8100_1300)), Ok(Some(0)));
    }

    #[test]
    fn find_uses_half_open_ranges_on_raw_addresses() {
        let set = PatchSet::from_ranges([("vmlinux", "f", 0x1000, 0x100)]);
        let set = match set {
            Ok(set) => set,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(set.find(0xfff), None);
        assert_eq!(set.find(0x1000), Some(0));
        assert_eq!(set.find(0x10ff), Some(0));
        assert_eq!(set.find(0x1100), None);
        assert_eq!(set.funcs()[0].line, 0);
    }

    #[test]
    fn find_all_with_overlapping_ranges() {
        let set = PatchSet::from_ranges([
            ("vmlinux", "big", 0x1000, 0x1000),
            ("vmlinux", "inner", 0x1100, 0x10),
            ("vmlinux", "alias_of_inner", 0x1100, 0x10),
            ("vmlinux", "separate", 0x3000, 0x10),
            ("vmlinux", "early", 0x800, 0x10),
        ]);
        let set = match set {
            Ok(set) => set,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(set.find_all(0x1105).collect::<Vec<_>>(), [2, 1, 0]);
        assert_eq!(set.find(0x1105), Some(0));
        assert_eq!(set.find_all(0x1110).collect::<Vec<_>>(), [0]);
        assert_eq!(set.find_all(0x2000).count(), 0);
        assert_eq!(set.find_all(0x3000).collect::<Vec<_>>(), [3]);
        assert_eq!(set.find_all(0x80f).collect::<Vec<_>>(), [4]);
        assert_eq!(set.find_all(0x7ff).count(), 0);
        assert_eq!(set.find(u64::MAX), None);

        let empty = PatchSet::default();
        assert!(empty.is_empty());
        assert_eq!(empty.find(0x1000), None);
    }

    #[test]
    fn from_ranges_rejects_zero_size() {
        let result = PatchSet::from_ranges([("vmlinux", "f", 0x1000, 0x10), ("vmlinux", "g", 0x2000, 0)]);
        assert_eq!(
            result.map(|set| set.len()),
            Err(PatchSetError::ZeroSizeRange { number: 2, object: "vmlinux".into(), function: "g".into() })
        );
    }

    #[test]
    fn range_at_the_top_of_the_address_space() {
        let set = PatchSet::from_ranges([("vmlinux", "top", u64::MAX - 0xf, 0x10)]);
        assert_eq!(set.map(|set| set.find(u64::MAX)), Ok(Some(0)));
    }
}
