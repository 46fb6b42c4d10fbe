//! Every thread of every process, plus each CPU's idle task, as the
//! livepatch code iterates them (`for_each_process_thread`, then
//! `idle_task(cpu)`), read from memory with BTF offsets.

use std::collections::HashSet;

use super::layout::{Field, Layout};
use crate::memory::{Memory, MemoryError};

/// `PF_KTHREAD`.
pub const PF_KTHREAD: u64 = 0x0020_0000;
/// A list longer than this is taken to be corrupt.
pub const MAX_TASKS: usize = 4_000_000;

/// One task as read from its `task_struct` (a snapshot: a live task moves on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// Address of the `task_struct`.
    pub addr: u64,
    /// Thread id (`task->pid`); -1 when unreadable.
    pub pid: i32,
    /// Process id (`task->tgid`); -1 when unreadable.
    pub tgid: i32,
    /// Command name (`task->comm`, at most 15 bytes); "?" when unreadable.
    pub comm: String,
    /// `task->__state` (or `state` before 5.14): TASK_* bits, 0 running.
    pub state: u64,
    /// `task->exit_state` (EXIT_ZOMBIE, EXIT_DEAD); 0 when BTF lacks it.
    pub exit_state: u64,
    /// `task->flags` (PF_* bits, e.g. [`PF_KTHREAD`]).
    pub flags: u64,
    /// `task->on_cpu`: the task is running on a CPU.
    pub on_cpu: bool,
    /// The CPU it runs or last ran on (`task->cpu` or `thread_info.cpu`).
    pub cpu: u32,
    /// Base of the kernel stack (`task->stack`).
    pub stack: u64,
    /// Saved stack pointer of a switched-out task (`task->thread.sp`).
    pub thread_sp: u64,
    /// -1 none, 0 unpatched, 1 patched; None without CONFIG_LIVEPATCH.
    pub patch_state: Option<i32>,
    /// A CPU's idle task.
    pub idle: bool,
    /// Voluntary + involuntary context switches, to notice a moving task.
    pub switches: Option<u64>,
    /// The task_struct (or its thread list) could not be read, e.g. its
    /// page was filtered out of the dump: the task cannot be judged.
    pub unreadable: Option<MemoryError>,
}

impl TaskInfo {
    /// A kernel thread (`PF_KTHREAD` set).
    pub fn kthread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    /// The letter `ps` shows (fs/proc/array.c task_state_array order).
    pub fn state_letter(&self) -> char {
        const LETTERS: [char; 7] = ['S', 'D', 'T', 't', 'X', 'Z', 'P'];
        let bits = (self.state | self.exit_state) & 0x7f;
        if bits == 0 {
            return 'R';
        }
        if self.state == 0x402 {
            return 'I'; // TASK_IDLE
        }
        LETTERS[bits.trailing_zeros() as usize]
    }
}

/// Something the listing went past without reading it: a task may be
/// missing there, so the listing is not known to be complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingGap {
    /// The address that could not be read or followed, when there is one.
    pub addr: Option<u64>,
    /// What was skipped and why, naming the address.
    pub what: String,
}

/// The tasks livepatch would check, and what the listing went past.
#[derive(Clone, Debug, Default)]
pub struct TaskListing {
    /// Every thread, then each online CPU's idle task.
    pub tasks: Vec<TaskInfo>,
    /// Empty when the listing is known to be complete.
    pub gaps: Vec<ListingGap>,
}

impl std::fmt::Display for ListingGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

/// Why the tasks could not be listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskListError {
    /// A list could not be read or bridged.
    #[error("task list: {0}")]
    Memory(#[from] MemoryError),
    /// A list comes back to a node or task seen before.
    #[error("task list loops: task_struct at {addr:#x} seen twice")]
    Loop {
        /// The node or `task_struct` address met twice.
        addr: u64,
    },
    /// More than [`MAX_TASKS`] tasks.
    #[error("task list: more than {MAX_TASKS} tasks, taken as corrupt")]
    TooLong,
    /// The pid IDR fallback was needed but BTF lacks its layout.
    #[error("task list is broken and BTF has no pid IDR layout to fall back on")]
    NoPidIdr,
}

