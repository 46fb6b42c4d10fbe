//! DWARF CFI unwinding of real userspace stacks: lpstack's compiled rule
//! table (`walk_cfi`) against framehop and against plain gimli (one
//! `.eh_frame_hdr` lookup and one CFI program run per frame), in one run, on
//! the same stacks and the same modules.
//!
//! The stacks are taken at bench start: tests/programs/parked.c is built
//! with cc and started (threads parked in known functions, one in a signal
//! handler, one in a shared library), stopped with lpstack's ptrace layer,
//! and for every thread its registers and the bytes of its stack (from sp's
//! page to the end of its stack mapping) are copied, with the bytes of every
//! module (this machine's libc, ld.so, the vdso...). The process is then
//! detached and killed; everything below reads only those copies, through
//! one `read_stack` closure per thread, the same for the three unwinders.
//!
//! Measured:
//! - warm: unwinders and caches set up, repeated walks of all threads;
//! - cold: building the unwinder from the module bytes (lpstack:
//!   `CfiTable::from_shared` per module, sharing the bytes; framehop:
//!   section lookup, `Module::new` over borrowed section slices and
//!   `add_module`; gimli: section lookup and `.eh_frame_hdr` parsing) plus
//!   the first walk of all threads with a new cache;
//! - per module: lpstack's table setup, and (for reference) compiling every
//!   row at once, per MB of `.eh_frame`.
//!
//! "Cold" means the unwinder's state, not the CPU caches: module and stack
//! bytes are already in memory. A summary table is printed at the end.

#[path = "../tests/programs/support.rs"]
mod support;

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};
use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, Evaluation, EvaluationResult, LittleEndian,
    ParsedEhFrameHdr, RegisterRule, UnwindContext, UnwindSection, Value, X86_64,
};
use lpstack::arch::x86_64::{Reg, Regs};
use lpstack::cfi::{CfiCache, CfiTable};
use lpstack::memory::{WordFnMemory, read_vec};
use lpstack::process::ptrace::Attached;
use lpstack::process::{FileAccess, Inspection, thread_bounds};
use lpstack::symbols::SymbolTable;
use lpstack::walk::{Frame, Reliability, StackBounds, UserModule, UserModules, WalkConfig, WalkStart, walk_cfi};
use object::{Object, ObjectSection};

// ---------------------------------------------------------------------------
// The snapshot

/// One thread: registers and a copy of its stack.
struct ThreadStack {
    tid: i32,
    role: String,
    regs: Regs,
    /// Address of `bytes[0]` (sp rounded down to its page).
    base: u64,
    bytes: Vec<u8>,
    bounds: StackBounds,
}

/// One module: where it is mapped and its file's bytes.
struct ModuleBytes {
    name: String,
    path: String,
    start: u64,
    end: u64,
    bias: u64,
    /// Shared with lpstack's tables (they borrow, as from a mapped file).
    data: Arc<Vec<u8>>,
}

struct Capture {
    threads: Vec<ThreadStack>,
    modules: Vec<ModuleBytes>,
}

