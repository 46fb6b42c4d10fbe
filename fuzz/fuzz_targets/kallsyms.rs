//! kallsyms tables read out of (fuzzed) kernel memory: token table and
//! index, compressed names, and both offset encodings or plain addresses.
//!
//! Input: flags, six u32 offsets into the image (num_syms, names,
//! token_table, token_index, offsets or addresses, relative_base), the
//! known `_stext` address, then the image, mapped at `BASE`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::kernel::kallsyms::{KallsymsLocation, KnownSymbol, read_kallsyms};
use lpstack::memory::SliceMemory;

mod common;
use common::Input;

const BASE: u64 = 0xffffffff82000000;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.u8();
    let mut at = || BASE.wrapping_add(u64::from(input.u32()));
    let (num_syms, names, token_table, token_index, addrs, relative_base) = (at(), at(), at(), at(), at(), at());
    let stext = input.u64();
    let loc = KallsymsLocation {
        num_syms,
        names,
        token_table,
        token_index,
        offsets: (flags & 1 == 0).then_some(addrs),
        relative_base: (flags & 1 == 0).then_some(relative_base),
        addresses: (flags & 1 != 0).then_some(addrs),
    };
    let known = [KnownSymbol { name: "_stext", address: stext }];
    let image = input.rest();
    let mut mem = SliceMemory::new(BASE, image);
    if let Ok(table) = read_kallsyms(&mut mem, &loc, if flags & 2 != 0 { &[] } else { &known }) {
        // Every symbol took at least two name bytes of the image.
        assert!(table.len() <= image.len() / 2 + 1, "{} symbols from {} bytes", table.len(), image.len());
        let _ = table.lookup(stext);
        // The on-demand paths (a table with a name order), then every name.
        let _ = table.find_by_name("_stext").count();
        let _ = table.lookup(stext.wrapping_add(1));
        assert_eq!(table.symbols().len(), table.len());
    }
});
