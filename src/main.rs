use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = clef::cli::Cli::parse();
    match clef::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the problem; the chain gives the context.
            eprintln!("clef: {e:#}");
            ExitCode::FAILURE
        }
    }
}