/// Reads one task.
pub fn read_task<M: Memory>(mem: &mut M, l: &Layout, addr: u64) -> Result<TaskInfo, MemoryError> {
    let t = &l.task;
    prefetch_task(mem, l, addr);
    let mut comm = [0u8; 16];
    let n = (t.comm.size as usize).min(16);
    mem.read(addr + t.comm.offset, &mut comm[..n])?;
    let end = comm.iter().position(|&b| b == 0).unwrap_or(n);
    let switches = match (t.nvcsw, t.nivcsw) {
        (Some(a), Some(b)) => Some(a.read_uint(mem, addr)?.wrapping_add(b.read_uint(mem, addr)?)),
        _ => None,
    };
    Ok(TaskInfo {
        addr,
        pid: t.pid.read_int(mem, addr)? as i32,
        tgid: t.tgid.read_int(mem, addr)? as i32,
        comm: String::from_utf8_lossy(&comm[..end]).into_owned(),
        state: t.state.read_uint(mem, addr)?,
        exit_state: match t.exit_state {
            Some(f) => f.read_uint(mem, addr)?,
            None => 0,
        },
        flags: t.flags.read_uint(mem, addr)?,
        on_cpu: t.on_cpu.read_uint(mem, addr)? != 0,
        cpu: t.cpu.read_uint(mem, addr)? as u32,
        stack: t.stack.read_uint(mem, addr)?,
        thread_sp: t.thread_sp.read_uint(mem, addr)?,
        patch_state: match t.patch_state {
            Some(f) => Some(f.read_int(mem, addr)? as i32),
            None => None,
        },
        idle: false,
        switches,
        unreadable: None,
    })
}

/// The bytes [`read_task`] reads, as offsets into the task_struct: from the
/// first field it reads to the end of the last, so that one request at
/// `addr + start` fetches them all.
pub fn task_span(l: &Layout) -> (u64, u64) {
    let t = &l.task;
    let comm = Field { offset: t.comm.offset, size: t.comm.size.min(16) };
    let words = [t.pid, t.tgid, t.state, t.flags, t.on_cpu, t.cpu, t.stack, t.thread_sp].into_iter();
    let optional = [t.exit_state, t.patch_state, t.nvcsw, t.nivcsw].into_iter().flatten();
    let fields = words.chain(optional).map(|f| Field { size: f.size.clamp(1, 8), ..f }).chain([comm]);
    fields.fold((u64::MAX, 0), |(lo, hi), f| (lo.min(f.offset), hi.max(f.offset.saturating_add(f.size))))
}

/// [`task_span`] and the list links the listing follows: what one request
/// should fetch of a task_struct (not its tail, the FPU state).
fn listing_span(l: &Layout) -> (u64, u64) {
    let t = &l.task;
    let links = [Some(t.tasks), Some(t.signal), t.thread_node, t.thread_group].into_iter().flatten();
    links.fold(task_span(l), |(lo, hi), f| (lo.min(f.offset), hi.max(f.offset.saturating_add(f.size))))
}

/// Reads `addr`'s task_struct ahead: see [`listing_span`].
fn prefetch_task<M: Memory>(mem: &mut M, l: &Layout, addr: u64) {
    let (lo, hi) = listing_span(l);
    mem.prefetch(addr.wrapping_add(lo), hi.saturating_sub(lo));
}

/// A task whose fields could not be read: only its address is known.
pub fn unreadable_task(addr: u64, err: MemoryError) -> TaskInfo {
    TaskInfo {
        addr,
        pid: -1,
        tgid: -1,
        comm: String::from("?"),
        state: 0,
        exit_state: 0,
        flags: 0,
        on_cpu: false,
        cpu: 0,
        stack: 0,
        thread_sp: 0,
        patch_state: None,
        idle: false,
        switches: None,
        unreadable: Some(err),
    }
}

