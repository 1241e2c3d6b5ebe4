//! The API server's part of adding an ephemeral container: what the `ephemeralcontainers`
//! subresource accepts. Written from `ValidatePodEphemeralContainersUpdate` and
//! `validateEphemeralContainers` (pkg/apis/core/validation/validation.go, Kubernetes 1.35);
//! see docs/fidelity/ephemeral-runtime.md. Pure.
//!
//! A client sends the pod's whole list of ephemeral containers; adding one sends the
//! existing ones unchanged with the new one after them, which is what
//! [`validate_addition`] validates.

use k8s_openapi::api::core::v1::{EphemeralContainer, PodSpec};
use std::collections::BTreeSet;
use std::fmt;

/// One reason the API server refuses the update, as `field.Error` renders it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub field: String,
    pub kind: ErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Required,
    Invalid { value: String, detail: String },
    Duplicate { value: String },
    NotFound { value: String },
    Forbidden { detail: String },
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match &self.kind {
            ErrorKind::Required => write!(f, "{field}: Required value"),
            ErrorKind::Invalid { value, detail } => {
                write!(f, "{field}: Invalid value: {value:?}: {detail}")
            }
            ErrorKind::Duplicate { value } => write!(f, "{field}: Duplicate value: {value:?}"),
            ErrorKind::NotFound { value } => write!(f, "{field}: Not found: {value:?}"),
            ErrorKind::Forbidden { detail } => write!(f, "{field}: Forbidden: {detail}"),
        }
    }
}

/// What `validateFieldAllowList` says of a field an ephemeral container may not set.
const NOT_FOR_EPHEMERAL: &str = "cannot be set for an Ephemeral Container";

/// The fields of an ephemeral container that `allowedEphemeralContainerFields` leaves out
/// (lifecycle, probes, ports, resources, and the per-container restart and resize
/// settings), each with whether the container sets it. Go compares each field with its
/// zero value: a present list counts even when empty, `resources` only with limits,
/// requests or claims in it.
fn disallowed_fields(container: &EphemeralContainer) -> [(&'static str, bool); 9] {
    let resources_set = container
        .resources
        .as_ref()
        .is_some_and(|r| r.limits.is_some() || r.requests.is_some() || r.claims.is_some());
    [
        ("ports", container.ports.is_some()),
        ("resources", resources_set),
        ("resizePolicy", container.resize_policy.is_some()),
        ("restartPolicy", container.restart_policy.is_some()),
        (
            "restartPolicyRules",
            container.restart_policy_rules.is_some(),
        ),
        ("livenessProbe", container.liveness_probe.is_some()),
        ("readinessProbe", container.readiness_probe.is_some()),
        ("startupProbe", container.startup_probe.is_some()),
        ("lifecycle", container.lifecycle.is_some()),
    ]
}

/// `IsDNS1123Label`'s complaints about `name`, if any.
fn dns_label_errors(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let well_formed = name.chars().all(|c| alphanumeric(c) || c == '-')
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric);
    if !well_formed {
        errors.push(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \
             '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or \
             '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                .to_owned(),
        );
    }
    errors
}

