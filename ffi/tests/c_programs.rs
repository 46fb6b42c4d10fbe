//! The C side of the API: C programs built against include/lpstack.h and
//! the static library cargo built next to this test, with -Wall -Wextra
//! -Werror, as C and as C++, and once under AddressSanitizer; the ptrace
//! example run against a sleeping child; install.sh into a temporary
//! prefix, then a program built with pkg-config against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const NATIVE_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];

fn ffi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put this crate's libraries: beside this test's executable
/// (`target/<profile>/deps`), where the same rustc run that made the rlib
/// this test links also wrote liblpstack.a and liblpstack.so.
fn built_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let deps = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    for dir in [deps.clone(), deps.parent().map(Path::to_path_buf).unwrap_or_default()] {
        if dir.join("liblpstack.a").is_file() {
            return dir;
        }
    }
    panic!("no liblpstack.a beside {} (cargo builds it with this test's crate)", exe.display());
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lpstack-ffi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn show(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Compiles `source` into `exe` with `flags`, linking the static library.
fn build(compiler: &str, flags: &[&str], source: &Path, exe: &Path) {
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .args(["-Wall", "-Wextra", "-Werror", "-g", "-I"])
        .arg(ffi_dir().join("include"))
        .arg(source)
        // After `-x c++`, the library must not be read as C++ source.
        .args(["-x", "none"])
        .arg(built_dir().join("liblpstack.a"))
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(exe);
    let o = run(&mut cmd);
    assert!(o.status.success(), "{cmd:?}\n{}", show(&o));
}

/// Builds and runs one C test program in one flavour; it prints
/// "N passed, M failed" and exits 0 only when nothing failed.
fn build_and_run(program: &str, flavour: &str, compiler: &str, flags: &[&str], env: &[(&str, &str)]) {
    let dir = out_dir(flavour);
    let exe = dir.join(program);
    build(compiler, flags, &ffi_dir().join(format!("tests/c/{program}.c")), &exe);
    let o = run(Command::new(&exe).envs(env.iter().copied()));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && stdout.contains(" 0 failed"), "{program} ({flavour}):\n{}", show(&o));
    let summary = stdout.lines().last().unwrap_or("");
    eprintln!("{program} ({flavour}): {summary}");
    let _ = std::fs::remove_dir_all(dir);
}

const PROGRAMS: &[&str] = &["self_unwind", "bad_input"];

#[test]
fn c_programs_as_c() {
    for p in PROGRAMS {
        build_and_run(p, "c", "cc", &["-std=c11", "-O2", "-pthread"], &[]);
    }
}

#[test]
fn c_programs_as_cpp() {
    for p in PROGRAMS {
        build_and_run(p, "c++", "c++", &["-x", "c++", "-std=c++17", "-O2", "-pthread"], &[]);
    }
}

#[test]
fn c_programs_under_address_sanitizer() {
    let dir = out_dir("asan-probe");
    let probe = dir.join("probe.c");
    std::fs::write(&probe, "int main(void) { return 0; }\n").unwrap_or_else(|e| panic!("{e}"));
    let o = run(Command::new("cc").arg("-fsanitize=address").arg(&probe).arg("-o").arg(dir.join("probe")));
    let works = o.status.success() && run(&mut Command::new(dir.join("probe"))).status.success();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        works,
        "cc -fsanitize=address does not build and run a program here (gcc's libasan missing?):\n{}",
        show(&o)
    );
    let flags = ["-std=c11", "-O1", "-pthread", "-fsanitize=address", "-fno-omit-frame-pointer"];
    // Leaks count as failures too.
    let env = [("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")];
    for p in PROGRAMS {
        build_and_run(p, "asan", "cc", &flags, &env);
    }
}

/// A child that sleeps in nanosleep until killed.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeping_child() -> Sleeper {
    let child = Command::new("sleep").arg("60").stdin(Stdio::null()).spawn().unwrap_or_else(|e| panic!("sleep: {e}"));
    let pid = child.id();
    // Wait until it sleeps (state S) rather than still starting up.
    for _ in 0..200 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('S')) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Sleeper(child)
}

#[test]
fn ptrace_shim_example_decides_a_sleeping_child() {
    let dir = out_dir("shim");
    let exe = dir.join("ptrace_shim");
    build("cc", &["-std=c11", "-O2"], &ffi_dir().join("examples/ptrace_shim.c"), &exe);
    let child = sleeping_child();
    let pid = child.0.id().to_string();

    let o = run(Command::new(&exe).arg(&pid));
    assert_ne!(o.status.code(), Some(77), "ptrace is not permitted here:\n{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(out.starts_with(&format!("tid {pid}: switchable (")), "{}", show(&o));

    // With nanosleep patched, the sleeping thread is blocked there.
    let funcs = dir.join("funcs.txt");
    std::fs::write(&funcs, "# coreutils sleep calls nanosleep\nlibc.so.6:nanosleep\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let o = run(Command::new(&exe).arg(&pid).arg(&funcs));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(out.starts_with(&format!("tid {pid}: blocked in libc.so.6:nanosleep at frame ")), "{}", show(&o));
    eprintln!("ptrace_shim: {}", out.trim());

    // The child was detached and still sleeps.
    std::thread::sleep(Duration::from_millis(50));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('S')), "{stat}");
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn install_script_and_pkg_config() {
    let dir = out_dir("install");
    let prefix = dir.join("prefix");
    let o = run(Command::new("sh").arg(ffi_dir().join("install.sh")).arg(&prefix).arg(built_dir()));
    assert!(o.status.success(), "{}", show(&o));
    let lib = prefix.join("lib");
    for f in ["liblpstack.a", "liblpstack.so", "pkgconfig/lpstack.pc"] {
        assert!(lib.join(f).exists(), "{f} not installed");
    }
    assert!(prefix.join("include/lpstack.h").is_file());

    let program = dir.join("version.c");
    std::fs::write(
        &program,
        "#include <lpstack.h>\n#include <stdio.h>\n\
         int main(void) {\n    lpstack_unwinder *u = NULL;\n    if (lpstack_unwinder_new_user(&u) != LPSTACK_RESULT_OK) return 1;\n\
             lpstack_unwinder_free(u);\n    printf(\"lpstack %s\\n\", lpstack_version());\n    return 0;\n}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pc_path = lib.join("pkgconfig");
    let flags = match run(Command::new("pkg-config")
        .args(["--cflags", "--libs", "lpstack"])
        .env("PKG_CONFIG_PATH", &pc_path))
    {
        o if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        o => panic!("pkg-config --cflags --libs lpstack:\n{}", show(&o)),
    };
    assert!(
        flags.contains("-llpstack") && flags.contains(&format!("-I{}", prefix.join("include").display())),
        "{flags}"
    );
    let exe = dir.join("version");
    let o = run(Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror"])
        .arg(&program)
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&exe));
    assert!(o.status.success(), "{}", show(&o));
    // Linked against the shared library: found through its SONAME link.
    let o = run(Command::new(&exe).env("LD_LIBRARY_PATH", &lib));
    let want = format!("lpstack {}\n", env!("CARGO_PKG_VERSION"));
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout) == want, "{}", show(&o));
    let _ = std::fs::remove_dir_all(dir);
}
