//! Planted bugs: the catalogue of defects the model target can act out as a runtime with
//! that one bug would, the rule each breaks first, and what a restart bug does after an exit.

use crate::duration::SpecDuration;
use crate::plan::AfterExit;
use crate::rules::RuleId;
use crate::scenario::{BackOffParams, RestartPolicy};
use serde::{Deserialize, Serialize};

/// A planted bug: the model target behaves like a runtime with this defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Deviation {
    /// Every back-off is the initial one (no doubling).
    NoBackOffDoubling,
    /// The first restart already waits the initial back-off.
    BackOffOnFirstRestart,
    /// The back-off keeps doubling past its maximum.
    NoBackOffCap,
    /// A container that ran past the reset threshold still waits its back-off.
    NoBackOffReset,
    /// A liveness or startup kill is followed by the back-off a crash would get, measured
    /// from the kill (instead of the same-sync restart checked against the exit before).
    BackOffAfterProbeKill,
    /// Back-off entries are never garbage-collected: a container waits out its whole
    /// back-off even when housekeeping would have deleted the entry.
    NoBackOffCollection,
    /// The back-off resets after 300 s of running instead of 600 s.
    BackOffResetTooSoon,
    /// Containers are restarted under restartPolicy Never.
    RestartUnderNever,
    /// Containers that exited 0 are restarted under restartPolicy OnFailure.
    RestartAfterSuccessOnFailure,
    /// A terminal pod goes back to Running shortly after its sandbox is torn down.
    LeaveTerminalPhase,
    /// Non-zero exits are reported as OOMKilled.
    OomKilledForEveryFailure,
    /// Exit code 137 (128 + SIGKILL) is reported as OOMKilled, though only the runtime's
    /// OOM detection gives that reason: a SIGKILL without a memory limit hit is Error.
    SigkillExitAsOomKilled,
    /// Terminated containers stay ready.
    ReadyWhileTerminated,
    /// Back-off waits are shown as Terminated, never as Waiting CrashLoopBackOff.
    NoCrashLoopBackOffState,
    /// The terminal phase is written a status-reconcile period later than the kubelet
    /// at its latest would write it.
    TerminalPhaseLate,
    /// While the terminal phase is held back, Ready and ContainersReady follow the phase
    /// written instead of the phase generated (what the model once required).
    ReadyFollowsHeldPhase,
    /// The pod is Running while containers are still being created.
    RunningBeforeStart,
    /// Containers are stopped at half their run.
    ExitsEarly,
    /// Under restartPolicy Always, a container that exited 0 is not restarted.
    NoRestartAfterSuccessUnderAlways,
    /// A readiness failure kills the container, as a liveness failure would.
    ReadinessFailureRestarts,
    /// A container with a readiness probe is ready as soon as it is started.
    ReadyBeforeReadinessProbe,
    /// Liveness runs from the container's start, without waiting for the startup probe.
    LivenessBeforeStartup,
    /// Liveness kills at the first failure, whatever its failureThreshold.
    LivenessIgnoresFailureThreshold,
    /// Liveness failures never kill the container.
    NoLivenessKill,
    /// Readiness turns false at the first failure, whatever its failureThreshold.
    ReadinessIgnoresFailureThreshold,
    /// initialDelaySeconds is ignored.
    IgnoresInitialDelay,
    /// A probe waits for a slow answer however long it takes (no timeoutSeconds).
    IgnoresProbeTimeout,
    /// A probe that errors (a missing named port) counts as a failure.
    ErrorCountsAsFailure,
    /// A startup probe that keeps failing never gets the container killed.
    StartupFailureIgnored,
    /// httpGet probes succeed whatever the status code.
    HttpStatusIgnored,
    /// exec probes succeed whatever the exit code.
    ExecExitCodeIgnored,
    /// tcpSocket probes succeed even when nothing listens on the endpoint's port.
    TcpAlwaysConnects,
    /// grpc probes succeed on any answer, NOT_SERVING included.
    GrpcStatusIgnored,
    /// A grpc probe fails at once when nothing listens on its port, instead of retrying
    /// the dial until its timeout (the kubelet's `grpc.WithBlock()`).
    GrpcFailsAtOnceWithoutListener,
    /// Every probe runs every periodSeconds + 1s.
    ProbePeriodOneSecondLonger,
    /// A pod whose probe names its port (`port: http`) is rejected at creation, as an
    /// API server that decodes ports as integers only would.
    RejectsNamedPorts,
    /// A liveness success between failures does not reset the failure count: failure
    /// bursts add up. Acted out as if the successes between two bursts were failures too.
    LivenessFailureCountNotReset,
    /// SIGKILL comes when half of what is left of the grace period has passed.
    SigkillBeforeGracePeriod,
    /// SIGTERM is sent first and the PreStop hook called after it.
    PreStopAfterSigterm,
    /// The time PreStop took is not taken off the grace period: SIGKILL comes a whole
    /// grace period after SIGTERM.
    PreStopNotCountedInGrace,
    /// No 2 s minimum after a PreStop that used up the grace period: SIGKILL comes with
    /// SIGTERM.
    NoMinimumGraceAfterPreStop,
    /// Liveness keeps probing a terminating container.
    LivenessDuringTermination,
    /// The object is removed at the kubelet's final delete whatever finalizers remain.
    ObjectRemovedDespiteFinalizers,
    /// A deleted pod keeps the phase its restart policy gives (a kubelet before 1.27):
    /// an Always pod stays Running until it is removed.
    DeletedPodKeepsItsPhase,
    /// A container that exits while its pod terminates is restarted as its restart
    /// policy says.
    RestartDuringTermination,
    /// The entrypoint is started only once the PostStart hook has returned.
    PostStartBeforeEntrypoint,
    /// The container is shown Running while its PostStart hook still runs.
    RunningBeforePostStartCompletes,
    /// A failing PostStart hook does not kill the container.
    PostStartFailureIgnored,
    /// A tcpSocket hook succeeds (as a probe would once the port accepts), instead of
    /// failing as a handler the kubelet does not run.
    TcpHookSucceeds,
    /// A failing PreStop hook aborts the graceful stop: no SIGTERM, SIGKILL when the grace
    /// period runs out.
    FailedPreStopSkipsSigterm,
    /// A PreStop hook that outlasts the grace period is waited for to its end.
    PreStopNotCutOff,
    /// exec PreStop hooks are not run.
    ExecHooksNotRun,
    /// httpGet PreStop hooks are not run.
    HttpHooksNotRun,
    /// sleep PreStop hooks do not pause.
    SleepHooksNotRun,
    /// Readiness probes stop with liveness once the pod is being deleted: ready keeps the
    /// value it had.
    ReadinessStopsOnDeletion,
    /// Init containers start together at the pod's creation, not one after another.
    InitContainersTogether,
    /// Regular containers start at the pod's creation, without waiting for the init
    /// containers.
    RegularBeforeInit,
    /// Containers waiting for init containers show ContainerCreating, not PodInitializing.
    InitWaitingContainerCreating,
    /// A failed init container is not restarted under Always or OnFailure.
    InitNotRetried,
    /// A failed init container under restartPolicy Never leaves the pod Pending.
    InitFailureIgnoredUnderNever,
    /// The container after a sidecar starts when the sidecar's process starts, without
    /// waiting for its startup probe.
    SidecarGateIgnoresStartupProbe,
    /// Sidecars follow the pod's restart policy instead of always restarting.
    SidecarFollowsPodPolicy,
    /// ContainersReady and Ready leave the sidecars' readiness out.
    SidecarReadinessIgnored,
    /// A sidecar stopped with a non-zero code makes a pod whose regular containers
    /// succeeded Failed.
    SidecarExitDecidesPhase,
    /// Sidecars are never stopped when the regular containers of a Never or OnFailure pod
    /// are done, so the pod never completes.
    SidecarKeepsPodRunning,
    /// Sidecars are stopped in the order of the spec, not the reverse.
    SidecarsStoppedInSpecOrder,
    /// On deletion the sidecars are stopped at once, together with the regular containers.
    SidecarsStoppedWithRegular,
    /// An ephemeral container that exits is restarted.
    EphemeralRestarted,
    /// A running ephemeral container is reported ready.
    EphemeralReady,
    /// Ephemeral containers are accepted but never started.
    EphemeralNotStarted,
    /// An ephemeral container gets a PID namespace of its own despite its
    /// targetContainerName.
    EphemeralOwnNamespace,
}

