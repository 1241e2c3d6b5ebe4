//! The pod fields the oracle models, each with the rules that cover it or the reason it
//! changes nothing a kubelet shows. Every other field of the pod is refused, naming its
//! path: a field the model ignored would leave the scenario half-predicted (a `resources`
//! limit the workload exceeds ends in an OOM kill the prediction never mentions).
//!
//! The check walks the pod as JSON, so a field that a newer k8s-openapi adds is refused
//! until someone lists it here. An empty list or object counts as absent, as it does to
//! the API server (`omitempty`); `null` likewise.
//!
//! A new modelled field: an entry in [`POD_FIELDS`], [`CONTAINER_FIELDS`] or
//! [`PROBE_FIELDS`] with the rules whose predictions depend on it. `podcheck rules` prints
//! the list.

use crate::errors::FieldError;
use crate::rules::RuleId;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::Value;
use std::sync::LazyLock;

/// One modelled field of the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelledField {
    /// The field's path from the pod, `[]` standing for any list index
    /// (`pod.spec.containers[].livenessProbe.periodSeconds`).
    pub path: String,
    /// The rules whose predictions depend on the field; empty when it changes nothing a
    /// kubelet shows.
    pub rules: Vec<RuleId>,
    /// What the field does in the model, or why it changes nothing.
    pub why: &'static str,
    /// A map with free keys (labels): its entries are not checked one by one.
    #[serde(skip)]
    free_keys: bool,
}

/// An entry of the tables below; paths are relative to the table's root.
struct Entry {
    path: &'static str,
    rules: &'static [RuleId],
    why: &'static str,
    free_keys: bool,
}

const fn field(path: &'static str, rules: &'static [RuleId], why: &'static str) -> Entry {
    Entry {
        path,
        rules,
        why,
        free_keys: false,
    }
}

const fn map(path: &'static str, why: &'static str) -> Entry {
    Entry {
        path,
        rules: &[],
        why,
        free_keys: true,
    }
}

const KILL_GRACE: &str = "the grace period of a probe kill; the workload dies of SIGTERM at once, so the kill shows exit 143 whatever the grace (a kubelet never waits less than 2s before SIGKILL)";
const KILL_GRACE_FIELD: &str = "terminationGracePeriodSeconds";
const PROBE_HOST: &str =
    "only absent or empty (the pod IP): another host is refused by the probe model";

/// Fields from the pod's root.
const POD_FIELDS: &[Entry] = &[
    field("apiVersion", &[], "identifies the object as a core/v1 Pod"),
    field("kind", &[], "identifies the object as a core/v1 Pod"),
    field(
        "metadata.name",
        &[],
        "the pod's name: targets name the pod after it",
    ),
    map(
        "metadata.labels",
        "labels select pods for Services and controllers; a kubelet runs a pod the same whatever its labels",
    ),
    field(
        "spec.restartPolicy",
        &[
            RuleId::RestartPolicyAlways,
            RuleId::RestartPolicyOnfailure,
            RuleId::RestartPolicyNever,
            RuleId::PhaseSucceeded,
            RuleId::PhaseFailed,
            RuleId::PhaseAlwaysNeverTerminal,
            RuleId::PhaseOnfailureRestartingRunning,
        ],
        "whether an exited container is started again, and the phase of a pod whose containers stopped",
    ),
    field(
        "spec.terminationGracePeriodSeconds",
        &[
            RuleId::ProbeLivenessRestart,
            RuleId::ProbeStartupFailureRestart,
            RuleId::TerminationDeletionTimestamp,
            RuleId::TerminationGracePeriod,
            RuleId::TerminationPrestopInGrace,
        ],
        "the grace period of a deletion that does not give its own, and of a probe kill (the workload dies of SIGTERM at once unless its behaviour handles it; a kubelet never waits less than 2s before SIGKILL)",
    ),
    field(
        "metadata.finalizers",
        &[RuleId::TerminationFinalizers, RuleId::TerminationForceDelete],
        "a deleted pod's object stays until its last finalizer is removed (the fault schedule's removeFinalizer)",
    ),
];

