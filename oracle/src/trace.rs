//! Traces: what a target showed of a pod, and what the harness did to it.
//!
//! A trace holds snapshots of the pod object (the metadata that termination changes, and
//! the status), the target's events where it has them, the fault actions the harness
//! performed with their request and acknowledgement times, and the workload's own logs.
//! The checker reads only the trace and the prediction.

use crate::scenario::FaultAction;
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

/// The largest distance from the pod's creation, in spec ms either way, that
/// [`Trace::spec_ms`] gives (about 285,000 years): far beyond any trace, and far enough
/// inside `i64` that sums of such times cannot overflow.
pub const SPEC_MS_LIMIT: i64 = 1 << 53;

/// One observed state of the pod object and when the harness received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    #[serde(with = "precise_time")]
    pub at: Time,
    #[serde(default, skip_serializing_if = "PodMetadata::is_empty")]
    pub metadata: PodMetadata,
    pub status: PodStatus,
}

impl Snapshot {
    /// A snapshot of a pod whose metadata says nothing beyond its existence.
    pub fn of_status(at: Time, status: PodStatus) -> Snapshot {
        Snapshot {
            at,
            metadata: PodMetadata::default(),
            status,
        }
    }
}

/// The parts of a pod's `metadata` that its lifecycle changes, as the API server shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    /// The API server's version of the object (targets without one leave it empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Set when deletion was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// The object no longer exists (the last finalizer went and the pod was removed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
}

impl PodMetadata {
    pub fn is_empty(&self) -> bool {
        *self == PodMetadata::default()
    }
}

/// An event a target recorded about the pod (`Scheduled`, `Started`, `Killing`,
/// `Unhealthy`, `BackOff`...), where the target has events at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodEvent {
    #[serde(with = "precise_time")]
    pub at: Time,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The container the event is about (from `involvedObject.fieldPath`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// What a target's watch yields: a new state of the pod object, or an event about it.
/// Snapshots are by far the most frequent, so they are not boxed.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Observation {
    Snapshot(Snapshot),
    Event(PodEvent),
}

impl Observation {
    pub fn at(&self) -> &Time {
        match self {
            Observation::Snapshot(snapshot) => &snapshot.at,
            Observation::Event(event) => &event.at,
        }
    }
}

/// How a fault action went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ActionResult {
    /// The target acknowledged the action.
    Done,
    /// The target cannot perform this action; the case says nothing about it.
    NotApplicable(String),
    /// The target failed to perform it.
    Failed(String),
}

/// One fault action the harness performed on the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    pub action: FaultAction,
    /// When the scenario scheduled it, in spec milliseconds since the pod's creation.
    pub due_ms: u64,
    /// When the harness asked the target (wall time).
    #[serde(with = "precise_time")]
    pub requested_at: Time,
    /// When the target acknowledged it (wall time); None unless `result` is `Done`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "precise_time_opt"
    )]
    pub acknowledged_at: Option<Time>,
    pub result: ActionResult,
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
    /// The target's events about the pod, in the order it reported them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<PodEvent>,
    /// The fault actions the harness performed, in the order it requested them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionRecord>,
    /// The containers' own log lines (agent events), by container name.
    #[serde(default)]
    pub logs: std::collections::BTreeMap<String, Vec<String>>,
    /// Why observation stopped before the horizon (a violation that nothing later could
    /// undo): the trace shows what happened so far, not all there was to see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_early: Option<String>,
}

impl Trace {
    /// Spec milliseconds since creation of a wall time (negative before creation), within
    /// [`SPEC_MS_LIMIT`] either way: times a broken target reports may lie anywhere, and
    /// the checker adds and subtracts a few of them.
    pub fn spec_ms(&self, at: &Time) -> i64 {
        let wall = at.0.duration_since(self.created_at.0);
        let wall_ms = wall.as_secs_f64() * 1000.0;
        // Saturating float-to-int, then clamped: NaN (a zero scale) reads as creation.
        let spec_ms = (wall_ms / self.timing.time_scale.max(1e-9)).round() as i64;
        spec_ms.clamp(-SPEC_MS_LIMIT, SPEC_MS_LIMIT)
    }

