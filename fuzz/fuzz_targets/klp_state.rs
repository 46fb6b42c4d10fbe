//! The kernel's livepatch state read from memory (`kernel::klp`) and the
//! checked ranges derived from it (`patchset::klp`).
//!
//! Input: writes over a valid image (two stacked patches, one in
//! transition): each 10 bytes are a u16 offset and a u64 value, so every
//! link, flag, name pointer and the transition globals get corrupted in
//! place while the rest stays well-formed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::kernel::klp::{KlpSymbols, read_klp_state};
use lpstack::kernel::layout::{Field, KlpLayout};
use lpstack::memory::SliceMemory;
use lpstack::patchset::klp::{KlpKnowledge, ResolveOptions, from_transition, resolve_in_kernel};
use lpstack::patchset::parse_funcs;
use lpstack::symbols::{Symbolizer, symbols_from_list};

const BASE: u64 = 0xffff_8880_0000_0000;
const SIZE: usize = 0x2000;

fn f(offset: u64, size: u64) -> Field {
    Field { offset, size }
}

fn layout() -> KlpLayout {
    KlpLayout {
        patch_mod: f(0, 8),
        patch_list: f(0x10, 16),
        patch_obj_list: f(0x20, 16),
        patch_enabled: f(0x30, 1),
        patch_replace: f(0x31, 1),
        obj_name: f(0, 8),
        obj_node: f(0x8, 16),
        obj_func_list: f(0x18, 16),
        obj_patched: f(0x28, 1),
        obj_dynamic: Some(f(0x29, 1)),
        func_old_name: f(0, 8),
        func_new_func: f(0x8, 8),
        func_old_sympos: f(0x10, 8),
        func_old_func: f(0x18, 8),
        func_node: f(0x20, 16),
        func_stack_node: f(0x30, 16),
        func_old_size: f(0x40, 8),
        func_new_size: f(0x48, 8),
        func_nop: Some(f(0x50, 1)),
        func_patched: f(0x51, 1),
        func_transition: f(0x52, 1),
        module_name: f(0x18, 56),
    }
}

struct Img(Vec<u8>);
impl Img {
    fn put(&mut self, at: u64, v: u64) {
        let o = (at - BASE) as usize;
        self.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn byte(&mut self, at: u64, v: u8) {
        self.0[(at - BASE) as usize] = v;
    }
    fn text(&mut self, at: u64, s: &str) {
        let o = (at - BASE) as usize;
        self.0[o..o + s.len()].copy_from_slice(s.as_bytes());
    }
    /// Links `nodes` into the circular list at `head`.
    fn list(&mut self, head: u64, nodes: &[u64]) {
        let all: Vec<u64> = std::iter::once(head).chain(nodes.iter().copied()).collect();
        for (i, &n) in all.iter().enumerate() {
            self.put(n, all[(i + 1) % all.len()]);
            self.put(n + 8, all[(i + all.len() - 1) % all.len()]);
        }
    }
}

const HEAD: u64 = BASE;
const TP: u64 = BASE + 0x40;
const TARGET: u64 = BASE + 0x48;
const OLD: u64 = 0xffff_ffff_c000_1000;
const NEW1: u64 = 0xffff_ffff_c001_0000;
const NEW2: u64 = 0xffff_ffff_c002_0000;

/// lp1 then lp2 (in transition), each replacing park:park_here_a.
fn image() -> Img {
    let mut m = Img(vec![0; SIZE]);
    let (p1, p2) = (BASE + 0x100, BASE + 0x200);
    let (o1, o2) = (BASE + 0x300, BASE + 0x400);
    let (f1, f2) = (BASE + 0x500, BASE + 0x600);
    let ops = BASE + 0x700;
    m.list(HEAD, &[p1 + 0x10, p2 + 0x10]);
    for (p, o, f, new, module) in [(p1, o1, f1, NEW1, BASE + 0x800), (p2, o2, f2, NEW2, BASE + 0x900)] {
        m.put(p, module);
        m.text(module + 0x18, if p == p1 { "lp1" } else { "lp2" });
        m.byte(p + 0x30, 1);
        m.list(p + 0x20, &[o + 0x8]);
        m.put(o, BASE + 0xa00);
        m.byte(o + 0x28, 1);
        m.list(o + 0x18, &[f + 0x20]);
        m.put(f, BASE + 0xa10);
        m.put(f + 0x8, new);
        m.put(f + 0x18, OLD);
        m.put(f + 0x40, 0x40);
        m.put(f + 0x48, 0x20);
        m.byte(f + 0x51, 1);
    }
    m.text(BASE + 0xa00, "park");
    m.text(BASE + 0xa10, "park_here_a");
    m.list(ops, &[f2 + 0x30, f1 + 0x30]);
    m.put(TP, p2);
    m.put(TARGET, 1);
    m
}

fuzz_target!(|data: &[u8]| {
    let mut m = image();
    for w in data.chunks_exact(10) {
        let at = u16::from_le_bytes([w[0], w[1]]) as usize % (SIZE - 8);
        m.0[at..at + 8].copy_from_slice(&w[2..10]);
    }
    let mut mem = SliceMemory::new(BASE, &m.0);
    let syms = KlpSymbols { patches: HEAD, transition_patch: TP, target_state: TARGET };
    let Ok(state) = read_klp_state(&mut mem, &layout(), 0, syms) else { return };
    let mut symbols = Symbolizer::new();
    symbols.add(symbols_from_list("park", [("park_here_a", OLD, 0x40)]));
    symbols.add(symbols_from_list("lp1", [("livepatch_park_here_a", NEW1, 0x20)]));
    symbols.add(symbols_from_list("lp2", [("livepatch_park_here_a", NEW2, 0x20)]));
    let from_memory = from_transition(&state, &symbols);
    let specs = parse_funcs("park:park_here_a\nabsent:f\n", "vmlinux").unwrap_or_default();
    for unpatch in [false, true] {
        for replace in [false, true] {
            let written =
                resolve_in_kernel(&specs, &symbols, &KlpKnowledge::State(&state), ResolveOptions { unpatch, replace });
            // Whatever the state, every range the kernel's rule yields from
            // memory is also checked when the set names the same function.
            if let (Some(m), Ok(w), false) = (&from_memory, &written, unpatch) {
                for f in m.set.funcs() {
                    assert!(
                        w.set.funcs().iter().any(|g| g.address == f.address && g.size == f.size),
                        "{:?} missing",
                        f
                    );
                }
            }
        }
    }
});
