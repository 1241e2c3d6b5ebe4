//! How the kubelet stopped each running container for a deletion: when it was gone (its
//! status), and what its workload saw (its log): the PreStop call before SIGTERM, SIGTERM
//! once the hook is done, SIGKILL after what is left of the grace period, and the liveness
//! and startup probes that stop with the deletion.

use super::termination::{log_ms, ms, DeletionSeen};
use super::{secs, window_text, Collector};
use crate::plan::termination::{
    HookHandler, StopPlan, DELETION_NOTICED_WITHIN, HOOK_LAG, SIGNAL_LAG,
};
use crate::plan::{CutCause, STATUS_LAG};
use crate::probes::{Handler, PROBE_SLACK};
use crate::rules::RuleId;
use crate::trace::Trace;
use podcheck_wire::{Event, WorkloadLog};

/// How one running container was stopped for the deletion: `finished` is when its
/// instance `index` was seen gone, and with which exit code.
pub(super) fn check_stop(
    out: &mut Collector,
    seen: DeletionSeen<'_>,
    name: &str,
    index: u32,
    stop: &StopPlan,
    finished: Option<(i64, i32)>,
) {
    let DeletionSeen {
        trace,
        requested,
        acknowledged,
        tol,
        end,
    } = seen;
    let lines = trace.logs.get(name).map(Vec::as_slice);
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
        check_stop_log(out, seen, name, stop, finished.map(|f| f.0), lines);
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
fn check_stop_log(
    out: &mut Collector,
    seen: DeletionSeen<'_>,
    name: &str,
    stop: &StopPlan,
    finished: Option<i64>,
    lines: &[String],
) {
    let DeletionSeen {
        trace,
        requested,
        acknowledged,
        tol,
        ..
    } = seen;
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
pub(super) fn check_probes_stop(
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
