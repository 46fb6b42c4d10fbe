//! Deciding threads: one walk through the caller's memory callback, the
//! patched functions found on the stack, and the verdict. Allocation-free
//! once the scratch exists: the walk reuses its buffers.

use std::ffi::{c_char, c_int, c_void};

use lpstack_core::arch::x86_64::{Reg, Regs};
use lpstack_core::cfi::CfiCache;
use lpstack_core::memory::{Memory, MemoryError, MemoryErrorKind};
use lpstack_core::patchset::PatchSet;
use lpstack_core::verdict::{InlineFrames, PatchHit, Verdict, Walked, judge};
use lpstack_core::walk::{
    CleanEnd, Frame, FrameKind, KERNEL_MAX_FRAMES, KernelRegsPolicy, Reliability, StackBounds, StackKind, StackRange,
    UnreliableReason, WalkConfig, WalkStart, walk_cfi, walk_orc,
};

use crate::tables::{CEnum, ReasonWords, Word, enum_arg};
use crate::unwinder::Kind;
use crate::{
    Error, Result, arg, arg_mut, array_stride, copy_str, element, guard, lpstack_patchset, lpstack_result,
    lpstack_unwinder, put, struct_size,
};

/// No index: `blocking_function` of a thread that is not blocked.
pub const LPSTACK_NONE: u32 = u32::MAX;

/// Reads `len` bytes at `addr` into `buf`. Returns 0 when all `len` bytes
/// were read, a positive value when only some were (a short read), a
/// negative value when the read failed. Called only from inside the decide
/// call, on its thread; lengths are small (at most 168 bytes).
pub type lpstack_read_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, addr: u64, buf: *mut c_void, len: usize) -> c_int>;

/// What a stack is, for lpstack_stack.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_stack_kind {
    Task = 0,
    Irq = 1,
    Exception = 2,
    Entry = 3,
    User = 4,
}

c_enum! {
    lpstack_stack_kind <=> StackKind, name {
        Task: c"task" <=> Task,
        Irq: c"irq" <=> Irq,
        Exception: c"exception" <=> Exception,
        Entry: c"entry" <=> Entry,
        User: c"user" <=> User,
    }
}

/// A further stack the walk may move to (a CPU's IRQ or exception stacks).
/// A walk visits each stack at most once, as the kernel's does.
#[repr(C)]
pub struct lpstack_stack {
    /// `sizeof(lpstack_stack)`.
    pub size: usize,
    /// [start, end).
    pub start: u64,
    pub end: u64,
    /// An lpstack_stack_kind value.
    pub kind: u32,
}

/// One thread to decide. Zero it, set `size = sizeof(lpstack_thread_input)`,
/// then fill what is known.
#[repr(C)]
pub struct lpstack_thread_input {
    /// `sizeof(lpstack_thread_input)`.
    pub size: usize,
    /// Registers in DWARF order: rax rdx rcx rbx rsi rdi rbp rsp r8..r15 rip.
    pub regs: [u64; 17],
    /// Bit i set: `regs[i]` is known. rip and rsp are needed.
    pub known_mask: u64,
    /// The code segment selector, 0 = unknown. Its low two bits tell user
    /// mode (a kernel walk from full user-mode registers ends at once,
    /// reliably).
    pub cs: u64,
    /// The registers are a complete set (a stopped thread, a CPU in a
    /// dump), not just what a scheduler switch saved.
    pub full_regs: c_int,
    /// rip is an exact address (interrupted, not a return address): look
    /// it up as is rather than rip - 1. Set it for registers a thread was
    /// stopped or interrupted with.
    pub signal: c_int,
    /// The thread's stack, [stack_lo, stack_hi). Both 0: none (then
    /// `extra_stacks` must hold the one rsp is on).
    pub stack_lo: u64,
    pub stack_hi: u64,
    /// Required unless `running`.
    pub read: lpstack_read_fn,
    pub read_ctx: *mut c_void,
    /// A walk with this many frames or more is unreliable. 0 = the
    /// scratch's capacity (100, the kernel's limit, for
    /// `lpstack_scratch_new(0, ...)`); never more than that capacity.
    pub max_frames: u32,
    /// Kernel walks: treat kernel-mode pt_regs in mid-stack as unreliable,
    /// as the kernel does with frame pointers instead of ORC.
    pub frame_pointer_rules: c_int,
    /// The thread could not be stopped: its stack is not read and the
    /// verdict is RUNNING.
    pub running: c_int,
    /// Further stacks (may be NULL when `extra_stack_count` is 0); with the
    /// thread's own, at most 8.
    pub extra_stacks: *const lpstack_stack,
    pub extra_stack_count: usize,
}

