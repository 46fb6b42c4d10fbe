//! The C API (`lpstack-ffi`, ffi/include/lpstack.h) driven by the bytes:
//! an ORC or DWARF unwinder built from fuzzed tables or CFI, a patch set
//! from fuzzed text or ranges, threads decided over a fuzzed stack read
//! through the C callback, then hits, texts and a consistency model.
//! Pointers passed are always valid: the bytes decide sizes, counts,
//! flags and values, as a C caller would.

#![no_main]

use std::ffi::{CString, c_char, c_int, c_void};
use std::ptr;

use libfuzzer_sys::fuzz_target;
use lpstack_ffi::*;

mod common;
use common::{Input, elf_with_cfi};

struct Stack<'a> {
    base: u64,
    bytes: &'a [u8],
    /// Every n-th read is short, to exercise the short-read path.
    short_every: u32,
    reads: u32,
}

unsafe extern "C" fn read_stack(ctx: *mut c_void, addr: u64, buf: *mut c_void, len: usize) -> c_int {
    let s = unsafe { &mut *ctx.cast::<Stack<'_>>() };
    s.reads += 1;
    let Some(off) = addr.checked_sub(s.base).and_then(|o| usize::try_from(o).ok()) else { return -1 };
    let Some(src) = off.checked_add(len).and_then(|end| s.bytes.get(off..end)) else { return -1 };
    if s.short_every != 0 && s.reads % s.short_every == 0 {
        return 1;
    }
    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), buf.cast::<u8>(), len) };
    0
}

fn cstring(b: &[u8]) -> CString {
    CString::new(b.iter().copied().filter(|&c| c != 0).collect::<Vec<u8>>()).unwrap_or_default()
}

