//! What the agent reports: one JSON [`LogEvent`] a line on standard output, e.g.
//!
//! ```text
//! {"tsMs":1767225600000,"event":"start","start":0,"run":"forever"}
//! {"tsMs":1767225600001,"event":"processes","agents":[{"pod":"web","container":"app"}],"others":0}
//! {"tsMs":1767225601000,"event":"probe","via":"http","endpoint":"live","answer":"ok","userAgent":"kube-probe/1.35"}
//! {"tsMs":1767225601500,"event":"probe","via":"tcp","endpoint":"ready"}
//! {"tsMs":1767225601800,"event":"hookStarted","name":"pre-stop","via":"exec"}
//! {"tsMs":1767225602000,"event":"hookEnded","name":"pre-stop","ok":true}
//! {"tsMs":1767225602010,"event":"signal","signal":"SIGTERM"}
//! {"tsMs":1767225603010,"event":"exit","code":0}
//! ```
//!
//! Readers look fields up by name: the order of the keys carries nothing.

use crate::behaviour::Run;
use crate::errors::LogLineError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One line of the agent's log: when it was written, and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Wall-clock milliseconds since the Unix epoch when the agent wrote the line.
    #[serde(rename = "tsMs")]
    pub ts_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// What the agent did or saw, tagged by `"event"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// The process started: this is start number `start` (0-based, counted across the
    /// container's restarts), acting out `run`.
    Start { start: u32, run: Run },
    /// A probe reached a health endpoint, logged when the request arrived (before a slow
    /// answer's wait).
    Probe(Probe),
    /// A lifecycle hook call arrived: `GET /hook/NAME`, via `exec` when
    /// `podcheck-agent hook NAME` sent it. Logged when the request arrives, before the
    /// hook's `takesMs`. A name the behaviour has no hook for is logged too (and at once
    /// followed by a [`Event::HookEnded`] with `ok: false`, answered 404), so a misrouted
    /// hook call shows in the log.
    HookStarted { name: String, via: HookVia },
    /// A hook call is answered: logged `takesMs` after its [`Event::HookStarted`], right
    /// before the answer is written (so it precedes anything the answer sets off). `ok` is
    /// false for a failing hook (HTTP 500, the exec handler exits 1) and for an unknown one
    /// (HTTP 404).
    HookEnded { name: String, ok: bool },
    /// A signal arrived. What follows is the behaviour's `onSigterm`: with `die` the
    /// process dies of it right after; with `ignore` it carries on (only SIGKILL ends it,
    /// and a later SIGTERM is logged again); with `exit` it logs [`Event::Exit`] after the
    /// delay and exits (a later SIGTERM is logged and changes nothing).
    Signal { signal: Signal },
    /// The process exits with `code`: its scripted run ended, or the delay of an
    /// `onSigterm` `exit` passed, whichever came first.
    Exit { code: i32 },
    /// The behaviour cannot be acted out (a malformed behaviour, a port that cannot be
    /// bound); the process exits with code 125.
    Error { message: String },
    /// The processes this one can see (those of its PID namespace, through its `/proc`):
    /// logged right after [`Event::Start`], then whenever the set changes (the agent looks
    /// again about once a second of wall time). `agents` are the agents' main processes,
    /// this one included, sorted, each named by its environment ([`env::POD`] and
    /// [`env::CONTAINER`]); `others` counts every other process, except the agent's exec
    /// helpers (`podcheck-agent probe|hook`, which come and go with each probe and hook)
    /// and processes that have exited but were not reaped yet.
    ///
    /// [`env::POD`]: crate::env::POD
    /// [`env::CONTAINER`]: crate::env::CONTAINER
    Processes {
        agents: Vec<AgentProcess>,
        others: u32,
    },
}

/// An agent's main process, as another agent (or itself) sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AgentProcess {
    /// Its pod's name; `None` when its environment does not say (an agent started without
    /// [`env::POD`](crate::env::POD)).
    pub pod: Option<String>,
    pub container: String,
}

/// A probe the agent answered, tagged by `"via"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "camelCase")]
pub enum Probe {
    /// An HTTP `GET /NAME` (an HTTP probe).
    Http(Request),
    /// An HTTP `GET /NAME?via=exec`, sent by `podcheck-agent probe NAME` (an exec probe).
    Exec(Request),
    /// A gRPC `grpc.health.v1.Health/Check` of service NAME (a gRPC probe).
    Grpc(Request),
    /// A connection to the endpoint's TCP port (a TCP probe), accepted and closed at once.
    /// Refused connections leave no trace.
    Tcp { endpoint: String },
}

