//! Hostile scenario text: a structure (`arbitrary::Arbitrary`) that renders to scenario YAML
//! with values anywhere in and out of range, and byte-level edits of any scenario text.
//!
//! The structure covers what a scenario can say (init containers, sidecars and regular
//! containers, restart policies, probes, hooks, behaviours, faults, `observeFor`, kubelet
//! settings), with every integer and duration drawn from what a person or a mutation could
//! write: 0, -1, the extremes of i32 and i64, numbers past them, durations in every syntax
//! (`10s`, `1m30s`, `250ms`, bare numbers, fractions, `999999999999999999992s`,
//! `0.0000001ms`). Names come from small pools so that the containers, behaviours, probes
//! and faults of one scenario refer to each other and validation is passed often enough
//! for the oracle itself to be exercised.
//!
//! [`FuzzInput`] is the fuzz target's input format: scenario text as is (the suite files
//! are valid inputs), or the structure, each followed by [`TextMutation`]s.

use arbitrary::{Arbitrary, Unstructured};
use std::fmt::Write as _;

/// An integer field as written: in range, at its edges, or past what any type holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileInt {
    Zero,
    MinusOne,
    /// 1 to 10: what scenarios usually say.
    Small(u8),
    Any(i32),
    I32Max,
    I32Min,
    I64Max,
    I64Min,
    /// Past i64 and u64: `99999999999999999999999`.
    PastI64,
    /// `1.5`: a fraction where an integer belongs.
    Fraction(u8),
    /// `"7"`: a string where an integer belongs.
    Quoted(u8),
}

impl HostileInt {
    pub fn render(self) -> String {
        match self {
            HostileInt::Zero => "0".to_owned(),
            HostileInt::MinusOne => "-1".to_owned(),
            HostileInt::Small(n) => (1 + u32::from(n) % 10).to_string(),
            HostileInt::Any(n) => n.to_string(),
            HostileInt::I32Max => i32::MAX.to_string(),
            HostileInt::I32Min => i32::MIN.to_string(),
            HostileInt::I64Max => i64::MAX.to_string(),
            HostileInt::I64Min => i64::MIN.to_string(),
            HostileInt::PastI64 => "99999999999999999999999".to_owned(),
            HostileInt::Fraction(n) => format!("{}.5", n % 10),
            HostileInt::Quoted(n) => format!("\"{}\"", n % 10),
        }
    }
}

/// A duration as written, in every syntax `SpecDuration` reads and some it must refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileDuration {
    /// `10s`
    Secs(u16),
    /// `1m30s`
    MinSecs(u8, u8),
    /// `250ms`
    Millis(u32),
    /// `1h2m3s`
    Hms(u8, u8, u8),
    /// `10`: a bare number of seconds.
    Bare(u16),
    /// `1.25`: a bare fraction of seconds.
    BareFraction(u16, u8),
    /// `0.5s`
    FractionSecs(u8, u8),
    Zero,
    /// `0.0000001ms`
    Tiny,
    /// `999999999999999999992s`
    Huge,
    /// A bare integer number of seconds whose milliseconds overflow u64.
    HugeBare,
    /// `100000000h`
    HugeHours,
    /// `1e300`
    Exponent,
    /// `-1s`
    Negative,
    /// `10parsecs`
    UnknownUnit,
    /// `""`
    Empty,
    /// `25h`: just past a day.
    PastADay,
    /// `1h`, a typical long observation.
    Hour,
}

impl HostileDuration {
    pub fn render(self) -> String {
        match self {
            HostileDuration::Secs(s) => format!("{}s", s % 400),
            HostileDuration::MinSecs(m, s) => format!("{}m{}s", m % 10, s % 60),
            HostileDuration::Millis(ms) => format!("{}ms", ms % 100_000),
            HostileDuration::Hms(h, m, s) => format!("{}h{}m{}s", h % 3, m % 60, s % 60),
            HostileDuration::Bare(s) => (s % 400).to_string(),
            HostileDuration::BareFraction(s, f) => format!("{}.{}", s % 100, f),
            HostileDuration::FractionSecs(s, f) => format!("{}.{}s", s % 100, f),
            HostileDuration::Zero => "0".to_owned(),
            HostileDuration::Tiny => "0.0000001ms".to_owned(),
            HostileDuration::Huge => "999999999999999999992s".to_owned(),
            HostileDuration::HugeBare => "18446744073709551615".to_owned(),
            HostileDuration::HugeHours => "100000000h".to_owned(),
            HostileDuration::Exponent => "1e300".to_owned(),
            HostileDuration::Negative => "-1s".to_owned(),
            HostileDuration::UnknownUnit => "10parsecs".to_owned(),
            HostileDuration::Empty => "\"\"".to_owned(),
            HostileDuration::PastADay => "25h".to_owned(),
            HostileDuration::Hour => "1h".to_owned(),
        }
    }
}

