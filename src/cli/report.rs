//! The report every `check` prints, whatever was checked (a vmcore's tasks,
//! a process's threads, a core's threads): a table or JSON over one row per
//! thread. Each front-end turns its own reports into [`Row`]s.

use std::collections::BTreeMap;
use std::io::Write;

use lpstack::kernel::klp::KlpTarget;
use lpstack::kernel::stall::StallInfo;
use lpstack::model::{Blocker, ModelOutcome, Unit};
use lpstack::patchset::{CheckedVersion, PatchSet};
use lpstack::symbols::{SymbolRef, Symbolizer};
use lpstack::verdict::{PatchHit, Verdict};
use lpstack::walk::{Frame, Reliability};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

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
    /// A kernel task's own fields (JSON only); None for a process thread.
    pub kernel: Option<KernelTaskFields>,
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

/// Fields of a kernel task beyond the common ones (JSON only).
#[derive(Clone, Copy, Debug)]
pub struct KernelTaskFields {
    pub on_cpu: bool,
    pub cpu: u32,
    pub kthread: bool,
    pub idle: bool,
    pub patch_state: Option<i32>,
}

// The JSON report is written as it is serialized, one task at a time: no
// tree of values for every frame of every task. Keys are in sorted order,
// as the report has always had them.

/// A symbol as the report names it: `name` for the home object, else
/// `name [object]`; written without building a string.
struct SymbolName<'a> {
    name: &'a str,
    object: Option<&'a str>,
}

impl Serialize for SymbolName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.object {
            None => s.serialize_str(self.name),
            Some(o) => s.collect_str(&format_args!("{} [{o}]", self.name)),
        }
    }
}

/// `object:function`, written without building a string.
struct Qualified<'a>(&'a str, &'a str);

impl Serialize for Qualified<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}:{}", self.0, self.1))
    }
}

#[derive(Serialize)]
struct JsonFrame<'a> {
    kernel_regs: bool,
    kind: &'static str,
    offset: Option<u64>,
    pc: u64,
    reliable: bool,
    sp: u64,
    symbol: Option<SymbolName<'a>>,
}

#[derive(Serialize)]
struct JsonBlocking<'a> {
    checked: Qualified<'a>,
    frame: usize,
    function: &'a str,
    inlined: bool,
    object: &'a str,
    pc: u64,
    version: &'a CheckedVersion,
}

#[derive(Serialize)]
struct JsonUnreliable {
    detail: String,
    frame: usize,
    reason: &'static str,
}

#[derive(Serialize)]
struct JsonPatchedFrame<'a> {
    frame: usize,
    function: Option<&'a str>,
    inlined: bool,
    pc: u64,
}

#[derive(Serialize)]
struct JsonTask<'a> {
    blocking: Option<JsonBlocking<'a>>,
    comm: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<u32>,
    frames: JsonFrames<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kthread: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_cpu: Option<bool>,
    // Present (null or not) for kernel tasks only.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_state: Option<Option<i32>>,
    patched_frames: Vec<JsonPatchedFrame<'a>>,
    pid: i32,
    state: char,
    tgid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    transition: Option<&'a StallInfo>,
    unreliable: Option<JsonUnreliable>,
    verdict: &'static str,
}

/// Symbol lookups remembered by pc: a dump's tasks mostly sleep in the
/// same few places, so most frames repeat a pc already looked up.
struct FrameSymbols<'a> {
    symbols: &'a Symbolizer,
    seen: std::cell::RefCell<std::collections::HashMap<u64, Option<SymbolRef<'a>>>>,
}

impl<'a> FrameSymbols<'a> {
    fn new(symbols: &'a Symbolizer) -> Self {
        FrameSymbols { symbols, seen: Default::default() }
    }

    fn lookup(&self, pc: u64) -> Option<SymbolRef<'a>> {
        *self.seen.borrow_mut().entry(pc).or_insert_with(|| self.symbols.lookup(pc))
    }
}

