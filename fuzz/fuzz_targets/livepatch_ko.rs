//! A livepatch module file (`.ko`): `read_livepatch_module` in all three
//! forms, with and without BTF, and the specs made from the result.
//!
//! Input: an ELF file as it is (read without BTF, so klp-build and
//! kpatch-build modules), or a u32-length-prefixed BTF blob then the ELF
//! file (read with that BTF too, so source-built modules). Checks that
//! every read is deterministic and every spec names a function.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lpstack::kernel::btf::Btf;
use lpstack::patchset::ko::{LivepatchModule, read_livepatch_module};

mod common;
use common::Input;

fn check(module: &LivepatchModule) {
    let specs = module.func_specs();
    assert_eq!(specs.len(), module.funcs().count());
    for (index, spec) in specs.iter().enumerate() {
        assert_eq!(spec.line, index + 1);
        assert!(!spec.function.is_empty() && !spec.object.is_empty());
    }
    if let Some(new) = module.replacement_specs() {
        assert_eq!(new.len(), specs.len());
    }
    let _ = module.objects.iter().map(|o| o.object_name()).count();
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"\x7fELF") {
        let first = read_livepatch_module(data, None);
        if let Ok(module) = &first {
            check(module);
        }
        assert_eq!(first, read_livepatch_module(data, None));
        return;
    }
    let mut input = Input::new(data);
    let btf = input.chunk();
    let elf = input.rest();
    let Ok(btf) = Btf::parse(btf) else { return };
    for btf in [Some(&btf), None] {
        if let Ok(module) = read_livepatch_module(elf, btf) {
            check(&module);
        }
    }
});