/// A name from a small pool shared by containers, behaviours, hooks and faults, so that
/// they refer to each other; the last ones are invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileName {
    App,
    Side,
    Init,
    Debugger,
    Live,
    Ready,
    /// Upper case: not a DNS label.
    Upper,
    /// `""`
    Empty,
    /// 64 characters: one over the DNS label limit.
    TooLong,
}

impl HostileName {
    pub fn render(self) -> String {
        match self {
            HostileName::App => "app".to_owned(),
            HostileName::Side => "side".to_owned(),
            HostileName::Init => "init".to_owned(),
            HostileName::Debugger => "debugger".to_owned(),
            HostileName::Live => "live".to_owned(),
            HostileName::Ready => "ready".to_owned(),
            HostileName::Upper => "App".to_owned(),
            HostileName::Empty => "\"\"".to_owned(),
            HostileName::TooLong => "a".repeat(64),
        }
    }
}

/// A port: the pool's usual health ports, a named port, or out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostilePort {
    Health,
    Other,
    Grpc,
    Named,
    UnknownName,
    Number(HostileInt),
}

impl HostilePort {
    pub fn render(self) -> String {
        match self {
            HostilePort::Health => "8080".to_owned(),
            HostilePort::Other => "8081".to_owned(),
            HostilePort::Grpc => "9090".to_owned(),
            HostilePort::Named => "health".to_owned(),
            HostilePort::UnknownName => "nope".to_owned(),
            HostilePort::Number(n) => n.render(),
        }
    }

