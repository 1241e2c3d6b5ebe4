//! Termination: what a deletion does to the pod object (deletionTimestamp, removal,
//! finalizers), how the kubelet stops each running container (PreStop, SIGTERM, SIGKILL
//! within the grace period), which probes stop; and what a kill from outside does.
//!
//! Windows count from the observed action: the harness's request and the target's
//! acknowledgement. The workload's log gives the order and spacing of what the process
//! saw (hook calls, SIGTERM); the container status gives when the process was gone.

use super::instances::ObservedContainer;
use super::{secs, window_text, Collector};
use crate::plan::termination::{
    HookHandler, StopPlan, DELETION_NOTICED_WITHIN, HOOK_LAG, OBJECT_REMOVAL_LAG, SIGNAL_LAG,
};
use crate::plan::{CutCause, STATUS_LAG, TERMINAL_PHASE_LAG};
use crate::predict::{DeletionPrediction, Prediction};
use crate::probes::{Handler, PROBE_SLACK};
use crate::rules::RuleId;
use crate::scenario::FaultAction;
use crate::trace::{ActionRecord, ActionResult, Trace};
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

/// Spec ms since creation of a workload log time stamp.
pub(super) fn log_ms(trace: &Trace, ts_ms: u64) -> i64 {
    let created = trace.created_at.0.as_millisecond();
    let wall = i64::try_from(ts_ms)
        .unwrap_or(i64::MAX)
        .saturating_sub(created);
    (wall as f64 / trace.timing.time_scale.max(1e-9)).round() as i64
}

