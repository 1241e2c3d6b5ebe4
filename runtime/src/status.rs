//! Pod status as the local runtime reports it: phase and conditions from container states.
//!
//! The runtime's own implementation of the kubelet's status generation, written against
//! the Kubernetes documentation and kubelet source, independent of podcheck's oracle.

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub fn phase(statuses: &[ContainerStatus], restart_policy: &str) -> &'static str {
    let mut running = 0;
    let mut waiting = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    for status in statuses {
        let Some(state) = status.state.as_ref() else {
            return "Pending";
        };
        if state.running.is_some() {
            running += 1;
        } else if let Some(terminated) = &state.terminated {
            stopped += 1;
            if terminated.exit_code == 0 {
                succeeded += 1;
            }
        } else if status
            .last_state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some())
        {
            // Waiting to restart: it has run before.
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    match restart_policy {
        "Always" => "Running",
        _ if succeeded == stopped => "Succeeded",
        "Never" => "Failed",
        _ => "Running",
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        last_transition_time: Some(now.clone()),
        ..PodCondition::default()
    }
}

/// Conditions for a pod without init containers, probes or readiness gates.
pub fn conditions(
    statuses: &[ContainerStatus],
    phase: &str,
    sandbox_ready: bool,
    now: &Time,
) -> Vec<PodCondition> {
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let (ready, reason, message) = match phase {
        "Succeeded" => (false, Some("PodCompleted"), None),
        "Failed" => (false, Some("PodFailed"), None),
        _ if unready.is_empty() => (true, None, None),
        _ => (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        ),
    };
    vec![
        condition("PodReadyToStartContainers", sandbox_ready, None, None, now),
        condition(
            "Initialized",
            true,
            (phase == "Succeeded").then_some("PodCompleted"),
            None,
            now,
        ),
        condition("Ready", ready, reason, message.clone(), now),
        condition("ContainersReady", ready, reason, message, now),
        condition("PodScheduled", true, None, None, now),
    ]
}

/// Keeps a condition's lastTransitionTime when its status did not change.
pub fn carry_transition_times(new: &mut [PodCondition], old: &[PodCondition]) {
    for condition in new {
        if let Some(previous) = old.iter().find(|o| o.type_ == condition.type_) {
            if previous.status == condition.status {
                condition.last_transition_time = previous.last_transition_time.clone();
            }
        }
    }
}
