//! Helpers shared by the Rust tests of the C API: handles built through the
//! C entry points, the real-kernel fixtures of the main crate, and a
//! userspace unwinder for the test process itself.
#![allow(dead_code)]

use std::ffi::{CString, c_int, c_void};
use std::io::Read;
use std::path::PathBuf;
use std::ptr;

use lpstack::*;

pub fn ok(r: lpstack_result, what: &str) {
    if r != lpstack_result::Ok {
        let mut buf = vec![0 as std::ffi::c_char; lpstack_last_error_len() + 1];
        let mut n = 0;
        let text = if unsafe { lpstack_last_error(buf.as_mut_ptr(), buf.len(), &mut n) } == lpstack_result::Ok {
            String::from_utf8_lossy(&buf[..n].iter().map(|&c| c as u8).collect::<Vec<_>>()).into_owned()
        } else {
            String::new()
        };
        panic!("{what}: {r:?}: {text}");
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

pub fn read_gz(name: &str) -> String {
    let bytes = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut s = String::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut s).unwrap_or_else(|e| panic!("{name}: {e}"));
    s
}

/// The 6.12 kernel's ORC tables and System.map behind the C API.
pub const RELEASE: &str = "6.12.117+deb12-amd64";
pub const STACK: u64 = 0xffffc90000010000;
pub const STACK_SIZE: u64 = 0x4000;

pub fn kernel_unwinder() -> *mut lpstack_unwinder {
    let elf = std::fs::read(fixture(&format!("orc/vmlinux-{RELEASE}.orc.elf"))).unwrap_or_else(|e| panic!("{e}"));
    let mut u = ptr::null_mut();
    ok(unsafe { lpstack_unwinder_new_orc_elf(elf.as_ptr(), elf.len(), 0, 0, &mut u) }, "new_orc_elf");
    let map = CString::new(read_gz(&format!("orc/System.map-{RELEASE}.gz"))).unwrap_or_default();
    ok(unsafe { lpstack_unwinder_add_system_map(u, c"vmlinux".as_ptr(), map.as_ptr()) }, "system map");
    u
}

/// Tasks of `tests/fixtures/stacks/stacks-6.12.117.txt`: comm and chain.
pub fn kernel_tasks() -> Vec<(String, Vec<u64>)> {
    let text = std::fs::read_to_string(fixture("stacks/stacks-6.12.117.txt")).unwrap_or_default();
    let mut out: Vec<(String, Vec<u64>)> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["task", _, comm] => out.push((comm.to_string(), vec![])),
            [addr, _] => {
                if let (Some(t), Ok(a)) = (out.last_mut(), u64::from_str_radix(addr, 16)) {
                    t.1.push(a)
                }
            }
            _ => panic!("bad line {line:?}"),
        }
    }
    out
}

/// A stack image for a chain, laid out with the same tables.
pub fn synth(chain: &[u64]) -> lpstack_core::walk::synth::SynthStack {
    let elf = std::fs::read(fixture(&format!("orc/vmlinux-{RELEASE}.orc.elf"))).unwrap_or_default();
    let table = lpstack_core::orc::elf::vmlinux_table(&elf, None, Some(RELEASE)).unwrap_or_else(|e| panic!("{e}"));
    lpstack_core::walk::synth::SynthStack::build(&table, chain, STACK, STACK_SIZE)
        .unwrap_or_else(|| panic!("no layout"))
}

/// Reads a byte image at a base address.
pub struct Image {
    pub base: u64,
    pub bytes: Vec<u8>,
}

pub unsafe extern "C" fn read_image(ctx: *mut c_void, addr: u64, buf: *mut c_void, len: usize) -> c_int {
    let img = unsafe { &*(ctx as *const Image) };
    let Some(off) = addr.checked_sub(img.base) else { return -1 };
    let off = off as usize;
    match img.bytes.get(off..off.saturating_add(len)) {
        Some(src) => {
            unsafe { ptr::copy_nonoverlapping(src.as_ptr(), buf.cast::<u8>(), len) };
            0
        }
        None => -1,
    }
}

