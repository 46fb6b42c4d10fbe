//! Per-task decisions over a whole kernel: list the tasks as livepatch does,
//! start each walk where the kernel would (a blocked task's switch frame, a
//! running CPU's registers), walk with ORC and judge against the patch set.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::addrspace::KernelSpace;
use super::image::{CpuRegs, Kernel};
use super::layout::Layout;
use super::orc::{KernelOrc, LazyOrc, SharedMemory};
use super::tasks::{
    FoundTask, ListingGap, TaskInfo, TaskListError, TaskListing, list_threads, list_threads_by_pid, list_threads_with,
    read_task, task_span, unreadable_task,
};
use crate::memory::{Memory, PhysMemory, SliceMemory};
use crate::orc::OrcTables;
use crate::patchset::PatchSet;
use crate::symbols::{SymbolKind, Symbolizer};
use crate::verdict::{PatchHit, Verdict, Walked, judge};
use crate::walk::{
    CodeRanges, Frame, Reliability, StackBounds, StackRange, WalkConfig, WalkStart, walk_orc, walk_orc_past_start,
};

/// One task's outcome.
#[derive(Clone, Debug)]
pub struct TaskReport<'set> {
    /// The task as last read (for a live check, the look that settled it).
    pub task: TaskInfo,
    /// Its stack trace, innermost first; empty when it was not walked.
    pub frames: Vec<Frame>,
    /// None when the task was not walked (running, no registers).
    pub reliability: Option<Reliability>,
    /// Every patched function found on `frames` (see [`judge`]).
    pub hits: Vec<PatchHit>,
    /// Whether the task may switch to the patched code, and why.
    pub verdict: Verdict<'set>,
}

impl<P: PhysMemory> Kernel<P> {
    /// Every thread, then each online CPU's idle task (as klp does), with
    /// what the listing went past without reading.
    pub fn tasks(&mut self) -> Result<TaskListing, TaskListError> {
        let mut gaps = Vec::new();
        let tasks = self.tasks_noting(&mut gaps)?;
        Ok(TaskListing { tasks, gaps })
    }

    fn tasks_noting(&mut self, gaps: &mut Vec<ListingGap>) -> Result<Vec<TaskInfo>, TaskListError> {
        let mut tasks = match list_threads(&mut self.mem, &self.layout, self.init_task) {
            Ok(t) => t,
            // Holes in the task list (a filtered dump): every thread also
            // has a struct pid in init_pid_ns's IDR.
            Err(TaskListError::Memory(e)) => match self.symbol("init_pid_ns") {
                Some(ns) => {
                    self.warnings.push(format!("task list broken ({e}); tasks listed through the pid IDR"));
                    list_threads_by_pid(&mut self.mem, &self.layout, ns, gaps)?
                }
                None => return Err(TaskListError::Memory(e)),
            },
            Err(e) => return Err(e),
        };
        for idle in self.idle_tasks(gaps)? {
            tasks.push(idle.read(&mut self.mem, &self.layout));
        }
        Ok(tasks)
    }

    /// Each online CPU's idle task (`rq->idle`), found and not yet read.
    fn idle_tasks(&mut self, gaps: &mut Vec<ListingGap>) -> Result<Vec<FoundTask>, TaskListError> {
        let (Some(rq), Some(runqueues)) = (self.layout.rq, self.symbol("runqueues")) else {
            // Without struct rq, at least CPU 0's idle task.
            let mut t = read_task(&mut self.mem, &self.layout, self.init_task)?;
            t.idle = true;
            let others = self.online.iter().skip(1).filter(|&&o| o).count();
            if others > 0 {
                gaps.push(ListingGap {
                    addr: None,
                    what: format!(
                        "no struct rq layout in BTF or no `runqueues` symbol: the idle tasks of {others} online CPU(s) besides CPU 0 are not listed"
                    ),
                });
            }
            return Ok(vec![FoundTask::Known(t)]);
        };
        let mut found = Vec::new();
        for cpu in 0..self.nr_cpus {
            if !self.online.get(cpu as usize).copied().unwrap_or(false) {
                continue; // the kernel switches offline idle tasks at once
            }
            let Some(rq_addr) = self.per_cpu(runqueues, cpu) else {
                gaps.push(ListingGap {
                    addr: Some(runqueues),
                    what: format!(
                        "CPU {cpu}: no per-CPU offset for `runqueues` ({runqueues:#x}): its idle task is not listed"
                    ),
                });
                continue;
            };
            found.push(match self.mem.read_u64(rq_addr + rq.idle.offset) {
                Ok(0) => {
                    gaps.push(ListingGap {
                        addr: Some(rq_addr + rq.idle.offset),
                        what: format!(
                            "CPU {cpu}: rq->idle at {:#x} is NULL on an online CPU: its idle task is not listed",
                            rq_addr + rq.idle.offset
                        ),
                    });
                    continue;
                }
                Ok(idle) => FoundTask::Read { addr: idle, idle: true, page: None },
                Err(e) => FoundTask::Known(TaskInfo { idle: true, ..unreadable_task(rq_addr, e) }),
            });
        }
        Ok(found)
    }