/// Starts parked.c, stops it, copies stacks and modules, kills it.
fn capture() -> Capture {
    let built = support::build(false);
    let p = support::Parked::start(&built);
    let attached = Attached::attach(p.pid).expect("ptrace attach (run as the owner or root)");
    let snapshot = attached.snapshot().expect("snapshot");
    let mut mem = attached.memory();
    let access = FileAccess::Live { pid: p.pid, debug_root: "/".into() };
    let inspection = Inspection::new(snapshot, &access, &mut mem);
    let mut threads = Vec::new();
    for t in &inspection.snapshot.threads {
        let regs = t.regs.expect("every thread stopped");
        let bounds = thread_bounds(&inspection.snapshot.maps, &regs);
        let range = bounds.ranges()[0];
        let sp = regs.get(Reg::Rsp).unwrap();
        let base = (sp & !4095).max(range.start);
        let bytes = read_vec(&mut mem, base, (range.end - base) as usize).expect("stack bytes");
        threads.push(ThreadStack { tid: t.tid, role: p.role(t.tid).to_string(), regs, base, bytes, bounds });
    }
    // The live walk (through ptrace) and the walk of the copies must agree.
    let mut cache = CfiCache::new();
    let mut live = Vec::new();
    for t in &threads {
        walk_cfi(
            &inspection.modules,
            &mut mem,
            &mut cache,
            &t.bounds,
            WalkStart::from_regs(t.regs),
            &WalkConfig::default(),
            &mut live,
        );
        let copy = walk_lpstack(&inspection.modules, &mut cache, t, &mut Vec::new());
        assert_eq!(pcs_of(&live), copy, "thread {} ({}): live walk and walk of the copy differ", t.tid, t.role);
    }
    let modules = inspection
        .files
        .iter()
        .map(|f| ModuleBytes {
            name: f.name.clone(),
            path: f.path.clone(),
            start: f.start,
            end: f.end,
            bias: f.bias,
            data: Arc::new(f.data.as_deref().map(|d| d.to_vec()).expect("module bytes")),
        })
        .collect();
    let problems = attached.detach();
    assert!(problems.is_empty(), "{problems:?}");
    drop(p); // kills it
    Capture { threads, modules }
}

/// The one stack reader every unwinder gets: aligned or not, 8 bytes from
/// the copy, an error outside it.
fn reader(t: &ThreadStack) -> impl FnMut(u64) -> Result<u64, ()> + '_ {
    let (base, bytes) = (t.base, &t.bytes[..]);
    move |addr: u64| {
        let off = usize::try_from(addr.checked_sub(base).ok_or(())?).map_err(|_| ())?;
        let word = bytes.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
        Ok(u64::from_le_bytes(word.try_into().map_err(|_| ())?))
    }
}

fn pcs_of(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(|f| f.pc).collect()
}

fn section<'d>(file: &object::File<'d>, name: &str) -> Option<(&'d [u8], u64)> {
    let s = file.section_by_name(name)?;
    Some((s.data().ok()?, s.address()))
}

fn eh_frame_size(data: &[u8]) -> usize {
    let file = object::File::parse(data).expect("ELF");
    section(&file, ".eh_frame").map_or(0, |(d, _)| d.len())
}

// ---------------------------------------------------------------------------
// lpstack

fn build_lpstack(mods: &[ModuleBytes]) -> UserModules {
    UserModules::new(
        mods.iter()
            .map(|m| UserModule {
                name: m.name.clone(),
                path: m.path.clone(),
                start: m.start,
                end: m.end,
                bias: m.bias,
                cfi: CfiTable::from_shared(m.data.clone(), None).ok().filter(|t| !t.is_empty()),
                symbols: SymbolTable::new(&m.name),
            })
            .collect(),
    )
}

/// Walks one thread (setup), which must be reliable; returns its pcs.
fn walk_lpstack(modules: &UserModules, cache: &mut CfiCache, t: &ThreadStack, frames: &mut Vec<Frame>) -> Vec<u64> {
    let r = run_lpstack(modules, cache, t, frames);
    assert!(r.is_reliable(), "thread {} ({}): lpstack walk unreliable: {r:?}", t.tid, t.role);
    pcs_of(frames)
}

#[inline]
fn run_lpstack(modules: &UserModules, cache: &mut CfiCache, t: &ThreadStack, frames: &mut Vec<Frame>) -> Reliability {
    let mut read = reader(t);
    let mut mem = WordFnMemory(&mut read);
    walk_cfi(modules, &mut mem, cache, &t.bounds, WalkStart::from_regs(t.regs), &WalkConfig::default(), frames)
}

// ---------------------------------------------------------------------------
// framehop

