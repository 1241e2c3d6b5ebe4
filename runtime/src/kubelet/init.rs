//! Init containers and native sidecars (init containers with `restartPolicy: Always`).
//!
//! The kubelet's `computeInitContainerActions` (kuberuntime_container.go), taken event by
//! event (docs/fidelity/init-sidecar-runtime.md cites each rule):
//!
//! - Init containers start one at a time, in spec order. A regular init container is done
//!   once it exited 0; a sidecar once it is started (running, its postStart returned, its
//!   startup probe succeeded if it has one). The next one starts only then; after the last
//!   one, the regular containers start.
//! - A failing regular init container restarts with the crash-loop back-off unless the
//!   pod's restartPolicy is Never (`shouldRestartOnFailure`): then the pod is killed and
//!   fails.
//! - A sidecar restarts, with the back-off, whatever the pod's restartPolicy, until the pod
//!   is deleted or killed.
//! - Once no regular container will run again (`keepCount == 0` and nothing to start in
//!   `computePodActions`), the pod is killed (`KillPod`): the sidecars still running stop,
//!   and the pod completes with the phase of its regular containers.
//! - When the pod is killed, a sidecar's kill waits, after its preStop hook and within the
//!   grace period, for the regular containers and for the next sidecar in spec order
//!   (`terminationOrdering`), so sidecars stop in reverse order after the rest.

use super::{Effect, PodLifecycle, RestartPolicy};

/// What a container is in the pod's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContainerKind {
    /// `spec.initContainers` without `restartPolicy`: runs to completion before the next.
    Init,
    /// `spec.initContainers` with `restartPolicy: Always`: a native sidecar.
    Sidecar,
    /// `spec.containers`.
    Regular,
}

