//! Scenarios: a real Pod manifest, the behaviour of each of its containers, and a fault schedule.

use crate::behaviour::Behaviour;
use crate::duration::SpecDuration;
use crate::errors::{FieldError, ScenarioError};
use crate::probes::ContainerProbes;
use crate::rules::RuleId;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

mod locate;
mod validate;

pub use locate::FieldLocations;

pub use validate::is_dns_label;

/// One conformance scenario, as written in `suites/**/*.yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Unique, file-name-like name of the case.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The rule ids this case was written to show; the prediction may involve more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleId>,
    /// Kubelet settings the scenario assumes; defaults are the kubelet's own.
    #[serde(default, skip_serializing_if = "KubeletParams::is_default")]
    pub kubelet: KubeletParams,
    /// How long to watch the pod, in spec time; the oracle chooses when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe_for: Option<SpecDuration>,
    /// A core/v1 Pod, exactly as `kubectl apply` would take it.
    pub pod: Pod,
    /// What each container's process does, by container name.
    pub behaviours: BTreeMap<String, Behaviour>,
    /// External actions on the pod over time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
}

/// Which list of the pod spec a container is in, and what that makes the kubelet do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerKind {
    /// An init container: runs to completion, one at a time, before the next.
    Init,
    /// A native sidecar: an init container with `restartPolicy: Always`, which the next
    /// container waits for only until it has started, and which keeps running.
    Sidecar,
    /// A regular (app) container.
    Regular,
    /// An ephemeral container, added to the running pod by a fault action.
    Ephemeral,
}

impl ContainerKind {
    /// An init container or a sidecar: one of `spec.initContainers`.
    pub fn is_init(self) -> bool {
        matches!(self, ContainerKind::Init | ContainerKind::Sidecar)
    }

    /// The status list the kubelet reports it in.
    pub fn status_list(self) -> &'static str {
        match self {
            ContainerKind::Init | ContainerKind::Sidecar => "initContainerStatuses",
            ContainerKind::Regular => "containerStatuses",
            ContainerKind::Ephemeral => "ephemeralContainerStatuses",
        }
    }
}

/// A container of the pod spec with its kind and its field path
/// (`pod.spec.initContainers[0]`).
#[derive(Clone, Debug)]
pub struct PodContainer<'a> {
    pub kind: ContainerKind,
    pub container: &'a Container,
    pub field: String,
}

/// Whether an init container is a native sidecar (`restartPolicy: Always`, KEP-753).
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// An external action on the pod at a point in spec time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    pub at: SpecDuration,
    pub action: FaultAction,
}

/// An external action on a pod, performed by a target (`Target::act`) at a scheduled
/// spec time and recorded in the trace with its request and acknowledgement times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum FaultAction {
    /// The container's running process is SIGKILLed from outside the kubelet, as the
    /// kernel's OOM killer or an operator's `kill -9` on the node would.
    KillContainer { container: String },
    /// A graceful `DELETE` of the pod, as `kubectl delete pod` sends it: with
    /// `gracePeriodSeconds` when given, otherwise the pod's
    /// `terminationGracePeriodSeconds` (30 when unset).
    Delete {
        #[serde(
            default,
            rename = "gracePeriodSeconds",
            skip_serializing_if = "Option::is_none"
        )]
        grace_period_seconds: Option<i64>,
    },
    /// `kubectl delete pod --force --grace-period=0`: the API object goes without
    /// waiting for the node.
    ForceDelete,
    /// A patch that removes one entry of `metadata.finalizers`.
    RemoveFinalizer { finalizer: String },
    /// The node agent (the kubelet part of a runtime) restarts while the containers keep
    /// running.
    RestartNodeAgent,
    /// `kubectl debug --target=CONTAINER`: an ephemeral container added to the running pod
    /// through its `ephemeralcontainers` subresource. Its process acts out `behaviours.NAME`;
    /// with `targetContainerName` it shares that container's process namespace.
    AddEphemeralContainer {
        name: String,
        #[serde(
            default,
            rename = "targetContainerName",
            skip_serializing_if = "Option::is_none"
        )]
        target_container_name: Option<String>,
    },
}

