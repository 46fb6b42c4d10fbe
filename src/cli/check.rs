//! `lpstack check <vmcore> --set funcs.txt`: per-task verdicts from a dump.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use lpstack::dump::Dump;
use lpstack::kernel::check::{check_kernel, TaskReport};
use lpstack::kernel::image::{CpuRegs, Kernel, SymbolSource};
use lpstack::model::{evaluate, Blocker, Model, ThreadFacts, Unit};
use lpstack::patchset::{parse_funcs, Direction, PatchSet};
use lpstack::symbols::Symbolizer;
use lpstack::verdict::Verdict;
use lpstack::walk::{KernelRegsPolicy, Reliability, WalkConfig};
use serde_json::{json, Value};

use super::{map_file, CliError};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// What to check: a vmcore file (ELF, kdump-compressed or flattened).
    target: PathBuf,
    /// The patched functions: `[object:]function[,sympos]` per line.
    #[arg(long)]
    set: PathBuf,
    /// Unpatching: check the replacement functions named in --new-set.
    #[arg(long, requires = "new_set")]
    unpatch: bool,
    /// The new (replacement) functions, line by line with --set. Without
    /// --unpatch this is a stacked patch: the previous patch's replacements
    /// are what is checked.
    #[arg(long)]
    new_set: Option<PathBuf>,
    /// Consistency model, e.g. LEAVE_PATCHED_SET,SWITCH_THREAD (livepatch,
    /// the default), kpatch, kgraft, or `all` for the nine.
    #[arg(long)]
    model: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Print every task's frames, not only those that cannot switch.
    #[arg(long)]
    all_frames: bool,
    /// A vmlinux (ELF with symtab) for symbols, for kernels before 6.0 or
    /// dumps missing kallsyms pages; its build ID must match the dump's.
    #[arg(long)]
    vmlinux: Option<PathBuf>,
    /// A System.map for symbols (checked against the dump's VMCOREINFO).
    #[arg(long, conflicts_with = "vmlinux")]
    system_map: Option<PathBuf>,
    /// Frame limit; the kernel's is 100.
    #[arg(long, default_value_t = 100)]
    max_frames: usize,
    /// Treat kernel-mode pt_regs in mid-stack as unreliable, as frame-pointer
    /// kernels do.
    #[arg(long)]
    frame_pointer_rules: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

pub fn run(args: CheckArgs) -> Result<i32, CliError> {
    let path = &args.target;
    let named = |e: &dyn std::fmt::Display| CliError(format!("{}: {e}", path.display()));
    let map = map_file(path)?;
    let dump = Dump::open(&map).map_err(|e| named(&e))?;
    let vi = dump
        .vmcoreinfo()
        .cloned()
        .ok_or_else(|| CliError(format!("{}: no VMCOREINFO in the dump (QEMU needs -device vmcoreinfo and the guest's qemu_fw_cfg module)", path.display())))?;
    let cpus = qemu_cpu_regs(&dump);
    let build_id = vi.build_id().map(str::to_string);
    let vmlinux_map = match &args.vmlinux {
        Some(p) => Some(map_file(p)?),
        None => None,
    };
    let system_map = match &args.system_map {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| CliError(format!("{}: {e}", p.display())))?),
        None => None,
    };
    let source = match (&vmlinux_map, &system_map) {
        (Some(m), _) => SymbolSource::Vmlinux(m),
        (None, Some(t)) => SymbolSource::SystemMap(t),
        (None, None) => SymbolSource::Kallsyms,
    };
    let mut kernel = Kernel::open_with(dump, &vi, source).map_err(|e| named(&e))?;
    let cpus = if cpus.is_empty() { kernel.crash_notes_regs() } else { cpus };
    for w in &kernel.warnings {
        eprintln!("lpstack: warning: {w}");
    }

    let set = load_set(&args, &kernel.symbols)?;
    let config = WalkConfig {
        max_frames: args.max_frames.max(1),
        kernel_regs: if args.frame_pointer_rules { KernelRegsPolicy::Reject } else { KernelRegsPolicy::Accept },
    };
    let bar = progress_bar();
    let reports = check_kernel(&mut kernel, &set, &cpus, &config, |i, n| {
        if let Some(b) = &bar {
            b.set_length(n as u64);
            b.set_position(i as u64);
        }
    })
    .map_err(|e| named(&e))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    let models = match args.model.as_deref() {
        None => vec![],
        Some("all") => Model::all().collect(),
        Some(m) => vec![m.parse::<Model>().map_err(|e| CliError(e.to_string()))?],
    };
    let all_switchable = reports.iter().all(|r| r.verdict.is_switchable());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        OutputFormat::Json => {
            let v = json_report(&kernel.release, build_id.as_deref(), &reports, &set, &models, &kernel.symbols);
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        OutputFormat::Table => table_report(&mut out, &kernel.release, &reports, &set, &models, &kernel.symbols, args.all_frames)?,
    }
    out.flush()?;
    Ok(if all_switchable { 0 } else { 1 })
}

