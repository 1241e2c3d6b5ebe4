//! The kubelet's decisions for one pod, apart from their effects.
//!
//! A [`PodLifecycle`] holds what the kubelet knows of a pod's containers and turns each
//! [`Event`] (a container started, exited, a probe crossed its threshold, a back-off
//! ended) into the container statuses the pod shows and the [`Effect`]s the pod worker
//! performs (start an instance, stop one, publish the status). It never reads a clock
//! or touches a process: times come with the events, so every decision is testable
//! without root.

mod backoff;
mod ephemeral;
mod init;
#[cfg(test)]
mod init_tests;
mod report;
mod start;
mod termination;
#[cfg(test)]
mod test_pod;
#[cfg(test)]
mod tests;

pub(crate) use backoff::{CrashLoop, Restart};
pub(crate) use ephemeral::{EphemeralEffect, EphemeralEvent, EphemeralSetup, StartError};
pub(crate) use init::ContainerKind;
pub(crate) use termination::{grace_left, runs_pre_stop, stop_timeout};

use crate::probe::{Kind, ProbeUpdate};
use crate::KubeletConfig;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;
use tokio::time::Instant;

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
    /// An init container, a sidecar (an init container with `restartPolicy: Always`) or a
    /// regular container.
    pub kind: ContainerKind,
    pub image: String,
    /// Each probe's kind, with its own terminationGracePeriodSeconds if it has one.
    pub probes: Vec<(Kind, Option<Duration>)>,
    /// Whether the container has a postStart hook: it shows Running only once the hook
    /// returned.
    pub post_start: bool,
    /// Whether the container has a preStop hook: a deleted pod terminates only once it ran.
    pub pre_stop: bool,
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
    /// The instance's process runs (its postStart hook, if any, has not run yet).
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
    /// The instance's postStart hook returned: Ok, or Err with the kubelet's message.
    PostStartDone {
        container: usize,
        instance: u32,
        result: Result<(), String>,
    },
    Exited(Exit),
    Probe(ProbeUpdate),
    /// A back-off may have ended (the worker's timer for [`PodLifecycle::next_restart`]).
    RestartsDue,
    /// The pod object's `deletionGracePeriodSeconds` as the kubelet sees it: the pod was
    /// deleted (or its deletion's grace period shortened).
    Deleted {
        grace_seconds: i64,
    },
    /// A kill's preStop hook returned, or the kill stopped waiting for it.
    PreStopDone {
        container: usize,
        instance: u32,
    },
    /// Something happened to an ephemeral container (see [`ephemeral`]).
    Ephemeral(EphemeralEvent),
}

/// What the pod worker must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    /// Record the pod's status (see [`PodLifecycle::settle`] and [`PodLifecycle::pod_status`]).
    Publish,
    /// Start this instance of the container.
    Start { container: usize, instance: u32 },
    /// Run the instance's postStart hook, concurrently with its process, and report
    /// [`Event::PostStartDone`].
    RunPostStart {
        container: usize,
        instance: u32,
        pid: i32,
    },
    /// Kill an instance as `killContainer` does: its preStop hook if it has one (see
    /// [`runs_pre_stop`]), bounded by `grace_seconds`; then, if `after` names containers,
    /// wait (within the grace left) until their kills are over ([`PodLifecycle::holding`]);
    /// then SIGTERM; then SIGKILL to whatever still runs of it after
    /// [`stop_timeout`]. A new kill of the same instance replaces one under way
    /// (the kubelet cancels the sync that was killing it and kills again, with the shorter
    /// grace period).
    Kill {
        container: usize,
        instance: u32,
        pid: i32,
        /// Spec seconds.
        grace_seconds: i64,
        /// The containers this one outlives (`terminationOrdering`).
        after: Vec<usize>,
    },
    /// Start or stop an ephemeral container (see [`ephemeral`]).
    Ephemeral(EphemeralEffect),
}

/// An instance killed because its postStart hook failed: it never showed Running.
#[derive(Clone, Debug)]
struct FailedStart {
    wall: Time,
    message: String,
}

/// A started instance whose postStart hook has not returned yet.
#[derive(Clone, Debug)]
struct PendingStart {
    instance: u32,
    at: Instant,
    wall: Time,
    /// Its process exited meanwhile: the kubelet's sync, blocked in the hook, sees the exit
    /// only once the hook returned.
    exit: Option<Exit>,
}

