//! Runs one scenario on one target: predict, create, observe (acting out the scenario's
//! fault schedule), check, clean up.

use crate::compile::compile;
use crate::errors::describe;
use crate::targets::{PodRef, Target, TargetError, TimingSlip};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::plan::AfterExit;
use podcheck_oracle::predict::SETTLE;
use podcheck_oracle::scenario::Fault;
use podcheck_oracle::{
    check, check_reported, predict, ActionRecord, ActionResult, Observation, Outcome, Prediction,
    RuleId, Run, Scenario, Trace, Verdict, Violation,
};
use podcheck_reports::CaseResult;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

fn wall_now() -> Time {
    Time(jiff::Timestamp::now())
}

fn spec_to_wall(spec_ms: u64, scale: f64) -> Duration {
    Duration::from_secs_f64(spec_ms as f64 / 1000.0 * scale)
}

fn plus(time: &Time, wall: Duration) -> Time {
    Time(time.0 + jiff::SignedDuration::try_from(wall).unwrap_or_default())
}

/// Whether the pod is in the state the prediction says it settles in (every container at
/// its last planned instance, running forever or terminated for good; a predicted
/// terminal phase reached). None for scenarios that never settle (crash loops).
fn settled(prediction: &Prediction, status: &PodStatus) -> bool {
    // Probe effects are timed from instance starts the harness does not track here: a
    // pod with probes is watched to its horizon, which the prediction sizes to them.
    if prediction
        .containers
        .iter()
        .any(|c| !c.settles || c.instances.iter().any(|i| i.probes.is_some()))
    {
        return false;
    }
    if let Some(phase) = prediction.terminal_phase {
        if status.phase.as_deref() != Some(phase) {
            return false;
        }
        // Wait for the sandbox teardown where the target reports it at all.
        let sandbox_up = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "PodReadyToStartContainers" && c.status != "False");
        if sandbox_up {
            return false;
        }
    }
    let statuses = status.container_statuses.as_deref().unwrap_or(&[]);
    prediction.containers.iter().all(|plan| {
        let Some(last) = plan.last() else { return true };
        let Some(cs) = statuses.iter().find(|s| s.name == plan.name) else {
            return false;
        };
        let state = cs.state.as_ref();
        cs.restart_count == last.index as i32
            && match (last.run, last.after_exit) {
                (Run::Forever, _) => state.and_then(|s| s.running.as_ref()).is_some(),
                (_, Some(AfterExit::StaysTerminated)) => {
                    state.and_then(|s| s.terminated.as_ref()).is_some()
                }
                _ => false,
            }
    })
}

/// Runs `scenario` on `target` and checks it. Target trouble becomes an error or skipped
/// verdict, never a semantic failure.
pub async fn run_case(
    target: &dyn Target,
    scenario: &Scenario,
    source: &str,
    keep_trace: bool,
) -> CaseResult {
    run_case_observing(target, scenario, source, keep_trace, Ending::Early).await
}

/// When a wall-clock observation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// At the first violation that nothing later can undo, or at the horizon.
    Early,
    /// At the horizon (or once the pod settled), whatever was seen before.
    AtHorizon,
}

/// How many times a case runs at most when its failures come with timing slips.
pub const MAX_ATTEMPTS: usize = 3;

/// How long after a timing slip (spec ms) a violation may be its effect: a probe that timed
/// out is followed by the kill within a period or two, and a stall by a late start within
/// its window.
const SLIP_REACH_MS: i64 = 10_000;

/// [`run_case`], observing until `ending`. A failing attempt whose every violation could be
/// the effect of a timing slip of the target's own (a stalled machine under a scaled clock)
/// is run again, up to [`MAX_ATTEMPTS`] in all: a correct target must not fail on timing
/// noise, and a wrong one fails every attempt, or fails where no slip explains it, so the
/// last attempt's verdict stands and the result says why the earlier ones were set aside.
pub async fn run_case_observing(
    target: &dyn Target,
    scenario: &Scenario,
    source: &str,
    keep_trace: bool,
    ending: Ending,
) -> CaseResult {
    let started = std::time::Instant::now();
    let mut reruns = Vec::new();
    loop {
        let (mut result, slips) = run_attempt(target, scenario, source, keep_trace, ending).await;
        if result.verdict.outcome != Outcome::Fail
            || slips.explaining.is_none()
            || reruns.len() + 1 >= MAX_ATTEMPTS
        {
            result.reruns = reruns;
            result.timing_slips = slips.all.iter().map(ToString::to_string).collect();
            result.wall_ms = started.elapsed().as_millis() as u64;
            return result;
        }
        reruns.push(set_aside(&result.verdict, reruns.len() + 1, &slips));
    }
}

