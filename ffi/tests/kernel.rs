//! The C API over a real kernel: the 6.12 ORC tables and System.map of the
//! main crate's fixtures, and the stacks of real tasks laid out as images.
//! Frames, verdicts, hits, batches and models are checked against what the
//! kernel itself printed.

mod common;

use std::ffi::{CStr, c_char};
use std::ptr;

use common::*;
use lpstack::*;

fn name(u: *const lpstack_unwinder, pc: u64) -> String {
    let mut buf = [0 as c_char; 128];
    let mut off = 0;
    ok(unsafe { lpstack_unwinder_symbolize(u, pc, buf.as_mut_ptr(), buf.len(), &mut off) }, "symbolize");
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

#[test]
fn real_tasks_decide_like_the_kernel() {
    let u = kernel_unwinder();
    let mut set = ptr::null_mut();
    let text = c"# the cat blocked on an empty pipe, and one on a FIFO\npipe_read\nfifo_open\n";
    ok(unsafe { lpstack_patchset_new_from_text(text.as_ptr(), ptr::null(), u, &mut set) }, "set");
    assert_eq!(unsafe { lpstack_patchset_len(set) }, 2);
    let mut r = lpstack_range {
        size: size_of::<lpstack_range>(),
        object: ptr::null(),
        function: ptr::null(),
        address: 0,
        size_bytes: 0,
    };
    ok(unsafe { lpstack_patchset_get(set, 1, &mut r) }, "get");
    assert_eq!(unsafe { CStr::from_ptr(r.function) }.to_str(), Ok("fifo_open"));
    assert_eq!(unsafe { CStr::from_ptr(r.object) }.to_str(), Ok("vmlinux"));
    assert!(r.address > 0xffffffff81000000 && r.size_bytes > 0);
    assert_eq!(unsafe { lpstack_patchset_get(set, 2, &mut r) }, lpstack_result::NotFound);

    let mut scratch = ptr::null_mut();
    ok(unsafe { lpstack_scratch_new(0, &mut scratch) }, "scratch");
    let tasks = kernel_tasks();
    assert!(tasks.len() > 40);
    let images: Vec<(lpstack_core::walk::synth::SynthStack, Image)> = tasks
        .iter()
        .map(|(_, chain)| {
            let s = synth(chain);
            let img = Image { base: s.base, bytes: s.bytes.clone() };
            (s, img)
        })
        .collect();
    let inputs: Vec<lpstack_thread_input> = images.iter().map(|(s, img)| kernel_input(s, img)).collect();
    let mut singles = Vec::new();
    let mut facts_hits: Vec<Vec<u32>> = Vec::new();
    let mut blocked = Vec::new();
    for ((comm, chain), input) in tasks.iter().zip(&inputs) {
        let mut d = decision();
        let mut frames = [lpstack_frame { pc: 0, sp: 0, kind: lpstack_frame_kind::Start, flags: 0 }; 128];
        let mut n = 0;
        ok(
            unsafe { lpstack_thread_decide(u, set, input, scratch, &mut d, frames.as_mut_ptr(), frames.len(), &mut n) },
            comm,
        );
        assert_eq!(n, chain.len(), "{comm}");
        assert_eq!(d.frame_count as usize, chain.len());
        let pcs: Vec<u64> = frames[..n].iter().map(|f| f.pc).collect();
        assert_eq!(&pcs, chain, "{comm}");
        assert!(frames[..n].iter().all(|f| f.flags & LPSTACK_FRAME_RELIABLE != 0));
        assert_eq!(frames[0].kind, lpstack_frame_kind::Start);
        assert_ne!(d.end, lpstack_walk_end::None, "{comm}");
        let mut hits = [lpstack_hit { function: 0, frame: 0, pc: 0, past_unreliable: 0, inlined: 0 }; 8];
        let mut nh = 0;
        ok(unsafe { lpstack_scratch_hits(scratch, hits.as_mut_ptr(), hits.len(), &mut nh) }, "hits");
        assert_eq!(nh, d.hit_count as usize);
        match d.verdict {
            lpstack_verdict::Switchable => assert_eq!((nh, d.blocking_function), (0, LPSTACK_NONE), "{comm}"),
            lpstack_verdict::Blocked => {
                let f = d.blocking_function;
                let want = ["pipe_read", "fifo_open"][f as usize];
                assert_eq!(name(u, d.pc), want, "{comm}");
                assert_eq!(d.pc, chain[d.frame as usize]);
                assert!(hits[..nh].iter().any(|h| h.function == f && h.frame == d.frame && h.pc == d.pc));
                blocked.push((comm.clone(), want));
            }
            v => panic!("{comm}: {v:?}"),
        }
        facts_hits.push(hits[..nh].iter().map(|h| h.function).collect());
        singles.push(d);
    }
    assert!(blocked.contains(&("cat".to_string(), "pipe_read")), "{blocked:?}");
    assert!(blocked.contains(&("cat".to_string(), "fifo_open")), "{blocked:?}");

    // One batch call decides alike.
    let mut outs: Vec<lpstack_decision> = inputs.iter().map(|_| decision()).collect();
    ok(unsafe { lpstack_threads_decide(u, set, inputs.as_ptr(), inputs.len(), scratch, outs.as_mut_ptr()) }, "batch");
    for (a, b) in singles.iter().zip(&outs) {
        assert_eq!((a.verdict, a.blocking_function, a.frame, a.pc), (b.verdict, b.blocking_function, b.frame, b.pc));
    }

    // Models over the snapshot: livepatch switches every clean thread,
    // kpatch's single unit waits for the two cats.
    let facts: Vec<lpstack_thread_facts> = singles
        .iter()
        .zip(&facts_hits)
        .map(|(d, h)| lpstack_thread_facts {
            size: size_of::<lpstack_thread_facts>(),
            running: (d.verdict == lpstack_verdict::Running).into(),
            reliable: matches!(d.verdict, lpstack_verdict::Switchable | lpstack_verdict::Blocked).into(),
            in_kernel: 1,
            hits: if h.is_empty() { ptr::null() } else { h.as_ptr() },
            hit_count: h.len(),
        })
        .collect();
    let mut units = 0;
    let (mut leave, mut switch) = (9, 9);
    ok(unsafe { lpstack_model_parse(c"livepatch".as_ptr(), &mut leave, &mut switch) }, "parse");
    assert_eq!((leave, switch), (lpstack_leave::PatchedSet as u32, lpstack_switch::Thread as u32));
    ok(
        unsafe {
            lpstack_model_evaluate(leave, switch, facts.as_ptr(), facts.len(), 2, ptr::null_mut(), 0, &mut units)
        },
        "count",
    );
    assert_eq!(units, facts.len());
    let mut ready = vec![7u8; units];
    ok(
        unsafe {
            lpstack_model_evaluate(
                leave,
                switch,
                facts.as_ptr(),
                facts.len(),
                2,
                ready.as_mut_ptr(),
                ready.len(),
                &mut units,
            )
        },
        "livepatch",
    );
    for (r, d) in ready.iter().zip(&singles) {
        assert_eq!(*r == 1, d.verdict == lpstack_verdict::Switchable);
    }
    ok(unsafe { lpstack_model_parse(c"kpatch".as_ptr(), &mut leave, &mut switch) }, "parse");
    ok(
        unsafe {
            lpstack_model_evaluate(
                leave,
                switch,
                facts.as_ptr(),
                facts.len(),
                2,
                ready.as_mut_ptr(),
                ready.len(),
                &mut units,
            )
        },
        "kpatch",
    );
    assert_eq!((units, ready[0]), (1, 0));
    // LEAVE_FUNCTION + SWITCH_FUNCTION: both functions are on some stack.
    ok(
        unsafe {
            lpstack_model_evaluate(0, 0, facts.as_ptr(), facts.len(), 2, ready.as_mut_ptr(), ready.len(), &mut units)
        },
        "ff",
    );
    assert_eq!((units, &ready[..2]), (2, &[0u8, 0][..]));
    // With a third function on no stack, its unit is ready.
    ok(
        unsafe {
            lpstack_model_evaluate(0, 0, facts.as_ptr(), facts.len(), 3, ready.as_mut_ptr(), ready.len(), &mut units)
        },
        "ff3",
    );
    assert_eq!(&ready[..3], &[0, 0, 1]);
    assert_eq!(
        unsafe {
            lpstack_model_evaluate(0, 0, facts.as_ptr(), facts.len(), 1, ready.as_mut_ptr(), ready.len(), &mut units)
        },
        lpstack_result::InvalidArgument,
        "a hit index past n_functions"
    );
    assert_eq!(
        unsafe { lpstack_model_evaluate(1, 1, facts.as_ptr(), facts.len(), 2, ready.as_mut_ptr(), 3, &mut units) },
        lpstack_result::BufferTooSmall
    );

    unsafe {
        lpstack_scratch_free(scratch);
        lpstack_patchset_free(set);
        lpstack_unwinder_free(u);
    }
}

#[test]
fn damaged_stacks_and_reads_are_unreliable_with_a_reason() {
    let u = kernel_unwinder();
    let mut scratch = ptr::null_mut();
    ok(unsafe { lpstack_scratch_new(0, &mut scratch) }, "scratch");
    let (_, chain) = kernel_tasks().into_iter().find(|t| t.0 == "cat").unwrap_or_default();
    let s = synth(&chain);
    let decide = |img: &Image, tweak: &dyn Fn(&mut lpstack_thread_input)| {
        let mut input = kernel_input(&s, img);
        tweak(&mut input);
        let mut d = decision();
        ok(
            unsafe {
                lpstack_thread_decide(u, ptr::null(), &input, scratch, &mut d, ptr::null_mut(), 0, ptr::null_mut())
            },
            "decide",
        );
        d
    };
    let good = Image { base: s.base, bytes: s.bytes.clone() };
    assert_eq!(decide(&good, &|_| {}).verdict, lpstack_verdict::Switchable, "empty set");

    // The second return address replaced by a data address.
    let slot =
        (0..s.bytes.len() / 8).map(|i| i * 8).find(|&o| s.bytes[o..o + 8] == chain[1].to_le_bytes()).unwrap_or(0);
    let mut bad = Image { base: s.base, bytes: s.bytes.clone() };
    bad.bytes[slot..slot + 8].copy_from_slice(&0xffff888000001000u64.to_le_bytes());
    let d = decide(&bad, &|_| {});
    assert_eq!(
        (d.verdict, d.reason, d.reason_addr, d.frame),
        (lpstack_verdict::Unreliable, lpstack_reason::NotText, 0xffff888000001000, 1)
    );
    let mut buf = [0 as c_char; 128];
    let mut n = 0;
    ok(unsafe { lpstack_decision_reason_text(&d, buf.as_mut_ptr(), buf.len(), &mut n) }, "text");
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    assert_eq!(text, "pc 0xffff888000001000 is not in kernel or module text");
    assert_eq!(unsafe { CStr::from_ptr(lpstack_reason_name(d.reason as u32)) }.to_str(), Ok("not-text"));

    // A stack cut short: the read past the image fails.
    let short = Image { base: s.base, bytes: s.bytes[..slot].to_vec() };
    let d = decide(&short, &|_| {});
    assert_eq!((d.verdict, d.reason), (lpstack_verdict::Unreliable, lpstack_reason::Unreadable));
    assert_eq!(d.reason_detail, lpstack_memory_error::ReadFailed as u64);
    // The stack declared smaller than where sp is.
    let d = decide(&good, &|i| i.stack_lo = s.start_sp + 8);
    assert_eq!((d.reason, d.reason_addr), (lpstack_reason::StartNotOnStack, s.start_sp));
    // No rip.
    let d = decide(&good, &|i| i.known_mask &= !(1 << 16));
    assert_eq!(d.reason, lpstack_reason::MissingRegister);
    // A frame limit below the depth.
    let d = decide(&good, &|i| i.max_frames = 2);
    assert_eq!((d.reason, d.reason_detail, d.frame_count), (lpstack_reason::FrameLimit, 2, 2));
    // Declared text that leaves out the first pc.
    let running = decide(&good, &|i| i.running = 1);
    assert_eq!((running.verdict, running.frame_count), (lpstack_verdict::Running, 0));
    ok(unsafe { lpstack_unwinder_add_text(u, 0xffffffff82000000, 0xffffffff83000000) }, "text");
    let d = decide(&good, &|_| {});
    assert_eq!((d.reason, d.reason_addr), (lpstack_reason::NotText, chain[0]));
    // The return trampoline rule.
    ok(unsafe { lpstack_unwinder_add_text(u, 0xffffffff81000000, 0xffffffff82000000) }, "text");
    ok(unsafe { lpstack_unwinder_add_trampoline(u, chain[1], lpstack_trampoline::FtraceGraph as u32) }, "tramp");
    let d = decide(&good, &|_| {});
    assert_eq!((d.reason, d.reason_addr, d.reason_detail), (lpstack_reason::Trampoline, chain[1], 0));
    assert_eq!(unsafe { lpstack_unwinder_add_trampoline(u, 1, 3) }, lpstack_result::InvalidArgument);

    unsafe {
        lpstack_scratch_free(scratch);
        lpstack_unwinder_free(u);
    }
}

#[test]
fn orc_formats_are_detected_or_refused() {
    for (release, fmt) in [("6.12.117+deb12-amd64", 3u32), ("6.1.0-57-amd64", 1)] {
        let elf = std::fs::read(fixture(&format!("orc/vmlinux-{release}.orc.elf"))).unwrap_or_default();
        let mut u = ptr::null_mut();
        ok(unsafe { lpstack_unwinder_new_orc_elf(elf.as_ptr(), elf.len(), fmt, 0, &mut u) }, release);
        unsafe { lpstack_unwinder_free(u) };
        let r = unsafe { lpstack_unwinder_new_orc_elf(elf.as_ptr(), elf.len(), 0, 0, &mut u) };
        // 6.12 names its layout in .orc_header; the trimmed 6.1 file has no
        // header and no banner, so the format must be given.
        if fmt == 3 {
            ok(r, "detect 6.12");
            unsafe { lpstack_unwinder_free(u) };
        } else {
            assert_eq!(r, lpstack_result::UnknownFormat, "{release}");
        }
        assert_eq!(
            unsafe { lpstack_unwinder_new_orc_elf(elf.as_ptr(), elf.len(), 4, 0, &mut u) },
            lpstack_result::InvalidArgument
        );
    }
}

#[test]
fn module_tables_from_a_ko_placed_at_section_addresses() {
    // A real out-of-tree module built against Debian's 6.12 headers.
    let ko = std::fs::read(fixture(&format!("vmcore/{RELEASE}/lpstack_park.ko"))).unwrap_or_default();
    const TEXT: u64 = 0xffffffffc0000000;
    let section = |name: &'static std::ffi::CStr, address| lpstack_section {
        size: size_of::<lpstack_section>(),
        name: name.as_ptr(),
        address,
    };
    let mut sections = vec![section(c".text", TEXT), section(c".init.text", TEXT + 0x1000)];
    let u = kernel_unwinder();
    let add = |sections: &[lpstack_section], start, end| unsafe {
        lpstack_unwinder_add_orc_module(u, ko.as_ptr(), ko.len(), 0, sections.as_ptr(), sections.len(), start, end)
    };
    assert_eq!(add(&sections, TEXT, TEXT + 0x3000), lpstack_result::InvalidArgument, ".exit.text has no address");
    sections.push(section(c".exit.text", TEXT + 0x2000));
    sections[0].size = 8;
    assert_eq!(add(&sections, TEXT, TEXT + 0x3000), lpstack_result::SizeTooSmall);
    sections[0].size = size_of::<lpstack_section>();
    assert_eq!(add(&sections, TEXT + 1, TEXT), lpstack_result::InvalidArgument, "empty text range");
    let junk = [7u8; 64];
    assert_eq!(
        unsafe { lpstack_unwinder_add_orc_module(u, junk.as_ptr(), junk.len(), 0, sections.as_ptr(), 3, 0, 0) },
        lpstack_result::ParseError
    );
    ok(add(&sections, TEXT, TEXT + 0x3000), "add module");
    // A module is not a vmlinux.
    let mut other = ptr::null_mut();
    assert_eq!(
        unsafe { lpstack_unwinder_new_orc_elf(ko.as_ptr(), ko.len(), 0, 0, &mut other) },
        lpstack_result::InvalidArgument
    );
    assert!(other.is_null());

    // From inside park_here_a (.text+0x110): its entry is found and used,
    // so the walk gets one frame further and stops at the zero return
    // address of the empty stack image.
    let img = Image { base: STACK, bytes: vec![0; STACK_SIZE as usize] };
    let mut scratch = ptr::null_mut();
    ok(unsafe { lpstack_scratch_new(0, &mut scratch) }, "scratch");
    let decide = |ip: u64| {
        let mut input = input();
        input.regs[16] = ip;
        input.regs[7] = STACK + 0x3000;
        input.regs[6] = STACK + 0x3100;
        input.known_mask = 1 << 16 | 1 << 7 | 1 << 6;
        input.stack_lo = STACK;
        input.stack_hi = STACK + STACK_SIZE;
        input.read = Some(read_image);
        input.read_ctx = &img as *const Image as *mut std::ffi::c_void;
        let mut d = decision();
        ok(
            unsafe {
                lpstack_thread_decide(u, ptr::null(), &input, scratch, &mut d, ptr::null_mut(), 0, ptr::null_mut())
            },
            "decide",
        );
        d
    };
    let d = decide(TEXT + 0x111);
    assert_eq!((d.reason, d.reason_addr, d.frame, d.frame_count), (lpstack_reason::NotText, 0, 1, 2));
    // Past the declared module text there is neither code nor table.
    let d = decide(TEXT + 0x3010);
    assert_eq!((d.reason, d.reason_addr, d.frame), (lpstack_reason::NotText, TEXT + 0x3010, 0));
    // A user unwinder takes no ORC tables.
    let mut user = ptr::null_mut();
    ok(unsafe { lpstack_unwinder_new_user(&mut user) }, "user");
    assert_eq!(
        unsafe { lpstack_unwinder_add_orc_module(user, ko.as_ptr(), ko.len(), 0, sections.as_ptr(), 3, 0, 0) },
        lpstack_result::WrongKind
    );
    unsafe {
        lpstack_unwinder_free(user);
        lpstack_scratch_free(scratch);
        lpstack_unwinder_free(u);
    }
}
