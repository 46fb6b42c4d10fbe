//! Hostile and damaged dumps: truncated files, flipped header bytes,
//! missing pages, wrong symbols, a looping task list. None may panic, and
//! none may turn a task that is not switchable into a switchable one.

mod common;

use std::collections::BTreeMap;

use lpstack::dump::Dump;
use lpstack::kernel::check::CheckConfig;
use lpstack::kernel::image::{Kernel, KernelError, OpenOptions, SymbolSource};
use lpstack::kernel::tasks::TaskListError;
use lpstack::memory::{Memory, MemoryError, PhysMemory};
use lpstack::patchset::{PatchSet, parse_funcs};
use lpstack::verdict::Verdict;

const DIR: &str = "6.12.117+deb12-amd64";

fn dump_bytes() -> Vec<u8> {
    common::read(&format!("vmcore/{DIR}/vmcore.trimmed.kdump"))
}

/// pid -> verdict name, or None when the dump could not be checked.
fn verdicts<P: PhysMemory + Send>(phys: P, vi: &lpstack::dump::VmcoreInfo) -> Option<BTreeMap<i32, &'static str>> {
    let mut kernel = Kernel::open(phys, vi, OpenOptions::default()).ok()?;
    let set = PatchSet::resolve(&parse_funcs("lpstack_park:park_here_a\n", "vmlinux").ok()?, &kernel.symbols()).ok()?;
    let reports = kernel.check(&set, &CheckConfig::default(), |_, _| {}).map(|c| c.tasks).ok()?;
    Some(reports.iter().filter(|r| !r.task.idle).map(|r| (r.task.pid, r.verdict.name())).collect())
}

fn check_bytes(bytes: &[u8]) -> Option<BTreeMap<i32, &'static str>> {
    let dump = Dump::open(bytes).ok()?;
    let vi = dump.vmcoreinfo().cloned()?;
    verdicts(dump, &vi)
}

/// Switchable only where the intact dump says switchable.
fn never_falsely_safe(truth: &BTreeMap<i32, &'static str>, got: &BTreeMap<i32, &'static str>, what: &str) {
    for (pid, v) in got {
        if *v == "switchable" {
            assert_eq!(truth.get(pid), Some(&"switchable"), "{what}: pid {pid} became switchable");
        }
    }
}

#[test]
fn truncated_dumps_fail_or_stay_safe() {
    let bytes = dump_bytes();
    let truth = check_bytes(&bytes).unwrap();
    assert_eq!(truth.values().filter(|v| **v == "blocked").count(), 4);
    let len = bytes.len();
    for cut in [0, 7, 8, 463, 464, 4096, 4100, 8192, 12288, len / 3, len / 2, len - 4096, len - 1] {
        if let Some(got) = check_bytes(&bytes[..cut]) {
            never_falsely_safe(&truth, &got, &format!("cut at {cut}"));
        }
    }
}

#[test]
fn flipped_header_bytes_fail_or_stay_safe() {
    let bytes = dump_bytes();
    let truth = check_bytes(&bytes).unwrap();
    // The disk_dump_header, the sub-header and the first bitmap bytes.
    for at in (0..464).step_by(29).chain((4096..4200).step_by(13)).chain([8192, 8193, 12288]) {
        let mut b = bytes.clone();
        b[at] ^= 0xff;
        if let Some(got) = check_bytes(&b) {
            never_falsely_safe(&truth, &got, &format!("byte {at} flipped"));
        }
    }
}

/// Physical memory with holes and overrides, over a real dump.
struct Tampered<'a, 'd> {
    dump: &'a mut Dump<'d>,
    missing: Vec<(u64, u64)>,
    overrides: Vec<(u64, u64)>,
}

/// Fails a read that touches one of the `missing` ranges, as a dump
/// without those pages does.
fn not_in_dump(missing: &[(u64, u64)], paddr: u64, len: usize) -> Result<(), MemoryError> {
    let end = paddr + len as u64;
    match missing.iter().find(|&&(a, b)| paddr < b && end > a) {
        Some(&(a, _)) => Err(MemoryError::new(a.max(paddr), lpstack::memory::MemoryErrorKind::NotInDump)),
        None => Ok(()),
    }
}

impl PhysMemory for Tampered<'_, '_> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let end = paddr + buf.len() as u64;
        not_in_dump(&self.missing, paddr, buf.len())?;
        self.dump.read_phys(paddr, buf)?;
        for &(at, value) in &self.overrides {
            if at >= paddr && at + 8 <= end {
                let o = (at - paddr) as usize;
                buf[o..o + 8].copy_from_slice(&value.to_le_bytes());
            }
        }
        Ok(())
    }
}

