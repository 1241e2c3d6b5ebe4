//! One pod: its sandbox, its containers, and the worker that restarts them.
//!
//! The manifest is read in `manifest`; the kubelet's decisions are in `crate::kubelet`;
//! the worker here only carries them out (processes, signals, cgroups, the sandbox).

mod manifest;
mod worker;

use crate::errors::RuntimeError;
use crate::kubelet::{PodIdentity, PodLifecycle, PodSetup, Timing};
use crate::Shared;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

fn now() -> Time {
    Time(Timestamp::now())
}

/// A pod the runtime runs: its status history and the handle to stop its worker.
pub(crate) struct PodEntry {
    pub uid: String,
    dir: PathBuf,
    history: Arc<Mutex<Vec<(Time, PodStatus)>>>,
    changes: watch::Receiver<usize>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl PodEntry {
    pub fn start(shared: Arc<Shared>, pod: Pod) -> Result<Arc<PodEntry>, RuntimeError> {
        let name = manifest::pod_name(&pod);
        let invalid = |field: &str, reason: String| RuntimeError::InvalidPod {
            pod: name.clone(),
            field: field.to_owned(),
            reason,
        };
        let manifest = manifest::read_pod(&pod, &invalid)?;
        let serial = shared.pod_counter.fetch_add(1, Ordering::Relaxed);
        let uid = format!("{}-{serial:04}", shared.id);
        let dir = shared.dir.join("pods").join(&uid);
        let volumes = manifest::volumes(manifest.spec, &dir, &invalid)?;
        let mut containers = Vec::new();
        for (index, container) in manifest.spec.containers.iter().enumerate() {
            containers.push(manifest::container_spec(
                container, index, &volumes, &invalid,
            )?);
        }
        for path in volumes.values() {
            std::fs::create_dir_all(path)
                .map_err(|e| RuntimeError::io(format!("create emptyDir {}", path.display()), e))?;
        }
        let lifecycle = PodLifecycle::new(
            PodSetup {
                identity: PodIdentity {
                    name: manifest.name.clone(),
                    namespace: manifest.namespace,
                    uid: uid.clone(),
                },
                restart_policy: manifest.restart_policy,
                termination_grace: manifest.termination_grace,
                image_id: format!(
                    "podcheck.local/images/{}",
                    shared
                        .agent_image
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("agent")
                ),
                containers: containers.iter().map(|c| c.setup()).collect(),
            },
            Timing {
                kubelet: shared.config.kubelet,
                time_scale: shared.config.time_scale,
            },
        );
        let history = Arc::new(Mutex::new(Vec::new()));
        let (notify, changes) = watch::channel(0usize);
        let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel();
        let worker = worker::Worker::new(
            shared.clone(),
            manifest.name,
            dir.clone(),
            containers,
            lifecycle,
            worker::StatusLog {
                history: history.clone(),
                notify,
            },
        );
        let handle = tokio::spawn(worker.run(stop_receiver));
        Ok(Arc::new(PodEntry {
            uid,
            dir,
            history,
            changes,
            stop: Mutex::new(Some(stop_sender)),
            worker: Mutex::new(Some(handle)),
            shared,
        }))
    }

    pub fn history(&self) -> Vec<(Time, PodStatus)> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.changes.clone()
    }

    pub fn logs(&self, container: &str, previous: bool) -> Result<String, RuntimeError> {
        let dir = self.dir.join("logs").join(container);
        let mut instances: Vec<u32> = std::fs::read_dir(&dir)
            .map_err(|e| RuntimeError::io(format!("read the logs of container {container}"), e))?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        instances.sort_unstable();
        let wanted = if previous {
            instances.iter().rev().nth(1)
        } else {
            instances.last()
        };
        let Some(instance) = wanted else {
            return Ok(String::new());
        };
        let path = dir.join(format!("{instance}.log"));
        std::fs::read_to_string(&path)
            .map_err(|e| RuntimeError::io(format!("read {}", path.display()), e))
    }

    /// Stops the worker, which kills every process and removes the pod's state.
    pub async fn stop(&self) {
        if let Some(stop) = self.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = stop.send(());
        }
        let handle = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        self.remove_state();
    }

    /// Synchronous last resort (runtime dropped): kill through the cgroup and clean up.
    pub fn stop_now(&self) {
        if let Some(handle) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            handle.abort();
        }
        self.remove_state();
    }

    fn remove_state(&self) {
        let group = self.shared.cgroup(Path::new(&self.uid));
        self.shared.cgroups.kill_all(&group);
        self.shared.cgroups.remove(&group);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
