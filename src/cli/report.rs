//! The report every `check` prints, whatever was checked (a vmcore's tasks,
//! a process's threads, a core's threads): a table or JSON over one row per
//! thread. Each front-end turns its own reports into [`Row`]s.

use std::collections::BTreeMap;
use std::io::Write;

use lpstack::kernel::klp::KlpTarget;
use lpstack::kernel::stall::StallInfo;
use lpstack::model::{Blocker, ModelOutcome, Unit};
use lpstack::patchset::PatchSet;
use lpstack::symbols::Symbolizer;
use lpstack::verdict::{PatchHit, Verdict};
use lpstack::walk::{Frame, Reliability};
use serde_json::{Value, json};

use super::CliError;

/// What was checked, for the first line and the JSON header.
pub struct Target {
    /// JSON key of the header object: "kernel" or "process".
    pub key: &'static str,
    pub json: Value,
    /// First words of the table ("kernel 6.12.0", "process 4242 (parked)").
    pub title: String,
    /// "tasks" or "threads".
    pub noun: &'static str,
    /// Objects whose symbols print bare; others get ` [object]`.
    pub home_object: String,
    /// The livepatch transition in progress in the target: the patch
    /// module and where it goes.
    pub transition: Option<(String, KlpTarget)>,
    /// What the user should know about the patched set (skipped objects,
    /// stacked patches, where the set came from).
    pub notes: Vec<String>,
    /// What the listing of tasks went past without reading: tasks may be
    /// missing, so the answer is never "all switchable" (exit 1).
    pub listing_gaps: Vec<String>,
}

