//! Shared by tests/process_*.rs: builds tests/programs/parked.c (with and
//! without frame pointers) and its library, runs it until every thread is
//! parked, and reads gdb's backtraces of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ROLES: [&str; 6] = ["main", "a", "b", "ns", "sig", "lib"];

/// Expected functions of our own objects on each role's stack, innermost
/// first (libc frames are compared with gdb, not listed here).
pub fn expected_own(role: &str) -> &'static [&'static str] {
    match role {
        "main" => &["main", "_start"],
        "a" => &["leaf_sleep", "mid", "park_a", "run"],
        "b" => &["leaf_sleep", "mid", "park_b", "run"],
        "ns" => &["leaf_nanosleep", "park_ns", "run"],
        "sig" => &["handler_leaf", "on_usr1", "sig_spin", "park_sig", "run"],
        "lib" => &["lib_leaf", "lib_mid", "lib_park", "run"],
        _ => &[],
    }
}

#[derive(Clone, Debug)]
pub struct Built {
    pub dir: PathBuf,
    pub exe: PathBuf,
    pub frame_pointers: bool,
}

fn programs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

fn cc(args: &[&str]) {
    let out = Command::new("cc").args(args).output().expect("cc is installed");
    assert!(out.status.success(), "cc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Builds once per test binary and variant.
pub fn build(frame_pointers: bool) -> Built {
    static NOFP: OnceLock<Built> = OnceLock::new();
    static FP: OnceLock<Built> = OnceLock::new();
    let cell = if frame_pointers { &FP } else { &NOFP };
    cell.get_or_init(|| {
        let tag = if frame_pointers { "fp" } else { "nofp" };
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("parked-{}-{tag}", env!("CARGO_CRATE_NAME")));
        std::fs::create_dir_all(&dir).unwrap();
        let mut flags = vec!["-O2", "-Wall"];
        if frame_pointers {
            flags.push("-fno-omit-frame-pointer");
        }
        let lib = dir.join("libparked.so");
        let (lib_c, main_c) = (programs().join("libparked.c"), programs().join("parked.c"));
        let mut a = flags.clone();
        a.extend(["-shared", "-fPIC", "-o", lib.to_str().unwrap(), lib_c.to_str().unwrap()]);
        cc(&a);
        let exe = dir.join("parked");
        let mut a = flags.clone();
        a.extend(["-o", exe.to_str().unwrap(), main_c.to_str().unwrap()]);
        let libdir = format!("-L{}", dir.display());
        a.extend([libdir.as_str(), "-lparked", "-Wl,-rpath,$ORIGIN", "-pthread"]);
        cc(&a);
        Built { dir, exe, frame_pointers }
    })
    .clone()
}

/// A running `parked`, killed on drop.
pub struct Parked {
    pub child: Child,
    pub pid: i32,
    /// role -> tid
    pub tids: HashMap<String, i32>,
    /// The first argument ("churn", "zombie") or "": kept from the command,
    /// since a zombie main thread's /proc/PID/cmdline reads empty.
    mode: String,
}

impl Parked {
    pub fn start(b: &Built) -> Parked {
        Parked::start_in(b, &b.dir, |_| {})
    }

    /// Starts it in `cwd`; `setup` may adjust the command.
    pub fn start_in(b: &Built, cwd: &Path, setup: impl FnOnce(&mut Command)) -> Parked {
        let mut cmd = Command::new(&b.exe);
        cmd.current_dir(cwd).stdout(Stdio::piped()).stdin(Stdio::null());
        setup(&mut cmd);
        let mode = cmd.get_args().next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("ready "), "parked said {line:?}");
        let tids: HashMap<String, i32> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect();
        let pid = tids["main"];
        let p = Parked { child, pid, tids, mode };
        match p.mode().as_str() {
            "churn" => {}
            "zombie" => p.wait_state(|s| s == 'S' || s == 'Z', "parked (S) or a zombie main thread"),
            _ => p.wait_state(|s| s == 'S', "parked (S)"),
        }
        p
    }

    /// The argument it was started with ("churn", "zombie"), or "".
    pub fn mode(&self) -> String {
        self.mode.clone()
    }

    pub fn churns(&self) -> bool {
        self.mode() == "churn"
    }

    pub fn role(&self, tid: i32) -> &str {
        self.tids.iter().find(|(_, t)| **t == tid).map(|(r, _)| r.as_str()).unwrap_or("?")
    }

    /// State letters of every thread.
    pub fn states(&self) -> HashMap<i32, char> {
        let mut out = HashMap::new();
        for e in std::fs::read_dir(format!("/proc/{}/task", self.pid)).unwrap() {
            let tid: i32 = e.unwrap().file_name().to_str().unwrap().parse().unwrap();
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/task/{tid}/stat", self.pid)) {
                let st = stat[stat.rfind(')').unwrap() + 1..].trim_start().chars().next().unwrap();
                out.insert(tid, st);
            }
        }
        out
    }

    /// Waits until every thread's state satisfies `ok`.
    pub fn wait_state(&self, ok: impl Fn(char) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let states = self.states();
            if states.len() == ROLES.len() && states.values().all(|&s| ok(s)) {
                return;
            }
            assert!(Instant::now() < deadline, "threads never all {what}: {states:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn status_field(&self, name: &str) -> String {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        s.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("").trim().to_string()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0);
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GdbFrame {
    /// None when gdb printed no address (frame 0 at a line start, inlined
    /// frames) or for `<signal handler called>`.
    pub pc: Option<u64>,
    pub name: String,
    pub signal: bool,
}

/// Parses `thread apply all bt` output: tid -> frames.
pub fn parse_gdb_bt(text: &str) -> HashMap<i32, Vec<GdbFrame>> {
    let mut out: HashMap<i32, Vec<GdbFrame>> = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        if line.starts_with("Thread ") {
            current = line.split("(LWP ").nth(1).and_then(|r| r.split(')').next()).and_then(|t| t.parse::<i32>().ok());
            if let Some(t) = current {
                out.entry(t).or_default();
            }
            continue;
        }
        let (Some(tid), Some(rest)) = (current, line.strip_prefix('#')) else { continue };
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
        let frame = if rest.starts_with("<signal handler called>") {
            GdbFrame { pc: None, name: String::new(), signal: true }
        } else if let Some(hex) = rest.strip_prefix("0x") {
            let (pc, after) = hex.split_once(' ').unwrap_or((hex, ""));
            let name = after.trim_start().strip_prefix("in ").unwrap_or(after);
            let name = name.split([' ', '(']).next().unwrap_or("").to_string();
            GdbFrame { pc: u64::from_str_radix(pc, 16).ok(), name, signal: false }
        } else {
            GdbFrame { pc: None, name: rest.split([' ', '(']).next().unwrap_or("").to_string(), signal: false }
        };
        out.entry(tid).or_default().push(frame);
    }
    out
}

/// gdb is the reference these tests compare with: without it they fail
/// (`.ci/run` installs it), never pass untested.
pub fn require_gdb() {
    let ok = Command::new("gdb").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "gdb is needed (apt-get install gdb; .ci/run installs it)");
}

