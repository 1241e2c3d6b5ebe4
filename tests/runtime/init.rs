//! The local runtime's init containers and sidecars, seen from their logs and statuses.

use super::*;
use k8s_openapi::api::core::v1::Probe;

/// Two init containers around a sidecar, then the app. Every container is scripted in the
/// scenario as a regular one (so that it gets the agent's behaviour); the test then moves
/// the first three into spec.initContainers.
const INIT: &str = r#"
name: init-order
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: init-order}
  spec:
    restartPolicy: Never
    containers:
      - name: init-a
      - name: side
      - name: init-b
      - name: app
behaviours:
  init-a:
    then: {exit: {after: 1s, code: 0}}
  side:
    then: forever
  init-b:
    then: {exit: {after: 1s, code: 0}}
  app:
    then: {exit: {after: 2s, code: 0}}
"#;

/// The INIT pod, with `edit` applied once its init containers are in place.
fn init_pod(edit: impl FnOnce(&mut Pod)) -> Pod {
    let scenario = Scenario::from_yaml("init-order", INIT).expect("scenario");
    let mut pod = compile(&scenario, AGENT_IMAGE, TERMINATION_SCALE);
    let spec = spec(&mut pod);
    let mut init: Vec<Container> = spec.containers.drain(..3).collect();
    init[1].restart_policy = Some("Always".to_owned());
    spec.init_containers = Some(init);
    edit(&mut pod);
    pod
}

/// The agent's log events of a container's current instance, with their wall times.
fn events_of(
    runtime: &LocalRuntime,
    uid: &str,
    container: &str,
) -> Vec<(Timestamp, podcheck_wire::Event)> {
    runtime
        .logs(uid, container, false)
        .expect("log")
        .lines()
        .filter_map(|line| podcheck_wire::LogEvent::parse(line).ok())
        .map(|e| {
            let at = Timestamp::from_millisecond(e.ts_ms as i64).expect("a time");
            (at, e.event)
        })
        .collect()
}

/// When a container's current instance logged its first event `what` accepts.
fn logged(
    runtime: &LocalRuntime,
    uid: &str,
    container: &str,
    what: impl Fn(&podcheck_wire::Event) -> bool,
) -> Timestamp {
    events_of(runtime, uid, container)
        .into_iter()
        .find(|(_, e)| what(e))
        .map(|(at, _)| at)
        .unwrap_or_else(|| {
            let log = runtime.logs(uid, container, false).unwrap_or_default();
            panic!("{container} did not log it: {log}")
        })
}

/// When the container's instance in `statuses` was started (its startedAt, running or
/// terminated).
fn history_started_at(
    runtime: &LocalRuntime,
    uid: &str,
    statuses: &Option<Vec<ContainerStatus>>,
    name: &str,
) -> Timestamp {
    let state = state_of(statuses, name).and_then(|c| c.state.clone());
    state
        .and_then(|s| {
            s.running
                .and_then(|r| r.started_at)
                .or_else(|| s.terminated.and_then(|t| t.started_at))
        })
        .map(|t| t.0)
        .unwrap_or_else(|| panic!("no start of {name} in {uid} on {}", runtime.id()))
}

/// Waits (a while) until a container's current instance logged an event `what` accepts.
async fn wait_for_log(
    runtime: &LocalRuntime,
    uid: &str,
    container: &str,
    what: impl Fn(&podcheck_wire::Event) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !events_of(runtime, uid, container)
        .iter()
        .any(|(_, e)| what(e))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{container} never logged it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_start(event: &podcheck_wire::Event) -> bool {
    matches!(event, podcheck_wire::Event::Start { .. })
}

fn is_exit(event: &podcheck_wire::Event) -> bool {
    matches!(event, podcheck_wire::Event::Exit { .. })
}

fn is_sigterm(event: &podcheck_wire::Event) -> bool {
    matches!(event, podcheck_wire::Event::Signal { .. })
}

fn state_of<'a>(
    statuses: &'a Option<Vec<ContainerStatus>>,
    name: &str,
) -> Option<&'a ContainerStatus> {
    statuses.as_ref()?.iter().find(|s| s.name == name)
}

