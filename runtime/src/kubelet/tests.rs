//! The kubelet's decisions, driven by events at chosen times: no process, no root.

use super::backoff::go_duration;
use super::*;
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
        let waiting = self
            .status(container)
            .state
            .and_then(|s| s.waiting)
            .expect("a waiting container");
        (waiting.reason.unwrap_or_default(), waiting.message)
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
}

pub(super) fn starts(effects: &[Effect]) -> Vec<u32> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start { instance, .. } => Some(*instance),
            _ => None,
        })
        .collect()
}

#[test]
fn the_first_restart_is_immediate_then_the_back_off_doubles_up_to_the_cap() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    let waits: Vec<u64> = (0..9).map(|_| pod.crash_and_restart().as_secs()).collect();
    assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(pod.status(0).restart_count, 9);
}

#[test]
fn a_container_in_back_off_waits_with_the_kubelets_message() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    pod.crash_and_restart();
    pod.advance(secs(3));
    let effects = pod.exit(0, 2);
    assert_eq!(effects, [Effect::Publish, Effect::Publish]);
    assert_eq!(
        pod.waiting(0),
        (
            "CrashLoopBackOff".to_owned(),
            Some("back-off 10s restarting failed container=app pod=web_default(uid-1)".to_owned())
        )
    );
    let last = pod.status(0).last_state.and_then(|s| s.terminated);
    assert_eq!(
        last.map(|t| (t.exit_code, t.reason)),
        Some((2, Some("Error".to_owned())))
    );
    // Waiting to restart is still a running pod.
    assert_eq!(pod.phase(), "Running");
    assert_eq!(starts(&pod.wait_for_restart()), [2]);
    pod.exit(0, 2);
    assert_eq!(
        pod.waiting(0).1.as_deref(),
        Some("back-off 20s restarting failed container=app pod=web_default(uid-1)")
    );
}

#[test]
fn no_restart_happens_before_the_back_off_ends() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    pod.crash_and_restart();
    pod.exit(0, 1);
    pod.advance(secs(10) - Duration::from_millis(1));
    assert_eq!(pod.handle(Event::RestartsDue), [Effect::Publish]);
    pod.advance(Duration::from_millis(1));
    assert_eq!(starts(&pod.handle(Event::RestartsDue)), [2]);
}

#[test]
fn the_back_off_resets_after_a_run_longer_than_ten_minutes() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    let waits: Vec<u64> = (0..3).map(|_| pod.crash_and_restart().as_secs()).collect();
    assert_eq!(waits, [0, 10, 20]);
    // A moment more than ten minutes since the last restart: the entry has expired, the
    // restart is immediate (no Waiting state) and the delays start over.
    pod.advance(secs(600) + SECOND);
    assert_eq!(starts(&pod.exit(0, 1)), [4]);
    assert_eq!(pod.crash_and_restart(), secs(10));
}

#[test]
fn an_exit_exactly_ten_minutes_after_the_last_restart_waits_until_housekeeping() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    let waits: Vec<u64> = (0..3).map(|_| pod.crash_and_restart().as_secs()).collect();
    assert_eq!(waits, [0, 10, 20]);
    // Not expired (`hasExpired` is strictly more than 600 s): the restart is refused and
    // shows CrashLoopBackOff, until housekeeping deletes the entry, at once here.
    pod.advance(secs(600));
    assert!(starts(&pod.exit(0, 1)).is_empty());
    assert_eq!(pod.waiting(0).0, "CrashLoopBackOff");
    let exited = pod.now;
    pod.wait_for_restart();
    assert_eq!(pod.now - exited, Duration::ZERO);
    assert_eq!(pod.crash_and_restart(), secs(10), "the ladder starts over");
}

#[test]
fn a_back_off_that_ends_as_the_entry_expires_still_doubles() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    let waits: Vec<u64> = (0..3).map(|_| pod.crash_and_restart().as_secs()).collect();
    assert_eq!(waits, [0, 10, 20]);
    // 560 s + the 40 s back-off end exactly 600 s after the last restart: the sync at the
    // end of the back-off starts the container before housekeeping may delete the entry.
    pod.advance(secs(560));
    assert_eq!(pod.crash_and_restart(), secs(40));
    assert_eq!(pod.crash_and_restart(), secs(80));
}

#[test]
fn a_probe_kill_exactly_one_back_off_after_the_previous_exit_restarts_at_once() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("app", vec![(Kind::Liveness, None)])],
    );
    pod.start();
    // Entry 10 s. `IsInBackOffSince` is `Since(FinishedAt) < backoff`: equal is out of it.
    assert_eq!(pod.crash_and_restart(), Duration::ZERO);
    pod.advance(secs(10));
    pod.probe(0, Kind::Liveness, false);
    assert_eq!(starts(&pod.exit(0, 128 + libc::SIGTERM)), [2]);
}