impl Deviation {
    pub const ALL: &'static [Deviation] = &[
        Deviation::NoBackOffDoubling,
        Deviation::BackOffOnFirstRestart,
        Deviation::NoBackOffCap,
        Deviation::NoBackOffReset,
        Deviation::BackOffAfterProbeKill,
        Deviation::NoBackOffCollection,
        Deviation::BackOffResetTooSoon,
        Deviation::RestartUnderNever,
        Deviation::RestartAfterSuccessOnFailure,
        Deviation::LeaveTerminalPhase,
        Deviation::OomKilledForEveryFailure,
        Deviation::SigkillExitAsOomKilled,
        Deviation::ReadyWhileTerminated,
        Deviation::NoCrashLoopBackOffState,
        Deviation::TerminalPhaseLate,
        Deviation::ReadyFollowsHeldPhase,
        Deviation::RunningBeforeStart,
        Deviation::ExitsEarly,
        Deviation::NoRestartAfterSuccessUnderAlways,
        Deviation::ReadinessFailureRestarts,
        Deviation::ReadyBeforeReadinessProbe,
        Deviation::LivenessBeforeStartup,
        Deviation::LivenessIgnoresFailureThreshold,
        Deviation::NoLivenessKill,
        Deviation::ReadinessIgnoresFailureThreshold,
        Deviation::IgnoresInitialDelay,
        Deviation::IgnoresProbeTimeout,
        Deviation::ErrorCountsAsFailure,
        Deviation::StartupFailureIgnored,
        Deviation::HttpStatusIgnored,
        Deviation::ExecExitCodeIgnored,
        Deviation::TcpAlwaysConnects,
        Deviation::GrpcStatusIgnored,
        Deviation::GrpcFailsAtOnceWithoutListener,
        Deviation::ProbePeriodOneSecondLonger,
        Deviation::LivenessFailureCountNotReset,
        Deviation::RejectsNamedPorts,
        Deviation::SigkillBeforeGracePeriod,
        Deviation::PreStopAfterSigterm,
        Deviation::PreStopNotCountedInGrace,
        Deviation::NoMinimumGraceAfterPreStop,
        Deviation::LivenessDuringTermination,
        Deviation::ObjectRemovedDespiteFinalizers,
        Deviation::DeletedPodKeepsItsPhase,
        Deviation::RestartDuringTermination,
        Deviation::PostStartBeforeEntrypoint,
        Deviation::RunningBeforePostStartCompletes,
        Deviation::PostStartFailureIgnored,
        Deviation::TcpHookSucceeds,
        Deviation::FailedPreStopSkipsSigterm,
        Deviation::PreStopNotCutOff,
        Deviation::ExecHooksNotRun,
        Deviation::HttpHooksNotRun,
        Deviation::SleepHooksNotRun,
        Deviation::ReadinessStopsOnDeletion,
        Deviation::InitContainersTogether,
        Deviation::RegularBeforeInit,
        Deviation::InitWaitingContainerCreating,
        Deviation::InitNotRetried,
        Deviation::InitFailureIgnoredUnderNever,
        Deviation::SidecarGateIgnoresStartupProbe,
        Deviation::SidecarFollowsPodPolicy,
        Deviation::SidecarReadinessIgnored,
        Deviation::SidecarExitDecidesPhase,
        Deviation::SidecarKeepsPodRunning,
        Deviation::SidecarsStoppedInSpecOrder,
        Deviation::SidecarsStoppedWithRegular,
        Deviation::EphemeralRestarted,
        Deviation::EphemeralReady,
        Deviation::EphemeralNotStarted,
        Deviation::EphemeralOwnNamespace,
    ];

    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn parse(name: &str) -> Option<Deviation> {
        Deviation::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// Whether the bug shows in the pod's status (the simulator acts it out); a bug that
    /// shows when the pod is created is acted out by the model target instead.
    pub fn shows_in_status(self) -> bool {
        !matches!(self, Deviation::RejectsNamedPorts)
    }

    /// The rule whose promise this bug breaks first: what a user must read first in the
    /// verdict of a case that catches it, to find the cause.
    pub fn expected_rule(self) -> RuleId {
        match self {
            Deviation::NoBackOffDoubling => RuleId::RestartBackoffDoubling,
            Deviation::BackOffOnFirstRestart => RuleId::RestartBackoffFirstImmediate,
            Deviation::NoBackOffCap => RuleId::RestartBackoffCap,
            Deviation::NoBackOffReset => RuleId::RestartBackoffReset,
            Deviation::BackOffAfterProbeKill => RuleId::RestartBackoffProbeKill,
            Deviation::ProbePeriodOneSecondLonger => RuleId::ProbePeriod,
            Deviation::RejectsNamedPorts => RuleId::PodAccepted,
            Deviation::LivenessFailureCountNotReset => RuleId::ProbeLivenessFailureThreshold,
            Deviation::NoBackOffCollection => RuleId::RestartBackoffCollected,
            Deviation::BackOffResetTooSoon => RuleId::RestartBackoffDoubling,
            Deviation::TerminalPhaseLate => RuleId::PhaseFailed,
            // Every condition follows the written phase; Initialized comes first.
            Deviation::ReadyFollowsHeldPhase => RuleId::ConditionInitialized,
            Deviation::RestartUnderNever => RuleId::RestartPolicyNever,
            Deviation::RestartAfterSuccessOnFailure => RuleId::RestartPolicyOnfailure,
            Deviation::LeaveTerminalPhase => RuleId::PhaseTerminalNeverLeft,
            Deviation::OomKilledForEveryFailure | Deviation::SigkillExitAsOomKilled => {
                RuleId::ContainerStateTerminated
            }
            Deviation::ReadyWhileTerminated => RuleId::ContainerReadyNoProbe,
            Deviation::NoCrashLoopBackOffState => RuleId::ContainerStateWaitingCrashloop,
            Deviation::RunningBeforeStart => RuleId::PhasePending,
            Deviation::ExitsEarly => RuleId::ContainerRunsToCompletion,
            Deviation::NoRestartAfterSuccessUnderAlways => RuleId::RestartPolicyAlways,
            Deviation::ReadinessFailureRestarts => RuleId::ProbeReadinessNoRestart,
            Deviation::ReadyBeforeReadinessProbe => RuleId::ProbeReadinessInitialFailure,
            // The model plays this bug by dropping the startup probe, so the container
            // shows started=true at once, before liveness gets to kill it.
            Deviation::LivenessBeforeStartup => RuleId::ProbeStartupStarted,
            Deviation::LivenessIgnoresFailureThreshold => RuleId::ProbeLivenessFailureThreshold,
            Deviation::NoLivenessKill => RuleId::ProbeLivenessRestart,
            Deviation::ReadinessIgnoresFailureThreshold => RuleId::ProbeReadinessTransitions,
            Deviation::IgnoresInitialDelay => RuleId::ProbeInitialDelay,
            Deviation::IgnoresProbeTimeout => RuleId::ProbeTimeout,
            Deviation::ErrorCountsAsFailure => RuleId::ProbeErrorNotFailure,
            Deviation::StartupFailureIgnored => RuleId::ProbeStartupFailureRestart,
            Deviation::HttpStatusIgnored => RuleId::ProbeHandlerHttp,
            Deviation::ExecExitCodeIgnored => RuleId::ProbeHandlerExec,
            Deviation::TcpAlwaysConnects => RuleId::ProbeHandlerTcp,
            Deviation::GrpcStatusIgnored => RuleId::ProbeHandlerGrpc,
            Deviation::GrpcFailsAtOnceWithoutListener => RuleId::ProbeTimeout,
            Deviation::SigkillBeforeGracePeriod => RuleId::TerminationGracePeriod,
            Deviation::PreStopAfterSigterm => RuleId::TerminationPrestopFirst,
            Deviation::PreStopNotCountedInGrace => RuleId::TerminationPrestopInGrace,
            Deviation::NoMinimumGraceAfterPreStop => RuleId::TerminationMinimumGrace,
            Deviation::LivenessDuringTermination => RuleId::TerminationLivenessStops,
            Deviation::ObjectRemovedDespiteFinalizers => RuleId::TerminationFinalizers,
            Deviation::DeletedPodKeepsItsPhase => RuleId::TerminationPhase,
            Deviation::RestartDuringTermination => RuleId::TerminationNoRestart,
            Deviation::PostStartBeforeEntrypoint => RuleId::HookPoststartConcurrent,
            Deviation::RunningBeforePostStartCompletes => RuleId::HookPoststartRunningAfter,
            Deviation::PostStartFailureIgnored => RuleId::HookPoststartFailureKills,
            Deviation::TcpHookSucceeds => RuleId::HookHandlerTcpRefused,
            Deviation::FailedPreStopSkipsSigterm => RuleId::HookPrestopFailureContinues,
            Deviation::PreStopNotCutOff => RuleId::HookPrestopCutOff,
            Deviation::ExecHooksNotRun => RuleId::HookHandlerExec,
            Deviation::HttpHooksNotRun => RuleId::HookHandlerHttp,
            Deviation::SleepHooksNotRun => RuleId::HookHandlerSleep,
            Deviation::ReadinessStopsOnDeletion => RuleId::TerminationReadinessContinues,
            Deviation::InitContainersTogether => RuleId::InitSequential,
            Deviation::RegularBeforeInit => RuleId::InitBeforeRegular,
            Deviation::InitWaitingContainerCreating => RuleId::InitStatus,
            Deviation::InitNotRetried => RuleId::InitRetry,
            Deviation::InitFailureIgnoredUnderNever => RuleId::InitNeverFailsPod,
            Deviation::SidecarGateIgnoresStartupProbe => RuleId::SidecarStartGate,
            Deviation::SidecarFollowsPodPolicy => RuleId::SidecarRestartAlways,
            Deviation::SidecarReadinessIgnored => RuleId::SidecarReadiness,
            Deviation::SidecarExitDecidesPhase => RuleId::SidecarPhaseIgnored,
            Deviation::SidecarKeepsPodRunning => RuleId::SidecarStoppedAfterRegular,
            Deviation::SidecarsStoppedInSpecOrder | Deviation::SidecarsStoppedWithRegular => {
                RuleId::SidecarTerminationOrder
            }
            Deviation::EphemeralRestarted => RuleId::EphemeralNeverRestarted,
            Deviation::EphemeralReady => RuleId::EphemeralStatus,
            Deviation::EphemeralNotStarted => RuleId::EphemeralStarted,
            Deviation::EphemeralOwnNamespace => RuleId::EphemeralTargetNamespace,
        }
    }
}

