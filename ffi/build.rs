// The shared library names its ABI version in its SONAME, as cargo-c does
// (liblpstack.so.MAJOR, or liblpstack.so.0.MINOR before 1.0), so programs
// linked against it keep working across compatible updates. Only the
// cdylib is affected; ffi/install.sh installs the same names.
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let abi = if major == "0" { format!("0.{minor}") } else { major };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblpstack.so.{abi}");
    }
}
