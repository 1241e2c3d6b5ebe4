//! The local runtime's real parts: namespaces, cgroups (v1 and v2), cleanup. These need
//! root: without it they are ignored (skipped) with the reason printed, except under
//! `CI=true`, where they run and fail if they cannot.

mod common;
#[path = "runtime/init.rs"]
mod init;

use common::local;
use init::{
    a_deleted_pod_stops_its_app_before_its_sidecar,
    an_init_container_without_restart_policy_always_may_not_have_probes,
    init_containers_and_a_sidecar_run_in_order_and_the_pod_completes,
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerStateTerminated, ContainerStatus, ExecAction, Lifecycle, LifecycleHandler,
    Pod, PodSpec, PodStatus, SleepAction, Volume,
};
use libtest_mimic::Arguments;
use podcheck::compile::compile;
use podcheck_oracle::Scenario;
use podcheck_runtime::{LocalRuntime, PodSnapshot, RuntimeError, AGENT_IMAGE};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SCENARIO: &str = r#"
name: runtime-probe
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: runtime-probe}
  spec:
    containers:
      - name: a
      - name: b
behaviours:
  a:
    starts: [{exit: {after: 1s, code: 3}}]
    then: forever
  b:
    then: forever
"#;

/// Wall seconds per spec second in the tests of the runtime's processes.
const SCALE: f64 = 0.05;

async fn wait_for(
    runtime: &LocalRuntime,
    uid: &str,
    what: impl Fn(&PodStatus) -> bool,
) -> PodStatus {
    local::wait_for_status(runtime, uid, Duration::from_secs(10), what).await
}

fn restarted_and_running(status: &PodStatus) -> bool {
    status
        .container_statuses
        .iter()
        .flatten()
        .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        && status
            .container_statuses
            .iter()
            .flatten()
            .any(|c| c.restart_count == 1)
}

fn net_namespace(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("readlink ns/net")
}

fn mounts_under(dir: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .count()
}

async fn exercise(cgroup_root: Option<&Path>) {
    let scenario = Scenario::from_yaml("runtime-probe", SCENARIO).expect("scenario");
    let config = local::runtime_config(SCALE, cgroup_root);
    let state_root = config.state_root.clone();
    let runtime = LocalRuntime::start(config).expect("runtime starts");
    let uid = runtime
        .create_pod(compile(&scenario, AGENT_IMAGE, SCALE))
        .expect("pod accepted");
    let status = wait_for(&runtime, &uid, restarted_and_running).await;
    assert_eq!(status.phase.as_deref(), Some("Running"));
    // Sandbox plus two containers, all tracked by the pod's cgroups.
    assert_eq!(
        runtime.process_count(),
        3,
        "processes in the runtime's cgroups"
    );
    let pids = process_ids(&runtime);
    let namespaces: Vec<PathBuf> = pids.iter().map(|p| net_namespace(*p)).collect();
    assert!(
        namespaces.windows(2).all(|w| w[0] == w[1]),
        "containers share the pod's network namespace: {namespaces:?}"
    );
    assert_ne!(
        namespaces[0],
        net_namespace(std::process::id() as i32),
        "the pod has its own network namespace"
    );
    // The restarted container's previous instance logged its start and its exit.
    let previous = runtime.logs(&uid, "a", true).expect("previous log");
    assert!(
        previous.contains("\"event\":\"start\"") && previous.contains("\"code\":3"),
        "{previous}"
    );
    runtime.delete_pod(&uid).await.expect("delete");
    assert_eq!(runtime.process_count(), 0, "no process survives deletion");
    let id = runtime.id().to_owned();
    drop(runtime);
    let runtimes = state_root.join("runtimes");
    let leftovers: Vec<_> = std::fs::read_dir(&runtimes)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    let own: Vec<_> = leftovers.iter().filter(|p| p.ends_with(&id)).collect();
    assert!(own.is_empty(), "state left behind: {own:?}");
    assert_eq!(mounts_under(&state_root), 0, "mounts left behind");
}

