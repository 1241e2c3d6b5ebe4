//! A target's life in a command: set up, interrupted by Ctrl-C or SIGTERM, cleaned up.

use super::args::TargetArgs;
use podcheck::errors::describe;
use podcheck::targets::{self, Target};
use std::future::Future;

/// Resolves on Ctrl-C or SIGTERM (a CI timeout), so targets can remove what they created.
async fn interrupted() -> &'static str {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => "SIGTERM",
    }
}

/// Runs `work` unless Ctrl-C or SIGTERM comes first; then removes what the target
/// created and returns None.
pub async fn until_interrupted<T>(target: &dyn Target, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        signal = interrupted() => {
            eprintln!("interrupted by {signal}: cleaning up");
            let _ = target.cleanup().await;
            None
        }
    }
}

/// The target `args` names, or None after saying on stderr why it cannot be set up.
/// Prints what the target says it is (a cluster's versions and nodes) on stderr.
pub async fn set_up_target(args: &TargetArgs, default: &str, seed: u64) -> Option<Box<dyn Target>> {
    let spec = args.spec(default);
    match targets::from_spec(spec, &args.options(seed)).await {
        Ok(target) => {
            for line in target.summary() {
                eprintln!("{line}");
            }
            Some(target)
        }
        Err(err) => {
            eprintln!("error: failed to set up target {spec}: {}", describe(&err));
            None
        }
    }
}
