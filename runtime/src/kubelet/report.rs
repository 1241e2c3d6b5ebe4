//! What the decisions report: the phase (settled once terminal, held back while containers
//! may still run), the pod's status with its init container statuses, and what probe and
//! kill workers see.

use super::{ContainerKind, FinalDelete, PodLifecycle};
use crate::probe::{ContainerView, PodView};
use crate::status::{self, InitContainer};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn is_terminal(phase: &str) -> bool {
    phase == "Succeeded" || phase == "Failed"
}

/// What `TerminatePod` writes for a container whose end the kubelet cannot tell.
fn status_unknown() -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            reason: Some("ContainerStatusUnknown".to_owned()),
            message: Some(
                "The container could not be located when the pod was terminated".to_owned(),
            ),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    }
}

fn shows_waiting(status: &ContainerStatus) -> bool {
    status.state.as_ref().is_some_and(|s| s.waiting.is_some())
}

fn has_terminated_before(status: &ContainerStatus) -> bool {
    status
        .last_state
        .as_ref()
        .is_some_and(|s| s.terminated.is_some())
}

impl PodLifecycle {
    /// Settles the phase before a status is published: a pod that reached Succeeded or
    /// Failed stays there, and its sandbox goes. Returns whether the sandbox must be
    /// torn down now.
    ///
    /// A terminal phase is not shown while a container still runs or a preStop hook is
    /// under way (`mergePodStatus` holds it back while the pod "could have running
    /// containers"): the phase shown before stays.
    ///
    /// A deleted pod becomes terminal once none of its containers runs (SyncTerminatingPod,
    /// then `getPhase` with `podIsTerminal`): Succeeded if every regular container exited 0,
    /// else Failed, whatever the restart policy; a phase that is still not terminal then
    /// (a pod deleted while Pending) becomes Failed in `TerminatePod`, which also reports a
    /// container that never ran as Terminated, reason ContainerStatusUnknown, exit code 137
    /// ([`PodLifecycle::mark_unknown`]).
    pub fn settle(&mut self) -> bool {
        if self.terminal.is_some() {
            return false;
        }
        // Ephemeral containers still running are being killed: the sandbox waits for them.
        let still_running = self.containers.iter().any(|c| c.pid.is_some())
            || !self.pre_stops.is_empty()
            || self.ephemeral_running();
        if self.terminating.is_some() {
            // killPod returns once every kill is over, preStop hooks included.
            if still_running {
                return false;
            }
            let phase = self.computed_phase(true);
            self.mark_unknown();
            self.terminal = Some(if is_terminal(phase) { phase } else { "Failed" });
            self.sandbox_ready = false;
            return true;
        }
        let phase = self.computed_phase(false);
        if !is_terminal(phase) {
            self.held_phase = phase;
            return false;
        }
        if still_running {
            return false;
        }
        self.terminal = Some(phase);
        self.sandbox_ready = false;
        true
    }

