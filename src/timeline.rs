//! A case's [`Timeline`] from its scenario, prediction, trace and verdict: the observed
//! states of every container as segments, the predicted windows as bands anchored where
//! the checker anchors them (at the observed gate: the previous instance's exit, the
//! sidecar's start), the workload's log as ticks, the fault actions and the violations.

use k8s_openapi::api::core::v1::{ContainerStatus, PodStatus};
use podcheck_oracle::plan::{AfterExit, ContainerPlan, CutCause, InstancePlan, StartGate};
use podcheck_oracle::probes::ProbeKind;
use podcheck_oracle::scenario::{ContainerKind, FaultAction};
use podcheck_oracle::trace::SPEC_MS_LIMIT;
use podcheck_oracle::{ActionResult, Prediction, RuleId, Trace, Verdict};
use podcheck_reports::timeline::{
    Band, Expected, FaultMarker, Flag, FlagFlip, Lane, LaneKind, ObservedStart, PhaseSegment,
    State, StateSegment, Tick, TickKind, Timeline, ViolationPin,
};
use podcheck_reports::{rule_source_link, rule_statement};
use podcheck_wire::{Answered, Event, WorkloadLog};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

/// The longest log message a tick keeps: the timeline is a summary, the trace has it all.
const MAX_TICK_LABEL: usize = 160;

/// The timeline of one case that ran.
pub fn timeline(prediction: &Prediction, trace: &Trace, verdict: &Verdict) -> Timeline {
    let observed_until = trace.spec_ms(&trace.ended_at).max(0);
    let tolerance = trace.timing.tolerance_ms as i64;
    let mut observers: BTreeMap<&str, LaneObserver> = prediction
        .containers
        .iter()
        .map(|plan| (plan.name.as_str(), LaneObserver::default()))
        .collect();
    let mut phases = PhaseTrack::default();
    for snapshot in &trace.snapshots {
        let at = trace.spec_ms(&snapshot.at);
        phases.see(snapshot, at);
        for plan in &prediction.containers {
            let status = statuses(&snapshot.status, plan.kind)
                .iter()
                .find(|cs| cs.name == plan.name);
            if let (Some(status), Some(observer)) = (status, observers.get_mut(plan.name.as_str()))
            {
                observer.see(status, at, trace);
            }
        }
    }
    let anchors = Anchors {
        observers: &observers,
        trace,
        tolerance,
    };
    let lanes = prediction
        .containers
        .iter()
        .map(|plan| {
            let observer = observers
                .get(plan.name.as_str())
                .cloned()
                .unwrap_or_default();
            let predicted: Vec<Band> = plan
                .instances
                .iter()
                .flat_map(|instance| anchors.bands(plan, instance))
                .filter(|band| band.from_ms <= observed_until)
                .collect();
            let starts = observer
                .starts
                .iter()
                .map(|(&instance, &at_ms)| ObservedStart {
                    instance,
                    at_ms,
                    window: predicted
                        .iter()
                        .find(|b| b.instance == instance && b.what == Expected::Start)
                        .map(|b| (b.from_ms, b.until_ms)),
                })
                .collect();
            let mut states = observer.segments;
            if let Some(last) = states.last_mut() {
                last.until_ms = observed_until.max(last.from_ms);
            }
            Lane {
                container: plan.name.clone(),
                kind: lane_kind(plan.kind),
                states,
                starts,
                flips: observer.flips,
                predicted,
                ticks: ticks(trace, &plan.name),
            }
        })
        .collect();
    Timeline {
        observed_until_ms: observed_until,
        horizon_ms: prediction.horizon.as_millis() as i64,
        tolerance_ms: tolerance,
        phases: phases.finish(observed_until),
        lanes,
        faults: trace
            .actions
            .iter()
            .map(|record| FaultMarker {
                at_ms: trace.spec_ms(&record.requested_at),
                due_ms: record.due_ms as i64,
                action: record.action.to_string(),
                result: match &record.result {
                    ActionResult::Done => "done".to_owned(),
                    ActionResult::NotApplicable(why) => format!("not applicable: {why}"),
                    ActionResult::Failed(why) => format!("failed: {why}"),
                },
            })
            .collect(),
        violations: verdict
            .violations
            .iter()
            .map(|v| ViolationPin {
                at_ms: v.at_ms,
                rule: v.rule.to_string(),
                container: v.container.clone(),
                expected: v.expected.clone(),
                observed: v.observed.clone(),
                statement: rule_statement(v.rule).to_owned(),
                source: rule_source_link(v.rule),
            })
            .collect(),
    }
}

