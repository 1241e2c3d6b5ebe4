//! Probe effects: `started` and `ready` of a running container against the windows its
//! probes allow, kills and readiness checked against the workload's own log of the probes
//! it answered, and the rule an unpredicted end breaks given the container's probes.

use super::instances::ObservedContainer;
use super::{secs, Collector};
use crate::duration::SpecDuration;
use crate::plan::{ContainerPlan, InstancePlan, STATUS_LAG};
use crate::probes::{Handler, ProbeKind, ProbeModel, PROBE_SLACK};
use crate::rules::RuleId;
use crate::trace::{Trace, SPEC_MS_LIMIT};
use k8s_openapi::api::core::v1::ContainerStatus;
use podcheck_wire::{Answered, Event, WorkloadLog};

/// `started` and `ready` of a running container's status that held from `from` until
/// `until` (spec ms since creation): checked at `until` and at every moment in between
/// where what the probes allow changes, so a status that held across a whole window is
/// caught even when no snapshot fell inside it.
pub(super) fn check_probe_flags_held(
    out: &mut Collector,
    plan: &ContainerPlan,
    obs: &ObservedContainer,
    cs: &ContainerStatus,
    (from, until): (i64, i64),
    tol: i64,
) {
    let mut moments: Vec<i64> = flag_boundaries(plan, obs, cs, tol)
        .into_iter()
        .filter(|t| (from + 1..until).contains(t))
        .collect();
    moments.push(until);
    for t in moments {
        check_probe_flags(out, plan, obs, cs, t, tol);
    }
}

/// The index and plan of the instance a container's status shows (restartCount; past the
/// plan, the last instance of a plan that repeats it).
fn shown_instance<'a>(
    plan: &'a ContainerPlan,
    cs: &ContainerStatus,
) -> Option<(u32, &'a InstancePlan)> {
    let index = u32::try_from(cs.restart_count).ok()?;
    let instance = plan
        .instances
        .get(index as usize)
        .or_else(|| plan.instances.last().filter(|_| !plan.settles))?;
    Some((index, instance))
}

/// The moments (spec ms since creation) where what a constant status of the shown
/// instance may say about started and ready changes: the last moment before each window
/// and the first after it.
fn flag_boundaries(
    plan: &ContainerPlan,
    obs: &ObservedContainer,
    cs: &ContainerStatus,
    tol: i64,
) -> Vec<i64> {
    let Some((index, instance)) = shown_instance(plan, cs) else {
        return Vec::new();
    };
    let Some(start) = obs.instances.get(&index).and_then(|i| i.started) else {
        return Vec::new();
    };
    let Some(probes) = instance.probes.as_ref() else {
        return Vec::new();
    };
    let ms = |d: SpecDuration| d.as_millis() as i64;
    let mut edges = Vec::new();
    if let Some(window) = &probes.started {
        edges.extend([
            ms(window.lo) - tol - 1,
            ms(window.hi) + tol + 1,
            ms(window.hi) + ms(STATUS_LAG) + tol + 1,
        ]);
    }
    for flip in &probes.ready {
        edges.extend([ms(flip.window.lo) - tol - 1, ms(flip.window.hi) + tol + 1]);
    }
    if let Some(end) = instance.end() {
        edges.push(ms(end.lo) - ms(PROBE_SLACK) - tol - 1);
    }
    edges.into_iter().map(|edge| start + edge).collect()
}