/// Fields below each of a container's lifecycle hooks (`lifecycle.postStart`,
/// `lifecycle.preStop`); [`HOOK_POINTS`] adds each hook's rules.
const HOOK_FIELDS: &[Entry] = &[
    field(
        "exec.command",
        &[RuleId::HookHandlerExec],
        "only [\"/podcheck-agent\", \"hook\", NAME]: the workload's scripted hook call NAME",
    ),
    field(
        "httpGet.path",
        &[RuleId::HookHandlerHttp],
        "only /hook/NAME: the workload's scripted hook call NAME",
    ),
    field(
        "httpGet.port",
        &[RuleId::HookHandlerHttp],
        "the workload's hook port (its health port) as a number",
    ),
    field(
        "httpGet.scheme",
        &[RuleId::HookHandlerHttp],
        "HTTP: the workload answers hook calls over plain HTTP",
    ),
    field(
        "sleep.seconds",
        &[RuleId::HookHandlerSleep],
        "how long the kubelet pauses",
    ),
    field(
        "tcpSocket.port",
        &[RuleId::HookHandlerTcpRefused],
        "accepted by validation, refused by the kubelet when the hook runs",
    ),
    field(
        "tcpSocket.host",
        &[RuleId::HookHandlerTcpRefused],
        "accepted by validation, refused by the kubelet when the hook runs",
    ),
];

const HOOK_POINTS: &[(&str, &[RuleId])] = &[
    (
        "postStart",
        &[
            RuleId::HookPoststartConcurrent,
            RuleId::HookPoststartRunningAfter,
            RuleId::HookPoststartFailureKills,
        ],
    ),
    (
        "preStop",
        &[
            RuleId::TerminationPrestopFirst,
            RuleId::TerminationPrestopInGrace,
            RuleId::HookPrestopFailureContinues,
            RuleId::HookPrestopCutOff,
        ],
    ),
];

/// Fields below `spec.containers[]`.
const CONTAINER_FIELDS: &[Entry] = &[
    field(
        "name",
        &[],
        "identifies the container: its behaviour and its status are keyed by it",
    ),
    field(
        "ports[].name",
        &[RuleId::ProbeErrorNotFailure, RuleId::ProbeHandlerHttp, RuleId::ProbeHandlerTcp],
        "a probe's named port resolves through it (ResolveContainerPort); a name no port declares is a probe error",
    ),
    field(
        "ports[].containerPort",
        &[RuleId::ProbeHandlerHttp, RuleId::ProbeHandlerTcp],
        "the number a named probe port resolves to; declaring a port opens nothing",
    ),
    field(
        "ports[].protocol",
        &[],
        "ResolveContainerPort matches by name alone, and without a hostPort a kubelet does nothing else with a declared port",
    ),
];

/// Fields only init containers have, beside those of [`CONTAINER_FIELDS`].
const INIT_CONTAINER_FIELDS: &[Entry] = &[field(
    "restartPolicy",
    &[
        RuleId::SidecarStartGate,
        RuleId::SidecarRestartAlways,
        RuleId::SidecarPhaseIgnored,
        RuleId::SidecarStoppedAfterRegular,
        RuleId::SidecarTerminationOrder,
    ],
    "Always makes the init container a native sidecar (KEP-753): the next container waits only until it has started, and it keeps running, restarted whatever the pod's policy",
)];

/// Fields below each of a container's probes; the probe kind's rules ([`PROBE_KINDS`])
/// cover them all.
const PROBE_FIELDS: &[Entry] = &[
    field(
        "exec.command",
        &[RuleId::ProbeHandlerExec],
        "only [\"/podcheck-agent\", \"probe\", ENDPOINT]: another command is refused by the probe model",
    ),
    field(
        "httpGet.path",
        &[RuleId::ProbeHandlerHttp],
        "the health endpoint asked",
    ),
    field(
        "httpGet.port",
        &[RuleId::ProbeHandlerHttp, RuleId::ProbeErrorNotFailure],
        "the port asked: the health port, another (refused connection), or a name no port declares (an error)",
    ),
    field("httpGet.host", &[RuleId::ProbeHandlerHttp], PROBE_HOST),
    field(
        "httpGet.scheme",
        &[RuleId::ProbeHandlerHttp],
        "HTTP: HTTPS is refused by the probe model",
    ),
    field(
        "httpGet.httpHeaders[].name",
        &[],
        "the workload's answers do not depend on request headers",
    ),
    field(
        "httpGet.httpHeaders[].value",
        &[],
        "the workload's answers do not depend on request headers",
    ),
    field(
        "tcpSocket.port",
        &[RuleId::ProbeHandlerTcp, RuleId::ProbeErrorNotFailure],
        "the port connected to: a listener of the workload, another (refused), or a name no port declares (an error)",
    ),
    field("tcpSocket.host", &[RuleId::ProbeHandlerTcp], PROBE_HOST),
    field(
        "grpc.port",
        &[RuleId::ProbeHandlerGrpc],
        "the port of the workload's grpc.health.v1 server, or another (no server)",
    ),
    field(
        "grpc.service",
        &[RuleId::ProbeHandlerGrpc],
        "the service whose health is asked",
    ),
    field(
        "initialDelaySeconds",
        &[RuleId::ProbeInitialDelay],
        "no probe before this long after the container started",
    ),
    field(
        "timeoutSeconds",
        &[RuleId::ProbeTimeout],
        "a slower answer is a failure",
    ),
    field(
        "periodSeconds",
        &[],
        "the probe worker's tick, from which every threshold crossing is timed",
    ),
    field(
        "successThreshold",
        &[],
        "consecutive successes that make a readiness probe succeed (1 for the other kinds)",
    ),
    field(
        "failureThreshold",
        &[],
        "consecutive failures that make the probe fail",
    ),
    field(KILL_GRACE_FIELD, &[], KILL_GRACE),
];

