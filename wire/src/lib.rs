//! The podcheck agent's wire format, defined once for the harness that writes it, the
//! agent that acts it out and the checker that reads what the agent reports.
//!
//! - In: a [`Behaviour`], passed as JSON in the environment variable [`env::BEHAVIOUR`]
//!   (with the other settings of [`mod@env`]).
//! - Out: one JSON [`LogEvent`] a line on standard output (the container log), read back
//!   as a [`WorkloadLog`].
//!
//! A checker counts, say, the failed answers of an endpoint right before the workload was
//! killed:
//!
//! ```
//! use podcheck_wire::{Answered, WorkloadLog};
//!
//! let lines = [
//!     r#"{"tsMs":1000,"event":"start","start":0,"run":"forever"}"#,
//!     r#"{"tsMs":2000,"event":"probe","via":"http","endpoint":"live","answer":"ok","userAgent":"kube-probe/1.35"}"#,
//!     r#"{"tsMs":3000,"event":"probe","via":"http","endpoint":"live","answer":"fail","userAgent":"kube-probe/1.35"}"#,
//!     r#"{"tsMs":4000,"event":"probe","via":"http","endpoint":"live","answer":"fail","userAgent":"kube-probe/1.35"}"#,
//!     r#"{"tsMs":4500,"event":"signal","signal":"SIGTERM"}"#,
//! ];
//! let log = WorkloadLog::parse(lines);
//! assert_eq!(log.events().start(), Some(0));
//! let before_kill = log.events().before_first_signal().expect("killed");
//! let failures = before_kill
//!     .answers("live")
//!     .rev()
//!     .take_while(|a| a.answer != Some(Answered::Ok))
//!     .count();
//! assert_eq!(failures, 2);
//! ```
//!
//! The container runtime under test never sees any of it: to the runtime the agent is an
//! opaque process with environment variables and a log.

mod behaviour;
mod errors;
mod log;

pub use behaviour::{
    is_hook_name, Answer, Behaviour, Endpoint, Health, Hook, OnSigterm, Run, Step,
};
pub use errors::{BehaviourError, InvalidBehaviour, InvalidHealth, LogLineError};
pub use log::{
    AgentProcess, Answered, Event, Events, HookVia, LogEvent, Probe, ProbeAnswer, Request, Signal,
    Via, WorkloadLog,
};

/// The environment variables through which the harness configures the agent.
pub mod env {
    /// The [`Behaviour`](crate::Behaviour), as JSON.
    pub const BEHAVIOUR: &str = "PODCHECK_BEHAVIOUR";
    /// Wall seconds per spec second (default 1): every time in a behaviour is spec time.
    pub const TIME_SCALE: &str = "PODCHECK_TIME_SCALE";
    /// A directory that outlives container restarts, where the agent counts its starts.
    pub const STATE_DIR: &str = "PODCHECK_STATE_DIR";
    /// The container's name, which keys the start counter in the state directory.
    pub const CONTAINER: &str = "PODCHECK_CONTAINER";
    /// The pod's name (its `metadata.name`): with [`CONTAINER`], how an agent names itself
    /// and the other agents it sees.
    pub const POD: &str = "PODCHECK_POD";
}

/// The query parameter that marks an HTTP request to a health endpoint as an exec probe's
/// (`podcheck-agent probe NAME` sends it), or a hook call as an exec handler's
/// (`podcheck-agent hook NAME`), so the log tells them apart from httpGet ones.
pub const EXEC_QUERY: &str = "via=exec";

/// Where hook NAME is called on the hook port: `GET /hook/NAME` (see
/// [`Behaviour::hook_port`]).
pub const HOOK_PATH_PREFIX: &str = "/hook/";
