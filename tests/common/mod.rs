//! What the test harnesses share: when tests that need root or podman are skipped.
//!
//! Such tests are marked ignored, so every runner reports them as skipped rather than
//! passed, and the reason is printed. Under `CI=true` they are never ignored: CI must
//! exercise them, and one that cannot run fails saying why.

use libtest_mimic::Arguments;

/// Why tests that need what `check` looks for are skipped here: None under `CI=true`
/// or when `check` passes.
pub fn skip_reason(check: impl FnOnce() -> Result<(), String>) -> Option<String> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return None;
    }
    check().err()
}

/// Says on stderr which tests are skipped and why; listing stays quiet.
pub fn note_skipped(args: &Arguments, what: &str, reason: Option<&String>) {
    if let (Some(reason), false) = (reason, args.list) {
        eprintln!("note: {what} are skipped: {reason}");
    }
}
