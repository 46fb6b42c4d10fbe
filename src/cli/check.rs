//! `lpstack check vmcore FILE --set funcs.txt` (or `check FILE`): per-task
//! verdicts from a dump. `check pid PID`, `check core FILE` and `check live`
//! are dispatched to `pid`, `core` and `live`; each target takes only the
//! flags it uses.

use std::io::IsTerminal;
use std::path::PathBuf;

use lpstack::dump::Dump;
use lpstack::kernel::check::{CheckConfig, CheckMode, Select, TaskReport};
use lpstack::kernel::image::{CpuRegs, Kernel, OpenOptions, SymbolSource};
use lpstack::kernel::klp::KlpTarget;
use lpstack::kernel::stall::stall_info;
use lpstack::memory::PhysMemory;
use lpstack::model::{Model, ModelOutcome, ThreadFacts, evaluate_all};
use lpstack::patchset::klp::{KernelSet, KlpKnowledge, ResolveOptions, from_transition, resolve_in_kernel};
use lpstack::patchset::ko::read_livepatch_module;
use lpstack::patchset::{Direction, PatchSet, parse_funcs};
use lpstack::symbols::Symbolizer;
use lpstack::verdict::Verdict;
use lpstack::walk::{KernelRegsPolicy, Reliability, WalkConfig};
use serde_json::json;

use super::report::{self, KernelTaskFields, Row, Target};
use super::{CliError, map_file};

/// `check FILE` is `check vmcore FILE`: the arguments either name a target
/// (a subcommand with its own flags) or are a vmcore's.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    arg_required_else_help = true,
    after_help = "`lpstack check FILE [OPTIONS]` is short for `lpstack check vmcore FILE [OPTIONS]`."
)]
pub struct CheckArgs {
    #[command(subcommand)]
    target: Option<CheckTarget>,
    /// A vmcore file (short for `check vmcore VMCORE`).
    #[arg(value_name = "VMCORE", required = true)]
    vmcore: Option<PathBuf>,
    #[command(flatten)]
    vmcore_opts: VmcoreOpts,
}

#[derive(clap::Subcommand)]
enum CheckTarget {
    /// A kernel crash dump (ELF, kdump-compressed or flattened).
    Vmcore(VmcoreArgs),
    /// A live process, stopped with ptrace while it is read.
    Pid(super::pid::PidArgs),
    /// A process core file (the kernel's or gdb's gcore).
    Core(super::core::CoreArgs),
    /// The running kernel, as root, through /proc/kcore.
    Live(super::live::LiveArgs),
}

#[derive(clap::Args)]
pub struct VmcoreArgs {
    /// The dump.
    #[arg(value_name = "VMCORE")]
    file: PathBuf,
    #[command(flatten)]
    opts: VmcoreOpts,
}

#[derive(clap::Args)]
pub struct VmcoreOpts {
    /// A vmlinux (ELF with symtab) for symbols, for kernels before 6.0 or
    /// dumps missing kallsyms pages; its build ID must match the dump's.
    #[arg(long)]
    vmlinux: Option<PathBuf>,
    /// A System.map for symbols (checked against the dump's VMCOREINFO).
    #[arg(long, conflicts_with = "vmlinux")]
    system_map: Option<PathBuf>,
    /// Threads checking tasks, each with its own reader of the dump: one
    /// follows the task lists and hands the tasks on as it finds them. The
    /// report is the same for any number [default: the CPUs, at most 8]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    report: ReportArgs,
}

/// What the kernel targets (vmcore, live) share.
#[derive(clap::Args)]
pub struct KernelArgs {
    /// Treat kernel-mode pt_regs in mid-stack as unreliable, as frame-pointer
    /// kernels do.
    #[arg(long)]
    pub(super) frame_pointer_rules: bool,
    #[command(flatten)]
    pub(super) set: KernelSetArgs,
}

