//! Instances and restarts: each planned instance starts, ends and is restarted inside its
//! window, anchored on the observed opening of its start gate (pod creation, the exit of
//! the instance before it); restart counts, last states, waiting and terminated reasons.

use super::probes::surprise_rule;
use super::{secs, window_text, Collector};
use crate::derive::{go_duration, terminated_reason};
use crate::plan::{
    crash_loop_state_sustained, AfterExit, ContainerPlan, InstancePlan, StartGate, STATUS_LAG,
};
use crate::predict::Prediction;
use crate::rules::RuleId;
use crate::scenario::ContainerKind;
use crate::scenario::RestartPolicy;
use crate::trace::Trace;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus};
use std::collections::BTreeMap;

#[derive(Default, Debug)]
pub(super) struct ObservedInstance {
    pub(super) started: Option<i64>,
    /// When a snapshot first showed it Running.
    pub(super) running_seen: Option<i64>,
    pub(super) finished: Option<i64>,
    pub(super) exit_code: Option<i32>,
    pub(super) reason: Option<String>,
}

#[derive(Default, Debug)]
pub(super) struct ObservedContainer {
    pub(super) instances: BTreeMap<u32, ObservedInstance>,
    /// First time a CrashLoopBackOff wait was seen after instance N, with its message.
    pub(super) crash_loop_waits: BTreeMap<u32, (i64, String)>,
    pub(super) max_restart_count: Option<i32>,
    /// When each restartCount was first seen.
    pub(super) restart_counts_seen: BTreeMap<i32, i64>,
    /// When a new instance was first seen without its restartCount growing.
    pub(super) uncounted_restart: Option<i64>,
    /// Whether the latest snapshot showed the container terminated (as opposed to
    /// running or waiting for a restart).
    pub(super) ends_terminated: bool,
    /// Whether the latest snapshot showed the container running.
    pub(super) ends_running: bool,
    /// The instance and ready flag the latest snapshot showed, and since when.
    pub(super) ready_since: Option<(u32, bool, i64)>,
}

pub(super) fn record_container(
    obs: &mut ObservedContainer,
    cs: &ContainerStatus,
    t: i64,
    trace: &Trace,
) {
    let rc = cs.restart_count;
    obs.ends_terminated = cs.state.as_ref().is_some_and(|s| s.terminated.is_some());
    obs.ends_running = cs.state.as_ref().is_some_and(|s| s.running.is_some());
    obs.max_restart_count = Some(obs.max_restart_count.map_or(rc, |m| m.max(rc)));
    obs.restart_counts_seen.entry(rc).or_insert(t);
    let Ok(index) = u32::try_from(rc) else { return };
    if obs
        .ready_since
        .is_none_or(|(i, ready, _)| (i, ready) != (index, cs.ready))
    {
        obs.ready_since = Some((index, cs.ready, t));
    }
    let state = cs.state.as_ref();
    if new_instance_uncounted(obs, cs, index) {
        obs.uncounted_restart.get_or_insert(t);
    }
    let waiting = state.and_then(|s| s.waiting.as_ref());
    // A created, not yet started container (Waiting with no reason) already carries the
    // new instance's restartCount; its lastState is the instance before.
    let created = waiting.is_some_and(|w| w.reason.as_deref().unwrap_or("").is_empty());
    let last_index = if waiting.is_some() && !created {
        Some(index)
    } else {
        index.checked_sub(1)
    };
    if let Some(running) = state.and_then(|s| s.running.as_ref()) {
        let entry = obs.instances.entry(index).or_default();
        entry.running_seen.get_or_insert(t);
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

/// Whether this status shows an instance after the one its restartCount names: running
/// (or terminated again) after instance N was seen to exit, still counted N; or holding a
/// previous instance in lastState while counted 0. Checked before the status is recorded.
fn new_instance_uncounted(obs: &ObservedContainer, cs: &ContainerStatus, index: u32) -> bool {
    let state = cs.state.as_ref();
    if state.is_none_or(|s| s.waiting.is_some()) {
        // Waiting out a back-off, the count still names the instance that exited.
        return false;
    }
    let has_last = cs
        .last_state
        .as_ref()
        .is_some_and(|s| s.terminated.is_some());
    let running_again = state.is_some_and(|s| s.running.is_some())
        && obs
            .instances
            .get(&index)
            .is_some_and(|i| i.finished.is_some());
    running_again || (index == 0 && has_last)
}

/// The latest instance seen to exit, if the plan keeps it terminated: a container shown
/// waiting or running again after it was restarted against the restart policy.
fn forbidden_restart<'p>(
    obs: &ObservedContainer,
    plan: &'p ContainerPlan,
) -> Option<&'p InstancePlan> {
    let (&index, _) = obs
        .instances
        .iter()
        .rev()
        .find(|(_, i)| i.finished.is_some())?;
    plan.instances
        .get(index as usize)
        .filter(|i| i.after_exit == Some(AfterExit::StaysTerminated))
}