fn load_set(args: &CheckArgs, symbols: &Symbolizer) -> Result<PatchSet, CliError> {
    let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| CliError(format!("{}: {e}", p.display())));
    fn at(p: &std::path::Path) -> impl Fn(lpstack::patchset::PatchSetError) -> CliError + '_ {
        move |e| CliError(format!("{}: {e}", p.display()))
    }
    let old = parse_funcs(&read(&args.set)?, "vmlinux").map_err(at(&args.set))?;
    let new = match &args.new_set {
        Some(p) => Some(parse_funcs(&read(p)?, "vmlinux").map_err(at(p))?),
        None => None,
    };
    let direction = if args.unpatch { Direction::Unpatch } else { Direction::Patch };
    PatchSet::resolve_for(direction, &old, new.as_deref(), symbols).map_err(at(&args.set))
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(0);
    b.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tasks").ok()?);
    Some(b)
}

fn symbolize(symbols: &Symbolizer, pc: u64) -> (Option<String>, Option<u64>) {
    match symbols.lookup(pc) {
        Some(s) if s.object == "vmlinux" => (Some(s.name.to_string()), Some(s.offset)),
        Some(s) => (Some(format!("{} [{}]", s.name, s.object)), Some(s.offset)),
        None => (None, None),
    }
}

fn frame_text(symbols: &Symbolizer, pc: u64) -> String {
    match symbolize(symbols, pc) {
        (Some(name), Some(off)) => format!("{name}+{off:#x}"),
        _ => format!("{pc:#x}"),
    }
}

fn verdict_detail(r: &TaskReport<'_>, symbols: &Symbolizer) -> String {
    match &r.verdict {
        Verdict::Switchable => String::new(),
        Verdict::Blocked { function, frame, pc } => {
            format!("{}:{} at frame #{frame} {}", function.object, function.function, frame_text(symbols, *pc))
        }
        Verdict::Unreliable { reason, frame } => format!("{reason} (frame #{frame})"),
        Verdict::Running => match r.reliability {
            None => "on CPU, no registers".to_string(),
            Some(_) => format!("on CPU {}", r.task.cpu),
        },
    }
}

fn table_report(
    out: &mut impl Write,
    release: &str,
    reports: &[TaskReport<'_>],
    set: &PatchSet,
    models: &[Model],
    symbols: &Symbolizer,
    all_frames: bool,
) -> Result<(), CliError> {
    let mut blocked: BTreeMap<String, usize> = BTreeMap::new();
    let mut unreliable: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut switchable, mut running) = (0, 0);
    for r in reports {
        match &r.verdict {
            Verdict::Switchable => switchable += 1,
            Verdict::Blocked { function, .. } => {
                *blocked.entry(format!("{}:{}", function.object, function.function)).or_default() += 1
            }
            Verdict::Unreliable { reason, .. } => *unreliable.entry(reason.code()).or_default() += 1,
            Verdict::Running => running += 1,
        }
    }
    writeln!(out, "kernel {release}: {} tasks checked against {} patched functions", reports.len(), set.len())?;
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
    let stuck: Vec<&TaskReport<'_>> = reports.iter().filter(|r| !r.verdict.is_switchable()).collect();
    if !stuck.is_empty() {
        writeln!(out)?;
        writeln!(out, "{:>7} {:>7} {:<16} {:>2}  {:<10}  detail", "PID", "TGID", "COMM", "ST", "VERDICT")?;
        for r in &stuck {
            let t = &r.task;
            writeln!(
                out,
                "{:>7} {:>7} {:<16} {:>2}  {:<10}  {}",
                t.pid,
                t.tgid,
                t.comm,
                t.state_letter(),
                r.verdict.name(),
                verdict_detail(r, symbols)
            )?;
        }
    }
    for r in reports {
        if !(all_frames || (!r.verdict.is_switchable() && !matches!(r.verdict, Verdict::Running))) {
            continue;
        }
        if !all_frames {
            continue;
        }
        writeln!(out, "\n{} {} ({}):", r.task.pid, r.task.comm, r.verdict.name())?;
        for (i, f) in r.frames.iter().enumerate() {
            let mark = if f.reliable { ' ' } else { '?' };
            writeln!(out, " {mark}#{i:<3} {:#018x} {}", f.pc, frame_text(symbols, f.pc))?;
        }
    }
    for m in models {
        let facts = facts(reports);
        let units = evaluate(*m, &facts, set.len());
        let ready = units.iter().filter(|u| u.ready).count();
        writeln!(out, "\nmodel {m}: {ready} of {} units ready", units.len())?;
        for u in units.iter().filter(|u| !u.ready).take(20) {
            let name = unit_name(&u.unit, reports, set);
            writeln!(out, "  {name}: {} blockers, first: {}", u.blockers.len(), blocker_text(&u.blockers[0], reports, set))?;
        }
    }
    Ok(())
}