    /// `TerminatePod`: every regular container without a termination is reported
    /// ContainerStatusUnknown once the pod has initialized (`hasPodInitialized`); of the
    /// init containers, those up to the last one that was ever started
    /// (`initializedContainers`, at least the first).
    fn mark_unknown(&mut self) {
        let initialized = self.init_count == 0
            || self
                .regular()
                .any(|c| has_terminated_before(&c.status) || !shows_waiting(&c.status))
            || self
                .init_containers()
                .last()
                .is_some_and(|c| match c.setup.kind {
                    ContainerKind::Sidecar => c.is_running() && c.status.started == Some(true),
                    _ => [c.status.state.as_ref(), c.status.last_state.as_ref()]
                        .into_iter()
                        .flatten()
                        .any(|s| s.terminated.as_ref().is_some_and(|t| t.exit_code == 0)),
                });
        let tried_init = self
            .init_containers()
            .rposition(|c| !shows_waiting(&c.status) || has_terminated_before(&c.status))
            .map_or(self.init_count.min(1), |last| last + 1);
        for (index, run) in self.containers.iter_mut().enumerate() {
            let marked = match run.setup.kind {
                ContainerKind::Regular => initialized,
                _ => index < tried_init,
            };
            let terminated = run
                .status
                .state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some());
            if !marked || terminated {
                continue;
            }
            run.status.state = Some(status_unknown());
            run.status.ready = false;
            run.status.started = Some(false);
        }
    }

    /// Whether the kubelet's own delete of the pod object is due now: the pod was deleted
    /// and has reached its terminal phase with every container stopped (the status
    /// manager's `canBeDeleted`), and the delete was not sent yet. It sends
    /// `gracePeriodSeconds: 0`.
    pub fn final_delete_due(&mut self) -> bool {
        let due = self.terminating.is_some()
            && self.terminal.is_some()
            && self.final_delete == FinalDelete::NotYet;
        if due {
            self.final_delete = FinalDelete::Sent;
        }
        due
    }

    /// `getPhase` on the current statuses; `HasAnyActiveRegularContainerStarted` is whether
    /// a regular container was ever created.
    pub(super) fn computed_phase(&self, pod_is_terminal: bool) -> &'static str {
        let init: Vec<ContainerStatus> = self.init_containers().map(|c| c.status.clone()).collect();
        let regular: Vec<ContainerStatus> = self.regular().map(|c| c.status.clone()).collect();
        let has_initialized = self.regular().any(|c| c.instance.is_some());
        status::pod_phase(
            &self.init_views(&init),
            &regular,
            self.restart_policy.as_str(),
            has_initialized,
            pod_is_terminal,
        )
    }

    fn init_views<'a>(&self, statuses: &'a [ContainerStatus]) -> Vec<InitContainer<'a>> {
        statuses
            .iter()
            .zip(self.init_containers())
            .map(|(status, run)| InitContainer {
                status,
                sidecar: run.setup.kind == ContainerKind::Sidecar,
            })
            .collect()
    }

    /// The pod's status at `stamp`; `first` is when its first status was recorded and
    /// `previous` its last one, whose conditions keep their transition times. The
    /// conditions follow the phase the kubelet generated, even one held back.
    pub fn pod_status(
        &self,
        stamp: &Time,
        first: Option<&Time>,
        previous: Option<&PodStatus>,
    ) -> PodStatus {
        let init: Vec<ContainerStatus> = self.init_containers().map(|c| c.status.clone()).collect();
        let regular: Vec<ContainerStatus> = self.regular().map(|c| c.status.clone()).collect();
        let generated = self.terminal.unwrap_or_else(|| self.computed_phase(false));
        let shown = match self.terminal.is_none() && is_terminal(generated) {
            true => self.held_phase,
            false => generated,
        };
        let mut conditions = status::conditions(
            &self.init_views(&init),
            &regular,
            generated,
            self.sandbox_ready,
            stamp,
        );
        if let Some(previous) = previous {
            status::carry_transition_times(
                &mut conditions,
                previous.conditions.as_deref().unwrap_or(&[]),
            );
        }
        PodStatus {
            phase: Some(shown.to_owned()),
            conditions: Some(conditions),
            init_container_statuses: (!init.is_empty()).then_some(init),
            container_statuses: Some(regular),
            ephemeral_container_statuses: self.ephemeral_statuses(),
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
            terminating: self.terminating.is_some(),
        }
    }

    /// For each container, whether its kill is not over yet: its process runs or its
    /// preStop hook does. A sidecar's kill waits until these are over for the containers
    /// it outlives (`terminationOrdering`'s channels close when `killContainer` returns).
    pub fn holding(&self) -> Vec<bool> {
        (0..self.containers.len())
            .map(|container| {
                self.containers[container].pid.is_some()
                    || self.pre_stops.iter().any(|(c, _)| *c == container)
            })
            .collect()
    }

    /// The pod is going away: no restart is pending any more. Returns the processes of
    /// the running instances, which must be killed.
    pub fn stop_all(&mut self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .containers
            .iter_mut()
            .filter_map(|run| {
                run.restart_at = None;
                run.pid.take()
            })
            .collect();
        pids.extend(self.stop_ephemerals());
        pids
    }
}