/// Why a failing attempt was set aside and the case run again.
fn set_aside(verdict: &Verdict, attempt: usize, slips: &Slips) -> String {
    let rules: Vec<&str> = verdict
        .violated_rules()
        .into_iter()
        .map(RuleId::as_str)
        .collect();
    format!(
        "attempt {attempt} failed ({}) after {} timing slip(s) of the target; the first that could explain it: {}",
        rules.join(", "),
        slips.all.len(),
        slips
            .explaining
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    )
}

/// The target's timing slips while an attempt ran, and the first one that could explain
/// its failure, if slips explain every violation.
#[derive(Default)]
struct Slips {
    all: Vec<TimingSlip>,
    explaining: Option<TimingSlip>,
}

/// The first slip that precedes some violation of `verdict` by at most [`SLIP_REACH_MS`]
/// (the target's tolerance allowed for), provided every violation has such a slip before it:
/// None when some violation has none, as a wrong target's has. A violation without a time
/// could follow any slip.
fn explaining_slip(verdict: &Verdict, trace: &Trace, slips: &[TimingSlip]) -> Option<TimingSlip> {
    let tolerance = i64::try_from(trace.timing.tolerance_ms).unwrap_or(i64::MAX);
    let explains = |slip: &TimingSlip, violation: &Violation| {
        violation.at_ms.is_none_or(|at| {
            let since = at.saturating_sub(trace.spec_ms(&Time(slip.at)));
            since >= -tolerance && since <= SLIP_REACH_MS
        })
    };
    let all_explained = verdict
        .violations
        .iter()
        .all(|violation| slips.iter().any(|slip| explains(slip, violation)));
    if !all_explained {
        return None;
    }
    slips
        .iter()
        .find(|slip| verdict.violations.iter().any(|v| explains(slip, v)))
        .cloned()
}

/// One run of the case: its result, and the target's timing slips while it ran.
async fn run_attempt(
    target: &dyn Target,
    scenario: &Scenario,
    source: &str,
    keep_trace: bool,
    ending: Ending,
) -> (CaseResult, Slips) {
    let started = std::time::Instant::now();
    let target_name = target.name();
    let result = |verdict: Verdict, trace: Option<Trace>, manifest: Option<String>| CaseResult {
        verdict,
        source: source.to_owned(),
        description: scenario.description.clone(),
        wall_ms: started.elapsed().as_millis() as u64,
        manifest,
        trace: if keep_trace { trace } else { None },
        reruns: Vec::new(),
        timing_slips: Vec::new(),
        timeline: None,
    };
    // Ended before the pod ran long enough for timing to matter: no slips to weigh.
    let finish = |verdict, trace, manifest| (result(verdict, trace, manifest), Slips::default());
    let error = |message: String| Verdict::error(&scenario.name, &target_name, message);
    let prediction = match predict(scenario) {
        Ok(p) => p,
        Err(err) => return finish(error(format!("cannot predict: {err}")), None, None),
    };
    let timing = target.timing();
    let pod = compile(scenario, &target.agent_image(), timing.time_scale);
    let compiled = serde_saphyr::to_string(&pod).ok();
    let reference = match target.create(pod, &scenario.kubelet).await {
        Ok(r) => r,
        Err(TargetError::NotApplicable(reason)) => {
            return finish(
                Verdict::skipped(&scenario.name, &target_name, reason),
                None,
                None,
            )
        }
        // The pod passed validation as an API server does it: refusing it is the target's
        // divergence, not a harness problem.
        Err(err @ TargetError::Rejected(_)) => {
            return finish(
                rejected(scenario, &target_name, &prediction, &describe(&err)),
                None,
                compiled,
            )
        }
        Err(err) => {
            return finish(
                error(format!("failed to create the pod: {}", describe(&err))),
                None,
                compiled,
            )
        }
    };
    let manifest = match reference.applied.as_deref() {
        Some(applied) => serde_saphyr::to_string(applied).ok(),
        None => compiled,
    };
    let observed = observe_until(target, &reference, &prediction, &scenario.faults, ending).await;
    let mut trace = match observed {
        Ok(trace) => trace,
        Err(err) => {
            let _ = target.remove(&reference).await;
            return finish(
                error(format!("failed to observe the pod: {}", describe(&err))),
                None,
                manifest,
            );
        }
    };
    // Every container's log: init containers and sidecars, regular containers, and the
    // ephemeral containers the schedule added.
    let names = scenario
        .pod_containers()
        .into_iter()
        .map(|c| c.container.name.clone())
        .chain(
            scenario
                .ephemeral_containers()
                .into_iter()
                .map(|(_, name)| name),
        );
    for name in names {
        if let Ok(log) = target.logs(&reference, &name, false).await {
            trace
                .logs
                .insert(name.clone(), log.lines().map(str::to_owned).collect());
        }
    }
    if trace.ended_early.is_some() {
        // Log lines written after observation stopped are not part of what was seen.
        trace = trace.so_far(trace.spec_ms(&trace.ended_at));
    }
    let slips = target.timing_slips(&reference);
    let removed = target.remove(&reference).await;
    // What no Kubernetes implementation can report says the target is broken, not how its
    // semantics differ: an error naming the field, before anything is checked against the
    // prediction.
    let mut verdict = match (
        check_reported(&prediction, &trace),
        unperformed_action(&trace),
    ) {
        (Err(fault), _) => error(fault.to_string()),
        (Ok(()), Some((action, ActionResult::NotApplicable(reason)))) => {
            Verdict::skipped(&scenario.name, &target_name, format!("{action}: {reason}"))
        }
        (Ok(()), Some((action, ActionResult::Failed(reason)))) => {
            error(format!("failed to perform {action}: {reason}"))
        }
        (Ok(()), _) => check(&prediction, &trace),
    };
    if let Err(err) = removed {
        if verdict.error.is_none() {
            verdict.error = Some(format!(
                "failed to remove the pod afterwards: {}",
                describe(&err)
            ));
        }
    }
    let timeline = crate::timeline::timeline(&prediction, &trace, &verdict);
    let explaining = explaining_slip(&verdict, &trace, &slips);
    let mut case = result(verdict, Some(trace), manifest);
    case.timeline = Some(timeline);
    (
        case,
        Slips {
            all: slips,
            explaining,
        },
    )
}