/// Follows a circular `list_head` from `head`, returning each node address
/// (not the head). `visit` sees each node, in list order, before its next
/// pointer is read: it may read the node's struct ahead in one request.
/// A node whose page cannot be read (filtered out of a dump) is bridged by
/// walking back from the head through `prev`: the unreadable node is still
/// returned (its task will be judged unreliable), and the walk fails only
/// when a second hole leaves nodes unknown.
/// `first`, when known, is the head's next node: the head is then not
/// read unless a hole must be bridged.
fn walk_list<M: Memory>(
    mem: &mut M,
    head: u64,
    next_off: u64,
    first: Option<u64>,
    mut visit: impl FnMut(&mut M, u64) -> Result<(), TaskListError>,
) -> Result<Vec<u64>, TaskListError> {
    let prev_off = next_off + 8;
    let mut seen = HashSet::new();
    let mut nodes = Vec::new();
    let mut node = match first {
        Some(node) => node,
        None => mem.read_u64(head + next_off)?,
    };
    let mut hole = None;
    while node != head {
        if !seen.insert(node) {
            return Err(TaskListError::Loop { addr: node });
        }
        if seen.len() > MAX_TASKS {
            return Err(TaskListError::TooLong);
        }
        nodes.push(node);
        visit(mem, node)?;
        match mem.read_u64(node + next_off) {
            Ok(next) => node = next,
            Err(e) => {
                hole = Some(e);
                break;
            }
        }
    }
    let Some(err) = hole else { return Ok(nodes) };
    // Back from the head to the node after the hole.
    let Some(&missing) = nodes.last() else { return Err(err.into()) };
    let mut back = Vec::new();
    let mut node = mem.read_u64(head + prev_off)?;
    while node != missing {
        if node == head || !seen.insert(node) {
            return Err(TaskListError::Loop { addr: node });
        }
        if seen.len() > MAX_TASKS {
            return Err(TaskListError::TooLong);
        }
        back.push(node);
        // A second hole: what lies between is unknown.
        node = mem.read_u64(node + prev_off).map_err(|_| TaskListError::Memory(err))?;
    }
    for &node in back.iter().rev() {
        visit(mem, node)?;
    }
    nodes.extend(back.into_iter().rev());
    Ok(nodes)
}

/// A task as the listing hands it on: read as it was found, or only found.
pub(crate) trait Listed {
    /// Address of the `task_struct` (what the listing checks for loops).
    fn addr(&self) -> u64;
}

impl Listed for TaskInfo {
    fn addr(&self) -> u64 {
        self.addr
    }
}

impl Listed for u64 {
    fn addr(&self) -> u64 {
        *self
    }
}

/// A task found by the listing and not read yet, so that another thread
/// (with its own reader) can read it: the listing then only follows links.
#[derive(Clone, Debug)]
pub(crate) enum FoundTask {
    /// The `task_struct` at `addr`, to be read; `page`: the physical
    /// address and bytes of one of its pages, as the listing's reader
    /// decoded it (a compressed dump), so that it is not decoded twice.
    Read { addr: u64, idle: bool, page: Option<(u64, Box<[u8]>)> },
    /// A task already known, e.g. unreadable where it was found.
    Known(TaskInfo),
}

impl FoundTask {
    /// The task as [`list_threads`] would have read it.
    pub(crate) fn read<M: Memory>(self, mem: &mut M, l: &Layout) -> TaskInfo {
        match self {
            FoundTask::Read { addr, idle, page: _ } => {
                let mut task = read_task(mem, l, addr).unwrap_or_else(|e| unreadable_task(addr, e));
                task.idle = idle;
                task
            }
            FoundTask::Known(t) => t,
        }
    }
}