/// The patched set of a kernel: a process's sources plus livepatch modules
/// and atomic replace, which only kernels have.
#[derive(clap::Args)]
#[command(next_help_heading = "Patched set")]
pub struct KernelSetArgs {
    #[command(flatten)]
    pub(super) common: SetArgs,
    /// A livepatch module file (.ko from klp-build, kpatch-build or a
    /// source-built `struct klp_patch`): its functions are the set.
    #[arg(long, conflicts_with_all = ["set", "new_set"])]
    pub(super) patch: Option<PathBuf>,
    /// The --set is an atomic-replace patch: functions that live patches
    /// replace and the set does not name get nop functions, checked too
    /// (a --patch module says so itself).
    #[arg(long, requires = "set", conflicts_with = "new_set")]
    pub(super) replace: bool,
}

/// The patched set, for every target.
#[derive(clap::Args)]
#[command(next_help_heading = "Patched set")]
pub struct SetArgs {
    /// The patched functions: `[object:]function[,sympos]` per line. For a
    /// kernel it may be left out: the patch in transition is then read
    /// from the kernel's memory.
    #[arg(long)]
    pub(super) set: Option<PathBuf>,
    /// The new (replacement) functions, line by line with --set. Without
    /// --unpatch this is a stacked patch: the previous patch's replacements
    /// are what is checked.
    #[arg(long, requires = "set")]
    pub(super) new_set: Option<PathBuf>,
    /// Unpatching: check the replacements. For a kernel they are read from
    /// its livepatch state (the patch that replaces the set's functions);
    /// for a process, name them in --new-set.
    #[arg(long)]
    pub(super) unpatch: bool,
}

