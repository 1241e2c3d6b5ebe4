//! What the runtime takes from a pod's manifest, checked before any process starts.

use crate::errors::RuntimeError;
use crate::hook::Handler;
use crate::image::AGENT_PATH_IN_IMAGE;
use crate::kubelet::{ContainerKind, ContainerSetup, RestartPolicy};
use crate::probe::{Kind, ProbeSpec};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, PodSpec};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Builds the error for a field the runtime cannot accept.
pub(super) type Invalid<'a> = &'a dyn Fn(&str, String) -> RuntimeError;

/// The pod-level settings.
pub(super) struct PodManifest<'a> {
    pub name: String,
    pub namespace: String,
    pub spec: &'a PodSpec,
    pub restart_policy: RestartPolicy,
    /// terminationGracePeriodSeconds (spec time).
    pub termination_grace: Duration,
    /// metadata.finalizers.
    pub finalizers: Vec<String>,
    /// spec.shareProcessNamespace: the containers share the sandbox's PID namespace
    /// instead of having one each.
    pub share_process_namespace: bool,
}

/// Everything decided from a container's manifest before any process starts.
pub(super) struct ContainerSpec {
    pub name: String,
    pub kind: ContainerKind,
    pub image: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub binds: Vec<(PathBuf, String, bool)>,
    pub probes: Vec<ProbeSpec>,
    pub post_start: Option<Handler>,
    pub pre_stop: Option<Handler>,
    /// The manifest's container, for what probes and hooks look up in it (named ports).
    pub manifest: Container,
}

impl ContainerSpec {
    pub fn setup(&self) -> ContainerSetup {
        ContainerSetup {
            name: self.name.clone(),
            kind: self.kind,
            image: self.image.clone(),
            probes: self
                .probes
                .iter()
                .map(|p| (p.kind, p.termination_grace))
                .collect(),
            post_start: self.post_start.is_some(),
            pre_stop: self.pre_stop.is_some(),
        }
    }
}

pub(super) fn pod_name(pod: &Pod) -> String {
    pod.metadata
        .name
        .clone()
        .unwrap_or_else(|| "pod".to_owned())
}

/// Reads the pod-level fields, refusing what the local runtime does not support.
pub(super) fn read_pod<'a>(
    pod: &'a Pod,
    invalid: Invalid,
) -> Result<PodManifest<'a>, RuntimeError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| invalid("spec", "missing".to_owned()))?;
    if spec.containers.is_empty() {
        return Err(invalid(
            "spec.containers",
            "a pod needs at least one container".to_owned(),
        ));
    }
    // The API server's `ValidatePodCreate`: ephemeral containers come through their
    // subresource only.
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        return Err(invalid(
            "spec.ephemeralContainers",
            "Forbidden: cannot be set on create".to_owned(),
        ));
    }
    if spec.host_pid == Some(true) {
        return Err(invalid(
            "spec.hostPID",
            "not supported by the local runtime: containers never see the node's processes"
                .to_owned(),
        ));
    }
    check_containers(spec, invalid)?;
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let restart_policy = RestartPolicy::parse(policy).ok_or_else(|| {
        invalid(
            "spec.restartPolicy",
            format!("{policy:?} is not Always, OnFailure or Never"),
        )
    })?;
    Ok(PodManifest {
        name: pod_name(pod),
        namespace,
        spec,
        restart_policy,
        termination_grace: Duration::from_secs(grace_seconds(spec) as u64),
        finalizers: pod.metadata.finalizers.clone().unwrap_or_default(),
        share_process_namespace: spec.share_process_namespace == Some(true),
    })
}

/// What the API server refuses of the pod's containers (`validateInitContainers` and
/// `validateContainers`, pkg/apis/core/validation/validation.go), in its words: names unique
/// across init and regular containers; an init container's restartPolicy, if set, Always
/// (a sidecar); no lifecycle hooks and no probes on an init container that is not a
/// sidecar; no restartPolicy on a regular container.
fn check_containers(spec: &PodSpec, invalid: Invalid) -> Result<(), RuntimeError> {
    const NOT_A_SIDECAR: &str =
        "Forbidden: may not be set for init containers without restartPolicy=Always";
    let mut names = HashSet::new();
    for (index, container) in spec.containers.iter().enumerate() {
        let field = |rest: &str| format!("spec.containers[{index}].{rest}");
        if !names.insert(container.name.as_str()) {
            return Err(invalid(
                &field("name"),
                format!("Duplicate value: {:?}", container.name),
            ));
        }
        if container.restart_policy.is_some() {
            return Err(invalid(
                &field("restartPolicy"),
                "Forbidden: may not be set for non-init containers".to_owned(),
            ));
        }
    }
    for (index, container) in spec.init_containers.iter().flatten().enumerate() {
        let field = |rest: &str| format!("spec.initContainers[{index}].{rest}");
        if !names.insert(container.name.as_str()) {
            return Err(invalid(
                &field("name"),
                format!("Duplicate value: {:?}", container.name),
            ));
        }
        match container.restart_policy.as_deref() {
            Some("Always") => continue,
            Some(other) => {
                return Err(invalid(
                    &field("restartPolicy"),
                    format!("Unsupported value: {other:?}: supported values: \"Always\""),
                ))
            }
            None => {}
        }
        for (name, set) in [
            ("lifecycle", container.lifecycle.is_some()),
            ("livenessProbe", container.liveness_probe.is_some()),
            ("readinessProbe", container.readiness_probe.is_some()),
            ("startupProbe", container.startup_probe.is_some()),
        ] {
            if set {
                return Err(invalid(&field(name), NOT_A_SIDECAR.to_owned()));
            }
        }
    }
    Ok(())
}