/// May the thread switch?
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_verdict {
    /// A reliable stack without any patched function.
    Switchable = 0,
    /// A reliable stack holding a patched function ("is sleeping on
    /// function"): `blocking_function`, `frame`, `pc` say which.
    Blocked = 1,
    /// The stack could not be read reliably: `reason`, `reason_addr`,
    /// `reason_detail` say why, `frame` where.
    Unreliable = 2,
    /// The thread was running: not checked.
    Running = 3,
}

c_enum! {
    lpstack_verdict, name {
        Switchable: c"switchable",
        Blocked: c"blocked",
        Unreliable: c"unreliable",
        Running: c"running",
    }
}

/// Why a stack is unreliable (lpstack's `UnreliableReason::code()`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_reason {
    /// Not unreliable.
    None = 0,
    /// No unwind data covers the pc (`reason_addr`).
    NoUnwindEntry = 1,
    /// The ORC entry for the pc is UNDEFINED.
    UndefinedUnwindEntry = 2,
    /// The entry has an unknown type or register (`reason_detail`: raw value).
    UnknownUnwindEntry = 3,
    /// The entry needs a register whose value is not known
    /// (`reason_detail`: DWARF register number).
    MissingRegister = 4,
    /// A stack access at `reason_addr` is outside the known stacks.
    OutsideStack = 5,
    /// sp `reason_addr` after sp `reason_detail`: the stack went down.
    WrongDirection = 6,
    /// Reading `reason_addr` failed (`reason_detail`: lpstack_memory_error).
    Unreadable = 7,
    /// The pc `reason_addr` is not code.
    NotText = 8,
    /// Too many frames (`reason_detail`: the limit).
    FrameLimit = 9,
    /// A return trampoline at `reason_addr` (`reason_detail`: lpstack_trampoline).
    Trampoline = 10,
    /// Kernel-mode pt_regs in mid-stack under frame-pointer rules.
    KernelRegs = 11,
    /// The starting sp `reason_addr` is on no known stack.
    StartNotOnStack = 12,
    /// A live task changed while read (`reason_addr`: its task_struct,
    /// `reason_detail`: passes tried).
    ChangedWhileReading = 13,
}

// The names are the library's `UnreliableReason::code()` (a test checks);
// each field goes to `reason_addr` or `reason_detail`.
c_enum! {
    lpstack_reason <=> UnreliableReason { fields }, name {
        None: c"none",
        NoUnwindEntry: c"no-unwind-entry" <=> NoUnwindEntry { pc: addr },
        UndefinedUnwindEntry: c"undefined-unwind-entry" <=> UndefinedEntry { pc: addr },
        UnknownUnwindEntry: c"unknown-unwind-entry" <=> UnknownEntry { pc: addr, raw: detail },
        MissingRegister: c"missing-register" <=> MissingRegister { pc: addr, reg: detail },
        OutsideStack: c"outside-stack" <=> OutsideStack { addr: addr },
        WrongDirection: c"wrong-direction" <=> WrongDirection { sp: addr, prev_sp: detail },
        Unreadable: c"unreadable" <=> Unreadable { addr: addr, kind: detail },
        NotText: c"not-text" <=> NotText { pc: addr },
        FrameLimit: c"frame-limit" <=> FrameLimit { limit: detail },
        Trampoline: c"trampoline" <=> Trampoline { pc: addr, kind: detail },
        KernelRegs: c"kernel-regs" <=> KernelRegs { pc: addr },
        StartNotOnStack: c"start-not-on-stack" <=> StartNotOnStack { sp: addr },
        ChangedWhileReading: c"changed-while-reading" <=> ChangedWhileReading { task: addr, passes: detail },
    }
}

/// How a read failed, in `reason_detail` of an UNREADABLE decision.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_memory_error {
    Unmapped = 0,
    NotInDump = 1,
    /// The callback returned a positive value.
    ShortRead = 2,
    /// The callback returned a negative value.
    ReadFailed = 3,
}

c_enum! {
    lpstack_memory_error <=> MemoryErrorKind, name {
        Unmapped: c"unmapped" <=> Unmapped,
        NotInDump: c"not-in-dump" <=> NotInDump,
        ShortRead: c"short-read" <=> ShortRead,
        ReadFailed: c"read-failed" <=> Backend,
    }
}

/// As an UNREADABLE decision's `reason_detail`.
impl Word for MemoryErrorKind {
    fn to_word(self) -> u64 {
        lpstack_memory_error::from(self).to_u32().into()
    }
    fn from_word(w: u64) -> Option<Self> {
        lpstack_memory_error::from_u32(w.try_into().ok()?).map(Into::into)
    }
}

