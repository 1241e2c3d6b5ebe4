//! What the local runtime's root tests share: a runtime's configuration, the cgroup v2
//! hierarchy, waiting for a status, and the processes in the runtime's cgroups.

use k8s_openapi::api::core::v1::PodStatus;
use podcheck::targets::local::find_agent;
use podcheck_runtime::{LocalRuntime, RuntimeConfig};
use std::path::Path;
use std::time::Duration;

/// The local runtime with the built agent at `time_scale` (wall seconds per spec second),
/// on the cgroup hierarchy at `cgroup_root` (the host's default without one).
pub fn runtime_config(time_scale: f64, cgroup_root: Option<&Path>) -> RuntimeConfig {
    let agent = find_agent(None).expect("agent binary");
    let mut config = RuntimeConfig::new(agent, time_scale);
    if let Some(root) = cgroup_root {
        config.cgroup_root = root.to_path_buf();
    }
    config
}

/// The unified (v2) cgroup hierarchy: on a v2 host the default root already is v2; on a
/// hybrid host it is mounted beside the v1 controllers.
pub fn cgroup_v2_root() -> Option<&'static Path> {
    [
        Path::new("/sys/fs/cgroup"),
        Path::new("/sys/fs/cgroup/unified"),
    ]
    .into_iter()
    .find(|root| root.join("cgroup.controllers").exists())
}

/// Why the cgroup v2 tests are skipped here (None: the host has a v2 hierarchy). Said on
/// stderr unless `no_root` skips them anyway.
pub fn no_cgroup_v2(args: &libtest_mimic::Arguments, no_root: Option<&String>) -> Option<String> {
    let reason = cgroup_v2_root()
        .is_none()
        .then(|| "no cgroup v2 hierarchy on this host".to_owned());
    if no_root.is_none() {
        super::note_skipped(args, "cgroup v2 tests", reason.as_ref());
    }
    reason
}

/// Waits up to `patience` (wall time), looking again at each change of the pod, until
/// `found` finds what it looks for, and returns it; panics saying `last` otherwise.
pub async fn wait_until<T>(
    runtime: &LocalRuntime,
    uid: &str,
    patience: Duration,
    found: impl Fn() -> Option<T>,
    last: impl Fn() -> String,
) -> T {
    let deadline = tokio::time::Instant::now() + patience;
    let mut changes = runtime.watch(uid).expect("watch");
    loop {
        if let Some(found) = found() {
            return found;
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            panic!("timed out; {}", last());
        }
    }
}

/// Waits up to `patience` (wall time) for a status of the pod that `what` accepts, and
/// returns it; panics with the last status when none comes.
pub async fn wait_for_status(
    runtime: &LocalRuntime,
    uid: &str,
    patience: Duration,
    what: impl Fn(&PodStatus) -> bool,
) -> PodStatus {
    let history = || runtime.status_history(uid).expect("history");
    wait_until(
        runtime,
        uid,
        patience,
        || history().pop().map(|(_, status)| status).filter(&what),
        || format!("last status: {:#?}", history().last()),
    )
    .await
}

/// The processes on the machine whose cgroups (`/proc/PID/cgroup`) `in_cgroup` accepts.
pub fn pids_where(in_cgroup: impl Fn(&str) -> bool) -> Vec<i32> {
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
        if in_cgroup(&cgroup) {
            pids.push(pid);
        }
    }
    pids
}
