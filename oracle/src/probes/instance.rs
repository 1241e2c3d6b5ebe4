//! What the probes do to one instance: the windows in which it turns started and ready
//! and in which a probe kills it, planned for both extremes of how soon the process
//! listens, and the runs a probe worker carries over to the next instance.

use super::segments::{cross, first_of_its_outcome, may_continue, previous, Crossing};
use super::{
    Ambiguous, ContainerProbes, Handler, ProbeKind, ProbeModel, ProbeResult, Segment,
    LISTEN_LATENCY, PROBE_ACTION_LAG, PROBE_SLACK, PROBE_TIMING_MARGIN,
};
use crate::behaviour::{Answer, Health};
use crate::duration::SpecDuration;
use crate::rules::RuleId;
use serde::Serialize;

/// A window, relative to the instance's start, in which something happens, with the rule
/// broken if it happens earlier and the rules broken if it happens later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub lo: SpecDuration,
    pub hi: SpecDuration,
    pub early_rule: RuleId,
    pub late_rules: Vec<RuleId>,
}

/// `ready` turns `to` within the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flip {
    pub to: bool,
    pub window: Window,
}

/// What the probes do to one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbePlan {
    /// When `started` turns true; None: never, while this instance runs.
    pub started: Option<Window>,
    /// The flips of `ready`, in order; it starts false.
    pub ready: Vec<Flip>,
    /// The probe that kills the instance, and when its exit shows.
    pub kill: Option<(ProbeKind, Window)>,
    /// Which probe kinds could have killed or flipped anything: used to name the rule a
    /// surprise breaks.
    pub probes: ContainerProbes,
    /// Whether the liveness probe ever fails (with or without reaching its threshold).
    pub liveness_fails: bool,
    /// Whether some liveness answer is slow but in time.
    pub liveness_slow_success: bool,
    /// Whether some liveness failure is a dial retried until the timeout (a gRPC probe
    /// with nothing listening): a runtime that fails such a dial at once kills too soon.
    pub liveness_dial_waits: bool,
    /// The endpoint whose logged answers count the liveness failures before a kill, with
    /// the failure threshold: only when no other probe of the container asks it and every
    /// answer it gives is logged as what it is (no slow answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_log: Option<(String, u32)>,
    /// The same for the successes before the first time a readiness probe with a
    /// successThreshold above 1 makes the container ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_log: Option<(String, u32)>,
}

impl ProbePlan {
    /// The last moment any planned probe effect may still show.
    pub fn quiet_after(&self) -> SpecDuration {
        let mut at = SpecDuration::ZERO;
        if let Some(window) = &self.started {
            at = at.max(window.hi);
        }
        for flip in &self.ready {
            at = at.max(flip.window.hi);
        }
        if let Some((_, window)) = &self.kill {
            at = at.max(window.hi);
        }
        at
    }
}

/// The endpoint whose answers in the workload's log are exactly `probe`'s results: no
/// other probe of the container asks it, and every answer is logged as what it is (no
/// slow answers; TCP refusals are not logged at all).
fn logged_endpoint(
    probe: Option<&ProbeModel>,
    others: [&Option<ProbeModel>; 2],
    health: Option<&Health>,
) -> Option<String> {
    let probe = probe?;
    if probe.handler == Handler::Tcp {
        return None;
    }
    let endpoint = probe.endpoint()?;
    let shared = others
        .into_iter()
        .flatten()
        .any(|p| p.endpoint() == Some(endpoint));
    let slow = health?
        .endpoints
        .get(endpoint)?
        .answers
        .iter()
        .any(|a| matches!(a.answer, Answer::Slow(_)));
    (!shared && !slow).then(|| endpoint.to_owned())
}

fn liveness_log(probes: &ContainerProbes, health: Option<&Health>) -> Option<(String, u32)> {
    let liveness = probes.liveness.as_ref()?;
    logged_endpoint(Some(liveness), [&probes.startup, &probes.readiness], health)
        .map(|endpoint| (endpoint, liveness.failure_threshold))
}

/// Like [`liveness_log`], for a readiness probe that needs more than one success.
fn readiness_log(probes: &ContainerProbes, health: Option<&Health>) -> Option<(String, u32)> {
    let readiness = probes
        .readiness
        .as_ref()
        .filter(|r| r.success_threshold > 1)?;
    logged_endpoint(Some(readiness), [&probes.startup, &probes.liveness], health)
        .map(|endpoint| (endpoint, readiness.success_threshold))
}

