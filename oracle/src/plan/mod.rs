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
use crate::probes::{plan_instance, Ambiguous, Carry, ContainerProbes, ProbeKind, ProbePlan};
use crate::rules::RuleId;
use crate::scenario::{BackOffParams, ContainerKind, RestartPolicy, Scenario};
use std::collections::BTreeMap;

mod backoff;
mod init;
pub mod termination;

use init::{
    completed, plan_ephemeral, pod_done, refuse_deletion_while_initializing, sidecar_deletion_stop,
    sidecar_deletion_waits, sidecar_started, stop_sidecars_when_done, target_may_go_first,
};
pub use init::{container_policy, EPHEMERAL_START_WITHIN, NEXT_CONTAINER_WITHIN};

use backoff::{CrashLoop, Moment};
pub use backoff::{
    BACK_OFF_REQUEUE_MAX, BACK_OFF_RESET_AFTER, BACK_OFF_RESET_MARGIN, HOUSEKEEPING_PERIOD,
    PROBE_KILL_MARGIN,
};
use termination::{StopPlan, DELETION_NOTICED_WITHIN, SIGNAL_LAG, TERMINATION_MARGIN};

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
    /// The instance is stopped from outside (a fault action) before it would end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
    /// The container's PostStart hook call, run as this instance starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_start: Option<termination::HookCall>,
    /// How the kubelet kills the instance after its PostStart hook failed, as spans after
    /// the instance's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_start_kill: Option<StopPlan>,
}

/// An instance stopped by a fault action.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cut {
    /// The index of the action in the scenario's fault schedule; None when the kubelet
    /// stops the instance of itself (a sidecar once the pod's regular containers are done).
    pub fault: Option<usize>,
    pub cause: CutCause,
    /// When the process is gone, earliest and latest after the action's scheduled time.
    pub after_action: (SpecDuration, SpecDuration),
    /// The scheduled time of the action, from pod creation.
    pub action_at: SpecDuration,
    pub code: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CutCause {
    /// `killContainer`: SIGKILL from outside the kubelet.
    Killed,
    /// The pod's deletion: the kubelet's `killContainer`.
    Deleted(StopPlan),
    /// A sidecar stopped once every regular container has terminated for good (Never and
    /// OnFailure pods): `killContainer` with the pod's grace period, later sidecars first.
    /// `action_at` is the earliest last regular exit.
    PodCompleted(SidecarStop),
}

/// How the kubelet stops a sidecar once the pod's regular containers are done.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStop {
    pub stop: StopPlan,
    /// When the sidecar is gone, earliest and latest after the last regular container's
    /// exit: the sync that sees that exit, the wait for the sidecars after it, its stop.
    pub after_done: (SpecDuration, SpecDuration),
}

/// How an instance ends: its process exits, or a probe has it killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    /// Earliest and latest end after the instance's start.
    pub lo: SpecDuration,
    pub hi: SpecDuration,
    pub code: i32,
    pub killed_by: Option<crate::probes::ProbeKind>,
    /// A fault action stopped it: its timing is checked against the action's observed time.
    pub cut: bool,
    /// Its PostStart hook failed and the kubelet killed it.
    pub post_start_failed: bool,
}

impl InstancePlan {
    /// The period of the probe that kills this instance. One worker kills every instance
    /// of a container, at most once per tick: whatever the window after this start, the
    /// kill comes at least a period after the previous kill.
    pub fn kill_period(&self) -> Option<SpecDuration> {
        let probes = self.probes.as_ref()?;
        let (kind, _) = probes.kill.as_ref()?;
        match kind {
            ProbeKind::Liveness => probes.probes.liveness.as_ref(),
            ProbeKind::Startup => probes.probes.startup.as_ref(),
            ProbeKind::Readiness => None,
        }
        .map(|probe| probe.period)
    }

    pub fn end(&self) -> Option<End> {
        if let Some(cut) = &self.cut {
            let lo = (cut.action_at + cut.after_action.0).saturating_sub(self.latest_start);
            let hi = (cut.action_at + cut.after_action.1).saturating_sub(self.earliest_start);
            return Some(End {
                lo,
                hi: hi.max(lo),
                code: cut.code,
                killed_by: None,
                cut: true,
                post_start_failed: false,
            });
        }
        self.natural_end()
    }