/// As a MISSING_REGISTER decision's `reason_detail`: the DWARF number.
impl Word for Reg {
    fn to_word(self) -> u64 {
        self as u64
    }
    fn from_word(w: u64) -> Option<Self> {
        Reg::ALL.get(usize::try_from(w).ok()?).copied()
    }
}

/// How a reliable walk ended.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_walk_end {
    /// Not walked, or not reliably.
    None = 0,
    /// The unwind data marks the outermost frame.
    EndOfStack = 1,
    /// User-mode registers: the top of a kernel stack, or a thread that was
    /// in user mode (then `frame_count` is 0).
    UserRegs = 2,
}

c_enum! {
    lpstack_walk_end from CleanEnd, name {
        None: c"none",
        EndOfStack: c"end-of-stack" <=> EndOfStack,
        UserRegs: c"user-regs" <=> UserRegs,
    }
}

/// The decision for one thread. The caller sets `size`; lpstack fills the
/// rest.
#[repr(C)]
pub struct lpstack_decision {
    /// `sizeof(lpstack_decision)`.
    pub size: usize,
    pub verdict: lpstack_verdict,
    /// BLOCKED: index in the set of the first patched function (in set
    /// order) on the stack; otherwise LPSTACK_NONE.
    pub blocking_function: u32,
    /// BLOCKED: the frame holding it (innermost); UNRELIABLE: the frame at
    /// which the walk lost trust; otherwise 0.
    pub frame: u32,
    /// BLOCKED: that frame's pc.
    pub pc: u64,
    pub reason: lpstack_reason,
    pub reason_addr: u64,
    /// Frames walked (also when more than the caller's buffer holds).
    pub frame_count: u32,
    /// Patched-function hits on the stack (see lpstack_scratch_hits).
    pub hit_count: u32,
    pub reason_detail: u64,
    pub end: lpstack_walk_end,
    /// BLOCKED: 1 when the blocking function is a copy inlined into the
    /// frame's function (found through DWARF given with
    /// lpstack_unwinder_add_dwarf or lpstack_unwinder_load_dwarf).
    pub inlined: u32,
}

/// How a frame's pc was found.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum lpstack_frame_kind {
    /// The starting pc.
    Start = 0,
    /// A return address read from the stack.
    Call = 1,
    /// The interrupted ip of a full pt_regs frame (or a signal frame).
    Regs = 2,
    /// The ip of an iret frame.
    Iret = 3,
    /// A return address found by scanning the stack for a call to the
    /// function above it, which has no unwind data; never reliable.
    Scanned = 4,
}

c_enum! {
    lpstack_frame_kind <=> FrameKind, name {
        Start: c"start" <=> Start,
        Call: c"call" <=> Call,
        Regs: c"regs" <=> Regs,
        Iret: c"iret" <=> Iret,
        Scanned: c"scanned" <=> Scanned,
    }
}

/// `flags` of lpstack_frame: the walk vouches for this frame.
pub const LPSTACK_FRAME_RELIABLE: u32 = 1;
/// `flags` of lpstack_frame: the pc came from kernel-mode pt_regs.
pub const LPSTACK_FRAME_KERNEL_REGS: u32 = 2;

/// One frame, innermost first. Filled by lpstack only; its layout is fixed.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct lpstack_frame {
    pub pc: u64,
    pub sp: u64,
    pub kind: lpstack_frame_kind,
    /// LPSTACK_FRAME_* bits.
    pub flags: u32,
}

/// A patched function found on a stack. Filled by lpstack only; its
/// layout is fixed.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct lpstack_hit {
    /// Index in the set.
    pub function: u32,
    /// Index of the frame.
    pub frame: u32,
    pub pc: u64,
    /// 1: the frame is at or past the point where the walk lost trust.
    pub past_unreliable: u32,
    /// 1: the function is a copy inlined into the frame's function.
    pub inlined: u32,
}

/// Per-thread working memory: the frame and hit buffers and the DWARF
/// evaluation context. Use one per thread at a time; reuse it across calls.
pub struct lpstack_scratch {
    frames: Vec<Frame>,
    hits: Vec<PatchHit>,
    cache: CfiCache,
    capacity: usize,
}

/// The largest scratch: far beyond any real stack.
const MAX_SCRATCH_FRAMES: u32 = 1 << 20;

