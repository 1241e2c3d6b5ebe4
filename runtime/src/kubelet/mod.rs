//! The kubelet's decisions for one pod, apart from their effects.
//!
//! A [`PodLifecycle`] holds what the kubelet knows of a pod's containers and turns each
//! [`Event`] (a container started, exited, a probe crossed its threshold, a back-off
//! ended) into the container statuses the pod shows and the [`Effect`]s the pod worker
//! performs (start an instance, stop one, publish the status). It never reads a clock
//! or touches a process: times come with the events, so every decision is testable
//! without root.

mod backoff;
#[cfg(test)]
mod tests;

pub(crate) use backoff::{CrashLoop, Restart};

use crate::probe::{ContainerView, Kind, PodView, ProbeUpdate};
use crate::{status, KubeletConfig, AGENT_IMAGE};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;
use tokio::time::Instant;

/// The kubelet never gives a container less than this to stop (`minimumGracePeriodInSeconds`).
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// The pod's `restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(policy: &str) -> Option<RestartPolicy> {
        match policy {
            "Always" => Some(RestartPolicy::Always),
            "OnFailure" => Some(RestartPolicy::OnFailure),
            "Never" => Some(RestartPolicy::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }

    /// Whether a container that exited with `code` is started again.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// Kubelet settings and the time scale: spec durations become wall durations here.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub kubelet: KubeletConfig,
    /// Wall seconds per spec second.
    pub time_scale: f64,
}

impl Timing {
    pub fn wall(&self, spec: Duration) -> Duration {
        spec.mul_f64(self.time_scale)
    }
}

/// Who the pod is, as the kubelet names it in messages.
#[derive(Clone, Debug)]
pub(crate) struct PodIdentity {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// What the decisions need of a container's manifest.
#[derive(Clone, Debug)]
pub(crate) struct ContainerSetup {
    pub name: String,
    pub image: String,
    /// Each probe's kind, with its own terminationGracePeriodSeconds if it has one.
    pub probes: Vec<(Kind, Option<Duration>)>,
}

impl ContainerSetup {
    fn has_probe(&self, kind: Kind) -> bool {
        self.probes.iter().any(|(k, _)| *k == kind)
    }
}

/// How the pod is set up, fixed from its manifest.
#[derive(Clone, Debug)]
pub(crate) struct PodSetup {
    pub identity: PodIdentity,
    pub restart_policy: RestartPolicy,
    /// The pod's terminationGracePeriodSeconds (spec time).
    pub termination_grace: Duration,
    /// The imageID every container reports (there is one image).
    pub image_id: String,
    pub containers: Vec<ContainerSetup>,
}

/// A container instance's end, as the pod worker observed it.
#[derive(Clone, Debug)]
pub(crate) struct Exit {
    pub container: usize,
    pub instance: u32,
    pub code: i32,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
    pub at: Instant,
    pub wall: Time,
}

/// Something that happened to the pod.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// The sandbox runs: the pod is ready to start containers.
    SandboxStarted,
    /// The sandbox (or what containers need around it, like probe workers) could not be
    /// set up; no container will start.
    SandboxFailed {
        message: String,
    },
    /// The sandbox is set up: start every container.
    SandboxReady,
    Started {
        container: usize,
        instance: u32,
        pid: i32,
        at: Instant,
        wall: Time,
    },
    StartFailed {
        container: usize,
        message: String,
    },
    Exited(Exit),
    Probe(ProbeUpdate),
    /// A back-off may have ended (the worker's timer for [`PodLifecycle::next_restart`]).
    RestartsDue,
}

/// What the pod worker must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    /// Record the pod's status (see [`PodLifecycle::settle`] and [`PodLifecycle::pod_status`]).
    Publish,
    /// Start this instance of the container.
    Start { container: usize, instance: u32 },
    /// Stop an instance a probe found unhealthy: SIGTERM now, and whatever still runs
    /// of it killed after `grace` (wall).
    Stop {
        container: usize,
        instance: u32,
        pid: i32,
        grace: Duration,
    },
}