fn no_restart_expected(instance: &InstancePlan, policy: RestartPolicy) -> String {
    format!(
        "no restart after exit code {} under restartPolicy {}",
        instance.end().map_or(0, |e| e.code),
        policy.as_str()
    )
}

pub(super) fn check_container_snapshot(
    out: &mut Collector,
    obs: &ObservedContainer,
    cs: &ContainerStatus,
    plan: Option<&ContainerPlan>,
    policy: RestartPolicy,
    pod_has_init: bool,
    t: i64,
) {
    let name = Some(cs.name.as_str());
    let state = cs.state.as_ref();
    let running = state.and_then(|s| s.running.as_ref()).is_some();
    // Probes decide both flags while the container runs (check_probe_flags); a container
    // that is not running is never started nor ready, probes or not, except a regular init
    // container that exited 0, which is ready from then on.
    let init = plan.is_some_and(|p| p.kind == ContainerKind::Init);
    let completed = state
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0);
    if init && completed {
        if !cs.ready || cs.started == Some(true) {
            out.add(
                RuleId::InitStatus,
                name,
                "ready=true started=false (init container exited 0)".to_owned(),
                format!("ready={} started={:?}", cs.ready, cs.started),
                Some(t),
            );
        }
    } else if !running && (cs.ready || cs.started == Some(true)) {
        out.add(
            RuleId::ContainerReadyNoProbe,
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
        let exited = obs.instances.values().any(|i| i.finished.is_some());
        if let Some(stays) = plan.and_then(|plan| forbidden_restart(obs, plan)) {
            // Waiting after an exit the policy keeps terminated: whatever the reason, the
            // container is waiting to be restarted, and that decision is what broke.
            out.add(
                policy.rule(),
                name,
                no_restart_expected(stays, policy),
                format!(
                    "Waiting reason {reason:?} after the exit of instance {}",
                    stays.index
                ),
                Some(t),
            );
        } else if exited && cs.restart_count == 0 && !has_last {
            // Past the first exit this is a wait to restart, not the first creation: the
            // exited instance is missing from lastState.
            out.add(
                RuleId::ContainerLastState,
                name,
                "lastState.terminated holds the exited instance while waiting to restart"
                    .to_owned(),
                format!("Waiting reason {reason:?} with no lastState"),
                Some(t),
            );
        } else if cs.restart_count == 0 && !has_last {
            // An empty reason is the state of a container created but not started yet
            // (convertToAPIContainerStatuses: ContainerStateCreated -> Waiting{}).
            // With init containers every container not yet created waits as
            // PodInitializing (convertToAPIContainerStatuses' default state).
            let (first_reason, rule) = if pod_has_init {
                ("PodInitializing", RuleId::InitStatus)
            } else {
                ("ContainerCreating", RuleId::ContainerStateWaitingCreating)
            };
            if reason != first_reason && !reason.is_empty() {
                out.add(
                    rule,
                    name,
                    format!("Waiting reason {first_reason} (or no reason once created) before the first start"),
                    format!("Waiting reason {reason:?}"),
                    Some(t),
                );
            }
        } else if reason != "CrashLoopBackOff"
            && !reason.is_empty()
            // The start failed in its PostStart hook (kuberuntime ErrPostStartHook).
            && !(reason == "PostStartHookError"
                && plan.is_some_and(|p| p.instances.iter().any(|i| i.post_start_kill.is_some())))
        {
            out.add(
                RuleId::ContainerStateWaitingCrashloop,
                name,
                "Waiting reason CrashLoopBackOff between an exit and the restart".to_owned(),
                format!("Waiting reason {reason:?}"),
                Some(t),
            );
        }
    }
    if running && cs.restart_count > 0 && !has_last {
        out.add(
            RuleId::ContainerLastState,
            name,
            "lastState.terminated holds the previous instance once restarted".to_owned(),
            format!("restartCount {} with no lastState", cs.restart_count),
            Some(t),
        );
    }
    // Recording this status changes nothing the test reads, so it gives the same answer
    // as before recording.
    let uncounted =
        u32::try_from(cs.restart_count).is_ok_and(|index| new_instance_uncounted(obs, cs, index));
    if uncounted {
        out.add(
            RuleId::ContainerRestartCount,
            name,
            "restartCount grows by one with every new instance".to_owned(),
            format!(
                "restartCount {} for an instance started after instance {} exited",
                cs.restart_count, cs.restart_count
            ),
            Some(t),
        );
    }
    if let Some(max) = obs.max_restart_count {
        if cs.restart_count < max {
            out.add(
                RuleId::ContainerRestartCount,
                name,
                format!("restartCount never decreases (was {max})"),
                format!("restartCount {}", cs.restart_count),
                Some(t),
            );
        }
    }
}

