//! Probe effects: `started` and `ready` of a running container against the windows its
//! probes allow, kills and readiness checked against the workload's own log of the probes
//! it answered, and the rule an unpredicted end breaks given the container's probes.

use super::instances::ObservedContainer;
use super::{secs, Collector};
use crate::duration::SpecDuration;
use crate::plan::{ContainerPlan, InstancePlan};
use crate::rules::RuleId;
use crate::trace::Trace;
use k8s_openapi::api::core::v1::ContainerStatus;
use podcheck_wire::{Answered, WorkloadLog};

/// `started` and `ready` of a running container against what its probes allow at that
/// moment of its instance (timed from the instance's observed start).
pub(super) fn check_probe_flags(
    out: &mut Collector,
    plan: &ContainerPlan,
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
                RuleId::ContainerReadyNoProbe,
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
            RuleId::ProbeStartupStarted,
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
            for &rule in &window.late_rules {
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
                RuleId::ProbeStartupGates
            } else {
                RuleId::ContainerReadyNoProbe
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
                RuleId::ContainerReadyNoProbe,
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
            for &rule in &flip.window.late_rules {
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
                RuleId::ProbeErrorNotFailure
            } else {
                RuleId::ProbeReadinessInitialFailure
            },
            name,
            format!("instance {index}: never ready (the readiness probe never succeeds)"),
            format!("ready=true {} after the start", secs(at)),
            Some(t),
        );
    }
}

/// The workload's own log shows each liveness probe it answered: a kill must follow
/// failureThreshold consecutive failed answers, whatever the timing looked like.
pub(super) fn check_liveness_log(out: &mut Collector, plan: &ContainerPlan, lines: &[String]) {
    let log = WorkloadLog::parse(lines);
    let Some(index) = log.events().start() else {
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
    let Some(before_kill) = log.events().before_first_signal() else {
        return;
    };
    let failures = before_kill
        .answers(endpoint)
        .rev()
        .take_while(|a| a.answer != Some(Answered::Ok))
        .count();
    if failures < *threshold as usize {
        out.add(
            RuleId::ProbeLivenessFailureThreshold,
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
pub(super) fn check_readiness_log(
    out: &mut Collector,
    plan: &ContainerPlan,
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
    if log.events().start() != Some(0) {
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
    let successes = log
        .events()
        .answers(&endpoint)
        .filter(|a| i64::try_from(a.ts_ms).is_ok_and(|ts| ts <= ready_at + slack_ms))
        .rev()
        .take_while(|a| a.answer == Some(Answered::Ok))
        .count();
    if successes < threshold as usize {
        out.add(
            RuleId::ProbeReadinessTransitions,
            Some(&plan.name),
            format!("instance 0 ready after {threshold} consecutive successful readiness probes"),
            format!("ready after {successes} consecutive successful answers of /{endpoint} (the workload's log)"),
            None,
        );
    }
}

/// The rule an unpredicted end of an instance breaks, given the probes that might have
/// caused it.
pub(super) fn surprise_rule(instance: &InstancePlan, at: i64) -> RuleId {
    let Some(plan) = &instance.probes else {
        return RuleId::ContainerRunsToCompletion;
    };
    let probes = &plan.probes;
    let ms = |d: SpecDuration| d.as_millis() as i64;
    let errors = [&probes.startup, &probes.liveness]
        .into_iter()
        .flatten()
        .any(|p| p.always_errors());
    if errors {
        RuleId::ProbeErrorNotFailure
    } else if probes.readiness.is_some() && !plan.liveness_fails && probes.startup.is_none() {
        RuleId::ProbeReadinessNoRestart
    } else if probes.liveness.is_some()
        && probes.startup.is_some()
        && plan.started.as_ref().is_none_or(|w| at < ms(w.lo))
    {
        RuleId::ProbeStartupGates
    } else if plan.liveness_slow_success {
        RuleId::ProbeTimeout
    } else if probes.liveness.is_some() && plan.liveness_fails {
        RuleId::ProbeLivenessFailureThreshold
    } else if probes.readiness.is_some() {
        RuleId::ProbeReadinessNoRestart
    } else if probes.startup.is_some() {
        RuleId::ProbeStartupFailureRestart
    } else {
        RuleId::ContainerRunsToCompletion
    }
}
