//! `check pid`: a live process stopped with ptrace. The test program parks
//! threads in known functions (tests/programs/parked.c); the verdicts, the
//! frames (against gdb's `thread apply all bt`) and the process's state
//! after the check are checked, with and without frame pointers.

#[path = "programs/support.rs"]
mod support;

use std::process::Command;

use lpstack::process::ptrace::{Attached, ProcessMemory, PtraceError, StopKind, peek};
use lpstack::process::{FileAccess, Inspection};
use support::*;

/// What one live check saw: outcomes for `park_a` and for
/// `libparked.so:lib_park`, the inspection and how each thread stopped.
struct Live {
    a: Vec<Outcome>,
    lib: Vec<Outcome>,
    inspection: Inspection,
    stops: Vec<(i32, Option<StopKind>)>,
}

fn inspect_live(p: &Parked) -> Live {
    // As the command line does: modules loaded before the process is
    // stopped, kept once it is (nothing was mapped meanwhile).
    let access = FileAccess::Live { pid: p.pid, debug_root: "/".into() };
    let early = peek(p.pid).unwrap();
    assert!(early.threads.is_empty());
    let mut inspection = Inspection::new(early, &access, &mut ProcessMemory::new(p.pid));
    let attached = Attached::attach(p.pid).unwrap();
    let stops = attached.stops();
    let snapshot = attached.snapshot().unwrap();
    let mut mem = attached.memory();
    assert!(inspection.update(snapshot, &access, &mut mem), "modules kept");
    assert_eq!(inspection.snapshot.threads.len(), ROLES.len());
    let a = judge(&inspection, &mut mem, "park_a\n");
    let lib = judge(&inspection, &mut mem, "libparked.so:lib_park\n");
    let problems = attached.detach();
    assert!(problems.is_empty(), "{problems:?}");
    Live { a, lib, inspection, stops }
}

fn live(frame_pointers: bool) {
    let built = build(frame_pointers);
    let p = Parked::start(&built);
    let Live { a: outcomes, lib, inspection, stops } = inspect_live(&p);

    // Every thread was stopped by our interrupt, nothing else.
    assert_eq!(stops.len(), ROLES.len());
    assert!(stops.iter().all(|(_, s)| *s == Some(StopKind::Interrupt)), "{stops:?}");
    assert_eq!(inspection.main_object, "parked");
    assert!(inspection.files.iter().any(|m| m.name == "[vdso]" && m.data.is_some()), "vdso module");
    assert!(inspection.files.iter().any(|m| m.name == "libparked.so"));
    assert_parked(&p, &outcomes, "a", "parked:park_a");
    assert_parked(&p, &lib, "lib", "libparked.so:lib_park");
    // Thread names come from /proc/PID/task/TID/comm.
    let a = outcomes.iter().find(|o| o.tid == p.tids["a"]).unwrap();
    assert_eq!(a.comm, "park_a");

    // Left as it was: all asleep again, untraced, no signal pending.
    p.wait_state(|s| s == 'S', "back asleep");
    assert_eq!(p.status_field("TracerPid:"), "0");
    assert_eq!(p.status_field("ShdPnd:"), "0000000000000000");
    assert_eq!(p.status_field("SigPnd:"), "0000000000000000");

    // The frames are gdb's (gdb attaches after us: same stacks).
    require_gdb();
    let bt = gdb_bt(p.pid);
    let object_of = |pc: u64| inspection.modules.find(pc).map(|m| m.name.clone());
    for o in &outcomes {
        let g = bt.get(&o.tid).unwrap_or_else(|| panic!("gdb has no thread {}", o.tid));
        if let Err(e) = compare_with_gdb(&o.frames, g, &["parked", "libparked.so"], object_of) {
            panic!("thread {} ({}): {e}", o.tid, p.role(o.tid));
        }
        // Frame 0 is the stopped pc: gdb prints it unless at a line start.
        if let Some(pc) = g[0].pc {
            assert_eq!(o.frames[0].pc, pc);
        }
    }
}

#[test]
fn live_process_without_frame_pointers() {
    live(false);
}

