//! Probes as the kubelet runs them, and what they do to one container instance.
//!
//! Sources are in docs/fidelity/probes.md; the points a naive model gets wrong:
//! - initial results per new container: readiness Failure, liveness Success, startup
//!   Unknown (`newWorker`, `doProbe` in pkg/kubelet/prober/worker.go);
//! - liveness and readiness do not run before the container is started, and
//!   `initialDelaySeconds` counts from the container's start, not from the end of the
//!   startup probe;
//! - a probe that errors (a named port the container does not declare) counts as neither
//!   success nor failure, so the result keeps its initial value;
//! - thresholds count consecutive results on the worker, and the worker outlives the
//!   container: a run in progress when a container exits carries over to the next one;
//! - a worker ticks every `periodSeconds` from its own creation, so the first probe of a
//!   container comes anywhere within one period of the earliest moment it may run;
//!   readiness is also probed on demand after status updates while not ready.
//!
//! The model turns each probe into result segments over the life of an instance (the
//! health script decides the answer at each moment) and finds, per segment, the window in
//! which a threshold is crossed. Where timing noise could decide whether a threshold is
//! crossed at all, the scenario has no single prediction and is refused.

use crate::behaviour::{Answer, Behaviour, Health};
use crate::duration::SpecDuration;
pub use crate::validation::ProbeKind;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

/// The agent's path in the image; exec probes run it as `podcheck-agent probe ENDPOINT`.
pub const AGENT_PROGRAM: &str = "/podcheck-agent";

/// How far a probe may run from its nominal tick: scheduling, connection set-up, process
/// start of an exec probe.
pub const PROBE_SLACK: SpecDuration = SpecDuration::from_secs(1);

/// Distance from a threshold within which the oracle refuses to decide.
pub const AMBIGUITY_MARGIN: SpecDuration = SpecDuration::from_secs(2);

/// How long after its start (or its `listenAfter`) a process may take to listen: a probe
/// that comes sooner is refused, for the agent as for any server.
pub const LISTEN_LATENCY: SpecDuration = SpecDuration::from_secs(1);

/// How late after a crossing the status shows it, or the killed container's exit is seen.
pub const PROBE_ACTION_LAG: SpecDuration = SpecDuration::from_secs(2);

/// The exit code of a container that a probe failure stopped: the agent dies of SIGTERM,
/// which the runtime reports as 128 + 15.
pub const KILLED_EXIT_CODE: i32 = 143;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Success,
    Failure,
    /// The probe could not be run; the kubelet discards the attempt.
    Error,
}

/// Why a probe gives its outcome, which names the rule a divergence breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Handler {
    Http,
    Tcp,
    Exec,
    Grpc,
}

impl Handler {
    pub fn rule(self) -> &'static str {
        match self {
            Handler::Http => "probe.handler.http",
            Handler::Tcp => "probe.handler.tcp",
            Handler::Exec => "probe.handler.exec",
            Handler::Grpc => "probe.handler.grpc",
        }
    }
}

/// What a probe reaches in the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
enum Reach {
    /// Always the same outcome: a port nothing listens on, a missing named port.
    Constant(Outcome),
    /// `GET /<endpoint>` on the health port (exec probes go the same way); None: no such
    /// endpoint (404).
    Endpoint(Option<String>),
    /// A TCP connection to the health port.
    HealthPort,
    /// A TCP connection to an endpoint's own port.
    TcpEndpoint(String),
    /// A gRPC health check of a service on the gRPC port ("" is the server as a whole).
    GrpcService(String),
}

/// One probe of one container, defaulted as the API server does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeModel {
    pub kind: ProbeKind,
    pub handler: Handler,
    pub period: SpecDuration,
    pub timeout: SpecDuration,
    pub initial_delay: SpecDuration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    reach: Reach,
    /// Why the probe's outcome has no single prediction, if it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    ambiguity: Option<String>,
}

/// A stretch of an instance's life over which a probe gives one outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub from: SpecDuration,
    /// None: to the end of the instance.
    pub until: Option<SpecDuration>,
    pub outcome: Outcome,
    /// How long after the request the result is known (a slow answer, a timeout).
    pub latency: SpecDuration,
    /// Whether the outcome comes from a timeout.
    pub timed_out: bool,
}

