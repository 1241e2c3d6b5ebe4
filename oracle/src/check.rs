//! `check`: compares what a target showed (a [`Trace`]) with a [`Prediction`].
//!
//! Three kinds of property, as in a state-machine test:
//! - *always*: every snapshot's phase, conditions and container fields must be what the
//!   kubelet derives from that snapshot's container states;
//! - *eventually*: every planned instance starts, exits and is restarted inside its window,
//!   measured from the observed event it depends on;
//! - *never*: a restart the policy forbids, a terminal phase left, a restartCount that drops.

use crate::duration::SpecDuration;
use crate::model::{self, AfterExit, STATUS_LAG};
use crate::predict::Prediction;
use crate::scenario::RestartPolicy;
use crate::trace::Trace;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, PodCondition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    pub rule: String,
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
    pub rules: Vec<String>,
    /// The smallest distance, in spec milliseconds, between a timing observation that
    /// passed and the edge of its window (target tolerance included): how close the run
    /// came to failing on timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing_headroom_ms: Option<i64>,
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
        }
    }

    pub fn skipped(scenario: &str, target: &str, reason: String) -> Verdict {
        Verdict {
            outcome: Outcome::Skipped,
            ..Verdict::error(scenario, target, reason)
        }
    }

    pub fn violated_rules(&self) -> BTreeSet<&str> {
        self.violations.iter().map(|v| v.rule.as_str()).collect()
    }
}

#[derive(Default, Debug)]
struct ObservedInstance {
    started: Option<i64>,
    finished: Option<i64>,
    exit_code: Option<i32>,
    reason: Option<String>,
}

#[derive(Default, Debug)]
struct ObservedContainer {
    instances: BTreeMap<u32, ObservedInstance>,
    /// First time a CrashLoopBackOff wait was seen after instance N, with its message.
    crash_loop_waits: BTreeMap<u32, (i64, String)>,
    max_restart_count: Option<i32>,
    /// Whether the latest snapshot showed the container terminated (as opposed to
    /// running or waiting for a restart).
    ends_terminated: bool,
}

struct PhaseMismatch {
    rule: &'static str,
    expected: String,
    observed: String,
    since: i64,
}

struct Collector {
    violations: Vec<Violation>,
    seen: BTreeMap<(String, Option<String>, String), usize>,
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
        rule: &str,
        container: Option<&str>,
        expected: String,
        observed: String,
        at_ms: Option<i64>,
    ) {
        let key = (
            rule.to_owned(),
            container.map(str::to_owned),
            expected.clone(),
        );
        if let Some(&index) = self.seen.get(&key) {
            self.violations[index].occurrences += 1;
            return;
        }
        self.seen.insert(key, self.violations.len());
        self.violations.push(Violation {
            rule: rule.to_owned(),
            container: container.map(str::to_owned),
            expected,
            observed,
            at_ms,
            occurrences: 1,
        });
    }
}

fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn window_text(lo: i64, hi: i64) -> String {
    format!("[{}, {}]", secs(lo), secs(hi))
}

