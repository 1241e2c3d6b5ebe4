//! podcheck's bundled local runtime: runs pods as real Linux processes.
//!
//! Each pod gets a sandbox (a holder process in new network, UTS, IPC and PID namespaces,
//! with loopback up), emptyDir volumes, and a cgroup; each container instance runs in the
//! sandbox's network, UTS and IPC namespaces, in a PID namespace of its own (the sandbox's
//! with `shareProcessNamespace`, its target's for an ephemeral container with
//! `targetContainerName`) with its own `/proc`, in its own mount namespace over an overlay
//! of its image that `pivot_root` makes its root, in its own cgroup. The runtime restarts
//! containers as the kubelet does (restart policy, crash-loop back-off), runs init
//! containers one at a time before the others and native sidecars (init containers with
//! `restartPolicy: Always`) beside them, and reports `PodStatus` snapshots. All durations
//! are multiplied by the time scale.
//!
//! This is an independent implementation of the kubelet's behaviour: it does not use
//! podcheck's oracle, or comparing the two would prove nothing.
//!
//! `kubelet/` decides (a new rule area's decisions go there, testable without root);
//! `pod/` carries the decisions out on processes, namespaces and cgroups; `probe/` runs
//! the probes.

pub mod apiserver;
pub mod cgroup;
pub mod errors;
mod hook;
pub mod image;
mod kubelet;
mod pod;
mod probe;
mod slips;
pub mod status;
pub mod sys;

pub use apiserver::{ObjectState, PodSnapshot};
pub use errors::RuntimeError;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use pod::PodEntry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The image reference that resolves to the agent image.
pub const AGENT_IMAGE: &str = "podcheck.local/agent:latest";

/// Kubelet settings the runtime honours, in spec time (before scaling).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KubeletConfig {
    pub back_off_initial: Duration,
    pub back_off_max: Duration,
    /// How long a container must run since its last restart for its back-off to reset.
    pub back_off_reset_after: Duration,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            back_off_initial: Duration::from_secs(10),
            back_off_max: Duration::from_secs(300),
            back_off_reset_after: Duration::from_secs(600),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Directory for pod state (volumes, writable layers, logs); one subdirectory per runtime.
    pub state_root: PathBuf,
    /// The podcheck-agent binary, from which the agent image is built.
    pub agent_binary: PathBuf,
    /// Wall seconds per spec second.
    pub time_scale: f64,
    pub kubelet: KubeletConfig,
    /// Where the cgroup hierarchies are mounted (default /sys/fs/cgroup; v1 or v2 is
    /// detected there).
    pub cgroup_root: PathBuf,
}

impl RuntimeConfig {
    pub fn new(agent_binary: PathBuf, time_scale: f64) -> Self {
        RuntimeConfig {
            state_root: default_state_root(),
            agent_binary,
            time_scale,
            kubelet: KubeletConfig::default(),
            cgroup_root: PathBuf::from(cgroup::DEFAULT_ROOT),
        }
    }
}

/// A tmpfs if there is one: writable layers, emptyDirs and logs on a busy disk would add
/// I/O latency to every container start, which the scaled clock turns into spec seconds.
fn default_state_root() -> PathBuf {
    ["/run", "/dev/shm"]
        .iter()
        .map(Path::new)
        .find(|dir| sys::is_tmpfs(dir))
        .map(|dir| dir.join("podcheck"))
        .unwrap_or_else(|| std::env::temp_dir().join("podcheck"))
}

/// Cgroup directory (below each hierarchy root) that holds every runtime's groups.
const CGROUP_BASE: &str = "podcheck";