impl FaultAction {
    /// The action's name as written in scenarios.
    pub fn name(&self) -> &'static str {
        match self {
            FaultAction::KillContainer { .. } => "killContainer",
            FaultAction::Delete { .. } => "delete",
            FaultAction::ForceDelete => "forceDelete",
            FaultAction::RemoveFinalizer { .. } => "removeFinalizer",
            FaultAction::RestartNodeAgent => "restartNodeAgent",
            FaultAction::AddEphemeralContainer { .. } => "addEphemeralContainer",
        }
    }
}

impl std::fmt::Display for FaultAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultAction::KillContainer { container } => write!(f, "killContainer {container}"),
            FaultAction::Delete {
                grace_period_seconds: Some(grace),
            } => write!(f, "delete --grace-period={grace}"),
            FaultAction::Delete {
                grace_period_seconds: None,
            } => write!(f, "delete"),
            FaultAction::ForceDelete => write!(f, "delete --force --grace-period=0"),
            FaultAction::RemoveFinalizer { finalizer } => {
                write!(f, "removeFinalizer {finalizer}")
            }
            FaultAction::RestartNodeAgent => write!(f, "restartNodeAgent"),
            FaultAction::AddEphemeralContainer {
                name,
                target_container_name: Some(target),
            } => write!(f, "debug {name} --target={target}"),
            FaultAction::AddEphemeralContainer {
                name,
                target_container_name: None,
            } => write!(f, "debug {name}"),
        }
    }
}

/// The longest grace period the oracle models: a termination must fit in one observation.
pub const MAX_GRACE_SECONDS: i64 = 600;

/// The node's kubelet configuration the prediction depends on, named as the kubelet names
/// it: feature gates (`featureGates`) and fields of the `KubeletConfiguration` file.
/// Scenario knobs without a kubelet counterpart do not exist: a node cannot be told to
/// use another initial back-off, only to lower the maximum or to use the reduced decay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletParams {
    #[serde(default, skip_serializing_if = "FeatureGates::is_default")]
    pub feature_gates: FeatureGates,
    /// `crashLoopBackOff` of the KubeletConfiguration.
    #[serde(default, skip_serializing_if = "CrashLoopBackOffConfig::is_default")]
    pub crash_loop_back_off: CrashLoopBackOffConfig,
}

/// The kubelet feature gates that change what the oracle predicts; a gate not listed is
/// at its default, and an unknown one is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureGates {
    /// Honour `crashLoopBackOff.maxContainerRestartPeriod` (alpha in 1.32, beta and on by
    /// default from 1.35; without the field set, the maximum stays 300 s).
    #[serde(
        rename = "KubeletCrashLoopBackOffMax",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub kubelet_crash_loop_back_off_max: bool,
    /// A 1 s initial back-off and a 60 s maximum (alpha in 1.33, off by default).
    #[serde(
        rename = "ReduceDefaultCrashLoopBackOffDecay",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub reduce_default_crash_loop_back_off_decay: bool,
}

impl FeatureGates {
    fn is_default(&self) -> bool {
        *self == FeatureGates::default()
    }
}

/// `crashLoopBackOff` in the KubeletConfiguration file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrashLoopBackOffConfig {
    /// The node's maximum back-off, 1 s to 300 s; only with the KubeletCrashLoopBackOffMax
    /// gate (the kubelet refuses its configuration otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_container_restart_period: Option<SpecDuration>,
}

impl CrashLoopBackOffConfig {
    fn is_default(&self) -> bool {
        *self == CrashLoopBackOffConfig::default()
    }
}

