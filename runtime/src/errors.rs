use std::path::PathBuf;
use thiserror::Error;

/// Why the local runtime could not do something. Messages read after "failed to".
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("start the local runtime: {0}")]
    Unsupported(String),
    /// What the runtime must learn about this machine could not be read.
    #[error("start the local runtime: read {path}: {source}")]
    HostUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// A container's image is not on this node, which never pulls.
    #[error(
        "find image {image:?}: only {} is present on this node and imagePullPolicy cannot pull",
        crate::AGENT_IMAGE
    )]
    ImageNotPresent { image: String },
    /// The pod's sandbox is gone (or never was) when something needs it.
    #[error("{action}: no sandbox")]
    NoSandbox { action: &'static str },
    #[error("find pod {0}: no such pod")]
    NoSuchPod(String),
    /// The pod object was removed (deleted, finalized): the API server answers 404.
    #[error("find pod {0}: the pod object no longer exists")]
    PodGone(String),
    #[error("remove finalizer {finalizer:?} of pod {pod}: the pod has no such finalizer")]
    NoSuchFinalizer { pod: String, finalizer: String },
    #[error("find a running instance of container {container} in pod {pod}: none runs")]
    ContainerNotRunning { pod: String, container: String },
    /// The API server refused an update through the `ephemeralcontainers` subresource
    /// (422): each of `errors` as it words a field error.
    #[error("add an ephemeral container: Pod {pod:?} is invalid: {}", errors.join(", "))]
    EphemeralContainerRefused { pod: String, errors: Vec<String> },
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
        matches!(
            self,
            RuntimeError::Unsupported(_) | RuntimeError::HostUnreadable { .. }
        )
    }
}

/// Why a probe got no result (its attempt is thrown away), or why it failed.
#[derive(Debug, Error)]
pub(crate) enum ProbeError {
    #[error("resolve port {0:?}: the container has no port of that name")]
    NoSuchPort(String),
    #[error("resolve port: invalid port number: {0}")]
    InvalidPort(i32),
    #[error("run an exec probe: the container is not running")]
    NotRunning,
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action}: {source}")]
    Http {
        action: String,
        #[source]
        source: hyper::Error,
    },
    #[error("{action}: {source}")]
    InvalidRequest {
        action: String,
        #[source]
        source: http::Error,
    },
    #[error("{0} timed out")]
    TimedOut(String),
    /// The kubelet's own words for a failed HTTP probe.
    #[error("HTTP probe failed with statuscode: {0}")]
    Status(u16),
    #[error("stopped after {0} redirects")]
    TooManyRedirects(usize),
    #[error("failed to parse Location header {0:?}")]
    Location(String),
    #[error("follow a redirect to {0}: the local runtime speaks only http")]
    RedirectScheme(String),
    #[error("{action}: {source}")]
    H2 {
        action: &'static str,
        #[source]
        source: h2::Error,
    },
    #[error("answer a health check: HTTP status {0}")]
    GrpcHttpStatus(http::StatusCode),
    #[error("answer a health check: grpc-status {0:?}")]
    GrpcStatus(Option<String>),
    #[error("read a HealthCheckResponse: {0}")]
    HealthCheckFrame(&'static str),
    #[error("read a HealthCheckResponse: {0}")]
    HealthCheckMessage(#[source] prost::DecodeError),
}

impl ProbeError {
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        ProbeError::Io {
            action: action.into(),
            source,
        }
    }
}
