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

use crate::behaviour::Behaviour;
use crate::duration::SpecDuration;
use crate::errors::FieldError;
use crate::probes::ContainerProbes;
use crate::rules::RuleId;
use crate::scenario::{ContainerKind, RestartPolicy, Scenario};
use std::collections::BTreeMap;

mod backoff;
mod init;
mod instances;
pub mod termination;

use init::{
    completed, plan_ephemeral, pod_done, refuse_deletion_while_initializing, sidecar_deletion_stop,
    sidecar_deletion_waits, sidecar_started, stop_sidecars_when_done, target_may_go_first,
};
pub use init::{container_policy, EPHEMERAL_START_WITHIN, NEXT_CONTAINER_WITHIN};
use instances::{plan_one, stops_of, ContainerHooks, ContainerToPlan, FirstStart, StopKind};
pub use instances::{Cut, CutCause, End, InstancePlan, SidecarStop};

pub use backoff::{
    BACK_OFF_REQUEUE_MAX, BACK_OFF_RESET_AFTER, BACK_OFF_RESET_MARGIN, HOUSEKEEPING_PERIOD,
    PROBE_KILL_MARGIN,
};
use termination::{StopPlan, TERMINATION_MARGIN};

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

/// How often the kubelet's status manager reconciles every cached pod status with the API
/// (`syncPeriod = 10 * time.Second`, pkg/kubelet/status/status_manager.go): a status the
/// API still lacks is written at the latest this long after it became writable.
pub const STATUS_RECONCILE_PERIOD: SpecDuration = SpecDuration::from_secs(10);

/// How late after the last container exit the terminal phase may reach the API.
///
/// The sync that sees the exit generates the terminal phase and its conditions at once, but
/// `mergePodStatus` (status_manager.go) holds back phase, reason and message (not the
/// conditions, not the container states) while `PodCouldHaveRunningContainers`, i.e. until
/// the pod worker has finished `SyncTerminatingPod`, which stops the pod sandbox
/// (`killPodWithSyncResult`: `StopPodSandbox`). The held phase is written by the next
/// status write after that: the one queued at the end of `SyncTerminatingPod`,
/// `TerminatePod`'s forced one after volume clean-up, and at the latest the periodic
/// reconcile. So: one relist and sync ([`STATUS_LAG`]) plus one reconcile period, plus the
/// sandbox stop itself, which the kubelet does not bound (a CRI call) and a target covers
/// with its own tolerance. See docs/fidelity/phase-conditions.md §1.3-1.4.
pub const TERMINAL_PHASE_LAG: SpecDuration =
    SpecDuration::from_millis(STATUS_LAG.as_millis() + STATUS_RECONCILE_PERIOD.as_millis());

/// The most instances of one container a plan holds.
pub const MAX_PLANNED_INSTANCES: u32 = 1000;

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

/// Whether the Waiting/CrashLoopBackOff state of a back-off wait is certain to be visible
/// for a sustained time, on every kubelet version the model covers.
///
/// The status generated by the sync that sees the exit shows Terminated; that sync's
/// refused start fills the reason cache, and only the *next* sync of the pod shows Waiting
/// CrashLoopBackOff (kubelet_pods.go `convertToAPIContainerStatuses`, `reasonCache.Get`).
/// If the back-off has expired by then, that same sync restarts the container and the
/// Waiting state lasts only until the following relist. The next sync comes
/// `Jitter(10s, 0.5)` after the refusal up to v1.34, at `Jitter(min(expiry - now, 60s), 0.5)`
/// since kubernetes#133066 (v1.35): the Waiting state is guaranteed to hold only when the
/// back-off outlasts the latest such requeue, 90 s plus one relist, measured from the exit.
/// See docs/fidelity/phase-conditions.md §1.6.
pub fn crash_loop_state_sustained(back_off: SpecDuration) -> bool {
    back_off > SpecDuration::from_secs(90) + RELIST_PERIOD
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
    /// Not restarted because the pod is being deleted (`ShouldContainerBeRestarted`:
    /// "Once a pod has been marked deleted, it should not be restarted").
    PodTerminating,
    /// A sidecar not restarted because every regular container of a Never or OnFailure
    /// pod is done: `computePodActions` kills the pod and starts no init container.
    PodCompleted,
}