/// Cases where a bug's first symptom, in the pod status, is exactly what another bug
/// shows, so the checker cannot name the bug from status alone. It reports the rule the
/// case was written for instead. (deviation, case, the rule reported first.) Telling
/// these apart needs the workload's probe log (what the agent answered before the flag
/// flipped or the kill came), which the checker does not use to attribute yet.
const REPORTED_INSTEAD: &[(Deviation, &str, RuleId)] = &[
    // A hook called after SIGTERM reaches a process that already died of it (httpGet), or
    // leaves no trace in its log (sleep): the same as a hook never run.
    (
        Deviation::PreStopAfterSigterm,
        "prestop-http-before-sigterm",
        RuleId::HookHandlerHttp,
    ),
    (
        Deviation::PreStopAfterSigterm,
        "prestop-sleep",
        RuleId::HookHandlerSleep,
    ),
    // Killed at its first readiness failure while terminating: before the grace period.
    (
        Deviation::ReadinessFailureRestarts,
        "liveness-stops-readiness-continues",
        RuleId::TerminationGracePeriod,
    ),
    // Ignoring the failure of a tcpSocket hook is the same as letting it succeed.
    (
        Deviation::PostStartFailureIgnored,
        "poststart-tcp-handler-fails",
        RuleId::HookHandlerTcpRefused,
    ),
    // Where the grace period left is the 2s minimum, a SIGKILL before it breaks the minimum.
    (
        Deviation::SigkillBeforeGracePeriod,
        "prestop-cut-off-two-seconds-left",
        RuleId::TerminationMinimumGrace,
    ),
    (
        Deviation::SigkillBeforeGracePeriod,
        "force-delete-with-finalizer",
        RuleId::TerminationMinimumGrace,
    ),
    // The pod succeeded before it was deleted: its late phase is a late Succeeded.
    (
        Deviation::TerminalPhaseLate,
        "delete-terminal-pod-removed-at-once",
        RuleId::PhaseSucceeded,
    ),
    // A reset after 300 s comes where the kubelet's collection of the entry would have
    // let the restart come: the restart is counted against that window.
    (
        Deviation::BackOffResetTooSoon,
        "backoff-collected-while-waiting",
        RuleId::RestartBackoffCollected,
    ),
    // A liveness probe run before its delay kills a container that is not up yet: the
    // kill is what the status shows.
    (
        Deviation::IgnoresInitialDelay,
        "liveness-initial-delay-enough",
        RuleId::ProbeLivenessFailureThreshold,
    ),
    // A kill at the first failure looks like a probe started before its initial delay.
    (
        Deviation::LivenessIgnoresFailureThreshold,
        "liveness-initial-delay-too-short",
        RuleId::ProbeInitialDelay,
    ),
    // Only the latest instance's log can be read (as with `kubectl logs`): the late kill of
    // an earlier instance shows before the cadence of the last one.
    (
        Deviation::ProbePeriodOneSecondLonger,
        "liveness-initial-delay-too-short",
        RuleId::ProbeLivenessRestart,
    ),
    (
        Deviation::ProbePeriodOneSecondLonger,
        "liveness-restarts-on-failure",
        RuleId::ProbeLivenessRestart,
    ),
    (
        Deviation::ProbePeriodOneSecondLonger,
        "readiness-before-a-carried-liveness-kill",
        RuleId::ProbeLivenessRestart,
    ),
    (
        Deviation::ProbePeriodOneSecondLonger,
        "startup-probe-fails-restarts",
        RuleId::ProbeStartupFailureRestart,
    ),
    // A restart after exit 0 that never comes is judged against the window its back-off
    // sets (the second restart: doubling), not against the restart policy.
    (
        Deviation::NoRestartAfterSuccessUnderAlways,
        "liveness-run-carried-through-a-short-instance",
        RuleId::RestartBackoffDoubling,
    ),
    // Where the workload's log cannot show the cadence (readiness probes are not logged;
    // a startup probe shares its endpoint with liveness), a longer period shows first as a
    // flag that flips late, between two snapshots.
    (
        Deviation::ProbePeriodOneSecondLonger,
        "readiness-and-liveness-thresholds",
        RuleId::ProbeReadinessTransitions,
    ),
    (
        Deviation::ProbePeriodOneSecondLonger,
        "readiness-flips-no-restart",
        RuleId::ProbeReadinessTransitions,
    ),
    (
        Deviation::ProbePeriodOneSecondLonger,
        "readiness-initially-not-ready",
        RuleId::ProbeReadinessTransitions,
    ),
    (
        Deviation::ProbePeriodOneSecondLonger,
        "startup-probe-slow-start",
        RuleId::ProbeStartupStarted,
    ),
    // The next probe after a slow answer comes a period late: read as a timeout not kept.
    (
        Deviation::ProbePeriodOneSecondLonger,
        "liveness-timeout-too-low",
        RuleId::ProbeTimeout,
    ),
    // The same bug on a pod that succeeds.
    (
        Deviation::TerminalPhaseLate,
        "never-exit-0-succeeds",
        RuleId::PhaseSucceeded,
    ),
    (
        Deviation::TerminalPhaseLate,
        "onfailure-exit-0-not-restarted",
        RuleId::PhaseSucceeded,
    ),
    (
        Deviation::TerminalPhaseLate,
        "onfailure-mixed-containers",
        RuleId::PhaseSucceeded,
    ),
    (
        Deviation::TerminalPhaseLate,
        "onfailure-retries-until-success",
        RuleId::PhaseSucceeded,
    ),
    // Ready at once, where the only readiness probe errors (a missing named port),
    // looks the same as an error counted as a success.
    (
        Deviation::ReadyBeforeReadinessProbe,
        "named-port-missing-is-an-error",
        RuleId::ProbeErrorNotFailure,
    ),
    // Ready at once looks the same as readiness probing before its initial delay.
    (
        Deviation::ReadyBeforeReadinessProbe,
        "readiness-initial-delay",
        RuleId::ProbeInitialDelay,
    ),
    // A readiness failure that kills looks the same as a liveness probe that kills
    // before its failure threshold: both probes fail in that case.
    (
        Deviation::ReadinessFailureRestarts,
        "readiness-and-liveness-thresholds",
        RuleId::ProbeLivenessFailureThreshold,
    ),
    // Liveness killing before its initial delay plus its threshold looks the same as a
    // kill at the first failure.
    (
        Deviation::IgnoresInitialDelay,
        "liveness-initial-delay-enough",
        RuleId::ProbeLivenessFailureThreshold,
    ),
    (
        Deviation::LivenessIgnoresFailureThreshold,
        "liveness-initial-delay-too-short",
        RuleId::ProbeInitialDelay,
    ),
    // A failing answer read as success makes the flag flip early, as a readiness or
    // startup probe that does not wait for its first success would.
    (
        Deviation::HttpStatusIgnored,
        "readiness-initially-not-ready",
        RuleId::ProbeReadinessInitialFailure,
    ),
    (
        Deviation::HttpStatusIgnored,
        "startup-probe-fails-restarts",
        RuleId::ProbeStartupStarted,
    ),
    (
        Deviation::TcpAlwaysConnects,
        "tcp-readiness-follows-listener",
        RuleId::ProbeReadinessInitialFailure,
    ),
    // Without a timeout, a gRPC dial sent before the server listens waits as long as the
    // runtime does: the probe stalls and the container stays ready past NOT_SERVING,
    // which looks the same as a readiness probe that misses the failure.
    (
        Deviation::IgnoresProbeTimeout,
        "grpc-readiness-follows-serving-status",
        RuleId::ProbeReadinessTransitions,
    ),
];