/// A request to a health endpoint and the answer it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The endpoint asked: the HTTP path without its `/`, or the gRPC service (`""` is the
    /// whole server). `None` when the request named none: an HTTP request line without a
    /// target, or a gRPC request that did not decode.
    pub endpoint: Option<String>,
    pub answer: Answered,
    /// The request's `User-Agent` (empty when it had none, or the line leaves it out).
    #[serde(default)]
    pub user_agent: String,
}

/// The answer a request was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answered {
    Ok,
    Fail,
    /// OK after the scripted wait, which had not begun when the line was written.
    Slow,
    /// No such endpoint (or method): HTTP 404/405/400, gRPC NOT_FOUND or INVALID_ARGUMENT.
    Unknown,
}

/// How a hook call reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HookVia {
    /// `GET /hook/NAME` (an httpGet handler).
    Http,
    /// `GET /hook/NAME?via=exec`, sent by `podcheck-agent hook NAME` (an exec handler).
    Exec,
}

/// The signals the agent logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Signal {
    #[serde(rename = "SIGTERM")]
    Sigterm,
}

/// How a probe reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    Http,
    Exec,
    Grpc,
    Tcp,
}

impl LogEvent {
    /// Reads one log line.
    pub fn parse(line: &str) -> Result<LogEvent, LogLineError> {
        serde_json::from_str(line).map_err(LogLineError::new)
    }
}

/// Renders the event as its log line (without the newline).
impl fmt::Display for LogEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Serializing plain structs of numbers and strings cannot fail.
        let line = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&line)
    }
}

impl Probe {
    pub fn via(&self) -> Via {
        match self {
            Probe::Http(_) => Via::Http,
            Probe::Exec(_) => Via::Exec,
            Probe::Grpc(_) => Via::Grpc,
            Probe::Tcp { .. } => Via::Tcp,
        }
    }

    /// The request, unless this is a TCP connection.
    pub fn request(&self) -> Option<&Request> {
        match self {
            Probe::Http(request) | Probe::Exec(request) | Probe::Grpc(request) => Some(request),
            Probe::Tcp { .. } => None,
        }
    }

    /// The endpoint reached, if the probe named one.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            Probe::Tcp { endpoint } => Some(endpoint),
            _ => self.request()?.endpoint.as_deref(),
        }
    }

    /// The answer given; a TCP connection has none.
    pub fn answer(&self) -> Option<Answered> {
        self.request().map(|request| request.answer)
    }
}

/// The agent's log lines, in order, as read back from a container log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadLog {
    events: Vec<LogEvent>,
}

impl WorkloadLog {
    /// Reads every line that is an agent event and skips the rest: a container log may
    /// hold lines the agent did not write (a runtime's own notes, a cut-off last line).
    pub fn parse<I, S>(lines: I) -> WorkloadLog
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let events = lines
            .into_iter()
            .filter_map(|line| LogEvent::parse(line.as_ref()).ok())
            .collect();
        WorkloadLog { events }
    }

    pub fn events(&self) -> Events<'_> {
        Events {
            events: &self.events,
        }
    }
}

impl FromIterator<LogEvent> for WorkloadLog {
    fn from_iter<I: IntoIterator<Item = LogEvent>>(events: I) -> WorkloadLog {
        WorkloadLog {
            events: events.into_iter().collect(),
        }
    }
}

/// A run of consecutive events of a log, to narrow down and look things up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events<'a> {
    events: &'a [LogEvent],
}

/// A probe of one endpoint, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeAnswer<'a> {
    /// When the probe arrived (wall-clock milliseconds since the Unix epoch).
    pub ts_ms: u64,
    pub via: Via,
    /// `None` for a TCP connection, which is not answered.
    pub answer: Option<Answered>,
    /// The request's `User-Agent`; `None` for a TCP connection.
    pub user_agent: Option<&'a str>,
}

