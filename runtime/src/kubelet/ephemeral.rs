//! Ephemeral containers: the kubelet's decisions for containers added to a running pod
//! through the `ephemeralcontainers` subresource (docs/fidelity/ephemeral-runtime.md).
//!
//! - `computePodActions` (kuberuntime_manager.go) lists an ephemeral container in
//!   `EphemeralContainersToStart` while the runtime has no container of its name: "Ephemeral
//!   Containers are never restarted". Once a container was created for it, whatever becomes
//!   of it, it is never started again; a start that failed before a container existed is
//!   tried again by a later sync.
//! - SyncPod starts them only once the sandbox runs, and not at all once the pod is terminal
//!   or terminating; a sync blocked in a postStart hook starts them when it is over.
//! - With `targetContainerName`, `startContainer`'s `getTargetID` needs the target's
//!   container: without one, "unable to find target container NAME"
//!   (CreateContainerConfigError); the runtime then joins the namespaces of the target's
//!   process, which must run.
//! - Their statuses are `convertToAPIContainerStatuses` of the pod's ephemeral containers:
//!   Waiting ContainerCreating (PodInitializing in a pod with init containers) until the
//!   first start, then Running and Terminated, or
//!   Waiting with the reason of a failed start; never `ready`, and no `started` (the prober
//!   manager sets those for regular and init containers only).
//! - They are killed with the pod: by its deletion, with the deletion's grace period, and
//!   when the pod reached a terminal phase without them (SyncTerminatingPod kills whatever
//!   still runs, with the pod's terminationGracePeriodSeconds). They have no preStop hook.

#[cfg(test)]
mod tests;

use super::{secs_i64, waiting, Effect, PodLifecycle};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the decisions need of an ephemeral container's manifest.
#[derive(Clone, Debug)]
pub(crate) struct EphemeralSetup {
    pub name: String,
    pub image: String,
    /// The regular container named by `targetContainerName`, by index.
    pub target: Option<usize>,
}

/// Why the runtime could not start an ephemeral container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StartError {
    /// Its image is not on the node, which never pulls: no container was created.
    ImageNotPresent(String),
    /// The target's process ended between the decision and the start: its PID namespace
    /// could not be joined.
    TargetGone(String),
    /// The process could not be started.
    Run(String),
}

/// Something that happened to an ephemeral container.
#[derive(Clone, Debug)]
pub(crate) enum EphemeralEvent {
    /// Added to the pod object (the kubelet's watch delivers the update).
    Added(EphemeralSetup),
    Started {
        ephemeral: usize,
        pid: i32,
        wall: Time,
    },
    StartFailed {
        ephemeral: usize,
        error: StartError,
    },
    Exited {
        ephemeral: usize,
        code: i32,
        oom_killed: bool,
        wall: Time,
    },
}

/// What the pod worker must do for an ephemeral container.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum EphemeralEffect {
    /// Start it, in the PID namespace of `target_pid` when it has a target (else in the
    /// pod's, with shareProcessNamespace, or one of its own).
    Start {
        ephemeral: usize,
        target_pid: Option<i32>,
    },
    /// SIGTERM, then SIGKILL after the grace period (at least the minimum).
    Kill {
        ephemeral: usize,
        pid: i32,
        grace_seconds: i64,
    },
}

/// Where an ephemeral container's one start stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// The next sync starts it.
    Due,
    /// Its target had no running process at the last sync, or the one it had ended before
    /// it could be joined (that instance): the sync after the target's next start tries
    /// again.
    WaitingForTarget {
        failed_instance: Option<u32>,
    },
    Starting,
    /// A container was created for it: never started again.
    Created,
    /// Its image is missing: every sync would fail the same way.
    Failed,
}

pub(super) struct EphemeralLife {
    setup: EphemeralSetup,
    status: ContainerStatus,
    pid: Option<i32>,
    start: Start,
    killing: bool,
}

