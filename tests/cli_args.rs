//! `lpstack check`'s typed command line: each target (vmcore, pid, core,
//! live) takes only the flags it uses, `check FILE` is `check vmcore FILE`,
//! and a flag of another target is refused with exit 2, naming it.

mod common;

use std::process::Command;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn lpstack(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_lpstack")).args(args).output().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn stacked() -> (String, String, String) {
    let dir = "vmcore/6.12.117+deb12-amd64-stacked";
    let p = |f: &str| common::fixture(&format!("{dir}/{f}")).to_str().unwrap().to_string();
    (p("vmcore.trimmed.kdump"), p("funcs.txt"), p("lpstack_lp2.ko"))
}

/// Parsed: no clap error (clap's start with "error:" and show the usage).
/// The run itself may still fail on the input (exit 2, "lpstack: ...").
fn assert_parsed(args: &[&str]) {
    let out = lpstack(args);
    assert!(!out.stderr.contains("error:") && !out.stderr.contains("Usage:"), "{args:?}: {}", out.stderr);
}

/// Parsed up to `--help`: clap stops at the first argument it refuses, so a
/// help page means every argument before it was taken. For targets that
/// must not really run here (a live kernel, a live process).
fn assert_parsed_before_help(args: &[&str]) {
    let mut args = args.to_vec();
    args.push("--help");
    let out = lpstack(&args);
    assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
    assert!(out.stdout.contains("Usage: lpstack check"), "{args:?}: {}", out.stdout);
}

fn assert_refused(args: &[&str], flag: &str, taken_by: &str) {
    let out = lpstack(args);
    assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
    assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    assert!(out.stderr.contains(&format!("unexpected argument '{flag}'")), "{args:?}: {}", out.stderr);
    assert!(out.stderr.contains(&format!("{flag} is an option of {taken_by}")), "{args:?}: {}", out.stderr);
}

#[test]
fn short_form_is_check_vmcore() {
    let (dump, funcs, _) = stacked();
    for extra in [&[][..], &["--set", &funcs, "--format", "json", "--all-frames"][..]] {
        let short = lpstack(&[&["check", &dump][..], extra].concat());
        let long = lpstack(&[&["check", "vmcore", &dump][..], extra].concat());
        assert_eq!(short.code, Some(1), "{extra:?}: {}", short.stderr);
        assert_eq!((short.code, &short.stdout, &short.stderr), (long.code, &long.stdout, &long.stderr), "{extra:?}");
        assert!(short.stdout.contains("76 tasks") || short.stdout.contains("\"tasks\""), "{}", short.stdout);
    }
    // Flags before the file: still the short form.
    let before = lpstack(&["check", "--set", &funcs, "--format", "json", "--all-frames", &dump]);
    let long = lpstack(&["check", "vmcore", &dump, "--set", &funcs, "--format", "json", "--all-frames"]);
    assert_eq!((before.code, &before.stdout), (long.code, &long.stdout));
}

