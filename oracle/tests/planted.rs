//! The checker accepts every trace the model allows and flags each planted bug with the
//! rule it breaks.

use podcheck_oracle::simulate::{simulate, Deviation, Earliest, Latest, Seeded};
use podcheck_oracle::{check, predict, Outcome, RuleId, Scenario};
use std::path::Path;

fn suite(name: &str) -> Scenario {
    let suites = Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites");
    let path = [
        "restart",
        "probes",
        "termination",
        "hooks",
        "faults",
        "init",
        "sidecars",
        "ephemeral",
    ]
    .iter()
    .map(|area| suites.join(area).join(format!("{name}.yaml")))
    .find(|path| path.exists())
    .unwrap_or_else(|| panic!("no suite case {name}"));
    match Scenario::from_file(&path) {
        Ok(s) => s,
        Err(err) => panic!("{err}"),
    }
}

#[test]
fn model_traces_pass_at_both_extremes() {
    for name in ["never-exit-1-fails", "always-crash-loop-backoff"] {
        let scenario = suite(name);
        let prediction = predict(&scenario).expect("predictable");
        for trace in [
            simulate(&scenario, &prediction, &mut Earliest, None),
            simulate(&scenario, &prediction, &mut Latest, None),
            simulate(&scenario, &prediction, &mut Seeded(7), None),
        ] {
            let verdict = check(&prediction, &trace);
            assert_eq!(
                verdict.outcome,
                Outcome::Pass,
                "{name}: {:#?}",
                verdict.violations
            );
        }
    }
}