pub fn check(prediction: &Prediction, trace: &Trace) -> Verdict {
    let mut verdict = Verdict {
        scenario: prediction.scenario.clone(),
        target: trace.target.clone(),
        outcome: Outcome::Pass,
        violations: Vec::new(),
        error: None,
        rules: prediction.rules.iter().map(|r| r.to_string()).collect(),
        timing_headroom_ms: None,
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
    let end = trace.spec_ms(&trace.ended_at);
    let names: Vec<&str> = prediction
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let policy = prediction.restart_policy;
    let mut observed: BTreeMap<&str, ObservedContainer> = names
        .iter()
        .map(|n| (*n, ObservedContainer::default()))
        .collect();
    let mut terminal: Option<(String, i64)> = None;
    let mut running_seen = false;
    let mut first_phase_seen: BTreeMap<String, i64> = BTreeMap::new();
    let mut last_conditions: Vec<PodCondition> = Vec::new();
    // A phase that disagrees with the container states only counts once the disagreement
    // outlasts the target's tolerance: a target that assembles its status from several
    // non-atomic reads (podman) may show a brief lag, and whether a poll catches it is
    // chance. A disagreement that lasts is reported every time.
    let mut phase_mismatch: Option<PhaseMismatch> = None;

    for snapshot in &trace.snapshots {
        let t = trace.spec_ms(&snapshot.at);
        let status = &snapshot.status;
        let statuses = status.container_statuses.clone().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_default();
        first_phase_seen.entry(phase.clone()).or_insert(t);
        if phase == "Running" {
            running_seen = true;
        }
        for cs in &statuses {
            let plan = prediction.containers.iter().find(|p| p.name == cs.name);
            if let Some(obs) = observed.get_mut(cs.name.as_str()) {
                record_container(obs, cs, t, trace);
                check_container_snapshot(&mut out, obs, cs, t);
                if let Some(plan) = plan {
                    check_probe_flags(&mut out, plan, obs, cs, t, tol);
                }
            }
            if let Some(plan) = plan {
                check_restart_count_bound(&mut out, plan, cs, t, tol);
            }
        }
        // Phase: derived from the same snapshot's container states; terminal is sticky.
        let derived = model::derive_phase(&names, &statuses, policy);
        if let Some((terminal_phase, since)) = &terminal {
            if &phase != terminal_phase {
                out.add(
                    "phase.terminal-never-left",
                    None,
                    format!("phase stays {terminal_phase} (reached at {})", secs(*since)),
                    format!("phase {phase:?}"),
                    Some(t),
                );
            }
        } else if phase != derived {
            let rule = phase_rule(derived, &phase, &statuses, policy);
            let since = phase_mismatch.as_ref().map_or(t, |m| m.since);
            let mismatch = PhaseMismatch {
                rule,
                expected: format!(
                    "phase {derived} for container states {}",
                    describe_states(&statuses)
                ),
                observed: format!("phase {phase:?}"),
                since,
            };
            if t - since >= tol {
                out.add(
                    mismatch.rule,
                    None,
                    mismatch.expected.clone(),
                    mismatch.observed.clone(),
                    Some(since),
                );
            }
            phase_mismatch = Some(mismatch);
        }
        if phase == derived || terminal.is_some() {
            if let Some(m) = phase_mismatch.take() {
                if t - m.since >= tol {
                    out.add(m.rule, None, m.expected, m.observed, Some(m.since));
                }
            }
        }
        if terminal.is_none() && model::is_terminal_phase(&phase) {
            terminal = Some((phase.clone(), t));
        }
        if !statuses.is_empty() {
            check_conditions(
                &mut out,
                &names,
                &statuses,
                &phase,
                status.conditions.as_deref().unwrap_or(&[]),
                t,
            );
        }
        last_conditions = status.conditions.clone().unwrap_or_default();
    }

    if let Some(m) = phase_mismatch {
        out.add(m.rule, None, m.expected, m.observed, Some(m.since));
    }
    // A status holds until the next one: the last one still has to be what the probes
    // allow when observation ends (a flip that never came shows only here).
    if let Some(last) = trace.snapshots.last() {
        for cs in last.status.container_statuses.iter().flatten() {
            if let (Some(plan), Some(obs)) = (
                prediction.containers.iter().find(|p| p.name == cs.name),
                observed.get(cs.name.as_str()),
            ) {
                check_probe_flags(&mut out, plan, obs, cs, end, tol);
            }
        }
    }
    for plan in &prediction.containers {
        let Some(obs) = observed.get(plan.name.as_str()) else {
            continue;
        };
        check_instances(&mut out, prediction, plan, obs, tol, end);
    }

    for plan in &prediction.containers {
        if let Some(lines) = trace.logs.get(&plan.name) {
            check_liveness_log(&mut out, plan, lines);
            check_readiness_log(&mut out, plan, lines, trace);
        }
    }
    if prediction.running_observable && !running_seen {
        out.add(
            "phase.running",
            None,
            "phase Running while the containers run".to_owned(),
            format!(
                "phases seen: {:?}",
                first_phase_seen.keys().collect::<Vec<_>>()
            ),
            None,
        );
    }
    check_terminal(
        &mut out,
        prediction,
        &observed,
        terminal.as_ref(),
        &last_conditions,
        tol,
        end,
    );

    verdict.violations = out.violations;
    verdict.timing_headroom_ms = out.headroom;
    if !verdict.violations.is_empty() {
        verdict.outcome = Outcome::Fail;
    }
    verdict
}

fn record_container(obs: &mut ObservedContainer, cs: &ContainerStatus, t: i64, trace: &Trace) {
    let rc = cs.restart_count;
    obs.ends_terminated = cs.state.as_ref().is_some_and(|s| s.terminated.is_some());
    obs.max_restart_count = Some(obs.max_restart_count.map_or(rc, |m| m.max(rc)));
    let Ok(index) = u32::try_from(rc) else { return };
    let state = cs.state.as_ref();
    let last_index = if state.and_then(|s| s.waiting.as_ref()).is_some() {
        Some(index)
    } else {
        index.checked_sub(1)
    };
    if let Some(running) = state.and_then(|s| s.running.as_ref()) {
        let entry = obs.instances.entry(index).or_default();
        if entry.started.is_none() {
            entry.started = Some(
                running
                    .started_at
                    .as_ref()
                    .map_or(t, |at| trace.spec_ms(at)),
            );
        }
    }
    let mut record_terminated = |index: u32, state: &ContainerState| {
        if let Some(terminated) = state.terminated.as_ref() {
            let entry = obs.instances.entry(index).or_default();
            if entry.started.is_none() {
                entry.started = terminated.started_at.as_ref().map(|at| trace.spec_ms(at));
            }
            if entry.finished.is_none() {
                entry.finished = Some(
                    terminated
                        .finished_at
                        .as_ref()
                        .map_or(t, |at| trace.spec_ms(at)),
                );
                entry.exit_code = Some(terminated.exit_code);
                entry.reason = terminated.reason.clone();
            }
        }
    };
    if let Some(state) = state {
        record_terminated(index, state);
    }
    if let (Some(last_index), Some(last)) = (last_index, cs.last_state.as_ref()) {
        record_terminated(last_index, last);
    }
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        if waiting.reason.as_deref() == Some("CrashLoopBackOff") {
            obs.crash_loop_waits
                .entry(index)
                .or_insert_with(|| (t, waiting.message.clone().unwrap_or_default()));
        }
    }
}

