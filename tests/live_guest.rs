//! `lpstack check live` in a real kernel, as recorded by
//! scripts/live/run-live-guest.sh (tests/fixtures/live/<release>/): the
//! tasks lpstack predicted as blocked, with their blocking functions, and
//! as unreliable, before the livepatch was loaded, equal what the kernel
//! reported on its first transition attempt ("is sleeping on function",
//! "has an unreliable stack", dynamic debug of transition.c).

mod common;

use std::collections::BTreeSet;

/// What the recorded guest run says, parsed from its log.
struct GuestRun {
    /// (comm, tid, function) lpstack predicted as blocked, from its JSON.
    predicted_blocked: BTreeSet<(String, i32, String)>,
    /// (comm, tid) lpstack predicted as unreliable.
    predicted_unreliable: BTreeSet<(String, i32)>,
    /// The kernel's first transition attempt: "is sleeping on function".
    kernel_sleeping: BTreeSet<(String, i32, String)>,
    /// "has an unreliable stack".
    kernel_unreliable: BTreeSet<(String, i32)>,
    /// Tasks lpstack called running.
    predicted_running: BTreeSet<i32>,
    json: serde_json::Value,
}

fn section<'a>(log: &'a str, name: &str) -> &'a str {
    let begin = format!("@@{name}_BEGIN\n");
    let end = format!("@@{name}_END");
    let start = log.find(&begin).unwrap_or_else(|| panic!("no {begin:?} in the guest log")) + begin.len();
    let len = log[start..].find(&end).unwrap_or_else(|| panic!("no {end:?}"));
    &log[start..start + len]
}

/// (blocked with function, unreliable, running) in an lpstack JSON report.
type Predictions = (BTreeSet<(String, i32, String)>, BTreeSet<(String, i32)>, BTreeSet<i32>);

fn predictions(json: &serde_json::Value) -> Predictions {
    let mut predicted_blocked = BTreeSet::new();
    let mut predicted_unreliable = BTreeSet::new();
    let mut predicted_running = BTreeSet::new();
    for t in json["tasks"].as_array().expect("tasks") {
        let comm = t["comm"].as_str().unwrap().to_string();
        let pid = t["pid"].as_i64().unwrap() as i32;
        match t["verdict"].as_str().unwrap() {
            "blocked" => {
                let f = t["blocking"]["function"].as_str().unwrap_or_else(|| panic!("{t}")).to_string();
                predicted_blocked.insert((comm, pid, f));
            }
            "unreliable" => {
                predicted_unreliable.insert((comm, pid));
            }
            "running" => {
                predicted_running.insert(pid);
            }
            _ => {}
        }
    }
    (predicted_blocked, predicted_unreliable, predicted_running)
}

fn parse_guest_run(log: &str) -> GuestRun {
    let json: serde_json::Value = serde_json::from_str(section(log, "LPSTACK_JSON")).expect("lpstack JSON");
    let (predicted_blocked, predicted_unreliable, predicted_running) = predictions(&json);
    // The kernel's messages of its first transition attempt: the debug
    // lines after "starting patching transition", up to the first task
    // named twice (the retry a second later names every straggler again).
    let dmesg = section(log, "DMESG");
    let start = dmesg.find("starting patching transition").expect("transition start in dmesg");
    let mut kernel_sleeping = BTreeSet::new();
    let mut kernel_unreliable = BTreeSet::new();
    let mut named = BTreeSet::new();
    for line in dmesg[start..].lines() {
        let Some(at) = line.find("klp_try_switch_task: ").or_else(|| line.find("klp_check_and_switch_task: ")) else {
            continue;
        };
        let rest = &line[at..];
        let rest = &rest[rest.find(": ").unwrap() + 2..];
        let (who, what) = if let Some((who, func)) = rest.split_once(" is sleeping on function ") {
            (who, Some(func.trim()))
        } else if let Some(who) = rest.strip_suffix(" has an unreliable stack") {
            (who, None)
        } else if let Some(who) = rest.strip_suffix(" is running") {
            (who, Some(""))
        } else {
            continue;
        };
        let (comm, pid) = who.rsplit_once(':').unwrap();
        let key = (comm.to_string(), pid.parse::<i32>().unwrap());
        if !named.insert(key.clone()) {
            break;
        }
        match what {
            Some("") => {}
            Some(func) => {
                kernel_sleeping.insert((key.0, key.1, func.to_string()));
            }
            None => {
                kernel_unreliable.insert(key);
            }
        }
    }
    GuestRun { predicted_blocked, predicted_unreliable, kernel_sleeping, kernel_unreliable, predicted_running, json }
}

