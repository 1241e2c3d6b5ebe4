//! The kubelet's decisions for ephemeral containers, driven by events: no process, no root.

use super::super::test_pod::{container, waiting_of, Pod};
use super::super::*;
use super::*;
use crate::AGENT_IMAGE;
use k8s_openapi::api::core::v1::PodStatus;

fn setup(name: &str, post_start: bool) -> ContainerSetup {
    ContainerSetup {
        post_start,
        ..container(name, vec![])
    }
}

fn debugger(name: &str, target: Option<usize>) -> EphemeralSetup {
    EphemeralSetup {
        name: name.to_owned(),
        image: AGENT_IMAGE.to_owned(),
        target,
    }
}

/// The ephemeral starts among `effects`: (which, the target's pid).
fn starts(effects: &[Effect]) -> Vec<(usize, Option<i32>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Ephemeral(EphemeralEffect::Start {
                ephemeral,
                target_pid,
            }) => Some((*ephemeral, *target_pid)),
            _ => None,
        })
        .collect()
}

/// The ephemeral kills among `effects`: (which, pid, grace).
fn kills(effects: &[Effect]) -> Vec<(usize, i32, i64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Ephemeral(EphemeralEffect::Kill {
                ephemeral,
                pid,
                grace_seconds,
            }) => Some((*ephemeral, *pid, *grace_seconds)),
            _ => None,
        })
        .collect()
}

impl Pod {
    fn start_sandbox(&mut self) -> Vec<Effect> {
        let mut effects = self.handle(Event::SandboxStarted);
        effects.extend(self.handle(Event::SandboxReady));
        effects
    }

    fn add(&mut self, setup: EphemeralSetup) -> Vec<Effect> {
        self.handle(Event::Ephemeral(EphemeralEvent::Added(setup)))
    }

    fn started(&mut self, ephemeral: usize, pid: i32) -> Vec<Effect> {
        let wall = self.wall();
        self.handle(Event::Ephemeral(EphemeralEvent::Started {
            ephemeral,
            pid,
            wall,
        }))
    }

    fn ephemeral_exited(&mut self, ephemeral: usize, code: i32) -> Vec<Effect> {
        let wall = self.wall();
        self.handle(Event::Ephemeral(EphemeralEvent::Exited {
            ephemeral,
            code,
            oom_killed: false,
            wall,
        }))
    }

    fn pod_status(&mut self) -> PodStatus {
        let stamp = self.wall();
        self.lifecycle.pod_status(&stamp, None, None)
    }

    fn ephemeral(&mut self, name: &str) -> ContainerStatus {
        self.pod_status()
            .ephemeral_container_statuses
            .into_iter()
            .flatten()
            .find(|s| s.name == name)
            .expect("an ephemeral container status")
    }

    fn ephemeral_waiting(&mut self, name: &str) -> (String, Option<String>) {
        waiting_of(self.ephemeral(name))
    }

    fn ephemeral_exit_code(&mut self, name: &str) -> Option<i32> {
        self.ephemeral(name)
            .state
            .and_then(|s| s.terminated)
            .map(|t| t.exit_code)
    }
}

#[test]
fn an_ephemeral_container_starts_once_and_is_never_restarted() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![setup("app", false)]);
    pod.start_sandbox();
    let effects = pod.add(debugger("debug", None));
    assert_eq!(starts(&effects), [(0, None)]);
    assert_eq!(
        pod.ephemeral_waiting("debug").0,
        "ContainerCreating",
        "shown waiting until it runs"
    );
    assert!(
        starts(&pod.handle(Event::RestartsDue)).is_empty(),
        "a start is under way"
    );
    pod.started(0, 500);
    let running = pod.ephemeral("debug");
    assert!(running.state.as_ref().is_some_and(|s| s.running.is_some()));
    assert_eq!(
        running.container_id.as_deref(),
        Some("podcheck://uid-1/debug/0")
    );
    // Never ready, and no `started`: the prober manager sets those for regular and init
    // containers only.
    assert_eq!((running.ready, running.started), (false, None));
    pod.ephemeral_exited(0, 1);
    assert_eq!(pod.ephemeral_exit_code("debug"), Some(1));
    // Whatever happens to the pod afterwards, it is not started again.
    pod.exit(0, 1);
    for event in [Event::RestartsDue, Event::SandboxReady] {
        assert!(starts(&pod.handle(event)).is_empty());
    }
    assert_eq!(pod.ephemeral("debug").restart_count, 0);
    assert_eq!(pod.ephemeral_exit_code("debug"), Some(1));
}

