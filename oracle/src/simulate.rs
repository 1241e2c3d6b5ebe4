//! The model run as a target: a concrete trace that the model says is possible.
//!
//! Every timing choice (how long a start takes, how late a restart comes after its
//! back-off) is drawn by a [`Choices`] inside the model's own window, so a property test
//! can show that the checker accepts every trace the model allows, including its extremes.
//! A [`Deviation`] plants one known bug, to show that the checker catches it.

use crate::duration::SpecDuration;
use crate::model::{self, AfterExit, STATUS_LAG};
use crate::predict::Prediction;
use crate::scenario::{RestartPolicy, Run, Scenario};
use crate::trace::{Snapshot, TimingProfile, Trace};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// A planted bug: the model target behaves like a runtime with this defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Deviation {
    /// Every back-off is the initial one (no doubling).
    NoBackOffDoubling,
    /// The first restart already waits the initial back-off.
    BackOffOnFirstRestart,
    /// The back-off keeps doubling past its maximum.
    NoBackOffCap,
    /// A container that ran past the reset threshold still waits its back-off.
    NoBackOffReset,
    /// Containers are restarted under restartPolicy Never.
    RestartUnderNever,
    /// Containers that exited 0 are restarted under restartPolicy OnFailure.
    RestartAfterSuccessOnFailure,
    /// A terminal pod goes back to Running at the end.
    LeaveTerminalPhase,
    /// Non-zero exits are reported as OOMKilled.
    OomKilledForEveryFailure,
    /// Terminated containers stay ready.
    ReadyWhileTerminated,
    /// Back-off waits are shown as Terminated, never as Waiting CrashLoopBackOff.
    NoCrashLoopBackOffState,
    /// The pod is Running while containers are still being created.
    RunningBeforeStart,
    /// Containers are stopped at half their run.
    ExitsEarly,
    /// Under restartPolicy Always, a container that exited 0 is not restarted.
    NoRestartAfterSuccessUnderAlways,
}

impl Deviation {
    pub const ALL: &'static [Deviation] = &[
        Deviation::NoBackOffDoubling,
        Deviation::BackOffOnFirstRestart,
        Deviation::NoBackOffCap,
        Deviation::NoBackOffReset,
        Deviation::RestartUnderNever,
        Deviation::RestartAfterSuccessOnFailure,
        Deviation::LeaveTerminalPhase,
        Deviation::OomKilledForEveryFailure,
        Deviation::ReadyWhileTerminated,
        Deviation::NoCrashLoopBackOffState,
        Deviation::RunningBeforeStart,
        Deviation::ExitsEarly,
        Deviation::NoRestartAfterSuccessUnderAlways,
    ];

    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn parse(name: &str) -> Option<Deviation> {
        Deviation::ALL.iter().copied().find(|d| d.name() == name)
    }
}