#[test]
fn recorded_guest_run_prediction_equals_the_kernels_first_attempt() {
    let dir = common::fixture("live");
    let mut runs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path().join("guest-report.txt.gz");
        if !path.is_file() {
            continue;
        }
        let rel = path.strip_prefix(common::fixture("")).unwrap().to_str().unwrap().to_string();
        let log = common::read_gz(&rel);
        let run = parse_guest_run(&log);
        let tasks = run.json["tasks"].as_array().unwrap().len();
        assert!(tasks > 50, "{}: {tasks} tasks", path.display());
        assert!(!run.kernel_sleeping.is_empty(), "{}: the kernel reported no sleeper", path.display());
        // The workload's parked threads are exactly what both saw.
        assert_eq!(run.predicted_blocked, run.kernel_sleeping, "{}: blocked tasks", path.display());
        // The kernel's unreliable stacks are lpstack's, among the tasks
        // lpstack saw off a CPU (one running then may have slept since;
        // one started after lpstack ran was never seen).
        let seen: BTreeSet<i32> =
            run.json["tasks"].as_array().unwrap().iter().filter_map(|t| t["pid"].as_i64()).map(|p| p as i32).collect();
        let kernel_unreliable: BTreeSet<_> = run
            .kernel_unreliable
            .iter()
            .filter(|(_, pid)| seen.contains(pid) && !run.predicted_running.contains(pid))
            .cloned()
            .collect();
        assert_eq!(run.predicted_unreliable, kernel_unreliable, "{}: unreliable tasks", path.display());
        // Three seconds later the same tasks are still unpatched
        // (/proc/PID/patch_state 0): the kernel kept retrying them.
        let unpatched: BTreeSet<i32> = section(&log, "PATCH_STATE")
            .lines()
            .filter_map(|l| l.strip_prefix("UNPATCHED ")?.split(' ').next()?.parse().ok())
            .collect();
        let predicted: BTreeSet<i32> =
            run.predicted_blocked.iter().map(|(_, pid, _)| *pid).chain(run.predicted_unreliable.iter().map(|(_, pid)| *pid)).collect();
        assert_eq!(unpatched, predicted, "{}: patch_state 0 after the first attempt", path.display());
        // Symbols read from kernel memory and from /proc/kallsyms give the
        // same blocked and unreliable tasks.
        let proc_json: serde_json::Value =
            serde_json::from_str(section(&log, "LPSTACK_JSON_PROC")).expect("lpstack JSON, /proc/kallsyms");
        let (proc_blocked, proc_unreliable, _) = predictions(&proc_json);
        assert_eq!(proc_blocked, run.predicted_blocked, "{}: blocked, /proc/kallsyms symbols", path.display());
        assert_eq!(proc_unreliable, run.predicted_unreliable, "{}: unreliable, /proc/kallsyms", path.display());
        // Two threads, each with its own kcore reader: the same verdicts.
        let two: serde_json::Value =
            serde_json::from_str(section(&log, "LPSTACK_JSON_2THREADS")).expect("lpstack JSON, two threads");
        let (two_blocked, two_unreliable, _) = predictions(&two);
        assert_eq!(two_blocked, run.predicted_blocked, "{}: blocked, two threads", path.display());
        assert_eq!(two_unreliable, run.predicted_unreliable, "{}: unreliable, two threads", path.display());
        // kptr_restrict=2 refuses /proc/kallsyms but not symbols from memory
        // (exit 1: tasks are blocked; 2 would be an error).
        assert!(log.contains("@@REFUSAL kptr-restrict rc=2 "), "{}: kptr_restrict refusal", path.display());
        assert!(log.contains("@@KPTR2_MEMORY rc=1"), "{}: kptr_restrict=2 with symbols from memory", path.display());
        runs += 1;
    }
    assert!(runs >= 1, "no recorded run under {}", dir.display());
}

#[test]
fn guest_log_parser_sees_a_difference() {
    // The comparison can fail: a log where the kernel names one more
    // sleeper than lpstack predicted is parsed into different sets.
    let log = "@@LPSTACK_JSON_BEGIN\n{\"tasks\":[{\"comm\":\"mt-a0\",\"pid\":70,\"verdict\":\"blocked\",\
\"blocking\":{\"function\":\"park_here_a\"}},{\"comm\":\"sh\",\"pid\":1,\"verdict\":\"switchable\"}]}\n@@LPSTACK_JSON_END\n\
@@DMESG_BEGIN\n[ 0.9] livepatch: klp_try_switch_task: old:5 is sleeping on function park_here_b\n\
[ 1.0] livepatch: 'lp': starting patching transition\n\
[ 1.1] livepatch: klp_try_switch_task: mt-a0:70 is sleeping on function park_here_a\n\
[ 1.1] livepatch: klp_try_switch_task: sh:1 is sleeping on function park_here_a\n\
[ 1.1] livepatch: klp_try_switch_task: kworker/0:1:12 has an unreliable stack\n\
[ 1.1] livepatch: klp_try_switch_task: busy:13 is running\n\
[ 2.1] livepatch: klp_try_switch_task: mt-a0:70 is sleeping on function park_here_a\n\
[ 2.1] livepatch: klp_try_switch_task: late:14 is sleeping on function park_here_a\n@@DMESG_END\n";
    let run = parse_guest_run(log);
    assert_eq!(run.predicted_blocked.len(), 1);
    assert_eq!(run.kernel_sleeping.len(), 2);
    assert_ne!(run.predicted_blocked, run.kernel_sleeping);
    assert_eq!(run.kernel_unreliable, BTreeSet::from([("kworker/0:1".to_string(), 12)]));
    // Only the first attempt: before the start and after a repeat are not.
    assert!(!run.kernel_sleeping.iter().any(|(c, _, _)| c == "old" || c == "late"));
}
