//! The model target's event loop: plays the events drawn from the plan in time order, as
//! the kubelet and the API server would show them, into the pod's status snapshots.

use super::init::split_statuses;
use super::*;
use crate::plan::termination::Deletion;
use crate::scenario::RestartPolicy;
use crate::trace::{PodMetadata, Snapshot};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodStatus,
};
use std::cell::RefCell;
use std::collections::VecDeque;

/// What happens to the pod at one moment of a model run.
#[derive(Debug, Clone)]
pub(super) enum Event {
    /// An instance is shown Running (at the event's time) since its process started.
    Start {
        container: usize,
        index: u32,
        since: u64,
        /// False when its PostStart hook fails: it is killed before it is ever shown.
        shows_running: bool,
    },
    Exit {
        container: usize,
        index: u32,
        code: i32,
    },
    CrashLoopWait {
        container: usize,
        back_off: SpecDuration,
    },
    /// The API server accepts the pod's deletion.
    Deleted,
    /// A finalizer is removed from the pod's metadata.
    FinalizerRemoved(String),
    /// The kubelet's final delete (grace 0) once the pod is terminal.
    FinalDelete,
    /// A probe result changes `started` or `ready` of a running instance.
    Flag {
        container: usize,
        index: u32,
        started: Option<bool>,
        ready: Option<bool>,
    },
}

/// What the event loop plays: the pod, the plan its events were drawn from, and the bug
/// planted in the run.
#[derive(Clone, Copy)]
pub(super) struct Playing<'a> {
    pub(super) scenario: &'a Scenario,
    /// The plan the events were drawn from: the prediction, or a planted bug's reading.
    pub(super) planned: &'a Prediction,
    pub(super) names: &'a [derive::SpecContainer<'a>],
    pub(super) deletion: Option<&'a Deletion>,
    pub(super) deviation: Option<Deviation>,
    pub(super) policy: RestartPolicy,
    /// The end of the observation, in ms from pod creation.
    pub(super) horizon: u64,
}