#[test]
fn live_process_with_frame_pointers() {
    live(true);
}

/// A stopped process (SIGSTOP) is checked, and stays stopped after.
#[test]
fn stopped_process_stays_stopped() {
    let p = Parked::start(&build(false));
    p.signal(libc::SIGSTOP);
    p.wait_state(|s| s == 'T', "stopped (T)");
    let attached = Attached::attach(p.pid).unwrap();
    assert!(
        attached.stops().iter().all(|(_, s)| matches!(s, Some(StopKind::GroupStop { signal: libc::SIGSTOP }))),
        "{:?}",
        attached.stops()
    );
    let snapshot = attached.snapshot().unwrap();
    assert!(snapshot.threads.iter().all(|t| t.state == 'T' && t.regs.is_some()));
    let mut mem = attached.memory();
    let inspection = Inspection::new(snapshot, &FileAccess::Live { pid: p.pid, debug_root: "/".into() }, &mut mem);
    let outcomes = judge(&inspection, &mut mem, "park_a\n");
    assert_parked(&p, &outcomes, "a", "parked:park_a");
    drop(attached);
    // Still stopped, untraced; SIGCONT wakes it as usual.
    std::thread::sleep(std::time::Duration::from_millis(50));
    p.wait_state(|s| s == 'T', "still stopped");
    assert_eq!(p.status_field("TracerPid:"), "0");
    p.signal(libc::SIGCONT);
    p.wait_state(|s| s == 'S', "running again");
}

#[test]
fn errors_name_the_process() {
    // Our own process.
    let me = std::process::id() as i32;
    assert_eq!(Attached::attach(me).unwrap_err(), PtraceError::OwnProcess { pid: me });
    // A process that is gone.
    let mut child = Command::new("true").spawn().unwrap();
    let gone = child.id() as i32;
    child.wait().unwrap();
    assert_eq!(Attached::attach(gone).unwrap_err(), PtraceError::NoSuchProcess { pid: gone });
    assert_eq!(Attached::attach(-1).unwrap_err(), PtraceError::NoSuchProcess { pid: -1 });
    let msg = PtraceError::Denied { pid: 5, tid: 6, tracer: None, yama: Some(1) }.to_string();
    assert!(msg.contains("ptrace_scope is 1") && msg.contains("CAP_SYS_PTRACE"), "{msg}");
}