    /// How the instance ends of itself (its process exits, or a probe has it killed).
    fn natural_end(&self) -> Option<End> {
        if let Some(failed) = &self.post_start_kill {
            return Some(End {
                lo: failed.end.0,
                hi: failed.end.1,
                code: failed.exit_code,
                killed_by: None,
                cut: false,
                post_start_failed: true,
            });
        }
        if let Some((kind, window)) = self.probes.as_ref().and_then(|p| p.kill.as_ref()) {
            return Some(End {
                lo: window.lo,
                hi: window.hi,
                code: crate::probes::KILLED_EXIT_CODE,
                killed_by: Some(*kind),
                cut: false,
                post_start_failed: false,
            });
        }
        match self.run {
            Run::Exit { after, code } => Some(End {
                lo: after,
                hi: after,
                code,
                killed_by: None,
                cut: false,
                post_start_failed: false,
            }),
            Run::Forever => None,
        }
    }

    /// When the container is shown Running after its start: once its PostStart hook has
    /// returned (the pod worker is busy in SyncPod until then), earliest and latest.
    pub fn shown_running_after(&self) -> (SpecDuration, SpecDuration) {
        match &self.post_start {
            Some(call) => (call.takes, call.takes + termination::HOOK_LAG),
            None => (SpecDuration::ZERO, SpecDuration::ZERO),
        }
    }

    /// When the container shows `started: true` after this instance's start: once its
    /// startup probe has succeeded, or (without one) once it is shown Running. None when
    /// it never starts while this instance runs.
    pub fn started_after(&self) -> Option<(SpecDuration, SpecDuration)> {
        match &self.probes {
            Some(probes) => probes.started.as_ref().map(|w| (w.lo, w.hi)),
            None => Some(self.shown_running_after()),
        }
    }

    /// When the instance is gone, earliest and latest from pod creation.
    pub fn ends(&self) -> Option<(SpecDuration, SpecDuration)> {
        if let Some(cut) = &self.cut {
            return Some((
                cut.action_at + cut.after_action.0,
                cut.action_at + cut.after_action.1,
            ));
        }
        let end = self.natural_end()?;
        Some((self.earliest_start + end.lo, self.latest_start + end.hi))
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
        let mut plan = plan_one(
            &container.name,
            kind,
            &behaviour,
            &probes,
            first,
            container_policy(kind, policy),
            back_off,
            until,
            stops,
            &hooks,
        );
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

/// A container's PostStart hook, and how the kubelet kills the container when it fails.
struct ContainerHooks {
    post_start: Option<termination::HookCall>,
    post_start_kill: Option<StopPlan>,
}

impl ContainerHooks {
    fn of(
        scenario: &Scenario,
        pod_container: &crate::scenario::PodContainer<'_>,
        behaviour: &Behaviour,
    ) -> Result<ContainerHooks, String> {
        use termination::{resolve_hook, HookPoint, HOOK_LAG};
        let (container, field) = (pod_container.container, &pod_container.field);
        let post_start = resolve_hook(container, behaviour, HookPoint::PostStart, field)
            .map_err(|(field, reason)| format!("{field}: {reason}"))?;
        let post_start_kill = match &post_start {
            Some(call) if call.fails => {
                // killContainer with the pod's grace period (no deletion yet), PreStop
                // included, right after the hook's failure.
                let grace = scenario
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.termination_grace_period_seconds)
                    .unwrap_or(termination::DEFAULT_GRACE_SECONDS);
                let pre_stop = resolve_hook(container, behaviour, HookPoint::PreStop, field)
                    .map_err(|(field, reason)| format!("{field}: {reason}"))?;
                let mut stop =
                    termination::plan_stop(grace, pre_stop.as_ref(), behaviour.on_sigterm)
                        .map_err(|reason| format!("after its failed postStart hook, {reason}"))?;
                // As spans after the instance's start.
                stop.end = (call.takes + stop.end.0, call.takes + HOOK_LAG + stop.end.1);
                Some(stop)
            }
            _ => None,
        };
        if let (Some(kill), Run::Exit { after, .. }) =
            (&post_start_kill, behaviour.run_for_start(0))
        {
            if after < kill.end.1 + TERMINATION_MARGIN {
                return Err(format!(
                    "{field}: the process exits {after} after its start, before the kill that follows its failing postStart hook is over; not modelled"
                ));
            }
        }
        Ok(ContainerHooks {
            post_start,
            post_start_kill,
        })
    }

    /// How long the container's start holds up SyncPod, earliest and latest.
    fn blocks_sync_pod(&self) -> (SpecDuration, SpecDuration) {
        match (&self.post_start, &self.post_start_kill) {
            (Some(_), Some(kill)) => kill.end,
            (Some(call), None) => (call.takes, call.takes + termination::HOOK_LAG),
            _ => (SpecDuration::ZERO, SpecDuration::ZERO),
        }
    }
}

/// A fault action that stops a container's instance from outside at a scheduled time.
#[derive(Clone, Debug)]
struct Stop {
    fault: usize,
    at: SpecDuration,
    kind: StopKind,
}

#[derive(Clone, Debug)]
enum StopKind {
    /// `killContainer`.
    Kill,
    /// The pod's deletion: how the kubelet stops this container, or why that has no
    /// single prediction.
    Delete(Result<StopPlan, String>),
}

/// The fault actions that stop `container`, in time order.
fn stops_of(
    scenario: &Scenario,
    deletion: Option<&termination::Deletion>,
    pod_container: &crate::scenario::PodContainer<'_>,
    behaviour: &Behaviour,
) -> Vec<Stop> {
    let container = pod_container.container;
    let mut stops: Vec<Stop> = scenario
        .faults
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            matches!(&f.action, crate::scenario::FaultAction::KillContainer { container: c } if *c == container.name)
        })
        .map(|(fault, f)| Stop {
            fault,
            at: f.at,
            kind: StopKind::Kill,
        })
        .collect();
    if let Some(deletion) = deletion.filter(|d| !d.object_gone_at_once()) {
        stops.push(Stop {
            fault: deletion.fault,
            at: deletion.at,
            kind: StopKind::Delete(deletion.stop_plan(container, &pod_container.field, behaviour)),
        });
    }
    stops.sort_by_key(|stop| stop.at);
    stops
}

