//! BTF: the vmlinux blob, split (module) BTF over a base, type queries and
//! the kernel layout lpstack takes from it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::kernel::btf::{Btf, Kind};
use lpstack::kernel::layout::Layout;

mod common;
use common::Input;

fn exercise(btf: &Btf<'_>) {
    for id in btf.type_ids().take(2000) {
        let _ = (btf.kind(id), btf.name(id), btf.resolve(id), btf.type_size(id), btf.pointee(id), btf.array_info(id));
        if let Ok(members) = btf.members(id) {
            for m in members.take(64) {
                let _ = m;
            }
        }
    }
    let _ = btf.find_by_name("task_struct", Kind::Struct);
    for (s, path) in
        [("task_struct", "tasks"), ("task_struct", "thread.sp"), ("task_struct", "stack"), ("module", "mem")]
    {
        let _ = btf.member(s, path);
    }
    let _ = btf.enum_value(None, "TASK_COMM_LEN");
    let _ = Layout::from_btf(btf);
}

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 && data[..2] == [0x9f, 0xeb] {
        // One blob, as in vmlinux.
        if let Ok(btf) = Btf::parse(data) {
            exercise(&btf);
            // A prefix (its length from the unused flags byte) answers as
            // the whole table or says it ran short.
            let cut = data.len() * usize::from(data[3]) / 256;
            if let Ok(prefix) = Btf::parse_prefix(data, cut, cut / 2) {
                let answers =
                    |b: &Btf<'_>| format!("{:?} {:?}", b.member("task_struct", "thread.sp"), Layout::from_btf(b));
                let got = answers(&prefix);
                assert!(prefix.ran_short() || got == answers(&btf), "prefix {cut}: {got}");
            }
        }
        return;
    }
    // [u32 base length][base][split].
    let mut input = Input::new(data);
    let base = input.chunk();
    let split = input.rest();
    if let Ok(base) = Btf::parse(base) {
        exercise(&base);
        if let Ok(m) = Btf::parse_split(split, &base) {
            exercise(&m);
        }
    }
});