/// The walk and the report, for every target.
#[derive(clap::Args)]
#[command(next_help_heading = "Report")]
pub struct ReportArgs {
    /// Consistency model, e.g. LEAVE_PATCHED_SET,SWITCH_THREAD (livepatch,
    /// the default), kpatch, kgraft, or `all` for the nine.
    #[arg(long)]
    pub(super) model: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub(super) format: OutputFormat,
    /// Print every task's frames, not only those that cannot switch.
    #[arg(long)]
    pub(super) all_frames: bool,
    /// Frame limit; the kernel's is 100.
    #[arg(long, default_value_t = 100)]
    pub(super) max_frames: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SymbolsFromArg {
    Memory,
    ProcKallsyms,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

pub fn run(args: CheckArgs) -> Result<i32, CliError> {
    match args.target {
        Some(CheckTarget::Vmcore(a)) => run_vmcore(&a.opts, &a.file),
        Some(CheckTarget::Pid(a)) => super::pid::run(&a),
        Some(CheckTarget::Core(a)) => super::core::run(&a),
        Some(CheckTarget::Live(a)) => super::live::run(&a),
        None => {
            // clap requires VMCORE when no target is named.
            let path = args.vmcore.ok_or_else(|| CliError("check needs a vmcore FILE or a target".into()))?;
            misplaced_target(&path)?;
            run_vmcore(&args.vmcore_opts, &path)
        }
    }
}

/// `check --set F live` reads `live` as a vmcore path: flags before the
/// target word make it the short form. Say so rather than "no such file".
fn misplaced_target(path: &std::path::Path) -> Result<(), CliError> {
    let word = path.to_str().filter(|w| ["vmcore", "pid", "core", "live"].contains(w));
    match word {
        Some(w) if !path.exists() => Err(CliError(format!(
            "{w}: no such file; to check a {w} target, put its options after it: lpstack check {w} ..."
        ))),
        _ => Ok(()),
    }
}

fn run_vmcore(args: &VmcoreOpts, path: &std::path::Path) -> Result<i32, CliError> {
    let threads = args.threads.map_or_else(default_threads, usize::from);
    if threads == 1 {
        return run_vmcore_on(args, path, threads);
    }
    // The pool the check's threads come from, made first: a thread made
    // when work comes starts on the maker's CPU (on a 2-vCPU VM the two
    // halves of a read then ran one after the other). The whole command
    // runs on it: a join from outside the pool parks this thread and wakes
    // two of the pool's; on a 2-vCPU VM, three threads cost 4-5 ms of CPU
    // in wake-ups and twice the context switches on a 1,865-task dump.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    rayon::scope(|_| run_vmcore_on(args, path, threads))
}

/// [`run_vmcore`] with `threads` decided, on the pool's thread if many.
fn run_vmcore_on(args: &VmcoreOpts, path: &std::path::Path, threads: usize) -> Result<i32, CliError> {
    let named = |e: &dyn std::fmt::Display| CliError(format!("{}: {e}", path.display()));
    let map = map_file(path)?;
    // Opening a flattened dump reads every record header of the file.
    let dump = Dump::open_from(&map, &mut |_| map.release(), map.file()).map_err(|e| named(&e))?;
    let vi = dump.vmcoreinfo().cloned().ok_or_else(|| {
        CliError(format!(
            "{}: no VMCOREINFO in the dump (QEMU needs -device vmcoreinfo and the guest's qemu_fw_cfg module)",
            path.display()
        ))
    })?;
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
    let dump = Releasing { inner: dump, map: &map, reads: 0 };
    let mut kernel = Kernel::open(dump, &vi, OpenOptions { symbols: source, threads, orc_on_demand: true })
        .map_err(|e| named(&e))?;
    let cpus = if cpus.is_empty() { kernel.crash_notes_regs() } else { cpus };
    let (kernel_set, transition) = kernel_set(&args.kernel.set, &mut kernel, &path.display().to_string())?;
    for n in &kernel_set.notes {
        eprintln!("lpstack: note: {n}");
    }
    let set = kernel_set.set;
    let config = WalkConfig {
        max_frames: args.report.max_frames.max(1),
        kernel_regs: if args.kernel.frame_pointer_rules { KernelRegsPolicy::Reject } else { KernelRegsPolicy::Accept },
    };
    let bar = progress_bar();
    let check = CheckConfig { walk: config, mode: CheckMode::Dump { cpus: &cpus }, select: Select::All, threads };
    let checked = kernel
        .check(&set, &check, |i, n| {
            if let Some(b) = &bar {
                b.set_length(n as u64);
                b.set_position(i as u64);
            }
        })
        .map_err(|e| named(&e))?;
    let (reports, gaps) = (checked.tasks, checked.listing_gaps);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if reports.is_empty() {
        // Nothing checked is not "all switchable".
        return Err(CliError(format!("{}: the task listing found no task (not even an idle task)", path.display())));
    }
    // Setup and task listing both add warnings (skipped modules, a broken
    // task list read through the pid IDR).
    for w in kernel.warnings() {
        eprintln!("lpstack: warning: {w}");
    }

    let models = parse_models(&args.report)?;
    let panic_cpu = kernel.panic_cpu();
    let mut rows = kernel_rows(&reports, transition.as_ref(), kernel.symbols());
    // Rows are the reports, in order.
    for (row, r) in rows.iter_mut().zip(&reports) {
        if r.task.on_cpu && r.reliability.is_some() && Some(r.task.cpu) == panic_cpu {
            row.running_detail += " (the panicking CPU)";
        }
    }
    let target = Target {
        key: "kernel",
        json: json!({"release": kernel.release(), "build_id": build_id}),
        title: format!("kernel {}", kernel.release()),
        noun: "tasks",
        home_object: "vmlinux".into(),
        transition,
        notes: kernel_set.notes,
        listing_gaps: listing_gaps(&gaps),
    };
    let code = print_report(&args.report, &target, &rows, &set, &models, kernel.symbols());
    // The process ends after the report: freeing the tables and reports
    // piece by piece (tens of thousands of allocations) would only delay it.
    std::mem::forget(rows);
    std::mem::forget(reports);
    std::mem::forget(kernel);
    code
}

/// Evaluates the consistency models over this snapshot, once, then prints
/// the report (which only formats); returns the exit code.
pub(super) fn print_report(
    report: &ReportArgs,
    target: &Target,
    rows: &[Row<'_, '_>],
    set: &PatchSet,
    models: &[Model],
    symbols: &Symbolizer,
) -> Result<i32, CliError> {
    let outcomes: Vec<ModelOutcome> = evaluate_all(models, &facts(rows), set.len());
    report::print(report.format, target, rows, set, &outcomes, symbols, report.all_frames)
}

/// What the models need of each row.
fn facts<'a>(rows: &'a [Row<'_, '_>]) -> Vec<ThreadFacts<'a>> {
    rows.iter()
        .map(|r| ThreadFacts {
            running: matches!(r.verdict, Verdict::Running),
            reliable: r.reliability.is_some_and(Reliability::is_reliable),
            in_kernel: r.in_kernel,
            hits: r.hits,
        })
        .collect()
}