/// What a stop does to an instance that starts within `[earliest, latest]`.
enum StopEffect {
    /// The instance is not running yet when the stop comes.
    BeforeStart,
    /// The instance ends of itself before the stop comes.
    AfterEnd,
    /// The stop ends the instance.
    Cuts(Cut),
    /// Timing noise could decide which comes first.
    Undecided(String),
}

fn stop_effect(instance: &InstancePlan, stop: &Stop) -> StopEffect {
    let margin = TERMINATION_MARGIN;
    let what = match &stop.kind {
        StopKind::Kill => "killContainer",
        StopKind::Delete(_) => "deletion",
    };
    let at = stop.at;
    if at + margin <= instance.earliest_start {
        return StopEffect::BeforeStart;
    }
    let started_by = instance.latest_start
        + instance
            .post_start
            .as_ref()
            .map_or(SpecDuration::ZERO, |hook| {
                hook.takes + termination::HOOK_LAG
            });
    if at < started_by + margin {
        return StopEffect::Undecided(format!(
            "the {what} at {} may come before instance {} has started (it starts {} to {}{})",
            at,
            instance.index,
            instance.earliest_start,
            instance.latest_start,
            if instance.post_start.is_some() {
                ", and its postStart hook must have returned"
            } else {
                ""
            }
        ));
    }
    let (after_action, code, cause) = match &stop.kind {
        StopKind::Kill => (
            (SpecDuration::ZERO, SIGNAL_LAG),
            termination::SIGKILL_EXIT_CODE,
            CutCause::Killed,
        ),
        StopKind::Delete(Ok(plan)) => (
            (plan.end.0, DELETION_NOTICED_WITHIN + plan.end.1),
            plan.exit_code,
            CutCause::Deleted(plan.clone()),
        ),
        StopKind::Delete(Err(reason)) => {
            return StopEffect::Undecided(format!(
                "instance {} is running at the deletion, but {reason}",
                instance.index
            ))
        }
    };
    if let Some(end) = instance.natural_end() {
        let (lo, hi) = (
            instance.earliest_start + end.lo,
            instance.latest_start + end.hi,
        );
        // Liveness and startup probes stop once the kubelet has seen the deletion; a
        // process still exits of itself until it is gone.
        let still_ends_itself_until = match (&stop.kind, end.killed_by) {
            (StopKind::Delete(_), Some(_)) => at + DELETION_NOTICED_WITHIN,
            _ => at + after_action.1,
        };
        if hi + margin <= at {
            return StopEffect::AfterEnd;
        }
        if lo < still_ends_itself_until + margin {
            return StopEffect::Undecided(format!(
                "instance {} ends of itself {lo} to {hi}, too close to the {what} at {at}",
                instance.index
            ));
        }
    }
    StopEffect::Cuts(Cut {
        fault: Some(stop.fault),
        cause,
        after_action,
        action_at: at,
        code,
    })
}

/// When a container's first instance may start: a window after its gate opens.
struct FirstStart {
    /// The rule that decides the first start.
    rule: RuleId,
    gate: StartGate,
    /// When the gate opens, earliest and latest, from pod creation.
    opens: (SpecDuration, SpecDuration),
    after: (SpecDuration, SpecDuration),
}

