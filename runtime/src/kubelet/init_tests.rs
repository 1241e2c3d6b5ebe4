//! Init containers and sidecars, driven through the decisions: no process, no root.

use super::test_pod::{container, kills, secs, Pod, SECOND};
use super::*;
use k8s_openapi::api::core::v1::PodCondition;

fn init(name: &str) -> ContainerSetup {
    ContainerSetup {
        kind: ContainerKind::Init,
        ..container(name, vec![])
    }
}

fn sidecar(name: &str) -> ContainerSetup {
    probed_sidecar(name, vec![])
}

fn probed_sidecar(name: &str, probes: Vec<(Kind, Option<Duration>)>) -> ContainerSetup {
    ContainerSetup {
        kind: ContainerKind::Sidecar,
        ..container(name, probes)
    }
}

/// A regular container without probes.
fn regular(name: &str) -> ContainerSetup {
    container(name, vec![])
}

/// The containers an effect list starts, with their instance.
fn started(effects: &[Effect]) -> Vec<(usize, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start {
                container,
                instance,
            } => Some((*container, *instance)),
            _ => None,
        })
        .collect()
}

/// The kills of an effect list: container, grace and the containers it waits for.
fn ordered_kills(effects: &[Effect]) -> Vec<(usize, i64, Vec<usize>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Kill {
                container,
                grace_seconds,
                after,
                ..
            } => Some((*container, *grace_seconds, after.clone())),
            _ => None,
        })
        .collect()
}

impl Pod {
    fn pod_condition(&mut self, type_: &str) -> PodCondition {
        self.lifecycle.settle();
        let stamp = self.wall();
        self.lifecycle
            .pod_status(&stamp, None, None)
            .conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .expect("the condition")
    }

    /// Status, reason and message of a condition.
    fn says(&mut self, type_: &str) -> (String, Option<String>, Option<String>) {
        let condition = self.pod_condition(type_);
        (condition.status, condition.reason, condition.message)
    }

    fn running(&self, container: usize) -> bool {
        self.status(container)
            .state
            .is_some_and(|s| s.running.is_some())
    }

    fn starts_all(&mut self) -> Vec<(usize, u32)> {
        assert_eq!(self.handle(Event::SandboxStarted), [Effect::Publish]);
        started(&self.handle(Event::SandboxReady))
    }
}

fn says(
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) -> (String, Option<String>, Option<String>) {
    (
        status.to_owned(),
        reason.map(str::to_owned),
        message.map(str::to_owned),
    )
}

#[test]
fn init_containers_run_one_at_a_time_in_order_before_the_app() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![init("a"), init("b"), regular("app")],
    );
    assert_eq!(pod.starts_all(), [(0, 0)], "only the first init container");
    assert_eq!(pod.phase(), "Pending");
    assert_eq!(pod.waiting(1).0, "PodInitializing");
    assert_eq!(pod.waiting(2).0, "PodInitializing");
    let a = pod.status(0);
    assert_eq!(
        (a.started, a.ready),
        (Some(true), false),
        "running, not ready"
    );
    assert_eq!(
        pod.says("Initialized"),
        says(
            "False",
            Some("ContainersNotInitialized"),
            Some("containers with incomplete status: [a b]")
        )
    );
    assert_eq!(
        pod.says("Ready"),
        says(
            "False",
            Some("ContainersNotReady"),
            Some("containers with unready status: [app]")
        )
    );

    pod.advance(SECOND);
    assert_eq!(started(&pod.exit(0, 0)), [(1, 0)], "b after a exited 0");
    assert_eq!(pod.terminated(0), (0, "Completed".to_owned()));
    let a = pod.status(0);
    assert_eq!((a.started, a.ready), (Some(false), true), "done: ready");
    assert_eq!(pod.waiting(2).0, "PodInitializing");
    assert_eq!(pod.phase(), "Pending");
    assert_eq!(
        pod.says("Initialized").2.as_deref(),
        Some("containers with incomplete status: [b]")
    );

    pod.advance(SECOND);
    assert_eq!(started(&pod.exit(1, 0)), [(2, 0)], "the app after the last");
    assert_eq!(pod.phase(), "Running");
    assert_eq!(pod.says("Initialized"), says("True", None, None));
    assert_eq!(pod.says("Ready"), says("True", None, None));
}

