//! Traces: what a target showed of a pod.

use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

/// One observed PodStatus and when the harness received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(with = "precise_time")]
    pub at: Time,
    pub status: PodStatus,
}

/// How a target maps spec time onto wall time, and how much timing noise it adds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimingProfile {
    /// Wall seconds per spec second.
    pub time_scale: f64,
    /// Spec-time tolerance added to both ends of every window.
    pub tolerance_ms: u64,
}

/// Everything a target showed about one pod, from creation until observation stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub target: String,
    pub timing: TimingProfile,
    /// When the pod was created (wall time).
    #[serde(with = "precise_time")]
    pub created_at: Time,
    /// When observation stopped (wall time).
    #[serde(with = "precise_time")]
    pub ended_at: Time,
    pub snapshots: Vec<Snapshot>,
    /// The containers' own log lines (agent events), by container name.
    #[serde(default)]
    pub logs: std::collections::BTreeMap<String, Vec<String>>,
}

impl Trace {
    /// Spec milliseconds since creation of a wall time (negative before creation).
    pub fn spec_ms(&self, at: &Time) -> i64 {
        let wall = at.0.duration_since(self.created_at.0);
        let wall_ms = wall.as_secs_f64() * 1000.0;
        (wall_ms / self.timing.time_scale.max(1e-9)).round() as i64
    }
}

/// Kubernetes `Time` serialises to whole seconds; a trace keeps its own time stamps to the
/// nanosecond, so that a saved trace can be checked again with the same result.
mod precise_time {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &Time, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&time.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Time).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_time_stamps_keep_sub_second_precision() {
        let at = Time("2026-11-28T04:00:00.123456789Z".parse().expect("timestamp"));
        let snapshot = Snapshot {
            at: at.clone(),
            status: PodStatus::default(),
        };
        let json = serde_json::to_string(&snapshot).expect("serialise");
        assert!(json.contains("04:00:00.123456789"), "{json}");
        let back: Snapshot = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back.at, at);
    }
}