/// A task's frames, symbolized as they are written.
struct JsonFrames<'a> {
    row: &'a Row<'a, 'a>,
    symbols: &'a FrameSymbols<'a>,
    home: &'a str,
}

impl<'a> JsonFrames<'a> {
    fn frames(&self) -> impl Iterator<Item = JsonFrame<'a>> + '_ {
        let trusted_until = match self.row.reliability {
            Some(Reliability::Unreliable { frame, .. }) => *frame,
            _ => usize::MAX,
        };
        self.row.frames.iter().enumerate().map(move |(i, f)| {
            let sym = self.symbols.lookup(f.pc);
            JsonFrame {
                kernel_regs: f.kernel_regs,
                kind: f.kind.name(),
                offset: sym.as_ref().map(|s| s.offset),
                pc: f.pc,
                reliable: f.reliable && i < trusted_until,
                sp: f.sp,
                symbol: sym
                    .as_ref()
                    .map(|s| SymbolName { name: s.name, object: (s.object != self.home).then_some(s.object) }),
            }
        })
    }
}

impl Serialize for JsonFrames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.frames())
    }
}

/// `frames` as `serde_json::to_writer_pretty` writes them as the value of
/// a task's `"frames"` key in the report (the key at 6 spaces, each frame
/// at 8, its keys at 10): most of a large report, so written by hand.
/// `tests::hand_written_tasks_are_serdes` holds it to serde's bytes.
fn write_frames_json<'a>(out: &mut Vec<u8>, frames: impl Iterator<Item = JsonFrame<'a>>) {
    let mut numbers = itoa::Buffer::new();
    let mut empty = true;
    out.push(b'[');
    for f in frames {
        out.extend_from_slice(if empty { b"\n        {\n" } else { b",\n        {\n" });
        empty = false;
        out.extend_from_slice(b"          \"kernel_regs\": ");
        out.extend_from_slice(if f.kernel_regs { b"true" } else { b"false" });
        out.extend_from_slice(b",\n          \"kind\": ");
        json_string(out, &[f.kind]);
        out.extend_from_slice(b",\n          \"offset\": ");
        match f.offset {
            Some(o) => out.extend_from_slice(numbers.format(o).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\n          \"pc\": ");
        out.extend_from_slice(numbers.format(f.pc).as_bytes());
        out.extend_from_slice(b",\n          \"reliable\": ");
        out.extend_from_slice(if f.reliable { b"true" } else { b"false" });
        out.extend_from_slice(b",\n          \"sp\": ");
        out.extend_from_slice(numbers.format(f.sp).as_bytes());
        out.extend_from_slice(b",\n          \"symbol\": ");
        match f.symbol {
            Some(SymbolName { name, object: None }) => json_string(out, &[name]),
            Some(SymbolName { name, object: Some(o) }) => json_string(out, &[name, " [", o, "]"]),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"\n        }");
    }
    if !empty {
        out.extend_from_slice(b"\n      ");
    }
    out.push(b']');
}

/// The tasks array as serde writes it as the report's `"tasks"` value:
/// each task's frames by [`write_frames_json`], its other fields (small)
/// by serde, indented to where they sit.
fn write_tasks_json<'a>(w: &mut dyn Write, tasks: &Tasks<'a>) -> Result<(), CliError> {
    if tasks.rows.is_empty() {
        w.write_all(b"[]")?;
        return Ok(());
    }
    // A few hundred tasks at a time, two parts at once on the pool's
    // threads (each part with its own symbol cache), written in order: the
    // report is not held whole in memory.
    const PART: usize = 256;
    let (set, home, symbolizer) = (tasks.set, tasks.home, tasks.symbols.symbols);
    let format = |start: usize, rows: &'a [Row<'a, 'a>]| -> Result<Vec<u8>, CliError> {
        let symbols = FrameSymbols::new(symbolizer);
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        for (i, r) in rows.iter().enumerate() {
            write_task_json(&mut out, &mut scratch, start + i == 0, r, set, &symbols, home)?;
        }
        Ok(out)
    };
    w.write_all(b"[")?;
    let parts: Vec<(usize, &'a [Row<'a, 'a>])> =
        tasks.rows.chunks(PART).enumerate().map(|(i, c)| (i * PART, c)).collect();
    for pair in parts.chunks(2) {
        let (first, second) =
            rayon::join(|| format(pair[0].0, pair[0].1), || pair.get(1).map(|&(start, rows)| format(start, rows)));
        w.write_all(&first?)?;
        if let Some(second) = second {
            w.write_all(&second?)?;
        }
    }
    w.write_all(b"\n  ]")?;
    Ok(())
}