/// Each planted bug, a suite case that exposes it, and the rule it must be flagged with.
const PLANTED: &[(Deviation, &str, RuleId)] = &[
    (
        Deviation::EphemeralRestarted,
        "ephemeral-started-never-restarted",
        RuleId::EphemeralNeverRestarted,
    ),
    (
        Deviation::EphemeralOwnNamespace,
        "ephemeral-targets-a-container",
        RuleId::EphemeralTargetNamespace,
    ),
    (
        Deviation::EphemeralNotStarted,
        "ephemeral-started-never-restarted",
        RuleId::EphemeralStarted,
    ),
    (
        Deviation::EphemeralReady,
        "ephemeral-targets-a-container",
        RuleId::EphemeralStatus,
    ),
    (
        Deviation::InitContainersTogether,
        "init-runs-in-order",
        RuleId::InitSequential,
    ),
    (
        Deviation::RegularBeforeInit,
        "wait-for-something",
        RuleId::InitBeforeRegular,
    ),
    (
        Deviation::InitWaitingContainerCreating,
        "init-runs-in-order",
        RuleId::InitStatus,
    ),
    (
        Deviation::InitNotRetried,
        "init-failure-retries-with-back-off",
        RuleId::InitRetry,
    ),
    (
        Deviation::InitFailureIgnoredUnderNever,
        "init-failure-fails-pod-under-never",
        RuleId::InitNeverFailsPod,
    ),
    (
        Deviation::RunningBeforeStart,
        "wait-for-something",
        RuleId::InitPending,
    ),
    (
        Deviation::SidecarGateIgnoresStartupProbe,
        "sidecar-startup-probe-gates-next",
        RuleId::SidecarStartGate,
    ),
    (
        Deviation::SidecarFollowsPodPolicy,
        "sidecar-restarts-under-never",
        RuleId::SidecarRestartAlways,
    ),
    (
        Deviation::SidecarReadinessIgnored,
        "sidecar-readiness-counts",
        RuleId::SidecarReadiness,
    ),
    (
        Deviation::SidecarExitDecidesPhase,
        "job-with-log-shipper-completes",
        RuleId::SidecarPhaseIgnored,
    ),
    (
        Deviation::SidecarKeepsPodRunning,
        "job-with-log-shipper-completes",
        RuleId::SidecarStoppedAfterRegular,
    ),
    (
        Deviation::SidecarsStoppedInSpecOrder,
        "sidecars-stop-in-reverse-order",
        RuleId::SidecarTerminationOrder,
    ),
    (
        Deviation::SidecarsStoppedWithRegular,
        "deletion-stops-regular-then-sidecars",
        RuleId::SidecarTerminationOrder,
    ),
    (
        Deviation::FailedPreStopSkipsSigterm,
        "prestop-failure-continues",
        RuleId::HookPrestopFailureContinues,
    ),
    (
        Deviation::PreStopNotCutOff,
        "prestop-cut-off-two-seconds-left",
        RuleId::HookPrestopCutOff,
    ),
    (
        Deviation::ExecHooksNotRun,
        "prestop-exec-before-sigterm",
        RuleId::HookHandlerExec,
    ),
    (
        Deviation::HttpHooksNotRun,
        "prestop-http-before-sigterm",
        RuleId::HookHandlerHttp,
    ),
    (
        Deviation::SleepHooksNotRun,
        "prestop-sleep",
        RuleId::HookHandlerSleep,
    ),
    (
        Deviation::ReadinessStopsOnDeletion,
        "liveness-stops-readiness-continues",
        RuleId::TerminationReadinessContinues,
    ),
    (
        Deviation::PostStartBeforeEntrypoint,
        "poststart-runs-with-the-entrypoint",
        RuleId::HookPoststartConcurrent,
    ),
    (
        Deviation::RunningBeforePostStartCompletes,
        "poststart-sleep-holds-running",
        RuleId::HookPoststartRunningAfter,
    ),
    (
        Deviation::PostStartFailureIgnored,
        "poststart-failure-kills-under-never",
        RuleId::HookPoststartFailureKills,
    ),
    (
        Deviation::TcpHookSucceeds,
        "poststart-tcp-handler-fails",
        RuleId::HookHandlerTcpRefused,
    ),
    (
        Deviation::SigkillBeforeGracePeriod,
        "sigterm-ignored-killed-after-grace",
        RuleId::TerminationGracePeriod,
    ),
    (
        Deviation::PreStopAfterSigterm,
        "prestop-exec-before-sigterm",
        RuleId::TerminationPrestopFirst,
    ),
    (
        Deviation::PreStopNotCountedInGrace,
        "prestop-counts-in-grace",
        RuleId::TerminationPrestopInGrace,
    ),
    (
        Deviation::NoMinimumGraceAfterPreStop,
        "prestop-cut-off-two-seconds-left",
        RuleId::TerminationMinimumGrace,
    ),
    (
        Deviation::LivenessDuringTermination,
        "liveness-stops-readiness-continues",
        RuleId::TerminationLivenessStops,
    ),
    (
        Deviation::ObjectRemovedDespiteFinalizers,
        "finalizer-keeps-object",
        RuleId::TerminationFinalizers,
    ),
    (
        Deviation::DeletedPodKeepsItsPhase,
        "delete-unprepared-process-dies-of-sigterm",
        RuleId::TerminationPhase,
    ),
    (
        Deviation::RestartDuringTermination,
        "delete-unprepared-process-dies-of-sigterm",
        RuleId::TerminationNoRestart,
    ),
    (
        Deviation::NoBackOffDoubling,
        "always-crash-loop-backoff",
        RuleId::RestartBackoffDoubling,
    ),
    (
        Deviation::BackOffOnFirstRestart,
        "always-crash-loop-backoff",
        RuleId::RestartBackoffFirstImmediate,
    ),
    (
        Deviation::NoBackOffCap,
        "backoff-cap-configured",
        RuleId::RestartBackoffCap,
    ),
    (
        Deviation::BackOffAfterProbeKill,
        "liveness-restarts-on-failure",
        RuleId::RestartBackoffProbeKill,
    ),
    (
        Deviation::NoBackOffCollection,
        "backoff-collected-while-waiting",
        RuleId::RestartBackoffCollected,
    ),
    (
        Deviation::BackOffResetTooSoon,
        "backoff-kept-through-a-shorter-run",
        RuleId::RestartBackoffDoubling,
    ),
    (
        Deviation::NoBackOffCap,
        "backoff-cap-default",
        RuleId::RestartBackoffCap,
    ),
    (
        Deviation::NoBackOffReset,
        "backoff-reset-after-long-run",
        RuleId::RestartBackoffReset,
    ),
    (
        Deviation::RestartUnderNever,
        "never-exit-1-fails",
        RuleId::RestartPolicyNever,
    ),
    (
        Deviation::RestartAfterSuccessOnFailure,
        "onfailure-exit-0-not-restarted",
        RuleId::RestartPolicyOnfailure,
    ),
    (
        Deviation::LeaveTerminalPhase,
        "never-exit-0-succeeds",
        RuleId::PhaseTerminalNeverLeft,
    ),
    (
        Deviation::OomKilledForEveryFailure,
        "never-exit-1-fails",
        RuleId::ContainerStateTerminated,
    ),
    (
        Deviation::SigkillExitAsOomKilled,
        "never-exit-137-is-error",
        RuleId::ContainerStateTerminated,
    ),
    (
        Deviation::ReadyWhileTerminated,
        "never-one-exits-other-runs",
        RuleId::ContainerReadyNoProbe,
    ),
    (
        Deviation::NoCrashLoopBackOffState,
        "backoff-cap-default",
        RuleId::ContainerStateWaitingCrashloop,
    ),
    (
        Deviation::RunningBeforeStart,
        "run-forever-ready",
        RuleId::PhasePending,
    ),
    (
        Deviation::ExitsEarly,
        "never-exit-0-succeeds",
        RuleId::ContainerRunsToCompletion,
    ),
    (
        Deviation::NoRestartAfterSuccessUnderAlways,
        "always-exit-0-restarted",
        RuleId::RestartPolicyAlways,
    ),
    (
        Deviation::ReadinessFailureRestarts,
        "readiness-flips-no-restart",
        RuleId::ProbeReadinessNoRestart,
    ),
    (
        Deviation::ReadyBeforeReadinessProbe,
        "readiness-initially-not-ready",
        RuleId::ProbeReadinessInitialFailure,
    ),
    (
        Deviation::LivenessBeforeStartup,
        "startup-probe-slow-start",
        RuleId::ProbeStartupGates,
    ),
    (
        Deviation::LivenessBeforeStartup,
        "startup-probe-slow-start",
        RuleId::ProbeStartupStarted,
    ),
    (
        Deviation::LivenessIgnoresFailureThreshold,
        "liveness-restarts-on-failure",
        RuleId::ProbeLivenessFailureThreshold,
    ),
    (
        Deviation::NoLivenessKill,
        "liveness-restarts-on-failure",
        RuleId::ProbeLivenessRestart,
    ),
    (
        Deviation::ReadinessIgnoresFailureThreshold,
        "readiness-flips-no-restart",
        RuleId::ProbeReadinessTransitions,
    ),
    (
        Deviation::TerminalPhaseLate,
        "never-exit-1-fails",
        RuleId::PhaseFailed,
    ),
    (
        Deviation::ReadyFollowsHeldPhase,
        "never-exit-0-succeeds",
        RuleId::ConditionInitialized,
    ),
    (
        Deviation::IgnoresInitialDelay,
        "liveness-initial-delay-too-short",
        RuleId::ProbeInitialDelay,
    ),
    (
        Deviation::IgnoresInitialDelay,
        "readiness-initial-delay",
        RuleId::ProbeInitialDelay,
    ),
    (
        Deviation::IgnoresProbeTimeout,
        "liveness-timeout-too-low",
        RuleId::ProbeTimeout,
    ),
    (
        Deviation::ErrorCountsAsFailure,
        "named-port-missing-is-an-error",
        RuleId::ProbeErrorNotFailure,
    ),
    (
        Deviation::StartupFailureIgnored,
        "startup-probe-fails-restarts",
        RuleId::ProbeStartupFailureRestart,
    ),
    (
        Deviation::HttpStatusIgnored,
        "liveness-restarts-on-failure",
        RuleId::ProbeHandlerHttp,
    ),
    (
        Deviation::ExecExitCodeIgnored,
        "exec-liveness-restarts",
        RuleId::ProbeHandlerExec,
    ),
    (
        Deviation::GrpcStatusIgnored,
        "grpc-readiness-follows-serving-status",
        RuleId::ProbeHandlerGrpc,
    ),
    (
        Deviation::TcpAlwaysConnects,
        "tcp-readiness-follows-listener",
        RuleId::ProbeHandlerTcp,
    ),
    (
        Deviation::GrpcFailsAtOnceWithoutListener,
        "grpc-liveness-dial-waits-for-listener",
        RuleId::ProbeTimeout,
    ),
    (
        Deviation::ProbePeriodOneSecondLonger,
        "liveness-failure-count-resets",
        RuleId::ProbePeriod,
    ),
    (
        Deviation::ProbePeriodOneSecondLonger,
        "exec-liveness-restarts",
        RuleId::ProbePeriod,
    ),
    (
        Deviation::LivenessFailureCountNotReset,
        "liveness-failure-count-resets",
        RuleId::ProbeLivenessFailureThreshold,
    ),
];