/// Consecutive results possibly in progress when an instance ended, by probe kind: the
/// kubelet's worker keeps counting on the next container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carry {
    pub startup: ProbeResults,
    pub liveness: ProbeResults,
    pub readiness: ProbeResults,
}

/// A set of probe results (success, failure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeResults {
    pub success: bool,
    pub failure: bool,
}

impl ProbeResults {
    pub fn contains(self, outcome: ProbeResult) -> bool {
        match outcome {
            ProbeResult::Success => self.success,
            ProbeResult::Failure => self.failure,
            ProbeResult::Error => false,
        }
    }

    fn with(mut self, outcome: Option<ProbeResult>) -> Self {
        match outcome {
            Some(ProbeResult::Success) => self.success = true,
            Some(ProbeResult::Failure) => self.failure = true,
            _ => {}
        }
        self
    }

    fn union(self, other: ProbeResults) -> ProbeResults {
        ProbeResults {
            success: self.success || other.success,
            failure: self.failure || other.failure,
        }
    }
}

/// The rule broken by a crossing that comes too late: the probe kind's, and the handler's
/// or the timeout's that produced the outcome; the timeout's too when an attempt of the
/// segment before, timed out, may have held the first tick back.
fn late_rules(
    kind_rule: RuleId,
    probe: &ProbeModel,
    segment: &Segment,
    previous: Option<&Segment>,
) -> Vec<RuleId> {
    let cause = if segment.timed_out
        || (segment.outcome == ProbeResult::Success && segment.latency > SpecDuration::ZERO)
    {
        RuleId::ProbeTimeout
    } else {
        probe.handler.rule()
    };
    let mut rules = vec![kind_rule, cause];
    if cause != RuleId::ProbeTimeout && previous.is_some_and(|p| p.timed_out) {
        rules.push(RuleId::ProbeTimeout);
    }
    rules
}

/// The rule broken by a crossing that comes too early, given what held it back.
fn early_rule(
    default: RuleId,
    probe: &ProbeModel,
    segment: &Segment,
    started: Option<(SpecDuration, SpecDuration)>,
) -> RuleId {
    let gated_by_delay = probe.initial_delay > segment.from;
    let gated_by_startup =
        started.is_some_and(|(lo, _)| lo > segment.from.max(probe.initial_delay));
    if gated_by_startup {
        RuleId::ProbeStartupGates
    } else if gated_by_delay {
        RuleId::ProbeInitialDelay
    } else {
        default
    }
}

fn widen(window: (SpecDuration, SpecDuration)) -> (SpecDuration, SpecDuration) {
    (
        window.0.saturating_sub(PROBE_SLACK),
        window.1 + PROBE_SLACK + PROBE_ACTION_LAG,
    )
}