/// One task object, after a comma unless it is the `first`.
#[allow(clippy::too_many_arguments)]
fn write_task_json<'a>(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    first: bool,
    r: &'a Row<'a, 'a>,
    set: &'a PatchSet,
    symbols: &'a FrameSymbols<'a>,
    home: &'a str,
) -> Result<(), CliError> {
    out.extend_from_slice(if first { b"\n    {" } else { b",\n    {" });
    let t = json_task(r, set, symbols, home);
    let mut f = TaskFields { out: &mut *out, scratch: &mut *scratch, first: true };
    f.field("blocking", &t.blocking)?;
    f.field("comm", &t.comm)?;
    f.optional("cpu", &t.cpu)?;
    f.key("frames");
    write_frames_json(f.out, t.frames.frames());
    f.optional("idle", &t.idle)?;
    f.optional("kthread", &t.kthread)?;
    f.optional("on_cpu", &t.on_cpu)?;
    f.optional("patch_state", &t.patch_state)?;
    f.field("patched_frames", &t.patched_frames)?;
    f.field("pid", &t.pid)?;
    f.field("state", &t.state)?;
    f.field("tgid", &t.tgid)?;
    f.optional("transition", &t.transition)?;
    f.field("unreliable", &t.unreliable)?;
    f.field("verdict", &t.verdict)?;
    out.extend_from_slice(b"\n    }");
    Ok(())
}

/// One task object's fields, in [`JsonTask`]'s order, at 6 spaces.
struct TaskFields<'o> {
    out: &'o mut Vec<u8>,
    scratch: &'o mut Vec<u8>,
    first: bool,
}

impl TaskFields<'_> {
    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(if self.first { b"\n      \"" } else { b",\n      \"" });
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\": ");
    }

    /// `value` as serde writes it, its lines indented to this depth.
    fn field<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), serde_json::Error> {
        self.key(key);
        self.scratch.clear();
        serde_json::to_writer_pretty(&mut *self.scratch, value)?;
        for (i, line) in self.scratch.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.out.extend_from_slice(b"\n      ");
            }
            self.out.extend_from_slice(line);
        }
        Ok(())
    }

    /// A field serde skips when None (`skip_serializing_if`).
    fn optional<T: Serialize>(&mut self, key: &str, value: &Option<T>) -> Result<(), serde_json::Error> {
        match value {
            Some(v) => self.field(key, v),
            None => Ok(()),
        }
    }
}

/// The concatenation of `parts` as a JSON string, escaped as serde_json
/// escapes; nothing is allocated unless a part needs escaping.
fn json_string(out: &mut Vec<u8>, parts: &[&str]) {
    let plain = |s: &str| s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if parts.iter().all(|p| plain(p)) {
        out.push(b'"');
        for p in parts {
            out.extend_from_slice(p.as_bytes());
        }
        out.push(b'"');
    } else {
        // Rare (names are C identifiers): serde's own escaping.
        out.extend_from_slice(serde_json::Value::from(parts.concat()).to_string().as_bytes());
    }
}