/// The threads of the process led by `leader`, each passed to `found` as
/// its list link is followed (while the link's page is fresh in the
/// source's cache).
fn process_threads<M: Memory, T>(
    mem: &mut M,
    l: &Layout,
    leader: u64,
    found: &mut dyn FnMut(&mut M, u64) -> T,
) -> Result<Vec<T>, TaskListError> {
    let t = &l.task;
    let mut threads = Vec::new();
    if let (Some(node_f), Some(head_f)) = (t.thread_node, t.signal_thread_head) {
        // 6.7+: signal->thread_head lists every thread via thread_node.
        // The leader is normally first (it made the list): when its node's
        // prev is the head, the head's next is the leader's node, and the
        // signal_struct, a page of its own, need not be read.
        let signal = t.signal.read_uint(mem, leader)?;
        let head = signal + head_f.offset;
        let node = leader.wrapping_add(node_f.offset);
        let first = mem.read_u64(node.wrapping_add(l.list_next + 8)).ok().filter(|&prev| prev == head).map(|_| node);
        walk_list(mem, head, l.list_next, first, |mem, n| {
            threads.push(found(mem, n.wrapping_sub(node_f.offset)));
            Ok(())
        })?;
    } else if let Some(group) = t.thread_group {
        // Before 6.7: a circular list through the leader itself.
        threads.push(found(mem, leader));
        walk_list(mem, leader + group.offset, l.list_next, None, |mem, n| {
            threads.push(found(mem, n.wrapping_sub(group.offset)));
            Ok(())
        })?;
    }
    Ok(threads)
}

/// Every thread of every process, in the kernel's order: processes from
/// `init_task.tasks`, and each process's threads. Each process is read as
/// the process list reaches it, so that each task_struct is fetched once.
pub fn list_threads<M: Memory>(mem: &mut M, l: &Layout, init_task: u64) -> Result<Vec<TaskInfo>, TaskListError> {
    let mut out = Vec::new();
    let mut read = |mem: &mut M, addr: u64| read_task(mem, l, addr).unwrap_or_else(|e| unreadable_task(addr, e));
    let mut broken = |mem: &mut M, leader: u64, e: MemoryError| {
        let mut task = read_task(mem, l, leader).unwrap_or_else(|e| unreadable_task(leader, e));
        if task.unreadable.is_none() {
            task.unreadable = Some(e);
        }
        task
    };
    list_threads_with(mem, l, init_task, &mut read, &mut broken, &mut |threads| {
        out.extend(threads);
        Ok(())
    })?;
    Ok(out)
}

/// As [`list_threads`], handing each process's threads to `emit` in order:
/// `found` makes each thread as its link is followed, `broken` the leader
/// of a process whose thread list cannot be read.
pub(crate) fn list_threads_with<M: Memory, T: Listed>(
    mem: &mut M,
    l: &Layout,
    init_task: u64,
    found: &mut dyn FnMut(&mut M, u64) -> T,
    broken: &mut dyn FnMut(&mut M, u64, MemoryError) -> T,
    emit: &mut dyn FnMut(Vec<T>) -> Result<(), TaskListError>,
) -> Result<(), TaskListError> {
    let t = &l.task;
    let mut seen = HashSet::new();
    walk_list(mem, init_task + t.tasks.offset, l.list_next, None, |mem, node| {
        let leader = node.wrapping_sub(t.tasks.offset);
        // The leader's list links, signal pointer and fields in one request.
        prefetch_task(mem, l, leader);
        // A process whose thread list cannot be read still appears, as its
        // leader marked unreadable: its threads are unknown, so nothing
        // about it can be called switchable.
        let threads = match process_threads(mem, l, leader, found) {
            Ok(t) => t,
            Err(TaskListError::Memory(e)) => vec![broken(mem, leader, e)],
            Err(e) => return Err(e),
        };
        for task in &threads {
            if !seen.insert(task.addr()) {
                return Err(TaskListError::Loop { addr: task.addr() });
            }
            if seen.len() > MAX_TASKS {
                return Err(TaskListError::TooLong);
            }
        }
        emit(threads)
    })?;
    Ok(())
}

