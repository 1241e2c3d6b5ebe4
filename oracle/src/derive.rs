//! Status derivation: the pod-level status (phase, conditions) and the container fields
//! (terminated reason, the CrashLoopBackOff message) the kubelet generates from a set of
//! container statuses, as pure functions.
//!
//! The checker applies them to every observed snapshot and the model target uses them to
//! produce its own snapshots. A rule area that adds a derived field adds its function here.

use crate::duration::SpecDuration;
use crate::scenario::{ContainerKind, RestartPolicy};
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};

/// A container of the pod spec as status derivation needs it: its name and its kind.
pub type SpecContainer<'a> = (&'a str, ContainerKind);

/// The phase the kubelet computes from container statuses (`getPhase`,
/// pkg/kubelet/kubelet_pods.go, 1.29+ with sidecars). `statuses` holds the init and the
/// regular containers' statuses (names are unique across both).
///
/// `deleted`: the pod has a deletionTimestamp. Once every container of a deleted pod has
/// stopped, `SyncTerminatingPod` generates the status with `podIsTerminal` and the phase
/// no longer follows the restart policy: Succeeded when every container exited 0, Failed
/// otherwise (since 1.27, kubernetes#115331).
pub fn derive_phase(
    containers: &[SpecContainer<'_>],
    statuses: &[ContainerStatus],
    policy: RestartPolicy,
    deleted: bool,
) -> &'static str {
    let find = |name: &str| statuses.iter().find(|s| s.name == name);
    let last_terminated = |status: &ContainerStatus| {
        status
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let (mut pending_init, mut pending_sidecars, mut failed_init) = (0, 0, 0);
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for (name, kind) in containers {
        let status = find(name);
        let state = status.and_then(|s| s.state.as_ref());
        let is_running = state.and_then(|s| s.running.as_ref()).is_some();
        let terminated = state.and_then(|s| s.terminated.as_ref());
        let is_waiting = state.and_then(|s| s.waiting.as_ref()).is_some();
        match kind {
            // Ephemeral containers count for nothing (E6).
            ContainerKind::Ephemeral => {}
            ContainerKind::Init => match status {
                None => pending_init += 1,
                Some(_) if is_running => pending_init += 1,
                Some(_) if terminated.is_some() => {
                    if terminated.is_some_and(|t| t.exit_code != 0) {
                        failed_init += 1;
                    }
                }
                Some(status) if is_waiting => match last_terminated(status) {
                    Some(code) if code != 0 => failed_init += 1,
                    Some(_) => {}
                    None => pending_init += 1,
                },
                Some(_) => pending_init += 1,
            },
            // Terminated sidecars do not count for the phase.
            ContainerKind::Sidecar => match status {
                None => unknown += 1,
                Some(status) if is_running => {
                    if status.started != Some(true) {
                        pending_sidecars += 1;
                    }
                    running += 1;
                }
                Some(_) if terminated.is_some() => {}
                Some(status) if is_waiting => {
                    if last_terminated(status).is_none() {
                        pending_sidecars += 1;
                        waiting += 1;
                    }
                }
                Some(_) => unknown += 1,
            },
            ContainerKind::Regular => match status {
                None => unknown += 1,
                Some(_) if is_running => running += 1,
                Some(_) if terminated.is_some() => {
                    stopped += 1;
                    if terminated.is_some_and(|t| t.exit_code == 0) {
                        succeeded += 1;
                    }
                }
                Some(status) if is_waiting => {
                    if last_terminated(status).is_some() {
                        stopped += 1;
                    } else {
                        waiting += 1;
                    }
                }
                Some(_) => unknown += 1,
            },
        }
    }
    if failed_init > 0 && policy == RestartPolicy::Never {
        return "Failed";
    }
    // A sidecar restarting after initialization does not send the pod back to Pending.
    let initialized_before = has_any_regular_container_started(containers, statuses);
    if pending_init > 0 || (pending_sidecars > 0 && !initialized_before) || waiting > 0 {
        "Pending"
    } else if running > 0 && unknown == 0 {
        "Running"
    } else if running == 0 && stopped > 0 && unknown == 0 {
        if deleted {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        match policy {
            RestartPolicy::Always => "Running",
            _ if stopped == succeeded => "Succeeded",
            RestartPolicy::Never => "Failed",
            RestartPolicy::OnFailure => "Running",
        }
    } else {
        "Pending"
    }
}

/// Whether a regular container's status shows it Running or Terminated
/// (`HasAnyRegularContainerStarted`, pkg/kubelet/container/helpers.go), what Initialized
/// reads: one waiting out a back-off does not count, whatever its lastState.
pub fn regular_container_shown_started(
    containers: &[SpecContainer<'_>],
    statuses: &[ContainerStatus],
) -> bool {
    containers
        .iter()
        .filter(|(_, kind)| *kind == ContainerKind::Regular)
        .filter_map(|(name, _)| statuses.iter().find(|s| s.name == *name))
        .any(|status| {
            status
                .state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        })
}

/// Whether a regular container has ever started in the pod's sandbox: the pod was
/// initialized before (`HasAnyActiveRegularContainerStarted`, what getPhase reads since
/// 1.33, counts the runtime's exited containers too).
pub fn has_any_regular_container_started(
    containers: &[SpecContainer<'_>],
    statuses: &[ContainerStatus],
) -> bool {
    containers
        .iter()
        .filter(|(_, kind)| *kind == ContainerKind::Regular)
        .filter_map(|(name, _)| statuses.iter().find(|s| s.name == *name))
        .any(|status| {
            let state = status.state.as_ref();
            state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                || status
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some()
        })
}

pub fn is_terminal_phase(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// The conditions the kubelet generates (pkg/kubelet/status/generate.go) for a pod
/// without readiness gates. `sandbox_ready` is whether the pod sandbox (network namespace)
/// exists: true from sandbox creation until a terminal pod is torn down.
pub fn derive_conditions(
    containers: &[SpecContainer<'_>],
    statuses: &[ContainerStatus],
    phase: &str,
    sandbox_ready: bool,
) -> Vec<ExpectedCondition> {
    let find = |name: &str| statuses.iter().find(|s| s.name == name);
    // Sidecars count for readiness, before the regular containers
    // (GenerateContainersReadyCondition); regular init containers do not.
    let counted: Vec<&str> = containers
        .iter()
        .filter(|(_, kind)| matches!(kind, ContainerKind::Sidecar | ContainerKind::Regular))
        .map(|(name, _)| *name)
        .collect();
    let unknown: Vec<&str> = counted
        .iter()
        .copied()
        .filter(|n| find(n).is_none())
        .collect();
    let unready: Vec<&str> = counted
        .iter()
        .copied()
        .filter(|n| find(n).is_some_and(|s| !s.ready))
        .collect();
    let containers_ready = match phase {
        "Succeeded" if unknown.is_empty() => {
            ExpectedCondition::new("ContainersReady", "False", Some("PodCompleted"))
        }
        "Failed" => ExpectedCondition::new("ContainersReady", "False", Some("PodFailed")),
        _ if unready.is_empty() && unknown.is_empty() => {
            ExpectedCondition::new("ContainersReady", "True", None)
        }
        _ => {
            let mut parts = Vec::new();
            if !unknown.is_empty() {
                parts.push(format!(
                    "containers with unknown status: [{}]",
                    unknown.join(" ")
                ));
            }
            if !unready.is_empty() {
                parts.push(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                ));
            }
            let mut condition =
                ExpectedCondition::new("ContainersReady", "False", Some("ContainersNotReady"));
            condition.message = Some(parts.join(", "));
            condition
        }
    };
    let mut ready = containers_ready.clone();
    ready.type_ = "Ready";
    vec![
        ExpectedCondition::new(
            "PodReadyToStartContainers",
            if sandbox_ready { "True" } else { "False" },
            None,
        ),
        initialized_condition(containers, statuses, phase),
        ready,
        containers_ready,
        ExpectedCondition::new("PodScheduled", "True", None),
    ]
}

/// `GeneratePodInitializedCondition`: True once every init container has exited 0 and
/// every sidecar has started, or once a regular container has started; PodCompleted on a
/// Succeeded pod.
fn initialized_condition(
    containers: &[SpecContainer<'_>],
    statuses: &[ContainerStatus],
    phase: &str,
) -> ExpectedCondition {
    let find = |name: &str| statuses.iter().find(|s| s.name == name);
    let (mut unknown, mut incomplete) = (Vec::new(), Vec::new());
    for (name, kind) in containers {
        let Some(status) = find(name) else {
            if kind.is_init() {
                unknown.push(*name);
            }
            continue;
        };
        let complete = match kind {
            ContainerKind::Regular | ContainerKind::Ephemeral => continue,
            ContainerKind::Sidecar => status.started == Some(true),
            ContainerKind::Init => status
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0),
        };
        if !complete {
            incomplete.push(*name);
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return ExpectedCondition::new("Initialized", "True", Some("PodCompleted"));
    }
    if regular_container_shown_started(containers, statuses)
        || (unknown.is_empty() && incomplete.is_empty())
    {
        return ExpectedCondition::new("Initialized", "True", None);
    }
    let mut parts = Vec::new();
    if !unknown.is_empty() {
        parts.push(format!(
            "containers with unknown status: [{}]",
            unknown.join(" ")
        ));
    }
    if !incomplete.is_empty() {
        parts.push(format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        ));
    }
    let mut condition =
        ExpectedCondition::new("Initialized", "False", Some("ContainersNotInitialized"));
    condition.message = Some(parts.join(", "));
    condition
}

/// A condition as the model expects it; `reason` None means "no reason".
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExpectedCondition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub message: Option<String>,
}

impl ExpectedCondition {
    fn new(type_: &'static str, status: &'static str, reason: Option<&'static str>) -> Self {
        ExpectedCondition {
            type_,
            status,
            reason,
            message: None,
        }
    }

    pub fn to_pod_condition(&self) -> PodCondition {
        PodCondition {
            type_: self.type_.to_owned(),
            status: self.status.to_owned(),
            reason: self.reason.map(str::to_owned),
            message: self.message.clone(),
            ..PodCondition::default()
        }
    }
}

/// The terminated reason the container runtime reports for an exit that was not an OOM
/// kill (containerd `toCRIContainerStatus`; the kubelet copies it verbatim).
pub fn terminated_reason(exit_code: i32) -> &'static str {
    if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Go's `time.Duration.String()` for whole seconds, as in the CrashLoopBackOff message.
pub fn go_duration(d: SpecDuration) -> String {
    let secs = d.as_millis() / 1000;
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60)
    }
}
