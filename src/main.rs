//! The `podcheck` command.

mod cli;

use clap::Parser;
use cli::args::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::from(cli::USAGE_OR_TARGET_ERROR);
        }
    };
    match runtime.block_on(cli::dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(cli::USAGE_OR_TARGET_ERROR)
        }
    }
}
