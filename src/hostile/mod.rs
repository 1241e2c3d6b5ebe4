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

mod edit;
mod render;

pub use edit::*;
