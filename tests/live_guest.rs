//! `lpstack check live` in a real kernel, as recorded by
//! scripts/live/run-live-guest.sh (tests/fixtures/live/<release>/): the
//! tasks lpstack predicted as blocked, with their blocking functions, and
//! as unreliable, before the livepatch was loaded, equal what the kernel
//! reported on its first transition attempt ("is sleeping on function",
//! "has an unreliable stack", dynamic debug of transition.c).
//!
//! The stacked record (`run-live-guest.sh stacked`,
//! tests/fixtures/live/<release>-stacked/): three checks while lpstack_lp2's
//! transition over lpstack_lp1 was stalled (the set from the kernel's
//! memory, from lpstack_lp2.ko, from funcs.txt) each blocked exactly the
//! tasks the kernel's next retry named as sleeping, with the same function,
//! and agree task by task.

mod common;

use std::collections::{BTreeMap, BTreeSet};

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
        if log.contains("\n@@SCENARIO ") {
            // A scenario's record (stacked) is checked by its own test.
            continue;
        }
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
        let predicted: BTreeSet<i32> = run
            .predicted_blocked
            .iter()
            .map(|(_, pid, _)| *pid)
            .chain(run.predicted_unreliable.iter().map(|(_, pid)| *pid))
            .collect();
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

/// The stacked scenario's record.
const STACKED: &str = "live/6.12.117+deb12-amd64-stacked/guest-report.txt.gz";

/// One `lpstack check live --format json` of the stacked run.
struct StackedRun {
    name: &'static str,
    rc: i32,
    json: serde_json::Value,
}

/// The kernel's side of the stacked run.
struct StackedRecord {
    runs: Vec<StackedRun>,
    /// The kernel's first retry after the checks ended (its lines up to the
    /// first gap of half a second): (comm, tid, what)
    /// with what = the function of "is sleeping on function X", or
    /// "unreliable" / "running".
    retry: BTreeSet<(String, i32, String)>,
    /// That retry was followed by another one (the log holds it whole).
    retry_complete: bool,
    /// The patch whose transition started last before the checks.
    started: String,
    /// /proc/<pid>/task/<tid>/patch_state after the retry: (comm, tid) -> state.
    patch_state: BTreeMap<(String, i32), i32>,
    /// "@@KLP_AFTER_RUNS patch=P enabled=E transition=T" lines.
    klp_after: Vec<String>,
}

const STACKED_RUNS: [&str; 3] = ["memory", "patch", "set"];

fn parse_stacked(log: &str) -> StackedRecord {
    let mut runs = Vec::new();
    for name in STACKED_RUNS {
        let upper = name.to_uppercase();
        let json: serde_json::Value = serde_json::from_str(section(log, &format!("LPSTACK_JSON_{upper}")))
            .unwrap_or_else(|e| panic!("{name}: lpstack JSON: {e}"));
        let prefix = format!("@@LPSTACK_RC {name} ");
        let rc = log
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|r| r.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line"));
        runs.push(StackedRun { name, rc, json });
    }
    let dmesg = section(log, "DMESG");
    let end = dmesg.find("lpstack-live: checks end").expect("the end-of-checks marker in the kernel log");
    let started = dmesg[..end]
        .lines()
        .filter_map(|l| l.split_once("livepatch: '")?.1.split_once("': starting patching transition"))
        .map(|(p, _)| p.to_string())
        .next_back()
        .unwrap_or_default();
    // One retry's lines come within milliseconds, retries about a second
    // apart: the retry ends at the first gap of half a second.
    let mut retry = BTreeSet::new();
    let mut retry_complete = false;
    let mut last_stamp: Option<f64> = None;
    for line in dmesg[end..].lines() {
        let Some(at) = line.find("klp_try_switch_task: ") else { continue };
        let stamp: f64 = line
            .strip_prefix('[')
            .and_then(|l| l.split_once(']'))
            .and_then(|(t, _)| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no timestamp: {line}"));
        if last_stamp.is_some_and(|t| stamp - t >= 0.5) {
            retry_complete = true;
            break;
        }
        last_stamp = Some(stamp);
        let rest = &line[at + "klp_try_switch_task: ".len()..];
        let (who, what) = if let Some((who, func)) = rest.split_once(" is sleeping on function ") {
            (who, func.trim().to_string())
        } else if let Some(who) = rest.strip_suffix(" has an unreliable stack") {
            (who, "unreliable".to_string())
        } else if let Some(who) = rest.strip_suffix(" is running") {
            (who, "running".to_string())
        } else {
            continue;
        };
        let (comm, pid) = who.rsplit_once(':').unwrap();
        retry.insert((comm.to_string(), pid.parse::<i32>().unwrap(), what));
    }
    let patch_state = section(log, "PATCH_STATE")
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("PATCH_STATE ")?.splitn(3, ' ');
            let tid = w.next()?.parse().ok()?;
            let state = w.next()?.parse().ok()?;
            Some(((w.next()?.to_string(), tid), state))
        })
        .collect();
    let klp_after = log.lines().filter_map(|l| l.strip_prefix("@@KLP_AFTER_RUNS ")).map(str::to_string).collect();
    StackedRecord { runs, retry, retry_complete, started, patch_state, klp_after }
}

