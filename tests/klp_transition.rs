//! The patched set the kernel itself checks, on real dumps of livepatch
//! transitions that stall in each of livepatch's harder cases (Debian 6.12
//! and 6.1 under QEMU, scripts/vmcore/make-vmcores.sh BASE:SCENARIO):
//!
//! - stacked: a second patch of park_here_a over a first one, threads
//!   asleep in the first patch's replacement; plus an object for a module
//!   that is not loaded;
//! - replace: an atomic-replace patch over one that replaced a and b
//!   (nop functions);
//! - unpatch: the first patch being disabled, threads asleep in its
//!   replacements;
//! - kthread: two kthreads whose main function is patched, held back past
//!   the fake signals.
//!
//! The set read from the kernel's memory, the run's funcs.txt and the
//! livepatch module file must give the same ranges and the same verdict for
//! every task, and those verdicts must be the kernel's (`patch_state` in the
//! dump and the guest's /proc, "is sleeping on function" lines).

mod common;

use std::collections::BTreeSet;

use lpstack::dump::Dump;
use lpstack::kernel::btf::Btf;
use lpstack::kernel::check::{CheckConfig, CheckMode, TaskReport};
use lpstack::kernel::image::{CpuRegs, Kernel, OpenOptions};
use lpstack::kernel::klp::{KlpState, KlpTarget};
use lpstack::patchset::klp::{KernelSet, KlpKnowledge, ResolveOptions, from_transition, resolve_in_kernel};
use lpstack::patchset::ko::read_livepatch_module;
use lpstack::patchset::{PatchSet, parse_funcs};
use lpstack::verdict::Verdict;

const RUNS: &[&str] = &[
    "6.12.117+deb12-amd64-stacked",
    "6.12.117+deb12-amd64-replace",
    "6.12.117+deb12-amd64-unpatch",
    "6.1.0-57-amd64-stacked",
    "6.1.0-57-amd64-replace",
    "6.1.0-57-amd64-unpatch",
    "6.12.117+deb12-amd64-kthread",
];

/// What the guest said.
struct GroundTruth {
    target_state: i32,
    transition_patch: String,
    /// tid -> patch_state, from /proc.
    patch_state: Vec<(i32, i32)>,
    /// (tid, comm, function) the kernel named "is sleeping on function" in
    /// its last retry before the dump.
    sleeping: BTreeSet<(i32, String, String)>,
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ').find_map(|w| w.strip_prefix(key)).unwrap_or_else(|| panic!("{key} in {line}"))
}

fn ground_truth(dir: &str) -> GroundTruth {
    let text = String::from_utf8(common::read(&format!("vmcore/{dir}/ground-truth.txt"))).unwrap();
    let mut gt = GroundTruth {
        target_state: -2,
        transition_patch: String::new(),
        patch_state: vec![],
        sleeping: BTreeSet::new(),
    };
    for line in text.lines() {
        if line.starts_with("GT target_state=") {
            gt.target_state = field(line, "target_state=").parse().unwrap();
            gt.transition_patch = field(line, "transition_patch=").to_string();
        } else if line.starts_with("GT tid=") {
            gt.patch_state.push((field(line, "tid=").parse().unwrap(), field(line, "patch_state=").parse().unwrap()));
        } else if line.starts_with("KLP tid=") && field(line, "in_last_round=") == "yes" {
            if let Some(function) = field(line, "last=").strip_prefix("sleeping_on=") {
                gt.sleeping.insert((
                    field(line, "tid=").parse().unwrap(),
                    field(line, "comm=").to_string(),
                    function.to_string(),
                ));
            }
        }
    }
    assert!(gt.target_state >= 0 && !gt.transition_patch.is_empty(), "{dir}: GT target_state line");
    gt
}

