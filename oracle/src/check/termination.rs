//! Termination: what a deletion does to the pod object (deletionTimestamp, removal,
//! finalizers), what a kill from outside does, and PostStart's timing; how the kubelet
//! stops each running container for a deletion is checked in `stop`.
//!
//! Windows count from the observed action: the harness's request and the target's
//! acknowledgement. The workload's log gives the order and spacing of what the process
//! saw (hook calls, SIGTERM); the container status gives when the process was gone.

use super::instances::ObservedContainer;
use super::stop::{check_probes_stop, check_stop};
use super::{secs, window_text, Collector};
use crate::plan::termination::{OBJECT_REMOVAL_LAG, SIGNAL_LAG};
use crate::plan::{CutCause, STATUS_LAG, TERMINAL_PHASE_LAG};
use crate::predict::{DeletionPrediction, Prediction};
use crate::rules::RuleId;
use crate::scenario::FaultAction;
use crate::trace::{ActionRecord, ActionResult, Trace, SPEC_MS_LIMIT};
use podcheck_wire::{Event, WorkloadLog};
use std::collections::BTreeMap;

/// The record of the scenario's `fault`th action: the harness performs actions in time
/// order, so records are matched by action and due time.
fn record_of<'t>(trace: &'t Trace, action: &FaultAction, due_ms: u64) -> Option<&'t ActionRecord> {
    trace
        .actions
        .iter()
        .find(|r| r.action == *action && r.due_ms == due_ms && r.result == ActionResult::Done)
}

/// The deletion the target performed.
fn deletion_record<'t>(
    deletion: &DeletionPrediction,
    trace: &'t Trace,
) -> Option<&'t ActionRecord> {
    trace
        .actions
        .iter()
        .find(|r| {
            matches!(
                r.action,
                FaultAction::Delete { .. } | FaultAction::ForceDelete
            ) && r.due_ms == deletion.deletion.at.as_millis()
        })
        .filter(|r| r.result == ActionResult::Done)
}

/// When the deletion was requested and acknowledged (spec ms since creation).
pub(super) fn deletion_span(prediction: &Prediction, trace: &Trace) -> Option<(i64, i64)> {
    let record = deletion_record(prediction.deletion.as_ref()?, trace)?;
    Some(span_of(trace, record))
}

fn span_of(trace: &Trace, record: &ActionRecord) -> (i64, i64) {
    let requested = trace.spec_ms(&record.requested_at);
    let acknowledged = record
        .acknowledged_at
        .as_ref()
        .map_or(requested, |at| trace.spec_ms(at));
    (requested, acknowledged.max(requested))
}

/// Spec ms since creation of a workload log time stamp, within the bounds of
/// [`Trace::spec_ms`] (a log line may carry any number).
pub(super) fn log_ms(trace: &Trace, ts_ms: u64) -> i64 {
    let created = trace.created_at.0.as_millisecond();
    let wall = i64::try_from(ts_ms)
        .unwrap_or(i64::MAX)
        .saturating_sub(created);
    let spec = (wall as f64 / trace.timing.time_scale.max(1e-9)).round() as i64;
    spec.clamp(-SPEC_MS_LIMIT, SPEC_MS_LIMIT)
}

pub(super) fn ms(d: crate::SpecDuration) -> i64 {
    d.as_millis() as i64
}

/// The deletion as the trace shows it: when it was requested and acknowledged, and up to
/// when the trace can tell (spec ms since creation), with the target's tolerance.
#[derive(Clone, Copy)]
pub(super) struct DeletionSeen<'t> {
    pub(super) trace: &'t Trace,
    pub(super) requested: i64,
    pub(super) acknowledged: i64,
    pub(super) tol: i64,
    pub(super) end: i64,
}