fn ms(d: crate::SpecDuration) -> i64 {
    d.as_millis() as i64
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
    check_deletion_metadata(out, deletion, trace, requested, acknowledged, tol, end);
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
                &plan.name,
                instance.index,
                stop,
                (requested, acknowledged),
                finished.zip(code),
                trace.logs.get(&plan.name).map(Vec::as_slice),
                trace,
                tol,
                end.min(gone_at.unwrap_or(i64::MAX)),
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
    check_removal(
        out, deletion, trace, observed, stopped_by, gone_at, tol, end,
    );
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

/// How one running container was stopped for the deletion.
#[allow(clippy::too_many_arguments)]
fn check_stop(
    out: &mut Collector,
    name: &str,
    index: u32,
    stop: &StopPlan,
    (requested, acknowledged): (i64, i64),
    finished: Option<(i64, i32)>,
    lines: Option<&[String]>,
    trace: &Trace,
    tol: i64,
    end: i64,
) {
    let container = Some(name);
    let noticed = ms(DELETION_NOTICED_WITHIN);
    let (lo, hi) = (
        requested + ms(stop.end.0) - tol,
        acknowledged + noticed + ms(stop.end.1) + tol,
    );
    let how = if stop.killed {
        "is killed with SIGKILL".to_owned()
    } else {
        format!("exits with code {}", stop.exit_code)
    };
    let (early_rule, late_rule) = match (&stop.pre_stop, stop.killed) {
        (Some(pre_stop), true) if pre_stop.cut_off => (
            RuleId::TerminationMinimumGrace,
            RuleId::TerminationPrestopInGrace,
        ),
        (Some(_), true) => (
            RuleId::TerminationGracePeriod,
            RuleId::TerminationPrestopInGrace,
        ),
        (None, true) if stop.grace_seconds < 2 => (
            RuleId::TerminationMinimumGrace,
            RuleId::TerminationGracePeriod,
        ),
        (None, true) => (
            RuleId::TerminationGracePeriod,
            RuleId::TerminationGracePeriod,
        ),
        (Some(_), false) => (RuleId::TerminationPrestopFirst, RuleId::TerminationSigterm),
        (None, false) => (RuleId::TerminationSigterm, RuleId::TerminationSigterm),
    };
    let expected = format!(
        "instance {index} {how} {} after the delete request",
        window_text(lo - requested, hi - requested)
    );
    let prestop_fails = stop.pre_stop.as_ref().is_some_and(|p| p.call.fails);
    let late_rule = if prestop_fails {
        RuleId::HookPrestopFailureContinues
    } else {
        late_rule
    };
    match finished {
        Some((f, code)) => {
            if code != stop.exit_code {
                let rule = if prestop_fails {
                    RuleId::HookPrestopFailureContinues
                } else if stop.exit_code == crate::plan::termination::SIGKILL_EXIT_CODE
                    || code == crate::plan::termination::SIGKILL_EXIT_CODE
                {
                    RuleId::TerminationGracePeriod
                } else {
                    RuleId::TerminationSigterm
                };
                out.add(
                    rule,
                    container,
                    format!(
                        "instance {index} stopped for the deletion with exit code {}",
                        stop.exit_code
                    ),
                    format!("exit code {code}"),
                    Some(f),
                );
            }
            if f < lo {
                out.add(
                    early_rule,
                    container,
                    expected,
                    format!("gone {} after it", secs(f - requested)),
                    Some(f),
                );
            } else if f > hi {
                out.add(
                    late_rule,
                    container,
                    expected,
                    format!("gone {} after it", secs(f - requested)),
                    Some(f),
                );
            } else {
                out.inside(f, lo, hi);
            }
        }
        None if end > hi + ms(STATUS_LAG) => out.add(
            late_rule,
            container,
            expected,
            format!("still not terminated {} after it", secs(end - requested)),
            Some(hi + ms(STATUS_LAG)),
        ),
        None => {}
    }
    if let Some(lines) = lines {
        check_stop_log(
            out,
            name,
            stop,
            (requested, acknowledged),
            finished.map(|f| f.0),
            lines,
            trace,
            tol,
        );
    }
}

/// The rule of a hook handler kind.
fn handler_rule(handler: &HookHandler) -> RuleId {
    match handler {
        HookHandler::Exec { .. } => RuleId::HookHandlerExec,
        HookHandler::Http { .. } => RuleId::HookHandlerHttp,
        HookHandler::Sleep(_) => RuleId::HookHandlerSleep,
        HookHandler::TcpSocket => RuleId::HookHandlerTcpRefused,
    }
}

/// The order and spacing of what the workload saw of its stop: the PreStop call, SIGTERM,
/// and (from the status) when it was gone.
#[allow(clippy::too_many_arguments)]
fn check_stop_log(
    out: &mut Collector,
    name: &str,
    stop: &StopPlan,
    (requested, acknowledged): (i64, i64),
    finished: Option<i64>,
    lines: &[String],
    trace: &Trace,
    tol: i64,
) {
    let container = Some(name);
    let log = WorkloadLog::parse(lines);
    let events = log.events().since_last_start();
    if events.is_empty() {
        return;
    }
    let noticed = ms(DELETION_NOTICED_WITHIN);
    let after_request = |ts: u64| log_ms(trace, ts) >= requested - tol;
    let hook_name = stop
        .pre_stop
        .as_ref()
        .and_then(|p| p.call.handler.logged_name().map(str::to_owned));
    let mut hook_started = None;
    let mut hook_ended = None;
    let mut sigterm = None;
    for event in events.iter().filter(|e| after_request(e.ts_ms)) {
        match &event.event {
            Event::HookStarted { name, .. } if Some(name) == hook_name.as_ref() => {
                hook_started.get_or_insert(log_ms(trace, event.ts_ms));
            }
            Event::HookEnded { name, .. } if Some(name) == hook_name.as_ref() => {
                hook_ended.get_or_insert(log_ms(trace, event.ts_ms));
            }
            Event::Signal { .. } => {
                sigterm.get_or_insert(log_ms(trace, event.ts_ms));
            }
            _ => {}
        }
    }
    // PreStop first: called once the deletion is seen, and SIGTERM only after its answer.
    if let (Some(pre_stop), Some(_)) = (&stop.pre_stop, &hook_name) {
        let call_due = acknowledged + noticed + ms(HOOK_LAG) + tol;
        match (hook_started, sigterm) {
            (Some(called), Some(signalled)) if signalled < called => out.add(
                RuleId::TerminationPrestopFirst,
                container,
                "the preStop hook called before SIGTERM".to_owned(),
                format!(
                    "SIGTERM at {}, the hook called at {}",
                    secs(signalled),
                    secs(called)
                ),
                Some(signalled),
            ),
            (None, Some(signalled)) => out.add(
                handler_rule(&pre_stop.call.handler),
                container,
                "the preStop hook called before SIGTERM".to_owned(),
                format!(
                    "SIGTERM at {} without a hook call before it",
                    secs(signalled)
                ),
                Some(signalled),
            ),
            (Some(called), _) if called > call_due => out.add(
                RuleId::TerminationPrestopFirst,
                container,
                format!(
                    "the preStop hook called within {} of the delete",
                    secs(call_due - requested)
                ),
                format!("called {} after it", secs(called - requested)),
                Some(called),
            ),
            _ => {}
        }
        if let (Some(answered), Some(signalled), false) = (hook_ended, sigterm, pre_stop.cut_off) {
            if signalled < answered {
                out.add(
                    RuleId::TerminationPrestopFirst,
                    container,
                    "SIGTERM once the preStop hook has completed".to_owned(),
                    format!(
                        "SIGTERM {} before the hook's answer",
                        secs(answered - signalled)
                    ),
                    Some(signalled),
                );
            }
        }
    }
    // SIGTERM comes when the deletion is seen and PreStop is done, and not before.
    let (earliest, latest) = match &stop.pre_stop {
        Some(pre_stop) if pre_stop.cut_off => (
            requested + ms(stop.sigterm.0) - tol,
            acknowledged + noticed + ms(stop.sigterm.1) + tol,
        ),
        Some(_) => match hook_ended {
            Some(answered) => (answered - tol, answered + ms(HOOK_LAG) + noticed + tol),
            None => (
                requested + ms(stop.sigterm.0) - tol,
                acknowledged + noticed + ms(stop.sigterm.1) + tol,
            ),
        },
        // A sidecar's SIGTERM may wait for the containers it outlives (sigterm.1).
        None => (
            requested - tol,
            acknowledged + noticed + ms(stop.sigterm.1) + tol,
        ),
    };
    let late_sigterm = match &stop.pre_stop {
        Some(p) if p.call.fails => RuleId::HookPrestopFailureContinues,
        Some(p) if p.cut_off => RuleId::HookPrestopCutOff,
        _ => RuleId::TerminationSigterm,
    };
    match sigterm {
        Some(signalled) if signalled > latest => out.add(
            late_sigterm,
            container,
            format!(
                "SIGTERM {} after the delete request",
                window_text(earliest - requested, latest - requested)
            ),
            format!("SIGTERM {} after it", secs(signalled - requested)),
            Some(signalled),
        ),
        Some(signalled) if signalled < earliest && stop.pre_stop.is_some() => out.add(
            match stop.pre_stop.as_ref().map(|p| &p.call.handler) {
                Some(HookHandler::Sleep(_)) => RuleId::HookHandlerSleep,
                _ => RuleId::TerminationPrestopFirst,
            },
            container,
            format!(
                "SIGTERM once the preStop hook has completed{}, {} after the delete request",
                if stop.pre_stop.as_ref().is_some_and(|p| p.cut_off) {
                    " or the grace period has run out"
                } else {
                    ""
                },
                window_text(earliest - requested, latest - requested)
            ),
            format!("SIGTERM {} after it", secs(signalled - requested)),
            Some(signalled),
        ),
        None if finished.is_some_and(|f| f > latest) => out.add(
            late_sigterm,
            container,
            format!(
                "SIGTERM {} after the delete request",
                window_text(earliest - requested, latest - requested)
            ),
            "no SIGTERM in the workload's log".to_owned(),
            Some(latest),
        ),
        _ => {}
    }
    // SIGKILL: what is left of the grace period after SIGTERM, never less than 2 s.
    if let (true, Some(signalled), Some(gone)) = (stop.killed, sigterm, finished) {
        let (lo, hi) = (
            signalled + ms(stop.sigkill_after.0) - tol,
            signalled + ms(stop.sigkill_after.1) + ms(SIGNAL_LAG) + tol,
        );
        let cut_off = stop.pre_stop.as_ref().is_some_and(|p| p.cut_off);
        let expected = format!(
            "SIGKILL {} after SIGTERM (grace period {}s{})",
            window_text(lo - signalled, hi - signalled),
            stop.grace_seconds,
            if stop.pre_stop.is_some() {
                ", less the whole seconds preStop took, at least 2s"
            } else {
                ""
            }
        );
        let rule = if gone < lo && (cut_off || stop.grace_seconds < 2) {
            Some(RuleId::TerminationMinimumGrace)
        } else if gone < lo {
            Some(RuleId::TerminationGracePeriod)
        } else if gone > hi && stop.pre_stop.is_some() {
            Some(RuleId::TerminationPrestopInGrace)
        } else if gone > hi {
            Some(RuleId::TerminationGracePeriod)
        } else {
            None
        };
        if let Some(rule) = rule {
            out.add(
                rule,
                container,
                expected,
                format!("gone {} after SIGTERM", secs(gone - signalled)),
                Some(gone),
            );
        }
    }
}

/// Liveness and startup probes stop once the kubelet has seen the deletion.
fn check_probes_stop(
    out: &mut Collector,
    plan: &crate::plan::ContainerPlan,
    trace: &Trace,
    acknowledged: i64,
    tol: i64,
) {
    let Some(instance) = plan
        .instances
        .iter()
        .find(|i| matches!(i.cut.as_ref().map(|c| &c.cause), Some(CutCause::Deleted(_))))
    else {
        return;
    };
    let Some(probes) = &instance.probes else {
        return;
    };
    let Some(lines) = trace.logs.get(&plan.name) else {
        return;
    };
    let all = [
        &probes.probes.startup,
        &probes.probes.liveness,
        &probes.probes.readiness,
    ];
    let stopped_by = acknowledged + ms(DELETION_NOTICED_WITHIN) + ms(PROBE_SLACK) + tol;
    let log = WorkloadLog::parse(lines);
    let events = log.events().since_last_start();
    for probe in [&probes.probes.startup, &probes.probes.liveness]
        .into_iter()
        .flatten()
    {
        let Some(endpoint) = probe.endpoint().filter(|_| probe.handler != Handler::Tcp) else {
            continue;
        };
        // An endpoint another probe shares tells nothing of which probe asked.
        if all
            .iter()
            .copied()
            .flatten()
            .filter(|p| p.endpoint() == Some(endpoint))
            .count()
            > 1
        {
            continue;
        }
        let late = events.iter().find_map(|e| match &e.event {
            Event::Probe(p)
                if p.endpoint() == Some(endpoint) && log_ms(trace, e.ts_ms) > stopped_by =>
            {
                Some(log_ms(trace, e.ts_ms))
            }
            _ => None,
        });
        if let Some(at) = late {
            out.add(
                RuleId::TerminationLivenessStops,
                Some(&plan.name),
                format!(
                    "no {:?} probe of /{endpoint} later than {} after the delete",
                    probe.kind,
                    secs(stopped_by - acknowledged)
                ),
                format!(
                    "probed {} after it (the workload's log)",
                    secs(at - acknowledged)
                ),
                Some(at),
            );
        }
    }
}

/// The object goes once its containers stopped and its terminal phase is written, when no
/// finalizer is left; never before.
#[allow(clippy::too_many_arguments)]
fn check_removal(
    out: &mut Collector,
    deletion: &DeletionPrediction,
    trace: &Trace,
    observed: &BTreeMap<&str, ObservedContainer>,
    stopped_by: i64,
    gone_at: Option<i64>,
    tol: i64,
    end: i64,
) {
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
