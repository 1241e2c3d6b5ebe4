//! Termination parts of generated scenarios: what each container's process does on
//! SIGTERM, its lifecycle hooks (and the scripted hook calls its workload answers), the
//! pod's grace period and finalizer, and the fault schedule (kills from outside, one
//! deletion, the finalizer's removal).
//!
//! Generation draws plain descriptions ([`Termination`], [`HookPlan`]) and
//! [`with_termination`] writes them into a scenario, so that proptest, `arbitrary` and
//! `quickcheck` produce the same kinds of scenarios. The strategies are built to shrink
//! towards the smallest schedule: the actions are a `Vec` and an `Option` (shrinking
//! removes them), times come from ranges that shrink towards the earliest time,
//! alternatives are listed simplest first (`prop_oneof!` shrinks towards the first), and
//! flags shrink to off.

use crate::{one_of, secs, EXIT_CODES};
use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler, SleepAction, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podcheck_oracle::behaviour::{Health, HookResult, HookScript, OnSigterm};
use podcheck_oracle::plan::plan_containers;
use podcheck_oracle::plan::termination::{Deletion, DEFAULT_GRACE_SECONDS, HOOK_COMMAND};
use podcheck_oracle::predict::MAX_HORIZON;
use podcheck_oracle::scenario::{Fault, FaultAction};
use podcheck_oracle::{Scenario, SpecDuration};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Whether generated containers get `lifecycle.postStart` hooks. Off while the oracle's
/// validation refuses postStart as not modelled yet (a generated scenario must validate);
/// turn it on once the oracle predicts postStart.
pub const GENERATE_POST_START: bool = false;

/// Whether a kill may come after the pod's deletion. Off while the oracle's planner stops a
/// container's plan at the deletion and ignores a later kill (`plan_one` in
/// oracle/src/plan/instances.rs), whereas a node ends the process at the kill: a process that
/// ignores SIGTERM, or is still in its preStop hook, would be predicted to run until the
/// grace period ends and every real target would diverge. Turn it on once the oracle
/// models a kill during termination.
pub const KILL_DURING_TERMINATION: bool = false;

/// Whether a container with a liveness or startup probe may handle SIGTERM other than by
/// dying of it, or have a preStop hook. Off while the oracle models a probe's kill as a
/// SIGTERM the process dies of at once (`probes::KILLED_EXIT_CODE`), whereas the kubelet
/// kills it as it does on deletion (`killContainer`: the preStop hook, SIGTERM, SIGKILL
/// once the grace period is over): a process that ignores SIGTERM would be predicted to
/// end long before it does. Turn it on once the oracle plans a probe's kill with
/// `plan_stop`.
pub const SIGTERM_HANDLING_WITH_PROBE_KILLS: bool = false;

/// The finalizer generated pods may carry; the schedule always removes it after the
/// deletion, so that no generated pod is left Terminating on a real cluster.
pub const FINALIZER: &str = "podcheck.io/hold";

/// The names of the scripted hook calls generated handlers make.
pub const PRE_STOP_HOOK: &str = "pre-stop";
pub const POST_START_HOOK: &str = "post-start";

/// The earliest and latest time of a generated fault action, in half seconds: late enough
/// that every container's first start is over (it comes within 2s of the pod's creation,
/// and a fault within 1s of it has no single prediction), early enough to land in the
/// pod's first minute, where its containers' first runs and restarts happen.
const EARLIEST_FAULT_HALF_SECONDS: u64 = 12;
const LATEST_FAULT_HALF_SECONDS: u64 = 120;

/// The longest generated hook call, in seconds.
pub const LONGEST_HOOK_SECONDS: u64 = 12;

/// How a lifecycle hook is handled (pkg/kubelet/lifecycle/handlers.go): the simplest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerKind {
    /// `exec` of `/podcheck-agent hook NAME`.
    Exec,
    /// `httpGet` of `/hook/NAME` on the workload's hook port.
    Http,
    /// `sleep` in the kubelet, for the hook's `takes` (at most the grace period).
    Sleep,
    /// `tcpSocket`: accepted by validation, failed by the kubelet when it runs the hook.
    TcpSocket,
}

