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
//!
//! Modules: `spec` reads a probe as the API server defaults it and finds what it reaches in
//! the pod; `segments` turns the health script into outcome segments and finds when a
//! threshold is crossed; `instance` plans what the probes do to one instance (the windows
//! of started, ready and a kill). A new probe handler goes into `spec`; a new effect of
//! probes on an instance goes into `instance`.

mod instance;
mod segments;
mod spec;
#[cfg(test)]
mod tests;

use crate::duration::SpecDuration;
use crate::rules::RuleId;
use serde::Serialize;

pub use crate::validation::ProbeKind;
pub use instance::{plan_instance, Carry, Flip, ProbePlan, ProbeResults, Window};
pub use segments::Segment;
pub use spec::{ContainerProbes, ProbeModel};

/// The agent's path in the image; exec probes run it as `podcheck-agent probe ENDPOINT`.
pub const AGENT_PROGRAM: &str = "/podcheck-agent";

/// How far a probe may run from its nominal tick: scheduling, connection set-up, process
/// start of an exec probe.
pub const PROBE_SLACK: SpecDuration = SpecDuration::from_secs(1);

/// Distance from a probe's timing threshold (its timeout, the last tick a run needs to
/// reach its threshold, the window of a kill) within which the oracle refuses to decide.
pub const PROBE_TIMING_MARGIN: SpecDuration = SpecDuration::from_secs(2);

/// How long after its start (or its `listenAfter`) a process may take to listen: a probe
/// that comes sooner is refused, for the agent as for any server.
pub const LISTEN_LATENCY: SpecDuration = SpecDuration::from_secs(1);

/// How late after a crossing the status shows it, or the killed container's exit is seen.
pub const PROBE_ACTION_LAG: SpecDuration = SpecDuration::from_secs(2);

/// The exit code of a container that a probe failure stopped: the agent dies of SIGTERM,
/// which the runtime reports as 128 + 15.
pub const KILLED_EXIT_CODE: i32 = 143;

/// The result of one probe attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeResult {
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
    pub fn rule(self) -> RuleId {
        match self {
            Handler::Http => RuleId::ProbeHandlerHttp,
            Handler::Tcp => RuleId::ProbeHandlerTcp,
            Handler::Exec => RuleId::ProbeHandlerExec,
            Handler::Grpc => RuleId::ProbeHandlerGrpc,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguous(pub String);
