//! The model run as a target: a concrete trace that the model says is possible.
//!
//! Every timing choice (how long a start takes, how late a restart comes after its
//! back-off) is drawn by a [`Choices`] inside the model's own window, so a property test
//! can show that the checker accepts every trace the model allows, including its extremes.
//! A [`Deviation`] plants one known bug, to show that the checker catches it.

use crate::behaviour::Run;
use crate::derive;
use crate::duration::SpecDuration;
use crate::plan::{AfterExit, StartGate, STATUS_LAG};
use crate::predict::Prediction;
use crate::probes::{ContainerProbes, ProbePlan};
use crate::scenario::Scenario;
use crate::scenario::{ContainerKind, FaultAction};
use crate::trace::{TimingProfile, Trace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;

mod deviation;
mod log;
mod misread;
mod play;
mod termination;

mod init;

pub use deviation::Deviation;
use deviation::{deviate, Exited};
use init::{stop_sidecars, DeferredStop};
use misread::misread;
use play::{play, Event, Playing};

/// Where the model target draws its timing from.
pub trait Choices {
    /// A value in `[lo, hi]` milliseconds.
    fn pick(&mut self, lo: u64, hi: u64) -> u64;
}

/// Always the earliest moment the model allows.
pub struct Earliest;
impl Choices for Earliest {
    fn pick(&mut self, lo: u64, _hi: u64) -> u64 {
        lo
    }
}

/// Always the latest moment the model allows.
pub struct Latest;
impl Choices for Latest {
    fn pick(&mut self, _lo: u64, hi: u64) -> u64 {
        hi
    }
}

/// A deterministic pseudo-random choice from a seed (splitmix64), so a model run is
/// reproducible from its seed alone.
pub struct Seeded(pub u64);
impl Choices for Seeded {
    fn pick(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if hi <= lo {
            lo
        } else {
            // Favour the window's ends: they are where wrong windows show.
            match z % 4 {
                0 => lo,
                1 => hi,
                _ => lo + (z >> 2) % (hi - lo + 1),
            }
        }
    }
}

/// The wall time every model trace starts at; any fixed instant would do.
fn epoch() -> Timestamp {
    Timestamp::from_second(1_750_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn wall(ms: u64) -> Time {
    Time(epoch() + SignedDuration::from_millis(ms as i64))
}

/// The flag events of one instance's probe plan, at times drawn inside their windows.
fn probe_events(
    plan: &ProbePlan,
    start: u64,
    end: Option<u64>,
    choices: &mut dyn Choices,
    deviation: Option<Deviation>,
) -> Vec<(u64, Option<bool>, Option<bool>)> {
    let mut events = Vec::new();
    let before_end = |at: u64| end.is_none_or(|end| at < end);
    let readiness = plan.probes.readiness.is_some();
    let mut started_at = None;
    if let Some(window) = &plan.started {
        let at = start + choices.pick(window.lo.as_millis(), window.hi.as_millis());
        if before_end(at) {
            let ready_now = !readiness || deviation == Some(Deviation::ReadyBeforeReadinessProbe);
            events.push((at, Some(true), ready_now.then_some(true)));
            started_at = Some(at);
        }
    }
    let mut previous = started_at.unwrap_or(start);
    for flip in &plan.ready {
        let Some(started_at) = started_at else { break };
        let lo = (start + flip.window.lo.as_millis())
            .max(started_at)
            .max(previous);
        let hi = (start + flip.window.hi.as_millis()).max(lo);
        let at = lo + choices.pick(0, hi - lo);
        if !before_end(at) {
            break;
        }
        events.push((at, None, Some(flip.to)));
        previous = at;
    }
    events
}

/// Runs the model once, drawing timings from `choices`, with an optional planted bug.
pub fn simulate(
    scenario: &Scenario,
    prediction: &Prediction,
    choices: &mut dyn Choices,
    deviation: Option<Deviation>,
) -> Trace {
    // A bug that misreads the probe spec behaves as the model of the misread scenario.
    // Planned over the same observation. A restart the misread plan cannot decide is
    // played as far as the plan goes (the bug shows before it); a misread scenario whose
    // probes have no single prediction is played as the correct one.
    let misread_prediction = match deviation {
        // A bug in how a probe runs, rather than in how its spec is read.
        Some(Deviation::GrpcFailsAtOnceWithoutListener) => Some(Prediction {
            containers: crate::plan::plan_containers_adjusted(
                scenario,
                prediction.horizon,
                ContainerProbes::without_dial_retries,
            ),
            ..prediction.clone()
        }),
        _ => deviation
            .and_then(|d| misread(scenario, d))
            .and_then(|mut s| {
                s.observe_for = Some(prediction.horizon);
                match crate::predict::predict_over_window(&s) {
                    Ok(misread) => Some(misread),
                    Err(crate::predict::PredictError::UndecidedRestart { .. }) => {
                        Some(Prediction {
                            containers: crate::plan::plan_containers(&s, prediction.horizon),
                            ..prediction.clone()
                        })
                    }
                    Err(_) => None,
                }
            }),
    };
    let planned = misread_prediction.as_ref().unwrap_or(prediction);
    // A longer period the misread scenario could not be planned with still shows in the log.
    let period_extra = match deviation {
        Some(Deviation::ProbePeriodOneSecondLonger) if misread_prediction.is_none() => {
            SpecDuration::from_secs(1)
        }
        _ => SpecDuration::ZERO,
    };
    let names: Vec<derive::SpecContainer<'_>> = prediction
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.kind))
        .collect();
    let horizon = prediction.horizon.as_millis();
    let policy = prediction.restart_policy;
    let mut events: Vec<(u64, usize, Event)> = Vec::new();
    let mut sequence = 0usize;
    let mut push = |events: &mut Vec<(u64, usize, Event)>, at: u64, event: Event| {
        sequence += 1;
        events.push((at, sequence, event));
    };
    // When each instance exited, for the start gates of the containers planned after it.
    let mut exits: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    let mut deferred: Vec<DeferredStop> = Vec::new();
    // When each sidecar instance turned started, for the container after it.
    let mut sidecars_started: BTreeMap<(&str, u32), u64> = BTreeMap::new();
    // The workload's log of each container's latest instance (what `kubectl logs` shows).
    let mut logs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (container, plan) in planned.containers.iter().enumerate() {
        let Some(first) = plan.instances.first() else {
            continue;
        };
        let (after_lo, after_hi) = first.start_after;
        // A runtime that does not wait for the init containers starts the container at
        // the pod's creation.
        let waits_on_another = !matches!(first.start_gate, StartGate::PodCreated);
        let ignores_gate = waits_on_another
            && matches!(
                (deviation, plan.kind),
                (
                    Some(Deviation::InitContainersTogether),
                    ContainerKind::Init | ContainerKind::Sidecar
                ) | (Some(Deviation::RegularBeforeInit), ContainerKind::Regular)
            );
        let start_at = match &first.start_gate {
            _ if ignores_gate => Some(choices.pick(0, crate::plan::FIRST_START_WITHIN.as_millis())),
            StartGate::Added { at, .. } => {
                Some(at.as_millis() + choices.pick(after_lo.as_millis(), after_hi.as_millis()))
            }
            StartGate::PodCreated => Some(choices.pick(after_lo.as_millis(), after_hi.as_millis())),
            StartGate::Exited {
                container,
                instance,
            } => exits
                .get(&(container.as_str(), *instance))
                .map(|exit| exit + choices.pick(after_lo.as_millis(), after_hi.as_millis())),
            // The sync after the sidecar turned started starts this one.
            StartGate::Started {
                container,
                instance,
            } => sidecars_started
                .get(&(container.as_str(), *instance))
                .map(|started| {
                    started + choices.pick(0, crate::plan::NEXT_CONTAINER_WITHIN.as_millis())
                }),
        };
        let Some(mut start) = start_at else {
            continue;
        };
        if plan.kind == ContainerKind::Ephemeral
            && deviation == Some(Deviation::EphemeralNotStarted)
        {
            continue;
        }
        let mut previous_wait: Option<SpecDuration> = None;
        let mut last_kill: Option<u64> = None;
        for instance in &plan.instances {
            if start > horizon {
                break;
            }
            let behaviour = scenario.behaviours.get(&plan.name);
            let post_start =
                termination::draw_post_start(instance, start, behaviour, choices, deviation);
            push(
                &mut events,
                post_start.shown,
                Event::Start {
                    container,
                    index: instance.index,
                    since: post_start.since,
                    shows_running: post_start.failed.is_none(),
                },
            );
            let kill_period = instance.kill_period().map(SpecDuration::as_millis);
            // A planted bug that starts the instance late (a back-off on the first
            // restart) may start it after the fault action meant to stop it: the action
            // then finds nothing running.
            // A sidecar stopped once the regular containers are done is stopped after the
            // containers planned after it have been played (`stop_sidecars`).
            // So is a sidecar's stop for the deletion: its SIGTERM waits for them.
            let sidecar_stop = match instance.cut.as_ref().map(|c| (&c.cause, c.action_at)) {
                Some((crate::plan::CutCause::PodCompleted(sidecar), _)) => {
                    Some((sidecar.stop.clone(), None))
                }
                Some((crate::plan::CutCause::Deleted(stop), at))
                    if plan.kind == ContainerKind::Sidecar =>
                {
                    Some((stop.clone(), Some(at.as_millis())))
                }
                _ => None,
            };
            let stopped_after_others = sidecar_stop.is_some();
            if let Some((stop, deleted_at)) = sidecar_stop {
                deferred.push(DeferredStop {
                    container,
                    index: instance.index,
                    start,
                    stop,
                    deleted_at,
                });
            }
            let stopped = instance
                .cut
                .as_ref()
                .filter(|_| !stopped_after_others)
                .map(|cut| termination::draw_cut(cut, behaviour, choices, deviation))
                .filter(|stopped| stopped.finish >= start);
            let mut end = instance.end().map(|end| {
                let run_for = match end.killed_by {
                    Some(_) => {
                        let drawn = choices.pick(end.lo.as_millis(), end.hi.as_millis());
                        // No sooner than a tick after the previous kill (plan::kill_period).
                        let tick_after = last_kill
                            .zip(kill_period)
                            .map_or(0, |(kill, period)| (kill + period).saturating_sub(start));
                        drawn.max(tick_after.min(end.hi.as_millis()))
                    }
                    None if deviation == Some(Deviation::ExitsEarly) => end.lo.as_millis() / 2,
                    None => end.lo.as_millis(),
                };
                (start + run_for, end.code)
            });
            if stopped_after_others {
                end = None;
            } else if let Some(stopped) = &stopped {
                end = Some((stopped.finish, stopped.code));
            } else if let Some(failed) = &post_start.failed {
                end = Some((failed.finish, failed.code));
            } else if instance.post_start_kill.is_some() {
                // A planted bug let the container run on after its failed hook.
                end = match instance.run {
                    Run::Exit { after, code } => Some((start + after.as_millis(), code)),
                    Run::Forever => None,
                };
            }
            let mut started_flag = None;
            if let Some(probe_plan) = &instance.probes {
                if deviation == Some(Deviation::ReadinessFailureRestarts) {
                    // The kill comes with the first readiness failure.
                    let unready = probe_plan.ready.iter().find(|f| !f.to).map(|f| {
                        start + choices.pick(f.window.lo.as_millis(), f.window.hi.as_millis())
                    });
                    if let Some(at) = unready.filter(|at| end.is_none_or(|(e, _)| *at < e)) {
                        end = Some((at, crate::probes::KILLED_EXIT_CODE));
                    }
                }
                let mut flags =
                    probe_events(probe_plan, start, end.map(|e| e.0), choices, deviation);
                if deviation == Some(Deviation::ReadinessStopsOnDeletion) {
                    if let Some(stopped) = &stopped {
                        flags
                            .retain(|(at, _, ready)| ready.is_none() || *at <= stopped.probes_stop);
                    }
                }
                // The checker counts readiness successes in the log of such a container,
                // which this log does not hold (see `log`).
                let counted = plan
                    .instances
                    .iter()
                    .any(|i| i.probes.as_ref().is_some_and(|p| p.readiness_log.is_some()));
                if !counted {
                    let instance = log::Instance {
                        behaviour: scenario.behaviours.get(&plan.name),
                        plan: probe_plan,
                        index: instance.index,
                        run: instance.run,
                        start,
                        started_at: flags
                            .iter()
                            .find(|(_, started, _)| *started == Some(true))
                            .map(|(at, _, _)| *at),
                        end: end.map(|e| e.0),
                        probes_stop: stopped.as_ref().map(|s| s.probes_stop),
                        horizon,
                        period_extra,
                    };
                    let mut lines = log::instance_log(&instance, choices);
                    lines.extend(
                        stopped
                            .iter()
                            .flat_map(|s| s.log.iter().map(ToString::to_string)),
                    );
                    lines.sort_by_key(|l| podcheck_wire::LogEvent::parse(l).map_or(0, |e| e.ts_ms));
                    logs.insert(plan.name.clone(), lines);
                }
                started_flag = flags
                    .iter()
                    .find(|(_, started, _)| *started == Some(true))
                    .map(|(at, _, _)| *at);
                for (at, started, ready) in flags {
                    push(
                        &mut events,
                        at,
                        Event::Flag {
                            container,
                            index: instance.index,
                            started,
                            ready,
                        },
                    );
                }
            }
            if plan.kind == crate::scenario::ContainerKind::Sidecar {
                let started = match &instance.probes {
                    Some(_) if deviation == Some(Deviation::SidecarGateIgnoresStartupProbe) => {
                        Some(post_start.shown)
                    }
                    Some(_) => started_flag,
                    None if post_start.failed.is_none() => Some(post_start.shown),
                    None => None,
                };
                if let Some(started) = started.filter(|at| end.is_none_or(|(e, _)| *at < e)) {
                    sidecars_started
                        .entry((plan.name.as_str(), instance.index))
                        .or_insert(started);
                }
            }
            // What the agent sees at its start: an ephemeral container with a target sees
            // the target's agent (a runtime with the planted bug, only itself).
            let processes = plan.target_container.as_ref().map(|target| {
                let pod = Some(scenario.pod_name().to_owned());
                let mut agents = vec![podcheck_wire::AgentProcess {
                    pod: pod.clone(),
                    container: plan.name.clone(),
                }];
                if deviation != Some(Deviation::EphemeralOwnNamespace) {
                    agents.push(podcheck_wire::AgentProcess {
                        pod,
                        container: target.clone(),
                    });
                }
                agents.sort();
                podcheck_wire::LogEvent {
                    ts_ms: log::ts(post_start.since + 1),
                    event: podcheck_wire::Event::Processes { agents, others: 0 },
                }
            });
            if instance.probes.is_none() {
                let mut extra: Vec<&podcheck_wire::LogEvent> = post_start.log.iter().collect();
                extra.extend(processes.iter());
                extra.extend(post_start.failed.iter().flat_map(|f| f.log.iter()));
                extra.extend(stopped.iter().flat_map(|s| s.log.iter()));
                if !extra.is_empty() {
                    let mut lines = vec![log::start_line(
                        instance.index,
                        instance.run,
                        post_start.since,
                    )];
                    lines.extend(extra.iter().map(ToString::to_string));
                    lines.sort_by_key(|l| podcheck_wire::LogEvent::parse(l).map_or(0, |e| e.ts_ms));
                    logs.insert(plan.name.clone(), lines);
                }
            }
            let Some((finish, code)) = end else {
                break;
            };
            if instance.end().is_some_and(|end| end.killed_by.is_some()) {
                last_kill = Some(finish);
            }
            push(
                &mut events,
                finish,
                Event::Exit {
                    container,
                    index: instance.index,
                    code,
                },
            );
            exits.insert((plan.name.as_str(), instance.index), finish);
            let planned_after_exit = instance.after_exit.unwrap_or(AfterExit::StaysTerminated);
            let mut after_exit = planned_after_exit;
            let exited = Exited {
                code,
                killed: instance.end().is_some_and(|end| end.killed_by.is_some()),
                ran: SpecDuration::from_millis(finish.saturating_sub(start)),
                index: instance.index,
            };
            after_exit = deviate(
                after_exit,
                deviation,
                policy,
                exited,
                previous_wait,
                prediction.back_off,
            );
            after_exit = match (deviation, plan.kind) {
                (Some(Deviation::InitNotRetried), ContainerKind::Init) if after_exit.restarts() => {
                    AfterExit::StaysTerminated
                }
                (Some(Deviation::SidecarFollowsPodPolicy), ContainerKind::Sidecar)
                    if after_exit.restarts() && !policy.restarts_after(code) =>
                {
                    AfterExit::StaysTerminated
                }
                (Some(Deviation::EphemeralRestarted), ContainerKind::Ephemeral)
                    if after_exit == AfterExit::StaysTerminated =>
                {
                    AfterExit::RestartImmediately
                }
                _ => after_exit,
            };
            let (lo, hi) = match after_exit {
                AfterExit::StaysTerminated
                | AfterExit::PodTerminating
                | AfterExit::PodCompleted => break,
                AfterExit::RestartImmediately => (SpecDuration::ZERO, STATUS_LAG),
                AfterExit::RestartAfterBackOff(b) => (b, b + crate::plan::restart_slack(b)),
                AfterExit::RestartWhenBackOffCollected { after, latest, .. } => (after, latest),
                AfterExit::RestartAtOnceOrAfterBackOff(b) => {
                    (SpecDuration::ZERO, b + crate::plan::restart_slack(b))
                }
            };
            let shown = after_exit.shown_back_off();
            previous_wait = shown.or(previous_wait);
            if let Some(back_off) = shown {
                // A back-off shorter than the kubelet's requeue may show its Waiting
                // state for one relist or not at all (plan::crash_loop_state_sustained).
                // A planted back-off bug shows its wrong wait as a kubelet up to v1.34
                // would: Waiting from the sync 10-15 s after the exit on.
                let deviant_shown = after_exit != planned_after_exit
                    && lo > SpecDuration::from_secs(15) + crate::plan::RELIST_PERIOD;
                let shows_wait = crate::plan::crash_loop_state_sustained(lo)
                    || deviant_shown
                    || choices.pick(0, 1) == 1;
                if deviation != Some(Deviation::NoCrashLoopBackOffState) && shows_wait {
                    let shown_at =
                        finish + choices.pick(0, STATUS_LAG.as_millis().min(lo.as_millis()));
                    push(
                        &mut events,
                        shown_at,
                        Event::CrashLoopWait {
                            container,
                            back_off,
                        },
                    );
                }
            }
            let next = finish + choices.pick(lo.as_millis(), hi.as_millis());
            start = next;
            if instance.index as usize + 1 >= plan.instances.len() {
                // A planted restart beyond the plan: the new instance runs on.
                if next <= horizon {
                    push(
                        &mut events,
                        next,
                        Event::Start {
                            container,
                            index: instance.index + 1,
                            since: next,
                            shows_running: true,
                        },
                    );
                }
                break;
            }
        }
    }
    stop_sidecars(
        scenario,
        planned,
        &exits,
        deferred,
        choices,
        deviation,
        &mut logs,
        &mut |at, event| push(&mut events, at, event),
    );
    let deletion = crate::plan::termination::Deletion::of(scenario);
    for (index, fault) in scenario.faults.iter().enumerate() {
        let event = match &fault.action {
            FaultAction::Delete { .. } | FaultAction::ForceDelete
                if deletion.as_ref().is_some_and(|d| d.fault == index) =>
            {
                Event::Deleted
            }
            FaultAction::RemoveFinalizer { finalizer } => {
                Event::FinalizerRemoved(finalizer.clone())
            }
            _ => continue,
        };
        push(&mut events, fault.at.as_millis(), event);
    }
    let snapshots = play(
        &Playing {
            scenario,
            planned,
            names: &names,
            deletion: deletion.as_ref(),
            deviation,
            policy,
            horizon,
        },
        events,
        choices,
    );
    Trace {
        target: match deviation {
            Some(d) => format!("model:{}", d.name()),
            None => "model".to_owned(),
        },
        timing: TimingProfile {
            time_scale: 1.0,
            tolerance_ms: 0,
        },
        created_at: wall(0),
        ended_at: wall(horizon),
        snapshots,
        events: Vec::new(),
        actions: scenario
            .faults
            .iter()
            .filter(|fault| fault.at.as_millis() <= horizon)
            .map(|fault| crate::trace::ActionRecord {
                action: fault.action.clone(),
                due_ms: fault.at.as_millis(),
                requested_at: wall(fault.at.as_millis()),
                acknowledged_at: Some(wall(fault.at.as_millis())),
                result: crate::trace::ActionResult::Done,
            })
            .collect(),
        logs,
        ended_early: None,
    }
}
