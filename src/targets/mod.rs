//! Targets: where a scenario's pod runs. One async trait, shaped like the Kubernetes API
//! (create a pod, watch its status, read logs, delete it), so a real cluster fits it.

pub mod local;
pub mod model;
pub mod podman;

use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::scenario::KubeletParams;
use podcheck_oracle::{Snapshot, TimingProfile};
use thiserror::Error;

/// A pod a target created.
#[derive(Clone, Debug)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
    pub created_at: Time,
    /// Which of the target's nodes runs it (targets with per-config nodes).
    pub node: String,
}

#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    /// How many cases may run at once.
    pub concurrency: usize,
    /// Time stamps are simulated: the harness need not wait for them in wall time.
    pub virtual_clock: bool,
}

#[derive(Debug, Error)]
pub enum TargetError {
    /// The target cannot run this case here (missing privilege, unsupported node
    /// configuration): the case is skipped with this reason, never failed.
    #[error("not applicable: {0}")]
    NotApplicable(String),
    /// The target rejected the pod.
    #[error("the target rejected the pod: {0}")]
    Rejected(String),
    /// The target broke.
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait Target: Send + Sync {
    /// How the target is named on the command line and in reports.
    fn name(&self) -> String;
    fn timing(&self) -> TimingProfile;
    fn capabilities(&self) -> Capabilities;
    /// The image reference the agent has on this target.
    fn agent_image(&self) -> String;
    /// Creates the pod on a node with the given kubelet configuration.
    async fn create(&self, pod: Pod, kubelet: &KubeletParams) -> Result<PodRef, TargetError>;
    /// Every status the pod has from creation on, each with the time the target set it.
    /// The stream ends when the target has nothing more to show.
    async fn watch(&self, pod: &PodRef) -> Result<BoxStream<'static, Snapshot>, TargetError>;
    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        previous: bool,
    ) -> Result<String, TargetError>;
    async fn delete(&self, pod: &PodRef) -> Result<(), TargetError>;
    /// Removes everything the target created.
    async fn cleanup(&self) -> Result<(), TargetError>;
    /// How long the target took to run each probe, by handler, where it can tell.
    fn probe_timings(&self) -> Vec<(&'static str, std::time::Duration)> {
        Vec::new()
    }
}

/// Parses `model`, `model:DEVIATION`, `local` or `podman`.
pub async fn from_spec(
    spec: &str,
    options: &TargetOptions,
) -> Result<Box<dyn Target>, TargetError> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "model" => Ok(Box::new(model::ModelTarget::new(rest, options.seed)?)),
        "local" => Ok(Box::new(local::LocalTarget::new(options)?)),
        "podman" => Ok(Box::new(podman::PodmanTarget::new(options).await?)),
        other => Err(TargetError::Failed(format!(
            "unknown target {other:?}: use model, model:DEVIATION, local or podman"
        ))),
    }
}

/// Settings a target may use.
#[derive(Clone, Debug)]
pub struct TargetOptions {
    pub time_scale: f64,
    /// Wall-clock tolerance in milliseconds, added to every window.
    pub tolerance_wall_ms: u64,
    pub seed: u64,
    pub agent_binary: Option<std::path::PathBuf>,
    pub jobs: Option<usize>,
}

impl Default for TargetOptions {
    fn default() -> Self {
        TargetOptions {
            time_scale: 0.05,
            tolerance_wall_ms: 250,
            seed: 0,
            agent_binary: None,
            jobs: None,
        }
    }
}
