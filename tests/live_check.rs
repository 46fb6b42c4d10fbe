//! `check live`'s moving-target logic over a real kernel image: a committed
//! dump read as if live, once still and once with a task made to move.
//! The end-to-end guest run is checked in tests/live_guest.rs.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use lpstack::dump::Dump;
use lpstack::kernel::check::{check_kernel, check_kernel_live, LiveConfig};
use lpstack::kernel::image::{CpuRegs, Kernel};
use lpstack::memory::{MemoryError, PhysMemory};
use lpstack::patchset::{parse_funcs, PatchSet};
use lpstack::verdict::Verdict;
use lpstack::walk::{UnreliableReason, WalkConfig};

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
        if let Some(at) = self.at.get() {
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
type MovingAt = Rc<Cell<Option<u64>>>;

fn open(bytes: &[u8], moves: u64) -> (Kernel<Moving<Dump<'_>>>, MovingAt, Vec<CpuRegs>) {
    let dump = Dump::open(bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let cpus = dump.cpus().iter().filter_map(|c| c.index_hint.map(|cpu| CpuRegs { cpu, regs: c.regs })).collect();
    let at = Rc::new(Cell::new(None));
    let kernel = Kernel::open(Moving { inner: dump, at: at.clone(), looks: 0, moves }, &vi).unwrap();
    (kernel, at, cpus)
}

#[test]
fn a_still_kernel_reads_as_its_dump_and_a_moving_task_is_never_switchable() {
    let bytes = common::read(&format!("vmcore/{DUMP}/vmcore.trimmed.kdump"));
    let funcs = String::from_utf8(common::read(&format!("vmcore/{DUMP}/funcs.txt"))).unwrap();
    let config = WalkConfig::default();
    let live = LiveConfig { max_passes: 4 };

    // Nothing moves: every task off a CPU gets the dump check's verdict.
    let (mut kernel, _, cpus) = open(&bytes, 0);
    let set = PatchSet::resolve(&parse_funcs(&funcs, "vmlinux").unwrap(), &kernel.symbols).unwrap();
    let want = check_kernel(&mut kernel, &set, &cpus, &config, |_, _| {}).unwrap();
    let got = check_kernel_live(&mut kernel, &set, &config, &live, |_| true, |_, _| {}).unwrap();
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
    let nvcsw = kernel.layout.task.nvcsw.expect("nvcsw in BTF").offset;
    for (moves, settles) in [(u64::MAX, false), (3, true)] {
        let (mut kernel, at, _) = open(&bytes, moves);
        at.set(Some(kernel.mem.translate(target.task.addr + nvcsw).unwrap()));
        let set = PatchSet::resolve(&parse_funcs(&funcs, "vmlinux").unwrap(), &kernel.symbols).unwrap();
        let only = |t: &lpstack::kernel::tasks::TaskInfo| t.addr == target.task.addr;
        let got = check_kernel_live(&mut kernel, &set, &config, &live, only, |_, _| {}).unwrap();
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
}
