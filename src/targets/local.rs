//! The bundled local runtime as a target: real processes, namespaces and cgroups.

use super::{Capabilities, PodRef, Target, TargetError, TargetOptions, TimingSlip};
use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::scenario::{FaultAction, KubeletParams};
use podcheck_oracle::{Observation, PodMetadata, Snapshot, TimingProfile};
use podcheck_runtime::{
    KubeletConfig, LocalRuntime, PodSnapshot, RuntimeConfig, RuntimeError, AGENT_IMAGE,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct LocalTarget {
    options: TargetOptions,
    agent: PathBuf,
    /// One runtime ("node") per kubelet configuration the cases ask for.
    nodes: Mutex<HashMap<String, Arc<LocalRuntime>>>,
}

/// Finds the podcheck-agent binary: `--agent`, `PODCHECK_AGENT`, or next to this executable
/// (cargo puts workspace binaries side by side; test binaries live one level deeper).
pub fn find_agent(explicit: Option<&PathBuf>) -> Result<PathBuf, TargetError> {
    if let Some(path) = explicit
        .cloned()
        .or_else(|| std::env::var_os("PODCHECK_AGENT").map(PathBuf::from))
    {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(TargetError::Broken(format!(
                "agent binary {} does not exist",
                path.display()
            )))
        };
    }
    let exe = std::env::current_exe().map_err(|e| TargetError::io("locate this executable", e))?;
    let mut candidates = Vec::new();
    // The static agent build.rs made for this very build comes first: it matches this
    // podcheck, and static binaries need no libraries in the image.
    if let Some(built) = option_env!("PODCHECK_AGENT_BUILT") {
        candidates.push(PathBuf::from(built));
    }
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("podcheck-agent"));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join("podcheck-agent"));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        TargetError::Broken(
            "cannot find the podcheck-agent binary next to podcheck; build it (`cargo build --workspace`) or set PODCHECK_AGENT"
                .to_owned(),
        )
    })
}

/// A version of the pod object as the trace holds it.
fn snapshot(version: PodSnapshot) -> Snapshot {
    let object = version.object;
    Snapshot {
        at: version.at,
        metadata: PodMetadata {
            resource_version: Some(object.resource_version),
            deletion_timestamp: object.deletion_timestamp,
            deletion_grace_period_seconds: object.deletion_grace_period_seconds,
            finalizers: object.finalizers,
            gone: object.gone,
        },
        status: version.status,
    }
}

fn runtime_error(err: RuntimeError) -> TargetError {
    match err {
        e if e.is_unsupported() => TargetError::NotApplicable(e.to_string()),
        e @ RuntimeError::InvalidPod { .. } => TargetError::Rejected(Box::new(e)),
        e => TargetError::Runtime(e),
    }
}

impl LocalTarget {
    pub fn new(options: &TargetOptions) -> Result<LocalTarget, TargetError> {
        Ok(LocalTarget {
            options: options.clone(),
            agent: find_agent(options.agent_binary.as_ref())?,
            nodes: Mutex::new(HashMap::new()),
        })
    }

    fn node(&self, kubelet: &KubeletParams) -> Result<(String, Arc<LocalRuntime>), TargetError> {
        let back_off = kubelet.back_off();
        let key = format!("backoff-{}-{}", back_off.initial, back_off.max);
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = nodes.get(&key) {
            return Ok((key, node.clone()));
        }
        let mut config = RuntimeConfig::new(self.agent.clone(), self.options.time_scale);
        config.kubelet = KubeletConfig {
            back_off_initial: Duration::from_millis(back_off.initial.as_millis()),
            back_off_max: Duration::from_millis(back_off.max.as_millis()),
            ..KubeletConfig::default()
        };
        let runtime = Arc::new(LocalRuntime::start(config).map_err(runtime_error)?);
        nodes.insert(key.clone(), runtime.clone());
        Ok((key, runtime))
    }

    fn runtime(&self, pod: &PodRef) -> Result<Arc<LocalRuntime>, TargetError> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pod.node)
            .cloned()
            .ok_or_else(|| TargetError::NoSuchPod(format!("{} (no node {})", pod.uid, pod.node)))
    }

    /// Processes the local runtime has running, across its nodes (for leak checks).
    pub fn process_count(&self) -> usize {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|n| n.process_count())
            .sum()
    }
}

#[async_trait]
impl Target for LocalTarget {
    fn name(&self) -> String {
        "local".to_owned()
    }

    fn timing(&self) -> TimingProfile {
        TimingProfile {
            time_scale: self.options.time_scale,
            tolerance_ms: (self.options.tolerance_wall_ms as f64 / self.options.time_scale).round()
                as u64,
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Pods mostly sleep: 32 at once keep a 2-core machine under two thirds busy.
            concurrency: self.options.jobs.unwrap_or(32),
            virtual_clock: false,
            // Each creation forks this (multi-threaded) process; on 2 cores, more than
            // about three a second, sustained, delays probes and restarts past the
            // tolerance (measured with `podcheck fuzz` against planted bugs, whose
            // failing cases end early and churn pods fastest).
            launch_spacing: std::time::Duration::from_millis(300),
        }
    }