/// A container's probes and the rules that cover what each does.
const PROBE_KINDS: &[(&str, &[RuleId])] = &[
    (
        "startupProbe",
        &[
            RuleId::ProbeStartupStarted,
            RuleId::ProbeStartupGates,
            RuleId::ProbeStartupFailureRestart,
        ],
    ),
    (
        "livenessProbe",
        &[
            RuleId::ProbeLivenessFailureThreshold,
            RuleId::ProbeLivenessRestart,
        ],
    ),
    (
        "readinessProbe",
        &[
            RuleId::ProbeReadinessInitialFailure,
            RuleId::ProbeReadinessTransitions,
            RuleId::ProbeReadinessNoRestart,
        ],
    ),
];

const SCHEDULING: &str = "scheduling decides which node runs the pod and whether any does (the pod stays Pending with PodScheduled False)";
const NAMES: &str = "the sandbox's host name and DNS settings, which a kubelet can fail the sandbox's creation over (setHostnameAsFQDN with a name over 64 characters)";
const IMAGE: &str = "targets run the agent image in every container; a kubelet would pull and run the image this names, and a missing image ends in ErrImagePull, ImagePullBackOff or (pull policy Never) ErrImageNeverPull";
const PROCESS: &str = "targets run the agent as every container's process, told its behaviour through the environment; a kubelet would run this instead, and a reference to a missing ConfigMap or Secret keeps the container Waiting with CreateContainerConfigError";
const SERVER_SET: &str =
    "set by the API server, never by a manifest; targets create the pod afresh";