fn build_framehop(mods: &[ModuleBytes]) -> UnwinderX86_64<&[u8]> {
    let mut u = UnwinderX86_64::new();
    for m in mods {
        let Ok(file) = object::File::parse(m.data.as_slice()) else { continue };
        let range = |name: &str| file.section_by_name(name).map(|s| s.address()..s.address() + s.size());
        // Borrowed, not copied: as lpstack's tables.
        let data = |name: &str| section(&file, name).map(|(d, _)| d);
        // framehop reads .text only for Mach-O prologue analysis: its range
        // is given, its bytes are not copied.
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: range(".text"),
            got_svma: range(".got"),
            eh_frame_svma: range(".eh_frame"),
            eh_frame: data(".eh_frame"),
            eh_frame_hdr_svma: range(".eh_frame_hdr"),
            eh_frame_hdr: data(".eh_frame_hdr"),
            ..Default::default()
        };
        u.add_module(Module::new(m.name.clone(), m.start..m.end, m.bias, info));
    }
    u
}

const MAX_FRAMES: usize = 100;

fn walk_framehop(u: &UnwinderX86_64<&[u8]>, cache: &mut CacheX86_64, t: &ThreadStack, pcs: &mut Vec<u64>) {
    pcs.clear();
    let mut read = reader(t);
    let r = |reg| t.regs.get(reg).unwrap_or(0);
    let pc = r(Reg::Rip);
    let mut it = u.iter_frames(pc, UnwindRegsX86_64::new(pc, r(Reg::Rsp), r(Reg::Rbp)), cache, &mut read);
    while let Ok(Some(f)) = it.next() {
        pcs.push(f.address());
        if pcs.len() == MAX_FRAMES {
            break;
        }
    }
}

// ---------------------------------------------------------------------------
// Plain gimli: per frame, the FDE from .eh_frame_hdr's table and its CFI
// program run up to the pc with a reused UnwindContext.

type Rd<'d> = EndianSlice<'d, LittleEndian>;

struct GimliModule<'d> {
    start: u64,
    end: u64,
    bias: u64,
    eh_frame: EhFrame<Rd<'d>>,
    hdr: Option<ParsedEhFrameHdr<Rd<'d>>>,
    bases: BaseAddresses,
}

struct GimliUnwinder<'d> {
    modules: Vec<GimliModule<'d>>,
}

fn build_gimli(mods: &[ModuleBytes]) -> GimliUnwinder<'_> {
    let mut modules = Vec::new();
    for m in mods {
        let Ok(file) = object::File::parse(m.data.as_slice()) else { continue };
        let Some((eh, eh_addr)) = section(&file, ".eh_frame") else { continue };
        let addr = |name| section(&file, name).map_or(0, |(_, a)| a);
        let mut bases = BaseAddresses::default().set_eh_frame(eh_addr).set_text(addr(".text")).set_got(addr(".got"));
        let hdr = section(&file, ".eh_frame_hdr").and_then(|(d, a)| {
            bases = bases.clone().set_eh_frame_hdr(a);
            EhFrameHdr::new(d, LittleEndian).parse(&bases, 8).ok()
        });
        let mut eh_frame = EhFrame::new(eh, LittleEndian);
        eh_frame.set_address_size(8);
        modules.push(GimliModule { start: m.start, end: m.end, bias: m.bias, eh_frame, hdr, bases });
    }
    modules.sort_by_key(|m| m.start);
    GimliUnwinder { modules }
}

/// rip, rsp, rbp: all a CFI step needs here (as framehop keeps).
#[derive(Clone, Copy)]
struct GRegs {
    ip: u64,
    sp: u64,
    bp: u64,
}

impl GRegs {
    fn get(&self, r: gimli::Register) -> Option<u64> {
        match r {
            X86_64::RSP => Some(self.sp),
            X86_64::RBP => Some(self.bp),
            X86_64::RA => Some(self.ip),
            _ => None,
        }
    }
}

