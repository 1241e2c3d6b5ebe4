//! Terminal states: a pod whose containers all stay terminated reaches the predicted
//! terminal phase after the last exit, once the kubelet has stopped its sandbox (at most
//! [`TERMINAL_PHASE_LAG`] plus the target's tolerance), and shows the sandbox gone; any
//! other pod never becomes terminal.

use super::instances::ObservedContainer;
use super::{secs, Collector};
use crate::plan::termination::DELETION_NOTICED_WITHIN;
use crate::plan::{STATUS_LAG, TERMINAL_PHASE_LAG};
use crate::predict::Prediction;
use crate::rules::RuleId;
use crate::scenario::RestartPolicy;
use k8s_openapi::api::core::v1::PodCondition;
use std::collections::BTreeMap;

#[allow(clippy::too_many_arguments)]
pub(super) fn check_terminal(
    out: &mut Collector,
    prediction: &Prediction,
    observed: &BTreeMap<&str, ObservedContainer>,
    terminal: Option<&(String, i64)>,
    last_conditions: &[PodCondition],
    deleted: Option<i64>,
    tol: i64,
    end: i64,
) {
    let lag = TERMINAL_PHASE_LAG.as_millis() as i64;
    // Once the terminal phase is written the sandbox is already stopped (the phase waits
    // for SyncTerminatingPod): PodReadyToStartContainers follows within one status write.
    let sandbox_lag = STATUS_LAG.as_millis() as i64;
    match (prediction.terminal_phase, terminal) {
        (Some(expected), _) => {
            // A sidecar stopped with a non-zero code must not make the pod fail.
            let sidecar_failed = prediction
                .containers
                .iter()
                .filter(|plan| plan.kind == crate::scenario::ContainerKind::Sidecar)
                .filter_map(|plan| observed.get(plan.name.as_str()))
                .any(|obs| {
                    obs.instances
                        .values()
                        .any(|i| i.exit_code.is_some_and(|code| code != 0))
                });
            let observed_failed = terminal.is_some_and(|(phase, _)| phase == "Failed");
            let rule = if expected == "Succeeded" && sidecar_failed && observed_failed {
                RuleId::SidecarPhaseIgnored
            } else if prediction.deletion.is_some() {
                RuleId::TerminationPhase
            } else if expected == "Succeeded" {
                RuleId::PhaseSucceeded
            } else {
                RuleId::PhaseFailed
            };
            // Anchor: the last final exit, when every container's final exit was seen.
            let anchor = prediction
                .containers
                .iter()
                // A container an init container's failure kept from starting never exits.
                .filter(|plan| !plan.instances.is_empty())
                .map(|plan| {
                    let last = plan.last()?.index;
                    observed
                        .get(plan.name.as_str())?
                        .instances
                        .get(&last)?
                        .finished
                })
                .collect::<Option<Vec<i64>>>()
                .and_then(|v| v.into_iter().max())
                // Containers that stopped before the deletion are stopped for good only
                // once the kubelet has seen it (not before it is made, in a trace cut
                // short before the deletion).
                .and_then(|last_exit| match (&prediction.deletion, deleted) {
                    (Some(_), None) => None,
                    (_, ack) => Some(ack.map_or(last_exit, |ack| {
                        last_exit.max(ack + DELETION_NOTICED_WITHIN.as_millis() as i64)
                    })),
                });
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
                        // Broken once the allowed lag after the last exit ran out.
                        Some(anchor + lag + tol),
                    ),
                    _ => {}
                }
            }
            if let Some((_, at)) = terminal {
                if end > at + sandbox_lag + tol {
                    let sandbox = last_conditions
                        .iter()
                        .find(|c| c.type_ == "PodReadyToStartContainers");
                    if sandbox.is_none_or(|c| c.status != "False") {
                        out.add(
                            RuleId::ConditionPodReadyToStartContainers,
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
                RuleId::PhaseAlwaysNeverTerminal
            } else {
                RuleId::PhaseRunning
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
