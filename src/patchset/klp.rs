//! The kernel's own rules over a patched set, whatever named it (a
//! funcs.txt, a livepatch module, the kernel's memory): objects that are
//! not loaded are skipped, and the range checked for each function is the
//! one `klp_check_stack_func` checks, which depends on the direction of
//! the transition and on the patches stacked on that function.
//!
//! - patching: the original when no other patch replaces the function,
//!   else the replacement of the patch below on its func stack;
//! - unpatching: the patch's own replacement;
//! - no transition: the live version (the top of the func stack), which is
//!   what a patch loaded next, or the removal of the top patch, checks.
//!
//! A nop function of an atomic replace has `new_func == old_func`, so it
//! needs no rule of its own.

use std::collections::BTreeMap;

use super::{CheckedVersion, FuncSpec, PatchSet, PatchSetError, PatchedFunc, resolve_spec};
use crate::kernel::klp::{FuncRef, KlpState, KlpTarget};
use crate::symbols::Symbolizer;

/// What is known of the target kernel's livepatches.
#[derive(Clone, Debug)]
pub enum KlpKnowledge<'a> {
    /// No livepatch in this kernel (or not a kernel): nothing is stacked.
    None,
    /// The livepatch state read from the kernel's memory: patches, func
    /// stacks, the transition in progress.
    State(&'a KlpState),
    /// The state could not be read (`error` says where). Any function of
    /// these livepatch modules (name, text ranges) may be a live
    /// replacement, so all of their code is checked.
    Unreadable {
        /// Why the state could not be read.
        error: String,
        /// Each module that is or may be a livepatch module: its name and
        /// its text ranges as `(start, end)`, end exclusive.
        livepatch_modules: Vec<(String, Vec<(u64, u64)>)>,
    },
}

/// What the user says of the set beyond its functions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolveOptions {
    /// The patch that replaces these functions is being removed.
    pub unpatch: bool,
    /// The set is an atomic-replace patch (`klp_patch.replace`).
    pub replace: bool,
}

/// A patched set for a kernel, with what the user should be told about it:
/// skipped objects, and which version of each function was checked where
/// that is not the original.
#[derive(Clone, Debug, Default)]
pub struct KernelSet {
    /// The functions and the ranges checked for them.
    pub set: PatchSet,
    /// One sentence each, for the user: skipped objects, functions added
    /// from the kernel, versions checked other than the original.
    pub notes: Vec<String>,
}

fn skipped_note(object: &str, functions: &[String], why: &str) -> String {
    format!(
        "object {object} is not loaded{why}: its {} function{} ({}) skipped, as livepatch does",
        functions.len(),
        if functions.len() == 1 { "" } else { "s" },
        functions.join(", ")
    )
}

/// `name` or `name+0x10`, and its object, for a checked address.
fn name_at(symbols: &Symbolizer, addr: u64) -> (String, String) {
    match symbols.lookup(addr) {
        Some(s) if s.offset == 0 => (s.object.to_string(), s.name.to_string()),
        Some(s) => (s.object.to_string(), format!("{}+{:#x}", s.name, s.offset)),
        None => ("?".into(), format!("{addr:#x}")),
    }
}

/// The size to check at `addr`: the kernel's, or when the kernel has 0
/// (it would check nothing) the symbol's, so the check is never narrower.
fn size_at(symbols: &Symbolizer, addr: u64, size: u64) -> u64 {
    if size > 0 {
        return size;
    }
    symbols.lookup(addr).filter(|s| s.offset == 0).map_or(1, |s| s.size.max(1))
}