fn json_task<'a>(r: &'a Row<'a, 'a>, set: &'a PatchSet, symbols: &'a FrameSymbols<'a>, home: &'a str) -> JsonTask<'a> {
    let k = r.kernel;
    JsonTask {
        blocking: match r.verdict {
            Verdict::Blocked { function, frame, pc, inlined } => Some(JsonBlocking {
                checked: Qualified(&function.checked_object, &function.checked_function),
                frame: *frame,
                function: &function.function,
                inlined: *inlined,
                object: &function.object,
                pc: *pc,
                version: &function.version,
            }),
            _ => None,
        },
        comm: r.comm,
        cpu: k.map(|k| k.cpu),
        frames: JsonFrames { row: r, symbols, home },
        idle: k.map(|k| k.idle),
        kthread: k.map(|k| k.kthread),
        on_cpu: k.map(|k| k.on_cpu),
        patch_state: k.map(|k| k.patch_state),
        patched_frames: r
            .hits
            .iter()
            .map(|h| JsonPatchedFrame {
                frame: h.frame,
                function: set.funcs().get(h.func).map(|f| f.function.as_str()),
                inlined: h.inlined,
                pc: h.pc,
            })
            .collect(),
        pid: r.pid,
        state: r.state,
        tgid: r.tgid,
        transition: r.stall.as_ref(),
        unreliable: match r.verdict {
            Verdict::Unreliable { reason, frame } => {
                Some(JsonUnreliable { detail: reason.to_string(), frame: *frame, reason: reason.code() })
            }
            _ => None,
        },
        verdict: r.verdict.name(),
    }
}

#[derive(Serialize)]
struct JsonSummary {
    blocked: BTreeMap<String, usize>,
    not_listed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<usize>,
    running: usize,
    switchable: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    switched_by_kernel: Option<usize>,
    tasks: usize,
    unreliable: BTreeMap<&'static str, usize>,
}

fn json_summary(target: &Target, rows: &[Row<'_, '_>]) -> JsonSummary {
    let mut sum = JsonSummary {
        blocked: BTreeMap::new(),
        not_listed: target.listing_gaps.len(),
        pending: None,
        running: 0,
        switchable: 0,
        switched_by_kernel: None,
        tasks: rows.len(),
        unreliable: BTreeMap::new(),
    };
    for r in rows {
        match r.verdict {
            Verdict::Switchable => sum.switchable += 1,
            Verdict::Running => sum.running += 1,
            Verdict::Blocked { function, .. } => {
                *sum.blocked.entry(format!("{}:{}", function.object, function.function)).or_default() += 1
            }
            Verdict::Unreliable { reason, .. } => *sum.unreliable.entry(reason.code()).or_default() += 1,
        }
    }
    if target.transition.is_some() {
        let switched = rows.iter().filter(|r| r.stall.as_ref().is_some_and(|s| s.switched)).count();
        sum.switched_by_kernel = Some(switched);
        sum.pending = Some(rows.len() - switched);
    }
    sum
}

#[derive(Serialize)]
struct JsonPatched<'a> {
    address: u64,
    checked: Qualified<'a>,
    function: &'a str,
    object: &'a str,
    size: u64,
    sympos: u32,
    version: &'a CheckedVersion,
}

#[derive(Serialize)]
struct JsonUnit {
    blockers: Vec<String>,
    ready: bool,
    unit: String,
}

#[derive(Serialize)]
struct JsonModel {
    model: String,
    ready: bool,
    units: Vec<JsonUnit>,
}

#[derive(Serialize)]
struct JsonTransition<'a> {
    patch: &'a str,
    target: &'a KlpTarget,
}

/// The whole JSON report, written as it is serialized.
pub struct JsonReport<'a> {
    target: &'a Target,
    rows: &'a [Row<'a, 'a>],
    set: &'a PatchSet,
    models: &'a [ModelOutcome],
    symbols: &'a Symbolizer,
    /// Write `"tasks": []`: the caller writes the tasks in its place.
    tasks_by_hand: bool,
}