fn process_ids(runtime: &LocalRuntime) -> Vec<i32> {
    // The runtime reports its processes by count; find them by their cgroup membership.
    // By runtime id, not process id: `cargo test` runs several runtimes in one process.
    let own = format!("/{}/", runtime.id());
    let pids = local::pids_where(|cgroup| cgroup.contains("/podcheck/") && cgroup.contains(&own));
    assert_eq!(pids.len(), runtime.process_count());
    pids
}

async fn pods_run_in_their_own_namespaces_and_leave_nothing_behind() {
    exercise(None).await;
}

async fn runs_on_a_cgroup_v2_hierarchy() {
    let root = local::cgroup_v2_root().expect("a cgroup v2 hierarchy");
    exercise(Some(root)).await;
}

async fn unsupported_volumes_are_refused_naming_the_field() {
    let scenario = Scenario::from_yaml("runtime-probe", SCENARIO).expect("scenario");
    let mut pod = compile(&scenario, AGENT_IMAGE, SCALE);
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes.get_or_insert_with(Vec::new).insert(
            0,
            Volume {
                name: "host".to_owned(),
                host_path: Some(Default::default()),
                ..Volume::default()
            },
        );
    }
    let runtime = LocalRuntime::start(local::runtime_config(SCALE, None)).expect("runtime starts");
    match runtime.create_pod(pod) {
        Err(RuntimeError::InvalidPod { field, .. }) => assert_eq!(field, "spec.volumes[0]"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(runtime.process_count(), 0);
}

// Deletion and termination, as the API server and the kubelet do them.

/// Spec seconds per wall second in the termination tests: coarse enough that a second of
/// spec time (100 ms) stands out from scheduling noise.
const TERMINATION_SCALE: f64 = 0.1;

const FOREVER: &str = r#"
name: termination
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: termination}
  spec:
    containers:
      - name: app
behaviours:
  app:
    then: forever
    health:
      endpoints:
        ok:
          answers: [{answer: ok}]
"#;

/// The FOREVER pod with `edit` applied to its manifest, running on a fresh runtime.
async fn running_pod(edit: impl FnOnce(&mut Pod)) -> (LocalRuntime, String) {
    let scenario = Scenario::from_yaml("termination", FOREVER).expect("scenario");
    let mut pod = compile(&scenario, AGENT_IMAGE, TERMINATION_SCALE);
    edit(&mut pod);
    let config = local::runtime_config(TERMINATION_SCALE, None);
    let runtime = LocalRuntime::start(config).expect("runtime starts");
    let uid = runtime.create_pod(pod).expect("pod accepted");
    wait_for(&runtime, &uid, |status| {
        container(status).is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
    })
    .await;
    (runtime, uid)
}

fn container(status: &PodStatus) -> Option<&ContainerStatus> {
    status.container_statuses.as_ref()?.first()
}

fn spec(pod: &mut Pod) -> &mut PodSpec {
    pod.spec.get_or_insert_with(PodSpec::default)
}

fn app(pod: &mut Pod) -> &mut Container {
    &mut spec(pod).containers[0]
}

/// Waits for a version of the pod object that `what` accepts, and returns it.
async fn wait_for_version(
    runtime: &LocalRuntime,
    uid: &str,
    what: impl Fn(&PodSnapshot) -> bool,
) -> PodSnapshot {
    let versions = || runtime.snapshots(uid).expect("snapshots");
    local::wait_until(
        runtime,
        uid,
        Duration::from_secs(20),
        || versions().into_iter().find(|v| what(v)),
        || format!("last version: {:#?}", versions().last()),
    )
    .await
}

fn spec_secs_between(from: &Timestamp, to: &Timestamp) -> f64 {
    to.duration_since(*from).as_secs_f64() / TERMINATION_SCALE
}

fn terminated(version: &PodSnapshot) -> Option<ContainerStateTerminated> {
    container(&version.status)?
        .state
        .as_ref()?
        .terminated
        .clone()
}

