//! A DWARF CFI walk: fuzzed `.eh_frame` / `.debug_frame` bytes compiled by
//! `CfiTable::from_elf`, fuzzed registers and stack, through the public
//! walk API (`walk_cfi` over `UserModules`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::arch::x86_64::Reg;
use lpstack::cfi::{CfiCache, CfiTable};
use lpstack::memory::SliceMemory;
use lpstack::symbols::SymbolTable;
use lpstack::walk::{StackBounds, UserModule, UserModules, WalkConfig, walk_cfi};

mod common;
use common::{Input, check_walk, elf_with_cfi, regs};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let cfi_addr = input.u64();
    let text_addr = input.u64();
    let text_size = u64::from(input.u32());
    let bias = input.u64();
    let cfi = input.chunk();
    let elf = elf_with_cfi(cfi, flags & 1 != 0, cfi_addr, text_addr, text_size);
    let Ok(table) = CfiTable::from_elf(&elf) else { return };
    let start_pc = text_addr.wrapping_add(bias);
    let module = UserModule {
        name: "fuzz".into(),
        path: "fuzz".into(),
        start: start_pc,
        end: start_pc.saturating_add(text_size.max(1)),
        bias,
        cfi: Some(table),
        symbols: SymbolTable::new("fuzz"),
    };
    let mut modules = UserModules::new(vec![module]);
    if flags & 2 != 0 {
        // A second mapping of the same CFI elsewhere: walks may cross modules.
        if let Ok(t2) = CfiTable::from_elf(&elf) {
            let at = input.u64();
            modules.push(UserModule {
                name: "fuzz2".into(),
                path: "fuzz2".into(),
                start: at,
                end: at.saturating_add(text_size.max(1)),
                bias: at.wrapping_sub(text_addr),
                cfi: Some(t2),
                symbols: SymbolTable::new("fuzz2"),
            });
        }
    }
    let mut start = lpstack::walk::WalkStart::from_regs(regs(&mut input));
    start.signal = flags & 4 != 0;
    let config = WalkConfig { max_frames: usize::from(input.u8()).max(1), ..WalkConfig::default() };
    let stack_base = start.regs.get(Reg::Rsp).unwrap_or(0).wrapping_sub(u64::from(input.u16())) & !7;
    let stack = input.rest();
    let bounds = StackBounds::task(stack_base, stack_base.saturating_add(stack.len() as u64));
    let mut mem = SliceMemory::new(stack_base, stack);
    let mut cache = CfiCache::new();
    let mut frames = Vec::new();
    let r = walk_cfi(&modules, &mut mem, &mut cache, &bounds, start, &config, &mut frames);
    check_walk(&frames, &r, &config);
});
