//! ELF vmcores (kdump's /proc/vmcore, QEMU dump-guest-memory): the ELF
//! reader, its notes, and page reads through `Dump`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::dump::Dump;
use lpstack::dump::elf::{ElfDump, ElfTail};
use lpstack::dump::notes::{NoteIter, summarize};

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut e) = ElfDump::parse(data) {
        let _ = summarize(e.notes(), true);
        for s in e.segments().iter().take(64) {
            let _ = e.lookup_phys(s.paddr);
            let _ = e.lookup_phys(s.paddr.wrapping_add(s.memsz).wrapping_sub(1));
            let _ = e.lookup_virt(s.vaddr);
        }
        e.set_tail_policy(ElfTail::Zero);
        let _ = e.lookup_phys(0);
    }
    // The raw bytes as a note area, as the kdump readers see theirs.
    let _ = summarize(NoteIter::new(data, 0), true);
    if let Ok(mut dump) = Dump::open(data) {
        common::exercise_dump(&mut dump);
    }
});