struct ContainerLife {
    setup: ContainerSetup,
    status: ContainerStatus,
    /// Index of the current (or last) instance, once one was started.
    instance: Option<u32>,
    /// The current instance's process, while it runs (also while its postStart runs).
    pid: Option<i32>,
    crash_loop: CrashLoop,
    restart_at: Option<Instant>,
    running_since: Option<Instant>,
    /// Set once a probe failure had the current instance stopped.
    killing: bool,
    post_start: Option<PendingStart>,
    /// The current instance is being killed because its postStart hook failed.
    post_start_failed: Option<FailedStart>,
    /// The termination of the instance before the last one, which a container that is not
    /// restarted any more shows as its lastState.
    termination_before_last: Option<ContainerState>,
    /// A start was asked for once: SyncPod has acted on this container.
    requested: bool,
    /// A start was handed to the pod worker, which has not reported it yet (Started or
    /// StartFailed).
    launching: bool,
}

impl ContainerLife {
    /// `waiting_reason` is the default Waiting reason of a container not started yet:
    /// PodInitializing in a pod with init containers, else ContainerCreating
    /// (`convertToAPIContainerStatuses`' `defaultWaitingState`).
    fn new(setup: ContainerSetup, waiting_reason: &str) -> ContainerLife {
        ContainerLife {
            status: ContainerStatus {
                name: setup.name.clone(),
                image: setup.image.clone(),
                image_id: String::new(),
                ready: false,
                started: Some(false),
                restart_count: 0,
                state: Some(waiting(waiting_reason, None)),
                ..ContainerStatus::default()
            },
            setup,
            instance: None,
            pid: None,
            crash_loop: CrashLoop::default(),
            restart_at: None,
            running_since: None,
            killing: false,
            post_start: None,
            post_start_failed: None,
            termination_before_last: None,
            requested: false,
            launching: false,
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

    /// The instance's termination, newest first: what a container that will not run again
    /// shows (`convertToAPIContainerStatuses` takes State and LastTerminationState from the
    /// runtime's two newest instances).
    fn last_termination(&self) -> Option<&ContainerState> {
        [self.status.state.as_ref(), self.status.last_state.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.terminated.is_some())
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
    /// The effective grace period (spec seconds) once the pod was deleted.
    terminating: Option<i64>,
    /// The container whose start (a postStart hook, or the kill after a failed one) or
    /// probe kill the kubelet's SyncPod is blocked in: `startContainer` and
    /// `killContainer` run synchronously inside it.
    blocked_by: Option<usize>,
    /// Containers to start once SyncPod is no longer blocked, in order (SyncPod starts
    /// its containers one after another).
    start_queue: std::collections::VecDeque<usize>,
    /// A deletion that came while SyncPod was blocked: the pod worker takes it up (with
    /// this effective grace period) once SyncPod returns, whose context it cannot cancel.
    deferred_deletion: Option<i64>,
    /// Kills whose preStop hook runs: killPod waits for them.
    pre_stops: std::collections::HashSet<(usize, u32)>,
    /// The kubelet's own delete of the pod object (grace 0) once it terminated is due.
    final_delete: FinalDelete,
    /// The pod is being killed without a deletion (`KillPod` once no regular container will
    /// run again, or `SyncTerminatingPod` after a failed init container under Never): nothing
    /// starts or restarts any more.
    stopping: bool,
    /// How many of `containers` are init containers (sidecars included): they come first.
    init_count: usize,
    /// The regular containers were started: every init container was done once.
    initialized: bool,
    /// The phase shown before the pod turned terminal: the status manager holds the terminal
    /// phase back while containers may still run (`mergePodStatus`).
    held_phase: &'static str,
    /// The ephemeral containers, in the order they were added.
    ephemerals: Vec<ephemeral::EphemeralLife>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FinalDelete {
    NotYet,
    Sent,
}

impl PodLifecycle {
    pub fn new(setup: PodSetup, timing: Timing) -> PodLifecycle {
        let init_count = setup
            .containers
            .iter()
            .take_while(|c| c.kind != ContainerKind::Regular)
            .count();
        let waiting_reason = match init_count {
            0 => "ContainerCreating",
            _ => "PodInitializing",
        };
        PodLifecycle {
            identity: setup.identity,
            restart_policy: setup.restart_policy,
            termination_grace: setup.termination_grace,
            image_id: setup.image_id,
            timing,
            containers: setup
                .containers
                .into_iter()
                .map(|c| ContainerLife::new(c, waiting_reason))
                .collect(),
            sandbox_ready: false,
            terminal: None,
            terminating: None,
            blocked_by: None,
            start_queue: std::collections::VecDeque::new(),
            deferred_deletion: None,
            pre_stops: std::collections::HashSet::new(),
            final_delete: FinalDelete::NotYet,
            stopping: false,
            init_count,
            initialized: false,
            held_phase: "Pending",
            ephemerals: Vec::new(),
        }
    }

    pub fn uid(&self) -> &str {
        &self.identity.uid
    }

    pub fn restart_policy(&self) -> RestartPolicy {
        self.restart_policy
    }

    #[cfg(test)]
    pub fn container_statuses(&self) -> Vec<ContainerStatus> {
        self.containers.iter().map(|c| c.status.clone()).collect()
    }

    /// When the earliest back-off ends.
    pub fn next_restart(&self) -> Option<Instant> {
        self.containers.iter().filter_map(|c| c.restart_at).min()
    }

    /// Decides what `event` changes and what must be done about it; `now` is when.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        let mut effects = self.decide(event, now);
        // The sync that follows the event also looks at the ephemeral containers.
        effects.extend(self.sync_ephemerals());
        effects
    }

    fn decide(&mut self, event: Event, now: Instant) -> Vec<Effect> {
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
            Event::SandboxReady => self.start_initial(),
            Event::Started {
                container,
                instance,
                pid,
                at,
                wall,
            } => self.started(container, instance, pid, at, wall),
            Event::StartFailed { container, message } => self.start_failed(container, message),
            Event::PostStartDone {
                container,
                instance,
                result,
            } => self.post_start_done(container, instance, result, now),
            Event::Exited(exit) => self.exited(exit, now),
            Event::Probe(update) => self.probed(update),
            Event::RestartsDue => {
                let mut effects = Vec::new();
                if self.terminating.is_some() || self.stopping {
                    return effects;
                }
                for container in 0..self.containers.len() {
                    let run = &mut self.containers[container];
                    if run.restart_at.is_some_and(|at| at <= now) {
                        run.restart_at = None;
                        effects.extend(self.start(container));
                    }
                }
                effects.push(Effect::Publish);
                effects
            }
            Event::Deleted { grace_seconds } => self.deleted(grace_seconds),
            Event::PreStopDone {
                container,
                instance,
            } => self.pre_stop_done(container, instance),
            Event::Ephemeral(event) => self.ephemeral_event(event),
        }
    }

    fn exited(&mut self, exit: Exit, now: Instant) -> Vec<Effect> {
        let terminating = self.terminating.is_some();
        let run = &mut self.containers[exit.container];
        if run.instance != Some(exit.instance) {
            return Vec::new();
        }
        if let Some(pending) = run.post_start.as_mut() {
            if pending.instance == exit.instance {
                pending.exit = Some(exit);
                return Vec::new();
            }
        }
        run.pid = None;
        run.running_since = None;
        let post_start_failed = run.post_start_failed.take();
        let started_at = match &post_start_failed {
            Some(failed) => Some(failed.wall.clone()),
            None => run
                .status
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .and_then(|r| r.started_at.clone()),
        };
        let reason = if exit.oom_killed {
            "OOMKilled"
        } else if exit.code == 0 {
            "Completed"
        } else {
            "Error"
        };
        run.termination_before_last = run.last_termination().cloned();
        run.status.state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.code,
                reason: Some(reason.to_owned()),
                started_at,
                finished_at: Some(exit.wall),
                container_id: Some(format!(
                    "podcheck://{}/{}/{}",
                    self.identity.uid, run.setup.name, exit.instance
                )),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        if post_start_failed.is_some() {
            // This instance never showed Running: the one before is its lastState.
            run.status.last_state = run.termination_before_last.clone();
            run.status.restart_count = exit.instance as i32;
            run.status.container_id = Some(format!(
                "podcheck://{}/{}/{}",
                self.identity.uid, run.setup.name, exit.instance
            ));
            run.status.image_id = self.image_id.clone();
        }
        // A regular init container that exited 0 is ready (`UpdatePodStatus`).
        run.status.ready = run.setup.kind == ContainerKind::Init && exit.code == 0;
        run.status.started = Some(false);
        // Nothing restarts once the pod is deleted (`ShouldContainerBeRestarted`: "Once a
        // pod has been marked deleted, it should not be restarted") or being killed; else
        // each kind of container has its rule ([`PodLifecycle::restarts`]).
        let killed = run.killing;
        let restart = self.terminal.is_none()
            && !terminating
            && !self.stopping
            && self.restarts(exit.container, exit.code, killed);
        // A probe kill or the kill after a failed postStart blocked SyncPod until the
        // container stopped.
        let mut effects = Vec::new();
        let unblocks =
            self.blocked_by == Some(exit.container) && (killed || post_start_failed.is_some());
        if !restart {
            effects.push(Effect::Publish);
            if unblocks {
                effects.extend(self.unblock());
            }
            // An init container done, a failed initialization, the last regular container
            // done: what the next sync does about it.
            effects.extend(self.stayed_down(exit.container, exit.code));
            return effects;
        }
        let shows_back_off = self.shows_back_off(exit.container, exit.code);
        let run = &mut self.containers[exit.container];
        if let (Some(FailedStart { message, .. }), true) = (post_start_failed, shows_back_off) {
            // The sync after the failed one shows the reason cache's ErrPostStartHook for a
            // container that is to restart (`convertToAPIContainerStatuses`), with the
            // killed instance as its lastState.
            run.status.last_state = run.status.state.take();
            run.status.state = Some(waiting("PostStartHookError", Some(message)));
        }
        // The termination itself shows before any restart decision, as with the kubelet.
        effects.push(Effect::Publish);
        match run.crash_loop.restart(&self.timing, exit.at, killed, now) {
            Restart::Now => {
                // A probe kill restarts in the very sync that killed; otherwise the
                // queued starts of the blocked sync come first.
                if unblocks && killed {
                    self.blocked_by = None;
                    effects.extend(self.start(exit.container));
                    // Unless the new instance's postStart blocks SyncPod in turn.
                    if self.blocked_by.is_none() {
                        effects.extend(self.unblock());
                    }
                } else {
                    if unblocks {
                        effects.extend(self.unblock());
                    }
                    effects.extend(self.start(exit.container));
                }
                effects.push(Effect::Publish);
                return effects;
            }
            Restart::After { delay, at } => {
                let identity = &self.identity;
                let message = backoff::waiting_message(
                    delay,
                    &run.setup.name,
                    &format!("{}_{}({})", identity.name, identity.namespace, identity.uid),
                );
                if shows_back_off {
                    if run
                        .status
                        .state
                        .as_ref()
                        .is_some_and(|s| s.terminated.is_some())
                    {
                        run.status.last_state = run.status.state.take();
                    }
                    run.status.state = Some(waiting("CrashLoopBackOff", Some(message)));
                }
                run.restart_at = Some(at);
            }
        }
        effects.push(Effect::Publish);
        if unblocks {
            effects.extend(self.unblock());
        }
        effects
    }

    /// A probe result crossed its threshold for a container instance.
    fn probed(&mut self, update: ProbeUpdate) -> Vec<Effect> {
        let terminal = self.terminal.is_some();
        // SyncTerminatingPod stops the liveness and startup probes
        // (`StopLivenessAndStartup`); readiness goes on.
        if self.terminating.is_some() && update.kind != Kind::Readiness {
            return Vec::new();
        }
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
                effects.extend(self.sidecar_started(update.container));
            }
            (Kind::Readiness, ready) => {
                run.status.ready = ready && run.status.started == Some(true);
            }
            // A pod being killed has no sync that would act on a failure.
            (Kind::Liveness | Kind::Startup, false) if self.stopping => {}
            (Kind::Liveness | Kind::Startup, false) => {
                effects.extend(self.stop_unhealthy(update.container, update.kind));
            }
            (Kind::Liveness, true) => {}
        }
        effects.push(Effect::Publish);
        effects
    }

