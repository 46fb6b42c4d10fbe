//! The per-thread call must not allocate: a counting global allocator
//! watches this thread while 1000 decisions are made after a warm-up, for
//! a kernel unwinder (real 6.12 ORC tables, a real task's stack image) and
//! a userspace one (this test thread unwinding itself through DWARF CFI).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

use common::*;
use lpstack::*;

struct Counting;

thread_local! {
    // Const-initialised and without a destructor: touching it never allocates.
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(p, layout, new_size) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    COUNT.with(|c| c.get())
}

#[test]
fn counting_sees_allocations() {
    // The instrument itself must be able to fail.
    let before = allocations();
    let v: Vec<u64> = Vec::with_capacity(std::hint::black_box(16));
    drop(std::hint::black_box(v));
    assert_eq!(allocations() - before, 1);
}

#[test]
fn kernel_decisions_do_not_allocate() {
    let u = kernel_unwinder();
    let mut set = ptr::null_mut();
    ok(unsafe { lpstack_patchset_new_from_text(c"pipe_read\nfifo_open\n".as_ptr(), ptr::null(), u, &mut set) }, "set");
    let mut scratch = ptr::null_mut();
    ok(unsafe { lpstack_scratch_new(0, &mut scratch) }, "scratch");
    let tasks = kernel_tasks();
    let stacks: Vec<_> = tasks.iter().map(|(_, chain)| synth(chain)).collect();
    let images: Vec<Image> = stacks.iter().map(|s| Image { base: s.base, bytes: s.bytes.clone() }).collect();
    let inputs: Vec<lpstack_thread_input> = stacks.iter().zip(&images).map(|(s, i)| kernel_input(s, i)).collect();
    let mut outs: Vec<lpstack_decision> = inputs.iter().map(|_| decision()).collect();
    let mut frames = [lpstack_frame { pc: 0, sp: 0, kind: lpstack_frame_kind::Start, flags: 0 }; 100];
    let mut d = decision();
    let mut n = 0;
    let mut run = |rounds: usize| {
        let mut blocked = 0;
        for r in 0..rounds {
            let input = &inputs[r % inputs.len()];
            let res = unsafe {
                lpstack_thread_decide(u, set, input, scratch, &mut d, frames.as_mut_ptr(), frames.len(), &mut n)
            };
            assert_eq!(res, lpstack_result::Ok);
            blocked += usize::from(d.verdict == lpstack_verdict::Blocked);
        }
        blocked
    };
    run(inputs.len()); // warm-up
    let before = allocations();
    let blocked = run(1000);
    let batch = unsafe { lpstack_threads_decide(u, set, inputs.as_ptr(), inputs.len(), scratch, outs.as_mut_ptr()) };
    let after = allocations();
    assert_eq!(batch, lpstack_result::Ok);
    assert!(blocked > 0, "the walks found the blocked cats");
    assert_eq!(after - before, 0, "allocations during 1000 kernel decisions and a batch");
    eprintln!("kernel: 1000 decisions + a batch of {}: {} allocations", inputs.len(), after - before);
    unsafe {
        lpstack_scratch_free(scratch);
        lpstack_patchset_free(set);
        lpstack_unwinder_free(u);
    }
}

/// A function to find on the stack, with a plain symbol name.
#[unsafe(no_mangle)]
#[inline(never)]
pub fn lpstack_alloc_test_park(f: &mut dyn FnMut()) {
    f();
    std::hint::black_box(());
}

struct SelfCtx {
    u: *mut lpstack_unwinder,
    set: *mut lpstack_patchset,
    scratch: *mut lpstack_scratch,
    d: lpstack_decision,
    bounds: (u64, u64),
}

/// Decides the calling thread from here: registers of this very frame.
#[inline(never)]
fn decide_self(cx: &mut SelfCtx) -> lpstack_result {
    let (ip, sp, bp) = here!();
    let mut input = input();
    input.regs[16] = ip;
    input.regs[7] = sp;
    input.regs[6] = bp;
    input.known_mask = 1 << 16 | 1 << 7 | 1 << 6;
    input.signal = 1; // ip is where we are, not a return address
    input.stack_lo = cx.bounds.0;
    input.stack_hi = cx.bounds.1;
    input.read = Some(read_self);
    input.read_ctx = &mut cx.bounds as *mut (u64, u64) as *mut std::ffi::c_void;
    let mut frames = [lpstack_frame { pc: 0, sp: 0, kind: lpstack_frame_kind::Start, flags: 0 }; 16];
    let mut n = 0;
    let r =
        unsafe { lpstack_thread_decide(cx.u, cx.set, &input, cx.scratch, &mut cx.d, frames.as_mut_ptr(), 16, &mut n) };
    // The walk starts exactly here.
    if n > 0 && (frames[0].pc, frames[0].sp) != (ip, sp) {
        return lpstack_result::Panic;
    }
    std::hint::black_box(sp);
    r
}

#[test]
fn userspace_self_decisions_do_not_allocate() {
    let u = self_unwinder();
    let mut set = ptr::null_mut();
    let text = c"lpstack_alloc_test_park";
    let exe = std::env::current_exe().unwrap_or_default();
    let exe = std::ffi::CString::new(exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
        .unwrap_or_default();
    ok(unsafe { lpstack_patchset_new_from_text(text.as_ptr(), exe.as_ptr(), u, &mut set) }, "set");
    let mut scratch = ptr::null_mut();
    ok(unsafe { lpstack_scratch_new(0, &mut scratch) }, "scratch");
    let (_, sp, _) = here!();
    let mut cx = SelfCtx { u, set, scratch, d: decision(), bounds: stack_of(sp) };
    assert!(cx.bounds.0 < cx.bounds.1, "no stack mapping");

    // Outside the parked function: switchable, walked to the thread's start.
    assert_eq!(decide_self(&mut cx), lpstack_result::Ok);
    let reason = cx.d.reason;
    if cx.d.verdict != lpstack_verdict::Switchable {
        let maps: Vec<String> =
            maps().iter().map(|m| format!("{:x}-{:x} {} {:x} {}", m.0, m.1, m.2, m.3, m.4)).collect();
        panic!("{reason:?} at {:#x}, frame {}\n{}", cx.d.reason_addr, cx.d.frame, maps.join("\n"));
    }
    assert_eq!(cx.d.end, lpstack_walk_end::EndOfStack);
    assert!(cx.d.frame_count >= 3);

    // Inside it: blocked, 1000 times without allocating.
    let mut result = (0u64, 0usize, lpstack_verdict::Running);
    lpstack_alloc_test_park(&mut || {
        for _ in 0..10 {
            assert_eq!(decide_self(&mut cx), lpstack_result::Ok); // warm-up
        }
        let before = allocations();
        let mut blocked = 0;
        for _ in 0..1000 {
            let r = decide_self(&mut cx);
            blocked += usize::from(r == lpstack_result::Ok && cx.d.verdict == lpstack_verdict::Blocked);
        }
        result = (allocations() - before, blocked, cx.d.verdict);
    });
    let (allocs, blocked, last) = result;
    assert_eq!(last, lpstack_verdict::Blocked, "reason {:?} at {:#x}", cx.d.reason, cx.d.reason_addr);
    assert_eq!(blocked, 1000);
    assert_eq!(cx.d.blocking_function, 0);
    assert_eq!(allocs, 0, "allocations during 1000 userspace decisions");
    eprintln!("userspace: 1000 self decisions through CFI, {} frames each: {allocs} allocations", cx.d.frame_count);
    unsafe {
        lpstack_scratch_free(scratch);
        lpstack_patchset_free(set);
        lpstack_unwinder_free(u);
    }
}
