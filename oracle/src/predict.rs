//! `predict`: what must happen to a scenario's pod, as time windows and expected states.

use crate::duration::SpecDuration;
use crate::errors::FieldError;
use crate::plan::termination::{Deletion, OBJECT_REMOVAL_LAG};
use crate::plan::{self, AfterExit, ContainerPlan, STATUS_LAG, TERMINAL_PHASE_LAG};
use crate::rules::RuleId;
use crate::scenario::{BackOffParams, ContainerKind, RestartPolicy, Scenario};
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
    /// The pod's deletion, when the fault schedule deletes it within the horizon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion: Option<DeletionPrediction>,
}

/// What a deletion does to the pod object.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionPrediction {
    #[serde(flatten)]
    pub deletion: Deletion,
    /// The pod is terminal when deleted: the API server deletes it at once, grace 0
    /// (`CheckGracefulDelete`), and no container is stopped.
    pub already_terminal: bool,
    /// The finalizer removals of the schedule: (fault index, finalizer, time).
    pub finalizer_removals: Vec<(usize, String, SpecDuration)>,
}

impl DeletionPrediction {
    /// The grace period the API server sets.
    pub fn api_grace_seconds(&self) -> i64 {
        if self.already_terminal {
            0
        } else {
            self.deletion.api_grace_seconds
        }
    }

    /// The object goes at once: no grace period and no finalizer.
    pub fn object_gone_at_once(&self) -> bool {
        self.api_grace_seconds() == 0 && self.deletion.finalizers.is_empty()
    }

    /// When the last of the pod's finalizers is removed, if it is.
    pub fn finalizers_cleared_at(&self) -> Option<SpecDuration> {
        let mut left = self.deletion.finalizers.clone();
        let mut removals = self.finalizer_removals.clone();
        removals.sort_by_key(|(_, _, at)| *at);
        if left.is_empty() {
            return Some(SpecDuration::ZERO);
        }
        for (_, name, at) in removals {
            left.retain(|f| *f != name);
            if left.is_empty() {
                return Some(at);
            }
        }
        None
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PredictError {
    #[error("scenario {scenario}, container {container}: {reason}")]
    AmbiguousProbe {
        scenario: String,
        container: String,
        reason: String,
    },
    #[error(
        "scenario {scenario}, container {container}: {reason}, so it has no single prediction"
    )]
    UndecidedRestart {
        scenario: String,
        container: String,
        reason: String,
    },
    #[error("scenario {scenario}, container {container}: {reason}, so the fault schedule has no single prediction; move the action away from that moment")]
    UndecidedFault {
        scenario: String,
        container: String,
        reason: String,
    },
    #[error("scenario {scenario}: {0}", .window)]
    ObservationWindow {
        scenario: String,
        window: FieldError,
    },
}

impl Scenario {
    /// Refuses an `observeFor` the harness cannot honour or that ends before the
    /// prediction's milestones are due: a pod that must be seen Running or terminal, a
    /// settling container watched until it settled, a crash loop through its first exit,
    /// a fault and what follows it. A shorter window would fail a correct target for what
    /// the observation could not show.
    pub fn check_observation_window(&self) -> Result<(), FieldError> {
        let Some(observe_for) = self.observe_for else {
            return Ok(());
        };
        if observe_for > MAX_HORIZON {
            return Err(FieldError::new(
                "observeFor",
                format!(
                    "{observe_for} is longer than the {MAX_HORIZON} a case is observed at most"
                ),
            ));
        }
        let plans = plan::plan_containers(self, MAX_HORIZON);
        let needed = watched_until(&plans, self, 1).min(MAX_HORIZON);
        if observe_for < needed {
            return Err(FieldError::new(
                "observeFor",
                format!(
                    "{observe_for} ends before what the prediction must show is due (every container settled or through its first exit, every fault and what follows, then {SETTLE} more): observe for at least {needed}, or leave observeFor out for the oracle to choose ({})",
                    default_horizon(&plans, self).min(MAX_HORIZON)
                ),
            ));
        }
        Ok(())
    }
}

pub fn predict(scenario: &Scenario) -> Result<Prediction, PredictError> {
    scenario
        .check_observation_window()
        .map_err(|window| PredictError::ObservationWindow {
            scenario: scenario.name.clone(),
            window,
        })?;
    predict_over_window(scenario)
}