/// Fields a kubelet or the API server acts on that the model does not, with what they do.
/// A field not listed here is refused all the same, with a general reason.
const UNMODELLED: &[(&str, &str)] = &[
    ("metadata.annotations", "some annotations change what a kubelet does (static and mirror pods, kubernetes.io/config.*, AppArmor and seccomp profiles)"),
    ("metadata.namespace", "targets choose the namespace their pods run in"),
    ("metadata.generateName", "targets name the pod after metadata.name or the scenario"),
    ("metadata.ownerReferences", "the garbage collector deletes the pod with its owner; deletion is not modelled"),
    ("metadata.uid", SERVER_SET),
    ("metadata.resourceVersion", SERVER_SET),
    ("metadata.creationTimestamp", SERVER_SET),
    ("metadata.deletionTimestamp", SERVER_SET),
    ("metadata.deletionGracePeriodSeconds", SERVER_SET),
    ("metadata.generation", SERVER_SET),
    ("metadata.managedFields", SERVER_SET),
    ("metadata.selfLink", SERVER_SET),
    ("status", "the status is the kubelet's to write: the API server drops one given on create"),
    ("spec.ephemeralContainers", "ephemeral containers are added to a running pod through its subresource and have statuses of their own"),
    ("spec.readinessGates", "the Ready condition also waits for each gate's condition, which something outside the kubelet sets"),
    ("spec.activeDeadlineSeconds", "a kubelet kills the pod's containers once the deadline has passed and fails the pod with reason DeadlineExceeded"),
    ("spec.volumes", "volume set-up can keep containers Waiting in ContainerCreating, and targets add a state volume of their own"),
    ("spec.hostNetwork", "the pod shares the node's network: the pod IP is the node's and the workload's health ports meet the node's listeners"),
    ("spec.hostPID", "the containers share the node's PID namespace"),
    ("spec.hostIPC", "the containers share the node's IPC namespace"),
    ("spec.hostUsers", "user namespaces change which IDs the processes run as"),
    ("spec.shareProcessNamespace", "the containers share one PID namespace with the sandbox as PID 1, which changes how signals reach each process"),
    ("spec.securityContext", "run-as users, sysctls and profiles can keep containers from starting (CreateContainerConfigError, SysctlForbidden) or change what they may do"),
    ("spec.resources", "pod-level requests and limits set status.qosClass and the pod cgroup's limits, over which the kernel OOM-kills"),
    ("spec.overhead", "added to the pod cgroup's limits"),
    ("spec.runtimeClassName", "selects the container runtime handler; one the node lacks fails the sandbox's creation"),
    ("spec.os", "a kubelet on another operating system rejects the pod"),
    ("spec.nodeName", SCHEDULING),
    ("spec.nodeSelector", SCHEDULING),
    ("spec.affinity", SCHEDULING),
    ("spec.tolerations", SCHEDULING),
    ("spec.topologySpreadConstraints", SCHEDULING),
    ("spec.schedulerName", SCHEDULING),
    ("spec.schedulingGates", SCHEDULING),
    ("spec.priority", SCHEDULING),
    ("spec.priorityClassName", SCHEDULING),
    ("spec.preemptionPolicy", SCHEDULING),
    ("spec.workloadRef", SCHEDULING),
    ("spec.resourceClaims", "the containers wait for their dynamically allocated resources"),
    ("spec.dnsPolicy", NAMES),
    ("spec.dnsConfig", NAMES),
    ("spec.hostAliases", NAMES),
    ("spec.hostname", NAMES),
    ("spec.hostnameOverride", NAMES),
    ("spec.subdomain", NAMES),
    ("spec.setHostnameAsFQDN", NAMES),
    ("spec.imagePullSecrets", IMAGE),
    ("spec.serviceAccount", "the service account whose token volume the API server mounts into every container; a missing account keeps the pod from being created"),
    ("spec.serviceAccountName", "the service account whose token volume the API server mounts into every container; a missing account keeps the pod from being created"),
    ("spec.automountServiceAccountToken", "adds or removes the service-account token volume in every container"),
    ("spec.enableServiceLinks", PROCESS),
    ("spec.containers[].image", IMAGE),
    ("spec.containers[].imagePullPolicy", IMAGE),
    ("spec.containers[].command", PROCESS),
    ("spec.containers[].args", PROCESS),
    ("spec.containers[].env", PROCESS),
    ("spec.containers[].envFrom", PROCESS),
    ("spec.containers[].workingDir", PROCESS),
    ("spec.containers[].resources", "a kubelet derives status.qosClass from requests and limits, and the kernel OOM-kills a container over its memory limit (reason OOMKilled)"),
    ("spec.containers[].resizePolicy", "whether resizing the container's resources restarts it"),
    ("spec.containers[].securityContext", "run-as users, capabilities and a read-only root can keep the container from starting (CreateContainerConfigError) or change what its process may do"),
    ("spec.containers[].lifecycle.postStart.httpGet", "the kubelet calls an httpGet postStart hook once, right after the start, without a retry: whether the entrypoint listens by then is a race (PostStart runs concurrently with the entrypoint), so it has no single prediction; an exec handler retries until the workload listens"),
    ("spec.containers[].restartPolicy", "a container's own restart policy (sidecars) overrides the pod's"),
    ("spec.containers[].restartPolicyRules", "per-exit-code restart rules override the pod's restart policy"),
    ("spec.containers[].volumeMounts", "a mount of a volume that cannot be set up keeps the container Waiting; targets add a mount of their own"),
    ("spec.containers[].volumeDevices", "a device of a volume that cannot be set up keeps the container Waiting"),
    ("spec.containers[].terminationMessagePath", "the terminated state's message is read from this file"),
    ("spec.containers[].terminationMessagePolicy", "with FallbackToLogsOnError the terminated state's message is the tail of the log"),
    ("spec.containers[].stdin", "an open stdin changes what the process reads and when it sees end of file"),
    ("spec.containers[].stdinOnce", "stdin closes after the first attach, and a process reading it then sees end of file"),
    ("spec.containers[].tty", "a terminal changes how the process's output is written"),
    ("spec.containers[].ports[].hostPort", "a host port is bound on the node and clashes with other pods' (the scheduler keeps the pod off such nodes)"),
    ("spec.containers[].ports[].hostIP", "binds a host port on one of the node's addresses"),
];