fn gimli_expr<F: FnMut(u64) -> Result<u64, ()>>(
    expr: gimli::Expression<Rd<'_>>,
    regs: &GRegs,
    read: &mut F,
    initial: Option<u64>,
) -> Option<u64> {
    let encoding = gimli::Encoding { format: gimli::Format::Dwarf32, version: 4, address_size: 8 };
    let mut e: Evaluation<Rd<'_>> = expr.evaluation(encoding);
    if let Some(v) = initial {
        e.set_initial_value(v);
    }
    let mut r = e.evaluate().ok()?;
    for _ in 0..64 {
        r = match r {
            EvaluationResult::Complete => {
                return match e.as_result().first()?.location {
                    gimli::Location::Address { address } => Some(address),
                    _ => None,
                };
            }
            EvaluationResult::RequiresRegister { register, .. } => {
                e.resume_with_register(Value::Generic(regs.get(register)?)).ok()?
            }
            EvaluationResult::RequiresMemory { address, size: 8, .. } => {
                e.resume_with_memory(Value::Generic(read(address).ok()?)).ok()?
            }
            _ => return None,
        };
    }
    None
}

/// Where a register is saved (`Offset`, `Expression`) or its value
/// (`SameValue`, `ValOffset`); None when the rule is something else.
fn gimli_register<F: FnMut(u64) -> Result<u64, ()>>(
    eh: &EhFrame<Rd<'_>>,
    rule: Option<RegisterRule<usize>>,
    cfa: u64,
    same: u64,
    regs: &GRegs,
    read: &mut F,
) -> Option<u64> {
    match rule {
        None | Some(RegisterRule::SameValue) => Some(same),
        Some(RegisterRule::Offset(o)) => read(cfa.wrapping_add(o as u64)).ok(),
        Some(RegisterRule::ValOffset(o)) => Some(cfa.wrapping_add(o as u64)),
        Some(RegisterRule::Expression(x)) => {
            let at = gimli_expr(x.get(eh).ok()?, regs, read, Some(cfa))?;
            read(at).ok()
        }
        _ => None,
    }
}

fn walk_gimli(u: &GimliUnwinder<'_>, ctx: &mut UnwindContext<usize>, t: &ThreadStack, pcs: &mut Vec<u64>) {
    pcs.clear();
    let mut read = reader(t);
    let r = |reg| t.regs.get(reg).unwrap_or(0);
    let mut regs = GRegs { ip: r(Reg::Rip), sp: r(Reg::Rsp), bp: r(Reg::Rbp) };
    // The first pc and a signal frame's caller are exact; others are
    // return addresses, looked up at pc - 1.
    let mut exact = true;
    while pcs.len() < MAX_FRAMES {
        pcs.push(regs.ip);
        let i = u.modules.partition_point(|m| m.start <= regs.ip);
        let Some(m) = u.modules[..i].last().filter(|m| regs.ip < m.end) else { return };
        let rel = if exact { regs.ip } else { regs.ip - 1 }.wrapping_sub(m.bias);
        let fde = match &m.hdr {
            Some(h) => match h.table() {
                Some(table) => table.fde_for_address(&m.eh_frame, &m.bases, rel, EhFrame::cie_from_offset),
                None => m.eh_frame.fde_for_address(&m.bases, rel, EhFrame::cie_from_offset),
            },
            None => m.eh_frame.fde_for_address(&m.bases, rel, EhFrame::cie_from_offset),
        };
        let Ok(fde) = fde else { return };
        let Ok(row) = fde.unwind_info_for_address(&m.eh_frame, &m.bases, ctx, rel) else { return };
        let ra_rule = row.register(X86_64::RA);
        if matches!(ra_rule, Some(RegisterRule::Undefined)) {
            return; // the outermost frame
        }
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => match regs.get(*register) {
                Some(v) => v.wrapping_add(*offset as u64),
                None => return,
            },
            CfaRule::Expression(x) => match x.get(&m.eh_frame).ok().and_then(|x| gimli_expr(x, &regs, &mut read, None))
            {
                Some(v) => v,
                None => return,
            },
        };
        let Some(ip) = gimli_register(&m.eh_frame, ra_rule, cfa, regs.ip, &regs, &mut read) else { return };
        let Some(bp) = gimli_register(&m.eh_frame, row.register(X86_64::RBP), cfa, regs.bp, &regs, &mut read) else {
            return;
        };
        if pcs.len() > 1 && cfa <= regs.sp {
            return; // the stack must grow
        }
        exact = fde.cie().is_signal_trampoline();
        regs = GRegs { ip, sp: cfa, bp };
    }
}