fn lane_kind(kind: ContainerKind) -> LaneKind {
    match kind {
        ContainerKind::Init => LaneKind::Init,
        ContainerKind::Sidecar => LaneKind::Sidecar,
        ContainerKind::Regular => LaneKind::Regular,
        ContainerKind::Ephemeral => LaneKind::Ephemeral,
    }
}

/// The status list a container of this kind is reported in.
fn statuses(status: &PodStatus, kind: ContainerKind) -> &[ContainerStatus] {
    match kind {
        ContainerKind::Init | ContainerKind::Sidecar => status.init_container_statuses.as_deref(),
        ContainerKind::Regular => status.container_statuses.as_deref(),
        ContainerKind::Ephemeral => status.ephemeral_container_statuses.as_deref(),
    }
    .unwrap_or(&[])
}

/// One container's observed states, built snapshot by snapshot.
#[derive(Clone, Debug, Default)]
struct LaneObserver {
    segments: Vec<StateSegment>,
    flips: Vec<FlagFlip>,
    started: bool,
    ready: bool,
    /// When each instance started and ended, as precisely as the status says.
    starts: BTreeMap<u32, i64>,
    ends: BTreeMap<u32, i64>,
}

impl LaneObserver {
    /// A new state from `at_ms` on; never before the state it follows (a status time
    /// stamp may be coarser than the snapshots).
    fn change(&mut self, at_ms: i64, instance: u32, state: State) {
        let at_ms = match self.segments.last_mut() {
            Some(last) if last.instance == instance && last.state == state => return,
            Some(last) => {
                let at_ms = at_ms.max(last.from_ms);
                last.until_ms = at_ms;
                at_ms
            }
            None => at_ms,
        };
        self.segments.push(StateSegment {
            from_ms: at_ms,
            until_ms: at_ms,
            instance,
            state,
        });
    }

    /// An instance seen running only through its terminated state: it ran from `at_ms`.
    fn first_start(&mut self, instance: u32, at_ms: i64) {
        if let Entry::Vacant(entry) = self.starts.entry(instance) {
            entry.insert(at_ms);
            self.change(at_ms, instance, State::Running);
        }
    }

    fn see(&mut self, cs: &ContainerStatus, t: i64, trace: &Trace) {
        let index = u32::try_from(cs.restart_count).unwrap_or(0);
        let state = cs.state.as_ref();
        let waiting = state.and_then(|s| s.waiting.as_ref());
        // Waiting out a back-off, the count still names the instance that exited; a created
        // container (Waiting without a reason) already carries the new instance's count.
        let created = waiting.is_some_and(|w| w.reason.as_deref().unwrap_or("").is_empty());
        let previous = if waiting.is_some() && !created {
            Some(index)
        } else {
            index.checked_sub(1)
        };
        let spec =
            |at: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| trace.spec_ms(at).min(t);
        // An instance that started and ended between two snapshots shows only in lastState.
        if let (Some(previous), Some(last)) = (
            previous,
            cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()),
        ) {
            if !self.ends.contains_key(&previous) {
                if let Some(started) = last.started_at.as_ref().map(spec) {
                    self.first_start(previous, started);
                }
                let finished = last.finished_at.as_ref().map_or(t, spec);
                self.ends.insert(previous, finished);
                self.change(
                    finished,
                    previous,
                    State::Terminated {
                        exit_code: last.exit_code,
                        reason: last.reason.clone().unwrap_or_default(),
                    },
                );
            }
        }
        if let Some(running) = state.and_then(|s| s.running.as_ref()) {
            let at = running.started_at.as_ref().map_or(t, spec);
            let at = *self.starts.entry(index).or_insert(at);
            self.change(at, index, State::Running);
        } else if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
            if let Some(started) = terminated.started_at.as_ref().map(spec) {
                self.first_start(index, started);
            }
            let finished = terminated.finished_at.as_ref().map_or(t, spec);
            let finished = *self.ends.entry(index).or_insert(finished);
            self.change(
                finished,
                index,
                State::Terminated {
                    exit_code: terminated.exit_code,
                    reason: terminated.reason.clone().unwrap_or_default(),
                },
            );
        } else if let Some(waiting) = waiting {
            let reason = waiting.reason.clone().unwrap_or_default();
            self.change(t, index, State::Waiting { reason });
        }
        let started = cs.started.unwrap_or(false);
        if started != self.started {
            self.started = started;
            self.flips.push(FlagFlip {
                at_ms: t,
                flag: Flag::Started,
                to: started,
            });
        }
        if cs.ready != self.ready {
            self.ready = cs.ready;
            self.flips.push(FlagFlip {
                at_ms: t,
                flag: Flag::Ready,
                to: cs.ready,
            });
        }
    }
}

