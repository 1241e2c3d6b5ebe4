//! Init containers on podman: the pod's start, which runs them and which the target runs in
//! the background, and what stands for one podman removed once it succeeded.

use super::cli::{run_podman, run_podman_command};
use super::convert::{status_after_removal, PodmanEvent};
use super::{locked, InitSpec, Shared, SpecContainers, TargetError};
use crate::errors::describe;
use k8s_openapi::api::core::v1::ContainerStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `podman pod start` of a pod with init containers, run in the background (see the
/// `podman` module documentation).
#[derive(Default)]
pub(super) struct PodStart {
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
    /// The command has not returned: podman holds the pod's lock (it is running the init
    /// containers), and `podman pod inspect` or `pod stop` would wait for it.
    pub(super) under_way: bool,
    /// What podman said when the start failed, and when, until the watch shows it.
    pub(super) failure: Option<(Time, String)>,
}

/// What the target saw of the init containers, which podman removes once they succeeded.
#[derive(Default)]
pub(super) struct InitMemory {
    /// Each init container's last status read from podman.
    pub(super) last: HashMap<String, ContainerStatus>,
    /// The init containers podman removed, each with the status that stands for it from
    /// then on (see [`status_after_removal`]; None: the target knows nothing of it).
    pub(super) removed: HashMap<String, Option<ContainerStatus>>,
    /// A second name of each init container's log file, kept by the target.
    pub(super) log_links: HashMap<String, PathBuf>,
}

/// Runs `podman pod start` for a pod with init containers and records how it ended. No
/// time limit: podman waits for each init container to exit, which a sidecar never does
/// (podman 4.3 reads no `restartPolicy` on a container), and ending the command early
/// would change what podman does; a deletion or the removal ends it ([`end_start`]).
pub(super) async fn start_pod(conf: PathBuf, name: String, shared: Arc<Shared>) {
    let result = run_podman_command(&conf, &["pod", "start", &name], None).await;
    let mut start = locked(&shared.start);
    start.under_way = false;
    if let Err(err) = result {
        let message = match err {
            TargetError::Command { stderr, .. } => stderr,
            other => describe(&other),
        };
        start.failure = Some((Time(jiff::Timestamp::now()), message));
    }
}

/// Ends the target's `podman pod start` if it is still under way, so that a stop or a
/// removal does not wait for it: podman has no other way to cancel a pod's start (a user
/// interrupts the `kube play`), and its `pod stop` waits for the pod's lock, which the
/// start holds until the init containers are done. The lock is a robust mutex that the
/// kernel releases when the command dies (libpod/lock/shm/shm_lock.c). The containers keep
/// running; the stop that follows stops them.
pub(super) async fn end_start(shared: &Shared) {
    let task = locked(&shared.start).task.take();
    if let Some(task) = task {
        task.abort();
        let _ = task.await;
    }
    locked(&shared.start).under_way = false;
}

/// Finds the init containers podman removed since the last poll and fixes the status
/// that stands for each. False when podman did not say, or no init container is missing
/// (the inspection failed for another reason), or a regular container is: podman removes
/// those only with the pod.
pub(super) async fn note_removed(
    conf: &Path,
    name: &str,
    containers: &SpecContainers,
    shared: &Shared,
) -> bool {
    let filter = format!("pod={name}");
    let Ok(listing) = run_podman(
        conf,
        &["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"],
    )
    .await
    else {
        return false;
    };
    let exists = |container: &str| {
        let podman_name = format!("{name}-{container}");
        listing.lines().any(|line| line.trim() == podman_name)
    };
    if containers.regular.iter().any(|c| !exists(c)) {
        return false;
    }
    let missing: Vec<&InitSpec> = {
        let memory = locked(&shared.init);
        containers
            .init
            .iter()
            .filter(|c| !memory.removed.contains_key(&c.name) && !exists(&c.name))
            .collect()
    };
    for init in &missing {
        let events = container_events(conf, &format!("{name}-{}", init.name), &shared.since)
            .await
            .unwrap_or_default();
        let mut memory = locked(&shared.init);
        let status = status_after_removal(init, memory.last.get(&init.name), &events);
        memory.removed.insert(init.name.clone(), status);
    }
    !missing.is_empty()
}

/// podman's `start` and `died` events of one container since `since`, oldest first (None:
/// podman did not say).
async fn container_events(conf: &Path, container: &str, since: &str) -> Option<Vec<PodmanEvent>> {
    let filter = format!("container={container}");
    let text = run_podman(
        conf,
        &[
            "events",
            "--stream=false",
            "--since",
            since,
            "--filter",
            &filter,
            "--filter",
            "event=start",
            "--filter",
            "event=died",
            "--format",
            "json",
        ],
    )
    .await
    .ok()?;
    Some(
        text.lines()
            .filter_map(|line| serde_json::from_str::<PodmanEvent>(line).ok())
            .collect(),
    )
}
