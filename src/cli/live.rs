//! `lpstack check live --set funcs.txt [--pid PID...]`: the running kernel,
//! read through /proc/kcore while it runs. Same report and exit codes as a
//! vmcore check.

use std::time::Instant;

use lpstack::kernel::check::{CheckConfig, CheckMode, Select};
use lpstack::kernel::live::{LiveSources, SymbolsFrom, euid, open_live};
use lpstack::walk::{KernelRegsPolicy, WalkConfig};
use serde_json::json;

use super::CliError;
use super::check::{KernelArgs, ReportArgs, SymbolsFromArg, kernel_rows, kernel_set, parse_models, print_report};
use super::report::{Row, Target};

#[derive(clap::Args)]
pub struct LiveArgs {
    /// Only these tasks (thread ids or process ids).
    #[arg(long = "pid", num_args = 1.., value_name = "PID")]
    pids: Vec<i32>,
    /// Read-walk-reread passes before a task that keeps changing is
    /// reported as "changed while reading".
    #[arg(long, default_value_t = 5)]
    max_passes: u32,
    /// Print setup and check times to stderr.
    #[arg(long)]
    timing: bool,
    /// Where vmlinux symbols come from. `memory` reads the kernel's
    /// kallsyms tables in place (falling back to /proc/kallsyms on kernels
    /// whose VMCOREINFO does not locate them); `proc-kallsyms` parses
    /// /proc/kallsyms.
    #[arg(long, value_enum, default_value_t = SymbolsFromArg::Memory)]
    symbols_from: SymbolsFromArg,
    /// Walk tasks on 1 or 2 threads, each with its own kcore reader.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    threads: u8,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run(args: &LiveArgs) -> Result<i32, CliError> {
    let t0 = Instant::now();
    let symbols = match args.symbols_from {
        SymbolsFromArg::Memory => SymbolsFrom::Memory,
        SymbolsFromArg::ProcKallsyms => SymbolsFrom::ProcKallsyms,
    };
    let sources = LiveSources { symbols, ..LiveSources::default() };
    let live = open_live(&sources, euid()).map_err(|e| CliError(e.to_string()))?;
    let mut kernel = live.kernel;
    let live_timings = live.timings;
    let build_id = live.vmcoreinfo.build_id().map(str::to_string);
    let (kernel_set, transition) = kernel_set(&args.kernel.set, &mut kernel, "the running kernel")?;
    for n in &kernel_set.notes {
        eprintln!("lpstack: note: {n}");
    }
    let set = kernel_set.set;
    let t_open = t0.elapsed();
    let config = WalkConfig {
        max_frames: args.report.max_frames.max(1),
        kernel_regs: if args.kernel.frame_pointer_rules { KernelRegsPolicy::Reject } else { KernelRegsPolicy::Accept },
    };
    let pids = &args.pids;
    // --threads 2: two kcore readers, each its own open file (the kernel
    // copies kcore reads through a buffer per open file).
    let select = if pids.is_empty() { Select::All } else { Select::Pids(pids) };
    let check = CheckConfig {
        walk: config,
        mode: CheckMode::Live { passes: args.max_passes.max(1) },
        threads: usize::from(args.threads),
        select,
    };
    let t1 = Instant::now();
    let checked =
        kernel.check(&set, &check, |_, _| {}).map_err(|e| CliError(format!("{}: {e}", sources.kcore.display())))?;
    let (reports, reads, gaps) = (checked.tasks, checked.reads, checked.listing_gaps);
    let t_check = t1.elapsed();
    if reports.is_empty() {
        // Nothing checked is not "all switchable".
        let what =
            if pids.is_empty() { "no task was listed".to_string() } else { format!("no task matched --pid {pids:?}") };
        return Err(CliError(format!("{}: {what}", sources.kcore.display())));
    }
    for w in kernel.warnings() {
        eprintln!("lpstack: warning: {w}");
    }
    if args.timing {
        let steps: Vec<String> =
            live_timings.iter().map(|(what, d)| format!("{what} {:.1}", d.as_secs_f64() * 1e3)).collect();
        eprintln!("lpstack: setup: {} ms", steps.join(", "));
        eprintln!(
            "lpstack: timing: open {:.1} ms, check {:.1} ms for {} tasks, {} kcore reads of {} KiB \
             (listing {}, walk start {}, stack {}, reread {}; {} walks; {} thread(s))",
            t_open.as_secs_f64() * 1e3,
            t_check.as_secs_f64() * 1e3,
            reports.len(),
            reads.total(),
            reads.bytes >> 10,
            reads.listing,
            reads.walk_start,
            reads.walk_stack,
            reads.reread,
            reads.walks,
            args.threads,
        );
    }
    let models = parse_models(&args.report)?;
    let rows: Vec<Row<'_, '_>> = kernel_rows(&reports, transition.as_ref(), kernel.symbols())
        .into_iter()
        .zip(&reports)
        .map(|(row, r)| Row { running_detail: format!("on CPU {}", r.task.cpu), ..row })
        .collect();
    let target = Target {
        key: "kernel",
        json: json!({"release": kernel.release(), "build_id": build_id, "live": true}),
        title: format!("kernel {} (live)", kernel.release()),
        noun: "tasks",
        home_object: "vmlinux".into(),
        transition,
        notes: kernel_set.notes,
        listing_gaps: super::check::listing_gaps(&gaps),
    };
    print_report(&args.report, &target, &rows, &set, &models, kernel.symbols())
}
