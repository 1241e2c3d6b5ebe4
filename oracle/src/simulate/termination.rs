//! Stops on the model target: a container killed from outside, and the kubelet's
//! `killContainer` of a deleted pod (PreStop, SIGTERM, SIGKILL), drawn inside the plan's
//! windows, with what the workload logs of it.

use super::{log::ts, Choices, Deviation};
use crate::behaviour::{Behaviour, OnSigterm};
use crate::plan::termination::{
    HookHandler, StopPlan, DELETION_NOTICED_WITHIN, HOOK_LAG, MINIMUM_GRACE, SIGKILL_EXIT_CODE,
    SIGNAL_LAG, SIGTERM_EXIT_CODE,
};
use crate::plan::{Cut, CutCause};
use podcheck_wire::{Event, HookVia, LogEvent, Signal};

/// A stop as the model target acts it out; times are spec ms since creation.
pub(super) struct DrawnStop {
    /// When the process is gone, and its exit status.
    pub finish: u64,
    pub code: i32,
    /// What the workload logs of it.
    pub log: Vec<LogEvent>,
    /// When liveness and startup probes stop reaching the workload.
    pub probes_stop: u64,
}

/// Acts out `cut` on an instance of a container that behaves as `behaviour`.
pub(super) fn draw_cut(
    cut: &Cut,
    behaviour: Option<&Behaviour>,
    choices: &mut dyn Choices,
    deviation: Option<Deviation>,
) -> DrawnStop {
    let at = cut.action_at.as_millis();
    match &cut.cause {
        CutCause::Killed => {
            let finish = at + choices.pick(0, SIGNAL_LAG.as_millis());
            DrawnStop {
                finish,
                code: cut.code,
                log: Vec::new(),
                probes_stop: finish,
            }
        }
        CutCause::Deleted(plan) => draw_kill(
            plan,
            at,
            DELETION_NOTICED_WITHIN.as_millis(),
            behaviour,
            choices,
            deviation,
        ),
        // Played once the regular containers' exits are known (`stop_sidecars`).
        CutCause::PodCompleted(sidecar) => {
            draw_requested_stop(&sidecar.stop, at, behaviour, choices, deviation)
        }
    }
}

/// The kubelet's `killContainer` begun at `at`.
pub(super) fn draw_requested_stop(
    plan: &StopPlan,
    at: u64,
    behaviour: Option<&Behaviour>,
    choices: &mut dyn Choices,
    deviation: Option<Deviation>,
) -> DrawnStop {
    draw_kill(plan, at, 0, behaviour, choices, deviation)
}

fn line(at: u64, event: Event) -> LogEvent {
    LogEvent {
        ts_ms: ts(at),
        event,
    }
}

/// The kubelet's `killContainer` for a deletion requested at `requested` (or a failed
/// PostStart hook answered then), begun within `notice_within` of it.
fn draw_kill(
    plan: &StopPlan,
    requested: u64,
    notice_within: u64,
    behaviour: Option<&Behaviour>,
    choices: &mut dyn Choices,
    deviation: Option<Deviation>,
) -> DrawnStop {
    let mut log = Vec::new();
    let notice = requested + choices.pick(0, notice_within);
    let grace = u64::try_from(plan.grace_seconds.max(0)).unwrap_or_default() * 1000;
    let half_lag = HOOK_LAG.as_millis() / 2;
    let prestop_after_sigterm = deviation == Some(Deviation::PreStopAfterSigterm);
    // When the kubelet has PreStop's answer (or stops waiting for it), and the hook call
    // the workload logs.
    let skipped = plan.pre_stop.as_ref().is_some_and(|p| {
        matches!(
            (&p.call.handler, deviation),
            (HookHandler::Exec { .. }, Some(Deviation::ExecHooksNotRun))
                | (HookHandler::Http { .. }, Some(Deviation::HttpHooksNotRun))
                | (HookHandler::Sleep(_), Some(Deviation::SleepHooksNotRun))
        )
    });
    let pre_stop = plan.pre_stop.as_ref().filter(|_| !skipped);
    let (answered, hook_lines) = match pre_stop {
        None => (notice, Vec::new()),
        Some(pre_stop) => {
            let call = &pre_stop.call;
            let reaches = notice + choices.pick(0, half_lag);
            let done = reaches + call.takes.as_millis();
            let answered = if pre_stop.cut_off && deviation != Some(Deviation::PreStopNotCutOff) {
                notice + grace + choices.pick(0, HOOK_LAG.as_millis())
            } else {
                done + choices.pick(0, half_lag)
            };
            let via = match &call.handler {
                HookHandler::Exec { .. } => Some(HookVia::Exec),
                HookHandler::Http { .. } => Some(HookVia::Http),
                HookHandler::Sleep(_) | HookHandler::TcpSocket => None,
            };
            let mut lines = Vec::new();
            if let (Some(via), Some(name)) = (via, call.handler.logged_name()) {
                lines.push((
                    reaches,
                    Event::HookStarted {
                        name: name.to_owned(),
                        via,
                    },
                ));
                lines.push((
                    done,
                    Event::HookEnded {
                        name: name.to_owned(),
                        ok: !call.fails,
                    },
                ));
            }
            (answered, lines)
        }
    };
    let sigterm = if prestop_after_sigterm {
        notice
    } else {
        answered
    };
    // What the kubelet takes off the grace period: the whole seconds PreStop took.
    let took = answered - notice;
    let mut left = if pre_stop.is_some() {
        grace.saturating_sub(took / 1000 * 1000)
    } else {
        grace
    };
    match deviation {
        Some(Deviation::PreStopNotCountedInGrace) => {}
        Some(Deviation::NoMinimumGraceAfterPreStop) => {}
        _ => left = left.max(MINIMUM_GRACE.as_millis()),
    }
    if deviation == Some(Deviation::PreStopNotCountedInGrace) {
        left = grace.max(MINIMUM_GRACE.as_millis());
    }
    if deviation == Some(Deviation::SigkillBeforeGracePeriod) {
        left /= 2;
    }
    let kill = sigterm + left;
    let mut on_sigterm = behaviour.map_or(OnSigterm::Die, |b| b.on_sigterm);
    // A failed PreStop that ends the graceful stop: no SIGTERM reaches the process.
    let no_sigterm = deviation == Some(Deviation::FailedPreStopSkipsSigterm)
        && pre_stop.is_some_and(|p| p.call.fails);
    if no_sigterm {
        on_sigterm = OnSigterm::Ignore;
    }
    let mut shifted = |at: u64| {
        if prestop_after_sigterm {
            // The hook is called after SIGTERM instead of before it.
            at - notice + sigterm + choices.pick(1, half_lag.max(1))
        } else {
            at
        }
    };
    for (at, event) in hook_lines {
        let at = shifted(at);
        log.push(line(at, event));
    }
    if !no_sigterm {
        log.push(line(
            sigterm,
            Event::Signal {
                signal: Signal::Sigterm,
            },
        ));
    }
    let lag = |choices: &mut dyn Choices| choices.pick(0, SIGNAL_LAG.as_millis());
    let (finish, code) = match on_sigterm {
        OnSigterm::Die => (sigterm + lag(choices), SIGTERM_EXIT_CODE),
        OnSigterm::Ignore => (kill + lag(choices), SIGKILL_EXIT_CODE),
        OnSigterm::Exit { after, code } => {
            let exits = sigterm + after.as_millis();
            if exits < kill {
                log.push(line(exits, Event::Exit { code }));
                (exits + lag(choices), code)
            } else {
                (kill + lag(choices), SIGKILL_EXIT_CODE)
            }
        }
    };
    // A hook line the workload did not live to write is not in its log.
    log.retain(|l| l.ts_ms <= ts(finish));
    log.sort_by_key(|l| l.ts_ms);
    DrawnStop {
        finish,
        code,
        log,
        probes_stop: if deviation == Some(Deviation::LivenessDuringTermination) {
            finish
        } else {
            notice
        },
    }
}

