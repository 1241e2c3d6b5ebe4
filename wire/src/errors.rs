//! Why wire text could not be read. Each message says what is wrong with the text, so a
//! reader can put the text's name in front (`PODCHECK_BEHAVIOUR: health is invalid: ...`).

use std::error::Error;
use std::fmt;

/// Why a behaviour could not be read.
#[derive(Debug)]
pub enum BehaviourError {
    NotJson {
        source: serde_json::Error,
    },
    /// The `health` field is malformed.
    Health {
        source: serde_json::Error,
    },
    /// Anything but `health` is malformed.
    Behaviour {
        source: serde_json::Error,
    },
}

impl fmt::Display for BehaviourError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BehaviourError::NotJson { source } => write!(f, "not JSON: {source}"),
            BehaviourError::Health { source } => write!(f, "health is invalid: {source}"),
            BehaviourError::Behaviour { source } => write!(f, "not a behaviour: {source}"),
        }
    }
}

impl Error for BehaviourError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            BehaviourError::NotJson { source }
            | BehaviourError::Health { source }
            | BehaviourError::Behaviour { source } => Some(source),
        }
    }
}

/// Well-formed health endpoints the agent cannot serve (a port used twice, say).
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl fmt::Display for InvalidHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "health is invalid: {}", self.reason)
    }
}

impl Error for InvalidHealth {}

/// A log line that is not one of the agent's events.
#[derive(Debug)]
pub struct LogLineError {
    source: serde_json::Error,
}

impl LogLineError {
    pub(crate) fn new(source: serde_json::Error) -> LogLineError {
        LogLineError { source }
    }
}

impl fmt::Display for LogLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an agent log event: {}", self.source)
    }
}

impl Error for LogLineError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}