pub(super) fn check_termination(
    out: &mut Collector,
    prediction: &Prediction,
    trace: &Trace,
    observed: &BTreeMap<&str, ObservedContainer>,
    tol: i64,
    end: i64,
) {
    check_kills(out, prediction, trace, observed, tol);
    check_post_start(out, prediction, trace, observed, tol);
    let Some(deletion) = &prediction.deletion else {
        return;
    };
    let Some(record) = deletion_record(deletion, trace) else {
        return;
    };
    let (requested, acknowledged) = span_of(trace, record);
    let gone_at = trace
        .snapshots
        .iter()
        .find(|s| s.metadata.gone)
        .map(|s| trace.spec_ms(&s.at));
    if deletion.object_gone_at_once() {
        check_gone_at_once(out, gone_at, acknowledged, tol, end);
        return;
    }
    let seen = DeletionSeen {
        trace,
        requested,
        acknowledged,
        tol,
        end,
    };
    check_deletion_metadata(out, deletion, trace, requested, acknowledged, tol, end);
    // A container's stop is not due past the object's removal.
    let until_gone = DeletionSeen {
        end: end.min(gone_at.unwrap_or(i64::MAX)),
        ..seen
    };
    let mut last_stop: Option<i64> = None;
    // A container the deletion stops that has not been seen stopping yet (a trace cut
    // short): nothing after the stop is due.
    let mut still_stopping = false;
    for plan in &prediction.containers {
        for instance in &plan.instances {
            let Some(cut) = &instance.cut else { continue };
            let CutCause::Deleted(stop) = &cut.cause else {
                continue;
            };
            let Some(obs) = observed.get(plan.name.as_str()) else {
                continue;
            };
            let finished = obs.instances.get(&instance.index).and_then(|i| i.finished);
            let code = obs.instances.get(&instance.index).and_then(|i| i.exit_code);
            check_stop(
                out,
                until_gone,
                &plan.name,
                instance.index,
                stop,
                finished.zip(code),
            );
            match finished {
                Some(f) => last_stop = Some(last_stop.map_or(f, |l: i64| l.max(f))),
                None => still_stopping = true,
            }
        }
        check_probes_stop(out, plan, trace, acknowledged, tol);
    }
    // Containers that were not running when the pod was deleted stop nothing.
    let stopped_by = if still_stopping {
        end
    } else {
        last_stop.unwrap_or(acknowledged)
    };
    check_removal(out, seen, deletion, observed, stopped_by, gone_at);
}

/// A force delete without finalizers: the API object is gone at once.
fn check_gone_at_once(
    out: &mut Collector,
    gone_at: Option<i64>,
    acknowledged: i64,
    tol: i64,
    end: i64,
) {
    let due = acknowledged + ms(STATUS_LAG) + tol;
    match gone_at {
        Some(at) if at > due => out.add(
            RuleId::TerminationForceDelete,
            None,
            format!(
                "the pod object removed within {} of the force delete",
                secs(ms(STATUS_LAG) + tol)
            ),
            format!("removed {} after it", secs(at - acknowledged)),
            Some(at),
        ),
        None if end > due => out.add(
            RuleId::TerminationForceDelete,
            None,
            format!(
                "the pod object removed within {} of the force delete",
                secs(ms(STATUS_LAG) + tol)
            ),
            format!("still there {} after it", secs(end - acknowledged)),
            Some(due),
        ),
        _ => {}
    }
}