#[test]
fn housekeeping_cuts_a_back_off_that_outlasts_the_entry() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    let waits: Vec<u64> = (0..3).map(|_| pod.crash_and_restart().as_secs()).collect();
    assert_eq!(waits, [0, 10, 20]);
    // 590 s after the last restart the entry still holds 40 s, but housekeeping deletes
    // it 600 s after that restart: the container waits 10 s, not 40 s...
    pod.advance(secs(590));
    pod.exit(0, 1);
    assert_eq!(
        pod.waiting(0).1.as_deref(),
        Some("back-off 40s restarting failed container=app pod=web_default(uid-1)")
    );
    let exited = pod.now;
    pod.wait_for_restart();
    assert_eq!(pod.now - exited, secs(10));
    // ...and the ladder starts over.
    assert_eq!(pod.crash_and_restart(), secs(10));
    assert_eq!(pod.crash_and_restart(), secs(20));
}

#[test]
fn probe_kills_restart_at_once_until_the_back_off_exceeds_the_time_since_the_exit_before() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("app", vec![(Kind::Liveness, None)])],
    );
    pod.start();
    // Killed 5 s after each start: the first kill has no exit before it, the second
    // creates the entry (10 s), the third finds 5 s since the previous exit, under 10 s.
    for instance in 0..3u32 {
        pod.advance(secs(5));
        pod.probe(0, Kind::Liveness, false);
        let effects = pod.exit(0, 128 + libc::SIGTERM);
        if instance < 2 {
            assert_eq!(starts(&effects), [instance + 1], "kill {instance}");
        } else {
            assert!(starts(&effects).is_empty(), "kill {instance}");
            assert_eq!(
                pod.waiting(0).1.as_deref(),
                Some("back-off 10s restarting failed container=app pod=web_default(uid-1)")
            );
            let killed = pod.now;
            pod.wait_for_restart();
            assert_eq!(pod.now - killed, secs(10), "waited out from the kill");
        }
    }
}

#[test]
fn a_probe_kill_after_a_long_enough_run_restarts_at_once_and_doubles_the_entry() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("app", vec![(Kind::Liveness, None)])],
    );
    pod.start();
    assert_eq!(pod.crash_and_restart(), Duration::ZERO); // entry 10 s
    assert_eq!(pod.crash_and_restart(), secs(10)); // entry 20 s
    pod.advance(secs(25));
    pod.probe(0, Kind::Liveness, false);
    // 25 s since the previous exit is more than 20 s: at once, and the entry doubles.
    assert_eq!(starts(&pod.exit(0, 128 + libc::SIGTERM)), [3]);
    assert_eq!(pod.crash_and_restart(), secs(40));
}

#[test]
fn back_off_timers_follow_the_time_scale_but_messages_speak_spec_time() {
    let mut pod = Pod::scaled(RestartPolicy::Always, vec![container("app", vec![])], 0.05);
    pod.start();
    assert_eq!(pod.crash_and_restart(), Duration::ZERO);
    pod.exit(0, 1);
    assert_eq!(
        pod.waiting(0).1.as_deref(),
        Some("back-off 10s restarting failed container=app pod=web_default(uid-1)")
    );
    let exited = pod.now;
    pod.wait_for_restart();
    assert_eq!(pod.now - exited, Duration::from_millis(500));
    // The ten-minute reset is scaled too: 30 wall seconds.
    pod.advance(secs(31));
    assert_eq!(pod.crash_and_restart(), Duration::ZERO);
}

#[test]
fn the_restart_policy_decides_by_exit_code() {
    for (policy, code, restarts) in [
        (RestartPolicy::Always, 0, true),
        (RestartPolicy::Always, 1, true),
        (RestartPolicy::OnFailure, 0, false),
        (RestartPolicy::OnFailure, 137, true),
        (RestartPolicy::Never, 0, false),
        (RestartPolicy::Never, 1, false),
    ] {
        let mut pod = Pod::new(policy, vec![container("app", vec![])]);
        pod.start();
        let effects = pod.exit(0, code);
        let expected: &[u32] = if restarts { &[1] } else { &[] };
        assert_eq!(
            starts(&effects),
            expected,
            "{policy:?} after exit code {code}"
        );
        assert_eq!(effects[0], Effect::Publish, "the termination shows first");
    }
}