struct ContainerLife {
    setup: ContainerSetup,
    status: ContainerStatus,
    /// Index of the current (or last) instance, once one was started.
    instance: Option<u32>,
    pid: Option<i32>,
    crash_loop: CrashLoop,
    restart_at: Option<Instant>,
    running_since: Option<Instant>,
    /// Set once a probe failure had the current instance stopped.
    killing: bool,
}

impl ContainerLife {
    fn new(setup: ContainerSetup) -> ContainerLife {
        ContainerLife {
            status: ContainerStatus {
                name: setup.name.clone(),
                image: setup.image.clone(),
                image_id: String::new(),
                ready: false,
                started: Some(false),
                restart_count: 0,
                state: Some(waiting("ContainerCreating", None)),
                ..ContainerStatus::default()
            },
            setup,
            instance: None,
            pid: None,
            crash_loop: CrashLoop::default(),
            restart_at: None,
            running_since: None,
            killing: false,
        }
    }

    fn next_instance(&self) -> u32 {
        self.instance.map_or(0, |i| i + 1)
    }

    fn is_running(&self) -> bool {
        self.status
            .state
            .as_ref()
            .is_some_and(|s| s.running.is_some())
    }
}

/// The kubelet's view of one pod, and its decisions.
pub(crate) struct PodLifecycle {
    identity: PodIdentity,
    restart_policy: RestartPolicy,
    termination_grace: Duration,
    image_id: String,
    timing: Timing,
    containers: Vec<ContainerLife>,
    sandbox_ready: bool,
    /// The phase once it is Succeeded or Failed, which it then stays.
    terminal: Option<&'static str>,
}

impl PodLifecycle {
    pub fn new(setup: PodSetup, timing: Timing) -> PodLifecycle {
        PodLifecycle {
            identity: setup.identity,
            restart_policy: setup.restart_policy,
            termination_grace: setup.termination_grace,
            image_id: setup.image_id,
            timing,
            containers: setup
                .containers
                .into_iter()
                .map(ContainerLife::new)
                .collect(),
            sandbox_ready: false,
            terminal: None,
        }
    }

    pub fn uid(&self) -> &str {
        &self.identity.uid
    }

    pub fn restart_policy(&self) -> RestartPolicy {
        self.restart_policy
    }

    pub fn container_statuses(&self) -> Vec<ContainerStatus> {
        self.containers.iter().map(|c| c.status.clone()).collect()
    }

    /// When the earliest back-off ends.
    pub fn next_restart(&self) -> Option<Instant> {
        self.containers.iter().filter_map(|c| c.restart_at).min()
    }