impl Deviation {
    /// The rule reported first instead of [`Deviation::expected_rule`] in the suite case
    /// `case`, where the bug's first symptom cannot be told apart from another bug's.
    ///
    /// `exercised` are the rules the case's prediction exercises: in a case that deletes
    /// its pod, the terminal phase is termination.phase's.
    pub fn reported_instead(self, case: &str, exercised: &[RuleId]) -> Option<RuleId> {
        REPORTED_INSTEAD
            .iter()
            .find(|(deviation, name, _)| *deviation == self && *name == case)
            .map(|(_, _, rule)| *rule)
            .or_else(|| match self {
                Deviation::TerminalPhaseLate if exercised.contains(&RuleId::TerminationPhase) => {
                    Some(RuleId::TerminationPhase)
                }
                // A start behind a sidecar is timed by the sidecar's start gate.
                Deviation::InitContainersTogether | Deviation::RegularBeforeInit
                    if exercised.contains(&RuleId::SidecarStartGate) =>
                {
                    Some(RuleId::SidecarStartGate)
                }
                // The late terminal phase of a pod that succeeds, or whose init container
                // failed under Never.
                Deviation::TerminalPhaseLate if exercised.contains(&RuleId::InitNeverFailsPod) => {
                    Some(RuleId::InitNeverFailsPod)
                }
                Deviation::TerminalPhaseLate if exercised.contains(&RuleId::PhaseSucceeded) => {
                    Some(RuleId::PhaseSucceeded)
                }
                // Pending while the init containers run is init.pending's.
                Deviation::RunningBeforeStart if exercised.contains(&RuleId::InitPending) => {
                    Some(RuleId::InitPending)
                }
                _ => None,
            })
    }
}

