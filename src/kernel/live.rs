//! The running kernel as the address space: memory through /proc/kcore,
//! types through /sys/kernel/btf/vmlinux, and everything else (vmlinux
//! symbols from the kernel's kallsyms tables, modules, ORC, tasks) read
//! from memory as in a dump.
//!
//! vmlinux symbols come from the same tables /proc/kallsyms prints, read in
//! place: /proc/kallsyms formats ~160k lines for every reader, which under
//! emulation takes seconds, while the tables are a few MB read in large
//! blocks and decoded on demand. /proc/kallsyms is the fallback when
//! VMCOREINFO does not locate the tables (kernels before 6.0), or on
//! request (`SymbolsFrom::ProcKallsyms`).
//!
//! The refusals (not root, no kcore, hidden kallsyms addresses, lockdown, no
//! BTF) are decided by plain functions over file contents and errno, so they
//! are tested without root.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::addrspace::KernelSpace;
use super::image::{Kernel, KernelError, kallsyms_from_vmcoreinfo, paging_from_vmcoreinfo};
use crate::dump::VmcoreInfo;
use crate::dump::kcore::{KcoreError, KcoreHeaders, KcorePhys};
use crate::symbols::{ProcKallsyms, parse_proc_kallsyms};

/// Where the running kernel is read from. Tests point these elsewhere.
#[derive(Clone, Debug)]
pub struct LiveSources {
    /// Physical memory and VMCOREINFO (default /proc/kcore).
    pub kcore: PathBuf,
    /// Symbol text, when symbols come from it (default /proc/kallsyms).
    pub kallsyms: PathBuf,
    /// vmlinux BTF (default /sys/kernel/btf/vmlinux).
    pub btf: PathBuf,
    /// Lockdown mode, to explain a refused kcore (default
    /// /sys/kernel/security/lockdown).
    pub lockdown: PathBuf,
    /// The kptr_restrict sysctl, to explain hidden kallsyms addresses
    /// (default /proc/sys/kernel/kptr_restrict).
    pub kptr_restrict: PathBuf,
    /// Where vmlinux symbols are read from.
    pub symbols: SymbolsFrom,
}

/// Where vmlinux symbols are read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SymbolsFrom {
    /// The kallsyms tables in memory, located by VMCOREINFO; /proc/kallsyms
    /// if VMCOREINFO does not name them.
    #[default]
    Memory,
    /// /proc/kallsyms (refused when kptr_restrict hides its addresses).
    ProcKallsyms,
}

impl Default for LiveSources {
    fn default() -> Self {
        LiveSources {
            kcore: "/proc/kcore".into(),
            kallsyms: "/proc/kallsyms".into(),
            btf: "/sys/kernel/btf/vmlinux".into(),
            lockdown: "/sys/kernel/security/lockdown".into(),
            kptr_restrict: "/proc/sys/kernel/kptr_restrict".into(),
            symbols: SymbolsFrom::default(),
        }
    }
}