impl Serialize for JsonReport<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (target, rows, set) = (self.target, self.rows, self.set);
        let home = target.home_object.as_str();
        let mut keys = [target.key, "listing_gaps", "models", "notes", "patched", "summary", "tasks", "transition"];
        keys.sort_unstable();
        let mut map = s.serialize_map(Some(keys.len()))?;
        for key in keys {
            match key {
                "listing_gaps" => map.serialize_entry(key, &target.listing_gaps)?,
                "models" => {
                    let models: Vec<JsonModel> = self
                        .models
                        .iter()
                        .map(|m| JsonModel {
                            model: m.model.to_string(),
                            ready: m.ready(),
                            units: m
                                .units
                                .iter()
                                .map(|u| JsonUnit {
                                    blockers: u.blockers.iter().map(|b| blocker_text(b, rows, set)).collect(),
                                    ready: u.ready,
                                    unit: unit_name(&u.unit, rows, set),
                                })
                                .collect(),
                        })
                        .collect();
                    map.serialize_entry(key, &models)?
                }
                "notes" => {
                    map.serialize_entry(key, &target.notes.iter().chain(&target.listing_gaps).collect::<Vec<_>>())?
                }
                "patched" => {
                    let patched: Vec<JsonPatched> = set
                        .funcs()
                        .iter()
                        .map(|f| JsonPatched {
                            address: f.address,
                            checked: Qualified(&f.checked_object, &f.checked_function),
                            function: &f.function,
                            object: &f.object,
                            size: f.size,
                            sympos: f.sympos,
                            version: &f.version,
                        })
                        .collect();
                    map.serialize_entry(key, &patched)?
                }
                "summary" => map.serialize_entry(key, &json_summary(target, rows))?,
                "tasks" if self.tasks_by_hand => map.serialize_entry(key, &[(); 0])?,
                "tasks" => {
                    let symbols = FrameSymbols::new(self.symbols);
                    map.serialize_entry(key, &Tasks { rows, set, symbols: &symbols, home })?
                }
                "transition" => map.serialize_entry(
                    key,
                    &target.transition.as_ref().map(|(patch, target)| JsonTransition { patch, target }),
                )?,
                _ => map.serialize_entry(key, &target.json)?,
            }
        }
        map.end()
    }
}

/// Every task, each serialized from its row as it is written.
struct Tasks<'a> {
    rows: &'a [Row<'a, 'a>],
    set: &'a PatchSet,
    symbols: &'a FrameSymbols<'a>,
    home: &'a str,
}

impl Serialize for Tasks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.rows.iter().map(|r| json_task(r, self.set, self.symbols, self.home)))
    }
}

/// The JSON report: serde writes all but the tasks, left as `[]`, and
/// [`write_tasks_json`] writes them in that place.
fn write_json_report(out: &mut impl Write, report: &JsonReport<'_>) -> Result<(), CliError> {
    let mut head = Vec::new();
    serde_json::to_writer_pretty(&mut head, report)?;
    // Top-level keys are unique and strings hold no raw newline: one match.
    const TASKS: &[u8] = b"\n  \"tasks\": []";
    let at = head
        .windows(TASKS.len())
        .position(|w| w == TASKS)
        .ok_or_else(|| CliError("JSON report: no tasks key (a bug)".into()))?;
    let split = at + TASKS.len() - 2;
    let home = report.target.home_object.as_str();
    let symbols = FrameSymbols::new(report.symbols);
    let tasks = Tasks { rows: report.rows, set: report.set, symbols: &symbols, home };
    out.write_all(&head[..split])?;
    write_tasks_json(out, &tasks)?;
    out.write_all(&head[split + 2..])?;
    Ok(())
}

/// Standard output until its reader goes away (`lpstack ... | head`):
/// what follows is dropped, and the exit code still says what was found.
struct Reader<W>(W);