/// The pod's phase over time.
#[derive(Default)]
struct PhaseTrack {
    segments: Vec<PhaseSegment>,
}

impl PhaseTrack {
    fn see(&mut self, snapshot: &podcheck_oracle::Snapshot, at_ms: i64) {
        let mut phase = if snapshot.metadata.gone {
            "Gone".to_owned()
        } else {
            snapshot
                .status
                .phase
                .clone()
                .unwrap_or_else(|| "Unknown".to_owned())
        };
        if snapshot.metadata.deletion_timestamp.is_some() && !snapshot.metadata.gone {
            phase.push_str(" (deleting)");
        }
        if let Some(last) = self.segments.last_mut() {
            if last.phase == phase {
                return;
            }
            last.until_ms = at_ms.max(last.from_ms);
        }
        self.segments.push(PhaseSegment {
            from_ms: at_ms,
            until_ms: at_ms,
            phase,
        });
    }

    fn finish(mut self, observed_until: i64) -> Vec<PhaseSegment> {
        if let Some(last) = self.segments.last_mut() {
            last.until_ms = observed_until.max(last.from_ms);
        }
        self.segments
    }
}

/// Where the predicted windows are anchored: at the observed events they count from.
struct Anchors<'a> {
    observers: &'a BTreeMap<&'a str, LaneObserver>,
    trace: &'a Trace,
    tolerance: i64,
}