#[test]
fn a_target_joins_the_namespaces_of_the_targets_running_process() {
    let mut pod = Pod::new(
        RestartPolicy::Always,
        vec![setup("sidecar", false), setup("app", false)],
    );
    pod.start_sandbox();
    // The containers started as pids 101 and 102.
    assert_eq!(
        starts(&pod.add(debugger("debug", Some(1)))),
        [(0, Some(102))]
    );
}

#[test]
fn a_target_that_never_ran_holds_the_start_back_until_it_runs() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![setup("app", true)]);
    pod.handle(Event::SandboxStarted);
    // SyncPod is blocked in the postStart hook of app's first start, which has a
    // process (pid 101) but is not shown running: the ephemeral container waits for
    // the sync after it.
    pod.handle(Event::SandboxReady);
    assert!(starts(&pod.add(debugger("debug", Some(0)))).is_empty());
    let done = pod.handle(Event::PostStartDone {
        container: 0,
        instance: 0,
        result: Ok(()),
    });
    assert_eq!(starts(&done), [(0, Some(101))]);

    // A target the runtime has no container of: getTargetID's error, until it starts.
    let mut pod = Pod::new(RestartPolicy::Always, vec![setup("app", false)]);
    pod.handle(Event::SandboxStarted);
    pod.handle(Event::StartFailed {
        container: 0,
        message: "no such image".to_owned(),
    });
    let effects = pod.add(debugger("debug", Some(0)));
    assert!(starts(&effects).is_empty());
    assert_eq!(
        pod.ephemeral_waiting("debug"),
        (
            "CreateContainerConfigError".to_owned(),
            Some("unable to find target container app".to_owned())
        )
    );
    // Syncs in between change nothing; the target's start lets it start.
    assert!(starts(&pod.handle(Event::RestartsDue)).is_empty());
    let effects = pod.handle(Event::SandboxReady);
    assert_eq!(starts(&effects), [(0, Some(101))]);
}

#[test]
fn a_stopped_target_fails_the_start_until_it_runs_again() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![setup("app", false)]);
    pod.start_sandbox();
    pod.exit(0, 1); // restarted at once: pid 102
    pod.exit(0, 1); // now in back-off
    let effects = pod.add(debugger("debug", Some(0)));
    assert!(starts(&effects).is_empty());
    assert_eq!(pod.ephemeral_waiting("debug").0, "CreateContainerError");
    pod.now = pod.lifecycle.next_restart().expect("a restart pending");
    let effects = pod.handle(Event::RestartsDue);
    assert_eq!(starts(&effects), [(0, Some(103))]);
}

#[test]
fn nothing_starts_before_the_sandbox_or_once_the_pod_is_deleted_or_done() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![setup("app", false)]);
    assert!(starts(&pod.add(debugger("early", None))).is_empty());
    assert_eq!(starts(&pod.start_sandbox()), [(0, None)]);

    let mut deleted = Pod::new(RestartPolicy::Always, vec![setup("app", false)]);
    deleted.start_sandbox();
    deleted.handle(Event::Deleted { grace_seconds: 30 });
    assert!(starts(&deleted.add(debugger("late", None))).is_empty());
    assert_eq!(deleted.ephemeral_waiting("late").0, "ContainerCreating");

    let mut done = Pod::new(RestartPolicy::Never, vec![setup("app", false)]);
    done.start_sandbox();
    done.exit(0, 0);
    assert!(done.lifecycle.settle(), "the pod is terminal");
    assert!(starts(&done.add(debugger("late", None))).is_empty());
}

