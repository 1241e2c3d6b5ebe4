//! The local runtime's real parts: namespaces, cgroups (v1 and v2), cleanup. These need
//! root: without it they are ignored (skipped) with the reason printed, except under
//! `CI=true`, where they run and fail if they cannot.

mod common;

use k8s_openapi::api::core::v1::{PodStatus, Volume};
use libtest_mimic::Arguments;
use podcheck::compile::compile;
use podcheck::targets::local::find_agent;
use podcheck_oracle::Scenario;
use podcheck_runtime::{LocalRuntime, RuntimeConfig, RuntimeError, AGENT_IMAGE};
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

fn config(cgroup_root: Option<&Path>) -> RuntimeConfig {
    let agent = find_agent(None).expect("agent binary");
    let mut config = RuntimeConfig::new(agent, 0.05);
    if let Some(root) = cgroup_root {
        config.cgroup_root = root.to_path_buf();
    }
    config
}

async fn wait_for(
    runtime: &LocalRuntime,
    uid: &str,
    what: impl Fn(&PodStatus) -> bool,
) -> PodStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut changes = runtime.watch(uid).expect("watch");
    loop {
        if let Some((_, status)) = runtime.status_history(uid).expect("history").last() {
            if what(status) {
                return status.clone();
            }
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            panic!(
                "timed out; history: {:#?}",
                runtime.status_history(uid).expect("history").last()
            );
        }
    }
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
    let config = config(cgroup_root);
    let state_root = config.state_root.clone();
    let runtime = LocalRuntime::start(config).expect("runtime starts");
    let uid = runtime
        .create_pod(compile(&scenario, AGENT_IMAGE, 0.05))
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
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok())
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        // By runtime id, not process id: `cargo test` runs several runtimes in one process.
        if cgroup.contains("/podcheck/") && cgroup.contains(&format!("/{}/", runtime.id())) {
            pids.push(pid);
        }
    }
    assert_eq!(pids.len(), runtime.process_count());
    pids
}

/// The unified (v2) cgroup hierarchy: on a v2 host the default root already is v2; on a
/// hybrid host it is mounted beside the v1 controllers.
fn cgroup_v2_root() -> Option<&'static Path> {
    [
        Path::new("/sys/fs/cgroup"),
        Path::new("/sys/fs/cgroup/unified"),
    ]
    .into_iter()
    .find(|root| root.join("cgroup.controllers").exists())
}

async fn pods_run_in_their_own_namespaces_and_leave_nothing_behind() {
    exercise(None).await;
}

async fn runs_on_a_cgroup_v2_hierarchy() {
    let root = cgroup_v2_root().expect("a cgroup v2 hierarchy");
    exercise(Some(root)).await;
}

async fn unsupported_volumes_are_refused_naming_the_field() {
    let scenario = Scenario::from_yaml("runtime-probe", SCENARIO).expect("scenario");
    let mut pod = compile(&scenario, AGENT_IMAGE, 0.05);
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
    let runtime = LocalRuntime::start(config(None)).expect("runtime starts");
    match runtime.create_pod(pod) {
        Err(RuntimeError::InvalidPod { field, .. }) => assert_eq!(field, "spec.volumes[0]"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(runtime.process_count(), 0);
}

/// A trial that runs `test` on a multi-threaded tokio runtime once the runtime's
/// privileges are there; it fails naming what is missing otherwise.
fn main() {
    let args = Arguments::from_args();
    let no_root = common::skip_reason(|| {
        podcheck_runtime::sys::check_privileges().map_err(|e| e.to_string())
    });
    let no_cgroup_v2 = cgroup_v2_root()
        .is_none()
        .then(|| "no cgroup v2 hierarchy on this host".to_owned());
    common::note_skipped(&args, "the local runtime's tests", no_root.as_ref());
    if no_root.is_none() {
        common::note_skipped(&args, "cgroup v2 tests", no_cgroup_v2.as_ref());
    }
    let trials = vec![
        common::async_trial(
            "pods_run_in_their_own_namespaces_and_leave_nothing_behind",
            common::root,
            pods_run_in_their_own_namespaces_and_leave_nothing_behind,
        )
        .with_ignored_flag(no_root.is_some()),
        common::async_trial(
            "runs_on_a_cgroup_v2_hierarchy",
            common::root,
            runs_on_a_cgroup_v2_hierarchy,
        )
        .with_ignored_flag(no_root.is_some() || no_cgroup_v2.is_some()),
        common::async_trial(
            "unsupported_volumes_are_refused_naming_the_field",
            common::root,
            unsupported_volumes_are_refused_naming_the_field,
        )
        .with_ignored_flag(no_root.is_some()),
    ];
    libtest_mimic::run(&args, trials).exit();
}