// ---------------------------------------------------------------------------
// Agreement

/// Compares another unwinder's pcs with lpstack's: equal up to where the
/// other stopped, else the bench panics. Returns a note for the summary.
fn agree(name: &str, t: &ThreadStack, lp: &[u64], other: &[u64]) -> String {
    let n = lp.len().min(other.len());
    if lp[..n] != other[..n] {
        let at = lp.iter().zip(other).take_while(|(a, b)| a == b).count();
        panic!(
            "thread {} ({}): {name} differs from lpstack at frame #{at}\nlpstack: {lp:x?}\n{name}: {other:x?}",
            t.tid, t.role
        );
    }
    if other.len() == lp.len() {
        "same".to_string()
    } else {
        format!("same up to where it stops: {} of {} frames", other.len(), lp.len())
    }
}

// ---------------------------------------------------------------------------
// Timing: criterion's samples, kept for the summary.

/// Runs `f` as criterion bench `name`; `f(iters)` runs `iters` iterations
/// and returns the time they took. Returns the median ns per iteration over
/// criterion's measurement samples (None when filtered out).
fn timed(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    samples: usize,
    mut f: impl FnMut(u64) -> Duration,
) -> Option<f64> {
    let record: RefCell<Vec<(u64, Duration)>> = RefCell::new(Vec::new());
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let d = f(iters);
            record.borrow_mut().push((iters, d));
            d
        })
    });
    let rec = record.into_inner();
    let take = rec.len().min(samples);
    let mut per: Vec<f64> = rec[rec.len() - take..].iter().map(|(n, d)| d.as_nanos() as f64 / *n as f64).collect();
    if per.is_empty() {
        return None;
    }
    per.sort_by(|a, b| a.total_cmp(b));
    Some(per[per.len() / 2])
}

/// Times `iters` runs of `f` as one span.
fn batch(iters: u64, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed()
}

/// Times `iters` runs of `f`, keeping what they build alive in groups of
/// eight so that dropping it is not timed.
fn batch_keep<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    let mut kept = Vec::with_capacity(8);
    while left > 0 {
        let n = left.min(8);
        let t = Instant::now();
        for _ in 0..n {
            kept.push(f());
        }
        total += t.elapsed();
        kept.clear();
        left -= n;
    }
    total
}