#[test]
fn every_planted_bug_is_flagged_with_its_rule_whatever_the_timing() {
    for &(deviation, case, rule) in PLANTED {
        let scenario = suite(case);
        let prediction = predict(&scenario).expect("predictable");
        let mut runs: Vec<Box<dyn podcheck_oracle::simulate::Choices>> =
            vec![Box::new(Earliest), Box::new(Latest)];
        runs.extend(
            (0..20)
                .map(|seed| Box::new(Seeded(seed)) as Box<dyn podcheck_oracle::simulate::Choices>),
        );
        for mut choices in runs {
            let trace = simulate(&scenario, &prediction, choices.as_mut(), Some(deviation));
            let verdict = check(&prediction, &trace);
            assert_eq!(
                verdict.outcome,
                Outcome::Fail,
                "{deviation:?} on {case} passed"
            );
            assert!(
                verdict.violated_rules().contains(&rule),
                "{deviation:?} on {case}: expected {rule}, got {:?}",
                verdict.violations
            );
        }
    }
}

/// The rules of the first observation a verdict reports (several when the checker
/// cannot tell which of them one observation broke).
fn first_rules(verdict: &podcheck_oracle::Verdict) -> Vec<RuleId> {
    let Some(first) = verdict.violations.first() else {
        return Vec::new();
    };
    verdict
        .violations
        .iter()
        .take_while(|v| {
            (v.at_ms, &v.container, &v.expected, &v.observed)
                == (
                    first.at_ms,
                    &first.container,
                    &first.expected,
                    &first.observed,
                )
        })
        .map(|v| v.rule)
        .collect()
}

