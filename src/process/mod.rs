//! Userspace processes seen from outside: a live one stopped with ptrace
//! ([`ptrace`]) or a core file ([`core`]). Both give the same snapshot: the
//! threads with their full registers, the mappings, the auxiliary vector,
//! and a [`Memory`] for the address space; [`modules`] turns the mappings
//! into the ELF files an unwinder and the symbolizer need.
//!
//! The walk itself is passed in ([`check_threads`] takes it as a closure),
//! so this layer knows nothing about how a stack is unwound.

pub mod core;
pub mod maps;
pub mod modules;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod ptrace;

use crate::arch::x86_64::{Reg, Regs};
use crate::cfi::CfiCache;
use crate::memory::Memory;
use crate::patchset::PatchSet;
use crate::symbols::Symbolizer;
use crate::symbols::inline::InlineResolver;
use crate::verdict::{InlineFrames, PatchHit, Verdict, Walked, judge};
use crate::walk::{
    Frame, Reliability, StackBounds, StackKind, StackRange, UserModules, WalkConfig, WalkStart, walk_cfi,
};

pub use maps::{Mapping, MappingKind, Perms, parse_maps, stack_range};
pub use modules::{FileAccess, ModuleFile};

/// `AT_PHDR`: where the executable's program headers are mapped.
pub const AT_PHDR: u64 = 3;
/// `AT_ENTRY`: the executable's entry point (runtime address).
pub const AT_ENTRY: u64 = 9;
/// `AT_SYSINFO_EHDR`: the vdso's ELF header.
pub const AT_SYSINFO_EHDR: u64 = 33;

/// One thread as it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    /// Thread ID.
    pub tid: i32,
    /// Thread group ID: the process's pid.
    pub tgid: i32,
    /// The thread's name (`/proc/PID/task/TID/comm`); for a core, the
    /// process's (`pr_fname`).
    pub comm: String,
    /// The state letter `ps` showed before lpstack stopped the thread
    /// (`S`, `R`, `D`, `T`...), or the core's `pr_sname`; `?` unknown.
    pub state: char,
    /// All general registers, rip and cs. None when the thread could not be
    /// stopped (then its stack is not read: verdict Running).
    pub regs: Option<Regs>,
}

/// The auxiliary vector: `(type, value)` pairs up to `AT_NULL`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auxv(pub Vec<(u64, u64)>);

impl Auxv {
    /// Decodes native (little-endian, 64-bit) `auxv` bytes: /proc/PID/auxv
    /// or a core's NT_AUXV. Stops at AT_NULL or the end.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut v = Vec::new();
        for pair in bytes.chunks_exact(16) {
            let word = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&pair[i..i + 8]);
                u64::from_le_bytes(w)
            };
            let (key, value) = (word(0), word(8));
            if key == 0 {
                break;
            }
            v.push((key, value));
        }
        Auxv(v)
    }

    /// The value of the first entry of type `key` (an `AT_*` constant).
    pub fn get(&self, key: u64) -> Option<u64> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// What a process looked like: from a live process or a core file.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The process ID.
    pub pid: i32,
    /// The process name (the main thread's comm or the core's pr_fname).
    pub comm: String,
    /// The main executable's path, when known.
    pub exe: Option<String>,
    /// Every thread found.
    pub threads: Vec<ThreadInfo>,
    /// Sorted by address.
    pub maps: Vec<Mapping>,
    /// The process's auxiliary vector.
    pub auxv: Auxv,
    /// Things the user should know (threads that exited mid-check, files
    /// that could not be opened...).
    pub notes: Vec<String>,
}

/// One thread's outcome (the userspace counterpart of the kernel's
/// `TaskReport`).
#[derive(Clone, Debug)]
pub struct ThreadReport<'set> {
    /// The thread as it was found.
    pub thread: ThreadInfo,
    /// The frames the walk produced, innermost first; empty when not walked.
    pub frames: Vec<Frame>,
    /// None when the thread was not walked (it could not be stopped).
    pub reliability: Option<Reliability>,
    /// The patched functions found on the stack.
    pub hits: Vec<PatchHit>,
    /// Whether the thread may switch to the patched code now.
    pub verdict: Verdict<'set>,
}

/// The stacks a thread may use: the stack-like mapping holding its sp (the
/// main thread's `[stack]`, another thread's anonymous mapping). A thread
/// on a `sigaltstack` gets only that stack, so a walk that must go back to
/// the thread stack ends outside the known stacks: unreliable, as it should
/// be when in doubt.
pub fn thread_bounds(maps: &[Mapping], regs: &Regs) -> StackBounds {
    let mut b = StackBounds::new();
    if let Some((start, end)) = regs.get(Reg::Rsp).and_then(|sp| stack_range(maps, sp)) {
        b.push(StackRange { start, end, kind: StackKind::User });
    }
    b
}