impl ProbeModel {
    fn threshold(&self, outcome: Outcome) -> u32 {
        if outcome == Outcome::Success {
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
    ) -> (Outcome, SpecDuration, bool) {
        let listening = health.is_some_and(|h| at >= h.listen_after + latency);
        let endpoint = |name: &str| health.and_then(|h| h.endpoints.get(name));
        match &self.reach {
            Reach::Constant(outcome) => (*outcome, SpecDuration::ZERO, false),
            Reach::HealthPort if listening => (Outcome::Success, SpecDuration::ZERO, false),
            Reach::TcpEndpoint(name) if listening => {
                match endpoint(name).map(|e| e.answer_at(at)) {
                    Some(Answer::Ok | Answer::Slow(_)) => {
                        (Outcome::Success, SpecDuration::ZERO, false)
                    }
                    _ => (Outcome::Failure, SpecDuration::ZERO, false),
                }
            }
            Reach::GrpcService(name) if listening && name.is_empty() => {
                (Outcome::Success, SpecDuration::ZERO, false)
            }
            Reach::Endpoint(Some(name)) | Reach::GrpcService(name) if listening => {
                match endpoint(name).map(|e| e.answer_at(at)) {
                    Some(Answer::Ok) => (Outcome::Success, SpecDuration::ZERO, false),
                    Some(Answer::Slow(delay)) if delay < self.timeout => {
                        (Outcome::Success, delay, false)
                    }
                    Some(Answer::Slow(_)) => (Outcome::Failure, self.timeout, true),
                    _ => (Outcome::Failure, SpecDuration::ZERO, false),
                }
            }
            _ => (Outcome::Failure, SpecDuration::ZERO, false),
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
        self.reach == Reach::Constant(Outcome::Error)
    }

    /// Whether some answer is slow but in time, which a runtime with a wrong timeout fails.
    pub fn has_slow_success(&self, health: Option<&Health>) -> bool {
        self.segments(health, SpecDuration::ZERO)
            .iter()
            .any(|s| s.outcome == Outcome::Success && s.latency > SpecDuration::ZERO)
    }
}

/// A container's probes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProbes {
    pub startup: Option<ProbeModel>,
    pub liveness: Option<ProbeModel>,
    pub readiness: Option<ProbeModel>,
}

impl ContainerProbes {
    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.liveness.is_none() && self.readiness.is_none()
    }

    /// Reads and checks a container's probes against its behaviour; errors name the
    /// field and say why the oracle cannot predict it.
    pub fn resolve(
        container: &Container,
        behaviour: &Behaviour,
        others: &[(&Container, &Behaviour)],
        path: &str,
    ) -> Result<ContainerProbes, (String, String)> {
        let mut probes = ContainerProbes::default();
        for (name, probe, kind) in crate::validation::container_probes(container) {
            let Some(probe) = probe else { continue };
            let model = resolve_probe(
                probe,
                kind,
                container,
                behaviour,
                others,
                &format!("{path}.{name}"),
            )?;
            match kind {
                ProbeKind::Startup => probes.startup = Some(model),
                ProbeKind::Liveness => probes.liveness = Some(model),
                ProbeKind::Readiness => probes.readiness = Some(model),
            }
        }
        Ok(probes)
    }
}

fn seconds(value: Option<i32>, default: u64) -> SpecDuration {
    // SetDefaults_Probe turns 0 into the default; validation already refused negatives.
    match value {
        Some(v) if v > 0 => SpecDuration::from_secs(v as u64),
        _ => SpecDuration::from_secs(default),
    }
}

fn not_modelled(field: String, what: &str) -> Result<ProbeModel, (String, String)> {
    Err((
        field,
        format!("{what} is not modelled by the oracle yet; the scenario would be half-predicted"),
    ))
}