/// A scratch for walks of up to `max_frames` frames (0 = 100). A decide
/// call with this scratch allocates nothing, unless a DWARF expression
/// must be evaluated (PLT stubs, signal frames) or one frame lies in
/// several overlapping patched ranges (the hit buffer then grows once).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_scratch_new(max_frames: u32, out: *mut *mut lpstack_scratch) -> lpstack_result {
    guard(|| {
        if out.is_null() {
            return Err(Error::null("out"));
        }
        if max_frames > MAX_SCRATCH_FRAMES {
            return Err(Error::invalid(format!("max_frames {max_frames} is above {MAX_SCRATCH_FRAMES}")));
        }
        let capacity = if max_frames == 0 { KERNEL_MAX_FRAMES } else { max_frames as usize };
        let s = Box::new(lpstack_scratch {
            frames: Vec::with_capacity(capacity),
            hits: Vec::with_capacity(capacity),
            cache: CfiCache::new(),
            capacity,
        });
        // SAFETY: `out` was checked non-NULL above and is writable (contract).
        unsafe { put(out, Box::into_raw(s)) };
        Ok(())
    })
}

/// Releases a scratch; NULL is ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_scratch_free(s: *mut lpstack_scratch) {
    if !s.is_null() {
        // SAFETY: non-NULL and, by the contract, from its `_new` call and not yet freed.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(unsafe { Box::from_raw(s) })));
    }
}

/// Copies the hits of the scratch's last decided thread (in frame order)
/// into `out` (room for `cap`); `*written` receives their number, which is
/// the decision's `hit_count`. BUFFER_TOO_SMALL writes nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_scratch_hits(
    s: *const lpstack_scratch,
    out: *mut lpstack_hit,
    cap: usize,
    written: *mut usize,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `s` is NULL or a valid handle (contract); `arg` rejects NULL.
        let s = unsafe { arg(s, "s")? };
        if written.is_null() {
            return Err(Error::null("written"));
        }
        let n = s.hits.len();
        if n > 0 && out.is_null() {
            return Err(Error::null("out"));
        }
        if n > cap {
            return Err(Error::new(lpstack_result::BufferTooSmall, format!("{n} hits, room for {cap}")));
        }
        for (i, h) in s.hits.iter().enumerate() {
            let hit = lpstack_hit {
                function: u32::try_from(h.func).unwrap_or(u32::MAX),
                frame: u32::try_from(h.frame).unwrap_or(u32::MAX),
                pc: h.pc,
                past_unreliable: h.past_unreliable.into(),
                inlined: h.inlined.into(),
            };
            // SAFETY: i < n <= cap; `out` is non-NULL when n > 0 and holds `cap` hits (contract).
            unsafe { out.add(i).write(hit) };
        }
        // SAFETY: `written` was checked non-NULL above and is writable (contract).
        unsafe { put(written, n) };
        Ok(())
    })
}

/// The caller's read callback as lpstack memory.
struct CallbackMemory {
    read: unsafe extern "C" fn(*mut c_void, u64, *mut c_void, usize) -> c_int,
    ctx: *mut c_void,
}

impl Memory for CallbackMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> std::result::Result<(), MemoryError> {
        // SAFETY: the caller's callback and context (contract), given `buf.len()` writable bytes.
        let r = unsafe { (self.read)(self.ctx, addr, buf.as_mut_ptr().cast(), buf.len()) };
        match r {
            0 => Ok(()),
            r if r > 0 => Err(MemoryError::new(addr, MemoryErrorKind::ShortRead)),
            _ => Err(MemoryError::new(addr, MemoryErrorKind::Backend)),
        }
    }
}

/// A checked input, ready to walk.
struct Prepared {
    start: WalkStart,
    bounds: StackBounds,
    config: WalkConfig,
    mem: Option<CallbackMemory>,
}

