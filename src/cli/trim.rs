//! `lpstack trim <vmcore> -o small.kdump`: a kdump-compressed copy holding
//! only the pages lpstack's own analysis reads, so that a real dump of
//! hundreds of MB becomes a fixture small enough for git while staying a
//! valid dump for lpstack (and for the same analysis again).

use std::collections::BTreeSet;
use std::path::PathBuf;

use lpstack::dump::Dump;
use lpstack::dump::write::{KdumpWriteInfo, WriteCompression, write_kdump};
use lpstack::kernel::check::{CheckConfig, CheckMode};
use lpstack::kernel::image::{Kernel, OpenOptions};
use lpstack::memory::{MemoryError, PhysMemory};
use lpstack::patchset::PatchSet;

use super::{CliError, map_file};

#[derive(clap::Args)]
pub struct TrimArgs {
    /// The dump to cut down.
    vmcore: PathBuf,
    /// Where to write the kdump-compressed result.
    #[arg(short, long)]
    output: PathBuf,
    /// Also keep this many pages after each page read (slack for readers
    /// that read a little further, e.g. another tool).
    #[arg(long, default_value_t = 0)]
    extra_pages: u64,
}

/// Physical memory that remembers which pages were read.
struct Recording<'a, 'd> {
    dump: &'a mut Dump<'d>,
    pages: BTreeSet<u64>,
    page_size: u64,
}

impl PhysMemory for Recording<'_, '_> {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let first = paddr / self.page_size;
        let last = (paddr + buf.len().max(1) as u64 - 1) / self.page_size;
        self.pages.extend(first..=last);
        self.dump.read_phys(paddr, buf)
    }
}

/// Re-encodes notes as an ELF note blob (4-byte aligned name and desc).
fn note_blob(dump: &Dump<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for n in dump.notes().into_iter().flatten() {
        let name_len = n.name.len() + 1;
        out.extend_from_slice(&(name_len as u32).to_le_bytes());
        out.extend_from_slice(&(n.desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&n.n_type.to_le_bytes());
        out.extend_from_slice(n.name);
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(n.desc);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

pub fn run(args: TrimArgs) -> Result<i32, CliError> {
    let path = &args.vmcore;
    let named = |e: &dyn std::fmt::Display| CliError(format!("{}: {e}", path.display()));
    let map = map_file(path)?;
    let mut dump = Dump::open(&map).map_err(|e| named(&e))?;
    let vi = dump.vmcoreinfo().cloned().ok_or_else(|| CliError(format!("{}: no VMCOREINFO", path.display())))?;
    let cpus = super::check::qemu_cpu_regs(&dump);
    let page_size = dump.page_size();
    let max_pfn = max_pfn(&dump);

    let mut rec = Recording { dump: &mut dump, pages: BTreeSet::new(), page_size };
    {
        let mut kernel = Kernel::open(&mut rec, &vi, OpenOptions::default()).map_err(|e| named(&e))?;
        let cpus = if cpus.is_empty() { kernel.crash_notes_regs() } else { cpus };
        // The livepatch state too (a dump without it reads as unreadable);
        // a kernel without livepatch has none to keep.
        if let Err(e) = kernel.klp_state() {
            eprintln!("lpstack: warning: {}: {e}", path.display());
        }
        let _ = kernel.panic_cpu();
        let set = PatchSet::default();
        kernel
            .check(&set, &CheckConfig { mode: CheckMode::Dump { cpus: &cpus }, ..CheckConfig::default() }, |_, _| {})
            .map(|c| c.tasks)
            .map_err(|e| named(&e))?;
        // Keep what the pid-IDR fallback reads too, so that a trimmed dump
        // still supports it.
        if let Some(ns) = kernel.symbol("init_pid_ns") {
            let layout = *kernel.layout();
            let _ = lpstack::kernel::tasks::list_threads_by_pid(kernel.memory(), &layout, ns, &mut Vec::new());
        }
    }
    let mut wanted: BTreeSet<u64> = BTreeSet::new();
    for &p in &rec.pages {
        wanted.extend(p..=p + args.extra_pages);
    }
    let mut pages = Vec::new();
    let mut buf = vec![0u8; page_size as usize];
    for pfn in wanted.iter().copied().filter(|&p| p < max_pfn) {
        // Pages the source itself lacks stay absent.
        if dump.read_phys(pfn * page_size, &mut buf).is_ok() {
            pages.push((pfn, buf.clone()));
        }
    }
    let notes = note_blob(&dump);
    let release = vi.osrelease().unwrap_or("");
    let info = KdumpWriteInfo {
        utsname: ["Linux", "lpstack-trim", release, "", "x86_64", ""],
        page_size: page_size as u32,
        max_mapnr: max_pfn,
        phys_base: vi.number("phys_base").unwrap_or(0) as u64,
        nr_cpus: dump.cpus().len() as u32,
        dump_level: 31,
        notes: &notes,
        vmcoreinfo: vi.text().as_bytes(),
        present: &[(0, max_pfn)],
    };
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.output).map_err(|e| CliError(format!("{}: {e}", args.output.display())))?,
    );
    let summary = write_kdump(&mut out, &info, pages.iter().map(|(p, b)| (*p, &b[..])), WriteCompression::Zlib)
        .map_err(|e| CliError(format!("{}: {e}", args.output.display())))?;
    eprintln!("{}: {} pages kept of {} ({} bytes)", args.output.display(), summary.pages, max_pfn, summary.bytes);
    Ok(0)
}

/// One past the highest page frame the dump describes.
fn max_pfn(dump: &Dump<'_>) -> u64 {
    if let Some((h, s)) = dump.kdump_headers() {
        return s.max_mapnr_64.max(h.max_mapnr as u64);
    }
    let ps = dump.page_size();
    dump.elf()
        .map(|e| e.segments().iter().map(|s| s.paddr.saturating_add(s.memsz).div_ceil(ps)).max().unwrap_or(0))
        .unwrap_or(0)
}