fn check_container_snapshot(
    out: &mut Collector,
    obs: &ObservedContainer,
    cs: &ContainerStatus,
    t: i64,
) {
    let name = Some(cs.name.as_str());
    let state = cs.state.as_ref();
    let running = state.and_then(|s| s.running.as_ref()).is_some();
    // Probes decide both flags while the container runs (check_probe_flags); a container
    // that is not running is never started nor ready, probes or not.
    if !running && (cs.ready || cs.started == Some(true)) {
        out.add(
            "container.ready.no-probe",
            name,
            "ready=false started=false (container not running)".to_owned(),
            format!("ready={} started={:?}", cs.ready, cs.started),
            Some(t),
        );
    }
    if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
        check_terminated_reason(
            out,
            &cs.name,
            terminated.exit_code,
            terminated.reason.as_deref(),
            t,
        );
    }
    if let Some(last) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
        check_terminated_reason(out, &cs.name, last.exit_code, last.reason.as_deref(), t);
    }
    let has_last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some();
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = waiting.reason.as_deref().unwrap_or("");
        if cs.restart_count == 0 && !has_last {
            if reason != "ContainerCreating" {
                out.add(
                    "container.state.waiting.creating",
                    name,
                    "Waiting reason ContainerCreating before the first start".to_owned(),
                    format!("Waiting reason {reason:?}"),
                    Some(t),
                );
            }
        } else if reason != "CrashLoopBackOff" {
            out.add(
                "container.state.waiting.crashloop",
                name,
                "Waiting reason CrashLoopBackOff between an exit and the restart".to_owned(),
                format!("Waiting reason {reason:?}"),
                Some(t),
            );
        }
    }
    if running && cs.restart_count > 0 && !has_last {
        out.add(
            "container.last-state",
            name,
            "lastState.terminated holds the previous instance once restarted".to_owned(),
            format!("restartCount {} with no lastState", cs.restart_count),
            Some(t),
        );
    }
    if let Some(max) = obs.max_restart_count {
        if cs.restart_count < max {
            out.add(
                "container.restart-count",
                name,
                format!("restartCount never decreases (was {max})"),
                format!("restartCount {}", cs.restart_count),
                Some(t),
            );
        }
    }
}

