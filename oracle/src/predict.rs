//! `predict`: what must happen to a scenario's pod, as time windows and expected states.

use crate::duration::SpecDuration;
use crate::plan::{self, AfterExit, ContainerPlan, STATUS_LAG};
use crate::rules::RuleId;
use crate::scenario::{BackOffParams, RestartPolicy, Scenario};
use serde::Serialize;
use thiserror::Error;

/// How long a settled pod is watched for late surprises (an unexpected restart, a phase
/// that is left) before the harness may stop early.
pub const SETTLE: SpecDuration = SpecDuration::from_secs(5);

/// A perpetual crash loop is watched until this many restarts have had time to happen.
pub const CRASH_LOOP_RESTARTS_WATCHED: usize = 5;

/// Observation never goes beyond this, whatever the scenario says.
pub const MAX_HORIZON: SpecDuration = SpecDuration::from_secs(3600);

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prediction {
    pub scenario: String,
    pub restart_policy: RestartPolicy,
    pub back_off: BackOffParams,
    /// How long to watch the pod, in spec time.
    pub horizon: SpecDuration,
    pub containers: Vec<ContainerPlan>,
    /// The phase the pod must end in, when it settles in a terminal phase.
    pub terminal_phase: Option<&'static str>,
    /// Whether the Running phase lasts long enough that every target must show it.
    pub running_observable: bool,
    /// Every rule this prediction exercises.
    pub rules: Vec<RuleId>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PredictError {
    #[error("scenario {scenario}, container {container}: {reason}")]
    AmbiguousProbe {
        scenario: String,
        container: String,
        reason: String,
    },
    #[error("scenario {scenario}, container {container}: the restart {reason}, so it has no single prediction")]
    UndecidedRestart {
        scenario: String,
        container: String,
        reason: String,
    },
}

pub fn predict(scenario: &Scenario) -> Result<Prediction, PredictError> {
    let probe = plan::plan_containers(scenario, MAX_HORIZON);
    if let Some(plan) = probe.iter().find(|p| p.ambiguity.is_some()) {
        return Err(PredictError::AmbiguousProbe {
            scenario: scenario.name.clone(),
            container: plan.name.clone(),
            reason: plan.ambiguity.clone().unwrap_or_default(),
        });
    }
    let horizon = scenario
        .observe_for
        .unwrap_or_else(|| default_horizon(&probe))
        .min(MAX_HORIZON);
    let containers = plan::plan_containers(scenario, horizon);
    // A restart decision past the horizon is never observed; one within it is refused.
    if let Some((plan, undecided)) = containers.iter().find_map(|plan| {
        plan.undecided
            .as_ref()
            .filter(|u| u.at <= horizon)
            .map(|u| (plan, u))
    }) {
        return Err(PredictError::UndecidedRestart {
            scenario: scenario.name.clone(),
            container: plan.name.clone(),
            reason: undecided.reason.clone(),
        });
    }
    let policy = scenario.restart_policy();
    let terminal_phase = if containers.iter().all(|c| c.final_exit_code().is_some()) {
        let all_zero = containers.iter().all(|c| c.final_exit_code() == Some(0));
        Some(if all_zero { "Succeeded" } else { "Failed" })
    } else {
        None
    };
    let running_observable = containers.iter().any(|c| {
        c.instances.first().is_some_and(|first| {
            first
                .end()
                .is_none_or(|end| end.lo >= SpecDuration::from_secs(5))
        })
    });
    let rules = exercised_rules(&containers, policy, terminal_phase, running_observable);
    Ok(Prediction {
        scenario: scenario.name.clone(),
        restart_policy: policy,
        back_off: scenario.kubelet.back_off(),
        horizon,
        containers,
        terminal_phase,
        running_observable,
        rules,
    })
}

fn default_horizon(plans: &[ContainerPlan]) -> SpecDuration {
    plans
        .iter()
        .map(|plan| {
            let watched = if plan.settles {
                plan.instances.len()
            } else {
                plan.instances.len().min(CRASH_LOOP_RESTARTS_WATCHED + 1)
            };
            let Some(last) = plan.instances.get(watched.saturating_sub(1)) else {
                // A container whose start gate never opens has nothing to watch.
                return SETTLE;
            };
            let start = if plan.settles {
                last.latest_start
            } else {
                last.earliest_start + STATUS_LAG
            };
            // A last exit that may make the pod terminal is watched until the latest
            // moment the kubelet writes the terminal phase.
            let after_end = if matches!(last.after_exit, Some(AfterExit::StaysTerminated)) {
                plan::TERMINAL_PHASE_LAG
            } else {
                STATUS_LAG
            };
            let run = last
                .end()
                .map_or(SpecDuration::ZERO, |end| end.hi + after_end);
            let probes = last
                .probes
                .as_ref()
                .map_or(SpecDuration::ZERO, |p| p.quiet_after());
            start + run.max(probes) + SETTLE
        })
        .max()
        .unwrap_or(SETTLE)
}

fn exercised_rules(
    containers: &[ContainerPlan],
    policy: RestartPolicy,
    terminal_phase: Option<&'static str>,
    running_observable: bool,
) -> Vec<RuleId> {
    let mut rules = vec![
        RuleId::PodAccepted,
        RuleId::PhasePending,
        RuleId::ContainerStateWaitingCreating,
        RuleId::ContainerStateRunning,
        RuleId::ContainerRunsToCompletion,
        RuleId::ContainerRestartCount,
        RuleId::ContainerReadyNoProbe,
        RuleId::ConditionPodScheduled,
        RuleId::ConditionPodReadyToStartContainers,
        RuleId::ConditionInitialized,
        RuleId::ConditionContainersReady,
        RuleId::ConditionReady,
        RuleId::PhaseTerminalNeverLeft,
    ];
    if running_observable {
        rules.push(RuleId::PhaseRunning);
    }
    match terminal_phase {
        Some("Succeeded") => rules.push(RuleId::PhaseSucceeded),
        Some(_) => rules.push(RuleId::PhaseFailed),
        None => {}
    }
    let instances = || containers.iter().flat_map(|c| c.instances.iter());
    if instances().any(|i| i.end().is_some()) {
        rules.push(RuleId::ContainerStateTerminated);
        rules.push(policy.rule());
        if policy == RestartPolicy::Always {
            rules.push(RuleId::PhaseAlwaysNeverTerminal);
        }
    }
    if policy == RestartPolicy::OnFailure
        && instances().any(|i| i.after_exit.is_some_and(AfterExit::restarts))
    {
        rules.push(RuleId::PhaseOnfailureRestartingRunning);
    }
    if instances().any(|i| i.index > 0) {
        rules.push(RuleId::ContainerLastState);
    }
    if instances().any(|i| i.after_exit.and_then(AfterExit::shown_back_off).is_some()) {
        rules.push(RuleId::ContainerStateWaitingCrashloop);
    }
    for plan in instances().filter_map(|i| i.probes.as_ref()) {
        let mut add = |rule: RuleId| {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        };
        let probes = &plan.probes;
        add(RuleId::ProbeStartupStarted);
        add(RuleId::ProbePeriod);
        if let Some(window) = &plan.started {
            add(window.early_rule);
            window.late_rules.iter().for_each(|r| add(*r));
        }
        if probes.startup.is_some() && (probes.liveness.is_some() || probes.readiness.is_some()) {
            add(RuleId::ProbeStartupGates);
        }
        if plan.liveness_fails {
            add(RuleId::ProbeLivenessFailureThreshold);
        }
        if plan.liveness_slow_success || plan.liveness_dial_waits {
            add(RuleId::ProbeTimeout);
        }
        if let Some((_, window)) = &plan.kill {
            add(window.early_rule);
            window.late_rules.iter().for_each(|r| add(*r));
        }
        for flip in &plan.ready {
            add(flip.window.early_rule);
            flip.window.late_rules.iter().for_each(|r| add(*r));
        }
        if probes.readiness.is_some() {
            add(RuleId::ProbeReadinessInitialFailure);
            add(RuleId::ProbeReadinessNoRestart);
        }
        for probe in [&probes.startup, &probes.liveness, &probes.readiness]
            .into_iter()
            .flatten()
        {
            if probe.always_errors() {
                add(RuleId::ProbeErrorNotFailure);
            }
            if probe.initial_delay > SpecDuration::ZERO {
                add(RuleId::ProbeInitialDelay);
            }
            add(probe.handler.rule());
        }
    }
    for instance in instances().filter(|i| i.index > 0) {
        if !rules.contains(&instance.start_rule) {
            rules.push(instance.start_rule);
        }
    }
    rules
}