/// The kubelet's constants for the container restart back-off (pkg/kubelet/kubelet.go).
pub const INITIAL_CRASH_LOOP_BACK_OFF: SpecDuration = SpecDuration::from_secs(10);
pub const MAX_CRASH_LOOP_BACK_OFF: SpecDuration = SpecDuration::from_secs(300);
pub const REDUCED_INITIAL_CRASH_LOOP_BACK_OFF: SpecDuration = SpecDuration::from_secs(1);
pub const REDUCED_MAX_CRASH_LOOP_BACK_OFF: SpecDuration = SpecDuration::from_secs(60);
/// The range the kubelet's configuration validation allows for
/// `crashLoopBackOff.maxContainerRestartPeriod`.
pub const MAX_CONTAINER_RESTART_PERIOD_RANGE: (SpecDuration, SpecDuration) =
    (SpecDuration::from_secs(1), SpecDuration::from_secs(300));

impl KubeletParams {
    pub fn is_default(&self) -> bool {
        *self == KubeletParams::default()
    }

    /// The back-off the kubelet uses on this node: `newCrashLoopBackOff`
    /// (pkg/kubelet/kubelet.go). The reduced decay replaces both constants; a configured
    /// maximum replaces the maximum and lowers the initial value when it is smaller.
    pub fn back_off(&self) -> BackOffParams {
        let gates = self.feature_gates;
        let (mut initial, mut max) = if gates.reduce_default_crash_loop_back_off_decay {
            (
                REDUCED_INITIAL_CRASH_LOOP_BACK_OFF,
                REDUCED_MAX_CRASH_LOOP_BACK_OFF,
            )
        } else {
            (INITIAL_CRASH_LOOP_BACK_OFF, MAX_CRASH_LOOP_BACK_OFF)
        };
        if gates.kubelet_crash_loop_back_off_max {
            if let Some(configured) = self.crash_loop_back_off.max_container_restart_period {
                max = configured;
                initial = initial.min(max);
            }
        }
        BackOffParams { initial, max }
    }
}

/// The container restart back-off a node uses, as derived from its configuration by
/// [`KubeletParams::back_off`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackOffParams {
    pub initial: SpecDuration,
    pub max: SpecDuration,
}

impl Default for BackOffParams {
    fn default() -> Self {
        KubeletParams::default().back_off()
    }
}