    /// Where a task's walk starts, or None when it cannot be walked.
    pub fn walk_start(&mut self, task: &TaskInfo, cpus: &[CpuRegs]) -> Option<WalkStart> {
        self.walker().start(task, cpus)
    }

    /// Walks one task into `frames`.
    pub fn walk_task(
        &mut self,
        task: &TaskInfo,
        cpus: &[CpuRegs],
        config: &WalkConfig,
        frames: &mut Vec<Frame>,
    ) -> Option<Reliability> {
        self.walker().walk(task, cpus, config, frames, None)
    }

    fn walker(&mut self) -> Walker<'_, P> {
        let (mem, code, tables) = self.walk_parts();
        tables.walker(mem, code)
    }

    /// This thread's memory and code map, and the tables every walker
    /// shares (a worker brings its own memory and code map).
    fn walk_parts(&mut self) -> (&mut KernelSpace<P>, &mut CodeRanges, WalkTables<'_>) {
        let tables = WalkTables {
            orc: &self.orc,
            vmlinux_orc: self.vmlinux_orc.as_ref(),
            layout: &self.layout,
            thread_size: self.thread_size,
            ret_from_fork: self.ret_from_fork,
            cpu_stacks: &self.cpu_stacks,
            symbols: &self.symbols,
        };
        (&mut self.mem, &mut self.code, tables)
    }
}

/// What every walker of a kernel shares, on any thread: its tables.
#[derive(Clone, Copy)]
struct WalkTables<'k> {
    orc: &'k OrcTables<'static>,
    /// vmlinux's ORC when read on demand (not in `orc`).
    vmlinux_orc: Option<&'k LazyOrc>,
    layout: &'k Layout,
    thread_size: u64,
    ret_from_fork: u64,
    /// Each CPU's IRQ and exception stacks, for a task walked from its
    /// CPU's registers.
    cpu_stacks: &'k [Vec<StackRange>],
    /// Function starts, to get past a CPU's start frame that has no unwind
    /// data (`__crash_kexec` on the panicking CPU).
    symbols: &'k Symbolizer,
}

impl<'k> WalkTables<'k> {
    fn walker<'w, P>(self, mem: &'w mut KernelSpace<P>, code: &'w mut CodeRanges) -> Walker<'w, P>
    where
        'k: 'w,
    {
        Walker { mem, code, t: self }
    }
}

/// What a task walk needs of a kernel: a view of its memory, and its
/// tables. A worker on another thread has its own memory and code map.
struct Walker<'k, P> {
    mem: &'k mut KernelSpace<P>,
    code: &'k mut CodeRanges,
    t: WalkTables<'k>,
}

impl<P: PhysMemory> Walker<'_, P> {
    fn start(&mut self, task: &TaskInfo, cpus: &[CpuRegs]) -> Option<WalkStart> {
        if task.on_cpu {
            let regs = cpus.iter().find(|c| c.cpu == task.cpu)?.regs;
            return Some(WalkStart::from_regs(regs));
        }
        let f = self.t.layout.frame;
        let sp = task.thread_sp;
        let ip = self.mem.read_u64(sp + f.ret_addr.offset).ok()?;
        let bp = self.mem.read_u64(sp + f.bp.offset).ok()?;
        Some(WalkStart::blocked(ip, sp + f.size, bp, ip == self.t.ret_from_fork))
    }

    /// Walks one task into `frames`, adding the source's reads for the
    /// start and for the rest of the walk to `reads`.
    fn walk(
        &mut self,
        task: &TaskInfo,
        cpus: &[CpuRegs],
        config: &WalkConfig,
        frames: &mut Vec<Frame>,
        reads: Option<&mut LiveReads>,
    ) -> Option<Reliability> {
        frames.clear();
        if let Some(e) = task.unreadable {
            return Some(Reliability::Unreliable {
                reason: crate::walk::UnreliableReason::Unreadable { addr: e.addr, kind: e.kind },
                frame: 0,
            });
        }
        let r0 = self.mem.phys().reads();
        let start = self.start(task, cpus);
        let r1 = self.mem.phys().reads();
        let start = match start {
            Some(s) => s,
            None if task.on_cpu => return None,
            None => {
                // The switch frame itself is unreadable.
                let addr = task.thread_sp;
                let err = self.mem.read_u64(addr).err().map(|e| (e.addr, e.kind));
                let (addr, kind) = err.unwrap_or((addr, crate::memory::MemoryErrorKind::Unmapped));
                return Some(Reliability::Unreliable {
                    reason: crate::walk::UnreliableReason::Unreadable { addr, kind },
                    frame: 0,
                });
            }
        };
        let mut bounds = StackBounds::task(task.stack, task.stack.wrapping_add(self.t.thread_size));
        if task.on_cpu {
            // Its CPU may be in an interrupt or exception: the walk starts
            // there and comes back to the task stack (each stack once).
            for r in self.t.cpu_stacks.get(task.cpu as usize).into_iter().flatten() {
                bounds.push(*r);
            }
        }
        // vmlinux's ORC pages are read as the walk needs them, through
        // this walker's memory: the two take turns.
        let shared = RefCell::new(&mut *self.mem);
        let orc = KernelOrc { tables: self.t.orc, vmlinux: self.t.vmlinux_orc, mem: &shared };
        let mut mem = SharedMemory(&shared);
        let r = if task.on_cpu {
            let symbols = self.t.symbols;
            let func_start = |pc| symbols.lookup(pc).filter(|s| s.kind == SymbolKind::Text).map(|s| s.address);
            walk_orc_past_start(&orc, &mut mem, &mut *self.code, &bounds, start, config, frames, func_start)
        } else {
            walk_orc(&orc, &mut mem, &mut *self.code, &bounds, start, config, frames)
        };
        if let Some(reads) = reads {
            reads.walk_start += r1 - r0;
            reads.walk_stack += self.mem.phys().reads() - r1;
        }
        Some(r)
    }
}

