//! Pod status as the local runtime reports it: phase and conditions from container states.
//!
//! The runtime's own implementation of the kubelet's status generation, written against
//! the Kubernetes documentation and kubelet source, independent of podcheck's oracle.
//! `pod_phase` is `getPhase` (kubelet_pods.go) and `conditions` the kubelet-owned
//! conditions of `generateAPIPodStatus` (status/generate.go); docs/fidelity/phase-conditions.md
//! and docs/fidelity/init-sidecar-runtime.md cite them.

use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// One init container's status, and whether it is a sidecar (`restartPolicy: Always`).
#[derive(Clone, Copy, Debug)]
pub struct InitContainer<'a> {
    pub status: &'a ContainerStatus,
    pub sidecar: bool,
}

/// The phase of a pod without init containers (`getPhase` with neither init containers nor
/// `podIsTerminal`).
pub fn phase(statuses: &[ContainerStatus], restart_policy: &str) -> &'static str {
    pod_phase(&[], statuses, restart_policy, true, false)
}

/// The exit code of a terminated state.
fn exit_code(state: Option<&ContainerState>) -> Option<i32> {
    state
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// `getPhase`: the phase from the init containers' and the regular containers' statuses.
///
/// `pod_has_initialized` is `HasAnyActiveRegularContainerStarted`: a sidecar that is not
/// started (restarting) keeps an uninitialized pod Pending but not an initialized one.
/// `pod_is_terminal` is true once a deleted pod's containers were killed: the restart
/// policy no longer matters. Sidecars count as running but never as stopped, so the
/// regular containers alone decide Succeeded or Failed.
pub fn pod_phase(
    init: &[InitContainer],
    regular: &[ContainerStatus],
    restart_policy: &str,
    pod_has_initialized: bool,
    pod_is_terminal: bool,
) -> &'static str {
    let mut pending_regular_init = 0;
    let mut pending_sidecars = 0;
    let mut failed_initialization = 0;
    let mut unknown = 0;
    let mut running = 0;
    let mut waiting = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    for container in init {
        let status = container.status;
        let state = status.state.as_ref();
        let last = exit_code(status.last_state.as_ref());
        match state {
            Some(s) if s.running.is_some() => {
                if container.sidecar {
                    if status.started != Some(true) {
                        pending_sidecars += 1;
                    }
                    running += 1;
                } else {
                    pending_regular_init += 1;
                }
            }
            Some(s) if s.terminated.is_some() => {
                if !container.sidecar && exit_code(state).is_some_and(|c| c != 0) {
                    failed_initialization += 1;
                }
            }
            Some(s) if s.waiting.is_some() => match (container.sidecar, last) {
                (false, Some(code)) => {
                    if code != 0 {
                        failed_initialization += 1;
                    }
                }
                (false, None) => pending_regular_init += 1,
                (true, Some(_)) => {}
                (true, None) => {
                    pending_sidecars += 1;
                    waiting += 1;
                }
            },
            _ if container.sidecar => {
                pending_sidecars += 1;
                unknown += 1;
            }
            _ => pending_regular_init += 1,
        }
    }
    for status in regular {
        let state = status.state.as_ref();
        match state {
            Some(s) if s.running.is_some() => running += 1,
            Some(s) if s.terminated.is_some() => {
                stopped += 1;
                if exit_code(state) == Some(0) {
                    succeeded += 1;
                }
            }
            Some(s) if s.waiting.is_some() => {
                if exit_code(status.last_state.as_ref()).is_some() {
                    // Waiting to restart: it has run before.
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
            _ => unknown += 1,
        }
    }
    if failed_initialization > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if pending_regular_init > 0 || (pending_sidecars > 0 && !pod_has_initialized) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running > 0 || stopped == 0 || unknown > 0 {
        return "Pending";
    }
    if pod_is_terminal {
        return if stopped == succeeded {
            "Succeeded"
        } else {
            "Failed"
        };
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

/// Whether an init container counts as done for the Initialized condition
/// (`isInitContainerInitialized`): a sidecar once started, a regular one once ready (it
/// exited 0).
fn initialized(container: &InitContainer) -> bool {
    match container.sidecar {
        true => container.status.started == Some(true),
        false => container.status.ready,
    }
}

/// The kubelet-owned conditions for a pod without probes' readiness gates:
/// PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled.
///
/// ContainersReady (and Ready with it) counts the sidecars, in spec order, then the regular
/// containers; regular init containers never count. Initialized is False with reason
/// ContainersNotInitialized until every init container is done, unless a regular container
/// has run (a restarting sidecar does not undo it), and True with reason PodCompleted on a
/// Succeeded pod.
pub fn conditions(
    init: &[InitContainer],
    regular: &[ContainerStatus],
    phase: &str,
    sandbox_ready: bool,
    now: &Time,
) -> Vec<PodCondition> {
    let unready: Vec<&str> = init
        .iter()
        .filter(|c| c.sidecar)
        .map(|c| c.status)
        .chain(regular)
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
    let incomplete: Vec<&str> = init
        .iter()
        .filter(|c| !initialized(c))
        .map(|c| c.status.name.as_str())
        .collect();
    let regular_has_run = regular.iter().any(|s| {
        s.state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    });
    let initialized = match phase {
        "Succeeded" => condition("Initialized", true, Some("PodCompleted"), None, now),
        _ if regular_has_run || incomplete.is_empty() => {
            condition("Initialized", true, None, None, now)
        }
        _ => condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
            now,
        ),
    };
    vec![
        condition("PodReadyToStartContainers", sandbox_ready, None, None, now),
        initialized,
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