fn facts<'a>(reports: &'a [TaskReport<'_>]) -> Vec<ThreadFacts<'a>> {
    reports
        .iter()
        .map(|r| ThreadFacts {
            running: matches!(r.verdict, Verdict::Running),
            reliable: r.reliability.as_ref().is_some_and(Reliability::is_reliable),
            in_kernel: !matches!(r.reliability, Some(Reliability::Reliable(lpstack::walk::CleanEnd::UserRegs))) || !r.frames.is_empty(),
            hits: &r.hits,
        })
        .collect()
}

fn unit_name(u: &Unit, reports: &[TaskReport<'_>], set: &PatchSet) -> String {
    match u {
        Unit::Function(f) => set.funcs().get(*f).map_or("?".into(), |f| format!("{}:{}", f.object, f.function)),
        Unit::Thread(t) => reports.get(*t).map_or("?".into(), |r| format!("{} {}", r.task.pid, r.task.comm)),
        Unit::Kernel => "kernel".into(),
    }
}

fn blocker_text(b: &Blocker, reports: &[TaskReport<'_>], set: &PatchSet) -> String {
    let task = |t: usize| reports.get(t).map_or("?".into(), |r| format!("{} {}", r.task.pid, r.task.comm));
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

fn json_report(
    release: &str,
    build_id: Option<&str>,
    reports: &[TaskReport<'_>],
    set: &PatchSet,
    models: &[Model],
    symbols: &Symbolizer,
) -> Value {
    let mut summary = json!({"tasks": reports.len(), "switchable": 0, "blocked": {}, "unreliable": {}, "running": 0});
    let mut tasks = Vec::with_capacity(reports.len());
    for r in reports {
        match &r.verdict {
            Verdict::Switchable => summary["switchable"] = json!(summary["switchable"].as_u64().unwrap_or(0) + 1),
            Verdict::Running => summary["running"] = json!(summary["running"].as_u64().unwrap_or(0) + 1),
            Verdict::Blocked { function, .. } => {
                let k = format!("{}:{}", function.object, function.function);
                summary["blocked"][&k] = json!(summary["blocked"][&k].as_u64().unwrap_or(0) + 1);
            }
            Verdict::Unreliable { reason, .. } => {
                let k = reason.code();
                summary["unreliable"][k] = json!(summary["unreliable"][k].as_u64().unwrap_or(0) + 1);
            }
        }
        let trusted_until = match r.reliability {
            Some(Reliability::Unreliable { frame, .. }) => frame,
            _ => usize::MAX,
        };
        let frames: Vec<Value> = r
            .frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let (symbol, offset) = symbolize(symbols, f.pc);
                json!({"pc": f.pc, "sp": f.sp, "symbol": symbol, "offset": offset, "kind": f.kind.name(),
                       "reliable": f.reliable && i < trusted_until, "kernel_regs": f.kernel_regs})
            })
            .collect();
        let t = &r.task;
        tasks.push(json!({
            "pid": t.pid, "tgid": t.tgid, "comm": t.comm, "state": t.state_letter().to_string(),
            "on_cpu": t.on_cpu, "cpu": t.cpu, "kthread": t.kthread(), "idle": t.idle,
            "patch_state": t.patch_state,
            "verdict": r.verdict.name(),
            "blocking": match &r.verdict {
                Verdict::Blocked { function, frame, pc } => json!({"function": function.function, "object": function.object, "frame": frame, "pc": pc}),
                _ => Value::Null,
            },
            "unreliable": match &r.verdict {
                Verdict::Unreliable { reason, frame } => json!({"reason": reason.code(), "detail": reason.to_string(), "frame": frame}),
                _ => Value::Null,
            },
            "patched_frames": r.hits.iter().map(|h| json!({"function": set.funcs().get(h.func).map(|f| f.function.as_str()), "frame": h.frame, "pc": h.pc})).collect::<Vec<_>>(),
            "frames": frames,
        }));
    }
    let facts = facts(reports);
    let models: Vec<Value> = models
        .iter()
        .map(|m| {
            let units = evaluate(*m, &facts, set.len());
            json!({"model": m.to_string(), "ready": units.iter().all(|u| u.ready), "units": units.iter().map(|u| json!({
                "unit": unit_name(&u.unit, reports, set), "ready": u.ready,
                "blockers": u.blockers.iter().map(|b| blocker_text(b, reports, set)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()})
        })
        .collect();
    json!({
        "kernel": {"release": release, "build_id": build_id},
        "patched": set.funcs().iter().map(|f| json!({"object": f.object, "function": f.function, "address": f.address, "size": f.size, "checked": format!("{}:{}", f.checked_object, f.checked_function)})).collect::<Vec<_>>(),
        "summary": summary,
        "models": models,
        "tasks": tasks,
    })
}

/// QEMU numbers its CPU notes (pr_pid = cpu + 1); a kdump's come from
/// `crash_notes` instead, once the kernel is open.
pub fn qemu_cpu_regs(dump: &Dump<'_>) -> Vec<CpuRegs> {
    dump.cpus().iter().filter_map(|c| c.index_hint.map(|cpu| CpuRegs { cpu, regs: c.regs })).collect()
}
