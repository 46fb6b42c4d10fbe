//! A live process stopped with ptrace (Linux x86-64).
//!
//! Every thread is attached with `PTRACE_SEIZE` and stopped with
//! `PTRACE_INTERRUPT`: unlike `PTRACE_ATTACH` this sends no SIGSTOP, so the
//! process sees nothing but syscalls that restart. `/proc/PID/task` is
//! re-read until no thread appears that is not stopped (only a running
//! thread can create one). Registers come from `PTRACE_GETREGS`, memory
//! from `process_vm_readv` (falling back to `/proc/PID/mem`).
//!
//! [`Attached`] detaches every thread when dropped, on error and panic
//! paths too, re-injecting any signal whose delivery stop it swallowed.
//! ptrace ties a tracee to the tracer *thread*, so `Attached` is neither
//! `Send` nor `Sync`: attach, check and detach happen on one thread.

use std::collections::HashMap;
use std::fs::File;
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::{Auxv, Snapshot, ThreadInfo, parse_maps};
use crate::arch::x86_64::{Reg, Regs};
use crate::memory::{Memory, MemoryError, MemoryErrorKind};

const PTRACE_GETREGS: libc::c_uint = 12;
const PTRACE_DETACH: libc::c_uint = 17;
const PTRACE_SEIZE: libc::c_uint = 0x4206;
const PTRACE_INTERRUPT: libc::c_uint = 0x4207;
const PTRACE_EVENT_STOP: i32 = 128;
/// The 32-bit (compat) user code segment; 64-bit code runs with 0x33.
const USER_CS_32: u64 = 0x23;

/// Why a process could not be checked. Each names the pid (and thread).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PtraceError {
    /// No such process (or no `/proc/PID/task` to list its threads).
    #[error("no process {pid}")]
    NoSuchProcess {
        /// The process's pid.
        pid: i32,
    },
    /// The pid is lpstack's own: a process cannot trace itself.
    #[error("process {pid} is lpstack itself")]
    OwnProcess {
        /// The process's pid.
        pid: i32,
    },
    /// ptrace was refused (EPERM).
    #[error("ptrace of thread {tid} of process {pid} denied (EPERM): {}", denied_hint(*tracer, *yama))]
    Denied {
        /// The process's pid.
        pid: i32,
        /// The thread's ID.
        tid: i32,
        /// The pid already tracing the process (`TracerPid`), if any.
        tracer: Option<i32>,
        /// `kernel.yama.ptrace_scope`, when Yama is present.
        yama: Option<u8>,
    },
    /// The process exited during the check.
    #[error("process {pid} exited during the check")]
    Exited {
        /// The process's pid.
        pid: i32,
    },
    /// A ptrace request failed.
    #[error("{op} on thread {tid} of process {pid}: {}", std::io::Error::from_raw_os_error(*errno))]
    Syscall {
        /// The process's pid.
        pid: i32,
        /// The thread's ID.
        tid: i32,
        /// The ptrace request, e.g. `"PTRACE_SEIZE"`.
        op: &'static str,
        /// The `errno` it failed with.
        errno: i32,
    },
    /// A `/proc/PID/` file could not be read.
    #[error("/proc/{pid}/{file}: {}", std::io::Error::from_raw_os_error(*errno))]
    Proc {
        /// The process's pid.
        pid: i32,
        /// The file under `/proc/PID/`, e.g. `"maps"`.
        file: &'static str,
        /// The `errno` reading it failed with.
        errno: i32,
    },
    /// `/proc/PID/maps` could not be parsed.
    #[error("/proc/{pid}/maps: {err}")]
    Maps {
        /// The process's pid.
        pid: i32,
        /// What was wrong.
        err: super::maps::MapsError,
    },
    /// A thread runs 32-bit (compat) code, which is not checked.
    #[error("thread {tid} of process {pid} runs 32-bit code (cs {cs:#x}); only x86-64 is checked")]
    Compat {
        /// The process's pid.
        pid: i32,
        /// The thread's ID.
        tid: i32,
        /// The thread's code segment selector (0x23 for 32-bit code).
        cs: u64,
    },
}