/// (comm, pid): the idle tasks all have pid 0.
fn task_key(t: &serde_json::Value) -> (String, i32) {
    (t["comm"].as_str().unwrap().to_string(), t["pid"].as_i64().unwrap() as i32)
}

/// (comm, pid) -> what must be the same in every run.
type TaskViews = BTreeMap<(String, i32), String>;

/// What must be the same in every run for a task.
fn task_view(t: &serde_json::Value) -> String {
    let tr = &t["transition"];
    let b = &t["blocking"];
    format!(
        "verdict={} switched={} kernel_reason={} version={} never_converges={} blocking={}/{}/{} unreliable={}",
        t["verdict"],
        tr["switched"],
        tr["kernel_reason"],
        tr["version"],
        tr["never_converges"],
        b["object"],
        b["function"],
        b["checked"],
        t["unreliable"]
    )
}

fn check_stacked(rec: &StackedRecord) -> Result<String, String> {
    let mut summary = String::new();
    // The kernel's side: lpstack_lp2 in transition, stalled after the checks.
    if rec.started != "lpstack_lp2" {
        return Err(format!("last transition started before the checks: {:?}", rec.started));
    }
    if !rec.klp_after.iter().any(|l| l == "patch=lpstack_lp2 enabled=1 transition=1")
        || !rec.klp_after.iter().any(|l| l == "patch=lpstack_lp1 enabled=1 transition=0")
    {
        return Err(format!("/sys/kernel/livepatch after the checks: {:?}", rec.klp_after));
    }
    if !rec.retry_complete {
        return Err("the kernel's log holds no whole retry after the checks".into());
    }
    let kernel_sleeping: BTreeSet<(String, i32, String)> =
        rec.retry.iter().filter(|(_, _, w)| w != "unreliable" && w != "running").cloned().collect();
    let kernel_unreliable: BTreeSet<(String, i32)> =
        rec.retry.iter().filter(|(_, _, w)| w == "unreliable").map(|(c, p, _)| (c.clone(), *p)).collect();
    if kernel_sleeping.is_empty() {
        return Err("the kernel named no sleeper after the checks".into());
    }
    let mut first: Option<(&str, TaskViews)> = None;
    for run in &rec.runs {
        let name = run.name;
        let j = &run.json;
        if run.rc != 1 {
            return Err(format!("{name}: exit code {} (1: some tasks cannot switch)", run.rc));
        }
        if j["transition"]["patch"] != "lpstack_lp2" || j["transition"]["target"] != "Patched" {
            return Err(format!("{name}: transition {}", j["transition"]));
        }
        let tasks = j["tasks"].as_array().ok_or(format!("{name}: no tasks"))?;
        // Blocked, with the function in the kernel's words; the blocking
        // function and the reason name the same one.
        let mut blocked = BTreeSet::new();
        let mut unreliable = BTreeSet::new();
        for t in tasks {
            let (comm, pid) = task_key(t);
            match t["verdict"].as_str().unwrap() {
                "blocked" => {
                    let reason = t["transition"]["kernel_reason"].as_str().unwrap_or("");
                    let func = reason
                        .strip_prefix("is sleeping on function ")
                        .ok_or(format!("{name}: {comm}:{pid} blocked, reason {reason:?}"))?;
                    if t["blocking"]["function"] != func {
                        return Err(format!("{name}: {comm}:{pid} blocking {} but {reason:?}", t["blocking"]));
                    }
                    if t["transition"]["switched"] != false {
                        return Err(format!("{name}: {comm}:{pid} blocked but switched"));
                    }
                    blocked.insert((comm, pid, func.to_string()));
                }
                "unreliable" => {
                    unreliable.insert((comm, pid));
                }
                _ => {}
            }
        }
        if blocked != kernel_sleeping {
            return Err(format!(
                "{name}: blocked {blocked:?}, the kernel's retry after the checks {kernel_sleeping:?}"
            ));
        }
        if unreliable != kernel_unreliable {
            return Err(format!("{name}: unreliable {unreliable:?}, the kernel's {kernel_unreliable:?}"));
        }
        // The kernel's per-task state: not switched (patch_state 0) after
        // the retry = blocked; lpstack read the same switched flag.
        let pending: BTreeSet<(String, i32)> =
            rec.patch_state.iter().filter(|&(_, &s)| s == 0).map(|(k, _)| k.clone()).collect();
        let blocked_keys: BTreeSet<(String, i32)> = blocked.iter().map(|(c, p, _)| (c.clone(), *p)).collect();
        if pending != blocked_keys {
            return Err(format!("{name}: patch_state 0 after the checks {pending:?}, blocked {blocked_keys:?}"));
        }
        for t in tasks {
            let key = task_key(t);
            if let Some(&state) = rec.patch_state.get(&key)
                && t["transition"]["switched"] != (state == 1)
            {
                return Err(format!(
                    "{name}: {key:?} switched {} but patch_state {state}",
                    t["transition"]["switched"]
                ));
            }
        }
        if j["summary"]["pending"].as_u64() != Some(blocked.len() as u64) {
            return Err(format!("{name}: summary.pending {}", j["summary"]["pending"]));
        }
        // Task by task, the same as the first run. Apart from each run's own
        // lpstack process, the same tasks; a task that was on a CPU in one
        // run (running) and off it in another (switchable) is the same
        // answer for a task the kernel has switched.
        let view: TaskViews = tasks
            .iter()
            .filter(|t| t["comm"] != "lpstack")
            .map(|t| {
                let v = task_view(t);
                let switched_running = t["verdict"] == "running" && t["transition"]["switched"] == true;
                (
                    task_key(t),
                    if switched_running { v.replace("verdict=\"running\"", "verdict=\"switchable\"") } else { v },
                )
            })
            .collect();
        let own: Vec<_> = tasks.iter().filter(|t| t["comm"] == "lpstack").map(|t| t["verdict"].clone()).collect();
        if own != [serde_json::json!("running")] {
            return Err(format!("{name}: the checker's own task(s): {own:?}"));
        }
        match &first {
            None => first = Some((name, view)),
            Some((first_name, first_view)) => {
                let keys: BTreeSet<_> = view.keys().chain(first_view.keys()).collect();
                for k in keys {
                    if view.get(k) != first_view.get(k) {
                        return Err(format!("{k:?}: {first_name} {:?}, {name} {:?}", first_view.get(k), view.get(k)));
                    }
                }
                if j["patched"] != rec.runs[0].json["patched"] {
                    return Err(format!(
                        "{name}: patched {} vs {first_name} {}",
                        j["patched"], rec.runs[0].json["patched"]
                    ));
                }
            }
        }
        summary += &format!("{name}: rc {} blocked {} ", run.rc, blocked.len());
    }
    Ok(summary)
}

