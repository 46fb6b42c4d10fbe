//! The checked-in header must be what cbindgen makes of the sources now.
//! On drift, regenerate it: LPSTACK_BLESS=1 cargo test -p lpstack-ffi --test header

use std::path::Path;

#[test]
fn header_matches_the_sources() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));
    // From the sources alone (no `cargo metadata` inside a running cargo).
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen: {e}"));
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = dir.join("include/lpstack.h");
    if std::env::var_os("LPSTACK_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    if checked_in != fresh {
        let old = String::from_utf8_lossy(&checked_in);
        let new = String::from_utf8_lossy(&fresh);
        let first = old
            .lines()
            .zip(new.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(old.lines().count().min(new.lines().count()));
        panic!(
            "ffi/include/lpstack.h is stale: the sources changed the C API.\n\
             First difference at line {}:\n  checked in: {:?}\n  generated:  {:?}\n\
             Regenerate with: LPSTACK_BLESS=1 cargo test -p lpstack-ffi --test header",
            first + 1,
            old.lines().nth(first).unwrap_or("<end of file>"),
            new.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}
