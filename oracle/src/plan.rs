//! The planner: which instances of each container run and when, from the restart policy,
//! the crash-loop back-off and what the container's probes do to each instance.
//!
//! Planning is pure: [`plan_containers`] reads the scenario and returns a [`ContainerPlan`]
//! per container; the probe model ([`crate::probes`]) plans the probes' effects on one
//! instance. A new rule area that decides when instances start or end gets its own module
//! next to `probes`, called from here.
//!
//! Containers are planned as one pod, not one by one: every instance's start window counts
//! from a [`StartGate`], an event that may belong to another container (the exit of the
//! init container before it, a sidecar's start) or to the fault schedule. The planner
//! resolves a gate against the plans made before it, and the checker anchors the window at
//! the gate's observed time.

use crate::behaviour::{Behaviour, Run};
use crate::duration::SpecDuration;
use crate::errors::FieldError;
use crate::probes::{plan_instance, Ambiguous, Carry, ContainerProbes, ProbePlan};
use crate::rules::RuleId;
use crate::scenario::{BackOffParams, RestartPolicy, Scenario};

/// PLEG relist period (`genericPlegRelistPeriod`, pkg/kubelet/kubelet.go): a container's exit
/// is seen by the kubelet at most this late.
pub const RELIST_PERIOD: SpecDuration = SpecDuration::from_secs(1);

/// How late after pod creation every container's first instance may start, on a node whose
/// image is present. Targets add their own tolerance for scheduling and sandbox set-up.
pub const FIRST_START_WITHIN: SpecDuration = SpecDuration::from_secs(2);

/// How late after the last container exits a status update may show the consequence
/// (terminal phase, a restart without back-off, the CrashLoopBackOff waiting state):
/// one PLEG relist and one sync.
pub const STATUS_LAG: SpecDuration = SpecDuration::from_secs(2);

/// Back-off entries expire when a container ran this long since its last restart
/// (`crashLoopBackOff.HasExpiredFunc`, pkg/kubelet/kubelet.go: `eventTime.Sub(lastUpdate) >
/// 600*time.Second`, hard-coded regardless of the configured maximum).
pub const BACK_OFF_RESET_AFTER: SpecDuration = SpecDuration::from_secs(600);

/// How much later than the back-off the kubelet may restart a container.
///
/// The restart happens at the first pod sync after the back-off expired. Up to v1.34 a
/// pod in back-off is requeued after a sync error every `wait.Jitter(backOffPeriod=10s, 0.5)`
/// (pkg/kubelet/pod_workers.go `completeWork`), so up to 15 s late; since kubernetes#133066
/// it is requeued at `Jitter(min(expiry - now, 60s), 0.5)`, so up to half the remaining
/// back-off (at most 30 s) late. The window covers both, plus one relist.
pub fn restart_slack(back_off: SpecDuration) -> SpecDuration {
    let requeue_overshoot = SpecDuration::from_secs(15).max(SpecDuration::from_millis(
        back_off.min(SpecDuration::from_secs(60)).as_millis() / 2,
    ));
    requeue_overshoot + RELIST_PERIOD
}

/// What the kubelet does after an instance exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AfterExit {
    /// The restart policy keeps the container terminated.
    StaysTerminated,
    /// Restarted without back-off: the first restart, or the first after the back-off reset.
    RestartImmediately,
    /// Restarted once the back-off has passed since the exit.
    RestartAfterBackOff(SpecDuration),
}

/// The event an instance's start window counts from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StartGate {
    /// The pod's creation: the first instance of every regular container, which the
    /// kubelet starts in one sync without waiting on the others (`SyncPod` step 7).
    PodCreated,
    /// The exit of an instance of a container: for a restart, the same container's
    /// previous instance.
    Exited { container: String, instance: u32 },
}

impl StartGate {
    /// How a violation names the gate, seen from `container`.
    pub fn describe(&self, container: &str) -> String {
        match self {
            StartGate::PodCreated => "pod creation".to_owned(),
            StartGate::Exited {
                container: other,
                instance,
            } if other == container => format!("exit of instance {instance}"),
            StartGate::Exited {
                container: other,
                instance,
            } => format!("exit of container {other} instance {instance}"),
        }
    }