impl Anchors<'_> {
    /// When the gate was seen to open, as the checker anchors the start window.
    fn gate_opened(&self, gate: &StartGate) -> Option<i64> {
        match gate {
            StartGate::PodCreated => Some(0),
            StartGate::Added { name, .. } => self
                .trace
                .actions
                .iter()
                .find(|record| {
                    matches!(&record.action, FaultAction::AddEphemeralContainer { name: added, .. } if added == name)
                })
                .and_then(|record| record.acknowledged_at.as_ref())
                .map(|at| self.trace.spec_ms(at)),
            StartGate::Exited {
                container,
                instance,
            } => self.observers.get(container.as_str())?.ends.get(instance).copied(),
            StartGate::Started {
                container,
                instance,
            } => self
                .observers
                .get(container.as_str())?
                .starts
                .get(instance)
                .copied(),
        }
    }

    /// A window `(lo, hi)` after `anchor`, widened by the tolerance.
    fn window(&self, anchor: i64, lo: u64, hi: u64) -> (i64, i64) {
        (
            anchor + lo as i64 - self.tolerance,
            anchor + hi as i64 + self.tolerance,
        )
    }

    /// Every window the plan holds for one instance.
    fn bands(&self, plan: &ContainerPlan, instance: &InstancePlan) -> Vec<Band> {
        let index = instance.index;
        let band = |what, (from_ms, until_ms): (i64, i64), rule: RuleId, label: String| Band {
            instance: index,
            what,
            from_ms,
            until_ms,
            rule: rule.to_string(),
            label,
        };
        let mut bands = Vec::new();
        let start = match self.gate_opened(&instance.start_gate) {
            Some(anchor) => self.window(
                anchor,
                instance.start_after.0.as_millis(),
                instance.start_after.1.as_millis(),
            ),
            None => self.window(
                0,
                instance.earliest_start.as_millis(),
                instance.latest_start.as_millis(),
            ),
        };
        bands.push(band(
            Expected::Start,
            start,
            instance.start_rule,
            start_label(plan, instance),
        ));
        // What follows the start counts from the observed start where there is one.
        let started_at = self
            .observers
            .get(plan.name.as_str())
            .and_then(|o| o.starts.get(&index).copied());
        let anchor = started_at.unwrap_or(instance.earliest_start.as_millis() as i64);
        if let Some(probes) = &instance.probes {
            if let Some(window) = &probes.started {
                bands.push(band(
                    Expected::Started,
                    self.window(anchor, window.lo.as_millis(), window.hi.as_millis()),
                    window.early_rule,
                    "started".to_owned(),
                ));
            }
            for flip in &probes.ready {
                let window = &flip.window;
                bands.push(band(
                    if flip.to {
                        Expected::Ready
                    } else {
                        Expected::NotReady
                    },
                    self.window(anchor, window.lo.as_millis(), window.hi.as_millis()),
                    window.early_rule,
                    if flip.to { "ready" } else { "not ready" }.to_owned(),
                ));
            }
        }
        if let Some(end) = instance.end() {
            let (window, label) = match &instance.cut {
                Some(cut) => {
                    // Anchored at the action's observed time, as the checker does.
                    let due = cut.action_at.as_millis() as i64;
                    let shift = self
                        .trace
                        .actions
                        .iter()
                        .find(|record| cut.fault.is_some() && record.due_ms as i64 == due)
                        .map_or(0, |record| self.trace.spec_ms(&record.requested_at) - due);
                    let window = self.window(
                        due + shift,
                        cut.after_action.0.as_millis(),
                        cut.after_action.1.as_millis(),
                    );
                    let label = match &cut.cause {
                        CutCause::Killed => "killed (killContainer)".to_owned(),
                        CutCause::Deleted(_) => {
                            format!("stopped by the deletion, exit {}", cut.code)
                        }
                        CutCause::PodCompleted(_) => {
                            format!("stopped once the pod is done, exit {}", cut.code)
                        }
                    };
                    (window, label)
                }
                None => {
                    let label = match end.killed_by {
                        Some(kind) => format!("killed by the {} probe", probe_name(kind)),
                        None if end.post_start_failed => {
                            "killed after its PostStart hook failed".to_owned()
                        }
                        None => format!("exit {}", end.code),
                    };
                    (
                        self.window(anchor, end.lo.as_millis(), end.hi.as_millis()),
                        label,
                    )
                }
            };
            let rule = instance
                .probes
                .as_ref()
                .and_then(|p| p.kill.as_ref())
                .map_or(RuleId::ContainerStateTerminated, |(_, w)| w.early_rule);
            bands.push(band(Expected::End, window, rule, label));
        }
        bands
    }
}

fn probe_name(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Liveness => "liveness",
        ProbeKind::Readiness => "readiness",
        ProbeKind::Startup => "startup",
    }
}

/// What starts an instance, in words: `start`, `restart after the 20s back-off`.
fn start_label(plan: &ContainerPlan, instance: &InstancePlan) -> String {
    let previous = instance
        .index
        .checked_sub(1)
        .and_then(|i| plan.instances.get(i as usize));
    match previous.and_then(|p| p.after_exit) {
        None => "start".to_owned(),
        Some(AfterExit::RestartImmediately) => "restart at once".to_owned(),
        Some(AfterExit::RestartAfterBackOff(back_off)) => {
            format!("restart after the {back_off} back-off")
        }
        Some(AfterExit::RestartWhenBackOffCollected { .. }) => {
            "restart once the back-off entry is collected".to_owned()
        }
        Some(AfterExit::RestartAtOnceOrAfterBackOff(back_off)) => {
            format!("restart at once or after {back_off}")
        }
        Some(_) => "restart".to_owned(),
    }
}

