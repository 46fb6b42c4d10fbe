//! Shared helpers for integration tests: the real-kernel fixtures.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

pub const KERNELS: &[(&str, u32)] = &[("6.12.117+deb12-amd64", 3), ("6.1.0-57-amd64", 1)];

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn read(name: &str) -> Vec<u8> {
    let p = fixture(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run tests/fixtures/build-orc-fixtures.sh)", p.display()))
}

pub fn read_gz(name: &str) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(&read(name)[..]).read_to_string(&mut s).expect("gzip fixture");
    s
}