/// One lifecycle hook of a container: its handler, how long the call takes and whether
/// the workload answers it with a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookPlan {
    pub handler: HandlerKind,
    pub takes: SpecDuration,
    pub fails: bool,
}

/// How one container stops when the pod is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerTermination {
    pub on_sigterm: OnSigterm,
    pub pre_stop: Option<HookPlan>,
}

/// The pod's deletion: graceful (with the request's grace period, or the pod's) or forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionKind {
    Delete { grace_period_seconds: Option<i64> },
    Force,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeletionPlan {
    pub at: SpecDuration,
    pub kind: DeletionKind,
    /// The pod carries [`FINALIZER`], removed this long after the deletion.
    pub finalizer_removed_after: Option<SpecDuration>,
}

/// A fault schedule: kills from outside (time, container index) and at most one deletion
/// (validation refuses a second).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    pub kills: Vec<(SpecDuration, usize)>,
    pub deletion: Option<DeletionPlan>,
}

/// At most this many actions in a generated schedule (a finalizer's removal counts).
pub const MAX_ACTIONS: usize = 3;

impl Schedule {
    /// The schedule as the scenario's `faults`, in time order; kills past
    /// [`MAX_ACTIONS`] are left out.
    pub fn faults(&self, containers: &[Container]) -> Vec<Fault> {
        let mut faults = Vec::new();
        if let Some(deletion) = &self.deletion {
            let action = match deletion.kind {
                DeletionKind::Delete {
                    grace_period_seconds,
                } => FaultAction::Delete {
                    grace_period_seconds,
                },
                DeletionKind::Force => FaultAction::ForceDelete,
            };
            faults.push(Fault {
                at: deletion.at,
                action,
            });
            if let Some(after) = deletion.finalizer_removed_after {
                faults.push(Fault {
                    at: deletion.at + after,
                    action: FaultAction::RemoveFinalizer {
                        finalizer: FINALIZER.to_owned(),
                    },
                });
            }
        }
        let room = MAX_ACTIONS.saturating_sub(faults.len());
        if !containers.is_empty() {
            for (at, index) in self.kills.iter().take(room) {
                faults.push(Fault {
                    at: *at,
                    action: FaultAction::KillContainer {
                        container: containers[index % containers.len()].name.clone(),
                    },
                });
            }
        }
        // Stable: actions at the same time keep the order above.
        faults.sort_by_key(|fault| fault.at);
        faults
    }
}

/// Everything termination adds to a scenario.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Termination {
    /// By container index; missing entries are the defaults (die of SIGTERM, no hook).
    pub containers: Vec<ContainerTermination>,
    /// The pod's `terminationGracePeriodSeconds`.
    pub grace_seconds: Option<i64>,
    pub schedule: Schedule,
}

/// A fault time: 6s to 60s after the pod's creation, on whole or half seconds, shrinking
/// towards the earliest.
pub fn fault_time() -> impl Strategy<Value = SpecDuration> {
    (EARLIEST_FAULT_HALF_SECONDS..=LATEST_FAULT_HALF_SECONDS)
        .prop_map(|half| SpecDuration::from_millis(half * 500))
}

/// What a process does on SIGTERM: die of it (the default), ignore it, or exit with a code
/// after a delay. The delays are short enough to beat the 2s minimum grace (1s), clearly
/// inside or outside common grace periods, or longer than any generated one (70s), so a
/// fault lands on a decidable side of the SIGKILL more often than not.
pub fn on_sigterm() -> impl Strategy<Value = OnSigterm> {
    prop_oneof![
        3 => Just(OnSigterm::Die),
        2 => Just(OnSigterm::Ignore),
        2 => (one_of(&[1u64, 3, 8, 15, 70]), one_of(EXIT_CODES))
            .prop_map(|(after, code)| OnSigterm::Exit { after: secs(after), code }),
    ]
}