/// `started` and `ready` of a running container against what its probes allow at that
/// moment of its instance (timed from the instance's observed start).
pub(super) fn check_probe_flags(
    out: &mut Collector,
    plan: &ContainerPlan,
    obs: &ObservedContainer,
    cs: &ContainerStatus,
    t: i64,
    tol: i64,
) {
    let running = cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some();
    if !running {
        return;
    }
    let name = Some(cs.name.as_str());
    let started = cs.started == Some(true);
    let Ok(index) = u32::try_from(cs.restart_count) else {
        return;
    };
    let instance = shown_instance(plan, cs).map(|(_, instance)| instance);
    let Some(probes) = instance.and_then(|i| i.probes.as_ref()) else {
        if plan.kind == crate::scenario::ContainerKind::Ephemeral {
            if cs.ready {
                out.add(
                    RuleId::EphemeralStatus,
                    name,
                    "ready=false (an ephemeral container is never ready)".to_owned(),
                    format!("ready={}", cs.ready),
                    Some(t),
                );
            }
            return;
        }
        if plan.kind == crate::scenario::ContainerKind::Init {
            // A regular init container is started while it runs and ready only once it
            // has exited 0.
            if cs.ready || !started {
                out.add(
                    RuleId::InitStatus,
                    name,
                    "ready=false started=true (init container running)".to_owned(),
                    format!("ready={} started={:?}", cs.ready, cs.started),
                    Some(t),
                );
            }
            return;
        }
        if !cs.ready || !started {
            out.add(
                RuleId::ContainerReadyNoProbe,
                name,
                "ready=true started=true (running, no probes)".to_owned(),
                format!("ready={} started={:?}", cs.ready, cs.started),
                Some(t),
            );
        }
        return;
    };
    let Some(start) = obs.instances.get(&index).and_then(|i| i.started) else {
        return;
    };
    let at = t - start;
    let ms = |d: SpecDuration| d.as_millis() as i64;
    // Once the process may be gone (its exit, or the kill window), its readiness probe
    // may fail before the exit shows: ready=false is then always allowed.
    let ending = instance
        .and_then(|i| i.end())
        .is_some_and(|end| at >= ms(end.lo) - ms(crate::probes::PROBE_SLACK) - tol);
    // started
    match &probes.started {
        None if started => out.add(
            RuleId::ProbeStartupStarted,
            name,
            format!("instance {index}: started=false (the startup probe does not succeed)"),
            format!("started=true {} after the start", secs(at)),
            Some(t),
        ),
        Some(window) if at < ms(window.lo) - tol && started => out.add(
            window.early_rule,
            name,
            format!(
                "instance {index}: started only from {} after the start",
                secs(ms(window.lo) - tol)
            ),
            format!("started=true {} after the start", secs(at)),
            Some(t),
        ),
        Some(window) if at > ms(window.hi) + tol && !started => {
            for &rule in &window.late_rules {
                out.add(
                    rule,
                    name,
                    format!(
                        "instance {index}: started by {} after the start",
                        secs(ms(window.hi) + tol)
                    ),
                    format!("started=false {} after the start", secs(at)),
                    Some(t),
                );
            }
        }
        Some(window) if started && !window.hi.is_zero() && at <= ms(window.hi) + tol => {
            out.inside(at, ms(window.lo) - tol, ms(window.hi) + tol)
        }
        _ => {}
    }
    if cs.ready && !started {
        out.add(
            if probes.probes.startup.is_some() {
                RuleId::ProbeStartupGates
            } else {
                RuleId::ContainerReadyNoProbe
            },
            name,
            "ready only once started".to_owned(),
            "ready=true, started=false".to_owned(),
            Some(t),
        );
    }
    if probes.probes.readiness.is_none() {
        // A startup probe's success reaches the status on its own (SetContainerStartup sets
        // only `started`); `ready` follows with the pod sync that the result triggers, once
        // the PLEG has caught up. Until then a real kubelet shows started and not ready.
        let ready_follows_startup = started
            && !cs.ready
            && probes.probes.startup.is_some()
            && probes
                .started
                .as_ref()
                .is_some_and(|window| at <= ms(window.hi) + ms(STATUS_LAG) + tol);
        if cs.ready != started && !ready_follows_startup {
            out.add(
                RuleId::ContainerReadyNoProbe,
                name,
                "without a readiness probe, ready exactly while started".to_owned(),
                format!("ready={} started={started}", cs.ready),
                Some(t),
            );
        }
        return;
    }
    if ending && !cs.ready {
        return;
    }
    // ready, flip by flip
    let mut value = false;
    for (position, flip) in probes.ready.iter().enumerate() {
        let (lo, hi) = (ms(flip.window.lo) - tol, ms(flip.window.hi) + tol);
        if at < lo {
            // Between two flips the flag shows the earlier one's value: a flag held since
            // before that flip's window closed means that flip never came, anything else
            // that the next came early.
            let missed = position
                .checked_sub(1)
                .map(|p| &probes.ready[p])
                .filter(|before| {
                    obs.ready_since.is_some_and(|(i, ready, since)| {
                        (i, ready) == (index, cs.ready)
                            && since - start <= ms(before.window.hi) + tol
                    })
                });
            if let (true, Some(before)) = (cs.ready != value, missed) {
                for &rule in &before.window.late_rules {
                    out.add(
                        rule,
                        name,
                        format!(
                            "instance {index}: ready={value} from {} after the start",
                            secs(ms(before.window.hi) + tol)
                        ),
                        format!("ready={} {} after the start", cs.ready, secs(at)),
                        Some(t),
                    );
                }
            } else if cs.ready != value {
                out.add(
                    flip.window.early_rule,
                    name,
                    format!(
                        "instance {index}: ready={value} until {} after the start",
                        secs(lo)
                    ),
                    format!("ready={} {} after the start", cs.ready, secs(at)),
                    Some(t),
                );
            }
            return;
        }
        if at <= hi {
            if cs.ready == flip.to {
                out.inside(at, lo, hi);
            }
            return;
        }
        value = flip.to;
        if position + 1 == probes.ready.len() && cs.ready != value {
            for &rule in &flip.window.late_rules {
                out.add(
                    rule,
                    name,
                    format!(
                        "instance {index}: ready={value} from {} after the start",
                        secs(hi)
                    ),
                    format!("ready={} {} after the start", cs.ready, secs(at)),
                    Some(t),
                );
            }
            return;
        }
    }
    if probes.ready.is_empty() && cs.ready {
        let errors = probes
            .probes
            .readiness
            .as_ref()
            .is_some_and(|r| r.always_errors());
        out.add(
            if errors {
                RuleId::ProbeErrorNotFailure
            } else {
                RuleId::ProbeReadinessInitialFailure
            },
            name,
            format!("instance {index}: never ready (the readiness probe never succeeds)"),
            format!("ready=true {} after the start", secs(at)),
            Some(t),
        );
    }
}