    /// When the gate opens, earliest and latest, counted from pod creation; None when it
    /// refers to an instance the plans made so far do not end.
    pub fn opens(&self, planned: &[ContainerPlan]) -> Option<(SpecDuration, SpecDuration)> {
        match self {
            StartGate::PodCreated => Some((SpecDuration::ZERO, SpecDuration::ZERO)),
            StartGate::Exited {
                container,
                instance,
            } => {
                let plan = planned.iter().find(|p| &p.name == container)?;
                let ended = plan.instances.get(*instance as usize)?;
                let end = ended.end()?;
                Some((ended.earliest_start + end.lo, ended.latest_start + end.hi))
            }
        }
    }
}

/// One instance (one `restartCount` value) of a container.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstancePlan {
    /// Equal to the container's restartCount while this instance is current.
    pub index: u32,
    pub run: Run,
    /// Rule that decides when this instance starts.
    pub start_rule: RuleId,
    /// The event the start window counts from.
    pub start_gate: StartGate,
    /// Start window, after the gate opens.
    pub start_after: (SpecDuration, SpecDuration),
    /// What the kubelet does once this instance exits (None while it runs forever).
    pub after_exit: Option<AfterExit>,
    /// Earliest and latest start counted from pod creation, before target tolerance.
    pub earliest_start: SpecDuration,
    pub latest_start: SpecDuration,
    /// What the container's probes do to this instance; None without probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<ProbePlan>,
}

/// How an instance ends: its process exits, or a probe has it killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    /// Earliest and latest end after the instance's start.
    pub lo: SpecDuration,
    pub hi: SpecDuration,
    pub code: i32,
    pub killed_by: Option<crate::probes::ProbeKind>,
}

impl InstancePlan {
    pub fn end(&self) -> Option<End> {
        if let Some((kind, window)) = self.probes.as_ref().and_then(|p| p.kill.as_ref()) {
            return Some(End {
                lo: window.lo,
                hi: window.hi,
                code: crate::probes::KILLED_EXIT_CODE,
                killed_by: Some(*kind),
            });
        }
        match self.run {
            Run::Exit { after, code } => Some(End {
                lo: after,
                hi: after,
                code,
                killed_by: None,
            }),
            Run::Forever => None,
        }
    }
}

/// Every instance of one container the oracle expects up to the horizon.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPlan {
    pub name: String,
    pub instances: Vec<InstancePlan>,
    /// Whether the container settles (runs forever or stays terminated) within the plan;
    /// false for a crash loop that goes on past the horizon.
    pub settles: bool,
    /// Why the probes of some instance have no single prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguity: Option<String>,
}

impl ContainerPlan {
    pub fn last(&self) -> Option<&InstancePlan> {
        self.instances.last()
    }

    /// The exit code the container finally stays terminated with, if it does.
    pub fn final_exit_code(&self) -> Option<i32> {
        let last = self.last()?;
        match (last.after_exit, last.end()) {
            (Some(AfterExit::StaysTerminated), Some(end)) => Some(end.code),
            _ => None,
        }
    }
}

/// The container restart back-off of one container: client-go `flowcontrol.Backoff` as the
/// kubelet configures it (`NewBackOff(initial, max)`, no jitter, 600 s expiry).
#[derive(Clone, Copy, Debug)]
struct BackOffEntry {
    current: SpecDuration,
    /// When `Next` last ran, i.e. when the current instance was started.
    last_update: SpecDuration,
}