/// Checks an input; fails without side effects (so a batch can check all
/// its inputs before writing any output).
unsafe fn prepare(u: &lpstack_unwinder, input: &lpstack_thread_input, capacity: usize) -> Result<Prepared> {
    let max_frames = if input.max_frames == 0 { capacity } else { input.max_frames as usize };
    if max_frames > capacity {
        return Err(Error::invalid(format!("max_frames {max_frames} is above the scratch's {capacity}")));
    }
    if input.known_mask >> 17 != 0 {
        return Err(Error::invalid(format!("known_mask {:#x} has bits above the 17 registers", input.known_mask)));
    }
    let mut regs = Regs::new();
    for (i, reg) in Reg::ALL.iter().enumerate() {
        if input.known_mask & (1 << i) != 0 {
            regs.set(*reg, input.regs[i]);
        }
    }
    if input.cs != 0 {
        regs.set_cs(input.cs);
    }
    let own = match u.kind {
        Kind::Kernel(_) => StackKind::Task,
        Kind::User(_) => StackKind::User,
    };
    let mut bounds = StackBounds::new();
    match (input.stack_lo, input.stack_hi) {
        (0, 0) => {}
        (lo, hi) if lo < hi => {
            bounds.push(StackRange { start: lo, end: hi, kind: own });
        }
        (lo, hi) => return Err(Error::invalid(format!("stack [{lo:#x}, {hi:#x}) is empty"))),
    }
    let n = input.extra_stack_count;
    if n > 0 {
        if input.extra_stacks.is_null() {
            return Err(Error::null("extra_stacks"));
        }
        // SAFETY: `input.extra_stacks` holds `n` sized elements (contract); `array_stride` rejects NULL.
        let stride = unsafe { array_stride(input.extra_stacks, n, size_of::<lpstack_stack>(), "extra_stacks")? };
        for i in 0..n {
            // SAFETY: `i` < the count `array_stride` checked `stride` for.
            let s = unsafe { element(input.extra_stacks, i, stride, "extra_stacks")? };
            let kind = enum_arg::<lpstack_stack_kind>(s.kind, "stack kind")?.into();
            if s.start >= s.end {
                return Err(Error::invalid(format!("extra stack {i} [{:#x}, {:#x}) is empty", s.start, s.end)));
            }
            if !bounds.push(StackRange { start: s.start, end: s.end, kind }) {
                return Err(Error::invalid(format!("more than {} stacks", StackBounds::MAX)));
            }
        }
    }
    let mem = match (input.running != 0, input.read) {
        (true, _) => None,
        (false, Some(read)) => Some(CallbackMemory { read, ctx: input.read_ctx }),
        (false, None) => return Err(Error::null("input->read")),
    };
    let config = WalkConfig {
        max_frames,
        kernel_regs: if input.frame_pointer_rules != 0 { KernelRegsPolicy::Reject } else { KernelRegsPolicy::Accept },
    };
    let start = WalkStart { regs, full_regs: input.full_regs != 0, signal: input.signal != 0 };
    Ok(Prepared { start, bounds, config, mem })
}

/// A core reason as a decision's `reason`, `reason_addr`, `reason_detail`.
fn reason_fields(r: &UnreliableReason) -> (lpstack_reason, u64, u64) {
    let (reason, w) = lpstack_reason::from_core(r);
    (reason, w.addr, w.detail)
}

/// The reason a decision describes, rebuilt from its fields.
fn reason_of(reason: u32, addr: u64, detail: u64) -> Option<UnreliableReason> {
    lpstack_reason::from_u32(reason)?.to_core(ReasonWords { addr, detail })
}

// By the name lpstack_thread_decide uses.
fn frame_kind(k: FrameKind) -> lpstack_frame_kind {
    k.into()
}