/// What the probes do to an instance whose own process exits at `exits_at` (None: never).
///
/// The process listens anywhere from at once to [`LISTEN_LATENCY`] after its start (or
/// its `listenAfter`): both extremes are planned, and they must agree on what happens;
/// the windows cover both.
pub fn plan_instance(
    probes: &ContainerProbes,
    health: Option<&Health>,
    carry: Carry,
    exits_at: Option<SpecDuration>,
) -> Result<(ProbePlan, Carry), Ambiguous> {
    let (fast, fast_carry) =
        plan_listening_after(probes, health, carry, exits_at, SpecDuration::ZERO)?;
    let (slow, slow_carry) = plan_listening_after(probes, health, carry, exits_at, LISTEN_LATENCY)?;
    let disagree = |what: &str| {
        Ambiguous(format!(
            "whether the process listens at once or up to {LISTEN_LATENCY} after it starts decides {what}"
        ))
    };
    // A late event breaks what either plan expected.
    let union = |a: &Window, b: &Window| Window {
        lo: a.lo.min(b.lo),
        hi: a.hi.max(b.hi),
        early_rule: a.early_rule,
        late_rules: a
            .late_rules
            .iter()
            .chain(&b.late_rules)
            .fold(Vec::new(), |mut rules, rule| {
                if !rules.contains(rule) {
                    rules.push(*rule);
                }
                rules
            }),
    };
    let started = match (&fast.started, &slow.started) {
        (None, None) => None,
        (Some(a), Some(b)) => Some(union(a, b)),
        _ => return Err(disagree("whether the container is started")),
    };
    let kill = match (&fast.kill, &slow.kill) {
        (None, None) => None,
        (Some((kind, a)), Some((other, b))) if kind == other => Some((*kind, union(a, b))),
        _ => return Err(disagree("whether a probe kills the container")),
    };
    if fast.ready.len() != slow.ready.len()
        || fast
            .ready
            .iter()
            .zip(&slow.ready)
            .any(|(a, b)| a.to != b.to)
    {
        return Err(disagree("when the container is ready"));
    }
    let ready = fast
        .ready
        .iter()
        .zip(&slow.ready)
        .map(|(a, b)| Flip {
            to: a.to,
            window: union(&a.window, &b.window),
        })
        .collect();
    let carry = Carry {
        startup: fast_carry.startup.union(slow_carry.startup),
        liveness: fast_carry.liveness.union(slow_carry.liveness),
        readiness: fast_carry.readiness.union(slow_carry.readiness),
    };
    Ok((
        ProbePlan {
            started,
            ready,
            kill,
            probes: fast.probes,
            liveness_fails: fast.liveness_fails || slow.liveness_fails,
            liveness_slow_success: fast.liveness_slow_success || slow.liveness_slow_success,
            liveness_dial_waits: fast.liveness_dial_waits || slow.liveness_dial_waits,
            liveness_log: fast.liveness_log.filter(|_| slow.liveness_log.is_some()),
            readiness_log: fast.readiness_log,
        },
        carry,
    ))
}