    fn agent_image(&self) -> String {
        AGENT_IMAGE.to_owned()
    }

    async fn create(&self, pod: Pod, kubelet: &KubeletParams) -> Result<PodRef, TargetError> {
        // The first pod of a kubelet configuration starts its node (the agent image is
        // built, dead runtimes swept) while every other creation waits on the nodes' lock:
        // on the executor's own threads, that stalls every pod's probes and restarts.
        let (node, runtime) = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => self.node(kubelet)?,
            _ => tokio::task::block_in_place(|| self.node(kubelet))?,
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = runtime.create_pod(pod).map_err(runtime_error)?;
        let created_at = runtime
            .status_history(&uid)
            .ok()
            .and_then(|h| h.first().map(|(at, _)| at.clone()))
            .unwrap_or_else(|| Time(jiff::Timestamp::now()));
        Ok(PodRef {
            name,
            uid,
            created_at,
            node,
            applied: None,
        })
    }

    async fn watch(&self, pod: &PodRef) -> Result<BoxStream<'static, Observation>, TargetError> {
        let runtime = self.runtime(pod)?;
        let changes = runtime.watch(&pod.uid).map_err(runtime_error)?;
        let uid = pod.uid.clone();
        // Every version of the object in order; after the one that says it is gone, the
        // watch ends, as a real watch ends with the DELETED event.
        let stream = futures::stream::unfold(
            (runtime, changes, 0usize, Vec::new(), false),
            move |(runtime, mut changes, mut seen, mut pending, mut ended)| {
                let uid = uid.clone();
                async move {
                    loop {
                        if let Some(next) = pending.pop() {
                            return Some((next, (runtime, changes, seen, pending, ended)));
                        }
                        if ended {
                            return None;
                        }
                        let versions = runtime.snapshots(&uid).ok()?;
                        if versions.len() > seen {
                            let mut fresh = Vec::new();
                            for version in versions.into_iter().skip(seen) {
                                seen += 1;
                                ended = version.object.gone;
                                fresh.push(Observation::Snapshot(snapshot(version)));
                                if ended {
                                    break;
                                }
                            }
                            fresh.reverse();
                            pending = fresh;
                            continue;
                        }
                        changes.changed().await.ok()?;
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        previous: bool,
    ) -> Result<String, TargetError> {
        self.runtime(pod)?
            .logs(&pod.uid, container, previous)
            .map_err(runtime_error)
    }

    async fn act(&self, pod: &PodRef, action: &FaultAction) -> Result<(), TargetError> {
        match action {
            FaultAction::KillContainer { container } => self
                .runtime(pod)?
                .kill_container(&pod.uid, container)
                .map_err(runtime_error),
            // Each returns once the runtime's API server part has answered; the kubelet
            // part then acts on it, as a real node does after the API call returned.
            FaultAction::Delete {
                grace_period_seconds,
            } => self
                .runtime(pod)?
                .delete(&pod.uid, *grace_period_seconds)
                .map_err(runtime_error),
            FaultAction::ForceDelete => self
                .runtime(pod)?
                .force_delete(&pod.uid)
                .map_err(runtime_error),
            FaultAction::RemoveFinalizer { finalizer } => self
                .runtime(pod)?
                .remove_finalizer(&pod.uid, finalizer)
                .map_err(runtime_error),
            FaultAction::RestartNodeAgent => Err(TargetError::NotApplicable(
                "the local runtime's kubelet part runs inside the harness's process and holds \
                 its containers' processes as children: it cannot restart while they keep \
                 running"
                    .to_owned(),
            )),
            // As `kubectl debug` would: built from the pod object the runtime keeps.
            FaultAction::AddEphemeralContainer {
                name,
                target_container_name,
            } => {
                let runtime = self.runtime(pod)?;
                let object = runtime.pod_object(&pod.uid).map_err(runtime_error)?;
                let container = crate::compile::ephemeral_container_of(
                    &object,
                    name,
                    target_container_name.as_deref(),
                )
                .ok_or_else(|| {
                    TargetError::Broken(format!(
                        "pod {} carries no behaviour for ephemeral container {name}",
                        pod.name
                    ))
                })?;
                runtime
                    .add_ephemeral_container(&pod.uid, container)
                    .map_err(runtime_error)
            }
        }
    }

    fn timing_slips(&self, pod: &PodRef) -> Vec<TimingSlip> {
        self.runtime(pod)
            .map(|runtime| runtime.timing_slips(&pod.uid, pod.created_at.0))
            .unwrap_or_default()
            .into_iter()
            .map(|(at, what)| TimingSlip { at, what })
            .collect()
    }

    async fn remove(&self, pod: &PodRef) -> Result<(), TargetError> {
        self.runtime(pod)?
            .delete_pod(&pod.uid)
            .await
            .map_err(runtime_error)
    }

    async fn cleanup(&self) -> Result<(), TargetError> {
        let nodes: Vec<_> = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for node in nodes {
            node.shutdown().await;
        }
        Ok(())
    }

    fn probe_timings(&self) -> Vec<(&'static str, std::time::Duration)> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flat_map(|node| node.probe_timings())
            .collect()
    }
}