#[test]
fn a_stopped_pod_reaches_the_phase_its_policy_and_exit_codes_give() {
    for (policy, code, phase) in [
        (RestartPolicy::Never, 0, "Succeeded"),
        (RestartPolicy::Never, 1, "Failed"),
        (RestartPolicy::OnFailure, 0, "Succeeded"),
        (RestartPolicy::OnFailure, 1, "Running"),
        (RestartPolicy::Always, 0, "Running"),
    ] {
        let mut pod = Pod::new(policy, vec![container("app", vec![])]);
        pod.start();
        pod.exit(0, code);
        let terminal = phase != "Running";
        assert_eq!(pod.lifecycle.settle(), terminal, "{policy:?}, exit {code}");
        assert_eq!(pod.phase(), phase, "{policy:?}, exit {code}");
        // A terminal pod's sandbox is gone.
        let sandbox = if terminal { "False" } else { "True" };
        assert_eq!(pod.condition("PodReadyToStartContainers"), sandbox);
        assert!(pod.lifecycle.probe_view().terminal == terminal);
    }
}

#[test]
fn a_pod_waits_for_every_container_before_it_completes() {
    let mut pod = Pod::new(
        RestartPolicy::Never,
        vec![container("a", vec![]), container("b", vec![])],
    );
    pod.start();
    assert_eq!(pod.phase(), "Running");
    assert_eq!(pod.condition("Ready"), "True");
    pod.exit(0, 0);
    assert_eq!(pod.phase(), "Running");
    assert_eq!(pod.condition("Ready"), "False");
    pod.exit(1, 3);
    assert_eq!(pod.phase(), "Failed");
}

#[test]
fn a_liveness_failure_stops_the_container_and_the_restart_follows_its_exit() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("app", vec![(Kind::Liveness, None)])],
    );
    pod.start();
    let pid = pod.lifecycle.probe_view().containers[0]
        .pid
        .expect("running");
    assert_eq!(
        pod.probe(0, Kind::Liveness, false),
        [
            Effect::Kill {
                container: 0,
                instance: 0,
                pid,
                grace_seconds: 30,
                after: vec![],
            },
            Effect::Publish,
        ]
    );
    // The instance is stopped once, however many failures follow.
    assert_eq!(pod.probe(0, Kind::Liveness, false), [Effect::Publish]);
    pod.advance(SECOND);
    let effects = pod.exit(0, 128 + libc::SIGTERM);
    assert_eq!(starts(&effects), [1], "the first restart is immediate");
    let status = pod.status(0);
    assert_eq!(status.restart_count, 1);
    let last = status
        .last_state
        .and_then(|s| s.terminated)
        .expect("last state");
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (143, Some("Error"))
    );
    // The new instance can be stopped again.
    assert!(matches!(
        pod.probe(0, Kind::Liveness, false)[0],
        Effect::Kill { instance: 1, .. }
    ));
}

#[test]
fn a_liveness_kill_under_restart_policy_never_ends_the_pod() {
    let mut pod = Pod::new(
        RestartPolicy::Never,
        vec![container("app", vec![(Kind::Liveness, None)])],
    );
    pod.start();
    pod.probe(0, Kind::Liveness, false);
    assert_eq!(starts(&pod.exit(0, 137)), Vec::<u32>::new());
    assert_eq!(pod.phase(), "Failed");
}

#[test]
fn the_grace_period_is_the_probes_else_the_pods_and_never_below_two_seconds() {
    for (probe_grace, expected, timeout) in
        [(None, 30, 30), (Some(secs(5)), 5, 5), (Some(SECOND), 1, 2)]
    {
        let setup = container("app", vec![(Kind::Startup, probe_grace)]);
        let mut pod = Pod::new(RestartPolicy::Always, vec![setup]);
        pod.start();
        let effects = pod.probe(0, Kind::Startup, false);
        assert!(
            matches!(effects[0], Effect::Kill { grace_seconds, .. } if grace_seconds == expected),
            "probe grace {probe_grace:?}: {effects:?}"
        );
        assert_eq!(stop_timeout(expected, None, None), timeout);
    }
}

#[test]
fn under_never_a_liveness_kill_of_the_last_running_container_uses_the_pods_grace_period() {
    // computePodActions: nothing kept, nothing to start -> KillPod, reason unknown, so the
    // probe's terminationGracePeriodSeconds does not apply; with another container kept
    // running the container alone is killed with the probe's.
    for (others, expected) in [(0, 30), (1, 5)] {
        let mut containers = vec![container("app", vec![(Kind::Liveness, Some(secs(5)))])];
        containers.extend((0..others).map(|i| container(&format!("side{i}"), vec![])));
        let mut pod = Pod::new(RestartPolicy::Never, containers);
        pod.start();
        let effects = pod.probe(0, Kind::Liveness, false);
        assert!(
            matches!(effects[0], Effect::Kill { grace_seconds, .. } if grace_seconds == expected),
            "{others} other running container(s): {effects:?}"
        );
    }
}

