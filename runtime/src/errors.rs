use thiserror::Error;

/// Why the local runtime could not do something. Messages read after "failed to".
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("start the local runtime: {0}")]
    Unsupported(String),
    #[error("accept pod {pod}: field `{field}`: {reason}")]
    InvalidPod {
        pod: String,
        field: String,
        reason: String,
    },
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("find pod {0}: no such pod")]
    NoSuchPod(String),
    #[error("find a running instance of container {container} in pod {pod}: none runs")]
    ContainerNotRunning { pod: String, container: String },
}

impl RuntimeError {
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            action: action.into(),
            source,
        }
    }

    /// Whether the error means this machine cannot run the local runtime at all
    /// (as opposed to a broken pod or a passing I/O failure).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, RuntimeError::Unsupported(_))
    }
}