/// The range checked for function `r`, and its version.
fn checked_range(state: &KlpState, r: FuncRef, direction: KlpTarget) -> Option<(u64, u64, CheckedVersion)> {
    let f = state.func(r)?;
    match direction {
        KlpTarget::Unpatched => {
            let module = state.patch(r)?.module.clone();
            Some((f.new_func, f.new_size, CheckedVersion::Replacement { module }))
        }
        KlpTarget::Patched => match state.below(r) {
            Some(b) => {
                let below = state.func(b)?;
                let module = state.patch(b)?.module.clone();
                Some((below.new_func, below.new_size, CheckedVersion::PreviousPatch { module }))
            }
            None => Some((f.old_func, f.old_size, CheckedVersion::Original)),
        },
    }
}

fn patched_func(
    symbols: &Symbolizer,
    spec: (&str, &str, u32, usize),
    (address, size, version): (u64, u64, CheckedVersion),
) -> PatchedFunc {
    let (object, function, sympos, line) = spec;
    let size = size_at(symbols, address, size);
    let (checked_object, checked_function) = match version {
        CheckedVersion::Original => (object.to_owned(), function.to_owned()),
        _ => name_at(symbols, address),
    };
    PatchedFunc {
        object: object.to_owned(),
        function: function.to_owned(),
        sympos,
        line,
        address,
        size,
        checked_object,
        checked_function,
        version,
    }
}

fn version_note(f: &PatchedFunc) -> Option<String> {
    match &f.version {
        CheckedVersion::Original | CheckedVersion::AnyOfModule { .. } => None,
        CheckedVersion::PreviousPatch { module } => Some(format!(
            "{}:{}: an earlier livepatch ({module}) replaces it; its replacement {} is checked, as the kernel does",
            f.object, f.function, f.checked_function
        )),
        CheckedVersion::Replacement { module } => Some(format!(
            "{}:{}: being unpatched; the replacement {} of {module} is checked, as the kernel does",
            f.object, f.function, f.checked_function
        )),
    }
}

/// The set the kernel checks for the patch in transition, from its memory.
/// None when no transition is in progress.
pub fn from_transition(state: &KlpState, symbols: &Symbolizer) -> Option<KernelSet> {
    let t = state.transition?;
    let patch = state.patches.get(t.patch)?;
    let mut funcs = Vec::new();
    let mut notes = Vec::new();
    let mut ordinal = 0;
    for (o, obj) in patch.objects.iter().enumerate() {
        if !obj.patched {
            // klp_check_stack skips objects that are not patched: not loaded.
            let names: Vec<String> = obj.funcs.iter().map(|f| f.old_name.clone()).collect();
            notes.push(skipped_note(obj.object_name(), &names, ""));
            continue;
        }
        for (i, f) in obj.funcs.iter().enumerate() {
            ordinal += 1;
            let r = FuncRef { patch: t.patch, object: o, func: i };
            let Some(range) = checked_range(state, r, t.target) else { continue };
            let sympos = u32::try_from(f.old_sympos).unwrap_or(u32::MAX);
            let pf = patched_func(symbols, (obj.object_name(), &f.old_name, sympos, ordinal), range);
            notes.extend(version_note(&pf));
            funcs.push(pf);
        }
    }
    Some(KernelSet { set: PatchSet::from_funcs(funcs), notes })
}