#[test]
fn missing_stack_pages_make_blocked_tasks_unreliable_not_safe() {
    let bytes = dump_bytes();
    let mut dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    // Find the blocked tasks' stack pages (physical) with an intact pass.
    let mut stacks = Vec::new();
    {
        let mut kernel = Kernel::open(&mut dump, &vi, OpenOptions::default()).unwrap();
        let set = PatchSet::resolve(&parse_funcs("lpstack_park:park_here_a\n", "vmlinux").unwrap(), &kernel.symbols())
            .unwrap();
        let reports = kernel.check(&set, &CheckConfig::default(), |_, _| {}).unwrap().tasks;
        for r in reports.iter().filter(|r| matches!(r.verdict, Verdict::Blocked { .. })) {
            // The page holding the deepest frames' return addresses.
            let sp = r.frames.last().unwrap().sp;
            let pa = kernel.memory().translate(sp - 8).unwrap();
            stacks.push((r.task.pid, pa & !0xfff));
        }
    }
    assert_eq!(stacks.len(), 4);
    let missing: Vec<(u64, u64)> = stacks.iter().map(|&(_, p)| (p, p + 4096)).collect();
    let got = verdicts(Tampered { dump: &mut dump, missing, overrides: vec![] }, &vi).unwrap();
    for (pid, _) in &stacks {
        assert_eq!(got[pid], "unreliable", "pid {pid} with its stack page gone");
    }
}

#[test]
fn looping_task_list_is_a_named_error() {
    let bytes = dump_bytes();
    let mut dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    // Point the 10th process's tasks.next back at the 3rd: a loop that
    // never returns to init_task.
    let (at, target) = {
        let mut kernel = Kernel::open(&mut dump, &vi, OpenOptions::default()).unwrap();
        let tasks = kernel.tasks().unwrap().tasks;
        let off = kernel.layout().task.tasks.offset;
        let leaders: Vec<u64> = tasks.iter().filter(|t| t.pid == t.tgid && !t.idle).map(|t| t.addr).collect();
        let va = leaders[9] + off;
        (kernel.memory().translate(va).unwrap(), leaders[2] + off)
    };
    let mut kernel = Kernel::open(
        Tampered { dump: &mut dump, missing: vec![], overrides: vec![(at, target)] },
        &vi,
        OpenOptions::default(),
    )
    .unwrap();
    match kernel.tasks() {
        Err(TaskListError::Loop { addr }) => assert_eq!(addr, target),
        other => panic!("{:?}", other.map(|t| t.tasks.len())),
    }
}

#[test]
fn wrong_symbols_and_missing_vmcoreinfo_are_named_errors() {
    let bytes = dump_bytes();
    let dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let map61 = common::read_gz("orc/System.map-6.1.0-57-amd64.gz");
    match Kernel::open(
        dump,
        &vi,
        OpenOptions { symbols: SymbolSource::SystemMap(&map61), threads: 1, ..OpenOptions::default() },
    ) {
        Err(KernelError::SymbolMismatch { name, .. }) => assert!(["_stext", "init_uts_ns"].contains(&name)),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a 6.1 System.map accepted for a 6.12 dump"),
    }
    // The right System.map works and agrees with kallsyms.
    let dump = Dump::open(&bytes).unwrap();
    let map612 = common::read_gz("orc/System.map-6.12.117+deb12-amd64.gz");
    let k = Kernel::open(
        dump,
        &vi,
        OpenOptions { symbols: SymbolSource::SystemMap(&map612), threads: 1, ..OpenOptions::default() },
    )
    .unwrap();
    assert!(k.symbol("pipe_read").is_some());
    // VMCOREINFO without the kallsyms symbols (a pre-6.0 kernel) says so.
    let stripped = lpstack::dump::VmcoreInfo::parse(
        vi.text().lines().filter(|l| !l.contains("kallsyms")).collect::<Vec<_>>().join("\n").as_bytes(),
    )
    .unwrap();
    match Kernel::open(Dump::open(&bytes).unwrap(), &stripped, OpenOptions::default()) {
        Err(KernelError::MissingVmcoreinfo(what)) => assert!(what.contains("kallsyms")),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened without kallsyms"),
    }
}