/// One thread, as the report needs it.
pub struct Row<'a, 'set> {
    pub pid: i32,
    pub tgid: i32,
    pub comm: &'a str,
    pub state: char,
    pub frames: &'a [Frame],
    pub reliability: Option<&'a Reliability>,
    pub hits: &'a [PatchHit],
    pub verdict: &'a Verdict<'set>,
    /// The detail printed for a Running verdict.
    pub running_detail: String,
    /// For LEAVE_KERNEL models: the thread is inside what is patched.
    pub in_kernel: bool,
    /// Front-end specific JSON fields of the thread.
    pub extra: Vec<(&'static str, Value)>,
    /// The task's place in the transition in progress, if any.
    pub stall: Option<StallInfo>,
}

fn symbolize(symbols: &Symbolizer, home: &str, pc: u64) -> (Option<String>, Option<u64>) {
    match symbols.lookup(pc) {
        Some(s) if s.object == home => (Some(s.name.to_string()), Some(s.offset)),
        Some(s) => (Some(format!("{} [{}]", s.name, s.object)), Some(s.offset)),
        None => (None, None),
    }
}

/// A frame's pc named as the kernel's `%pB` does: a return address belongs
/// to its call, which may be the last instruction of a function whose
/// noreturn callee never comes back.
pub fn frame_label(symbols: &Symbolizer, home: &str, frame: &lpstack::walk::Frame) -> String {
    use lpstack::walk::FrameKind;
    if matches!(frame.kind, FrameKind::Call | FrameKind::Scanned)
        && frame.pc > 0
        && let (Some(name), Some(off)) = symbolize(symbols, home, frame.pc - 1)
    {
        return format!("{name}+{:#x}", off + 1);
    }
    frame_text(symbols, home, frame.pc)
}

pub fn frame_text(symbols: &Symbolizer, home: &str, pc: u64) -> String {
    match symbolize(symbols, home, pc) {
        (Some(name), Some(off)) => format!("{name}+{off:#x}"),
        _ => format!("{pc:#x}"),
    }
}

fn verdict_detail(r: &Row<'_, '_>, symbols: &Symbolizer, home: &str) -> String {
    match r.verdict {
        Verdict::Switchable => String::new(),
        Verdict::Blocked { function, frame, pc, .. } => {
            let mut s = format!(
                "{}:{} at frame #{frame} {}",
                function.object,
                function.function,
                frame_text(symbols, home, *pc)
            );
            if function.version != lpstack::patchset::CheckedVersion::Original {
                s += &format!(" ({})", function.version.name());
            }
            s
        }
        Verdict::Unreliable { reason, frame } => format!("{reason} (frame #{frame})"),
        Verdict::Running => {
            // What the CPU was doing: the patched function it is in, else
            // its innermost frame; and whether that stack could be trusted.
            let mut s = r.running_detail.clone();
            if let Some(h) = r.hits.iter().min_by_key(|h| h.frame) {
                s += &format!(", running in patched {} at frame #{}", frame_text(symbols, home, h.pc), h.frame);
                if h.past_unreliable {
                    s += " (past the unreliable frame)";
                }
            } else if let Some(f) = r.frames.first() {
                s += &format!(", in {}", frame_text(symbols, home, f.pc));
            }
            if let Some(f) = r.frames.get(1).filter(|f| f.kind == lpstack::walk::FrameKind::Scanned) {
                let callee = r.frames.first().map_or_else(String::new, |c| frame_text(symbols, home, c.pc));
                let callee = callee.split('+').next().unwrap_or_default();
                s += &format!(
                    "; frame #1 ({}) found as the return address of the call to {callee}, which has no unwind data",
                    frame_label(symbols, home, f)
                );
            }
            if let Some(Reliability::Unreliable { reason, frame }) = r.reliability {
                s += &format!("; stack unreliable at frame #{frame}: {reason}");
            }
            s
        }
    }
}

pub fn table_report(
    out: &mut impl Write,
    target: &Target,
    rows: &[Row<'_, '_>],
    set: &PatchSet,
    models: &[ModelOutcome],
    symbols: &Symbolizer,
    all_frames: bool,
) -> Result<(), CliError> {
    let home = target.home_object.as_str();
    let mut blocked: BTreeMap<String, usize> = BTreeMap::new();
    let mut unreliable: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut switchable, mut running) = (0, 0);
    for r in rows {
        match r.verdict {
            Verdict::Switchable => switchable += 1,
            Verdict::Blocked { function, .. } => {
                *blocked.entry(format!("{}:{}", function.object, function.function)).or_default() += 1
            }
            Verdict::Unreliable { reason, .. } => *unreliable.entry(reason.code()).or_default() += 1,
            Verdict::Running => running += 1,
        }
    }
    writeln!(out, "{}: {} {} checked against {} patched functions", target.title, rows.len(), target.noun, set.len())?;
    writeln!(out, "  switchable  {switchable}")?;
    writeln!(out, "  blocked     {}", blocked.values().sum::<usize>())?;
    for (f, n) in &blocked {
        writeln!(out, "    {n:>6}  {f}")?;
    }
    writeln!(out, "  unreliable  {}", unreliable.values().sum::<usize>())?;
    for (f, n) in &unreliable {
        writeln!(out, "    {n:>6}  {f}")?;
    }
    writeln!(out, "  running     {running}")?;
    if !target.listing_gaps.is_empty() {
        // Not a row: what may hide a task that cannot switch.
        writeln!(out, "  not listed  {} part(s) of the task listing could not be read:", target.listing_gaps.len())?;
        for g in &target.listing_gaps {
            writeln!(out, "    {g}")?;
        }
    }
    // During a transition the tasks the kernel already switched are
    // counted, not listed; every other task is, with the kernel's words.
    let stuck: Vec<&Row<'_, '_>> = match &target.transition {
        Some((module, direction)) => {
            let switched = rows.iter().filter(|r| r.stall.as_ref().is_some_and(|s| s.switched)).count();
            let verb = match direction {
                KlpTarget::Patched => "patching",
                KlpTarget::Unpatched => "unpatching",
            };
            writeln!(
                out,
                "livepatch {module} in transition ({verb}): {switched} {} switched, {} pending",
                target.noun,
                rows.len() - switched
            )?;
            rows.iter().filter(|r| r.stall.as_ref().is_none_or(|s| !s.switched)).collect()
        }
        None => rows.iter().filter(|r| !r.verdict.is_switchable()).collect(),
    };
    if !stuck.is_empty() {
        writeln!(out)?;
        writeln!(out, "{:>7} {:>7} {:<16} {:>2}  {:<10}  detail", "PID", "TGID", "COMM", "ST", "VERDICT")?;
        for r in &stuck {
            let mut detail = verdict_detail(r, symbols, home);
            if let Some(s) = &r.stall {
                let words = s.kernel_reason.as_deref().unwrap_or("");
                detail = match r.verdict {
                    // The kernel names the function; the frame shows the code found.
                    Verdict::Blocked { function, frame, pc, .. } => format!(
                        "{words} [{}]: frame #{frame} {} ({})",
                        function.object,
                        frame_text(symbols, home, *pc),
                        function.version.name()
                    ),
                    _ if detail.is_empty() => words.to_string(),
                    _ => format!("{words}: {detail}"),
                };
                if let Some(never) = s.never_converges {
                    detail += &format!("; will not converge: {never}");
                }
            }
            writeln!(
                out,
                "{:>7} {:>7} {:<16} {:>2}  {:<10}  {}",
                r.pid,
                r.tgid,
                r.comm,
                r.state,
                r.verdict.name(),
                detail
            )?;
        }
    }
    if all_frames {
        for r in rows {
            writeln!(out, "\n{} {} ({}):", r.pid, r.comm, r.verdict.name())?;
            for (i, f) in r.frames.iter().enumerate() {
                let mark = if f.reliable { ' ' } else { '?' };
                writeln!(out, " {mark}#{i:<3} {:#018x} {}", f.pc, frame_label(symbols, home, f))?;
            }
        }
    }
    for m in models {
        let units = &m.units;
        let ready = units.iter().filter(|u| u.ready).count();
        writeln!(out, "\nmodel {}: {ready} of {} units ready", m.model, units.len())?;
        for u in units.iter().filter(|u| !u.ready).take(20) {
            let name = unit_name(&u.unit, rows, set);
            let first = u.blockers.first().map_or(String::new(), |b| blocker_text(b, rows, set));
            writeln!(out, "  {name}: {} blockers, first: {first}", u.blockers.len())?;
        }
    }
    Ok(())
}