/// How a kernel is checked ([`Kernel::check`]).
#[derive(Clone, Copy, Debug)]
pub struct CheckConfig<'a> {
    /// Limits of each task's stack walk.
    pub walk: WalkConfig,
    /// Dump or running kernel, and how each is read.
    pub mode: CheckMode<'a>,
    /// Which tasks are checked (all of them by default).
    pub select: Select<'a>,
    /// Threads walking tasks, each with a consecutive part of them and its
    /// own reader of the memory ([`PhysMemory::split`]); the reports stay
    /// in task order. 1 (and 0): this thread only. A source that cannot
    /// open a second reader is read by one thread.
    pub threads: usize,
}

/// Which tasks a check looks at.
#[derive(Clone, Copy, Debug, Default)]
pub enum Select<'a> {
    /// Every listed task.
    #[default]
    All,
    /// Tasks whose thread id or process id is one of these.
    Pids(&'a [i32]),
    /// Tasks at these `task_struct` addresses (as crash's `bt ADDR`).
    Tasks(&'a [u64]),
}

impl Select<'_> {
    /// Whether task `t` is one of those selected.
    pub fn keeps(&self, t: &TaskInfo) -> bool {
        match self {
            Select::All => true,
            Select::Pids(p) => p.contains(&t.pid) || p.contains(&t.tgid),
            Select::Tasks(a) => a.contains(&t.addr),
        }
    }

    /// The selected tasks of `listed`, in order.
    fn filter(&self, listed: Vec<TaskInfo>) -> Vec<TaskInfo> {
        listed.into_iter().filter(|t| self.keeps(t)).collect()
    }
}

/// What the memory is, and so how tasks are read.
#[derive(Clone, Copy, Debug)]
pub enum CheckMode<'a> {
    /// A dump: nothing moves. A task on a CPU starts from that CPU's
    /// registers (the dump's crash notes), when there are any.
    Dump {
        /// Registers of the CPUs that were running, from the crash notes.
        cpus: &'a [CpuRegs],
    },
    /// A running kernel (/proc/kcore): each task is read, walked and read
    /// again; one that changed is walked again, up to `passes` times. A
    /// task on a CPU is Running (no registers are known for it); one that
    /// never holds still is Running if last seen on a CPU, else Unreliable
    /// with `ChangedWhileReading`.
    Live {
        /// Most read-walk-reread passes per task (at least 1).
        passes: u32,
    },
}

impl Default for CheckConfig<'_> {
    fn default() -> Self {
        CheckConfig {
            walk: WalkConfig::default(),
            mode: CheckMode::Dump { cpus: &[] },
            select: Select::All,
            threads: 1,
        }
    }
}

/// A check's outcome: one report per task, in listing order.
#[derive(Clone, Debug)]
pub struct Checked<'set> {
    /// One report per selected task, in listing order.
    pub tasks: Vec<TaskReport<'set>>,
    /// What the task listing went past without reading: tasks may be
    /// missing from `tasks`. Empty when the listing is complete.
    pub listing_gaps: Vec<ListingGap>,
    /// Requests to the memory source by purpose (counted for a live check).
    pub reads: LiveReads,
}