fn denied_hint(tracer: Option<i32>, yama: Option<u8>) -> String {
    if let Some(t) = tracer {
        return format!("it is already traced by process {t} (a debugger?)");
    }
    let yama = match yama {
        Some(1) => {
            "; kernel.yama.ptrace_scope is 1 (only descendants may be traced: run as root or with CAP_SYS_PTRACE)"
        }
        Some(2) => "; kernel.yama.ptrace_scope is 2 (only CAP_SYS_PTRACE may trace)",
        Some(3) => "; kernel.yama.ptrace_scope is 3 (ptrace is disabled until reboot)",
        _ => "",
    };
    format!("run as the process's owner, as root or with CAP_SYS_PTRACE{yama}")
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// How long to wait for a thread to stop. A thread in uninterruptible
/// sleep (D) stops only when it leaves the kernel; past the timeout it is
/// reported as running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachOptions {
    /// How long to wait for each thread to stop (default 2 s).
    pub stop_timeout: Duration,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions { stop_timeout: Duration::from_secs(2) }
    }
}

/// How a thread's stop was reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// Our PTRACE_INTERRUPT.
    Interrupt,
    /// The process was stopped (SIGSTOP...): a group-stop. It stays
    /// stopped after detach, as before.
    GroupStop {
        /// The stopping signal (SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU).
        signal: i32,
    },
    /// A signal was about to be delivered; it is re-injected on detach.
    Signal {
        /// The signal number.
        signal: i32,
    },
}

#[derive(Debug)]
struct Tracee {
    tid: i32,
    /// None: seized but not (yet) stopped.
    stop: Option<StopKind>,
    state: char,
    comm: String,
}

/// A process whose threads are all stopped. Drop detaches them.
#[derive(Debug)]
pub struct Attached {
    pid: i32,
    tracees: Vec<Tracee>,
    notes: Vec<String>,
    options: AttachOptions,
    /// ptrace requests must come from the attaching thread.
    _same_thread: PhantomData<*const ()>,
}

enum Wait {
    Stopped(StopKind),
    Gone,
    Timeout,
}

fn proc_path(pid: i32, rest: &str) -> String {
    format!("/proc/{pid}/{rest}")
}

/// Thread ids of a process, in the kernel's list order (main thread first).
fn list_tasks(pid: i32) -> Result<Vec<i32>, i32> {
    let dir = std::fs::read_dir(proc_path(pid, "task")).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut tids: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    // readdir order is the thread list's; keep the main thread first anyway.
    tids.sort_by_key(|&t| t != pid);
    Ok(tids)
}

/// `(state letter, comm)` of a thread from /proc/PID/task/TID/stat; the
/// comm may hold spaces and parentheses, so the state follows the last ')'.
fn task_state(pid: i32, tid: i32) -> Option<(char, String)> {
    let stat = std::fs::read_to_string(proc_path(pid, &format!("task/{tid}/stat"))).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let state = stat.get(close + 1..)?.trim_start().chars().next()?;
    Some((state, comm))
}

/// Whether thread `tid` is gone or has begun to exit (zombie or dead):
/// once set, a task's exit state is never cleared.
fn exiting(pid: i32, tid: i32) -> bool {
    task_state(pid, tid).is_none_or(|(state, _)| matches!(state, 'Z' | 'X' | 'x'))
}

/// The tracer of thread `tid`, if any.
fn tracer_of(pid: i32, tid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(proc_path(pid, &format!("task/{tid}/status"))).ok()?;
    let line = status.lines().find(|l| l.starts_with("TracerPid:"))?;
    line.split_whitespace().nth(1)?.parse().ok().filter(|&t| t != 0)
}

fn yama_scope() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok()?.trim().parse().ok()
}