/// What a container of `spec.initContainers` is.
pub(super) fn init_kind(container: &Container) -> ContainerKind {
    match container.restart_policy.as_deref() {
        Some("Always") => ContainerKind::Sidecar,
        _ => ContainerKind::Init,
    }
}

/// terminationGracePeriodSeconds in whole seconds, 30 when unset (the API's default).
pub(super) fn grace_seconds(spec: &PodSpec) -> i64 {
    spec.termination_grace_period_seconds
        .filter(|g| *g >= 0)
        .unwrap_or(30)
}

/// The pod's volumes (emptyDir only), by name, with their directories under `pod_dir`.
pub(super) fn volumes(
    spec: &PodSpec,
    pod_dir: &Path,
    invalid: Invalid,
) -> Result<BTreeMap<String, PathBuf>, RuntimeError> {
    let mut volumes = BTreeMap::new();
    for (index, volume) in spec.volumes.iter().flatten().enumerate() {
        if volume.empty_dir.is_none() {
            return Err(invalid(
                &format!("spec.volumes[{index}]"),
                format!(
                    "volume {:?}: only emptyDir volumes are supported by the local runtime",
                    volume.name
                ),
            ));
        }
        volumes.insert(
            volume.name.clone(),
            pod_dir.join("volumes").join(&volume.name),
        );
    }
    Ok(volumes)
}