impl AfterExit {
    /// The back-off the Waiting CrashLoopBackOff state names while the container waits.
    pub fn shown_back_off(self) -> Option<SpecDuration> {
        match self {
            AfterExit::RestartAfterBackOff(back_off)
            | AfterExit::RestartWhenBackOffCollected { back_off, .. } => Some(back_off),
            AfterExit::StaysTerminated
            | AfterExit::PodTerminating
            | AfterExit::PodCompleted
            | AfterExit::RestartImmediately
            | AfterExit::RestartAtOnceOrAfterBackOff(_) => None,
        }
    }

    /// Whether the container is started again.
    pub fn restarts(self) -> bool {
        !matches!(
            self,
            AfterExit::StaysTerminated | AfterExit::PodTerminating | AfterExit::PodCompleted
        )
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
    /// previous instance; for the container after an init container, the init
    /// container's instance that exited 0.
    Exited { container: String, instance: u32 },
    /// An instance of a sidecar has started (its startup probe succeeded, or it runs and
    /// its PostStart hook has returned): what the container after it waits for.
    Started { container: String, instance: u32 },
    /// The ephemeral container `name` was added to the pod (the fault action at `at`).
    Added { name: String, at: SpecDuration },
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
            StartGate::Started {
                container,
                instance,
            } => format!("start of sidecar {container} instance {instance}"),
            StartGate::Added { .. } => "its addition to the pod".to_owned(),
        }
    }

    /// When the gate opens, earliest and latest, counted from pod creation; None when it
    /// refers to an instance the plans made so far do not end.
    pub fn opens(&self, planned: &[ContainerPlan]) -> Option<(SpecDuration, SpecDuration)> {
        match self {
            StartGate::PodCreated => Some((SpecDuration::ZERO, SpecDuration::ZERO)),
            StartGate::Added { at, .. } => Some((*at, *at)),
            StartGate::Exited {
                container,
                instance,
            } => {
                let plan = planned.iter().find(|p| &p.name == container)?;
                plan.instances.get(*instance as usize)?.ends()
            }
            StartGate::Started {
                container,
                instance,
            } => {
                // Anchored at the sidecar's start, which every target reports precisely
                // (startedAt); the wait for its startup probe is part of the window after
                // (`after_opening`).
                let plan = planned.iter().find(|p| &p.name == container)?;
                let instance = plan.instances.get(*instance as usize)?;
                Some((instance.earliest_start, instance.latest_start))
            }
        }
    }

    /// How long after the gate opens the container that waits on it starts, earliest and
    /// latest; None when the gate never opens.
    pub fn after_opening(&self, planned: &[ContainerPlan]) -> Option<(SpecDuration, SpecDuration)> {
        match self {
            StartGate::PodCreated => Some((SpecDuration::ZERO, FIRST_START_WITHIN)),
            StartGate::Added { .. } => Some((SpecDuration::ZERO, EPHEMERAL_START_WITHIN)),
            // The sync that the exit's PLEG event sets off starts the next container.
            StartGate::Exited { .. } => Some((SpecDuration::ZERO, NEXT_CONTAINER_WITHIN)),
            // The sync after the sidecar turned started (its startup probe's result, or its
            // start's PLEG event) starts the next container.
            StartGate::Started {
                container,
                instance,
            } => {
                let plan = planned.iter().find(|p| &p.name == container)?;
                let (lo, hi) = plan.instances.get(*instance as usize)?.started_after()?;
                Some((lo, hi + NEXT_CONTAINER_WITHIN))
            }
        }
    }
}

/// Every instance of one container the oracle expects up to the horizon.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPlan {
    pub name: String,
    pub kind: ContainerKind,
    /// An ephemeral container's `targetContainerName`: whose processes it sees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_container: Option<String>,
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
    /// A fault action's effect, rather than a restart, is what timing could decide.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fault: bool,
}

impl ContainerPlan {
    pub fn last(&self) -> Option<&InstancePlan> {
        self.instances.last()
    }

    /// Whether the pod's end waits for this container's final exit: a regular container's,
    /// or a failed init container's (under Never it fails the pod).
    pub fn ends_the_pod(&self) -> bool {
        match self.kind {
            ContainerKind::Regular => true,
            ContainerKind::Init => self.final_exit_code().is_some_and(|code| code != 0),
            ContainerKind::Sidecar | ContainerKind::Ephemeral => false,
        }
    }