/// `started` and `ready` of a running container against what its probes allow at that
/// moment of its instance (timed from the instance's observed start).
fn check_probe_flags(
    out: &mut Collector,
    plan: &model::ContainerPlan,
    obs: &ObservedContainer,
    cs: &ContainerStatus,
    t: i64,
    tol: i64,
) {
    let running = cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some();
    if !running {
        return;
    }
    let name = Some(cs.name.as_str());
    let started = cs.started == Some(true);
    let Ok(index) = u32::try_from(cs.restart_count) else {
        return;
    };
    let instance = plan
        .instances
        .get(index as usize)
        .or_else(|| plan.instances.last().filter(|_| !plan.settles));
    let Some(probes) = instance.and_then(|i| i.probes.as_ref()) else {
        if !cs.ready || !started {
            out.add(
                "container.ready.no-probe",
                name,
                "ready=true started=true (running, no probes)".to_owned(),
                format!("ready={} started={:?}", cs.ready, cs.started),
                Some(t),
            );
        }
        return;
    };
    let Some(start) = obs.instances.get(&index).and_then(|i| i.started) else {
        return;
    };
    let at = t - start;
    let ms = |d: SpecDuration| d.as_millis() as i64;
    // Once the process may be gone (its exit, or the kill window), its readiness probe
    // may fail before the exit shows: ready=false is then always allowed.
    let ending = instance
        .and_then(|i| i.end())
        .is_some_and(|end| at >= ms(end.lo) - ms(crate::probes::PROBE_SLACK) - tol);
    // started
    match &probes.started {
        None if started => out.add(
            "probe.startup.started",
            name,
            format!("instance {index}: started=false (the startup probe does not succeed)"),
            format!("started=true {} after the start", secs(at)),
            Some(t),
        ),
        Some(window) if at < ms(window.lo) - tol && started => out.add(
            window.early_rule,
            name,
            format!(
                "instance {index}: started only from {} after the start",
                secs(ms(window.lo) - tol)
            ),
            format!("started=true {} after the start", secs(at)),
            Some(t),
        ),
        Some(window) if at > ms(window.hi) + tol && !started => {
            for rule in &window.late_rules {
                out.add(
                    rule,
                    name,
                    format!(
                        "instance {index}: started by {} after the start",
                        secs(ms(window.hi) + tol)
                    ),
                    format!("started=false {} after the start", secs(at)),
                    Some(t),
                );
            }
        }
        Some(window) if started && !window.hi.is_zero() && at <= ms(window.hi) + tol => {
            out.inside(at, ms(window.lo) - tol, ms(window.hi) + tol)
        }
        _ => {}
    }
    if cs.ready && !started {
        out.add(
            if probes.probes.startup.is_some() {
                "probe.startup.gates"
            } else {
                "container.ready.no-probe"
            },
            name,
            "ready only once started".to_owned(),
            "ready=true, started=false".to_owned(),
            Some(t),
        );
    }
    if probes.probes.readiness.is_none() {
        if cs.ready != started {
            out.add(
                "container.ready.no-probe",
                name,
                "without a readiness probe, ready exactly while started".to_owned(),
                format!("ready={} started={started}", cs.ready),
                Some(t),
            );
        }
        return;
    }
    if ending && !cs.ready {
        return;
    }
    // ready, flip by flip
    let mut value = false;
    for (position, flip) in probes.ready.iter().enumerate() {
        let (lo, hi) = (ms(flip.window.lo) - tol, ms(flip.window.hi) + tol);
        if at < lo {
            if cs.ready != value {
                out.add(
                    flip.window.early_rule,
                    name,
                    format!(
                        "instance {index}: ready={value} until {} after the start",
                        secs(lo)
                    ),
                    format!("ready={} {} after the start", cs.ready, secs(at)),
                    Some(t),
                );
            }
            return;
        }
        if at <= hi {
            if cs.ready == flip.to {
                out.inside(at, lo, hi);
            }
            return;
        }
        value = flip.to;
        if position + 1 == probes.ready.len() && cs.ready != value {
            for rule in &flip.window.late_rules {
                out.add(
                    rule,
                    name,
                    format!(
                        "instance {index}: ready={value} from {} after the start",
                        secs(hi)
                    ),
                    format!("ready={} {} after the start", cs.ready, secs(at)),
                    Some(t),
                );
            }
            return;
        }
    }
    if probes.ready.is_empty() && cs.ready {
        let errors = probes
            .probes
            .readiness
            .as_ref()
            .is_some_and(|r| r.always_errors());
        out.add(
            if errors {
                "probe.error-not-failure"
            } else {
                "probe.readiness.initial-failure"
            },
            name,
            format!("instance {index}: never ready (the readiness probe never succeeds)"),
            format!("ready=true {} after the start", secs(at)),
            Some(t),
        );
    }
}

/// The agent's JSON log lines, and the start (instance index) they belong to.
struct WorkloadLog {
    start: Option<u64>,
    events: Vec<serde_json::Value>,
}

impl WorkloadLog {
    fn parse(lines: &[String]) -> WorkloadLog {
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
fn answers<'a>(
    events: &'a [serde_json::Value],
    endpoint: &'a str,
) -> impl DoubleEndedIterator<Item = &'a serde_json::Value> + 'a {
    events.iter().filter(move |e| {
        field(e, "event") == Some("probe") && field(e, "endpoint") == Some(endpoint)
    })
}

fn field<'a>(event: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    event.get(name).and_then(|v| v.as_str())
}

/// The workload's own log shows each liveness probe it answered: a kill must follow
/// failureThreshold consecutive failed answers, whatever the timing looked like.
fn check_liveness_log(out: &mut Collector, plan: &model::ContainerPlan, lines: &[String]) {
    let log = WorkloadLog::parse(lines);
    let Some(index) = log.start else {
        return;
    };
    let Some(probes) = plan
        .instances
        .get(index as usize)
        .and_then(|i| i.probes.as_ref())
    else {
        return;
    };
    let (Some((crate::probes::ProbeKind::Liveness, _)), Some((endpoint, threshold))) =
        (&probes.kill, &probes.liveness_log)
    else {
        return;
    };
    let Some(killed) = log
        .events
        .iter()
        .position(|e| field(e, "event") == Some("signal"))
    else {
        return;
    };
    let failures = answers(&log.events[..killed], endpoint)
        .rev()
        .take_while(|e| field(e, "answer") != Some("ok"))
        .count();
    if failures < *threshold as usize {
        out.add(
            "probe.liveness.failure-threshold",
            Some(&plan.name),
            format!("instance {index} killed after {threshold} consecutive failed liveness probes"),
            format!("SIGTERM after {failures} consecutive failed answers of /{endpoint} (the workload's log)"),
            None,
        );
    }
}