/// The listing's gaps as report lines, each also said on stderr.
pub(super) fn listing_gaps(gaps: &[lpstack::kernel::tasks::ListingGap]) -> Vec<String> {
    gaps.iter()
        .map(|g| {
            let line = format!("task listing: {g}");
            eprintln!("lpstack: warning: {line}");
            line
        })
        .collect()
}

pub(super) fn parse_models(args: &ReportArgs) -> Result<Vec<Model>, CliError> {
    Ok(match args.model.as_deref() {
        None => vec![],
        Some("all") => Model::all().collect(),
        Some(m) => vec![m.parse::<Model>().map_err(|e| CliError(e.to_string()))?],
    })
}

/// One row per task, each placed in the transition when there is one.
pub(super) fn kernel_rows<'a, 'set>(
    reports: &'a [TaskReport<'set>],
    transition: Option<&(String, KlpTarget)>,
    symbols: &Symbolizer,
) -> Vec<Row<'a, 'set>> {
    reports
        .iter()
        .map(|r| Row { stall: transition.map(|(_, target)| stall_info(r, *target, symbols)), ..task_row(r) })
        .collect()
}

pub(super) fn task_row<'a, 'set>(r: &'a TaskReport<'set>) -> Row<'a, 'set> {
    let t = &r.task;
    Row {
        pid: t.pid,
        tgid: t.tgid,
        comm: &t.comm,
        state: t.state_letter(),
        frames: &r.frames,
        reliability: r.reliability.as_ref(),
        hits: &r.hits,
        verdict: &r.verdict,
        running_detail: match r.reliability {
            None => "on CPU, no registers".to_string(),
            Some(_) => format!("on CPU {}", t.cpu),
        },
        in_kernel: !matches!(r.reliability, Some(Reliability::Reliable(lpstack::walk::CleanEnd::UserRegs)))
            || !r.frames.is_empty(),
        kernel: Some(KernelTaskFields {
            on_cpu: t.on_cpu,
            cpu: t.cpu,
            kthread: t.kthread(),
            idle: t.idle,
            patch_state: t.patch_state,
        }),
        stall: None,
    }
}

/// The patch set from --set (and --new-set); `default_object` is the
/// object of lines without one (vmlinux, or a process's executable).
pub(super) fn load_set(args: &SetArgs, symbols: &Symbolizer, default_object: &str) -> Result<PatchSet, CliError> {
    load_set_with(args, symbols, default_object, &mut |_| false).map(|(set, _)| set)
}