fn ok(r: lpstack_result) -> bool {
    assert_ne!(r, lpstack_result::Panic, "a panic was caught at the C boundary");
    r == lpstack_result::Ok
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let mut u: *mut lpstack_unwinder = ptr::null_mut();
    let kernel = flags & 1 == 0;
    if kernel {
        let n = usize::from(input.u8());
        let ips = input.bytes(n * 4);
        let entries = input.bytes(n * 6);
        let addr = input.u64();
        let fmt = u32::from(input.u8() % 5);
        if !ok(unsafe {
            lpstack_unwinder_new_orc_tables(ips.as_ptr(), ips.len(), entries.as_ptr(), entries.len(), addr, fmt, &mut u)
        }) {
            return;
        }
        let (start, end) = (input.u64(), input.u64());
        ok(unsafe { lpstack_unwinder_add_text(u, start, end) });
        ok(unsafe { lpstack_unwinder_add_trampoline(u, input.u64(), input.u32() % 4) });
        if flags & 2 != 0 {
            let ips2 = input.bytes(8);
            let e2 = input.bytes(12);
            ok(unsafe {
                lpstack_unwinder_add_orc_tables(
                    u,
                    ips2.as_ptr(),
                    ips2.len(),
                    e2.as_ptr(),
                    e2.len(),
                    input.u64(),
                    fmt,
                    input.u64(),
                    input.u64(),
                )
            });
        }
    } else {
        if !ok(unsafe { lpstack_unwinder_new_user(&mut u) }) {
            return;
        }
        let (cfi_addr, text_addr, text_size) = (input.u64(), input.u64(), u64::from(input.u32()));
        let cfi = input.chunk();
        let elf = elf_with_cfi(cfi, flags & 2 != 0, cfi_addr, text_addr, text_size);
        let name = c"fuzz";
        let (start, bias) = (input.u64(), input.u64());
        if flags & 4 != 0 {
            ok(unsafe {
                lpstack_unwinder_add_mapping(
                    u,
                    name.as_ptr(),
                    elf.as_ptr(),
                    elf.len(),
                    start,
                    start.wrapping_add(text_size),
                    bias,
                )
            });
        } else {
            ok(unsafe {
                lpstack_unwinder_add_elf(
                    u,
                    name.as_ptr(),
                    elf.as_ptr(),
                    elf.len(),
                    start,
                    start.wrapping_add(text_size),
                    bias,
                )
            });
        }
    }
    let map = cstring(input.chunk());
    ok(unsafe { lpstack_unwinder_add_system_map(u, c"vmlinux".as_ptr(), map.as_ptr()) });

    // The patch set: funcs.txt text resolved against the unwinder's symbols,
    // or raw ranges.
    let mut set: *mut lpstack_patchset = ptr::null_mut();
    if flags & 8 != 0 {
        let text = cstring(input.chunk());
        ok(unsafe { lpstack_patchset_new_from_text(text.as_ptr(), c"vmlinux".as_ptr(), u, &mut set) });
    } else {
        let n = usize::from(input.u8() % 8);
        let names: Vec<CString> = (0..n).map(|i| CString::new(format!("f{i}")).unwrap_or_default()).collect();
        let ranges: Vec<lpstack_range> = names
            .iter()
            .map(|name| lpstack_range {
                size: std::mem::size_of::<lpstack_range>(),
                object: c"vmlinux".as_ptr(),
                function: name.as_ptr(),
                address: input.u64(),
                size_bytes: u64::from(input.u16()),
            })
            .collect();
        ok(unsafe { lpstack_patchset_new_from_ranges(ranges.as_ptr(), ranges.len(), &mut set) });
    }
    if set.is_null() {
        unsafe { lpstack_unwinder_free(u) };
        return;
    }
    let n_funcs = unsafe { lpstack_patchset_len(set) };
    let mut ranges = Vec::new();
    for i in 0..n_funcs.min(16) {
        let mut r = lpstack_range {
            size: std::mem::size_of::<lpstack_range>(),
            object: ptr::null(),
            function: ptr::null(),
            address: 0,
            size_bytes: 0,
        };
        if ok(unsafe { lpstack_patchset_get(set, i, &mut r) }) {
            ranges.push((r.address, r.size_bytes));
        }
    }

    let mut scratch: *mut lpstack_scratch = ptr::null_mut();
    let cap = u32::from(input.u8());
    if ok(unsafe { lpstack_scratch_new(cap, &mut scratch) }) {
        let mut regs = [0u64; 17];
        for r in &mut regs {
            *r = input.u64();
        }
        let known_mask = input.u64();
        let cs = u64::from(input.u8());
        let tflags = input.u8();
        let max_frames = u32::from(input.u8());
        let lo_back = u64::from(input.u16());
        let stack_bytes = input.rest();
        let base = regs[7].wrapping_sub(lo_back) & !7;
        let mut stack = Stack { base, bytes: stack_bytes, short_every: u32::from(tflags >> 5), reads: 0 };
        let stack_ptr: *mut c_void = (&raw mut stack).cast();
        let mk = |running: bool| lpstack_thread_input {
            size: std::mem::size_of::<lpstack_thread_input>(),
            regs,
            known_mask,
            cs,
            full_regs: c_int::from(tflags & 1 != 0),
            signal: c_int::from(tflags & 2 != 0),
            stack_lo: base,
            stack_hi: base.saturating_add(stack_bytes.len() as u64),
            read: Some(read_stack),
            read_ctx: stack_ptr,
            max_frames,
            frame_pointer_rules: c_int::from(tflags & 4 != 0),
            running: c_int::from(running),
            extra_stacks: ptr::null(),
            extra_stack_count: 0,
        };
        let t = mk(tflags & 8 != 0);
        let mut d: lpstack_decision = unsafe { std::mem::zeroed() };
        d.size = std::mem::size_of::<lpstack_decision>();
        let mut frames = vec![lpstack_frame { pc: 0, sp: 0, kind: lpstack_frame_kind::Start, flags: 0 }; 128];
        let mut written = 0usize;
        let fcap = usize::from(tflags & 16 != 0) * frames.len();
        if ok(unsafe { lpstack_thread_decide(u, set, &t, scratch, &mut d, frames.as_mut_ptr(), fcap, &mut written) }) {
            assert!(written <= fcap);
            if d.verdict == lpstack_verdict::Switchable {
                // Never switchable with a patched function on the stack.
                for f in &frames[..written] {
                    for &(a, n) in &ranges {
                        assert!(!(f.pc >= a && f.pc - a < n), "switchable with {:#x} in [{a:#x}, +{n:#x})", f.pc);
                    }
                }
            }
            let mut hits = [lpstack_hit { function: 0, frame: 0, pc: 0, past_unreliable: 0, inlined: 0 }; 8];
            let mut nh = 0usize;
            ok(unsafe { lpstack_scratch_hits(scratch, hits.as_mut_ptr(), hits.len(), &mut nh) });
            let mut text = [0 as c_char; 256];
            let mut len = 0usize;
            ok(unsafe { lpstack_decision_reason_text(&d, text.as_mut_ptr(), text.len(), &mut len) });
            let _ = (lpstack_reason_name(d.reason as u32), lpstack_verdict_name(d.verdict as u32));
            // The model over this thread.
            let idx: Vec<u32> = hits[..nh.min(hits.len())].iter().map(|h| h.function).collect();
            let facts = lpstack_thread_facts {
                size: std::mem::size_of::<lpstack_thread_facts>(),
                running: c_int::from(d.verdict == lpstack_verdict::Running),
                reliable: c_int::from(matches!(d.verdict, lpstack_verdict::Switchable | lpstack_verdict::Blocked)),
                in_kernel: 1,
                hits: idx.as_ptr(),
                hit_count: idx.len(),
            };
            let mut ready = [0u8; 64];
            let mut units = 0usize;
            ok(unsafe {
                lpstack_model_evaluate(
                    u32::from(flags >> 4) % 4,
                    u32::from(flags >> 6),
                    &facts,
                    1,
                    n_funcs,
                    ready.as_mut_ptr(),
                    ready.len(),
                    &mut units,
                )
            });
        }
        // Two threads at once, the second running.
        let both = [mk(false), mk(true)];
        let mut outs: [lpstack_decision; 2] = unsafe { std::mem::zeroed() };
        for o in &mut outs {
            o.size = std::mem::size_of::<lpstack_decision>();
        }
        ok(unsafe { lpstack_threads_decide(u, set, both.as_ptr(), 2, scratch, outs.as_mut_ptr()) });
        unsafe { lpstack_scratch_free(scratch) };
    }
    let mut buf = [0 as c_char; 64];
    let mut off = 0u64;
    ok(unsafe {
        lpstack_unwinder_symbolize(u, ranges.first().map_or(0, |r| r.0), buf.as_mut_ptr(), buf.len(), &mut off)
    });
    let mut le = 0usize;
    let _ = unsafe { lpstack_last_error(buf.as_mut_ptr(), buf.len(), &mut le) };
    let mut leave = 0u32;
    let mut switch = 0u32;
    let _ = unsafe { lpstack_model_parse(c"LEAVE_KERNEL,SWITCH_THREAD".as_ptr(), &mut leave, &mut switch) };
    unsafe {
        lpstack_patchset_free(set);
        lpstack_unwinder_free(u);
    }
});
