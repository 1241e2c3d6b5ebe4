//! Scenarios: a real Pod manifest, the behaviour of each of its containers, and a fault schedule.

use crate::behaviour::{Behaviour, Run};
use crate::duration::SpecDuration;
use crate::errors::{FieldError, ScenarioError};
use crate::probes::ContainerProbes;
use crate::rules::RuleId;
use crate::validation::{container_probes, validate_probe};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

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

/// What the API server refuses in an init container (`validateInitContainers`,
/// pkg/apis/core/validation/validation.go): a restart policy other than Always, and
/// probes or lifecycle hooks on an init container that is not a sidecar.
fn validate_init_fields(
    kind: ContainerKind,
    container: &Container,
    field: &str,
) -> Result<(), FieldError> {
    if kind == ContainerKind::Regular {
        return Ok(());
    }
    if let Some(policy) = container.restart_policy.as_deref() {
        if policy != "Always" {
            return Err(FieldError::new(
                format!("{field}.restartPolicy"),
                format!("Unsupported value: {policy:?}: supported values: \"Always\""),
            ));
        }
    }
    if kind == ContainerKind::Sidecar {
        return Ok(());
    }
    let forbidden = [
        ("lifecycle", container.lifecycle.is_some()),
        ("livenessProbe", container.liveness_probe.is_some()),
        ("readinessProbe", container.readiness_probe.is_some()),
        ("startupProbe", container.startup_probe.is_some()),
    ];
    match forbidden.iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(FieldError::new(
            format!("{field}.{name}"),
            "Forbidden: may not be set for init containers without restartPolicy=Always".to_owned(),
        )),
        None => Ok(()),
    }
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

    /// The kubelet's own validation of these settings (`ValidateKubeletConfiguration`):
    /// a node with such a configuration does not start.
    pub fn validate(&self) -> Result<(), FieldError> {
        let field = "kubelet.crashLoopBackOff.maxContainerRestartPeriod";
        let Some(period) = self.crash_loop_back_off.max_container_restart_period else {
            return Ok(());
        };
        if !self.feature_gates.kubelet_crash_loop_back_off_max {
            return Err(FieldError::new(
                field.to_owned(),
                "FeatureGate KubeletCrashLoopBackOffMax not enabled, \
                 CrashLoopBackOff.MaxContainerRestartPeriod must not be set \
                 (set kubelet.featureGates.KubeletCrashLoopBackOffMax: true)"
                    .to_owned(),
            ));
        }
        let (lo, hi) = MAX_CONTAINER_RESTART_PERIOD_RANGE;
        if period < lo || period > hi {
            return Err(FieldError::new(
                field.to_owned(),
                format!("{period} must be set between {lo} and {hi}"),
            ));
        }
        Ok(())
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
        let scenario: Scenario =
            serde_saphyr::from_str(text).map_err(|err| ScenarioError::Parse {
                source_name: source.to_owned(),
                message: err.to_string(),
            })?;
        scenario
            .validate()
            .map_err(|FieldError { field, reason }| ScenarioError::Invalid {
                source_name: source.to_owned(),
                field,
                reason,
            })?;
        // k8s-openapi drops fields it does not know: read the pod as written to refuse them.
        let written: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|err| ScenarioError::Parse {
                source_name: source.to_owned(),
                message: err.to_string(),
            })?;
        crate::fields::check_written_pod(&written["pod"]).map_err(
            |FieldError { field, reason }| ScenarioError::Invalid {
                source_name: source.to_owned(),
                field,
                reason,
            },
        )?;
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

    /// Checks what the oracle relies on. Returns the offending field path and reason.
    pub fn validate(&self) -> Result<(), FieldError> {
        let invalid = |field: &str, reason: String| Err(FieldError::new(field.to_owned(), reason));
        if !is_dns_label(&self.name) {
            return invalid(
                "name",
                format!("{:?} must be a DNS label (lower-case letters, digits and '-', at most 63 characters)", self.name),
            );
        }
        if let Some(kind) = self.pod.metadata.name.as_deref() {
            if !is_dns_label(kind) {
                return invalid("pod.metadata.name", format!("{kind:?} must be a DNS label"));
            }
        }
        let Some(spec) = self.pod.spec.as_ref() else {
            return invalid("pod.spec", "a pod needs a spec".to_owned());
        };
        if spec.containers.is_empty() {
            return invalid(
                "pod.spec.containers",
                "a pod needs at least one container".to_owned(),
            );
        }
        if let Some(policy) = spec.restart_policy.as_deref() {
            if !matches!(policy, "Always" | "OnFailure" | "Never") {
                return invalid(
                    "pod.spec.restartPolicy",
                    format!("{policy:?} is not one of Always, OnFailure, Never"),
                );
            }
        }
        let containers = self.pod_containers();
        let mut seen = std::collections::BTreeSet::new();
        for PodContainer {
            kind,
            container,
            field,
        } in &containers
        {
            let name_field = format!("{field}.name");
            if !is_dns_label(&container.name) {
                return invalid(
                    &name_field,
                    format!("{:?} must be a DNS label", container.name),
                );
            }
            // validateInitContainers and validateContainers share one set of names.
            if !seen.insert(container.name.as_str()) {
                return invalid(
                    &name_field,
                    format!("duplicate container name {:?}", container.name),
                );
            }
            if !self.behaviours.contains_key(&container.name) {
                return invalid(
                    "behaviours",
                    format!("container {:?} has no behaviour", container.name),
                );
            }
            validate_init_fields(*kind, container, field)?;
            // Invalid probes are refused as the API server would, before anything is
            // refused as not modelled.
            for (name, probe, kind) in container_probes(container) {
                if let Some(probe) = probe {
                    validate_probe(probe, kind, &format!("{field}.{name}"))?;
                }
            }
        }
        // After the API server's checks above, so that an invalid manifest is refused for
        // the reason Kubernetes gives.
        crate::fields::check_pod(&self.pod)?;
        let ephemeral = self.ephemeral_containers();
        for name in self.behaviours.keys() {
            if !containers.iter().any(|c| &c.container.name == name)
                && !ephemeral.iter().any(|(_, e)| e == name)
            {
                return invalid(
                    &format!("behaviours.{name}"),
                    format!("no container named {name:?} in the pod"),
                );
            }
        }
        for (name, behaviour) in &self.behaviours {
            for (index, run) in behaviour
                .starts
                .iter()
                .chain(std::iter::once(&behaviour.then))
                .enumerate()
            {
                if let Run::Exit { code, .. } = run {
                    if !(0..=255).contains(code) {
                        let field = if index < behaviour.starts.len() {
                            format!("behaviours.{name}.starts[{index}].exit.code")
                        } else {
                            format!("behaviours.{name}.then.exit.code")
                        };
                        return invalid(&field, format!("{code} is not an exit status (0..=255)"));
                    }
                }
            }
        }
        self.validate_health()?;
        for pod_container in &containers {
            self.container_probes(pod_container.container, &pod_container.field)?;
        }
        for pod_container in &containers {
            self.validate_hooks(pod_container.container, &pod_container.field)?;
        }
        self.validate_faults()?;
        self.kubelet.validate()?;
        Ok(())
    }
}