/// The workload's log lines of a container as ticks.
fn ticks(trace: &Trace, container: &str) -> Vec<Tick> {
    let Some(lines) = trace.logs.get(container) else {
        return Vec::new();
    };
    let created_ms = trace.created_at.0.as_millisecond();
    let scale = trace.timing.time_scale.max(1e-9);
    let log = WorkloadLog::parse(lines);
    log.events()
        .iter()
        .filter_map(|line| {
            let wall_ms = i64::try_from(line.ts_ms)
                .unwrap_or(i64::MAX)
                .saturating_sub(created_ms);
            let at_ms =
                ((wall_ms as f64 / scale).round() as i64).clamp(-SPEC_MS_LIMIT, SPEC_MS_LIMIT);
            let (kind, ok, label) = match &line.event {
                Event::Start { start, .. } => (TickKind::Start, None, format!("start {start}")),
                Event::Probe(probe) => {
                    let endpoint = probe.endpoint().unwrap_or("?");
                    match probe.answer() {
                        Some(answer) => (
                            TickKind::Probe,
                            match answer {
                                Answered::Ok => Some(true),
                                Answered::Fail | Answered::Unknown => Some(false),
                                Answered::Slow => None,
                            },
                            format!("{endpoint} {}", answer_name(answer)),
                        ),
                        None => (TickKind::Probe, Some(true), format!("{endpoint} tcp")),
                    }
                }
                Event::HookStarted { name, .. } => (TickKind::Hook, None, format!("{name} called")),
                Event::HookEnded { name, ok } => (
                    TickKind::Hook,
                    Some(*ok),
                    format!("{name} {}", if *ok { "ok" } else { "failed" }),
                ),
                Event::Signal { .. } => (TickKind::Signal, None, "SIGTERM".to_owned()),
                Event::Exit { code } => (TickKind::Exit, Some(*code == 0), format!("exit {code}")),
                Event::Error { message } => (
                    TickKind::Error,
                    Some(false),
                    message.chars().take(MAX_TICK_LABEL).collect(),
                ),
                Event::Processes { .. } => return None,
            };
            Some(Tick {
                at_ms,
                kind,
                ok,
                label,
            })
        })
        .collect()
}