/// deletionTimestamp and deletionGracePeriodSeconds as the API server sets them.
fn check_deletion_metadata(
    out: &mut Collector,
    deletion: &DeletionPrediction,
    trace: &Trace,
    requested: i64,
    acknowledged: i64,
    tol: i64,
    end: i64,
) {
    let grace = deletion.api_grace_seconds();
    let grace_ms = grace * 1000;
    let mut seen = false;
    for snapshot in trace.snapshots.iter().filter(|s| !s.metadata.gone) {
        let t = trace.spec_ms(&snapshot.at);
        let Some(stamp) = &snapshot.metadata.deletion_timestamp else {
            if seen {
                out.add(
                    RuleId::TerminationDeletionTimestamp,
                    None,
                    "deletionTimestamp kept once set".to_owned(),
                    "deletionTimestamp gone again".to_owned(),
                    Some(t),
                );
            }
            continue;
        };
        let at = trace.spec_ms(stamp);
        if t < requested - tol {
            out.add(
                RuleId::TerminationDeletionTimestamp,
                None,
                format!(
                    "no deletionTimestamp before the delete at {}",
                    secs(requested)
                ),
                format!("deletionTimestamp set at {}", secs(t)),
                Some(t),
            );
        }
        seen = true;
        let shown_grace = snapshot.metadata.deletion_grace_period_seconds;
        // The kubelet's final delete of a pod with finalizers sets grace 0 and moves the
        // timestamp by the grace it takes away (registry/rest/delete.go BeforeDelete:
        // `old - oldGrace + newGrace`, the request's time), which kubernetes#122646 clamps
        // to the time of that update when it lies in the past: anywhere from the request
        // to the update.
        let final_delete = shown_grace == Some(0) && grace != 0;
        let (lo, hi, expected_grace) = if final_delete {
            (requested - tol, t + tol, 0)
        } else {
            (
                requested + grace_ms - tol,
                acknowledged + grace_ms + tol,
                grace,
            )
        };
        // A timestamp carries whole seconds on the wire: a target that truncates them
        // covers that with its tolerance.
        if at < lo || at > hi || shown_grace != Some(expected_grace) {
            out.add(
                RuleId::TerminationDeletionTimestamp,
                None,
                format!(
                    "deletionTimestamp {} after creation and deletionGracePeriodSeconds {expected_grace}",
                    window_text(lo, hi)
                ),
                format!(
                    "deletionTimestamp {} after creation, deletionGracePeriodSeconds {shown_grace:?}",
                    secs(at)
                ),
                Some(t),
            );
        }
    }
    let due = acknowledged + ms(STATUS_LAG) + tol;
    if !seen && end > due && trace.snapshots.iter().any(|s| !s.metadata.gone) {
        let gone_before = trace
            .snapshots
            .iter()
            .find(|s| s.metadata.gone)
            .is_some_and(|s| trace.spec_ms(&s.at) <= due);
        if !gone_before {
            out.add(
                RuleId::TerminationDeletionTimestamp,
                None,
                format!(
                    "deletionTimestamp shown within {} of the delete",
                    secs(ms(STATUS_LAG) + tol)
                ),
                "no deletionTimestamp shown".to_owned(),
                Some(due),
            );
        }
    }
}