/// A user reads the first violation to find the cause: in the case that exposes each
/// planted bug, the first one names the rule the bug breaks, whatever the timing.
#[test]
fn every_planted_bug_is_reported_first_under_its_rule_whatever_the_timing() {
    for &(deviation, case, _) in PLANTED {
        let rule = deviation.expected_rule();
        let scenario = suite(case);
        let prediction = predict(&scenario).expect("predictable");
        let mut runs: Vec<Box<dyn podcheck_oracle::simulate::Choices>> =
            vec![Box::new(Earliest), Box::new(Latest)];
        runs.extend(
            (0..20)
                .map(|seed| Box::new(Seeded(seed)) as Box<dyn podcheck_oracle::simulate::Choices>),
        );
        for mut choices in runs {
            let trace = simulate(&scenario, &prediction, choices.as_mut(), Some(deviation));
            let verdict = check(&prediction, &trace);
            let first = first_rules(&verdict);
            assert!(
                first.contains(&rule)
                    || deviation
                        .reported_instead(case, &prediction.rules)
                        .is_some_and(|instead| first.contains(&instead)),
                "{deviation:?} on {case}: expected {rule} first, got {:#?}",
                verdict.violations
            );
        }
    }
}

#[test]
fn every_deviation_has_a_planted_case() {
    for deviation in Deviation::ALL.iter().filter(|d| d.shows_in_status()) {
        assert!(
            PLANTED.iter().any(|(d, _, _)| d == deviation),
            "{deviation:?} is never planted"
        );
    }
}

#[test]
fn every_suite_case_passes_on_the_model_whatever_the_timing() {
    let suites = Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites");
    let mut count = 0;
    let paths = ["restart", "probes", "termination", "hooks", "faults"]
        .iter()
        .flat_map(|area| {
            std::fs::read_dir(suites.join(area))
                .expect("suite dir")
                .map(|entry| entry.expect("entry").path())
        });
    for path in paths {
        let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let prediction = predict(&scenario).expect("predictable");
        for seed in 0..50 {
            let trace = simulate(&scenario, &prediction, &mut Seeded(seed), None);
            let verdict = check(&prediction, &trace);
            assert_eq!(
                verdict.outcome,
                Outcome::Pass,
                "{}: seed {seed}: {:#?}",
                scenario.name,
                verdict.violations
            );
        }
        for trace in [
            simulate(&scenario, &prediction, &mut Earliest, None),
            simulate(&scenario, &prediction, &mut Latest, None),
        ] {
            let verdict = check(&prediction, &trace);
            assert_eq!(
                verdict.outcome,
                Outcome::Pass,
                "{}: {:#?}",
                scenario.name,
                verdict.violations
            );
        }
        count += 1;
    }
    assert!(count >= 30);
}

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
};
use podcheck_oracle::Trace;

fn each_status(trace: &mut Trace, mut change: impl FnMut(&mut PodStatus)) {
    for snapshot in &mut trace.snapshots {
        change(&mut snapshot.status);
    }
}

fn each_container(status: &mut PodStatus, mut change: impl FnMut(&mut ContainerStatus)) {
    for container in status.container_statuses.iter_mut().flatten() {
        change(container);
    }
}

fn condition<'a>(status: &'a mut PodStatus, type_: &str) -> Option<&'a mut PodCondition> {
    status
        .conditions
        .iter_mut()
        .flatten()
        .find(|c| c.type_ == type_)
}

fn running(c: &ContainerStatus) -> bool {
    c.state.as_ref().is_some_and(|s| s.running.is_some())
}

type Mutation = fn(&mut Trace);

