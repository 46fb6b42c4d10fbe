//! `check live`'s moving-target logic over a real kernel image: a committed
//! dump read as if live, once still and once with a task made to move.
//! The end-to-end guest run is checked in tests/live_guest.rs.

mod common;

use std::sync::{Arc, Mutex};

use lpstack::dump::Dump;
use lpstack::dump::kcore::{KcoreHeaders, KcorePhys, KcoreSegment, ReadAt};
use lpstack::kernel::check::{CheckConfig, CheckMode, Checked, LiveReads, Select, TaskReport};
use lpstack::kernel::image::{CpuRegs, Kernel, OpenOptions};
use lpstack::memory::{Memory, MemoryError, MemoryErrorKind, PhysMemory};
use lpstack::patchset::{PatchSet, parse_funcs};
use lpstack::verdict::Verdict;
use lpstack::walk::{UnreliableReason, WalkConfig};

/// A live check of `kernel` (passes per task, threads), as `check live` makes it.
fn live_check<'s, P: PhysMemory + Send>(
    kernel: &mut Kernel<P>,
    set: &'s PatchSet,
    walk: WalkConfig,
    passes: u32,
    threads: u8,
    select: Select<'_>,
) -> Checked<'s> {
    let config = CheckConfig { walk, mode: CheckMode::Live { passes }, select, threads: usize::from(threads) };
    kernel.check(set, &config, |_, _| {}).unwrap()
}

/// The dump check of the same kernel: what a live check must agree with.
fn dump_check<'s, P: PhysMemory + Send>(
    kernel: &mut Kernel<P>,
    set: &'s PatchSet,
    walk: WalkConfig,
    cpus: &[CpuRegs],
) -> Vec<TaskReport<'s>> {
    let config = CheckConfig { walk, mode: CheckMode::Dump { cpus }, select: Select::All, threads: 1 };
    kernel.check(set, &config, |_, _| {}).unwrap().tasks
}

const DUMP: &str = "6.12.117+deb12-amd64";

/// Physical memory in which one u64 (a task's nvcsw) counts up each time
/// the reader drops its cache, for the first `moves` times: a task that
/// context-switches between every look.
struct Moving<P> {
    inner: P,
    at: MovingAt,
    looks: u64,
    moves: u64,
}

impl<P: PhysMemory> PhysMemory for Moving<P> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read_phys(paddr, buf)?;
        if let Some(at) = *self.at.lock().unwrap() {
            let bump = self.looks.min(self.moves).to_le_bytes();
            for (i, b) in buf.iter_mut().enumerate() {
                let a = paddr + i as u64;
                if a >= at && a < at + 8 {
                    *b = b.wrapping_add(bump[(a - at) as usize]);
                }
            }
        }
        Ok(())
    }
    fn invalidate(&mut self) {
        self.looks += 1;
    }
}

/// Where the moving u64 is (set once the kernel is open).
type MovingAt = Arc<Mutex<Option<u64>>>;