#[test]
fn each_target_takes_its_flags() {
    let (dump, funcs, ko) = stacked();
    // vmcore, run for real: every flag it takes.
    for form in [&["check", "vmcore", &dump][..], &["check", &dump][..]] {
        let run = |extra: &[&str]| {
            let out = lpstack(&[form, extra].concat());
            assert!(matches!(out.code, Some(0 | 1)), "{form:?} {extra:?}: {}", out.stderr);
        };
        run(&[
            "--set",
            &funcs,
            "--replace",
            "--model",
            "all",
            "--format",
            "json",
            "--all-frames",
            "--max-frames",
            "50",
        ]);
        run(&["--patch", &ko, "--frame-pointer-rules"]);
        // Parsed; the loaded-module filtering of livepatch does not apply
        // to explicit replacements, so this set's absent object is an error.
        assert_parsed(&[form, &["--set", &funcs, "--new-set", &funcs]].concat());
        // Symbol sources: parsed, then the file is missing.
        for flag in ["--vmlinux", "--system-map"] {
            let out = lpstack(&[form, &[flag, "/nonexistent/lpstack-sym"]].concat());
            assert_eq!(out.code, Some(2));
            assert!(out.stderr.starts_with("lpstack: /nonexistent/lpstack-sym:"), "{flag}: {}", out.stderr);
        }
    }
    assert_parsed(&["check", "vmcore", &dump, "--set", &funcs, "--unpatch"]);
    // core: parsed, then the core file is missing.
    let core = ["check", "core", "/nonexistent/core", "--set", &funcs];
    assert_parsed(&[&core[..], &["--sysroot", "/", "--new-set", &funcs, "--unpatch", "--model", "kpatch"]].concat());
    assert_parsed(&[&core[..], &["--format", "json", "--all-frames", "--max-frames", "10"]].concat());
    // pid and live are not run: a process would be stopped, the host's kernel read.
    assert_parsed_before_help(&[
        "check",
        "pid",
        "1",
        "--set",
        &funcs,
        "--sysroot",
        "/",
        "--new-set",
        &funcs,
        "--unpatch",
        "--model",
        "kpatch",
        "--format",
        "json",
        "--all-frames",
        "--max-frames",
        "10",
    ]);
    assert_parsed_before_help(&[
        "check",
        "live",
        "--pid",
        "1",
        "2",
        "--max-passes",
        "3",
        "--timing",
        "--symbols-from",
        "proc-kallsyms",
        "--threads",
        "2",
        "--frame-pointer-rules",
        "--set",
        &funcs,
        "--replace",
        "--unpatch",
        "--model",
        "all",
        "--format",
        "json",
        "--all-frames",
        "--max-frames",
        "10",
    ]);
    assert_parsed_before_help(&["check", "live", "--patch", &ko]);
}

/// Walking on several threads changes nothing but the time: the same
/// report, tasks in the same order.
#[test]
fn vmcore_threads_give_the_same_report() {
    let (dump, funcs, _) = stacked();
    // None: the default, the machine's CPUs.
    let run = |threads: Option<&str>| {
        let mut args = vec!["check", "vmcore", &dump, "--set", &funcs, "--format", "json", "--all-frames"];
        if let Some(n) = threads {
            args.extend(["--threads", n]);
        }
        let out = lpstack(&args);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        out.stdout
    };
    let one = run(Some("1"));
    assert!(one.contains("\"tasks\""), "{one}");
    for threads in [Some("2"), Some("3"), Some("64"), None] {
        assert!(run(threads) == one, "--threads {threads:?} changed the report");
    }
}

#[test]
fn a_flag_of_another_target_is_refused() {
    let (dump, funcs, ko) = stacked();
    let vmcore = ["check", "vmcore", &dump];
    let short = ["check", &dump];
    let core = ["check", "core", &dump, "--set", &funcs];
    let pid = ["check", "pid", "1", "--set", &funcs];
    let live = ["check", "live"];
    let cases: &[(&[&str], &[&str], &str)] = &[
        // Live-only.
        (&core, &["--pid", "1"], "`lpstack check live`"),
        (&vmcore, &["--max-passes", "3"], "`lpstack check live`"),
        (&short, &["--timing"], "`lpstack check live`"),
        (&pid, &["--threads", "2"], "`lpstack check vmcore` and `lpstack check live`"),
        (&vmcore, &["--symbols-from", "memory"], "`lpstack check live`"),
        // Dump-only symbol sources: live reads its own.
        (&pid, &["--vmlinux", "x"], "`lpstack check vmcore`"),
        (&live, &["--system-map", "x"], "`lpstack check vmcore`"),
        // Process-only.
        (&short, &["--sysroot", "/"], "`lpstack check pid` and `lpstack check core`"),
        (&live, &["--sysroot=/"], "`lpstack check pid` and `lpstack check core`"),
        // Kernel-only.
        (&pid, &["--patch", &ko], "`lpstack check vmcore` and `lpstack check live`"),
        (&core, &["--replace"], "`lpstack check vmcore` and `lpstack check live`"),
        (&core, &["--frame-pointer-rules"], "`lpstack check vmcore` and `lpstack check live`"),
    ];
    for (target, extra, taken_by) in cases {
        let flag = extra[0].split('=').next().unwrap();
        assert_refused(&[*target, *extra].concat(), flag, taken_by);
    }
}