#[test]
fn probes_decide_started_and_ready() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![
            container("plain", vec![]),
            container("slow", vec![(Kind::Startup, None)]),
            container(
                "gated",
                vec![(Kind::Startup, None), (Kind::Readiness, None)],
            ),
        ],
    );
    pod.start();
    let flags = |pod: &Pod, c: usize| {
        let status = pod.status(c);
        (status.started, status.ready)
    };
    assert_eq!(flags(&pod, 0), (Some(true), true));
    assert_eq!(flags(&pod, 1), (Some(false), false));
    assert_eq!(pod.condition("Ready"), "False");
    pod.probe(1, Kind::Startup, true);
    assert_eq!(flags(&pod, 1), (Some(true), true));
    // Readiness counts only once the container has started.
    pod.probe(2, Kind::Readiness, true);
    assert_eq!(flags(&pod, 2), (Some(false), false));
    pod.probe(2, Kind::Startup, true);
    assert_eq!(flags(&pod, 2), (Some(true), false));
    pod.probe(2, Kind::Readiness, true);
    assert_eq!(flags(&pod, 2), (Some(true), true));
    assert_eq!(pod.condition("Ready"), "True");
    pod.probe(2, Kind::Readiness, false);
    assert_eq!(flags(&pod, 2), (Some(true), false));
    // A liveness success changes nothing, but is published like every result.
    assert_eq!(pod.probe(0, Kind::Liveness, true), [Effect::Publish]);
}

#[test]
fn results_and_exits_of_a_previous_instance_are_ignored() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("app", vec![(Kind::Readiness, None)])],
    );
    pod.start();
    pod.exit(0, 1);
    assert_eq!(pod.status(0).restart_count, 1);
    assert_eq!(pod.exit_instance(0, 0, 1), []);
    let stale = ProbeUpdate {
        container: 0,
        instance: 0,
        kind: Kind::Readiness,
        success: true,
    };
    assert_eq!(pod.handle(Event::Probe(stale)), []);
    assert!(!pod.status(0).ready);
}

#[test]
fn an_oom_kill_is_the_termination_reason() {
    let mut pod = Pod::new(RestartPolicy::Never, vec![container("app", vec![])]);
    pod.start();
    let exit = Exit {
        container: 0,
        instance: 0,
        code: 137,
        oom_killed: true,
        at: pod.now,
        wall: pod.wall(),
    };
    pod.handle(Event::Exited(exit));
    let terminated = pod.status(0).state.and_then(|s| s.terminated);
    assert_eq!(
        terminated.and_then(|t| t.reason).as_deref(),
        Some("OOMKilled")
    );
}

#[test]
fn containers_that_cannot_start_wait_with_the_kubelets_reason() {
    let mut other = container("other", vec![]);
    other.image = "registry.example/other:1".to_owned();
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![]), other]);
    assert_eq!(pod.waiting(0).0, "ContainerCreating");
    pod.handle(Event::SandboxStarted);
    for container in 0..2 {
        let message = "it failed".to_owned();
        pod.handle(Event::StartFailed { container, message });
    }
    assert_eq!(
        pod.waiting(0),
        ("RunContainerError".to_owned(), Some("it failed".to_owned()))
    );
    assert_eq!(pod.waiting(1).0, "ErrImageNeverPull");
    assert_eq!(pod.phase(), "Pending");
}

#[test]
fn a_failed_sandbox_leaves_every_container_waiting() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("a", vec![]), container("b", vec![])],
    );
    let message = "no network namespace".to_owned();
    assert_eq!(
        pod.handle(Event::SandboxFailed { message }),
        [Effect::Publish]
    );
    for container in 0..2 {
        assert_eq!(
            pod.waiting(container),
            (
                "CreatePodSandboxError".to_owned(),
                Some("no network namespace".to_owned())
            )
        );
    }
    assert_eq!(pod.phase(), "Pending");
    assert_eq!(pod.condition("PodReadyToStartContainers"), "False");
}

#[test]
fn a_started_container_reports_its_instance() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    pod.exit(0, 0);
    let status = pod.status(0);
    assert_eq!(
        status.container_id.as_deref(),
        Some("podcheck://uid-1/app/1")
    );
    assert_eq!(status.image_id, "podcheck.local/images/agent");
    assert!(status.state.and_then(|s| s.running).is_some());
}