fn open(bytes: &[u8], moves: u64) -> (Kernel<Moving<Dump<'_>>>, MovingAt, Vec<CpuRegs>) {
    let dump = Dump::open(bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let cpus = dump.cpus().iter().filter_map(|c| c.index_hint.map(|cpu| CpuRegs { cpu, regs: c.regs })).collect();
    let at = Arc::new(Mutex::new(None));
    let kernel =
        Kernel::open(Moving { inner: dump, at: at.clone(), looks: 0, moves }, &vi, OpenOptions::default()).unwrap();
    (kernel, at, cpus)
}

#[test]
fn a_still_kernel_reads_as_its_dump_and_a_moving_task_is_never_switchable() {
    let bytes = common::read(&format!("vmcore/{DUMP}/vmcore.trimmed.kdump"));
    let funcs = String::from_utf8(common::read(&format!("vmcore/{DUMP}/funcs.txt"))).unwrap();
    let config = WalkConfig::default();
    let live = 4;

    // Nothing moves: every task off a CPU gets the dump check's verdict.
    let (mut kernel, _, cpus) = open(&bytes, 0);
    let set = PatchSet::resolve(&parse_funcs(&funcs, "vmlinux").unwrap(), &kernel.symbols()).unwrap();
    let want = dump_check(&mut kernel, &set, config, &cpus);
    let got = live_check(&mut kernel, &set, config, live, 1, Select::All).tasks;
    assert_eq!(got.len(), want.len());
    let mut blocked = 0;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.task.addr, w.task.addr);
        if w.task.on_cpu {
            assert_eq!(g.verdict, Verdict::Running, "pid {}: on a CPU is running", g.task.pid);
            continue;
        }
        assert_eq!(g.verdict, w.verdict, "pid {} {}", g.task.pid, g.task.comm);
        assert_eq!(g.frames, w.frames, "pid {}", g.task.pid);
        blocked += usize::from(matches!(g.verdict, Verdict::Blocked { .. }));
    }
    assert!(blocked >= 3, "{blocked} blocked tasks");

    // The first blocked task now context-switches between every look.
    let target = want.iter().find(|r| matches!(r.verdict, Verdict::Blocked { .. })).unwrap();
    let nvcsw = kernel.layout().task.nvcsw.expect("nvcsw in BTF").offset;
    for (moves, settles) in [(u64::MAX, false), (3, true)] {
        let (mut kernel, at, _) = open(&bytes, moves);
        *at.lock().unwrap() = Some(kernel.memory().translate(target.task.addr + nvcsw).unwrap());
        let set = PatchSet::resolve(&parse_funcs(&funcs, "vmlinux").unwrap(), &kernel.symbols()).unwrap();
        let only = Select::Tasks(std::slice::from_ref(&target.task.addr));
        let got = live_check(&mut kernel, &set, config, live, 1, only).tasks;
        assert_eq!(got.len(), 1);
        if settles {
            // Still after a few moves: walked again, same verdict.
            assert!(matches!(got[0].verdict, Verdict::Blocked { .. }), "{:?}", got[0].verdict);
        } else {
            let want = UnreliableReason::ChangedWhileReading { task: target.task.addr, passes: 4 };
            assert_eq!(got[0].verdict, Verdict::Unreliable { reason: want, frame: 0 });
            assert!(got[0].frames.is_empty() && got[0].hits.is_empty());
        }
    }

    // Its pid reads differently after the listing (the second drop of the
    // cache), then holds: the task_struct now holds another task (or reads
    // wrong), so however still it is, it is not the listed task.
    let pid_at = kernel.layout().task.pid.offset;
    let (mut kernel, at, _) = open(&bytes, 2);
    *at.lock().unwrap() = Some(kernel.memory().translate(target.task.addr + pid_at).unwrap());
    let set = PatchSet::resolve(&parse_funcs(&funcs, "vmlinux").unwrap(), &kernel.symbols()).unwrap();
    let only = Select::Tasks(std::slice::from_ref(&target.task.addr));
    let got = live_check(&mut kernel, &set, config, live, 1, only).tasks;
    assert_eq!(got.len(), 1);
    let want = UnreliableReason::ChangedWhileReading { task: target.task.addr, passes: 4 };
    assert_eq!(got[0].verdict, Verdict::Unreliable { reason: want, frame: 0 });
}

/// The dump's physical memory as the data of a kcore file (file offset =
/// physical address): a [`KcorePhys`] over it caches and reads ahead as it
/// does over /proc/kcore, and counts its preads. The trimmed dump holds
/// only the pages lpstack reads; the others read as zeros here, as RAM
/// that is there, so that a read-ahead over them is one request as on kcore.
#[derive(Clone)]
struct DumpAsKcore<'a>(Arc<Mutex<Dump<'a>>>, SwitchingAt);

/// The task that switches, if any (shared by the readers of a split).
type SwitchingAt = Arc<Mutex<Option<Switching>>>;

/// A task that context-switches under a kcore reader: each pread of its
/// nvcsw, for the first `moves` ones, finds it counted up; from the second
/// one on, its switch frame returns to `new_ret` (it blocked elsewhere).
#[derive(Clone, Copy)]
struct Switching {
    nvcsw: u64,
    ret: u64,
    new_ret: u64,
    moves: u64,
    preads: u64,
}

impl ReadAt for DumpAsKcore<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.read_dump(offset, buf)?;
        let mut switching = self.1.lock().unwrap();
        if let Some(sw) = switching.as_mut() {
            let end = offset + buf.len() as u64;
            let mut put = |at: u64, v: &dyn Fn(u64) -> u64| {
                if at >= offset && at + 8 <= end {
                    let o = (at - offset) as usize;
                    let old = u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
                    buf[o..o + 8].copy_from_slice(&v(old).to_le_bytes());
                }
            };
            if (offset..end).contains(&sw.nvcsw) {
                sw.preads += 1;
            }
            let bump = sw.preads.min(sw.moves);
            put(sw.nvcsw, &|v| v + bump);
            if sw.preads >= 2 && sw.moves >= 2 {
                let new_ret = sw.new_ret;
                put(sw.ret, &|_| new_ret);
            }
        }
        Ok(())
    }

    fn split_reader(&self, _path: &str) -> Option<Self> {
        Some(self.clone())
    }
}

