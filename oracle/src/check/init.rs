//! Init containers and sidecars: the sidecars' stop once the pod's regular containers are
//! done, timed from the last regular exit that was observed, and their order.
//!
//! Start order (each init container after the one before, regular containers after
//! initialization, the container after a sidecar once it started) is checked with every
//! other start window, anchored at the observed gate (`instances`).

use super::instances::ObservedContainer;
use super::termination;
use super::{secs, window_text, Collector};
use crate::plan::{CutCause, SidecarStop};
use crate::predict::Prediction;
use crate::rules::RuleId;
use crate::scenario::ContainerKind;
use crate::trace::Trace;
use podcheck_wire::{AgentProcess, Event, LogEvent};
use std::collections::BTreeMap;

pub(super) fn check_sidecar_stops(
    out: &mut Collector,
    prediction: &Prediction,
    observed: &BTreeMap<&str, ObservedContainer>,
    tol: i64,
    end: i64,
) {
    // The pod is done when the last regular container (or, under Never, the failed init
    // container) exits for good.
    let finishing: Vec<Option<i64>> = prediction
        .containers
        .iter()
        .filter(|plan| plan.ends_the_pod())
        .filter_map(|plan| {
            let last = plan.last()?;
            Some(
                observed
                    .get(plan.name.as_str())
                    .and_then(|obs| obs.instances.get(&last.index))
                    .and_then(|seen| seen.finished),
            )
        })
        .collect();
    let done = finishing
        .iter()
        .copied()
        .collect::<Option<Vec<i64>>>()
        .and_then(|exits| exits.into_iter().max());
    let mut stopped: Vec<(&str, i64)> = Vec::new();
    for plan in prediction
        .containers
        .iter()
        .filter(|p| p.kind == ContainerKind::Sidecar)
    {
        let name = plan.name.as_str();
        let finished_of = |index: u32| {
            observed
                .get(name)
                .and_then(|obs| obs.instances.get(&index))
                .and_then(|seen| seen.finished)
        };
        // Stopped for the deletion: after every regular container the deletion stopped.
        if let Some(instance) = plan.instances.iter().find(|instance| {
            matches!(
                instance.cut.as_ref().map(|c| &c.cause),
                Some(CutCause::Deleted(_))
            )
        }) {
            if let Some(f) = finished_of(instance.index) {
                check_after_regular(out, prediction, observed, name, f, tol);
                stopped.push((name, f));
            }
            continue;
        }
        let Some((instance, sidecar)) = plan.instances.iter().find_map(|instance| {
            match instance.cut.as_ref().map(|c| &c.cause) {
                Some(CutCause::PodCompleted(sidecar)) => Some((instance, sidecar)),
                _ => None,
            }
        }) else {
            continue;
        };
        let finished = finished_of(instance.index);
        let code = observed
            .get(name)
            .and_then(|obs| obs.instances.get(&instance.index))
            .and_then(|seen| seen.exit_code);
        if let Some(code) = code.filter(|code| *code != sidecar.stop.exit_code) {
            out.add(
                RuleId::SidecarStoppedAfterRegular,
                Some(name),
                format!(
                    "instance {} stopped with exit code {}",
                    instance.index, sidecar.stop.exit_code
                ),
                format!("exit code {code}"),
                finished,
            );
        }
        let Some(done) = done else {
            // The regular containers were not seen to finish: the sidecar may not stop.
            if let Some(f) = finished {
                out.add(
                    RuleId::SidecarStoppedAfterRegular,
                    Some(name),
                    "the sidecar runs until every regular container has exited".to_owned(),
                    format!(
                        "instance {} terminated at {} before that",
                        instance.index,
                        secs(f)
                    ),
                    Some(f),
                );
            }
            continue;
        };
        // A sidecar ahead of this one in the spec already gone: the late stop is the order's.
        let ahead_gone_first = stopped
            .iter()
            .map(|(_, at)| *at)
            .max()
            .zip(finished)
            .is_some_and(|(ahead, f)| ahead + tol < f);
        let rule = if ahead_gone_first {
            RuleId::SidecarTerminationOrder
        } else {
            RuleId::SidecarStoppedAfterRegular
        };
        check_one_stop(
            out,
            rule,
            (name, instance.index),
            sidecar,
            (done, finished),
            tol,
            end,
        );
        if let Some(f) = finished {
            stopped.push((name, f));
        }
    }
    // Later sidecars first: each stops before every sidecar ahead of it in the spec.
    for pair in stopped.windows(2) {
        let ((earlier, earlier_at), (later, later_at)) = (pair[0], pair[1]);
        if earlier_at + tol < later_at {
            out.add(
                RuleId::SidecarTerminationOrder,
                Some(earlier),
                format!("sidecar {earlier} stops after sidecar {later}, which comes after it in the spec"),
                format!(
                    "{earlier} terminated at {}, {later} at {}",
                    secs(earlier_at),
                    secs(later_at)
                ),
                // Seen once the earlier one is gone while the later one still runs.
                Some(earlier_at),
            );
        }
    }
}

