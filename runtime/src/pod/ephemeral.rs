//! Ephemeral containers on the pod worker's side: what the runtime prepares when one is
//! added, and how it starts, kills and reaps it. The decisions are the kubelet's, in
//! `crate::kubelet` (its `ephemeral` module).
//!
//! An ephemeral container runs like a regular one (the sandbox's network, UTS and IPC
//! namespaces, its own mount namespace over an overlay of its image, its own cgroup), in
//! the PID namespace the CRI gives it: its target's (`NamespaceMode_TARGET`), else the
//! pod's with shareProcessNamespace, else one of its own.

use super::manifest::{self, ContainerSpec, Invalid};
use super::now;
use super::worker::{wait_code, Worker};
use crate::errors::RuntimeError;
use crate::kubelet::{self, EphemeralEffect, EphemeralEvent, EphemeralSetup, Event, StartError};
use crate::{sys, AGENT_IMAGE};
use k8s_openapi::api::core::v1::{Container, EphemeralContainer, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// An ephemeral container as the runtime prepared it, for the kubelet to start.
pub(super) struct Added {
    pub(super) spec: ContainerSpec,
    /// `targetContainerName`, when it names one.
    pub(super) target: Option<String>,
}

/// Reads `spec.ephemeralContainers[index]` as the runtime runs it, refusing what the local
/// runtime cannot run (as it refuses such a pod at creation).
pub(super) fn prepare(
    spec: &PodSpec,
    index: usize,
    pod_dir: &Path,
    grace_seconds: i64,
    invalid: Invalid,
) -> Result<Added, RuntimeError> {
    let path = format!("spec.ephemeralContainers[{index}]");
    let ephemeral = spec
        .ephemeral_containers
        .as_ref()
        .and_then(|list| list.get(index))
        .ok_or_else(|| invalid(&path, "missing".to_owned()))?;
    let volumes = manifest::volumes(spec, pod_dir, invalid)?;
    let container = as_container(ephemeral);
    Ok(Added {
        spec: manifest::container_spec(
            &container,
            &path,
            kubelet::ContainerKind::Regular,
            &volumes,
            grace_seconds,
            invalid,
        )?,
        target: ephemeral
            .target_container_name
            .clone()
            .filter(|name| !name.is_empty()),
    })
}

/// The `EphemeralContainerCommon` part of an ephemeral container, which is a container's
/// fields (the kubelet converts one into the other the same way).
fn as_container(ephemeral: &EphemeralContainer) -> Container {
    let e = ephemeral.clone();
    Container {
        args: e.args,
        command: e.command,
        env: e.env,
        env_from: e.env_from,
        image: e.image,
        image_pull_policy: e.image_pull_policy,
        lifecycle: e.lifecycle,
        liveness_probe: e.liveness_probe,
        name: e.name,
        ports: e.ports,
        readiness_probe: e.readiness_probe,
        resize_policy: e.resize_policy,
        resources: e.resources,
        restart_policy: e.restart_policy,
        restart_policy_rules: e.restart_policy_rules,
        security_context: e.security_context,
        startup_probe: e.startup_probe,
        stdin: e.stdin,
        stdin_once: e.stdin_once,
        termination_message_path: e.termination_message_path,
        termination_message_policy: e.termination_message_policy,
        tty: e.tty,
        volume_devices: e.volume_devices,
        volume_mounts: e.volume_mounts,
        working_dir: e.working_dir,
    }
}

/// An ephemeral container's process ended, as its waiter thread saw it.
pub(super) struct EphemeralExit {
    ephemeral: usize,
    code: i32,
    wall: Time,
}

/// The worker's ephemeral containers.
pub(super) struct Ephemerals {
    specs: Vec<ContainerSpec>,
    /// Each one's OOM kill count before its process started.
    oom_kills_before: Vec<u64>,
    /// Kills under way (SIGTERM, then SIGKILL).
    kills: Vec<JoinHandle<()>>,
    exits: mpsc::UnboundedSender<EphemeralExit>,
    exit_receiver: Option<mpsc::UnboundedReceiver<EphemeralExit>>,
}

impl Ephemerals {
    pub fn new() -> Ephemerals {
        let (exits, exit_receiver) = mpsc::unbounded_channel();
        Ephemerals {
            specs: Vec::new(),
            oom_kills_before: Vec::new(),
            kills: Vec::new(),
            exits,
            exit_receiver: Some(exit_receiver),
        }
    }

    /// Where the worker learns of their exits (once).
    pub fn take_exits(&mut self) -> Option<mpsc::UnboundedReceiver<EphemeralExit>> {
        self.exit_receiver.take()
    }

    /// The kills under way, which stop with the pod.
    pub fn drain_kills(&mut self) -> impl Iterator<Item = JoinHandle<()>> + '_ {
        self.kills.drain(..)
    }
}

