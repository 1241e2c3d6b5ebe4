//! What the runtime takes from a pod's manifest, checked before any process starts.

use crate::errors::RuntimeError;
use crate::hook::Handler;
use crate::image::AGENT_PATH_IN_IMAGE;
use crate::kubelet::{ContainerSetup, RestartPolicy};
use crate::probe::{Kind, ProbeSpec};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, PodSpec};
use std::collections::BTreeMap;
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
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(invalid(
            "spec.initContainers",
            "not supported by the local runtime yet".to_owned(),
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

/// Reads the container at `path` (`spec.containers[0]`, `spec.ephemeralContainers[1]`...).
pub(super) fn container_spec(
    container: &Container,
    path: &str,
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