pub fn handler_kind() -> impl Strategy<Value = HandlerKind> {
    prop_oneof![
        3 => Just(HandlerKind::Exec),
        2 => Just(HandlerKind::Http),
        2 => Just(HandlerKind::Sleep),
        1 => Just(HandlerKind::TcpSocket),
    ]
}

/// A hook: any handler, a call of 0 to 12 whole seconds (shrinking towards 0), failing
/// sometimes (shrinking towards success).
pub fn hook() -> impl Strategy<Value = HookPlan> {
    (
        handler_kind(),
        0u64..=LONGEST_HOOK_SECONDS,
        prop::bool::weighted(0.25),
    )
        .prop_map(|(handler, takes, fails)| HookPlan {
            handler,
            takes: secs(takes),
            fails,
        })
}

/// A container's SIGTERM disposition and preStop hook.
pub fn container_termination() -> impl Strategy<Value = ContainerTermination> {
    (on_sigterm(), prop::option::weighted(0.5, hook())).prop_map(|(on_sigterm, pre_stop)| {
        ContainerTermination {
            on_sigterm,
            pre_stop,
        }
    })
}

/// The postStart hooks of `count` containers: none while [`GENERATE_POST_START`] is off.
pub fn post_start_hooks(count: usize) -> BoxedStrategy<Vec<Option<HookPlan>>> {
    if GENERATE_POST_START {
        prop::collection::vec(prop::option::weighted(0.2, hook()), count).boxed()
    } else {
        Just(vec![None; count]).boxed()
    }
}

/// A deletion: graceful with the pod's grace period, graceful with the request's (0 to
/// 40s), or forced (rarely); sometimes on a pod with a finalizer removed 5 to 60s later.
pub fn deletion() -> impl Strategy<Value = DeletionPlan> {
    let kind = prop_oneof![
        3 => Just(DeletionKind::Delete { grace_period_seconds: None }),
        3 => (0i64..=40).prop_map(|grace| DeletionKind::Delete {
            grace_period_seconds: Some(grace),
        }),
        1 => Just(DeletionKind::Force),
    ];
    (
        fault_time(),
        kind,
        prop::option::weighted(0.3, (5u64..=60).prop_map(secs)),
    )
        .prop_map(|(at, kind, finalizer_removed_after)| DeletionPlan {
            at,
            kind,
            finalizer_removed_after,
        })
}

/// A fault schedule for a pod of `containers` containers: up to two kills of one of them
/// and, usually, a deletion; [`MAX_ACTIONS`] at most in all.
pub fn fault_schedule(containers: usize) -> impl Strategy<Value = Schedule> {
    let containers = containers.max(1);
    (
        prop::collection::vec((fault_time(), 0..containers), 0..=2),
        prop::option::weighted(0.8, deletion()),
    )
        .prop_map(|(kills, deletion)| Schedule { kills, deletion })
}

/// The pod's `terminationGracePeriodSeconds`: usually unset (30s).
pub fn grace_seconds() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        3 => Just(None),
        1 => (1i64..=45).prop_map(Some),
    ]
}

/// Termination for a pod of `containers` containers.
pub fn termination(containers: usize) -> impl Strategy<Value = Termination> {
    (
        prop::collection::vec(container_termination(), containers),
        grace_seconds(),
        fault_schedule(containers),
    )
        .prop_map(|(containers, grace_seconds, schedule)| Termination {
            containers,
            grace_seconds,
            schedule,
        })
}

/// The pod's grace period, as validation reads it for sleep handlers.
fn spec_grace(scenario: &Scenario) -> i64 {
    scenario
        .pod
        .spec
        .as_ref()
        .and_then(|spec| spec.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS)
}