/// Walks every thread with `walk` and judges it against `set`. Threads
/// without registers are `Running`, as the kernel treats a task it could
/// not stop.
pub fn check_threads<'set, M, W>(
    snapshot: &Snapshot,
    mem: &mut M,
    set: &'set PatchSet,
    config: &WalkConfig,
    inline: &mut dyn InlineFrames,
    mut walk: W,
) -> Vec<ThreadReport<'set>>
where
    M: Memory,
    W: FnMut(&mut M, &StackBounds, WalkStart, &WalkConfig, &mut Vec<Frame>) -> Reliability,
{
    let mut frames = Vec::with_capacity(config.max_frames);
    let mut out = Vec::with_capacity(snapshot.threads.len());
    for thread in &snapshot.threads {
        frames.clear();
        let mut hits = Vec::new();
        let reliability = thread.regs.as_ref().map(|regs| {
            let bounds = thread_bounds(&snapshot.maps, regs);
            walk(mem, &bounds, WalkStart::from_regs(*regs), config, &mut frames)
        });
        // Threads without registers could not be stopped: Running.
        let walked = Walked { frames: &frames, reliability: reliability.as_ref(), running: false };
        let verdict = judge(walked, set, Some(&mut *inline), &mut hits);
        out.push(ThreadReport { thread: thread.clone(), frames: frames.clone(), reliability, hits, verdict });
    }
    out
}

/// A process ready to be checked: its snapshot and its modules (files,
/// the unwinder's view with CFI, symbols).
pub struct Inspection {
    /// The latest snapshot of the process.
    pub snapshot: Snapshot,
    /// The ELF files mapped executable, with their bytes.
    pub files: Vec<ModuleFile>,
    /// The unwinder's view of `files`, with CFI.
    pub modules: UserModules,
    /// The symbols of every module, at runtime addresses.
    pub symbols: Symbolizer,
    /// The main executable's object name: the default object of funcs.txt
    /// lines (`park_a` means `parked:park_a` in process `parked`).
    pub main_object: String,
    /// The snapshot's notes, then what loading the modules found.
    pub notes: Vec<String>,
}

impl Inspection {
    /// Loads every module of `snapshot` (files through `access`, the vdso
    /// from `mem`) and compiles their CFI.
    pub fn new<M: Memory>(snapshot: Snapshot, access: &FileAccess, mem: &mut M) -> Self {
        let mut notes = snapshot.notes.clone();
        let files = modules::load_modules(&snapshot, access, mem, &mut notes);
        let main_object = modules::main_module(&snapshot, &files)
            .map(|m| m.name.clone())
            .or_else(|| snapshot.exe.as_deref().map(|e| e.rsplit('/').next().unwrap_or(e).to_string()))
            .unwrap_or_else(|| snapshot.comm.clone());
        let (modules, symbols) = modules::user_modules(&files, &mut notes);
        Inspection { snapshot, files, modules, symbols, main_object, notes }
    }

    /// Takes a newer snapshot of the same process (the one taken once it is
    /// stopped), keeping the loaded modules when the executable mappings
    /// and the auxiliary vector are unchanged, else loading them again.
    /// Returns whether the modules were kept.
    pub fn update<M: Memory>(&mut self, snapshot: Snapshot, access: &FileAccess, mem: &mut M) -> bool {
        let exec = |s: &Snapshot| -> Vec<Mapping> { s.maps.iter().filter(|m| m.perms.exec).cloned().collect() };
        if self.snapshot.pid == snapshot.pid
            && exec(&self.snapshot) == exec(&snapshot)
            && self.snapshot.auxv == snapshot.auxv
        {
            let mut notes = snapshot.notes.clone();
            notes.append(&mut self.notes);
            self.notes = notes;
            self.snapshot = snapshot;
            return true;
        }
        *self = Inspection::new(snapshot, access, mem);
        false
    }

    /// DWARF of the modules that hold patched functions: inlined copies can
    /// only be in the object the function belongs to. A module without
    /// DWARF is noted: its inlined copies cannot be seen.
    pub fn inline_resolver(&self, set: &PatchSet, notes: &mut Vec<String>) -> InlineResolver {
        let mut r = InlineResolver::new();
        for f in &self.files {
            if !set.funcs().iter().any(|p| p.object == f.name) {
                continue;
            }
            let dwarf = f.debug.as_deref().or(f.data.as_deref()).map(|b| &**b);
            match dwarf.map(|d| r.add(&f.name, f.start, f.end, f.bias, d)) {
                Some(Ok(())) => {}
                Some(Err(e)) => notes.push(format!("{}: inlined copies of patched functions not checked: {e}", f.name)),
                None => notes.push(format!("{}: file unreadable; inlined copies not checked", f.name)),
            }
        }
        r
    }

