//! Targets: where a scenario's pod runs. One async trait, shaped like the Kubernetes API
//! (create a pod, watch the object and its events, act on it, read logs, remove it), so a
//! real cluster fits it.
//!
//! A new target is one file here implementing [`Target`], plus its name in [`from_spec`]
//! and [`TARGET_HELP`]; nothing else changes.

pub mod kube;
pub mod local;
pub mod model;
pub mod podman;

pub use crate::errors::TargetError;
use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::scenario::{FaultAction, KubeletParams};
use podcheck_oracle::{Observation, TimingProfile};

/// What `--target` accepts: every subcommand's help and the unknown-target error say it.
pub const TARGET_HELP: &str = "Where pods run: `local` (the bundled runtime; needs root), \
    `podman` (this machine's podman; needs podman and runc), `kube` or `kube:CONTEXT` (a \
    cluster through the kubeconfig's current or named context; see --agent-image), `model` (the \
    oracle itself), or `model:DEVIATION` (the oracle with a planted bug; see `podcheck \
    deviations`)";

/// A pod a target created.
#[derive(Clone, Debug)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
    pub created_at: Time,
    /// Which of the target's nodes runs it (targets with per-config nodes).
    pub node: String,
    /// The manifest the target applied, where it differs from the compiled one (a cluster's
    /// namespace, name and pull policy).
    pub applied: Option<Box<Pod>>,
}

#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    /// How many cases may run at once.
    pub concurrency: usize,
    /// Time stamps are simulated: the harness need not wait for them in wall time.
    pub virtual_clock: bool,
    /// The least time between two pod creations of a long run (fuzzing): pod churn faster
    /// than the target sustains would crowd the timing of the pods already running.
    pub launch_spacing: std::time::Duration,
}

/// A moment the target's own timing ran later than its time scale absorbs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimingSlip {
    pub at: jiff::Timestamp,
    /// What ran late, and by how much.
    pub what: String,
}

impl std::fmt::Display for TimingSlip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
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
    /// Every state the pod object has from creation on, and the target's events about it,
    /// each with the time the target set it, in the order the target reports them. The
    /// stream ends when the target has nothing more to show.
    async fn watch(&self, pod: &PodRef) -> Result<BoxStream<'static, Observation>, TargetError>;
    /// Performs a scenario's fault action on the pod and returns once the target has
    /// acknowledged it; [`TargetError::NotApplicable`] for an action this target cannot
    /// perform.
    async fn act(&self, pod: &PodRef, action: &FaultAction) -> Result<(), TargetError>;
    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        previous: bool,
    ) -> Result<String, TargetError>;
    /// Removes the pod and what it holds once observation is over, whatever its state.
    /// Cleanup, not a fault action: it is never part of what is checked.
    async fn remove(&self, pod: &PodRef) -> Result<(), TargetError>;
    /// Removes everything the target created.
    async fn cleanup(&self) -> Result<(), TargetError>;
    /// How long the target took to run each probe, by handler, where it can tell.
    fn probe_timings(&self) -> Vec<(&'static str, std::time::Duration)> {
        Vec::new()
    }
    /// Moments while `pod` ran where the target's own timing slipped past what its time
    /// scale absorbs (a stalled machine under a scaled clock). A failing verdict whose
    /// violations all follow a slip closely may rest on timing noise, so the case is run
    /// again; a target that cannot tell says none.
    fn timing_slips(&self, _pod: &PodRef) -> Vec<TimingSlip> {
        Vec::new()
    }
    /// Whether the target has a node with this kubelet configuration (the fuzzer draws
    /// only scenarios it can run); a target that makes nodes as cases ask says yes.
    fn runs_kubelet(&self, _kubelet: &KubeletParams) -> bool {
        true
    }
    /// Lines that say what the target is (a cluster's versions and node configuration),
    /// printed before the first case.
    fn summary(&self) -> Vec<String> {
        Vec::new()
    }
    /// What the run assumed about the target, for the certification bundle.
    fn environment(&self) -> serde_json::Value {
        serde_json::json!({ "target": self.name() })
    }
}

/// Parses `model`, `model:DEVIATION`, `local`, `podman`, `kube` or `kube:CONTEXT`.
pub async fn from_spec(
    spec: &str,
    options: &TargetOptions,
) -> Result<Box<dyn Target>, TargetError> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "model" => Ok(Box::new(model::ModelTarget::new(rest, options.seed)?)),
        "local" => Ok(Box::new(local::LocalTarget::new(options)?)),
        "podman" => Ok(Box::new(podman::PodmanTarget::new(options).await?)),
        "kube" => {
            let context = (!rest.is_empty()).then_some(rest);
            Ok(Box::new(kube::KubeTarget::new(context, options).await?))
        }
        other => Err(TargetError::UnknownTarget(other.to_owned())),
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
    /// Where a cluster's nodes find the agent image (kube).
    pub agent_image: Option<String>,
    /// The pull policy of the agent image (kube).
    pub image_pull_policy: Option<String>,
    /// The nodes' KubeletConfiguration file, instead of their configz (kube).
    pub kubelet_config: Option<std::path::PathBuf>,
}

impl TargetOptions {
    /// The timing of a target whose time cannot be scaled: spec time is wall time, with at
    /// least `min_tolerance_ms` of tolerance for what the target itself adds.
    pub fn wall_clock(&self, min_tolerance_ms: u64) -> TimingProfile {
        TimingProfile {
            time_scale: 1.0,
            tolerance_ms: self.tolerance_wall_ms.max(min_tolerance_ms),
        }
    }
}

impl Default for TargetOptions {
    fn default() -> Self {
        TargetOptions {
            time_scale: 0.05,
            tolerance_wall_ms: 250,
            seed: 0,
            agent_binary: None,
            jobs: None,
            agent_image: None,
            image_pull_policy: None,
            kubelet_config: None,
        }
    }
}