#[test]
fn holes_in_the_task_list_fall_back_to_the_pid_idr() {
    // As in a makedumpfile -d 31 dump that lost some task_struct pages:
    // the task list cannot be followed, every thread is still found through
    // the pid IDR, and the lost ones are unreliable, never switchable.
    let bytes = dump_bytes();
    let mut dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let truth = verdicts(&mut dump, &vi).unwrap();
    let (holes, lost): (Vec<(u64, u64)>, Vec<i32>) = {
        let mut kernel = Kernel::open(&mut dump, &vi, OpenOptions::default()).unwrap();
        let tasks = kernel.tasks().unwrap().tasks;
        let off = kernel.layout().task.tasks.offset;
        // Three processes' task_struct pages, far apart in the list.
        let picked: Vec<_> = tasks.iter().filter(|t| t.pid == t.tgid && !t.idle).step_by(9).take(3).cloned().collect();
        picked
            .iter()
            .map(|t| {
                let pa = kernel.memory().translate(t.addr + off).unwrap() & !0xfff;
                ((pa, pa + 4096), t.pid)
            })
            .unzip()
    };
    let mut tampered = Tampered { dump: &mut dump, missing: holes, overrides: vec![] };
    let mut kernel = Kernel::open(&mut tampered, &vi, OpenOptions::default()).unwrap();
    let tasks = kernel.tasks().unwrap().tasks;
    assert!(kernel.warnings().iter().any(|w| w.contains("pid IDR")), "{:?}", kernel.warnings());
    let set =
        PatchSet::resolve(&parse_funcs("lpstack_park:park_here_a\n", "vmlinux").unwrap(), &kernel.symbols()).unwrap();
    let reports = kernel.check(&set, &CheckConfig::default(), |_, _| {}).unwrap().tasks;
    assert_eq!(tasks.len(), reports.len());
    let got: BTreeMap<i32, &'static str> =
        reports.iter().filter(|r| !r.task.idle).map(|r| (r.task.pid, r.verdict.name())).collect();
    assert_eq!(got.len(), truth.len(), "every task found");
    for pid in &lost {
        assert_eq!(got[pid], "unreliable", "pid {pid} lost its task_struct page");
    }
    never_falsely_safe(&truth, &got, "holes in the task list");
    for (pid, v) in &truth {
        if !lost.contains(pid) {
            assert_eq!(got.get(pid), Some(v), "pid {pid} unchanged");
        }
    }
}

/// What the listing goes past is named, and nothing it may hide is called
/// switchable: a struct pid whose page is gone (with the task list broken,
/// so that the pid IDR is walked) and a CPU whose rq->idle reads NULL.
#[test]
fn listing_gaps_are_named() {
    let bytes = dump_bytes();
    let mut dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let (missing, pid_addr, victim, idle_at) = {
        let mut kernel = Kernel::open(&mut dump, &vi, OpenOptions::default()).unwrap();
        let listing = kernel.tasks().unwrap();
        assert!(listing.gaps.is_empty(), "{:?}", listing.gaps);
        let tasks = listing.tasks;
        let off = kernel.layout().task.tasks.offset;
        let p = kernel.layout().pid_idr.unwrap();
        let leaders: Vec<_> = tasks.iter().filter(|t| t.pid == t.tgid && !t.idle).cloned().collect();
        // Two holes: more than the task list walk can bridge.
        let hole = |k: &mut Kernel<_>, t: &lpstack::kernel::tasks::TaskInfo| {
            let pa = k.memory().translate(t.addr + off).unwrap() & !0xfff;
            (pa, pa + 4096)
        };
        let holes = [hole(&mut kernel, &leaders[5]), hole(&mut kernel, &leaders[14])];
        // pid_links[PIDTYPE_PID].pprev points at its pid's tasks[0].first.
        let victim = leaders[20].clone();
        let pprev = kernel.memory().read_u64(victim.addr + p.task_pid_link.offset + 8).unwrap();
        let pid_addr = pprev - p.pid_first_task.offset;
        let pid_page = kernel.memory().translate(pprev).unwrap() & !0xfff;
        let rq = kernel.layout().rq.unwrap();
        let rq0 = kernel.per_cpu(kernel.symbol("runqueues").unwrap(), 0).unwrap();
        let idle_at = kernel.memory().translate(rq0 + rq.idle.offset).unwrap();
        (vec![holes[0], holes[1], (pid_page, pid_page + 4096)], pid_addr, victim, idle_at)
    };
    let mut tampered = Tampered { dump: &mut dump, missing, overrides: vec![(idle_at, 0)] };
    let mut kernel = Kernel::open(&mut tampered, &vi, OpenOptions::default()).unwrap();
    let set =
        PatchSet::resolve(&parse_funcs("lpstack_park:park_here_a\n", "vmlinux").unwrap(), kernel.symbols()).unwrap();
    let checked = kernel.check(&set, &CheckConfig::default(), |_, _| {}).unwrap();
    let reports = checked.tasks;
    let gaps: Vec<String> = checked.listing_gaps.iter().map(|g| g.to_string()).collect();
    assert!(kernel.warnings().iter().any(|w| w.contains("pid IDR")), "{:?}", kernel.warnings());
    assert!(gaps.iter().any(|g| g.contains(&format!("struct pid at {pid_addr:#x}"))), "{gaps:?}");
    assert!(gaps.iter().any(|g| g.contains("CPU 0: rq->idle")), "{gaps:?}");
    let placeholder = reports.iter().find(|r| r.task.addr == pid_addr).expect("the unreadable struct pid is a row");
    assert_eq!(placeholder.verdict.name(), "unreliable");
    for r in reports.iter().filter(|r| r.task.pid == victim.pid || r.task.addr == victim.addr) {
        assert_ne!(r.verdict.name(), "switchable", "the task behind the lost struct pid");
    }
    // Listing again starts afresh.
    drop(tampered);
    let mut kernel = Kernel::open(&mut dump, &vi, OpenOptions::default()).unwrap();
    assert!(kernel.tasks().unwrap().gaps.is_empty());
}

