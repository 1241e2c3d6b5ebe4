//! Starting containers: SyncPod's starts one after another, the postStart hook that blocks
//! it, and an instance shown Running only once that hook returned.

#[cfg(test)]
mod tests;

use super::{waiting, ContainerKind, Effect, FailedStart, PendingStart, PodLifecycle};
use crate::probe::Kind;
use crate::AGENT_IMAGE;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

impl PodLifecycle {
    /// Starts `container` now, or once SyncPod is no longer blocked.
    pub(super) fn start(&mut self, container: usize) -> Vec<Effect> {
        if self.terminating.is_some() || self.stopping {
            return Vec::new();
        }
        self.containers[container].requested = true;
        if self.blocked_by.is_some() {
            if !self.start_queue.contains(&container) {
                self.start_queue.push_back(container);
            }
            return Vec::new();
        }
        let run = &mut self.containers[container];
        run.launching = true;
        if run.setup.post_start {
            self.blocked_by = Some(container);
        }
        vec![Effect::Start {
            container,
            instance: run.next_instance(),
        }]
    }

    /// SyncPod returned from what blocked it: a deletion that came meanwhile is taken up,
    /// else the containers it still had to start are started.
    pub(super) fn unblock(&mut self) -> Vec<Effect> {
        self.blocked_by = None;
        if let Some(grace) = self.deferred_deletion.take() {
            return self.deleted(grace);
        }
        let mut effects = Vec::new();
        while self.blocked_by.is_none() {
            let Some(container) = self.start_queue.pop_front() else {
                break;
            };
            effects.extend(self.start(container));
        }
        if !effects.is_empty() {
            effects.push(Effect::Publish);
        }
        effects
    }

    /// The worker could not start the instance: the container waits with the kubelet's
    /// reason, and SyncPod goes on with the next start.
    pub(super) fn start_failed(&mut self, container: usize, message: String) -> Vec<Effect> {
        let run = &mut self.containers[container];
        run.launching = false;
        let reason = if run.setup.image == AGENT_IMAGE {
            "RunContainerError"
        } else {
            "ErrImageNeverPull"
        };
        run.status.state = Some(waiting(reason, Some(message)));
        run.status.ready = false;
        run.status.started = Some(false);
        // Its postStart will not run: SyncPod goes on with the next start.
        match self.blocked_by == Some(container) {
            true => self.unblock(),
            false => Vec::new(),
        }
    }

    pub(super) fn started(
        &mut self,
        container: usize,
        instance: u32,
        pid: i32,
        at: Instant,
        wall: Time,
    ) -> Vec<Effect> {
        let run = &mut self.containers[container];
        run.instance = Some(instance);
        run.pid = Some(pid);
        run.launching = false;
        run.killing = false;
        run.post_start_failed = None;
        if run.setup.post_start {
            // startContainer runs the hook inside the sync that started the process: the
            // status the kubelet publishes next, and with it Running, comes after the hook.
            run.post_start = Some(PendingStart {
                instance,
                at,
                wall,
                exit: None,
            });
            return vec![Effect::RunPostStart {
                container,
                instance,
                pid,
            }];
        }
        self.show_running(container, instance, at, wall);
        match self.terminating {
            // Started by the sync that was under way when the pod was deleted: the
            // terminating sync that follows kills it.
            Some(grace) => vec![
                self.kill(container, instance, pid, grace, true),
                Effect::Publish,
            ],
            // Started as the pod is being killed: that kill takes it too.
            None if self.stopping => {
                let grace = self.pod_grace_seconds();
                vec![
                    self.kill(container, instance, pid, grace, true),
                    Effect::Publish,
                ]
            }
            None => self.sidecar_started(container),
        }
    }

    /// The container's status shows its instance running since `wall`.
    fn show_running(&mut self, container: usize, instance: u32, at: Instant, wall: Time) {
        let uid = &self.identity.uid;
        let run = &mut self.containers[container];
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
        // once. A regular init container is ready only once it exited 0
        // (`UpdatePodStatus`).
        let started = !run.setup.has_probe(Kind::Startup);
        run.status.started = Some(started);
        run.status.ready = started
            && !run.setup.has_probe(Kind::Readiness)
            && run.setup.kind != ContainerKind::Init;
        run.running_since = Some(at);
    }

    pub(super) fn post_start_done(
        &mut self,
        container: usize,
        instance: u32,
        result: Result<(), String>,
        now: Instant,
    ) -> Vec<Effect> {
        let run = &mut self.containers[container];
        let Some(pending) = run
            .post_start
            .take_if(|pending| pending.instance == instance)
        else {
            // Not awaited any more: the pod's deletion went ahead without it.
            return Vec::new();
        };
        match result {
            Ok(()) => {
                self.show_running(container, instance, pending.at, pending.wall);
                let mut effects = vec![Effect::Publish];
                if let Some(exit) = pending.exit {
                    effects.extend(self.exited(exit, now));
                }
                // A sidecar counts as started once its postStart returned.
                effects.extend(self.sidecar_started(container));
                if self.blocked_by == Some(container) {
                    effects.extend(self.unblock());
                }
                effects
            }
            Err(message) => {
                // The event FailedPostStartHook, then killContainer with the reason
                // reasonFailedPostStartHook: the pod's grace period (a probe's does not
                // apply), preStop included; the sync fails with ErrPostStartHook, whose
                // text the container shows as its Waiting reason once it is to restart.
                // The kill runs inside the failed sync, so no status shows the instance
                // before it ended.
                run.post_start_failed = Some(FailedStart {
                    wall: pending.wall.clone(),
                    message,
                });
                if let Some(exit) = pending.exit {
                    // The kill found nothing to stop: SyncPod goes on.
                    return self.exited(exit, now);
                }
                let Some(pid) = run.pid else {
                    return Vec::new();
                };
                // SyncPod stays blocked until the kill is over.
                let grace_seconds = self.pod_grace_seconds();
                vec![self.kill(container, instance, pid, grace_seconds, false)]
            }
        }
    }
}