/// The pod's restart policy, defaulted as the API server does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The rule that says which exits this policy restarts.
    pub fn rule(self) -> RuleId {
        match self {
            RestartPolicy::Always => RuleId::RestartPolicyAlways,
            RestartPolicy::OnFailure => RuleId::RestartPolicyOnfailure,
            RestartPolicy::Never => RuleId::RestartPolicyNever,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }

    /// Whether a container that exited with `exit_code` is started again
    /// (`kubecontainer.ShouldContainerBeRestarted`).
    pub fn restarts_after(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

impl Scenario {
    /// Parses one scenario document; errors name the source, line and field.
    pub fn from_yaml(source: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let parse_error = |err: serde_saphyr::Error| {
            let at = err.location().and_then(|at| {
                Some((
                    usize::try_from(at.line()).ok()?,
                    usize::try_from(at.column()).ok()?,
                ))
            });
            let mut message = err.to_string();
            if let Some((line, column)) = at {
                // The position goes in front, with the file's name; the snippet names it too.
                let prefix = format!("error: line {line} column {column}: ");
                if let Some(rest) = message.strip_prefix(&prefix) {
                    message = rest.to_owned();
                }
                message = message.replace("--> <input>:", &format!("--> {source}:"));
            }
            ScenarioError::Parse {
                source_name: source.to_owned(),
                line: at.map(|(line, _)| line),
                field: at.and_then(|(line, column)| {
                    FieldLocations::of(text)
                        .field_at(line, column)
                        .map(str::to_owned)
                }),
                message,
            }
        };
        let invalid = |FieldError { field, reason }| ScenarioError::Invalid {
            source_name: source.to_owned(),
            line: FieldLocations::of(text).line_of(&field),
            field,
            reason,
        };
        let scenario: Scenario = serde_saphyr::from_str(text).map_err(parse_error)?;
        scenario.validate().map_err(invalid)?;
        // k8s-openapi drops fields it does not know: read the pod as written to refuse them.
        let written: serde_json::Value = serde_saphyr::from_str(text).map_err(parse_error)?;
        crate::fields::check_written_pod(&written["pod"]).map_err(invalid)?;
        scenario.check_observation_window().map_err(invalid)?;
        Ok(scenario)
    }

    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|err| ScenarioError::Read {
            path: path.display().to_string(),
            message: err.to_string(),
        })?;
        Scenario::from_yaml(&path.display().to_string(), &text)
    }

    pub fn to_yaml(&self) -> String {
        // Serialising plain data types cannot fail; keep a readable fallback regardless.
        serde_saphyr::to_string(self).unwrap_or_else(|err| format!("# unserialisable: {err}\n"))
    }

    pub fn restart_policy(&self) -> RestartPolicy {
        match self
            .pod
            .spec
            .as_ref()
            .and_then(|spec| spec.restart_policy.as_deref())
        {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// The pod's regular (app) containers.
    pub fn containers(&self) -> &[Container] {
        self.pod
            .spec
            .as_ref()
            .map(|spec| spec.containers.as_slice())
            .unwrap_or(&[])
    }

    /// The pod's `terminationGracePeriodSeconds`, or the API server's default (30).
    pub fn grace_period_seconds(&self) -> i64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|spec| spec.termination_grace_period_seconds)
            .unwrap_or(crate::plan::termination::DEFAULT_GRACE_SECONDS)
    }

    /// When the fault schedule first deletes the pod (graceful or forced), if it does.
    pub fn deleted_at(&self) -> Option<SpecDuration> {
        self.faults
            .iter()
            .filter(|f| {
                matches!(
                    f.action,
                    FaultAction::Delete { .. } | FaultAction::ForceDelete
                )
            })
            .map(|f| f.at)
            .min()
    }

    /// The ephemeral containers the fault schedule adds: (fault index, name).
    pub fn ephemeral_containers(&self) -> Vec<(usize, String)> {
        self.faults
            .iter()
            .enumerate()
            .filter_map(|(index, fault)| match &fault.action {
                FaultAction::AddEphemeralContainer { name, .. } => Some((index, name.clone())),
                _ => None,
            })
            .collect()
    }

    /// The pod's init containers, sidecars among them, in the order they start.
    pub fn init_containers(&self) -> &[Container] {
        self.pod
            .spec
            .as_ref()
            .and_then(|spec| spec.init_containers.as_deref())
            .unwrap_or(&[])
    }

    /// Every container of the pod spec in the order the kubelet starts them: the init
    /// containers (sidecars among them) one after another, then the regular containers.
    pub fn pod_containers(&self) -> Vec<PodContainer<'_>> {
        let init = self
            .init_containers()
            .iter()
            .enumerate()
            .map(|(index, container)| PodContainer {
                kind: if is_sidecar(container) {
                    ContainerKind::Sidecar
                } else {
                    ContainerKind::Init
                },
                container,
                field: format!("pod.spec.initContainers[{index}]"),
            });
        let regular = self
            .containers()
            .iter()
            .enumerate()
            .map(|(index, container)| PodContainer {
                kind: ContainerKind::Regular,
                container,
                field: format!("pod.spec.containers[{index}]"),
            });
        init.chain(regular).collect()
    }

    pub fn behaviour(&self, container: &str) -> Option<&Behaviour> {
        self.behaviours.get(container)
    }

    pub fn pod_name(&self) -> &str {
        self.pod
            .metadata
            .name
            .as_deref()
            .unwrap_or(self.name.as_str())
    }

    /// The probes of the container at `field` (`pod.spec.containers[0]`), as the oracle
    /// models them.
    pub fn container_probes(
        &self,
        container: &Container,
        field: &str,
    ) -> Result<ContainerProbes, FieldError> {
        let forever = Behaviour::forever();
        let behaviour = self.behaviour(&container.name).unwrap_or(&forever);
        let others: Vec<(&Container, &Behaviour)> = self
            .pod_containers()
            .into_iter()
            .map(|c| c.container)
            .filter(|c| c.name != container.name)
            .filter_map(|c| Some((c, self.behaviour(&c.name)?)))
            .collect();
        ContainerProbes::resolve(container, behaviour, &others, field)
    }
}
