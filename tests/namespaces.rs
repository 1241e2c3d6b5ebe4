//! The local runtime's PID namespaces, root filesystems and ephemeral containers, seen
//! from inside the containers: each agent logs the processes it can see. These need
//! root: without it they are ignored (skipped) with the reason printed, except under
//! `CI=true`, where they run and fail if they cannot.

mod common;

use common::local;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerPort, ContainerStatus, ExecAction, Lifecycle, LifecycleHandler, PodStatus,
};
use libtest_mimic::Arguments;
use podcheck::compile::{behaviour_from_json, compile, ephemeral_container};
use podcheck_oracle::Scenario;
use podcheck_runtime::{LocalRuntime, RuntimeError, AGENT_IMAGE};
use podcheck_wire::{AgentProcess, Event, LogEvent};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Wall seconds per spec second: a spec second (100 ms) stands out from scheduling noise.
const SCALE: f64 = 0.1;

/// How long a wait for something the runtime or an agent does may take, in wall time (an
/// agent looks at its processes once a second).
const PATIENCE: Duration = Duration::from_secs(15);

fn runtime() -> LocalRuntime {
    runtime_on(None)
}

/// A runtime on the cgroup hierarchy at `cgroup_root` (the host's default without one).
fn runtime_on(cgroup_root: Option<&Path>) -> LocalRuntime {
    LocalRuntime::start(local::runtime_config(SCALE, cgroup_root)).expect("runtime starts")
}

/// A pod named `name` whose containers run forever.
fn scenario(name: &str, containers: &[&str]) -> Scenario {
    let list: Vec<String> = containers
        .iter()
        .map(|c| format!("      - name: {c}"))
        .collect();
    let behaviours: Vec<String> = containers
        .iter()
        .map(|c| format!("  {c}: {{then: forever}}"))
        .collect();
    let yaml = format!(
        "name: {name}\npod:\n  apiVersion: v1\n  kind: Pod\n  metadata: {{name: {name}}}\n  spec:\n    containers:\n{}\nbehaviours:\n{}\n",
        list.join("\n"),
        behaviours.join("\n")
    );
    Scenario::from_yaml(name, &yaml).expect("scenario")
}

async fn wait_for_status(
    runtime: &LocalRuntime,
    uid: &str,
    what: impl Fn(&PodStatus) -> bool,
) -> PodStatus {
    local::wait_for_status(runtime, uid, PATIENCE, what).await
}

fn all_running(status: &PodStatus) -> bool {
    status
        .container_statuses
        .iter()
        .flatten()
        .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

fn ephemeral<'a>(status: &'a PodStatus, name: &str) -> Option<&'a ContainerStatus> {
    status
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == name)
}

fn is_running(status: Option<&ContainerStatus>) -> bool {
    status.is_some_and(|s| s.state.as_ref().is_some_and(|s| s.running.is_some()))
}

fn exit_code(status: Option<&ContainerStatus>) -> Option<i32> {
    status?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

fn agent(pod: &str, container: &str) -> AgentProcess {
    AgentProcess {
        pod: Some(pod.to_owned()),
        container: container.to_owned(),
    }
}

fn events(runtime: &LocalRuntime, uid: &str, container: &str) -> Vec<LogEvent> {
    runtime
        .logs(uid, container, false)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| LogEvent::parse(line).ok())
        .collect()
}

/// Every `processes` event of the container's current log: (agents, others).
fn seen(runtime: &LocalRuntime, uid: &str, container: &str) -> Vec<(Vec<AgentProcess>, u32)> {
    events(runtime, uid, container)
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Processes { agents, others } => Some((agents, others)),
            _ => None,
        })
        .collect()
}

