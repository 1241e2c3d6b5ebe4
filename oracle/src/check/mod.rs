//! `check`: compares what a target showed (a [`Trace`]) with a [`Prediction`].
//!
//! Three kinds of property, as in a state-machine test:
//! - *always*: every snapshot's phase, conditions and container fields must be what the
//!   kubelet derives from that snapshot's container states;
//! - *eventually*: every planned instance starts, exits and is restarted inside its window,
//!   measured from the observed event it depends on;
//! - *never*: a restart the policy forbids, a terminal phase left, a restartCount that drops.
//!
//! One module per rule area (`status`, `instances`, `probes`, `terminal`); a new rule area
//! gets its own module here, called from [`check`], and reports through the `Collector`.

mod init;
mod instances;
mod probes;
mod status;
mod stop;
mod terminal;
mod termination;

use crate::derive::SpecContainer;
use crate::plan::StartGate;
use crate::predict::Prediction;
use crate::rules::RuleId;
use crate::scenario::ContainerKind;
use crate::trace::Trace;
use instances::{
    check_container_snapshot, check_instances, check_restart_count_bound, observed_gate,
    record_container, ObservedContainer,
};
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodStatus};
use probes::{
    check_liveness_log, check_probe_cadence, check_probe_flags, check_probe_flags_held,
    check_readiness_log,
};
use serde::{Deserialize, Serialize};
use status::{check_conditions, PhaseWatch};
use std::collections::{BTreeMap, BTreeSet};
use terminal::check_terminal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The target behaved as the oracle predicts.
    Pass,
    /// The target diverged: see the violations.
    Fail,
    /// The target or harness broke; says nothing about semantics.
    Error,
    /// The case cannot run on this target (a missing privilege or capability).
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub rule: RuleId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub expected: String,
    pub observed: String,
    /// Spec time of the observation, in milliseconds since creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<i64>,
    /// How many snapshots showed the same violation.
    #[serde(default = "one")]
    pub occurrences: u32,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub scenario: String,
    pub target: String,
    pub outcome: Outcome,
    pub violations: Vec<Violation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rules the prediction exercised.
    pub rules: Vec<RuleId>,
    /// The smallest distance, in spec milliseconds, between a timing observation that
    /// passed and the edge of its window (target tolerance included): how close the run
    /// came to failing on timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing_headroom_ms: Option<i64>,
    /// Why observation stopped before the horizon: the verdict rests on what was seen
    /// until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_early: Option<String>,
}

impl Verdict {
    pub fn error(scenario: &str, target: &str, message: String) -> Verdict {
        Verdict {
            scenario: scenario.to_owned(),
            target: target.to_owned(),
            outcome: Outcome::Error,
            violations: Vec::new(),
            error: Some(message),
            rules: Vec::new(),
            timing_headroom_ms: None,
            ended_early: None,
        }
    }

    pub fn skipped(scenario: &str, target: &str, reason: String) -> Verdict {
        Verdict {
            outcome: Outcome::Skipped,
            ..Verdict::error(scenario, target, reason)
        }
    }

    pub fn violated_rules(&self) -> BTreeSet<RuleId> {
        self.violations.iter().map(|v| v.rule).collect()
    }
}

struct Collector {
    violations: Vec<Violation>,
    seen: BTreeMap<(RuleId, Option<String>, String), usize>,
    headroom: Option<i64>,
}

impl Collector {
    /// Records how far inside `[min, max]` an observation that passed fell.
    fn inside(&mut self, observed: i64, min: i64, max: i64) {
        let margin = (observed - min).min(max - observed);
        self.headroom = Some(self.headroom.map_or(margin, |h| h.min(margin)));
    }