fn ptrace(req: libc::c_uint, tid: i32, addr: usize, data: usize) -> Result<libc::c_long, i32> {
    // SAFETY: the requests used here take integers or, for GETREGS, a
    // pointer to a user_regs_struct owned by the caller.
    let r = unsafe { libc::ptrace(req, tid, addr as *mut libc::c_void, data as *mut libc::c_void) };
    if r == -1 { Err(errno()) } else { Ok(r) }
}

fn decode_stop(status: i32) -> Wait {
    if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
        return Wait::Gone;
    }
    if !libc::WIFSTOPPED(status) {
        return Wait::Timeout;
    }
    let signal = libc::WSTOPSIG(status);
    let event = (status >> 16) & 0xff;
    if event == PTRACE_EVENT_STOP {
        // Under SEIZE a group-stop reports the stopping signal; our
        // interrupt reports SIGTRAP.
        return match signal {
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
                Wait::Stopped(StopKind::GroupStop { signal })
            }
            _ => Wait::Stopped(StopKind::Interrupt),
        };
    }
    if event != 0 {
        return Wait::Stopped(StopKind::Interrupt);
    }
    Wait::Stopped(StopKind::Signal { signal })
}

/// Waits for `tid` to report a stop, polling so that a thread that never
/// stops cannot hang the check.
fn wait_stop(tid: i32, timeout: Duration) -> Wait {
    let deadline = Instant::now() + timeout;
    let mut polls = 0u32;
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r == tid {
            match decode_stop(status) {
                Wait::Timeout => {}
                w => return w,
            }
        } else if r == -1 {
            match errno() {
                libc::EINTR => continue,
                _ => return Wait::Gone,
            }
        }
        if Instant::now() >= deadline {
            return Wait::Timeout;
        }
        polls += 1;
        if polls < 200 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Attached {
    /// Stops every thread of `pid`.
    pub fn attach(pid: i32) -> Result<Attached, PtraceError> {
        Attached::attach_with(pid, AttachOptions::default())
    }

    /// As [`Attached::attach`], with explicit options.
    pub fn attach_with(pid: i32, options: AttachOptions) -> Result<Attached, PtraceError> {
        if pid <= 0 || std::fs::metadata(proc_path(pid, "task")).is_err() {
            return Err(PtraceError::NoSuchProcess { pid });
        }
        if pid as u32 == std::process::id() {
            return Err(PtraceError::OwnProcess { pid });
        }
        // From here on, an early return drops `att`, which detaches.
        let mut att = Attached { pid, tracees: Vec::new(), notes: Vec::new(), options, _same_thread: PhantomData };
        // Each round stops every thread it finds; only a thread still
        // running can create another, so the set settles. The cap guards
        // against a kernel that keeps listing new ids.
        let mut seen = std::collections::HashSet::new();
        for _round in 0..10_000 {
            let tids = match list_tasks(pid) {
                Ok(t) => t,
                Err(_) if att.tracees.is_empty() => return Err(PtraceError::NoSuchProcess { pid }),
                Err(_) => return Err(PtraceError::Exited { pid }),
            };
            // A thread skipped once (a zombie, or one exiting) is not tried again.
            let new: Vec<i32> = tids.into_iter().filter(|t| seen.insert(*t)).collect();
            if new.is_empty() {
                break;
            }
            let first = att.tracees.len();
            for tid in new {
                att.seize(tid)?;
            }
            let mut gone = Vec::new();
            for t in att.tracees.iter_mut().skip(first) {
                match wait_stop(t.tid, att.options.stop_timeout) {
                    Wait::Stopped(kind) => t.stop = Some(kind),
                    Wait::Gone => gone.push(t.tid),
                    Wait::Timeout => att.notes.push(format!(
                        "thread {} did not stop within {:?} (state {}); reported as running",
                        t.tid, att.options.stop_timeout, t.state
                    )),
                }
            }
            // Threads that exited are no longer tracees.
            for tid in gone {
                att.notes.push(format!("thread {tid} exited during the check"));
                att.tracees.retain(|t| t.tid != tid);
            }
        }
        if att.tracees.is_empty() {
            return Err(PtraceError::Exited { pid });
        }
        Ok(att)
    }

    fn seize(&mut self, tid: i32) -> Result<(), PtraceError> {
        let pid = self.pid;
        let (state, comm) = task_state(pid, tid).unwrap_or(('?', String::new()));
        if matches!(state, 'Z' | 'X') {
            // A zombie (a main thread that called pthread_exit) never stops
            // and has no user stack left.
            self.notes.push(format!("thread {tid} is a zombie; skipped"));
            return Ok(());
        }
        match ptrace(PTRACE_SEIZE, tid, 0, 0) {
            Ok(_) => {}
            // EPERM too for a task whose exit has begun (never cleared once set).
            Err(e) if e == libc::ESRCH || (e == libc::EPERM && exiting(pid, tid)) => {
                self.notes.push(format!("thread {tid} exited before it could be attached"));
                return Ok(());
            }
            Err(libc::EPERM) => {
                return Err(PtraceError::Denied { pid, tid, tracer: tracer_of(pid, tid), yama: yama_scope() });
            }
            Err(errno) => return Err(PtraceError::Syscall { pid, tid, op: "PTRACE_SEIZE", errno }),
        }
        self.tracees.push(Tracee { tid, stop: None, state, comm });
        match ptrace(PTRACE_INTERRUPT, tid, 0, 0) {
            // ESRCH: it died after the seize; waitpid will say so.
            Ok(_) | Err(libc::ESRCH) => Ok(()),
            Err(errno) => Err(PtraceError::Syscall { pid, tid, op: "PTRACE_INTERRUPT", errno }),
        }
    }

    /// The process's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Stopped threads and how their stop was reported.
    pub fn stops(&self) -> Vec<(i32, Option<StopKind>)> {
        self.tracees.iter().map(|t| (t.tid, t.stop)).collect()
    }

    /// The registers of a stopped thread.
    pub fn regs(&self, tid: i32) -> Result<Regs, PtraceError> {
        let pid = self.pid;
        // SAFETY: user_regs_struct is plain integers; all-zero is valid.
        let mut u: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        ptrace(PTRACE_GETREGS, tid, 0, &mut u as *mut libc::user_regs_struct as usize)
            .map_err(|errno| PtraceError::Syscall { pid, tid, op: "PTRACE_GETREGS", errno })?;
        if u.cs == USER_CS_32 {
            return Err(PtraceError::Compat { pid, tid, cs: u.cs });
        }
        Ok(regs_from_user(&u))
    }

    /// Threads, mappings, auxv and the executable, read while stopped.
    pub fn snapshot(&self) -> Result<Snapshot, PtraceError> {
        let pid = self.pid;
        let mut snapshot = peek(pid)?;
        for t in &self.tracees {
            let regs = match t.stop {
                Some(_) => Some(self.regs(t.tid)?),
                None => None,
            };
            // /proc/PID/task/TID/comm is the thread's own name (pthread_setname_np).
            let comm = std::fs::read_to_string(proc_path(pid, &format!("task/{}/comm", t.tid)))
                .map(|s| s.trim_end_matches('\n').to_string())
                .unwrap_or_else(|_| t.comm.clone());
            snapshot.threads.push(ThreadInfo { tid: t.tid, tgid: pid, comm, state: t.state, regs });
        }
        if let Some(main) = snapshot.threads.iter().find(|t| t.tid == pid) {
            snapshot.comm = main.comm.clone();
        }
        snapshot.notes = self.notes.clone();
        Ok(snapshot)
    }

    /// The process's memory. Valid while `self` keeps it stopped.
    pub fn memory(&self) -> ProcessMemory {
        let mut m = ProcessMemory::new(self.pid);
        // A stopped thread surely has the memory map (the main thread may
        // be a zombie without one).
        if let Some(t) = self.tracees.iter().find(|t| t.stop.is_some()) {
            m.target = t.tid;
        }
        m
    }

    /// Notes gathered while attaching (threads that exited, did not stop).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Detaches every thread now; returns what could not be done cleanly.
    pub fn detach(mut self) -> Vec<String> {
        self.detach_all()
    }

    fn detach_all(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for t in std::mem::take(&mut self.tracees) {
            let signal = match t.stop {
                Some(StopKind::Signal { signal }) => signal,
                Some(_) => 0,
                None => {
                    // DETACH needs a stopped tracee: give the pending interrupt
                    // one more chance, else the kernel detaches it when we exit.
                    match wait_stop(t.tid, self.options.stop_timeout) {
                        Wait::Stopped(StopKind::Signal { signal }) => signal,
                        Wait::Stopped(_) => 0,
                        Wait::Gone => continue,
                        Wait::Timeout => {
                            problems.push(format!("thread {} never stopped; it is released when lpstack exits", t.tid));
                            continue;
                        }
                    }
                }
            };
            match ptrace(PTRACE_DETACH, t.tid, 0, signal as usize) {
                Ok(_) | Err(libc::ESRCH) => {}
                Err(e) => {
                    problems.push(format!("detaching thread {}: {}", t.tid, std::io::Error::from_raw_os_error(e)))
                }
            }
        }
        problems
    }
}

/// The mappings, auxv and executable of a process that is not stopped, and
/// no threads: modules can be loaded from it before the process is stopped,
/// so that it stays stopped only for the walks (see
/// [`super::Inspection::update`]).
pub fn peek(pid: i32) -> Result<Snapshot, PtraceError> {
    let proc_err = |file: &'static str, e: std::io::Error| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ESRCH) => PtraceError::Exited { pid },
        errno => PtraceError::Proc { pid, file, errno: errno.unwrap_or(libc::EIO) },
    };
    let maps_text = String::from_utf8_lossy(&per_process(pid, "maps").map_err(|e| proc_err("maps", e))?).into_owned();
    let maps = parse_maps(&maps_text).map_err(|err| PtraceError::Maps { pid, err })?;
    let auxv = Auxv::parse(&per_process(pid, "auxv").map_err(|e| proc_err("auxv", e))?);
    let exe = std::fs::read_link(proc_path(pid, "exe"))
        .ok()
        .or_else(|| std::fs::read_link(proc_path(pid, &format!("task/{}/exe", live_thread(pid).ok()?))).ok())
        .map(|p| p.to_string_lossy().into_owned());
    let comm = std::fs::read_to_string(proc_path(pid, "comm"))
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_default();
    Ok(Snapshot { pid, comm, exe, threads: Vec::new(), maps, auxv, notes: Vec::new() })
}