/// Why the running kernel cannot be read. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The caller is not root.
    #[error(
        "not root (effective uid {euid}): reading {kcore} needs root (CAP_SYS_RAWIO); run lpstack check live as root, e.g. with sudo"
    )]
    NotRoot {
        /// The caller's effective user id.
        euid: u32,
        /// The kcore path.
        kcore: String,
    },
    /// The kcore file does not exist.
    #[error(
        "{path} does not exist: the kernel was built without CONFIG_PROC_KCORE (or /proc is not mounted); take a vmcore with kdump and run lpstack check VMCORE instead"
    )]
    KcoreMissing {
        /// The kcore path.
        path: String,
    },
    /// kcore was refused (EPERM) while the kernel is locked down.
    #[error(
        "{kcore}: {err}; the kernel is locked down ([{mode}] in {lockdown}), which closes /proc/kcore; boot with lockdown=none (or without an enforced Secure Boot lockdown), or take a vmcore with kdump and run lpstack check VMCORE"
    )]
    Lockdown {
        /// The kcore path.
        kcore: String,
        /// The error opening or reading it.
        err: std::io::Error,
        /// The active lockdown mode (`integrity`, `confidentiality`).
        mode: String,
        /// The lockdown file's path.
        lockdown: String,
    },
    /// Every /proc/kallsyms address reads as zero (kptr_restrict).
    #[error(
        "{path}: all {lines} addresses read as zero: kernel.kptr_restrict ({restrict}) hides them from this reader; run as root with kptr_restrict 0 or 1 (sysctl kernel.kptr_restrict=1)"
    )]
    KallsymsHidden {
        /// The kallsyms path.
        path: String,
        /// Symbol lines read, vmlinux and modules.
        lines: usize,
        /// The kptr_restrict value as shown ("= 2"), or "unknown".
        restrict: String,
    },
    /// The BTF file does not exist.
    #[error(
        "{path} does not exist: the kernel has no BTF (built without CONFIG_DEBUG_INFO_BTF=y), which lpstack needs for task_struct offsets; use a kernel built with it, or mount sysfs if it is not mounted"
    )]
    NoBtf {
        /// The BTF path.
        path: String,
    },
    /// Any other failure to open or read a file.
    #[error("{path}: {err}")]
    Io {
        /// The file's path.
        path: String,
        /// The I/O error.
        err: std::io::Error,
    },
    /// A file's contents do not parse (/proc/kallsyms, the BTF file).
    #[error("{path}: {msg}")]
    Format {
        /// The file's path.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The kcore headers are unreadable or malformed.
    #[error(transparent)]
    Kcore(#[from] KcoreError),
    /// kcore has no VMCOREINFO note.
    #[error("{kcore}: no VMCOREINFO note (kernels before 4.19 lack it): the page-table root is unknown")]
    NoVmcoreinfo {
        /// The kcore path.
        kcore: String,
    },
    /// The kernel could not be set up from its memory.
    #[error("running kernel: {0}")]
    Kernel(#[from] KernelError),
}

fn path_text(p: &Path) -> String {
    p.display().to_string()
}

/// Refuses a non-root user before anything is opened.
pub fn check_root(euid: u32, sources: &LiveSources) -> Result<(), LiveError> {
    if euid == 0 {
        return Ok(());
    }
    Err(LiveError::NotRoot { euid, kcore: path_text(&sources.kcore) })
}

/// The bracketed mode of /sys/kernel/security/lockdown
/// (`none [integrity] confidentiality` -> `integrity`).
pub fn lockdown_mode(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let len = text[start..].find(']')?;
    Some(&text[start..start + len])
}

/// Names why kcore could not be opened (or read), from the error and the
/// lockdown file's text when there is one.
pub fn kcore_open_error(sources: &LiveSources, err: std::io::Error, lockdown: Option<&str>, euid: u32) -> LiveError {
    let kcore = path_text(&sources.kcore);
    match err.kind() {
        ErrorKind::NotFound => LiveError::KcoreMissing { path: kcore },
        ErrorKind::PermissionDenied => {
            if let Some(mode) = lockdown.and_then(lockdown_mode).filter(|m| *m != "none") {
                return LiveError::Lockdown {
                    kcore,
                    err,
                    mode: mode.to_string(),
                    lockdown: path_text(&sources.lockdown),
                };
            }
            if euid != 0 {
                return LiveError::NotRoot { euid, kcore };
            }
            LiveError::Io { path: kcore, err }
        }
        _ => LiveError::Io { path: kcore, err },
    }
}

/// Parses /proc/kallsyms text, refusing one whose addresses are hidden.
pub fn kallsyms_symbols(
    sources: &LiveSources,
    text: &str,
    kptr_restrict: Option<&str>,
) -> Result<ProcKallsyms, LiveError> {
    let path = path_text(&sources.kallsyms);
    let k = parse_proc_kallsyms(text).map_err(|e| LiveError::Format { path: path.clone(), msg: e.to_string() })?;
    if k.nonzero == 0 {
        let restrict = kptr_restrict.map_or_else(|| "unknown".to_string(), |v| format!("= {}", v.trim()));
        return Err(LiveError::KallsymsHidden { path, lines: k.vmlinux.len() + k.module_lines, restrict });
    }
    Ok(k)
}

/// Names why the BTF file could not be read.
pub fn btf_error(sources: &LiveSources, err: std::io::Error) -> LiveError {
    let path = path_text(&sources.btf);
    match err.kind() {
        ErrorKind::NotFound => LiveError::NoBtf { path },
        _ => LiveError::Io { path, err },
    }
}

/// The running kernel, ready for task walks.
pub struct LiveKernel {
    /// The kernel, read through kcore.
    pub kernel: Kernel<KcorePhys<File>>,
    /// kcore's VMCOREINFO note.
    pub vmcoreinfo: VmcoreInfo,
    /// How long each setup step took, in order.
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens the running kernel through `sources`.
pub fn open_live(sources: &LiveSources, euid: u32) -> Result<LiveKernel, LiveError> {
    check_root(euid, sources)?;
    let mut timings = Vec::new();
    let mut clock = std::time::Instant::now();
    let mut lap = |what: &'static str| {
        timings.push((what, clock.elapsed()));
        clock = std::time::Instant::now();
    };
    let lockdown = std::fs::read_to_string(&sources.lockdown).ok();
    let file = File::open(&sources.kcore).map_err(|e| kcore_open_error(sources, e, lockdown.as_deref(), euid))?;
    let kcore = path_text(&sources.kcore);
    // Under lockdown some kernels let the open through and fail the read.
    let headers = match KcoreHeaders::read(&kcore, |o, b| std::os::unix::fs::FileExt::read_exact_at(&file, b, o)) {
        Err(KcoreError::Io { err, .. }) if err.kind() == ErrorKind::PermissionDenied => {
            return Err(kcore_open_error(sources, err, lockdown.as_deref(), euid));
        }
        r => r?,
    };
    let vi = headers.vmcoreinfo.clone().ok_or_else(|| LiveError::NoVmcoreinfo { kcore: kcore.clone() })?;
    lap("kcore headers");

    let phys = KcorePhys::new(&kcore, file, &headers)?;
    let mut mem = KernelSpace::new(phys, paging_from_vmcoreinfo(&vi)?);
    let in_memory = sources.symbols == SymbolsFrom::Memory && vi.symbol("kallsyms_names").is_some();
    let vmlinux = if in_memory {
        let table = kallsyms_from_vmcoreinfo(&mut mem, &vi)?;
        lap("kallsyms (kernel memory)");
        table
    } else {
        let read_text = |p: &Path| std::fs::read_to_string(p).map_err(|err| LiveError::Io { path: path_text(p), err });
        let kptr = std::fs::read_to_string(&sources.kptr_restrict).ok();
        let kallsyms_text = read_text(&sources.kallsyms)?;
        lap("kallsyms read");
        let syms = kallsyms_symbols(sources, &kallsyms_text, kptr.as_deref())?;
        drop(kallsyms_text);
        lap("kallsyms parse");
        // The symbols must be this kernel's (KASLR included).
        for name in ["_stext", "init_uts_ns"] {
            if let (Some(file), Some(mem)) =
                (syms.vmlinux.find_by_name(name).next().map(|s| s.address), vi.symbol(name))
                && file != mem
            {
                return Err(KernelError::SymbolMismatch { name, file, dump: mem }.into());
            }
        }
        syms.vmlinux
    };
    let btf = std::fs::read(&sources.btf).map_err(|e| btf_error(sources, e))?;
    lap("btf read");

    let release = vi.osrelease().unwrap_or("unknown").to_string();
    let kernel = Kernel::from_parts(mem, release, vmlinux, Some(&btf), false, false).map_err(|e| match e {
        KernelError::BtfFile(err) => LiveError::Format { path: path_text(&sources.btf), msg: err.to_string() },
        e => e.into(),
    })?;
    lap("kernel setup (BTF layout, ORC, modules)");
    Ok(LiveKernel { kernel, vmcoreinfo: vi, timings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: ErrorKind) -> std::io::Error {
        std::io::Error::from(kind)
    }

    #[test]
    fn refusals_name_the_cause_and_the_fix() {
        let s = LiveSources::default();
        let e = check_root(1000, &s).unwrap_err().to_string();
        assert!(e.contains("not root (effective uid 1000)") && e.contains("/proc/kcore") && e.contains("sudo"), "{e}");
        assert!(check_root(0, &s).is_ok());

        let e = kcore_open_error(&s, io(ErrorKind::NotFound), None, 0);
        assert!(matches!(e, LiveError::KcoreMissing { .. }), "{e}");
        assert!(e.to_string().contains("CONFIG_PROC_KCORE"), "{e}");

        for (text, mode) in [
            ("none integrity [confidentiality]\n", "confidentiality"),
            ("none [integrity] confidentiality", "integrity"),
        ] {
            let e = kcore_open_error(&s, io(ErrorKind::PermissionDenied), Some(text), 0);
            let LiveError::Lockdown { mode: m, .. } = &e else { panic!("{e}") };
            assert_eq!(m, mode);
            let t = e.to_string();
            assert!(t.contains("/sys/kernel/security/lockdown") && t.contains("lockdown=none"), "{t}");
        }
        // EPERM without lockdown, as root: the plain error, named.
        let e = kcore_open_error(&s, io(ErrorKind::PermissionDenied), Some("[none] integrity confidentiality"), 0);
        assert!(matches!(e, LiveError::Io { .. }) && e.to_string().starts_with("/proc/kcore: "), "{e}");
        // EPERM for a non-root caller without lockdown.
        let e = kcore_open_error(&s, io(ErrorKind::PermissionDenied), None, 42);
        assert!(matches!(e, LiveError::NotRoot { euid: 42, .. }), "{e}");

        let e = btf_error(&s, io(ErrorKind::NotFound));
        assert!(matches!(e, LiveError::NoBtf { .. }) && e.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{e}");
    }

    #[test]
    fn hidden_kallsyms_addresses_are_refused() {
        let s = LiveSources::default();
        let hidden = "0000000000000000 T _stext\n0000000000000000 t show_cpuinfo\n0000000000000000 t park [m]\n";
        let e = kallsyms_symbols(&s, hidden, Some("2\n")).unwrap_err();
        let t = e.to_string();
        assert!(matches!(e, LiveError::KallsymsHidden { lines: 3, .. }), "{t}");
        assert!(t.contains("/proc/kallsyms") && t.contains("kptr_restrict (= 2)") && t.contains("sysctl"), "{t}");
        let shown = "ffffffff9a000000 T _stext\n";
        assert_eq!(kallsyms_symbols(&s, shown, Some("1")).unwrap().vmlinux.len(), 1);
        let e = kallsyms_symbols(&s, "zz T a\n", None).unwrap_err().to_string();
        assert!(e.starts_with("/proc/kallsyms: ") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn lockdown_modes() {
        assert_eq!(lockdown_mode("[none] integrity confidentiality\n"), Some("none"));
        assert_eq!(lockdown_mode("none integrity [confidentiality]"), Some("confidentiality"));
        assert_eq!(lockdown_mode("garbage"), None);
    }
}