/// [`load_set`], accepting a line with no symbol when `inline_only` says
/// the function exists only as inlined copies; with the notes on them.
pub(super) fn load_set_with(
    args: &SetArgs,
    symbols: &Symbolizer,
    default_object: &str,
    inline_only: &mut dyn FnMut(&lpstack::patchset::FuncSpec) -> bool,
) -> Result<(PatchSet, Vec<String>), CliError> {
    let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| CliError(format!("{}: {e}", p.display())));
    fn at(p: &std::path::Path) -> impl Fn(lpstack::patchset::PatchSetError) -> CliError + '_ {
        move |e| CliError(format!("{}: {e}", p.display()))
    }
    let set_path = args.set.as_ref().ok_or_else(|| CliError("a process check needs --set funcs.txt".into()))?;
    let old = parse_funcs(&read(set_path)?, default_object).map_err(at(set_path))?;
    let new = match &args.new_set {
        Some(p) => Some(parse_funcs(&read(p)?, default_object).map_err(at(p))?),
        None => None,
    };
    let direction = if args.unpatch { Direction::Unpatch } else { Direction::Patch };
    PatchSet::resolve_for_with_inline_only(direction, &old, new.as_deref(), symbols, inline_only).map_err(at(set_path))
}

/// The patched set of a kernel, with livepatch's rules (objects not
/// loaded, stacked patches, direction; see `lpstack::patchset::klp`), from
/// --set, --patch or the patch in transition; and the transition itself.
/// `what` names the target in messages.
pub(super) fn kernel_set<P: PhysMemory>(
    args: &KernelSetArgs,
    kernel: &mut Kernel<P>,
    what: &str,
) -> Result<(KernelSet, Option<(String, KlpTarget)>), CliError> {
    let (state, unreadable) = match kernel.klp_state() {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let knowledge = match (&state, unreadable) {
        (Some(s), _) => KlpKnowledge::State(s),
        (None, Some(error)) => KlpKnowledge::Unreadable { error, livepatch_modules: kernel.livepatch_modules() },
        (None, None) => KlpKnowledge::None,
    };
    let transition = state.as_ref().and_then(|s| {
        let t = s.transition?;
        Some((s.patches.get(t.patch)?.module.clone(), t.target))
    });
    let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| CliError(format!("{}: {e}", p.display())));
    let at = |p: &PathBuf| {
        let p = p.display().to_string();
        move |e: lpstack::patchset::PatchSetError| CliError(format!("{p}: {e}"))
    };
    let unpatch = args.common.unpatch;
    let mut ks = match (&args.common.set, &args.patch) {
        (Some(_), _) if args.common.new_set.is_some() => {
            // Explicit replacements: the user said which range to check.
            KernelSet { set: load_set(&args.common, kernel.symbols(), "vmlinux")?, notes: vec![] }
        }
        (Some(path), _) => {
            let specs = parse_funcs(&read(path)?, "vmlinux").map_err(at(path))?;
            resolve_in_kernel(&specs, kernel.symbols(), &knowledge, ResolveOptions { unpatch, replace: args.replace })
                .map_err(at(path))?
        }
        (None, Some(path)) => patch_module_set(path, kernel, &knowledge, unpatch)?,
        (None, None) => {
            if unpatch {
                return Err(CliError("--unpatch needs --set or --patch".into()));
            }
            let Some(state) = &state else {
                return Err(CliError(match &knowledge {
                    KlpKnowledge::Unreadable { error, .. } => {
                        format!("{what}: {error}; give the patched set with --set funcs.txt or --patch FILE.ko")
                    }
                    _ => format!(
                        "{what}: this kernel has no livepatch support; give the patched set with --set funcs.txt or --patch FILE.ko"
                    ),
                }));
            };
            let mut ks = from_transition(state, kernel.symbols()).ok_or_else(|| {
                CliError(format!(
                    "{what}: no livepatch transition in progress; give the patched set with --set funcs.txt or --patch FILE.ko"
                ))
            })?;
            if let Some((module, target)) = &transition {
                ks.notes.insert(
                    0,
                    format!("patched set from the kernel's memory: livepatch {module} in transition to {target:?}"),
                );
            }
            ks
        }
    };
    if ks.set.is_empty() {
        ks.notes.push("no patched function is loaded in the target: nothing to check".into());
    }
    Ok((ks, transition))
}