#[test]
fn set_options_need_what_they_modify() {
    let (dump, funcs, ko) = stacked();
    let usage = |args: &[&str]| {
        let out = lpstack(args);
        // Refused by the parser (clap's message or the help), not by a run.
        assert_eq!(out.code, Some(2), "{args:?}");
        assert!(out.stderr.starts_with("error:") || out.stderr.contains("Usage:"), "{args:?}: {}", out.stderr);
        assert!(!out.stderr.starts_with("lpstack:"), "{args:?}: {}", out.stderr);
    };
    // A process has no transition to read the set from.
    usage(&["check", "pid", "1"]);
    usage(&["check", "core", &dump]);
    // --replace and --new-set qualify a --set; --patch is one.
    usage(&["check", &dump, "--replace"]);
    usage(&["check", &dump, "--new-set", &funcs]);
    usage(&["check", &dump, "--set", &funcs, "--patch", &ko]);
    usage(&["check", &dump, "--new-set", &funcs, "--patch", &ko]);
    usage(&["check", &dump, "--set", &funcs, "--replace", "--new-set", &funcs]);
    usage(&["check", &dump, "--vmlinux", "a", "--system-map", "b"]);
    usage(&["check", "pid", "0", "--set", &funcs]);
    usage(&["check", "pid", "notapid", "--set", &funcs]);
    usage(&["check"]);
}

#[test]
fn target_word_after_flags_is_explained() {
    let (_, funcs, _) = stacked();
    let out = lpstack(&["check", "--set", &funcs, "live"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("put its options after it: lpstack check live"), "{}", out.stderr);
}

#[test]
fn help_lists_each_targets_own_flags() {
    let help = |args: &[&str]| {
        let out = lpstack(args);
        assert_eq!(out.code, Some(0));
        out.stdout
    };
    let check = help(&["check", "--help"]);
    for t in ["vmcore", "pid", "core", "live"] {
        assert!(check.contains(&format!("\n  {t} ")), "{check}");
    }
    assert!(check.contains("short for `lpstack check vmcore FILE"), "{check}");
    let want: &[(&str, &[&str], &[&str])] = &[
        (
            "vmcore",
            &["--vmlinux", "--system-map", "--frame-pointer-rules", "--patch", "--replace"],
            &["--pid ", "--sysroot", "--timing"],
        ),
        (
            "live",
            &["--pid", "--max-passes", "--timing", "--symbols-from", "--threads", "--patch"],
            &["--vmlinux", "--sysroot"],
        ),
        (
            "pid",
            &["--sysroot", "--set", "--new-set", "--unpatch"],
            &["--patch", "--replace", "--vmlinux", "--frame-pointer-rules"],
        ),
        ("core", &["--sysroot", "--set", "--max-frames"], &["--patch", "--replace", "--pid ", "--timing"]),
    ];
    for (t, has, lacks) in want {
        let h = help(&["check", t, "--help"]);
        for f in *has {
            assert!(h.contains(f), "{t} lacks {f}: {h}");
        }
        for f in *lacks {
            assert!(!h.contains(f), "{t} has {f}: {h}");
        }
    }
}

/// `lpstack check ... | head`: the reader goes away part way; the rest of
/// the report is dropped without an error message, and the exit code still
/// says what was found (as when the whole report is read).
#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    let (dump, funcs, _) = stacked();
    let args = ["check", "vmcore", &dump, "--set", &funcs, "--format", "json"];
    let whole = lpstack(&args);
    assert!(whole.stdout.len() > 64 << 10, "the report must outgrow a pipe's buffer");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end without reading: every write then fails with EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(out.status.code(), whole.code, "{stderr}");
}