fn resolve_probe(
    probe: &Probe,
    kind: ProbeKind,
    container: &Container,
    behaviour: &Behaviour,
    others: &[(&Container, &Behaviour)],
    path: &str,
) -> Result<ProbeModel, (String, String)> {
    let health = behaviour.health.as_ref();
    let at = |field: &str| format!("{path}.{field}");
    let port_of = |port: &IntOrString| -> Option<i32> {
        match port {
            IntOrString::Int(number) => Some(*number),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        }
    };
    let foreign = |port: i32, field: String| -> Result<(), (String, String)> {
        let used_elsewhere = others.iter().any(|(_, b)| {
            b.health.as_ref().is_some_and(|h| {
                i32::from(h.port) == port
                    || h.grpc_port.map(i32::from) == Some(port)
                    || h.endpoints
                        .values()
                        .any(|e| e.tcp_port.map(i32::from) == Some(port))
            })
        });
        if used_elsewhere {
            Err((
                field,
                format!("port {port} belongs to another container's health endpoints; probes across containers are not modelled"),
            ))
        } else {
            Ok(())
        }
    };
    let endpoint_name = |name: &str| -> Option<String> {
        health.and_then(|h| h.endpoints.contains_key(name).then(|| name.to_owned()))
    };
    let (handler, reach) = if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        match command.as_slice() {
            [program, verb, name] if program == AGENT_PROGRAM && verb == "probe" => {
                let reach = if health.is_some() {
                    Reach::Endpoint(endpoint_name(name))
                } else {
                    Reach::Constant(Outcome::Failure)
                };
                (Handler::Exec, reach)
            }
            _ => {
                return not_modelled(
                    at("exec.command"),
                    "an exec probe other than [\"/podcheck-agent\", \"probe\", ENDPOINT]",
                )
            }
        }
    } else if let Some(http) = &probe.http_get {
        if http.host.as_deref().is_some_and(|h| !h.is_empty()) {
            return not_modelled(at("httpGet.host"), "a probe host other than the pod IP");
        }
        if http.scheme.as_deref() == Some("HTTPS") {
            return not_modelled(at("httpGet.scheme"), "HTTPS");
        }
        let reach = match port_of(&http.port) {
            // `port %q not found`: an error, which the kubelet discards.
            None => Reach::Constant(Outcome::Error),
            Some(port) => {
                foreign(port, at("httpGet.port"))?;
                match health {
                    Some(h) if i32::from(h.port) == port => {
                        let target = http.path.as_deref().unwrap_or("/");
                        let target = target.split('?').next().unwrap_or("");
                        Reach::Endpoint(endpoint_name(target.trim_start_matches('/')))
                    }
                    _ => Reach::Constant(Outcome::Failure),
                }
            }
        };
        (Handler::Http, reach)
    } else if let Some(tcp) = &probe.tcp_socket {
        if tcp.host.as_deref().is_some_and(|h| !h.is_empty()) {
            return not_modelled(at("tcpSocket.host"), "a probe host other than the pod IP");
        }
        let reach = match port_of(&tcp.port) {
            None => Reach::Constant(Outcome::Error),
            Some(port) => {
                foreign(port, at("tcpSocket.port"))?;
                match health {
                    Some(h) if i32::from(h.port) == port => Reach::HealthPort,
                    Some(h) => h
                        .endpoints
                        .iter()
                        .find(|(_, e)| e.tcp_port.map(i32::from) == Some(port))
                        .map_or(Reach::Constant(Outcome::Failure), |(name, _)| {
                            Reach::TcpEndpoint(name.clone())
                        }),
                    None => Reach::Constant(Outcome::Failure),
                }
            }
        };
        (Handler::Tcp, reach)
    } else if let Some(grpc) = &probe.grpc {
        foreign(grpc.port, at("grpc.port"))?;
        let reach = match health {
            Some(h) if h.grpc_port.map(i32::from) == Some(grpc.port) => {
                Reach::GrpcService(grpc.service.clone().unwrap_or_default())
            }
            _ => Reach::Constant(Outcome::Failure),
        };
        (Handler::Grpc, reach)
    } else {
        return Err((path.to_owned(), "must specify a handler type".to_owned()));
    };
    let mut model = ProbeModel {
        kind,
        handler,
        period: seconds(probe.period_seconds, 10),
        timeout: seconds(probe.timeout_seconds, 1),
        initial_delay: SpecDuration::from_secs(
            probe.initial_delay_seconds.unwrap_or(0).max(0) as u64
        ),
        success_threshold: probe.success_threshold.filter(|t| *t > 0).unwrap_or(1) as u32,
        failure_threshold: probe.failure_threshold.filter(|t| *t > 0).unwrap_or(3) as u32,
        reach,
        ambiguity: None,
    };
    // A slow answer within the margin of the timeout could go either way.
    if let Some(health) = health {
        for (name, endpoint) in &health.endpoints {
            if model.reach != Reach::Endpoint(Some(name.clone()))
                && model.reach != Reach::GrpcService(name.clone())
            {
                continue;
            }
            for scripted in &endpoint.answers {
                if let Answer::Slow(delay) = scripted.answer {
                    let distance = if delay > model.timeout {
                        delay - model.timeout
                    } else {
                        model.timeout - delay
                    };
                    if distance < AMBIGUITY_MARGIN {
                        model.ambiguity = Some(format!(
                            "{}: endpoint {name:?} answers after {delay}, within {AMBIGUITY_MARGIN} of the {} timeout: timing noise would decide the outcome",
                            at("timeoutSeconds"),
                            model.timeout
                        ));
                    }
                }
            }
        }
    }
    Ok(model)
}

