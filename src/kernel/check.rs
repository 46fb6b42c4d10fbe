//! Per-task decisions over a whole kernel: list the tasks as livepatch does,
//! start each walk where the kernel would (a blocked task's switch frame, a
//! running CPU's registers), walk with ORC and judge against the patch set.

use super::image::{CpuRegs, Kernel};
use super::tasks::{list_threads, list_threads_by_pid, read_task, unreadable_task, TaskInfo, TaskListError};
use crate::memory::{Memory, PhysMemory};
use crate::patchset::PatchSet;
use crate::verdict::{decide, find_hits, PatchHit, Verdict};
use crate::walk::{walk_orc, Frame, Reliability, StackBounds, WalkConfig, WalkStart};

/// One task's outcome.
#[derive(Clone, Debug)]
pub struct TaskReport<'set> {
    pub task: TaskInfo,
    pub frames: Vec<Frame>,
    /// None when the task was not walked (running, no registers).
    pub reliability: Option<Reliability>,
    pub hits: Vec<PatchHit>,
    pub verdict: Verdict<'set>,
}

impl<P: PhysMemory> Kernel<P> {
    /// Every thread, then each online CPU's idle task (as klp does).
    pub fn tasks(&mut self) -> Result<Vec<TaskInfo>, TaskListError> {
        let mut tasks = match list_threads(&mut self.mem, &self.layout, self.init_task) {
            Ok(t) => t,
            // Holes in the task list (a filtered dump): every thread also
            // has a struct pid in init_pid_ns's IDR.
            Err(TaskListError::Memory(e)) => match self.symbol("init_pid_ns") {
                Some(ns) => {
                    self.warnings.push(format!("task list broken ({e}); tasks listed through the pid IDR"));
                    list_threads_by_pid(&mut self.mem, &self.layout, ns)?
                }
                None => return Err(TaskListError::Memory(e)),
            },
            Err(e) => return Err(e),
        };
        let (Some(rq), Some(runqueues)) = (self.layout.rq, self.symbol("runqueues")) else {
            // Without struct rq, at least CPU 0's idle task.
            let mut t = read_task(&mut self.mem, &self.layout, self.init_task)?;
            t.idle = true;
            tasks.push(t);
            return Ok(tasks);
        };
        for cpu in 0..self.nr_cpus {
            if !self.online.get(cpu as usize).copied().unwrap_or(false) {
                continue; // the kernel switches offline idle tasks at once
            }
            let Some(rq_addr) = self.per_cpu(runqueues, cpu) else { continue };
            let mut t = match self.mem.read_u64(rq_addr + rq.idle.offset) {
                Ok(0) => continue,
                Ok(idle) => read_task(&mut self.mem, &self.layout, idle).unwrap_or_else(|e| unreadable_task(idle, e)),
                Err(e) => unreadable_task(rq_addr, e),
            };
            t.idle = true;
            tasks.push(t);
        }
        Ok(tasks)
    }

    /// Where a task's walk starts, or None when it cannot be walked.
    pub fn walk_start(&mut self, task: &TaskInfo, cpus: &[CpuRegs]) -> Option<WalkStart> {
        if task.on_cpu {
            let regs = cpus.iter().find(|c| c.cpu == task.cpu)?.regs;
            return Some(WalkStart::from_regs(regs));
        }
        let f = self.layout.frame;
        let sp = task.thread_sp;
        let ip = self.mem.read_u64(sp + f.ret_addr.offset).ok()?;
        let bp = self.mem.read_u64(sp + f.bp.offset).ok()?;
        Some(WalkStart::blocked(ip, sp + f.size, bp, ip == self.ret_from_fork))
    }

    /// Walks one task into `frames`.
    pub fn walk_task(
        &mut self,
        task: &TaskInfo,
        cpus: &[CpuRegs],
        config: &WalkConfig,
        frames: &mut Vec<Frame>,
    ) -> Option<Reliability> {
        frames.clear();
        if let Some(e) = task.unreadable {
            return Some(Reliability::Unreliable {
                reason: crate::walk::UnreliableReason::Unreadable { addr: e.addr, kind: e.kind },
                frame: 0,
            });
        }
        let start = match self.walk_start(task, cpus) {
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
        let bounds = StackBounds::task(task.stack, task.stack.wrapping_add(self.thread_size));
        Some(walk_orc(&self.orc, &mut self.mem, &mut self.code, &bounds, start, config, frames))
    }
}

/// Checks every task against `set`.
pub fn check_kernel<'set, P: PhysMemory>(
    kernel: &mut Kernel<P>,
    set: &'set PatchSet,
    cpus: &[CpuRegs],
    config: &WalkConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<TaskReport<'set>>, TaskListError> {
    let tasks = kernel.tasks()?;
    let total = tasks.len();
    // --max-frames may be huge; the walk grows the buffer as it goes.
    let mut frames = Vec::with_capacity(config.max_frames.min(1024));
    let mut out = Vec::with_capacity(total);
    for (i, task) in tasks.into_iter().enumerate() {
        progress(i, total);
        let reliability = kernel.walk_task(&task, cpus, config, &mut frames);
        let mut hits = Vec::new();
        let verdict = match &reliability {
            // A task on a CPU is busy for the kernel (-EBUSY), whatever its stack.
            _ if task.on_cpu => {
                if let Some(r) = &reliability {
                    find_hits(&frames, r, set, &mut hits);
                }
                Verdict::Running
            }
            Some(r) => {
                find_hits(&frames, r, set, &mut hits);
                decide(r, set, &hits)
            }
            None => Verdict::Running,
        };
        out.push(TaskReport { task, frames: frames.clone(), reliability, hits, verdict });
    }
    progress(total, total);
    Ok(out)
}