/// restartCount N cannot be seen before instance N could have started at the earliest.
///
/// This needs no per-instance time stamps, so it holds a target to its back-off even when
/// the harness cannot see every exit (a poller that misses short-lived states, a runtime
/// that reports no lastState). Observation times are never earlier than the events they
/// show, so the bound cannot fail a correct target.
pub(super) fn check_restart_count_bound(
    out: &mut Collector,
    plan: &ContainerPlan,
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
    let expected = terminated_reason(exit_code);
    if reason != Some(expected) {
        out.add(
            RuleId::ContainerStateTerminated,
            Some(name),
            format!("reason {expected} for exit code {exit_code}"),
            format!("reason {reason:?}"),
            Some(t),
        );
    }
}

/// When a start gate was seen to open, in spec milliseconds since creation; None while it
/// has not been seen.
pub(super) fn observed_gate(
    gate: &StartGate,
    observed: &BTreeMap<&str, ObservedContainer>,
    trace: &Trace,
) -> Option<i64> {
    match gate {
        // When the API server accepted the ephemeral container.
        StartGate::Added { name, .. } => trace
            .actions
            .iter()
            .find(|record| {
                matches!(&record.action, crate::scenario::FaultAction::AddEphemeralContainer { name: added, .. } if added == name)
                    && record.result == crate::trace::ActionResult::Done
            })
            .and_then(|record| record.acknowledged_at.as_ref())
            .map(|at| trace.spec_ms(at)),
        StartGate::PodCreated => Some(0),
        StartGate::Exited {
            container,
            instance,
        } => {
            observed
                .get(container.as_str())?
                .instances
                .get(instance)?
                .finished
        }
        // The sidecar's start: the wait for it to turn started is in the window after.
        StartGate::Started {
            container,
            instance,
        } => {
            observed
                .get(container.as_str())?
                .instances
                .get(instance)?
                .started
        }
    }
}