impl DumpAsKcore<'_> {
    fn read_dump(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut dump = self.0.lock().unwrap();
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let n = (4096 - (at % 4096) as usize).min(buf.len() - done);
            match dump.read_phys(at, &mut buf[done..done + n]) {
                Ok(()) => {}
                Err(e) if e.kind == MemoryErrorKind::NotInDump => buf[done..done + n].fill(0),
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
            done += n;
        }
        Ok(())
    }
}

/// The kernel of the dump read through [`KcorePhys`], with kcore's direct
/// map and kernel text segments (the fixed translations).
fn open_as_kcore(bytes: &[u8], switching: SwitchingAt) -> Kernel<KcorePhys<DumpAsKcore<'_>>> {
    let (mut plain, _, _) = open(bytes, 0);
    let sym = |name| plain.symbol(name).unwrap_or_else(|| panic!("{name}"));
    let (text, end) = (sym("_text"), sym("_end"));
    // page_offset_base is not in the trimmed dump: the direct map is linear,
    // so any slab address (the next task) and its physical address give it.
    let tasks_at = plain.symbol("init_task").unwrap() + plain.layout().task.tasks.offset;
    let next = plain.memory().read_u64(tasks_at).unwrap();
    let page_offset = next - plain.memory().translate(next).unwrap();
    let text_pa = plain.memory().translate(text).unwrap();
    let dump = Dump::open(bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let ram_size = 64 << 30;
    let headers = KcoreHeaders {
        segments: vec![
            KcoreSegment { vaddr: page_offset, paddr: 0, offset: 0, size: ram_size },
            KcoreSegment { vaddr: text, paddr: text_pa, offset: text_pa, size: end - text },
        ],
        vmcoreinfo: Some(vi.clone()),
    };
    let phys = KcorePhys::new("vmcore as kcore", DumpAsKcore(Arc::new(Mutex::new(dump)), switching), &headers).unwrap();
    Kernel::open(phys, &vi, OpenOptions::default()).unwrap()
}

/// Each kcore pread is a syscall and a trip through the kernel's kcore
/// code, slow under emulation: a whole-system check must stay at a few per
/// task. Counted on the dump read as kcore; the verdicts stay the dump's.
#[test]
fn a_live_check_makes_few_kcore_reads_per_task() {
    let bytes = common::read(&format!("vmcore/{DUMP}/vmcore.trimmed.kdump"));
    let funcs = String::from_utf8(common::read(&format!("vmcore/{DUMP}/funcs.txt"))).unwrap();
    let config = WalkConfig::default();
    let (mut plain, _, cpus) = open(&bytes, 0);
    let set = PatchSet::resolve(&parse_funcs(&funcs, "vmlinux").unwrap(), &plain.symbols()).unwrap();
    let want = dump_check(&mut plain, &set, config, &cpus);

    let mut kernel = open_as_kcore(&bytes, SwitchingAt::default());
    let bytes_before = kernel.memory().phys().bytes;
    let reads;
    let live = 5;
    let got = {
        let c = live_check(&mut kernel, &set, config, live, 1, Select::All);
        reads = c.reads;
        c.tasks
    };
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.task.addr, w.task.addr);
        if !w.task.on_cpu && w.task.unreadable.is_none() {
            assert_eq!(g.verdict, w.verdict, "pid {} {}", g.task.pid, g.task.comm);
            assert_eq!(g.frames, w.frames, "pid {}", g.task.pid);
        }
    }
    let tasks = got.len() as f64;
    let per = |n: u64| n as f64 / tasks;
    eprintln!(
        "{} tasks, {} walks: kcore reads per task {:.2} (listing {:.2}, walk start {:.2}, stack {:.2}, reread {:.2})",
        got.len(),
        reads.walks,
        per(reads.total()),
        per(reads.listing),
        per(reads.walk_start),
        per(reads.walk_stack),
        per(reads.reread),
    );
    assert_eq!(reads.walks as usize, got.iter().filter(|r| !r.task.on_cpu && r.task.unreadable.is_none()).count());
    // Measured: 3.47 per task (6.65 before the listing read each
    // task_struct once and the look after a walk kept the cache). The floor
    // is about three: the listing's look, the stack page, the look after.
    assert!(per(reads.total()) <= 3.8, "{reads:?}");
    assert!(per(reads.listing) <= 1.6, "{reads:?}");
    assert!(reads.reread <= reads.walks, "one request per look after a walk: {reads:?}");
    eprintln!("{:.1} KiB read per task", (kernel.memory().phys().bytes - bytes_before) as f64 / 1024.0 / tasks);
    // On two threads: the same reports in the same order, and about as
    // many reads (the second reader starts with an empty cache).
    let mut kernel2 = open_as_kcore(&bytes, SwitchingAt::default());
    let main_before = kernel2.memory().phys().reads;
    let reads2: LiveReads;
    let par = {
        let c = live_check(&mut kernel2, &set, config, live, 2, Select::All);
        reads2 = c.reads;
        c.tasks
    };
    assert_eq!(par.len(), got.len());
    for (p, g) in par.iter().zip(&got) {
        assert_eq!((p.task.addr, &p.verdict, &p.frames), (g.task.addr, &g.verdict, &g.frames));
    }
    let main = kernel2.memory().phys().reads - main_before;
    eprintln!("two threads: {reads2:?}; {main} requests by the first");
    assert!(main < reads2.total() * 3 / 4, "the second thread did its half");
    assert_eq!(reads2.walks, reads.walks);
    assert!(reads2.total() <= reads.total() + 4, "{reads2:?} against {reads:?}");
    assert!(reads2.bytes > 0 && reads2.bytes <= reads.bytes + 4 * 16384, "{reads2:?} against {reads:?}");
    let (lo, hi) = lpstack::kernel::tasks::task_span(&kernel.layout());
    eprintln!("task_struct {} bytes, fields read after a walk {lo:#x}..{hi:#x}", kernel.layout().task.size);
}