    /// Does `object`'s DWARF (its debug file, else the file itself) know
    /// `function` as inlined somewhere? False when the object is not
    /// loaded, unreadable or without DWARF: such a line cannot be checked.
    pub fn dwarf_inlines(&self, object: &str, function: &str) -> bool {
        self.files.iter().filter(|f| f.name == object).any(|f| {
            let dwarf = f.debug.as_deref().or(f.data.as_deref()).map(|b| &**b);
            dwarf.is_some_and(|d| crate::symbols::inline::dwarf_inlines(d, function).unwrap_or(false))
        })
    }

    /// Walks every thread with CFI and judges it against `set`, inlined
    /// copies included.
    pub fn check<'set, M: Memory>(
        &self,
        mem: &mut M,
        set: &'set PatchSet,
        config: &WalkConfig,
    ) -> Vec<ThreadReport<'set>> {
        self.check_with_notes(mem, set, config, &mut Vec::new())
    }

    /// As [`Inspection::check`], telling in `notes` what could not be
    /// checked (modules without DWARF for inlined copies).
    pub fn check_with_notes<'set, M: Memory>(
        &self,
        mem: &mut M,
        set: &'set PatchSet,
        config: &WalkConfig,
        notes: &mut Vec<String>,
    ) -> Vec<ThreadReport<'set>> {
        let mut cache = CfiCache::new();
        let mut inline = self.inline_resolver(set, notes);
        check_threads(&self.snapshot, mem, set, config, &mut inline, |mem, bounds, start, config, frames| {
            walk_cfi(&self.modules, mem, &mut cache, bounds, start, config, frames)
        })
    }

    /// Has the thread a frame in an object that holds a patched function?
    /// (The userspace reading of LEAVE_KERNEL: out of the patched objects.)
    pub fn in_patched_object(&self, report: &ThreadReport<'_>, set: &PatchSet) -> bool {
        report.frames.iter().any(|f| {
            self.modules
                .find(f.pc)
                .is_some_and(|m| set.funcs().iter().any(|p| p.object == m.name || p.checked_object == m.name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::walk::{CleanEnd, FrameKind};

    struct NoInline;
    impl InlineFrames for NoInline {
        fn inlined_at(&mut self, _pc: u64, _found: &mut dyn FnMut(&str, &str)) {}
    }

    #[test]
    fn auxv_stops_at_null() {
        let mut b = Vec::new();
        for (k, v) in [(AT_ENTRY, 0x1040u64), (AT_SYSINFO_EHDR, 0x7fff0000), (0, 0), (AT_PHDR, 1)] {
            b.extend_from_slice(&k.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[1, 2, 3]);
        let a = Auxv::parse(&b);
        assert_eq!(a.0.len(), 2);
        assert_eq!(a.get(AT_ENTRY), Some(0x1040));
        assert_eq!(a.get(AT_PHDR), None);
        assert_eq!(Auxv::parse(&[0; 7]).0, vec![]);
    }

    #[test]
    fn check_uses_the_stack_mapping_and_the_walk() {
        let maps = parse_maps("1000-2000 r-xp 0 08:01 3 /bin/x\n7000-9000 rw-p 0 00:00 0 [stack]\n").unwrap();
        let mut regs = Regs::new();
        regs.set(Reg::Rip, 0x1010);
        regs.set(Reg::Rsp, 0x8000);
        let snapshot = Snapshot {
            pid: 7,
            threads: vec![
                ThreadInfo { tid: 7, tgid: 7, comm: "x".into(), state: 'S', regs: Some(regs) },
                ThreadInfo { tid: 8, tgid: 7, comm: "x".into(), state: 'D', regs: None },
            ],
            maps,
            ..Snapshot::default()
        };
        let set = PatchSet::from_ranges([("x", "f", 0x1000, 0x20)]).unwrap();
        let bytes = [0u8; 16];
        let mut mem = SliceMemory::new(0, &bytes);
        let reports = check_threads(
            &snapshot,
            &mut mem,
            &set,
            &WalkConfig::default(),
            &mut NoInline,
            |_, bounds, start, _, frames| {
                assert_eq!(bounds.ranges(), &[StackRange { start: 0x7000, end: 0x9000, kind: StackKind::User }]);
                let pc = start.regs.get(Reg::Rip).unwrap_or(0);
                frames.push(Frame { pc, sp: 0x8000, kind: FrameKind::Start, kernel_regs: false, reliable: true });
                Reliability::Reliable(CleanEnd::EndOfStack)
            },
        );
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].verdict.name(), "blocked");
        assert_eq!(reports[0].hits.len(), 1);
        assert_eq!(reports[1].verdict, Verdict::Running);
        assert!(reports[1].reliability.is_none());
        // No stack mapping at sp: no bounds at all.
        regs.set(Reg::Rsp, 0x1500);
        assert!(thread_bounds(&snapshot.maps, &regs).ranges().is_empty());
    }
}
