//! kdump-compressed files (makedumpfile, QEMU): headers, bitmaps, page
//! descriptors and every page codec.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::dump::Dump;
use lpstack::dump::kdump::KdumpFile;
use lpstack::dump::source::SliceSource;

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut k) = KdumpFile::parse(SliceSource(data)) {
        let page = k.page_size().clamp(1, 1 << 16) as usize;
        let mut buf = vec![0u8; page];
        let max = k.max_mapnr();
        for pfn in (0..48u64).chain([max.wrapping_sub(1), max, u64::MAX]) {
            let _ = k.lookup(pfn);
            let _ = k.read_page(pfn, &mut buf);
        }
        let _ = (k.dumped_pages(), k.notes_bytes().len(), k.vmcoreinfo_bytes().map(<[u8]>::len));
    }
    if let Ok(mut dump) = Dump::open(data) {
        common::exercise_dump(&mut dump);
    }
});