/// The agent's log lines of the container's current instance.
fn log_events(runtime: &LocalRuntime, uid: &str) -> Vec<podcheck_wire::LogEvent> {
    runtime
        .logs(uid, "app", false)
        .expect("log")
        .lines()
        .filter_map(|line| podcheck_wire::LogEvent::parse(line).ok())
        .collect()
}

/// The pid of the container's current process, found by its cgroup.
fn app_pid(runtime: &LocalRuntime, uid: &str) -> i32 {
    process_ids(runtime)
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .unwrap_or_default()
                .contains(&format!("/{uid}/app-0"))
        })
        .expect("the container's process")
}

/// Waits (a while) for the kernel to take the runtime's killed processes away.
async fn no_processes_left(runtime: &LocalRuntime) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runtime.process_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runtime.process_count(), 0, "processes left");
}

async fn sigkill_follows_a_sigterm_that_did_not_end_the_process_after_the_grace_period() {
    let (runtime, uid) = running_pod(|_| {}).await;
    // A stopped process does not act on SIGTERM (it stays pending; the agent catches it)
    // but dies of SIGKILL: it stands for a process that ignores SIGTERM.
    let pid = app_pid(&runtime, &uid);
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(stopped.success());
    let requested = Timestamp::now();
    runtime.delete(&uid, Some(4)).expect("delete acknowledged");
    let deleting = runtime.snapshots(&uid).expect("snapshots");
    let marked = deleting.last().expect("a version");
    assert_eq!(marked.object.deletion_grace_period_seconds, Some(4));
    let deadline = marked
        .object
        .deletion_timestamp
        .as_ref()
        .expect("deletionTimestamp");
    let ahead = spec_secs_between(&requested, &deadline.0);
    assert!(
        (3.5..4.5).contains(&ahead),
        "deletionTimestamp {ahead} spec s ahead"
    );

    let ended = wait_for_version(&runtime, &uid, |v| terminated(v).is_some()).await;
    let killed = terminated(&ended).expect("terminated");
    assert_eq!(
        (killed.exit_code, killed.reason.as_deref()),
        (137, Some("Error"))
    );
    let finished = killed.finished_at.expect("finishedAt");
    let after = spec_secs_between(&requested, &finished.0);
    assert!(
        (4.0..8.0).contains(&after),
        "SIGKILL {after} spec s after the delete, due at 4"
    );
    assert_eq!(ended.status.phase.as_deref(), Some("Failed"));
    assert_eq!(
        ended
            .status
            .container_statuses
            .as_ref()
            .map(|c| c[0].restart_count),
        Some(0)
    );
    let gone = wait_for_version(&runtime, &uid, |v| v.object.gone).await;
    assert_eq!(
        gone.status.phase.as_deref(),
        Some("Failed"),
        "terminal before removal"
    );
    no_processes_left(&runtime).await;
    assert!(matches!(
        runtime.delete(&uid, None),
        Err(RuntimeError::PodGone(_))
    ));
    runtime.delete_pod(&uid).await.expect("cleanup");
}

async fn a_pre_stop_exec_hook_runs_before_sigterm() {
    let (runtime, uid) = running_pod(|pod| {
        app(pod).lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec![
                        "/podcheck-agent".to_owned(),
                        "probe".to_owned(),
                        "ok".to_owned(),
                    ]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        });
    })
    .await;
    runtime.delete(&uid, Some(10)).expect("delete acknowledged");
    let ended = wait_for_version(&runtime, &uid, |v| terminated(v).is_some()).await;
    assert_eq!(terminated(&ended).map(|t| t.exit_code), Some(143));
    let events = log_events(&runtime, &uid);
    let hook = events.iter().position(|e| {
        matches!(&e.event, podcheck_wire::Event::Probe(podcheck_wire::Probe::Exec(r)) if r.endpoint.as_deref() == Some("ok"))
    });
    let sigterm = events
        .iter()
        .position(|e| matches!(e.event, podcheck_wire::Event::Signal { .. }));
    assert!(
        matches!((hook, sigterm), (Some(h), Some(t)) if h < t),
        "the hook's request comes before SIGTERM: {events:?}"
    );
    wait_for_version(&runtime, &uid, |v| v.object.gone).await;
    runtime.delete_pod(&uid).await.expect("cleanup");
}

