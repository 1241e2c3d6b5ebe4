//! Outcome segments: a probe's outcome over the life of an instance, as the health script
//! decides it, and when a run of consecutive outcomes crosses the probe's threshold.

use super::spec::Reach;
use super::{Ambiguous, ProbeModel, ProbeResult, PROBE_SLACK, PROBE_TIMING_MARGIN};
use crate::behaviour::{Answer, Health};
use crate::duration::SpecDuration;

/// A stretch of an instance's life over which a probe gives one outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub from: SpecDuration,
    /// None: to the end of the instance.
    pub until: Option<SpecDuration>,
    pub outcome: ProbeResult,
    /// How long after the request the result is known (a slow answer, a timeout).
    pub latency: SpecDuration,
    /// Whether the outcome comes from a timeout.
    pub timed_out: bool,
}

impl ProbeModel {
    fn threshold(&self, outcome: ProbeResult) -> u32 {
        if outcome == ProbeResult::Success {
            self.success_threshold
        } else {
            self.failure_threshold
        }
    }

    /// The outcome of a probe sent `at` after the instance started.
    fn outcome_at(
        &self,
        health: Option<&Health>,
        at: SpecDuration,
        latency: SpecDuration,
    ) -> (ProbeResult, SpecDuration, bool) {
        let listening = health.is_some_and(|h| at >= h.listen_after + latency);
        let endpoint = |name: &str| health.and_then(|h| h.endpoints.get(name));
        match &self.reach {
            Reach::Constant(outcome) => (*outcome, SpecDuration::ZERO, false),
            Reach::HealthPort if listening => (ProbeResult::Success, SpecDuration::ZERO, false),
            Reach::TcpEndpoint(name) if listening => {
                match endpoint(name).map(|e| e.answer_at(at)) {
                    Some(Answer::Ok | Answer::Slow(_)) => {
                        (ProbeResult::Success, SpecDuration::ZERO, false)
                    }
                    _ => (ProbeResult::Failure, SpecDuration::ZERO, false),
                }
            }
            Reach::GrpcService(name) if listening && name.is_empty() => {
                (ProbeResult::Success, SpecDuration::ZERO, false)
            }
            Reach::Endpoint(Some(name)) | Reach::GrpcService(name) if listening => {
                match endpoint(name).map(|e| e.answer_at(at)) {
                    Some(Answer::Ok) => (ProbeResult::Success, SpecDuration::ZERO, false),
                    Some(Answer::Slow(delay)) if delay < self.timeout => {
                        (ProbeResult::Success, delay, false)
                    }
                    Some(Answer::Slow(_)) => (ProbeResult::Failure, self.timeout, true),
                    _ => (ProbeResult::Failure, SpecDuration::ZERO, false),
                }
            }
            _ => (ProbeResult::Failure, SpecDuration::ZERO, false),
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
            let (outcome, delay, timed_out) = self.outcome_at(health, *from, latency);
            let until = boundaries.get(index + 1).copied();
            match segments.last_mut() {
                Some(last) if last.outcome == outcome => {
                    last.until = until;
                    last.latency = last.latency.max(delay);
                    last.timed_out |= timed_out;
                }
                _ => segments.push(Segment {
                    from: *from,
                    until,
                    outcome,
                    latency: delay,
                    timed_out,
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
/// from `gate` (the earliest and latest moment the probe may first run).
pub(super) fn cross(
    probe: &ProbeModel,
    segment: &Segment,
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
    let last_tick = u_hi + spacing * threshold;
    let lo = if on_demand || carried {
        u_lo
    } else {
        u_lo + period * (threshold - 1)
    };
    let hi = last_tick + segment.latency;
    match segment.until {
        None => Ok(Crossing::At(lo, hi)),
        Some(until) if until >= last_tick + PROBE_TIMING_MARGIN => Ok(Crossing::At(lo, hi)),
        // At most one tick per period fits in the segment: fewer than the threshold.
        Some(until)
            if !on_demand
                && !carried
                && until + PROBE_SLACK <= u_lo + period * (threshold - 1) =>
        {
            Ok(Crossing::Never)
        }
        Some(until) => Err(Ambiguous(format!(
            "the {:?} probe gives {:?} from {} to {until}: whether that reaches its threshold of {threshold} (every {period}) depends on when its ticks fall",
            probe.kind, segment.outcome, segment.from
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