/// Plans each container's instances until every container settles or `until` has passed.
///
/// Time stamps inside the plan are nominal (lower bounds): the back-off decisions depend
/// on run lengths measured from the kubelet's own restart time, which the model takes as
/// the earliest start.
pub fn plan_containers(scenario: &Scenario, until: SpecDuration) -> Vec<ContainerPlan> {
    let policy = scenario.restart_policy();
    let back_off = effective_back_off(scenario.kubelet.crash_loop_back_off);
    let mut plans: Vec<ContainerPlan> = Vec::new();
    for (index, container) in scenario.containers().iter().enumerate() {
        let gate = StartGate::PodCreated;
        // A gate always refers to a container planned before; one that does not end
        // never opens, and the container never starts within the plan.
        let Some(opens) = gate.opens(&plans) else {
            plans.push(ContainerPlan {
                name: container.name.clone(),
                instances: Vec::new(),
                settles: true,
                ambiguity: None,
            });
            continue;
        };
        let first = FirstStart {
            gate,
            opens,
            after: (SpecDuration::ZERO, FIRST_START_WITHIN),
        };
        let behaviour = scenario
            .behaviour(&container.name)
            .cloned()
            .unwrap_or_else(Behaviour::forever);
        // Scenarios are validated before they are planned; an unreadable probe here
        // is planned as no probe and reported as an ambiguity.
        let (probes, unreadable) = match scenario.container_probes(container, index) {
            Ok(probes) => (probes, None),
            Err(FieldError { field, reason }) => (
                ContainerProbes::default(),
                Some(format!("{field}: {reason}")),
            ),
        };
        let mut plan = plan_one(
            &container.name,
            &behaviour,
            &probes,
            first,
            policy,
            back_off,
            until,
        );
        plan.ambiguity = plan.ambiguity.or(unreadable);
        plans.push(plan);
    }
    plans
}

/// When a container's first instance may start: a window after its gate opens.
struct FirstStart {
    gate: StartGate,
    /// When the gate opens, earliest and latest, from pod creation.
    opens: (SpecDuration, SpecDuration),
    after: (SpecDuration, SpecDuration),
}

/// `newCrashLoopBackOff`: a configured maximum below the initial back-off lowers the initial.
pub fn effective_back_off(params: BackOffParams) -> BackOffParams {
    BackOffParams {
        initial: params.initial.min(params.max),
        max: params.max,
    }
}

fn plan_one(
    name: &str,
    behaviour: &Behaviour,
    probes: &ContainerProbes,
    first: FirstStart,
    policy: RestartPolicy,
    back_off: BackOffParams,
    until: SpecDuration,
) -> ContainerPlan {
    let mut instances = Vec::new();
    let mut carry = Carry::default();
    let mut ambiguity = None;
    let mut entry: Option<BackOffEntry> = None;
    let (mut earliest, mut latest) = (first.opens.0 + first.after.0, first.opens.1 + first.after.1);
    let mut start_gate = first.gate;
    let mut start_after = first.after;
    let mut start_rule = RuleId::ContainerStateRunning;
    let mut index = 0u32;
    loop {
        let run = behaviour.run_for_start(index);
        let mut plan = InstancePlan {
            index,
            run,
            start_rule,
            start_gate: start_gate.clone(),
            start_after,
            after_exit: None,
            earliest_start: earliest,
            latest_start: latest,
            probes: None,
        };
        if !probes.is_empty() {
            let exits_at = match run {
                Run::Exit { after, .. } => Some(after),
                Run::Forever => None,
            };
            match plan_instance(probes, behaviour.health.as_ref(), carry, exits_at) {
                Ok((probe_plan, carry_out)) => {
                    plan.probes = Some(probe_plan);
                    carry = carry_out;
                }
                Err(Ambiguous(reason)) => {
                    ambiguity = Some(format!("instance {index}: {reason}"));
                }
            }
        }
        let Some(end) = plan.end() else {
            instances.push(plan);
            return ContainerPlan {
                name: name.to_owned(),
                instances,
                settles: true,
                ambiguity,
            };
        };
        let code = end.code;
        let finished = earliest + end.lo;
        let finished_latest = latest + end.hi;
        if !policy.restarts_after(code) || ambiguity.is_some() {
            plan.after_exit = Some(AfterExit::StaysTerminated);
            instances.push(plan);
            return ContainerPlan {
                name: name.to_owned(),
                instances,
                settles: true,
                ambiguity,
            };
        }
        // doBackOff: in back-off while now - FinishedAt < entry.backoff, unless the entry
        // expired; once out of it, Next() doubles (or re-initialises) the entry and the
        // container starts.
        let expired =
            entry.is_none_or(|e| finished.saturating_sub(e.last_update) > BACK_OFF_RESET_AFTER);
        let (wait, rule) = match entry {
            Some(e) if !expired => (
                e.current,
                if e.current >= back_off.max {
                    RuleId::RestartBackoffCap
                } else {
                    RuleId::RestartBackoffDoubling
                },
            ),
            Some(_) => (SpecDuration::ZERO, RuleId::RestartBackoffReset),
            None => (SpecDuration::ZERO, RuleId::RestartBackoffFirstImmediate),
        };
        let next_start = finished + wait;
        entry = Some(match entry {
            Some(e) if !expired => BackOffEntry {
                current: (e.current * 2).min(back_off.max),
                last_update: next_start,
            },
            _ => BackOffEntry {
                current: back_off.initial,
                last_update: next_start,
            },
        });
        let slack = if wait == SpecDuration::ZERO {
            STATUS_LAG
        } else {
            restart_slack(wait)
        };
        plan.after_exit = Some(if wait == SpecDuration::ZERO {
            AfterExit::RestartImmediately
        } else {
            AfterExit::RestartAfterBackOff(wait)
        });
        instances.push(plan);
        earliest = next_start;
        latest = finished_latest + wait + slack;
        start_gate = StartGate::Exited {
            container: name.to_owned(),
            instance: index,
        };
        start_after = (wait, wait + slack);
        start_rule = rule;
        index += 1;
        if earliest > until {
            return ContainerPlan {
                name: name.to_owned(),
                instances,
                settles: false,
                ambiguity,
            };
        }
    }
}