/// A PostStart hook as the model target acts it out.
pub(super) struct PostStartDraw {
    /// When the process started (the entrypoint), and when Running is first shown.
    pub since: u64,
    pub shown: u64,
    /// What the workload logs of the hook call.
    pub log: Vec<LogEvent>,
    /// The kill that follows a failed hook.
    pub failed: Option<DrawnStop>,
}

/// Acts out the PostStart hook of `instance`, whose process the kubelet starts at `start`.
pub(super) fn draw_post_start(
    instance: &crate::plan::InstancePlan,
    start: u64,
    behaviour: Option<&Behaviour>,
    choices: &mut dyn Choices,
    deviation: Option<Deviation>,
) -> PostStartDraw {
    let Some(call) = &instance.post_start else {
        return PostStartDraw {
            since: start,
            shown: start,
            log: Vec::new(),
            failed: None,
        };
    };
    let half_lag = HOOK_LAG.as_millis() / 2;
    let reaches = start + choices.pick(0, half_lag);
    let done = reaches + call.takes.as_millis();
    let answered = done + choices.pick(0, half_lag);
    let mut log = Vec::new();
    let via = match &call.handler {
        HookHandler::Exec { .. } => Some(HookVia::Exec),
        HookHandler::Http { .. } => Some(HookVia::Http),
        HookHandler::Sleep(_) | HookHandler::TcpSocket => None,
    };
    if let (Some(via), Some(name)) = (via, call.handler.logged_name()) {
        // The workload answers as scripted; the kubelet ignores an httpGet hook's status.
        let ok = behaviour
            .and_then(|b| b.hooks.get(name))
            .is_none_or(|script| script.result == crate::behaviour::HookResult::Ok);
        log.push(line(
            reaches,
            Event::HookStarted {
                name: name.to_owned(),
                via,
            },
        ));
        log.push(line(
            done,
            Event::HookEnded {
                name: name.to_owned(),
                ok,
            },
        ));
    }
    let failure_ignored = match deviation {
        Some(Deviation::PostStartFailureIgnored) => true,
        Some(Deviation::TcpHookSucceeds) => call.handler == HookHandler::TcpSocket,
        _ => false,
    };
    let failed = match (&instance.post_start_kill, failure_ignored) {
        (Some(plan), false) => {
            let mut stop = draw_kill(plan, answered, 0, behaviour, choices, deviation);
            stop.log.retain(|l| l.ts_ms <= ts(stop.finish));
            Some(stop)
        }
        _ => None,
    };
    let (since, shown) = match deviation {
        // The entrypoint waits for the hook: it starts once the hook has been answered.
        Some(Deviation::PostStartBeforeEntrypoint) => (answered, answered),
        Some(Deviation::RunningBeforePostStartCompletes) => (start, start),
        _ => (start, answered),
    };
    PostStartDraw {
        since,
        shown,
        log,
        failed,
    }
}
