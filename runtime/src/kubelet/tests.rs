//! The kubelet's decisions, driven by events at chosen times: no process, no root.

use super::backoff::go_duration;
use super::test_pod::{container, secs, starts, Pod, SECOND};
use super::*;

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
