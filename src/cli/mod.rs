//! Command-line front-end: argument parsing and dispatch. Exit codes: 0 when
//! every thread may switch (or the command succeeded), 1 when some cannot,
//! 2 on error.

mod check;
mod core;
mod live;
mod mapped;
mod orc;
mod pid;
mod report;
mod trim;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lpstack", version, about = "May each thread switch to live-patched code now?")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decide, per task, whether it may switch to the patched code.
    Check(Box<check::CheckArgs>),
    /// Write a small kdump-compressed copy holding only the pages lpstack reads.
    Trim(trim::TrimArgs),
    /// Inspect ORC unwind tables.
    #[command(subcommand)]
    Orc(orc::OrcCommand),
}

/// An error for the user: what failed, naming the file or address.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

pub const EXIT_ERROR: i32 = 2;

pub fn run() -> i32 {
    let cli = Cli::try_parse().unwrap_or_else(|e| with_target_hint(e).exit());
    let result = match cli.command {
        Command::Orc(c) => orc::run(c),
        Command::Check(a) => check::run(*a),
        Command::Trim(a) => trim::run(a),
    };
    match result {
        Ok(code) => code,
        Err(CliError(msg)) => {
            eprintln!("lpstack: {msg}");
            EXIT_ERROR
        }
    }
}

pub use mapped::map_file;

/// A flag refused by one `check` target gets a tip naming the targets that
/// take it (`--pid` is `check live`'s).
fn with_target_hint(mut e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument || std::env::args_os().nth(1).is_none_or(|a| a != "check") {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return e };
    let Some(long) = arg.strip_prefix("--").map(|a| a.split('=').next().unwrap_or(a).to_string()) else { return e };
    let cli = Cli::command();
    let Some(check) = cli.find_subcommand("check") else { return e };
    let targets: Vec<String> = check
        .get_subcommands()
        .filter(|t| t.get_arguments().any(|a| a.get_long() == Some(long.as_str())))
        .map(|t| format!("`lpstack check {}`", t.get_name()))
        .collect();
    if !targets.is_empty() {
        // Replaces clap's "to pass '--pid' as a value, use '-- --pid'":
        // the flag is known, it belongs to another target.
        let tip = format!("--{long} is an option of {}", targets.join(" and "));
        e.insert(ContextKind::Suggested, ContextValue::StyledStrs(vec![tip.into()]));
    }
    e
}

/// Parses a hex address with or without 0x.
pub fn parse_addr(s: &str) -> Result<u64, String> {
    let t = s.trim_start_matches("0x").trim_start_matches("0X");
    u64::from_str_radix(t, 16).map_err(|_| format!("{s:?} is not a hex address"))
}