/// Plays `events` (time, sequence, event) into the snapshots a target would show.
pub(super) fn play(
    playing: &Playing<'_>,
    mut events: Vec<(u64, usize, Event)>,
    choices: &mut dyn Choices,
) -> Vec<Snapshot> {
    let Playing {
        scenario,
        planned,
        names,
        deletion,
        deviation,
        policy,
        horizon,
    } = *playing;
    let has_init = names.iter().any(|(_, kind)| kind.is_init());
    // The deletion comes before what it causes at the same instant (a container that
    // SIGTERM ends at once).
    events.sort_by_key(|(at, seq, event)| (*at, !matches!(event, Event::Deleted), *seq));
    let mut queue: VecDeque<(u64, usize, Event)> = events.into();

    let pod_name = scenario.pod_name().to_owned();
    let mut statuses: Vec<ContainerStatus> = names
        .iter()
        .map(|(name, kind)| (name, *kind == ContainerKind::Ephemeral))
        .map(|(name, ephemeral)| ContainerStatus {
            name: (*name).to_owned(),
            image: "podcheck/agent".to_owned(),
            image_id: String::new(),
            ready: false,
            started: Some(false),
            restart_count: 0,
            state: Some(ContainerState {
                // convertToAPIContainerStatuses: PodInitializing for every container
                // not yet created, once the pod has init containers.
                waiting: Some(ContainerStateWaiting {
                    reason: Some(
                        if has_init && deviation != Some(Deviation::InitWaitingContainerCreating) {
                            "PodInitializing"
                        } else {
                            "ContainerCreating"
                        }
                        .to_owned(),
                    ),
                    message: None,
                }),
                ..ContainerState::default()
            })
            // Not shown before it is added.
            .filter(|_| !ephemeral),
            ..ContainerStatus::default()
        })
        .collect();
    let mut snapshots = Vec::new();
    let metadata = RefCell::new(PodMetadata {
        finalizers: scenario.pod.metadata.finalizers.clone().unwrap_or_default(),
        ..PodMetadata::default()
    });
    let mut deleted = false;
    let mut final_delete_done = false;
    let mut terminal: Option<&'static str> = None;
    let mut started_at: BTreeMap<(usize, u32), u64> = BTreeMap::new();
    // `shown` overrides the phase written while `mergePodStatus` holds a terminal phase
    // back; the conditions always follow the phase the kubelet generated.
    let of_kind = |statuses: &[ContainerStatus], list: &str| split_statuses(names, statuses, list);
    let emit = |at: u64,
                statuses: &[ContainerStatus],
                terminal: &mut Option<&'static str>,
                sandbox_ready: bool,
                shown: Option<&'static str>,
                snapshots: &mut Vec<Snapshot>| {
        let deleted_now = metadata.borrow().deletion_timestamp.is_some()
            && deviation != Some(Deviation::DeletedPodKeepsItsPhase);
        let mut phase =
            terminal.unwrap_or_else(|| derive::derive_phase(names, statuses, policy, deleted_now));
        if deviation == Some(Deviation::RunningBeforeStart) && phase == "Pending" {
            phase = "Running";
        }
        let mut written = shown.unwrap_or(phase);
        let init_failed = failed_of_kind(names, statuses, ContainerKind::Init);
        if deviation == Some(Deviation::InitFailureIgnoredUnderNever)
            && init_failed
            && written == "Failed"
        {
            written = "Pending";
        }
        let sidecar_failed = failed_of_kind(names, statuses, ContainerKind::Sidecar);
        if deviation == Some(Deviation::SidecarExitDecidesPhase)
            && sidecar_failed
            && written == "Succeeded"
        {
            written = "Failed";
        }
        if terminal.is_none() && derive::is_terminal_phase(written) {
            *terminal = Some(written);
        }
        let mut conditions: Vec<_> =
            derive::derive_conditions(names, statuses, phase, sandbox_ready)
                .iter()
                .map(|c| c.to_pod_condition())
                .collect();
        if deviation == Some(Deviation::SidecarReadinessIgnored) {
            // Readiness judged as if the sidecars were not there.
            let without: Vec<derive::SpecContainer<'_>> = names
                .iter()
                .copied()
                .filter(|(_, kind)| *kind != ContainerKind::Sidecar)
                .collect();
            let unjudged = derive::derive_conditions(&without, statuses, phase, sandbox_ready);
            for condition in &mut conditions {
                if let Some(other) = unjudged.iter().find(|c| {
                    c.type_ == condition.type_ && matches!(c.type_, "Ready" | "ContainersReady")
                }) {
                    *condition = other.to_pod_condition();
                }
            }
        }
        if deviation == Some(Deviation::ReadyFollowsHeldPhase) && written != phase {
            // Conditions computed from the phase written, not the phase generated.
            conditions = derive::derive_conditions(names, statuses, written, sandbox_ready)
                .iter()
                .map(|c| c.to_pod_condition())
                .collect();
        }
        snapshots.push(Snapshot {
            at: wall(at),
            metadata: metadata.borrow().clone(),
            status: PodStatus {
                phase: Some(written.to_owned()),
                conditions: Some(conditions),
                init_container_statuses: has_init
                    .then(|| of_kind(statuses, "initContainerStatuses")),
                container_statuses: Some(of_kind(statuses, "containerStatuses")),
                ephemeral_container_statuses: Some(of_kind(statuses, "ephemeralContainerStatuses"))
                    .filter(|list| !list.is_empty()),
                qos_class: Some("BestEffort".to_owned()),
                start_time: Some(wall(0)),
                ..PodStatus::default()
            },
        });
        written
    };
    let mut last_shown = emit(0, &statuses, &mut terminal, true, None, &mut snapshots);
    // A terminal phase generated but held back: (the phase written meanwhile, when the
    // sandbox is stopped, when the terminal phase is written).
    let mut held: Option<(&'static str, u64, u64)> = None;
    let lag = crate::plan::TERMINAL_PHASE_LAG.as_millis();
    let mut torn_down = false;
    let flush_held = |until: u64,
                      statuses: &[ContainerStatus],
                      terminal: &mut Option<&'static str>,
                      held: &mut Option<(&'static str, u64, u64)>,
                      torn_down: &mut bool,
                      snapshots: &mut Vec<Snapshot>,
                      choices: &mut dyn Choices| {
        let Some((shown, down, written)) = *held else {
            return;
        };
        if down <= until && !*torn_down && down < written {
            *torn_down = true;
            emit(down, statuses, terminal, false, Some(shown), snapshots);
        }
        if written <= until {
            *held = None;
            *torn_down = true;
            let phase = emit(written, statuses, terminal, false, None, snapshots);
            if deviation == Some(Deviation::LeaveTerminalPhase) {
                // Soon after, so that a harness which watches a settled pod only for a
                // while still sees it.
                let left = (written + choices.pick(0, STATUS_LAG.as_millis())).min(horizon);
                if let Some(last) = snapshots.last().cloned() {
                    let mut status = last.status;
                    let _ = phase;
                    status.phase = Some("Running".to_owned());
                    snapshots.push(Snapshot {
                        at: wall(left),
                        metadata: last.metadata,
                        status,
                    });
                }
            }
        }
    };
    let removal_lag = crate::plan::termination::OBJECT_REMOVAL_LAG.as_millis();
    while let Some((at, _, event)) = queue.pop_front() {
        flush_held(
            at.min(horizon),
            &statuses,
            &mut terminal,
            &mut held,
            &mut torn_down,
            &mut snapshots,
            choices,
        );
        if at > horizon {
            break;
        }
        // A correct kubelet does nothing more to the containers of a terminal pod; a
        // planted bug may. The pod object still changes.
        let pod_event = matches!(
            event,
            Event::Deleted | Event::FinalizerRemoved(_) | Event::FinalDelete
        );
        if (terminal.is_some() || held.is_some()) && deviation.is_none() && !pod_event {
            continue;
        }
        let mut gone = false;
        match &event {
            Event::Deleted => {
                let Some(deletion) = deletion else {
                    continue;
                };
                deleted = true;
                // A pod that is already terminal is deleted at once (CheckGracefulDelete).
                let api_grace = if terminal.is_some() {
                    0
                } else {
                    deletion.api_grace_seconds
                };
                {
                    let mut meta = metadata.borrow_mut();
                    meta.deletion_timestamp =
                        Some(wall(at + u64::try_from(api_grace).unwrap_or(0) * 1000));
                    meta.deletion_grace_period_seconds = Some(api_grace);
                    gone = api_grace == 0 && meta.finalizers.is_empty();
                    if api_grace == 0 {
                        final_delete_done = true;
                    }
                }
                // A container waiting out its back-off is not restarted any more: it shows
                // its last termination again (ShouldContainerBeRestarted is false).
                for status in statuses.iter_mut() {
                    let waiting = status.state.as_ref().is_some_and(|s| s.waiting.is_some());
                    if waiting && status.last_state.is_some() {
                        status.state = status.last_state.take();
                    }
                }
            }
            Event::FinalizerRemoved(name) => {
                let mut meta = metadata.borrow_mut();
                meta.finalizers.retain(|f| f != name);
                gone = final_delete_done && meta.finalizers.is_empty();
            }
            Event::FinalDelete => {
                final_delete_done = true;
                let mut meta = metadata.borrow_mut();
                if meta.finalizers.is_empty()
                    || deviation == Some(Deviation::ObjectRemovedDespiteFinalizers)
                {
                    gone = true;
                } else {
                    // The grace-0 delete rewinds deletionTimestamp to the request's time.
                    let requested = deletion.map_or(at, |d| d.at.as_millis());
                    meta.deletion_timestamp = Some(wall(requested));
                    meta.deletion_grace_period_seconds = Some(0);
                }
            }
            _ => {}
        }
        if gone {
            metadata.borrow_mut().gone = true;
            let shown = held.map(|(shown, _, _)| shown);
            emit(
                at,
                &statuses,
                &mut terminal,
                !torn_down,
                shown,
                &mut snapshots,
            );
            held = None;
            break;
        }
        match event {
            Event::Deleted | Event::FinalizerRemoved(_) | Event::FinalDelete => {}
            Event::Start {
                container,
                index,
                since,
                shows_running,
            } => {
                started_at.insert((container, index), since);
                let status = &mut statuses[container];
                // A container whose PostStart hook fails is never shown Running: SyncPod
                // kills it before any status is written.
                if !shows_running {
                    // Not shown, but the instance before is now the last state.
                    replace_state(
                        status,
                        ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some("ContainerCreating".to_owned()),
                                message: None,
                            }),
                            ..ContainerState::default()
                        },
                    );
                    status.restart_count = index as i32;
                    continue;
                }
                let hooked = since != at;
                if index == 0 && !hooked && choices.pick(0, 1) == 1 {
                    // Created, not started yet: Waiting with no reason
                    // (convertToAPIContainerStatuses, ContainerStateCreated).
                    replace_state(
                        status,
                        ContainerState {
                            waiting: Some(ContainerStateWaiting::default()),
                            ..ContainerState::default()
                        },
                    );
                    let shown = (held.is_some()).then_some(last_shown);
                    emit(
                        at,
                        &statuses,
                        &mut terminal,
                        !torn_down,
                        shown,
                        &mut snapshots,
                    );
                }
                let status = &mut statuses[container];
                replace_state(
                    status,
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(wall(since)),
                        }),
                        ..ContainerState::default()
                    },
                );
                status.restart_count = index as i32;
                // Probes decide the flags from here on (Flag events); without probes a
                // running container is started and ready at once.
                let probed = planned
                    .containers
                    .get(container)
                    .and_then(|plan| plan.instances.get(index as usize).or(plan.instances.last()))
                    .is_some_and(|instance| instance.probes.is_some());
                // A regular init container is ready only once it has exited 0
                // (prober manager UpdatePodStatus).
                let init = names[container].1 == ContainerKind::Init;
                let ephemeral = names[container].1 == ContainerKind::Ephemeral;
                status.ready = !probed
                    && !init
                    && (!ephemeral || deviation == Some(Deviation::EphemeralReady));
                // An ephemeral container's `started` is never set (E5).
                status.started = (!ephemeral).then_some(!probed);
            }
            Event::Flag {
                container,
                index,
                started,
                ready,
            } => {
                let status = &mut statuses[container];
                let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
                if !running || status.restart_count != index as i32 {
                    continue;
                }
                if let Some(started) = started {
                    status.started = Some(started);
                }
                if let Some(ready) = ready {
                    status.ready = ready;
                }
            }
            Event::Exit {
                container,
                index,
                code,
            } => {
                let status = &mut statuses[container];
                let oom_killed = match deviation {
                    Some(Deviation::OomKilledForEveryFailure) => code != 0,
                    Some(Deviation::SigkillExitAsOomKilled) => code == 137,
                    _ => false,
                };
                let reason = if oom_killed {
                    "OOMKilled"
                } else {
                    derive::terminated_reason(code)
                };
                status.state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: code,
                        reason: Some(reason.to_owned()),
                        started_at: started_at.get(&(container, index)).map(|s| wall(*s)),
                        finished_at: Some(wall(at)),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                });
                status.ready = deviation == Some(Deviation::ReadyWhileTerminated)
                    || (names[container].1 == ContainerKind::Init && code == 0);
                status.started = Some(false);
            }
            Event::CrashLoopWait {
                container,
                back_off,
            } => {
                let status = &mut statuses[container];
                replace_state(
                    status,ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".to_owned()),
                        message: Some(format!(
                            "back-off {} restarting failed container={} pod={pod_name}_default(model)",
                            derive::go_duration(back_off),
                            names[container].0
                        )),
                    }),
                    ..ContainerState::default()
                });
            }
        }
        let deleted_now = deleted && deviation != Some(Deviation::DeletedPodKeepsItsPhase);
        let generated =
            terminal.unwrap_or_else(|| derive::derive_phase(names, &statuses, policy, deleted_now));
        // A kubelet that restarts the containers of a deleted pod never finishes
        // terminating it.
        let never_terminal = deviation == Some(Deviation::RestartDuringTermination) && deleted;
        // The pod worker stops the running sidecars and ephemeral containers before it
        // writes the terminal phase.
        let sidecar_running = names.iter().zip(&statuses).any(|((_, kind), status)| {
            matches!(kind, ContainerKind::Sidecar | ContainerKind::Ephemeral)
                && status.state.as_ref().is_some_and(|s| s.running.is_some())
        });
        if terminal.is_none()
            && held.is_none()
            && !never_terminal
            && !sidecar_running
            && derive::is_terminal_phase(generated)
        {
            // The sync that sees the last exit generates the terminal phase and its
            // conditions; the phase itself is written once the sandbox is stopped.
            let written = at + choices.pick(0, lag);
            let written = if deviation == Some(Deviation::TerminalPhaseLate) {
                at + lag + crate::plan::STATUS_RECONCILE_PERIOD.as_millis()
            } else {
                written
            };
            let down = at + choices.pick(0, (written - at).min(STATUS_LAG.as_millis()));
            held = Some((last_shown, down, written));
            if deleted {
                // The kubelet's final delete follows the terminal phase's write.
                let final_delete = written + choices.pick(0, removal_lag);
                let position = queue.partition_point(|(t, _, _)| *t <= final_delete);
                queue.insert(position, (final_delete, usize::MAX, Event::FinalDelete));
            }
            emit(
                at,
                &statuses,
                &mut terminal,
                !torn_down,
                Some(last_shown),
                &mut snapshots,
            );
        } else {
            // While sidecars are being stopped, the phase shown is the last one before.
            let holding_for_sidecars = sidecar_running && derive::is_terminal_phase(generated);
            let shown = held
                .map(|(shown, _, _)| shown)
                .or(holding_for_sidecars.then_some(last_shown));
            last_shown = emit(
                at,
                &statuses,
                &mut terminal,
                !torn_down,
                shown,
                &mut snapshots,
            );
        }
    }
    flush_held(
        horizon,
        &statuses,
        &mut terminal,
        &mut held,
        &mut torn_down,
        &mut snapshots,
        choices,
    );
    snapshots
}

/// Whether a container of `kind` shows a termination with a non-zero exit code.
fn failed_of_kind(
    names: &[derive::SpecContainer<'_>],
    statuses: &[ContainerStatus],
    kind: ContainerKind,
) -> bool {
    names.iter().zip(statuses).any(|((_, of), status)| {
        *of == kind
            && status
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0)
    })
}

/// A new current state; a terminated one moves to lastState, as the kubelet shows the
/// previous instance's termination.
fn replace_state(status: &mut ContainerStatus, state: ContainerState) {
    if status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some()
    {
        status.last_state = status.state.take();
    }
    status.state = Some(state);
}