async fn a_sleep_pre_stop_hook_delays_sigterm_within_the_grace_period() {
    let (runtime, uid) = running_pod(|pod| {
        app(pod).lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 3 }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        });
    })
    .await;
    let requested = Timestamp::now();
    runtime.delete(&uid, Some(20)).expect("delete acknowledged");
    let ended = wait_for_version(&runtime, &uid, |v| terminated(v).is_some()).await;
    let sigterm = log_events(&runtime, &uid)
        .into_iter()
        .find(|e| matches!(e.event, podcheck_wire::Event::Signal { .. }))
        .expect("SIGTERM logged");
    let at = Timestamp::from_millisecond(sigterm.ts_ms as i64).expect("a time");
    let after = spec_secs_between(&requested, &at);
    assert!(
        (3.0..6.0).contains(&after),
        "SIGTERM {after} spec s after the delete, hook 3 s"
    );
    assert_eq!(terminated(&ended).map(|t| t.exit_code), Some(143));
    runtime.delete_pod(&uid).await.expect("cleanup");
}

async fn finalizers_keep_the_deleted_object_until_the_last_one_is_removed() {
    let (runtime, uid) = running_pod(|pod| {
        pod.metadata.finalizers =
            Some(vec!["example.com/a".to_owned(), "example.com/b".to_owned()]);
    })
    .await;
    runtime.delete(&uid, Some(2)).expect("delete acknowledged");
    // The kubelet's own delete (grace 0) once the pod is terminal leaves the object to its
    // finalizers.
    let finalized = wait_for_version(&runtime, &uid, |v| {
        v.object.deletion_grace_period_seconds == Some(0)
    })
    .await;
    assert_eq!(finalized.status.phase.as_deref(), Some("Failed"));
    assert!(!finalized.object.gone);
    assert_eq!(finalized.object.finalizers.len(), 2);
    runtime
        .remove_finalizer(&uid, "example.com/a")
        .expect("patched");
    assert!(
        !runtime
            .snapshots(&uid)
            .expect("snapshots")
            .last()
            .expect("a version")
            .object
            .gone
    );
    assert!(matches!(
        runtime.remove_finalizer(&uid, "example.com/a"),
        Err(RuntimeError::NoSuchFinalizer { .. })
    ));
    runtime
        .remove_finalizer(&uid, "example.com/b")
        .expect("patched");
    let versions = runtime.snapshots(&uid).expect("snapshots");
    let last = versions.last().expect("a version");
    assert!(last.object.gone, "{last:#?}");
    assert_eq!(last.object.finalizers, ["example.com/b"], "as last stored");
    runtime.delete_pod(&uid).await.expect("cleanup");
    assert_eq!(runtime.process_count(), 0);
}

async fn a_force_deleted_pod_is_gone_at_once_while_its_containers_stop() {
    let (runtime, uid) = running_pod(|_| {}).await;
    runtime.force_delete(&uid).expect("delete acknowledged");
    let versions = runtime.snapshots(&uid).expect("snapshots");
    let last = versions.last().expect("a version");
    assert!(last.object.gone);
    assert_eq!(last.object.deletion_grace_period_seconds, Some(0));
    // The node still stops the container (SIGTERM, which the agent dies of).
    no_processes_left(&runtime).await;
    assert_eq!(
        runtime.snapshots(&uid).expect("snapshots").len(),
        versions.len(),
        "nothing after gone"
    );
    runtime.delete_pod(&uid).await.expect("cleanup");
}