/// [`Tampered`] that owns its dump, so that a check on several threads can
/// open a second reader of it.
struct TamperedSplit<'d> {
    dump: Dump<'d>,
    missing: Vec<(u64, u64)>,
}

impl PhysMemory for TamperedSplit<'_> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        not_in_dump(&self.missing, paddr, buf.len())?;
        self.dump.read_phys(paddr, buf)
    }

    fn split(&self) -> Option<Self> {
        Some(TamperedSplit { dump: self.dump.split(), missing: self.missing.clone() })
    }
}

/// Checking on several threads (the listing hands tasks to workers as it
/// follows the lists) gives the single thread's reports, in its order,
/// also when the task list has a hole it bridges, and when it has holes
/// that send the listing to the pid IDR.
#[test]
fn holes_in_the_task_list_on_several_threads() {
    let bytes = dump_bytes();
    let dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let (one_hole, three_holes) = {
        let mut kernel = Kernel::open(dump.split(), &vi, OpenOptions::default()).unwrap();
        let tasks = kernel.tasks().unwrap().tasks;
        let off = kernel.layout().task.tasks.offset;
        let leaders: Vec<_> = tasks.iter().filter(|t| t.pid == t.tgid && !t.idle).cloned().collect();
        let mut page = |t: &lpstack::kernel::tasks::TaskInfo| {
            let pa = kernel.memory().translate(t.addr + off).unwrap() & !0xfff;
            (pa, pa + 4096)
        };
        let holes: Vec<_> = [&leaders[4], &leaders[13], &leaders[22]].into_iter().map(&mut page).collect();
        (holes[..1].to_vec(), holes)
    };
    for (what, missing, idr) in [("one hole", one_hole, false), ("three holes", three_holes, true)] {
        let run = |threads: usize| {
            let memory = TamperedSplit { dump: dump.split(), missing: missing.clone() };
            let mut kernel = Kernel::open(memory, &vi, OpenOptions::default()).unwrap();
            let set =
                PatchSet::resolve(&parse_funcs("lpstack_park:park_here_a\n", "vmlinux").unwrap(), kernel.symbols())
                    .unwrap();
            let config = CheckConfig { threads, ..CheckConfig::default() };
            let checked = kernel.check(&set, &config, |_, _| {}).unwrap();
            assert_eq!(kernel.warnings().iter().any(|w| w.contains("pid IDR")), idr, "{what}: {:?}", kernel.warnings());
            let rows: Vec<String> = checked
                .tasks
                .iter()
                .map(|r| format!("{:?} {:?} {:?} {}", r.task, r.frames, r.reliability, r.verdict.name()))
                .collect();
            (rows, checked.listing_gaps)
        };
        let (one, gaps) = run(1);
        assert!(one.iter().any(|r| r.contains("unreliable")), "{what}: a task is unreadable");
        for threads in [2, 3] {
            let (rows, got_gaps) = run(threads);
            assert_eq!(got_gaps, gaps, "{what}, {threads} threads");
            assert_eq!(rows.len(), one.len(), "{what}, {threads} threads");
            for (a, b) in rows.iter().zip(&one) {
                assert_eq!(a, b, "{what}, {threads} threads");
            }
        }
    }
}