/// `name` never starts: every status shows it waiting to be created, restartCount 0, as a
/// kubelet shows a container it never started.
fn never_started(trace: &mut Trace, name: &str) {
    each_status(trace, |s| {
        let reason = if s.init_container_statuses.is_some() {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        let init = s.init_container_statuses.iter_mut().flatten();
        for c in init.chain(s.container_statuses.iter_mut().flatten()) {
            if c.name == name {
                c.state = Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.to_owned()),
                        message: None,
                    }),
                    ..ContainerState::default()
                });
                c.last_state = None;
                c.restart_count = 0;
                c.ready = false;
                c.started = Some(false);
            }
        }
    })
}

/// Faults planted directly into correct traces: a target that reports the wrong field.
const MUTATIONS: &[(&str, &str, RuleId, Mutation)] = &[
    (
        "a container that never starts (waiting, restartCount 0)",
        "run-forever-ready",
        RuleId::ContainerStateRunning,
        |t| never_started(t, "app"),
    ),
    (
        "the container after a sidecar never starts (waiting, restartCount 0)",
        "sidecar-keeps-running",
        RuleId::SidecarStartGate,
        |t| never_started(t, "app"),
    ),
    (
        "no deletionTimestamp",
        "delete-unprepared-process-dies-of-sigterm",
        RuleId::TerminationDeletionTimestamp,
        |t| {
            for snapshot in &mut t.snapshots {
                snapshot.metadata.deletion_timestamp = None;
            }
        },
    ),
    (
        "a deleted container exits 0 instead of dying of SIGTERM",
        "delete-unprepared-process-dies-of-sigterm",
        RuleId::TerminationSigterm,
        |t| {
            each_status(t, |s| {
                each_container(s, |c| {
                    if let Some(terminated) = c.state.as_mut().and_then(|s| s.terminated.as_mut()) {
                        terminated.exit_code = 0;
                        terminated.reason = Some("Completed".to_owned());
                    }
                })
            })
        },
    ),
    (
        "the deleted object is never removed",
        "delete-unprepared-process-dies-of-sigterm",
        RuleId::TerminationObjectRemoved,
        |t| t.snapshots.retain(|s| !s.metadata.gone),
    ),
    (
        "a force-deleted object is not removed",
        "force-delete-removes-object",
        RuleId::TerminationForceDelete,
        |t| t.snapshots.retain(|s| !s.metadata.gone),
    ),
    (
        "a container killed from outside shows exit code 143",
        "kill-container-never-fails",
        RuleId::FaultKillContainer,
        |t| {
            each_status(t, |s| {
                each_container(s, |c| {
                    if let Some(terminated) = c.state.as_mut().and_then(|s| s.terminated.as_mut()) {
                        terminated.exit_code = 143;
                    }
                })
            })
        },
    ),
    (
        "phase stays Pending while running",
        "run-forever-ready",
        RuleId::PhaseRunning,
        |t| each_status(t, |s| s.phase = Some("Pending".to_owned())),
    ),
    (
        "Failed instead of Succeeded",
        "never-exit-0-succeeds",
        RuleId::PhaseSucceeded,
        |t| {
            each_status(t, |s| {
                if s.phase.as_deref() == Some("Succeeded") {
                    s.phase = Some("Failed".to_owned())
                }
            })
        },
    ),
    (
        "Succeeded instead of Failed",
        "never-exit-1-fails",
        RuleId::PhaseFailed,
        |t| {
            each_status(t, |s| {
                if s.phase.as_deref() == Some("Failed") {
                    s.phase = Some("Succeeded".to_owned())
                }
            })
        },
    ),
    (
        "Failed while Always restarts",
        "always-all-stopped-still-running",
        RuleId::PhaseAlwaysNeverTerminal,
        |t| {
            each_status(t, |s| {
                let all_stopped = s.container_statuses.iter().flatten().all(|c| !running(c));
                if all_stopped
                    && s.container_statuses
                        .iter()
                        .flatten()
                        .any(|c| c.restart_count > 0)
                {
                    s.phase = Some("Failed".to_owned());
                }
            })
        },
    ),
    (
        "Failed while OnFailure restarts",
        "onfailure-retries-until-success",
        RuleId::PhaseOnfailureRestartingRunning,
        |t| {
            each_status(t, |s| {
                // Every container waits for its restart: in CrashLoopBackOff, or still
                // Terminated after a failure (a short back-off may never show Waiting).
                let restarting = s.container_statuses.iter().flatten().all(|c| {
                    c.state.as_ref().is_some_and(|st| {
                        st.waiting.is_some() && c.last_state.is_some()
                            || st.terminated.as_ref().is_some_and(|t| t.exit_code != 0)
                    })
                });
                if restarting {
                    s.phase = Some("Failed".to_owned());
                }
            })
        },
    ),
    (
        "PodInitializing without init containers",
        "run-forever-ready",
        RuleId::ContainerStateWaitingCreating,
        |t| {
            each_status(t, |s| {
                each_container(s, |c| {
                    if let Some(w) = c.state.as_mut().and_then(|st| st.waiting.as_mut()) {
                        w.reason = Some("PodInitializing".to_owned());
                    }
                })
            })
        },
    ),
    (
        "first start 30s late",
        "run-forever-ready",
        RuleId::ContainerStateRunning,
        |t| {
            for snapshot in &mut t.snapshots {
                let late = |time: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| {
                    time.0 += k8s_openapi::jiff::SignedDuration::from_secs(30);
                };
                late(&mut snapshot.at);
                each_container(&mut snapshot.status, |c| {
                    if let Some(r) = c.state.as_mut().and_then(|st| st.running.as_mut()) {
                        r.started_at.as_mut().map(late);
                    }
                });
            }
            t.ended_at.0 += k8s_openapi::jiff::SignedDuration::from_secs(30);
        },
    ),
    (
        "lastState dropped",
        "always-crash-then-run",
        RuleId::ContainerLastState,
        |t| {
            each_status(t, |s| {
                each_container(s, |c| {
                    if running(c) {
                        c.last_state = None
                    }
                })
            })
        },
    ),
    (
        "restartCount drops back to 0",
        "always-crash-then-run",
        RuleId::ContainerRestartCount,
        |t| {
            if let Some(last) = t.snapshots.last_mut() {
                each_container(&mut last.status, |c| c.restart_count = 0);
            }
        },
    ),
    (
        "no PodScheduled condition",
        "run-forever-ready",
        RuleId::ConditionPodScheduled,
        |t| {
            each_status(t, |s| {
                if let Some(c) = s.conditions.as_mut() {
                    c.retain(|c| c.type_ != "PodScheduled")
                }
            })
        },
    ),
    (
        "sandbox never torn down",
        "never-exit-0-succeeds",
        RuleId::ConditionPodReadyToStartContainers,
        |t| {
            each_status(t, |s| {
                if let Some(c) = condition(s, "PodReadyToStartContainers") {
                    c.status = "True".to_owned()
                }
            })
        },
    ),
    (
        "Initialized without PodCompleted",
        "never-exit-0-succeeds",
        RuleId::ConditionInitialized,
        |t| {
            each_status(t, |s| {
                if let Some(c) = condition(s, "Initialized") {
                    c.reason = None
                }
            })
        },
    ),
    (
        "ContainersReady despite a terminated container",
        "never-one-exits-other-runs",
        RuleId::ConditionContainersReady,
        |t| {
            each_status(t, |s| {
                if let Some(c) = condition(s, "ContainersReady") {
                    c.status = "True".to_owned();
                    c.reason = None;
                    c.message = None;
                }
            })
        },
    ),
    (
        "Ready without ContainersReady",
        "never-one-exits-other-runs",
        RuleId::ConditionReady,
        |t| {
            each_status(t, |s| {
                if let Some(c) = condition(s, "Ready") {
                    c.status = "True".to_owned();
                    c.reason = None;
                    c.message = None;
                }
            })
        },
    ),
];