#[test]
fn stopping_the_pod_cancels_pending_restarts() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("a", vec![]), container("b", vec![])],
    );
    pod.start();
    pod.crash_and_restart();
    pod.exit(0, 1);
    assert!(pod.lifecycle.next_restart().is_some());
    let pids = pod.lifecycle.stop_all();
    assert_eq!(pids.len(), 1, "only b still runs");
    assert_eq!(pod.lifecycle.next_restart(), None);
}

#[test]
fn back_offs_print_as_go_durations() {
    assert_eq!(go_duration(secs(10)), "10s");
    assert_eq!(go_duration(secs(80)), "1m20s");
    assert_eq!(go_duration(secs(300)), "5m0s");
    assert_eq!(go_duration(secs(3600)), "1h0m0s");
}

#[test]
fn restart_policies_are_read_by_their_api_names_only() {
    assert_eq!(RestartPolicy::parse("Always"), Some(RestartPolicy::Always));
    assert_eq!(
        RestartPolicy::parse("OnFailure"),
        Some(RestartPolicy::OnFailure)
    );
    assert_eq!(RestartPolicy::parse("Never"), Some(RestartPolicy::Never));
    assert_eq!(RestartPolicy::parse("never"), None);
    assert_eq!(RestartPolicy::parse(""), None);
}

#[test]
fn a_termination_keeps_the_instance_s_start_finish_and_container_id() {
    let mut pod = Pod::new(RestartPolicy::Never, vec![container("app", vec![])]);
    pod.start();
    assert_eq!(pod.lifecycle.uid(), "uid-1");
    let started_at = pod
        .status(0)
        .state
        .and_then(|s| s.running)
        .and_then(|r| r.started_at)
        .expect("startedAt while running");
    let container_id = pod.status(0).container_id.expect("a container id");
    pod.advance(secs(3));
    pod.exit(0, 2);
    let terminated = pod
        .status(0)
        .state
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(terminated.started_at, Some(started_at));
    assert_eq!(terminated.finished_at, Some(pod.wall()));
    assert_eq!(terminated.container_id, Some(container_id));
}

#[test]
fn probe_results_of_an_instance_that_no_longer_runs_are_ignored() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("app", vec![(Kind::Liveness, None)])],
    );
    pod.start();
    pod.advance(SECOND);
    // Instance 0 exits and is restarted at once: a late failure of instance 0 is stale.
    assert_eq!(starts(&pod.exit(0, 1)), [1]);
    let stale = pod.handle(Event::Probe(ProbeUpdate {
        container: 0,
        instance: 0,
        kind: Kind::Liveness,
        success: false,
    }));
    assert!(!stale.iter().any(|e| matches!(e, Effect::Kill { .. })));
    // Under Never, a failure reported for the exited current instance stops nothing.
    let mut never = Pod::new(
        RestartPolicy::Never,
        vec![container("app", vec![(Kind::Liveness, None)])],
    );
    never.start();
    never.advance(SECOND);
    never.exit(0, 1);
    let after_exit = never.probe(0, Kind::Liveness, false);
    assert!(!after_exit.iter().any(|e| matches!(e, Effect::Kill { .. })));
}

#[test]
fn the_pod_status_carries_its_containers_host_qos_class_and_start_time() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    let first = pod.wall();
    pod.advance(secs(5));
    let status = pod.lifecycle.pod_status(&pod.wall(), Some(&first), None);
    assert_eq!(status.container_statuses.map(|s| s.len()), Some(1));
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(status.start_time, Some(first));
}

#[test]
fn probe_workers_see_a_container_started_once_its_startup_probe_succeeds() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("app", vec![(Kind::Startup, None)])],
    );
    pod.start();
    assert!(!pod.lifecycle.probe_view().containers[0].started);
    pod.probe(0, Kind::Startup, true);
    assert!(pod.lifecycle.probe_view().containers[0].started);
}

#[test]
fn a_startup_success_reported_after_the_exit_does_not_mark_the_container_started() {
    let mut pod = Pod::new(
        RestartPolicy::Never,
        vec![
            container("app", vec![(Kind::Startup, None)]),
            container("side", vec![]),
        ],
    );
    pod.start();
    pod.advance(SECOND);
    pod.exit(0, 1);
    pod.probe(0, Kind::Startup, true);
    assert_eq!(pod.status(0).started, Some(false));
}

// Termination: deletion, grace periods, hooks.

pub(super) fn hooked(name: &str) -> ContainerSetup {
    ContainerSetup {
        post_start: true,
        ..container(name, vec![])
    }
}

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