/// A window, relative to the instance's start, in which something happens, with the rule
/// broken if it happens earlier and the rules broken if it happens later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub lo: SpecDuration,
    pub hi: SpecDuration,
    pub early_rule: &'static str,
    pub late_rules: Vec<&'static str>,
}

/// `ready` turns `to` within the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flip {
    pub to: bool,
    pub window: Window,
}

/// What the probes do to one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbePlan {
    /// When `started` turns true; None: never, while this instance runs.
    pub started: Option<Window>,
    /// The flips of `ready`, in order; it starts false.
    pub ready: Vec<Flip>,
    /// The probe that kills the instance, and when its exit shows.
    pub kill: Option<(ProbeKind, Window)>,
    /// Which probe kinds could have killed or flipped anything: used to name the rule a
    /// surprise breaks.
    pub probes: ContainerProbes,
    /// Whether the liveness probe ever fails (with or without reaching its threshold).
    pub liveness_fails: bool,
    /// Whether some liveness answer is slow but in time.
    pub liveness_slow_success: bool,
    /// The endpoint whose logged answers count the liveness failures before a kill, with
    /// the failure threshold: only when no other probe of the container asks it and every
    /// answer it gives is logged as what it is (no slow answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_log: Option<(String, u32)>,
    /// The same for the successes before the first time a readiness probe with a
    /// successThreshold above 1 makes the container ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_log: Option<(String, u32)>,
}

impl ProbeModel {
    /// The health endpoint this probe's requests are logged under, if any.
    pub fn endpoint(&self) -> Option<&str> {
        match &self.reach {
            Reach::Endpoint(Some(name)) | Reach::TcpEndpoint(name) => Some(name),
            Reach::GrpcService(name) if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

/// The endpoint whose answers in the workload's log are exactly `probe`'s results: no
/// other probe of the container asks it, and every answer is logged as what it is (no
/// slow answers; TCP refusals are not logged at all).
fn logged_endpoint(
    probe: Option<&ProbeModel>,
    others: [&Option<ProbeModel>; 2],
    health: Option<&Health>,
) -> Option<String> {
    let probe = probe?;
    if probe.handler == Handler::Tcp {
        return None;
    }
    let endpoint = probe.endpoint()?;
    let shared = others
        .into_iter()
        .flatten()
        .any(|p| p.endpoint() == Some(endpoint));
    let slow = health?
        .endpoints
        .get(endpoint)?
        .answers
        .iter()
        .any(|a| matches!(a.answer, Answer::Slow(_)));
    (!shared && !slow).then(|| endpoint.to_owned())
}

fn liveness_log(probes: &ContainerProbes, health: Option<&Health>) -> Option<(String, u32)> {
    let liveness = probes.liveness.as_ref()?;
    logged_endpoint(Some(liveness), [&probes.startup, &probes.readiness], health)
        .map(|endpoint| (endpoint, liveness.failure_threshold))
}

/// Like [`liveness_log`], for a readiness probe that needs more than one success.
fn readiness_log(probes: &ContainerProbes, health: Option<&Health>) -> Option<(String, u32)> {
    let readiness = probes
        .readiness
        .as_ref()
        .filter(|r| r.success_threshold > 1)?;
    logged_endpoint(Some(readiness), [&probes.startup, &probes.liveness], health)
        .map(|endpoint| (endpoint, readiness.success_threshold))
}

/// Consecutive results possibly in progress when an instance ended, by probe kind: the
/// kubelet's worker keeps counting on the next container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carry {
    pub startup: Outcomes,
    pub liveness: Outcomes,
    pub readiness: Outcomes,
}

/// A set of outcomes (success, failure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub success: bool,
    pub failure: bool,
}

impl Outcomes {
    pub fn contains(self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Success => self.success,
            Outcome::Failure => self.failure,
            Outcome::Error => false,
        }
    }

    fn with(mut self, outcome: Option<Outcome>) -> Self {
        match outcome {
            Some(Outcome::Success) => self.success = true,
            Some(Outcome::Failure) => self.failure = true,
            _ => {}
        }
        self
    }

    fn union(self, other: Outcomes) -> Outcomes {
        Outcomes {
            success: self.success || other.success,
            failure: self.failure || other.failure,
        }
    }
}