/// gdb's backtraces of every thread of `pid` (gdb attaches and detaches).
pub fn gdb_bt(pid: i32) -> HashMap<i32, Vec<GdbFrame>> {
    let out = Command::new("gdb")
        .args(["-nx", "-batch", "-p", &pid.to_string(), "-ex", "set pagination off", "-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let bt = parse_gdb_bt(&text);
    assert!(!bt.is_empty(), "gdb printed no threads:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    bt
}

/// gcore of `pid` into `path`.
pub fn gcore(pid: i32, path: &Path) {
    let out = Command::new("gdb")
        .args(["-nx", "-batch", "-p", &pid.to_string(), "-ex", &format!("gcore {}", path.display())])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(path.exists(), "gcore wrote nothing: {}", String::from_utf8_lossy(&out.stderr));
}

/// One of our frames: pc, symbol, object.
#[derive(Clone, Debug)]
pub struct OurFrame {
    pub pc: u64,
    pub name: Option<String>,
    pub object: Option<String>,
}

/// Compares our frames with gdb's for one thread. Frames in our own
/// objects must be the same pcs and names, in the same order; every other
/// pc of ours must be one gdb printed too, in order. gdb may show more:
/// inlined frames and tail-call frames it builds from DWARF call sites
/// (libc's `__futex_abstimed_wait_cancelable64` tail-calls), which are on
/// no stack. Our `__restore_rt` frame is gdb's `<signal handler called>`.
pub fn compare_with_gdb(
    ours: &[OurFrame],
    gdb: &[GdbFrame],
    own: &[&str],
    object_of: impl Fn(u64) -> Option<String>,
) -> Result<(), String> {
    let is_own = |o: &Option<String>| o.as_deref().is_some_and(|o| own.contains(&o));
    // gdb stops at main ("backtrace past-main" is off).
    let ours = match (gdb.last(), ours.iter().position(|f| f.name.as_deref() == Some("main"))) {
        (Some(g), Some(m)) if g.name == "main" => &ours[..=m],
        _ => ours,
    };
    let describe = || format!("ours: {ours:#?}\ngdb: {gdb:#?}");
    // gdb frame 0 without an address: skip ours too.
    let skip0 = gdb.first().is_some_and(|g| g.pc.is_none() && !g.signal);
    let mut gi = 0usize;
    for (i, f) in ours.iter().enumerate() {
        if i == 0 && skip0 {
            continue;
        }
        let signal = f.name.as_deref() == Some("__restore_rt");
        let at =
            gdb[gi..].iter().position(|g| if signal { g.signal } else { g.pc == Some(f.pc) }).ok_or_else(|| {
                format!("our frame #{i} {:#x} {:?} is not in gdb's backtrace (in order)\n{}", f.pc, f.name, describe())
            })?;
        // Frames gdb has and we skipped must not be in our own objects.
        if let Some(g) = gdb[gi..gi + at].iter().find(|g| g.signal || is_own(&g.pc.and_then(&object_of))) {
            return Err(format!("gdb's frame {g:?} is missing from ours\n{}", describe()));
        }
        if !signal && is_own(&f.object) && f.name.as_deref() != Some(gdb[gi + at].name.as_str()) {
            return Err(format!("frame #{i}: ours {:?}, gdb {:?}\n{}", f.name, gdb[gi + at].name, describe()));
        }
        gi += at + 1;
    }
    if let Some(g) = gdb[gi..].iter().find(|g| g.signal || is_own(&g.pc.and_then(&object_of))) {
        return Err(format!("gdb's outer frame {g:?} is missing from ours\n{}", describe()));
    }
    Ok(())
}

/// One thread's outcome, owned (the reports borrow their patch set).
#[derive(Clone, Debug)]
pub struct Outcome {
    pub tid: i32,
    pub comm: String,
    pub verdict: String,
    pub blocked_by: Option<String>,
    pub reliable: bool,
    pub reason: Option<String>,
    pub frames: Vec<OurFrame>,
    pub regs: Option<lpstack::arch::x86_64::Regs>,
}

/// Judges an inspected process against `funcs` (funcs.txt text).
pub fn judge<M: lpstack::Memory>(inspection: &lpstack::process::Inspection, mem: &mut M, funcs: &str) -> Vec<Outcome> {
    use lpstack::patchset::{PatchSet, parse_funcs};
    use lpstack::verdict::Verdict;
    let specs = parse_funcs(funcs, &inspection.main_object).unwrap();
    let set = PatchSet::resolve(&specs, &inspection.symbols).unwrap();
    let reports = inspection.check(mem, &set, &lpstack::walk::WalkConfig::default());
    reports
        .iter()
        .map(|r| Outcome {
            tid: r.thread.tid,
            comm: r.thread.comm.clone(),
            verdict: r.verdict.name().to_string(),
            blocked_by: match r.verdict {
                Verdict::Blocked { function, .. } => Some(format!("{}:{}", function.object, function.function)),
                _ => None,
            },
            reliable: r.reliability.is_some_and(|x| x.is_reliable()),
            reason: match r.reliability {
                Some(lpstack::walk::Reliability::Unreliable { reason, frame }) => Some(format!("{reason} at #{frame}")),
                _ => None,
            },
            frames: r
                .frames
                .iter()
                .map(|f| OurFrame {
                    pc: f.pc,
                    name: inspection.symbols.lookup(f.pc).map(|s| s.name.to_string()),
                    object: inspection.modules.find(f.pc).map(|m| m.name.clone()),
                })
                .collect(),
            regs: r.thread.regs,
        })
        .collect()
}

/// Checks the outcomes of a `parked` process against what it parked where.
pub fn assert_parked(p: &Parked, outcomes: &[Outcome], blocked_role: &str, blocked_by: &str) {
    assert_eq!(outcomes.len(), ROLES.len(), "{outcomes:#?}");
    for o in outcomes {
        let role = p.role(o.tid);
        assert!(o.reliable, "{role} ({}): {:?}\n{:#?}", o.tid, o.reason, o.frames);
        let own: Vec<&str> = o
            .frames
            .iter()
            .filter(|f| matches!(f.object.as_deref(), Some("parked" | "libparked.so")))
            .filter_map(|f| f.name.as_deref())
            .collect();
        assert_eq!(own, expected_own(role), "{role}: {:#?}", o.frames);
        if role == blocked_role {
            assert_eq!((o.verdict.as_str(), o.blocked_by.as_deref()), ("blocked", Some(blocked_by)), "{role}");
        } else {
            assert_eq!(o.verdict, "switchable", "{role}: {o:#?}");
        }
    }
    // The outermost frames are libc's thread and process entry points.
    let main = outcomes.iter().find(|o| o.tid == p.tids["main"]).unwrap();
    assert_eq!(main.frames.last().and_then(|f| f.name.as_deref()), Some("_start"));
    // libc's clone3 is named only with libc's debug file (libc6-dbg).
    let a = outcomes.iter().find(|o| o.tid == p.tids["a"]).unwrap();
    let outer = a.frames.last().unwrap();
    assert_eq!(outer.object.as_deref(), Some("libc.so.6"));
    assert!(outer.name.as_deref().is_none_or(|n| n.contains("clone")), "{outer:?}");
}