impl Scenario {
    /// A container's lifecycle handlers, as the oracle reads them.
    fn validate_hooks(&self, container: &Container, field: &str) -> Result<(), FieldError> {
        use crate::plan::termination::{resolve_hook, HookPoint};
        let forever = Behaviour::forever();
        let behaviour = self.behaviour(&container.name).unwrap_or(&forever);
        if !behaviour.hooks.is_empty()
            && behaviour
                .health
                .as_ref()
                .is_some_and(|h| !h.listen_after.is_zero())
        {
            return Err(FieldError::new(
                format!("behaviours.{}.health.listenAfter", container.name),
                "the workload answers hook calls on its health listener, which must listen from the start when it has hooks".to_owned(),
            ));
        }
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(crate::plan::termination::DEFAULT_GRACE_SECONDS);
        for point in [HookPoint::PostStart, HookPoint::PreStop] {
            let call = resolve_hook(container, behaviour, point, field)
                .map_err(|(field, reason)| FieldError::new(field, reason))?;
            // validateSleepAction: no longer than the pod's grace period.
            if let Some(crate::plan::termination::HookHandler::Sleep(duration)) =
                call.as_ref().map(|c| &c.handler)
            {
                if duration.as_millis() > u64::try_from(grace).unwrap_or(0) * 1000 {
                    return Err(FieldError::new(
                        format!("{field}.lifecycle.{}.sleep.seconds", point.field()),
                        format!(
                            "must be less than or equal to terminationGracePeriodSeconds ({grace})"
                        ),
                    ));
                }
            }
            let probed = container.liveness_probe.is_some()
                || container.readiness_probe.is_some()
                || container.startup_probe.is_some();
            if point == HookPoint::PostStart && call.is_some() && probed {
                return Err(FieldError::new(
                    format!("{field}.lifecycle.postStart"),
                    "not modelled by the oracle together with probes: the probes would start once the hook has returned; the scenario would be half-predicted"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// The fault schedule: each action names what exists, at a time the model can watch.
    fn validate_faults(&self) -> Result<(), FieldError> {
        let finalizers = self.pod.metadata.finalizers.clone().unwrap_or_default();
        let mut deletions = 0;
        let deletion_at = self.deleted_at();
        for (index, fault) in self.faults.iter().enumerate() {
            let field = |rest: &str| format!("faults[{index}].{rest}");
            if fault.at > crate::predict::MAX_HORIZON {
                return Err(FieldError::new(
                    field("at"),
                    format!(
                        "{} is past the longest observation ({})",
                        fault.at,
                        crate::predict::MAX_HORIZON
                    ),
                ));
            }
            match &fault.action {
                FaultAction::KillContainer { container } => {
                    if !self.containers().iter().any(|c| &c.name == container) {
                        return Err(FieldError::new(
                            field("action.killContainer.container"),
                            format!("no container named {container:?} in the pod"),
                        ));
                    }
                }
                FaultAction::Delete {
                    grace_period_seconds,
                } => {
                    deletions += 1;
                    if let Some(grace) = grace_period_seconds {
                        // The API server turns a negative grace period into 1 (rest
                        // BeforeDelete): not modelled ...
                        if *grace < 0 {
                            return Err(FieldError::new(
                                field("action.delete.gracePeriodSeconds"),
                                format!("{grace} is negative, which the API server turns into 1; not modelled: give 1"),
                            ));
                        }
                        // ... and the model watches no longer than its horizon.
                        if *grace > MAX_GRACE_SECONDS {
                            return Err(FieldError::new(
                                field("action.delete.gracePeriodSeconds"),
                                format!("{grace} is longer than the {MAX_GRACE_SECONDS}s the oracle models"),
                            ));
                        }
                    }
                }
                FaultAction::ForceDelete => deletions += 1,
                FaultAction::RemoveFinalizer { finalizer } => {
                    if !finalizers.contains(finalizer) {
                        return Err(FieldError::new(
                            field("action.removeFinalizer.finalizer"),
                            format!("{finalizer:?} is not one of the pod's metadata.finalizers"),
                        ));
                    }
                }
                FaultAction::RestartNodeAgent => {
                    return Err(FieldError::new(
                        field("action"),
                        "restartNodeAgent is not modelled by the oracle yet; the scenario would be half-predicted".to_owned(),
                    ));
                }
                FaultAction::AddEphemeralContainer {
                    name,
                    target_container_name,
                } => {
                    let at = |rest: &str| field(&format!("action.addEphemeralContainer.{rest}"));
                    if !is_dns_label(name) {
                        return Err(FieldError::new(
                            at("name"),
                            format!("{name:?} must be a DNS label"),
                        ));
                    }
                    // Names are unique across containers, init containers and ephemeral
                    // containers (validateEphemeralContainers).
                    let taken = self
                        .pod_containers()
                        .iter()
                        .any(|c| &c.container.name == name)
                        || self
                            .ephemeral_containers()
                            .iter()
                            .any(|(other, e)| e == name && *other < index);
                    if taken {
                        return Err(FieldError::new(
                            at("name"),
                            format!("Duplicate value: {name:?}"),
                        ));
                    }
                    if !self.behaviours.contains_key(name) {
                        return Err(FieldError::new(
                            "behaviours".to_owned(),
                            format!("ephemeral container {name:?} has no behaviour"),
                        ));
                    }
                    if let Some(target) = target_container_name {
                        if !self.containers().iter().any(|c| &c.name == target) {
                            return Err(FieldError::new(
                                at("targetContainerName"),
                                format!("Not found: {target:?}: must be a container of the pod"),
                            ));
                        }
                    }
                    // Ephemeral containers may not have probes, ports or hooks: the
                    // behaviour may not script what only those would use.
                    if let Some(behaviour) = self.behaviours.get(name) {
                        if behaviour.health.is_some() || !behaviour.hooks.is_empty() {
                            return Err(FieldError::new(
                                format!("behaviours.{name}"),
                                "an ephemeral container has no probes or lifecycle hooks (validateEphemeralContainers): its behaviour serves no health endpoints or hooks".to_owned(),
                            ));
                        }
                    }
                    if deletion_at.is_some_and(|deleted| deleted <= fault.at) {
                        return Err(FieldError::new(
                            field("at"),
                            "after the pod's deletion: the kubelet starts no container of a terminating pod".to_owned(),
                        ));
                    }
                }
            }
            if deletions > 1 {
                return Err(FieldError::new(
                    field("action"),
                    "a second delete is not modelled (it may only shorten the grace period)"
                        .to_owned(),
                ));
            }
        }
        if let Some(grace) = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
        {
            if grace < 0 {
                return Err(FieldError::new(
                    "pod.spec.terminationGracePeriodSeconds".to_owned(),
                    format!("{grace} is negative, which the API server stores as 1 with a warning; not modelled: give 1"),
                ));
            }
            if grace > MAX_GRACE_SECONDS {
                return Err(FieldError::new(
                    "pod.spec.terminationGracePeriodSeconds".to_owned(),
                    format!("{grace} is longer than the {MAX_GRACE_SECONDS}s the oracle models"),
                ));
            }
        }
        Ok(())
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

    /// Health endpoints must be servable: names that are paths, scripts with answers, and
    /// ports no two listeners of the pod share (its containers share one network).
    fn validate_health(&self) -> Result<(), FieldError> {
        let mut ports: BTreeMap<u16, String> = BTreeMap::new();
        for (name, behaviour) in &self.behaviours {
            let Some(health) = &behaviour.health else {
                // Hook calls without health endpoints are answered on the default port.
                if let Some(port) = behaviour.hook_port() {
                    let field = format!("behaviours.{name}.hooks");
                    if let Some(other) = ports.insert(port, field.clone()) {
                        return Err(FieldError::new(
                            field,
                            format!("the hook calls are answered on port {port}, which is already used by {other}; give this behaviour a health port of its own")));
                    }
                }
                continue;
            };
            for hook in behaviour.hooks.keys() {
                if !podcheck_wire::is_hook_name(hook) {
                    return Err(FieldError::new(
                        format!("behaviours.{name}.hooks.{hook}"),
                        "a hook name is letters, digits, '.', '_' and '-': it is served as the path /hook/NAME".to_owned(),
                    ));
                }
            }
            let field = format!("behaviours.{name}.health");
            let mut claim = |port: u16, field: String| {
                if port == 0 {
                    return Err(FieldError::new(
                        field,
                        "port 0 cannot be listened on".to_owned(),
                    ));
                }
                if let Some(other) = ports.insert(port, field.clone()) {
                    return Err(FieldError::new(
                        field,
                        format!("port {port} is already used by {other}; the pod's containers share one network namespace")));
                }
                Ok(())
            };
            claim(health.port, format!("{field}.port"))?;
            if let Some(port) = health.grpc_port {
                claim(port, format!("{field}.grpcPort"))?;
            }
            for (endpoint_name, endpoint) in &health.endpoints {
                let at = format!("{field}.endpoints.{endpoint_name}");
                if !is_dns_label(endpoint_name) {
                    return Err(FieldError::new(
                        at,
                        "an endpoint name must be a DNS label: it is served as the path /NAME"
                            .to_owned(),
                    ));
                }
                if endpoint.answers.is_empty() {
                    return Err(FieldError::new(
                        format!("{at}.answers"),
                        "needs at least one answer".to_owned(),
                    ));
                }
                if let Some(port) = endpoint.tcp_port {
                    claim(port, format!("{at}.tcpPort"))?;
                }
            }
        }
        Ok(())
    }
}

/// RFC 1123 label, as Kubernetes requires of pod and container names.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(init_container: &str) -> Option<(String, String)> {
        let yaml = format!(
            "name: x\npod:\n  spec:\n    initContainers:\n      - {init_container}\n    containers:\n      - name: app\nbehaviours:\n  init: {{then: {{exit: {{after: 1s, code: 0}}}}}}\n  app: {{then: forever}}\n"
        );
        match Scenario::from_yaml("x.yaml", &yaml) {
            Ok(_) => None,
            Err(ScenarioError::Invalid { field, reason, .. }) => Some((field, reason)),
            Err(other) => Some(("?".to_owned(), other.to_string())),
        }
    }

    #[test]
    fn an_init_container_is_refused_what_the_api_server_refuses() {
        let (field, reason) =
            refusal("{name: init, readinessProbe: {tcpSocket: {port: 8080}}}").expect("refused");
        assert_eq!(field, "pod.spec.initContainers[0].readinessProbe");
        assert!(reason.contains("restartPolicy=Always"), "{reason}");
        let (field, reason) = refusal("{name: init, restartPolicy: Never}").expect("refused");
        assert_eq!(field, "pod.spec.initContainers[0].restartPolicy");
        assert!(reason.contains("supported values: \"Always\""), "{reason}");
        let (field, reason) = refusal("{name: app}").expect("refused");
        assert_eq!(field, "pod.spec.containers[0].name");
        assert!(reason.contains("duplicate"), "{reason}");
    }

    #[test]
    fn a_sidecar_may_carry_probes_and_init_containers_start_first() {
        assert_eq!(
            refusal(
                "{name: init, restartPolicy: Always, readinessProbe: {tcpSocket: {port: 8080}}}"
            ),
            None
        );
        let yaml = "name: x\npod:\n  spec:\n    initContainers: [{name: a}, {name: b, restartPolicy: Always}]\n    containers: [{name: c}]\nbehaviours:\n  a: {then: forever}\n  b: {then: forever}\n  c: {then: forever}\n";
        let scenario = Scenario::from_yaml("x.yaml", yaml).expect("valid");
        let kinds: Vec<(&str, ContainerKind)> = scenario
            .pod_containers()
            .iter()
            .map(|c| (c.container.name.as_str(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a", ContainerKind::Init),
                ("b", ContainerKind::Sidecar),
                ("c", ContainerKind::Regular)
            ]
        );
    }
}