impl<P: PhysMemory + Send> Kernel<P> {
    /// Lists the tasks as livepatch does and judges each against `set`:
    /// the one check of a kernel, dump or live (see [`CheckMode`]).
    /// `progress(done, total)` is called as tasks are walked (not by a
    /// two-thread live check).
    pub fn check<'set>(
        &mut self,
        set: &'set PatchSet,
        config: &CheckConfig<'_>,
        progress: impl FnMut(usize, usize),
    ) -> Result<Checked<'set>, TaskListError> {
        let mut reads = LiveReads::default();
        let threads = config.threads.max(1);
        let mut progress = progress;
        let (tasks, listing_gaps) = match config.mode {
            CheckMode::Dump { cpus } if threads > 1 => {
                match self.check_dump_pipelined(set, cpus, config, threads, PIPELINE, &mut progress) {
                    Some(checked) => (checked.reports, checked.gaps),
                    None => self.check_dump(set, cpus, config, threads, &mut reads, &mut progress)?,
                }
            }
            CheckMode::Dump { cpus } => self.check_dump(set, cpus, config, threads, &mut reads, &mut progress)?,
            CheckMode::Live { passes } => {
                let live = LiveConfig { max_passes: passes.max(1) };
                let listing = live_listing(self, &live, &mut reads)?;
                let tasks = config.select.filter(listing.tasks);
                let reports = if threads > 1 {
                    // Each kcore reader is its own open file: the kernel
                    // copies through a bounce buffer per open file.
                    on_workers(self, tasks, threads, &mut reads, |w, part, reads| {
                        live_tasks(w, set, &config.walk, &live, part, &mut |_| {}, reads)
                    })
                } else {
                    check_live(self, set, &config.walk, &live, tasks, progress, &mut reads)
                };
                (reports, listing.gaps)
            }
        };
        Ok(Checked { tasks, listing_gaps, reads })
    }
}

