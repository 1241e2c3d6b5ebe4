//! What the test harnesses share: when tests that need root or podman are skipped.
//!
//! Such tests are marked ignored, so every runner reports them as skipped rather than
//! passed, and the reason is printed. Under `CI=true` they are never ignored: CI must
//! exercise them, and one that cannot run fails saying why.

#[allow(dead_code, reason = "not every harness runs the local runtime")]
pub mod local;

use libtest_mimic::{Arguments, Failed, Trial};
use std::future::Future;

/// Why tests that need what `check` looks for are skipped here: None under `CI=true`
/// or when `check` passes.
#[allow(dead_code, reason = "not every harness skips under CI")]
pub fn skip_reason(check: impl FnOnce() -> Result<(), String>) -> Option<String> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return None;
    }
    check().err()
}

/// Why tests that need root are skipped here: None under `CI=true` or as root (the local
/// runtime's own privilege check, which starts nothing).
#[allow(dead_code, reason = "not every harness runs the local runtime")]
pub fn no_root() -> Option<String> {
    skip_reason(|| podcheck_runtime::sys::check_privileges().map_err(|e| e.to_string()))
}

/// Says on stderr which tests are skipped and why; listing stays quiet.
pub fn note_skipped(args: &Arguments, what: &str, reason: Option<&String>) {
    if let (Some(reason), false) = (reason, args.list) {
        eprintln!("note: {what} are skipped: {reason}");
    }
}

/// Root, which the local runtime needs (its own privilege check, which starts nothing).
#[allow(dead_code, reason = "not every harness runs the local runtime")]
pub fn root() -> Result<(), String> {
    podcheck_runtime::sys::check_privileges()
        .map_err(|e| format!("the local runtime's tests need root: {e}"))
}

/// Nothing: the test runs anywhere.
#[allow(
    dead_code,
    reason = "not every harness has tests without a precondition"
)]
pub fn anywhere() -> Result<(), String> {
    Ok(())
}

/// A trial that runs an async test on a multi-threaded tokio runtime once `needs` holds;
/// when it does not, the test fails saying why (it is only run then under `CI=true`).
#[allow(dead_code, reason = "not every harness has async tests")]
pub fn async_trial<F>(name: &str, needs: fn() -> Result<(), String>, test: fn() -> F) -> Trial
where
    F: Future<Output = ()> + 'static,
{
    Trial::test(name, move || {
        needs()?;
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("failed to start tokio: {e}")))?
            .block_on(test());
        Ok(())
    })
}

/// One [`async_trial`] per test function, named after it, each needing `$needs` and
/// ignored when `$ignored` holds.
#[allow(unused_macros, reason = "not every harness has async tests")]
macro_rules! async_trials {
    ($needs:expr, $ignored:expr, [$($test:ident),+ $(,)?]) => {
        vec![$(
            $crate::common::async_trial(stringify!($test), $needs, $test)
                .with_ignored_flag($ignored)
        ),+]
    };
}
#[allow(unused_imports, reason = "not every harness has async tests")]
pub(crate) use async_trials;

/// The trials of a harness of root tests, named after their functions: `$tests` need root,
/// `$cgroup_v2` a cgroup v2 hierarchy too. Without them they are skipped, and stderr says
/// why (`$what` names them).
#[allow(unused_macros, reason = "not every harness has root tests")]
macro_rules! root_trials {
    ($args:expr, $what:expr, [$($test:ident),+ $(,)?], cgroup_v2: [$($v2:ident),+ $(,)?]) => {{
        let no_root = $crate::common::no_root();
        $crate::common::note_skipped($args, $what, no_root.as_ref());
        let no_cgroup_v2 = $crate::common::local::no_cgroup_v2($args, no_root.as_ref());
        let mut trials =
            $crate::common::async_trials!($crate::common::root, no_root.is_some(), [$($test),+]);
        trials.extend($crate::common::async_trials!(
            $crate::common::root,
            no_root.is_some() || no_cgroup_v2.is_some(),
            [$($v2),+]
        ));
        trials
    }};
}
#[allow(unused_imports, reason = "not every harness has root tests")]
pub(crate) use root_trials;