fn waiting_reason(status: Option<&ContainerStatus>) -> Option<String> {
    status?.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

pub(super) async fn init_containers_and_a_sidecar_run_in_order_and_the_pod_completes() {
    let config = local::runtime_config(TERMINATION_SCALE, None);
    let runtime = LocalRuntime::start(config).expect("runtime starts");
    let uid = runtime.create_pod(init_pod(|_| {})).expect("pod accepted");
    let done = wait_for_version(&runtime, &uid, |v| {
        v.status.phase.as_deref() == Some("Succeeded")
    })
    .await;

    // One at a time, in order: the sidecar after init-a exited, init-b once the sidecar
    // runs, the app after init-b exited.
    // Log times are the workloads' own; a start is when the runtime ran the process
    // (startedAt), which is before the workload's first line.
    let started_at = |statuses: &Option<Vec<ContainerStatus>>, name: &str| -> Timestamp {
        history_started_at(&runtime, &uid, statuses, name)
    };
    let init = &done.status.init_container_statuses;
    let a_exit = logged(&runtime, &uid, "init-a", is_exit);
    let side_start = started_at(init, "side");
    let b_start = started_at(init, "init-b");
    let b_exit = logged(&runtime, &uid, "init-b", is_exit);
    let app_start = started_at(&done.status.container_statuses, "app");
    let app_exit = logged(&runtime, &uid, "app", is_exit);
    assert!(a_exit <= side_start, "side started before init-a ended");
    assert!(side_start <= b_start, "init-b started before the sidecar");
    assert!(b_exit <= app_start, "the app started before init-b ended");
    // The sidecar ran beside the app, and was stopped only once the app had exited.
    let side_sigterm = logged(&runtime, &uid, "side", is_sigterm);
    assert!(
        app_exit <= side_sigterm,
        "the sidecar was stopped before the app ended"
    );

    let history = runtime.snapshots(&uid).expect("snapshots");
    for version in &history {
        let status = &version.status;
        let app = state_of(&status.container_statuses, "app");
        let app_ran = app.is_some_and(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        });
        if status.init_container_statuses.is_none() {
            continue;
        }
        let init_b_done = state_of(&status.init_container_statuses, "init-b")
            .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()));
        if !app_ran {
            assert_eq!(status.phase.as_deref(), Some("Pending"), "{status:#?}");
            assert_eq!(
                waiting_reason(app).as_deref(),
                Some("PodInitializing"),
                "{status:#?}"
            );
        }
        let initialized = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Initialized")
            .expect("Initialized");
        match init_b_done {
            // Until the last init container completed.
            false => assert_eq!(
                (initialized.status.as_str(), initialized.reason.as_deref()),
                ("False", Some("ContainersNotInitialized")),
                "{status:#?}"
            ),
            true => assert_eq!(initialized.status, "True", "{status:#?}"),
        }
    }
    assert!(
        history
            .iter()
            .any(|v| v.status.phase.as_deref() == Some("Running")),
        "Running while the app ran"
    );

    // The final statuses: init containers completed, the sidecar stopped, the app done.
    let status = &done.status;
    let init = &status.init_container_statuses;
    for name in ["init-a", "init-b"] {
        let terminated = state_of(init, name)
            .and_then(|c| c.state.as_ref()?.terminated.clone())
            .expect("terminated");
        assert_eq!(
            (terminated.exit_code, terminated.reason.as_deref()),
            (0, Some("Completed"))
        );
        assert!(state_of(init, name).is_some_and(|c| c.ready && c.restart_count == 0));
    }
    let side = state_of(init, "side")
        .and_then(|c| c.state.as_ref()?.terminated.clone())
        .expect("the sidecar terminated");
    assert_eq!(side.exit_code, 143, "stopped by SIGTERM");
    let app = state_of(&status.container_statuses, "app")
        .and_then(|c| c.state.as_ref()?.terminated.clone())
        .expect("the app terminated");
    assert_eq!(app.exit_code, 0);
    no_processes_left(&runtime).await;
    runtime.shutdown().await;
}

pub(super) async fn a_deleted_pod_stops_its_app_before_its_sidecar() {
    let config = local::runtime_config(TERMINATION_SCALE, None);
    let runtime = LocalRuntime::start(config).expect("runtime starts");
    let pod = init_pod(|pod| {
        let spec = spec(pod);
        spec.restart_policy = Some("Always".to_owned());
        // The app takes 3 s to shut down after SIGTERM; the sidecar dies of it at once.
        let behaviour = r#"{"onSigterm":{"exit":{"afterMs":3000,"code":0}},"then":"forever"}"#;
        for var in spec.containers[0].env.iter_mut().flatten() {
            if var.name == podcheck_wire::env::BEHAVIOUR {
                var.value = Some(behaviour.to_owned());
            }
        }
    });
    let uid = runtime.create_pod(pod).expect("pod accepted");
    wait_for_version(&runtime, &uid, |v| {
        state_of(&v.status.container_statuses, "app")
            .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
    })
    .await;
    // The workloads must have set up their SIGTERM handling.
    for container in ["app", "side"] {
        wait_for_log(&runtime, &uid, container, is_start).await;
    }
    runtime.delete(&uid, Some(20)).expect("delete acknowledged");
    wait_for_version(&runtime, &uid, |v| v.object.gone).await;
    let app_sigterm = logged(&runtime, &uid, "app", is_sigterm);
    let app_exit = logged(&runtime, &uid, "app", is_exit);
    let side_sigterm = logged(&runtime, &uid, "side", is_sigterm);
    assert!(
        app_exit <= side_sigterm,
        "the sidecar got SIGTERM before the app had stopped"
    );
    let waited = spec_secs_between(&app_sigterm, &side_sigterm);
    assert!(
        (3.0..6.0).contains(&waited),
        "the sidecar's SIGTERM {waited} spec s after the app's, which took 3 s to stop"
    );
    no_processes_left(&runtime).await;
    runtime.shutdown().await;
}

pub(super) async fn an_init_container_without_restart_policy_always_may_not_have_probes() {
    let pod = init_pod(|pod| {
        if let Some(init) = spec(pod).init_containers.as_mut() {
            init[0].liveness_probe = Some(Probe {
                exec: Some(ExecAction {
                    command: Some(vec!["/podcheck-agent".to_owned()]),
                }),
                ..Probe::default()
            });
        }
    });
    let runtime = LocalRuntime::start(local::runtime_config(SCALE, None)).expect("runtime starts");
    match runtime.create_pod(pod) {
        Err(RuntimeError::InvalidPod { field, reason, .. }) => {
            assert_eq!(field, "spec.initContainers[0].livenessProbe");
            assert!(reason.contains("restartPolicy=Always"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(runtime.process_count(), 0);
}