/// Every modelled field, in the order `podcheck rules` prints them.
pub fn modelled_fields() -> &'static [ModelledField] {
    static FIELDS: LazyLock<Vec<ModelledField>> = LazyLock::new(|| {
        let entry = |prefix: &str, entry: &Entry, extra_rules: &[RuleId]| {
            let mut rules: Vec<RuleId> = extra_rules.iter().chain(entry.rules).copied().collect();
            rules.sort();
            rules.dedup();
            ModelledField {
                path: format!("pod.{prefix}{}", entry.path),
                rules,
                why: entry.why,
                free_keys: entry.free_keys,
            }
        };
        let mut fields: Vec<ModelledField> = POD_FIELDS.iter().map(|e| entry("", e, &[])).collect();
        // Init containers have the fields of a container; probes and hooks only on a
        // sidecar (`restartPolicy: Always`), which validation checks first.
        for list in ["containers", "initContainers"] {
            let container = format!("spec.{list}[].");
            fields.extend(CONTAINER_FIELDS.iter().map(|e| entry(&container, e, &[])));
            for (probe, kind_rules) in PROBE_KINDS {
                let prefix = format!("{container}{probe}.");
                fields.extend(
                    PROBE_FIELDS
                        .iter()
                        // A readiness probe kills nothing: the API server refuses its grace.
                        .filter(|e| !(*probe == "readinessProbe" && e.path == KILL_GRACE_FIELD))
                        .map(|e| entry(&prefix, e, kind_rules)),
                );
            }
            for (point, point_rules) in HOOK_POINTS {
                let prefix = format!("{container}lifecycle.{point}.");
                fields.extend(
                    HOOK_FIELDS
                        .iter()
                        // An httpGet PostStart races the entrypoint's listener (UNMODELLED).
                        .filter(|e| !(*point == "postStart" && e.path.starts_with("httpGet.")))
                        .map(|e| entry(&prefix, e, point_rules)),
                );
            }
        }
        fields.extend(
            INIT_CONTAINER_FIELDS
                .iter()
                .map(|e| entry("spec.initContainers[].", e, &[])),
        );
        fields
    });
    &FIELDS
}

/// Refuses the first field of `pod` the oracle does not model, naming its path.
pub fn check_pod(pod: &Pod) -> Result<(), FieldError> {
    let value = serde_json::to_value(pod).map_err(|err| {
        FieldError::new(
            "pod",
            format!("cannot be read back as JSON to check its fields: {err}"),
        )
    })?;
    match first_unmodelled(&value) {
        Some((path, pattern)) => Err(FieldError::new(path, refusal(&pattern))),
        None => Ok(()),
    }
}

/// Refuses the first field of the pod as written (before k8s-openapi read it) that is not
/// modelled. Run after [`check_pod`] passed on the parsed pod, what it finds is a field
/// k8s-openapi does not know and dropped: a misspelt field, or one newer than the API
/// version podcheck reads.
pub fn check_written_pod(written: &Value) -> Result<(), FieldError> {
    match first_unmodelled(written) {
        Some((path, pattern)) if lookup_unmodelled(&pattern).is_some() => {
            Err(FieldError::new(path, refusal(&pattern)))
        }
        Some((path, _)) => Err(FieldError::new(
            path,
            "unknown field: not part of a core/v1 Pod as podcheck reads it, so it would be dropped silently (the API server's strict field validation, kubectl's default, refuses it too)",
        )),
        None => Ok(()),
    }
}

fn refusal(pattern: &str) -> String {
    let what = lookup_unmodelled(pattern).unwrap_or(
        "the field is not in the oracle's list of modelled fields (`podcheck rules` prints it)",
    );
    format!("not modelled by the oracle: {what}; the scenario would be half-predicted")
}

fn lookup_unmodelled(pattern: &str) -> Option<&'static str> {
    if modelled_fields().iter().any(|field| field.path == pattern) {
        return None;
    }
    let relative = pattern.strip_prefix("pod.")?;
    // An init container's field does what the same field of a container does.
    let as_container = relative
        .strip_prefix("spec.initContainers[]")
        .map(|rest| format!("spec.containers[]{rest}"));
    let relative = as_container.as_deref().unwrap_or(relative);
    UNMODELLED
        .iter()
        .find(|(path, _)| *path == relative)
        .map(|(_, what)| *what)
}

/// The first present field of `pod` (as its path and its pattern) that is neither a
/// modelled field nor on the way to one.
fn first_unmodelled(pod: &Value) -> Option<(String, String)> {
    walk(pod, "pod", "pod")
}

