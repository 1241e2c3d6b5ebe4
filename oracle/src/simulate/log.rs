//! The workload's log on the model target: the agent's start line and every probe that
//! reaches an endpoint of its own, at the times a kubelet's worker would send them.
//!
//! A worker probes on a `time.NewTicker(periodSeconds)` grid whose phase is set by the
//! worker's creation, not by the container (pkg/kubelet/prober/worker.go `run`): the first
//! probe is the first tick past the probe's gate (initialDelaySeconds; for liveness the
//! container's start), each arrives at the agent a set-up latency after its tick, and a
//! probe that outlasts its period (a slow answer, given up at timeoutSeconds) is followed
//! at once by the tick Go's ticker kept, then the grid goes on.
//!
//! Only liveness and startup probes are logged: readiness is also probed on demand, and
//! its log would have to agree with the drawn moment the container turns ready. A
//! container whose readiness successes the checker counts in the log gets no log at all.

use super::Choices;
use crate::behaviour::{Answer, Behaviour, Health, Run};
use crate::duration::SpecDuration;
use crate::probes::{Handler, ProbeKind, ProbeModel, ProbePlan, LISTEN_LATENCY, PROBE_SLACK};
use podcheck_wire::{Answered, Event, LogEvent, Probe, Request};

/// What the log of one instance is drawn from.
pub(super) struct Instance<'a> {
    pub behaviour: Option<&'a Behaviour>,
    pub plan: &'a ProbePlan,
    pub index: u32,
    pub run: Run,
    /// Spec ms since creation: when the instance started, when it turned started, when it
    /// ended (its exit or its kill; None: it outlives the observation).
    pub start: u64,
    pub started_at: Option<u64>,
    pub end: Option<u64>,
    /// When liveness and startup probes stop (the kubelet has seen the pod's deletion).
    pub probes_stop: Option<u64>,
    pub horizon: u64,
    /// Added to every period by a planted bug the plan does not already show.
    pub period_extra: SpecDuration,
}

/// The wall time (ms since the Unix epoch) of spec ms `at` on the model target.
pub(super) fn ts(at: u64) -> u64 {
    super::epoch().as_millisecond().max(0) as u64 + at
}

fn start_event(index: u32, run: Run, start: u64) -> LogEvent {
    LogEvent {
        ts_ms: ts(start),
        event: Event::Start {
            start: index,
            run: match run {
                Run::Forever => podcheck_wire::Run::Forever,
                Run::Exit { after, code } => podcheck_wire::Run::Exit {
                    after_ms: after.as_millis(),
                    code,
                },
            },
        },
    }
}

/// The agent's line for start `index`, acting out `run`, at spec ms `start`.
pub(super) fn start_line(index: u32, run: Run, start: u64) -> String {
    start_event(index, run, start).to_string()
}

/// The instance's log lines.
pub(super) fn instance_log(instance: &Instance<'_>, choices: &mut dyn Choices) -> Vec<String> {
    let mut events = vec![start_event(instance.index, instance.run, instance.start)];
    let health = instance.behaviour.and_then(|b| b.health.as_ref());
    let probes = &instance.plan.probes;
    let all = [&probes.startup, &probes.liveness, &probes.readiness];
    let listen = health.map(|h| {
        instance.start + h.listen_after.as_millis() + choices.pick(0, LISTEN_LATENCY.as_millis())
    });
    for probe in [&probes.startup, &probes.liveness].into_iter().flatten() {
        let Some(endpoint) = probe.endpoint().filter(|_| probe.handler != Handler::Tcp) else {
            continue;
        };
        let shared = all
            .iter()
            .copied()
            .flatten()
            .filter(|p| p.endpoint() == Some(endpoint))
            .count()
            > 1;
        let (Some(health), Some(listen), false) = (health, listen, shared) else {
            continue;
        };
        let delay = instance.start + probe.initial_delay.as_millis();
        let (gate, stop) = match probe.kind {
            ProbeKind::Startup => (Some(delay), instance.started_at),
            _ => (instance.started_at.map(|s| s.max(delay)), None),
        };
        let Some(gate) = gate else { continue };
        let stop = [
            stop,
            instance.end,
            instance.probes_stop,
            Some(instance.horizon),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(instance.horizon);
        let ticks = Ticks {
            probe,
            period: (probe.period + instance.period_extra).as_millis(),
            health,
            endpoint,
            start: instance.start,
            listen,
        };
        ticks.log(gate, stop, choices, &mut events);
    }
    events.sort_by_key(|e| e.ts_ms);
    events.iter().map(ToString::to_string).collect()
}

struct Ticks<'a> {
    probe: &'a ProbeModel,
    period: u64,
    health: &'a Health,
    endpoint: &'a str,
    start: u64,
    listen: u64,
}

impl Ticks<'_> {
    fn log(&self, gate: u64, stop: u64, choices: &mut dyn Choices, events: &mut Vec<LogEvent>) {
        let Some(script) = self.health.endpoints.get(self.endpoint) else {
            return;
        };
        let period = self.period.max(1);
        // The worker's grid: its phase comes from when the worker was created.
        let origin = self.start + choices.pick(0, period - 1);
        let next_grid = |after: u64| {
            if after < origin {
                origin
            } else {
                origin + ((after - origin) / period + 1) * period
            }
        };
        let mut tick = if gate <= origin {
            origin
        } else {
            next_grid(gate - 1)
        };
        loop {
            let arrival = tick + choices.pick(0, PROBE_SLACK.as_millis());
            if arrival >= stop {
                break;
            }
            let mut busy = 0;
            if arrival >= self.listen {
                let answer = match script.answer_at(SpecDuration::from_millis(arrival - self.start))
                {
                    Answer::Ok => Answered::Ok,
                    Answer::Fail => Answered::Fail,
                    Answer::Slow(delay) => {
                        busy = delay.min(self.probe.timeout).as_millis();
                        Answered::Slow
                    }
                };
                let request = Request {
                    endpoint: Some(self.endpoint.to_owned()),
                    answer,
                    user_agent: match self.probe.handler {
                        Handler::Exec => "podcheck-agent-probe".to_owned(),
                        _ => "kube-probe/1.35".to_owned(),
                    },
                };
                let probe = match self.probe.handler {
                    Handler::Exec => Probe::Exec(request),
                    Handler::Grpc => Probe::Grpc(request),
                    _ => Probe::Http(request),
                };
                events.push(LogEvent {
                    ts_ms: ts(arrival),
                    event: Event::Probe(probe),
                });
            }
            // A probe still running at the next tick is followed at once by the kept tick.
            tick = next_grid(tick).max(arrival + busy);
        }
    }
}
