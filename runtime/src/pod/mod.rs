//! One pod: its sandbox, its containers, and the worker that restarts them.
//!
//! The manifest is read in `manifest`; the kubelet's decisions are in `crate::kubelet`;
//! the worker here only carries them out (processes, signals, cgroups, the sandbox).

mod ephemeral;
mod manifest;
mod worker;

use crate::apiserver::{self, Deleted, PodObject, PodSnapshot, Refusal};
use crate::errors::RuntimeError;
use crate::kubelet::{ContainerKind, PodIdentity, PodLifecycle, PodSetup, Timing};
use crate::Shared;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{EphemeralContainer, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, watch};

fn now() -> Time {
    Time(Timestamp::now())
}

/// What the kubelet's watch of the pod object delivers.
enum PodUpdate {
    /// A new `deletionGracePeriodSeconds`.
    Deleted { grace_seconds: i64 },
    /// An ephemeral container was added (`spec.ephemeralContainers[index]`), as the runtime
    /// prepared it.
    EphemeralContainerAdded(Box<ephemeral::Added>),
}

/// The pod object as clients see it: every version written (by the kubelet's status
/// updates and by API requests), and what the kubelet learns of it.
pub(crate) struct ObjectStore {
    uid: String,
    /// The metadata as created (name, namespace, labels, annotations).
    metadata: ObjectMeta,
    object: PodObject,
    /// The spec as stored: as created, with the ephemeral containers added since.
    spec: PodSpec,
    snapshots: Vec<PodSnapshot>,
    /// The latest status the kubelet wrote.
    status: PodStatus,
    version: u64,
    time_scale: f64,
    notify: watch::Sender<usize>,
    /// The kubelet's watch of the pod.
    kubelet: mpsc::UnboundedSender<PodUpdate>,
}

impl ObjectStore {
    fn record(&mut self, at: Time) {
        self.version += 1;
        self.snapshots.push(PodSnapshot {
            at,
            object: self.object.state(self.version),
            ephemeral_containers: self.spec.ephemeral_containers.clone().unwrap_or_default(),
            status: self.status.clone(),
        });
        self.notify.send_replace(self.snapshots.len());
    }

    /// When the pod's first status was written.
    pub fn first_written(&self) -> Option<&Time> {
        self.snapshots.first().map(|s| &s.at)
    }

    pub fn status(&self) -> Option<&PodStatus> {
        self.snapshots.last().map(|s| &s.status)
    }

    /// The kubelet's status update; none reaches an object that is gone.
    pub fn write_status(&mut self, at: Time, status: PodStatus) {
        if self.object.is_gone() || (!self.snapshots.is_empty() && self.status == status) {
            return;
        }
        self.status = status;
        self.record(at);
    }

    /// `DELETE` with `gracePeriodSeconds`; `from_kubelet` for the node's own final delete,
    /// which the kubelet needs not hear of. Returns once the API server has answered.
    pub fn delete(
        &mut self,
        at: Time,
        grace_seconds: Option<i64>,
        from_kubelet: bool,
    ) -> Result<(), RuntimeError> {
        let terminal = matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"));
        let scale = self.time_scale;
        let wall = |secs: i64| SignedDuration::from_secs_f64(secs as f64 * scale);
        let deleted = self
            .object
            .delete(at.0, grace_seconds, terminal, wall)
            .map_err(|refusal| self.refused(refusal))?;
        let grace_seconds = match deleted {
            Deleted::Pending => return Ok(()),
            Deleted::Updated { grace_seconds } => {
                self.record(at);
                grace_seconds
            }
            Deleted::Removed { grace_seconds } => {
                // The update that set the grace period is written, then the object is
                // removed: a watch sees MODIFIED, then DELETED with that last state.
                self.object.set_gone(false);
                self.record(at.clone());
                self.object.set_gone(true);
                self.record(at);
                grace_seconds
            }
        };
        if !from_kubelet {
            // The kubelet's pod worker learns the new grace period from its watch; a
            // worker that is gone has nothing left to terminate.
            let _ = self.kubelet.send(PodUpdate::Deleted { grace_seconds });
        }
        Ok(())
    }

    /// A patch removing `finalizer`; the object goes if that ends its deletion.
    pub fn remove_finalizer(&mut self, at: Time, finalizer: &str) -> Result<(), RuntimeError> {
        let before = self.object.clone();
        let removed = self
            .object
            .remove_finalizer(finalizer)
            .map_err(|refusal| self.refused(refusal))?;
        if removed {
            // The update turns into a delete of the stored object: the DELETED event
            // carries it as it was stored, finalizer included.
            self.object = before;
            self.object.set_gone(true);
            self.record(at);
        } else {
            self.record(at);
        }
        Ok(())
    }

    /// An update through the `ephemeralcontainers` subresource that appends `container`,
    /// which `prepare` turns into what the kubelet starts (or refuses, for what the local
    /// runtime cannot run). Refused as the API server refuses it; once stored, the kubelet
    /// hears of it.
    fn add_ephemeral_container(
        &mut self,
        at: Time,
        container: EphemeralContainer,
        prepare: impl FnOnce(&PodSpec, usize) -> Result<ephemeral::Added, RuntimeError>,
    ) -> Result<(), RuntimeError> {
        if self.object.is_gone() {
            return Err(RuntimeError::PodGone(self.uid.clone()));
        }
        let errors = apiserver::ephemeral::validate_addition(&self.spec, &container);
        if !errors.is_empty() {
            return Err(RuntimeError::EphemeralContainerRefused {
                pod: self.metadata.name.clone().unwrap_or_default(),
                errors: errors.iter().map(ToString::to_string).collect(),
            });
        }
        let index = self.spec.ephemeral_containers.as_ref().map_or(0, Vec::len);
        let mut spec = self.spec.clone();
        spec.ephemeral_containers
            .get_or_insert_with(Vec::new)
            .push(container);
        let added = prepare(&spec, index)?;
        self.spec = spec;
        self.record(at);
        // A worker that is gone has nothing left to start.
        let _ = self
            .kubelet
            .send(PodUpdate::EphemeralContainerAdded(Box::new(added)));
        Ok(())
    }