/// Whether `index` is the first segment with its outcome: the one a carried run continues.
fn first_of_its_outcome(segments: &[Segment], index: usize) -> bool {
    segments[..index]
        .iter()
        .all(|s| s.outcome != segments[index].outcome)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguous(pub String);

enum Crossing {
    At(SpecDuration, SpecDuration),
    Never,
}

/// When `probe` completes a run of its threshold of `segment.outcome` results, probing
/// from `gate` (the earliest and latest moment the probe may first run).
fn cross(
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
        Some(until) if until >= last_tick + AMBIGUITY_MARGIN => Ok(Crossing::At(lo, hi)),
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

/// The rule broken by a crossing that comes too late: the probe kind's, and the handler's
/// or the timeout's that produced the outcome.
fn late_rules(kind_rule: &'static str, probe: &ProbeModel, segment: &Segment) -> Vec<&'static str> {
    let cause = if segment.timed_out
        || (segment.outcome == Outcome::Success && segment.latency > SpecDuration::ZERO)
    {
        "probe.timeout"
    } else {
        probe.handler.rule()
    };
    vec![kind_rule, cause]
}

/// The rule broken by a crossing that comes too early, given what held it back.
fn early_rule(
    default: &'static str,
    probe: &ProbeModel,
    segment: &Segment,
    started: Option<(SpecDuration, SpecDuration)>,
) -> &'static str {
    let gated_by_delay = probe.initial_delay > segment.from;
    let gated_by_startup =
        started.is_some_and(|(lo, _)| lo > segment.from.max(probe.initial_delay));
    if gated_by_startup {
        "probe.startup.gates"
    } else if gated_by_delay {
        "probe.initial-delay"
    } else {
        default
    }
}

fn widen(window: (SpecDuration, SpecDuration)) -> (SpecDuration, SpecDuration) {
    (
        window.0.saturating_sub(PROBE_SLACK),
        window.1 + PROBE_SLACK + PROBE_ACTION_LAG,
    )
}

/// Whether a segment follows an opposite one short enough to be missed by every tick, so
/// that its run may continue the one before.
fn may_continue(segments: &[Segment], index: usize, probe: &ProbeModel) -> bool {
    index >= 2
        && segments[index - 2].outcome == segments[index].outcome
        && segments[index - 1]
            .until
            .is_some_and(|until| until < segments[index - 1].from + probe.period + AMBIGUITY_MARGIN)
}

/// What the probes do to an instance whose own process exits at `exits_at` (None: never).
///
/// The process listens anywhere from at once to [`LISTEN_LATENCY`] after its start (or
/// its `listenAfter`): both extremes are planned, and they must agree on what happens;
/// the windows cover both.
pub fn plan_instance(
    probes: &ContainerProbes,
    health: Option<&Health>,
    carry: Carry,
    exits_at: Option<SpecDuration>,
) -> Result<(ProbePlan, Carry), Ambiguous> {
    let (fast, fast_carry) =
        plan_listening_after(probes, health, carry, exits_at, SpecDuration::ZERO)?;
    let (slow, slow_carry) = plan_listening_after(probes, health, carry, exits_at, LISTEN_LATENCY)?;
    let disagree = |what: &str| {
        Ambiguous(format!(
            "whether the process listens at once or up to {LISTEN_LATENCY} after it starts decides {what}"
        ))
    };
    let union = |a: &Window, b: &Window| Window {
        lo: a.lo.min(b.lo),
        hi: a.hi.max(b.hi),
        early_rule: a.early_rule,
        late_rules: a.late_rules.clone(),
    };
    let started = match (&fast.started, &slow.started) {
        (None, None) => None,
        (Some(a), Some(b)) => Some(union(a, b)),
        _ => return Err(disagree("whether the container is started")),
    };
    let kill = match (&fast.kill, &slow.kill) {
        (None, None) => None,
        (Some((kind, a)), Some((other, b))) if kind == other => Some((*kind, union(a, b))),
        _ => return Err(disagree("whether a probe kills the container")),
    };
    if fast.ready.len() != slow.ready.len()
        || fast
            .ready
            .iter()
            .zip(&slow.ready)
            .any(|(a, b)| a.to != b.to)
    {
        return Err(disagree("when the container is ready"));
    }
    let ready = fast
        .ready
        .iter()
        .zip(&slow.ready)
        .map(|(a, b)| Flip {
            to: a.to,
            window: union(&a.window, &b.window),
        })
        .collect();
    let carry = Carry {
        startup: fast_carry.startup.union(slow_carry.startup),
        liveness: fast_carry.liveness.union(slow_carry.liveness),
        readiness: fast_carry.readiness.union(slow_carry.readiness),
    };
    Ok((
        ProbePlan {
            started,
            ready,
            kill,
            probes: fast.probes,
            liveness_fails: fast.liveness_fails || slow.liveness_fails,
            liveness_slow_success: fast.liveness_slow_success || slow.liveness_slow_success,
            liveness_log: fast.liveness_log.filter(|_| slow.liveness_log.is_some()),
            readiness_log: fast.readiness_log,
        },
        carry,
    ))
}

fn plan_listening_after(
    probes: &ContainerProbes,
    health: Option<&Health>,
    carry: Carry,
    exits_at: Option<SpecDuration>,
    latency: SpecDuration,
) -> Result<(ProbePlan, Carry), Ambiguous> {
    let mut plan = ProbePlan {
        started: None,
        ready: Vec::new(),
        kill: None,
        probes: probes.clone(),
        liveness_fails: probes.liveness.as_ref().is_some_and(|l| {
            l.segments(health, latency)
                .iter()
                .any(|s| s.outcome == Outcome::Failure)
        }),
        liveness_slow_success: probes
            .liveness
            .as_ref()
            .is_some_and(|l| l.has_slow_success(health)),
        liveness_log: liveness_log(probes, health),
        readiness_log: readiness_log(probes, health),
    };
    if let Some(reason) = [&probes.startup, &probes.liveness, &probes.readiness]
        .into_iter()
        .flatten()
        .find_map(|p| p.ambiguity.clone())
    {
        return Err(Ambiguous(reason));
    }
    let mut carry_out = Carry::default();
    // The instance ends at its own exit or at a kill, whichever comes first.
    let mut end = exits_at;
    let mut kill_at: Option<(ProbeKind, (SpecDuration, SpecDuration), Window)> = None;

    // Startup: runs from its initial delay until it succeeds or fails for good.
    let started_internal: Option<(SpecDuration, SpecDuration)> = match &probes.startup {
        None => Some((SpecDuration::ZERO, SpecDuration::ZERO)),
        Some(startup) => {
            let gate = (startup.initial_delay, startup.initial_delay);
            let segments = startup.segments(health, latency);
            let mut started = None;
            for (index, segment) in segments.iter().enumerate() {
                if segment.outcome == Outcome::Error {
                    continue;
                }
                let carried = (first_of_its_outcome(&segments, index)
                    && carry.startup.contains(segment.outcome))
                    || may_continue(&segments, index, startup);
                match cross(startup, segment, gate, false, carried)? {
                    Crossing::Never => continue,
                    Crossing::At(lo, hi) if segment.outcome == Outcome::Success => {
                        started = Some((lo, hi));
                        plan.started = Some(Window {
                            lo: widen((lo, hi)).0,
                            hi: widen((lo, hi)).1,
                            early_rule: early_rule("probe.startup.started", startup, segment, None),
                            late_rules: late_rules("probe.startup.started", startup, segment),
                        });
                        break;
                    }
                    Crossing::At(lo, hi) => {
                        let window = widen((lo, hi));
                        kill_at = Some((
                            ProbeKind::Startup,
                            (lo, hi),
                            Window {
                                lo: window.0,
                                hi: window.1,
                                early_rule: early_rule(
                                    "probe.startup.failure-restart",
                                    startup,
                                    segment,
                                    None,
                                ),
                                late_rules: late_rules(
                                    "probe.startup.failure-restart",
                                    startup,
                                    segment,
                                ),
                            },
                        ));
                        break;
                    }
                }
            }
            started
        }
    };
    if probes.startup.is_none() {
        plan.started = Some(Window {
            lo: SpecDuration::ZERO,
            hi: SpecDuration::ZERO,
            early_rule: "probe.startup.started",
            late_rules: vec!["probe.startup.started"],
        });
    }

    // Liveness: from its delay and the start, until it fails for good.
    if let (Some(liveness), Some(started), None) = (&probes.liveness, started_internal, &kill_at) {
        let gate = (
            liveness.initial_delay.max(started.0),
            liveness.initial_delay.max(started.1),
        );
        let segments = liveness.segments(health, latency);
        for (index, segment) in segments.iter().enumerate() {
            if segment.outcome != Outcome::Failure {
                continue;
            }
            let carried = (first_of_its_outcome(&segments, index)
                && carry.liveness.contains(Outcome::Failure))
                || may_continue(&segments, index, liveness);
            if let Crossing::At(lo, hi) = cross(liveness, segment, gate, false, carried)? {
                // The log shows the run only if every failure in it was answered (not a
                // refused connection) and logged on this instance.
                let answered = index >= 1
                    && segments[index - 1].outcome == Outcome::Success
                    && !carried
                    && health.is_some_and(|h| segment.from >= h.listen_after + latency)
                    && gate.0 <= segment.from;
                if !answered {
                    plan.liveness_log = None;
                }
                let window = widen((lo, hi));
                let startup_gate = probes.startup.as_ref().map(|_| started);
                kill_at = Some((
                    ProbeKind::Liveness,
                    (lo, hi),
                    Window {
                        lo: window.0,
                        hi: window.1,
                        early_rule: early_rule(
                            "probe.liveness.failure-threshold",
                            liveness,
                            segment,
                            startup_gate,
                        ),
                        late_rules: late_rules("probe.liveness.restart", liveness, segment),
                    },
                ));
                break;
            }
        }
    }

    if let Some((kind, (lo, hi), window)) = kill_at {
        match exits_at {
            Some(exit) if exit + AMBIGUITY_MARGIN + PROBE_SLACK < lo => {}
            Some(exit) if exit <= hi + AMBIGUITY_MARGIN + PROBE_SLACK => {
                return Err(Ambiguous(format!(
                    "the process exits at {exit}, inside the window [{lo}, {hi}] in which the {kind:?} probe kills it"
                )));
            }
            _ => {
                // Readiness may still flip until the latest kill; after the earliest one the
                // checker accepts a container turning unready as it dies.
                end = Some(window.hi);
                plan.kill = Some((kind, window));
            }
        }
    }
    if plan.kill.is_some() {
        // The killed instance never reaches a later start.
        if matches!(plan.kill, Some((ProbeKind::Startup, _))) {
            plan.started = None;
        }
    }

    // Readiness: from its delay and the start; flips until the instance ends.
    if let (Some(readiness), Some(started)) = (&probes.readiness, started_internal) {
        let gate = (
            readiness.initial_delay.max(started.0),
            readiness.initial_delay.max(started.1),
        );
        let startup_gate = probes.startup.as_ref().map(|_| started);
        let segments = readiness.segments(health, latency);
        let mut cached = Outcome::Failure;
        let mut first = true;
        for (index, segment) in segments.iter().enumerate() {
            if end.is_some_and(|end| segment.from >= end) {
                break;
            }
            if segment.outcome == Outcome::Error || segment.outcome == cached {
                continue;
            }
            let carried = (first_of_its_outcome(&segments, index)
                && carry.readiness.contains(segment.outcome))
                || may_continue(&segments, index, readiness);
            let on_demand = segment.outcome == Outcome::Success;
            match cross(readiness, segment, gate, on_demand, carried)? {
                Crossing::Never => {}
                Crossing::At(lo, hi) => {
                    if end.is_some_and(|end| lo >= end) {
                        break;
                    }
                    let to = segment.outcome == Outcome::Success;
                    let default = if !to {
                        "probe.readiness.transitions"
                    } else if first {
                        "probe.readiness.initial-failure"
                    } else {
                        "probe.readiness.transitions"
                    };
                    let window = widen((lo, hi));
                    plan.ready.push(Flip {
                        to,
                        window: Window {
                            lo: window.0,
                            hi: window.1,
                            early_rule: early_rule(default, readiness, segment, startup_gate),
                            late_rules: late_rules(
                                "probe.readiness.transitions",
                                readiness,
                                segment,
                            ),
                        },
                    });
                    cached = segment.outcome;
                    first = false;
                }
            }
        }
    }

    // What a worker may still be counting when the instance ends: the outcome of the
    // moment, and failures, since a worker probes a dying process until the kubelet sees
    // its exit. A kill puts liveness and startup on hold, which zeroes their runs.
    if let Some(at) = end {
        let outcome_at = |probe: &Option<ProbeModel>, gate: SpecDuration| {
            let probe = probe.as_ref()?;
            if at < gate.max(probe.initial_delay) {
                return None;
            }
            probe
                .segments(health, latency)
                .iter()
                .find(|s| s.from <= at && s.until.is_none_or(|u| at < u))
                .map(|s| s.outcome)
                .filter(|o| *o != Outcome::Error)
        };
        let dying = Outcomes {
            success: false,
            failure: true,
        };
        let started_from = started_internal.map(|(lo, _)| lo);
        if plan.kill.is_none() {
            if probes.startup.is_some() && started_internal.is_none_or(|(_, hi)| at <= hi) {
                carry_out.startup = dying.with(outcome_at(&probes.startup, SpecDuration::ZERO));
            }
            if let Some(from) = started_from {
                if outcome_at(&probes.liveness, from).is_some() {
                    carry_out.liveness = dying.with(outcome_at(&probes.liveness, from));
                }
            }
        }
        if let Some(from) = started_from {
            if outcome_at(&probes.readiness, from).is_some() {
                carry_out.readiness = dying.with(outcome_at(&probes.readiness, from));
            }
        }
    }
    Ok((plan, carry_out))
}

impl ProbePlan {
    /// The last moment any planned probe effect may still show.
    pub fn quiet_after(&self) -> SpecDuration {
        let mut at = SpecDuration::ZERO;
        if let Some(window) = &self.started {
            at = at.max(window.hi);
        }
        for flip in &self.ready {
            at = at.max(flip.window.hi);
        }
        if let Some((_, window)) = &self.kill {
            at = at.max(window.hi);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::{Endpoint, Run, Scripted};
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};
    use std::collections::BTreeMap;

    fn secs(s: u64) -> SpecDuration {
        SpecDuration::from_secs(s)
    }

    fn health(answers: Vec<Scripted>) -> Health {
        Health {
            port: 8080,
            listen_after: SpecDuration::ZERO,
            grpc_port: None,
            endpoints: BTreeMap::from([(
                "live".to_owned(),
                Endpoint {
                    tcp_port: None,
                    answers,
                },
            )]),
        }
    }

    fn http_probe(port: IntOrString, period: i32, failure: i32) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/live".to_owned()),
                port,
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(period),
            failure_threshold: Some(failure),
            ..Probe::default()
        }
    }

    fn resolve(container: &Container, behaviour: &Behaviour) -> ContainerProbes {
        match ContainerProbes::resolve(container, behaviour, &[], "c") {
            Ok(probes) => probes,
            Err(err) => panic!("probes do not resolve: {err:?}"),
        }
    }

    fn behaviour(health: Health) -> Behaviour {
        Behaviour {
            starts: Vec::new(),
            then: Run::Forever,
            health: Some(health),
        }
    }

    #[test]
    fn liveness_kills_within_threshold_periods_of_the_first_failure() {
        let health = health(vec![
            Scripted {
                answer: Answer::Ok,
                for_: Some(secs(30)),
            },
            Scripted {
                answer: Answer::Fail,
                for_: None,
            },
        ]);
        let container = Container {
            name: "app".to_owned(),
            liveness_probe: Some(http_probe(IntOrString::Int(8080), 10, 3)),
            ..Container::default()
        };
        let probes = resolve(&container, &behaviour(health.clone()));
        let (plan, _) = plan_instance(&probes, Some(&health), Carry::default(), None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let (kind, window) = plan.kill.clone().unwrap_or_else(|| panic!("no kill"));
        assert_eq!(kind, ProbeKind::Liveness);
        // Failures from 30s; three ticks 10s apart: the third between 50s and 60s.
        assert_eq!(window.lo, secs(49));
        assert_eq!(window.hi, secs(63));
        // Without a startup probe the container is started as soon as it runs.
        assert_eq!(plan.started.map(|w| (w.lo, w.hi)), Some((secs(0), secs(0))));
    }

    #[test]
    fn a_missing_named_port_is_an_error_that_never_kills() {
        let health = health(vec![Scripted {
            answer: Answer::Fail,
            for_: None,
        }]);
        let container = Container {
            name: "app".to_owned(),
            ports: Some(vec![ContainerPort {
                container_port: 8080,
                name: Some("http".to_owned()),
                ..ContainerPort::default()
            }]),
            liveness_probe: Some(http_probe(IntOrString::String("metrics".to_owned()), 5, 1)),
            ..Container::default()
        };
        let probes = resolve(&container, &behaviour(health.clone()));
        let (plan, _) = plan_instance(&probes, Some(&health), Carry::default(), None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(plan.kill.is_none());
        // The same probe by the declared name fails and kills.
        let named = Container {
            liveness_probe: Some(http_probe(IntOrString::String("http".to_owned()), 5, 1)),
            ..container
        };
        let probes = resolve(&named, &behaviour(health.clone()));
        let (plan, _) = plan_instance(&probes, Some(&health), Carry::default(), None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(plan.kill.is_some());
    }

    #[test]
    fn a_short_blip_near_the_threshold_is_refused() {
        let health = health(vec![
            Scripted {
                answer: Answer::Ok,
                for_: Some(secs(30)),
            },
            Scripted {
                answer: Answer::Fail,
                for_: Some(secs(25)),
            },
            Scripted {
                answer: Answer::Ok,
                for_: None,
            },
        ]);
        let container = Container {
            name: "app".to_owned(),
            liveness_probe: Some(http_probe(IntOrString::Int(8080), 10, 3)),
            ..Container::default()
        };
        let probes = resolve(&container, &behaviour(health.clone()));
        assert!(plan_instance(&probes, Some(&health), Carry::default(), None).is_err());
    }
}