    /// The wall time `spec_ms` after creation (the last representable time beyond it).
    pub fn wall_at(&self, spec_ms: i64) -> Time {
        let wall_ms = spec_ms as f64 * self.timing.time_scale;
        let created = self.created_at.0;
        let at = match jiff::SignedDuration::try_from_secs_f64(wall_ms / 1000.0) {
            Ok(offset) => created.saturating_add(offset).ok(),
            Err(_) => None,
        };
        Time(at.unwrap_or(if wall_ms < 0.0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        }))
    }

    /// The trace as it stood `spec_ms` after creation: what a check during observation
    /// sees (log lines included as far as their time stamps tell).
    pub fn so_far(&self, spec_ms: i64) -> Trace {
        let cut = self.wall_at(spec_ms);
        let cut_unix_ms = cut.0.as_millisecond();
        let before = |at: &Time| at.0 <= cut.0;
        Trace {
            ended_at: cut.clone(),
            snapshots: self
                .snapshots
                .iter()
                .filter(|s| before(&s.at))
                .cloned()
                .collect(),
            events: self
                .events
                .iter()
                .filter(|e| before(&e.at))
                .cloned()
                .collect(),
            actions: self
                .actions
                .iter()
                .filter(|a| before(&a.requested_at))
                .cloned()
                .collect(),
            logs: self
                .logs
                .iter()
                .map(|(name, lines)| {
                    let kept = lines
                        .iter()
                        .filter(|line| {
                            podcheck_wire::LogEvent::parse(line).map_or(true, |e| {
                                i64::try_from(e.ts_ms).is_ok_and(|ts| ts <= cut_unix_ms)
                            })
                        })
                        .cloned()
                        .collect();
                    (name.clone(), kept)
                })
                .collect(),
            ended_early: Some(
                self.ended_early
                    .clone()
                    .unwrap_or_else(|| format!("cut at {}", crate::check::secs(spec_ms))),
            ),
            ..self.clone()
        }
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

mod precise_time_opt {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &Option<Time>, serializer: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::precise_time::serialize(time, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Time>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| text.parse().map(Time).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_time_stamps_keep_sub_second_precision() {
        let at = Time("2026-11-28T04:00:00.123456789Z".parse().expect("timestamp"));
        let snapshot = Snapshot::of_status(at.clone(), PodStatus::default());
        let json = serde_json::to_string(&snapshot).expect("serialise");
        assert!(json.contains("04:00:00.123456789"), "{json}");
        let back: Snapshot = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back.at, at);
    }

    #[test]
    fn pod_metadata_events_and_actions_survive_a_saved_trace() {
        let at = |text: &str| Time(text.parse().expect("timestamp"));
        let trace = Trace {
            target: "local".to_owned(),
            timing: TimingProfile {
                time_scale: 0.05,
                tolerance_ms: 5000,
            },
            created_at: at("2026-11-28T04:00:00Z"),
            ended_at: at("2026-11-28T04:00:09.5Z"),
            snapshots: vec![Snapshot {
                at: at("2026-11-28T04:00:01.25Z"),
                metadata: PodMetadata {
                    resource_version: Some("42".to_owned()),
                    deletion_timestamp: Some(at("2026-11-28T04:00:31Z")),
                    deletion_grace_period_seconds: Some(30),
                    finalizers: vec!["example.com/keep".to_owned()],
                    gone: false,
                },
                status: PodStatus::default(),
            }],
            events: vec![PodEvent {
                at: at("2026-11-28T04:00:01.5Z"),
                type_: "Normal".to_owned(),
                reason: "Killing".to_owned(),
                message: "Stopping container app".to_owned(),
                container: Some("app".to_owned()),
            }],
            actions: vec![ActionRecord {
                action: FaultAction::KillContainer {
                    container: "app".to_owned(),
                },
                due_ms: 3000,
                requested_at: at("2026-11-28T04:00:00.150000001Z"),
                acknowledged_at: Some(at("2026-11-28T04:00:00.17Z")),
                result: ActionResult::Done,
            }],
            logs: Default::default(),
            ended_early: None,
        };
        let json = serde_json::to_string(&trace).expect("serialise");
        assert!(
            json.contains(r#""deletionGracePeriodSeconds":30"#),
            "{json}"
        );
        assert!(json.contains(r#""type":"Normal""#), "{json}");
        assert!(
            json.contains(r#""killContainer":{"container":"app"}"#),
            "{json}"
        );
        let back: Trace = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, trace);
    }

    #[test]
    fn snapshots_saved_before_metadata_existed_still_load() {
        let json = r#"{"at":"2026-11-28T04:00:00Z","status":{"phase":"Running"}}"#;
        let snapshot: Snapshot = serde_json::from_str(json).expect("deserialise");
        assert!(snapshot.metadata.is_empty());
        assert_eq!(snapshot.status.phase.as_deref(), Some("Running"));
    }
}