/// The verdict on a target that refused a pod the oracle accepts.
fn rejected(scenario: &Scenario, target: &str, prediction: &Prediction, reason: &str) -> Verdict {
    Verdict {
        outcome: Outcome::Fail,
        error: None,
        rules: prediction.rules.clone(),
        violations: vec![Violation {
            rule: RuleId::PodAccepted,
            container: None,
            expected: "the pod is accepted (it passes the API server's validation)".to_owned(),
            observed: reason.to_owned(),
            at_ms: Some(0),
            occurrences: 1,
        }],
        ..Verdict::error(&scenario.name, target, String::new())
    }
}

/// The first fault action the target did not perform: without it the case shows nothing
/// about the scenario it was written for.
fn unperformed_action(trace: &Trace) -> Option<(String, ActionResult)> {
    trace
        .actions
        .iter()
        .find(|record| record.result != ActionResult::Done)
        .map(|record| (record.action.to_string(), record.result.clone()))
}

/// Asks the target to perform one fault action and records how it went.
async fn perform(
    target: &dyn Target,
    reference: &PodRef,
    fault: &Fault,
    requested_at: Time,
    virtual_clock: bool,
) -> ActionRecord {
    let outcome = target.act(reference, &fault.action).await;
    let acknowledged = if virtual_clock {
        requested_at.clone()
    } else {
        wall_now()
    };
    let (acknowledged_at, result) = match outcome {
        Ok(()) => (Some(acknowledged), ActionResult::Done),
        Err(TargetError::NotApplicable(reason)) => (None, ActionResult::NotApplicable(reason)),
        Err(err) => (None, ActionResult::Failed(describe(&err))),
    };
    ActionRecord {
        action: fault.action.clone(),
        due_ms: fault.at.as_millis(),
        requested_at,
        acknowledged_at,
        result,
    }
}

/// Watches the pod until the prediction's horizon: one loop over the target's
/// observations, the fault schedule's timers and the deadline, all in spec time scaled by
/// the target's time scale. A wall-clock target's settled pod is watched only a little
/// longer, once every fault is done; a virtual-clock target's time stamps are the clock.
pub async fn observe(
    target: &dyn Target,
    reference: &PodRef,
    prediction: &Prediction,
    faults: &[Fault],
) -> Result<Trace, TargetError> {
    observe_until(target, reference, prediction, faults, Ending::Early).await
}