impl EphemeralLife {
    /// `waiting_reason`: PodInitializing in a pod with init containers, else
    /// ContainerCreating (`convertToAPIContainerStatuses` passes `hasInitContainers` for
    /// the ephemeral containers too).
    fn new(setup: EphemeralSetup, waiting_reason: &str) -> EphemeralLife {
        EphemeralLife {
            status: ContainerStatus {
                name: setup.name.clone(),
                image: setup.image.clone(),
                image_id: String::new(),
                ready: false,
                restart_count: 0,
                state: Some(waiting(waiting_reason, None)),
                ..ContainerStatus::default()
            },
            setup,
            pid: None,
            start: Start::Due,
            killing: false,
        }
    }
}

impl PodLifecycle {
    /// Takes in what happened to an ephemeral container.
    pub(super) fn ephemeral_event(&mut self, event: EphemeralEvent) -> Vec<Effect> {
        match event {
            EphemeralEvent::Added(setup) => {
                let waiting_reason = match self.init_count {
                    0 => "ContainerCreating",
                    _ => "PodInitializing",
                };
                self.ephemerals
                    .push(EphemeralLife::new(setup, waiting_reason));
                vec![Effect::Publish]
            }
            EphemeralEvent::Started {
                ephemeral,
                pid,
                wall,
            } => {
                let uid = self.identity.uid.clone();
                let image_id = self.image_id.clone();
                let Some(life) = self.ephemerals.get_mut(ephemeral) else {
                    return Vec::new();
                };
                life.pid = Some(pid);
                life.start = Start::Created;
                life.status.container_id = Some(container_id(&uid, &life.setup.name));
                life.status.image_id = image_id;
                life.status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(wall),
                    }),
                    ..ContainerState::default()
                });
                let mut effects = vec![Effect::Publish];
                // Started by a sync that was under way when the pod was deleted: the
                // terminating sync that follows kills it.
                if let Some(grace) = self.terminating {
                    effects.extend(self.kill_ephemeral(ephemeral, grace));
                }
                effects
            }
            EphemeralEvent::StartFailed { ephemeral, error } => {
                let target_instance = self
                    .ephemerals
                    .get(ephemeral)
                    .and_then(|life| life.setup.target)
                    .and_then(|t| self.containers.get(t))
                    .and_then(|t| t.instance);
                let Some(life) = self.ephemerals.get_mut(ephemeral) else {
                    return Vec::new();
                };
                let (reason, message, next) = match error {
                    StartError::ImageNotPresent(message) => {
                        ("ErrImageNeverPull", message, Start::Failed)
                    }
                    StartError::TargetGone(message) => (
                        "CreateContainerError",
                        message,
                        Start::WaitingForTarget {
                            failed_instance: target_instance,
                        },
                    ),
                    StartError::Run(message) => ("RunContainerError", message, Start::Created),
                };
                life.start = next;
                life.status.state = Some(waiting(reason, Some(message)));
                vec![Effect::Publish]
            }
            EphemeralEvent::Exited {
                ephemeral,
                code,
                oom_killed,
                wall,
            } => {
                let uid = self.identity.uid.clone();
                let Some(life) = self.ephemerals.get_mut(ephemeral) else {
                    return Vec::new();
                };
                life.pid = None;
                let started_at = life
                    .status
                    .state
                    .as_ref()
                    .and_then(|s| s.running.as_ref())
                    .and_then(|r| r.started_at.clone());
                let reason = if oom_killed {
                    "OOMKilled"
                } else if code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                life.status.state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: code,
                        reason: Some(reason.to_owned()),
                        started_at,
                        finished_at: Some(wall),
                        container_id: Some(container_id(&uid, &life.setup.name)),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                });
                vec![Effect::Publish]
            }
        }
    }

    /// What every sync does for the ephemeral containers, after the event it follows:
    /// starts those due (SyncPod's step 5), and stops those of a pod that reached a
    /// terminal phase without them.
    pub(super) fn sync_ephemerals(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        let phase_terminal = self.phase_terminal();
        if phase_terminal && self.terminating.is_none() {
            let grace = secs_i64(self.termination_grace);
            for ephemeral in 0..self.ephemerals.len() {
                effects.extend(self.kill_ephemeral(ephemeral, grace));
            }
        }
        let syncs = self.sandbox_ready
            && self.terminating.is_none()
            && !phase_terminal
            && self.blocked_by.is_none();
        if !syncs {
            return effects;
        }
        let mut changed = false;
        for ephemeral in 0..self.ephemerals.len() {
            let life = &self.ephemerals[ephemeral];
            let start = life.start;
            // The target's process, its instance (if it ever had one), and its name.
            let target = life
                .setup
                .target
                .and_then(|t| self.containers.get(t))
                .map(|t| (t.pid, t.instance, t.setup.name.clone()));
            let refusal = match (start, target.clone()) {
                (Start::Due, None) => None,
                (Start::Due, Some((Some(_), _, _))) => None,
                (Start::WaitingForTarget { failed_instance }, Some((Some(_), instance, _)))
                    if instance != failed_instance =>
                {
                    None
                }
                (Start::Due, Some((None, instance, name))) => Some(match instance.is_some() {
                    // The runtime cannot join the namespaces of a stopped container.
                    true => (
                        "CreateContainerError",
                        format!("target container {name:?} is not running"),
                    ),
                    // `getTargetID`: the runtime has no container of that name.
                    false => (
                        "CreateContainerConfigError",
                        format!("unable to find target container {name}"),
                    ),
                }),
                _ => continue,
            };
            let life = &mut self.ephemerals[ephemeral];
            match refusal {
                None => {
                    life.start = Start::Starting;
                    let target_pid = target.and_then(|(pid, _, _)| pid);
                    effects.push(Effect::Ephemeral(EphemeralEffect::Start {
                        ephemeral,
                        target_pid,
                    }));
                }
                Some((reason, message)) => {
                    // Whichever instance it had is not running: its next one is awaited.
                    life.start = Start::WaitingForTarget {
                        failed_instance: target.and_then(|(_, instance, _)| instance),
                    };
                    life.status.state = Some(waiting(reason, Some(message)));
                    changed = true;
                }
            }
        }
        if changed {
            effects.push(Effect::Publish);
        }
        effects
    }

    /// Kills the ephemeral container's process, once, if it runs.
    pub(super) fn kill_ephemeral(&mut self, ephemeral: usize, grace_seconds: i64) -> Vec<Effect> {
        let Some(life) = self.ephemerals.get_mut(ephemeral) else {
            return Vec::new();
        };
        match (life.pid, life.killing) {
            (Some(pid), false) => {
                life.killing = true;
                vec![Effect::Ephemeral(EphemeralEffect::Kill {
                    ephemeral,
                    pid,
                    grace_seconds,
                })]
            }
            _ => Vec::new(),
        }
    }

    /// Whether an ephemeral container still runs: a terminating or terminal pod's sandbox
    /// stays until none does (killPod stops the containers before the sandbox).
    pub(super) fn ephemeral_running(&self) -> bool {
        self.ephemerals.iter().any(|life| life.pid.is_some())
    }

    /// Whether the phase is Succeeded or Failed (the regular containers are done).
    fn phase_terminal(&self) -> bool {
        self.terminal.is_some() || matches!(self.computed_phase(false), "Succeeded" | "Failed")
    }

    /// `status.ephemeralContainerStatuses`, sorted by name as
    /// `convertToAPIContainerStatuses` sorts them; None without any.
    pub(super) fn ephemeral_statuses(&self) -> Option<Vec<ContainerStatus>> {
        if self.ephemerals.is_empty() {
            return None;
        }
        let mut statuses: Vec<ContainerStatus> =
            self.ephemerals.iter().map(|l| l.status.clone()).collect();
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        Some(statuses)
    }

    /// The running ephemeral containers' processes, which must be killed with the pod.
    pub(super) fn stop_ephemerals(&mut self) -> Vec<i32> {
        self.ephemerals
            .iter_mut()
            .filter_map(|life| life.pid.take())
            .collect()
    }
}

/// An ephemeral container's one instance.
fn container_id(uid: &str, name: &str) -> String {
    format!("podcheck://{uid}/{name}/0")
}