/// A thread other than the main one, for when the main thread is a zombie.
fn live_thread(pid: i32) -> Result<i32, PtraceError> {
    let tids = list_tasks(pid).map_err(|_| PtraceError::Exited { pid })?;
    tids.into_iter().find(|&t| t != pid).ok_or(PtraceError::Exited { pid })
}

/// A per-process /proc file. A zombie main thread (it called pthread_exit)
/// has no memory map of its own: then another thread's copy is read.
fn per_process(pid: i32, name: &str) -> std::io::Result<Vec<u8>> {
    match std::fs::read(proc_path(pid, name)) {
        Ok(b) if !b.is_empty() => Ok(b),
        first => match live_thread(pid) {
            Ok(tid) => std::fs::read(proc_path(pid, &format!("task/{tid}/{name}"))),
            Err(_) => first,
        },
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        for p in self.detach_all() {
            eprintln!("lpstack: {p}");
        }
    }
}

/// `struct user_regs_struct` (all GPRs, rip, cs) as `Regs`.
pub fn regs_from_user(u: &libc::user_regs_struct) -> Regs {
    let mut r = Regs::new();
    for (reg, v) in [
        (Reg::Rax, u.rax),
        (Reg::Rdx, u.rdx),
        (Reg::Rcx, u.rcx),
        (Reg::Rbx, u.rbx),
        (Reg::Rsi, u.rsi),
        (Reg::Rdi, u.rdi),
        (Reg::Rbp, u.rbp),
        (Reg::Rsp, u.rsp),
        (Reg::R8, u.r8),
        (Reg::R9, u.r9),
        (Reg::R10, u.r10),
        (Reg::R11, u.r11),
        (Reg::R12, u.r12),
        (Reg::R13, u.r13),
        (Reg::R14, u.r14),
        (Reg::R15, u.r15),
        (Reg::Rip, u.rip),
    ] {
        r.set(reg, v);
    }
    r.set_cs(u.cs);
    r
}