    /// As a `containerPort`, which takes numbers only: a name becomes a number.
    pub fn render_number(self) -> String {
        match self {
            HostilePort::Named => "8080".to_owned(),
            HostilePort::UnknownName => "8081".to_owned(),
            other => other.render(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileProbeHandler {
    /// `/podcheck-agent probe ENDPOINT`.
    Exec(HostileName),
    /// Another command, which the probe model refuses.
    ExecOther,
    HttpGet {
        endpoint: HostileName,
        port: HostilePort,
    },
    TcpSocket(HostilePort),
    Grpc {
        port: HostilePort,
        service: Option<HostileName>,
    },
    /// No handler at all.
    Missing,
}

#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HostileProbe {
    pub handler: HostileProbeHandler,
    pub initial_delay_seconds: Option<HostileInt>,
    pub timeout_seconds: Option<HostileInt>,
    pub period_seconds: Option<HostileInt>,
    pub success_threshold: Option<HostileInt>,
    pub failure_threshold: Option<HostileInt>,
    pub termination_grace_period_seconds: Option<HostileInt>,
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileHookHandler {
    /// `/podcheck-agent hook NAME`.
    Exec(HostileName),
    HttpGet {
        hook: HostileName,
        port: HostilePort,
    },
    Sleep(HostileInt),
    TcpSocket(HostilePort),
}

#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HostileContainer {
    pub name: HostileName,
    /// `restartPolicy: Always` on an init container makes it a sidecar; other values are
    /// refused on init containers and (here) written on regular ones too.
    pub restart_policy: Option<HostileContainerRestartPolicy>,
    /// `ports: [{name: health, containerPort: N}]`
    pub health_port: Option<HostilePort>,
    pub liveness_probe: Option<HostileProbe>,
    pub readiness_probe: Option<HostileProbe>,
    pub startup_probe: Option<HostileProbe>,
    pub post_start: Option<HostileHookHandler>,
    pub pre_stop: Option<HostileHookHandler>,
    /// Its behaviour, under its name (the first container of a name gives it).
    pub behaviour: HostileBehaviour,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileContainerRestartPolicy {
    Always,
    Never,
    Garbage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileRun {
    Exit {
        after: HostileDuration,
        code: HostileInt,
    },
    /// An exit with a usual code (0, 1 or 137).
    ExitUsual {
        after: HostileDuration,
        code: u8,
    },
    Forever,
    /// Neither `forever` nor an exit.
    Garbage,
}

impl HostileRun {
    fn render(self) -> String {
        match self {
            HostileRun::Exit { after, code } => format!(
                "{{exit: {{after: {}, code: {}}}}}",
                after.render(),
                code.render()
            ),
            HostileRun::ExitUsual { after, code } => format!(
                "{{exit: {{after: {}, code: {}}}}}",
                after.render(),
                [0, 1, 137][usize::from(code) % 3]
            ),
            HostileRun::Forever => "forever".to_owned(),
            HostileRun::Garbage => "sometimes".to_owned(),
        }
    }
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileOnSigterm {
    Die,
    Ignore,
    Exit {
        after: HostileDuration,
        code: HostileInt,
    },
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileAnswer {
    Ok,
    Fail,
    Slow(HostileDuration),
}

#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HostileEndpoint {
    pub name: HostileName,
    pub tcp_port: Option<HostilePort>,
    pub answers: Vec<(HostileAnswer, Option<HostileDuration>)>,
}

#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HostileHealth {
    pub port: Option<HostilePort>,
    pub listen_after: Option<HostileDuration>,
    pub grpc_port: Option<HostilePort>,
    pub endpoints: Vec<HostileEndpoint>,
}

#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HostileBehaviour {
    pub starts: Vec<HostileRun>,
    pub then: HostileRun,
    pub on_sigterm: Option<HostileOnSigterm>,
    pub health: Option<HostileHealth>,
    pub hooks: Vec<(HostileName, Option<HostileDuration>, bool)>,
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileFaultAction {
    KillContainer(HostileName),
    Delete(Option<HostileInt>),
    ForceDelete,
    RemoveFinalizer(bool),
    RestartNodeAgent,
    AddEphemeralContainer {
        name: HostileName,
        target: Option<HostileName>,
    },
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostileFault {
    pub at: HostileDuration,
    pub action: HostileFaultAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostilePodRestartPolicy {
    Always,
    OnFailure,
    Never,
    Garbage,
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostileKubelet {
    pub crash_loop_back_off_max: Option<bool>,
    pub reduce_default_decay: Option<bool>,
    pub max_container_restart_period: Option<HostileDuration>,
}

/// A whole scenario, every part of it possibly out of range.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct HostileScenario {
    pub observe_for: Option<HostileDuration>,
    pub kubelet: Option<HostileKubelet>,
    pub restart_policy: Option<HostilePodRestartPolicy>,
    pub termination_grace_period_seconds: Option<HostileInt>,
    pub finalizer: bool,
    pub init_containers: Vec<HostileContainer>,
    /// The first regular container (an edit may still empty the list).
    pub container: HostileContainer,
    pub more_containers: Vec<HostileContainer>,
    /// Behaviours of names no container has: ephemeral containers' (or none at all).
    pub other_behaviours: Vec<(HostileName, HostileBehaviour)>,
    pub faults: Vec<HostileFault>,
}

/// Most drawn values are what scenarios usually say, so that validation passes often
/// enough for the oracle to be exercised; the rest are the edges. Bytes running out give
/// the usual value.
fn usual(u: &mut Unstructured<'_>, percent: u8) -> arbitrary::Result<bool> {
    Ok(u.int_in_range(0..=99u8)? < percent)
}

impl<'a> Arbitrary<'a> for HostileInt {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        if usual(u, 92)? {
            return Ok(HostileInt::Small(u.arbitrary()?));
        }
        Ok(match u.int_in_range(0..=10u8)? {
            0 => HostileInt::Zero,
            1 => HostileInt::MinusOne,
            2 => HostileInt::Any(u.arbitrary()?),
            3 => HostileInt::I32Max,
            4 => HostileInt::I32Min,
            5 => HostileInt::I64Max,
            6 => HostileInt::I64Min,
            7 => HostileInt::PastI64,
            8 => HostileInt::Fraction(u.arbitrary()?),
            9 => HostileInt::Quoted(u.arbitrary()?),
            _ => HostileInt::Zero,
        })
    }
}

impl<'a> Arbitrary<'a> for HostileDuration {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        if usual(u, 90)? {
            return Ok(match u.int_in_range(0..=6u8)? {
                0 => HostileDuration::Secs(u.arbitrary()?),
                1 => HostileDuration::MinSecs(u.arbitrary()?, u.arbitrary()?),
                2 => HostileDuration::Millis(u.arbitrary()?),
                3 => HostileDuration::Hms(u.arbitrary()?, u.arbitrary()?, u.arbitrary()?),
                4 => HostileDuration::Bare(u.arbitrary()?),
                5 => HostileDuration::BareFraction(u.arbitrary()?, u.arbitrary()?),
                _ => HostileDuration::FractionSecs(u.arbitrary()?, u.arbitrary()?),
            });
        }
        Ok(match u.int_in_range(0..=11u8)? {
            0 => HostileDuration::Zero,
            1 => HostileDuration::Tiny,
            2 => HostileDuration::Huge,
            3 => HostileDuration::HugeBare,
            4 => HostileDuration::HugeHours,
            5 => HostileDuration::Exponent,
            6 => HostileDuration::Negative,
            7 => HostileDuration::UnknownUnit,
            8 => HostileDuration::Empty,
            9 => HostileDuration::PastADay,
            10 => HostileDuration::Hour,
            _ => HostileDuration::Zero,
        })
    }
}

impl<'a> Arbitrary<'a> for HostileName {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        if usual(u, 90)? {
            return Ok(match u.int_in_range(0..=5u8)? {
                0 => HostileName::App,
                1 => HostileName::Side,
                2 => HostileName::Init,
                3 => HostileName::Debugger,
                4 => HostileName::Live,
                _ => HostileName::Ready,
            });
        }
        Ok(match u.int_in_range(0..=2u8)? {
            0 => HostileName::Upper,
            1 => HostileName::Empty,
            _ => HostileName::TooLong,
        })
    }
}

impl<'a> Arbitrary<'a> for HostilePort {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        if usual(u, 85)? {
            return Ok(match u.int_in_range(0..=3u8)? {
                0 => HostilePort::Health,
                1 => HostilePort::Other,
                2 => HostilePort::Grpc,
                _ => HostilePort::Named,
            });
        }
        Ok(match u.int_in_range(0..=1u8)? {
            0 => HostilePort::UnknownName,
            _ => HostilePort::Number(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for HostileRun {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=19u8)? {
            0..=8 => HostileRun::ExitUsual {
                after: u.arbitrary()?,
                code: u.arbitrary()?,
            },
            9..=15 => HostileRun::Forever,
            16..=18 => HostileRun::Exit {
                after: u.arbitrary()?,
                code: u.arbitrary()?,
            },
            _ => HostileRun::Garbage,
        })
    }
}

impl<'a> Arbitrary<'a> for HostileProbeHandler {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=19u8)? {
            0..=4 => HostileProbeHandler::Exec(u.arbitrary()?),
            5..=9 => HostileProbeHandler::HttpGet {
                endpoint: u.arbitrary()?,
                port: u.arbitrary()?,
            },
            10..=13 => HostileProbeHandler::TcpSocket(u.arbitrary()?),
            14..=17 => HostileProbeHandler::Grpc {
                port: u.arbitrary()?,
                service: u.arbitrary()?,
            },
            18 => HostileProbeHandler::ExecOther,
            _ => HostileProbeHandler::Missing,
        })
    }
}

impl<'a> Arbitrary<'a> for HostileContainerRestartPolicy {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=9u8)? {
            0..=7 => HostileContainerRestartPolicy::Always,
            8 => HostileContainerRestartPolicy::Never,
            _ => HostileContainerRestartPolicy::Garbage,
        })
    }
}

