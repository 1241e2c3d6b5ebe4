//! Status derivation: the pod-level status (phase, conditions) and the container fields
//! (terminated reason, the CrashLoopBackOff message) the kubelet generates from a set of
//! container statuses, as pure functions.
//!
//! The checker applies them to every observed snapshot and the model target uses them to
//! produce its own snapshots. A rule area that adds a derived field adds its function here.

use crate::duration::SpecDuration;
use crate::scenario::RestartPolicy;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};

/// The phase the kubelet computes from container statuses (`getPhase`,
/// pkg/kubelet/kubelet_pods.go), for pods without init containers.
///
/// `deleted`: the pod has a deletionTimestamp. Once every container of a deleted pod has
/// stopped, `SyncTerminatingPod` generates the status with `podIsTerminal` and the phase
/// no longer follows the restart policy: Succeeded when every container exited 0, Failed
/// otherwise (since 1.27, kubernetes#115331).
pub fn derive_phase(
    container_names: &[&str],
    statuses: &[ContainerStatus],
    policy: RestartPolicy,
    deleted: bool,
) -> &'static str {
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for name in container_names {
        let Some(status) = statuses.iter().find(|s| s.name == *name) else {
            unknown += 1;
            continue;
        };
        let state = status.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
            stopped += 1;
            if terminated.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.and_then(|s| s.waiting.as_ref()).is_some() {
            let has_last_termination = status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some();
            if has_last_termination {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if waiting > 0 {
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

pub fn is_terminal_phase(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// The conditions the kubelet generates (pkg/kubelet/status/generate.go) for a pod without
/// init containers, probes or readiness gates. `sandbox_ready` is whether the pod sandbox
/// (network namespace) exists: true from sandbox creation until a terminal pod is torn down.
pub fn derive_conditions(
    container_names: &[&str],
    statuses: &[ContainerStatus],
    phase: &str,
    sandbox_ready: bool,
) -> Vec<ExpectedCondition> {
    let unready: Vec<&str> = container_names
        .iter()
        .copied()
        .filter(|name| !statuses.iter().any(|s| s.name == *name && s.ready))
        .collect();
    let unknown: Vec<&str> = container_names
        .iter()
        .copied()
        .filter(|name| !statuses.iter().any(|s| s.name == *name))
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
            let unready_known: Vec<&str> = unready
                .iter()
                .copied()
                .filter(|n| !unknown.contains(n))
                .collect();
            if !unready_known.is_empty() {
                parts.push(format!(
                    "containers with unready status: [{}]",
                    unready_known.join(" ")
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
    let initialized = if phase == "Succeeded" {
        ExpectedCondition::new("Initialized", "True", Some("PodCompleted"))
    } else {
        ExpectedCondition::new("Initialized", "True", None)
    };
    vec![
        ExpectedCondition::new(
            "PodReadyToStartContainers",
            if sandbox_ready { "True" } else { "False" },
            None,
        ),
        initialized,
        ready,
        containers_ready,
        ExpectedCondition::new("PodScheduled", "True", None),
    ]
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