fn answer_name(answer: Answered) -> &'static str {
    match answer {
        Answered::Ok => "ok",
        Answered::Fail => "fail",
        Answered::Slow => "slow",
        Answered::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use crate::harness::run_case;
    use crate::targets::model::ModelTarget;
    use podcheck_oracle::{Outcome, Scenario};
    use podcheck_reports::timeline::{Expected, State};

    fn crash_loop() -> Scenario {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/suites/restart/always-crash-loop-backoff.yaml"
        );
        Scenario::from_file(std::path::Path::new(path)).expect("the suite case loads")
    }

    /// On the correct model every restart starts inside the window drawn for it, and the
    /// window says which back-off it waits out.
    #[tokio::test]
    async fn every_start_of_the_correct_model_lies_in_its_window() {
        let target = ModelTarget::new("", 0).expect("model");
        let result = run_case(&target, &crash_loop(), "suite", false).await;
        assert_eq!(result.verdict.outcome, Outcome::Pass);
        let timeline = result.timeline.expect("a case that ran has a timeline");
        let lane = &timeline.lanes[0];
        assert_eq!(lane.container, "app");
        assert!(lane.starts.len() >= 4, "{:?}", lane.starts);
        for start in &lane.starts {
            assert!(start.window.is_some(), "{start:?}");
            assert_eq!(start.off_by_ms(), 0, "{start:?} in {:?}", lane.predicted);
        }
        assert!(lane
            .predicted
            .iter()
            .any(|b| b.what == Expected::Start && b.label == "restart after the 20s back-off"));
        assert!(lane.states.iter().any(|s| s.state
            == State::Terminated {
                exit_code: 1,
                reason: "Error".to_owned()
            }));
    }

    /// The workload's log becomes ticks at spec times: a line written 100 wall ms after
    /// creation under a time scale of 0.05 is at 2s.
    #[test]
    fn the_workload_log_becomes_ticks_in_spec_time() {
        use podcheck_oracle::{TimingProfile, Trace};
        use podcheck_reports::timeline::TickKind;
        let created: jiff::Timestamp = "2026-11-28T04:00:00Z".parse().expect("timestamp");
        let at = |ms: i64| created.as_millisecond() + ms;
        let lines = [
            format!(
                r#"{{"tsMs":{},"event":"start","start":0,"run":"forever"}}"#,
                at(0)
            ),
            format!(
                r#"{{"tsMs":{},"event":"processes","agents":[],"others":0}}"#,
                at(1)
            ),
            format!(
                r#"{{"tsMs":{},"event":"probe","via":"http","endpoint":"live","answer":"ok","userAgent":"kube-probe/1.35"}}"#,
                at(100)
            ),
            format!(
                r#"{{"tsMs":{},"event":"probe","via":"exec","endpoint":"live","answer":"fail","userAgent":""}}"#,
                at(200)
            ),
            format!(
                r#"{{"tsMs":{},"event":"hookEnded","name":"drain","ok":false}}"#,
                at(300)
            ),
            format!(
                r#"{{"tsMs":{},"event":"signal","signal":"SIGTERM"}}"#,
                at(400)
            ),
            "not a log line of the agent".to_owned(),
            format!(r#"{{"tsMs":{},"event":"exit","code":143}}"#, at(500)),
        ];
        let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created);
        let trace = Trace {
            target: "local".to_owned(),
            timing: TimingProfile {
                time_scale: 0.05,
                tolerance_ms: 5000,
            },
            created_at: time.clone(),
            ended_at: time,
            snapshots: Vec::new(),
            events: Vec::new(),
            actions: Vec::new(),
            logs: [("app".to_owned(), lines.to_vec())].into_iter().collect(),
            ended_early: None,
        };
        let ticks: Vec<(i64, TickKind, Option<bool>, String)> = super::ticks(&trace, "app")
            .into_iter()
            .map(|t| (t.at_ms, t.kind, t.ok, t.label))
            .collect();
        assert_eq!(
            ticks,
            [
                (0, TickKind::Start, None, "start 0".to_owned()),
                (2000, TickKind::Probe, Some(true), "live ok".to_owned()),
                (4000, TickKind::Probe, Some(false), "live fail".to_owned()),
                (6000, TickKind::Hook, Some(false), "drain failed".to_owned()),
                (8000, TickKind::Signal, None, "SIGTERM".to_owned()),
                (10000, TickKind::Exit, Some(false), "exit 143".to_owned()),
            ]
        );
        assert!(super::ticks(&trace, "other").is_empty());
    }

    /// Without the back-off's doubling, a restart comes before its window: the timeline
    /// says which one and by how much.
    #[tokio::test]
    async fn a_restart_without_doubling_shows_how_early_it_came() {
        let target = ModelTarget::new("no-back-off-doubling", 0).expect("model");
        let result = run_case(&target, &crash_loop(), "suite", false).await;
        assert_eq!(result.verdict.outcome, Outcome::Fail);
        let timeline = result.timeline.expect("a case that ran has a timeline");
        let early: Vec<_> = timeline.lanes[0]
            .starts
            .iter()
            .filter(|s| s.off_by_ms() < 0)
            .collect();
        let first = early.first().expect("an early restart");
        assert_eq!(first.instance, 3, "{early:?}");
        // 10s instead of 20s after the exit, on a target without tolerance.
        assert_eq!(first.off_by_ms(), -10_000, "{first:?}");
        assert!(timeline
            .violations
            .iter()
            .any(|pin| pin.rule == "restart.backoff.doubling" && pin.source.is_some()));
    }
}