#[test]
fn stacked_live_checks_block_what_the_kernels_next_retry_names() {
    let log = common::read_gz(STACKED);
    assert!(log.contains("\n@@SCENARIO stacked"), "{STACKED}: not the stacked scenario");
    let rec = parse_stacked(&log);
    // What the committed run holds: the a-sleepers in lp1's replacement of
    // park_here_a and mt-c0 in the original park_here_c.
    let funcs: BTreeMap<String, usize> = rec.retry.iter().fold(BTreeMap::new(), |mut m, (_, _, f)| {
        *m.entry(f.clone()).or_default() += 1;
        m
    });
    assert_eq!(
        funcs,
        BTreeMap::from([("park_here_a".to_string(), 4), ("park_here_c".to_string(), 1)]),
        "{:?}",
        rec.retry
    );
    let summary = check_stacked(&rec).unwrap_or_else(|e| panic!("{STACKED}: {e}"));
    eprintln!("{summary}");
    // lp1's replacement is what was found for park_here_a, in every run.
    for run in &rec.runs {
        for t in run.json["tasks"].as_array().unwrap() {
            if t["blocking"]["function"] == "park_here_a" {
                assert_eq!(t["blocking"]["checked"], "lpstack_lp1:livepatch_park_here_a", "{}: {t}", run.name);
                assert_eq!(t["transition"]["version"], "previous patch", "{}: {t}", run.name);
            }
        }
    }
}