#[test]
fn the_pod_status_lists_init_containers_apart_in_spec_order() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![init("a"), sidecar("s"), regular("app")],
    );
    pod.start();
    let stamp = pod.wall();
    let status = pod.lifecycle.pod_status(&stamp, None, None);
    let names = |statuses: Option<Vec<ContainerStatus>>| -> Vec<String> {
        statuses.into_iter().flatten().map(|s| s.name).collect()
    };
    assert_eq!(names(status.init_container_statuses), ["a", "s"]);
    assert_eq!(names(status.container_statuses), ["app"]);

    let mut plain = Pod::new(RestartPolicy::Always, vec![regular("app")]);
    assert_eq!(
        plain.waiting(0).0,
        "ContainerCreating",
        "no init containers"
    );
    plain.start();
    let status = plain.lifecycle.pod_status(&stamp, None, None);
    assert_eq!(status.init_container_statuses, None);
}

#[test]
fn a_failing_init_container_restarts_with_the_back_off_and_holds_back_the_next() {
    for policy in [RestartPolicy::OnFailure, RestartPolicy::Always] {
        let mut pod = Pod::new(policy, vec![init("a"), init("b"), regular("app")]);
        pod.starts_all();
        pod.advance(SECOND);
        assert_eq!(
            started(&pod.exit(0, 1)),
            [(0, 1)],
            "{policy:?}: the first restart is immediate"
        );
        pod.advance(SECOND);
        assert_eq!(started(&pod.exit(0, 1)), [], "{policy:?}");
        let (reason, message) = pod.waiting(0);
        assert_eq!(reason, "CrashLoopBackOff");
        assert_eq!(
            message.as_deref(),
            Some("back-off 10s restarting failed container=a pod=web_default(uid-1)")
        );
        let status = pod.status(0);
        assert_eq!(status.restart_count, 1);
        assert_eq!(
            status
                .last_state
                .and_then(|s| s.terminated)
                .map(|t| t.exit_code),
            Some(1)
        );
        assert_eq!(pod.phase(), "Pending", "{policy:?}");
        assert_eq!(pod.waiting(1).0, "PodInitializing", "b waits");
        assert_eq!(started(&pod.wait_for_restart()), [(0, 2)]);
        pod.advance(SECOND);
        assert_eq!(
            started(&pod.exit(0, 0)),
            [(1, 0)],
            "{policy:?}: b once a succeeded"
        );
    }
}

#[test]
fn under_never_a_failing_init_container_fails_the_pod_and_nothing_else_starts() {
    let mut pod = Pod::new(
        RestartPolicy::Never,
        vec![init("a"), init("b"), regular("app")],
    );
    pod.starts_all();
    pod.advance(SECOND);
    let effects = pod.exit(0, 2);
    assert_eq!(started(&effects), []);
    assert_eq!(pod.lifecycle.next_restart(), None);
    assert_eq!(pod.phase(), "Failed");
    assert_eq!(pod.terminated(0), (2, "Error".to_owned()));
    assert_eq!(pod.waiting(1).0, "PodInitializing");
    assert_eq!(pod.waiting(2).0, "PodInitializing");
    assert_eq!(
        pod.says("Initialized"),
        says(
            "False",
            Some("ContainersNotInitialized"),
            Some("containers with incomplete status: [a b]")
        )
    );
    assert_eq!(pod.says("Ready"), says("False", Some("PodFailed"), None));
}

#[test]
fn a_sidecar_lets_the_next_init_container_start_once_its_startup_probe_succeeded() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![
            probed_sidecar("s", vec![(Kind::Startup, None)]),
            init("b"),
            regular("app"),
        ],
    );
    assert_eq!(pod.starts_all(), [(0, 0)]);
    assert!(pod.running(0));
    assert_eq!(pod.status(0).started, Some(false));
    assert_eq!(pod.phase(), "Pending");
    assert_eq!(
        pod.waiting(1).0,
        "PodInitializing",
        "b waits for the startup probe"
    );
    assert_eq!(started(&pod.probe(0, Kind::Startup, true)), [(1, 0)]);
    assert_eq!(pod.status(0).started, Some(true));
    assert_eq!(
        pod.says("Initialized").2.as_deref(),
        Some("containers with incomplete status: [b]"),
        "the started sidecar counts as initialized"
    );
    pod.advance(SECOND);
    assert_eq!(started(&pod.exit(1, 0)), [(2, 0)]);
    assert!(pod.running(0), "the sidecar keeps running");
    assert_eq!(pod.phase(), "Running");
}