/// The workload's log shows each readiness probe it answered: the first time a container
/// turns ready, successThreshold successful answers in a row must precede it. Only the
/// first instance is checked (a later one may continue a run its predecessor logged), and
/// answers are counted up to the moment the ready snapshot arrived plus the target's
/// tolerance, so a skewed clock can only weaken the check.
fn check_readiness_log(
    out: &mut Collector,
    plan: &model::ContainerPlan,
    lines: &[String],
    trace: &Trace,
) {
    let Some(first) = plan.instances.first() else {
        return;
    };
    let Some((endpoint, threshold)) = first.probes.as_ref().and_then(|p| p.readiness_log.clone())
    else {
        return;
    };
    let log = WorkloadLog::parse(lines);
    if log.start != Some(0) {
        return;
    }
    let Some(ready_at) = trace.snapshots.iter().find_map(|snapshot| {
        let status = snapshot
            .status
            .container_statuses
            .as_ref()?
            .iter()
            .find(|cs| cs.name == plan.name)?;
        (status.restart_count == 0 && status.ready).then(|| snapshot.at.0.as_millisecond())
    }) else {
        return;
    };
    let slack_ms = (trace.timing.tolerance_ms as f64 * trace.timing.time_scale).ceil() as i64;
    let successes = answers(&log.events, &endpoint)
        .filter(|e| {
            e.get("tsMs")
                .and_then(|v| v.as_i64())
                .is_some_and(|ts| ts <= ready_at + slack_ms)
        })
        .rev()
        .take_while(|e| field(e, "answer") == Some("ok"))
        .count();
    if successes < threshold as usize {
        out.add(
            "probe.readiness.transitions",
            Some(&plan.name),
            format!("instance 0 ready after {threshold} consecutive successful readiness probes"),
            format!("ready after {successes} consecutive successful answers of /{endpoint} (the workload's log)"),
            None,
        );
    }
}

/// The rule an unpredicted end of an instance breaks, given the probes that might have
/// caused it.
fn surprise_rule(instance: &model::InstancePlan, at: i64) -> &'static str {
    let Some(plan) = &instance.probes else {
        return "container.runs-to-completion";
    };
    let probes = &plan.probes;
    let ms = |d: SpecDuration| d.as_millis() as i64;
    let errors = [&probes.startup, &probes.liveness]
        .into_iter()
        .flatten()
        .any(|p| p.always_errors());
    if errors {
        "probe.error-not-failure"
    } else if probes.readiness.is_some() && !plan.liveness_fails && probes.startup.is_none() {
        "probe.readiness.no-restart"
    } else if probes.liveness.is_some()
        && probes.startup.is_some()
        && plan.started.as_ref().is_none_or(|w| at < ms(w.lo))
    {
        "probe.startup.gates"
    } else if plan.liveness_slow_success {
        "probe.timeout"
    } else if probes.liveness.is_some() && plan.liveness_fails {
        "probe.liveness.failure-threshold"
    } else if probes.readiness.is_some() {
        "probe.readiness.no-restart"
    } else if probes.startup.is_some() {
        "probe.startup.failure-restart"
    } else {
        "container.runs-to-completion"
    }
}

/// restartCount N cannot be seen before instance N could have started at the earliest.
///
/// This needs no per-instance time stamps, so it holds a target to its back-off even when
/// the harness cannot see every exit (a poller that misses short-lived states, a runtime
/// that reports no lastState). Observation times are never earlier than the events they
/// show, so the bound cannot fail a correct target.
fn check_restart_count_bound(
    out: &mut Collector,
    plan: &model::ContainerPlan,
    cs: &ContainerStatus,
    t: i64,
    tol: i64,
) {
    let Ok(index) = usize::try_from(cs.restart_count) else {
        return;
    };
    let Some(instance) = plan
        .instances
        .get(index)
        .or_else(|| plan.instances.last().filter(|_| !plan.settles))
    else {
        return;
    };
    let earliest = instance.earliest_start.as_millis() as i64;
    if index > 0 && t < earliest - tol {
        // Counts past the plan share one bound, so they collapse into one violation.
        let count = if index < plan.instances.len() {
            format!("{index}")
        } else {
            format!("{} or more", instance.index)
        };
        out.add(
            instance.start_rule,
            Some(&cs.name),
            format!(
                "restartCount {count} no earlier than {} after creation",
                secs(earliest - tol)
            ),
            format!("restartCount {index} at {}", secs(t)),
            Some(t),
        );
    }
}

