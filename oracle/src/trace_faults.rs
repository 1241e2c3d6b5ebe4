//! What a target reported that no Kubernetes implementation can report: the target's fault,
//! not a semantic divergence.
//!
//! The checker compares a trace with a prediction and blames the runtime for every
//! difference. That is right for a runtime that restarts too early or derives the wrong
//! phase; it is wrong for a report that cannot be read as any pod's life at all (a negative
//! restart count, a container that started a minute before its pod existed, a phase that
//! is not a phase): such a trace says the target, or what converts its objects, is broken,
//! and its verdict is an error naming the field, never a list of rule violations.
//!
//! Only what no correct implementation can show is flagged. What a real kubelet can
//! legally show, however odd, is left to the checker: the `Unknown` phase, a restart count
//! reset to 0 (its API documentation allows it after a node restart), the Unix epoch as the
//! `startedAt` of a container that never started (kubernetes/kubernetes#120331), a container
//! status in the list of another kind (the `init.status` and `ephemeral.status` rules), and
//! times a little off from second truncation and clock skew (see [`CLOCK_SLACK_WALL_MS`]).
//! docs/fidelity/target-faults.md cites the sources.

use crate::predict::Prediction;
use crate::scenario::ContainerKind;
use crate::trace::Trace;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
use thiserror::Error;

/// Something the target reported that no Kubernetes implementation can report. Reads
/// `target fault: snapshot at +12.3s: status.containerStatuses[app].restartCount is -1; a
/// restart count is never negative`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("target fault: snapshot at {}: {field} is {value}; {reason}", signed_secs(*.at_ms))]
pub struct TargetFault {
    /// When the snapshot that shows it was taken, in spec ms since the pod's creation.
    pub at_ms: i64,
    /// The field's path in the pod object: `status.containerStatuses[app].restartCount`.
    pub field: String,
    pub value: String,
    /// Why no correct implementation reports this value.
    pub reason: String,
}

/// How far before the pod's creation (wall time) a time the target reports may lie, beyond
/// the target's own tolerance, before it counts as impossible. The pod's creation is the
/// harness's clock just before it asked for the pod; the times in a status come from the
/// node's clock (container times) or the API server's (conditions, deletion) and the API
/// writes them in whole seconds, truncated: a time up to 1 s after creation reads up to
/// 1 s before it, and a node's clock that NTP keeps within a second of the harness's adds
/// up to 1 s more. Nothing a correct cluster reports comes earlier than this.
pub const CLOCK_SLACK_WALL_MS: i64 = 2_000;

/// Every `PodPhase` of the API (k8s.io/api core/v1 types.go). `Unknown` is one of them:
/// no kubelet has set it since 2015, but it is legal, so a trace that shows it is checked
/// like any other and fails the phase rules wherever the prediction says otherwise.
pub const POD_PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

/// The first thing in `trace` that no Kubernetes implementation can report, snapshot by
/// snapshot in the order they came, for the pod `prediction` is about.
pub fn check_reported(prediction: &Prediction, trace: &Trace) -> Result<(), TargetFault> {
    let containers: BTreeMap<&str, ContainerKind> = prediction
        .containers
        .iter()
        .map(|plan| (plan.name.as_str(), plan.kind))
        .collect();
    let allowance = early_allowance_wall_ms(trace);
    for snapshot in &trace.snapshots {
        let sanity = Snapshot {
            trace,
            containers: &containers,
            allowance_wall_ms: allowance,
            at_ms: trace.spec_ms(&snapshot.at),
        };
        sanity.not_before_creation(
            "the snapshot's time".to_owned(),
            &snapshot.at,
            "the target dated a snapshot before the pod existed",
        )?;
        if let Some(deleted) = &snapshot.metadata.deletion_timestamp {
            sanity.not_before_creation(
                "metadata.deletionTimestamp".to_owned(),
                deleted,
                "a pod is not deleted before it exists",
            )?;
        }
        let status = &snapshot.status;
        if let Some(phase) = status.phase.as_deref().filter(|p| !p.is_empty()) {
            if !POD_PHASES.contains(&phase) {
                return Err(sanity.fault(
                    "status.phase".to_owned(),
                    format!("{phase:?}"),
                    format!("a pod's phase is one of {}", POD_PHASES.join(", ")),
                ));
            }
        }
        if let Some(start) = &status.start_time {
            sanity.not_before_creation(
                "status.startTime".to_owned(),
                start,
                "a kubelet does not take up a pod before it exists",
            )?;
        }
        for condition in status.conditions.iter().flatten() {
            let field = |name: &str| format!("status.conditions[{}].{name}", condition.type_);
            if let Some(at) = &condition.last_transition_time {
                sanity.not_before_creation(
                    field("lastTransitionTime"),
                    at,
                    "a pod's condition does not change before the pod exists",
                )?;
            }
            if let Some(at) = &condition.last_probe_time {
                sanity.not_before_creation(
                    field("lastProbeTime"),
                    at,
                    "a pod's condition is not probed before the pod exists",
                )?;
            }
        }
        sanity.container_statuses(status)?;
    }
    Ok(())
}

/// How far before the pod's creation, in wall ms, a reported time may lie: the target's
/// tolerance (spec ms, scaled to wall) and [`CLOCK_SLACK_WALL_MS`].
fn early_allowance_wall_ms(trace: &Trace) -> i64 {
    let scale = trace.timing.time_scale;
    let scale = if scale.is_finite() {
        scale.max(0.0)
    } else {
        1.0
    };
    // Saturating float-to-int: a nonsense tolerance allows much, never overflows.
    let tolerance_wall = (trace.timing.tolerance_ms as f64 * scale).ceil() as i64;
    tolerance_wall.saturating_add(CLOCK_SLACK_WALL_MS)
}