/// The wall time every model trace starts at; any fixed instant would do.
fn epoch() -> Timestamp {
    Timestamp::from_second(1_750_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn wall(ms: u64) -> Time {
    Time(epoch() + SignedDuration::from_millis(ms as i64))
}

#[derive(Debug, Clone)]
enum Event {
    Start {
        container: usize,
        index: u32,
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
}

/// Runs the model once, drawing timings from `choices`, with an optional planted bug.
pub fn simulate(
    scenario: &Scenario,
    prediction: &Prediction,
    choices: &mut dyn Choices,
    deviation: Option<Deviation>,
) -> Trace {
    let names: Vec<&str> = prediction
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let horizon = prediction.horizon.as_millis();
    let policy = prediction.restart_policy;
    let initial = prediction.back_off.initial;
    let mut events: Vec<(u64, usize, Event)> = Vec::new();
    let mut sequence = 0usize;
    let mut push = |events: &mut Vec<(u64, usize, Event)>, at: u64, event: Event| {
        sequence += 1;
        events.push((at, sequence, event));
    };
    for (container, plan) in prediction.containers.iter().enumerate() {
        let mut start = choices.pick(0, model::FIRST_START_WITHIN.as_millis());
        let mut previous_wait: Option<SpecDuration> = None;
        for instance in &plan.instances {
            if start > horizon {
                break;
            }
            push(
                &mut events,
                start,
                Event::Start {
                    container,
                    index: instance.index,
                },
            );
            let Run::Exit { after, code } = instance.run else {
                break;
            };
            let run_for = if deviation == Some(Deviation::ExitsEarly) {
                after.as_millis() / 2
            } else {
                after.as_millis()
            };
            let finish = start + run_for;
            push(
                &mut events,
                finish,
                Event::Exit {
                    container,
                    index: instance.index,
                    code,
                },
            );
            let mut after_exit = instance.after_exit.unwrap_or(AfterExit::StaysTerminated);
            after_exit = deviate(
                after_exit,
                deviation,
                policy,
                code,
                instance.index,
                initial,
                previous_wait,
                prediction.back_off.max,
            );
            let wait = match after_exit {
                AfterExit::StaysTerminated => break,
                AfterExit::RestartImmediately => SpecDuration::ZERO,
                AfterExit::RestartAfterBackOff(b) => b,
            };
            previous_wait = Some(wait)
                .filter(|w| *w > SpecDuration::ZERO)
                .or(previous_wait);
            let next = if wait == SpecDuration::ZERO {
                finish + choices.pick(0, STATUS_LAG.as_millis())
            } else {
                let b = wait.as_millis();
                let slack = model::restart_slack(wait).as_millis();
                if deviation != Some(Deviation::NoCrashLoopBackOffState) {
                    let shown = finish + choices.pick(0, STATUS_LAG.as_millis().min(b));
                    push(
                        &mut events,
                        shown,
                        Event::CrashLoopWait {
                            container,
                            back_off: wait,
                        },
                    );
                }
                finish + choices.pick(b, b + slack)
            };
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
                        },
                    );
                }
                break;
            }
        }
    }
    events.sort_by_key(|(at, seq, _)| (*at, *seq));

    let pod_name = scenario.pod_name().to_owned();
    let mut statuses: Vec<ContainerStatus> = names
        .iter()
        .map(|name| ContainerStatus {
            name: (*name).to_owned(),
            image: "podcheck/agent".to_owned(),
            image_id: String::new(),
            ready: false,
            started: Some(false),
            restart_count: 0,
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".to_owned()),
                    message: None,
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        })
        .collect();
    let mut snapshots = Vec::new();
    let mut terminal: Option<&'static str> = None;
    let mut started_at: BTreeMap<(usize, u32), u64> = BTreeMap::new();
    let emit = |at: u64,
                statuses: &[ContainerStatus],
                terminal: &mut Option<&'static str>,
                sandbox_ready: bool,
                snapshots: &mut Vec<Snapshot>| {
        let mut phase = terminal.unwrap_or_else(|| model::derive_phase(&names, statuses, policy));
        if deviation == Some(Deviation::RunningBeforeStart) && phase == "Pending" {
            phase = "Running";
        }
        if terminal.is_none() && model::is_terminal_phase(phase) {
            *terminal = Some(phase);
        }
        let conditions = model::derive_conditions(&names, statuses, phase, sandbox_ready)
            .iter()
            .map(|c| c.to_pod_condition())
            .collect();
        snapshots.push(Snapshot {
            at: wall(at),
            status: PodStatus {
                phase: Some(phase.to_owned()),
                conditions: Some(conditions),
                container_statuses: Some(statuses.to_vec()),
                qos_class: Some("BestEffort".to_owned()),
                start_time: Some(wall(0)),
                ..PodStatus::default()
            },
        });
    };
    emit(0, &statuses, &mut terminal, true, &mut snapshots);
    let mut torn_down = false;
    for (at, _, event) in events {
        // A correct kubelet does nothing more once the pod is terminal; a planted bug may.
        if at > horizon || (terminal.is_some() && deviation.is_none()) {
            break;
        }
        match event {
            Event::Start { container, index } => {
                started_at.insert((container, index), at);
                let status = &mut statuses[container];
                replace_state(
                    status,
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(wall(at)),
                        }),
                        ..ContainerState::default()
                    },
                );
                status.restart_count = index as i32;
                status.ready = true;
                status.started = Some(true);
            }
            Event::Exit {
                container,
                index,
                code,
            } => {
                let status = &mut statuses[container];
                let reason = if code != 0 && deviation == Some(Deviation::OomKilledForEveryFailure)
                {
                    "OOMKilled"
                } else {
                    model::terminated_reason(code)
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
                status.ready = deviation == Some(Deviation::ReadyWhileTerminated);
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
                            model::go_duration(back_off),
                            names[container]
                        )),
                    }),
                    ..ContainerState::default()
                });
            }
        }
        emit(at, &statuses, &mut terminal, !torn_down, &mut snapshots);
        if let (Some(phase), false) = (terminal, torn_down) {
            torn_down = true;
            // The kubelet tears the sandbox down after a pod turns terminal.
            let down = at + choices.pick(0, STATUS_LAG.as_millis());
            if down <= horizon {
                let mut done = Some(phase);
                emit(down, &statuses, &mut done, false, &mut snapshots);
            }
            if deviation == Some(Deviation::LeaveTerminalPhase) {
                if let Some(last) = snapshots.last().cloned() {
                    let mut status = last.status;
                    status.phase = Some("Running".to_owned());
                    snapshots.push(Snapshot {
                        at: wall(horizon),
                        status,
                    });
                }
            }
        }
    }
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
        logs: BTreeMap::new(),
    }
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

#[allow(clippy::too_many_arguments)]
fn deviate(
    planned: AfterExit,
    deviation: Option<Deviation>,
    policy: RestartPolicy,
    code: i32,
    index: u32,
    initial: SpecDuration,
    previous_wait: Option<SpecDuration>,
    max: SpecDuration,
) -> AfterExit {
    match (deviation, planned) {
        (Some(Deviation::NoBackOffDoubling), AfterExit::RestartAfterBackOff(_)) => {
            AfterExit::RestartAfterBackOff(initial)
        }
        (Some(Deviation::BackOffOnFirstRestart), AfterExit::RestartImmediately) if index == 0 => {
            AfterExit::RestartAfterBackOff(initial)
        }
        (Some(Deviation::NoBackOffCap), AfterExit::RestartAfterBackOff(b)) if b >= max => {
            AfterExit::RestartAfterBackOff(previous_wait.map_or(b, |previous| previous * 2))
        }
        (Some(Deviation::NoBackOffReset), AfterExit::RestartImmediately) if index > 0 => {
            AfterExit::RestartAfterBackOff(previous_wait.map_or(initial, |p| (p * 2).min(max)))
        }
        (Some(Deviation::RestartUnderNever), AfterExit::StaysTerminated)
            if policy == RestartPolicy::Never =>
        {
            AfterExit::RestartImmediately
        }
        (
            Some(Deviation::NoRestartAfterSuccessUnderAlways),
            AfterExit::RestartImmediately | AfterExit::RestartAfterBackOff(_),
        ) if policy == RestartPolicy::Always && code == 0 => AfterExit::StaysTerminated,
        (Some(Deviation::RestartAfterSuccessOnFailure), AfterExit::StaysTerminated)
            if policy == RestartPolicy::OnFailure && code == 0 =>
        {
            AfterExit::RestartImmediately
        }
        _ => planned,
    }
}
