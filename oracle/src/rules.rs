//! The rules catalogue: every statement the oracle predicts, with its sources.
//!
//! Ids are stable: suites, predictions, violations and reports all speak in them.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub statement: &'static str,
    /// Seed section first, then the Kubernetes documentation and kubelet source that decide.
    pub sources: &'static [&'static str],
}

const SEED_PHASES: &str = "seed: Pod Lifecycle / Pod Phases";
const SEED_CONDITIONS: &str = "seed: Pod Lifecycle / Pod Conditions";
const SEED_STATES: &str = "seed: Pod Lifecycle / Container States";
const SEED_RESTART: &str = "seed: Pod Lifecycle / Restart Policies";
const SEED_CRASHLOOP: &str = "seed: Interview Gotchas / 2. CrashLoopBackOff";
const DOC_LIFECYCLE: &str = "https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/";
const GET_PHASE: &str = "kubernetes pkg/kubelet/kubelet_pods.go getPhase";
const CONVERT_STATUSES: &str =
    "kubernetes pkg/kubelet/kubelet_pods.go convertToAPIContainerStatuses";
const GENERATE: &str = "kubernetes pkg/kubelet/status/generate.go";
const DO_BACK_OFF: &str = "kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff";
const FLOWCONTROL: &str = "client-go util/flowcontrol/backoff.go Next, IsInBackOffSince";
const NEW_BACK_OFF: &str =
    "kubernetes pkg/kubelet/kubelet.go newCrashLoopBackOff, crashLoopBackOff.HasExpiredFunc";
const POD_WORKERS: &str =
    "kubernetes pkg/kubelet/pod_workers.go completeWork (requeue after a back-off error)";
const PROBER_MANAGER: &str = "kubernetes pkg/kubelet/prober/prober_manager.go UpdatePodStatus";
const SHOULD_RESTART: &str =
    "kubernetes pkg/kubelet/container/helpers.go ShouldContainerBeRestarted";
const CONTAINERD_REASON: &str =
    "containerd internal/cri/server/container_status.go toCRIContainerStatus (Completed/Error)";

const SEED_PROBES: &str = "seed: Probes";
const SEED_TUNING: &str = "seed: Tuning Probes";
const SEED_READINESS_GOTCHA: &str = "seed: Interview Gotchas / 6. readiness is not liveness";
const DOC_PROBES: &str = "https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/";
const WORKER: &str = "kubernetes pkg/kubelet/prober/worker.go newWorker, run, doProbe";
const PROBER: &str = "kubernetes pkg/kubelet/prober/prober.go runProbe, runProbeWithRetries";
const COMPUTE_ACTIONS: &str =
    "kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go computePodActions";
const FIDELITY_PROBES: &str = "podcheck docs/fidelity/probes.md";