fn plan_listening_after(
    probes: &ContainerProbes,
    health: Option<&Health>,
    carry: Carry,
    exits_at: Option<SpecDuration>,
    latency: SpecDuration,
) -> Result<(ProbePlan, Carry), Ambiguous> {
    let mut plan = ProbePlan {
        started: None,
        ready: Vec::new(),
        kill: None,
        probes: probes.clone(),
        liveness_fails: probes.liveness.as_ref().is_some_and(|l| {
            l.segments(health, latency)
                .iter()
                .any(|s| s.outcome == ProbeResult::Failure)
        }),
        liveness_slow_success: probes
            .liveness
            .as_ref()
            .is_some_and(|l| l.has_slow_success(health)),
        liveness_dial_waits: probes.liveness.as_ref().is_some_and(|l| {
            l.segments(health, latency)
                .iter()
                .any(|s| s.outcome == ProbeResult::Failure && s.dial_retried)
        }),
        liveness_log: liveness_log(probes, health),
        readiness_log: readiness_log(probes, health),
    };
    if let Some(reason) = [&probes.startup, &probes.liveness, &probes.readiness]
        .into_iter()
        .flatten()
        .find_map(|p| p.ambiguity.clone())
    {
        return Err(Ambiguous(reason));
    }
    let mut carry_out = Carry::default();
    // The instance ends at its own exit or at a kill, whichever comes first.
    let mut end = exits_at;
    let mut kill_at: Option<(ProbeKind, (SpecDuration, SpecDuration), Window)> = None;

    // Startup: runs from its initial delay until it succeeds or fails for good.
    let started_internal: Option<(SpecDuration, SpecDuration)> = match &probes.startup {
        None => Some((SpecDuration::ZERO, SpecDuration::ZERO)),
        Some(startup) => {
            let gate = (startup.initial_delay, startup.initial_delay);
            let segments = startup.segments(health, latency);
            let mut started = None;
            for (index, segment) in segments.iter().enumerate() {
                if segment.outcome == ProbeResult::Error {
                    continue;
                }
                let carried = (first_of_its_outcome(&segments, index)
                    && carry.startup.contains(segment.outcome))
                    || may_continue(&segments, index, startup);
                match cross(
                    startup,
                    segment,
                    previous(&segments, index),
                    gate,
                    false,
                    carried,
                )? {
                    Crossing::Never => continue,
                    Crossing::At(lo, hi) if segment.outcome == ProbeResult::Success => {
                        started = Some((lo, hi));
                        plan.started = Some(Window {
                            lo: widen((lo, hi)).0,
                            hi: widen((lo, hi)).1,
                            early_rule: early_rule(
                                RuleId::ProbeStartupStarted,
                                startup,
                                segment,
                                None,
                            ),
                            late_rules: late_rules(
                                RuleId::ProbeStartupStarted,
                                startup,
                                segment,
                                previous(&segments, index),
                            ),
                        });
                        break;
                    }
                    Crossing::At(lo, hi) => {
                        let window = widen((lo, hi));
                        kill_at = Some((
                            ProbeKind::Startup,
                            (lo, hi),
                            Window {
                                lo: window.0,
                                hi: window.1,
                                early_rule: early_rule(
                                    RuleId::ProbeStartupFailureRestart,
                                    startup,
                                    segment,
                                    None,
                                ),
                                late_rules: late_rules(
                                    RuleId::ProbeStartupFailureRestart,
                                    startup,
                                    segment,
                                    previous(&segments, index),
                                ),
                            },
                        ));
                        break;
                    }
                }
            }
            started
        }
    };
    if probes.startup.is_none() {
        plan.started = Some(Window {
            lo: SpecDuration::ZERO,
            hi: SpecDuration::ZERO,
            early_rule: RuleId::ProbeStartupStarted,
            late_rules: vec![RuleId::ProbeStartupStarted],
        });
    }

    // Liveness: from its delay and the start, until it fails for good.
    if let (Some(liveness), Some(started), None) = (&probes.liveness, started_internal, &kill_at) {
        let gate = (
            liveness.initial_delay.max(started.0),
            liveness.initial_delay.max(started.1),
        );
        let segments = liveness.segments(health, latency);
        for (index, segment) in segments.iter().enumerate() {
            if segment.outcome != ProbeResult::Failure {
                continue;
            }
            let carried = (first_of_its_outcome(&segments, index)
                && carry.liveness.contains(ProbeResult::Failure))
                || may_continue(&segments, index, liveness);
            if let Crossing::At(lo, hi) = cross(
                liveness,
                segment,
                previous(&segments, index),
                gate,
                false,
                carried,
            )? {
                // The log shows the run only if every failure in it was answered (not a
                // refused connection) and logged on this instance.
                let answered = index >= 1
                    && segments[index - 1].outcome == ProbeResult::Success
                    && !carried
                    && health.is_some_and(|h| segment.from >= h.listen_after + latency)
                    && gate.0 <= segment.from;
                if !answered {
                    plan.liveness_log = None;
                }
                let window = widen((lo, hi));
                let startup_gate = probes.startup.as_ref().map(|_| started);
                kill_at = Some((
                    ProbeKind::Liveness,
                    (lo, hi),
                    Window {
                        lo: window.0,
                        hi: window.1,
                        early_rule: early_rule(
                            RuleId::ProbeLivenessFailureThreshold,
                            liveness,
                            segment,
                            startup_gate,
                        ),
                        late_rules: late_rules(
                            RuleId::ProbeLivenessRestart,
                            liveness,
                            segment,
                            previous(&segments, index),
                        ),
                    },
                ));
                break;
            }
        }
    }

    if let Some((kind, (lo, hi), window)) = kill_at {
        match exits_at {
            Some(exit) if exit + PROBE_TIMING_MARGIN + PROBE_SLACK < lo => {}
            Some(exit) if exit <= hi + PROBE_TIMING_MARGIN + PROBE_SLACK => {
                return Err(Ambiguous(format!(
                    "the process exits at {exit}, inside the window [{lo}, {hi}] in which the {kind:?} probe kills it"
                )));
            }
            _ => {
                // Readiness may still flip until the latest kill; after the earliest one the
                // checker accepts a container turning unready as it dies.
                end = Some(window.hi);
                plan.kill = Some((kind, window));
            }
        }
    }
    if plan.kill.is_some() {
        // The killed instance never reaches a later start.
        if matches!(plan.kill, Some((ProbeKind::Startup, _))) {
            plan.started = None;
        }
    }

    // Readiness: from its delay and the start; flips until the instance ends.
    if let (Some(readiness), Some(started)) = (&probes.readiness, started_internal) {
        let gate = (
            readiness.initial_delay.max(started.0),
            readiness.initial_delay.max(started.1),
        );
        let startup_gate = probes.startup.as_ref().map(|_| started);
        let segments = readiness.segments(health, latency);
        let mut cached = ProbeResult::Failure;
        let mut first = true;
        for (index, segment) in segments.iter().enumerate() {
            if end.is_some_and(|end| segment.from >= end) {
                break;
            }
            if segment.outcome == ProbeResult::Error || segment.outcome == cached {
                continue;
            }
            let carried = (first_of_its_outcome(&segments, index)
                && carry.readiness.contains(segment.outcome))
                || may_continue(&segments, index, readiness);
            let on_demand = segment.outcome == ProbeResult::Success;
            match cross(
                readiness,
                segment,
                previous(&segments, index),
                gate,
                on_demand,
                carried,
            )? {
                Crossing::Never => {}
                Crossing::At(lo, hi) => {
                    if end.is_some_and(|end| lo >= end) {
                        break;
                    }
                    let to = segment.outcome == ProbeResult::Success;
                    let default = if !to {
                        RuleId::ProbeReadinessTransitions
                    } else if first {
                        RuleId::ProbeReadinessInitialFailure
                    } else {
                        RuleId::ProbeReadinessTransitions
                    };
                    let window = widen((lo, hi));
                    plan.ready.push(Flip {
                        to,
                        window: Window {
                            lo: window.0,
                            hi: window.1,
                            early_rule: early_rule(default, readiness, segment, startup_gate),
                            late_rules: late_rules(
                                RuleId::ProbeReadinessTransitions,
                                readiness,
                                segment,
                                previous(&segments, index),
                            ),
                        },
                    });
                    cached = segment.outcome;
                    first = false;
                }
            }
        }
    }

    // What a worker may still be counting when the instance ends: the outcome of the
    // moment, and failures, since a worker probes a dead process until the kubelet sees
    // its exit (PLEG): an HTTP, TCP or gRPC probe then finds nothing listening, a failure.
    // Not an exec probe: CRI ExecSync on a stopped container is an error, which the worker
    // discards (docs/fidelity/probes.md §11). A kill puts liveness and startup on hold,
    // which zeroes their runs.
    if let Some(at) = end {
        let outcome_at = |probe: &Option<ProbeModel>, gate: SpecDuration| {
            let probe = probe.as_ref()?;
            if at < gate.max(probe.initial_delay) {
                return None;
            }
            probe
                .segments(health, latency)
                .iter()
                .find(|s| s.from <= at && s.until.is_none_or(|u| at < u))
                .map(|s| s.outcome)
                .filter(|o| *o != ProbeResult::Error)
        };
        let dying = |probe: &Option<ProbeModel>| ProbeResults {
            success: false,
            failure: probe.as_ref().is_some_and(|p| p.handler != Handler::Exec),
        };
        let started_from = started_internal.map(|(lo, _)| lo);
        if plan.kill.is_none() {
            if probes.startup.is_some() && started_internal.is_none_or(|(_, hi)| at <= hi) {
                carry_out.startup =
                    dying(&probes.startup).with(outcome_at(&probes.startup, SpecDuration::ZERO));
            }
            if let Some(from) = started_from {
                if outcome_at(&probes.liveness, from).is_some() {
                    carry_out.liveness =
                        dying(&probes.liveness).with(outcome_at(&probes.liveness, from));
                }
            }
        }
        if let Some(from) = started_from {
            if outcome_at(&probes.readiness, from).is_some() {
                carry_out.readiness =
                    dying(&probes.readiness).with(outcome_at(&probes.readiness, from));
            }
        }
        // A worker keeps its run across a restart (worker.go resets only onHold for a new
        // container ID): an instance that ends before its first probe may have come passes
        // the run it was handed on untouched.
        let maybe_unprobed = |probe: &Option<ProbeModel>, gate: Option<SpecDuration>| {
            probe.as_ref().is_some_and(|p| {
                gate.is_none_or(|gate| at < gate.max(p.initial_delay) + p.period + PROBE_SLACK)
            })
        };
        if plan.kill.is_none() {
            if maybe_unprobed(&probes.startup, Some(SpecDuration::ZERO)) {
                carry_out.startup = carry_out.startup.union(carry.startup);
            }
            if maybe_unprobed(&probes.liveness, started_from) {
                carry_out.liveness = carry_out.liveness.union(carry.liveness);
            }
        }
        if maybe_unprobed(&probes.readiness, started_from) {
            carry_out.readiness = carry_out.readiness.union(carry.readiness);
        }
    }
    Ok((plan, carry_out))
}