    /// The exit code the container finally stays terminated with, if it does.
    pub fn final_exit_code(&self) -> Option<i32> {
        let last = self.last()?;
        match (last.after_exit, last.end()) {
            (
                Some(
                    AfterExit::StaysTerminated
                    | AfterExit::PodTerminating
                    | AfterExit::PodCompleted,
                ),
                Some(end),
            ) => Some(end.code),
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
    plan_containers_adjusted(scenario, until, |_| {})
}

/// [`plan_containers`] with every container's probes changed by `adjust` first: how a
/// runtime that runs probes differently (a planted bug) would act.
pub fn plan_containers_adjusted(
    scenario: &Scenario,
    until: SpecDuration,
    adjust: impl Fn(&mut ContainerProbes),
) -> Vec<ContainerPlan> {
    let policy = scenario.restart_policy();
    let back_off = scenario.kubelet.back_off();
    let deletion = termination::Deletion::of(scenario);
    let mut plans: Vec<ContainerPlan> = Vec::new();
    let mut start_delay = (SpecDuration::ZERO, SpecDuration::ZERO);
    let sidecar_waits = deletion
        .as_ref()
        .map(|deletion| sidecar_deletion_waits(scenario, deletion))
        .unwrap_or_default();
    // What the next init container, and once they are all done the regular containers,
    // wait for; None once an init container never completes.
    let mut init_gate = Some(StartGate::PodCreated);
    for pod_container in scenario.pod_containers() {
        let (kind, container) = (pod_container.kind, pod_container.container);
        let empty = |ambiguity: Option<String>| ContainerPlan {
            name: container.name.clone(),
            kind,
            target_container: None,
            instances: Vec::new(),
            settles: true,
            ambiguity,
            undecided: None,
        };
        // A gate always refers to a container planned before; one that does not open
        // keeps the container from starting within the plan.
        let Some((gate, opens, after)) = init_gate.clone().and_then(|gate| {
            let opens = gate.opens(&plans)?;
            let after = gate.after_opening(&plans)?;
            Some((gate, opens, after))
        }) else {
            plans.push(empty(None));
            continue;
        };
        let rule = match (&gate, kind) {
            (StartGate::PodCreated, _) => RuleId::ContainerStateRunning,
            (StartGate::Added { .. }, _) => RuleId::EphemeralStarted,
            (StartGate::Started { .. }, _) => RuleId::SidecarStartGate,
            (StartGate::Exited { .. }, ContainerKind::Regular) => RuleId::InitBeforeRegular,
            (StartGate::Exited { .. }, _) => RuleId::InitSequential,
        };
        let first = FirstStart {
            gate,
            opens,
            after,
            rule,
        };
        let behaviour = scenario
            .behaviour(&container.name)
            .cloned()
            .unwrap_or_else(Behaviour::forever);
        // Scenarios are validated before they are planned; an unreadable probe here
        // is planned as no probe and reported as an ambiguity.
        let (probes, unreadable) = match scenario.container_probes(container, &pod_container.field)
        {
            Ok(mut probes) => {
                adjust(&mut probes);
                (probes, None)
            }
            Err(FieldError { field, reason }) => (
                ContainerProbes::default(),
                Some(format!("{field}: {reason}")),
            ),
        };
        let mut stops = stops_of(scenario, deletion.as_ref(), &pod_container, &behaviour);
        if kind == ContainerKind::Sidecar {
            for stop in &mut stops {
                if let StopKind::Delete(plan) = &mut stop.kind {
                    *plan = if container.liveness_probe.is_some()
                        || container.startup_probe.is_some()
                    {
                        // StopLivenessAndStartup stops only the regular containers' probes
                        // (1.33, 1.34): a deleted pod's sidecar goes on being probed.
                        Err("its liveness or startup probe goes on while the pod is deleted (the kubelet stops only the regular containers' probes); not modelled".to_owned())
                    } else {
                        sidecar_deletion_stop(
                            plan.clone(),
                            sidecar_waits.get(&container.name).copied(),
                        )
                    };
                }
            }
        }
        let hooks = match ContainerHooks::of(scenario, &pod_container, &behaviour) {
            Ok(hooks) => hooks,
            Err(reason) => {
                plans.push(empty(Some(reason)));
                continue;
            }
        };
        // SyncPod starts the regular containers one after another, each once the
        // PostStart hook of the one before has returned (or its failure's kill is over);
        // init containers start one per sync.
        let first = if kind == ContainerKind::Regular {
            let delayed = FirstStart {
                after: (first.after.0 + start_delay.0, first.after.1 + start_delay.1),
                ..first
            };
            start_delay = (
                start_delay.0 + hooks.blocks_sync_pod().0,
                start_delay.1 + hooks.blocks_sync_pod().1,
            );
            delayed
        } else {
            first
        };
        let to_plan = ContainerToPlan {
            name: &container.name,
            kind,
            behaviour: &behaviour,
            probes: &probes,
            hooks: &hooks,
            policy: container_policy(kind, policy),
        };
        let mut plan = plan_one(to_plan, first, back_off, until, stops);
        plan.ambiguity = plan.ambiguity.or(unreadable);
        match kind {
            ContainerKind::Init => init_gate = completed(&plan),
            ContainerKind::Sidecar => {
                init_gate = sidecar_started(&plan).unwrap_or_else(|undecided| {
                    plan.undecided.get_or_insert(undecided);
                    None
                })
            }
            ContainerKind::Regular | ContainerKind::Ephemeral => {}
        }
        plans.push(plan);
    }
    if let Some(deletion) = deletion.as_ref() {
        refuse_deletion_while_initializing(&mut plans, deletion);
    }
    if policy != RestartPolicy::Always {
        stop_sidecars_when_done(scenario, &mut plans, deletion.as_ref());
    }
    let done = pod_done(&plans);
    for (fault, name) in scenario.ephemeral_containers() {
        let mut plan = plan_ephemeral(scenario, fault, &name, done, deletion.as_ref(), until);
        // Sharing its target's PID namespace, it is killed by the kernel when the
        // target's process (PID 1 there) exits first: not modelled.
        if let Some(target) = plan.target_container.clone() {
            let target_plan = plans.iter().find(|p| p.name == target);
            if let Some(reason) =
                target_plan.and_then(|t| target_may_go_first(&plan, t, deletion.as_ref()))
            {
                plan.undecided = Some(Undecided {
                    at: plan
                        .instances
                        .first()
                        .map_or(SpecDuration::ZERO, |i| i.earliest_start),
                    reason,
                    fault: true,
                });
                plan.settles = false;
            }
        }
        plans.push(plan);
    }
    plans
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

    /// fuzz/regressions/poststart-outlived-by-its-process.yaml: a process that exits while
    /// the kubelet is still in its postStart hook is shown and restarted only once the hook
    /// returns; the model planned its exit and restart as if there were no hook.
    #[test]
    fn a_process_that_exits_within_its_post_start_hook_is_refused() {
        let yaml = |then: &str| {
            format!(
                "name: x\npod:\n  spec:\n    containers:\n      - name: app\n        lifecycle:\n          postStart:\n            sleep: {{seconds: 7}}\nbehaviours:\n  app:\n    starts: [{{exit: {{after: 20s, code: 1}}}}]\n    then: {then}\n"
            )
        };
        let refusal = |then: &str| {
            let scenario = Scenario::from_yaml("x", &yaml(then)).expect("valid");
            match crate::predict::predict(&scenario) {
                Ok(_) => None,
                Err(err) => Some(err.to_string()),
            }
        };
        // The second start's run is as much in the hook as the first's.
        let reason = refusal("{exit: {after: 0s, code: 0}}").expect("refused");
        assert!(
            reason.contains("before its postStart hook (taking 7s) has returned"),
            "{reason}"
        );
        assert_eq!(refusal("{exit: {after: 20s, code: 0}}"), None);
        assert_eq!(refusal("forever"), None);
    }

    /// fuzz/regressions/crash-loop-deleted-in-back-off.yaml: a deletion while the
    /// container waits in back-off ends the crash loop even when the next start would lie
    /// past the observation, and the pod is watched until it can have turned terminal.
    #[test]
    fn a_deletion_during_a_back_off_ends_the_crash_loop() {
        let yaml = "name: x\npod:\n  spec:\n    containers: [{name: app}]\nbehaviours:\n  app: {then: {exit: {after: 0s, code: 0}}}\nfaults:\n  - {at: 271, action: {delete: {gracePeriodSeconds: 10}}}\n";
        let scenario = Scenario::from_yaml("x", yaml).expect("valid");
        let prediction = crate::predict::predict(&scenario).expect("predicted");
        let last = prediction.containers[0].last().expect("instances");
        assert_eq!(last.after_exit, Some(AfterExit::PodTerminating));
        assert_eq!(prediction.terminal_phase, Some("Succeeded"));
        let terminal_by = SpecDuration::from_secs(271)
            + termination::DELETION_NOTICED_WITHIN
            + TERMINAL_PHASE_LAG;
        assert!(prediction.horizon > terminal_by, "{}", prediction.horizon);
    }
}
