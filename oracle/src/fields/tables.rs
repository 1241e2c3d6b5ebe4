//! The tables of modelled fields, each with the rules that cover it or why it changes
//! nothing, and of the unmodelled fields a kubelet or the API server acts on, with what they do.

use crate::rules::RuleId;
use serde::Serialize;
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
    pub(super) free_keys: bool,
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
pub(super) const UNMODELLED: &[(&str, &str)] = &[
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