/// Writes `termination` into `scenario`: SIGTERM dispositions and preStop hooks on its
/// containers, the grace period and finalizer on the pod, the schedule as its faults.
pub fn with_termination(mut scenario: Scenario, termination: &Termination) -> Scenario {
    if let Some(spec) = scenario.pod.spec.as_mut() {
        spec.termination_grace_period_seconds = termination.grace_seconds;
    }
    let names: Vec<String> = scenario
        .containers()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    for (index, plan) in termination.containers.iter().enumerate().take(names.len()) {
        let probe_may_kill = scenario
            .containers()
            .get(index)
            .is_some_and(|c| c.liveness_probe.is_some() || c.startup_probe.is_some());
        if probe_may_kill && !SIGTERM_HANDLING_WITH_PROBE_KILLS {
            continue;
        }
        if let Some(behaviour) = scenario.behaviours.get_mut(&names[index]) {
            behaviour.on_sigterm = plan.on_sigterm;
        }
        if let Some(hook) = plan.pre_stop {
            install_hook(&mut scenario, index, HookPoint::PreStop, hook);
        }
    }
    let containers = scenario.containers().to_vec();
    scenario.faults = termination.schedule.faults(&containers);
    let has_finalizer = termination
        .schedule
        .deletion
        .is_some_and(|d| d.finalizer_removed_after.is_some());
    scenario.pod.metadata.finalizers = has_finalizer.then(|| vec![FINALIZER.to_owned()]);
    scenario
}

/// Writes postStart hooks into `scenario`, by container index.
pub fn with_post_starts(mut scenario: Scenario, hooks: &[Option<HookPlan>]) -> Scenario {
    for (index, hook) in hooks.iter().enumerate() {
        if let Some(hook) = hook {
            install_hook(&mut scenario, index, HookPoint::PostStart, *hook);
        }
    }
    scenario
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HookPoint {
    PostStart,
    PreStop,
}

/// Sets the `point` handler of the container at `index` and the scripted call its
/// workload answers.
///
/// The workload answers hook calls on its health listener, which must then listen from
/// the start; a container without health endpoints gets a listener of its own (port
/// 8080 + index, as its health port would be), since two workloads on the default hook
/// port would collide in the pod's one network namespace.
fn install_hook(scenario: &mut Scenario, index: usize, point: HookPoint, hook: HookPlan) {
    let grace = spec_grace(scenario);
    let Some(name) = scenario.containers().get(index).map(|c| c.name.clone()) else {
        return;
    };
    let Some(behaviour) = scenario.behaviours.get_mut(&name) else {
        return;
    };
    let call = match point {
        HookPoint::PostStart => POST_START_HOOK,
        HookPoint::PreStop => PRE_STOP_HOOK,
    };
    let own_port = 8080 + u16::try_from(index).unwrap_or(0);
    if matches!(hook.handler, HandlerKind::Exec | HandlerKind::Http) {
        behaviour.hooks.insert(
            call.to_owned(),
            HookScript {
                takes: hook.takes,
                result: if hook.fails {
                    HookResult::Fail
                } else {
                    HookResult::Ok
                },
            },
        );
        match behaviour.health.as_mut() {
            Some(health) => health.listen_after = SpecDuration::ZERO,
            None if own_port != Health::DEFAULT_PORT => {
                behaviour.health = Some(Health {
                    port: own_port,
                    listen_after: SpecDuration::ZERO,
                    grpc_port: None,
                    endpoints: BTreeMap::new(),
                })
            }
            None => {}
        }
    }
    let port = behaviour.hook_port().unwrap_or(own_port);
    let handler = match hook.handler {
        HandlerKind::Exec => LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec![
                    HOOK_COMMAND.to_owned(),
                    "hook".to_owned(),
                    call.to_owned(),
                ]),
            }),
            ..LifecycleHandler::default()
        },
        HandlerKind::Http => LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some(format!("/hook/{call}")),
                port: IntOrString::Int(i32::from(port)),
                ..HTTPGetAction::default()
            }),
            ..LifecycleHandler::default()
        },
        // validateSleepAction: no longer than the pod's grace period.
        HandlerKind::Sleep => LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: i64::try_from(hook.takes.as_millis() / 1000)
                    .unwrap_or(0)
                    .min(grace),
            }),
            ..LifecycleHandler::default()
        },
        HandlerKind::TcpSocket => LifecycleHandler {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(port)),
                ..TCPSocketAction::default()
            }),
            ..LifecycleHandler::default()
        },
    };
    let Some(container) = scenario
        .pod
        .spec
        .as_mut()
        .and_then(|spec| spec.containers.get_mut(index))
    else {
        return;
    };
    let lifecycle = container.lifecycle.get_or_insert_with(Lifecycle::default);
    match point {
        HookPoint::PostStart => lifecycle.post_start = Some(handler),
        HookPoint::PreStop => lifecycle.pre_stop = Some(handler),
    }
}