/// Through kcore's cache too, a task that moves between the looks before
/// and after its walk is walked again, and never from stack bytes read
/// before its last look: here its stack changes as it moves, and the walk
/// that counts is of the new stack.
#[test]
fn under_kcore_a_moving_task_is_walked_afresh() {
    let bytes = common::read(&format!("vmcore/{DUMP}/vmcore.trimmed.kdump"));
    let funcs = String::from_utf8(common::read(&format!("vmcore/{DUMP}/funcs.txt"))).unwrap();
    let config = WalkConfig::default();
    let live = 4;
    let (mut plain, _, cpus) = open(&bytes, 0);
    let set = PatchSet::resolve(&parse_funcs(&funcs, "vmlinux").unwrap(), &plain.symbols()).unwrap();
    let want = dump_check(&mut plain, &set, config, &cpus);
    let target = want.iter().find(|r| matches!(r.verdict, Verdict::Blocked { .. })).unwrap();
    let nvcsw = plain.layout().task.nvcsw.expect("nvcsw in BTF").offset;
    let ret = target.task.thread_sp + plain.layout().frame.ret_addr.offset;
    // (moves, walks): never still; still from the third look after the
    // listing's, blocked elsewhere (returning to 0x1, not code: unreliable);
    // moved once before the listing, still since (blocked as in the dump).
    let at = want.iter().position(|r| r.task.addr == target.task.addr).unwrap();
    let other = want[..at]
        .iter()
        .rev()
        .find(|r| matches!(r.verdict, Verdict::Blocked { .. } | Verdict::Switchable))
        .unwrap()
        .task
        .addr;
    let cases = [(u64::MAX, None), (3, Some(3)), (1, Some(1))];
    for (parallel, (moves, passes)) in [false, true].into_iter().flat_map(|p| cases.map(|c| (p, c))) {
        let switching = SwitchingAt::default();
        let mut kernel = open_as_kcore(&bytes, switching.clone());
        let sw = Switching {
            nvcsw: kernel.memory().translate(target.task.addr + nvcsw).unwrap(),
            ret: kernel.memory().translate(ret).unwrap(),
            new_ret: 1,
            moves,
            preads: 0,
        };
        *switching.lock().unwrap() = Some(sw);
        let only = Select::Tasks(std::slice::from_ref(&target.task.addr));
        let mut reads: LiveReads;
        let got = if parallel {
            // The target is the second thread's, after a still task.
            let pair_addrs = [other, target.task.addr];
            let pair = Select::Tasks(&pair_addrs);
            let got = {
                let c = live_check(&mut kernel, &set, config, live, 2, pair);
                reads = c.reads;
                c.tasks
            };
            assert_eq!(got.len(), 2);
            reads.walks -= 1;
            got[1..].to_vec()
        } else {
            {
                let c = live_check(&mut kernel, &set, config, live, 1, only);
                reads = c.reads;
                c.tasks
            }
        };
        assert_eq!(got.len(), 1);
        let v = &got[0].verdict;
        match passes {
            None => {
                let want = UnreliableReason::ChangedWhileReading { task: target.task.addr, passes: 4 };
                assert_eq!(*v, Verdict::Unreliable { reason: want, frame: 0 });
            }
            Some(n) => {
                assert_eq!(reads.walks, n, "moves {moves}, parallel {parallel}");
                if moves >= 2 {
                    assert!(matches!(v, Verdict::Unreliable { .. }), "moves {moves}: the new stack, {v:?}");
                } else {
                    assert_eq!(*v, target.verdict);
                }
            }
        }
    }
}
