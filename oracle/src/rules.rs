//! The rules catalogue: every statement the oracle predicts, with its sources.
//!
//! Ids are stable: suites, predictions, violations and reports all speak in them. In code a
//! rule is a [`RuleId`], never a string, so a misspelt id does not compile; a new rule is a
//! variant below and an entry in [`CATALOGUE`], in the same position.

use crate::errors::UnknownRuleId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

macro_rules! rule_ids {
    ($($variant:ident => $id:literal,)*) => {
        /// A rule of the catalogue. Written, read, shown and ordered as its dotted id.
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub enum RuleId {
            $($variant,)*
        }

        impl RuleId {
            /// Every rule, in catalogue order.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)*];

            /// The stable dotted id, as in suites, predictions, violations and reports.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(RuleId::$variant => $id,)*
                }
            }
        }
    };
}

rule_ids! {
    PodAccepted => "pod.accepted",
    PhasePending => "phase.pending",
    PhaseRunning => "phase.running",
    PhaseSucceeded => "phase.succeeded",
    PhaseFailed => "phase.failed",
    PhaseAlwaysNeverTerminal => "phase.always-never-terminal",
    PhaseOnfailureRestartingRunning => "phase.onfailure-restarting-running",
    PhaseTerminalNeverLeft => "phase.terminal-never-left",
    ContainerStateWaitingCreating => "container.state.waiting.creating",
    ContainerStateRunning => "container.state.running",
    ContainerRunsToCompletion => "container.runs-to-completion",
    ContainerStateTerminated => "container.state.terminated",
    ContainerStateWaitingCrashloop => "container.state.waiting.crashloop",
    ContainerLastState => "container.last-state",
    ContainerRestartCount => "container.restart-count",
    ContainerReadyNoProbe => "container.ready.no-probe",
    RestartPolicyAlways => "restart.policy.always",
    RestartPolicyOnfailure => "restart.policy.onfailure",
    RestartPolicyNever => "restart.policy.never",
    RestartBackoffFirstImmediate => "restart.backoff.first-immediate",
    RestartBackoffDoubling => "restart.backoff.doubling",
    RestartBackoffCap => "restart.backoff.cap",
    RestartBackoffReset => "restart.backoff.reset",
    RestartBackoffCollected => "restart.backoff.collected",
    RestartBackoffProbeKill => "restart.backoff.probe-kill",
    ConditionPodScheduled => "condition.pod-scheduled",
    ConditionPodReadyToStartContainers => "condition.pod-ready-to-start-containers",
    ConditionInitialized => "condition.initialized",
    ConditionContainersReady => "condition.containers-ready",
    ConditionReady => "condition.ready",
    ProbeStartupStarted => "probe.startup.started",
    ProbeStartupGates => "probe.startup.gates",
    ProbeStartupFailureRestart => "probe.startup.failure-restart",
    ProbeLivenessFailureThreshold => "probe.liveness.failure-threshold",
    ProbeLivenessRestart => "probe.liveness.restart",
    ProbeReadinessInitialFailure => "probe.readiness.initial-failure",
    ProbeReadinessTransitions => "probe.readiness.transitions",
    ProbeReadinessNoRestart => "probe.readiness.no-restart",
    ProbeInitialDelay => "probe.initial-delay",
    ProbeTimeout => "probe.timeout",
    ProbePeriod => "probe.period",
    ProbeErrorNotFailure => "probe.error-not-failure",
    ProbeHandlerHttp => "probe.handler.http",
    ProbeHandlerTcp => "probe.handler.tcp",
    ProbeHandlerGrpc => "probe.handler.grpc",
    ProbeHandlerExec => "probe.handler.exec",
    TerminationDeletionTimestamp => "termination.deletion-timestamp",
    TerminationPrestopFirst => "termination.prestop-before-sigterm",
    TerminationSigterm => "termination.sigterm",
    TerminationGracePeriod => "termination.grace-period",
    TerminationPrestopInGrace => "termination.prestop-counts-in-grace",
    TerminationMinimumGrace => "termination.minimum-grace",
    TerminationNoRestart => "termination.no-restart",
    TerminationPhase => "termination.phase",
    TerminationObjectRemoved => "termination.object-removed",
    TerminationLivenessStops => "termination.liveness-stops",
    TerminationReadinessContinues => "termination.readiness-continues",
    TerminationFinalizers => "termination.finalizers",
    TerminationForceDelete => "termination.force-delete",
    FaultKillContainer => "fault.kill-container",
    HookPrestopFailureContinues => "hook.prestop.failure-continues",
    HookPrestopCutOff => "hook.prestop.cut-off",
    HookPoststartConcurrent => "hook.poststart.concurrent",
    HookPoststartRunningAfter => "hook.poststart.running-after",
    HookPoststartFailureKills => "hook.poststart.failure-kills",
    HookHandlerExec => "hook.handler.exec",
    HookHandlerHttp => "hook.handler.http",
    HookHandlerSleep => "hook.handler.sleep",
    HookHandlerTcpRefused => "hook.handler.tcp-refused",
    InitSequential => "init.sequential",
    InitBeforeRegular => "init.before-regular",
    InitPending => "init.pending",
    InitRetry => "init.retry",
    InitNeverFailsPod => "init.never-fails-pod",
    InitStatus => "init.status",
    SidecarStartGate => "sidecar.start-gate",
    SidecarRestartAlways => "sidecar.restart-always",
    SidecarReadiness => "sidecar.readiness",
    SidecarPhaseIgnored => "sidecar.phase-ignored",
    SidecarStoppedAfterRegular => "sidecar.stopped-after-regular",
    SidecarTerminationOrder => "sidecar.termination-order",
    EphemeralStarted => "ephemeral.started",
    EphemeralNeverRestarted => "ephemeral.never-restarted",
    EphemeralStatus => "ephemeral.status",
    EphemeralTargetNamespace => "ephemeral.target-namespace",
}