const PAGE: u64 = 4096;

/// A stopped process's memory, read a page at a time and cached: the
/// threads are stopped, so a page read once stays valid for the check.
pub struct ProcessMemory {
    pid: i32,
    /// The thread whose memory map is read: the main thread, or another
    /// one when the main thread is a zombie (it has no map left).
    target: i32,
    pages: HashMap<u64, Result<Box<[u8]>, MemoryErrorKind>>,
    /// process_vm_readv is unavailable (ENOSYS, or EPERM under some LSMs).
    use_proc_mem: bool,
    proc_mem: Option<File>,
}

impl ProcessMemory {
    /// Memory of process `pid`, read through its main thread; nothing is read yet.
    pub fn new(pid: i32) -> Self {
        ProcessMemory { pid, target: pid, pages: HashMap::new(), use_proc_mem: false, proc_mem: None }
    }

    fn read_page(&mut self, page: u64) -> Result<Box<[u8]>, MemoryErrorKind> {
        let mut buf = vec![0u8; PAGE as usize].into_boxed_slice();
        if !self.use_proc_mem {
            let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            let remote = libc::iovec { iov_base: page as usize as *mut libc::c_void, iov_len: buf.len() };
            // SAFETY: `local` covers `buf`, which outlives the call; the
            // remote side is only read by the kernel.
            let mut n = unsafe { libc::process_vm_readv(self.target, &local, 1, &remote, 1, 0) };
            if n == -1
                && errno() == libc::ESRCH
                && self.target == self.pid
                && let Ok(tid) = live_thread(self.pid)
            {
                self.target = tid;
                // SAFETY: as above.
                n = unsafe { libc::process_vm_readv(self.target, &local, 1, &remote, 1, 0) };
            }
            if n == buf.len() as isize {
                return Ok(buf);
            }
            match (n, errno()) {
                (0.., _) => return Err(MemoryErrorKind::ShortRead),
                (_, libc::EFAULT) => return Err(MemoryErrorKind::Unmapped),
                (_, libc::ENOSYS | libc::EPERM) => self.use_proc_mem = true,
                _ => return Err(MemoryErrorKind::Backend),
            }
        }
        if self.proc_mem.is_none() {
            let path = proc_path(self.pid, &format!("task/{}/mem", self.target));
            self.proc_mem = Some(File::open(path).map_err(|_| MemoryErrorKind::Backend)?);
        }
        let file = self.proc_mem.as_ref().ok_or(MemoryErrorKind::Backend)?;
        match file.read_at(&mut buf, page) {
            Ok(n) if n == buf.len() => Ok(buf),
            Ok(_) => Err(MemoryErrorKind::ShortRead),
            // /proc/PID/mem says EIO for unmapped addresses.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Err(MemoryErrorKind::Unmapped),
            Err(_) => Err(MemoryErrorKind::Backend),
        }
    }
}

