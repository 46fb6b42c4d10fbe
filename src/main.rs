//! The `lpstack` command. Each subcommand lives in `cli/`.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