impl Worker {
    /// The kubelet's watch delivered a new ephemeral container.
    pub(super) fn add_ephemeral(&mut self, added: Added) -> Event {
        let target = added
            .target
            .and_then(|name| self.specs.iter().position(|spec| spec.name == name));
        let setup = EphemeralSetup {
            name: added.spec.name.clone(),
            image: added.spec.image.clone(),
            target,
        };
        self.ephemerals.specs.push(added.spec);
        self.ephemerals.oom_kills_before.push(0);
        Event::Ephemeral(EphemeralEvent::Added(setup))
    }

    /// Carries out an ephemeral container's effect; returns what it led to.
    pub(super) fn apply_ephemeral(&mut self, effect: EphemeralEffect) -> Option<Event> {
        match effect {
            EphemeralEffect::Start {
                ephemeral,
                target_pid,
            } => Some(self.start_ephemeral(ephemeral, target_pid)),
            EphemeralEffect::Kill {
                ephemeral,
                pid,
                grace_seconds,
            } => {
                self.kill_ephemeral(ephemeral, pid, grace_seconds);
                None
            }
        }
    }

    fn ephemeral_group(&self, ephemeral: usize) -> Option<PathBuf> {
        let name = &self.ephemerals.specs.get(ephemeral)?.name;
        Some(self.group(&format!("{name}-0")))
    }

    fn start_ephemeral(&mut self, ephemeral: usize, target_pid: Option<i32>) -> Event {
        let failed = |error| Event::Ephemeral(EphemeralEvent::StartFailed { ephemeral, error });
        let (Some(spec), Some(group)) = (
            self.ephemerals.specs.get(ephemeral),
            self.ephemeral_group(ephemeral),
        ) else {
            return failed(StartError::Run("no such ephemeral container".to_owned()));
        };
        if spec.image != AGENT_IMAGE {
            let image = spec.image.clone();
            let error = RuntimeError::ImageNotPresent { image };
            return failed(StartError::ImageNotPresent(error.to_string()));
        }
        // The target's namespace is opened first: a target that ended meanwhile leaves
        // nothing to join.
        let pid_namespace = match target_pid {
            Some(pid) => match sys::PidNamespace::of(pid) {
                Ok(namespace) => Ok(namespace),
                Err(e) => {
                    return failed(StartError::TargetGone(format!(
                        "join the PID namespace of the target container: {e}"
                    )))
                }
            },
            None => self.pod_pid_namespace(),
        };
        let spawned =
            pid_namespace.and_then(|namespace| self.spawn_container(spec, 0, &group, namespace));
        let (child, oom_kills_before) = match spawned {
            Ok(spawned) => spawned,
            Err(err) => return failed(StartError::Run(err.to_string())),
        };
        self.ephemerals.oom_kills_before[ephemeral] = oom_kills_before;
        let pid = child.id() as i32;
        let exits = self.ephemerals.exits.clone();
        tokio::task::spawn_blocking(move || {
            let code = wait_code(child);
            let _ = exits.send(EphemeralExit {
                ephemeral,
                code,
                wall: now(),
            });
        });
        Event::Ephemeral(EphemeralEvent::Started {
            ephemeral,
            pid,
            wall: now(),
        })
    }

    /// `killContainer` without a preStop hook (ephemeral containers have none): SIGTERM,
    /// then SIGKILL to whatever still runs in its cgroup after the grace period (at least
    /// the minimum).
    fn kill_ephemeral(&mut self, ephemeral: usize, pid: i32, grace_seconds: i64) {
        let Some(group) = self.ephemeral_group(ephemeral) else {
            return;
        };
        let shared = self.shared.clone();
        let scale = shared.config.time_scale;
        let timeout = kubelet::stop_timeout(grace_seconds, None, None);
        let wait = Duration::from_secs(u64::try_from(timeout).unwrap_or(0)).mul_f64(scale);
        let task = tokio::spawn(async move {
            // Signal it only while it is still in its cgroup, so that a reused pid is
            // never hit.
            if shared.cgroups.pids(&group).contains(&pid) {
                sys::kill(pid, libc::SIGTERM);
            }
            tokio::time::sleep(wait).await;
            shared.cgroups.kill_all(&group);
        });
        let kills = &mut self.ephemerals.kills;
        kills.retain(|task| !task.is_finished());
        kills.push(task);
    }

    /// Cleans up after an ephemeral container's process (leftovers die with it, its
    /// cgroup goes) and tells the kubelet whether the OOM killer ended it.
    pub(super) fn reap_ephemeral(&mut self, exit: EphemeralExit) -> Event {
        let mut oom_killed = false;
        if let Some(group) = self.ephemeral_group(exit.ephemeral) {
            let cgroups = self.shared.cgroups.clone();
            let before = self
                .ephemerals
                .oom_kills_before
                .get(exit.ephemeral)
                .copied()
                .unwrap_or(0);
            oom_killed = cgroups.oom_kills(&group) > before;
            cgroups.kill_all(&group);
            tokio::task::spawn_blocking(move || cgroups.remove(&group));
        }
        Event::Ephemeral(EphemeralEvent::Exited {
            ephemeral: exit.ephemeral,
            code: exit.code,
            oom_killed,
            wall: exit.wall,
        })
    }
}