impl PodLifecycle {
    pub(super) fn init_containers(&self) -> std::slice::Iter<'_, super::ContainerLife> {
        self.containers[..self.init_count].iter()
    }

    pub(super) fn regular(&self) -> std::slice::Iter<'_, super::ContainerLife> {
        self.containers[self.init_count..].iter()
    }

    fn kind(&self, container: usize) -> ContainerKind {
        self.containers[container].setup.kind
    }

    /// The sandbox is ready (`SyncPod` after `createPodSandbox`): the first init container,
    /// or the regular containers in a pod without init containers.
    pub(super) fn start_initial(&mut self) -> Vec<Effect> {
        let mut effects = match self.init_count {
            0 => self.start_regular(),
            _ => self.start(0),
        };
        effects.push(Effect::Publish);
        effects
    }

    /// Every regular container starts, in spec order (`ContainersToStart`), once the pod
    /// has initialized.
    fn start_regular(&mut self) -> Vec<Effect> {
        self.initialized = true;
        let mut effects = Vec::new();
        for container in self.init_count..self.containers.len() {
            effects.extend(self.start(container));
        }
        effects
    }

    /// Init container `container` is done for the first time: the next init container
    /// starts, or, after the last one, the regular containers.
    fn init_done(&mut self, container: usize) -> Vec<Effect> {
        if self.initialized
            || self.terminating.is_some()
            || self.stopping
            || self.terminal.is_some()
        {
            return Vec::new();
        }
        let next = container + 1;
        let mut effects = match next < self.init_count {
            true if !self.containers[next].requested => self.start(next),
            true => Vec::new(),
            false => self.start_regular(),
        };
        if !effects.is_empty() {
            effects.push(Effect::Publish);
        }
        effects
    }

    /// A container now shows started: if it is a sidecar, the init container after it may
    /// start. Only the first time: a sidecar's restarts do not start anything again.
    pub(super) fn sidecar_started(&mut self, container: usize) -> Vec<Effect> {
        let run = &self.containers[container];
        if run.setup.kind != ContainerKind::Sidecar
            || !run.is_running()
            || run.status.started != Some(true)
        {
            return Vec::new();
        }
        self.init_done(container)
    }

    /// Whether a container whose instance ended (`killed`: a probe had it stopped) is
    /// started again:
    /// - a sidecar, always (`computeInitContainerActions` restarts an exited restartable
    ///   init container whatever the pod's restartPolicy);
    /// - a regular init container, after a failure unless the policy is Never
    ///   (`shouldRestartOnFailure`); one that exited 0 is done;
    /// - a regular container: a probe kill under Always and OnFailure whatever the exit
    ///   code, an exit by the policy and its code (`ShouldContainerBeRestarted`).
    pub(super) fn restarts(&self, container: usize, code: i32, killed: bool) -> bool {
        match self.kind(container) {
            ContainerKind::Sidecar => true,
            ContainerKind::Init => code != 0 && self.restart_policy != RestartPolicy::Never,
            ContainerKind::Regular => match killed {
                true => self.restart_policy != RestartPolicy::Never,
                false => self.restart_policy.restarts(code),
            },
        }
    }

    /// Whether a container waiting out its back-off shows it (Waiting, CrashLoopBackOff or
    /// PostStartHookError): `convertToAPIContainerStatuses` takes the reason cache only
    /// for a container `ShouldContainerBeRestarted`, which follows the pod's restartPolicy
    /// even for a sidecar. A sidecar of a Never pod (or one that exited 0 under OnFailure)
    /// keeps showing its termination until it runs again.
    pub(super) fn shows_back_off(&self, container: usize, code: i32) -> bool {
        self.kind(container) != ContainerKind::Sidecar || self.restart_policy.restarts(code)
    }

    /// A container stopped and is not restarted: what the next sync does about it. An init
    /// container that exited 0 lets the next one start; a failed one under Never fails the
    /// pod, whose sidecars are killed (`KillPod`); once no regular container will run
    /// again, the pod is killed and its sidecars stop.
    pub(super) fn stayed_down(&mut self, container: usize, code: i32) -> Vec<Effect> {
        if self.terminating.is_some() || self.stopping || self.terminal.is_some() {
            return Vec::new();
        }
        match self.kind(container) {
            ContainerKind::Init if code == 0 => self.init_done(container),
            ContainerKind::Init => self.kill_pod(),
            ContainerKind::Sidecar => Vec::new(),
            ContainerKind::Regular if self.regular_done() => self.kill_pod(),
            ContainerKind::Regular => Vec::new(),
        }
    }

    /// No regular container runs or will run again: none runs, waits to restart or is to
    /// start (queued behind a blocked sync, or handed to the pod worker).
    fn regular_done(&self) -> bool {
        self.initialized
            && self.regular().enumerate().all(|(i, run)| {
                run.pid.is_none()
                    && !run.launching
                    && run.restart_at.is_none()
                    && run.post_start.is_none()
                    && !self.start_queue.contains(&(self.init_count + i))
            })
    }

    /// `KillPod` outside a deletion: every running container is killed with the pod's
    /// grace period (reason unknown: `setTerminationGracePeriod` gives the deletion's or
    /// terminationGracePeriodSeconds), sidecars in their turn; nothing starts or restarts
    /// any more. A container already being killed (a probe kill) is left to that kill.
    pub(super) fn kill_pod(&mut self) -> Vec<Effect> {
        self.stopping = true;
        self.give_up_restarts();
        let grace = self.pod_grace_seconds();
        let mut effects = Vec::new();
        for container in 0..self.containers.len() {
            let run = &self.containers[container];
            if run.killing {
                continue;
            }
            if let (Some(pid), Some(instance)) = (run.pid, run.instance) {
                effects.push(self.kill(container, instance, pid, grace, true));
            }
        }
        effects.push(Effect::Publish);
        effects
    }

    /// The containers a sidecar's kill waits for (`newTerminationOrdering`): every regular
    /// container and the next sidecar in spec order, each only if it runs when the kill
    /// starts (the channel of one that does not run is closed from the start). Other
    /// containers wait for nothing.
    pub(super) fn outlives(&self, container: usize) -> Vec<usize> {
        if self.kind(container) != ContainerKind::Sidecar {
            return Vec::new();
        }
        let next_sidecar = (container + 1..self.init_count)
            .find(|&c| self.kind(c) == ContainerKind::Sidecar)
            .into_iter();
        (self.init_count..self.containers.len())
            .chain(next_sidecar)
            .filter(|&c| self.containers[c].pid.is_some())
            .collect()
    }
}