    /// The pod object as a `GET` returns it: metadata, spec and status.
    fn object(&self) -> Result<Pod, RuntimeError> {
        let last = self
            .snapshots
            .last()
            .filter(|s| !s.object.gone)
            .ok_or_else(|| RuntimeError::PodGone(self.uid.clone()))?;
        let state = &last.object;
        Ok(Pod {
            metadata: ObjectMeta {
                uid: Some(self.uid.clone()),
                resource_version: Some(state.resource_version.clone()),
                deletion_timestamp: state.deletion_timestamp.clone(),
                deletion_grace_period_seconds: state.deletion_grace_period_seconds,
                finalizers: (!state.finalizers.is_empty()).then(|| state.finalizers.clone()),
                ..self.metadata.clone()
            },
            spec: Some(self.spec.clone()),
            status: Some(last.status.clone()),
        })
    }

    fn refused(&self, refusal: Refusal) -> RuntimeError {
        match refusal {
            Refusal::NotFound => RuntimeError::PodGone(self.uid.clone()),
            Refusal::NoSuchFinalizer(finalizer) => RuntimeError::NoSuchFinalizer {
                pod: self.uid.clone(),
                finalizer,
            },
        }
    }
}

/// A pod the runtime runs: its object as clients see it and the handle to stop its worker.
pub(crate) struct PodEntry {
    pub uid: String,
    name: String,
    /// terminationGracePeriodSeconds, after defaulting.
    spec_grace_seconds: i64,
    dir: PathBuf,
    store: Arc<Mutex<ObjectStore>>,
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
        let grace_seconds = manifest::grace_seconds(manifest.spec);
        // Init containers first, in spec order, then the regular ones: the kubelet's
        // decisions index them so.
        let init = manifest.spec.init_containers.iter().flatten().enumerate();
        let init = init.map(|(index, container)| {
            let path = format!("spec.initContainers[{index}]");
            (container, path, manifest::init_kind(container))
        });
        let regular = manifest.spec.containers.iter().enumerate();
        let regular = regular.map(|(index, container)| {
            (
                container,
                format!("spec.containers[{index}]"),
                ContainerKind::Regular,
            )
        });
        let mut containers = Vec::new();
        for (container, path, kind) in init.chain(regular) {
            containers.push(manifest::container_spec(
                container,
                &path,
                kind,
                &volumes,
                grace_seconds,
                &invalid,
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
                    namespace: manifest.namespace.clone(),
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
        let (notify, changes) = watch::channel(0usize);
        let (kubelet, updates) = mpsc::unbounded_channel();
        let store = Arc::new(Mutex::new(ObjectStore {
            uid: uid.clone(),
            metadata: ObjectMeta {
                name: Some(manifest.name.clone()),
                namespace: Some(manifest.namespace.clone()),
                ..pod.metadata.clone()
            },
            object: PodObject::new(manifest.finalizers.clone(), grace_seconds),
            spec: manifest.spec.clone(),
            snapshots: Vec::new(),
            status: PodStatus::default(),
            version: 0,
            time_scale: shared.config.time_scale,
            notify,
            kubelet,
        }));
        let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel();
        let worker = worker::Worker::new(
            shared.clone(),
            worker::PodNames {
                name: manifest.name.clone(),
                display: format!("{}_{}({uid})", manifest.name, manifest.namespace),
            },
            manifest.share_process_namespace,
            dir.clone(),
            containers,
            lifecycle,
            store.clone(),
        );
        let handle = tokio::spawn(worker.run(stop_receiver, updates));
        Ok(Arc::new(PodEntry {
            uid,
            name: manifest.name.clone(),
            spec_grace_seconds: grace_seconds,
            dir,
            store,
            changes,
            stop: Mutex::new(Some(stop_sender)),
            worker: Mutex::new(Some(handle)),
            shared,
        }))
    }

    fn lock_store(&self) -> MutexGuard<'_, ObjectStore> {
        // A poisoned store still holds every version written; cleanup must go on.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshots(&self) -> Vec<PodSnapshot> {
        self.lock_store().snapshots.clone()
    }

    /// `DELETE` of the pod object, as a client sends it.
    pub fn delete(&self, grace_seconds: Option<i64>) -> Result<(), RuntimeError> {
        self.lock_store().delete(now(), grace_seconds, false)
    }

    pub fn remove_finalizer(&self, finalizer: &str) -> Result<(), RuntimeError> {
        self.lock_store().remove_finalizer(now(), finalizer)
    }

    /// The `ephemeralcontainers` subresource, adding `container`.
    pub fn add_ephemeral_container(
        &self,
        container: EphemeralContainer,
    ) -> Result<(), RuntimeError> {
        let invalid = |field: &str, reason: String| RuntimeError::InvalidPod {
            pod: self.name.clone(),
            field: field.to_owned(),
            reason,
        };
        let dir = self.dir.clone();
        let grace_seconds = self.spec_grace_seconds;
        self.lock_store()
            .add_ephemeral_container(now(), container, |spec, index| {
                ephemeral::prepare(spec, index, &dir, grace_seconds, &invalid)
            })
    }

    /// The pod object as a `GET` returns it.
    pub fn object(&self) -> Result<Pod, RuntimeError> {
        self.lock_store().object()
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
