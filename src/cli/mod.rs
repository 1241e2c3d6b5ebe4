//! The `podcheck` command's parts: its arguments, what it prints, one module per
//! subcommand.

pub mod args;
pub mod bench;
pub mod catalogue;
pub mod certify;
pub mod fuzz;
pub mod image;
pub mod predict;
pub mod progress;
pub mod report;
pub mod run;
pub mod session;
pub mod terminal;

use args::{Command, ImageCommand};

/// Exit codes CI can use.
pub const CONFORMANT: u8 = 0;
pub const NONCONFORMANT: u8 = 1;
pub const USAGE_OR_TARGET_ERROR: u8 = 2;
/// As shells report death by SIGINT.
pub const INTERRUPTED: u8 = 130;

/// Runs one subcommand; returns its exit code.
pub async fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Certify(args) => certify::certify(args).await,
        Command::Fuzz(args) => fuzz::fuzz(args).await,
        Command::Predict(args) => predict::print_prediction(&args),
        Command::Bench(args) => bench::bench(args).await,
        Command::Image {
            command: ImageCommand::Build(args),
        } => image::build(&args),
        Command::Report(args) => report::report(&args),
        Command::Rules => catalogue::print_rules(),
        Command::Deviations => catalogue::print_deviations(),
    }
}