impl<'a> Events<'a> {
    pub fn as_slice(self) -> &'a [LogEvent] {
        self.events
    }

    pub fn iter(self) -> std::slice::Iter<'a, LogEvent> {
        self.events.iter()
    }

    pub fn is_empty(self) -> bool {
        self.events.is_empty()
    }

    /// Which start of the container these events belong to: that of the first start
    /// event.
    pub fn start(self) -> Option<u32> {
        self.events.iter().find_map(|e| match e.event {
            Event::Start { start, .. } => Some(start),
            _ => None,
        })
    }

    /// The events from the last start event on: those of the latest process when a log
    /// holds several (all of them when there is no start event).
    pub fn since_last_start(self) -> Events<'a> {
        let from = self
            .events
            .iter()
            .rposition(|e| matches!(e.event, Event::Start { .. }))
            .unwrap_or(0);
        Events {
            events: &self.events[from..],
        }
    }

    /// The events before the first signal, or `None` when no signal arrived.
    pub fn before_first_signal(self) -> Option<Events<'a>> {
        let signal = self
            .events
            .iter()
            .position(|e| matches!(e.event, Event::Signal { .. }))?;
        Some(Events {
            events: &self.events[..signal],
        })
    }

    /// The events written at or before `ts_ms`.
    pub fn until(self, ts_ms: u64) -> impl DoubleEndedIterator<Item = &'a LogEvent> + 'a {
        self.events.iter().filter(move |e| e.ts_ms <= ts_ms)
    }

    /// Every probe that reached `endpoint`, by any way, in log order.
    pub fn answers(
        self,
        endpoint: &'a str,
    ) -> impl DoubleEndedIterator<Item = ProbeAnswer<'a>> + 'a {
        self.events.iter().filter_map(move |e| match &e.event {
            Event::Probe(probe) if probe.endpoint() == Some(endpoint) => Some(ProbeAnswer {
                ts_ms: e.ts_ms,
                via: probe.via(),
                answer: probe.answer(),
                user_agent: probe.request().map(|r| r.user_agent.as_str()),
            }),
            _ => None,
        })
    }
}

impl<'a> IntoIterator for Events<'a> {
    type Item = &'a LogEvent;
    type IntoIter = std::slice::Iter<'a, LogEvent>;

    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(endpoint: Option<&str>, answer: Answered, user_agent: &str) -> Request {
        Request {
            endpoint: endpoint.map(str::to_owned),
            answer,
            user_agent: user_agent.to_owned(),
        }
    }

    fn at(ts_ms: u64, event: Event) -> LogEvent {
        LogEvent { ts_ms, event }
    }

    /// Every kind of line the agent writes, with its rendering.
    fn every_kind() -> Vec<(LogEvent, &'static str)> {
        vec![
            (
                at(
                    1,
                    Event::Start {
                        start: 0,
                        run: Run::Forever,
                    },
                ),
                r#"{"tsMs":1,"event":"start","start":0,"run":"forever"}"#,
            ),
            (
                at(
                    2,
                    Event::Start {
                        start: 3,
                        run: Run::Exit {
                            after_ms: 1500,
                            code: 7,
                        },
                    },
                ),
                r#"{"tsMs":2,"event":"start","start":3,"run":{"exit":{"afterMs":1500,"code":7}}}"#,
            ),
            (
                at(
                    3,
                    Event::Probe(Probe::Http(request(
                        Some("live"),
                        Answered::Ok,
                        "kube-probe/1.35",
                    ))),
                ),
                r#"{"tsMs":3,"event":"probe","via":"http","endpoint":"live","answer":"ok","userAgent":"kube-probe/1.35"}"#,
            ),
            (
                at(
                    4,
                    Event::Probe(Probe::Http(request(None, Answered::Unknown, ""))),
                ),
                r#"{"tsMs":4,"event":"probe","via":"http","endpoint":null,"answer":"unknown","userAgent":""}"#,
            ),
            (
                at(
                    5,
                    Event::Probe(Probe::Exec(request(
                        Some("live"),
                        Answered::Fail,
                        "podcheck-agent-probe",
                    ))),
                ),
                r#"{"tsMs":5,"event":"probe","via":"exec","endpoint":"live","answer":"fail","userAgent":"podcheck-agent-probe"}"#,
            ),
            (
                at(
                    6,
                    Event::Probe(Probe::Grpc(request(
                        Some(""),
                        Answered::Slow,
                        "grpc-go/1.70",
                    ))),
                ),
                r#"{"tsMs":6,"event":"probe","via":"grpc","endpoint":"","answer":"slow","userAgent":"grpc-go/1.70"}"#,
            ),
            (
                at(
                    7,
                    Event::Probe(Probe::Grpc(request(None, Answered::Unknown, ""))),
                ),
                r#"{"tsMs":7,"event":"probe","via":"grpc","endpoint":null,"answer":"unknown","userAgent":""}"#,
            ),
            (
                at(
                    8,
                    Event::Probe(Probe::Tcp {
                        endpoint: "ready".to_owned(),
                    }),
                ),
                r#"{"tsMs":8,"event":"probe","via":"tcp","endpoint":"ready"}"#,
            ),
            (
                at(
                    9,
                    Event::Signal {
                        signal: Signal::Sigterm,
                    },
                ),
                r#"{"tsMs":9,"event":"signal","signal":"SIGTERM"}"#,
            ),
            (
                at(
                    12,
                    Event::HookStarted {
                        name: "pre-stop".to_owned(),
                        via: HookVia::Http,
                    },
                ),
                r#"{"tsMs":12,"event":"hookStarted","name":"pre-stop","via":"http"}"#,
            ),
            (
                at(
                    13,
                    Event::HookStarted {
                        name: "post_start.1".to_owned(),
                        via: HookVia::Exec,
                    },
                ),
                r#"{"tsMs":13,"event":"hookStarted","name":"post_start.1","via":"exec"}"#,
            ),
            (
                at(
                    14,
                    Event::HookEnded {
                        name: "pre-stop".to_owned(),
                        ok: true,
                    },
                ),
                r#"{"tsMs":14,"event":"hookEnded","name":"pre-stop","ok":true}"#,
            ),
            (
                at(
                    15,
                    Event::HookEnded {
                        name: "".to_owned(),
                        ok: false,
                    },
                ),
                r#"{"tsMs":15,"event":"hookEnded","name":"","ok":false}"#,
            ),
            (
                at(
                    16,
                    Event::Processes {
                        agents: vec![
                            AgentProcess {
                                pod: Some("web".to_owned()),
                                container: "app".to_owned(),
                            },
                            AgentProcess {
                                pod: None,
                                container: "debug".to_owned(),
                            },
                        ],
                        others: 1,
                    },
                ),
                r#"{"tsMs":16,"event":"processes","agents":[{"pod":"web","container":"app"},{"pod":null,"container":"debug"}],"others":1}"#,
            ),
            (
                at(
                    17,
                    Event::Processes {
                        agents: Vec::new(),
                        others: 0,
                    },
                ),
                r#"{"tsMs":17,"event":"processes","agents":[],"others":0}"#,
            ),
            (
                at(10, Event::Exit { code: -1 }),
                r#"{"tsMs":10,"event":"exit","code":-1}"#,
            ),
            (
                at(
                    11,
                    Event::Error {
                        message: "cannot listen on 0.0.0.0:80: \"busy\"".to_owned(),
                    },
                ),
                r#"{"tsMs":11,"event":"error","message":"cannot listen on 0.0.0.0:80: \"busy\""}"#,
            ),
        ]
    }