    fn add(
        &mut self,
        rule: RuleId,
        container: Option<&str>,
        expected: String,
        observed: String,
        at_ms: Option<i64>,
    ) {
        let key = (rule, container.map(str::to_owned), expected.clone());
        if let Some(&index) = self.seen.get(&key) {
            let violation = &mut self.violations[index];
            violation.occurrences += 1;
            // A violation is dated by the first time it was seen, whichever check saw it.
            violation.at_ms = match (violation.at_ms, at_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            return;
        }
        self.seen.insert(key, self.violations.len());
        self.violations.push(Violation {
            rule,
            container: container.map(str::to_owned),
            expected,
            observed,
            at_ms,
            occurrences: 1,
        });
    }
}

/// Violations in the order a user reads them to find the cause: by the time each was
/// first seen (undated ones last), and at equal times the cause before its symptoms.
fn in_reading_order(mut violations: Vec<Violation>) -> Vec<Violation> {
    // Stable: violations seen at the same time by the same kind of check keep the order
    // the checks found them in.
    violations.sort_by_key(|v| (v.at_ms.unwrap_or(i64::MAX), causal_rank(v.rule)));
    violations
}

/// Where a rule stands in the chain the kubelet follows: an instance ends (its process
/// exits, or a probe has it killed); the kubelet decides whether and when to start the
/// next one (restart policy, back-off, restart count); the container's status fields show
/// those decisions; the pod's phase, then its conditions, are derived from those fields.
/// A symptom downstream is seen no earlier than its cause, but often in the same
/// snapshot; this orders such ties.
fn causal_rank(rule: RuleId) -> u8 {
    let id = rule.as_str();
    match rule {
        RuleId::ContainerRunsToCompletion => 0,
        _ if id.starts_with("probe.") => 0,
        // What the kubelet did to stop a container, and the kill from outside, come before
        // what the status shows of it; the phase of a deleted pod is a phase.
        RuleId::TerminationPhase => 3,
        // A hook that misbehaves is why the stop around it goes wrong.
        _ if id.starts_with("hook.") => 0,
        _ if id.starts_with("termination.") => 1,
        _ if id.starts_with("fault.") => 1,
        RuleId::ContainerStateRunning | RuleId::ContainerRestartCount => 1,
        _ if id.starts_with("restart.") => 1,
        _ if id.starts_with("container.") => 2,
        _ if id.starts_with("phase.") => 3,
        _ => 4,
    }
}

pub(crate) fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn window_text(lo: i64, hi: i64) -> String {
    format!("[{}, {}]", secs(lo), secs(hi))
}

/// The started and ready flags of a status shown over `held` (spec ms since creation).
fn check_flags_held(
    out: &mut Collector,
    prediction: &Prediction,
    observed: &BTreeMap<&str, ObservedContainer>,
    status: &PodStatus,
    held: (i64, i64),
    tol: i64,
) {
    for cs in &all_statuses(status) {
        if let (Some(plan), Some(obs)) = (
            prediction.containers.iter().find(|p| p.name == cs.name),
            observed.get(cs.name.as_str()),
        ) {
            check_probe_flags_held(out, plan, obs, cs, held, tol);
        }
    }
}

/// The statuses of every container of the pod spec: init containers' and regular ones'
/// (names are unique across both lists).
pub fn all_statuses(status: &PodStatus) -> Vec<ContainerStatus> {
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .chain(status.ephemeral_container_statuses.iter().flatten())
        .cloned()
        .collect()
}

/// Each container is reported in the status list of its kind.
fn check_status_lists(out: &mut Collector, prediction: &Prediction, status: &PodStatus, t: i64) {
    let lists = [
        ("initContainerStatuses", &status.init_container_statuses),
        ("containerStatuses", &status.container_statuses),
        (
            "ephemeralContainerStatuses",
            &status.ephemeral_container_statuses,
        ),
    ];
    for (list, statuses) in lists {
        for cs in statuses.iter().flatten() {
            let Some(plan) = prediction.containers.iter().find(|p| p.name == cs.name) else {
                continue;
            };
            let expected = plan.kind.status_list();
            if expected != list {
                out.add(
                    match plan.kind {
                        ContainerKind::Ephemeral => RuleId::EphemeralStatus,
                        _ => RuleId::InitStatus,
                    },
                    Some(&cs.name),
                    format!("the container's status in {expected}"),
                    format!("its status in {list}"),
                    Some(t),
                );
            }
        }
    }
}

pub fn check(prediction: &Prediction, trace: &Trace) -> Verdict {
    let mut verdict = Verdict {
        scenario: prediction.scenario.clone(),
        target: trace.target.clone(),
        outcome: Outcome::Pass,
        violations: Vec::new(),
        error: None,
        rules: prediction.rules.clone(),
        timing_headroom_ms: None,
        ended_early: trace.ended_early.clone(),
    };
    if trace.snapshots.is_empty() {
        verdict.outcome = Outcome::Error;
        verdict.error = Some("the target showed no pod status at all".to_owned());
        return verdict;
    }
    let mut out = Collector {
        violations: Vec::new(),
        seen: BTreeMap::new(),
        headroom: None,
    };
    let tol = trace.timing.tolerance_ms as i64;
    // Nothing shows once the object is gone.
    let gone_at = trace
        .snapshots
        .iter()
        .find(|s| s.metadata.gone)
        .map(|s| trace.spec_ms(&s.at));
    let end = trace
        .spec_ms(&trace.ended_at)
        .min(gone_at.unwrap_or(i64::MAX));
    let names: Vec<&str> = prediction
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let spec: Vec<SpecContainer<'_>> = prediction
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.kind))
        .collect();
    let policy = prediction.restart_policy;
    let pod_has_init = spec.iter().any(|(_, kind)| kind.is_init());
    let mut observed: BTreeMap<&str, ObservedContainer> = names
        .iter()
        .map(|n| (*n, ObservedContainer::default()))
        .collect();
    let mut phases = PhaseWatch::new(policy, tol);
    let mut last_conditions: Vec<PodCondition> = Vec::new();

    let mut previous: Option<(i64, &PodStatus)> = None;
    for snapshot in trace.snapshots.iter().filter(|s| !s.metadata.gone) {
        let t = trace.spec_ms(&snapshot.at);
        // A status holds until the next one replaces it: the flags it shows must still be
        // what the probes allow just before that (a flip due between two snapshots).
        if let Some((since, before)) = previous.filter(|(since, _)| t - 1 > *since) {
            check_flags_held(&mut out, prediction, &observed, before, (since, t - 1), tol);
        }
        previous = Some((t, &snapshot.status));
        let status = &snapshot.status;
        let statuses = all_statuses(status);
        check_status_lists(&mut out, prediction, status, t);
        let phase = status.phase.clone().unwrap_or_default();
        for cs in &statuses {
            let plan = prediction.containers.iter().find(|p| p.name == cs.name);
            if let Some(obs) = observed.get_mut(cs.name.as_str()) {
                record_container(obs, cs, t, trace);
                check_container_snapshot(&mut out, obs, cs, plan, policy, pod_has_init, t);
                if let Some(plan) = plan {
                    check_probe_flags(&mut out, plan, obs, cs, t, tol);
                }
            }
            if let Some(plan) = plan {
                check_restart_count_bound(&mut out, plan, cs, t, tol);
            }
        }
        let deleted = snapshot.metadata.deletion_timestamp.is_some();
        phases.observe(&mut out, &spec, &statuses, &phase, deleted, t);
        if !statuses.is_empty() {
            check_conditions(
                &mut out,
                policy,
                &spec,
                &statuses,
                &phase,
                status.conditions.as_deref().unwrap_or(&[]),
                deleted,
                t,
            );
        }
        last_conditions = status.conditions.clone().unwrap_or_default();
    }

    // A trace that ended early shows only what is already certain: a disagreement still
    // going on counts once it has outlasted what it is allowed, and what may yet be shown
    // later is not missing.
    let so_far = trace.ended_early.is_some();
    // Once the object is gone nothing more shows: a phase held back until then has not
    // outlasted its lag unless it had by then (the removal's own timing is
    // termination.object-removed's).
    phases.report_lasting_mismatch(&mut out, (so_far || gone_at.is_some()).then_some(end), end);
    // The last status holds until observation ends (a flip that never came shows only here).
    if let Some((since, last)) = previous {
        check_flags_held(&mut out, prediction, &observed, last, (since, end), tol);
    }
    for plan in &prediction.containers {
        let Some(obs) = observed.get(plan.name.as_str()) else {
            continue;
        };
        let gate_opened = |gate: &StartGate| observed_gate(gate, &observed, trace);
        check_instances(&mut out, prediction, plan, obs, &gate_opened, tol, end);
    }

    for plan in &prediction.containers {
        if let Some(lines) = trace.logs.get(&plan.name) {
            check_liveness_log(&mut out, plan, lines);
            check_readiness_log(&mut out, plan, lines, trace);
            check_probe_cadence(&mut out, plan, lines, trace, tol);
        }
    }
    if !so_far {
        phases.check_running_shown(&mut out, prediction);
    }
    check_terminal(
        &mut out,
        prediction,
        &observed,
        phases.terminal.as_ref(),
        &last_conditions,
        termination::deletion_span(prediction, trace).map(|(_, acknowledged)| acknowledged),
        tol,
        end,
    );
    termination::check_termination(&mut out, prediction, trace, &observed, tol, end);
    init::check_sidecar_stops(&mut out, prediction, &observed, tol, end);
    init::check_process_namespaces(&mut out, prediction, trace);

    verdict.violations = in_reading_order(out.violations);
    verdict.timing_headroom_ms = out.headroom;
    if !verdict.violations.is_empty() {
        verdict.outcome = Outcome::Fail;
    }
    verdict
}