impl<W: Write> Write for Reader<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
            r => r,
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => r,
        }
    }
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
    let mut out = std::io::BufWriter::new(Reader(std::io::stdout().lock()));
    match format {
        super::check::OutputFormat::Json => {
            let report = JsonReport { target, rows, set, models, symbols, tasks_by_hand: true };
            write_json_report(&mut out, &report)?;
            writeln!(out)?;
        }
        super::check::OutputFormat::Table => table_report(&mut out, target, rows, set, models, symbols, all_frames)?,
    }
    out.flush()?;
    Ok(if all_switchable { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lpstack::symbols::symbols_from_list;
    use lpstack::walk::{CleanEnd, FrameKind, UnreliableReason};

    fn frame(pc: u64, kind: FrameKind, reliable: bool) -> Frame {
        Frame { pc, sp: 0xffff_c900_0001_3e40 + pc % 64, kind, kernel_regs: pc % 2 == 1, reliable }
    }

    /// The tasks written by hand are serde's bytes: kernel and process rows,
    /// empty and unreliable traces, symbols of the home object and others,
    /// names to escape, skipped and null fields, a transition.
    #[test]
    fn hand_written_tasks_are_serdes() {
        let mut symbols = Symbolizer::new();
        symbols.add(symbols_from_list("vmlinux", [("schedule", 0x1000, 0x80), ("odd\"name\\", 0x2000, 0x40)]));
        symbols.add(symbols_from_list("parked", [("park_here", 0x9000, 0x100)]));
        let set = PatchSet::default();
        let frames = [
            frame(0x1010, FrameKind::Start, true),
            frame(0x2001, FrameKind::Call, true),
            frame(0x9050, FrameKind::Call, true),
            frame(0x5555, FrameKind::Scanned, false),
        ];
        let reliable = Reliability::Reliable(CleanEnd::EndOfStack);
        let unreliable = Reliability::Unreliable { reason: UnreliableReason::NoUnwindEntry { pc: 0x5555 }, frame: 2 };
        let verdicts = [
            Verdict::Switchable,
            Verdict::Unreliable { reason: UnreliableReason::NoUnwindEntry { pc: 0x5555 }, frame: 2 },
        ];
        let stall = StallInfo {
            kernel_reason: Some("has an unreliable stack".into()),
            never_converges: None,
            switched: false,
            version: Some("original"),
        };
        let row = |i: usize, frames: &'static [Frame]| Row {
            pid: i as i32,
            tgid: 1,
            comm: if i == 1 { "we\"ird\\comm" } else { "sleep" },
            state: 'S',
            frames,
            reliability: if i == 1 { Some(&unreliable) } else { Some(&reliable) },
            hits: &[],
            verdict: &verdicts[i % 2],
            running_detail: String::new(),
            in_kernel: false,
            kernel: (i != 2).then_some(KernelTaskFields {
                on_cpu: false,
                cpu: i as u32,
                kthread: i == 0,
                idle: false,
                patch_state: (i == 1).then_some(0),
            }),
            stall: (i == 1).then(|| stall.clone()),
        };
        let frames: &'static [Frame] = Box::leak(Box::new(frames));
        // Enough rows for several parts of the parallel writer.
        let rows: Vec<Row<'_, '_>> = (0..600)
            .map(|i| match i % 4 {
                0 => row(0, frames),
                1 => row(1, frames),
                2 => row(2, &[]),
                _ => row(3, &frames[..1]),
            })
            .collect();
        for home in ["vmlinux", "parked"] {
            let target = Target {
                key: "kernel",
                json: serde_json::json!({"release": "6.12"}),
                title: "kernel 6.12".into(),
                noun: "tasks",
                home_object: home.into(),
                transition: None,
                notes: vec![],
                listing_gaps: vec![],
            };
            let report = |tasks_by_hand| JsonReport {
                target: &target,
                rows: &rows,
                set: &set,
                models: &[],
                symbols: &symbols,
                tasks_by_hand,
            };
            let by_serde = serde_json::to_vec_pretty(&report(false)).unwrap();
            let mut by_hand = Vec::new();
            write_json_report(&mut by_hand, &report(true)).unwrap();
            assert_eq!(String::from_utf8_lossy(&by_hand), String::from_utf8_lossy(&by_serde), "home {home}");
            for needle in ["odd\\\"name\\\\", "\"park_here [parked]\"", "\"frames\": []", "has an unreliable stack"] {
                if home == "vmlinux" || !needle.contains("[parked]") {
                    assert!(String::from_utf8_lossy(&by_hand).contains(needle), "{needle}");
                }
            }
        }
    }
}