/// The workload's own log shows each liveness probe it answered: a kill must follow
/// failureThreshold consecutive failed answers, whatever the timing looked like.
pub(super) fn check_liveness_log(out: &mut Collector, plan: &ContainerPlan, lines: &[String]) {
    let log = WorkloadLog::parse(lines);
    let Some(index) = log.events().start() else {
        return;
    };
    let Some(probes) = plan
        .instances
        .get(index as usize)
        .and_then(|i| i.probes.as_ref())
    else {
        return;
    };
    let (Some((crate::probes::ProbeKind::Liveness, _)), Some((endpoint, threshold))) =
        (&probes.kill, &probes.liveness_log)
    else {
        return;
    };
    let Some(before_kill) = log.events().before_first_signal() else {
        return;
    };
    let failures = before_kill
        .answers(endpoint)
        .rev()
        .take_while(|a| a.answer != Some(Answered::Ok))
        .count();
    if failures < *threshold as usize {
        out.add(
            RuleId::ProbeLivenessFailureThreshold,
            Some(&plan.name),
            format!("instance {index} killed after {threshold} consecutive failed liveness probes"),
            format!("SIGTERM after {failures} consecutive failed answers of /{endpoint} (the workload's log)"),
            None,
        );
    }
}

/// The workload's log shows each readiness probe it answered: the first time a container
/// turns ready, successThreshold successful answers in a row must precede it. Only the
/// first instance is checked (a later one may continue a run its predecessor logged), and
/// answers are counted up to the moment the ready snapshot arrived plus the target's
/// tolerance, so a skewed clock can only weaken the check.
pub(super) fn check_readiness_log(
    out: &mut Collector,
    plan: &ContainerPlan,
    lines: &[String],
    trace: &Trace,
) {
    let Some(first) = plan.instances.first() else {
        return;
    };
    let Some((endpoint, threshold)) = first.probes.as_ref().and_then(|p| p.readiness_log.clone())
    else {
        return;
    };
    let log = WorkloadLog::parse(lines);
    if log.events().start() != Some(0) {
        return;
    }
    let Some(ready_at) = trace.snapshots.iter().find_map(|snapshot| {
        let status = snapshot
            .status
            .container_statuses
            .as_ref()?
            .iter()
            .find(|cs| cs.name == plan.name)?;
        (status.restart_count == 0 && status.ready).then(|| snapshot.at.0.as_millisecond())
    }) else {
        return;
    };
    let slack_ms = (trace.timing.tolerance_ms as f64 * trace.timing.time_scale).ceil() as i64;
    // The longest run of successes that ended before the cut: answers logged after the
    // real flip (within the slack) can then only lengthen the evidence, never cut it short.
    let successes = longest_ok_run(
        log.events()
            .answers(&endpoint)
            .filter(|a| {
                i64::try_from(a.ts_ms).is_ok_and(|ts| ts <= ready_at.saturating_add(slack_ms))
            })
            .map(|a| a.answer == Some(Answered::Ok)),
    );
    if successes < threshold as usize {
        out.add(
            RuleId::ProbeReadinessTransitions,
            Some(&plan.name),
            format!("instance 0 ready after {threshold} consecutive successful readiness probes"),
            format!("ready after {successes} consecutive successful answers of /{endpoint} (the workload's log)"),
            None,
        );
    }
}