fn walk(value: &Value, path: &str, pattern: &str) -> Option<(String, String)> {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                if is_absent(member) {
                    continue;
                }
                let path = format!("{path}.{key}");
                let pattern = format!("{pattern}.{key}");
                match classify(&pattern) {
                    Listing::Refused => return Some((path, pattern)),
                    Listing::FreeKeys => continue,
                    Listing::Modelled => {}
                }
                if let Some(found) = walk(member, &path, &pattern) {
                    return Some(found);
                }
            }
            None
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            walk(item, &format!("{path}[{index}]"), &format!("{pattern}[]"))
        }),
        _ => None,
    }
}

/// Empty lists and objects are the same as absent ones to the API server.
fn is_absent(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(members) => members.is_empty(),
        _ => false,
    }
}

enum Listing {
    /// A modelled field, or an object or list that holds some.
    Modelled,
    /// A modelled map whose entries are not checked.
    FreeKeys,
    Refused,
}

fn classify(pattern: &str) -> Listing {
    let mut listing = Listing::Refused;
    for field in modelled_fields() {
        if field.path == pattern {
            return if field.free_keys {
                Listing::FreeKeys
            } else {
                Listing::Modelled
            };
        }
        let holds = field
            .path
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['));
        if holds {
            listing = Listing::Modelled;
        }
    }
    listing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scenario;

    /// A valid scenario of one container `app` whose container carries `extra` (YAML
    /// mapping entries at the container's indentation), with `spec_extra` in the pod spec.
    fn scenario_yaml(container_extra: &str, spec_extra: &str) -> String {
        format!(
            "name: x\npod:\n  metadata:\n    name: x\n  spec:\n{spec_extra}    containers:\n      - name: app\n{container_extra}behaviours:\n  app: {{then: forever}}\n"
        )
    }

    fn refused_field(yaml: &str) -> Option<(String, String)> {
        match Scenario::from_yaml("x.yaml", yaml) {
            Err(crate::ScenarioError::Invalid { field, reason, .. }) => Some((field, reason)),
            Ok(_) => None,
            Err(other) => panic!("not a field error: {other}\n{yaml}"),
        }
    }

    #[test]
    fn each_unmodelled_container_field_is_refused_naming_its_path() {
        for (extra, field) in [
            ("        image: busybox\n", "image"),
            ("        imagePullPolicy: Never\n", "imagePullPolicy"),
            ("        command: [sleep, '10']\n", "command"),
            ("        args: ['10']\n", "args"),
            ("        env: [{name: A, value: b}]\n", "env"),
            ("        resources: {limits: {memory: 64Mi}}\n", "resources"),
            (
                "        securityContext: {runAsUser: 1000}\n",
                "securityContext",
            ),
            (
                "        lifecycle: {preStop: {httpGet: {path: /hook/x, port: 8080, httpHeaders: [{name: a, value: b}]}}}\n",
                "lifecycle.preStop.httpGet.httpHeaders",
            ),
            (
                "        lifecycle: {postStart: {httpGet: {path: /hook/x, port: 8080}}}\n",
                "lifecycle.postStart.httpGet",
            ),
            (
                "        volumeMounts: [{name: v, mountPath: /v}]\n",
                "volumeMounts",
            ),
            (
                "        terminationMessagePolicy: FallbackToLogsOnError\n",
                "terminationMessagePolicy",
            ),
            ("        tty: true\n", "tty"),
            ("        restartPolicy: Always\n", "restartPolicy"),
            (
                "        ports: [{containerPort: 80, hostPort: 8080}]\n",
                "ports[0].hostPort",
            ),
        ] {
            let (named, reason) = refused_field(&scenario_yaml(extra, ""))
                .unwrap_or_else(|| panic!("{field} was accepted"));
            assert_eq!(named, format!("pod.spec.containers[0].{field}"));
            assert!(
                reason.starts_with("not modelled by the oracle: ")
                    && reason.ends_with("; the scenario would be half-predicted"),
                "{field}: {reason}"
            );
        }
    }

    #[test]
    fn each_unmodelled_pod_field_is_refused_naming_its_path() {
        for (extra, field) in [
            ("    hostNetwork: true\n", "spec.hostNetwork"),
            (
                "    activeDeadlineSeconds: 30\n",
                "spec.activeDeadlineSeconds",
            ),
            (
                "    readinessGates: [{conditionType: x}]\n",
                "spec.readinessGates",
            ),
            ("    volumes: [{name: v, emptyDir: {}}]\n", "spec.volumes"),
            (
                "    securityContext: {runAsUser: 1000}\n",
                "spec.securityContext",
            ),
            ("    nodeName: elsewhere\n", "spec.nodeName"),
            (
                "    shareProcessNamespace: true\n",
                "spec.shareProcessNamespace",
            ),
        ] {
            let named = refused_field(&scenario_yaml("", extra)).map(|(field, _)| field);
            assert_eq!(named, Some(format!("pod.{field}")));
        }
        let annotated = "name: x\npod:\n  metadata:\n    annotations: {a: b}\n  spec:\n    containers: [{name: app}]\nbehaviours:\n  app: {then: forever}\n";
        assert_eq!(
            refused_field(annotated).map(|(field, _)| field).as_deref(),
            Some("pod.metadata.annotations")
        );
    }

    #[test]
    fn resources_are_refused_for_what_a_kubelet_does_with_them() {
        let (_, reason) = refused_field(&scenario_yaml(
            "        resources: {requests: {cpu: 100m}}\n",
            "",
        ))
        .expect("refused");
        assert!(
            reason.contains("qosClass") && reason.contains("OOMKilled"),
            "{reason}"
        );
    }

    #[test]
    fn a_field_k8s_openapi_does_not_know_is_refused_not_dropped() {
        let (field, reason) = refused_field(&scenario_yaml(
            "        readinesProbe: {periodSeconds: 1}\n",
            "",
        ))
        .expect("a misspelt probe must not be dropped silently");
        assert_eq!(field, "pod.spec.containers[0].readinesProbe");
        assert!(reason.starts_with("unknown field"), "{reason}");
    }

    #[test]
    fn empty_values_count_as_absent() {
        let yaml = scenario_yaml(
            "        resources: {}\n        env: []\n",
            "    volumes: []\n",
        );
        assert_eq!(refused_field(&yaml), None);
    }

    #[test]
    fn every_modelled_field_is_accepted() {
        // One container per probe handler, each with all three probes and every field.
        let handlers = [
            ("http", 8080, "httpGet: {path: /live, port: health, host: '', scheme: HTTP, httpHeaders: [{name: X-A, value: b}]}"),
            ("tcp", 8081, "tcpSocket: {port: 9001, host: ''}"),
            ("grpc", 8082, "grpc: {port: 9090, service: live}"),
            ("exec", 8083, "exec: {command: [/podcheck-agent, probe, live]}"),
        ];
        let mut containers = String::new();
        let mut behaviours = String::new();
        for (name, port, handler) in handlers {
            containers.push_str(&format!(
                "      - name: {name}\n        ports: [{{name: health, containerPort: {port}, protocol: TCP}}]\n"
            ));
            let hooks = match name {
                "http" => (
                    "preStop: {exec: {command: [/podcheck-agent, hook, drain]}}",
                    "\n    hooks: {drain: {takes: 1s}}",
                ),
                "tcp" => (
                    "preStop: {httpGet: {path: /hook/drain, port: 8081, scheme: HTTP}}",
                    "\n    hooks: {drain: {}}",
                ),
                "grpc" => ("preStop: {sleep: {seconds: 2}}", ""),
                _ => ("preStop: {tcpSocket: {port: 8083, host: ''}}", ""),
            };
            containers.push_str(&format!("        lifecycle: {{{}}}\n", hooks.0));
            for (kind, extra) in [
                (
                    "livenessProbe",
                    "successThreshold: 1, terminationGracePeriodSeconds: 5",
                ),
                ("readinessProbe", "successThreshold: 2"),
                (
                    "startupProbe",
                    "successThreshold: 1, terminationGracePeriodSeconds: 5",
                ),
            ] {
                containers.push_str(&format!(
                    "        {kind}: {{{handler}, initialDelaySeconds: 1, timeoutSeconds: 1, periodSeconds: 3, failureThreshold: 3, {extra}}}\n"
                ));
            }
            let extra_ports = match name {
                "tcp" => ", tcpPort: 9001",
                _ => "",
            };
            let grpc = if name == "grpc" {
                ", grpcPort: 9090"
            } else {
                ""
            };
            behaviours.push_str(&format!(
                "  {name}:\n    then: forever\n    health: {{port: {port}{grpc}, endpoints: {{live: {{answers: [{{answer: ok}}]{extra_ports}}}}}}}{}\n",
                hooks.1
            ));
        }
        // PostStart hooks, one handler each, on containers without probes.
        for (name, port, hook, behaviour) in [
            (
                "ps-exec",
                8090,
                "exec: {command: [/podcheck-agent, hook, up]}",
                "hooks: {up: {takes: 1s}}",
            ),
            ("ps-sleep", 8092, "sleep: {seconds: 1}", "hooks: {up: {}}"),
            (
                "ps-tcp",
                8093,
                "tcpSocket: {port: 8093, host: ''}",
                "hooks: {up: {}}",
            ),
        ] {
            containers.push_str(&format!(
                "      - name: {name}\n        lifecycle: {{postStart: {{{hook}}}}}\n"
            ));
            behaviours.push_str(&format!(
                "  {name}:\n    then: forever\n    health: {{port: {port}, endpoints: {{live: {{answers: [{{answer: ok}}]}}}}}}\n    {behaviour}\n"
            ));
        }
        // The same containers again as sidecars, which may carry probes and hooks, on
        // ports of their own.
        let shift_ports = |text: &str| {
            let mut shifted = text.to_owned();
            for port in [8080, 8081, 8082, 8083, 8090, 8092, 8093, 9001, 9090] {
                shifted = shifted.replace(&port.to_string(), &(port + 100).to_string());
            }
            shifted
        };
        let init_containers = shift_ports(&containers).replace(
            "      - name: ",
            "      - restartPolicy: Always\n        name: i-",
        );
        let mut init_behaviours = shift_ports(&behaviours);
        for name in [
            "http", "tcp", "grpc", "exec", "ps-exec", "ps-sleep", "ps-tcp",
        ] {
            init_behaviours =
                init_behaviours.replace(&format!("\n  {name}:\n"), &format!("\n  i-{name}:\n"));
            if init_behaviours.starts_with(&format!("  {name}:\n")) {
                init_behaviours = format!("  i-{}", &init_behaviours[2..]);
            }
        }
        let yaml = format!(
            "name: x\npod:\n  apiVersion: v1\n  kind: Pod\n  metadata:\n    name: x\n    labels: {{team: a, app.kubernetes.io/name: b}}\n    finalizers: [podcheck.io/hold]\n  spec:\n    restartPolicy: OnFailure\n    terminationGracePeriodSeconds: 10\n    initContainers:\n{init_containers}    containers:\n{containers}behaviours:\n{behaviours}{init_behaviours}"
        );
        let scenario = Scenario::from_yaml("x.yaml", &yaml);
        assert!(scenario.is_ok(), "{scenario:?}\n{yaml}");
        // Every listed field is present in the scenario above, so the test covers the list.
        let written: Value = serde_saphyr::from_str(&yaml).expect("yaml");
        let mut present = std::collections::BTreeSet::new();
        collect_patterns(&written["pod"], "pod", &mut present);
        for field in modelled_fields() {
            assert!(
                present.contains(&field.path),
                "{} is listed but not exercised",
                field.path
            );
        }
    }

    fn collect_patterns(
        value: &Value,
        pattern: &str,
        into: &mut std::collections::BTreeSet<String>,
    ) {
        into.insert(pattern.to_owned());
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    collect_patterns(member, &format!("{pattern}.{key}"), into);
                }
            }
            Value::Array(items) => {
                for item in items {
                    collect_patterns(item, &format!("{pattern}[]"), into);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn api_server_errors_come_before_not_modelled() {
        // An invalid probe on the second container is reported as Kubernetes would,
        // although the first container carries an unmodelled field.
        let yaml = "name: x\npod:\n  spec:\n    containers:\n      - {name: a, image: busybox}\n      - name: b\n        livenessProbe: {periodSeconds: 1}\nbehaviours:\n  a: {then: forever}\n  b: {then: forever}\n";
        assert_eq!(
            refused_field(yaml).map(|(field, _)| field).as_deref(),
            Some("pod.spec.containers[1].livenessProbe")
        );
    }

    #[test]
    fn every_listed_field_names_rules_or_a_reason_and_unmodelled_ones_are_not_listed() {
        for field in modelled_fields() {
            assert!(!field.why.is_empty(), "{}", field.path);
            assert!(
                lookup_unmodelled(&field.path).is_none(),
                "{} is both modelled and refused",
                field.path
            );
        }
        for (path, _) in UNMODELLED {
            assert!(
                matches!(classify(&format!("pod.{path}")), Listing::Refused),
                "pod.{path} is listed as unmodelled but accepted"
            );
        }
    }
}
