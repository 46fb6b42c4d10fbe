//! `lpstack orc dump|lookup|info FILE`: ORC tables of a vmlinux or module.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use lpstack::orc::elf::{choose_format, module_entries, orc_sections};
use lpstack::orc::{OrcFinder, OrcFormat, OrcTable, objtool};
use object::Object;

use super::{CliError, map_file, parse_addr};

#[derive(Subcommand)]
pub enum OrcCommand {
    /// Print every entry exactly as `objtool --dump=orc` of that kernel does.
    Dump {
        file: PathBuf,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Print the entry that covers each address.
    Lookup {
        file: PathBuf,
        #[arg(required = true, value_parser = parse_addr)]
        addresses: Vec<u64>,
        #[command(flatten)]
        format: FormatArgs,
    },
    /// Summarise the table: entries, format and where it was decided, range.
    Info {
        file: PathBuf,
        #[command(flatten)]
        format: FormatArgs,
    },
}

#[derive(clap::Args)]
pub struct FormatArgs {
    /// ORC entry format (1: 4.14-6.2, 2: 6.3, 3: 6.4+), overriding detection.
    #[arg(long, value_parser = parse_format)]
    orc_format: Option<OrcFormat>,
    /// Kernel release, for files without .orc_header (before 6.4).
    #[arg(long)]
    kernel_release: Option<String>,
}

fn parse_format(s: &str) -> Result<OrcFormat, String> {
    OrcFormat::parse(s).ok_or_else(|| format!("{s:?}: expected 1, 2 or 3"))
}

fn is_relocatable(data: &[u8]) -> bool {
    object::File::parse(data).is_ok_and(|f| f.kind() == object::ObjectKind::Relocatable)
}

fn load<'d>(path: &Path, data: &'d [u8], args: &FormatArgs) -> Result<OrcTable<'d>, CliError> {
    let named = |e: lpstack::orc::OrcError| CliError(format!("{}: {e}", path.display()));
    let s = orc_sections(data).map_err(named)?;
    let (format, _) = choose_format(&s, args.orc_format, args.kernel_release.as_deref()).map_err(named)?;
    OrcTable::new(s.ips, s.entries, s.ips_addr, format).map_err(named)
}

pub fn run(cmd: OrcCommand) -> Result<i32, CliError> {
    match cmd {
        OrcCommand::Dump { file, format } => {
            let map = map_file(&file)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut line = String::with_capacity(128);
            if is_relocatable(&map) {
                let entries = module_entries(&map).map_err(|e| CliError(format!("{}: {e}", file.display())))?;
                let f = lpstack::orc::elf::module_format(&map, format.orc_format)
                    .map_err(|e| CliError(format!("{}: {e}", file.display())))?;
                for e in &entries {
                    line.clear();
                    objtool::push_reloc_line(&mut line, &e.symbol, e.addend, &lpstack::orc::elf::decode(e, f), f);
                    out.write_all(line.as_bytes())?;
                }
            } else {
                let table = load(&file, &map, &format)?;
                for (ip, e) in table.iter() {
                    line.clear();
                    objtool::push_line(&mut line, ip, &e, table.format());
                    out.write_all(line.as_bytes())?;
                }
            }
            out.flush()?;
            Ok(0)
        }
        OrcCommand::Lookup { file, addresses, format } => {
            let map = map_file(&file)?;
            let table = load(&file, &map, &format)?;
            let mut line = String::new();
            for a in addresses {
                match table.find_index(a).and_then(|i| table.get(i)) {
                    Some((ip, e)) => {
                        line.clear();
                        objtool::push_line(&mut line, ip, &e, table.format());
                        print!("{a:x} -> {line}");
                    }
                    None => println!("{a:x} -> no entry"),
                }
                debug_assert_eq!(table.find(a).is_some(), table.find_index(a).is_some());
            }
            Ok(0)
        }
        OrcCommand::Info { file, format } => {
            let map = map_file(&file)?;
            let named = |e: lpstack::orc::OrcError| CliError(format!("{}: {e}", file.display()));
            let s = orc_sections(&map).map_err(named)?;
            let (f, source) = choose_format(&s, format.orc_format, format.kernel_release.as_deref()).map_err(named)?;
            let table = OrcTable::new(s.ips, s.entries, s.ips_addr, f).map_err(named)?;
            println!("file: {}", file.display());
            println!("entries: {}", table.len());
            println!("format: v{} (from {source:?})", f.number());
            if let Some(h) = s.header {
                println!("orc_header: {}", hex(h));
            }
            if let Some(id) = s.build_id {
                println!("build_id: {}", hex(id));
            }
            if let Some(r) = s.release {
                println!("release: {r}");
            }
            println!("range: {:#x}..={:#x}", table.first_ip(), table.last_ip());
            Ok(0)
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