async fn a_post_start_hook_holds_running_back_and_a_failing_one_restarts_the_container() {
    let scenario = Scenario::from_yaml("termination", FOREVER).expect("scenario");
    let mut pod = compile(&scenario, AGENT_IMAGE, TERMINATION_SCALE);
    app(&mut pod).lifecycle = Some(Lifecycle {
        post_start: Some(LifecycleHandler {
            sleep: Some(SleepAction { seconds: 3 }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    });
    let mut failing = pod.clone();
    failing.metadata.name = Some("failing".to_owned());
    // The hook fails once the agent answers it (404: it has no such hook). One that failed
    // before the agent took SIGTERM in hand would have the kill's SIGTERM reach a PID 1
    // without a handler, which ignores it (as on a node): SIGKILL would end it, with 137.
    for var in app(&mut failing).env.iter_mut().flatten() {
        if var.name == podcheck_wire::env::BEHAVIOUR {
            var.value = Some(r#"{"then":"forever","hooks":{"other":{}}}"#.to_owned());
        }
    }
    app(&mut failing).lifecycle = Some(Lifecycle {
        post_start: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    "/podcheck-agent".to_owned(),
                    "hook".to_owned(),
                    "missing".to_owned(),
                ]),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    });
    let config = local::runtime_config(TERMINATION_SCALE, None);
    let runtime = LocalRuntime::start(config).expect("runtime starts");
    let uid = runtime.create_pod(pod).expect("pod accepted");
    let running = wait_for_version(&runtime, &uid, |v| {
        container(&v.status).is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
    })
    .await;
    let started = container(&running.status)
        .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.clone())
        .expect("startedAt");
    let held = spec_secs_between(&started.0, &running.at.0);
    assert!(
        held >= 3.0,
        "Running shown {held} spec s after the start, hook 3 s"
    );

    let uid = runtime.create_pod(failing).expect("pod accepted");
    let waiting = wait_for_version(&runtime, &uid, |v| {
        container(&v.status).and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
            == Some("PostStartHookError")
    })
    .await;
    let status = container(&waiting.status).expect("a container");
    let message = status
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref()?.message.clone())
        .unwrap_or_default();
    assert!(
        message.starts_with("Exec lifecycle hook ([/podcheck-agent hook missing])"),
        "{message}"
    );
    let killed = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState");
    assert_eq!(
        killed.exit_code, 143,
        "killed with SIGTERM after the failed hook"
    );
    assert!(
        runtime
            .status_history(&uid)
            .expect("history")
            .iter()
            .all(|(_, s)| container(s)
                .is_none_or(|c| c.state.as_ref().is_none_or(|s| s.running.is_none()))),
        "a container whose postStart fails never shows Running"
    );
    runtime.shutdown().await;
    assert_eq!(runtime.process_count(), 0);
}

fn main() {
    let args = Arguments::from_args();
    let trials = common::root_trials!(
        &args,
        "the local runtime's tests",
        [
            pods_run_in_their_own_namespaces_and_leave_nothing_behind,
            unsupported_volumes_are_refused_naming_the_field,
            sigkill_follows_a_sigterm_that_did_not_end_the_process_after_the_grace_period,
            a_pre_stop_exec_hook_runs_before_sigterm,
            a_sleep_pre_stop_hook_delays_sigterm_within_the_grace_period,
            finalizers_keep_the_deleted_object_until_the_last_one_is_removed,
            a_force_deleted_pod_is_gone_at_once_while_its_containers_stop,
            a_post_start_hook_holds_running_back_and_a_failing_one_restarts_the_container,
            init_containers_and_a_sidecar_run_in_order_and_the_pod_completes,
            a_deleted_pod_stops_its_app_before_its_sidecar,
            an_init_container_without_restart_policy_always_may_not_have_probes,
        ],
        cgroup_v2: [runs_on_a_cgroup_v2_hierarchy]
    );
    libtest_mimic::run(&args, trials).exit();
}