impl<P: PhysMemory + Send> Kernel<P> {
    /// A dump's check: the listing on this thread, then the walks on
    /// `threads` workers (each a consecutive part of the tasks).
    fn check_dump<'set>(
        &mut self,
        set: &'set PatchSet,
        cpus: &[CpuRegs],
        config: &CheckConfig<'_>,
        threads: usize,
        reads: &mut LiveReads,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Vec<TaskReport<'set>>, Vec<ListingGap>), TaskListError> {
        let listing = self.tasks()?;
        let tasks = config.select.filter(listing.tasks);
        let total = tasks.len();
        let reports = if threads > 1 {
            on_workers(self, tasks, threads, reads, |w, part, _| {
                dump_tasks(w, set, cpus, &config.walk, part, &mut |_| {})
            })
        } else {
            dump_tasks(&mut self.walker(), set, cpus, &config.walk, tasks, &mut |i| progress(i, total))
        };
        progress(total, total);
        Ok((reports, listing.gaps))
    }

    /// A dump's check on `workers` threads, each with its own reader: this
    /// thread follows the task lists and hands the tasks it finds on in
    /// batches, unread; the workers read each task_struct, walk and judge,
    /// and this thread joins them once the lists end. The reports come back
    /// in listing order, as [`Kernel::check_dump`] gives them. None when the
    /// source cannot split or a list cannot be followed whole (the serial
    /// listing then reports it, falls back to the pid IDR, or stands a
    /// process in for the threads it cannot list).
    fn check_dump_pipelined<'set>(
        &mut self,
        set: &'set PatchSet,
        cpus: &[CpuRegs],
        config: &CheckConfig<'_>,
        workers: usize,
        pipe: Pipeline,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Option<Pipelined<'set>> {
        let Pipeline { batch: batch_len, handed_pages, listing_helps } = pipe;
        let batch_len = batch_len.max(1);
        let mut gaps = Vec::new();
        let idle = self.idle_tasks(&mut gaps).ok()?;
        let mut extra = Vec::new();
        for _ in 1..workers {
            extra.push((self.mem.split()?, self.code.clone()));
        }
        let init_task = self.init_task;
        let t = &self.layout.task;
        let link_at = t.thread_node.unwrap_or(t.tasks).offset;
        let (mem, code, tables) = self.walk_parts();
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<FoundTask>)>();
        let rx = std::sync::Mutex::new(rx);
        // Tasks listed and tasks checked so far, for `progress` (called on
        // this thread only).
        let (found, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
        // Page buffers back from the workers' caches, for the listing to
        // hand on the next pages in.
        let spares: std::sync::Mutex<Vec<Box<[u8]>>> = std::sync::Mutex::new(Vec::new());
        let check_batch = |w: &mut Walker<'_, P>, (seq, batch): (usize, Vec<FoundTask>)| {
            let n = batch.len();
            let mut back = Vec::new();
            let tasks: Vec<TaskInfo> = batch
                .into_iter()
                .map(|mut found| {
                    if let FoundTask::Read { page, .. } = &mut found
                        && let Some((pa, bytes)) = page.take()
                    {
                        back.extend(w.mem.phys().hold_page(pa, bytes));
                    }
                    found.read(&mut *w.mem, w.t.layout)
                })
                .filter(|t| config.select.keeps(t))
                .collect();
            let reports = dump_tasks(w, set, cpus, &config.walk, tasks, &mut |_| {});
            if let Ok(mut spares) = spares.lock() {
                spares.append(&mut back);
            }
            (n, (seq, reports))
        };
        let walk_batches = |w: &mut Walker<'_, P>, progress: &mut dyn FnMut(usize, usize)| {
            let mut out = Vec::new();
            loop {
                // One worker at a time waits on the channel, the others on
                // the lock. A poisoned lock: a worker panicked, and its
                // join below passes the panic on.
                let next = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => break,
                };
                let Ok(batch) = next else { break };
                let (n, checked) = check_batch(w, batch);
                out.push(checked);
                let done = done.fetch_add(n, Ordering::Relaxed) + n;
                progress(done, found.load(Ordering::Relaxed));
            }
            out
        };
        let walk_batches = &walk_batches;
        // The workers' batches, as each worker ends.
        let theirs = std::sync::Mutex::new(Vec::new());
        // On rayon's threads, which are ready: a thread made here starts
        // on this one's CPU (on a 2-vCPU VM the two then took turns).
        let (listed, mut batches, listing_checked) = rayon::in_place_scope(|s| {
            for (mem, code) in extra.iter_mut() {
                let theirs = &theirs;
                s.spawn(move |_| {
                    let batches = walk_batches(&mut tables.walker(mem, code), &mut |_, _| {});
                    theirs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(batches);
                });
            }
            // Each thread is handed on as its list link is followed, also
            // within a process of many threads. A process whose thread list
            // breaks part way is a case for the one-thread listing (it
            // takes back what it found of that process): `broken` notes it
            // and the result is not used.
            let (mut seq, mut batch) = (0, Vec::with_capacity(batch_len));
            let mut listing_checked = 0;
            let broke = std::cell::Cell::new(false);
            // Batches the listing checked itself, and buffers to copy pages in.
            let (mut mine, mut buffers) = (Vec::new(), Vec::new());
            let listed = list_threads_with(
                &mut *mem,
                tables.layout,
                init_task,
                &mut |mem, addr| {
                    // The page of the links the listing follows: this
                    // reader decodes it anyway, the worker need not. Not
                    // while the workers are far behind: the pages waiting
                    // would grow with the task count.
                    let link = addr.wrapping_add(link_at);
                    let waiting = found.load(Ordering::Relaxed).saturating_sub(done.load(Ordering::Relaxed));
                    let page = (waiting < handed_pages)
                        .then(|| mem.read_u64(link).ok().and_then(|_| mem.held_page(link, buffers.pop())))
                        .flatten();
                    batch.push(FoundTask::Read { addr, idle: false, page });
                    if batch.len() >= batch_len {
                        let found = found.fetch_add(batch.len(), Ordering::Relaxed) + batch.len();
                        progress(done.load(Ordering::Relaxed), found);
                        // A closed channel means every worker stopped: the
                        // scope passes on the panic that stopped them.
                        let _ = tx.send((seq, std::mem::replace(&mut batch, Vec::with_capacity(batch_len))));
                        seq += 1;
                        // Far ahead of the workers: check a batch here. The
                        // channel is free unless a worker waits on it, and
                        // then it is empty.
                        if found.saturating_sub(done.load(Ordering::Relaxed)) > listing_helps
                            && let Some(next) = rx.try_lock().ok().and_then(|rx| rx.try_recv().ok())
                        {
                            let (n, checked) = check_batch(&mut tables.walker(mem, &mut *code), next);
                            mine.push(checked);
                            done.fetch_add(n, Ordering::Relaxed);
                        }
                        if let Ok(mut spares) = spares.lock() {
                            buffers.append(&mut spares);
                        }
                    }
                    addr
                },
                &mut |_, leader, _| {
                    broke.set(true);
                    leader
                },
                &mut |_| Ok(()),
            );
            let listed = listed.is_ok() && !broke.get();
            let mut batches = Vec::new();
            if listed {
                batch.extend(idle);
                found.fetch_add(batch.len(), Ordering::Relaxed);
                let _ = tx.send((seq, batch));
                drop(tx);
                batches = walk_batches(&mut tables.walker(mem, code), progress);
                listing_checked = mine.len();
                batches.append(&mut mine);
            } else {
                drop(tx);
            }
            (listed, batches, listing_checked)
        });
        batches.extend(theirs.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner));
        if !listed {
            return None;
        }
        batches.sort_unstable_by_key(|&(seq, _)| seq);
        let mut reports = Vec::with_capacity(batches.iter().map(|(_, r)| r.len()).sum());
        for (_, batch) in batches {
            reports.extend(batch);
        }
        Some(Pipelined { reports, gaps, listing_checked })
    }
}

