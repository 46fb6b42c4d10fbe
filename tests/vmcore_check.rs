//! lpstack's per-task verdicts on real QEMU dumps taken during a stalled
//! livepatch transition equal the kernel's own: each task's `patch_state`
//! (read in the guest from /proc just before the dump) and the kernel's
//! "is sleeping on function" messages. Dumps: Debian 6.12 with 4- and
//! 5-level paging, Debian 6.1 (v1 ORC); KASLR on; trimmed by `lpstack trim`
//! (scripts/vmcore/make-vmcores.sh rebuilds them).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use lpstack::dump::Dump;
use lpstack::kernel::check::{CheckConfig, CheckMode};
use lpstack::kernel::image::{CpuRegs, Kernel, OpenOptions};
use lpstack::patchset::{PatchSet, parse_funcs};
use lpstack::verdict::Verdict;
use lpstack::walk::Reliability;

const DUMPS: &[&str] = &["6.12.117+deb12-amd64", "6.12.117+deb12-amd64-la57", "6.1.0-57-amd64"];

struct GroundTruth {
    /// tid -> patch_state
    patch_state: BTreeMap<i32, i32>,
    /// (comm, pid) the kernel said "is sleeping on function park_here_a"
    sleeping: BTreeSet<(String, i32, String)>,
}

fn ground_truth(dir: &str) -> GroundTruth {
    let text = String::from_utf8(common::read(&format!("vmcore/{dir}/ground-truth.txt"))).unwrap();
    let mut patch_state = BTreeMap::new();
    let mut sleeping = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("GT tid=") {
            let rest = &line[3..];
            let field = |k: &str| rest.split(' ').find_map(|w| w.strip_prefix(k)).unwrap().to_string();
            patch_state.insert(field("tid=").parse().unwrap(), field("patch_state=").parse().unwrap());
        } else if let Some(at) = line.find("klp_try_switch_task: ") {
            let rest = &line[at + "klp_try_switch_task: ".len()..];
            if let Some((who, func)) = rest.split_once(" is sleeping on function ") {
                let (comm, pid) = who.rsplit_once(':').unwrap();
                sleeping.insert((comm.to_string(), pid.parse().unwrap(), func.to_string()));
            }
        }
    }
    GroundTruth { patch_state, sleeping }
}

#[test]
fn verdicts_equal_the_kernels_on_real_dumps() {
    // vmlinux's ORC read whole at setup, then as the walks need it: the
    // same reports either way.
    let mut whole_orc = Vec::new();
    for (dir, orc_on_demand) in DUMPS.iter().flat_map(|d| [(d, false), (d, true)]) {
        let bytes = common::read(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
        let dump = Dump::open(&bytes).unwrap();
        let vi = dump.vmcoreinfo().cloned().expect("VMCOREINFO");
        let cpus: Vec<CpuRegs> =
            dump.cpus().iter().filter_map(|c| c.index_hint.map(|cpu| CpuRegs { cpu, regs: c.regs })).collect();
        assert!(!cpus.is_empty(), "{dir}: QEMU CPU notes");
        let mut kernel = Kernel::open(dump, &vi, OpenOptions { orc_on_demand, ..OpenOptions::default() }).unwrap();
        assert!(kernel.modules().iter().any(|m| m.name == "lpstack_park"), "{dir}");
        let funcs = String::from_utf8(common::read(&format!("vmcore/{dir}/funcs.txt"))).unwrap();
        let set = PatchSet::resolve(&parse_funcs(&funcs, "vmlinux").unwrap(), &kernel.symbols()).unwrap();
        let reports = kernel
            .check(&set, &CheckConfig { mode: CheckMode::Dump { cpus: &cpus }, ..CheckConfig::default() }, |_, _| {})
            .unwrap()
            .tasks;
        let seen: Vec<_> =
            reports.iter().map(|r| (r.task.addr, format!("{:?}", r.verdict), r.frames.clone())).collect();
        if orc_on_demand {
            assert!(seen == whole_orc, "{dir}: ORC read on demand changed a report");
        } else {
            whole_orc = seen;
        }
        let gt = ground_truth(dir);

        let mut compared = 0;
        let mut blocked = BTreeSet::new();
        for r in &reports {
            if r.task.idle {
                continue; // no /proc entry in the guest
            }
            // The kernel's own verdict is the task's patch_state in the dump;
            // the guest's /proc listing (taken just before) must agree.
            let want = r.task.patch_state.unwrap_or_else(|| panic!("{dir}: no patch_state"));
            if let Some(&listed) = gt.patch_state.get(&r.task.pid) {
                assert_eq!(listed, want, "{dir}: pid {} /proc vs dump", r.task.pid);
            }
            match &r.verdict {
                // A switchable task is one the kernel has switched.
                Verdict::Switchable => assert_eq!(want, 1, "{dir}: {} {} switchable", r.task.pid, r.task.comm),
                Verdict::Blocked { function, .. } => {
                    assert_eq!(want, 0, "{dir}: {} {} blocked", r.task.pid, r.task.comm);
                    blocked.insert((r.task.comm.clone(), r.task.pid, function.function.clone()));
                }
                Verdict::Unreliable { .. } => assert_eq!(want, 0, "{dir}: {} unreliable", r.task.pid),
                // The kernel skips a task on a CPU (-EBUSY); it may have
                // switched by itself on its way to user mode.
                Verdict::Running => continue,
            }
            compared += 1;
        }
        assert!(compared >= 60, "{dir}: {compared} tasks compared");
        let listed = reports.iter().filter(|r| gt.patch_state.contains_key(&r.task.pid)).count();
        assert_eq!(listed, gt.patch_state.len(), "{dir}: every listed task was found in the dump");
        assert!(!blocked.is_empty(), "{dir}: a blocked task");
        assert_eq!(blocked, gt.sleeping, "{dir}: the kernel's 'is sleeping on function' lines");
        // Every blocked task's walk was reliable and ended cleanly.
        for r in reports.iter().filter(|r| matches!(r.verdict, Verdict::Blocked { .. })) {
            assert!(matches!(r.reliability, Some(Reliability::Reliable(_))));
            assert!(r.frames.len() > 5);
        }
    }
}

#[test]
fn unpatch_direction_checks_the_replacement() {
    // Unpatching checks the live replacement: no task sleeps in
    // livepatch_park_here_a (the new function), so the park_here_a sleepers
    // do not block an unpatch.
    let dir = DUMPS[0];
    let bytes = common::read(&format!("vmcore/{dir}/vmcore.trimmed.kdump"));
    let dump = Dump::open(&bytes).unwrap();
    let vi = dump.vmcoreinfo().cloned().unwrap();
    let mut kernel = Kernel::open(dump, &vi, OpenOptions::default()).unwrap();
    let lp = kernel.symbols().table("lpstack_lp").expect("livepatch module symbols");
    let new_name =
        lp.iter().find(|s| s.name.contains("park_here_a")).map(|s| s.name.to_string()).expect("replacement symbol");
    let old = parse_funcs("lpstack_park:park_here_a\n", "vmlinux").unwrap();
    let new = parse_funcs(&format!("lpstack_lp:{new_name}\n"), "vmlinux").unwrap();
    let set = PatchSet::resolve_new(&old, &new, &kernel.symbols()).unwrap();
    let reports = kernel.check(&set, &CheckConfig::default(), |_, _| {}).unwrap().tasks;
    assert!(reports.iter().all(|r| !matches!(r.verdict, Verdict::Blocked { .. })));
}
