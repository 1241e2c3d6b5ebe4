//! Outcome segments: a probe's outcome over the life of an instance, as the health script
//! decides it, and when a run of consecutive outcomes crosses the probe's threshold.

use super::spec::Reach;
use super::{Ambiguous, Handler, ProbeModel, ProbeResult, PROBE_SLACK, PROBE_TIMING_MARGIN};
use crate::behaviour::{Answer, Health};
use crate::duration::SpecDuration;

/// A stretch of an instance's life over which a probe gives one outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub from: SpecDuration,
    /// None: to the end of the instance.
    pub until: Option<SpecDuration>,
    pub outcome: ProbeResult,
    /// How long after the request the result is known (a slow answer, a timeout): the
    /// longest any attempt in the segment takes.
    pub latency: SpecDuration,
    /// The shortest any attempt in the segment takes: with the period, how close two
    /// attempts can come.
    pub least_latency: SpecDuration,
    /// Whether the outcome comes from a timeout.
    pub timed_out: bool,
    /// Whether the failures are a dial retried until the timeout (gRPC's blocking dial
    /// with nothing listening): an attempt sent less than `latency` before `until` may
    /// still connect and take the next segment's outcome.
    pub dial_retried: bool,
}

/// What one attempt sent at a given moment gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Attempt {
    outcome: ProbeResult,
    latency: SpecDuration,
    timed_out: bool,
    dial_retried: bool,
}

impl Attempt {
    fn answered(outcome: ProbeResult, latency: SpecDuration) -> Attempt {
        Attempt {
            outcome,
            latency,
            timed_out: false,
            dial_retried: false,
        }
    }
}

impl ProbeModel {
    fn threshold(&self, outcome: ProbeResult) -> u32 {
        if outcome == ProbeResult::Success {
            self.success_threshold
        } else {
            self.failure_threshold
        }
    }

    /// What a probe sent `at` after the instance started gives.
    fn outcome_at(
        &self,
        health: Option<&Health>,
        at: SpecDuration,
        latency: SpecDuration,
    ) -> Attempt {
        let listening = health.is_some_and(|h| at >= h.listen_after + latency);
        let endpoint = |name: &str| health.and_then(|h| h.endpoints.get(name));
        let at_once = |outcome| Attempt::answered(outcome, SpecDuration::ZERO);
        // pkg/probe/grpc dials with grpc.WithBlock() inside the timeout's context: a refused
        // connection, or a port that does not speak HTTP/2, is retried until the deadline,
        // and the probe fails only then ("timeout: failed to connect service").
        let dial_timeout = Attempt {
            outcome: ProbeResult::Failure,
            latency: self.timeout,
            timed_out: true,
            dial_retried: true,
        };
        let grpc_dial_waits = self.handler == Handler::Grpc && self.dial_waits;
        match &self.reach {
            Reach::Constant(ProbeResult::Failure) if grpc_dial_waits => dial_timeout,
            Reach::Constant(outcome) => at_once(*outcome),
            Reach::HealthPort if listening => at_once(ProbeResult::Success),
            Reach::TcpEndpoint(name) if listening => {
                match endpoint(name).map(|e| e.answer_at(at)) {
                    Some(Answer::Ok | Answer::Slow(_)) => at_once(ProbeResult::Success),
                    _ => at_once(ProbeResult::Failure),
                }
            }
            Reach::GrpcService(_) if !listening && grpc_dial_waits => dial_timeout,
            Reach::GrpcService(name) if listening && name.is_empty() => {
                at_once(ProbeResult::Success)
            }
            Reach::Endpoint(Some(name)) | Reach::GrpcService(name) if listening => {
                match endpoint(name).map(|e| e.answer_at(at)) {
                    Some(Answer::Ok) => at_once(ProbeResult::Success),
                    Some(Answer::Slow(delay)) if delay < self.timeout => {
                        Attempt::answered(ProbeResult::Success, delay)
                    }
                    Some(Answer::Slow(_)) => Attempt {
                        outcome: ProbeResult::Failure,
                        latency: self.timeout,
                        timed_out: true,
                        dial_retried: false,
                    },
                    _ => at_once(ProbeResult::Failure),
                }
            }
            _ => at_once(ProbeResult::Failure),
        }
    }

    /// The probe's outcomes over an instance's life, adjacent equal outcomes merged.
    pub fn segments(&self, health: Option<&Health>, latency: SpecDuration) -> Vec<Segment> {
        let mut boundaries = vec![SpecDuration::ZERO];
        if let Some(health) = health {
            boundaries.push(health.listen_after + latency);
            let names: Vec<&str> = match &self.reach {
                Reach::Endpoint(Some(name))
                | Reach::TcpEndpoint(name)
                | Reach::GrpcService(name) => {
                    vec![name.as_str()]
                }
                _ => Vec::new(),
            };
            for name in names {
                if let Some(endpoint) = health.endpoints.get(name) {
                    boundaries.extend(endpoint.boundaries());
                }
            }
        }
        boundaries.sort();
        boundaries.dedup();
        let mut segments: Vec<Segment> = Vec::new();
        for (index, from) in boundaries.iter().enumerate() {
            let attempt = self.outcome_at(health, *from, latency);
            let until = boundaries.get(index + 1).copied();
            match segments.last_mut() {
                Some(last) if last.outcome == attempt.outcome => {
                    last.until = until;
                    last.latency = last.latency.max(attempt.latency);
                    last.least_latency = last.least_latency.min(attempt.latency);
                    last.timed_out |= attempt.timed_out;
                    // What happens near the end is the later part's.
                    last.dial_retried = attempt.dial_retried;
                }
                _ => segments.push(Segment {
                    from: *from,
                    until,
                    outcome: attempt.outcome,
                    latency: attempt.latency,
                    least_latency: attempt.latency,
                    timed_out: attempt.timed_out,
                    dial_retried: attempt.dial_retried,
                }),
            }
        }
        segments
    }