/// [`predict`] over the scenario's observation window, however short: a planted bug that
/// misreads the scenario is played over the correct scenario's window.
pub(crate) fn predict_over_window(scenario: &Scenario) -> Result<Prediction, PredictError> {
    let probe = plan::plan_containers(scenario, MAX_HORIZON);
    if let Some(plan) = probe.iter().find(|p| p.ambiguity.is_some()) {
        return Err(PredictError::AmbiguousProbe {
            scenario: scenario.name.clone(),
            container: plan.name.clone(),
            reason: plan.ambiguity.clone().unwrap_or_default(),
        });
    }
    let deletion = Deletion::of(scenario);
    let horizon = scenario
        .observe_for
        .unwrap_or_else(|| default_horizon(&probe, scenario))
        .min(MAX_HORIZON);
    let containers = plan::plan_containers(scenario, horizon);
    let deletion = deletion
        .filter(|d| d.at <= horizon)
        .map(|deletion| {
            let already_terminal = terminal_before(&containers, deletion.at).map_err(|reason| {
                PredictError::UndecidedFault {
                    scenario: scenario.name.clone(),
                    container: reason.0,
                    reason: reason.1,
                }
            })?;
            Ok(DeletionPrediction {
                finalizer_removals: scenario
                    .faults
                    .iter()
                    .enumerate()
                    .filter_map(|(index, fault)| match &fault.action {
                        crate::scenario::FaultAction::RemoveFinalizer { finalizer } => {
                            Some((index, finalizer.clone(), fault.at))
                        }
                        _ => None,
                    })
                    .collect(),
                deletion,
                already_terminal,
            })
        })
        .transpose()?;
    // A restart decision past the horizon is never observed; one within it is refused.
    if let Some((plan, undecided)) = containers.iter().find_map(|plan| {
        plan.undecided
            .as_ref()
            .filter(|u| u.at <= horizon)
            .map(|u| (plan, u))
    }) {
        let (scenario, container, reason) = (
            scenario.name.clone(),
            plan.name.clone(),
            undecided.reason.clone(),
        );
        return Err(if undecided.fault {
            PredictError::UndecidedFault {
                scenario,
                container,
                reason,
            }
        } else {
            PredictError::UndecidedRestart {
                scenario,
                container,
                reason,
            }
        });
    }
    let policy = scenario.restart_policy();
    let gone_at_once = deletion
        .as_ref()
        .is_some_and(DeletionPrediction::object_gone_at_once);
    let terminal_phase = if gone_at_once && !deletion.as_ref().is_some_and(|d| d.already_terminal) {
        // Nothing after the object's removal shows; what showed before is checked as usual.
        None
    } else {
        terminal_phase_of(&containers, policy)
    };
    // An object that is gone at once shows nothing after its deletion: a Running phase must
    // have lasted long enough before it.
    let gone_at = deletion
        .as_ref()
        .filter(|d| d.object_gone_at_once())
        .map(|d| d.deletion.at);
    let running_observable = containers
        .iter()
        .filter(|c| c.kind == ContainerKind::Regular)
        .any(|c| {
            // A container killed after its failing postStart hook is never shown Running
            // (SyncPod kills it before any status shows it), however long the kill takes.
            c.instances.first().is_some_and(|first| {
                let shown_for_long = first.end().is_none_or(|end| {
                    !end.post_start_failed && end.lo >= SpecDuration::from_secs(5)
                });
                let shown_before_gone = gone_at.is_none_or(|gone| {
                    first.latest_start + first.shown_running_after().1 + SpecDuration::from_secs(5)
                        <= gone
                });
                // A start held back past the horizon (by an init container that runs
                // long) shows nothing.
                let shown_before_the_horizon =
                    first.latest_start + first.shown_running_after().1 + STATUS_LAG <= horizon;
                shown_for_long && shown_before_gone && shown_before_the_horizon
            })
        });
    let mut rules = exercised_rules(&containers, policy, terminal_phase, running_observable);
    if let Some(deletion) = &deletion {
        deletion_rules(deletion, &containers, &mut rules);
    }
    Ok(Prediction {
        scenario: scenario.name.clone(),
        restart_policy: policy,
        back_off: scenario.kubelet.back_off(),
        horizon,
        containers,
        terminal_phase,
        running_observable,
        rules,
        deletion,
    })
}