pub fn input() -> lpstack_thread_input {
    lpstack_thread_input {
        size: size_of::<lpstack_thread_input>(),
        regs: [0; 17],
        known_mask: 0,
        cs: 0,
        full_regs: 0,
        signal: 0,
        stack_lo: 0,
        stack_hi: 0,
        read: None,
        read_ctx: ptr::null_mut(),
        max_frames: 0,
        frame_pointer_rules: 0,
        running: 0,
        extra_stacks: ptr::null(),
        extra_stack_count: 0,
    }
}

pub fn decision() -> lpstack_decision {
    lpstack_decision {
        size: size_of::<lpstack_decision>(),
        verdict: lpstack_verdict::Running,
        blocking_function: 0,
        frame: 0,
        pc: 0,
        reason: lpstack_reason::None,
        reason_addr: 0,
        frame_count: 0,
        hit_count: 0,
        reason_detail: 0,
        end: lpstack_walk_end::None,
        inlined: 0,
    }
}

/// A kernel input for a blocked task laid out in `img` (ip/sp/bp only).
pub fn kernel_input(s: &lpstack_core::walk::synth::SynthStack, img: &Image) -> lpstack_thread_input {
    let mut i = input();
    i.regs[16] = s.start_ip;
    i.regs[7] = s.start_sp;
    i.regs[6] = s.start_bp;
    i.known_mask = 1 << 16 | 1 << 7 | 1 << 6;
    i.stack_lo = STACK;
    i.stack_hi = STACK + STACK_SIZE;
    i.read = Some(read_image);
    i.read_ctx = img as *const Image as *mut c_void;
    i
}

/// An executable mapping of this process.
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub offset: u64,
    pub path: String,
}

pub fn maps() -> Vec<(u64, u64, String, u64, String)> {
    let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let range = w.next()?;
            let perms = w.next()?.to_string();
            let offset = u64::from_str_radix(w.next()?, 16).ok()?;
            let path = w.nth(2).unwrap_or("").to_string();
            let (a, b) = range.split_once('-')?;
            Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?, perms, offset, path))
        })
        .collect()
}

/// A userspace unwinder for this process: every executable file mapping.
pub fn self_unwinder() -> *mut lpstack_unwinder {
    let mut u = ptr::null_mut();
    ok(unsafe { lpstack_unwinder_new_user(&mut u) }, "new_user");
    for (start, end, perms, offset, path) in maps() {
        if !perms.contains('x') || !path.starts_with('/') {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let name = CString::new(path.rsplit('/').next().unwrap_or(&path)).unwrap_or_default();
        ok(
            unsafe { lpstack_unwinder_add_mapping(u, name.as_ptr(), bytes.as_ptr(), bytes.len(), start, end, offset) },
            &path,
        );
    }
    u
}

/// The stack mapping holding `sp`.
pub fn stack_of(sp: u64) -> (u64, u64) {
    maps().into_iter().find(|m| m.0 <= sp && sp < m.1).map(|m| (m.0, m.1)).unwrap_or((0, 0))
}

/// Reads this process's memory inside [lo, hi) (the ctx points at the pair).
pub unsafe extern "C" fn read_self(ctx: *mut c_void, addr: u64, buf: *mut c_void, len: usize) -> c_int {
    let (lo, hi) = unsafe { *(ctx as *const (u64, u64)) };
    if addr < lo || addr.checked_add(len as u64).is_none_or(|e| e > hi) {
        return -1;
    }
    unsafe { ptr::copy_nonoverlapping(addr as *const u8, buf.cast::<u8>(), len) };
    0
}

/// Registers of the calling function at this point: rip, rsp, rbp.
#[macro_export]
macro_rules! here {
    () => {{
        let (ip, sp, bp): (u64, u64, u64);
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp",
                ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp,
                options(nomem, nostack, preserves_flags)
            )
        };
        (ip, sp, bp)
    }};
}