#[test]
fn a_sidecar_without_a_startup_probe_lets_the_next_start_once_its_post_start_returned() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![
            ContainerSetup {
                post_start: true,
                ..sidecar("s")
            },
            regular("app"),
        ],
    );
    assert_eq!(pod.starts_all(), [(0, 0)]);
    assert!(!pod.running(0), "not Running before its postStart returned");
    assert_eq!(started(&pod.post_start_done(0, Ok(()))), [(1, 0)]);
    assert!(pod.running(0) && pod.running(1));
}

#[test]
fn a_sidecar_restarts_with_the_back_off_whatever_the_restart_policy() {
    for policy in [
        RestartPolicy::Never,
        RestartPolicy::OnFailure,
        RestartPolicy::Always,
    ] {
        let mut pod = Pod::new(policy, vec![sidecar("s"), regular("app")]);
        assert_eq!(pod.starts_all(), [(0, 0), (1, 0)]);
        pod.advance(SECOND);
        assert_eq!(started(&pod.exit(0, 0)), [(0, 1)], "{policy:?}: at once");
        pod.advance(SECOND);
        assert_eq!(
            started(&pod.exit(0, 0)),
            [],
            "{policy:?}: then the back-off"
        );
        assert!(pod.lifecycle.next_restart().is_some());
        // The status shows the back-off only where ShouldContainerBeRestarted says so: it
        // follows the pod's policy.
        let state = pod.status(0).state.expect("a state");
        match policy {
            RestartPolicy::Always => {
                assert_eq!(
                    state.waiting.and_then(|w| w.reason).as_deref(),
                    Some("CrashLoopBackOff")
                )
            }
            _ => assert_eq!(state.terminated.map(|t| t.exit_code), Some(0), "{policy:?}"),
        }
        assert_eq!(pod.phase(), "Running", "{policy:?}: the app runs");
        assert_eq!(started(&pod.wait_for_restart()), [(0, 2)], "{policy:?}");
        assert_eq!(pod.status(0).restart_count, 2);
    }
}

#[test]
fn a_sidecar_failing_its_liveness_probe_is_killed_alone_and_restarted() {
    let mut pod = Pod::new(
        RestartPolicy::Never,
        vec![
            probed_sidecar("s", vec![(Kind::Liveness, Some(secs(5)))]),
            regular("app"),
        ],
    );
    pod.starts_all();
    assert_eq!(
        ordered_kills(&pod.probe(0, Kind::Liveness, false)),
        [(0, 5, vec![])],
        "the probe's grace period; no turn to wait for"
    );
    pod.advance(SECOND);
    assert_eq!(
        started(&pod.exit(0, 143)),
        [(0, 1)],
        "restarted under Never"
    );
    assert!(pod.running(1));
}

#[test]
fn the_readiness_of_a_sidecar_counts_for_the_pod() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![
            probed_sidecar("s", vec![(Kind::Readiness, None)]),
            regular("app"),
        ],
    );
    assert_eq!(
        pod.starts_all(),
        [(0, 0), (1, 0)],
        "started without a startup probe"
    );
    assert_eq!(
        pod.says("ContainersReady"),
        says(
            "False",
            Some("ContainersNotReady"),
            Some("containers with unready status: [s]")
        )
    );
    pod.probe(0, Kind::Readiness, true);
    assert_eq!(pod.says("Ready"), says("True", None, None));
    pod.probe(0, Kind::Readiness, false);
    assert_eq!(pod.says("Ready").0, "False");
}