/// How [`Kernel::check_dump_pipelined`] hands tasks on.
#[derive(Clone, Copy, Debug)]
struct Pipeline {
    /// Tasks handed on at a time.
    batch: usize,
    /// Tasks listed and not yet checked past which the listing stops
    /// handing its pages on (4 KiB each).
    handed_pages: usize,
    /// Tasks listed and not yet checked past which the listing checks a
    /// batch itself: the pages handed on then wait less, and their buffers
    /// come back to be used again instead of fresh memory.
    listing_helps: usize,
}

const PIPELINE: Pipeline = Pipeline { batch: 64, handed_pages: 1024, listing_helps: 256 };

/// What [`Kernel::check_dump_pipelined`] found.
struct Pipelined<'set> {
    reports: Vec<TaskReport<'set>>,
    gaps: Vec<ListingGap>,
    /// Batches the listing's thread checked while listing (for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    listing_checked: usize,
}

/// Walks and judges `tasks` of a dump, in order.
fn dump_tasks<'set, P: PhysMemory>(
    w: &mut Walker<'_, P>,
    set: &'set PatchSet,
    cpus: &[CpuRegs],
    config: &WalkConfig,
    tasks: Vec<TaskInfo>,
    progress: &mut dyn FnMut(usize),
) -> Vec<TaskReport<'set>> {
    // --max-frames may be huge; the walk grows the buffer as it goes.
    let mut frames = Vec::with_capacity(config.max_frames.min(1024));
    let mut out = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.into_iter().enumerate() {
        progress(i);
        let reliability = w.walk(&task, cpus, config, &mut frames, None);
        let mut hits = Vec::new();
        let walked = Walked { frames: &frames, reliability: reliability.as_ref(), running: task.on_cpu };
        let verdict = judge(walked, set, None, &mut hits);
        out.push(TaskReport { task, frames: frames.clone(), reliability, hits, verdict });
    }
    out
}

/// How hard to look at a moving task.
#[derive(Clone, Copy, Debug)]
struct LiveConfig {
    /// Read-walk-reread passes before a task is given up on.
    pub max_passes: u32,
}

/// Requests to the memory source (kcore preads) made by a live check, by
/// what they were for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveReads {
    /// Listing the tasks: task and thread lists, each task_struct.
    pub listing: u64,
    /// The start of each walk: the switch frame and its page tables.
    pub walk_start: u64,
    /// The rest of each walk: stack pages and their page tables.
    pub walk_stack: u64,
    /// Each task read again after its walk.
    pub reread: u64,
    /// Walks made; a task that moved is walked again.
    pub walks: u64,
    /// Bytes all these requests asked for.
    pub bytes: u64,
}

impl LiveReads {
    /// Requests of every purpose together (not counting `walks` or `bytes`).
    pub fn total(&self) -> u64 {
        self.listing + self.walk_start + self.walk_stack + self.reread
    }

    fn add(&mut self, o: &LiveReads) {
        self.listing += o.listing;
        self.walk_start += o.walk_start;
        self.walk_stack += o.walk_stack;
        self.reread += o.reread;
        self.walks += o.walks;
        self.bytes += o.bytes;
    }
}

/// What must not change while a live task's stack is read: if any of
/// these differs between the reads before and after the walk, the task ran
/// in between and the walk may have mixed two stacks.
fn same_snapshot(a: &TaskInfo, b: &TaskInfo) -> bool {
    (a.pid, a.state, a.exit_state, a.on_cpu, a.cpu, a.switches, a.thread_sp, a.stack, a.unreadable.is_some())
        == (b.pid, b.state, b.exit_state, b.on_cpu, b.cpu, b.switches, b.thread_sp, b.stack, b.unreadable.is_some())
}

/// Checks the tasks of a running kernel on this thread (see
/// [`CheckMode::Live`]), counting the source's reads by purpose.
fn check_live<'set, P: PhysMemory>(
    kernel: &mut Kernel<P>,
    set: &'set PatchSet,
    config: &WalkConfig,
    live: &LiveConfig,
    tasks: Vec<TaskInfo>,
    mut progress: impl FnMut(usize, usize),
    reads: &mut LiveReads,
) -> Vec<TaskReport<'set>> {
    let total = tasks.len();
    let out = live_tasks(&mut kernel.walker(), set, config, live, tasks, &mut |i| progress(i, total), reads);
    progress(total, total);
    out
}