/// A dump's check uses the machine's CPUs, up to 8 (more readers of one
/// file gain little), unless `--threads` says otherwise.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(0);
    b.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tasks").ok()?);
    Some(b)
}

/// QEMU numbers its CPU notes (pr_pid = cpu + 1); a kdump's come from
/// `crash_notes` instead, once the kernel is open.
pub fn qemu_cpu_regs(dump: &Dump<'_>) -> Vec<CpuRegs> {
    dump.cpus().iter().filter_map(|c| c.index_hint.map(|cpu| CpuRegs { cpu, regs: c.regs })).collect()
}

/// The set a livepatch module file names, with livepatch's rules. Its
/// struct layouts (source-built modules) come from the kernel's BTF.
fn patch_module_set<P: PhysMemory>(
    path: &std::path::Path,
    kernel: &mut Kernel<P>,
    knowledge: &KlpKnowledge<'_>,
    unpatch: bool,
) -> Result<KernelSet, CliError> {
    let named = |e: &dyn std::fmt::Display| CliError(format!("{}: {e}", path.display()));
    let file = map_file(path)?;
    let btf_bytes = kernel.read_btf().map_err(|e| CliError(format!("the target's BTF: {e}")))?;
    let btf = lpstack::kernel::btf::Btf::parse(&btf_bytes).map_err(|e| CliError(format!("the target's BTF: {e}")))?;
    let module = read_livepatch_module(&file, Some(&btf)).map_err(|e| named(&e))?;
    let specs = module.func_specs();
    // klp-build and kpatch-build decide replace when the module is built and
    // both default to it; a replace checks more (its nops), so assume it.
    let replace = module.replace.unwrap_or(true);
    let options = ResolveOptions { unpatch, replace };
    let mut ks =
        resolve_in_kernel(&specs, kernel.symbols(), knowledge, options).map_err(|e| named(&format!("function {e}")))?;
    let objects = module.objects.len();
    ks.notes.insert(
        0,
        format!(
            "livepatch module {} ({}{}): {} function(s) in {objects} object(s)",
            module.name,
            module.form.as_str(),
            match module.replace {
                Some(true) => ", atomic replace",
                Some(false) => "",
                None => ", atomic replace assumed (the file does not say)",
            },
            specs.len()
        ),
    );
    Ok(ks)
}

/// The dump, letting go of the mapped file's pages every few thousand
/// reads: each task's pages are read once, and memory must not grow with
/// the task count. Pages still needed fault back in from the page cache.
struct Releasing<'m, P> {
    inner: P,
    map: &'m super::mapped::MappedFile,
    reads: u32,
}

impl<P> Releasing<'_, P> {
    fn count(&mut self) {
        self.reads += 1;
        if self.reads >= 8192 {
            self.reads = 0;
            self.map.release();
        }
    }
}

impl<P: PhysMemory> PhysMemory for Releasing<'_, P> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), lpstack::memory::MemoryError> {
        self.count();
        self.inner.read_phys(paddr, buf)
    }
    fn invalidate(&mut self) {
        self.inner.invalidate()
    }
    fn fixed_translation(&self, vaddr: u64) -> Option<u64> {
        self.inner.fixed_translation(vaddr)
    }
    fn prefetch(&mut self, paddr: u64, len: u64) {
        self.inner.prefetch(paddr, len)
    }
    fn read_phys_fresh(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), lpstack::memory::MemoryError> {
        self.count();
        self.inner.read_phys_fresh(paddr, buf)
    }
    fn reads(&self) -> u64 {
        self.inner.reads()
    }
    fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }
    fn split(&self) -> Option<Self> {
        Some(Releasing { inner: self.inner.split()?, map: self.map, reads: 0 })
    }
    fn held_page(&self, paddr: u64) -> Option<&[u8]> {
        self.inner.held_page(paddr)
    }
    fn hold_page(&mut self, paddr: u64, page: Box<[u8]>) -> Option<Box<[u8]>> {
        self.inner.hold_page(paddr, page)
    }
}
