//! The deletion and termination flow: the grace period a deleted pod's containers are killed
//! with, how a kill spends it (preStop hook, SIGTERM, SIGKILL), and what a deletion stops.

#[cfg(test)]
mod tests;

use super::{secs_i64, Effect, PodLifecycle};
use std::time::Duration;

/// The kubelet never gives a container less than this between SIGTERM and SIGKILL
/// (`minimumGracePeriodInSeconds`, kuberuntime_manager.go), in spec seconds.
pub(crate) const MINIMUM_GRACE_SECONDS: i64 = 2;

/// The grace period a terminating pod's containers are killed with, in spec seconds:
/// `calculateEffectiveGracePeriod` (pod_workers.go). It can only shrink once set: a new
/// `deletionGracePeriodSeconds` counts only if shorter than the `current` one. Without
/// one, the pod's `terminationGracePeriodSeconds`; never below 1 s.
///
/// A force delete sets `deletionGracePeriodSeconds` to 0. Kubelets before the fix for
/// kubernetes/kubernetes#115819 read that 0 as "no value" and fell back to
/// `terminationGracePeriodSeconds`; the kubelet this runtime follows (1.35) records the
/// override (`overridden`) and kills with the floor of 1 s, after which `killContainer`
/// still gives 2 s between SIGTERM and SIGKILL.
pub(crate) fn effective_grace(
    current: Option<i64>,
    deletion_grace: Option<i64>,
    spec_grace: i64,
) -> i64 {
    let mut grace = current.unwrap_or(0);
    let mut overridden = false;
    if let Some(requested) = deletion_grace {
        if grace == 0 || requested < grace {
            grace = requested;
            overridden = true;
        }
    }
    if !overridden && grace == 0 {
        grace = spec_grace;
    }
    grace.max(1)
}

/// How long the runtime waits between SIGTERM and SIGKILL (`StopContainer`'s timeout), in
/// spec seconds, for a container killed with `grace` seconds whose preStop hook ran for
/// `pre_stop` (spec time; None without a hook or without time for one) and which then
/// waited `turn` for the containers it outlives (a sidecar, see `init`): `killContainer`
/// subtracts the hook's whole seconds (`int64(metav1.Now().Sub(start.Time).Seconds())`,
/// truncated), then, if grace is left, the wait's whole seconds, and never gives less than
/// the minimum.
pub(crate) fn stop_timeout(grace: i64, pre_stop: Option<Duration>, turn: Option<Duration>) -> i64 {
    let left = grace_left(grace, pre_stop);
    match left > 0 {
        true => left.saturating_sub(turn.map_or(0, whole_seconds)),
        false => left,
    }
    .max(MINIMUM_GRACE_SECONDS)
}

/// The grace period left once a preStop hook ran for `pre_stop`, in whole seconds: what a
/// sidecar may wait for its turn (`waitForTurn` gets it).
pub(crate) fn grace_left(grace: i64, pre_stop: Option<Duration>) -> i64 {
    grace.saturating_sub(pre_stop.map_or(0, whole_seconds))
}

fn whole_seconds(elapsed: Duration) -> i64 {
    i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
}

/// Whether `killContainer` runs a container's preStop hook: only with a grace period
/// left ("if there is enough time to run it").
pub(crate) fn runs_pre_stop(has_pre_stop: bool, grace: i64) -> bool {
    has_pre_stop && grace > 0
}

impl PodLifecycle {
    /// A Kill effect, noting a preStop hook that will run. `ordered` for the kills of a
    /// whole pod (`killContainersWithSyncResult`), where sidecars wait for their turn.
    pub(super) fn kill(
        &mut self,
        container: usize,
        instance: u32,
        pid: i32,
        grace_seconds: i64,
        ordered: bool,
    ) -> Effect {
        if runs_pre_stop(self.containers[container].setup.pre_stop, grace_seconds) {
            self.pre_stops.insert((container, instance));
        }
        Effect::Kill {
            container,
            instance,
            pid,
            grace_seconds,
            after: match ordered {
                true => self.outlives(container),
                false => Vec::new(),
            },
        }
    }

    /// The grace period of a kill for a reason other than a probe
    /// (`setTerminationGracePeriod`): the deletion's if the pod was deleted, else the
    /// pod's terminationGracePeriodSeconds.
    pub(super) fn pod_grace_seconds(&self) -> i64 {
        self.terminating
            .unwrap_or_else(|| secs_i64(self.termination_grace))
    }

    /// The pod was deleted, or its deletion's grace period changed: SyncTerminatingPod.
    /// Nothing restarts any more; every running container is killed, all at once
    /// (`killContainersWithSyncResult`), with the effective grace period.
    ///
    /// While SyncPod is blocked (a postStart hook, a kill inside it), the termination waits
    /// for it: SyncPod runs on a context deletion does not cancel (kubernetes#116032). A
    /// shorter grace period that comes once the kill is under way is recorded but does not
    /// reach the kill (SyncTerminatingPod is not cancelled either: kubernetes#83916).
    pub(super) fn deleted(&mut self, deletion_grace: i64) -> Vec<Effect> {
        let spec_grace = secs_i64(self.termination_grace);
        if self.terminating.is_none() && self.blocked_by.is_some() {
            self.deferred_deletion = Some(effective_grace(
                self.deferred_deletion,
                Some(deletion_grace),
                spec_grace,
            ));
            return Vec::new();
        }
        let grace = effective_grace(self.terminating, Some(deletion_grace), spec_grace);
        if self.terminating.is_some() {
            self.terminating = Some(grace);
            return Vec::new();
        }
        self.terminating = Some(grace);
        if self.stopping {
            // The kill under way is the termination: it is not cancelled (kubernetes#83916).
            return vec![Effect::Publish];
        }
        self.give_up_restarts();
        let mut effects = Vec::new();
        for container in 0..self.containers.len() {
            let run = &self.containers[container];
            if let (Some(pid), Some(instance)) = (run.pid, run.instance) {
                effects.push(self.kill(container, instance, pid, grace, true));
            }
        }
        for ephemeral in 0..self.ephemerals.len() {
            effects.extend(self.kill_ephemeral(ephemeral, grace));
        }
        effects.push(Effect::Publish);
        effects
    }

    /// Nothing restarts any more: pending starts and back-offs are dropped, and a container
    /// waiting to restart shows its last termination again.
    pub(super) fn give_up_restarts(&mut self) {
        self.start_queue.clear();
        for run in &mut self.containers {
            run.restart_at = None;
            let waiting_to_restart = run.pid.is_none()
                && run
                    .status
                    .state
                    .as_ref()
                    .is_some_and(|s| s.waiting.is_some());
            if waiting_to_restart {
                if let Some(last) = run.status.last_state.take() {
                    run.status.state = Some(last);
                    run.status.last_state = run.termination_before_last.take();
                }
            }
        }
    }

    /// A kill's preStop hook returned, or the kill stopped waiting for it: a pod's
    /// termination (and a terminal phase) waits for its preStop hooks.
    pub(super) fn pre_stop_done(&mut self, container: usize, instance: u32) -> Vec<Effect> {
        match self.pre_stops.remove(&(container, instance)) {
            true => vec![Effect::Publish],
            false => Vec::new(),
        }
    }
}