/// Reads one container; `path` is where it is in the manifest (`spec.containers[0]`,
/// `spec.initContainers[1]`, `spec.ephemeralContainers[0]`), for errors.
pub(super) fn container_spec(
    container: &Container,
    path: &str,
    kind: ContainerKind,
    volumes: &BTreeMap<String, PathBuf>,
    grace_seconds: i64,
    invalid: Invalid,
) -> Result<ContainerSpec, RuntimeError> {
    let field = |rest: &str| format!("{path}.{rest}");
    let image = container.image.clone().unwrap_or_default();
    let mut command: Vec<String> = container.command.clone().unwrap_or_default();
    if command.is_empty() {
        // The agent image's entrypoint.
        command.push(AGENT_PATH_IN_IMAGE.to_owned());
    }
    command.extend(container.args.clone().unwrap_or_default());
    let program = command.remove(0);
    if !program.starts_with('/') {
        return Err(invalid(&field("command"), format!("{program:?}: the local runtime needs an absolute path (images have no PATH lookup)")));
    }
    let mut env = vec![(
        "PATH".to_owned(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
    )];
    for (env_index, var) in container.env.iter().flatten().enumerate() {
        match (&var.value, &var.value_from) {
            (_, Some(_)) => {
                return Err(invalid(
                    &field(&format!("env[{env_index}].valueFrom")),
                    "not supported by the local runtime".to_owned(),
                ))
            }
            (value, None) => env.push((var.name.clone(), value.clone().unwrap_or_default())),
        }
    }
    let mut binds = Vec::new();
    for (mount_index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let source = volumes.get(&mount.name).ok_or_else(|| {
            invalid(
                &field(&format!("volumeMounts[{mount_index}].name")),
                format!("no volume named {:?}", mount.name),
            )
        })?;
        if !mount.mount_path.starts_with('/') || mount.mount_path.split('/').any(|p| p == "..") {
            return Err(invalid(
                &field(&format!("volumeMounts[{mount_index}].mountPath")),
                format!(
                    "{:?} must be an absolute path without '..'",
                    mount.mount_path
                ),
            ));
        }
        binds.push((
            source.clone(),
            mount.mount_path.clone(),
            mount.read_only.unwrap_or(false),
        ));
    }
    let mut probes = Vec::new();
    for (name, probe, kind) in [
        ("startupProbe", &container.startup_probe, Kind::Startup),
        ("livenessProbe", &container.liveness_probe, Kind::Liveness),
        (
            "readinessProbe",
            &container.readiness_probe,
            Kind::Readiness,
        ),
    ] {
        if let Some(probe) = probe {
            probes.push(
                ProbeSpec::parse(probe, kind).map_err(|reason| invalid(&field(name), reason))?,
            );
        }
    }
    let lifecycle = container.lifecycle.as_ref();
    let hook = |name: &str, handler: Option<&LifecycleHandler>| {
        handler
            .map(|h| Handler::parse(h, grace_seconds))
            .transpose()
            .map_err(|reason| invalid(&field(&format!("lifecycle.{name}")), reason))
    };
    let post_start = hook("postStart", lifecycle.and_then(|l| l.post_start.as_ref()))?;
    let pre_stop = hook("preStop", lifecycle.and_then(|l| l.pre_stop.as_ref()))?;
    Ok(ContainerSpec {
        name: container.name.clone(),
        kind,
        image,
        program,
        args: command,
        env,
        working_dir: container
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".to_owned()),
        binds,
        probes,
        post_start,
        pre_stop,
        manifest: container.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, Lifecycle, Probe};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn named(name: &str) -> Container {
        Container {
            name: name.to_owned(),
            image: Some(crate::AGENT_IMAGE.to_owned()),
            ..Container::default()
        }
    }

    fn sidecar(name: &str) -> Container {
        Container {
            restart_policy: Some("Always".to_owned()),
            ..named(name)
        }
    }

    fn pod(init: Vec<Container>, containers: Vec<Container>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(init),
                containers,
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    /// The field and reason the runtime refuses `pod` with, if it does.
    fn refusal(pod: &Pod) -> Option<(String, String)> {
        let invalid = |field: &str, reason: String| RuntimeError::InvalidPod {
            pod: "p".to_owned(),
            field: field.to_owned(),
            reason,
        };
        match read_pod(pod, &invalid) {
            Ok(_) => None,
            Err(RuntimeError::InvalidPod { field, reason, .. }) => Some((field, reason)),
            Err(other) => panic!("not a refusal: {other}"),
        }
    }

    fn probe() -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(vec!["/podcheck-agent".to_owned()]),
            }),
            ..Probe::default()
        }
    }

    #[test]
    fn init_containers_and_sidecars_are_accepted_and_told_apart() {
        let mut side = sidecar("side");
        side.liveness_probe = Some(probe());
        side.lifecycle = Some(Lifecycle::default());
        let pod = pod(vec![named("init"), side.clone()], vec![named("app")]);
        assert_eq!(refusal(&pod), None);
        assert_eq!(init_kind(&named("init")), ContainerKind::Init);
        assert_eq!(init_kind(&side), ContainerKind::Sidecar);
    }

    #[test]
    fn probes_and_hooks_on_an_init_container_that_is_no_sidecar_are_refused() {
        let forbidden =
            "Forbidden: may not be set for init containers without restartPolicy=Always";
        let with = |edit: fn(&mut Container)| {
            let mut init = named("init");
            edit(&mut init);
            pod(vec![named("first"), init], vec![named("app")])
        };
        for (edit, field) in [
            (
                (|c: &mut Container| c.lifecycle = Some(Lifecycle::default()))
                    as fn(&mut Container),
                "lifecycle",
            ),
            (|c| c.liveness_probe = Some(probe()), "livenessProbe"),
            (|c| c.readiness_probe = Some(probe()), "readinessProbe"),
            (|c| c.startup_probe = Some(probe()), "startupProbe"),
        ] {
            assert_eq!(
                refusal(&with(edit)),
                Some((
                    format!("spec.initContainers[1].{field}"),
                    forbidden.to_owned()
                ))
            );
        }
    }

    #[test]
    fn an_init_container_restart_policy_other_than_always_is_refused() {
        let mut init = named("init");
        init.restart_policy = Some("OnFailure".to_owned());
        assert_eq!(
            refusal(&pod(vec![init], vec![named("app")])),
            Some((
                "spec.initContainers[0].restartPolicy".to_owned(),
                "Unsupported value: \"OnFailure\": supported values: \"Always\"".to_owned()
            ))
        );
        let mut app = named("app");
        app.restart_policy = Some("Always".to_owned());
        assert_eq!(
            refusal(&pod(vec![], vec![app])),
            Some((
                "spec.containers[0].restartPolicy".to_owned(),
                "Forbidden: may not be set for non-init containers".to_owned()
            ))
        );
    }

    #[test]
    fn container_names_must_be_unique_across_init_and_regular_containers() {
        assert_eq!(
            refusal(&pod(vec![named("a"), sidecar("app")], vec![named("app")])),
            Some((
                "spec.initContainers[1].name".to_owned(),
                "Duplicate value: \"app\"".to_owned()
            ))
        );
        assert_eq!(
            refusal(&pod(vec![named("a"), named("a")], vec![named("app")])),
            Some((
                "spec.initContainers[1].name".to_owned(),
                "Duplicate value: \"a\"".to_owned()
            ))
        );
        assert_eq!(
            refusal(&pod(vec![], vec![named("app"), named("app")])),
            Some((
                "spec.containers[1].name".to_owned(),
                "Duplicate value: \"app\"".to_owned()
            ))
        );
    }
}