#[test]
fn every_planted_field_fault_is_flagged_with_its_rule() {
    for &(fault, case, rule, mutate) in MUTATIONS {
        let scenario = suite(case);
        let prediction = predict(&scenario).expect("predictable");
        for seed in 0..10 {
            let mut trace = simulate(&scenario, &prediction, &mut Seeded(seed), None);
            assert_eq!(
                check(&prediction, &trace).outcome,
                Outcome::Pass,
                "{case} unmutated"
            );
            mutate(&mut trace);
            let verdict = check(&prediction, &trace);
            assert!(
                verdict.violated_rules().contains(&rule),
                "{fault} on {case}: expected {rule}, got {:#?}",
                verdict.violations
            );
        }
    }
}

#[test]
fn every_rule_has_a_suite_case_and_a_planted_fault() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites");
    let mut listed = std::collections::BTreeSet::new();
    let mut exercised = std::collections::BTreeSet::new();
    for area in std::fs::read_dir(&dir).expect("suites") {
        for entry in std::fs::read_dir(area.expect("area").path()).expect("area dir") {
            let scenario = Scenario::from_file(&entry.expect("entry").path())
                .unwrap_or_else(|e| panic!("{e}"));
            let prediction = predict(&scenario).expect("predictable");
            // A rule id outside the catalogue does not parse: from_file refuses it.
            for rule in &scenario.rules {
                assert!(
                    prediction.rules.contains(rule),
                    "{} names {rule} but its prediction does not exercise it",
                    scenario.name
                );
                listed.insert(*rule);
            }
            exercised.extend(prediction.rules.iter().copied());
        }
    }
    let planted: std::collections::BTreeSet<RuleId> = PLANTED
        .iter()
        .map(|p| p.2)
        .chain(MUTATIONS.iter().map(|m| m.2))
        // Bugs acted out at creation are caught through the binary (tests/deviations.rs).
        .chain(
            Deviation::ALL
                .iter()
                .filter(|d| !d.shows_in_status())
                .map(|d| d.expected_rule()),
        )
        .collect();
    for rule in podcheck_oracle::rules::CATALOGUE {
        assert!(listed.contains(&rule.id), "no suite case names {}", rule.id);
        assert!(
            planted.contains(&rule.id),
            "no planted fault is flagged with {}",
            rule.id
        );
    }
}

