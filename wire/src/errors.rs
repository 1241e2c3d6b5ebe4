//! Why wire text could not be read. Each message says what is wrong with the text, so a
//! reader can put the text's name in front (`PODCHECK_BEHAVIOUR: health is invalid: ...`).
//! The messages carry their cause's text because the agent prints them as they are.

use thiserror::Error;

/// Why a behaviour could not be read.
#[derive(Debug, Error)]
pub enum BehaviourError {
    #[error("not JSON: {source}")]
    NotJson { source: serde_json::Error },
    /// The `health` field is malformed.
    #[error("health is invalid: {source}")]
    Health { source: serde_json::Error },
    /// Anything but `health` is malformed.
    #[error("not a behaviour: {source}")]
    Behaviour { source: serde_json::Error },
}

/// Well-formed health endpoints the agent cannot serve (a port used twice, say).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("health is invalid: {reason}")]
pub struct InvalidHealth {
    reason: String,
}

impl InvalidHealth {
    pub(crate) fn new(reason: impl Into<String>) -> InvalidHealth {
        InvalidHealth {
            reason: reason.into(),
        }
    }
}

/// A well-formed behaviour the agent cannot act out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidBehaviour {
    #[error(transparent)]
    Health(#[from] InvalidHealth),
    /// The hooks cannot be served: a name that cannot be requested, or a hook port that
    /// does not listen from the start.
    #[error("hooks are invalid: {reason}")]
    Hooks { reason: String },
}

impl InvalidBehaviour {
    pub(crate) fn hooks(reason: impl Into<String>) -> InvalidBehaviour {
        InvalidBehaviour::Hooks {
            reason: reason.into(),
        }
    }
}

/// A log line that is not one of the agent's events.
#[derive(Debug, Error)]
#[error("not an agent log event: {source}")]
pub struct LogLineError {
    source: serde_json::Error,
}

impl LogLineError {
    pub(crate) fn new(source: serde_json::Error) -> LogLineError {
        LogLineError { source }
    }
}