#[test]
fn stacked_check_sees_a_difference() {
    let log = common::read_gz(STACKED);
    let rec = parse_stacked(&log);
    assert!(check_stacked(&rec).is_ok());
    let end = log.find("lpstack-live: checks end").unwrap();
    // The kernel names another function after the checks.
    let other = format!(
        "{}{}",
        &log[..end],
        log[end..].replacen("is sleeping on function park_here_c", "is sleeping on function park_here_b", 1)
    );
    assert!(check_stacked(&parse_stacked(&other)).unwrap_err().contains("blocked"));
    // The kernel names one task fewer (its line gone from the retry).
    let first = log[end..].find("klp_try_switch_task: ").unwrap() + end;
    let line_end = log[first..].find('\n').unwrap() + first;
    let fewer = format!("{}{}", &log[..first], &log[line_end..]);
    assert!(check_stacked(&parse_stacked(&fewer)).is_err());
    // One run blocks a task on another function than the others.
    let mut rec = parse_stacked(&log);
    let t = rec.runs[2].json["tasks"].as_array_mut().unwrap().iter_mut().find(|t| t["verdict"] == "blocked").unwrap();
    t["blocking"]["checked"] = "lpstack_park:park_here_a".into();
    assert!(check_stacked(&rec).unwrap_err().contains("set"));
    // One run calls a switched task not switched.
    let mut rec = parse_stacked(&log);
    let t = rec.runs[1].json["tasks"].as_array_mut().unwrap().iter_mut().find(|t| t["comm"] == "mt-b0").unwrap();
    t["transition"]["switched"] = false.into();
    assert!(check_stacked(&rec).is_err());
    // Another transition.
    let mut rec = parse_stacked(&log);
    rec.runs[0].json["transition"]["patch"] = "lpstack_lp1".into();
    assert!(check_stacked(&rec).unwrap_err().contains("transition"));
    // Another exit code.
    let mut rec = parse_stacked(&log);
    rec.runs[1].rc = 0;
    assert!(check_stacked(&rec).is_err());
}
