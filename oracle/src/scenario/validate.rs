//! Scenario validation: what the API server and the kubelet would refuse, refused for the
//! reason they give, then what the oracle does not model, so a scenario it plans is never
//! half-predicted.

use super::{
    ContainerKind, FaultAction, KubeletParams, PodContainer, Scenario,
    MAX_CONTAINER_RESTART_PERIOD_RANGE, MAX_GRACE_SECONDS,
};
use crate::behaviour::{Behaviour, Run};
use crate::errors::FieldError;
use crate::validation::{container_probes, validate_probe};
use k8s_openapi::api::core::v1::Container;
use std::collections::BTreeMap;

impl Scenario {
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
        let grace = self.grace_period_seconds();
        for point in [HookPoint::PostStart, HookPoint::PreStop] {
            let call = resolve_hook(container, behaviour, point, field)
                .map_err(|(field, reason)| FieldError::new(field, reason))?;
            // validateSleepAction: no longer than the pod's grace period.
            if let Some(crate::plan::termination::HookHandler::Sleep(duration)) =
                call.as_ref().map(|c| &c.handler)
            {
                if duration.as_millis() > u64::try_from(grace).unwrap_or(0).saturating_mul(1000) {
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
            // A deletion is watched until the object could be gone: that must fit in the
            // longest observation, or the prediction would end before what it predicts.
            let deletion_grace = match &fault.action {
                FaultAction::Delete {
                    grace_period_seconds: Some(grace),
                } => Some(*grace),
                FaultAction::Delete { .. } => Some(self.grace_period_seconds()),
                FaultAction::ForceDelete => Some(0),
                _ => None,
            };
            if let Some(grace) = deletion_grace {
                use crate::duration::SpecDuration;
                use crate::plan::termination::{
                    DELETION_NOTICED_WITHIN, OBJECT_REMOVAL_LAG, SIGNAL_LAG,
                };
                // The kubelet never kills with less than 1 s; a grace period the oracle
                // does not model is refused below for its own reason.
                let grace = grace.clamp(1, MAX_GRACE_SECONDS);
                let watched = fault.at
                    + SpecDuration::from_secs(u64::try_from(grace).unwrap_or(1))
                    + DELETION_NOTICED_WITHIN
                    + SIGNAL_LAG
                    + crate::plan::TERMINAL_PHASE_LAG
                    + OBJECT_REMOVAL_LAG
                    + crate::predict::SETTLE;
                if watched > crate::predict::MAX_HORIZON {
                    return Err(FieldError::new(
                        field("at"),
                        format!(
                            "the deletion at {} is watched until {watched} (its {grace}s grace period, the kubelet noticing it, the terminal phase and the object's removal), past the longest observation ({})",
                            fault.at,
                            crate::predict::MAX_HORIZON
                        ),
                    ));
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

impl KubeletParams {
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
    use crate::errors::ScenarioError;

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

    fn observed_for(observe_for: &str, behaviour: &str) -> Result<Scenario, ScenarioError> {
        let yaml = format!(
            "name: x\nobserveFor: {observe_for}\npod:\n  spec:\n    restartPolicy: Never\n    containers:\n      - name: app\nbehaviours:\n  app: {{then: {behaviour}}}\n"
        );
        Scenario::from_yaml("x.yaml", &yaml)
    }

    #[test]
    fn an_observation_window_must_reach_the_milestones_and_stay_within_the_longest() {
        // Exits after 10s under Never: terminal within TERMINAL_PHASE_LAG, then settled.
        let exits = "{exit: {after: 10s, code: 0}}";
        // For a pod that settles, what it must show is what the oracle watches by default.
        let mut unbounded = observed_for("1h", exits).expect("accepted");
        unbounded.observe_for = None;
        let needed = crate::predict::predict(&unbounded)
            .expect("predicted")
            .horizon;
        assert!(observed_for(&needed.to_string(), exits).is_ok());
        for short in ["0", "1ms", "10s"] {
            match observed_for(short, exits) {
                Err(ScenarioError::Invalid {
                    line,
                    field,
                    reason,
                    ..
                }) => {
                    assert_eq!((line, field.as_str()), (Some(2), "observeFor"));
                    assert!(
                        reason.contains(&format!("observe for at least {needed}")),
                        "{reason}"
                    );
                }
                other => panic!("observeFor {short} must be refused: {other:?}"),
            }
        }
        match observed_for("2h", "forever") {
            Err(ScenarioError::Invalid { field, reason, .. }) => {
                assert_eq!(field, "observeFor");
                assert!(reason.contains("longer than the 1h"), "{reason}");
            }
            other => panic!("observeFor 2h must be refused: {other:?}"),
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