impl<'a> Arbitrary<'a> for HostilePodRestartPolicy {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=19u8)? {
            0..=5 => HostilePodRestartPolicy::Always,
            6..=11 => HostilePodRestartPolicy::OnFailure,
            12..=18 => HostilePodRestartPolicy::Never,
            _ => HostilePodRestartPolicy::Garbage,
        })
    }
}

/// At most this many of each list are rendered: bigger scenarios show nothing new and
/// slow every execution down.
const MAX_LIST: usize = 4;

const FINALIZER: &str = "podcheck.io/hold";

fn line(out: &mut String, indent: usize, text: &str) {
    let _ = writeln!(out, "{:indent$}{text}", "");
}

fn render_probe(out: &mut String, indent: usize, field: &str, probe: &HostileProbe) {
    line(out, indent, &format!("{field}:"));
    let inner = indent + 2;
    match probe.handler {
        HostileProbeHandler::Exec(endpoint) => line(
            out,
            inner,
            &format!(
                "exec: {{command: [/podcheck-agent, probe, {}]}}",
                endpoint.render()
            ),
        ),
        HostileProbeHandler::ExecOther => line(out, inner, "exec: {command: [cat, /tmp/healthy]}"),
        HostileProbeHandler::HttpGet { endpoint, port } => line(
            out,
            inner,
            &format!(
                "httpGet: {{path: /{}, port: {}}}",
                endpoint.render().trim_matches('"'),
                port.render()
            ),
        ),
        HostileProbeHandler::TcpSocket(port) => line(
            out,
            inner,
            &format!("tcpSocket: {{port: {}}}", port.render()),
        ),
        HostileProbeHandler::Grpc { port, service } => {
            let service = service
                .map(|s| format!(", service: {}", s.render()))
                .unwrap_or_default();
            line(
                out,
                inner,
                &format!("grpc: {{port: {}{service}}}", port.render_number()),
            )
        }
        HostileProbeHandler::Missing => {}
    }
    for (name, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
        (
            "terminationGracePeriodSeconds",
            probe.termination_grace_period_seconds,
        ),
    ] {
        if let Some(value) = value {
            line(out, inner, &format!("{name}: {}", value.render()));
        }
    }
}