fn open(dir: &str) -> (Kernel<Dump<'static>>, Vec<CpuRegs>) {
    let bytes: &'static [u8] = common::read(&format!("vmcore/{dir}/vmcore.trimmed.kdump")).leak();
    let dump = Dump::open(bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().expect("VMCOREINFO");
    let cpus = dump.cpus().iter().filter_map(|c| c.index_hint.map(|cpu| CpuRegs { cpu, regs: c.regs })).collect();
    (Kernel::open(dump, &vi, OpenOptions::default()).unwrap(), cpus)
}

/// Each checked range, in a comparable form.
fn ranges(set: &PatchSet) -> BTreeSet<(String, String, u64, u64, String)> {
    set.funcs()
        .iter()
        .map(|f| (f.object.clone(), f.function.clone(), f.address, f.size, format!("{:?}", f.version)))
        .collect()
}

/// Each task's verdict: (pid, verdict, blocking function).
fn verdicts(reports: &[TaskReport<'_>]) -> Vec<(i32, &'static str, String)> {
    reports
        .iter()
        .map(|r| {
            let f = match r.verdict {
                Verdict::Blocked { function, .. } => function.function.clone(),
                _ => String::new(),
            };
            (r.task.pid, r.verdict.name(), f)
        })
        .collect()
}

/// The three ways to name the set, each with the kernel's rules.
fn sets(
    dir: &str,
    kernel: &mut Kernel<Dump<'static>>,
    state: &KlpState,
    patch_module: &str,
) -> Vec<(&'static str, KernelSet)> {
    let memory = from_transition(state, &kernel.symbols()).expect("a transition in progress");
    let funcs = String::from_utf8(common::read(&format!("vmcore/{dir}/funcs.txt"))).unwrap();
    let specs = parse_funcs(&funcs, "vmlinux").unwrap();
    let written =
        resolve_in_kernel(&specs, &kernel.symbols(), &KlpKnowledge::State(state), ResolveOptions::default()).unwrap();
    let btf_bytes = kernel.read_btf().unwrap();
    let btf = Btf::parse(&btf_bytes).unwrap();
    let ko = common::read(&format!("vmcore/{dir}/{patch_module}.ko"));
    let module = read_livepatch_module(&ko, Some(&btf)).unwrap();
    assert_eq!(module.name, patch_module);
    let options = ResolveOptions { unpatch: false, replace: module.replace.unwrap_or(true) };
    let from_ko =
        resolve_in_kernel(&module.func_specs(), &kernel.symbols(), &KlpKnowledge::State(state), options).unwrap();
    vec![("memory", memory), ("funcs.txt", written), ("module", from_ko)]
}

#[test]
fn memory_funcs_txt_and_module_agree_with_the_kernel() {
    for dir in RUNS {
        let gt = ground_truth(dir);
        let (mut kernel, cpus) = open(dir);
        let state = kernel.klp_state().unwrap().expect("livepatch in this kernel");
        let t = state.transition.expect("a transition in progress");
        assert_eq!(state.patches[t.patch].module, gt.transition_patch, "{dir}");
        let target = if gt.target_state == 1 { KlpTarget::Patched } else { KlpTarget::Unpatched };
        assert_eq!(t.target, target, "{dir}");

        let sets = sets(dir, &mut kernel, &state, &gt.transition_patch);
        assert_eq!(sets.len(), 3);
        let (first_name, first) = &sets[0];
        let mut first_verdicts = None;
        for (name, ks) in &sets {
            assert_eq!(ranges(&ks.set), ranges(&first.set), "{dir}: {name} vs {first_name}");
            let reports = kernel
                .check(
                    &ks.set,
                    &CheckConfig { mode: CheckMode::Dump { cpus: &cpus }, ..CheckConfig::default() },
                    |_, _| {},
                )
                .unwrap()
                .tasks;
            let v = verdicts(&reports);
            match &first_verdicts {
                None => first_verdicts = Some(v),
                Some(f) => assert_eq!(&v, f, "{dir}: verdicts from {name} vs {first_name}"),
            }
        }

        // Against the kernel.
        let reports = kernel
            .check(
                &first.set,
                &CheckConfig { mode: CheckMode::Dump { cpus: &cpus }, ..CheckConfig::default() },
                |_, _| {},
            )
            .unwrap()
            .tasks;
        let mut blocked = BTreeSet::new();
        let mut compared = 0;
        for r in reports.iter().filter(|r| !r.task.idle) {
            let state = r.task.patch_state.unwrap_or_else(|| panic!("{dir}: no patch_state"));
            if let Some(&(_, listed)) = gt.patch_state.iter().find(|(tid, _)| *tid == r.task.pid) {
                assert_eq!(listed, state, "{dir}: pid {} /proc vs dump", r.task.pid);
            }
            let switched = state == gt.target_state;
            match &r.verdict {
                Verdict::Switchable => {
                    assert!(switched, "{dir}: {} {} switchable, not switched", r.task.pid, r.task.comm)
                }
                Verdict::Blocked { function, .. } => {
                    assert!(!switched, "{dir}: {} {} blocked but switched", r.task.pid, r.task.comm);
                    blocked.insert((r.task.pid, r.task.comm.clone(), function.function.clone()));
                }
                Verdict::Unreliable { .. } => assert!(!switched, "{dir}: {} unreliable", r.task.pid),
                Verdict::Running => continue,
            }
            compared += 1;
        }
        assert!(compared >= 55, "{dir}: {compared} tasks compared");
        assert!(blocked.len() >= 4, "{dir}: {blocked:?}");
        assert_eq!(blocked, gt.sleeping, "{dir}: the kernel's 'is sleeping on function' lines");
    }
}

/// What the issue found: the first patch's rule (check the original) on a
/// stacked or unpatching transition calls the sleepers switchable. The
/// kernel's rule does not; this proves the fixtures tell them apart.
#[test]
fn original_functions_alone_would_call_blocked_tasks_switchable() {
    for dir in RUNS.iter().filter(|d| d.ends_with("-stacked") || d.ends_with("-unpatch")) {
        let gt = ground_truth(dir);
        let (mut kernel, cpus) = open(dir);
        let funcs = String::from_utf8(common::read(&format!("vmcore/{dir}/funcs.txt"))).unwrap();
        let loaded: Vec<_> = parse_funcs(&funcs, "vmlinux")
            .unwrap()
            .into_iter()
            .filter(|s| s.object == "vmlinux" || kernel.symbols().table(&s.object).is_some())
            .collect();
        let naive = PatchSet::resolve(&loaded, &kernel.symbols()).unwrap();
        let reports = kernel
            .check(&naive, &CheckConfig { mode: CheckMode::Dump { cpus: &cpus }, ..CheckConfig::default() }, |_, _| {})
            .unwrap()
            .tasks;
        let wrongly_switchable = reports
            .iter()
            .filter(|r| r.verdict.is_switchable())
            .filter(|r| gt.sleeping.iter().any(|(tid, _, _)| *tid == r.task.pid))
            .count();
        assert!(wrongly_switchable >= 4, "{dir}: {wrongly_switchable}");
    }
}

/// The command itself, with no set: the transition from memory, and the
/// stall report lists exactly the tasks the kernel holds back, in its words.
#[test]
fn check_without_a_set_reports_the_stall_in_the_kernels_words() {
    for dir in ["6.12.117+deb12-amd64-stacked", "6.1.0-57-amd64-unpatch"] {
        let gt = ground_truth(dir);
        let dump = common::fixture(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lpstack"))
            .args(["check", dump.to_str().unwrap(), "--format", "json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{dir}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["transition"]["patch"], gt.transition_patch.as_str(), "{dir}");
        let mut words = BTreeSet::new();
        for t in v["tasks"].as_array().unwrap() {
            let s = &t["transition"];
            if s["switched"] == false && s["kernel_reason"].as_str().is_some_and(|r| r.starts_with("is sleeping")) {
                let reason = s["kernel_reason"].as_str().unwrap();
                let function = reason.trim_start_matches("is sleeping on function ").to_string();
                words.insert((t["pid"].as_i64().unwrap() as i32, t["comm"].as_str().unwrap().to_string(), function));
                assert!(s["version"].is_string(), "{dir}: {t}");
            }
        }
        assert_eq!(words, gt.sleeping, "{dir}");
        let pending = v["summary"]["pending"].as_u64().unwrap();
        let switched = v["summary"]["switched_by_kernel"].as_u64().unwrap();
        assert_eq!(pending + switched, v["summary"]["tasks"].as_u64().unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("patched set from the kernel's memory"), "{dir}: {stderr}");
    }
}

/// A dump whose livepatch state pages were left out (these fixtures were
/// trimmed before lpstack read them): every function of the loaded
/// livepatch module is checked too, and the user is told why.
#[test]
fn unreadable_state_is_said_and_checks_the_livepatch_module() {
    let dir = "6.12.117+deb12-amd64";
    let dump = common::fixture(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
    let set = common::fixture(&format!("vmcore/{dir}/funcs.txt"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check", dump.to_str().unwrap(), "--set", set.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the kernel's livepatch state") && stderr.contains("page not in dump"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let any = v["patched"].as_array().unwrap().iter().filter(|p| p["version"]["kind"] == "any_of_module").count();
    assert!(any >= 1, "{}", v["patched"]);
    // Without a set there is nothing to go on: exit 2, naming both options.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lpstack"))
        .args(["check", dump.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--set") && stderr.contains("--patch"), "{stderr}");
}

/// `--unpatch` must agree with the kernel's direction: accepted during an
/// unpatch (the replacements are found in memory, no --new-set needed),
/// refused during a patching transition.
#[test]
fn unpatch_flag_follows_the_kernels_direction() {
    let run = |dir: &str| {
        let dump = common::fixture(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
        let set = common::fixture(&format!("vmcore/{dir}/funcs.txt"));
        std::process::Command::new(env!("CARGO_BIN_EXE_lpstack"))
            .args(["check", dump.to_str().unwrap(), "--set", set.to_str().unwrap(), "--unpatch", "--format", "json"])
            .output()
            .unwrap()
    };
    let out = run("6.12.117+deb12-amd64-unpatch");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for p in v["patched"].as_array().unwrap() {
        assert_eq!(p["version"]["kind"], "replacement", "{p}");
        assert!(p["checked"].as_str().unwrap().starts_with("lpstack_lp1:livepatch_park_here_"), "{p}");
    }
    let out = run("6.12.117+deb12-amd64-stacked");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--unpatch, but the kernel is applying livepatch lpstack_lp2"), "{stderr}");
}

/// The kthreads whose main function is patched will never switch; the
/// parked user threads may (they leave when woken). The kernel still named
/// both kthreads after its fake signals.
#[test]
fn kthreads_in_a_patched_main_loop_never_converge() {
    let dir = "6.12.117+deb12-amd64-kthread";
    let gt = ground_truth(dir);
    let (mut kernel, cpus) = open(dir);
    let state = kernel.klp_state().unwrap().unwrap();
    let ks = from_transition(&state, &kernel.symbols()).unwrap();
    let reports = kernel
        .check(&ks.set, &CheckConfig { mode: CheckMode::Dump { cpus: &cpus }, ..CheckConfig::default() }, |_, _| {})
        .unwrap()
        .tasks;
    let mut never = BTreeSet::new();
    for r in &reports {
        let info = lpstack::kernel::stall::stall_info(r, KlpTarget::Patched, &kernel.symbols());
        if info.never_converges.is_some() {
            never.insert((r.task.pid, r.task.comm.clone()));
        }
    }
    let kthreads: BTreeSet<(i32, String)> = gt
        .sleeping
        .iter()
        .filter(|(_, _, f)| f == "lpstack_kthread_loop")
        .map(|(tid, comm, _)| (*tid, comm.clone()))
        .collect();
    assert_eq!(kthreads.len(), 2, "{:?}", gt.sleeping);
    assert_eq!(never, kthreads);
}