fn fmt_ns(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let cap = capture();
    let threads = &cap.threads;
    let mods = &cap.modules;

    // Set up the three once and check they agree.
    let lp = build_lpstack(mods);
    let fh = build_framehop(mods);
    let gm = build_gimli(mods);
    let mut lp_cache = CfiCache::new();
    let mut fh_cache = CacheX86_64::new();
    let mut ctx = UnwindContext::new();
    let mut frames = Vec::with_capacity(MAX_FRAMES);
    let mut pcs = Vec::with_capacity(MAX_FRAMES);
    let mut totals = [0usize; 3];
    let mut notes = Vec::new();
    // Threads whose pcs all three give in full: the equal-work comparison.
    let mut equal: Vec<&ThreadStack> = Vec::new();
    let mut equal_frames = 0usize;
    for t in threads {
        let lp_pcs = walk_lpstack(&lp, &mut lp_cache, t, &mut frames);
        walk_framehop(&fh, &mut fh_cache, t, &mut pcs);
        let fh_note = agree("framehop", t, &lp_pcs, &pcs);
        totals[1] += pcs.len();
        walk_gimli(&gm, &mut ctx, t, &mut pcs);
        let gm_note = agree("gimli", t, &lp_pcs, &pcs);
        totals[2] += pcs.len();
        totals[0] += lp_pcs.len();
        if fh_note == "same" && gm_note == "same" {
            equal.push(t);
            equal_frames += lp_pcs.len();
        }
        notes.push(format!(
            "  {:>5} {:<5} {:>3} frames  framehop: {fh_note}; gimli: {gm_note}",
            t.tid,
            t.role,
            lp_pcs.len()
        ));
    }
    // framehop's rule cache: 509 slots indexed by address % 509, so two
    // pcs of these walks may evict each other (it depends on where ASLR put
    // the modules); such frames run gimli on every walk.
    let before = fh_cache.stats();
    for t in threads {
        walk_framehop(&fh, &mut fh_cache, t, &mut pcs);
    }
    let after = fh_cache.stats();
    let fh_cache_note = format!(
        "framehop rule cache per warm round: {} hits, {} misses",
        after.hit_count - before.hit_count,
        after.total() - before.total() - (after.hit_count - before.hit_count)
    );
    let eh_total: usize = mods.iter().map(|m| eh_frame_size(&m.data)).sum();
    eprintln!(
        "dwarf: {} threads, {} modules ({} KiB of .eh_frame), frames lpstack/framehop/gimli = {}/{}/{}",
        threads.len(),
        mods.len(),
        eh_total / 1024,
        totals[0],
        totals[1],
        totals[2]
    );
    for n in &notes {
        eprintln!("{n}");
    }
    eprintln!("  {fh_cache_note}");

    // For `perf record`: LPSTACK_DWARF_LOOP=warm-lpstack|warm-framehop|
    // warm-gimli|cold-lpstack|cold-framehop|cold-gimli runs only that for
    // 5 seconds, without criterion; warm-equal-* walks only the threads all
    // three walk in full.
    if let Ok(what) = std::env::var("LPSTACK_DWARF_LOOP") {
        // LPSTACK_DWARF_ROUNDS=N: exactly N*100 rounds (for instruction
        // counts under valgrind) instead of 5 seconds.
        let rounds: Option<u64> = std::env::var("LPSTACK_DWARF_ROUNDS").ok().and_then(|v| v.parse().ok());
        let t0 = Instant::now();
        let mut n = 0u64;
        while rounds.map_or(t0.elapsed() < Duration::from_secs(5), |r| n < r * 100) {
            for _ in 0..100 {
                match what.as_str() {
                    "warm-equal-lpstack" => equal.iter().for_each(|t| {
                        black_box(run_lpstack(&lp, &mut lp_cache, t, &mut frames));
                    }),
                    "warm-equal-framehop" => equal.iter().for_each(|t| walk_framehop(&fh, &mut fh_cache, t, &mut pcs)),
                    "warm-lpstack" => threads.iter().for_each(|t| {
                        black_box(run_lpstack(&lp, &mut lp_cache, t, &mut frames));
                    }),
                    "warm-framehop" => threads.iter().for_each(|t| walk_framehop(&fh, &mut fh_cache, t, &mut pcs)),
                    "warm-gimli" => threads.iter().for_each(|t| walk_gimli(&gm, &mut ctx, t, &mut pcs)),
                    "cold-lpstack" => {
                        let lp = build_lpstack(mods);
                        let mut cache = CfiCache::new();
                        threads.iter().for_each(|t| {
                            black_box(run_lpstack(&lp, &mut cache, t, &mut frames));
                        });
                    }
                    "cold-framehop" => {
                        let fh = build_framehop(mods);
                        let mut cache = CacheX86_64::new();
                        threads.iter().for_each(|t| walk_framehop(&fh, &mut cache, t, &mut pcs));
                    }
                    "cold-gimli" => {
                        let gm = build_gimli(mods);
                        let mut ctx = UnwindContext::new();
                        threads.iter().for_each(|t| walk_gimli(&gm, &mut ctx, t, &mut pcs));
                    }
                    other => panic!("LPSTACK_DWARF_LOOP={other}: unknown"),
                }
                n += 1;
            }
        }
        eprintln!("{what}: {n} rounds, {:.1} us each", t0.elapsed().as_secs_f64() * 1e6 / n as f64);
        return;
    }

    // Warm.
    let mut warm = [None; 3];
    {
        let mut g = c.benchmark_group("dwarf-warm");
        g.throughput(Throughput::Elements(totals[0] as u64));
        let samples = 100;
        warm[0] = timed(&mut g, "lpstack", samples, |n| {
            batch(n, || {
                for t in threads {
                    black_box(run_lpstack(&lp, &mut lp_cache, t, &mut frames));
                }
            })
        });
        warm[1] = timed(&mut g, "framehop", samples, |n| {
            batch(n, || {
                for t in threads {
                    walk_framehop(&fh, &mut fh_cache, t, &mut pcs);
                    black_box(&pcs);
                }
            })
        });
        warm[2] = timed(&mut g, "gimli", samples, |n| {
            batch(n, || {
                for t in threads {
                    walk_gimli(&gm, &mut ctx, t, &mut pcs);
                    black_box(&pcs);
                }
            })
        });
        g.finish();
    }

    // Warm, only the threads all three walk in full.
    let mut warm_eq = [None; 3];
    {
        let mut g = c.benchmark_group("dwarf-warm-equal");
        g.throughput(Throughput::Elements(equal_frames as u64));
        let samples = 100;
        warm_eq[0] = timed(&mut g, "lpstack", samples, |n| {
            batch(n, || {
                for t in &equal {
                    black_box(run_lpstack(&lp, &mut lp_cache, t, &mut frames));
                }
            })
        });
        warm_eq[1] = timed(&mut g, "framehop", samples, |n| {
            batch(n, || {
                for t in &equal {
                    walk_framehop(&fh, &mut fh_cache, t, &mut pcs);
                    black_box(&pcs);
                }
            })
        });
        warm_eq[2] = timed(&mut g, "gimli", samples, |n| {
            batch(n, || {
                for t in &equal {
                    walk_gimli(&gm, &mut ctx, t, &mut pcs);
                    black_box(&pcs);
                }
            })
        });
        g.finish();
    }

    // Cold: build from the module bytes, then the first walk of all
    // threads. Dropping what was built is not timed.
    let mut cold = [None; 3];
    {
        let mut g = c.benchmark_group("dwarf-cold");
        g.sampling_mode(SamplingMode::Flat);
        let samples = 20;
        g.sample_size(samples);
        cold[0] = timed(&mut g, "lpstack", samples, |n| {
            batch_keep(n, || {
                let lp = build_lpstack(mods);
                let mut cache = CfiCache::new();
                let mut frames = Vec::with_capacity(MAX_FRAMES);
                for t in threads {
                    black_box(run_lpstack(&lp, &mut cache, t, &mut frames));
                }
                (lp, cache, frames)
            })
        });
        cold[1] = timed(&mut g, "framehop", samples, |n| {
            batch_keep(n, || {
                let fh = build_framehop(mods);
                let mut cache = CacheX86_64::new();
                let mut pcs = Vec::with_capacity(MAX_FRAMES);
                for t in threads {
                    walk_framehop(&fh, &mut cache, t, &mut pcs);
                    black_box(&pcs);
                }
                (fh, cache, pcs)
            })
        });
        cold[2] = timed(&mut g, "gimli", samples, |n| {
            batch_keep(n, || {
                let gm = build_gimli(mods);
                let mut ctx = UnwindContext::new();
                let mut pcs = Vec::with_capacity(MAX_FRAMES);
                for t in threads {
                    walk_gimli(&gm, &mut ctx, t, &mut pcs);
                    black_box(&pcs);
                }
                (gm, ctx, pcs)
            })
        });
        g.finish();
    }

    // lpstack per module: setting a table up (what a walk needs), and
    // compiling every row at once (what the table holds, for reference).
    let mut builds = Vec::new();
    {
        let mut g = c.benchmark_group("dwarf-table-build");
        g.sampling_mode(SamplingMode::Flat);
        let samples = 20;
        g.sample_size(samples);
        for m in mods {
            let eh = eh_frame_size(&m.data);
            if eh == 0 {
                continue;
            }
            g.throughput(Throughput::Bytes(eh as u64));
            let rows = CfiTable::from_elf(&m.data).and_then(|t| t.compile_rows()).map_or(0, |r| r.len());
            let setup = timed(&mut g, &format!("{}-setup", m.name), samples, |n| {
                batch_keep(n, || black_box(CfiTable::from_shared(black_box(m.data.clone()), None)))
            });
            let table = CfiTable::from_shared(m.data.clone(), None).expect("table");
            let compile = timed(&mut g, &format!("{}-compile-all", m.name), samples, |n| {
                batch_keep(n, || black_box(black_box(&table).compile_rows()))
            });
            builds.push((m.name.clone(), eh, rows, setup, compile));
        }
        g.finish();
    }
    c.final_summary();

    // Summary.
    let per = |v: Option<f64>, n: usize| v.map(|v| v / n as f64);
    println!();
    println!("{fh_cache_note}");
    println!(
        "== dwarf: {} threads, {} modules, frames lpstack/framehop/gimli = {}/{}/{} ==",
        threads.len(),
        mods.len(),
        totals[0],
        totals[1],
        totals[2]
    );
    println!(
        "{:<10} {:>14} {:>14} {:>16} {:>14}",
        "", "warm ns/frame", "cold ns/frame", "cold all (us)", "warm all (us)"
    );
    for (i, name) in ["lpstack", "framehop", "gimli"].iter().enumerate() {
        println!(
            "{:<10} {:>14} {:>14} {:>16} {:>14}",
            name,
            fmt_ns(per(warm[i], totals[i])),
            fmt_ns(per(cold[i], totals[i])),
            fmt_ns(cold[i].map(|v| v / 1000.0)),
            fmt_ns(warm[i].map(|v| v / 1000.0)),
        );
    }
    println!(
        "warm, the {} threads all three walk in full ({equal_frames} frames each), ns/frame: lpstack {} framehop {} gimli {}",
        equal.len(),
        fmt_ns(per(warm_eq[0], equal_frames)),
        fmt_ns(per(warm_eq[1], equal_frames)),
        fmt_ns(per(warm_eq[2], equal_frames)),
    );
    println!(
        "ratios (per frame): warm-equal lpstack/framehop {}  lpstack/gimli {};  warm lpstack/framehop {}  lpstack/gimli {};  cold lpstack/framehop {}  lpstack/gimli {}",
        ratio(warm_eq[0], warm_eq[1]),
        ratio(warm_eq[0], warm_eq[2]),
        ratio(per(warm[0], totals[0]), per(warm[1], totals[1])),
        ratio(per(warm[0], totals[0]), per(warm[2], totals[2])),
        ratio(per(cold[0], totals[0]), per(cold[1], totals[1])),
        ratio(per(cold[0], totals[0]), per(cold[2], totals[2])),
    );
    println!(
        "lpstack per module: setup (CfiTable::from_shared) and, for reference, every row compiled (compile_rows):"
    );
    let (mut all_setup, mut all_compile, mut all_eh) = (0.0, 0.0, 0usize);
    for (name, eh, rows, setup, compile) in &builds {
        let mb = *eh as f64 / (1024.0 * 1024.0);
        if let (Some(s), Some(c)) = (setup, compile) {
            all_setup += s;
            all_compile += c;
            all_eh += eh;
        }
        println!(
            "  {:<24} {:>8} B .eh_frame {:>7} rows  setup {:>8} us  compile-all {:>10} us {:>8} ms/MB",
            name,
            eh,
            rows,
            fmt_ns(setup.map(|v| v / 1000.0)),
            fmt_ns(compile.map(|v| v / 1000.0)),
            compile.map_or("-".into(), |v| format!("{:.2}", v / 1e6 / mb))
        );
    }
    if all_eh > 0 {
        let mb = all_eh as f64 / (1024.0 * 1024.0);
        println!(
            "  {:<24} {:>8} B .eh_frame          setup {:>8.1} us  compile-all {:>10.1} us {:>8.2} ms/MB",
            "all",
            all_eh,
            all_setup / 1000.0,
            all_compile / 1000.0,
            all_compile / 1e6 / mb
        );
    }
}