/// Waits until the container's agent last reported seeing what `what` accepts.
async fn wait_until_seen(
    runtime: &LocalRuntime,
    uid: &str,
    container: &str,
    what: impl Fn(&[AgentProcess], u32) -> bool,
) -> (Vec<AgentProcess>, u32) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some((agents, others)) = seen(runtime, uid, container).pop() {
            if what(&agents, others) {
                return (agents, others);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{container} never saw what was expected; its log:\n{}",
            runtime.logs(uid, container, false).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The runtime's processes in the pod's cgroup of `group` (`app-0`, `sandbox`...).
fn pids_in(runtime: &LocalRuntime, uid: &str, group: &str) -> Vec<i32> {
    let path = format!("/{}/{uid}/{group}\n", runtime.id());
    local::pids_where(|cgroup| cgroup.contains(&path))
}

fn pid_namespace(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).expect("readlink ns/pid")
}

/// The names in `dir` of the filesystem tree of `pid` (through its `/proc/PID/root`).
fn list_inside(pid: i32, dir: &str) -> BTreeSet<String> {
    let path = format!("/proc/{pid}/root{dir}");
    std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
        .collect()
}

/// Runs `argv` in the mount namespace of `pid`, entered as `nsenter` enters one: at the
/// root of the namespace's tree.
fn run_in_mount_namespace(pid: i32, argv: &[&str]) -> std::process::Output {
    std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "--"])
        .args(argv)
        .env_clear()
        .output()
        .expect("run nsenter")
}

async fn containers_see_only_themselves_and_nothing_of_the_host() {
    let runtime = runtime();
    let one = scenario("pidns-one", &["a", "b"]);
    let two = scenario("pidns-two", &["c"]);
    let uid = runtime
        .create_pod(compile(&one, AGENT_IMAGE, SCALE))
        .expect("pod accepted");
    let other = runtime
        .create_pod(compile(&two, AGENT_IMAGE, SCALE))
        .expect("pod accepted");
    wait_for_status(&runtime, &uid, all_running).await;
    wait_for_status(&runtime, &other, all_running).await;
    // Give every agent a rescan after the last container started.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (pod_uid, pod, container) in [
        (&uid, "pidns-one", "a"),
        (&uid, "pidns-one", "b"),
        (&other, "pidns-two", "c"),
    ] {
        let reports = seen(&runtime, pod_uid, container);
        assert!(!reports.is_empty(), "{container} logged no processes");
        for (agents, others) in reports {
            assert_eq!(
                (agents, others),
                (vec![agent(pod, container)], 0),
                "{container} sees only itself: not its sibling, another pod or the host"
            );
        }
    }
    let a = pids_in(&runtime, &uid, "a-0");
    let b = pids_in(&runtime, &uid, "b-0");
    let (a, b) = (a[0], b[0]);
    let namespaces: BTreeSet<PathBuf> = [a, b, std::process::id() as i32]
        .into_iter()
        .map(pid_namespace)
        .collect();
    assert_eq!(namespaces.len(), 3, "a PID namespace each: {namespaces:?}");
    // The container's root is its image, and its mount namespace has nothing else: the
    // namespace's own root is the image (the host's /bin/ls is not there, the agent is),
    // which a chroot inside the host's tree would not make it.
    let root = list_inside(a, "/");
    assert!(root.contains("podcheck-agent"), "{root:?}");
    for host_only in ["work", "var", "root", "sys"] {
        assert!(!root.contains(host_only), "{host_only} reachable: {root:?}");
    }
    let host_ls = run_in_mount_namespace(a, &["/bin/ls", "/"]);
    assert!(
        !host_ls.status.success()
            && String::from_utf8_lossy(&host_ls.stderr).contains("No such file"),
        "{host_ls:?}"
    );
    // Run as `probe` without a behaviour the agent answers 125: it was found, at the
    // root of the namespace.
    let agent_inside = run_in_mount_namespace(a, &["/podcheck-agent", "probe", "x"]);
    assert_eq!(agent_inside.status.code(), Some(125), "{agent_inside:?}");
    // Its /proc is its PID namespace's.
    let processes: Vec<String> = list_inside(a, "/proc")
        .into_iter()
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(processes, ["1"], "the agent is PID 1 and alone");
    runtime.shutdown().await;
    assert_eq!(runtime.process_count(), 0);
}