/// Walks and judges one prepared thread; the frames and hits stay in the
/// scratch. Allocates nothing (see lpstack_scratch_new).
fn run(u: &lpstack_unwinder, set: &PatchSet, p: Prepared, s: &mut lpstack_scratch, size: usize) -> lpstack_decision {
    let mut d = lpstack_decision {
        size,
        verdict: lpstack_verdict::Running,
        blocking_function: LPSTACK_NONE,
        frame: 0,
        pc: 0,
        reason: lpstack_reason::None,
        reason_addr: 0,
        frame_count: 0,
        hit_count: 0,
        reason_detail: 0,
        end: lpstack_walk_end::None,
        inlined: 0,
    };
    s.frames.clear();
    s.hits.clear();
    let Some(mut mem) = p.mem else { return d };
    let rel = match &u.kind {
        Kind::Kernel(k) => {
            let mut code = k.code();
            walk_orc(&k.tables, &mut mem, &mut code, &p.bounds, p.start, &p.config, &mut s.frames)
        }
        Kind::User(modules) => walk_cfi(modules, &mut mem, &mut s.cache, &p.bounds, p.start, &p.config, &mut s.frames),
    };
    // The DWARF the caller gave, if any: inlined copies of patched
    // functions block too. Shared by the threads using this unwinder.
    let mut inlines = match &u.inlines {
        Some(m) if !set.is_empty() => Some(m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
        _ => None,
    };
    let inline = inlines.as_deref_mut().map(|r| r as &mut dyn InlineFrames);
    let walked = Walked { frames: &s.frames, reliability: Some(&rel), running: false };
    let verdict = judge(walked, set, inline, &mut s.hits);
    drop(inlines);
    d.frame_count = u32::try_from(s.frames.len()).unwrap_or(u32::MAX);
    d.hit_count = u32::try_from(s.hits.len()).unwrap_or(u32::MAX);
    if let Reliability::Reliable(end) = rel {
        d.end = end.into();
    }
    match verdict {
        Verdict::Switchable => d.verdict = lpstack_verdict::Switchable,
        Verdict::Blocked { function, frame, pc, inlined } => {
            d.inlined = inlined.into();
            d.verdict = lpstack_verdict::Blocked;
            let index = set.funcs().iter().position(|f| std::ptr::eq(f, function));
            d.blocking_function = index.and_then(|i| u32::try_from(i).ok()).unwrap_or(LPSTACK_NONE);
            d.frame = u32::try_from(frame).unwrap_or(u32::MAX);
            d.pc = pc;
        }
        Verdict::Unreliable { reason, frame } => {
            d.verdict = lpstack_verdict::Unreliable;
            d.frame = u32::try_from(frame).unwrap_or(u32::MAX);
            (d.reason, d.reason_addr, d.reason_detail) = reason_fields(&reason);
        }
        Verdict::Running => d.verdict = lpstack_verdict::Running,
    }
    d
}

/// Decides one thread: walks its stack with `u` (ORC for a kernel
/// unwinder, DWARF CFI for a userspace one), reading memory through
/// `in->read`, and looks for the functions of `set` (NULL: an empty set,
/// only reliability is judged). `out->size` must be set. Up to `frames_cap`
/// frames are copied to `frames` (may be NULL); `*frames_written` (may be
/// NULL) receives how many. The hits stay in `scratch` until its next use.
/// An unreadable or inconsistent stack is not an error: it is an
/// UNRELIABLE decision with its reason. Allocation-free (see
/// lpstack_scratch_new); `u` and `set` may be shared between threads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_thread_decide(
    u: *const lpstack_unwinder,
    set: *const lpstack_patchset,
    input: *const lpstack_thread_input,
    scratch: *mut lpstack_scratch,
    out: *mut lpstack_decision,
    frames: *mut lpstack_frame,
    frames_cap: usize,
    frames_written: *mut usize,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid handle (contract); `arg` rejects NULL.
        let u = unsafe { arg(u, "u")? };
        let empty = PatchSet::default();
        // SAFETY: `set` is NULL or a valid set (contract).
        let set = unsafe { set.as_ref() }.map_or(&empty, |s| &s.set);
        // SAFETY: `input` is NULL or a struct starting with `size` (contract); `struct_size` rejects NULL.
        unsafe { struct_size(input.cast(), size_of::<lpstack_thread_input>(), "in")? };
        // SAFETY: `struct_size` just checked `input` non-NULL; valid by the contract.
        let input = unsafe { &*input };
        // SAFETY: `scratch` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let s = unsafe { arg_mut(scratch, "scratch")? };
        // SAFETY: `out` is NULL or a struct starting with `size` (contract); `struct_size` rejects NULL.
        let size = unsafe { struct_size(out.cast(), size_of::<lpstack_decision>(), "out")? };
        if frames.is_null() && frames_cap > 0 {
            return Err(Error::null("frames"));
        }
        // SAFETY: `input` was checked; its `extra_stacks` array is the caller's (contract).
        let p = unsafe { prepare(u, input, s.capacity)? };
        let d = run(u, set, p, s, size);
        let n = s.frames.len().min(frames_cap);
        for (i, f) in s.frames[..n].iter().enumerate() {
            let flags = if f.reliable { LPSTACK_FRAME_RELIABLE } else { 0 }
                | if f.kernel_regs { LPSTACK_FRAME_KERNEL_REGS } else { 0 };
            let frame = lpstack_frame { pc: f.pc, sp: f.sp, kind: frame_kind(f.kind), flags };
            // SAFETY: i < n <= frames_cap; `frames` is non-NULL when frames_cap > 0 and holds that many (contract).
            unsafe { frames.add(i).write(frame) };
        }
        // SAFETY: `out` was checked non-NULL above and is writable (contract).
        unsafe { put(out, d) };
        if !frames_written.is_null() {
            // SAFETY: `frames_written` was checked non-NULL above and is writable (contract).
            unsafe { put(frames_written, n) };
        }
        Ok(())
    })
}

