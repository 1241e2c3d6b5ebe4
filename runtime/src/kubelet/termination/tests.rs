//! Deletion and termination, driven through the decisions: grace periods, kills, preStop
//! hooks, and what a deleted pod restarts (nothing).

use super::super::test_pod::{container, hooked, kills, secs, starts, Pod, SECOND};
use super::super::*;
use super::effective_grace;

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