/// The longest run of `true` in a sequence.
fn longest_ok_run(answers: impl Iterator<Item = bool>) -> usize {
    let (mut longest, mut current) = (0, 0);
    for ok in answers {
        current = if ok { current + 1 } else { 0 };
        longest = longest.max(current);
    }
    longest
}

/// One probe as the workload logged it: when it arrived (spec ms after the instance's
/// start) and whether its answer was slow (the prober may have waited past its period).
#[derive(Clone, Copy, Debug)]
struct Arrival {
    at: i64,
    slow: bool,
}

/// The cadence of every probe whose requests the workload's log shows exactly (an endpoint
/// no other probe of the container asks; not TCP, whose refused connections leave no
/// line), on the instance the log belongs to.
///
/// A kubelet's worker probes on a `time.NewTicker(period)` grid, so every probe arrives
/// one set-up latency after a grid point; the check allows each arrival [`PROBE_SLACK`]
/// plus the target's tolerance off one grid, so the error of a wrong period adds up over
/// the run and a period 1s too long shows after a few probes even at a coarse tolerance:
/// - liveness and startup: the arrivals of a run fit one grid of step periodSeconds;
/// - readiness (also probed on demand, which resets the ticker): never more than a period
///   apart;
/// - after a slow answer: the next probe comes at most max(period, timeout) later (Go's
///   ticker keeps one tick for a busy receiver; the prober gives up at timeoutSeconds). That
///   kept tick is off the grid, and a probe whose set-up outlasts the next grid point makes
///   the tick after it a kept one too, each arriving within one set-up latency of the one
///   before: the grid is taken up again from the first probe that comes later than that;
/// - the first probe comes no sooner than initialDelaySeconds after the start.
pub(super) fn check_probe_cadence(
    out: &mut Collector,
    plan: &ContainerPlan,
    lines: &[String],
    trace: &Trace,
    tol: i64,
) {
    let log = WorkloadLog::parse(lines);
    let events = log.events().since_last_start();
    let Some((index, start_ts)) = events.iter().find_map(|e| match e.event {
        Event::Start { start, .. } => Some((start, e.ts_ms)),
        _ => None,
    }) else {
        return;
    };
    let Some(probes) = plan
        .instances
        .get(index as usize)
        .or_else(|| plan.instances.last().filter(|_| !plan.settles))
        .and_then(|i| i.probes.as_ref())
    else {
        return;
    };
    let scale = trace.timing.time_scale.max(1e-9);
    let created_ms = trace.created_at.0.as_millisecond();
    let start_ms = i64::try_from(start_ts).unwrap_or(i64::MAX);
    let spec = |ts: u64| -> i64 {
        let wall = i64::try_from(ts)
            .unwrap_or(i64::MAX)
            .saturating_sub(start_ms);
        ((wall as f64 / scale).round() as i64).clamp(-SPEC_MS_LIMIT, SPEC_MS_LIMIT)
    };
    let band = PROBE_SLACK.as_millis() as i64 + tol;
    let all = [
        &probes.probes.startup,
        &probes.probes.liveness,
        &probes.probes.readiness,
    ];
    for probe in all.iter().copied().flatten() {
        if probe.handler == Handler::Tcp {
            continue;
        }
        let Some(endpoint) = probe.endpoint() else {
            continue;
        };
        let shared = all
            .iter()
            .copied()
            .flatten()
            .filter(|other| other.endpoint() == Some(endpoint))
            .count()
            > 1;
        if shared {
            continue;
        }
        let arrivals: Vec<Arrival> = events
            .answers(endpoint)
            .map(|a| Arrival {
                at: spec(a.ts_ms),
                slow: a.answer == Some(Answered::Slow),
            })
            .collect();
        let at_ms = |arrival: &Arrival| {
            let wall = start_ms.saturating_sub(created_ms);
            let start = ((wall as f64 / scale).round() as i64).clamp(-SPEC_MS_LIMIT, SPEC_MS_LIMIT);
            Some(start + arrival.at)
        };
        let cadence = Cadence {
            probe,
            index,
            container: &plan.name,
            endpoint,
            band,
        };
        if let Some(first) = arrivals.first() {
            let delay = probe.initial_delay.as_millis() as i64;
            if first.at < delay - band {
                out.add(
                    RuleId::ProbeInitialDelay,
                    Some(&plan.name),
                    format!(
                        "instance {index}: no {} probe before initialDelaySeconds ({}) after the start",
                        cadence.kind(),
                        secs(delay)
                    ),
                    format!(
                        "/{endpoint} asked {} after the start (the workload's log)",
                        secs(first.at)
                    ),
                    at_ms(first),
                );
            }
        }
        let mut run: Vec<Arrival> = Vec::new();
        let mut previous: Option<Arrival> = None;
        // Since a slow answer, every probe may have run on a kept tick.
        let mut off_grid = false;
        for arrival in &arrivals {
            match previous {
                Some(before) if before.slow => {
                    cadence.after_slow(out, before, *arrival, at_ms(arrival));
                    cadence.check_run(out, &run, at_ms);
                    run.clear();
                    off_grid = true;
                }
                Some(before) if probe.kind == ProbeKind::Readiness => {
                    cadence.at_most_a_period(out, before, *arrival, at_ms(arrival));
                }
                Some(before) if off_grid && arrival.at - before.at <= band => {}
                _ => {
                    off_grid = false;
                    run.push(*arrival);
                }
            }
            previous = Some(*arrival);
        }
        cadence.check_run(out, &run, at_ms);
    }
}

