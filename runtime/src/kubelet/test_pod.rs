//! A pod driven through the decisions by the tests, with a clock the test moves: every
//! start the decisions ask for succeeds at once, with the next pid.

use super::*;
use crate::AGENT_IMAGE;
use jiff::Timestamp;

pub(super) const SECOND: Duration = Duration::from_secs(1);

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn container(name: &str, probes: Vec<(Kind, Option<Duration>)>) -> ContainerSetup {
    ContainerSetup {
        name: name.to_owned(),
        kind: ContainerKind::Regular,
        image: AGENT_IMAGE.to_owned(),
        probes,
        post_start: false,
        pre_stop: false,
    }
}

/// A regular container with a postStart hook.
pub(super) fn hooked(name: &str) -> ContainerSetup {
    ContainerSetup {
        post_start: true,
        ..container(name, vec![])
    }
}

/// One pod driven through the decisions, with a clock the test moves.
pub(super) struct Pod {
    pub(super) lifecycle: PodLifecycle,
    t0: Instant,
    pub(super) now: Instant,
    next_pid: i32,
}

impl Pod {
    pub(super) fn new(policy: RestartPolicy, containers: Vec<ContainerSetup>) -> Pod {
        Pod::scaled(policy, containers, 1.0)
    }

    pub(super) fn scaled(
        policy: RestartPolicy,
        containers: Vec<ContainerSetup>,
        time_scale: f64,
    ) -> Pod {
        let lifecycle = PodLifecycle::new(
            PodSetup {
                identity: PodIdentity {
                    name: "web".to_owned(),
                    namespace: "default".to_owned(),
                    uid: "uid-1".to_owned(),
                },
                restart_policy: policy,
                termination_grace: secs(30),
                image_id: "podcheck.local/images/agent".to_owned(),
                containers,
            },
            Timing {
                kubelet: KubeletConfig::default(),
                time_scale,
            },
        );
        let t0 = Instant::now();
        Pod {
            lifecycle,
            t0,
            now: t0,
            next_pid: 100,
        }
    }

    pub(super) fn wall(&self) -> Time {
        let since = self.now.duration_since(self.t0);
        Time(Timestamp::from_millisecond(since.as_millis() as i64).expect("a time near 1970"))
    }

    /// Delivers `event` and carries out the starts it decides, as the worker would
    /// (every start succeeds, and a start may lead to the next: an init container's);
    /// returns every effect.
    pub(super) fn handle(&mut self, event: Event) -> Vec<Effect> {
        let mut effects = self.lifecycle.handle(event, self.now);
        let mut next = 0;
        while next < effects.len() {
            if let Effect::Start {
                container,
                instance,
            } = effects[next]
            {
                self.next_pid += 1;
                let started = Event::Started {
                    container,
                    instance,
                    pid: self.next_pid,
                    at: self.now,
                    wall: self.wall(),
                };
                let started = self.lifecycle.handle(started, self.now);
                effects.extend(started);
            }
            next += 1;
        }
        effects
    }

    pub(super) fn start(&mut self) {
        assert_eq!(self.handle(Event::SandboxStarted), [Effect::Publish]);
        self.handle(Event::SandboxReady);
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    pub(super) fn exit(&mut self, container: usize, code: i32) -> Vec<Effect> {
        let instance = self.status(container).restart_count as u32;
        self.exit_instance(container, instance, code)
    }

    pub(super) fn exit_instance(
        &mut self,
        container: usize,
        instance: u32,
        code: i32,
    ) -> Vec<Effect> {
        let exit = Exit {
            container,
            instance,
            code,
            oom_killed: false,
            at: self.now,
            wall: self.wall(),
        };
        self.handle(Event::Exited(exit))
    }

    pub(super) fn probe(&mut self, container: usize, kind: Kind, success: bool) -> Vec<Effect> {
        let instance = self.status(container).restart_count as u32;
        self.handle(Event::Probe(ProbeUpdate {
            container,
            instance,
            kind,
            success,
        }))
    }

    /// Waits for the pending back-off to end and lets it restart the container.
    pub(super) fn wait_for_restart(&mut self) -> Vec<Effect> {
        let at = self.lifecycle.next_restart().expect("a restart is pending");
        self.now = at;
        self.handle(Event::RestartsDue)
    }

    pub(super) fn status(&self, container: usize) -> ContainerStatus {
        self.lifecycle.container_statuses()[container].clone()
    }

    pub(super) fn waiting(&self, container: usize) -> (String, Option<String>) {
        waiting_of(self.status(container))
    }

    pub(super) fn phase(&mut self) -> String {
        self.lifecycle.settle();
        let stamp = self.wall();
        let status = self.lifecycle.pod_status(&stamp, None, None);
        status.phase.unwrap_or_default()
    }

    pub(super) fn condition(&mut self, type_: &str) -> String {
        self.lifecycle.settle();
        let stamp = self.wall();
        let status = self.lifecycle.pod_status(&stamp, None, None);
        status
            .conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .map(|c| c.status)
            .unwrap_or_default()
    }

    /// Crashes the running container at once and returns how long it waited to restart.
    pub(super) fn crash_and_restart(&mut self) -> Duration {
        let exited = self.now;
        let effects = self.exit(0, 1);
        if !effects.iter().any(|e| matches!(e, Effect::Start { .. })) {
            self.wait_for_restart();
        }
        self.now - exited
    }

    pub(super) fn delete(&mut self, grace_seconds: i64) -> Vec<Effect> {
        self.handle(Event::Deleted { grace_seconds })
    }

    pub(super) fn post_start_done(
        &mut self,
        container: usize,
        result: Result<(), &str>,
    ) -> Vec<Effect> {
        let instance = self.lifecycle.probe_view().containers[container]
            .instance
            .expect("an instance was started");
        self.handle(Event::PostStartDone {
            container,
            instance,
            result: result.map_err(str::to_owned),
        })
    }

    pub(super) fn terminated(&self, container: usize) -> (i32, String) {
        let terminated = self
            .status(container)
            .state
            .and_then(|s| s.terminated)
            .expect("a terminated container");
        (terminated.exit_code, terminated.reason.unwrap_or_default())
    }
}

/// The reason and message of a container that waits.
pub(super) fn waiting_of(status: ContainerStatus) -> (String, Option<String>) {
    let waiting = status
        .state
        .and_then(|s| s.waiting)
        .expect("a waiting container");
    (waiting.reason.unwrap_or_default(), waiting.message)
}

/// The instances `effects` start.
pub(super) fn starts(effects: &[Effect]) -> Vec<u32> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start { instance, .. } => Some(*instance),
            _ => None,
        })
        .collect()
}

/// The kills among `effects`: (container, instance, grace).
pub(super) fn kills(effects: &[Effect]) -> Vec<(usize, u32, i64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Kill {
                container,
                instance,
                grace_seconds,
                ..
            } => Some((*container, *instance, *grace_seconds)),
            _ => None,
        })
        .collect()
}
