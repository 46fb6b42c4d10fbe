//! VMCOREINFO text (`KEY=VALUE` lines) and every typed getter.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::dump::VmcoreInfo;

fuzz_target!(|data: &[u8]| {
    let Ok(vi) = VmcoreInfo::parse(data) else { return };
    let keys: Vec<String> = vi.keys().take(256).map(str::to_owned).collect();
    for k in &keys {
        let _ = (vi.get(k), vi.line_of(k));
        if let Some(name) = k.strip_prefix("SYMBOL(").and_then(|s| s.strip_suffix(')')) {
            let _ = (vi.symbol(name), vi.try_symbol(name));
        }
        if let Some(name) = k.strip_prefix("NUMBER(").and_then(|s| s.strip_suffix(')')) {
            let _ = (vi.number(name), vi.try_number(name));
        }
        for (p, f) in [
            ("SIZE(", VmcoreInfo::size as fn(&VmcoreInfo, &str) -> Option<u64>),
            ("OFFSET(", VmcoreInfo::offset),
            ("LENGTH(", VmcoreInfo::length),
        ] {
            if let Some(name) = k.strip_prefix(p).and_then(|s| s.strip_suffix(')')) {
                let _ = f(&vi, name);
            }
        }
    }
    let _ =
        (vi.osrelease(), vi.build_id(), vi.page_size(), vi.try_page_size(), vi.kerneloffset(), vi.try_kerneloffset());
    let _ = vi.try_number("phys_base");
    assert!(vi.text().len() <= data.len());
});