/// The phase the pod settles in, when it does: Failed once an init container failed under
/// Never; else decided by the regular containers' final exits alone (sidecars are
/// ignored, `getPhase`).
fn terminal_phase_of(containers: &[ContainerPlan], policy: RestartPolicy) -> Option<&'static str> {
    let init_failed = containers.iter().any(|c| {
        c.kind == ContainerKind::Init && c.final_exit_code().is_some_and(|code| code != 0)
    });
    if init_failed && policy == RestartPolicy::Never {
        return Some("Failed");
    }
    let regular: Vec<&ContainerPlan> = containers
        .iter()
        .filter(|c| c.kind == ContainerKind::Regular)
        .collect();
    // Running sidecars keep the pod Running until the kubelet has stopped them.
    let sidecars_stop = containers
        .iter()
        .filter(|c| c.kind == ContainerKind::Sidecar)
        .all(|c| {
            c.last().is_none_or(|last| {
                last.after_exit == Some(AfterExit::PodCompleted)
                    || last.after_exit == Some(AfterExit::PodTerminating)
            })
        });
    if regular.iter().all(|c| c.final_exit_code().is_some()) && sidecars_stop {
        let all_zero = regular.iter().all(|c| c.final_exit_code() == Some(0));
        Some(if all_zero { "Succeeded" } else { "Failed" })
    } else {
        None
    }
}

/// Whether every container has stopped for good (and the terminal phase is written) by
/// `at`; Err (container, reason) when timing could decide it.
fn terminal_before(
    containers: &[ContainerPlan],
    at: SpecDuration,
) -> Result<bool, (String, String)> {
    let margin = plan::termination::TERMINATION_MARGIN;
    let mut latest_final = SpecDuration::ZERO;
    // A container that never starts (kept back by an init container that failed, or an
    // ephemeral container added too late) has nothing to stop.
    for plan in containers.iter().filter(|p| !p.instances.is_empty()) {
        let Some(last) = plan.last() else {
            return Ok(false);
        };
        if !matches!(
            last.after_exit,
            Some(AfterExit::StaysTerminated | AfterExit::PodCompleted)
        ) {
            return Ok(false);
        }
        let Some((_, hi)) = last.ends() else {
            return Ok(false);
        };
        latest_final = latest_final.max(hi);
    }
    let earliest_terminal = containers
        .iter()
        .filter_map(|plan| plan.last()?.ends().map(|(lo, _)| lo))
        .max()
        .unwrap_or(SpecDuration::ZERO);
    if at + margin <= earliest_terminal {
        return Ok(false);
    }
    if at >= latest_final + TERMINAL_PHASE_LAG + margin {
        return Ok(true);
    }
    Err((
        containers.first().map(|c| c.name.clone()).unwrap_or_default(),
        format!(
            "the deletion at {at} may come before or after the pod turns terminal ({earliest_terminal} to {})",
            latest_final + TERMINAL_PHASE_LAG
        ),
    ))
}

fn deletion_rules(
    deletion: &DeletionPrediction,
    containers: &[ContainerPlan],
    rules: &mut Vec<RuleId>,
) {
    let mut add = |rule: RuleId| {
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    };
    if deletion.object_gone_at_once() {
        add(RuleId::TerminationForceDelete);
        return;
    }
    add(RuleId::TerminationDeletionTimestamp);
    add(RuleId::TerminationPhase);
    add(RuleId::TerminationObjectRemoved);
    if !deletion.deletion.finalizers.is_empty() {
        add(RuleId::TerminationFinalizers);
    }
    if deletion.deletion.force {
        add(RuleId::TerminationForceDelete);
    }
    for instance in containers.iter().flat_map(|c| c.instances.iter()) {
        if instance.after_exit == Some(AfterExit::PodTerminating) {
            add(RuleId::TerminationNoRestart);
        }
        let Some(crate::plan::CutCause::Deleted(stop)) = instance.cut.as_ref().map(|c| &c.cause)
        else {
            continue;
        };
        add(RuleId::TerminationSigterm);
        add(RuleId::TerminationNoRestart);
        if stop.killed {
            add(RuleId::TerminationGracePeriod);
            if stop.grace_seconds < 2 {
                add(RuleId::TerminationMinimumGrace);
            }
        }
        if let Some(pre_stop) = &stop.pre_stop {
            add(RuleId::TerminationPrestopFirst);
            add(RuleId::TerminationPrestopInGrace);
            if pre_stop.cut_off {
                add(RuleId::HookPrestopCutOff);
                add(RuleId::TerminationMinimumGrace);
            }
            if pre_stop.call.fails {
                add(RuleId::HookPrestopFailureContinues);
            }
            add(hook_handler_rule(&pre_stop.call.handler));
        }
        if let Some(probes) = &instance.probes {
            if probes.probes.liveness.is_some() || probes.probes.startup.is_some() {
                add(RuleId::TerminationLivenessStops);
            }
            if probes.probes.readiness.is_some() {
                add(RuleId::TerminationReadinessContinues);
            }
        }
    }
}