fn render_hook(out: &mut String, indent: usize, field: &str, hook: HostileHookHandler) {
    let handler = match hook {
        HostileHookHandler::Exec(name) => format!(
            "exec: {{command: [/podcheck-agent, hook, {}]}}",
            name.render()
        ),
        HostileHookHandler::HttpGet { hook, port } => format!(
            "httpGet: {{path: /hook/{}, port: {}}}",
            hook.render().trim_matches('"'),
            port.render()
        ),
        HostileHookHandler::Sleep(seconds) => format!("sleep: {{seconds: {}}}", seconds.render()),
        HostileHookHandler::TcpSocket(port) => format!("tcpSocket: {{port: {}}}", port.render()),
    };
    line(out, indent, &format!("{field}:"));
    line(out, indent + 2, &handler);
}

fn render_container(out: &mut String, container: &HostileContainer) {
    line(out, 6, &format!("- name: {}", container.name.render()));
    let indent = 8;
    if let Some(policy) = container.restart_policy {
        let policy = match policy {
            HostileContainerRestartPolicy::Always => "Always",
            HostileContainerRestartPolicy::Never => "Never",
            HostileContainerRestartPolicy::Garbage => "Sometimes",
        };
        line(out, indent, &format!("restartPolicy: {policy}"));
    }
    if let Some(port) = container.health_port {
        line(
            out,
            indent,
            &format!(
                "ports: [{{name: health, containerPort: {}}}]",
                port.render_number()
            ),
        );
    }
    for (field, probe) in [
        ("livenessProbe", &container.liveness_probe),
        ("readinessProbe", &container.readiness_probe),
        ("startupProbe", &container.startup_probe),
    ] {
        if let Some(probe) = probe {
            render_probe(out, indent, field, probe);
        }
    }
    if container.post_start.is_some() || container.pre_stop.is_some() {
        line(out, indent, "lifecycle:");
        if let Some(hook) = container.post_start {
            render_hook(out, indent + 2, "postStart", hook);
        }
        if let Some(hook) = container.pre_stop {
            render_hook(out, indent + 2, "preStop", hook);
        }
    }
}

fn render_behaviour(out: &mut String, name: &str, behaviour: &HostileBehaviour) {
    line(out, 2, &format!("{name}:"));
    let indent = 4;
    if !behaviour.starts.is_empty() {
        line(out, indent, "starts:");
        for run in behaviour.starts.iter().take(MAX_LIST) {
            line(out, indent + 2, &format!("- {}", run.render()));
        }
    }
    line(out, indent, &format!("then: {}", behaviour.then.render()));
    match behaviour.on_sigterm {
        None => {}
        Some(HostileOnSigterm::Die) => line(out, indent, "onSigterm: die"),
        Some(HostileOnSigterm::Ignore) => line(out, indent, "onSigterm: ignore"),
        Some(HostileOnSigterm::Exit { after, code }) => line(
            out,
            indent,
            &format!(
                "onSigterm: {{exit: {{after: {}, code: {}}}}}",
                after.render(),
                code.render()
            ),
        ),
    }
    if let Some(health) = &behaviour.health {
        line(out, indent, "health:");
        let inner = indent + 2;
        if let Some(port) = health.port {
            line(out, inner, &format!("port: {}", port.render_number()));
        }
        if let Some(after) = health.listen_after {
            line(out, inner, &format!("listenAfter: {}", after.render()));
        }
        if let Some(port) = health.grpc_port {
            line(out, inner, &format!("grpcPort: {}", port.render_number()));
        }
        if health.endpoints.is_empty() {
            line(out, inner, "endpoints: {}");
        } else {
            line(out, inner, "endpoints:");
        }
        for endpoint in health.endpoints.iter().take(MAX_LIST) {
            line(out, inner + 2, &format!("{}:", endpoint.name.render()));
            if let Some(port) = endpoint.tcp_port {
                line(
                    out,
                    inner + 4,
                    &format!("tcpPort: {}", port.render_number()),
                );
            }
            if endpoint.answers.is_empty() {
                line(out, inner + 4, "answers: []");
                continue;
            }
            line(out, inner + 4, "answers:");
            for (answer, length) in endpoint.answers.iter().take(MAX_LIST) {
                let answer = match answer {
                    HostileAnswer::Ok => "ok".to_owned(),
                    HostileAnswer::Fail => "fail".to_owned(),
                    HostileAnswer::Slow(delay) => format!("{{slow: {}}}", delay.render()),
                };
                let length = length
                    .map(|d| format!(", for: {}", d.render()))
                    .unwrap_or_default();
                line(out, inner + 6, &format!("- {{answer: {answer}{length}}}"));
            }
        }
    }
    if !behaviour.hooks.is_empty() {
        line(out, indent, "hooks:");
        for (name, takes, fails) in behaviour.hooks.iter().take(MAX_LIST) {
            let mut fields = Vec::new();
            if let Some(takes) = takes {
                fields.push(format!("takes: {}", takes.render()));
            }
            if *fails {
                fields.push("result: fail".to_owned());
            }
            line(
                out,
                indent + 2,
                &format!("{}: {{{}}}", name.render(), fields.join(", ")),
            );
        }
    }
}