    /// Kills a container a probe found unhealthy, once per instance, with the grace
    /// period of the probe, else of the pod (`setTerminationGracePeriod`).
    ///
    /// Under restartPolicy Never, when no other regular container keeps running, the
    /// kubelet's `computePodActions` finds nothing to keep nor start and kills the whole pod
    /// (`KillPod`), sidecars included: `killContainersWithSyncResult` passes reason
    /// `reasonUnknown`, so the probe's own grace period is ignored and the pod's applies
    /// (docs/fidelity/phase-conditions.md §1.7). A sidecar is killed alone and restarted.
    fn stop_unhealthy(&mut self, container: usize, kind: Kind) -> Vec<Effect> {
        let pod_grace = self.termination_grace;
        let others_running = self.containers.iter().enumerate().any(|(i, c)| {
            i != container && c.setup.kind == ContainerKind::Regular && c.is_running()
        });
        let whole_pod_killed = self.restart_policy == RestartPolicy::Never
            && self.containers[container].setup.kind == ContainerKind::Regular
            && !others_running;
        let run = &mut self.containers[container];
        let (Some(pid), Some(instance)) = (run.pid, run.instance) else {
            return Vec::new();
        };
        if run.killing {
            return Vec::new();
        }
        run.killing = true;
        let probe_grace = run
            .setup
            .probes
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, grace)| *grace)
            .filter(|_| !whole_pod_killed);
        if self.blocked_by.is_none() {
            self.blocked_by = Some(container);
        }
        let grace_seconds = secs_i64(probe_grace.unwrap_or(pod_grace));
        let mut effects = vec![self.kill(container, instance, pid, grace_seconds, false)];
        if whole_pod_killed {
            effects.extend(self.kill_pod());
        }
        effects
    }
}

/// A spec duration in whole seconds, as the API's integer fields hold it.
fn secs_i64(spec: Duration) -> i64 {
    i64::try_from(spec.as_secs()).unwrap_or(i64::MAX)
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