/// The object goes once its containers stopped and its terminal phase is written, when no
/// finalizer is left; never before.
fn check_removal(
    out: &mut Collector,
    seen: DeletionSeen<'_>,
    deletion: &DeletionPrediction,
    observed: &BTreeMap<&str, ObservedContainer>,
    stopped_by: i64,
    gone_at: Option<i64>,
) {
    let DeletionSeen {
        trace, tol, end, ..
    } = seen;
    let cleared = deletion.finalizers_cleared_at();
    // The acknowledged removal of the last finalizer, where one was removed.
    let cleared_ack = match cleared {
        Some(at) if at.is_zero() => Some(i64::MIN),
        Some(at) => deletion
            .finalizer_removals
            .iter()
            .filter(|(_, _, removed_at)| *removed_at == at)
            .filter_map(|(_, name, removed_at)| {
                record_of(
                    trace,
                    &FaultAction::RemoveFinalizer {
                        finalizer: name.clone(),
                    },
                    removed_at.as_millis(),
                )
            })
            .map(|r| span_of(trace, r).1)
            .max(),
        None => None,
    };
    let terminal_at = trace
        .snapshots
        .iter()
        .filter(|s| !s.metadata.gone)
        .find(|s| {
            s.status
                .phase
                .as_deref()
                .is_some_and(crate::derive::is_terminal_phase)
        })
        .map(|s| trace.spec_ms(&s.at));
    // Nothing runs: a container never started (waiting while the pod initialized, or an
    // ephemeral container never added) has nothing to stop.
    let all_stopped = !observed.values().any(|o| o.ends_running);
    if let Some(gone) = gone_at {
        let left: Vec<String> = trace
            .snapshots
            .iter()
            .rev()
            .find(|s| !s.metadata.gone)
            .map(|s| s.metadata.finalizers.clone())
            .unwrap_or_default();
        let removal_acked = cleared_ack.is_some_and(|ack| ack <= gone + tol);
        if !left.is_empty() && !removal_acked {
            out.add(
                RuleId::TerminationFinalizers,
                None,
                format!("the object kept while finalizers {left:?} remain"),
                format!("removed at {}", secs(gone)),
                Some(gone),
            );
        } else if cleared_ack.is_none() && !deletion.deletion.finalizers.is_empty() {
            out.add(
                RuleId::TerminationFinalizers,
                None,
                format!(
                    "the object kept until finalizers {:?} are removed",
                    deletion.deletion.finalizers
                ),
                format!("removed at {}", secs(gone)),
                Some(gone),
            );
        }
        // With no grace left (a force delete), the object goes with its last finalizer,
        // whatever the node is doing.
        let graceful = deletion.api_grace_seconds() != 0;
        if graceful && (!all_stopped || terminal_at.is_none_or(|t| t > gone)) {
            out.add(
                RuleId::TerminationObjectRemoved,
                None,
                "the object removed only after every container stopped and the terminal phase was written".to_owned(),
                format!(
                    "removed at {} ({})",
                    secs(gone),
                    if all_stopped { "no terminal phase shown" } else { "a container had not stopped" }
                ),
                Some(gone),
            );
        }
    }
    // When the object must be gone by.
    let removal = if deletion.api_grace_seconds() == 0 {
        i64::MIN
    } else {
        stopped_by + ms(TERMINAL_PHASE_LAG) + ms(OBJECT_REMOVAL_LAG) + tol
    };
    let Some(cleared_ack) = cleared_ack else {
        return;
    };
    let due = removal.max(cleared_ack.saturating_add(ms(STATUS_LAG) + tol));
    if gone_at.is_none() && end > due {
        let rule = if deletion.deletion.finalizers.is_empty() || cleared_ack < removal {
            RuleId::TerminationObjectRemoved
        } else {
            RuleId::TerminationFinalizers
        };
        out.add(
            rule,
            None,
            format!(
                "the object removed by {} (its containers stopped by {}{})",
                secs(due),
                secs(stopped_by),
                if deletion.deletion.finalizers.is_empty() {
                    String::new()
                } else {
                    format!(", its last finalizer removed at {}", secs(cleared_ack))
                }
            ),
            format!("still there at {}", secs(end)),
            Some(due),
        );
    }
}

/// A container killed from outside shows exit 137, reason Error, at the kill.
fn check_kills(
    out: &mut Collector,
    prediction: &Prediction,
    trace: &Trace,
    observed: &BTreeMap<&str, ObservedContainer>,
    tol: i64,
) {
    for plan in &prediction.containers {
        for instance in &plan.instances {
            let Some(cut) = instance
                .cut
                .as_ref()
                .filter(|c| c.cause == CutCause::Killed)
            else {
                continue;
            };
            let action = FaultAction::KillContainer {
                container: plan.name.clone(),
            };
            let Some(record) = record_of(trace, &action, cut.action_at.as_millis()) else {
                continue;
            };
            let (requested, acknowledged) = span_of(trace, record);
            let seen = observed
                .get(plan.name.as_str())
                .and_then(|o| o.instances.get(&instance.index));
            let Some(finished) = seen.and_then(|s| s.finished) else {
                continue;
            };
            let (lo, hi) = (requested - tol, acknowledged + ms(SIGNAL_LAG) + tol);
            let code = seen.and_then(|s| s.exit_code);
            // The reason is container.state.terminated's (check_terminated_reason).
            if code != Some(cut.code) || finished < lo || finished > hi {
                out.add(
                    RuleId::FaultKillContainer,
                    Some(&plan.name),
                    format!(
                        "instance {} terminated with exit code {} {} after the kill",
                        instance.index,
                        cut.code,
                        window_text(lo - requested, hi - requested)
                    ),
                    format!("exit code {code:?} {} after it", secs(finished - requested)),
                    Some(finished),
                );
            }
        }
    }
}