/// How far from its drawn time [`at_decidable_times`] may move an action, in half seconds.
const FARTHEST_NUDGE_HALF_SECONDS: u64 = 80;
/// The earliest time it may move an action to: every first start is over (2s) by a margin.
const EARLIEST_NUDGE: SpecDuration = SpecDuration::from_secs(3);

/// Times around `drawn`, nearest first (later before earlier at the same distance), on
/// half seconds, from [`EARLIEST_NUDGE`] on.
fn nearby(drawn: SpecDuration) -> impl Iterator<Item = SpecDuration> {
    let half = drawn.as_millis() / 500;
    std::iter::once(drawn).chain((1..=FARTHEST_NUDGE_HALF_SECONDS).flat_map(move |distance| {
        let later = Some(SpecDuration::from_millis((half + distance) * 500))
            .filter(|at| *at <= MAX_HORIZON);
        let earlier = half
            .checked_sub(distance)
            .map(|h| SpecDuration::from_millis(h * 500))
            .filter(|at| *at >= EARLIEST_NUDGE);
        later.into_iter().chain(earlier)
    }))
}

/// Moves each kill and deletion of the schedule to the moment nearest its drawn time (on
/// half seconds, at most 40s away, not before 3s) at which the oracle can tell what it
/// does: not within a second of a start window or of an exit of the container it stops
/// (else `predict` fails with `PredictError::UndecidedFault`), and, for a kill, while the
/// container runs (the local runtime refuses to kill what does not run). The deletion is
/// placed first (it stops every container, so it has the fewest such moments), then the
/// kills, earliest first; a finalizer's removal moves with its deletion. A deletion that
/// has no such moment keeps its time, and `predict` refuses the scenario; a kill that has
/// none is left out.
///
/// Without this, half the fault schedules land on a crash-looping container's restart
/// window (a back-off restart may come up to 30s late) and have no single prediction.
/// The nearest decidable moment moves with the drawn time, so shrinking a time still
/// moves the action earlier.
pub fn at_decidable_times(mut scenario: Scenario) -> Scenario {
    decidable_stops(&mut scenario);
    let mut schedule = std::mem::take(&mut scenario.faults);
    schedule.sort_by_key(|fault| (!is_deletion(&fault.action), fault.at));
    let mut placed: Vec<Fault> = Vec::new();
    let mut deletion_moved_by: Option<(bool, SpecDuration)> = None;
    for mut fault in schedule {
        if let FaultAction::RemoveFinalizer { .. } = fault.action {
            // As long after its deletion as drawn.
            fault.at = match deletion_moved_by {
                Some((true, later)) => fault.at + later,
                Some((false, earlier)) => fault.at.saturating_sub(earlier),
                None => fault.at,
            };
            placed.push(fault);
            continue;
        }
        let drawn = fault.at;
        let index = placed.len();
        let decides = |at: SpecDuration| {
            let mut trial = scenario.clone();
            trial.faults = placed.clone();
            trial.faults.push(Fault {
                at,
                action: fault.action.clone(),
            });
            let plans = match podcheck_oracle::predict(&trial) {
                Ok(prediction) => prediction.containers,
                Err(podcheck_oracle::PredictError::UndecidedFault { .. }) => return false,
                // Refused for another reason (a probe's timing): what the action does is
                // still in the plans.
                Err(_) => plan_containers(&trial, MAX_HORIZON),
            };
            match &fault.action {
                FaultAction::KillContainer { container } => plans
                    .iter()
                    .filter(|plan| plan.name == *container)
                    .flat_map(|plan| &plan.instances)
                    .any(|instance| {
                        instance
                            .cut
                            .as_ref()
                            .is_some_and(|cut| cut.fault == Some(index))
                    }),
                _ => true,
            }
        };
        match nearby(drawn).find(|at| decides(*at)) {
            Some(at) => fault.at = at,
            // A kill that finds nothing running anywhere near its time is left out: a
            // target refuses to kill what does not run.
            None if matches!(fault.action, FaultAction::KillContainer { .. }) => continue,
            None => {}
        }
        if is_deletion(&fault.action) {
            deletion_moved_by = Some(if fault.at >= drawn {
                (true, fault.at.saturating_sub(drawn))
            } else {
                (false, drawn.saturating_sub(fault.at))
            });
        }
        placed.push(fault);
    }
    if !KILL_DURING_TERMINATION {
        if let Some(deleted_at) = placed
            .iter()
            .find(|fault| is_deletion(&fault.action))
            .map(|fault| fault.at)
        {
            placed.retain(|fault| {
                !matches!(fault.action, FaultAction::KillContainer { .. }) || fault.at < deleted_at
            });
        }
    }
    placed.sort_by_key(|fault| fault.at);
    scenario.faults = placed;
    scenario
}