/// Resolves `specs` (funcs.txt lines, a livepatch module's functions) for
/// a kernel, as livepatch would: an object that is not loaded is skipped
/// with a note, and each function is checked at the version the kernel
/// checks (see the module doc).
///
/// During a transition the kernel checks every function of the patch in
/// transition, so those the specs leave out (an atomic replace's nops, a
/// short funcs.txt) are added from its memory, with a note. With no
/// transition, `replace` adds what an atomic replace would: a nop for each
/// function a live patch replaces and the specs do not name.
pub fn resolve_in_kernel(
    specs: &[FuncSpec],
    symbols: &Symbolizer,
    klp: &KlpKnowledge<'_>,
    options: ResolveOptions,
) -> Result<KernelSet, PatchSetError> {
    let ResolveOptions { unpatch, replace } = options;
    let mut skipped: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut funcs = Vec::new();
    let mut notes = Vec::new();
    let transition = match klp {
        KlpKnowledge::State(s) => s.transition,
        _ => None,
    };
    if let (true, Some(t), KlpKnowledge::State(s)) = (unpatch, transition, klp)
        && t.target == KlpTarget::Patched
    {
        let module = s.transition_patch().map_or("?", |p| p.module.as_str());
        return Err(PatchSetError::DirectionConflict { module: module.to_owned() });
    }
    let mut covered = Vec::new();
    let mut resolved_old = Vec::with_capacity(specs.len());
    for spec in specs {
        if spec.object != "vmlinux" && symbols.table(&spec.object).is_none() {
            skipped.entry(&spec.object).or_default().push(spec.function.clone());
            continue;
        }
        let (address, size) = resolve_spec(spec, symbols)?;
        resolved_old.push(address);
        let key = (spec.object.as_str(), spec.function.as_str(), spec.sympos, spec.line);
        let range = match klp {
            KlpKnowledge::State(state) => {
                let in_transition = transition.and_then(|t| {
                    state
                        .funcs()
                        .find(|(r, f)| {
                            r.patch == t.patch && state.object(*r).is_some_and(|o| o.patched) && f.old_func == address
                        })
                        .map(|(r, _)| (r, t.target))
                });
                match (in_transition, state.top(address)) {
                    (Some((r, target)), _) => {
                        covered.push(r);
                        checked_range(state, r, target)
                    }
                    // The live version: what the next patch (or the
                    // removal of the top one) is checked against.
                    (None, Some(top)) => {
                        let f = state.func(top);
                        let module = state.patch(top).map(|p| p.module.clone()).unwrap_or_default();
                        f.map(|f| {
                            let version = if unpatch {
                                CheckedVersion::Replacement { module }
                            } else {
                                CheckedVersion::PreviousPatch { module }
                            };
                            (f.new_func, f.new_size, version)
                        })
                    }
                    (None, None) if unpatch => {
                        return Err(PatchSetError::NotPatched {
                            line: spec.line,
                            object: spec.object.clone(),
                            function: spec.function.clone(),
                        });
                    }
                    (None, None) => None,
                }
            }
            KlpKnowledge::None if unpatch => return Err(PatchSetError::MissingNewFunctions),
            _ => None,
        };
        let pf = patched_func(symbols, key, range.unwrap_or((address, size, CheckedVersion::Original)));
        notes.extend(version_note(&pf));
        funcs.push(pf);
    }
    for (object, names) in &skipped {
        notes.push(skipped_note(object, names, " in the target"));
    }
    if let (Some(t), KlpKnowledge::State(state)) = (transition, klp)
        && let Some(patch) = state.patches.get(t.patch)
    {
        let mut added = Vec::new();
        for (r, f) in state.funcs().filter(|(r, _)| {
            // klp_check_stack: every function of every patched object.
            r.patch == t.patch && state.object(*r).is_some_and(|o| o.patched) && !covered.contains(r)
        }) {
            let (Some(obj), Some(range)) = (state.object(r), checked_range(state, r, t.target)) else { continue };
            let sympos = u32::try_from(f.old_sympos).unwrap_or(u32::MAX);
            let pf = patched_func(symbols, (obj.object_name(), &f.old_name, sympos, 0), range);
            added.push(format!("{}:{}{}", pf.object, pf.function, if f.nop { " (nop)" } else { "" }));
            funcs.push(pf);
        }
        if !added.is_empty() {
            notes.push(format!(
                "the patch in transition ({}) also patches {} not in the set, checked as the kernel does: {}",
                patch.module,
                added.len(),
                added.join(", ")
            ));
        }
    } else if let (true, KlpKnowledge::State(state)) = (replace, klp) {
        // An atomic replace adds a nop for each live function it does not
        // name: the task must leave that patch's replacement too.
        let mut added = Vec::new();
        for (r, f) in state.funcs().filter(|(r, f)| state.is_top(*r) && !resolved_old.contains(&f.old_func)) {
            let (Some(obj), Some(p)) = (state.object(r), state.patch(r)) else { continue };
            let version = CheckedVersion::PreviousPatch { module: p.module.clone() };
            let pf = patched_func(symbols, (obj.object_name(), &f.old_name, 0, 0), (f.new_func, f.new_size, version));
            added.push(format!("{}:{}", pf.object, pf.function));
            funcs.push(pf);
        }
        if !added.is_empty() {
            notes.push(format!(
                "atomic replace: nop functions for {} function(s) live patches replace: {}",
                added.len(),
                added.join(", ")
            ));
        }
    }
    if let KlpKnowledge::Unreadable { error, livepatch_modules } = klp {
        notes.push(format!(
            "cannot read the kernel's livepatch state ({error}): an earlier livepatch may replace these functions, \
             so every function of the loaded livepatch modules is checked too"
        ));
        for (module, ranges) in livepatch_modules {
            for &(start, end) in ranges.iter().filter(|(s, e)| e > s) {
                funcs.push(PatchedFunc {
                    object: module.clone(),
                    function: format!("any function of livepatch module {module}"),
                    sympos: 0,
                    line: 0,
                    address: start,
                    size: end - start,
                    checked_object: module.clone(),
                    checked_function: "*".into(),
                    version: CheckedVersion::AnyOfModule { module: module.clone() },
                });
            }
        }
    }
    Ok(KernelSet { set: PatchSet::from_funcs(funcs), notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::klp::{KlpFunc, KlpObject, KlpPatch, KlpTransition};
    use crate::patchset::parse_funcs;
    use crate::symbols::symbols_from_list;

    const A: u64 = 0xffff_ffff_c000_1000;
    const B: u64 = 0xffff_ffff_c000_1100;
    const C: u64 = 0xffff_ffff_c000_1200;
    const CMDLINE: u64 = 0xffff_ffff_8100_0000;
    const LP1_A: u64 = 0xffff_ffff_c001_0000;
    const LP1_B: u64 = 0xffff_ffff_c001_0100;
    const LP2_A: u64 = 0xffff_ffff_c002_0000;
    const LP2_C: u64 = 0xffff_ffff_c002_0100;

    fn symbols() -> Symbolizer {
        let mut s = Symbolizer::new();
        s.add(symbols_from_list("vmlinux", [("cmdline_proc_show", CMDLINE, 0x80)]));
        s.add(symbols_from_list(
            "park",
            [("park_here_a", A, 0x40), ("park_here_b", B, 0x40), ("park_here_c", C, 0x40)],
        ));
        s.add(symbols_from_list(
            "lp1",
            [("livepatch_park_here_a", LP1_A, 0x30), ("livepatch_park_here_b", LP1_B, 0x30)],
        ));
        s.add(symbols_from_list(
            "lp2",
            [("livepatch_park_here_a", LP2_A, 0x20), ("livepatch_park_here_c", LP2_C, 0x20)],
        ));
        s
    }

    /// A function; `node` names its stack_node, `next`/`prev` its links
    /// (a head is any address no function uses).
    fn func(name: &str, old: u64, new: u64, node: u64, next: u64, prev: u64) -> KlpFunc {
        KlpFunc {
            addr: node.wrapping_add(0x1000),
            old_name: name.into(),
            old_sympos: 0,
            old_func: old,
            old_size: 0x40,
            new_func: new,
            new_size: if new == old { 0x40 } else { 0x20 },
            nop: new == old,
            patched: true,
            transition: false,
            stack_node: node,
            stack_next: next,
            stack_prev: prev,
        }
    }

    fn object(name: Option<&str>, patched: bool, funcs: Vec<KlpFunc>) -> KlpObject {
        KlpObject { addr: 0, name: name.map(Into::into), patched, dynamic: false, funcs }
    }

    fn patch(module: &str, replace: bool, objects: Vec<KlpObject>) -> KlpPatch {
        KlpPatch { addr: 0, module: module.into(), enabled: true, replace, objects }
    }

    const HEAD_A: u64 = 0xa0;
    const HEAD_B: u64 = 0xb0;
    const HEAD_C: u64 = 0xc0;

    /// lp1 replaces a and b; lp2 (in transition, `target`) replaces a
    /// again, c, and a function of a module that is not loaded.
    fn stacked(target: KlpTarget) -> KlpState {
        let lp1 = patch(
            "lp1",
            false,
            vec![object(
                Some("park"),
                true,
                vec![
                    func("park_here_a", A, LP1_A, 0x1a, HEAD_A, 0x2a),
                    func("park_here_b", B, LP1_B, 0x1b, HEAD_B, HEAD_B),
                ],
            )],
        );
        let lp2 = patch(
            "lp2",
            false,
            vec![
                object(
                    Some("park"),
                    true,
                    vec![
                        func("park_here_a", A, LP2_A, 0x2a, 0x1a, HEAD_A),
                        func("park_here_c", C, LP2_C, 0x2c, HEAD_C, HEAD_C),
                    ],
                ),
                object(Some("absent"), false, vec![KlpFunc { patched: false, ..func("absent_fn", 0, 0, 0x2f, 0, 0) }]),
            ],
        );
        KlpState { patches: vec![lp1, lp2], transition: Some(KlpTransition { patch: 1, target }) }
    }

    fn checked(ks: &KernelSet) -> Vec<(String, u64, &'static str)> {
        ks.set.funcs().iter().map(|f| (f.function.clone(), f.address, f.version.name())).collect()
    }

    #[test]
    fn memory_patching_checks_the_previous_patch_or_the_original() {
        let state = stacked(KlpTarget::Patched);
        let ks = from_transition(&state, &symbols()).unwrap();
        assert_eq!(
            checked(&ks),
            [("park_here_a".into(), LP1_A, "previous patch"), ("park_here_c".into(), C, "original")]
        );
        let a = &ks.set.funcs()[0];
        assert_eq!(
            (a.checked_object.as_str(), a.checked_function.as_str(), a.size),
            ("lp1", "livepatch_park_here_a", 0x20)
        );
        assert!(
            ks.notes.iter().any(|n| n.contains("object absent is not loaded") && n.contains("absent_fn")),
            "{:?}",
            ks.notes
        );
        // A task in lp1's replacement is caught; one in the original a is not
        // (no task still runs it: lp1 switched everyone).
        assert_eq!(ks.set.find(LP1_A + 0x10), Some(0));
        assert_eq!(ks.set.find(A + 0x10), None);
    }

    #[test]
    fn memory_unpatching_checks_the_replacement() {
        let state = stacked(KlpTarget::Unpatched);
        let ks = from_transition(&state, &symbols()).unwrap();
        assert_eq!(
            checked(&ks),
            [("park_here_a".into(), LP2_A, "replacement"), ("park_here_c".into(), LP2_C, "replacement")]
        );
    }

    #[test]
    fn atomic_replace_nop_checks_the_replaced_patch() {
        // lp3 replaces everything: a nop for a (new == old) over lp1's a.
        let lp1 = patch(
            "lp1",
            false,
            vec![object(Some("park"), true, vec![func("park_here_a", A, LP1_A, 0x1a, HEAD_A, 0x3a)])],
        );
        let lp3 =
            patch("lp3", true, vec![object(Some("park"), true, vec![func("park_here_a", A, A, 0x3a, 0x1a, HEAD_A)])]);
        let state = KlpState {
            patches: vec![lp1, lp3],
            transition: Some(KlpTransition { patch: 1, target: KlpTarget::Patched }),
        };
        assert_eq!(
            checked(&from_transition(&state, &symbols()).unwrap()),
            [("park_here_a".into(), LP1_A, "previous patch")]
        );
        // Reverting the replace: the nop's "replacement" is the original.
        let state = KlpState { transition: Some(KlpTransition { patch: 1, target: KlpTarget::Unpatched }), ..state };
        assert_eq!(checked(&from_transition(&state, &symbols()).unwrap()), [("park_here_a".into(), A, "replacement")]);
    }

    #[test]
    fn no_transition_is_none() {
        let state = KlpState { transition: None, ..stacked(KlpTarget::Patched) };
        assert!(from_transition(&state, &symbols()).is_none());
    }

    const NO: ResolveOptions = ResolveOptions { unpatch: false, replace: false };
    const UNPATCH: ResolveOptions = ResolveOptions { unpatch: true, replace: false };

    fn specs(text: &str) -> Vec<FuncSpec> {
        parse_funcs(text, "vmlinux").unwrap()
    }

    #[test]
    fn a_written_set_gets_the_kernels_ranges() {
        let state = stacked(KlpTarget::Patched);
        let s = symbols();
        let ks = resolve_in_kernel(
            &specs("park:park_here_a\npark:park_here_c\nabsent:absent_fn\nabsent:other\ncmdline_proc_show"),
            &s,
            &KlpKnowledge::State(&state),
            NO,
        )
        .unwrap();
        assert_eq!(
            checked(&ks),
            [
                ("park_here_a".into(), LP1_A, "previous patch"),
                ("park_here_c".into(), C, "original"),
                ("cmdline_proc_show".into(), CMDLINE, "original"),
            ]
        );
        assert!(
            ks.notes.iter().any(|n| n.contains("an earlier livepatch (lp1)") && n.contains("livepatch_park_here_a"))
        );
        // One line per skipped object.
        let skipped: Vec<&String> = ks.notes.iter().filter(|n| n.contains("not loaded")).collect();
        assert_eq!(skipped.len(), 1, "{:?}", ks.notes);
        assert!(skipped[0].contains("2 functions (absent_fn, other)"));
        // The transition patch's functions the set leaves out are named.
        let ks = resolve_in_kernel(&specs("park:park_here_a"), &s, &KlpKnowledge::State(&state), NO).unwrap();
        assert_eq!(checked(&ks)[1], ("park_here_c".into(), C, "original"));
        assert!(
            ks.notes
                .iter()
                .any(|n| n.contains("also patches 1 not in the set, checked as the kernel does: park:park_here_c")),
            "{:?}",
            ks.notes
        );
    }

    #[test]
    fn a_written_set_outside_the_transition_checks_the_live_version() {
        // b is not in lp2; lp1's replacement is what runs. lp2's own
        // functions are what the kernel checks: added.
        let state = stacked(KlpTarget::Patched);
        let ks = resolve_in_kernel(&specs("park:park_here_b"), &symbols(), &KlpKnowledge::State(&state), NO).unwrap();
        assert_eq!(
            checked(&ks),
            [
                ("park_here_b".into(), LP1_B, "previous patch"),
                ("park_here_a".into(), LP1_A, "previous patch"),
                ("park_here_c".into(), C, "original"),
            ]
        );
        // No transition at all: the top of the stack (lp2's a).
        let idle = KlpState { transition: None, ..stacked(KlpTarget::Patched) };
        let ks = resolve_in_kernel(&specs("park:park_here_a"), &symbols(), &KlpKnowledge::State(&idle), NO).unwrap();
        assert_eq!(checked(&ks), [("park_here_a".into(), LP2_A, "previous patch")]);
        let ks =
            resolve_in_kernel(&specs("park:park_here_a"), &symbols(), &KlpKnowledge::State(&idle), UNPATCH).unwrap();
        assert_eq!(checked(&ks), [("park_here_a".into(), LP2_A, "replacement")]);
    }

    #[test]
    fn unpatch_must_agree_with_the_kernel() {
        let state = stacked(KlpTarget::Patched);
        let e = resolve_in_kernel(&specs("park:park_here_a"), &symbols(), &KlpKnowledge::State(&state), UNPATCH);
        assert!(matches!(e, Err(PatchSetError::DirectionConflict { ref module }) if module == "lp2"));
        let idle = KlpState { transition: None, ..stacked(KlpTarget::Patched) };
        let e = resolve_in_kernel(&specs("cmdline_proc_show"), &symbols(), &KlpKnowledge::State(&idle), UNPATCH);
        assert!(matches!(e, Err(PatchSetError::NotPatched { line: 1, .. })), "{e:?}");
        let e = resolve_in_kernel(&specs("cmdline_proc_show"), &symbols(), &KlpKnowledge::None, UNPATCH);
        assert!(matches!(e, Err(PatchSetError::MissingNewFunctions)));
        // Unpatching in the kernel: the set's functions are checked at lp2's code.
        let state = stacked(KlpTarget::Unpatched);
        for unpatch in [false, true] {
            let ks = resolve_in_kernel(
                &specs("park:park_here_c"),
                &symbols(),
                &KlpKnowledge::State(&state),
                ResolveOptions { unpatch, replace: false },
            )
            .unwrap();
            assert_eq!(
                checked(&ks),
                [("park_here_c".into(), LP2_C, "replacement"), ("park_here_a".into(), LP2_A, "replacement")]
            );
        }
    }

    #[test]
    fn atomic_replace_set_gets_nops_for_live_functions() {
        // No transition; lp1 and lp2 live. A replace patch of c alone
        // leaves a (top: lp2) and b (top: lp1) as nops.
        let idle = KlpState { transition: None, ..stacked(KlpTarget::Patched) };
        let options = ResolveOptions { unpatch: false, replace: true };
        let ks =
            resolve_in_kernel(&specs("park:park_here_c"), &symbols(), &KlpKnowledge::State(&idle), options).unwrap();
        let mut got = checked(&ks);
        got.sort();
        assert_eq!(
            got,
            [
                ("park_here_a".into(), LP2_A, "previous patch"),
                ("park_here_b".into(), LP1_B, "previous patch"),
                ("park_here_c".into(), LP2_C, "previous patch"),
            ]
        );
        assert!(ks.notes.iter().any(|n| n.contains("atomic replace")), "{:?}", ks.notes);
        // Without replace: c alone.
        let ks = resolve_in_kernel(&specs("park:park_here_c"), &symbols(), &KlpKnowledge::State(&idle), NO).unwrap();
        assert_eq!(ks.set.len(), 1);
    }

    #[test]
    fn unreadable_state_checks_every_livepatch_module() {
        let knowledge = KlpKnowledge::Unreadable {
            error: "memory at 0x1000: page not in dump".into(),
            livepatch_modules: vec![("lp1".into(), vec![(LP1_A, LP1_A + 0x1000)])],
        };
        let ks = resolve_in_kernel(&specs("park:park_here_a"), &symbols(), &knowledge, NO).unwrap();
        assert_eq!(checked(&ks)[0], ("park_here_a".into(), A, "original"));
        assert_eq!(ks.set.find(LP1_B + 4).map(|i| ks.set.funcs()[i].version.name()), Some("livepatch module"));
        assert!(ks.notes.iter().any(|n| n.contains("page not in dump")));
    }

    #[test]
    fn no_livepatch_kernel_checks_originals() {
        let ks =
            resolve_in_kernel(&specs("park:park_here_a\nnot_loaded:f"), &symbols(), &KlpKnowledge::None, NO).unwrap();
        assert_eq!(checked(&ks), [("park_here_a".into(), A, "original")]);
        assert_eq!(ks.notes.len(), 1);
        // A typo in a loaded object is still an error.
        let e = resolve_in_kernel(&specs("park:park_here_z"), &symbols(), &KlpKnowledge::None, NO);
        assert!(matches!(e, Err(PatchSetError::UnknownFunction { .. })));
    }
}