    /// Whether the probe never gives a result (every attempt errors).
    pub fn always_errors(&self) -> bool {
        self.reach == Reach::Constant(ProbeResult::Error)
    }

    /// Whether some answer is slow but in time, which a runtime with a wrong timeout fails.
    pub fn has_slow_success(&self, health: Option<&Health>) -> bool {
        self.segments(health, SpecDuration::ZERO)
            .iter()
            .any(|s| s.outcome == ProbeResult::Success && s.latency > SpecDuration::ZERO)
    }
}

/// The segment before `index`, whose attempts may run into it.
pub(super) fn previous(segments: &[Segment], index: usize) -> Option<&Segment> {
    index.checked_sub(1).and_then(|i| segments.get(i))
}

/// Whether `index` is the first segment with its outcome: the one a carried run continues.
pub(super) fn first_of_its_outcome(segments: &[Segment], index: usize) -> bool {
    segments[..index]
        .iter()
        .all(|s| s.outcome != segments[index].outcome)
}

pub(super) enum Crossing {
    At(SpecDuration, SpecDuration),
    Never,
}

/// When `probe` completes a run of its threshold of `segment.outcome` results, probing
/// from `gate` (the earliest and latest moment the probe may first run); `previous` is the
/// segment before, whose attempts may still be running when this one starts.
pub(super) fn cross(
    probe: &ProbeModel,
    segment: &Segment,
    previous: Option<&Segment>,
    gate: (SpecDuration, SpecDuration),
    on_demand: bool,
    carried: bool,
) -> Result<Crossing, Ambiguous> {
    let (u_lo, u_hi) = (segment.from.max(gate.0), segment.from.max(gate.1));
    if segment.until.is_some_and(|until| until <= u_lo) {
        return Ok(Crossing::Never);
    }
    let period = probe.period;
    let threshold = u64::from(probe.threshold(segment.outcome).max(1));
    // A probe that outlasts its period delays the next one (the ticker keeps one tick).
    let spacing = period.max(segment.latency);
    // Attempts sent before this segment, once the gate may be open, may still run at its
    // start.
    let running_before = previous.filter(|_| gate.0 < segment.from);
    // An attempt still running holds back the next tick until it ends.
    let first_tick = (u_hi + spacing)
        .max(running_before.map_or(SpecDuration::ZERO, |p| segment.from + p.latency));
    let last_tick = first_tick + spacing * (threshold - 1);
    // A dial retried until its deadline may connect once this segment starts: an attempt
    // sent up to its timeout before then gives this segment's outcome, known at its start
    // at the earliest.
    let first_sent = match running_before.filter(|p| p.dial_retried) {
        Some(p) => segment.from.saturating_sub(p.latency).max(gate.0),
        None => u_lo,
    };
    // Attempts come no closer than the period, nor than the quickest of them takes; the
    // first may be a dial of the segment before, whose length is not this segment's.
    let least_spacing = if first_sent < u_lo {
        period
    } else {
        period.max(segment.least_latency)
    };
    // The last attempt of the run takes at least the quickest time too.
    let last_takes = if first_sent < u_lo && threshold == 1 {
        SpecDuration::ZERO
    } else {
        segment.least_latency
    };
    let lo = if on_demand || carried {
        u_lo
    } else {
        u_lo.max(first_sent + least_spacing * (threshold - 1) + last_takes)
    };
    let hi = last_tick + segment.latency;
    // An attempt counts for certain only if the segment lasts until it gives its outcome;
    // a retried dial sent less than its timeout before the end may still connect.
    let certain_until = segment.until.map(|until| {
        if segment.dial_retried {
            until.saturating_sub(segment.latency)
        } else {
            until
        }
    });
    match (segment.until, certain_until) {
        (_, None) => Ok(Crossing::At(lo, hi)),
        (_, Some(until)) if until >= last_tick + PROBE_TIMING_MARGIN => Ok(Crossing::At(lo, hi)),
        // Fewer attempts than the threshold fit in the segment.
        (Some(until), _)
            if !on_demand
                && !carried
                && until + PROBE_SLACK <= first_sent + least_spacing * (threshold - 1) =>
        {
            Ok(Crossing::Never)
        }
        (until, _) => Err(Ambiguous(format!(
            "the {:?} probe gives {:?} from {} to {}: whether that reaches its threshold of {threshold} (every {spacing}) depends on when its ticks fall",
            probe.kind,
            segment.outcome,
            segment.from,
            until.map_or("the end".to_owned(), |u| u.to_string())
        ))),
    }
}

/// Whether a segment follows an opposite one short enough to be missed by every tick, so
/// that its run may continue the one before.
pub(super) fn may_continue(segments: &[Segment], index: usize, probe: &ProbeModel) -> bool {
    index >= 2
        && segments[index - 2].outcome == segments[index].outcome
        && segments[index - 1].until.is_some_and(|until| {
            until < segments[index - 1].from + probe.period + PROBE_TIMING_MARGIN
        })
}
