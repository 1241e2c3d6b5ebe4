use thiserror::Error;

/// Why a report could not be rendered.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("failed to render results.json")]
    Json(#[source] serde_json::Error),
    #[error("failed to read results")]
    ReadJson(#[source] serde_json::Error),
    #[error("failed to render junit.xml")]
    Junit(#[source] quick_junit::SerializeError),
}
