//! Tasks on a CPU are unwound from the CPU's registers across the per-CPU
//! IRQ stack back to their own stack, with the bounds read from the dump
//! (`pcpu_hot.hardirq_stack_ptr`, `cea_exception_stacks`, BTF sizes).
//!
//! The real case here: in the 6.12 kthread dump QEMU stopped CPU 0 while
//! the busy loop (`sh`, user mode) took a local-timer interrupt. Coming from
//! user mode the handler stays on the task stack
//! (`run_sysvec_on_irqstack_cond` switches only from kernel mode); the walk
//! must go through the interrupt entry to the user-mode registers. The
//! crossing itself is covered by `walk::tests::iret_frame_and_stack_switch`
//! on bytes.

mod common;

use lpstack::dump::Dump;
use lpstack::kernel::check::{CheckConfig, CheckMode};
use lpstack::kernel::image::{CpuRegs, Kernel, OpenOptions};
use lpstack::patchset::PatchSet;
use lpstack::walk::{CleanEnd, FrameKind, Reliability, StackKind};

#[test]
fn a_timer_interrupt_on_the_irq_stack_is_walked_to_user_mode() {
    let dir = "6.12.117+deb12-amd64-kthread";
    let bytes = common::read(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
    let dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let cpus: Vec<CpuRegs> =
        dump.cpus().iter().filter_map(|c| c.index_hint.map(|cpu| CpuRegs { cpu, regs: c.regs })).collect();
    let mut kernel = Kernel::open(dump, &vi, OpenOptions::default()).unwrap();
    assert!(kernel.warnings().is_empty(), "{:?}", kernel.warnings());
    // Every CPU: one IRQ stack of the BTF's size and the exception stacks.
    for (cpu, stacks) in kernel.cpu_stacks().iter().enumerate() {
        let irq: Vec<_> = stacks.iter().filter(|r| r.kind == StackKind::Irq).collect();
        assert_eq!(irq.len(), 1, "CPU {cpu}");
        assert_eq!(irq[0].end - irq[0].start, 16 << 10, "CPU {cpu}: IRQ_STACK_SIZE");
        assert!(stacks.iter().filter(|r| r.kind == StackKind::Exception).count() >= 4, "CPU {cpu}: {stacks:x?}");
    }
    let empty = PatchSet::default();
    let reports = kernel
        .check(&empty, &CheckConfig { mode: CheckMode::Dump { cpus: &cpus }, ..CheckConfig::default() }, |_, _| {})
        .unwrap()
        .tasks;
    let r = reports.iter().find(|r| r.task.on_cpu && r.task.comm == "sh").expect("the busy loop on a CPU");
    assert_eq!(r.reliability, Some(Reliability::Reliable(CleanEnd::UserRegs)), "{:x?}", r.frames);
    let name = |pc| kernel.symbols().lookup(pc).map(|s| s.name.to_string()).unwrap_or_default();
    let names: Vec<String> = r.frames.iter().map(|f| name(f.pc)).collect();
    assert_eq!(names.first().map(String::as_str), Some("lapic_next_event"), "{names:?}");
    assert!(names.iter().any(|n| n == "hrtimer_interrupt"), "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("asm_sysvec_apic_timer_interrupt"), "{names:?}");
    // All on the task's own stack; the IRQ and exception stacks are
    // elsewhere: the vmalloc'ed IRQ stack, the cpu_entry_area ones.
    let stacks = &kernel.cpu_stacks()[r.task.cpu as usize];
    let on = |sp: u64| {
        if sp >= r.task.stack && sp <= r.task.stack + kernel.thread_size() {
            Some(StackKind::Task)
        } else {
            stacks.iter().find(|s| sp >= s.start && sp <= s.end).map(|s| s.kind)
        }
    };
    assert!(r.frames.iter().all(|f| on(f.sp) == Some(StackKind::Task)), "{:x?}", r.frames);
    for s in stacks {
        let region = match s.kind {
            StackKind::Irq => 0xffff_8000_0000_0000..0xffff_fe00_0000_0000, // vmalloc (KASLR)
            _ => 0xffff_fe00_0000_0000..0xffff_ff00_0000_0000,              // cpu_entry_area
        };
        assert!(region.contains(&s.start) && s.end <= region.end, "{s:x?}");
        assert!(stacks.iter().filter(|o| o.start < s.end && s.start < o.end).count() == 1, "{s:x?} overlaps");
    }
    assert!(r.frames.iter().all(|f| f.reliable && f.kind != FrameKind::Iret));
}

/// The stacks of both kernels' layouts (6.12: `pcpu_hot`; 6.1: the per-CPU
/// `hardirq_stack_ptr`), against the kernel's own fixed relations: the
/// entry stack and the exception stacks share one `cpu_entry_area` per
/// CPU, below the IDT page at the base of the area.
#[test]
fn cpu_stacks_of_both_layouts() {
    for dir in ["6.12.117+deb12-amd64-stacked", "6.1.0-57-amd64-stacked"] {
        let bytes = common::read(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
        let dump = Dump::open(&bytes).unwrap();
        let vi = dump.vmcoreinfo().cloned().unwrap();
        let kernel = Kernel::open(dump, &vi, OpenOptions::default()).unwrap();
        assert!(kernel.warnings().is_empty(), "{dir}: {:?}", kernel.warnings());
        assert_eq!(kernel.cpu_stacks().len(), 2, "{dir}");
        for stacks in kernel.cpu_stacks() {
            let kinds: Vec<StackKind> = stacks.iter().map(|s| s.kind).collect();
            assert_eq!(kinds.iter().filter(|k| **k == StackKind::Irq).count(), 1, "{dir}");
            assert_eq!(kinds.iter().filter(|k| **k == StackKind::Entry).count(), 1, "{dir}");
            let entry = stacks.iter().find(|s| s.kind == StackKind::Entry).unwrap();
            assert_eq!(entry.end - entry.start, 4096, "{dir}: one page");
            for e in stacks.iter().filter(|s| s.kind == StackKind::Exception) {
                // One cpu_entry_area is far less than 1 MiB.
                assert!(e.start.abs_diff(entry.start) < 1 << 20, "{dir}: {e:x?} vs {entry:x?}");
                assert_eq!((e.end - e.start) % 4096, 0, "{dir}");
            }
        }
        // The two CPUs' areas differ.
        assert_ne!(kernel.cpu_stacks()[0], kernel.cpu_stacks()[1], "{dir}");
    }
}

/// A real kdump (makedumpfile -l -d 31 in a capture kernel, after
/// `echo c > /proc/sysrq-trigger`): no QEMU notes, so each CPU's registers
/// come from the kernel's `crash_notes`. CPU 1 was stopped by the crash NMI
/// while the `lpstack_spin` kthread spun in the patched `lpspin_work`: it is
/// running, and its frames (drgn's, tests/fixtures/vmcore/*-kdump/
/// drgn-stacks.txt) show the patched function.
#[test]
fn real_kdump_running_kthread_in_a_patched_function() {
    let dir = "6.12.117+deb12-amd64-kdump";
    let bytes = common::read(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
    let dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let mut kernel = Kernel::open(dump, &vi, OpenOptions::default()).unwrap();
    let cpus = kernel.crash_notes_regs();
    assert_eq!(cpus.len(), 2, "crash_notes of both CPUs");
    let state = kernel.klp_state().unwrap().unwrap();
    let ks = lpstack::patchset::klp::from_transition(&state, &kernel.symbols()).unwrap();
    let reports = kernel
        .check(&ks.set, &CheckConfig { mode: CheckMode::Dump { cpus: &cpus }, ..CheckConfig::default() }, |_, _| {})
        .unwrap()
        .tasks;
    let r = reports.iter().find(|r| r.task.comm == "lpstack_spin").expect("the spinner");
    assert!(r.task.on_cpu && matches!(r.verdict, lpstack::verdict::Verdict::Running));
    assert_eq!(r.reliability, Some(Reliability::Reliable(CleanEnd::EndOfStack)), "{:x?}", r.frames);
    let names: Vec<String> = r
        .frames
        .iter()
        .map(|f| kernel.symbols().lookup(f.pc).map(|s| s.name.to_string()).unwrap_or_default())
        .collect();
    assert_eq!(names, ["lpspin_work", "lpstack_spin_loop", "kthread", "ret_from_fork", "ret_from_fork_asm"]);
    // drgn's trace of the same task, from the committed record.
    let drgn = String::from_utf8(common::read(&format!("vmcore/{dir}/drgn-stacks.txt"))).unwrap();
    for n in &names {
        assert!(drgn.contains(n.as_str()), "{n} not in drgn's record");
    }
    assert!(r.hits.iter().any(|h| h.frame == 0 && ks.set.funcs()[h.func].function == "lpspin_work"), "{:?}", r.hits);
}

/// One task on a CPU as drgn unwound it in a kdump run's `drgn-stacks.txt`
/// ("## Running tasks"): its kernel frames (pc, sp, the stack drgn places
/// sp on), up to the first user-mode frame.
struct DrgnRunning {
    pid: i32,
    cpu: u32,
    frames: Vec<(u64, u64, StackKind)>,
}

fn drgn_running(text: &str) -> Vec<DrgnRunning> {
    let section = text.split("## Running tasks").nth(1).expect("a Running tasks section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut out: Vec<DrgnRunning> = Vec::new();
    let hex = |w: Option<&str>| u64::from_str_radix(w.unwrap().trim_start_matches("0x"), 16).unwrap();
    for line in section.lines() {
        if let Some(rest) = line.strip_prefix("pid ") {
            let pid = rest.split_whitespace().next().unwrap().parse().unwrap();
            let cpu = rest.rsplit("on CPU ").next().unwrap().trim().parse().unwrap();
            out.push(DrgnRunning { pid, cpu, frames: Vec::new() });
        } else if line.trim_start().starts_with('#') && !line.contains("[user]") {
            let mut w = line.split_whitespace().skip(1);
            assert_eq!(w.next(), Some("pc"), "{line}");
            let pc = hex(w.next());
            assert_eq!(w.next(), Some("sp"), "{line}");
            let sp = hex(w.next());
            let place = line.rsplit('[').next().unwrap();
            let kind = if place.starts_with("task stack") {
                StackKind::Task
            } else if place.starts_with("hardirq stack") {
                StackKind::Irq
            } else if place.starts_with("exception stack") {
                StackKind::Exception
            } else if place.starts_with("entry stack") {
                StackKind::Entry
            } else {
                panic!("unknown stack in {line}")
            };
            out.last_mut().expect("a pid line first").frames.push((pc, sp, kind));
        }
    }
    out
}

/// Every task on a CPU of the three real kdumps has drgn's frames (pc, sp,
/// and the stack each lies on), down to its user-mode registers or the end
/// of its stack. The panicking CPU starts in `__crash_kexec`, which has no
/// ORC data (its inline asm saved the registers): frame 1 is the return
/// address after `call __crash_kexec`, and the frames are not reliable. On
/// `-kdump` it panicked in a syscall (task stack only), on `-kdump-irq` in
/// an hrtimer callback (hardirq stack → the interrupted kthread's stack),
/// on `-kdump-nmi` in the NMI handler (NMI stack → the kthread's stack).
#[test]
fn real_kdumps_every_cpu_has_drgns_frames_across_stacks() {
    let runs = [
        ("6.12.117+deb12-amd64-kdump", "sh", vec![StackKind::Task]),
        ("6.12.117+deb12-amd64-kdump-irq", "lpstack_spin", vec![StackKind::Irq, StackKind::Task]),
        ("6.12.117+deb12-amd64-kdump-nmi", "lpstack_spin", vec![StackKind::Exception, StackKind::Task]),
    ];
    for (dir, panicking_comm, crossed) in runs {
        let bytes = common::read(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
        let dump = Dump::open(&bytes).unwrap();
        let vi = dump.vmcoreinfo().cloned().unwrap();
        let mut kernel = Kernel::open(dump, &vi, OpenOptions::default()).unwrap();
        let cpus = kernel.crash_notes_regs();
        let empty = PatchSet::default();
        let reports = kernel
            .check(&empty, &CheckConfig { mode: CheckMode::Dump { cpus: &cpus }, ..CheckConfig::default() }, |_, _| {})
            .unwrap()
            .tasks;
        let drgn = drgn_running(&String::from_utf8(common::read(&format!("vmcore/{dir}/drgn-stacks.txt"))).unwrap());
        assert_eq!(drgn.len(), 2, "{dir}: two CPUs");
        let panic_cpu = kernel.panic_cpu().expect("panic_cpu is set");
        for d in &drgn {
            let r = reports
                .iter()
                .find(|r| r.task.pid == d.pid && r.task.on_cpu && r.task.cpu == d.cpu)
                .unwrap_or_else(|| panic!("{dir}: pid {} on CPU {}", d.pid, d.cpu));
            let stacks = &kernel.cpu_stacks()[d.cpu as usize];
            let kind = |sp: u64| stacks.iter().find(|s| s.contains(sp, 8)).map_or(StackKind::Task, |s| s.kind);
            let ours: Vec<(u64, u64, StackKind)> = r.frames.iter().map(|f| (f.pc, f.sp, kind(f.sp))).collect();
            assert_eq!(ours, d.frames, "{dir}: pid {} on CPU {}", d.pid, d.cpu);
            if d.cpu == panic_cpu {
                assert_eq!(r.task.comm, panicking_comm, "{dir}");
                let mut seen: Vec<StackKind> = ours.iter().map(|f| f.2).collect();
                seen.dedup();
                assert_eq!(seen, crossed, "{dir}: stacks crossed");
                let name = |pc| kernel.symbols().lookup(pc).map_or("?", |s| s.name);
                assert_eq!([name(r.frames[0].pc), name(r.frames[1].pc)], ["__crash_kexec", "panic"], "{dir}");
                assert_eq!(r.frames[1].kind, FrameKind::Scanned, "{dir}");
                assert!(r.frames.iter().all(|f| !f.reliable), "{dir}");
                assert!(matches!(r.reliability, Some(Reliability::Unreliable { frame: 0, .. })), "{dir}");
            }
        }
        assert!(drgn.iter().any(|d| d.cpu == panic_cpu), "{dir}: the panicking CPU is in drgn's record");
    }
}

/// A module function's size is the kernel's (`find_kallsyms_symbol`: up to
/// the next symbol), not its ELF `st_size`: livepatch checks that range.
/// The hrtimer callback ends in `call panic`, so its return address lies
/// just past the code (st_size 0x134); the kernel printed it as
/// `lpstack_irqpanic_fire+0x134/0x140` in the crashed kernel's log.
#[test]
fn module_symbol_sizes_are_the_kernels() {
    let dir = "6.12.117+deb12-amd64-kdump-irq";
    let dmesg = String::from_utf8(common::read(&format!("vmcore/{dir}/vmcore-dmesg.txt"))).unwrap();
    let printed =
        dmesg.split_whitespace().find(|w| w.starts_with("lpstack_irqpanic_fire+")).expect("the callback in the trace");
    let (_, off_size) = printed.split_once('+').unwrap();
    let (off, size) = off_size.split_once('/').unwrap();
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let bytes = common::read(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
    let dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let kernel = Kernel::open(dump, &vi, OpenOptions::default()).unwrap();
    let table = kernel.symbols().table("lpstack_irqpanic").expect("the module's symbols");
    let sym = table.find_by_name("lpstack_irqpanic_fire").next().unwrap();
    assert_eq!(sym.size, hex(size), "{printed}");
    let at = kernel.symbols().lookup(sym.address + hex(off)).unwrap();
    assert_eq!((at.name, at.offset), ("lpstack_irqpanic_fire", hex(off)));
}