pub const CATALOGUE: &[Rule] = &[
    Rule {
        id: "phase.pending",
        statement: "A pod is Pending while one of its containers has not started yet (Waiting without a previous termination).",
        sources: &[SEED_PHASES, DOC_LIFECYCLE, GET_PHASE],
    },
    Rule {
        id: "phase.running",
        statement: "A pod is Running once all its containers have started and at least one is running, or while a restart policy will restart its stopped containers.",
        sources: &[SEED_PHASES, DOC_LIFECYCLE, GET_PHASE],
    },
    Rule {
        id: "phase.succeeded",
        statement: "A pod whose containers all terminated with exit code 0 and will not be restarted (OnFailure or Never) is Succeeded.",
        sources: &[SEED_PHASES, DOC_LIFECYCLE, GET_PHASE],
    },
    Rule {
        id: "phase.failed",
        statement: "Under restartPolicy Never, a pod whose containers all terminated, at least one with a non-zero exit code, is Failed.",
        sources: &[SEED_PHASES, DOC_LIFECYCLE, GET_PHASE],
    },
    Rule {
        id: "phase.always-never-terminal",
        statement: "Under restartPolicy Always a pod never reaches Succeeded or Failed by its containers exiting: while all are stopped it stays Running.",
        sources: &[SEED_RESTART, GET_PHASE],
    },
    Rule {
        id: "phase.onfailure-restarting-running",
        statement: "Under restartPolicy OnFailure a pod whose stopped containers include a failed one that will be restarted stays Running.",
        sources: &[SEED_RESTART, GET_PHASE],
    },
    Rule {
        id: "phase.terminal-never-left",
        statement: "Once a pod is Succeeded or Failed it never changes phase again.",
        sources: &[DOC_LIFECYCLE, "kubernetes pkg/kubelet/status/status_manager.go checkContainerStateTransition / updateStatusInternal"],
    },
    Rule {
        id: "container.state.waiting.creating",
        statement: "Before its first start a container is Waiting with reason ContainerCreating.",
        sources: &[SEED_STATES, CONVERT_STATUSES],
    },
    Rule {
        id: "container.state.running",
        statement: "A started container is Running with a startedAt time, and it starts within moments of the pod's creation.",
        sources: &[SEED_STATES, CONVERT_STATUSES],
    },
    Rule {
        id: "container.runs-to-completion",
        statement: "A container runs until its own process exits: nothing stops it early, and its exit is reported.",
        sources: &[SEED_STATES, DOC_LIFECYCLE],
    },
    Rule {
        id: "container.state.terminated",
        statement: "A container whose process exited is Terminated with that exit code, reason Completed for 0 and Error otherwise, and startedAt/finishedAt.",
        sources: &[SEED_STATES, CONVERT_STATUSES, CONTAINERD_REASON],
    },
    Rule {
        id: "container.state.waiting.crashloop",
        statement: "A container waiting out its restart back-off is Waiting with reason CrashLoopBackOff and the message 'back-off D restarting failed container=...'.",
        sources: &[SEED_CRASHLOOP, CONVERT_STATUSES, DO_BACK_OFF],
    },
    Rule {
        id: "container.last-state",
        statement: "After a restart, lastState holds the previous instance's termination (exit code, reason, times).",
        sources: &[SEED_CRASHLOOP, CONVERT_STATUSES],
    },
    Rule {
        id: "container.restart-count",
        statement: "restartCount counts the container's restarts: it starts at 0, grows by one per new instance and never decreases.",
        sources: &[SEED_CRASHLOOP, CONVERT_STATUSES],
    },
    Rule {
        id: "container.ready.no-probe",
        statement: "A container that is not running is neither started nor ready; without a startup probe a running container is started, and without a readiness probe it is ready exactly while started.",
        sources: &[SEED_CONDITIONS, PROBER_MANAGER],
    },
    Rule {
        id: "restart.policy.always",
        statement: "Under restartPolicy Always a container is restarted after every exit, whatever its exit code.",
        sources: &[SEED_RESTART, SHOULD_RESTART],
    },
    Rule {
        id: "restart.policy.onfailure",
        statement: "Under restartPolicy OnFailure a container is restarted after a non-zero exit and never after exit code 0.",
        sources: &[SEED_RESTART, SHOULD_RESTART],
    },
    Rule {
        id: "restart.policy.never",
        statement: "Under restartPolicy Never a container is never restarted.",
        sources: &[SEED_RESTART, SHOULD_RESTART],
    },
    Rule {
        id: "restart.backoff.first-immediate",
        statement: "The first restart of a container happens without back-off: the back-off entry only exists once a restart has happened.",
        sources: &[SEED_CRASHLOOP, DO_BACK_OFF, FLOWCONTROL, "kubernetes issue #133472 (containers crash twice before back-off applies)"],
    },
    Rule {
        id: "restart.backoff.doubling",
        statement: "Each later restart waits the back-off since the previous exit: 10s, then doubling (20s, 40s, ...), and may come up to the kubelet's requeue delay later.",
        sources: &[SEED_CRASHLOOP, DO_BACK_OFF, FLOWCONTROL, NEW_BACK_OFF, POD_WORKERS],
    },
    Rule {
        id: "restart.backoff.cap",
        statement: "The back-off stops doubling at its maximum (300s by default, the kubelet's crashLoopBackOff.maxContainerRestartPeriod where configured).",
        sources: &[SEED_CRASHLOOP, FLOWCONTROL, NEW_BACK_OFF],
    },
    Rule {
        id: "restart.backoff.reset",
        statement: "A container that ran for more than 600s since its last restart is restarted without back-off, and the back-off starts over at its initial value.",
        sources: &[NEW_BACK_OFF, FLOWCONTROL],
    },
    Rule {
        id: "condition.pod-scheduled",
        statement: "A pod whose containers have started has PodScheduled True.",
        sources: &[SEED_CONDITIONS, GENERATE],
    },
    Rule {
        id: "condition.pod-ready-to-start-containers",
        statement: "PodReadyToStartContainers is True while the pod sandbox exists and False once a terminal pod's sandbox is torn down.",
        sources: &[SEED_CONDITIONS, GENERATE, "kubernetes pkg/kubelet/kuberuntime/util/util.go PodSandboxChanged"],
    },
    Rule {
        id: "condition.initialized",
        statement: "A pod without init containers is Initialized True (reason PodCompleted once Succeeded).",
        sources: &[SEED_CONDITIONS, GENERATE],
    },
    Rule {
        id: "condition.containers-ready",
        statement: "ContainersReady is True exactly when every container is ready; otherwise False with reason ContainersNotReady, or PodCompleted/PodFailed on a terminal pod.",
        sources: &[SEED_CONDITIONS, GENERATE],
    },
    Rule {
        id: "condition.ready",
        statement: "Ready is ContainersReady plus readiness gates: without gates it has the same status and reason, and Ready is never True without ContainersReady.",
        sources: &[SEED_CONDITIONS, GENERATE],
    },
    Rule {
        id: "probe.startup.started",
        statement: "A container with a startup probe is started (status.started) from the first successful startup probe on, never before; without one it is started once running.",
        sources: &[SEED_PROBES, DOC_PROBES, PROBER_MANAGER, WORKER, FIDELITY_PROBES],
    },
    Rule {
        id: "probe.startup.gates",
        statement: "Liveness and readiness probes do not run until the startup probe has succeeded: nothing they find kills the container or makes it ready before.",
        sources: &[SEED_PROBES, DOC_PROBES, WORKER, FIDELITY_PROBES],
    },
    Rule {
        id: "probe.startup.failure-restart",
        statement: "A startup probe that fails failureThreshold times in a row gets the container killed and restarted according to restartPolicy.",
        sources: &[SEED_PROBES, SEED_TUNING, DOC_PROBES, COMPUTE_ACTIONS, WORKER],
    },
    Rule {
        id: "probe.liveness.failure-threshold",
        statement: "A liveness probe kills the container only after failureThreshold consecutive failures, periodSeconds apart: never earlier.",
        sources: &[SEED_PROBES, SEED_TUNING, DOC_PROBES, WORKER],
    },
    Rule {
        id: "probe.liveness.restart",
        statement: "Once liveness fails failureThreshold times in a row the container is killed (SIGTERM, exit 143) and restarted according to restartPolicy and the back-off, with restartCount and lastState showing it.",
        sources: &[SEED_PROBES, DOC_PROBES, COMPUTE_ACTIONS, WORKER, "kubernetes pkg/kubelet/kuberuntime/kuberuntime_container.go killContainer"],
    },
    Rule {
        id: "probe.readiness.initial-failure",
        statement: "A container with a readiness probe is not ready until the probe has succeeded: the readiness result starts as Failure for every new container.",
        sources: &[SEED_PROBES, DOC_PROBES, WORKER, PROBER_MANAGER],
    },
    Rule {
        id: "probe.readiness.transitions",
        statement: "ready turns true after successThreshold consecutive readiness successes and false after failureThreshold consecutive failures; the pod is then Running but not Ready.",
        sources: &[SEED_PROBES, SEED_READINESS_GOTCHA, DOC_PROBES, WORKER, GENERATE],
    },
    Rule {
        id: "probe.readiness.no-restart",
        statement: "A failing readiness probe never kills or restarts the container: it only takes it out of ready (and the pod out of the Service's endpoints).",
        sources: &[SEED_PROBES, SEED_READINESS_GOTCHA, DOC_PROBES, COMPUTE_ACTIONS],
    },
    Rule {
        id: "probe.initial-delay",
        statement: "No probe runs before initialDelaySeconds have passed since the container started (measured from its start, also for liveness and readiness behind a startup probe).",
        sources: &[SEED_PROBES, SEED_TUNING, DOC_PROBES, WORKER],
    },
    Rule {
        id: "probe.timeout",
        statement: "A probe whose answer takes longer than timeoutSeconds fails (an exec probe's command too); a slower answer within the timeout succeeds.",
        sources: &[SEED_PROBES, SEED_TUNING, DOC_PROBES, "kubernetes pkg/probe/http/http.go DoHTTPProbe", "kubernetes pkg/probe/exec/exec.go (ExecProbeTimeout)"],
    },
    Rule {
        id: "probe.error-not-failure",
        statement: "A probe that cannot be run (a named port the container does not declare) is neither a success nor a failure: the result keeps its initial value, so liveness never kills and readiness never turns ready.",
        sources: &[DOC_PROBES, PROBER, WORKER, "kubernetes pkg/probe/util.go ResolveContainerPort", FIDELITY_PROBES],
    },
    Rule {
        id: "probe.handler.http",
        statement: "An httpGet probe succeeds on a status from 200 to 399 and fails on any other status or when nothing answers.",
        sources: &[SEED_PROBES, DOC_PROBES, "kubernetes pkg/probe/http/http.go DoHTTPProbe"],
    },
    Rule {
        id: "probe.handler.tcp",
        statement: "A tcpSocket probe succeeds when a connection to the port is established and fails when it is refused.",
        sources: &[SEED_PROBES, DOC_PROBES, "kubernetes pkg/probe/tcp/tcp.go DoTCPProbe"],
    },
    Rule {
        id: "probe.handler.grpc",
        statement: "A grpc probe calls grpc.health.v1.Health/Check for its service and succeeds exactly when the answer is SERVING; NOT_SERVING, an unknown service or no server is a failure.",
        sources: &[DOC_PROBES, "kubernetes pkg/probe/grpc/grpc.go", "https://github.com/grpc/grpc/blob/master/doc/health-checking.md"],
    },
    Rule {
        id: "probe.handler.exec",
        statement: "An exec probe runs its command inside the container and succeeds exactly when it exits 0.",
        sources: &[SEED_PROBES, DOC_PROBES, "kubernetes pkg/probe/exec/exec.go"],
    },
];

pub fn rule(id: &str) -> Option<&'static Rule> {
    CATALOGUE.iter().find(|rule| rule.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_cited() {
        let mut ids: Vec<_> = CATALOGUE.iter().map(|r| r.id).collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "duplicate rule ids");
        for rule in CATALOGUE {
            assert!(
                rule.sources
                    .iter()
                    .any(|s| s.starts_with("seed:") || s.starts_with("http"))
                    || rule.sources.len() >= 2,
                "{} lacks a source",
                rule.id
            );
            assert!(!rule.statement.is_empty());
        }
    }
}