/// What the cadence of one probe is checked against.
struct Cadence<'a> {
    probe: &'a ProbeModel,
    index: u32,
    container: &'a str,
    endpoint: &'a str,
    /// How far (spec ms) an arrival may lie off its grid point.
    band: i64,
}

impl Cadence<'_> {
    fn kind(&self) -> &'static str {
        match self.probe.kind {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }

    fn period(&self) -> i64 {
        self.probe.period.as_millis() as i64
    }

    /// Consecutive arrivals of a liveness or startup worker lie on one grid of step
    /// periodSeconds, each within the band of its grid point.
    fn check_run(
        &self,
        out: &mut Collector,
        run: &[Arrival],
        at_ms: impl Fn(&Arrival) -> Option<i64>,
    ) {
        if self.probe.kind == ProbeKind::Readiness || run.len() < 2 {
            return;
        }
        let period = self.period();
        let residuals = run
            .iter()
            .enumerate()
            .map(|(step, a)| a.at - step as i64 * period);
        let (lo, hi) = residuals.fold((i64::MAX, i64::MIN), |(lo, hi), r| (lo.min(r), hi.max(r)));
        let spread = hi - lo;
        if spread > self.band {
            let (first, last) = (run[0], run[run.len() - 1]);
            let mean = (last.at - first.at) / (run.len() as i64 - 1);
            out.add(
                RuleId::ProbePeriod,
                Some(self.container),
                format!(
                    "instance {}: {} probes every {} (each within {} of one grid)",
                    self.index,
                    self.kind(),
                    secs(period),
                    secs(self.band)
                ),
                format!(
                    "{} probes of /{} from {} to {} after the start: every {} on average, {} off one grid (the workload's log)",
                    run.len(),
                    self.endpoint,
                    secs(first.at),
                    secs(last.at),
                    secs(mean),
                    secs(spread)
                ),
                // A wrong cadence is off from the first interval on; what it delays (a kill,
                // a flip) comes later and must not be read as the cause.
                at_ms(&run[1]),
            );
        }
    }

    /// After a slow answer the prober gave up at timeoutSeconds at the latest, and the tick
    /// Go's ticker kept while it waited fires at once.
    fn after_slow(&self, out: &mut Collector, before: Arrival, next: Arrival, at: Option<i64>) {
        let limit = self.period().max(self.probe.timeout.as_millis() as i64) + self.band;
        if next.at - before.at > limit {
            out.add(
                RuleId::ProbeTimeout,
                Some(self.container),
                format!(
                    "instance {}: a slow answer abandoned at timeoutSeconds ({}): the next {} probe at most {} later",
                    self.index,
                    secs(self.probe.timeout.as_millis() as i64),
                    self.kind(),
                    secs(limit)
                ),
                format!(
                    "/{} asked {} after a slow answer (the workload's log)",
                    self.endpoint,
                    secs(next.at - before.at)
                ),
                at,
            );
        }
    }

    /// Readiness is also probed on demand, never less often than every periodSeconds.
    fn at_most_a_period(
        &self,
        out: &mut Collector,
        before: Arrival,
        next: Arrival,
        at: Option<i64>,
    ) {
        let limit = self.period() + self.band;
        if next.at - before.at > limit {
            out.add(
                RuleId::ProbePeriod,
                Some(self.container),
                format!(
                    "instance {}: readiness probes at least every {}",
                    self.index,
                    secs(self.period())
                ),
                format!(
                    "/{} asked {} after the probe before (the workload's log)",
                    self.endpoint,
                    secs(next.at - before.at)
                ),
                at,
            );
        }
    }
}