#[test]
fn during_initialization_the_pod_is_not_ready_and_names_its_sidecars_and_apps() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![
            probed_sidecar("s", vec![(Kind::Startup, None)]),
            init("b"),
            regular("app"),
        ],
    );
    pod.starts_all();
    assert_eq!(
        pod.says("Ready"),
        says(
            "False",
            Some("ContainersNotReady"),
            Some("containers with unready status: [s app]")
        )
    );
    assert_eq!(pod.says("PodReadyToStartContainers").0, "True");
}

#[test]
fn once_the_regular_containers_are_done_the_sidecars_stop_in_reverse_order() {
    let mut pod = Pod::new(
        RestartPolicy::Never,
        vec![sidecar("s1"), sidecar("s2"), regular("app")],
    );
    assert_eq!(pod.starts_all(), [(0, 0), (1, 0), (2, 0)]);
    pod.advance(SECOND);
    let effects = pod.exit(2, 0);
    assert_eq!(
        ordered_kills(&effects),
        [(0, 30, vec![1]), (1, 30, vec![])],
        "s2 first, s1 after it, with the pod's grace period"
    );
    assert_eq!(pod.phase(), "Running", "the sidecars still run");
    pod.advance(SECOND);
    assert_eq!(
        started(&pod.exit(1, 143)),
        [],
        "a sidecar of a done pod stays down"
    );
    pod.advance(SECOND);
    pod.exit(0, 143);
    assert_eq!(
        pod.phase(),
        "Succeeded",
        "the app decides, not the sidecars' 143"
    );
    assert_eq!(pod.terminated(0), (143, "Error".to_owned()));
    assert_eq!(
        pod.says("Initialized"),
        says("True", Some("PodCompleted"), None)
    );
}

#[test]
fn the_phase_comes_from_the_regular_containers_only() {
    for (policy, app_exit, sidecar_exit, phase) in [
        (RestartPolicy::Never, 1, 0, "Failed"),
        (RestartPolicy::Never, 0, 1, "Succeeded"),
        (RestartPolicy::OnFailure, 0, 137, "Succeeded"),
    ] {
        let mut pod = Pod::new(policy, vec![sidecar("s"), regular("app")]);
        pod.starts_all();
        pod.advance(SECOND);
        let effects = pod.exit(1, app_exit);
        assert_eq!(kills(&effects), [(0, 0, 30)], "{policy:?}");
        pod.exit(0, sidecar_exit);
        assert_eq!(
            pod.phase(),
            phase,
            "{policy:?}, app {app_exit}, sidecar {sidecar_exit}"
        );
    }
}

#[test]
fn sidecars_are_not_stopped_while_a_regular_container_will_run_again() {
    for policy in [RestartPolicy::OnFailure, RestartPolicy::Always] {
        let mut pod = Pod::new(policy, vec![sidecar("s"), regular("app")]);
        pod.starts_all();
        pod.advance(SECOND);
        let effects = pod.exit(1, 1);
        assert_eq!(kills(&effects), [], "{policy:?}");
        assert_eq!(started(&effects), [(1, 1)], "{policy:?}");
    }
}

#[test]
fn a_failed_init_container_under_never_stops_the_sidecars_and_the_failure_shows_once_they_stopped()
{
    let mut pod = Pod::new(
        RestartPolicy::Never,
        vec![sidecar("s"), init("b"), regular("app")],
    );
    assert_eq!(pod.starts_all(), [(0, 0), (1, 0)]);
    pod.advance(SECOND);
    assert_eq!(ordered_kills(&pod.exit(1, 1)), [(0, 30, vec![])]);
    // The status manager holds the terminal phase back while a container may run.
    assert_eq!(pod.phase(), "Pending");
    assert_eq!(pod.says("Ready"), says("False", Some("PodFailed"), None));
    pod.advance(SECOND);
    assert_eq!(started(&pod.exit(0, 143)), []);
    assert_eq!(pod.phase(), "Failed");
    assert_eq!(pod.waiting(2).0, "PodInitializing", "the app never ran");
}