/// A sidecar stopped for the deletion is gone only after every regular container the
/// deletion stopped.
fn check_after_regular(
    out: &mut Collector,
    prediction: &Prediction,
    observed: &BTreeMap<&str, ObservedContainer>,
    sidecar: &str,
    finished: i64,
    tol: i64,
) {
    for plan in prediction
        .containers
        .iter()
        .filter(|p| p.kind == ContainerKind::Regular)
    {
        let Some(instance) = plan.instances.iter().find(|instance| {
            matches!(
                instance.cut.as_ref().map(|c| &c.cause),
                Some(CutCause::Deleted(_))
            )
        }) else {
            continue;
        };
        let regular_finished = observed
            .get(plan.name.as_str())
            .and_then(|obs| obs.instances.get(&instance.index))
            .and_then(|seen| seen.finished);
        if let Some(regular_finished) = regular_finished.filter(|f| finished + tol < *f) {
            out.add(
                RuleId::SidecarTerminationOrder,
                Some(sidecar),
                format!(
                    "sidecar {sidecar} stops after the regular container {}",
                    plan.name
                ),
                format!(
                    "{sidecar} terminated at {}, {} at {}",
                    secs(finished),
                    plan.name,
                    secs(regular_finished)
                ),
                Some(finished),
            );
        }
    }
}

fn check_one_stop(
    out: &mut Collector,
    late_rule: RuleId,
    (name, index): (&str, u32),
    sidecar: &SidecarStop,
    (done, finished): (i64, Option<i64>),
    tol: i64,
    end: i64,
) {
    let (lo, hi) = (
        sidecar.after_done.0.as_millis() as i64,
        sidecar.after_done.1.as_millis() as i64,
    );
    let (min, max) = (done + lo - tol, done + hi + tol);
    let expected = format!(
        "instance {index} stopped (exit code {}) {} after the last regular container exited",
        sidecar.stop.exit_code,
        window_text(lo - tol, hi + tol)
    );
    match finished {
        Some(f) if f > max => out.add(
            late_rule,
            Some(name),
            expected,
            format!("terminated {} after it", secs(f - done)),
            Some(max),
        ),
        Some(f) if f < min => out.add(
            RuleId::SidecarStoppedAfterRegular,
            Some(name),
            expected,
            format!("terminated {} after it", secs(f - done)),
            Some(f),
        ),
        Some(f) => out.inside(f, min, max),
        None if end > max => out.add(
            RuleId::SidecarStoppedAfterRegular,
            Some(name),
            expected,
            format!("still not terminated {} after it", secs(end - done)),
            Some(max),
        ),
        None => {}
    }
}

/// What each container's agent saw of the processes around it (its `processes` lines): no
/// other pod's agent, ever; and an ephemeral container with a target sees the target's.
pub(super) fn check_process_namespaces(
    out: &mut Collector,
    prediction: &Prediction,
    trace: &Trace,
) {
    for plan in &prediction.containers {
        let Some(lines) = trace.logs.get(&plan.name) else {
            continue;
        };
        let seen: Vec<(u64, Vec<AgentProcess>)> = lines
            .iter()
            .filter_map(|line| LogEvent::parse(line).ok())
            .filter_map(|e| match e.event {
                Event::Processes { agents, .. } => Some((e.ts_ms, agents)),
                _ => None,
            })
            .collect();
        let name = plan.name.as_str();
        let own_pod = seen
            .iter()
            .flat_map(|(_, agents)| agents.iter())
            .find(|agent| agent.container == name)
            .and_then(|agent| agent.pod.clone());
        let foreign = seen.iter().find_map(|(at, agents)| {
            agents
                .iter()
                .find(|agent| agent.pod.is_some() && own_pod.is_some() && agent.pod != own_pod)
                .map(|agent| (*at, agent))
        });
        if let Some((at, agent)) = foreign {
            out.add(
                RuleId::EphemeralTargetNamespace,
                Some(name),
                "no process of another pod in sight".to_owned(),
                format!(
                    "saw the agent of container {} of pod {}",
                    agent.container,
                    agent.pod.as_deref().unwrap_or("?")
                ),
                Some(termination::log_ms(trace, at)),
            );
        }
        let Some(target) = plan.target_container.as_deref() else {
            continue;
        };
        if seen.is_empty() {
            continue;
        }
        let sees_target = seen.iter().any(|(_, agents)| {
            agents
                .iter()
                .any(|agent| agent.container == target && agent.pod == own_pod)
        });
        if !sees_target {
            let last = seen.last().map(|(at, agents)| {
                (
                    *at,
                    agents
                        .iter()
                        .map(|a| a.container.clone())
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            });
            out.add(
                RuleId::EphemeralTargetNamespace,
                Some(name),
                format!("sees the process of its target container {target} (they share its PID namespace)"),
                format!(
                    "saw the agents of [{}] only",
                    last.as_ref().map(|(_, seen)| seen.as_str()).unwrap_or("")
                ),
                last.map(|(at, _)| termination::log_ms(trace, at)),
            );
        }
    }
}