/// A harness that sees only some snapshots (a slow poller) still catches a missing
/// back-off: the restart count alone outruns what the back-off allows.
#[test]
fn a_missing_back_off_is_caught_without_seeing_any_exit() {
    let scenario = suite("always-crash-loop-backoff");
    let prediction = predict(&scenario).expect("predictable");
    let mut trace = simulate(
        &scenario,
        &prediction,
        &mut Seeded(3),
        Some(Deviation::NoBackOffDoubling),
    );
    trace.snapshots.retain(|s| {
        s.status
            .container_statuses
            .iter()
            .flatten()
            .all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
    });
    each_status(&mut trace, |s| each_container(s, |c| c.last_state = None));
    let verdict = check(&prediction, &trace);
    assert!(
        verdict
            .violated_rules()
            .contains(&RuleId::RestartBackoffDoubling),
        "{:#?}",
        verdict.violations
    );
}

/// The workload's log of the instance a liveness probe killed: its start, `failures`
/// failed answers of /live in a row, then SIGTERM; probes every 2s (the case's period)
/// from its initialDelaySeconds (2s) on.
fn liveness_log(instance: i32, failures: usize) -> Vec<String> {
    let mut lines = vec![format!(
        r#"{{"event":"start","start":{instance},"run":"forever","tsMs":0}}"#
    )];
    let answers = std::iter::repeat_n("ok", 3).chain(std::iter::repeat_n("fail", failures));
    let mut at = 2000;
    for answer in answers {
        lines.push(format!(
            r#"{{"event":"probe","via":"http","endpoint":"live","answer":"{answer}","tsMs":{at}}}"#
        ));
        at += 2000;
    }
    lines.push(format!(
        r#"{{"event":"signal","signal":"SIGTERM","tsMs":{at}}}"#
    ));
    lines
}

#[test]
fn a_kill_before_failure_threshold_failures_is_caught_in_the_workload_log() {
    let scenario = suite("liveness-restarts-on-failure");
    let prediction = predict(&scenario).expect("predictable");
    for seed in 0..10 {
        let mut trace = simulate(&scenario, &prediction, &mut Seeded(seed), None);
        let shown = trace
            .snapshots
            .last()
            .and_then(|s| s.status.container_statuses.as_ref()?.first().cloned())
            .expect("a container status");
        // The log kubectl shows is the latest instance's, once it was killed.
        let killed = if shown.state.as_ref().is_some_and(|s| s.running.is_some()) {
            shown.restart_count - 1
        } else {
            shown.restart_count
        };
        trace.logs.insert("app".to_owned(), liveness_log(killed, 5));
        let verdict = check(&prediction, &trace);
        assert_eq!(verdict.outcome, Outcome::Pass, "{:#?}", verdict.violations);
        trace.logs.insert("app".to_owned(), liveness_log(killed, 4));
        let verdict = check(&prediction, &trace);
        assert!(
            verdict
                .violated_rules()
                .contains(&RuleId::ProbeLivenessFailureThreshold),
            "a kill after 4 of 5 failures passed: {:#?}",
            verdict.violations
        );
    }
}