    #[test]
    fn every_kind_of_line_renders_and_parses_back() {
        for (event, line) in every_kind() {
            assert_eq!(event.to_string(), line);
            assert_eq!(LogEvent::parse(line).expect(line), event);
        }
    }

    #[test]
    fn lines_parse_whatever_the_order_of_their_keys() {
        // The agent used to write its keys sorted; logs of that agent still read.
        let sorted = r#"{"answer":"ok","endpoint":"live","event":"probe","tsMs":1795885927802,"userAgent":"kube-probe/1.35","via":"http"}"#;
        assert_eq!(
            LogEvent::parse(sorted).expect("sorted keys"),
            at(
                1795885927802,
                Event::Probe(Probe::Http(request(
                    Some("live"),
                    Answered::Ok,
                    "kube-probe/1.35"
                )))
            )
        );
        let start =
            r#"{"event":"start","run":{"exit":{"afterMs":100,"code":3}},"start":0,"tsMs":5}"#;
        assert_eq!(
            LogEvent::parse(start).expect("sorted keys").event,
            Event::Start {
                start: 0,
                run: Run::Exit {
                    after_ms: 100,
                    code: 3
                }
            }
        );
    }

    #[test]
    fn a_request_without_a_user_agent_has_an_empty_one() {
        let line = r#"{"event":"probe","via":"http","endpoint":"live","answer":"fail","tsMs":2}"#;
        assert_eq!(
            LogEvent::parse(line).expect("no user agent"),
            at(
                2,
                Event::Probe(Probe::Http(request(Some("live"), Answered::Fail, "")))
            )
        );
    }

    #[test]
    fn lines_that_are_not_agent_events_are_refused() {
        for line in [
            "",
            "hello",
            r#"{"event":"start","start":0,"run":"forever"}"#,
            r#"{"tsMs":1,"event":"nap"}"#,
            r#"{"tsMs":1,"event":"probe","via":"carrier-pigeon","endpoint":"live"}"#,
            r#"{"tsMs":1,"event":"probe","via":"http","endpoint":"live","answer":"maybe","userAgent":""}"#,
            r#"{"tsMs":1,"event":"probe","via":"tcp"}"#,
            r#"{"tsMs":1,"event":"signal","signal":"SIGKILL"}"#,
            r#"{"tsMs":-1,"event":"exit","code":0}"#,
            r#"{"tsMs":1,"event":"hookStarted","name":"a","via":"grpc"}"#,
            r#"{"tsMs":1,"event":"hookStarted","name":"a"}"#,
            r#"{"tsMs":1,"event":"hookEnded","name":"a","ok":"yes"}"#,
            r#"{"tsMs":1,"event":"hookEnded","ok":true}"#,
            r#"{"tsMs":1,"event":"processes","agents":[{"pod":"web"}],"others":0}"#,
            r#"{"tsMs":1,"event":"processes","agents":[],"others":-1}"#,
            r#"{"tsMs":1,"event":"processes","others":0}"#,
        ] {
            let err = LogEvent::parse(line).expect_err(line);
            assert!(
                err.to_string().starts_with("not an agent log event: "),
                "{err}"
            );
        }
    }