/// A process already traced (by gdb) cannot be attached: EPERM, naming the
/// tracer; and the failed attach leaves no thread of it attached to us.
#[test]
fn already_traced_is_denied() {
    require_gdb();
    let p = Parked::start(&build(false));
    let mut gdb = Command::new("gdb")
        .args(["-nx", "-batch", "-p", &p.pid.to_string(), "-ex", "shell sleep 3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while p.status_field("TracerPid:") == "0" {
        assert!(std::time::Instant::now() < deadline, "gdb never attached");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let tracer: i32 = p.status_field("TracerPid:").parse().unwrap();
    match Attached::attach(p.pid) {
        Err(PtraceError::Denied { pid, tracer: t, .. }) => {
            assert_eq!(pid, p.pid);
            assert_eq!(t, Some(tracer));
        }
        other => panic!("{other:?}"),
    }
    gdb.wait().unwrap();
    p.wait_state(|s| s == 'S', "asleep after gdb");
}

/// The command line: exit code 1 (a thread is blocked) and the JSON report.
#[test]
fn cli_check_pid_json() {
    let built = build(false);
    let p = Parked::start(&built);
    let funcs = built.dir.join("funcs-cli.txt");
    std::fs::write(&funcs, "# patched\npark_a\nlibparked.so:lib_mid\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check", "pid", &p.pid.to_string(), "--set", funcs.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["process"]["pid"], p.pid);
    assert_eq!(v["process"]["main_object"], "parked");
    assert_eq!(v["summary"]["tasks"], 6);
    assert_eq!(v["summary"]["switchable"], 4);
    assert_eq!(v["summary"]["blocked"]["parked:park_a"], 1);
    assert_eq!(v["summary"]["blocked"]["libparked.so:lib_mid"], 1);
    for t in v["tasks"].as_array().unwrap() {
        let tid = t["pid"].as_i64().unwrap() as i32;
        let want = match p.role(tid) {
            "a" | "lib" => "blocked",
            _ => "switchable",
        };
        assert_eq!(t["verdict"], want, "{t}");
        assert_eq!(t["tgid"], p.pid);
    }
    // Table output, same exit code; the process is still fine after both.
    let out = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check", "pid", &p.pid.to_string(), "--set", funcs.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("process {} (parked): 6 threads checked against 2 patched functions", p.pid)),
        "{text}"
    );
    p.wait_state(|s| s == 'S', "asleep");
    // Errors exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check", "pid", "notapid", "--set", funcs.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Threads created and exiting while lpstack attaches: each attach settles
/// on a set of stopped threads, the parked ones are judged as usual, and
/// the process goes on churning after every detach.
#[test]
fn threads_coming_and_going() {
    let built = build(false);
    let p = Parked::start_in(&built, &built.dir, |cmd| {
        cmd.arg("churn");
    });
    assert!(p.churns());
    let mut notes = 0;
    for _ in 0..20 {
        let attached = Attached::attach(p.pid).unwrap();
        notes += attached.notes().len();
        let snapshot = attached.snapshot().unwrap();
        // main, five parked, the churner, maybe a short-lived one.
        assert!(snapshot.threads.len() >= 7, "{:?}", snapshot.threads);
        assert!(snapshot.threads.iter().all(|t| t.regs.is_some()), "every listed thread is stopped");
        let mut mem = attached.memory();
        let inspection = Inspection::new(snapshot, &FileAccess::Live { pid: p.pid, debug_root: "/".into() }, &mut mem);
        let outcomes = judge(&inspection, &mut mem, "park_a\n");
        for role in ["a", "b", "lib"] {
            let o = outcomes.iter().find(|o| o.tid == p.tids[role]).unwrap();
            let want = if role == "a" { "blocked" } else { "switchable" };
            assert_eq!(o.verdict, want, "{role}: {o:#?}");
        }
        assert!(attached.detach().is_empty());
        assert_eq!(p.status_field("TracerPid:"), "0");
    }
    eprintln!("{notes} notes about threads that exited mid-attach");
    // Still alive and still making threads.
    let before = std::fs::read_to_string(format!("/proc/{}/task/{}/stat", p.pid, p.pid)).unwrap();
    assert!(!before.is_empty());
    let count = |p: &Parked| std::fs::read_dir(format!("/proc/{}/task", p.pid)).unwrap().count();
    assert!(count(&p) >= 7);
    assert_eq!(p.status_field("SigPnd:"), "0000000000000000");
    assert_eq!(p.status_field("ShdPnd:"), "0000000000000000");
}

/// The program and its library deleted after start (as after a package
/// upgrade): /proc/PID/maps says "(deleted)" and the files are read through
/// /proc/PID/map_files.
#[test]
fn deleted_files_are_read_through_map_files() {
    let built = build(false);
    let dir = built.dir.join("deleted");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["parked", "libparked.so"] {
        std::fs::copy(built.dir.join(f), dir.join(f)).unwrap();
    }
    let copy = Built { dir: dir.clone(), exe: dir.join("parked"), frame_pointers: false };
    let p = Parked::start(&copy);
    std::fs::remove_dir_all(&dir).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", p.pid)).unwrap();
    assert!(maps.contains("parked (deleted)"), "{maps}");
    let attached = Attached::attach(p.pid).unwrap();
    let snapshot = attached.snapshot().unwrap();
    let mut mem = attached.memory();
    let inspection = Inspection::new(snapshot, &FileAccess::Live { pid: p.pid, debug_root: "/".into() }, &mut mem);
    assert_eq!(inspection.main_object, "parked");
    assert!(inspection.files.iter().filter(|m| m.name.contains("parked")).all(|m| m.data.is_some()));
    let outcomes = judge(&inspection, &mut mem, "park_a\nlibparked.so:lib_leaf\n");
    assert!(attached.detach().is_empty());
    for o in &outcomes {
        let want = if matches!(p.role(o.tid), "a" | "lib") { "blocked" } else { "switchable" };
        assert_eq!(o.verdict, want, "{}: {o:#?}", p.role(o.tid));
    }
}

/// The gdb comparison itself: it catches a missing or a wrong frame.
#[test]
fn gdb_comparison_catches_differences() {
    let text = "\
Thread 2 (Thread 0x7f67a99106c0 (LWP 7030) \"park_a\"):
#0  0x00007f67a99e7df2 in __libc_pause () at ../sysdeps/unix/sysv/linux/pause.c:29
#1  0x000055b500786375 in leaf_sleep ()
#2  0x000055b5007863b9 in mid ()
#3  <signal handler called>
#4  0x000055b5007863d9 in park_a ()
Thread 1 (Thread 0x7f67a9911740 (LWP 7028) \"parked\"):
#0  __futex_abstimed_wait_common64 (private=128) at ./nptl/futex-internal.c:57
#1  0x000055b500786243 in main ()
";
    let bt = parse_gdb_bt(text);
    assert_eq!(bt.len(), 2);
    assert_eq!(bt[&7030][1], GdbFrame { pc: Some(0x55b500786375), name: "leaf_sleep".into(), signal: false });
    assert!(bt[&7030][3].signal);
    assert_eq!(bt[&7028][0], GdbFrame { pc: None, name: "__futex_abstimed_wait_common64".into(), signal: false });
    let f = |pc: u64, name: &str, object: &str| OurFrame { pc, name: Some(name.into()), object: Some(object.into()) };
    let object_of = |pc: u64| Some(if pc >> 40 == 0x55 { "parked".to_string() } else { "libc.so.6".to_string() });
    let good = vec![
        f(0x7f67a99e7df2, "__libc_pause", "libc.so.6"),
        f(0x55b500786375, "leaf_sleep", "parked"),
        f(0x55b5007863b9, "mid", "parked"),
        f(0x7f67a9950050, "__restore_rt", "libc.so.6"),
        f(0x55b5007863d9, "park_a", "parked"),
    ];
    compare_with_gdb(&good, &bt[&7030], &["parked"], object_of).unwrap();
    let mut missing = good.clone();
    missing.remove(2);
    assert!(compare_with_gdb(&missing, &bt[&7030], &["parked"], object_of).is_err());
    let mut renamed = good.clone();
    renamed[2].name = Some("other".into());
    assert!(compare_with_gdb(&renamed, &bt[&7030], &["parked"], object_of).is_err());
    let mut no_signal = good.clone();
    no_signal.remove(3);
    compare_with_gdb(&no_signal, &bt[&7030], &["parked"], object_of).unwrap_err();
    // Frame 0 without an address in gdb is skipped on our side.
    let main =
        vec![f(0x7f67a9999f16, "__futex_abstimed_wait_common", "libc.so.6"), f(0x55b500786243, "main", "parked")];
    compare_with_gdb(&main, &bt[&7028], &["parked"], object_of).unwrap();
}

/// The main thread exited with pthread_exit: a zombie leader that never
/// stops for ptrace. It is skipped (with a note), the others are checked.
#[test]
fn zombie_main_thread() {
    let built = build(false);
    let p = Parked::start_in(&built, &built.dir, |cmd| {
        cmd.arg("zombie");
    });
    p.wait_state(|s| s == 'S' || s == 'Z', "zombie main");
    assert_eq!(p.states()[&p.pid], 'Z');
    let start = std::time::Instant::now();
    let attached = Attached::attach(p.pid).unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(1), "no wait for the zombie");
    assert!(
        attached.notes().iter().any(|n| n.contains(&format!("thread {} is a zombie", p.pid))),
        "{:?}",
        attached.notes()
    );
    let snapshot = attached.snapshot().unwrap();
    assert_eq!(snapshot.threads.len(), ROLES.len() - 1);
    assert!(snapshot.threads.iter().all(|t| t.tid != p.pid));
    let mut mem = attached.memory();
    let inspection = Inspection::new(snapshot, &FileAccess::Live { pid: p.pid, debug_root: "/".into() }, &mut mem);
    assert_eq!(inspection.main_object, "parked");
    let outcomes = judge(&inspection, &mut mem, "park_a\n");
    assert!(attached.detach().is_empty());
    for o in &outcomes {
        let want = if p.role(o.tid) == "a" { "blocked" } else { "switchable" };
        assert_eq!(o.verdict, want, "{}: {o:#?}", p.role(o.tid));
        assert!(o.reliable);
    }
    p.wait_state(|s| s == 'S' || s == 'Z', "asleep after");
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn build_id_hex(path: &std::path::Path) -> String {
    use object::Object;
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.build_id().unwrap().unwrap().iter().map(|b| format!("{b:02x}")).collect()
}

/// Stripped binaries: the program's symbols come from its separate debug
/// file found by `.gnu_debuglink` (CRC checked), the library's by build ID
/// under the debug root. `park_a` is in no .dynsym: only the debug file
/// names it.
#[test]
fn separate_debug_files() {
    let built = build(false);
    let dir = built.dir.join("stripped");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (exe, lib) = (dir.join("parked"), dir.join("libparked.so"));
    std::fs::copy(&built.exe, &exe).unwrap();
    std::fs::copy(built.dir.join("libparked.so"), &lib).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    run("objcopy", &["--only-keep-debug", &s(&exe), &s(&dir.join("parked.debug"))]);
    run("strip", &["--strip-all", &s(&exe)]);
    run("objcopy", &[&format!("--add-gnu-debuglink={}", s(&dir.join("parked.debug"))), &s(&exe)]);
    let id = build_id_hex(&lib);
    let root = dir.join("root");
    let by_id = root.join("usr/lib/debug/.build-id").join(&id[..2]);
    std::fs::create_dir_all(&by_id).unwrap();
    let lib_debug = by_id.join(format!("{}.debug", &id[2..]));
    run("objcopy", &["--only-keep-debug", &s(&lib), &s(&lib_debug)]);
    run("strip", &["--strip-all", &s(&lib)]);

    let p = Parked::start(&Built { dir: dir.clone(), exe: exe.clone(), frame_pointers: false });
    let attached = Attached::attach(p.pid).unwrap();
    let snapshot = attached.snapshot().unwrap();
    let mut mem = attached.memory();
    let inspection = Inspection::new(snapshot, &FileAccess::Live { pid: p.pid, debug_root: root.clone() }, &mut mem);
    let outcomes = judge(&inspection, &mut mem, "park_a\n");
    let lib_outcomes = judge(&inspection, &mut mem, "libparked.so:lib_mid\n");
    assert!(attached.detach().is_empty());
    let debug_of = |name: &str| inspection.files.iter().find(|m| m.name == name).and_then(|m| m.debug_path.clone());
    // Found next to the program, as the process sees it (/proc/PID/root/...).
    assert!(debug_of("parked").is_some_and(|p| p.ends_with(dir.join("parked.debug").strip_prefix("/").unwrap())));
    assert_eq!(debug_of("libparked.so"), Some(lib_debug));
    assert_parked(&p, &outcomes, "a", "parked:park_a");
    let lib_thread = lib_outcomes.iter().find(|o| o.tid == p.tids["lib"]).unwrap();
    assert_eq!(lib_thread.verdict, "blocked");

    // A debug file whose CRC does not match is not used: park_a is then
    // unknown (stripped), and funcs.txt cannot be resolved.
    let mut junk = std::fs::read(dir.join("parked.debug")).unwrap();
    let last = junk.len() - 1;
    junk[last] ^= 0xff;
    std::fs::write(dir.join("parked.debug"), &junk).unwrap();
    let attached = Attached::attach(p.pid).unwrap();
    let snapshot = attached.snapshot().unwrap();
    let mut mem = attached.memory();
    let inspection = Inspection::new(snapshot, &FileAccess::Live { pid: p.pid, debug_root: root }, &mut mem);
    drop(attached);
    assert_eq!(inspection.files.iter().find(|m| m.name == "parked").unwrap().debug_path, None);
    assert!(inspection.symbols.table("parked").unwrap().find_by_name("park_a").next().is_none());
}