/// PostStart runs concurrently with the entrypoint, and the container is shown Running only
/// once the hook has returned.
fn check_post_start(
    out: &mut Collector,
    prediction: &Prediction,
    trace: &Trace,
    observed: &BTreeMap<&str, ObservedContainer>,
    tol: i64,
) {
    for plan in &prediction.containers {
        let Some(obs) = observed.get(plan.name.as_str()) else {
            continue;
        };
        // When the workload answered each hook call of its latest instance.
        let answers: Vec<(u32, String, i64)> = trace
            .logs
            .get(&plan.name)
            .map(|lines| {
                let log = WorkloadLog::parse(lines);
                let start = log.events().start();
                log.events()
                    .iter()
                    .filter_map(|e| match (&e.event, start) {
                        (Event::HookEnded { name, .. }, Some(index)) => {
                            Some((index, name.clone(), log_ms(trace, e.ts_ms)))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for instance in &plan.instances {
            let Some(call) = &instance.post_start else {
                continue;
            };
            let seen = obs.instances.get(&instance.index);
            if let (Some(started), Some(shown)) = (
                seen.and_then(|s| s.started),
                seen.and_then(|s| s.running_seen),
            ) {
                // The hook's own answer where the workload logged it; otherwise no sooner
                // than its scripted time after the process started.
                let answered = call.handler.logged_name().and_then(|name| {
                    answers
                        .iter()
                        .find(|(index, n, _)| *index == instance.index && n == name)
                        .map(|(_, _, at)| *at)
                });
                let earliest = answered.unwrap_or(started + ms(call.takes)) - tol;
                if shown < earliest {
                    out.add(
                        RuleId::HookPoststartRunningAfter,
                        Some(&plan.name),
                        format!(
                            "instance {} shown Running once its postStart hook ({}) has returned, not before {} after its start",
                            instance.index,
                            call.takes,
                            secs(earliest + tol - started)
                        ),
                        format!("Running {} after its start", secs(shown - started)),
                        Some(shown),
                    );
                }
            }
        }
        // The workload's log of its latest instance: the entrypoint ran before the hook's
        // answer. A hook that takes no time cannot tell the order.
        let Some(lines) = trace.logs.get(&plan.name) else {
            continue;
        };
        let log = WorkloadLog::parse(lines);
        let events = log.events().since_last_start();
        let Some((index, started)) = events.iter().find_map(|e| match &e.event {
            Event::Start { start, .. } => Some((*start, e.ts_ms)),
            _ => None,
        }) else {
            continue;
        };
        let Some(call) = plan
            .instances
            .get(index as usize)
            .and_then(|i| i.post_start.as_ref())
            .filter(|c| c.takes >= crate::SpecDuration::from_secs(1))
        else {
            continue;
        };
        let Some(name) = call.handler.logged_name() else {
            continue;
        };
        // The lines of the whole log: the hook call may come before the start line.
        let answered = log.events().iter().find_map(|e| match &e.event {
            Event::HookEnded { name: n, .. } if n == name => Some(e.ts_ms),
            _ => None,
        });
        if let Some(answered) = answered.filter(|a| *a < started) {
            out.add(
                RuleId::HookPoststartConcurrent,
                Some(&plan.name),
                format!("instance {index}'s entrypoint started before its postStart hook returned"),
                format!(
                    "the hook answered {} before the entrypoint started (the workload's log)",
                    secs(log_ms(trace, started) - log_ms(trace, answered))
                ),
                Some(log_ms(trace, answered)),
            );
        }
    }
}