/// Decides `n` threads with one scratch: `inputs` is an array stepped by
/// `inputs[0].size` (every element's `size` must match), `outs` one
/// stepped by `outs[0].size` (set at least that one). All inputs are
/// checked before any thread is walked, so on failure nothing is written.
/// The scratch keeps the hits of the last thread only: for every thread's
/// hits, decide them one by one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_threads_decide(
    u: *const lpstack_unwinder,
    set: *const lpstack_patchset,
    inputs: *const lpstack_thread_input,
    n: usize,
    scratch: *mut lpstack_scratch,
    outs: *mut lpstack_decision,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `u` is NULL or a valid handle (contract); `arg` rejects NULL.
        let u = unsafe { arg(u, "u")? };
        let empty = PatchSet::default();
        // SAFETY: `set` is NULL or a valid set (contract).
        let set = unsafe { set.as_ref() }.map_or(&empty, |s| &s.set);
        // SAFETY: `scratch` is NULL or a valid, unshared handle (contract); `arg_mut` rejects NULL.
        let s = unsafe { arg_mut(scratch, "scratch")? };
        if n == 0 {
            return Ok(());
        }
        // SAFETY: `inputs` holds `n` sized elements (contract); `array_stride` rejects NULL.
        let in_stride = unsafe { array_stride(inputs, n, size_of::<lpstack_thread_input>(), "inputs")? };
        // SAFETY: `outs` holds `n` sized elements (contract); `array_stride` rejects NULL.
        let out_stride = unsafe { array_stride(outs.cast_const(), n, size_of::<lpstack_decision>(), "outs")? };
        for i in 0..n {
            // SAFETY: `i` < the count `array_stride` checked `in_stride` for.
            let input = unsafe { element(inputs, i, in_stride, "inputs")? };
            // SAFETY: `input` was checked; its `extra_stacks` array is the caller's (contract).
            unsafe { prepare(u, input, s.capacity)? };
        }
        for i in 0..n {
            // SAFETY: `i` < the count `array_stride` checked `in_stride` for.
            let input = unsafe { element(inputs, i, in_stride, "inputs")? };
            // SAFETY: `input` was checked; its `extra_stacks` array is the caller's (contract).
            let p = unsafe { prepare(u, input, s.capacity)? };
            let d = run(u, set, p, s, out_stride);
            // SAFETY: i < n: inside `outs`, whose stride `array_stride` checked (contract: n elements).
            unsafe { put(outs.cast::<u8>().add(i * out_stride).cast::<lpstack_decision>(), d) };
        }
        Ok(())
    })
}

/// The stable short name of a reason ("not-text", "unreadable"...; "none"
/// for LPSTACK_REASON_NONE, NULL for an unknown value).
#[unsafe(no_mangle)]
pub extern "C" fn lpstack_reason_name(reason: u32) -> *const c_char {
    lpstack_reason::from_u32(reason).map_or(std::ptr::null(), |r| r.name().as_ptr())
}

/// The name of a verdict ("switchable", "blocked", "unreliable",
/// "running"; NULL for an unknown value).
#[unsafe(no_mangle)]
pub extern "C" fn lpstack_verdict_name(verdict: u32) -> *const c_char {
    lpstack_verdict::from_u32(verdict).map_or(std::ptr::null(), |v| v.name().as_ptr())
}

