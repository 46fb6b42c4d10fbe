//! `lpstack check pid PID --set funcs.txt`: a live process, stopped with
//! ptrace for as long as it is read, then released as it was.

use lpstack::process::{FileAccess, Inspection};
use lpstack::walk::WalkConfig;

use super::CliError;
use super::check::{ReportArgs, SetArgs, load_set_with, parse_models};

#[derive(clap::Args)]
#[command(mut_arg("set", |a| a.required(true)))]
pub struct PidArgs {
    /// The process.
    #[arg(value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    pid: i32,
    /// Root directory under which the process's separate debug files are
    /// found.
    #[arg(long)]
    sysroot: Option<std::path::PathBuf>,
    #[command(flatten)]
    set: SetArgs,
    #[command(flatten)]
    report: ReportArgs,
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn run(args: &PidArgs) -> Result<i32, CliError> {
    use lpstack::process::ptrace::{Attached, ProcessMemory, peek};

    let pid = args.pid;
    let at = |e: &dyn std::fmt::Display| CliError(format!("pid {pid}: {e}"));
    let debug_root = args.sysroot.clone().unwrap_or_else(|| "/".into());
    let access = FileAccess::Live { pid, debug_root };
    // Files and CFI are loaded while the process runs, so that it is
    // stopped only for the walks; they are reloaded if its code mappings
    // changed meanwhile.
    let mut inspection = Inspection::new(peek(pid).map_err(|e| at(&e))?, &access, &mut ProcessMemory::new(pid));
    // Everything that needs the process stopped happens while `attached`
    // lives; it detaches on every path out (drop).
    let attached = Attached::attach(pid).map_err(|e| at(&e))?;
    let snapshot = attached.snapshot().map_err(|e| at(&e))?;
    let mut mem = attached.memory();
    inspection.update(snapshot, &access, &mut mem);
    let (set, set_notes) = load_set_with(&args.set, &inspection.symbols, &inspection.main_object, &mut |f| {
        inspection.dwarf_inlines(&f.object, &f.function)
    })?;
    let config = WalkConfig { max_frames: args.report.max_frames.max(1), ..WalkConfig::default() };
    let mut notes = Vec::new();
    let reports = inspection.check_with_notes(&mut mem, &set, &config, &mut notes);
    for n in &notes {
        eprintln!("lpstack: warning: {n}");
    }
    for problem in attached.detach() {
        eprintln!("lpstack: warning: {problem}");
    }
    if reports.is_empty() {
        return Err(at(&"no thread of the process could be read (nothing checked is not \"all switchable\")"));
    }
    let models = parse_models(&args.report)?;
    super::core::print_process(&args.report, &inspection, &reports, &set, &models, format!("process {pid}"), set_notes)
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub fn run(args: &PidArgs) -> Result<i32, CliError> {
    Err(CliError(format!("pid {}: live processes are read on Linux x86-64 only", args.pid)))
}