/// [`observe`], ending as `ending` says.
pub async fn observe_until(
    target: &dyn Target,
    reference: &PodRef,
    prediction: &Prediction,
    faults: &[Fault],
    ending: Ending,
) -> Result<Trace, TargetError> {
    let timing = target.timing();
    let virtual_clock = target.capabilities().virtual_clock;
    let scale = timing.time_scale;
    let horizon = spec_to_wall(prediction.horizon.as_millis(), scale);
    let settle = spec_to_wall(SETTLE.as_millis() + timing.tolerance_ms, scale);
    let created = reference.created_at.clone();
    let mut schedule: VecDeque<&Fault> = {
        let mut faults: Vec<&Fault> = faults.iter().collect();
        faults.sort_by_key(|f| f.at);
        faults.into()
    };
    // Fault times count from the pod's creation, which lies a little in the past.
    let since_creation = jiff::Timestamp::now()
        .duration_since(created.0)
        .try_into()
        .unwrap_or(Duration::ZERO);
    let now = tokio::time::Instant::now();
    let creation = now.checked_sub(since_creation).unwrap_or(now);
    let due = |fault: &Fault| creation + spec_to_wall(fault.at.as_millis(), scale);
    let virtual_deadline = plus(&created, horizon);
    let wall_deadline = now + horizon;
    let mut trace = Trace {
        target: target.name(),
        timing,
        created_at: created.clone(),
        ended_at: created.clone(),
        snapshots: Vec::new(),
        events: Vec::new(),
        actions: Vec::new(),
        logs: BTreeMap::new(),
        ended_early: None,
    };
    let mut stream = target.watch(reference).await?;
    let mut stop_at = wall_deadline;
    let mut online = tokio::time::interval(ONLINE_CHECK_EVERY);
    online.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if virtual_clock {
            let next = stream
                .next()
                .await
                .filter(|observation| observation.at().0 <= virtual_deadline.0);
            let now = next.as_ref().map_or(&virtual_deadline, |o| o.at()).clone();
            while let Some(fault) = schedule.front().copied() {
                let requested_at = plus(&created, spec_to_wall(fault.at.as_millis(), scale));
                if requested_at.0 > now.0 {
                    break;
                }
                schedule.pop_front();
                let record = perform(target, reference, fault, requested_at, true).await;
                trace.actions.push(record);
            }
            match next {
                Some(observation) => record(&mut trace, observation),
                None => break,
            }
            continue;
        }
        let next_fault = schedule.front().copied();
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(next_fault.map_or(stop_at, due)), if next_fault.is_some() => {
                schedule.pop_front();
                if let Some(fault) = next_fault {
                    let record = perform(target, reference, fault, wall_now(), false).await;
                    trace.actions.push(record);
                }
            }
            next = stream.next() => {
                let Some(observation) = next else { break };
                let settles = matches!(
                    &observation,
                    Observation::Snapshot(snapshot) if settled(prediction, &snapshot.status)
                );
                if matches!(observation, Observation::Snapshot(_)) {
                    stop_at = if settles && schedule.is_empty() {
                        (tokio::time::Instant::now() + settle).min(wall_deadline)
                    } else {
                        wall_deadline
                    };
                }
                record(&mut trace, observation);
            }
            _ = online.tick(), if ending == Ending::Early => {
                if let Some((cut, reason)) = definite_violation(prediction, &trace) {
                    trace = trace.so_far(cut);
                    trace.ended_early = Some(reason);
                    return Ok(trace);
                }
            }
            _ = tokio::time::sleep_until(stop_at) => break,
        }
    }
    trace.ended_at = if virtual_clock {
        virtual_deadline
    } else {
        wall_now()
    };
    Ok(trace)
}

/// How often a wall-clock observation checks whether what it saw already fails.
const ONLINE_CHECK_EVERY: Duration = Duration::from_millis(250);

/// A violation the trace already shows for good (nothing later can undo it), or a report
/// no Kubernetes implementation can make, with the moment (spec ms since creation)
/// observation can stop and why. Only what happened up to one target tolerance ago counts:
/// a snapshot may arrive up to that late.
fn definite_violation(prediction: &Prediction, trace: &Trace) -> Option<(i64, String)> {
    let now = trace.spec_ms(&wall_now());
    let cut = now.saturating_sub(i64::try_from(trace.timing.tolerance_ms).unwrap_or(i64::MAX));
    if cut <= 0 || trace.snapshots.is_empty() {
        return None;
    }
    let so_far = trace.so_far(cut);
    // The same trace, cut at the same moment, is checked for it again once observation
    // stopped: the case's verdict names the fault.
    if let Err(fault) = check_reported(prediction, &so_far) {
        return Some((cut, format!("the target reported what cannot be: {fault}")));
    }
    let verdict = check(prediction, &so_far);
    if verdict.outcome != Outcome::Fail {
        return None;
    }
    let first = verdict.violations.first()?;
    let secs = |ms: i64| format!("{:.1}s", ms as f64 / 1000.0);
    Some((
        cut,
        format!(
            "{} was broken at {} and nothing later can undo it: observation stopped at {} of the {} horizon",
            first.rule,
            first.at_ms.map_or_else(|| secs(cut), secs),
            secs(cut),
            secs(prediction.horizon.as_millis() as i64)
        ),
    ))
}

fn record(trace: &mut Trace, observation: Observation) {
    match observation {
        Observation::Snapshot(snapshot) => trace.snapshots.push(snapshot),
        Observation::Event(event) => trace.events.push(event),
    }
}