/// A sentence for an UNRELIABLE decision's reason (e.g. "cannot read
/// 0x7ffc...: short read"), NUL-terminated into `buf`; `*len_out` gets its
/// length. NOT_FOUND for a decision without a reason.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lpstack_decision_reason_text(
    d: *const lpstack_decision,
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> lpstack_result {
    guard(|| {
        // SAFETY: `d` is NULL or a struct starting with `size` (contract); `struct_size` rejects NULL.
        unsafe { struct_size(d.cast(), size_of::<lpstack_decision>(), "d")? };
        if len_out.is_null() {
            return Err(Error::null("len_out"));
        }
        // Field by field: a C caller may hold any value in the enums.
        // SAFETY: `struct_size` checked `d` non-NULL; valid by the contract.
        let (reason, addr, detail) = unsafe {
            (
                std::ptr::addr_of!((*d).reason).cast::<u32>().read(),
                std::ptr::addr_of!((*d).reason_addr).read(),
                std::ptr::addr_of!((*d).reason_detail).read(),
            )
        };
        let r = reason_of(reason, addr, detail)
            .ok_or_else(|| Error::new(lpstack_result::NotFound, "the decision has no (known) reason"))?;
        // SAFETY: `buf` holds `cap` bytes (contract); `copy_str` rejects NULL and checks the room.
        let n = unsafe { copy_str(&r.to_string(), buf, cap)? };
        // SAFETY: `len_out` was checked non-NULL above and is writable (contract).
        unsafe { put(len_out, n) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::tests::check_table;
    use std::ffi::CStr;

    #[test]
    fn decision_tables_are_complete() {
        check_table::<lpstack_stack_kind>();
        check_table::<lpstack_verdict>();
        check_table::<lpstack_reason>();
        check_table::<lpstack_memory_error>();
        check_table::<lpstack_walk_end>();
        check_table::<lpstack_frame_kind>();
    }

    #[test]
    fn core_conversions_round_trip() {
        for &k in lpstack_stack_kind::ALL {
            assert_eq!(lpstack_stack_kind::from(StackKind::from(k)), k);
        }
        for &k in lpstack_memory_error::ALL {
            let core = MemoryErrorKind::from(k);
            assert_eq!(lpstack_memory_error::from(core), k);
            assert_eq!(MemoryErrorKind::from_word(core.to_word()), Some(core));
        }
        for &k in lpstack_frame_kind::ALL {
            let core = FrameKind::from(k);
            assert_eq!(frame_kind(core), k);
            assert_eq!(k.name().to_str().ok(), Some(core.name()), "the library's name");
        }
        assert_eq!(lpstack_walk_end::from(CleanEnd::EndOfStack), lpstack_walk_end::EndOfStack);
        assert_eq!(lpstack_walk_end::from(CleanEnd::UserRegs), lpstack_walk_end::UserRegs);
        for r in Reg::ALL {
            assert_eq!(Reg::from_word(r.to_word()), Some(r));
        }
        assert_eq!(Reg::from_word(Reg::ALL.len() as u64), None);
    }

    /// Every C reason but NONE has a core one, named alike; the name
    /// functions answer from the tables, NULL past the last value.
    #[test]
    fn reasons_and_verdicts_are_named_from_the_tables() {
        for &r in lpstack_reason::ALL {
            let core = r.to_core(ReasonWords::default());
            assert_eq!(core.is_none(), r == lpstack_reason::None, "{r:?}");
            if let Some(core) = core {
                assert_eq!(r.name(), core.code_c(), "{r:?}");
                assert_eq!(lpstack_reason::from_core(&core).0, r);
            }
            // SAFETY: the name functions return static NUL-terminated strings, non-NULL for known values.
            assert_eq!(unsafe { CStr::from_ptr(lpstack_reason_name(r as u32)) }, r.name());
        }
        assert!(lpstack_reason_name(lpstack_reason::ALL.len() as u32).is_null());
        for &v in lpstack_verdict::ALL {
            // SAFETY: the name functions return static NUL-terminated strings, non-NULL for known values.
            assert_eq!(unsafe { CStr::from_ptr(lpstack_verdict_name(v as u32)) }, v.name());
        }
        assert!(lpstack_verdict_name(lpstack_verdict::ALL.len() as u32).is_null());
        // A word out of its field's range describes no reason.
        let wide = ReasonWords { addr: 1, detail: u64::MAX };
        assert_eq!(lpstack_reason::UnknownUnwindEntry.to_core(wide), None);
        assert_eq!(lpstack_reason::Unreadable.to_core(wide), None);
        assert_eq!(lpstack_reason::Trampoline.to_core(wide), None);
    }

    /// Every reason the header declares has the library's name, and the
    /// value after the last one has none (issue 14: 13 had none).
    #[test]
    fn every_reason_has_the_librarys_name() {
        let samples = [
            UnreliableReason::NoUnwindEntry { pc: 1 },
            UnreliableReason::UndefinedEntry { pc: 1 },
            UnreliableReason::UnknownEntry { pc: 1, raw: 9 },
            UnreliableReason::MissingRegister { pc: 1, reg: Reg::ALL[0] },
            UnreliableReason::OutsideStack { addr: 1 },
            UnreliableReason::WrongDirection { sp: 1, prev_sp: 2 },
            UnreliableReason::Unreadable { addr: 1, kind: MemoryErrorKind::ShortRead },
            UnreliableReason::NotText { pc: 1 },
            UnreliableReason::FrameLimit { limit: 100 },
            UnreliableReason::Trampoline { pc: 1, kind: lpstack_core::walk::TrampolineKind::Rethook },
            UnreliableReason::KernelRegs { pc: 1 },
            UnreliableReason::StartNotOnStack { sp: 1 },
            UnreliableReason::ChangedWhileReading { task: 1, passes: 5 },
        ];
        let name = |r: u32| {
            let p = lpstack_reason_name(r);
            // SAFETY: the name functions return static NUL-terminated strings, non-NULL for known values.
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_str().unwrap_or("?").to_owned())
        };
        assert_eq!(name(lpstack_reason::None as u32).as_deref(), Some("none"));
        let mut codes: Vec<u32> = Vec::new();
        for r in samples {
            let (c, a, x) = reason_fields(&r);
            assert_eq!(reason_of(c as u32, a, x), Some(r), "round trip");
            assert_eq!(name(c as u32).as_deref(), Some(r.code()));
            codes.push(c as u32);
        }
        codes.sort_unstable();
        assert_eq!(codes, (1..=samples.len() as u32).collect::<Vec<_>>(), "one C value per reason, dense");
        assert_eq!(name(samples.len() as u32 + 1), None);
        assert_eq!(name(lpstack_reason::ChangedWhileReading as u32).as_deref(), Some("changed-while-reading"));
    }
}