/// The errors of the pod spec whose ephemeral containers are `spec`'s followed by `new`,
/// as `validateEphemeralContainers` finds them (with the parts of `validateContainerCommon`
/// and `validateContainerOnlyForPod` an ephemeral container can break here: its name, its
/// image, its volume mounts); empty when the API server accepts the update.
pub(crate) fn validate_addition(spec: &PodSpec, new: &EphemeralContainer) -> Vec<FieldError> {
    let existing = spec.ephemeral_containers.iter().flatten();
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    // Names a target may be: regular and init containers ("otherNames").
    let others: BTreeSet<&str> = containers.map(|c| c.name.as_str()).collect();
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let mut all_names = others.clone();
    let mut errors = Vec::new();
    for (index, container) in existing.chain(std::iter::once(new)).enumerate() {
        let path = format!("spec.ephemeralContainers[{index}]");
        let field = |rest: &str| format!("{path}.{rest}");
        let mut error = |field: String, kind: ErrorKind| errors.push(FieldError { field, kind });
        if container.name.is_empty() {
            error(field("name"), ErrorKind::Required);
        } else {
            for detail in dns_label_errors(&container.name) {
                let value = container.name.clone();
                error(field("name"), ErrorKind::Invalid { value, detail });
            }
        }
        match container.image.as_deref() {
            None | Some("") => error(field("image"), ErrorKind::Required),
            Some(image) if image.trim() != image => error(
                field("image"),
                ErrorKind::Invalid {
                    value: image.to_owned(),
                    detail: "must not have leading or trailing whitespace".to_owned(),
                },
            ),
            Some(_) => {}
        }
        if !all_names.insert(container.name.as_str()) {
            let value = container.name.clone();
            error(field("name"), ErrorKind::Duplicate { value });
        }
        if let Some(target) = container.target_container_name.as_deref() {
            if !target.is_empty() && !others.contains(target) {
                let value = target.to_owned();
                error(field("targetContainerName"), ErrorKind::NotFound { value });
            }
        }
        for (name, set) in disallowed_fields(container) {
            if set {
                let detail = NOT_FOR_EPHEMERAL.to_owned();
                error(field(name), ErrorKind::Forbidden { detail });
            }
        }
        for (mount_index, mount) in container.volume_mounts.iter().flatten().enumerate() {
            let mount_field = |rest: &str| field(&format!("volumeMounts[{mount_index}].{rest}"));
            if !volumes.contains(mount.name.as_str()) {
                let value = mount.name.clone();
                error(mount_field("name"), ErrorKind::NotFound { value });
            }
            for (name, value) in [
                ("subPath", &mount.sub_path),
                ("subPathExpr", &mount.sub_path_expr),
            ] {
                if value.as_deref().is_some_and(|v| !v.is_empty()) {
                    let detail = NOT_FOR_EPHEMERAL.to_owned();
                    error(mount_field(name), ErrorKind::Forbidden { detail });
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, EmptyDirVolumeSource, Lifecycle, Probe, ResourceRequirements,
        Volume, VolumeMount,
    };

    fn spec() -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "app".to_owned(),
                ..Container::default()
            }],
            volumes: Some(vec![Volume {
                name: "state".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }
    }

    fn debugger(name: &str) -> EphemeralContainer {
        EphemeralContainer {
            name: name.to_owned(),
            image: Some("podcheck.local/agent:latest".to_owned()),
            ..EphemeralContainer::default()
        }
    }

    fn rendered(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_debugger_targeting_a_container_with_allowed_fields_is_accepted() {
        let mut container = debugger("debug");
        container.target_container_name = Some("app".to_owned());
        container.command = Some(vec!["/podcheck-agent".to_owned()]);
        container.volume_mounts = Some(vec![VolumeMount {
            name: "state".to_owned(),
            mount_path: "/state".to_owned(),
            ..VolumeMount::default()
        }]);
        // An empty resources object is Go's zero value: not set.
        container.resources = Some(ResourceRequirements::default());
        assert_eq!(validate_addition(&spec(), &container), []);
    }

    #[test]
    fn ports_probes_lifecycle_and_resources_are_forbidden() {
        let mut container = debugger("debug");
        container.ports = Some(Vec::<ContainerPort>::new());
        container.liveness_probe = Some(Probe::default());
        container.lifecycle = Some(Lifecycle::default());
        container.resources = Some(ResourceRequirements {
            limits: Some(Default::default()),
            ..ResourceRequirements::default()
        });
        container.restart_policy = Some("Always".to_owned());
        assert_eq!(
            rendered(&validate_addition(&spec(), &container)),
            [
                "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].resources: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].restartPolicy: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].livenessProbe: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].lifecycle: Forbidden: cannot be set for an Ephemeral Container",
            ]
        );
    }

    #[test]
    fn names_are_unique_across_every_kind_of_container() {
        let mut with_one = spec();
        with_one.ephemeral_containers = Some(vec![debugger("debug")]);
        assert_eq!(
            rendered(&validate_addition(&with_one, &debugger("debug"))),
            [r#"spec.ephemeralContainers[1].name: Duplicate value: "debug""#]
        );
        assert_eq!(
            rendered(&validate_addition(&spec(), &debugger("app"))),
            [r#"spec.ephemeralContainers[0].name: Duplicate value: "app""#]
        );
        assert_eq!(validate_addition(&with_one, &debugger("debug-2")), []);
    }

    #[test]
    fn the_target_must_be_a_regular_or_init_container() {
        let mut with_one = spec();
        with_one.ephemeral_containers = Some(vec![debugger("debug")]);
        let mut container = debugger("second");
        container.target_container_name = Some("debug".to_owned());
        assert_eq!(
            rendered(&validate_addition(&with_one, &container)),
            [r#"spec.ephemeralContainers[1].targetContainerName: Not found: "debug""#],
            "an ephemeral container is no target"
        );
        container.target_container_name = Some("missing".to_owned());
        assert_eq!(validate_addition(&with_one, &container).len(), 1);
        // An empty name targets nothing, which is allowed.
        container.target_container_name = Some(String::new());
        assert_eq!(validate_addition(&with_one, &container), []);
    }

    #[test]
    fn a_name_an_image_and_mounts_of_existing_volumes_without_subpaths_are_needed() {
        let mut container = debugger("Debug_1");
        container.image = None;
        container.volume_mounts = Some(vec![
            VolumeMount {
                name: "nothing".to_owned(),
                mount_path: "/x".to_owned(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "state".to_owned(),
                mount_path: "/y".to_owned(),
                sub_path: Some("a".to_owned()),
                ..VolumeMount::default()
            },
        ]);
        let errors = rendered(&validate_addition(&spec(), &container));
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with(
            r#"spec.ephemeralContainers[0].name: Invalid value: "Debug_1": a lowercase RFC 1123 label"#
        ));
        assert_eq!(
            errors[1],
            "spec.ephemeralContainers[0].image: Required value"
        );
        assert_eq!(
            errors[2],
            r#"spec.ephemeralContainers[0].volumeMounts[0].name: Not found: "nothing""#
        );
        assert_eq!(
            errors[3],
            "spec.ephemeralContainers[0].volumeMounts[1].subPath: Forbidden: cannot be set for an Ephemeral Container"
        );
        assert_eq!(
            rendered(&validate_addition(&spec(), &debugger(""))),
            ["spec.ephemeralContainers[0].name: Required value"]
        );
    }
}