impl HostileScenario {
    /// The regular containers rendered.
    fn containers(&self) -> Vec<&HostileContainer> {
        std::iter::once(&self.container)
            .chain(self.more_containers.iter())
            .take(MAX_LIST)
            .collect()
    }

    /// The scenario as YAML text, as a person would write it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        line(&mut out, 0, "name: hostile");
        if let Some(observe_for) = self.observe_for {
            line(
                &mut out,
                0,
                &format!("observeFor: {}", observe_for.render()),
            );
        }
        if let Some(kubelet) = self.kubelet {
            line(&mut out, 0, "kubelet:");
            let mut gates = Vec::new();
            if let Some(on) = kubelet.crash_loop_back_off_max {
                gates.push(format!("KubeletCrashLoopBackOffMax: {on}"));
            }
            if let Some(on) = kubelet.reduce_default_decay {
                gates.push(format!("ReduceDefaultCrashLoopBackOffDecay: {on}"));
            }
            line(
                &mut out,
                2,
                &format!("featureGates: {{{}}}", gates.join(", ")),
            );
            if let Some(period) = kubelet.max_container_restart_period {
                line(
                    &mut out,
                    2,
                    &format!(
                        "crashLoopBackOff: {{maxContainerRestartPeriod: {}}}",
                        period.render()
                    ),
                );
            }
        }
        line(&mut out, 0, "pod:");
        line(&mut out, 2, "apiVersion: v1");
        line(&mut out, 2, "kind: Pod");
        line(&mut out, 2, "metadata:");
        line(&mut out, 4, "name: hostile");
        if self.finalizer {
            line(&mut out, 4, &format!("finalizers: [{FINALIZER}]"));
        }
        line(&mut out, 2, "spec:");
        if let Some(policy) = self.restart_policy {
            let policy = match policy {
                HostilePodRestartPolicy::Always => "Always",
                HostilePodRestartPolicy::OnFailure => "OnFailure",
                HostilePodRestartPolicy::Never => "Never",
                HostilePodRestartPolicy::Garbage => "Sometimes",
            };
            line(&mut out, 4, &format!("restartPolicy: {policy}"));
        }
        if let Some(grace) = self.termination_grace_period_seconds {
            line(
                &mut out,
                4,
                &format!("terminationGracePeriodSeconds: {}", grace.render()),
            );
        }
        if !self.init_containers.is_empty() {
            line(&mut out, 4, "initContainers:");
            for container in self.init_containers.iter().take(MAX_LIST) {
                render_container(&mut out, container);
            }
        }
        let containers = self.containers();
        if containers.is_empty() {
            line(&mut out, 4, "containers: []");
        } else {
            line(&mut out, 4, "containers:");
            for container in &containers {
                render_container(&mut out, container);
            }
        }
        // Each container's behaviour, then the others; a name is written once.
        let mut written: Vec<String> = Vec::new();
        line(&mut out, 0, "behaviours:");
        let containers = self
            .init_containers
            .iter()
            .take(MAX_LIST)
            .chain(containers)
            .map(|c| (c.name, &c.behaviour));
        let others = self
            .other_behaviours
            .iter()
            .take(MAX_LIST)
            .map(|(name, behaviour)| (*name, behaviour));
        for (name, behaviour) in containers.chain(others) {
            let name = name.render();
            if !written.contains(&name) {
                render_behaviour(&mut out, &name, behaviour);
                written.push(name);
            }
        }
        if written.is_empty() {
            out.push_str("  {}\n");
        }
        if !self.faults.is_empty() {
            line(&mut out, 0, "faults:");
        }
        for fault in self.faults.iter().take(MAX_LIST) {
            let action = match fault.action {
                HostileFaultAction::KillContainer(name) => {
                    format!("{{killContainer: {{container: {}}}}}", name.render())
                }
                HostileFaultAction::Delete(None) => "{delete: {}}".to_owned(),
                HostileFaultAction::Delete(Some(grace)) => {
                    format!("{{delete: {{gracePeriodSeconds: {}}}}}", grace.render())
                }
                HostileFaultAction::ForceDelete => "forceDelete".to_owned(),
                HostileFaultAction::RemoveFinalizer(known) => format!(
                    "{{removeFinalizer: {{finalizer: {}}}}}",
                    if known {
                        FINALIZER
                    } else {
                        "example.com/other"
                    }
                ),
                HostileFaultAction::RestartNodeAgent => "restartNodeAgent".to_owned(),
                HostileFaultAction::AddEphemeralContainer { name, target } => format!(
                    "{{addEphemeralContainer: {{name: {}{}}}}}",
                    name.render(),
                    target
                        .map(|t| format!(", targetContainerName: {}", t.render()))
                        .unwrap_or_default()
                ),
            };
            line(
                &mut out,
                2,
                &format!("- {{at: {}, action: {action}}}", fault.at.render()),
            );
        }
        out
    }
}

