//! makedumpfile's flattened format (QEMU 7.2's kdump output): records,
//! the reassembled byte source, and the kdump file inside it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::dump::Dump;
use lpstack::dump::flattened::FlattenedSource;
use lpstack::dump::source::ByteSource;

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = FlattenedSource::parse(data) {
        let _ = (f.records(), f.overridden_bytes());
        let mut buf = [0u8; 512];
        for at in [0u64, 1, 4095, 4096, 8191, 1 << 20, u64::MAX - 10] {
            let _ = f.read_at(at, &mut buf);
        }
    }
    if let Ok(mut dump) = Dump::open(data) {
        common::exercise_dump(&mut dump);
    }
});
