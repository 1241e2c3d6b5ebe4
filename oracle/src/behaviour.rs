//! What a container's process does: its runs (exit or run forever) start by start, and the
//! health endpoints it serves to probes, with the script of their answers.
//!
//! Plain data shared by the scenario, the probe model and the targets; it depends on
//! nothing but durations.

use crate::duration::SpecDuration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a container's process does each time it starts.
///
/// Start `n` (0-based, counted across restarts) acts out `starts[n]` when present and
/// `then` otherwise; so "crash the first 3 starts, then keep running" is three exits
/// in `starts` and `then: forever`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behaviour {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub starts: Vec<Run>,
    pub then: Run,
    /// Health endpoints the process serves for probes; the same script on every start,
    /// timed from that start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// What the process does when SIGTERM arrives; the same on every start.
    #[serde(default, skip_serializing_if = "OnSigterm::is_default")]
    pub on_sigterm: OnSigterm,
    /// Lifecycle hook calls the process answers, by name: the exec handler
    /// `/podcheck-agent hook NAME` and the httpGet handler `GET /hook/NAME` on the hook port
    /// ([`Behaviour::hook_port`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hooks: BTreeMap<String, HookScript>,
}

/// What a process does when SIGTERM arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum OnSigterm {
    /// The default disposition: the process dies of the signal (exit status 143).
    #[default]
    Die,
    /// The signal is ignored: only SIGKILL ends the process.
    Ignore,
    /// A graceful shutdown: the process exits with `code` `after` the signal.
    Exit { after: SpecDuration, code: i32 },
}

impl OnSigterm {
    pub fn is_default(&self) -> bool {
        *self == OnSigterm::Die
    }
}

/// How the process answers one named hook call: it takes `takes`, then succeeds (HTTP
/// 200, exec exit 0) or fails (HTTP 500, exec exit 1). The kubelet counts only the exec
/// handler's failure: an httpGet hook succeeds whatever the HTTP status
/// (pkg/kubelet/lifecycle/handlers.go `runHTTPHandler`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookScript {
    #[serde(default, skip_serializing_if = "SpecDuration::is_zero")]
    pub takes: SpecDuration,
    #[serde(default, skip_serializing_if = "HookResult::is_ok")]
    pub result: HookResult,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HookResult {
    #[default]
    Ok,
    Fail,
}

impl HookResult {
    pub fn is_ok(&self) -> bool {
        *self == HookResult::Ok
    }
}

/// The agent's health endpoints: `GET /<endpoint>` on `port`, a raw TCP listener on an
/// endpoint's `tcpPort`, and the exec command `/podcheck-agent probe <endpoint>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    /// The HTTP port; containers of one pod share a network namespace, so each needs its own.
    #[serde(default = "Health::default_port")]
    pub port: u16,
    /// Nothing listens (connections are refused) until this long after the start.
    #[serde(default, skip_serializing_if = "SpecDuration::is_zero")]
    pub listen_after: SpecDuration,
    /// A port serving the gRPC health protocol (grpc.health.v1): the service named like an
    /// endpoint answers SERVING or NOT_SERVING as the endpoint does; service "" SERVING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_port: Option<u16>,
    pub endpoints: BTreeMap<String, Endpoint>,
}

impl Health {
    pub const DEFAULT_PORT: u16 = 8080;
    fn default_port() -> u16 {
        Self::DEFAULT_PORT
    }
}

/// One health endpoint and the script of its answers over the life of a start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// A TCP port that is listened on exactly while the answer is `ok` or `slow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
    /// Consecutive answers, each for its `for`; the last one lasts.
    pub answers: Vec<Scripted>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scripted {
    pub answer: Answer,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<SpecDuration>,
}

/// What a health endpoint answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer {
    /// HTTP 200, exec exit 0, TCP listening.
    Ok,
    /// HTTP 500, exec exit 1, TCP not listening.
    Fail,
    /// HTTP 200 (exec exit 0) only after this delay; TCP listening.
    Slow(SpecDuration),
}

impl Endpoint {
    /// The answer at `at` after the start.
    pub fn answer_at(&self, at: SpecDuration) -> Answer {
        let mut from = SpecDuration::ZERO;
        for scripted in &self.answers {
            match scripted.for_ {
                Some(length) if at >= from + length => from = from + length,
                _ => return scripted.answer,
            }
        }
        self.answers.last().map_or(Answer::Fail, |s| s.answer)
    }

    /// Times after the start at which the answer may change.
    pub fn boundaries(&self) -> Vec<SpecDuration> {
        let mut at = SpecDuration::ZERO;
        let mut out = Vec::new();
        for scripted in &self.answers {
            if let Some(length) = scripted.for_ {
                at = at + length;
                out.push(at);
            }
        }
        out
    }
}

impl Behaviour {
    pub fn run_for_start(&self, start: u32) -> Run {
        self.starts
            .get(start as usize)
            .copied()
            .unwrap_or(self.then)
    }

    pub fn forever() -> Self {
        Behaviour {
            starts: Vec::new(),
            then: Run::Forever,
            health: None,
            on_sigterm: OnSigterm::Die,
            hooks: BTreeMap::new(),
        }
    }

    pub fn exit_every_start(after: SpecDuration, code: i32) -> Self {
        Behaviour {
            then: Run::Exit { after, code },
            ..Behaviour::forever()
        }
    }

    /// The port the process answers httpGet hook calls on (and exec hook calls through):
    /// its health port, or the default health port when it serves hooks without health
    /// endpoints. None when it answers no hook.
    pub fn hook_port(&self) -> Option<u16> {
        match &self.health {
            Some(health) => Some(health.port),
            None if !self.hooks.is_empty() => Some(Health::DEFAULT_PORT),
            None => None,
        }
    }
}

/// One start of a container's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Run {
    /// Run for `after`, then exit with `code`.
    Exit { after: SpecDuration, code: i32 },
    /// Run until killed.
    Forever,
}
