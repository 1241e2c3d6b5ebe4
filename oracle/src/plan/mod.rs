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

mod backoff;

use backoff::{CrashLoop, Moment};
pub use backoff::{
    BACK_OFF_REQUEUE_MAX, BACK_OFF_RESET_AFTER, BACK_OFF_RESET_MARGIN, HOUSEKEEPING_PERIOD,
    PROBE_KILL_MARGIN,
};

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
    /// Waits out `back_off`, but housekeeping deletes the back-off entry first: restarted
    /// `after` to `latest` after the exit, at the first sync once the entry is gone.
    RestartWhenBackOffCollected {
        back_off: SpecDuration,
        after: SpecDuration,
        latest: SpecDuration,
    },
    /// After a probe kill whose time since the previous exit is too close to the back-off
    /// for timing not to decide: restarted at once, or after the back-off from the kill.
    RestartAtOnceOrAfterBackOff(SpecDuration),
}

impl AfterExit {
    /// The back-off the Waiting CrashLoopBackOff state names while the container waits.
    pub fn shown_back_off(self) -> Option<SpecDuration> {
        match self {
            AfterExit::RestartAfterBackOff(back_off)
            | AfterExit::RestartWhenBackOffCollected { back_off, .. } => Some(back_off),
            AfterExit::StaysTerminated
            | AfterExit::RestartImmediately
            | AfterExit::RestartAtOnceOrAfterBackOff(_) => None,
        }
    }

    /// Whether the container is started again.
    pub fn restarts(self) -> bool {
        self != AfterExit::StaysTerminated
    }
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
    /// A back-off decision that timing noise could flip; the plan stops before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecided: Option<Undecided>,
}

/// A restart decision the oracle cannot make: the plan ends at the exit that needs it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Undecided {
    /// The earliest time of the exit, from pod creation.
    pub at: SpecDuration,
    pub reason: String,
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

/// Plans each container's instances until every container settles or `until` has passed.
///
/// Time stamps inside the plan are nominal (lower bounds): the back-off decisions depend
/// on run lengths measured from the kubelet's own restart time, which the model takes as
/// the earliest start.
pub fn plan_containers(scenario: &Scenario, until: SpecDuration) -> Vec<ContainerPlan> {
    let policy = scenario.restart_policy();
    let back_off = scenario.kubelet.back_off();
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
                undecided: None,
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

fn plan_one(
    name: &str,
    behaviour: &Behaviour,
    probes: &ContainerProbes,
    first: FirstStart,
    policy: RestartPolicy,
    back_off: BackOffParams,
    until: SpecDuration,
) -> ContainerPlan {
    let mut plan = ContainerPlan {
        name: name.to_owned(),
        instances: Vec::new(),
        settles: true,
        ambiguity: None,
        undecided: None,
    };
    let mut carry = Carry::default();
    let mut crash_loop = CrashLoop::new(back_off);
    let (mut earliest, mut latest) = (first.opens.0 + first.after.0, first.opens.1 + first.after.1);
    let mut start_gate = first.gate;
    let mut start_after = first.after;
    let mut start_rule = RuleId::ContainerStateRunning;
    let mut index = 0u32;
    loop {
        let run = behaviour.run_for_start(index);
        let mut instance = InstancePlan {
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
                    instance.probes = Some(probe_plan);
                    carry = carry_out;
                }
                Err(Ambiguous(reason)) => {
                    plan.ambiguity = Some(format!("instance {index}: {reason}"));
                }
            }
        }
        let Some(end) = instance.end() else {
            plan.instances.push(instance);
            return plan;
        };
        let finished = Moment::new(earliest + end.lo, latest + end.hi);
        // A probe kill restarts under Always and OnFailure whatever the exit code
        // (`shouldRestartOnFailure`); an exit follows the policy and its code.
        let restarts = match end.killed_by {
            Some(_) => policy != RestartPolicy::Never,
            None => policy.restarts_after(end.code),
        };
        if !restarts || plan.ambiguity.is_some() {
            crash_loop.stays_terminated(finished);
            instance.after_exit = Some(AfterExit::StaysTerminated);
            plan.instances.push(instance);
            return plan;
        }
        let restart = match crash_loop.after_end(finished, end.killed_by.is_some()) {
            Ok(restart) => restart,
            Err(reason) => {
                plan.undecided = Some(Undecided {
                    at: finished.lo,
                    reason: format!("after instance {index}: {reason}"),
                });
                plan.instances.push(instance);
                plan.settles = false;
                return plan;
            }
        };
        instance.after_exit = Some(restart.after_exit);
        plan.instances.push(instance);
        earliest = finished.lo + restart.window.0;
        latest = finished.hi + restart.window.1;
        start_gate = StartGate::Exited {
            container: name.to_owned(),
            instance: index,
        };
        start_after = restart.window;
        start_rule = restart.rule;
        index += 1;
        if earliest > until {
            plan.settles = false;
            return plan;
        }
    }
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