    fn log(lines: &[&str]) -> WorkloadLog {
        WorkloadLog::parse(lines)
    }

    #[test]
    fn a_log_skips_foreign_lines_and_knows_its_start() {
        let log = log(&[
            "runtime: container started",
            r#"{"tsMs":1,"event":"start","start":2,"run":"forever"}"#,
            r#"{"tsMs":2,"event":"probe","via":"tcp","endpoint":"ready"}"#,
            r#"{"tsMs":3,"event":"probe","via":"htt"#,
        ]);
        assert_eq!(log.events().as_slice().len(), 2);
        assert_eq!(log.events().start(), Some(2));
        assert_eq!(WorkloadLog::default().events().start(), None);
    }

    #[test]
    fn answers_of_an_endpoint_come_with_their_time_and_answer() {
        let log = log(&[
            r#"{"tsMs":10,"event":"start","start":0,"run":"forever"}"#,
            r#"{"tsMs":11,"event":"probe","via":"http","endpoint":"live","answer":"ok","userAgent":"kube-probe/1.35"}"#,
            r#"{"tsMs":12,"event":"probe","via":"http","endpoint":"ready","answer":"ok","userAgent":"kube-probe/1.35"}"#,
            r#"{"tsMs":13,"event":"probe","via":"grpc","endpoint":"live","answer":"fail","userAgent":"g"}"#,
            r#"{"tsMs":14,"event":"probe","via":"tcp","endpoint":"live"}"#,
            r#"{"tsMs":15,"event":"probe","via":"grpc","endpoint":null,"answer":"unknown","userAgent":"g"}"#,
            r#"{"tsMs":16,"event":"signal","signal":"SIGTERM"}"#,
            r#"{"tsMs":17,"event":"probe","via":"exec","endpoint":"live","answer":"slow","userAgent":"p"}"#,
        ]);
        let live: Vec<ProbeAnswer> = log.events().answers("live").collect();
        assert_eq!(
            live,
            [
                ProbeAnswer {
                    ts_ms: 11,
                    via: Via::Http,
                    answer: Some(Answered::Ok),
                    user_agent: Some("kube-probe/1.35")
                },
                ProbeAnswer {
                    ts_ms: 13,
                    via: Via::Grpc,
                    answer: Some(Answered::Fail),
                    user_agent: Some("g")
                },
                ProbeAnswer {
                    ts_ms: 14,
                    via: Via::Tcp,
                    answer: None,
                    user_agent: None
                },
                ProbeAnswer {
                    ts_ms: 17,
                    via: Via::Exec,
                    answer: Some(Answered::Slow),
                    user_agent: Some("p")
                },
            ]
        );
        let before_kill = log.events().before_first_signal().expect("signalled");
        assert_eq!(
            before_kill.answers("live").last().map(|a| a.ts_ms),
            Some(14)
        );
        assert_eq!(log.events().until(13).count(), 4);
        assert_eq!(log.events().answers("nothing").count(), 0);
        assert_eq!(WorkloadLog::default().events().before_first_signal(), None);
    }

    #[test]
    fn the_latest_process_is_the_one_after_the_last_start() {
        let log = log(&[
            r#"{"tsMs":1,"event":"start","start":0,"run":"forever"}"#,
            r#"{"tsMs":2,"event":"probe","via":"http","endpoint":"live","answer":"fail","userAgent":""}"#,
            r#"{"tsMs":3,"event":"start","start":1,"run":"forever"}"#,
            r#"{"tsMs":4,"event":"probe","via":"http","endpoint":"live","answer":"ok","userAgent":""}"#,
        ]);
        let latest = log.events().since_last_start();
        assert_eq!(latest.start(), Some(1));
        let answers: Vec<Option<Answered>> = latest.answers("live").map(|a| a.answer).collect();
        assert_eq!(answers, [Some(Answered::Ok)]);
        assert!(WorkloadLog::default()
            .events()
            .since_last_start()
            .is_empty());
    }
}