fn check_terminated_reason(
    out: &mut Collector,
    name: &str,
    exit_code: i32,
    reason: Option<&str>,
    t: i64,
) {
    let expected = model::terminated_reason(exit_code);
    if reason != Some(expected) {
        out.add(
            "container.state.terminated",
            Some(name),
            format!("reason {expected} for exit code {exit_code}"),
            format!("reason {reason:?}"),
            Some(t),
        );
    }
}

fn phase_rule(
    derived: &str,
    observed: &str,
    statuses: &[ContainerStatus],
    policy: RestartPolicy,
) -> &'static str {
    let all_stopped = !statuses.is_empty()
        && statuses.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.running.as_ref())
                .is_none()
        });
    match derived {
        "Pending" => "phase.pending",
        "Succeeded" => "phase.succeeded",
        "Failed" => "phase.failed",
        _ if policy == RestartPolicy::Always
            && (all_stopped || model::is_terminal_phase(observed)) =>
        {
            "phase.always-never-terminal"
        }
        _ if policy == RestartPolicy::OnFailure && all_stopped => {
            "phase.onfailure-restarting-running"
        }
        _ => "phase.running",
    }
}

fn describe_states(statuses: &[ContainerStatus]) -> String {
    let parts: Vec<String> = statuses
        .iter()
        .map(|s| {
            let state = s.state.as_ref();
            let text = if state.and_then(|x| x.running.as_ref()).is_some() {
                "running".to_owned()
            } else if let Some(t) = state.and_then(|x| x.terminated.as_ref()) {
                format!("terminated({})", t.exit_code)
            } else if let Some(w) = state.and_then(|x| x.waiting.as_ref()) {
                format!("waiting({})", w.reason.as_deref().unwrap_or(""))
            } else {
                "unknown".to_owned()
            };
            format!("{}={text}", s.name)
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn check_conditions(
    out: &mut Collector,
    names: &[&str],
    statuses: &[ContainerStatus],
    phase: &str,
    conditions: &[PodCondition],
    t: i64,
) {
    let any_running = statuses.iter().any(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.running.as_ref())
            .is_some()
    });
    for expected in model::derive_conditions(names, statuses, phase, true) {
        let rule = match expected.type_ {
            "PodScheduled" => "condition.pod-scheduled",
            "PodReadyToStartContainers" => "condition.pod-ready-to-start-containers",
            "Initialized" => "condition.initialized",
            "ContainersReady" => "condition.containers-ready",
            _ => "condition.ready",
        };
        let found = conditions.iter().find(|c| c.type_ == expected.type_);
        // Sandbox state is not visible in container states: only demand it where a
        // running container proves the sandbox exists (the end of a terminal pod is
        // checked separately).
        if expected.type_ == "PodReadyToStartContainers" && !any_running {
            continue;
        }
        let matches = found.is_some_and(|c| {
            c.status == expected.status
                && (expected.type_ == "PodReadyToStartContainers"
                    || c.reason.as_deref() == expected.reason)
                && (expected.message.is_none() || c.message == expected.message)
        });
        if !matches {
            let describe = |c: &PodCondition| {
                format!(
                    "{}={} reason={:?}{}",
                    c.type_,
                    c.status,
                    c.reason.as_deref().unwrap_or(""),
                    c.message
                        .as_deref()
                        .map(|m| format!(" message={m:?}"))
                        .unwrap_or_default()
                )
            };
            out.add(
                rule,
                None,
                format!(
                    "{} in phase {phase} with containers {}",
                    describe(&expected.to_pod_condition()),
                    describe_states(statuses)
                ),
                found.map_or_else(|| format!("no {} condition", expected.type_), describe),
                Some(t),
            );
        }
    }
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str());
    let containers_ready = conditions
        .iter()
        .find(|c| c.type_ == "ContainersReady")
        .map(|c| c.status.as_str());
    if ready == Some("True") && containers_ready != Some("True") {
        out.add(
            "condition.ready",
            None,
            "Ready=True only with ContainersReady=True".to_owned(),
            format!("Ready=True, ContainersReady={containers_ready:?}"),
            Some(t),
        );
    }
}