/// Each planned instance starts and ends inside its window; a start window is anchored at
/// the observed opening of the instance's start gate.
pub(super) fn check_instances(
    out: &mut Collector,
    prediction: &Prediction,
    plan: &ContainerPlan,
    obs: &ObservedContainer,
    gate_opened: &dyn Fn(&StartGate) -> Option<i64>,
    tol: i64,
    end: i64,
) {
    let name = Some(plan.name.as_str());
    let max_rc = i64::from(obs.max_restart_count.unwrap_or(-1));
    for instance in &plan.instances {
        let index = instance.index;
        let seen = obs.instances.get(&index);
        let anchor = gate_opened(&instance.start_gate);
        let (lo, hi) = (
            instance.start_after.0.as_millis() as i64,
            instance.start_after.1.as_millis() as i64,
        );
        let started = seen.and_then(|s| s.started);
        let waits_on_another = match &instance.start_gate {
            StartGate::PodCreated => false,
            StartGate::Exited { container, .. } => *container != plan.name,
            StartGate::Started { .. } => true,
            StartGate::Added { .. } => false,
        };
        if let (None, Some(s), true) = (anchor, started, waits_on_another) {
            let from = instance.start_gate.describe(&plan.name);
            out.add(
                instance.start_rule,
                name,
                format!("instance {index} starts only after {from}"),
                format!("started at {} while the {from} was not seen", secs(s)),
                Some(s),
            );
        }
        // A restartCount of 0 says nothing of the first instance: a container never started
        // shows it too.
        // An instance its failing PostStart hook has killed is never shown Running (its
        // kill is timed by the hook's rules).
        let not_counted_as_started = i64::from(index) > max_rc
            || (index == 0 && max_rc == 0 && instance.post_start_kill.is_none());
        if let Some(anchor) = anchor {
            let (min, max) = (anchor + lo - tol, anchor + hi + tol);
            let from = instance.start_gate.describe(&plan.name);
            match started {
                // A late start is broken once its window closed. The process of a
                // container with a PostStart hook starts late when it waited for the hook.
                Some(s) if s < min || s > max => out.add(
                    if s > max && index == 0 && instance.post_start.is_some() {
                        RuleId::HookPoststartConcurrent
                    } else {
                        instance.start_rule
                    },
                    name,
                    format!(
                        "instance {index} starts {} after {from}",
                        window_text(lo - tol, hi + tol)
                    ),
                    format!("started {} after {from}", secs(s - anchor)),
                    Some(s.min(max)),
                ),
                // Not started in time. A new instance shown under an old restartCount
                // was started but not counted; a container left terminated was never
                // going to be restarted: the restart policy was broken; one waiting out
                // a back-off broke the back-off. Broken when the window closed.
                // An instance with a PostStart hook shows only once the hook returned, or
                // once it is killed when the hook failed.
                None if end > max + shown_late_by(instance) && not_counted_as_started => {
                    out.add(
                        if index == 0 {
                            // container.state.running, or the rule of the gate it waits on.
                            instance.start_rule
                        } else if plan.kind == ContainerKind::Init && obs.ends_terminated {
                            // Left terminated after a failure: not retried.
                            RuleId::InitRetry
                        } else if plan.kind == ContainerKind::Sidecar && obs.ends_terminated {
                            RuleId::SidecarRestartAlways
                        } else if obs.uncounted_restart.is_some() {
                            RuleId::ContainerRestartCount
                        } else if obs.ends_terminated
                            && (crash_loop_state_sustained(instance.start_after.0)
                                || (instance.start_after.0.is_zero()
                                    && end - anchor > initial_back_off_wait(prediction)))
                        {
                            // A back-off too short to be sure to show Waiting may be waited
                            // out in the Terminated state: that is no sign of a broken policy,
                            // and neither is a missing immediate restart until a wrongly
                            // applied initial back-off would have ended.
                            prediction.restart_policy.rule()
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
                        Some(max),
                    )
                }
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
                let hook_rule = instance.post_start.as_ref().map(|call| {
                    if call.handler == crate::plan::termination::HookHandler::TcpSocket {
                        RuleId::HookHandlerTcpRefused
                    } else {
                        RuleId::HookPoststartFailureKills
                    }
                });
                let (early_rule, late_rules): (RuleId, Vec<RuleId>) = match (
                    instance.probes.as_ref().and_then(|p| p.kill.as_ref()),
                    hook_rule,
                ) {
                    (_, Some(rule)) if planned_end.post_start_failed => (rule, vec![rule]),
                    (Some((_, window)), _) => (window.early_rule, window.late_rules.clone()),
                    _ => (
                        RuleId::ContainerRunsToCompletion,
                        vec![RuleId::ContainerRunsToCompletion],
                    ),
                };
                let how = match planned_end.killed_by {
                    Some(kind) => format!("is killed by its {kind:?} probe"),
                    None if planned_end.post_start_failed => {
                        format!("is killed after its failing postStart hook (exit code {code})")
                    }
                    None => format!("exits with code {code}"),
                };
                if planned_end.cut {
                    // Stopped by a fault action: timed against the action (termination.rs).
                } else if let (Some(s), Some(f)) = (started, finished) {
                    let observed_code = seen.and_then(|x| x.exit_code);
                    if observed_code != Some(code) {
                        out.add(
                            RuleId::ContainerStateTerminated,
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
                        let rule =
                            if planned_end.killed_by.is_some() || planned_end.post_start_failed {
                                early_rule
                            } else if observed_code == Some(code)
                                && code != crate::probes::KILLED_EXIT_CODE
                            {
                                // The process's own exit code, only sooner: no probe killed it.
                                RuleId::ContainerRunsToCompletion
                            } else {
                                surprise_rule(instance, f - s)
                            };
                        out.add(rule, name, expected, observed, Some(f));
                    } else if f - s > hi + tol {
                        for &rule in &late_rules {
                            out.add(rule, name, expected.clone(), observed.clone(), Some(f));
                        }
                    } else {
                        out.inside(f - s, lo - tol, hi + tol);
                    }
                } else if let (Some(s), None) = (started, finished) {
                    let due = s + hi + tol + STATUS_LAG.as_millis() as i64;
                    if end > due && i64::from(index) >= max_rc {
                        for &rule in &late_rules {
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
                                Some(due),
                            );
                        }
                    }
                }
            }
            None => {
                if let Some(f) = finished {
                    out.add(
                        started.map_or(RuleId::ContainerRunsToCompletion, |s| {
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
                        RuleId::ContainerRunsToCompletion,
                        name,
                        format!("instance {index} keeps running (its process never exits)"),
                        format!("replaced by a new instance (restartCount {max_rc})"),
                        next_instance_seen(obs, index),
                    );
                }
            }
        }
        match instance.after_exit {
            Some(AfterExit::PodTerminating) if max_rc > i64::from(index) => {
                out.add(
                    RuleId::TerminationNoRestart,
                    name,
                    format!("instance {index} is not restarted: the pod is being deleted"),
                    format!("restartCount {max_rc}"),
                    next_instance_seen(obs, index),
                );
            }
            Some(AfterExit::PodCompleted) if max_rc > i64::from(index) => {
                out.add(
                    RuleId::SidecarStoppedAfterRegular,
                    name,
                    format!(
                        "instance {index} is not restarted: the pod's regular containers are done"
                    ),
                    format!("restartCount {max_rc}"),
                    next_instance_seen(obs, index),
                );
            }
            Some(AfterExit::StaysTerminated) if max_rc > i64::from(index) => {
                out.add(
                    match plan.kind {
                        ContainerKind::Ephemeral => RuleId::EphemeralNeverRestarted,
                        _ => prediction.restart_policy.rule(),
                    },
                    name,
                    no_restart_expected(instance, prediction.restart_policy),
                    format!("restartCount {max_rc}"),
                    next_instance_seen(obs, index),
                );
            }
            Some(
                after_exit @ (AfterExit::RestartAfterBackOff(back_off)
                | AfterExit::RestartWhenBackOffCollected { back_off, .. }),
            ) => {
                if let Some(f) = finished {
                    let earliest_restart = match after_exit {
                        AfterExit::RestartWhenBackOffCollected { after, .. } => after,
                        _ => back_off,
                    };
                    let next_start = obs.instances.get(&(index + 1)).and_then(|n| n.started);
                    let window_over =
                        next_start.is_some() || end > f + earliest_restart.as_millis() as i64;
                    let wait = obs.crash_loop_waits.get(&index);
                    let shown_back_off = go_duration(back_off);
                    let expected_message = format!(
                        "back-off {shown_back_off} restarting failed container={}",
                        plan.name
                    );
                    match wait {
                        // Only a back-off that outlasts the kubelet's requeue is sure to
                        // show its Waiting state for a while; a shorter one may show it
                        // for one relist or not at all.
                        // A restart before its window already breaks the back-off; the
                        // Waiting state it skipped is not a second cause.
                        None if window_over
                            && crash_loop_state_sustained(earliest_restart)
                            && next_start.is_none_or(|s| {
                                s >= f + earliest_restart.as_millis() as i64 - tol
                            }) => out.add(
                            RuleId::ContainerStateWaitingCrashloop,
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
                                        RuleId::RestartBackoffCap
                                    } else {
                                        RuleId::RestartBackoffDoubling
                                    }
                                }
                                _ => RuleId::ContainerStateWaitingCrashloop,
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

/// How long a restart waiting out the node's initial back-off may take.
fn initial_back_off_wait(prediction: &Prediction) -> i64 {
    let initial = prediction.back_off.initial;
    (initial + crate::plan::restart_slack(initial)).as_millis() as i64
}

/// When an instance after `index` was first seen: its start, or a restartCount past
/// `index`, whichever showed first.
fn next_instance_seen(obs: &ObservedContainer, index: u32) -> Option<i64> {
    let started = obs.instances.get(&(index + 1)).and_then(|i| i.started);
    let counted = obs
        .restart_counts_seen
        .range(i32::try_from(index).unwrap_or(i32::MAX).saturating_add(1)..)
        .map(|(_, &at)| at)
        .min();
    match (started, counted) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long after its start an instance may first show: SyncPod runs the PostStart hook
/// before it writes any status, so the start shows once the hook has returned, or with the
/// kill when the hook failed.
fn shown_late_by(instance: &crate::plan::InstancePlan) -> i64 {
    let lag = |at: crate::SpecDuration| (at + crate::plan::STATUS_LAG).as_millis() as i64;
    match (&instance.post_start_kill, &instance.post_start) {
        (Some(kill), _) => lag(kill.end.1),
        (None, Some(_)) => lag(instance.shown_running_after().1),
        (None, None) => 0,
    }
}