static RUNTIME_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) struct Shared {
    pub config: RuntimeConfig,
    pub id: String,
    pub dir: PathBuf,
    pub cgroups: cgroup::Cgroups,
    pub spawner: sys::Spawner,
    pub agent_image: PathBuf,
    pub pod_counter: AtomicU64,
    /// How long each probe took to run, by handler: the runtime's probe overhead.
    pub probe_timings: Arc<Mutex<Vec<(&'static str, Duration)>>>,
    /// When the runtime's own timing ran later than its scaled clock absorbs.
    pub slips: Arc<slips::Slips>,
    /// Whether the slip monitor runs (it starts with the first pod, inside tokio).
    pub monitoring: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// This runtime's cgroup, relative to the base.
    pub fn cgroup(&self, rest: &Path) -> PathBuf {
        Path::new(&self.id).join(rest)
    }
}

/// The bundled runtime. Dropping it kills every pod it runs and removes their state.
pub struct LocalRuntime {
    shared: Arc<Shared>,
    pods: Mutex<HashMap<String, Arc<PodEntry>>>,
}

impl LocalRuntime {
    /// Checks privileges, removes what dead runtimes left behind, and builds the agent image.
    pub fn start(config: RuntimeConfig) -> Result<LocalRuntime, RuntimeError> {
        if !(config.time_scale > 0.0 && config.time_scale.is_finite()) {
            return Err(RuntimeError::Unsupported(format!(
                "time scale {} must be a positive number",
                config.time_scale
            )));
        }
        sys::check_privileges()?;
        let cgroups = cgroup::Cgroups::detect(&config.cgroup_root, Path::new(CGROUP_BASE))?;
        std::fs::create_dir_all(&config.state_root).map_err(|e| {
            RuntimeError::io(
                format!(
                    "create the runtime state directory {}",
                    config.state_root.display()
                ),
                e,
            )
        })?;
        sweep_dead_runtimes(&config.state_root, &cgroups);
        let agent_image =
            image::build_agent_image(&config.agent_binary, &config.state_root.join("images"))?;
        let id = format!(
            "{}-{}",
            std::process::id(),
            RUNTIME_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = config.state_root.join("runtimes").join(&id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::io(format!("create {}", dir.display()), e))?;
        cgroups.create(Path::new(&id))?;
        let spawner = sys::Spawner::start()?;
        Ok(LocalRuntime {
            shared: Arc::new(Shared {
                id,
                dir,
                cgroups,
                spawner,
                agent_image,
                pod_counter: AtomicU64::new(0),
                probe_timings: Arc::new(Mutex::new(Vec::new())),
                slips: Arc::new(slips::Slips::new(config.time_scale)),
                monitoring: std::sync::atomic::AtomicBool::new(false),
                config,
            }),
            pods: Mutex::new(HashMap::new()),
        })
    }

    pub fn cgroup_version(&self) -> &cgroup::Version {
        &self.shared.cgroups.version
    }

    /// This runtime's id: the name of its cgroup and state directory.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    pub fn time_scale(&self) -> f64 {
        self.shared.config.time_scale
    }

    /// Accepts a pod and starts running it; returns its uid. Must be called inside a
    /// tokio runtime.
    pub fn create_pod(&self, pod: Pod) -> Result<String, RuntimeError> {
        if !self.shared.monitoring.swap(true, Ordering::Relaxed) {
            tokio::spawn(slips::monitor(Arc::downgrade(&self.shared.slips)));
        }
        let entry = pod::PodEntry::start(self.shared.clone(), pod)?;
        let uid = entry.uid.clone();
        self.lock_pods().insert(uid.clone(), entry);
        Ok(uid)
    }

    fn lock_pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PodEntry>>> {
        // A poisoned map still holds valid entries; cleanup must go on.
        self.pods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pod(&self, uid: &str) -> Result<Arc<PodEntry>, RuntimeError> {
        self.lock_pods()
            .get(uid)
            .cloned()
            .ok_or_else(|| RuntimeError::NoSuchPod(uid.to_owned()))
    }

    /// Every status the pod has had, in order, with the wall time it was set.
    pub fn status_history(&self, uid: &str) -> Result<Vec<(Time, PodStatus)>, RuntimeError> {
        Ok(self
            .pod(uid)?
            .snapshots()
            .into_iter()
            .map(|snapshot| (snapshot.at, snapshot.status))
            .collect())
    }

    /// Every version of the pod object, in order: metadata (deletion, finalizers, whether
    /// it is gone) and status. The last one of a pod object that no longer exists says so.
    pub fn snapshots(&self, uid: &str) -> Result<Vec<PodSnapshot>, RuntimeError> {
        Ok(self.pod(uid)?.snapshots())
    }

    /// A graceful `DELETE` of the pod object, as `kubectl delete pod` sends it: with
    /// `gracePeriodSeconds` when given, else the pod's terminationGracePeriodSeconds.
    /// Returns once the API server part has answered; the kubelet part then terminates the
    /// pod (preStop hooks, SIGTERM, SIGKILL after the grace period) and removes the object
    /// once the pod has terminated, unless finalizers keep it.
    pub fn delete(&self, uid: &str, grace_period_seconds: Option<i64>) -> Result<(), RuntimeError> {
        self.pod(uid)?.delete(grace_period_seconds)
    }

    /// `kubectl delete pod --force --grace-period=0`: the object goes at once (unless
    /// finalizers keep it), while the node still terminates the containers.
    pub fn force_delete(&self, uid: &str) -> Result<(), RuntimeError> {
        self.pod(uid)?.delete(Some(0))
    }

    /// A patch that removes one of the pod object's finalizers; removing the last one of a
    /// pod whose deletion has no grace period left removes the object.
    pub fn remove_finalizer(&self, uid: &str, finalizer: &str) -> Result<(), RuntimeError> {
        self.pod(uid)?.remove_finalizer(finalizer)
    }

    /// An update through the pod's `ephemeralcontainers` subresource that adds `container`
    /// (as `kubectl debug` sends it): refused as the API server refuses it, else stored in
    /// `spec.ephemeralContainers`; the kubelet part then starts it once, never restarts it,
    /// reports it in `status.ephemeralContainerStatuses`, and stops it with the pod. With
    /// `targetContainerName` it runs in the PID namespace of that container's process.
    pub fn add_ephemeral_container(
        &self,
        uid: &str,
        container: k8s_openapi::api::core::v1::EphemeralContainer,
    ) -> Result<(), RuntimeError> {
        self.pod(uid)?.add_ephemeral_container(container)
    }

    /// The pod object as a `GET` returns it now: metadata, spec (with the ephemeral
    /// containers added since its creation) and status.
    pub fn pod_object(&self, uid: &str) -> Result<Pod, RuntimeError> {
        self.pod(uid)?.object()
    }

    /// A receiver that changes whenever the pod object does (its value is the number of
    /// versions so far).
    pub fn watch(&self, uid: &str) -> Result<tokio::sync::watch::Receiver<usize>, RuntimeError> {
        Ok(self.pod(uid)?.subscribe())
    }

    /// A container's log: of the current (or last) instance, or of the one before.
    pub fn logs(&self, uid: &str, container: &str, previous: bool) -> Result<String, RuntimeError> {
        self.pod(uid)?.logs(container, previous)
    }

    /// SIGKILLs the processes of a container's running instance from outside the kubelet,
    /// as the kernel's OOM killer or `kill -9` on the node would; the kubelet part then sees
    /// the exit as any other death of the process.
    pub fn kill_container(&self, uid: &str, container: &str) -> Result<(), RuntimeError> {
        let entry = self.pod(uid)?;
        let not_running = || RuntimeError::ContainerNotRunning {
            pod: uid.to_owned(),
            container: container.to_owned(),
        };
        let snapshots = entry.snapshots();
        let status = snapshots
            .last()
            .and_then(|snapshot| {
                let status = &snapshot.status;
                [&status.init_container_statuses, &status.container_statuses]
                    .into_iter()
                    .flatten()
                    .flatten()
                    .find(|s| s.name == container)
            })
            .ok_or_else(not_running)?;
        // A kill that finds no process (the container waits out its back-off, or has
        // stopped for good) does nothing, as `kill -9` of nothing on a node would.
        let running = status
            .state
            .as_ref()
            .is_some_and(|state| state.running.is_some());
        let group = self
            .shared
            .cgroup(&Path::new(uid).join(format!("{container}-{}", status.restart_count)));
        if !running || self.shared.cgroups.pids(&group).is_empty() {
            return Ok(());
        }
        self.shared.cgroups.kill_all(&group);
        Ok(())
    }

    /// Kills the pod's processes at once and removes everything it had, whatever its
    /// state (finalizers, a termination under way): cleanup, not an API deletion.
    pub async fn delete_pod(&self, uid: &str) -> Result<(), RuntimeError> {
        let entry = self
            .lock_pods()
            .remove(uid)
            .ok_or_else(|| RuntimeError::NoSuchPod(uid.to_owned()))?;
        entry.stop().await;
        Ok(())
    }

    /// Deletes every pod.
    pub async fn shutdown(&self) {
        let entries: Vec<_> = self.lock_pods().drain().map(|(_, e)| e).collect();
        for entry in entries {
            entry.stop().await;
        }
    }

    /// Processes this runtime has running (sandboxes and containers), for leak checks.
    /// How long each probe this runtime ran took, by handler (`http`, `tcp`, `exec`).
    pub fn probe_timings(&self) -> Vec<(&'static str, Duration)> {
        self.shared
            .probe_timings
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Moments since `since` where this runtime ran later than its time scale absorbs,
    /// in the pod's own work or in the whole runtime's: a verdict taken across them may
    /// rest on timing noise rather than on what the runtime decided.
    pub fn timing_slips(
        &self,
        uid: &str,
        since: jiff::Timestamp,
    ) -> Vec<(jiff::Timestamp, String)> {
        self.shared.slips.of_pod_since(uid, since)
    }

    pub fn process_count(&self) -> usize {
        self.shared.cgroups.pids(Path::new(&self.shared.id)).len()
    }
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        for entry in self.lock_pods().drain().map(|(_, e)| e) {
            entry.stop_now();
        }
        let own = Path::new(&self.shared.id);
        self.shared.cgroups.kill_all(own);
        self.shared.cgroups.remove(own);
        let _ = std::fs::remove_dir_all(&self.shared.dir);
    }
}

/// Removes the cgroups and state of runtimes whose process is gone (killed harnesses).
/// Their processes already died with them (PR_SET_PDEATHSIG), and their mounts with the
/// processes' mount namespaces.
fn sweep_dead_runtimes(state_root: &Path, cgroups: &cgroup::Cgroups) {
    let is_dead = |id: &str| {
        id.split('-')
            .next()
            .and_then(|pid| pid.parse::<i32>().ok())
            .is_none_or(|pid| pid as u32 != std::process::id() && !sys::process_alive(pid))
    };
    for id in cgroups.children(Path::new("")) {
        if is_dead(&id) {
            cgroups.kill_all(Path::new(&id));
            cgroups.remove(Path::new(&id));
        }
    }
    if let Ok(entries) = std::fs::read_dir(state_root.join("runtimes")) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_name().to_str().is_some_and(is_dead) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