fn check_instances(
    out: &mut Collector,
    prediction: &Prediction,
    plan: &model::ContainerPlan,
    obs: &ObservedContainer,
    tol: i64,
    end: i64,
) {
    let name = Some(plan.name.as_str());
    let max_rc = i64::from(obs.max_restart_count.unwrap_or(-1));
    for instance in &plan.instances {
        let index = instance.index;
        let seen = obs.instances.get(&index);
        let anchor = if index == 0 {
            Some(0)
        } else {
            obs.instances
                .get(&(index - 1))
                .and_then(|prev| prev.finished)
        };
        let (lo, hi) = (
            instance.start_after.0.as_millis() as i64,
            instance.start_after.1.as_millis() as i64,
        );
        let started = seen.and_then(|s| s.started);
        if let Some(anchor) = anchor {
            let (min, max) = (anchor + lo - tol, anchor + hi + tol);
            let from = if index == 0 {
                "pod creation".to_owned()
            } else {
                format!("exit of instance {}", index - 1)
            };
            match started {
                Some(s) if s < min || s > max => out.add(
                    instance.start_rule,
                    name,
                    format!(
                        "instance {index} starts {} after {from}",
                        window_text(lo - tol, hi + tol)
                    ),
                    format!("started {} after {from}", secs(s - anchor)),
                    Some(s),
                ),
                // Not started in time. A container left terminated was never going to
                // be restarted: the restart policy was broken; one waiting out a
                // back-off broke the back-off.
                None if end > max && i64::from(index) > max_rc => out.add(
                    if index == 0 {
                        "container.state.running"
                    } else if obs.ends_terminated {
                        policy_rule(prediction.restart_policy)
                    } else {
                        instance.start_rule
                    },
                    name,
                    format!(
                        "instance {index} starts {} after {from}",
                        window_text(lo - tol, hi + tol)
                    ),
                    format!(
                        "not started {} after {from} (restartCount {max_rc})",
                        secs(end - anchor)
                    ),
                    None,
                ),
                Some(s) => out.inside(s, min, max),
                _ => {}
            }
        }
        let finished = seen.and_then(|s| s.finished);
        match instance.end() {
            Some(planned_end) => {
                let (lo, hi) = (
                    planned_end.lo.as_millis() as i64,
                    planned_end.hi.as_millis() as i64,
                );
                let code = planned_end.code;
                let (early_rule, late_rules): (&str, Vec<&str>) =
                    match instance.probes.as_ref().and_then(|p| p.kill.as_ref()) {
                        Some((_, window)) => (window.early_rule, window.late_rules.clone()),
                        None => (
                            "container.runs-to-completion",
                            vec!["container.runs-to-completion"],
                        ),
                    };
                let how = match planned_end.killed_by {
                    Some(kind) => format!("is killed by its {kind:?} probe"),
                    None => format!("exits with code {code}"),
                };
                if let (Some(s), Some(f)) = (started, finished) {
                    let observed_code = seen.and_then(|x| x.exit_code);
                    if observed_code != Some(code) {
                        out.add(
                            "container.state.terminated",
                            name,
                            format!("instance {index} terminated with exit code {code}"),
                            format!(
                                "exit code {observed_code:?}, reason {:?}",
                                seen.and_then(|x| x.reason.clone())
                            ),
                            Some(f),
                        );
                    }
                    let expected = format!(
                        "instance {index} {how} {} after its start",
                        window_text(lo - tol, hi + tol)
                    );
                    let observed = format!("terminated after {}", secs(f - s));
                    if f - s < lo - tol {
                        let rule = if planned_end.killed_by.is_some() {
                            early_rule
                        } else {
                            surprise_rule(instance, f - s)
                        };
                        out.add(rule, name, expected, observed, Some(f));
                    } else if f - s > hi + tol {
                        for rule in &late_rules {
                            out.add(rule, name, expected.clone(), observed.clone(), Some(f));
                        }
                    } else {
                        out.inside(f - s, lo - tol, hi + tol);
                    }
                } else if let (Some(s), None) = (started, finished) {
                    let due = s + hi + tol + STATUS_LAG.as_millis() as i64;
                    if end > due && i64::from(index) >= max_rc {
                        for rule in &late_rules {
                            out.add(
                                rule,
                                name,
                                format!(
                                    "instance {index} {how} {} after its start",
                                    window_text(lo - tol, hi + tol)
                                ),
                                format!(
                                    "no termination reported {} after its start",
                                    secs(end - s)
                                ),
                                None,
                            );
                        }
                    }
                }
            }
            None => {
                if let Some(f) = finished {
                    out.add(
                        started.map_or("container.runs-to-completion", |s| {
                            surprise_rule(instance, f - s)
                        }),
                        name,
                        format!("instance {index} keeps running (its process never exits)"),
                        format!(
                            "terminated with exit code {:?}, reason {:?}",
                            seen.and_then(|x| x.exit_code),
                            seen.and_then(|x| x.reason.clone())
                        ),
                        Some(f),
                    );
                } else if i64::from(index) < max_rc {
                    out.add(
                        "container.runs-to-completion",
                        name,
                        format!("instance {index} keeps running (its process never exits)"),
                        format!("replaced by a new instance (restartCount {max_rc})"),
                        None,
                    );
                }
            }
        }
        match instance.after_exit {
            Some(AfterExit::StaysTerminated) if max_rc > i64::from(index) => {
                out.add(
                    policy_rule(prediction.restart_policy),
                    name,
                    format!(
                        "no restart after exit code {} under restartPolicy {}",
                        instance.end().map_or(0, |e| e.code),
                        prediction.restart_policy.as_str()
                    ),
                    format!("restartCount {max_rc}"),
                    None,
                );
            }
            Some(AfterExit::RestartAfterBackOff(back_off)) => {
                if let Some(f) = finished {
                    let next_start = obs.instances.get(&(index + 1)).and_then(|n| n.started);
                    let window_over = next_start.is_some() || end > f + back_off.as_millis() as i64;
                    let wait = obs.crash_loop_waits.get(&index);
                    let shown_back_off = model::go_duration(back_off);
                    let expected_message = format!(
                        "back-off {shown_back_off} restarting failed container={}",
                        plan.name
                    );
                    match wait {
                        None if window_over => out.add(
                            "container.state.waiting.crashloop",
                            name,
                            format!("Waiting CrashLoopBackOff between the exit of instance {index} and its restart ({expected_message} ...)"),
                            "no CrashLoopBackOff state shown".to_owned(),
                            Some(f),
                        ),
                        Some((at, message)) if !message.starts_with(&expected_message) => {
                            // The message names the back-off the kubelet waits: a wrong
                            // duration there is a wrong back-off, whatever the timing shows.
                            let shown = message
                                .strip_prefix("back-off ")
                                .and_then(|rest| rest.split_once(" restarting failed container="));
                            let rule = match shown {
                                Some((duration, _)) if duration != shown_back_off => {
                                    if back_off >= prediction.back_off.max {
                                        "restart.backoff.cap"
                                    } else {
                                        "restart.backoff.doubling"
                                    }
                                }
                                _ => "container.state.waiting.crashloop",
                            };
                            out.add(rule, name, format!("message starting {expected_message:?}"), format!("message {message:?}"), Some(*at));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

fn policy_rule(policy: RestartPolicy) -> &'static str {
    match policy {
        RestartPolicy::Never => "restart.policy.never",
        RestartPolicy::OnFailure => "restart.policy.onfailure",
        RestartPolicy::Always => "restart.policy.always",
    }
}

fn check_terminal(
    out: &mut Collector,
    prediction: &Prediction,
    observed: &BTreeMap<&str, ObservedContainer>,
    terminal: Option<&(String, i64)>,
    last_conditions: &[PodCondition],
    tol: i64,
    end: i64,
) {
    let lag = STATUS_LAG.as_millis() as i64;
    match (prediction.terminal_phase, terminal) {
        (Some(expected), _) => {
            let rule = if expected == "Succeeded" {
                "phase.succeeded"
            } else {
                "phase.failed"
            };
            // Anchor: the last final exit, when every container's final exit was seen.
            let anchor = prediction
                .containers
                .iter()
                .map(|plan| {
                    let last = plan.last()?.index;
                    observed
                        .get(plan.name.as_str())?
                        .instances
                        .get(&last)?
                        .finished
                })
                .collect::<Option<Vec<i64>>>()
                .and_then(|v| v.into_iter().max());
            if let Some(anchor) = anchor {
                match terminal {
                    Some((phase, at)) if phase != expected || *at > anchor + lag + tol => out.add(
                        rule,
                        None,
                        format!(
                            "phase {expected} within {} of the last exit",
                            secs(lag + tol)
                        ),
                        format!("phase {phase} {} after the last exit", secs(at - anchor)),
                        Some(*at),
                    ),
                    None if end > anchor + lag + tol => out.add(
                        rule,
                        None,
                        format!(
                            "phase {expected} within {} of the last exit",
                            secs(lag + tol)
                        ),
                        "no terminal phase".to_owned(),
                        None,
                    ),
                    _ => {}
                }
            }
            if let Some((_, at)) = terminal {
                if end > at + lag + tol {
                    let sandbox = last_conditions
                        .iter()
                        .find(|c| c.type_ == "PodReadyToStartContainers");
                    if sandbox.is_none_or(|c| c.status != "False") {
                        out.add(
                            "condition.pod-ready-to-start-containers",
                            None,
                            "PodReadyToStartContainers=False once the terminal pod's sandbox is torn down".to_owned(),
                            format!("{:?}", sandbox.map(|c| c.status.clone())),
                            Some(end),
                        );
                    }
                }
            }
        }
        (None, Some((phase, at))) => {
            let rule = if prediction.restart_policy == RestartPolicy::Always {
                "phase.always-never-terminal"
            } else {
                "phase.running"
            };
            out.add(
                rule,
                None,
                "no terminal phase".to_owned(),
                format!("phase {phase}"),
                Some(*at),
            );
        }
        (None, None) => {}
    }
}
