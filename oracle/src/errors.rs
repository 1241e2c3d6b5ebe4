use thiserror::Error;

/// Why a scenario could not be used. Messages read after "failed to load a scenario:".
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScenarioError {
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: field `{field}`: {reason}")]
    Invalid {
        source_name: String,
        field: String,
        reason: String,
    },
}

/// A rule id that is not in the catalogue.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown rule id {0:?}: `podcheck rules` lists the catalogue")]
pub struct UnknownRuleId(pub String);