/// An instance's exit as the model target played it, which a planted restart bug judges.
pub(super) struct Exited {
    pub(super) code: i32,
    /// A liveness or startup probe had it killed.
    pub(super) killed: bool,
    /// How long the instance ran.
    pub(super) ran: SpecDuration,
    pub(super) index: u32,
}

/// What a runtime with the planted bug `deviation` does after an exit the model says is
/// followed by `planned`; `previous_wait` is the back-off the container last waited.
pub(super) fn deviate(
    planned: AfterExit,
    deviation: Option<Deviation>,
    policy: RestartPolicy,
    exited: Exited,
    previous_wait: Option<SpecDuration>,
    back_off: BackOffParams,
) -> AfterExit {
    let Exited {
        code,
        killed,
        ran,
        index,
    } = exited;
    let BackOffParams { initial, max } = back_off;
    match (deviation, planned) {
        (Some(Deviation::NoBackOffDoubling), AfterExit::RestartAfterBackOff(_)) => {
            AfterExit::RestartAfterBackOff(initial)
        }
        (Some(Deviation::BackOffOnFirstRestart), AfterExit::RestartImmediately)
            if index == 0 && !killed =>
        {
            AfterExit::RestartAfterBackOff(initial)
        }
        (Some(Deviation::NoBackOffCap), AfterExit::RestartAfterBackOff(b)) if b >= max => {
            AfterExit::RestartAfterBackOff(previous_wait.map_or(b, |previous| previous * 2))
        }
        (Some(Deviation::NoBackOffReset), AfterExit::RestartImmediately)
            if index > 0 && !killed =>
        {
            AfterExit::RestartAfterBackOff(previous_wait.map_or(initial, |p| (p * 2).min(max)))
        }
        (Some(Deviation::BackOffAfterProbeKill), AfterExit::RestartImmediately)
            if index > 0 && killed =>
        {
            AfterExit::RestartAfterBackOff(previous_wait.map_or(initial, |p| (p * 2).min(max)))
        }
        (
            Some(Deviation::BackOffResetTooSoon),
            AfterExit::RestartAfterBackOff(_) | AfterExit::RestartWhenBackOffCollected { .. },
        ) if ran > SpecDuration::from_secs(300) => AfterExit::RestartImmediately,
        (
            Some(Deviation::NoBackOffCollection),
            AfterExit::RestartWhenBackOffCollected { back_off, .. },
        ) => AfterExit::RestartAfterBackOff(back_off),
        (Some(Deviation::RestartUnderNever), AfterExit::StaysTerminated)
            if policy == RestartPolicy::Never =>
        {
            AfterExit::RestartImmediately
        }
        (
            Some(Deviation::NoRestartAfterSuccessUnderAlways),
            AfterExit::RestartImmediately | AfterExit::RestartAfterBackOff(_),
        ) if policy == RestartPolicy::Always && code == 0 => AfterExit::StaysTerminated,
        (Some(Deviation::RestartAfterSuccessOnFailure), AfterExit::StaysTerminated)
            if policy == RestartPolicy::OnFailure && code == 0 =>
        {
            AfterExit::RestartImmediately
        }
        (Some(Deviation::RestartDuringTermination), AfterExit::PodTerminating)
            if policy.restarts_after(code) =>
        {
            AfterExit::RestartImmediately
        }
        _ => planned,
    }
}
