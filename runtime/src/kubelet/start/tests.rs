//! Starting containers, driven through the decisions: failed starts, postStart hooks that
//! hold Running back and block the starts after them.

use super::super::test_pod::{container, hooked, kills, secs, starts, Pod, SECOND};
use super::super::*;

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