/// Whether the back-off reset decision of some instance lies so close to the 600 s
/// threshold that timing noise could flip it; such scenarios have no single prediction.
pub fn reset_is_ambiguous(plans: &[ContainerPlan], margin: SpecDuration) -> bool {
    plans.iter().any(|plan| {
        plan.instances.iter().skip(1).any(|instance| {
            instance.end().is_some_and(|end| {
                end.lo <= BACK_OFF_RESET_AFTER + margin && end.hi + margin >= BACK_OFF_RESET_AFTER
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
name: two
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: two}
  spec:
    restartPolicy: OnFailure
    containers:
      - name: a
      - name: b
behaviours:
  a:
    starts: [{exit: {after: 3s, code: 1}}]
    then: {exit: {after: 4s, code: 0}}
  b: {then: forever}
"#;

    fn plan_two() -> Vec<ContainerPlan> {
        let scenario = Scenario::from_yaml("two", TWO).expect("scenario");
        plan_containers(&scenario, SpecDuration::from_secs(60))
    }

    #[test]
    fn first_instances_wait_for_pod_creation_and_restarts_for_the_exit_before() {
        let plans = plan_two();
        let a = &plans[0];
        assert_eq!(a.instances[0].start_gate, StartGate::PodCreated);
        assert_eq!(
            a.instances[1].start_gate,
            StartGate::Exited {
                container: "a".to_owned(),
                instance: 0
            }
        );
        assert_eq!(plans[1].instances[0].start_gate, StartGate::PodCreated);
        assert_eq!(
            a.instances[1].start_gate.describe("a"),
            "exit of instance 0"
        );
        assert_eq!(
            a.instances[1].start_gate.describe("b"),
            "exit of container a instance 0"
        );
    }

    #[test]
    fn a_gate_on_another_container_opens_within_that_instance_s_end_window() {
        let plans = plan_two();
        let exit_of = |instance| StartGate::Exited {
            container: "a".to_owned(),
            instance,
        };
        // a's first instance starts within [0, 2s] of creation and runs 3s.
        assert_eq!(
            exit_of(0).opens(&plans),
            Some((SpecDuration::from_secs(3), SpecDuration::from_secs(5)))
        );
        assert_eq!(
            StartGate::PodCreated.opens(&plans),
            Some((SpecDuration::ZERO, SpecDuration::ZERO))
        );
        // b runs forever, and there is no third instance of a: such gates never open.
        let forever = StartGate::Exited {
            container: "b".to_owned(),
            instance: 0,
        };
        assert_eq!(forever.opens(&plans), None);
        assert_eq!(exit_of(2).opens(&plans), None);
    }
}