#[allow(clippy::too_many_arguments)]
fn plan_one(
    name: &str,
    kind: ContainerKind,
    behaviour: &Behaviour,
    probes: &ContainerProbes,
    first: FirstStart,
    policy: RestartPolicy,
    back_off: BackOffParams,
    until: SpecDuration,
    mut stops: Vec<Stop>,
    hooks: &ContainerHooks,
) -> ContainerPlan {
    let mut plan = ContainerPlan {
        name: name.to_owned(),
        kind,
        target_container: None,
        instances: Vec::new(),
        settles: true,
        ambiguity: None,
        undecided: None,
    };
    let mut carry = Carry::default();
    let mut crash_loop = CrashLoop::new(back_off);
    let mut last_kill: Option<SpecDuration> = None;
    let (mut earliest, mut latest) = (first.opens.0 + first.after.0, first.opens.1 + first.after.1);
    let mut start_gate = first.gate;
    let mut start_after = first.after;
    let mut start_rule = first.rule;
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
            cut: None,
            post_start: hooks.post_start.clone(),
            post_start_kill: hooks.post_start_kill.clone(),
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
        while let Some(stop) = stops.first() {
            match stop_effect(&instance, stop) {
                StopEffect::AfterEnd => break,
                StopEffect::BeforeStart => {
                    if matches!(stop.kind, StopKind::Delete(_)) {
                        // The restart the instance would be does not happen.
                        if let Some(previous) = plan.instances.last_mut() {
                            previous.after_exit = Some(AfterExit::PodTerminating);
                        }
                        return plan;
                    }
                    // Nothing runs to be killed.
                    stops.remove(0);
                }
                StopEffect::Cuts(cut) => {
                    // The startup probe stops with the deletion too: a container not
                    // started by then is never started, and readiness, which waits for
                    // it, never probes.
                    let deleted = matches!(cut.cause, CutCause::Deleted(_));
                    let started = instance.probes.as_ref().and_then(|p| p.started.as_ref());
                    if let (true, Some(window)) = (deleted, started) {
                        let (lo, hi) = (earliest + window.lo, latest + window.hi);
                        if lo > cut.action_at + DELETION_NOTICED_WITHIN + TERMINATION_MARGIN {
                            if let Some(probes) = instance.probes.as_mut() {
                                probes.started = None;
                                probes.ready.clear();
                            }
                        } else if hi + TERMINATION_MARGIN > cut.action_at {
                            plan.undecided = Some(Undecided {
                                at: cut.action_at,
                                reason: format!(
                                    "instance {index} turns started {lo} to {hi}, too close to the deletion at {}, which stops its startup probe",
                                    cut.action_at
                                ),
                                fault: true,
                            });
                            plan.instances.push(instance);
                            plan.settles = false;
                            return plan;
                        }
                    }
                    if let Some(probes) = instance.probes.as_mut() {
                        probes.kill = None;
                        // Readiness keeps probing while the pod terminates: a flip due
                        // after the deletion that never comes breaks that first.
                        if matches!(cut.cause, CutCause::Deleted(_)) {
                            for flip in &mut probes.ready {
                                if earliest + flip.window.lo > cut.action_at {
                                    flip.window
                                        .late_rules
                                        .insert(0, RuleId::TerminationReadinessContinues);
                                }
                            }
                        }
                    }
                    instance.cut = Some(cut);
                    stops.remove(0);
                    break;
                }
                StopEffect::Undecided(reason) => {
                    plan.undecided = Some(Undecided {
                        at: stop.at,
                        reason,
                        fault: true,
                    });
                    plan.instances.push(instance);
                    plan.settles = false;
                    return plan;
                }
            }
        }
        let Some(end) = instance.end() else {
            plan.instances.push(instance);
            return plan;
        };
        let mut finished = match instance.ends() {
            Some((lo, hi)) if end.cut => Moment::new(lo, hi),
            _ => Moment::new(earliest + end.lo, latest + end.hi),
        };
        if matches!(
            instance.cut.as_ref().map(|c| &c.cause),
            Some(CutCause::Deleted(_))
        ) {
            instance.after_exit = Some(AfterExit::PodTerminating);
            plan.instances.push(instance);
            return plan;
        }
        if let Some(period) = instance.kill_period() {
            if let Some(previous) = last_kill {
                finished = Moment::new(finished.lo.max(previous + period), finished.hi);
            }
            last_kill = Some(finished.lo);
        }
        // A probe kill restarts under Always and OnFailure whatever the exit code
        // (`shouldRestartOnFailure`); an exit (also a kill from outside) follows the policy
        // and its code.
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
                    reason: format!("the restart after instance {index}: {reason}"),
                    fault: false,
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
        if index >= MAX_PLANNED_INSTANCES {
            plan.settles = false;
            plan.undecided = Some(Undecided {
                at: earliest,
                reason: format!(
                    "the restart after instance {}: more than {MAX_PLANNED_INSTANCES} instances would be planned",
                    index - 1
                ),
                fault: false,
            });
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