/// How far [`decidable_stops`] moves a hook call or a graceful exit: past the 1s margin
/// and the 1s lag within which timing decides.
const STOP_NUDGE: SpecDuration = SpecDuration::from_secs(2);

/// Makes each container's stop under the scenario's deletion decidable whenever the
/// deletion comes: a preStop call within a second of the grace period is made to outlast
/// it by 2s more (or, for a sleep that may not outlast the pod's grace period, to end 2s
/// sooner), and a graceful exit within a second of the SIGKILL comes 2s later.
fn decidable_stops(scenario: &mut Scenario) {
    let Some(deletion) = Deletion::of(scenario) else {
        return;
    };
    let spec_grace = spec_grace(scenario);
    for index in 0..scenario.containers().len() {
        for attempt in 0..2 {
            let Some(container) = scenario.containers().get(index).cloned() else {
                return;
            };
            let Some(behaviour) = scenario.behaviours.get_mut(&container.name) else {
                break;
            };
            if deletion
                .stop_plan(
                    &container,
                    &format!("pod.spec.containers[{index}]"),
                    behaviour,
                )
                .is_ok()
            {
                break;
            }
            if attempt == 0 {
                if let Some(script) = behaviour.hooks.get_mut(PRE_STOP_HOOK) {
                    script.takes = script.takes + STOP_NUDGE;
                    continue;
                }
                let sleep = container
                    .lifecycle
                    .as_ref()
                    .and_then(|l| l.pre_stop.as_ref())
                    .and_then(|h| h.sleep.as_ref())
                    .map(|s| s.seconds);
                if let Some(seconds) = sleep {
                    let seconds = if seconds + 2 <= spec_grace {
                        seconds + 2
                    } else {
                        (seconds - 2).max(0)
                    };
                    if let Some(sleep) = scenario
                        .pod
                        .spec
                        .as_mut()
                        .and_then(|s| s.containers.get_mut(index))
                        .and_then(|c| c.lifecycle.as_mut())
                        .and_then(|l| l.pre_stop.as_mut())
                        .and_then(|h| h.sleep.as_mut())
                    {
                        sleep.seconds = seconds;
                    }
                    continue;
                }
            }
            if let OnSigterm::Exit { after, code } = behaviour.on_sigterm {
                behaviour.on_sigterm = OnSigterm::Exit {
                    after: after + STOP_NUDGE,
                    code,
                };
            }
        }
    }
}

fn is_deletion(action: &FaultAction) -> bool {
    matches!(
        action,
        FaultAction::Delete { .. } | FaultAction::ForceDelete
    )
}