#[test]
fn a_deleted_pod_stops_its_regular_containers_first_then_its_sidecars_in_reverse_order() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![sidecar("s1"), sidecar("s2"), regular("app"), regular("web")],
    );
    pod.starts_all();
    assert_eq!(
        ordered_kills(&pod.delete(10)),
        [
            (0, 10, vec![2, 3, 1]),
            (1, 10, vec![2, 3]),
            (2, 10, vec![]),
            (3, 10, vec![]),
        ],
        "every kill starts at once (preStop hooks too); sidecars wait for their turn"
    );
    pod.advance(SECOND);
    for container in [2, 3, 1, 0] {
        assert_eq!(started(&pod.exit(container, 143)), []);
    }
    assert_eq!(pod.phase(), "Failed");
}

#[test]
fn a_sidecar_waits_only_for_containers_that_run_when_the_kill_starts() {
    // terminationOrdering pre-closes the channel of a container that is not running: s1
    // does not wait for the stopped s2, nor through it for s3.
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![sidecar("s1"), sidecar("s2"), sidecar("s3"), regular("app")],
    );
    pod.starts_all();
    pod.advance(SECOND);
    pod.exit(1, 1);
    pod.advance(SECOND);
    pod.exit(1, 1);
    assert!(!pod.running(1), "s2 waits out its back-off");
    let kills = ordered_kills(&pod.delete(30));
    assert_eq!(kills[0], (0, 30, vec![3]));
    assert_eq!(kills[1], (2, 30, vec![3]));
}

#[test]
fn a_pod_deleted_during_initialization_fails_and_reports_what_never_ran_as_waiting() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![init("a"), init("b"), regular("app")],
    );
    pod.starts_all();
    assert_eq!(kills(&pod.delete(30)), [(0, 0, 30)]);
    pod.advance(SECOND);
    assert_eq!(
        started(&pod.exit(0, 143)),
        [],
        "nothing starts after a deletion"
    );
    assert_eq!(pod.phase(), "Failed");
    assert_eq!(pod.terminated(0), (143, "Error".to_owned()));
    // TerminatePod marks only init containers that were tried, and regular containers only
    // once the pod had initialized.
    assert_eq!(pod.waiting(1).0, "PodInitializing");
    assert_eq!(pod.waiting(2).0, "PodInitializing");
}

#[test]
fn a_sidecar_kill_subtracts_its_wait_for_its_turn_in_whole_seconds() {
    let ms = Duration::from_millis;
    // (grace, preStop, turn) -> seconds between SIGTERM and SIGKILL
    assert_eq!(stop_timeout(30, None, Some(ms(4_900))), 26);
    assert_eq!(stop_timeout(10, Some(secs(3)), Some(ms(4_500))), 3);
    assert_eq!(
        stop_timeout(10, Some(secs(3)), Some(secs(8))),
        2,
        "the minimum"
    );
    assert_eq!(
        stop_timeout(3, Some(secs(3)), Some(secs(5))),
        2,
        "no grace left to wait"
    );
    assert_eq!(grace_left(10, Some(ms(3_900))), 7);
}

#[test]
fn an_init_container_that_exited_zero_is_not_restarted_under_always() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![init("a"), regular("app")]);
    pod.starts_all();
    pod.advance(SECOND);
    let effects = pod.exit(0, 0);
    assert_eq!(started(&effects), [(1, 0)], "the app, not a again");
    pod.advance(secs(20));
    assert_eq!(started(&pod.handle(Event::RestartsDue)), []);
    assert_eq!(pod.terminated(0), (0, "Completed".to_owned()));
}

#[test]
fn a_container_still_to_start_keeps_the_sidecars_running() {
    // app's postStart fails under Never, which ends it; web, held back by that sync, starts
    // once the kill is over, in the same handling: the pod is not done.
    let mut pod = Pod::new(
        RestartPolicy::Never,
        vec![
            sidecar("s"),
            ContainerSetup {
                post_start: true,
                ..regular("app")
            },
            regular("web"),
        ],
    );
    assert_eq!(
        pod.starts_all(),
        [(0, 0), (1, 0)],
        "web waits for app's postStart"
    );
    assert_eq!(
        kills(&pod.post_start_done(1, Err("hook failed"))),
        [(1, 0, 30)]
    );
    pod.advance(SECOND);
    let effects = pod.exit(1, 143);
    assert_eq!(started(&effects), [(2, 0)]);
    assert_eq!(kills(&effects), [], "the sidecar stays");
    assert!(pod.running(0) && pod.running(2));
}