impl Pod {
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

#[test]
fn the_effective_grace_period_only_shrinks_and_a_force_delete_gets_one_second() {
    // (grace so far, deletionGracePeriodSeconds, terminationGracePeriodSeconds) -> grace
    for (current, deletion, spec, expected) in [
        (None, Some(10), 30, 10),
        (None, Some(45), 30, 45),
        (Some(10), Some(5), 30, 5),
        (Some(10), Some(20), 30, 10),
        (None, None, 30, 30),
        (None, None, 0, 1),
        // A force delete: 0 is an override, floored at 1 s, not "no value".
        (None, Some(0), 30, 1),
        (Some(20), Some(0), 30, 1),
    ] {
        assert_eq!(
            effective_grace(current, deletion, spec),
            expected,
            "current {current:?}, deletion {deletion:?}, spec {spec}"
        );
    }
}

#[test]
fn sigkill_follows_sigterm_after_the_grace_left_by_pre_stop_in_whole_seconds_and_at_least_two() {
    let ms = Duration::from_millis;
    assert_eq!(stop_timeout(30, None, None), 30);
    assert_eq!(
        stop_timeout(30, Some(ms(4_900)), None),
        26,
        "4.9 s count as 4"
    );
    assert_eq!(stop_timeout(30, Some(ms(999)), None), 30);
    assert_eq!(
        stop_timeout(5, Some(secs(4)), None),
        2,
        "1 s left: the minimum"
    );
    assert_eq!(
        stop_timeout(3, Some(secs(3)), None),
        2,
        "a hook that used it all"
    );
    assert_eq!(stop_timeout(1, None, None), 2);
    assert!(runs_pre_stop(true, 1));
    assert!(!runs_pre_stop(true, 0), "no time for a preStop");
    assert!(!runs_pre_stop(false, 30));
}

#[test]
fn a_deleted_pod_kills_every_running_container_and_restarts_nothing() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("a", vec![]), container("b", vec![])],
    );
    pod.start();
    let effects = pod.delete(10);
    assert_eq!(kills(&effects), [(0, 0, 10), (1, 0, 10)]);
    assert_eq!(effects.last(), Some(&Effect::Publish));
    pod.advance(SECOND);
    assert_eq!(starts(&pod.exit(0, 128 + libc::SIGTERM)), Vec::<u32>::new());
    assert_eq!(pod.phase(), "Running", "b still runs");
    assert!(!pod.lifecycle.final_delete_due());
    pod.advance(SECOND);
    assert_eq!(starts(&pod.exit(1, 0)), Vec::<u32>::new());
    // Terminal once nothing runs, whatever the restart policy: one failure makes it Failed.
    assert_eq!(pod.phase(), "Failed");
    assert_eq!(pod.terminated(0), (143, "Error".to_owned()));
    assert!(
        pod.lifecycle.final_delete_due(),
        "the kubelet deletes the object"
    );
    assert!(!pod.lifecycle.final_delete_due(), "once");
    assert_eq!(pod.condition("Ready"), "False");
}

#[test]
fn a_deleted_pod_whose_containers_all_exit_zero_succeeds_even_under_always() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    pod.delete(30);
    pod.advance(SECOND);
    pod.exit(0, 0);
    assert_eq!(pod.phase(), "Succeeded");
    assert_eq!(pod.terminated(0), (0, "Completed".to_owned()));
}

#[test]
fn a_shorter_grace_period_does_not_reach_a_kill_under_way() {
    // SyncTerminatingPod runs on a context nothing cancels (kubernetes#83916): a later,
    // shorter deletion (a force delete too) changes the object, not the kill.
    let mut pod = Pod::new(RestartPolicy::Always, vec![container("app", vec![])]);
    pod.start();
    assert_eq!(kills(&pod.delete(30)), [(0, 0, 30)]);
    assert_eq!(pod.delete(5), []);
    assert_eq!(pod.delete(0), []);
}

#[test]
fn a_container_in_back_off_is_not_restarted_and_shows_its_last_termination() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("app", vec![]), container("side", vec![])],
    );
    pod.start();
    pod.advance(SECOND);
    pod.exit(0, 3);
    pod.advance(SECOND);
    pod.exit(0, 4);
    assert_eq!(pod.waiting(0).0, "CrashLoopBackOff");
    let effects = pod.delete(30);
    assert_eq!(kills(&effects), [(1, 0, 30)], "only side runs");
    assert_eq!(pod.lifecycle.next_restart(), None);
    assert_eq!(pod.terminated(0), (4, "Error".to_owned()));
    let last = pod.status(0).last_state.and_then(|s| s.terminated);
    assert_eq!(last.map(|t| t.exit_code), Some(3));
    pod.advance(secs(20));
    assert_eq!(starts(&pod.handle(Event::RestartsDue)), Vec::<u32>::new());
    pod.exit(1, 143);
    assert_eq!(pod.phase(), "Failed");
}