#[test]
fn ready_before_success_threshold_successes_is_caught_in_the_workload_log() {
    let scenario = suite("readiness-success-threshold");
    let prediction = predict(&scenario).expect("predictable");
    // Answers logged at the pod's creation, long before any snapshot shows ready.
    let created_ms = 1_750_000_000_000i64;
    let log = |successes: usize| {
        let mut lines = vec![r#"{"event":"start","start":0,"run":"forever","tsMs":0}"#.to_owned()];
        lines.push(format!(
            r#"{{"event":"probe","via":"http","endpoint":"ready","answer":"fail","tsMs":{created_ms}}}"#
        ));
        for _ in 0..successes {
            lines.push(format!(
                r#"{{"event":"probe","via":"http","endpoint":"ready","answer":"ok","tsMs":{created_ms}}}"#
            ));
        }
        lines
    };
    for seed in 0..10 {
        let mut trace = simulate(&scenario, &prediction, &mut Seeded(seed), None);
        trace.logs.insert("app".to_owned(), log(3));
        let verdict = check(&prediction, &trace);
        assert_eq!(verdict.outcome, Outcome::Pass, "{:#?}", verdict.violations);
        trace.logs.insert("app".to_owned(), log(2));
        let verdict = check(&prediction, &trace);
        assert!(
            verdict
                .violated_rules()
                .contains(&RuleId::ProbeReadinessTransitions),
            "ready after 2 of 3 successes passed: {:#?}",
            verdict.violations
        );
    }
}

/// A restart under Never that the target shows as a wait (whatever its reason, and with
/// or without lastState) is reported under the restart policy, not under a Waiting
/// reason rule: the wait is a consequence of the decision to restart.
#[test]
fn a_wait_to_restart_under_never_is_reported_as_a_restart() {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting};
    use k8s_openapi::jiff::SignedDuration;
    let scenario = suite("never-exit-1-fails");
    let prediction = predict(&scenario).expect("predictable");
    for seed in 0..10 {
        let mut trace = simulate(&scenario, &prediction, &mut Seeded(seed), None);
        let Some(mut waiting) = trace.snapshots.last().cloned() else {
            panic!("no snapshots")
        };
        waiting.at.0 += SignedDuration::from_millis(100);
        each_container(&mut waiting.status, |c| {
            c.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".to_owned()),
                    message: None,
                }),
                ..ContainerState::default()
            });
            c.last_state = None;
        });
        trace.ended_at.0 = waiting.at.0 + SignedDuration::from_secs(1);
        trace.snapshots.push(waiting);
        let verdict = check(&prediction, &trace);
        assert_eq!(
            first_rules(&verdict),
            vec![RuleId::RestartPolicyNever],
            "{:#?}",
            verdict.violations
        );
    }
}

/// A target that restarts a container without counting the restart is reported under
/// restartCount, not as an instance that never started.
#[test]
fn a_restart_count_that_never_grows_is_reported_as_such() {
    let scenario = suite("always-crash-then-run");
    let prediction = predict(&scenario).expect("predictable");
    for seed in 0..10 {
        let mut trace = simulate(&scenario, &prediction, &mut Seeded(seed), None);
        each_status(&mut trace, |s| each_container(s, |c| c.restart_count = 0));
        let verdict = check(&prediction, &trace);
        assert_eq!(
            first_rules(&verdict),
            vec![RuleId::ContainerRestartCount],
            "{:#?}",
            verdict.violations
        );
    }
}

/// After a startup probe succeeds, a kubelet shows `started` alone until the pod sync that
/// sets `ready` (SetContainerStartup touches only `started`): one relist and sync later.
#[test]
fn ready_may_follow_a_startup_probe_by_one_sync_but_not_forever() {
    let scenario = suite("startup-probe-slow-start");
    let prediction = predict(&scenario).expect("predictable");
    let correct = simulate(&scenario, &prediction, &mut Earliest, None);
    let first_started = correct
        .snapshots
        .iter()
        .position(|s| {
            s.status
                .container_statuses
                .iter()
                .flatten()
                .any(|c| c.started == Some(true))
        })
        .expect("the container starts");
    assert!(first_started > 0, "a snapshot before the start");
    let mut lagging = correct.clone();
    let mut started_alone = lagging.snapshots[first_started - 1].clone();
    started_alone.at = lagging.snapshots[first_started].at.clone();
    each_container(&mut started_alone.status, |c| c.started = Some(true));
    let later = &mut lagging.snapshots[first_started];
    later.at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        later.at.0 + k8s_openapi::jiff::SignedDuration::from_millis(1500),
    );
    if let Some(next) = lagging.snapshots.get(first_started + 1) {
        assert!(
            next.at.0 > lagging.snapshots[first_started].at.0,
            "order kept"
        );
    }
    lagging.snapshots.insert(first_started, started_alone);
    let verdict = check(&prediction, &lagging);
    assert_eq!(verdict.outcome, Outcome::Pass, "{:#?}", verdict.violations);

    let mut never_ready = correct;
    each_status(&mut never_ready, |s| each_container(s, |c| c.ready = false));
    let verdict = check(&prediction, &never_ready);
    assert!(
        verdict
            .violations
            .iter()
            .any(|v| v.rule == RuleId::ContainerReadyNoProbe),
        "{:#?}",
        verdict.violations
    );
}