fn default_horizon(plans: &[ContainerPlan], scenario: &Scenario) -> SpecDuration {
    watched_until(plans, scenario, CRASH_LOOP_RESTARTS_WATCHED + 1)
}

/// How long to watch so that every fault and what follows it shows, every container
/// that settles is seen settled, and a crash loop is seen through `crash_loop_instances`
/// of its instances, then [`SETTLE`] more for late surprises.
fn watched_until(
    plans: &[ContainerPlan],
    scenario: &Scenario,
    crash_loop_instances: usize,
) -> SpecDuration {
    // Every fault action is watched, and what follows it: a deletion until the object
    // could be gone. A pod whose containers have all stopped before its deletion turns
    // terminal only once the kubelet has noticed the deletion: its containers' exits say
    // nothing about when.
    let removal = TERMINAL_PHASE_LAG + OBJECT_REMOVAL_LAG;
    let faults = scenario
        .faults
        .iter()
        .map(|fault| match &fault.action {
            crate::scenario::FaultAction::RemoveFinalizer { .. } => fault.at + STATUS_LAG + SETTLE,
            crate::scenario::FaultAction::Delete { .. }
            | crate::scenario::FaultAction::ForceDelete => {
                fault.at + crate::plan::termination::DELETION_NOTICED_WITHIN + removal + SETTLE
            }
            _ => fault.at + SETTLE,
        })
        .max()
        .unwrap_or(SpecDuration::ZERO);
    plans
        .iter()
        .map(|plan| {
            let watched = if plan.settles {
                plan.instances.len()
            } else {
                plan.instances.len().min(crash_loop_instances)
            };
            let Some(last) = plan.instances.get(watched.saturating_sub(1)) else {
                // A container whose start gate never opens has nothing to watch.
                return SETTLE;
            };
            let start = if plan.settles {
                last.latest_start
            } else {
                last.earliest_start + STATUS_LAG
            } + last.shown_running_after().1;
            // A last exit that may make the pod terminal is watched until the latest
            // moment the kubelet writes the terminal phase.
            let after_end = match last.after_exit {
                Some(AfterExit::StaysTerminated | AfterExit::PodCompleted) => {
                    plan::TERMINAL_PHASE_LAG
                }
                Some(AfterExit::PodTerminating) => removal,
                _ => STATUS_LAG,
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
        .max(faults)
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
    let deleted = containers
        .iter()
        .flat_map(|c| c.instances.iter())
        .any(|i| i.after_exit == Some(AfterExit::PodTerminating));
    match terminal_phase {
        // A deleted pod's terminal phase is termination.phase's.
        Some(_) if deleted => {}
        Some("Succeeded") => rules.push(RuleId::PhaseSucceeded),
        Some(_) => rules.push(RuleId::PhaseFailed),
        None => {}
    }
    let instances = || containers.iter().flat_map(|c| c.instances.iter());
    if instances().any(|i| i.end().is_some()) {
        rules.push(RuleId::ContainerStateTerminated);
    }
    // The restart policy decides after an exit of the instance's own or a kill from
    // outside; after a deletion's stop, no restart is the rule whatever the policy.
    let deleted = instances().any(|i| i.after_exit == Some(AfterExit::PodTerminating));
    // The pod's policy decides for its regular and init containers, not for sidecars and
    // ephemeral containers.
    let regular_instances = || {
        containers
            .iter()
            .filter(|c| matches!(c.kind, ContainerKind::Regular | ContainerKind::Init))
            .flat_map(|c| c.instances.iter())
    };
    if regular_instances().any(|i| {
        i.end().is_some()
            && !matches!(
                i.cut.as_ref().map(|c| &c.cause),
                Some(crate::plan::CutCause::Deleted(_))
            )
            && i.after_exit != Some(AfterExit::PodTerminating)
    }) {
        rules.push(policy.rule());
    }
    if regular_instances().any(|i| i.end().is_some()) && policy == RestartPolicy::Always && !deleted
    {
        rules.push(RuleId::PhaseAlwaysNeverTerminal);
    }
    if instances().any(|i| {
        matches!(
            i.cut.as_ref().map(|c| &c.cause),
            Some(crate::plan::CutCause::Killed)
        )
    }) {
        rules.push(RuleId::FaultKillContainer);
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
    init_rules(containers, policy, &mut rules);
    ephemeral_rules(containers, &mut rules);
    for instance in instances() {
        let Some(call) = &instance.post_start else {
            continue;
        };
        let mut add = |rule: RuleId| {
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        };
        add(RuleId::HookPoststartConcurrent);
        if instance.post_start_kill.is_some() {
            add(RuleId::HookPoststartFailureKills);
        } else {
            add(RuleId::HookPoststartRunningAfter);
        }
        add(hook_handler_rule(&call.handler));
    }
    rules
}

/// The rules of ephemeral containers the prediction exercises.
fn ephemeral_rules(containers: &[ContainerPlan], rules: &mut Vec<RuleId>) {
    let mut add = |rule: RuleId| {
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    };
    for plan in containers
        .iter()
        .filter(|c| c.kind == ContainerKind::Ephemeral && !c.instances.is_empty())
    {
        add(RuleId::EphemeralStarted);
        add(RuleId::EphemeralStatus);
        if plan.instances.iter().any(|i| i.end().is_some()) {
            add(RuleId::EphemeralNeverRestarted);
        }
        if plan.target_container.is_some() {
            add(RuleId::EphemeralTargetNamespace);
        }
    }
}

/// The rules of init containers and sidecars the prediction exercises.
fn init_rules(containers: &[ContainerPlan], policy: RestartPolicy, rules: &mut Vec<RuleId>) {
    let mut add = |rule: RuleId| {
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    };
    let of_kind = |kind: ContainerKind| containers.iter().filter(move |c| c.kind == kind);
    if !containers.iter().any(|c| c.kind.is_init()) {
        return;
    }
    add(RuleId::InitStatus);
    add(RuleId::InitPending);
    add(RuleId::InitBeforeRegular);
    if containers.iter().filter(|c| c.kind.is_init()).count() > 1 {
        add(RuleId::InitSequential);
    }
    for plan in of_kind(ContainerKind::Init) {
        if plan
            .instances
            .iter()
            .any(|i| i.after_exit.is_some_and(AfterExit::restarts))
        {
            add(RuleId::InitRetry);
        }
        if policy == RestartPolicy::Never && plan.final_exit_code().is_some_and(|code| code != 0) {
            add(RuleId::InitNeverFailsPod);
        }
    }
    for plan in of_kind(ContainerKind::Sidecar) {
        if plan.instances.is_empty() {
            continue;
        }
        add(RuleId::SidecarStartGate);
        add(RuleId::SidecarReadiness);
        if plan
            .instances
            .iter()
            .any(|i| i.after_exit.is_some_and(AfterExit::restarts))
        {
            add(RuleId::SidecarRestartAlways);
        }
        if plan.instances.iter().any(|i| i.end().is_some()) {
            add(RuleId::SidecarPhaseIgnored);
        }
        if plan
            .instances
            .iter()
            .any(|i| i.after_exit == Some(AfterExit::PodCompleted))
        {
            add(RuleId::SidecarStoppedAfterRegular);
            add(RuleId::SidecarPhaseIgnored);
        }
    }
    if of_kind(ContainerKind::Sidecar)
        .filter(|c| c.instances.iter().any(|i| i.cut.is_some()))
        .count()
        > 1
    {
        add(RuleId::SidecarTerminationOrder);
    }
}

fn hook_handler_rule(handler: &crate::plan::termination::HookHandler) -> RuleId {
    use crate::plan::termination::HookHandler;
    match handler {
        HookHandler::Exec { .. } => RuleId::HookHandlerExec,
        HookHandler::Http { .. } => RuleId::HookHandlerHttp,
        HookHandler::Sleep(_) => RuleId::HookHandlerSleep,
        HookHandler::TcpSocket => RuleId::HookHandlerTcpRefused,
    }
}