#[test]
fn a_container_that_never_ran_is_reported_unknown_when_the_deleted_pod_terminates() {
    let mut other = container("other", vec![]);
    other.image = "registry.example/other:1".to_owned();
    let mut pod = Pod::new(RestartPolicy::Always, vec![other]);
    pod.handle(Event::SandboxStarted);
    pod.handle(Event::StartFailed {
        container: 0,
        message: "not present".to_owned(),
    });
    assert_eq!(kills(&pod.delete(30)), []);
    assert_eq!(pod.phase(), "Failed");
    assert_eq!(
        pod.terminated(0),
        (137, "ContainerStatusUnknown".to_owned())
    );
}

#[test]
fn liveness_and_startup_stop_during_termination_but_readiness_goes_on() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container(
            "app",
            vec![(Kind::Liveness, None), (Kind::Readiness, None)],
        )],
    );
    pod.start();
    pod.probe(0, Kind::Readiness, true);
    pod.delete(30);
    assert!(pod.lifecycle.probe_view().terminating);
    assert_eq!(pod.probe(0, Kind::Liveness, false), []);
    assert_eq!(pod.probe(0, Kind::Readiness, false), [Effect::Publish]);
    assert!(!pod.status(0).ready);
}

#[test]
fn a_pod_deleted_after_it_terminated_is_only_deleted_by_the_kubelet() {
    let mut pod = Pod::new(RestartPolicy::Never, vec![container("app", vec![])]);
    pod.start();
    pod.exit(0, 0);
    assert_eq!(pod.phase(), "Succeeded");
    assert!(!pod.lifecycle.final_delete_due(), "not deleted");
    assert_eq!(kills(&pod.delete(0)), []);
    assert!(pod.lifecycle.final_delete_due());
}

#[test]
fn a_container_with_a_post_start_hook_shows_running_only_once_the_hook_returned() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![hooked("app")]);
    pod.handle(Event::SandboxStarted);
    let started_at = pod.wall();
    let effects = pod.handle(Event::SandboxReady);
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::RunPostStart {
                container: 0,
                instance: 0,
                ..
            }
        )),
        "{effects:?}"
    );
    assert_eq!(pod.waiting(0).0, "ContainerCreating");
    assert_eq!(pod.phase(), "Pending");
    assert_eq!(pod.lifecycle.probe_view().containers[0].running_since, None);
    pod.advance(secs(3));
    assert_eq!(pod.post_start_done(0, Ok(())), [Effect::Publish]);
    let running = pod
        .status(0)
        .state
        .and_then(|s| s.running)
        .expect("running");
    assert_eq!(
        running.started_at,
        Some(started_at),
        "since the process started"
    );
    assert_eq!(pod.phase(), "Running");
}

#[test]
fn a_failed_post_start_kills_the_container_which_then_waits_with_post_start_hook_error() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![hooked("app")]);
    pod.start();
    pod.advance(SECOND);
    let effects = pod.post_start_done(0, Err("Exec lifecycle hook failed"));
    assert_eq!(kills(&effects), [(0, 0, 30)], "the pod's grace period");
    assert_eq!(pod.waiting(0).0, "ContainerCreating", "never shown running");
    pod.advance(SECOND);
    let effects = pod.exit_instance(0, 0, 137);
    assert_eq!(starts(&effects), [1], "the first restart is immediate");
    assert_eq!(
        pod.waiting(0),
        (
            "PostStartHookError".to_owned(),
            Some("Exec lifecycle hook failed".to_owned())
        )
    );
    let last = pod
        .status(0)
        .last_state
        .and_then(|s| s.terminated)
        .expect("lastState");
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (137, Some("Error"))
    );
    assert_eq!(
        pod.status(0).restart_count,
        0,
        "until the new instance shows"
    );
    // The second failure waits out the back-off.
    pod.post_start_done(0, Err("again"));
    pod.advance(SECOND);
    assert_eq!(starts(&pod.exit_instance(0, 1, 143)), Vec::<u32>::new());
    assert_eq!(pod.waiting(0).0, "CrashLoopBackOff");
    assert_eq!(pod.status(0).restart_count, 1);
}

#[test]
fn under_never_a_failed_post_start_ends_the_container() {
    let mut pod = Pod::new(RestartPolicy::Never, vec![hooked("app")]);
    pod.start();
    pod.post_start_done(0, Err("failed"));
    pod.exit_instance(0, 0, 143);
    assert_eq!(pod.terminated(0), (143, "Error".to_owned()));
    assert_eq!(pod.phase(), "Failed");
}