    /// Decides what `event` changes and what must be done about it; `now` is when.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        match event {
            Event::SandboxStarted => {
                self.sandbox_ready = true;
                vec![Effect::Publish]
            }
            Event::SandboxFailed { message } => {
                for run in &mut self.containers {
                    run.status.state =
                        Some(waiting("CreatePodSandboxError", Some(message.clone())));
                }
                vec![Effect::Publish]
            }
            Event::SandboxReady => {
                let mut effects: Vec<Effect> = (0..self.containers.len())
                    .map(|container| Effect::Start {
                        container,
                        instance: self.containers[container].next_instance(),
                    })
                    .collect();
                effects.push(Effect::Publish);
                effects
            }
            Event::Started {
                container,
                instance,
                pid,
                at,
                wall,
            } => {
                self.started(container, instance, pid, at, wall);
                Vec::new()
            }
            Event::StartFailed { container, message } => {
                let run = &mut self.containers[container];
                let reason = if run.setup.image == AGENT_IMAGE {
                    "RunContainerError"
                } else {
                    "ErrImageNeverPull"
                };
                run.status.state = Some(waiting(reason, Some(message)));
                run.status.ready = false;
                run.status.started = Some(false);
                Vec::new()
            }
            Event::Exited(exit) => self.exited(exit, now),
            Event::Probe(update) => self.probed(update),
            Event::RestartsDue => {
                let mut effects = Vec::new();
                for (container, run) in self.containers.iter_mut().enumerate() {
                    if run.restart_at.is_some_and(|at| at <= now) {
                        run.restart_at = None;
                        effects.push(Effect::Start {
                            container,
                            instance: run.next_instance(),
                        });
                    }
                }
                effects.push(Effect::Publish);
                effects
            }
        }
    }

    fn started(&mut self, container: usize, instance: u32, pid: i32, at: Instant, wall: Time) {
        let uid = &self.identity.uid;
        let run = &mut self.containers[container];
        run.instance = Some(instance);
        run.pid = Some(pid);
        let previous = run.status.state.take();
        if previous.as_ref().is_some_and(|s| s.terminated.is_some()) {
            run.status.last_state = previous;
        }
        run.status.restart_count = instance as i32;
        run.status.container_id = Some(format!("podcheck://{uid}/{}/{instance}", run.setup.name));
        run.status.image_id = self.image_id.clone();
        run.status.state = Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(wall),
            }),
            ..ContainerState::default()
        });
        // A new container's initial probe results: startup Unknown (not started),
        // readiness Failure (not ready); without those probes it is started and ready at
        // once.
        let started = !run.setup.has_probe(Kind::Startup);
        run.status.started = Some(started);
        run.status.ready = started && !run.setup.has_probe(Kind::Readiness);
        run.running_since = Some(at);
        run.killing = false;
    }

    fn exited(&mut self, exit: Exit, now: Instant) -> Vec<Effect> {
        let run = &mut self.containers[exit.container];
        if run.instance != Some(exit.instance) {
            return Vec::new();
        }
        run.pid = None;
        run.running_since = None;
        let started_at = run
            .status
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone());
        let reason = if exit.oom_killed {
            "OOMKilled"
        } else if exit.code == 0 {
            "Completed"
        } else {
            "Error"
        };
        run.status.state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.code,
                reason: Some(reason.to_owned()),
                started_at,
                finished_at: Some(exit.wall),
                container_id: run.status.container_id.clone(),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        run.status.ready = false;
        run.status.started = Some(false);
        // A probe kill restarts under Always and OnFailure whatever the exit code
        // (`shouldRestartOnFailure`); an exit follows the policy and its code.
        let killed = run.killing;
        let restart = self.terminal.is_none()
            && match killed {
                true => self.restart_policy != RestartPolicy::Never,
                false => self.restart_policy.restarts(exit.code),
            };
        // The termination itself shows before any restart decision, as with the kubelet.
        let mut effects = vec![Effect::Publish];
        if !restart {
            return effects;
        }
        match run.crash_loop.restart(&self.timing, exit.at, killed, now) {
            Restart::Now => effects.push(Effect::Start {
                container: exit.container,
                instance: run.next_instance(),
            }),
            Restart::After { delay, at } => {
                let identity = &self.identity;
                let message = backoff::waiting_message(
                    delay,
                    &run.setup.name,
                    &format!("{}_{}({})", identity.name, identity.namespace, identity.uid),
                );
                run.status.last_state = run.status.state.take();
                run.status.state = Some(waiting("CrashLoopBackOff", Some(message)));
                run.restart_at = Some(at);
            }
        }
        effects.push(Effect::Publish);
        effects
    }

    /// A probe result crossed its threshold for a container instance.
    fn probed(&mut self, update: ProbeUpdate) -> Vec<Effect> {
        let terminal = self.terminal.is_some();
        let Some(run) = self.containers.get_mut(update.container) else {
            return Vec::new();
        };
        if run.instance != Some(update.instance) || !run.is_running() || terminal {
            return Vec::new();
        }
        let mut effects = Vec::new();
        match (update.kind, update.success) {
            (Kind::Startup, true) => {
                run.status.started = Some(true);
                if !run.setup.has_probe(Kind::Readiness) {
                    run.status.ready = true;
                }
            }
            (Kind::Readiness, ready) => {
                run.status.ready = ready && run.status.started == Some(true);
            }
            (Kind::Liveness | Kind::Startup, false) => {
                effects.extend(self.stop_unhealthy(update.container, update.kind));
            }
            (Kind::Liveness, true) => {}
        }
        effects.push(Effect::Publish);
        effects
    }

    /// Stops a container a probe found unhealthy, once per instance, with the grace
    /// period of the probe, else of the pod, never below the kubelet's minimum.
    ///
    /// Under restartPolicy Never, when no other container keeps running, the kubelet's
    /// `computePodActions` finds nothing to keep nor start and kills the whole pod
    /// (`KillPod`): `killContainersWithSyncResult` passes reason `reasonUnknown`, so the
    /// probe's own grace period is ignored and the pod's applies
    /// (docs/fidelity/phase-conditions.md §1.7).
    fn stop_unhealthy(&mut self, container: usize, kind: Kind) -> Option<Effect> {
        let pod_grace = self.termination_grace;
        let others_running = self
            .containers
            .iter()
            .enumerate()
            .any(|(i, c)| i != container && c.is_running());
        let whole_pod_killed = self.restart_policy == RestartPolicy::Never && !others_running;
        let run = &mut self.containers[container];
        let (Some(pid), Some(instance)) = (run.pid, run.instance) else {
            return None;
        };
        if run.killing {
            return None;
        }
        run.killing = true;
        let probe_grace = run
            .setup
            .probes
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, grace)| *grace)
            .filter(|_| !whole_pod_killed);
        let grace = probe_grace.unwrap_or(pod_grace).max(MINIMUM_GRACE);
        Some(Effect::Stop {
            container,
            instance,
            pid,
            grace: self.timing.wall(grace),
        })
    }

    /// Settles the phase before a status is published: a pod that reached Succeeded or
    /// Failed stays there, and its sandbox goes. Returns whether the sandbox must be
    /// torn down now.
    pub fn settle(&mut self) -> bool {
        if self.terminal.is_some() {
            return false;
        }
        let phase = status::phase(&self.container_statuses(), self.restart_policy.as_str());
        if phase == "Succeeded" || phase == "Failed" {
            self.terminal = Some(phase);
            self.sandbox_ready = false;
            return true;
        }
        false
    }

    fn phase(&self, statuses: &[ContainerStatus]) -> &'static str {
        self.terminal
            .unwrap_or_else(|| status::phase(statuses, self.restart_policy.as_str()))
    }

    /// The pod's status at `stamp`; `first` is when its first status was recorded and
    /// `previous` its last one, whose conditions keep their transition times.
    pub fn pod_status(
        &self,
        stamp: &Time,
        first: Option<&Time>,
        previous: Option<&PodStatus>,
    ) -> PodStatus {
        let statuses = self.container_statuses();
        let phase = self.phase(&statuses);
        let mut conditions = status::conditions(&statuses, phase, self.sandbox_ready, stamp);
        if let Some(previous) = previous {
            status::carry_transition_times(
                &mut conditions,
                previous.conditions.as_deref().unwrap_or(&[]),
            );
        }
        PodStatus {
            phase: Some(phase.to_owned()),
            conditions: Some(conditions),
            container_statuses: Some(statuses),
            host_ip: Some("127.0.0.1".to_owned()),
            qos_class: Some("BestEffort".to_owned()),
            start_time: first.cloned().or_else(|| Some(stamp.clone())),
            ..PodStatus::default()
        }
    }

    /// What probe workers see of the pod.
    pub fn probe_view(&self) -> PodView {
        PodView {
            containers: self
                .containers
                .iter()
                .map(|c| ContainerView {
                    instance: c.instance,
                    running_since: c.running_since,
                    started: c.status.started == Some(true),
                    terminated: c
                        .status
                        .state
                        .as_ref()
                        .is_some_and(|s| s.terminated.is_some()),
                    pid: c.pid,
                })
                .collect(),
            terminal: self.terminal.is_some(),
        }
    }

    /// The pod is going away: no restart is pending any more. Returns the processes of
    /// the running instances, which must be killed.
    pub fn stop_all(&mut self) -> Vec<i32> {
        self.containers
            .iter_mut()
            .filter_map(|run| {
                run.restart_at = None;
                run.pid.take()
            })
            .collect()
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..ContainerState::default()
    }
}