/// A value a mutation writes in place of another: out of range, empty, or of another type.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostileValue {
    Int(HostileInt),
    Duration(HostileDuration),
    EmptyString,
    Null,
    EmptyList,
    EmptyMap,
}

impl HostileValue {
    pub fn render(self) -> String {
        match self {
            HostileValue::Int(n) => n.render(),
            HostileValue::Duration(d) => d.render(),
            HostileValue::EmptyString => "\"\"".to_owned(),
            HostileValue::Null => "null".to_owned(),
            HostileValue::EmptyList => "[]".to_owned(),
            HostileValue::EmptyMap => "{}".to_owned(),
        }
    }
}

/// One edit of scenario text, line by line. Line numbers wrap around the text's length,
/// so every edit applies to any text.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextMutation {
    DropLine(u16),
    DuplicateLine(u16),
    /// Replaces a scalar of the line: the value after its last `: ` (a `key: value` line,
    /// or a flow mapping's last entry), else the text after a list's `- `.
    ReplaceValue(u16, HostileValue),
    /// Replaces the n-th scalar value anywhere in the text (counting every `key: value`
    /// of block and flow mappings).
    ReplaceNthValue(u16, HostileValue),
    /// Exchanges the values of two `key: value` lines.
    SwapValues(u16, u16),
}

/// Where the n-th value of the text lies, counting the value after every `: ` that ends
/// at `,`, `}`, `]` or the line's end.
fn value_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find(": ") {
        let start = at + found + 2;
        let mut end = start;
        while end < bytes.len() && !matches!(bytes[end], b',' | b'}' | b']' | b'\n') {
            end += 1;
        }
        // A nested mapping or list begins here: its values are counted on their own.
        if end > start && !matches!(bytes[start], b'{' | b'[') {
            spans.push((start, end));
        }
        at = start;
    }
    spans
}