/// Runs `work` over `tasks` cut into up to `workers` consecutive parts, each
/// with its own reader of the memory ([`PhysMemory::split`]) and code map,
/// on rayon's threads (as many at once as its pool has). The reports come
/// back in task order. One part when the source cannot split.
fn on_workers<'set, P, F>(
    kernel: &mut Kernel<P>,
    mut tasks: Vec<TaskInfo>,
    workers: usize,
    reads: &mut LiveReads,
    work: F,
) -> Vec<TaskReport<'set>>
where
    P: PhysMemory + Send,
    F: Fn(&mut Walker<'_, P>, Vec<TaskInfo>, &mut LiveReads) -> Vec<TaskReport<'set>> + Sync,
{
    let parts = workers.clamp(1, tasks.len().max(1));
    let per = tasks.len().div_ceil(parts);
    // The later parts, each with its own reader; stop splitting when the
    // source cannot.
    let mut extra: Vec<(KernelSpace<P>, CodeRanges, Vec<TaskInfo>)> = Vec::new();
    let mut cut = per;
    while cut < tasks.len() && extra.len() + 1 < parts {
        let Some(mem) = kernel.mem.split() else { break };
        extra.push((mem, kernel.code.clone(), Vec::new()));
        cut += per;
    }
    for (i, part) in extra.iter_mut().enumerate().rev() {
        part.2 = tasks.split_off(per * (i + 1));
    }
    if extra.is_empty() {
        return work(&mut kernel.walker(), tasks, reads);
    }
    let (mem, code, tables) = kernel.walk_parts();
    let mut w1 = tables.walker(mem, code);
    let work = &work;
    // On rayon's threads, which are ready (see SplitReader::read_bulk_into).
    let (mut out, rest) = rayon::join(
        || work(&mut w1, tasks, reads),
        || {
            use rayon::iter::{IntoParallelRefMutIterator, ParallelIterator};
            extra
                .par_iter_mut()
                .map(|(mem, code, part)| {
                    let mut r = LiveReads::default();
                    let out = work(&mut tables.walker(mem, code), std::mem::take(part), &mut r);
                    (out, r)
                })
                .collect::<Vec<_>>()
        },
    );
    for (part, r) in rest {
        out.extend(part);
        reads.add(&r);
    }
    out
}

/// The tasks a live check looks at, listed afresh (the listing is each
/// task's first look).
fn live_listing<P: PhysMemory>(
    kernel: &mut Kernel<P>,
    live: &LiveConfig,
    reads: &mut LiveReads,
) -> Result<TaskListing, TaskListError> {
    let (r0, b0) = (kernel.mem.phys().reads(), kernel.mem.phys().bytes_read());
    // The task list itself moves (exits unlink tasks): retry a failed read.
    let mut listed = Err(TaskListError::TooLong);
    for _ in 0..live.max_passes.max(1) {
        kernel.mem.invalidate_all();
        listed = kernel.tasks();
        if listed.is_ok() {
            break;
        }
    }
    reads.listing += kernel.mem.phys().reads() - r0;
    reads.bytes += kernel.mem.phys().bytes_read() - b0;
    // From here on, whatever is cached was read after every task's listed
    // look. A task that is the same at its look after the walk did not run
    // (nor exit) in between, so its stack stayed mapped and unchanged since
    // the listing: page tables and pages cached since then still hold for
    // it, and its first walk need not read them again.
    kernel.mem.invalidate();
    listed
}

/// Checks `tasks` of a running kernel in order (see [`CheckMode::Live`]).
fn live_tasks<'set, P: PhysMemory>(
    w: &mut Walker<'_, P>,
    set: &'set PatchSet,
    config: &WalkConfig,
    live: &LiveConfig,
    tasks: Vec<TaskInfo>,
    progress: &mut dyn FnMut(usize),
    reads: &mut LiveReads,
) -> Vec<TaskReport<'set>> {
    let b0 = w.mem.phys().bytes_read();
    let mut buf = Vec::new();
    let mut frames = Vec::with_capacity(config.max_frames.min(1024));
    let mut hits = Vec::new();
    let mut out = Vec::with_capacity(tasks.len());
    for (i, listed) in tasks.into_iter().enumerate() {
        progress(i);
        let mut reread = |w: &mut Walker<'_, P>, t: &TaskInfo| {
            // The fields in one fresh request; on any failure, the fields
            // one by one after dropping the whole cache, which names the
            // field that failed.
            let (lo, hi) = task_span(w.t.layout);
            buf.resize(hi.saturating_sub(lo).min(1 << 16) as usize, 0);
            let mut fresh = match w.mem.read_fresh(t.addr.wrapping_add(lo), &mut buf) {
                Ok(()) => read_task(&mut SliceMemory::new(t.addr.wrapping_add(lo), &buf), w.t.layout, t.addr).ok(),
                Err(_) => None,
            }
            .unwrap_or_else(|| {
                w.mem.invalidate();
                read_task(&mut *w.mem, w.t.layout, t.addr).unwrap_or_else(|e| unreadable_task(t.addr, e))
            });
            fresh.idle = t.idle;
            fresh
        };
        // The listing is the first look before the walk: a task that did
        // not move between the listing and the look after is consistent.
        let mut task = listed.clone();
        let mut settled = None;
        let mut passes = 0;
        while passes < live.max_passes.max(1) {
            passes += 1;
            if task.on_cpu || task.unreadable.is_some() {
                frames.clear();
                let reliability = w.walk(&task, &[], config, &mut frames, Some(reads));
                settled = Some(reliability);
                break;
            }
            if passes > 1 {
                // `task` is the look after the last walk: only what is
                // read after it belongs to the stack it describes.
                w.mem.invalidate();
            }
            reads.walks += 1;
            let reliability = w.walk(&task, &[], config, &mut frames, Some(reads));
            let r0 = w.mem.phys().reads();
            let after = reread(w, &listed);
            reads.reread += w.mem.phys().reads() - r0;
            // Still the listed task (a freed and reused task_struct, or a
            // bad read, holds another pid) and unchanged across the walk.
            if after.pid == listed.pid && same_snapshot(&task, &after) {
                settled = Some(reliability);
                break;
            }
            task = after;
        }
        let (reliability, verdict) = match settled {
            Some(r) => {
                let walked = Walked { frames: &frames, reliability: r.as_ref(), running: task.on_cpu };
                let verdict = judge(walked, set, None, &mut hits);
                (r, verdict)
            }
            None => {
                // Moved on every pass: what was walked is not one stack.
                frames.clear();
                let reason = crate::walk::UnreliableReason::ChangedWhileReading { task: task.addr, passes };
                let r = Reliability::Unreliable { reason, frame: 0 };
                let r = (!task.on_cpu).then_some(r);
                let walked = Walked { frames: &frames, reliability: r.as_ref(), running: task.on_cpu };
                let verdict = judge(walked, set, None, &mut hits);
                (r, verdict)
            }
        };
        out.push(TaskReport { task, frames: frames.clone(), reliability, hits: hits.clone(), verdict });
    }
    reads.bytes += w.mem.phys().bytes_read() - b0;
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::dump::Dump;
    use crate::kernel::image::OpenOptions;
    use crate::patchset::parse_funcs;

    /// The pipelined check gives the serial check's reports, in its order,
    /// whatever the batch size and however far the listing runs ahead:
    /// handing its pages on or not, checking batches itself or not.
    #[test]
    fn pipelined_reports_equal_the_serial_ones() {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vmcore/6.12.117+deb12-amd64/vmcore.trimmed.kdump");
        let bytes = std::fs::read(path).unwrap();
        let dump = Dump::open(&bytes).unwrap();
        let vi = dump.vmcoreinfo().cloned().unwrap();
        let mut kernel = Kernel::open(dump, &vi, OpenOptions::default()).unwrap();
        // Functions that some tasks sleep in and others do not.
        let specs = parse_funcs("do_nanosleep\ndo_wait\n", "vmlinux").unwrap();
        let set = PatchSet::resolve(&specs, kernel.symbols()).unwrap();
        let config = CheckConfig { threads: 1, ..CheckConfig::default() };
        let cpus = [];
        let serial = kernel.check_dump(&set, &cpus, &config, 1, &mut LiveReads::default(), &mut |_, _| {}).unwrap().0;
        assert!(serial.len() > 40, "{} tasks", serial.len());
        let blocked = serial.iter().filter(|r| matches!(r.verdict, Verdict::Blocked { .. })).count();
        assert!(blocked > 0 && blocked < serial.len(), "{blocked} of {} blocked", serial.len());
        let shown = |reports: &[TaskReport<'_>]| format!("{reports:?}");
        let want = shown(&serial);
        let mut helped = 0;
        for pipe in [
            PIPELINE,
            Pipeline { batch: 1, handed_pages: 0, listing_helps: usize::MAX },
            Pipeline { batch: 2, handed_pages: 6, listing_helps: 4 },
            Pipeline { batch: 3, handed_pages: usize::MAX, listing_helps: 0 },
            Pipeline { batch: 7, handed_pages: 1, listing_helps: 9 },
        ] {
            for workers in [2, 3] {
                let got = kernel.check_dump_pipelined(&set, &cpus, &config, workers, pipe, &mut |_, _| {}).unwrap();
                assert!(got.gaps.is_empty());
                assert!(shown(&got.reports) == want, "{pipe:?}, {workers} workers: other reports");
                helped += got.listing_checked;
            }
        }
        assert!(helped > 0, "the listing never checked a batch itself");
    }
}
