//! Errors of the harness and its targets. Messages read after "failed to" where they
//! describe an action; causes are kept as sources, and [`describe`] renders the chain.

use std::time::Duration;
use thiserror::Error;

/// Why a target could not do what the harness asked.
#[derive(Debug, Error)]
pub enum TargetError {
    /// The target cannot run this case or perform this action here (missing privilege,
    /// unsupported node configuration, an action it has no means for): the case is
    /// skipped with this reason, never failed.
    #[error("not applicable: {0}")]
    NotApplicable(String),
    /// The target refused the pod.
    #[error("the target rejected the pod")]
    Rejected(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("unknown target {0:?}. {help}", help = crate::targets::TARGET_HELP)]
    UnknownTarget(String),
    #[error("unknown model deviation {name:?}; known: {known}")]
    UnknownDeviation { name: String, known: String },
    #[error("the target has no pod {0}")]
    NoSuchPod(String),
    #[error("failed to {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// A command the target runs (podman) exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("`{command}` did not answer within {timeout:?}")]
    CommandTimedOut { command: String, timeout: Duration },
    #[error("the local runtime failed")]
    Runtime(#[source] podcheck_runtime::RuntimeError),
    #[error("failed to build the agent image")]
    Image(#[source] crate::image::ImageError),
    /// The API server refused a call.
    #[error("failed to {action}: {code} {reason}: {message}")]
    Api {
        action: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// A call to the API server failed before it answered (connection, TLS, credentials).
    #[error("failed to {action}")]
    Kube {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// Ctrl-C or SIGTERM came while the target was being set up; what it had created is
    /// removed.
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
    /// The target cannot be set up; the text says why and what to do.
    #[error("{0}")]
    Setup(String),
    /// The target misbehaved in a way no other variant names.
    #[error("{0}")]
    Broken(String),
}

impl TargetError {
    pub fn io(action: impl Into<String>, source: std::io::Error) -> TargetError {
        TargetError::Io {
            action: action.into(),
            source,
        }
    }

    /// A refusal whose reason is plain text.
    pub fn rejected(reason: impl Into<String>) -> TargetError {
        TargetError::Rejected(reason.into().into())
    }
}

/// An error with its causes, outermost first: "failed to X: because Y: because Z". A cause
/// whose text its parent already shows is not repeated.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_carry_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = TargetError::io("run podman", io);
        assert_eq!(
            describe(&error),
            "failed to run podman: No such file or directory"
        );
        let runtime = TargetError::Runtime(podcheck_runtime::RuntimeError::NoSuchPod("p".into()));
        assert_eq!(
            describe(&runtime),
            "the local runtime failed: find pod p: no such pod"
        );
        let rejected = TargetError::rejected("container c has no PODCHECK_BEHAVIOUR");
        assert_eq!(
            describe(&rejected),
            "the target rejected the pod: container c has no PODCHECK_BEHAVIOUR"
        );
    }
}