async fn share_process_namespace_makes_the_pods_containers_see_each_other() {
    let runtime = runtime();
    // The oracle refuses shareProcessNamespace in scenarios (it does not model it): it is
    // set on the compiled manifests.
    let sharing = |scenario: &Scenario| {
        let mut pod = compile(scenario, AGENT_IMAGE, SCALE);
        if let Some(spec) = pod.spec.as_mut() {
            spec.share_process_namespace = Some(true);
        }
        pod
    };
    let shared = scenario("pidns-shared", &["a", "b"]);
    let apart = scenario("pidns-apart", &["c"]);
    let uid = runtime.create_pod(sharing(&shared)).expect("pod accepted");
    let other = runtime.create_pod(sharing(&apart)).expect("pod accepted");
    wait_for_status(&runtime, &uid, all_running).await;
    wait_for_status(&runtime, &other, all_running).await;
    let both = vec![agent("pidns-shared", "a"), agent("pidns-shared", "b")];
    for container in ["a", "b"] {
        // Both agents, and the sandbox's pause process (PID 1 there).
        let (agents, others) =
            wait_until_seen(&runtime, &uid, container, |agents, _| agents == both).await;
        assert_eq!((agents, others), (both.clone(), 1));
    }
    let (agents, others) = wait_until_seen(&runtime, &other, "c", |_, _| true).await;
    assert_eq!((agents, others), (vec![agent("pidns-apart", "c")], 1));
    for (pod_uid, container) in [(&uid, "a"), (&uid, "b"), (&other, "c")] {
        let foreign = seen(&runtime, pod_uid, container)
            .into_iter()
            .flat_map(|(agents, _)| agents)
            .filter(|a| {
                let own = if *pod_uid == uid {
                    "pidns-shared"
                } else {
                    "pidns-apart"
                };
                a.pod.as_deref() != Some(own)
            })
            .count();
        assert_eq!(foreign, 0, "{container} saw another pod's agent");
    }
    let sandbox = pids_in(&runtime, &uid, "sandbox")[0];
    let a = pids_in(&runtime, &uid, "a-0")[0];
    assert_eq!(pid_namespace(a), pid_namespace(sandbox));
    // An ephemeral container without a target joins the pod's namespace too.
    let forever = behaviour_from_json(r#"{"then":"forever"}"#).expect("a behaviour");
    let debug = ephemeral_container("pidns-shared", "debug", None, &forever, AGENT_IMAGE, SCALE);
    runtime.add_ephemeral_container(&uid, debug).expect("added");
    let all = vec![
        agent("pidns-shared", "a"),
        agent("pidns-shared", "b"),
        agent("pidns-shared", "debug"),
    ];
    let (agents, others) = wait_until_seen(&runtime, &uid, "debug", |_, _| true).await;
    assert_eq!((agents, others), (all.clone(), 1));
    wait_until_seen(&runtime, &uid, "a", |agents, _| agents == all).await;
    runtime.shutdown().await;
    assert_eq!(runtime.process_count(), 0);
}

async fn an_ephemeral_container_joins_its_target_runs_once_and_stops_with_the_pod() {
    ephemeral_containers(None).await;
}

async fn ephemeral_containers_on_a_cgroup_v2_hierarchy() {
    ephemeral_containers(Some(
        local::cgroup_v2_root().expect("a cgroup v2 hierarchy"),
    ))
    .await;
}

async fn ephemeral_containers(cgroup_root: Option<&Path>) {
    let runtime = runtime_on(cgroup_root);
    let pod = scenario("pidns-debug", &["app", "other"]);
    let uid = runtime
        .create_pod(compile(&pod, AGENT_IMAGE, SCALE))
        .expect("pod accepted");
    wait_for_status(&runtime, &uid, all_running).await;
    // Long enough (4 s of wall time) for the target's agent to look again meanwhile.
    let exits =
        behaviour_from_json(r#"{"starts":[{"exit":{"afterMs":40000,"code":3}}],"then":"forever"}"#)
            .expect("a behaviour");
    let debug = ephemeral_container(
        "pidns-debug",
        "debug",
        Some("app"),
        &exits,
        AGENT_IMAGE,
        SCALE,
    );
    runtime
        .add_ephemeral_container(&uid, debug.clone())
        .expect("added");
    let stored = runtime.pod_object(&uid).expect("the pod object");
    let names: Vec<String> = stored
        .spec
        .and_then(|s| s.ephemeral_containers)
        .into_iter()
        .flatten()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["debug"], "stored in spec.ephemeralContainers");

    // The API server's refusals.
    let mut with_ports =
        ephemeral_container("pidns-debug", "ports", None, &exits, AGENT_IMAGE, SCALE);
    with_ports.ports = Some(vec![ContainerPort {
        container_port: 80,
        ..ContainerPort::default()
    }]);
    for (refused, expected) in [
        (with_ports, "spec.ephemeralContainers[1].ports: Forbidden"),
        (
            debug.clone(),
            "spec.ephemeralContainers[1].name: Duplicate value",
        ),
    ] {
        match runtime.add_ephemeral_container(&uid, refused) {
            Err(err @ RuntimeError::EphemeralContainerRefused { .. }) => {
                assert!(err.to_string().contains(expected), "{err}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    let running = wait_for_status(&runtime, &uid, |s| is_running(ephemeral(s, "debug"))).await;
    assert_eq!(ephemeral(&running, "debug").map(|s| s.ready), Some(false));
    // It sees its target's agent, and nothing of the other container.
    let (agents, others) = wait_until_seen(&runtime, &uid, "debug", |_, _| true).await;
    assert_eq!(
        (agents, others),
        (
            vec![agent("pidns-debug", "app"), agent("pidns-debug", "debug")],
            0
        )
    );
    // The target sees it too.
    wait_until_seen(&runtime, &uid, "app", |agents, _| agents.len() == 2).await;
    assert!(seen(&runtime, &uid, "other")
        .iter()
        .all(|(agents, _)| agents == &[agent("pidns-debug", "other")]));

    let ended = wait_for_status(&runtime, &uid, |s| {
        exit_code(ephemeral(s, "debug")).is_some()
    })
    .await;
    assert_eq!(exit_code(ephemeral(&ended, "debug")), Some(3));
    // Never restarted: some spec seconds later it is still the one that ended.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = runtime
        .status_history(&uid)
        .expect("history")
        .last()
        .map(|(_, s)| s.clone())
        .expect("a status");
    let status = ephemeral(&later, "debug").expect("its status");
    assert_eq!(
        (exit_code(Some(status)), status.restart_count),
        (Some(3), 0)
    );
    let starts = events(&runtime, &uid, "debug")
        .into_iter()
        .filter(|e| matches!(e.event, Event::Start { .. }))
        .count();
    assert_eq!(starts, 1);
    assert!(pids_in(&runtime, &uid, "debug-0").is_empty());

    // One without a target, in a pod without shareProcessNamespace: on its own.
    let forever = behaviour_from_json(r#"{"then":"forever"}"#).expect("a behaviour");
    let solo = ephemeral_container("pidns-debug", "solo", None, &forever, AGENT_IMAGE, SCALE);
    runtime.add_ephemeral_container(&uid, solo).expect("added");
    wait_for_status(&runtime, &uid, |s| is_running(ephemeral(s, "solo"))).await;
    let (agents, others) = wait_until_seen(&runtime, &uid, "solo", |_, _| true).await;
    assert_eq!((agents, others), (vec![agent("pidns-debug", "solo")], 0));

    // Deleted with the pod: SIGTERM, which the agent dies of.
    let requested = Timestamp::now();
    runtime.delete(&uid, Some(5)).expect("delete acknowledged");
    let stopped = wait_for_status(&runtime, &uid, |s| {
        exit_code(ephemeral(s, "solo")).is_some()
    })
    .await;
    assert_eq!(exit_code(ephemeral(&stopped, "solo")), Some(143));
    let finished = ephemeral(&stopped, "solo")
        .and_then(|s| s.state.as_ref()?.terminated.as_ref()?.finished_at.clone())
        .expect("finishedAt");
    let after = finished.0.duration_since(requested).as_secs_f64() / SCALE;
    assert!(
        after < 5.0,
        "stopped {after} spec s after the delete, not by SIGKILL"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while runtime.process_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runtime.process_count(), 0, "processes left");
    runtime.shutdown().await;
}

/// An exec hook runs in the container's PID namespace: the agent sees the hook's process
/// (a `podcheck-agent pause` that never returns) among its others, and the process is in
/// the container's namespace.
async fn exec_hooks_run_in_the_containers_pid_namespace() {
    let runtime = runtime();
    let pod = scenario("pidns-exec", &["app"]);
    let mut manifest = compile(&pod, AGENT_IMAGE, SCALE);
    if let Some(spec) = manifest.spec.as_mut() {
        spec.containers[0].lifecycle = Some(Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["/podcheck-agent".to_owned(), "pause".to_owned()]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        });
    }
    let uid = runtime.create_pod(manifest).expect("pod accepted");
    let (agents, _) = wait_until_seen(&runtime, &uid, "app", |_, others| others == 1).await;
    assert_eq!(agents, [agent("pidns-exec", "app")]);
    let in_group = pids_in(&runtime, &uid, "app-0");
    assert_eq!(in_group.len(), 2, "the agent and the hook: {in_group:?}");
    let namespaces: BTreeSet<PathBuf> = in_group.into_iter().map(pid_namespace).collect();
    assert_eq!(namespaces.len(), 1, "one PID namespace: {namespaces:?}");
    runtime.shutdown().await;
    assert_eq!(runtime.process_count(), 0);
}

/// As PID 1 of its namespace a process ignores a SIGTERM it has no handler for (the
/// kernel's SIGNAL_UNKILLABLE), as in a container run by runc: only the SIGKILL after the
/// grace period ends it. The agent, which handles SIGTERM, dies of it with 143.
async fn pid_1_without_a_sigterm_handler_outlives_sigterm_until_sigkill() {
    let runtime = runtime();
    let pod = scenario("pidns-pid1", &["plain", "agent"]);
    let mut manifest = compile(&pod, AGENT_IMAGE, SCALE);
    if let Some(spec) = manifest.spec.as_mut() {
        spec.containers[0].command = Some(vec!["/podcheck-agent".to_owned(), "pause".to_owned()]);
    }
    let uid = runtime.create_pod(manifest).expect("pod accepted");
    wait_for_status(&runtime, &uid, all_running).await;
    // The agent handles SIGTERM from the moment it logs its start; a SIGTERM before that
    // finds a PID 1 without a handler, as with runc.
    wait_until_seen(&runtime, &uid, "agent", |_, _| true).await;
    let requested = Timestamp::now();
    runtime.delete(&uid, Some(3)).expect("delete acknowledged");
    let ended = wait_for_status(&runtime, &uid, |s| {
        s.container_statuses
            .iter()
            .flatten()
            .all(|c| exit_code(Some(c)).is_some())
    })
    .await;
    let container = |name: &str| {
        ended
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == name)
            .and_then(|c| c.state.as_ref()?.terminated.clone())
            .expect("terminated")
    };
    let spec_secs = |t: &ContainerStatusTime| t.0.duration_since(requested).as_secs_f64() / SCALE;
    let (plain, agent) = (container("plain"), container("agent"));
    assert_eq!((plain.exit_code, agent.exit_code), (137, 143));
    let plain_at = spec_secs(&plain.finished_at.expect("finishedAt"));
    let agent_at = spec_secs(&agent.finished_at.expect("finishedAt"));
    assert!(
        agent_at < 3.0,
        "the agent died of SIGTERM at {agent_at} spec s, before the SIGKILL due at 3"
    );
    assert!(
        (3.0..8.0).contains(&plain_at),
        "SIGKILL ended PID 1 at {plain_at} spec s, due at 3"
    );
    runtime.shutdown().await;
}

type ContainerStatusTime = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn main() {
    let args = Arguments::from_args();
    let trials = common::root_trials!(
        &args,
        "the local runtime's namespace tests",
        [
            containers_see_only_themselves_and_nothing_of_the_host,
            share_process_namespace_makes_the_pods_containers_see_each_other,
            an_ephemeral_container_joins_its_target_runs_once_and_stops_with_the_pod,
            exec_hooks_run_in_the_containers_pid_namespace,
            pid_1_without_a_sigterm_handler_outlives_sigterm_until_sigkill,
        ],
        cgroup_v2: [ephemeral_containers_on_a_cgroup_v2_hierarchy]
    );
    libtest_mimic::run(&args, trials).exit();
}