impl TextMutation {
    /// Applies the edit; text without lines is left as it is.
    pub fn apply(self, text: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.is_empty() {
            return text.to_owned();
        }
        let count = lines.len();
        let pick = |n: u16| usize::from(n) % count;
        match self {
            TextMutation::DropLine(n) => {
                lines.remove(pick(n));
            }
            TextMutation::DuplicateLine(n) => {
                let index = pick(n);
                let copy = lines[index].clone();
                lines.insert(index, copy);
            }
            TextMutation::ReplaceValue(n, value) => {
                let index = pick(n);
                let current = &lines[index];
                let spans = value_spans(current);
                let replaced = match spans.last() {
                    Some(&(start, end)) => {
                        format!("{}{}{}", &current[..start], value.render(), &current[end..])
                    }
                    None => match current.find("- ") {
                        Some(dash) => format!("{}{}", &current[..dash + 2], value.render()),
                        None => current.clone(),
                    },
                };
                lines[index] = replaced;
            }
            TextMutation::ReplaceNthValue(n, value) => {
                let spans = value_spans(text);
                if spans.is_empty() {
                    return text.to_owned();
                }
                let (start, end) = spans[usize::from(n) % spans.len()];
                return format!("{}{}{}", &text[..start], value.render(), &text[end..]);
            }
            TextMutation::SwapValues(a, b) => {
                let with_values: Vec<usize> = (0..count)
                    .filter(|&i| !value_spans(&lines[i]).is_empty())
                    .collect();
                if with_values.len() < 2 {
                    return text.to_owned();
                }
                let first = with_values[usize::from(a) % with_values.len()];
                let second = with_values[usize::from(b) % with_values.len()];
                let value_of = |line: &str| {
                    value_spans(line)
                        .last()
                        .map(|&(start, end)| line[start..end].to_owned())
                        .unwrap_or_default()
                };
                let (value_a, value_b) = (value_of(&lines[first]), value_of(&lines[second]));
                let put = |line: &str, value: &str| match value_spans(line).last() {
                    Some(&(start, end)) => format!("{}{value}{}", &line[..start], &line[end..]),
                    None => line.to_owned(),
                };
                lines[first] = put(&lines[first], &value_b);
                lines[second] = put(&lines[second], &value_a);
            }
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

/// Applies each edit in turn.
pub fn mutate(text: &str, mutations: &[TextMutation]) -> String {
    mutations
        .iter()
        .fold(text.to_owned(), |text, mutation| mutation.apply(&text))
}

/// At most this many edits are applied to one text.
const MAX_MUTATIONS: usize = 4;

/// The fuzz target's input: scenario text, a NUL byte, and the bytes that choose the
/// edits of that text. Input that starts with NUL has no text: its bytes choose a
/// [`HostileScenario`] first, rendered, then the edits. A file without NUL is the text
/// alone: the suite files are inputs as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzInput {
    pub base: FuzzBase,
    pub mutations: Vec<TextMutation>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FuzzBase {
    /// Scenario text as given (invalid UTF-8 replaced).
    Text(String),
    Structured(Box<HostileScenario>),
}

impl FuzzInput {
    /// Reads fuzz bytes; never fails: a structure that runs out of bytes takes its
    /// smallest values.
    pub fn from_bytes(data: &[u8]) -> FuzzInput {
        let (text, rest) = match data.iter().position(|&b| b == 0) {
            Some(nul) => (&data[..nul], &data[nul + 1..]),
            None => (data, &[][..]),
        };
        let mut choices = Unstructured::new(rest);
        let base = if text.is_empty() && data.first() == Some(&0) {
            // Running out of bytes gives the smallest values rather than an error; any
            // other error leaves no scenario to render.
            match HostileScenario::arbitrary(&mut choices) {
                Ok(scenario) => FuzzBase::Structured(Box::new(scenario)),
                Err(_) => FuzzBase::Text(String::new()),
            }
        } else {
            FuzzBase::Text(String::from_utf8_lossy(text).into_owned())
        };
        let mut mutations = Vec::new();
        while mutations.len() < MAX_MUTATIONS && !choices.is_empty() {
            match TextMutation::arbitrary(&mut choices) {
                Ok(mutation) => mutations.push(mutation),
                Err(_) => break,
            }
        }
        FuzzInput { base, mutations }
    }

    /// The scenario text this input stands for.
    pub fn text(&self) -> String {
        let base = match &self.base {
            FuzzBase::Text(text) => text.clone(),
            FuzzBase::Structured(scenario) => scenario.render(),
        };
        mutate(&base, &self.mutations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podcheck_oracle::Scenario;

    #[test]
    fn a_suite_file_is_a_fuzz_input_as_it_is() {
        let text = "name: x\nobserveFor: 10s\n";
        let input = FuzzInput::from_bytes(text.as_bytes());
        assert_eq!(input.base, FuzzBase::Text(text.to_owned()));
        assert!(input.mutations.is_empty());
        assert_eq!(input.text(), text);
    }

    #[test]
    fn replacing_a_value_keeps_the_key_and_the_rest_of_the_line() {
        let edit = |mutation: TextMutation, text: &str| mutation.apply(text);
        let huge = HostileValue::Duration(HostileDuration::Huge);
        assert_eq!(
            edit(TextMutation::ReplaceValue(0, huge), "observeFor: 10s\n"),
            "observeFor: 999999999999999999992s\n"
        );
        assert_eq!(
            edit(
                TextMutation::ReplaceValue(0, HostileValue::Int(HostileInt::MinusOne)),
                "  then: {exit: {after: 1s, code: 1}}\n"
            ),
            "  then: {exit: {after: 1s, code: -1}}\n"
        );
        assert_eq!(
            edit(
                TextMutation::ReplaceNthValue(1, huge),
                "a: {after: 1s, code: 1}\n"
            ),
            "a: {after: 1s, code: 999999999999999999992s}\n"
        );
        assert_eq!(
            edit(TextMutation::SwapValues(0, 1), "a: 1\nb: 2\n"),
            "a: 2\nb: 1\n"
        );
        assert_eq!(edit(TextMutation::DropLine(3), "a: 1\nb: 2\n"), "a: 1\n");
        assert_eq!(
            edit(TextMutation::DuplicateLine(0), "a: 1\nb: 2\n"),
            "a: 1\na: 1\nb: 2\n"
        );
    }

    /// The structure is worth fuzzing only if much of what it renders is a scenario the
    /// oracle reads: the pools of names make containers, behaviours and probes meet.
    #[test]
    fn rendered_scenarios_are_often_valid() {
        let mut state = 0x5eed_u64;
        let mut valid = 0;
        let total = 400;
        for _ in 0..total {
            let length = 20 + (state % 200) as usize;
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let scenario = HostileScenario::arbitrary(&mut Unstructured::new(&bytes))
                .expect("running out of bytes gives the smallest values");
            if Scenario::from_yaml("hostile.yaml", &scenario.render()).is_ok() {
                valid += 1;
            }
        }
        assert!(
            valid * 50 >= total,
            "{valid} of {total} rendered scenarios are valid"
        );
    }
}