/// Every thread, found through the pid IDR of `init_pid_ns` (at
/// `ns_addr`) instead of the task list: each `struct pid` of a thread links
/// to its task. Used when a filtered dump has holes in the task list; a
/// task whose page is missing is still listed, as unreadable. A `struct
/// pid` that cannot be read is listed as an unreadable task at the pid's
/// address (its task, if any, is unknown) and named in `gaps`, as is a
/// part of the IDR that is not followed.
pub fn list_threads_by_pid<M: Memory>(
    mem: &mut M,
    l: &Layout,
    ns_addr: u64,
    gaps: &mut Vec<ListingGap>,
) -> Result<Vec<TaskInfo>, TaskListError> {
    let Some(p) = l.pid_idr else { return Err(TaskListError::NoPidIdr) };
    let head = mem.read_u64(ns_addr + p.ns_xa_head.offset)?;
    let mut pids = Vec::new();
    // Depth-first over xarray nodes; internal entries have low bits 0b10.
    let mut stack = vec![(head, 0u32)];
    while let Some((entry, depth)) = stack.pop() {
        if entry == 0 {
            continue;
        }
        if depth > 16 {
            // 16 levels of 64 slots are more pids than there can be.
            gaps.push(ListingGap {
                addr: Some(entry),
                what: format!(
                    "pid IDR entry {entry:#x} is deeper than 16 levels (corrupt): the tasks under it are not listed"
                ),
            });
            continue;
        }
        let internal = entry & 3 == 2;
        if internal && entry > 4096 {
            let node = entry - 2;
            let slots = node + p.node_slots.offset;
            // Read all slots at once; push in reverse so pids come out in order.
            let raw = crate::memory::read_vec(mem, slots, (p.node_slot_count * 8) as usize)?;
            for c in raw.chunks_exact(8).rev() {
                let e = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                stack.push((e, depth + 1));
            }
        } else if entry & 3 == 0 {
            pids.push(entry);
            if pids.len() > MAX_TASKS {
                return Err(TaskListError::TooLong);
            }
        }
    }
    let mut out = Vec::with_capacity(pids.len());
    let mut seen = HashSet::new();
    for pid in pids {
        let link = match mem.read_u64(pid + p.pid_first_task.offset) {
            Ok(link) => link,
            Err(e) => {
                gaps.push(ListingGap {
                    addr: Some(pid),
                    what: format!(
                        "struct pid at {pid:#x} (pid IDR) could not be read ({e}): the task it links to, if any, is listed as unreadable"
                    ),
                });
                let mut t = unreadable_task(pid, e);
                if let Ok(nr) = p.pid_nr.read_int(mem, pid) {
                    t.pid = nr as i32;
                }
                out.push(t);
                continue;
            }
        };
        if link == 0 {
            continue; // a pid without a task (a process group id, say)
        }
        let addr = link.wrapping_sub(p.task_pid_link.offset);
        if seen.insert(addr) {
            out.push(read_task(mem, l, addr).unwrap_or_else(|e| {
                let mut t = unreadable_task(addr, e);
                if let Ok(nr) = p.pid_nr.read_int(mem, pid) {
                    t.pid = nr as i32;
                }
                t
            }));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;

    use super::super::layout::Field;

    fn f(offset: u64, size: u64) -> Field {
        Field { offset, size }
    }

    fn layout(thread_node: bool) -> Layout {
        use super::super::layout::*;
        Layout {
            task: TaskLayout {
                size: 0x200,
                tasks: f(0x10, 16),
                pid: f(0x20, 4),
                tgid: f(0x24, 4),
                comm: f(0x30, 16),
                stack: f(0x40, 8),
                thread_sp: f(0x48, 8),
                on_cpu: f(0x50, 4),
                cpu: f(0x54, 4),
                state: f(0x58, 4),
                flags: f(0x5c, 4),
                exit_state: None,
                patch_state: Some(f(0x60, 4)),
                signal: f(0x68, 8),
                thread_node: thread_node.then_some(f(0x70, 16)),
                signal_thread_head: thread_node.then_some(f(0x8, 16)),
                thread_group: (!thread_node).then_some(f(0x80, 16)),
                nvcsw: None,
                nivcsw: None,
            },
            pid_idr: None,
            klp: None,
            cpu_stacks: None,
            frame: SwitchFrameLayout { size: 56, bp: f(40, 8), ret_addr: f(48, 8) },
            module: None,
            rq: None,
            list_next: 0,
        }
    }

    struct Img(Vec<u8>);
    const BASE: u64 = 0xffff888000000000;
    impl Img {
        fn put(&mut self, addr: u64, v: u64) {
            let o = (addr - BASE) as usize;
            self.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Links `nodes` into a circular list at `head` (next at +0, prev at +8).
    fn link(m: &mut Img, head: u64, nodes: &[u64]) {
        let ring: Vec<u64> = std::iter::once(head).chain(nodes.iter().copied()).collect();
        for (i, &n) in ring.iter().enumerate() {
            m.put(n, ring[(i + 1) % ring.len()]);
            m.put(n + 8, ring[(i + ring.len() - 1) % ring.len()]);
        }
    }

    /// init (0x1000), process A (0x2000) with thread 0x3000, process B (0x4000).
    fn world(thread_node: bool) -> (Img, Layout) {
        let l = layout(thread_node);
        let mut m = Img(vec![0; 0x10000]);
        let t = |a: u64| BASE + a;
        let tasks = l.task.tasks.offset;
        // init.tasks -> A -> B -> init
        m.put(t(0x1000) + tasks, t(0x2000) + tasks);
        m.put(t(0x2000) + tasks, t(0x4000) + tasks);
        m.put(t(0x4000) + tasks, t(0x1000) + tasks);
        for (a, pid, tgid) in [(0x2000, 10, 10), (0x3000, 11, 10), (0x4000, 20, 20)] {
            m.put(t(a) + 0x20, (tgid << 32) | pid);
            m.put(t(a) + 0x30, u64::from_le_bytes(*b"worker\0\0"));
            m.put(t(a) + 0x60, 0xffff_ffff); // patch_state -1
        }
        if thread_node {
            // A's signal at 0x8000 lists A and its thread; B's at 0x9000 lists B.
            let (sa, sb) = (t(0x8000), t(0x9000));
            m.put(t(0x2000) + 0x68, sa);
            m.put(t(0x3000) + 0x68, sa);
            m.put(t(0x4000) + 0x68, sb);
            // Each list: head -> ... -> head, next and prev.
            for (head, nodes) in [(sa + 8, vec![t(0x2000) + 0x70, t(0x3000) + 0x70]), (sb + 8, vec![t(0x4000) + 0x70])]
            {
                link(&mut m, head, &nodes);
            }
        } else {
            m.put(t(0x2000) + 0x80, t(0x3000) + 0x80);
            m.put(t(0x3000) + 0x80, t(0x2000) + 0x80);
            m.put(t(0x4000) + 0x80, t(0x4000) + 0x80);
        }
        (m, l)
    }

    #[test]
    fn both_thread_list_layouts() {
        for thread_node in [true, false] {
            let (m, l) = world(thread_node);
            let mut mem = SliceMemory::new(BASE, &m.0);
            let ts = list_threads(&mut mem, &l, BASE + 0x1000).unwrap();
            let ids: Vec<(i32, i32)> = ts.iter().map(|t| (t.pid, t.tgid)).collect();
            assert_eq!(ids, [(10, 10), (11, 10), (20, 20)], "thread_node={thread_node}");
            assert_eq!(ts[0].comm, "worker");
            assert_eq!(ts[0].patch_state, Some(-1));
            assert_eq!(ts[0].state_letter(), 'R');
        }
    }

    /// A process whose leader comes first in its thread list is listed
    /// without reading its signal_struct; one whose leader does not come
    /// first is listed from the signal_struct, in its order.
    #[test]
    fn thread_lists_start_at_the_leader_or_at_the_head() {
        let ids = |m: &[u8], l: &Layout| -> Result<Vec<(i32, i32)>, TaskListError> {
            let mut mem = SliceMemory::new(BASE, m);
            Ok(list_threads(&mut mem, l, BASE + 0x1000)?.iter().map(|t| (t.pid, t.tgid)).collect())
        };
        let (m, l) = world(true);
        // The signal_structs (0x8000 on) are not in memory.
        assert_eq!(ids(&m.0[..0x8000], &l).unwrap(), [(10, 10), (11, 10), (20, 20)]);
        // A's thread first, then A: the head is read, and its order kept.
        let (mut m, l) = world(true);
        link(&mut m, BASE + 0x8008, &[BASE + 0x3070, BASE + 0x2070]);
        assert_eq!(ids(&m.0, &l).unwrap(), [(11, 10), (10, 10), (20, 20)]);
        assert!(
            list_threads(&mut SliceMemory::new(BASE, &m.0[..0x8000]), &l, BASE + 0x1000)
                .unwrap()
                .iter()
                .any(|t| t.unreadable.is_some())
        );
    }

    #[test]
    fn loops_and_holes_are_named_errors() {
        let (mut m, l) = world(true);
        // B.tasks points back to A instead of init: a loop that misses the head.
        m.put(BASE + 0x4000 + 0x10, BASE + 0x2000 + 0x10);
        let mut mem = SliceMemory::new(BASE, &m.0);
        assert_eq!(
            list_threads(&mut mem, &l, BASE + 0x1000).unwrap_err(),
            TaskListError::Loop { addr: BASE + 0x2000 + 0x10 }
        );
        let (mut m, l) = world(true);
        m.put(BASE + 0x2000 + 0x10, 0xdead_0000_0000);
        let mut mem = SliceMemory::new(BASE, &m.0);
        assert!(matches!(list_threads(&mut mem, &l, BASE + 0x1000), Err(TaskListError::Memory(_))));
    }

    /// Memory with one unreadable page (at the second field).
    struct Holey<'a>(SliceMemory<'a>, u64);
    impl Memory for Holey<'_> {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            if addr >= self.1 && addr < self.1 + 0x1000 {
                return Err(MemoryError::new(addr, crate::memory::MemoryErrorKind::NotInDump));
            }
            self.0.read(addr, buf)
        }
    }

    /// A hole in the middle of the process list is bridged through prev
    /// pointers; the process behind the hole is listed but unreadable.
    #[test]
    fn one_hole_is_bridged_backwards() {
        let (mut m, l) = world(true);
        let tasks = l.task.tasks.offset;
        // prev links: init <- B <- A, so the walk back from init reaches B.
        m.put(BASE + 0x1000 + tasks + 8, BASE + 0x4000 + tasks);
        m.put(BASE + 0x4000 + tasks + 8, BASE + 0x2000 + tasks);
        // A's page (0x2000) is gone: A is listed as unreadable, and its
        // thread list (through A's signal pointer) is unknown too.
        let mut mem = Holey(SliceMemory::new(BASE, &m.0), BASE + 0x2000);
        let ts = list_threads(&mut mem, &l, BASE + 0x1000).unwrap();
        let addrs: Vec<u64> = ts.iter().map(|t| t.addr - BASE).collect();
        assert_eq!(addrs, [0x2000, 0x4000]);
        assert!(ts[0].unreadable.is_some(), "A cannot be read");
        assert_eq!(ts[1].pid, 20);
        assert!(ts[1].unreadable.is_none());
    }

    /// The pid IDR: a struct pid that cannot be read is listed as an
    /// unreadable task at its address and named as a gap; nothing is
    /// skipped silently.
    #[test]
    fn unreadable_struct_pid_is_a_named_gap() {
        use super::super::layout::PidIdrLayout;
        let (mut m, mut l) = world(true);
        l.pid_idr = Some(PidIdrLayout {
            ns_xa_head: f(0x8, 8),
            node_shift: f(0, 1),
            node_slots: f(0x10, 32),
            node_slot_count: 4,
            pid_first_task: f(0x8, 8),
            task_pid_link: f(0x90, 16),
            pid_nr: f(0x20, 4),
        });
        let (ns, node, pid_a, pid_b, pid_c) =
            (BASE + 0x5000, BASE + 0x6000, BASE + 0x7000, BASE + 0xa000, BASE + 0xb000);
        m.put(ns + 0x8, node | 2);
        m.put(node + 0x10, pid_a);
        m.put(node + 0x18, pid_b);
        m.put(node + 0x20, pid_c);
        m.put(pid_a + 0x8, BASE + 0x2000 + 0x90);
        m.put(pid_c + 0x8, BASE + 0x4000 + 0x90);
        // pid_b's page is gone.
        let mut mem = Holey(SliceMemory::new(BASE, &m.0), pid_b);
        let mut gaps = Vec::new();
        let ts = list_threads_by_pid(&mut mem, &l, ns, &mut gaps).unwrap();
        let got: Vec<(u64, i32, bool)> = ts.iter().map(|t| (t.addr - BASE, t.pid, t.unreadable.is_some())).collect();
        assert_eq!(got, [(0x2000, 10, false), (0xa000, -1, true), (0x4000, 20, false)]);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].addr, Some(pid_b));
        assert!(gaps[0].to_string().contains(&format!("struct pid at {pid_b:#x}")), "{}", gaps[0]);
        // Intact: no gap.
        let mut gaps = Vec::new();
        let ts = list_threads_by_pid(&mut SliceMemory::new(BASE, &m.0), &l, ns, &mut gaps).unwrap();
        assert_eq!(ts.len(), 2, "pid_b links to no task");
        assert!(gaps.is_empty());
    }

    /// A task read from its span alone reads as from all of memory.
    #[test]
    fn a_task_reads_from_its_span() {
        let (m, l) = world(true);
        let (lo, hi) = task_span(&l);
        assert_eq!((lo, hi), (0x20, 0x64), "pid to patch_state");
        let addr = BASE + 0x3000;
        let mut mem = SliceMemory::new(BASE, &m.0);
        let want = read_task(&mut mem, &l, addr).unwrap();
        let span = &m.0[(addr + lo - BASE) as usize..(addr + hi - BASE) as usize];
        assert_eq!(read_task(&mut SliceMemory::new(addr + lo, span), &l, addr).unwrap(), want);
        assert!(read_task(&mut SliceMemory::new(addr + lo, &span[..span.len() - 1]), &l, addr).is_err());
    }

    #[test]
    fn state_letters() {
        let mut t = TaskInfo {
            addr: 0,
            pid: 1,
            tgid: 1,
            comm: String::new(),
            state: 1,
            exit_state: 0,
            flags: PF_KTHREAD,
            on_cpu: false,
            cpu: 0,
            stack: 0,
            thread_sp: 0,
            patch_state: None,
            idle: false,
            switches: None,
            unreadable: None,
        };
        assert_eq!(t.state_letter(), 'S');
        t.state = 2;
        assert_eq!(t.state_letter(), 'D');
        t.state = 0x402;
        assert_eq!(t.state_letter(), 'I');
        t.state = 0;
        t.exit_state = 0x20;
        assert_eq!(t.state_letter(), 'Z');
        assert!(t.kthread());
    }
}
