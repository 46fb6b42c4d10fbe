//! `lpstack check core FILE --set funcs.txt [--sysroot DIR]`: a process
//! core file (the kernel's or gdb's `gcore`).

use std::path::PathBuf;

use lpstack::model::Model;
use lpstack::patchset::PatchSet;
use lpstack::process::core::CoreFile;
use lpstack::process::{FileAccess, Inspection, ThreadReport};
use lpstack::verdict::Verdict;
use lpstack::walk::WalkConfig;
use serde_json::json;

use super::check::{ReportArgs, SetArgs, load_set_with, parse_models, print_report};
use super::report::{Row, Target};
use super::{CliError, map_file};

#[derive(clap::Args)]
#[command(mut_arg("set", |a| a.required(true)))]
pub struct CoreArgs {
    /// The core file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Root directory under which a core's mapped files (and debug files)
    /// are found, for a core from another machine.
    #[arg(long)]
    sysroot: Option<PathBuf>,
    #[command(flatten)]
    set: SetArgs,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run(args: &CoreArgs) -> Result<i32, CliError> {
    let path = &args.file;
    let map = map_file(path)?;
    let core =
        CoreFile::parse(&map, args.sysroot.as_deref()).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    let root = args.sysroot.clone().unwrap_or_else(|| "/".into());
    let mut mem = core.memory();
    let inspection = Inspection::new(core.snapshot.clone(), &FileAccess::Sysroot(root), &mut mem);
    let (set, set_notes) = load_set_with(&args.set, &inspection.symbols, &inspection.main_object, &mut |f| {
        inspection.dwarf_inlines(&f.object, &f.function)
    })?;
    let config = WalkConfig { max_frames: args.report.max_frames.max(1), ..WalkConfig::default() };
    let mut notes = Vec::new();
    let reports = inspection.check_with_notes(&mut mem, &set, &config, &mut notes);
    for n in &notes {
        eprintln!("lpstack: warning: {n}");
    }
    if reports.is_empty() {
        return Err(CliError(format!("{}: no thread of the core was checked", path.display())));
    }
    let models = parse_models(&args.report)?;
    let title = format!("core {} of process {}", path.display(), core.snapshot.pid);
    print_process(&args.report, &inspection, &reports, &set, &models, title, set_notes)
}

/// The report of a process (live or core), shared by `pid` and `core`.
pub(super) fn print_process(
    args: &ReportArgs,
    inspection: &Inspection,
    reports: &[ThreadReport<'_>],
    set: &PatchSet,
    models: &[Model],
    title: String,
    set_notes: Vec<String>,
) -> Result<i32, CliError> {
    for note in inspection.notes.iter().chain(&set_notes) {
        eprintln!("lpstack: note: {note}");
    }
    let s = &inspection.snapshot;
    let rows: Vec<Row<'_, '_>> = reports
        .iter()
        .map(|r| Row {
            pid: r.thread.tid,
            tgid: r.thread.tgid,
            comm: &r.thread.comm,
            state: r.thread.state,
            frames: &r.frames,
            reliability: r.reliability.as_ref(),
            hits: &r.hits,
            verdict: &r.verdict,
            running_detail: match r.verdict {
                Verdict::Running => "did not stop; stack not read".to_string(),
                _ => String::new(),
            },
            in_kernel: inspection.in_patched_object(r, set),
            kernel: None,
            stall: None,
        })
        .collect();
    let modules: Vec<_> = inspection
        .files
        .iter()
        .map(|m| json!({"name": m.name, "path": m.path, "start": m.start, "end": m.end, "bias": m.bias,
                         "readable": m.data.is_some(), "debug_file": m.debug_path.as_ref().map(|p| p.display().to_string())}))
        .collect();
    let target = Target {
        key: "process",
        json: json!({"pid": s.pid, "comm": s.comm, "exe": s.exe, "main_object": inspection.main_object,
                     "modules": modules, "notes": inspection.notes}),
        title: format!("{title} ({})", s.comm),
        noun: "threads",
        home_object: inspection.main_object.clone(),
        transition: None,
        notes: set_notes,
        listing_gaps: vec![],
    };
    print_report(args, &target, &rows, set, models, &inspection.symbols)
}