#[test]
fn a_deletion_kills_it_with_the_grace_period_and_waits_for_it() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![setup("app", false)]);
    pod.start_sandbox();
    pod.add(debugger("debug", None));
    pod.started(0, 500);
    let effects = pod.handle(Event::Deleted { grace_seconds: 5 });
    assert_eq!(kills(&effects), [(0, 500, 5)]);
    pod.exit(0, 143);
    assert!(
        !pod.lifecycle.settle(),
        "the ephemeral container still runs"
    );
    pod.ephemeral_exited(0, 143);
    assert!(pod.lifecycle.settle());
    assert_eq!(pod.pod_status().phase.as_deref(), Some("Failed"));
    assert_eq!(pod.ephemeral_exit_code("debug"), Some(143));
    assert!(pod.lifecycle.stop_all().is_empty());
}

#[test]
fn a_pod_that_finishes_without_it_kills_it_with_its_own_grace_period() {
    let mut pod = Pod::new(RestartPolicy::Never, vec![setup("app", false)]);
    pod.start_sandbox();
    pod.add(debugger("debug", None));
    pod.started(0, 500);
    let effects = pod.exit(0, 0);
    assert_eq!(kills(&effects), [(0, 500, 30)]);
    // Succeeded as generated, but held back (mergePodStatus) and the sandbox kept until
    // the ephemeral container stopped.
    assert!(!pod.lifecycle.settle());
    assert_ne!(pod.pod_status().phase.as_deref(), Some("Succeeded"));
    assert!(
        kills(&pod.handle(Event::RestartsDue)).is_empty(),
        "killed once"
    );
    pod.ephemeral_exited(0, 143);
    assert!(pod.lifecycle.settle());
    assert_eq!(pod.pod_status().phase.as_deref(), Some("Succeeded"));
}

#[test]
fn failed_starts_show_their_reason_and_only_a_missing_target_is_retried() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![setup("app", false)]);
    pod.start_sandbox();
    pod.add(debugger("image", None));
    pod.add(debugger("run", None));
    pod.add(debugger("target", Some(0)));
    for (ephemeral, error) in [
        (0, StartError::ImageNotPresent("not on the node".to_owned())),
        (1, StartError::Run("exec failed".to_owned())),
        (2, StartError::TargetGone("it ended".to_owned())),
    ] {
        pod.handle(Event::Ephemeral(EphemeralEvent::StartFailed {
            ephemeral,
            error,
        }));
    }
    assert_eq!(pod.ephemeral_waiting("image").0, "ErrImageNeverPull");
    assert_eq!(
        pod.ephemeral_waiting("run"),
        (
            "RunContainerError".to_owned(),
            Some("exec failed".to_owned())
        )
    );
    assert_eq!(pod.ephemeral_waiting("target").0, "CreateContainerError");
    // The target's next start (a crash, restarted at once) retries the third only.
    let effects = pod.exit(0, 1);
    assert_eq!(starts(&effects), [(2, Some(102))], "{effects:?}");
}

#[test]
fn statuses_are_sorted_by_name_and_absent_without_ephemeral_containers() {
    let mut pod = Pod::new(RestartPolicy::Always, vec![setup("app", false)]);
    pod.start_sandbox();
    assert_eq!(pod.pod_status().ephemeral_container_statuses, None);
    pod.add(debugger("zeta", None));
    pod.add(debugger("alpha", None));
    let names: Vec<String> = pod
        .pod_status()
        .ephemeral_container_statuses
        .into_iter()
        .flatten()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    // The pod's own conditions ignore them.
    let ready = pod
        .pod_status()
        .conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status);
    assert_eq!(ready.as_deref(), Some("True"));
}