#[test]
fn an_exit_during_the_post_start_hook_is_seen_once_the_hook_returned() {
    let mut pod = Pod::new(RestartPolicy::Never, vec![hooked("app")]);
    pod.start();
    pod.advance(SECOND);
    assert_eq!(pod.exit_instance(0, 0, 2), []);
    assert_eq!(pod.waiting(0).0, "ContainerCreating");
    pod.advance(SECOND);
    pod.post_start_done(0, Ok(()));
    assert_eq!(pod.terminated(0), (2, "Error".to_owned()));
    assert_eq!(pod.phase(), "Failed");
}

#[test]
fn a_deletion_waits_for_the_post_start_hook_under_way() {
    // SyncPod, blocked in the hook, is not cancelled by the deletion (kubernetes#116032):
    // the container stays Waiting until the hook returns, then it is killed with the
    // deletion's grace period.
    let mut pod = Pod::new(RestartPolicy::Always, vec![hooked("app")]);
    pod.start();
    assert_eq!(pod.delete(30), []);
    assert_eq!(
        pod.delete(5),
        [],
        "a shorter one replaces the deferred deletion"
    );
    assert_eq!(pod.waiting(0).0, "ContainerCreating");
    assert!(!pod.lifecycle.probe_view().terminating);
    let effects = pod.post_start_done(0, Ok(()));
    assert_eq!(kills(&effects), [(0, 0, 5)]);
    assert!(pod.status(0).state.and_then(|s| s.running).is_some());
    pod.exit_instance(0, 0, 137);
    assert_eq!(pod.phase(), "Failed");
}

#[test]
fn containers_start_one_after_another_behind_a_post_start_hook() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![hooked("a"), container("b", vec![]), hooked("c")],
    );
    pod.handle(Event::SandboxStarted);
    let effects = pod.handle(Event::SandboxReady);
    assert_eq!(
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Start { container, .. } => Some(*container),
                _ => None,
            })
            .collect::<Vec<_>>(),
        [0],
        "b and c wait for a's hook"
    );
    let effects = pod.post_start_done(0, Ok(()));
    let started: Vec<usize> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start { container, .. } => Some(*container),
            _ => None,
        })
        .collect();
    assert_eq!(started, [1, 2], "then both, up to the next hook");
    assert!(pod.status(1).state.and_then(|s| s.running).is_some());
    assert_eq!(pod.waiting(2).0, "ContainerCreating");
}

#[test]
fn a_deleted_pod_terminates_only_once_its_pre_stop_hooks_are_over() {
    let setup = ContainerSetup {
        pre_stop: true,
        ..container("app", vec![])
    };
    let mut pod = Pod::new(RestartPolicy::Always, vec![setup]);
    pod.start();
    assert_eq!(kills(&pod.delete(10)), [(0, 0, 10)]);
    // The container ends by itself while its preStop (a sleep) still runs.
    pod.exit(0, 0);
    assert_eq!(pod.phase(), "Running");
    assert!(!pod.lifecycle.final_delete_due());
    assert_eq!(
        pod.handle(Event::PreStopDone {
            container: 0,
            instance: 0
        }),
        [Effect::Publish]
    );
    assert_eq!(pod.phase(), "Succeeded");
    assert!(pod.lifecycle.final_delete_due());
}

#[test]
fn a_deletion_during_a_probe_kill_waits_for_the_restart_that_follows_it() {
    // SyncPod kills and restarts in one sync; the terminating sync then kills the new
    // instance.
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![container("app", vec![(Kind::Liveness, None)])],
    );
    pod.start();
    assert_eq!(kills(&pod.probe(0, Kind::Liveness, false)), [(0, 0, 30)]);
    assert_eq!(pod.delete(10), []);
    pod.advance(SECOND);
    let effects = pod.exit(0, 143);
    assert_eq!(starts(&effects), [1]);
    assert_eq!(kills(&effects), [(0, 1, 10)]);
}

#[test]
fn a_container_whose_start_failed_does_not_hold_back_the_next() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![hooked("a"), container("b", vec![])],
    );
    pod.handle(Event::SandboxStarted);
    assert_eq!(
        pod.lifecycle.handle(Event::SandboxReady, pod.now)[0],
        Effect::Start {
            container: 0,
            instance: 0
        }
    );
    let effects = pod.handle(Event::StartFailed {
        container: 0,
        message: "no such binary".to_owned(),
    });
    assert_eq!(starts(&effects), [0], "b's first instance");
    assert!(pod.status(1).state.and_then(|s| s.running).is_some());
}