impl RuleId {
    /// The catalogue entry: its statement and sources.
    pub fn rule(self) -> &'static Rule {
        &CATALOGUE[self as usize]
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that width and alignment apply as they do to the id as a string.
        f.pad(self.as_str())
    }
}

impl fmt::Debug for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl FromStr for RuleId {
    type Err = UnknownRuleId;

    fn from_str(id: &str) -> Result<RuleId, UnknownRuleId> {
        RuleId::ALL
            .iter()
            .copied()
            .find(|rule| rule.as_str() == id)
            .ok_or_else(|| UnknownRuleId(id.to_owned()))
    }
}

/// Rule ids sort as their dotted ids do, so sorted sets of rules read alphabetically.
impl Ord for RuleId {
    fn cmp(&self, other: &RuleId) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for RuleId {
    fn partial_cmp(&self, other: &RuleId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RuleId, D::Error> {
        let id = String::deserialize(deserializer)?;
        id.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: RuleId,
    pub statement: &'static str,
    /// Seed section first, then the Kubernetes documentation and kubelet source that decide.
    pub sources: &'static [&'static str],
}

const DOC_POD_SPEC: &str =
    "https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/";
const VALIDATE_POD: &str = "kubernetes pkg/apis/core/validation/validation.go ValidatePodCreate";
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
const SYNC_POD: &str =
    "kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go SyncPod, computePodActions";
const HOUSEKEEPING: &str =
    "kubernetes pkg/kubelet/kubelet_pods.go HandlePodCleanups (backOff.GC every housekeepingPeriod = 2s)";
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
const FIDELITY_PHASE: &str = "podcheck docs/fidelity/phase-conditions.md";
const SEED_TERMINATION: &str = "seed: Pod Termination Flow";
const SEED_HOOKS: &str = "seed: Container Hooks";
const SEED_HOOK_GOTCHAS: &str = "seed: Hook Delivery Guarantees and Gotchas";
const SEED_STUCK_TERMINATING: &str = "seed: Interview Gotchas / 4. Pod stuck in Terminating";
const DOC_TERMINATION: &str =
    "https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination";
const DOC_HOOKS: &str = "https://kubernetes.io/docs/concepts/containers/container-lifecycle-hooks/";
const DOC_FINALIZERS: &str =
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/";
const KILL_CONTAINER: &str =
    "kubernetes pkg/kubelet/kuberuntime/kuberuntime_container.go killContainer, executePreStopHook";
const START_CONTAINER: &str =
    "kubernetes pkg/kubelet/kuberuntime/kuberuntime_container.go startContainer (PostStart)";
const HANDLERS: &str = "kubernetes pkg/kubelet/lifecycle/handlers.go HandlerRunner.Run";
const EFFECTIVE_GRACE: &str = "kubernetes pkg/kubelet/pod_workers.go calculateEffectiveGracePeriod";
const GRACEFUL_DELETE: &str =
    "kubernetes pkg/registry/core/pod/strategy.go CheckGracefulDelete; apiserver registry/rest/delete.go BeforeDelete";
const STATUS_DELETE: &str =
    "kubernetes pkg/kubelet/status/status_manager.go syncPod, canBeDeleted (the kubelet's final delete)";
const FIDELITY_TERMINATION: &str = "podcheck docs/fidelity/termination.md";
const SEED_INIT: &str = "seed: Init, Sidecar, and Ephemeral Containers / Init Containers";
const SEED_SIDECAR: &str = "seed: Init, Sidecar, and Ephemeral Containers / Sidecar Containers";
const DOC_INIT: &str = "https://kubernetes.io/docs/concepts/workloads/pods/init-containers/";
const DOC_SIDECAR: &str = "https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/";
const INIT_ACTIONS: &str =
    "kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go computeInitContainerActions";
const TERMINATION_ORDER: &str =
    "kubernetes pkg/kubelet/kuberuntime/kuberuntime_termination_order.go";
const E2E_INIT: &str = "kubernetes test/e2e/common/node/init_container.go";
const KEP_SIDECAR: &str = "KEP-753 sidecar containers";
const FIDELITY_INIT: &str = "podcheck docs/fidelity/init-sidecar.md";
const SEED_EPHEMERAL: &str = "seed: Init, Sidecar, and Ephemeral Containers / Ephemeral Containers";
const DOC_EPHEMERAL: &str =
    "https://kubernetes.io/docs/concepts/workloads/pods/ephemeral-containers/";
const EPHEMERAL_ACTIONS: &str =
    "kubernetes pkg/kubelet/kuberuntime/kuberuntime_manager.go computePodActions (EphemeralContainersToStart)";
const EPHEMERAL_NAMESPACE: &str =
    "kubernetes pkg/kubelet/kuberuntime/kuberuntime_container_linux.go (NamespaceMode_TARGET); CRI NamespaceOption";
const MERGE_POD_STATUS: &str =
    "kubernetes pkg/kubelet/status/status_manager.go mergePodStatus, syncPeriod";

pub const CATALOGUE: &[Rule] = &[
    Rule {
        id: RuleId::PodAccepted,
        statement: "A pod that passes the API server's validation is accepted and run: podcheck validates each scenario's pod as the API server does (ValidatePodCreate) and refuses, as a usage error, what it would refuse, so a target that rejects one of the pods it runs (a field it cannot decode or does not support, a named port) diverges.",
        sources: &[DOC_POD_SPEC, VALIDATE_POD],
    },
    Rule {
        id: RuleId::PhasePending,
        statement: "A pod is Pending while one of its containers has not started yet (Waiting without a previous termination).",
        sources: &[SEED_PHASES, DOC_LIFECYCLE, GET_PHASE],
    },
    Rule {
        id: RuleId::PhaseRunning,
        statement: "A pod is Running once all its containers have started and at least one is running, or while a restart policy will restart its stopped containers.",
        sources: &[SEED_PHASES, DOC_LIFECYCLE, GET_PHASE],
    },
    Rule {
        id: RuleId::PhaseSucceeded,
        statement: "A pod whose containers all terminated with exit code 0 and will not be restarted (OnFailure or Never) is Succeeded. The phase may stay at its previous value after the last exit until the kubelet has stopped the pod sandbox (mergePodStatus holds back phase, reason and message, not conditions or container states): at most one relist and sync plus one 10s status reconcile period, plus the sandbox stop, which the target's tolerance covers.",
        sources: &[SEED_PHASES, DOC_LIFECYCLE, GET_PHASE, MERGE_POD_STATUS, FIDELITY_PHASE],
    },
    Rule {
        id: RuleId::PhaseFailed,
        statement: "Under restartPolicy Never, a pod whose containers all terminated, at least one with a non-zero exit code, is Failed. The phase may stay at its previous value after the last exit until the kubelet has stopped the pod sandbox (mergePodStatus holds back phase, reason and message, not conditions or container states): at most one relist and sync plus one 10s status reconcile period, plus the sandbox stop, which the target's tolerance covers.",
        sources: &[SEED_PHASES, DOC_LIFECYCLE, GET_PHASE, MERGE_POD_STATUS, FIDELITY_PHASE],
    },
    Rule {
        id: RuleId::PhaseAlwaysNeverTerminal,
        statement: "Under restartPolicy Always a pod never reaches Succeeded or Failed by its containers exiting: while all are stopped it stays Running.",
        sources: &[SEED_RESTART, GET_PHASE],
    },
    Rule {
        id: RuleId::PhaseOnfailureRestartingRunning,
        statement: "Under restartPolicy OnFailure a pod whose stopped containers include a failed one that will be restarted stays Running.",
        sources: &[SEED_RESTART, GET_PHASE],
    },
    Rule {
        id: RuleId::PhaseTerminalNeverLeft,
        statement: "Once a pod is Succeeded or Failed it never changes phase again.",
        sources: &[DOC_LIFECYCLE, "kubernetes pkg/kubelet/status/status_manager.go checkContainerStateTransition / updateStatusInternal"],
    },
    Rule {
        id: RuleId::ContainerStateWaitingCreating,
        statement: "Before its first start a container is Waiting with reason ContainerCreating, or Waiting with no reason once the runtime has created it but not started it yet.",
        sources: &[SEED_STATES, CONVERT_STATUSES, FIDELITY_PHASE],
    },
    Rule {
        id: RuleId::ContainerStateRunning,
        statement: "A started container is Running with a startedAt time, and it starts within moments of the pod's creation.",
        sources: &[SEED_STATES, CONVERT_STATUSES],
    },
    Rule {
        id: RuleId::ContainerRunsToCompletion,
        statement: "A container runs until its own process exits: nothing stops it early, and its exit is reported.",
        sources: &[SEED_STATES, DOC_LIFECYCLE],
    },
    Rule {
        id: RuleId::ContainerStateTerminated,
        statement: "A container whose process exited is Terminated with that exit code, reason Completed for 0 and Error otherwise, and startedAt/finishedAt.",
        sources: &[SEED_STATES, CONVERT_STATUSES, CONTAINERD_REASON],
    },
    Rule {
        id: RuleId::ContainerStateWaitingCrashloop,
        statement: "A container waiting out its restart back-off is Terminated in the status of the sync that saw its exit, then Waiting with reason CrashLoopBackOff and the message 'back-off D restarting failed container=...' from the next sync of the pod on (the reason cache is filled by the sync that refused the restart). That next sync comes 10-15s later up to v1.34 and at the back-off's expiry, capped at 60s and jittered by up to half, since v1.35; a back-off that has expired by then is restarted in that sync, so the Waiting state shows for one relist or not at all. The state is therefore required only for a back-off longer than 91s (90s of requeue plus one relist: the 160s and 300s steps by default); for shorter ones it may show, and when it shows its reason and message must be these. A Waiting state with no reason (created, not started) is also allowed between an exit and the restart.",
        sources: &[SEED_CRASHLOOP, CONVERT_STATUSES, DO_BACK_OFF, POD_WORKERS, FIDELITY_PHASE],
    },
    Rule {
        id: RuleId::ContainerLastState,
        statement: "After a restart, lastState holds the previous instance's termination (exit code, reason, times).",
        sources: &[SEED_CRASHLOOP, CONVERT_STATUSES],
    },
    Rule {
        id: RuleId::ContainerRestartCount,
        statement: "restartCount counts the container's restarts: it starts at 0, grows by one per new instance and never decreases.",
        sources: &[SEED_CRASHLOOP, CONVERT_STATUSES],
    },
    Rule {
        id: RuleId::ContainerReadyNoProbe,
        statement: "A container that is not running is neither started nor ready; without a startup probe a running container is started, and without a readiness probe it is ready exactly while started, except that after a startup probe succeeds `started` may show alone for up to one relist and sync (the prober sets it through SetContainerStartup; `ready` comes with the pod sync that follows).",
        sources: &[SEED_CONDITIONS, PROBER_MANAGER],
    },
    Rule {
        id: RuleId::RestartPolicyAlways,
        statement: "Under restartPolicy Always a container is restarted after every exit, whatever its exit code.",
        sources: &[SEED_RESTART, SHOULD_RESTART],
    },
    Rule {
        id: RuleId::RestartPolicyOnfailure,
        statement: "Under restartPolicy OnFailure a container is restarted after a non-zero exit and never after exit code 0.",
        sources: &[SEED_RESTART, SHOULD_RESTART],
    },
    Rule {
        id: RuleId::RestartPolicyNever,
        statement: "Under restartPolicy Never a container is never restarted.",
        sources: &[SEED_RESTART, SHOULD_RESTART],
    },
    Rule {
        id: RuleId::RestartBackoffFirstImmediate,
        statement: "A container that exits while it has no back-off entry (its first exit) is restarted without back-off; that restart creates the entry at the initial back-off (10s by default, 1s under ReduceDefaultCrashLoopBackOffDecay).",
        sources: &[SEED_CRASHLOOP, DO_BACK_OFF, FLOWCONTROL, "kubernetes issue #133472 (containers crash twice before back-off applies)"],
    },
    Rule {
        id: RuleId::RestartBackoffDoubling,
        statement: "Each later restart waits the back-off since the previous exit: 10s, then doubling (20s, 40s, ...), and may come up to the kubelet's requeue delay later.",
        sources: &[SEED_CRASHLOOP, DO_BACK_OFF, FLOWCONTROL, NEW_BACK_OFF, POD_WORKERS],
    },
    Rule {
        id: RuleId::RestartBackoffCap,
        statement: "The back-off stops doubling at its maximum (300s by default, the kubelet's crashLoopBackOff.maxContainerRestartPeriod where configured).",
        sources: &[SEED_CRASHLOOP, FLOWCONTROL, NEW_BACK_OFF],
    },
    Rule {
        id: RuleId::RestartBackoffReset,
        statement: "A container that exits more than 600s after its back-off was last updated (its last restart) is restarted without back-off, and the back-off starts over at its initial value. 600s is hard-coded, whatever the maximum.",
        sources: &[NEW_BACK_OFF, FLOWCONTROL],
    },
    Rule {
        id: RuleId::RestartBackoffCollected,
        statement: "Housekeeping deletes a back-off entry 600s after its last update even while the container waits out that back-off: the container is then restarted at the next pod sync, before its back-off ends, and the back-off starts over at its initial value. The Waiting message still names the back-off that was cut short.",
        sources: &[HOUSEKEEPING, FLOWCONTROL, NEW_BACK_OFF, POD_WORKERS],
    },
    Rule {
        id: RuleId::RestartBackoffProbeKill,
        statement: "A container killed for a failed liveness or startup probe is restarted in the same sync as the kill (restartPolicy Always or OnFailure), and the back-off is checked against the previous exited instance: the first kill restarts at once without creating a back-off entry, and later kills restart at once while the time since the previous exit exceeds the current back-off. A kill sooner than that waits the back-off out from the kill.",
        sources: &[SYNC_POD, DO_BACK_OFF, FLOWCONTROL, "docs/fidelity/restart-after-probe-kill.md"],
    },
    Rule {
        id: RuleId::ConditionPodScheduled,
        statement: "A pod whose containers have started has PodScheduled True.",
        sources: &[SEED_CONDITIONS, GENERATE],
    },
    Rule {
        id: RuleId::ConditionPodReadyToStartContainers,
        statement: "PodReadyToStartContainers is True while the pod sandbox exists and False once a terminal pod's sandbox is torn down.",
        sources: &[SEED_CONDITIONS, GENERATE, "kubernetes pkg/kubelet/kuberuntime/util/util.go PodSandboxChanged"],
    },
    Rule {
        id: RuleId::ConditionInitialized,
        statement: "Initialized is True once every init container has completed and every sidecar has started, or while a regular container is shown running or terminated (always, for a pod without init containers), with reason PodCompleted once the pod is Succeeded.",
        sources: &[SEED_CONDITIONS, GENERATE],
    },
    Rule {
        id: RuleId::ConditionContainersReady,
        statement: "ContainersReady is True exactly when every container is ready; otherwise False with reason ContainersNotReady, or PodCompleted/PodFailed once the container states make the pod terminal, already while the kubelet still holds the terminal phase back (a Failed pod may show ContainersNotReady instead: releases before PodFailed existed).",
        sources: &[SEED_CONDITIONS, GENERATE, MERGE_POD_STATUS, FIDELITY_PHASE],
    },
    Rule {
        id: RuleId::ConditionReady,
        statement: "Ready is ContainersReady plus readiness gates: without gates it has the same status and reason, and Ready is never True without ContainersReady.",
        sources: &[SEED_CONDITIONS, GENERATE],
    },
    Rule {
        id: RuleId::ProbeStartupStarted,
        statement: "A container with a startup probe is started (status.started) from the first successful startup probe on, never before; without one it is started once running.",
        sources: &[SEED_PROBES, DOC_PROBES, PROBER_MANAGER, WORKER, FIDELITY_PROBES],
    },
    Rule {
        id: RuleId::ProbeStartupGates,
        statement: "Liveness and readiness probes do not run until the startup probe has succeeded: nothing they find kills the container or makes it ready before.",
        sources: &[SEED_PROBES, DOC_PROBES, WORKER, FIDELITY_PROBES],
    },
    Rule {
        id: RuleId::ProbeStartupFailureRestart,
        statement: "A startup probe that fails failureThreshold times in a row gets the container killed and restarted according to restartPolicy.",
        sources: &[SEED_PROBES, SEED_TUNING, DOC_PROBES, COMPUTE_ACTIONS, WORKER],
    },
    Rule {
        id: RuleId::ProbeLivenessFailureThreshold,
        statement: "A liveness probe kills the container only after failureThreshold consecutive failures, periodSeconds apart: never earlier.",
        sources: &[SEED_PROBES, SEED_TUNING, DOC_PROBES, WORKER],
    },
    Rule {
        id: RuleId::ProbeLivenessRestart,
        statement: "Once liveness fails failureThreshold times in a row the container is killed (SIGTERM; exit 143 for a process that dies of it or exits as if it had, 137 after the grace period otherwise) and restarted according to restartPolicy and the back-off, with restartCount and lastState showing it.",
        sources: &[SEED_PROBES, DOC_PROBES, COMPUTE_ACTIONS, WORKER, "kubernetes pkg/kubelet/kuberuntime/kuberuntime_container.go killContainer"],
    },
    Rule {
        id: RuleId::ProbeReadinessInitialFailure,
        statement: "A container with a readiness probe is not ready until the probe has succeeded: the readiness result starts as Failure for every new container.",
        sources: &[SEED_PROBES, DOC_PROBES, WORKER, PROBER_MANAGER],
    },
    Rule {
        id: RuleId::ProbeReadinessTransitions,
        statement: "ready turns true after successThreshold consecutive readiness successes and false after failureThreshold consecutive failures; the pod is then Running but not Ready.",
        sources: &[SEED_PROBES, SEED_READINESS_GOTCHA, DOC_PROBES, WORKER, GENERATE],
    },
    Rule {
        id: RuleId::ProbeReadinessNoRestart,
        statement: "A failing readiness probe never kills or restarts the container: it only takes it out of ready (and the pod out of the Service's endpoints).",
        sources: &[SEED_PROBES, SEED_READINESS_GOTCHA, DOC_PROBES, COMPUTE_ACTIONS],
    },
    Rule {
        id: RuleId::ProbeInitialDelay,
        statement: "No probe runs before initialDelaySeconds have passed since the container started (measured from its start, also for liveness and readiness behind a startup probe).",
        sources: &[SEED_PROBES, SEED_TUNING, DOC_PROBES, WORKER],
    },
    Rule {
        id: RuleId::ProbeTimeout,
        statement: "A probe whose answer takes longer than timeoutSeconds fails (an exec probe's command too, with the ExecProbeTimeout gate, on by default); a slower answer within the timeout succeeds. A grpc probe that finds nothing listening, or a port that does not speak gRPC, keeps retrying its dial and fails only at timeoutSeconds.",
        sources: &[SEED_PROBES, SEED_TUNING, DOC_PROBES, "kubernetes pkg/probe/http/http.go DoHTTPProbe", "kubernetes pkg/probe/exec/exec.go (ExecProbeTimeout)", "kubernetes pkg/probe/grpc/grpc.go (grpc.WithBlock)"],
    },
    Rule {
        id: RuleId::ProbePeriod,
        statement: "A probe runs every periodSeconds on a fixed grid (liveness and startup exactly, readiness at least that often): consecutive probes of one worker on one container are periodSeconds apart, except right after a probe that outlasted its period, which is abandoned at timeoutSeconds.",
        sources: &[SEED_PROBES, DOC_PROBES, WORKER, FIDELITY_PROBES],
    },
    Rule {
        id: RuleId::ProbeErrorNotFailure,
        statement: "A probe that cannot be run (a named port the container does not declare) is neither a success nor a failure: the result keeps its initial value, so liveness never kills and readiness never turns ready.",
        sources: &[DOC_PROBES, PROBER, WORKER, "kubernetes pkg/probe/util.go ResolveContainerPort", FIDELITY_PROBES],
    },
    Rule {
        id: RuleId::ProbeHandlerHttp,
        statement: "An httpGet probe succeeds on a status from 200 to 399 and fails on any other status or when nothing answers; a redirect to the same host is followed (up to 10), and a final 3xx counts as success with a warning.",
        sources: &[SEED_PROBES, DOC_PROBES, "kubernetes pkg/probe/http/http.go DoHTTPProbe"],
    },
    Rule {
        id: RuleId::ProbeHandlerTcp,
        statement: "A tcpSocket probe succeeds when a connection to the port is established and fails when it is refused.",
        sources: &[SEED_PROBES, DOC_PROBES, "kubernetes pkg/probe/tcp/tcp.go DoTCPProbe"],
    },
    Rule {
        id: RuleId::ProbeHandlerGrpc,
        statement: "A grpc probe calls grpc.health.v1.Health/Check for its service and succeeds exactly when the answer is SERVING; NOT_SERVING, an unknown service or no server is a failure (no server: at timeoutSeconds, the dial being retried until then).",
        sources: &[DOC_PROBES, "kubernetes pkg/probe/grpc/grpc.go", "https://github.com/grpc/grpc/blob/master/doc/health-checking.md"],
    },
    Rule {
        id: RuleId::ProbeHandlerExec,
        statement: "An exec probe runs its command inside the container and succeeds exactly when it exits 0.",
        sources: &[SEED_PROBES, DOC_PROBES, "kubernetes pkg/probe/exec/exec.go"],
    },
    Rule {
        id: RuleId::TerminationDeletionTimestamp,
        statement: "A graceful delete sets metadata.deletionTimestamp to the time of the request plus the grace period and metadata.deletionGracePeriodSeconds to the grace period: the request's gracePeriodSeconds, else the pod's terminationGracePeriodSeconds (30 s by default); a pod already Succeeded or Failed is deleted at once (grace 0).",
        sources: &[SEED_TERMINATION, DOC_TERMINATION, GRACEFUL_DELETE],
    },
    Rule {
        id: RuleId::TerminationPrestopFirst,
        statement: "On deletion a container's PreStop hook runs first, and SIGTERM is sent only once it has completed (or the grace period has run out).",
        sources: &[SEED_TERMINATION, SEED_HOOKS, DOC_HOOKS, KILL_CONTAINER],
    },
    Rule {
        id: RuleId::TerminationSigterm,
        statement: "On deletion every running container's process receives the stop signal, SIGTERM (after its PreStop hook), promptly once the kubelet has seen the deletion; a process that dies of it shows exit 143, reason Error (podcheck's agent exits 143 also as PID 1, which the kernel would not let die of it), and one that handles it ends as it chooses.",
        sources: &[SEED_TERMINATION, DOC_TERMINATION, KILL_CONTAINER, CONTAINERD_REASON],
    },
    Rule {
        id: RuleId::TerminationGracePeriod,
        statement: "A process still running when the grace period (what PreStop left of it) has passed since SIGTERM is killed with SIGKILL (exit 137, reason Error), never before.",
        sources: &[SEED_TERMINATION, DOC_TERMINATION, KILL_CONTAINER, EFFECTIVE_GRACE],
    },
    Rule {
        id: RuleId::TerminationPrestopInGrace,
        statement: "The grace period (the deletion's, else terminationGracePeriodSeconds) is the budget for PreStop and SIGTERM handling together (since Kubernetes 1.28): the whole seconds PreStop took are taken off the time between SIGTERM and SIGKILL.",
        sources: &[SEED_TERMINATION, DOC_HOOKS, KILL_CONTAINER, FIDELITY_TERMINATION],
    },
    Rule {
        id: RuleId::TerminationMinimumGrace,
        statement: "However long PreStop took, the kubelet leaves at least 2 s between SIGTERM and SIGKILL (minimumGracePeriodInSeconds).",
        sources: &[SEED_HOOK_GOTCHAS, KILL_CONTAINER, FIDELITY_TERMINATION],
    },
    Rule {
        id: RuleId::TerminationNoRestart,
        statement: "Once a pod is being deleted none of its containers is started again, whatever the restart policy.",
        sources: &[SEED_TERMINATION, SHOULD_RESTART, SYNC_POD],
    },
    Rule {
        id: RuleId::TerminationPhase,
        statement: "A deleted pod whose containers have all stopped ends in phase Succeeded if every container's last exit code is 0 and Failed otherwise, whatever the restart policy (since Kubernetes 1.27).",
        sources: &[SEED_TERMINATION, DOC_LIFECYCLE, GET_PHASE, FIDELITY_TERMINATION],
    },
    Rule {
        id: RuleId::TerminationObjectRemoved,
        statement: "A gracefully deleted pod's object is removed by the kubelet's final delete, once its containers have stopped and its terminal phase is written, and not before; with no finalizers left.",
        sources: &[SEED_TERMINATION, DOC_TERMINATION, STATUS_DELETE],
    },
    Rule {
        id: RuleId::TerminationLivenessStops,
        statement: "Once the kubelet has seen the deletion, liveness and startup probes stop: a terminating container is never killed by them, and one whose startup probe had not succeeded yet stays not started.",
        sources: &[DOC_TERMINATION, WORKER, FIDELITY_TERMINATION],
    },
    Rule {
        id: RuleId::TerminationReadinessContinues,
        statement: "Readiness probes keep running while a pod terminates, so ready still follows the readiness probe until the container stops.",
        sources: &[DOC_TERMINATION, WORKER, FIDELITY_TERMINATION],
    },
    Rule {
        id: RuleId::TerminationFinalizers,
        statement: "A deleted pod with finalizers keeps its object (Terminating, with deletionTimestamp) after its containers have stopped; the object is removed once its last finalizer is gone and its grace period is 0 (the kubelet's final delete, or a force delete).",
        sources: &[SEED_STUCK_TERMINATING, DOC_FINALIZERS, GRACEFUL_DELETE],
    },
    Rule {
        id: RuleId::TerminationForceDelete,
        statement: "A force delete (grace period 0) removes the pod's object at once, without waiting for the node, which still stops the containers (with a 1 s grace since Kubernetes 1.31); with finalizers the object stays, with deletionGracePeriodSeconds 0, until they are removed.",
        sources: &[SEED_STUCK_TERMINATING, DOC_TERMINATION, GRACEFUL_DELETE],
    },
    Rule {
        id: RuleId::FaultKillContainer,
        statement: "A container whose process is SIGKILLed from outside the kubelet shows Terminated with exit code 137 and reason Error (not OOMKilled), and is restarted as the restart policy and the back-off say.",
        sources: &[SEED_STATES, SEED_RESTART, CONVERT_STATUSES, CONTAINERD_REASON],
    },
    Rule {
        id: RuleId::HookPrestopFailureContinues,
        statement: "A failing PreStop hook does not stop the termination: the kubelet records FailedPreStopHook and sends SIGTERM.",
        sources: &[SEED_HOOKS, DOC_HOOKS, KILL_CONTAINER],
    },
    Rule {
        id: RuleId::HookPrestopCutOff,
        statement: "A PreStop hook that takes longer than the grace period is no longer waited for when the grace runs out (the hook itself is not stopped): SIGTERM follows, and SIGKILL 2 s later.",
        sources: &[SEED_HOOK_GOTCHAS, DOC_HOOKS, KILL_CONTAINER],
    },
    Rule {
        id: RuleId::HookPoststartConcurrent,
        statement: "PostStart runs right after the container is created, concurrently with its entrypoint: the process is already running when the hook is called.",
        sources: &[SEED_HOOKS, DOC_HOOKS, START_CONTAINER],
    },
    Rule {
        id: RuleId::HookPoststartRunningAfter,
        statement: "A container is not shown Running until its PostStart hook has completed.",
        sources: &[SEED_HOOKS, DOC_HOOKS, START_CONTAINER],
    },
    Rule {
        id: RuleId::HookPoststartFailureKills,
        statement: "A failing PostStart hook kills the container (FailedPostStartHook), which is then restarted as the restart policy and the back-off say.",
        sources: &[SEED_HOOK_GOTCHAS, DOC_HOOKS, START_CONTAINER],
    },
    Rule {
        id: RuleId::HookHandlerExec,
        statement: "An exec hook runs its command inside the container; exit 0 is success.",
        sources: &[SEED_HOOKS, DOC_HOOKS, HANDLERS],
    },
    Rule {
        id: RuleId::HookHandlerHttp,
        statement: "An httpGet hook makes one HTTP GET to the container's endpoint: it fails only when the request gets no answer, whatever the HTTP status (a 500 is a success), and it is not retried.",
        sources: &[SEED_HOOKS, DOC_HOOKS, HANDLERS],
    },
    Rule {
        id: RuleId::HookHandlerSleep,
        statement: "A sleep hook pauses for its seconds in the kubelet, counted like any hook against the grace period.",
        sources: &[DOC_HOOKS, HANDLERS, KILL_CONTAINER],
    },
    Rule {
        id: RuleId::HookHandlerTcpRefused,
        statement: "There is no TCP handler for hooks: validation keeps accepting tcpSocket for backward compatibility, and the kubelet fails such a hook when it runs it.",
        sources: &[SEED_HOOK_GOTCHAS, DOC_HOOKS, HANDLERS, VALIDATE_POD],
    },
    Rule {
        id: RuleId::InitSequential,
        statement: "Init containers run one at a time, in order: the next starts only after the one before has exited 0 (a sidecar: has started).",
        sources: &[SEED_INIT, DOC_INIT, INIT_ACTIONS, E2E_INIT, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::InitBeforeRegular,
        statement: "No regular container starts before every init container has completed and every sidecar has started; until then they wait with reason PodInitializing.",
        sources: &[SEED_INIT, DOC_INIT, INIT_ACTIONS, CONVERT_STATUSES, E2E_INIT, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::InitPending,
        statement: "While init containers run, the pod is Pending and Initialized is False with reason ContainersNotInitialized, its message naming the init containers not exited 0 and the sidecars not started.",
        sources: &[SEED_INIT, DOC_INIT, GET_PHASE, GENERATE, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::InitRetry,
        statement: "Under restartPolicy Always and OnFailure a failed init container is restarted, with the crash-loop back-off, until it exits 0; an init container that exited 0 is not run again.",
        sources: &[SEED_INIT, DOC_INIT, INIT_ACTIONS, DO_BACK_OFF, E2E_INIT, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::InitNeverFailsPod,
        statement: "Under restartPolicy Never a failed init container fails the pod: no later container starts, running sidecars are stopped, and the phase becomes Failed once they are.",
        sources: &[SEED_INIT, DOC_INIT, GET_PHASE, INIT_ACTIONS, E2E_INIT, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::InitStatus,
        statement: "Init containers are reported in initContainerStatuses, waiting with reason PodInitializing until they start; a regular init container is ready once it has exited 0.",
        sources: &[DOC_INIT, CONVERT_STATUSES, PROBER_MANAGER, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::SidecarStartGate,
        statement: "The container after a sidecar starts once the sidecar has started: its startup probe has succeeded, or, without one, it is running and its PostStart hook has returned.",
        sources: &[SEED_SIDECAR, DOC_SIDECAR, INIT_ACTIONS, KEP_SIDECAR, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::SidecarRestartAlways,
        statement: "A sidecar that exits is restarted with the crash-loop back-off whatever the pod's restartPolicy, until the pod is terminating.",
        sources: &[SEED_SIDECAR, DOC_SIDECAR, INIT_ACTIONS, KEP_SIDECAR, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::SidecarReadiness,
        statement: "A sidecar's readiness counts for the pod's ContainersReady and Ready conditions, as a regular container's does.",
        sources: &[DOC_SIDECAR, GENERATE, KEP_SIDECAR, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::SidecarPhaseIgnored,
        statement: "A sidecar's exits do not decide the pod's phase: a pod whose regular containers all succeeded is Succeeded whatever code its sidecars were stopped with.",
        sources: &[SEED_SIDECAR, DOC_SIDECAR, GET_PHASE, KEP_SIDECAR, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::SidecarStoppedAfterRegular,
        statement: "Once every regular container of a Never or OnFailure pod has terminated for good (or an init container failed under Never), the kubelet stops the sidecars, the last in the spec first, and the pod completes; a sidecar never keeps such a pod running.",
        sources: &[SEED_SIDECAR, DOC_SIDECAR, COMPUTE_ACTIONS, TERMINATION_ORDER, KEP_SIDECAR, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::SidecarTerminationOrder,
        statement: "When the pod stops, regular containers are stopped first, then the sidecars in the reverse of their order in the spec: each sidecar's SIGTERM waits for the containers it outlives, within its own grace period.",
        sources: &[SEED_SIDECAR, DOC_SIDECAR, TERMINATION_ORDER, KEP_SIDECAR, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::EphemeralStarted,
        statement: "An ephemeral container added to a running pod through its ephemeralcontainers subresource is started by the kubelet's next sync of the pod.",
        sources: &[SEED_EPHEMERAL, DOC_EPHEMERAL, EPHEMERAL_ACTIONS, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::EphemeralNeverRestarted,
        statement: "An ephemeral container is never restarted, whatever its exit code and the pod's restartPolicy.",
        sources: &[SEED_EPHEMERAL, DOC_EPHEMERAL, EPHEMERAL_ACTIONS, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::EphemeralStatus,
        statement: "An ephemeral container is reported in ephemeralContainerStatuses, never ready, and counts for neither the phase nor the pod's readiness.",
        sources: &[DOC_EPHEMERAL, CONVERT_STATUSES, GENERATE, FIDELITY_INIT],
    },
    Rule {
        id: RuleId::EphemeralTargetNamespace,
        statement: "An ephemeral container with targetContainerName shares the target container's process namespace: it sees the target's processes; a container sees no other pod's processes.",
        sources: &[SEED_EPHEMERAL, DOC_EPHEMERAL, EPHEMERAL_NAMESPACE, FIDELITY_INIT],
    },
];

// `RuleId::rule` indexes the catalogue: it must list every rule once, in `RuleId` order.
const _: () = {
    assert!(CATALOGUE.len() == RuleId::ALL.len());
    let mut index = 0;
    while index < CATALOGUE.len() {
        assert!(CATALOGUE[index].id as usize == index);
        index += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_has_one_entry_per_rule_id() {
        for id in RuleId::ALL {
            let entries = CATALOGUE.iter().filter(|rule| rule.id == *id).count();
            assert_eq!(entries, 1, "{id} has {entries} catalogue entries");
            assert_eq!(id.rule().id, *id);
        }
        assert_eq!(CATALOGUE.len(), RuleId::ALL.len());
    }

    #[test]
    fn ids_read_back_and_serialise_as_their_dotted_names() {
        for id in RuleId::ALL {
            assert_eq!(id.as_str().parse::<RuleId>(), Ok(*id));
            assert_eq!(id.to_string(), id.as_str());
            assert_eq!(
                serde_json::to_string(id).ok(),
                Some(format!("\"{}\"", id.as_str()))
            );
            assert_eq!(
                serde_json::from_str::<RuleId>(&format!("\"{}\"", id.as_str())).ok(),
                Some(*id)
            );
        }
        assert_eq!(
            "restart.backoff.doubled".parse::<RuleId>(),
            Err(UnknownRuleId("restart.backoff.doubled".to_owned()))
        );
        assert_eq!(
            format!("{:<20}|", RuleId::PhasePending),
            "phase.pending       |"
        );
    }

    #[test]
    fn a_scenario_naming_an_unknown_rule_is_refused() {
        let yaml = |rule: &str| {
            format!(
                "name: x\nrules: [{rule}]\npod:\n  spec:\n    containers: [{{name: app}}]\nbehaviours:\n  app: {{then: forever}}\n"
            )
        };
        let known = crate::Scenario::from_yaml("x.yaml", &yaml("restart.backoff.doubling"));
        assert_eq!(
            known.map(|s| s.rules),
            Ok(vec![RuleId::RestartBackoffDoubling])
        );
        match crate::Scenario::from_yaml("x.yaml", &yaml("restart.backoff.doubled")) {
            Err(crate::ScenarioError::Parse { message, .. }) => {
                assert!(message.contains("restart.backoff.doubled"), "{message}")
            }
            other => panic!("an unknown rule id must not parse: {other:?}"),
        }
    }

    #[test]
    fn ids_are_unique_and_cited() {
        let mut ids: Vec<&str> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
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