fn unit_name(u: &Unit, rows: &[Row<'_, '_>], set: &PatchSet) -> String {
    match u {
        Unit::Function(f) => set.funcs().get(*f).map_or("?".into(), |f| format!("{}:{}", f.object, f.function)),
        Unit::Thread(t) => rows.get(*t).map_or("?".into(), |r| format!("{} {}", r.pid, r.comm)),
        Unit::Kernel => "kernel".into(),
    }
}

fn blocker_text(b: &Blocker, rows: &[Row<'_, '_>], set: &PatchSet) -> String {
    let task = |t: usize| rows.get(t).map_or("?".into(), |r| format!("{} {}", r.pid, r.comm));
    match b {
        Blocker::OnStack { thread, function, frame } => format!(
            "{} has {} at frame #{frame}",
            task(*thread),
            set.funcs().get(*function).map_or("?", |f| f.function.as_str())
        ),
        Blocker::Unreliable { thread } => format!("{} unreliable", task(*thread)),
        Blocker::Running { thread } => format!("{} running", task(*thread)),
        Blocker::InKernel { thread } => format!("{} in kernel", task(*thread)),
    }
}

fn bump(v: &mut Value) {
    *v = json!(v.as_u64().unwrap_or(0) + 1);
}

pub fn json_report(
    target: &Target,
    rows: &[Row<'_, '_>],
    set: &PatchSet,
    models: &[ModelOutcome],
    symbols: &Symbolizer,
) -> Value {
    let home = target.home_object.as_str();
    let mut summary = json!({"tasks": rows.len(), "switchable": 0, "blocked": {}, "unreliable": {}, "running": 0});
    let mut tasks = Vec::with_capacity(rows.len());
    for r in rows {
        match r.verdict {
            Verdict::Switchable => bump(&mut summary["switchable"]),
            Verdict::Running => bump(&mut summary["running"]),
            Verdict::Blocked { function, .. } => {
                bump(&mut summary["blocked"][format!("{}:{}", function.object, function.function)])
            }
            Verdict::Unreliable { reason, .. } => bump(&mut summary["unreliable"][reason.code()]),
        }
        let trusted_until = match r.reliability {
            Some(Reliability::Unreliable { frame, .. }) => *frame,
            _ => usize::MAX,
        };
        let frames: Vec<Value> = r
            .frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let (symbol, offset) = symbolize(symbols, home, f.pc);
                json!({"pc": f.pc, "sp": f.sp, "symbol": symbol, "offset": offset, "kind": f.kind.name(),
                       "reliable": f.reliable && i < trusted_until, "kernel_regs": f.kernel_regs})
            })
            .collect();
        let mut task = json!({
            "pid": r.pid, "tgid": r.tgid, "comm": r.comm, "state": r.state.to_string(),
            "verdict": r.verdict.name(),
            "blocking": match r.verdict {
                Verdict::Blocked { function, frame, pc, inlined } => json!({"function": function.function, "object": function.object, "frame": frame, "pc": pc, "inlined": inlined,
                    "checked": format!("{}:{}", function.checked_object, function.checked_function), "version": function.version}),
                _ => Value::Null,
            },
            "unreliable": match r.verdict {
                Verdict::Unreliable { reason, frame } => json!({"reason": reason.code(), "detail": reason.to_string(), "frame": frame}),
                _ => Value::Null,
            },
            "patched_frames": r.hits.iter().map(|h| json!({"function": set.funcs().get(h.func).map(|f| f.function.as_str()), "frame": h.frame, "pc": h.pc, "inlined": h.inlined})).collect::<Vec<_>>(),
            "frames": frames,
        });
        for (k, v) in &r.extra {
            task[*k] = v.clone();
        }
        if let Some(s) = &r.stall {
            task["transition"] = json!(s);
        }
        tasks.push(task);
    }
    if target.transition.is_some() {
        let switched = rows.iter().filter(|r| r.stall.as_ref().is_some_and(|s| s.switched)).count();
        summary["switched_by_kernel"] = json!(switched);
        summary["pending"] = json!(rows.len() - switched);
    }
    summary["not_listed"] = json!(target.listing_gaps.len());
    let models: Vec<Value> = models
        .iter()
        .map(|m| {
            json!({"model": m.model.to_string(), "ready": m.ready(), "units": m.units.iter().map(|u| json!({
                "unit": unit_name(&u.unit, rows, set), "ready": u.ready,
                "blockers": u.blockers.iter().map(|b| blocker_text(b, rows, set)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()})
        })
        .collect();
    json!({
        target.key: target.json,
        "patched": set.funcs().iter().map(|f| json!({"object": f.object, "function": f.function, "sympos": f.sympos, "address": f.address, "size": f.size, "checked": format!("{}:{}", f.checked_object, f.checked_function), "version": f.version})).collect::<Vec<_>>(),
        "transition": target.transition.as_ref().map(|(module, target)| json!({"patch": module, "target": target})),
        "notes": target.notes.iter().chain(&target.listing_gaps).collect::<Vec<_>>(),
        "listing_gaps": target.listing_gaps,
        "summary": summary,
        "models": models,
        "tasks": tasks,
    })
}

/// Prints `rows` in `format`; returns the exit code (0: all switchable).
#[allow(clippy::too_many_arguments)]
pub fn print(
    format: super::check::OutputFormat,
    target: &Target,
    rows: &[Row<'_, '_>],
    set: &PatchSet,
    models: &[ModelOutcome],
    symbols: &Symbolizer,
    all_frames: bool,
) -> Result<i32, CliError> {
    // Every front-end says why it found nothing before it gets here; this
    // is the last word, for any path that did not.
    if rows.is_empty() {
        return Err(CliError(format!(
            "{}: no {} to check (nothing checked is not \"all switchable\")",
            target.title, target.noun
        )));
    }
    // A listing that went past something is not known to hold every task.
    let all_switchable = rows.iter().all(|r| r.verdict.is_switchable()) && target.listing_gaps.is_empty();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        super::check::OutputFormat::Json => {
            let v = json_report(target, rows, set, models, symbols);
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        super::check::OutputFormat::Table => table_report(&mut out, target, rows, set, models, symbols, all_frames)?,
    }
    out.flush()?;
    Ok(if all_switchable { 0 } else { 1 })
}
