//! The workload's log as the checker reads it: the agent's JSON lines, untyped.
//!
//! Kept apart so that the checker's probe rules do not depend on the line format, which
//! is to become one typed wire definition shared with the agent.

/// The agent's JSON log lines, and the start (instance index) they belong to.
pub(super) struct WorkloadLog {
    pub(super) start: Option<u64>,
    pub(super) events: Vec<serde_json::Value>,
}

impl WorkloadLog {
    pub(super) fn parse(lines: &[String]) -> WorkloadLog {
        let events: Vec<serde_json::Value> = lines
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let start = events
            .iter()
            .find(|e| field(e, "event") == Some("start"))
            .and_then(|e| e.get("start")?.as_u64());
        WorkloadLog { start, events }
    }
}

/// Probe answers of `endpoint` among `events`, in log order.
pub(super) fn answers<'a>(
    events: &'a [serde_json::Value],
    endpoint: &'a str,
) -> impl DoubleEndedIterator<Item = &'a serde_json::Value> + 'a {
    events.iter().filter(move |e| {
        field(e, "event") == Some("probe") && field(e, "endpoint") == Some(endpoint)
    })
}

pub(super) fn field<'a>(event: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    event.get(name).and_then(|v| v.as_str())
}