/// The rule an unpredicted end of an instance breaks, given the probes that might have
/// caused it.
pub(super) fn surprise_rule(instance: &InstancePlan, at: i64) -> RuleId {
    let Some(plan) = &instance.probes else {
        return RuleId::ContainerRunsToCompletion;
    };
    let probes = &plan.probes;
    let ms = |d: SpecDuration| d.as_millis() as i64;
    let errors = [&probes.startup, &probes.liveness]
        .into_iter()
        .flatten()
        .any(|p| p.always_errors());
    if errors {
        RuleId::ProbeErrorNotFailure
    } else if probes.readiness.is_some() && !plan.liveness_fails && probes.startup.is_none() {
        RuleId::ProbeReadinessNoRestart
    } else if probes.liveness.is_some()
        && probes.startup.is_some()
        && plan.started.as_ref().is_none_or(|w| at < ms(w.lo))
    {
        RuleId::ProbeStartupGates
    } else if plan.liveness_slow_success || plan.liveness_dial_waits {
        // A kill that comes too soon where liveness fails only after its timeout (a slow
        // answer, a dial waiting for a listener): the timeout was not waited for.
        RuleId::ProbeTimeout
    } else if probes.liveness.is_some() && plan.liveness_fails {
        RuleId::ProbeLivenessFailureThreshold
    } else if probes.readiness.is_some() {
        RuleId::ProbeReadinessNoRestart
    } else if probes.startup.is_some() {
        RuleId::ProbeStartupFailureRestart
    } else {
        RuleId::ContainerRunsToCompletion
    }
}

#[cfg(test)]
mod tests {
    use super::longest_ok_run;

    #[test]
    fn failures_after_the_flip_do_not_hide_the_successes_before_it() {
        // ok, ok (ready), then failures logged within the slack.
        assert_eq!(longest_ok_run([true, true, false, false].into_iter()), 2);
        assert_eq!(longest_ok_run([true, false, true].into_iter()), 1);
        assert_eq!(longest_ok_run(std::iter::empty()), 0);
    }
}