impl Memory for ProcessMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr.checked_add(done as u64).ok_or(MemoryError::new(addr, MemoryErrorKind::Unmapped))?;
            let page = at & !(PAGE - 1);
            if !self.pages.contains_key(&page) {
                let p = self.read_page(page);
                self.pages.insert(page, p);
            }
            let bytes = match self.pages.get(&page) {
                Some(Ok(b)) => b,
                Some(Err(kind)) => return Err(MemoryError::new(at, *kind)),
                None => return Err(MemoryError::new(at, MemoryErrorKind::Backend)),
            };
            let off = (at - page) as usize;
            let take = (PAGE as usize - off).min(buf.len() - done);
            let src = bytes.get(off..off + take).ok_or(MemoryError::new(at, MemoryErrorKind::ShortRead))?;
            buf[done..done + take].copy_from_slice(src);
            done += take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// waitpid status words as the kernel builds them for a stop:
    /// `event << 16 | signal << 8 | 0x7f`.
    fn stopped(event: i32, signal: i32) -> i32 {
        (event << 16) | (signal << 8) | 0x7f
    }

    #[test]
    fn stops_are_told_apart() {
        let kind = |status| match decode_stop(status) {
            Wait::Stopped(k) => Some(k),
            _ => None,
        };
        assert_eq!(kind(stopped(PTRACE_EVENT_STOP, libc::SIGTRAP)), Some(StopKind::Interrupt));
        for sig in [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
            assert_eq!(kind(stopped(PTRACE_EVENT_STOP, sig)), Some(StopKind::GroupStop { signal: sig }));
        }
        // A signal about to be delivered: re-injected on detach.
        assert_eq!(kind(stopped(0, libc::SIGUSR1)), Some(StopKind::Signal { signal: libc::SIGUSR1 }));
        assert_eq!(kind(stopped(0, libc::SIGSTOP)), Some(StopKind::Signal { signal: libc::SIGSTOP }));
        // Exits and deaths by signal: gone.
        assert!(matches!(decode_stop(3 << 8), Wait::Gone));
        assert!(matches!(decode_stop(libc::SIGKILL), Wait::Gone));
    }

    /// A zombie child is "exiting" (PTRACE_SEIZE would fail with EPERM on
    /// it), a gone one too; a running thread is not.
    #[test]
    fn exiting_threads_are_told_from_denied_ones() {
        let me = std::process::id() as i32;
        assert!(!exiting(me, me));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !task_state(pid, pid).is_some_and(|(s, _)| s == 'Z') {
            assert!(Instant::now() < deadline, "the child never became a zombie");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(exiting(pid, pid), "a zombie is exiting");
        assert_eq!(ptrace(PTRACE_SEIZE, pid, 0, 0), Err(libc::EPERM), "the kernel refuses a zombie");
        child.wait().unwrap();
        assert!(exiting(pid, pid), "a reaped process is gone");
    }

    #[test]
    fn stat_with_odd_comm() {
        // Our own main thread: its comm may hold anything; the state follows
        // the last ')'.
        let me = std::process::id() as i32;
        let (state, comm) = task_state(me, me).unwrap();
        assert!(state.is_ascii_uppercase(), "{state}");
        assert!(!comm.is_empty());
        assert!(task_state(me, -5).is_none());
    }

    #[test]
    fn own_memory_through_the_page_cache() {
        // process_vm_readv on ourselves needs no ptrace.
        let me = std::process::id() as i32;
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut mem = ProcessMemory::new(me);
        let mut buf = vec![0u8; 9000];
        mem.read(data.as_ptr() as u64 + 500, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[500..9500], "across pages");
        assert_eq!(
            mem.read_u64(data.as_ptr() as u64 + 8).unwrap(),
            u64::from_le_bytes(data[8..16].try_into().unwrap())
        );
        let err = mem.read_u64(8).unwrap_err();
        assert_eq!((err.addr, err.kind), (8, MemoryErrorKind::Unmapped));
        assert!(mem.read_u64(u64::MAX - 3).is_err());
    }
}
