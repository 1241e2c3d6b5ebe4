//! A target's life in a command: set up, interrupted by Ctrl-C or SIGTERM, cleaned up.

use super::args::TargetArgs;
use super::{INTERRUPTED, USAGE_OR_TARGET_ERROR};
use podcheck::errors::describe;
use podcheck::targets::{self, Target, TargetError};
use std::future::Future;

/// Runs `work` unless Ctrl-C or SIGTERM comes first; then removes what the target
/// created and returns None.
pub async fn until_interrupted<T>(target: &dyn Target, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        signal = podcheck::interrupt::interrupted() => {
            eprintln!("interrupted by {signal}: cleaning up");
            let _ = target.cleanup().await;
            None
        }
    }
}

/// The target `args` names (the subcommand's `default` if none), or the exit code after
/// saying on stderr why it cannot be set up (2), or that set-up was interrupted (130).
/// Prints what the target says it is (a cluster's versions and nodes) on stderr.
pub async fn set_up_target(
    args: &TargetArgs,
    default: &str,
    seed: u64,
) -> Result<Box<dyn Target>, u8> {
    let spec = args.spec(default);
    match targets::from_spec(spec, &args.options(seed)).await {
        Ok(target) => {
            for line in target.summary() {
                eprintln!("{line}");
            }
            Ok(target)
        }
        Err(TargetError::Interrupted(signal)) => {
            eprintln!("interrupted by {signal} while setting up target {spec}: cleaned up");
            Err(INTERRUPTED)
        }
        Err(err) => {
            eprintln!("error: failed to set up target {spec}: {}", describe(&err));
            Err(USAGE_OR_TARGET_ERROR)
        }
    }
}
