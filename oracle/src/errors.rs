use thiserror::Error;

/// Why a scenario could not be used. Messages read after "failed to load a scenario:".
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScenarioError {
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("{source_name}{}: {}{message}", line.map(|l| format!(":{l}")).unwrap_or_default(), field.as_deref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Parse {
        source_name: String,
        /// Where the text could not be read, when the parser says.
        line: Option<usize>,
        /// The field written there, when it is known.
        field: Option<String>,
        message: String,
    },
    #[error("{source_name}{}: field `{field}`: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        source_name: String,
        /// The line the field (or its nearest enclosing field) is written on.
        line: Option<usize>,
        field: String,
        reason: String,
    },
}

/// A rule id that is not in the catalogue.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown rule id {0:?}: `podcheck rules` lists the catalogue")]
pub struct UnknownRuleId(pub String);

/// A field of a scenario or its pod that cannot be used, and why, as Kubernetes' validation
/// would name it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("field `{field}`: {reason}")]
pub struct FieldError {
    /// The field's path, e.g. `pod.spec.containers[0].livenessProbe.periodSeconds`.
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