/// One snapshot under scrutiny.
struct Snapshot<'a> {
    trace: &'a Trace,
    containers: &'a BTreeMap<&'a str, ContainerKind>,
    allowance_wall_ms: i64,
    at_ms: i64,
}

impl Snapshot<'_> {
    fn fault(&self, field: String, value: String, reason: String) -> TargetFault {
        TargetFault {
            at_ms: self.at_ms,
            field,
            value,
            reason,
        }
    }

    /// Wall milliseconds from the pod's creation to `time` (negative before it).
    fn since_creation_wall_ms(&self, time: &Time) -> i128 {
        time.0.duration_since(self.trace.created_at.0).as_millis()
    }

    fn not_before_creation(
        &self,
        field: String,
        time: &Time,
        why: &str,
    ) -> Result<(), TargetFault> {
        let since = self.since_creation_wall_ms(time);
        if since >= -i128::from(self.allowance_wall_ms) {
            return Ok(());
        }
        Err(self.fault(
            field,
            format!(
                "{} ({} before the pod was created)",
                time.0,
                secs(self.trace.spec_ms(time).saturating_neg())
            ),
            format!(
                "{why} (times may lie up to {} earlier, for clock skew and whole-second truncation)",
                wall_text(self.allowance_wall_ms)
            ),
        ))
    }

    /// Every container status: of a container of the spec, one per container, with a
    /// restart count and states that can be.
    fn container_statuses(
        &self,
        status: &k8s_openapi::api::core::v1::PodStatus,
    ) -> Result<(), TargetFault> {
        let lists = [
            ("initContainerStatuses", &status.init_container_statuses),
            ("containerStatuses", &status.container_statuses),
            (
                "ephemeralContainerStatuses",
                &status.ephemeral_container_statuses,
            ),
        ];
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (list, statuses) in lists {
            for cs in statuses.iter().flatten() {
                let path = format!("status.{list}[{}]", cs.name);
                if !self.containers.contains_key(cs.name.as_str()) {
                    let known: Vec<&str> = self.containers.keys().copied().collect();
                    return Err(self.fault(
                        path,
                        format!("the status of a container named {:?}", cs.name),
                        format!(
                            "the pod has no container of that name (its containers: {})",
                            known.join(", ")
                        ),
                    ));
                }
                if let Some(first) = seen.insert(cs.name.as_str(), list) {
                    return Err(self.fault(
                        path,
                        format!(
                            "a second status of container {} (the first is in status.{first})",
                            cs.name
                        ),
                        "a pod's status holds one status per container".to_owned(),
                    ));
                }
                self.container_status(&path, cs)?;
            }
        }
        Ok(())
    }

    fn container_status(&self, path: &str, cs: &ContainerStatus) -> Result<(), TargetFault> {
        if cs.restart_count < 0 {
            return Err(self.fault(
                format!("{path}.restartCount"),
                cs.restart_count.to_string(),
                "a restart count is never negative".to_owned(),
            ));
        }
        if let Some(state) = &cs.state {
            self.container_state(&format!("{path}.state"), state)?;
        }
        if let Some(state) = &cs.last_state {
            self.container_state(&format!("{path}.lastState"), state)?;
        }
        Ok(())
    }

    fn container_state(&self, path: &str, state: &ContainerState) -> Result<(), TargetFault> {
        let members: Vec<&str> = [
            ("waiting", state.waiting.is_some()),
            ("running", state.running.is_some()),
            ("terminated", state.terminated.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if members.len() > 1 {
            return Err(self.fault(
                path.to_owned(),
                members.join(" and "),
                "a container is in one state at a time: only one of waiting, running and \
                 terminated is set"
                    .to_owned(),
            ));
        }
        if let Some(started) = state.running.as_ref().and_then(|r| r.started_at.as_ref()) {
            self.not_before_creation(
                format!("{path}.running.startedAt"),
                started,
                "a container does not start before its pod exists",
            )?;
        }
        let Some(terminated) = &state.terminated else {
            return Ok(());
        };
        // A container that never started (StartError) shows the Unix epoch as its start:
        // the kubelet converts the runtime's zero start time as it is.
        let started = terminated
            .started_at
            .as_ref()
            .filter(|t| t.0 != Timestamp::UNIX_EPOCH);
        let finished = terminated
            .finished_at
            .as_ref()
            .filter(|t| t.0 != Timestamp::UNIX_EPOCH);
        if let Some(started) = started {
            self.not_before_creation(
                format!("{path}.terminated.startedAt"),
                started,
                "a container does not start before its pod exists",
            )?;
        }
        if let Some(finished) = finished {
            self.not_before_creation(
                format!("{path}.terminated.finishedAt"),
                finished,
                "a container does not finish before its pod exists",
            )?;
        }
        if let (Some(started), Some(finished)) = (started, finished) {
            // Both come from the node's clock and truncate alike: only the target's own
            // slack is allowed.
            let ran_wall_ms = finished.0.duration_since(started.0).as_millis();
            if ran_wall_ms < -i128::from(self.allowance_wall_ms) {
                return Err(self.fault(
                    format!("{path}.terminated.finishedAt"),
                    format!(
                        "{} ({} before its startedAt {})",
                        finished.0,
                        wall_text(i64::try_from(-ran_wall_ms).unwrap_or(i64::MAX)),
                        started.0
                    ),
                    "a container does not finish before it started".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

/// Spec milliseconds as seconds.
fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Spec milliseconds since creation as a signed offset: `+12.3s`, `-80.0s`.
fn signed_secs(ms: i64) -> String {
    format!("{:+.1}s", ms as f64 / 1000.0)
}

/// Wall milliseconds, said as wall time.
fn wall_text(ms: i64) -> String {
    format!("{:.1}s of wall time", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests;
