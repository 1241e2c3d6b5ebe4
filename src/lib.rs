//! podcheck: the harness, targets, runner and shrinking behind the `podcheck` command.

pub mod bench;
pub mod compile;
pub mod errors;
pub mod fuzz;
pub mod harness;
pub mod hostile;
pub mod image;
pub mod interrupt;
pub mod reduce;
pub mod runner;
pub mod selfcheck;
pub mod targets;
pub mod timeline;
