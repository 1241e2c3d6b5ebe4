//! What the harness tells the agent to do: the behaviour of one container.
//!
//! Every struct declares its fields in alphabetical order. The harness used to build this
//! JSON as a `serde_json` map, which sorts its keys; declaring the same order keeps the
//! serialized form byte for byte what the agent has always been given. Fields added since
//! (`hooks`, `onSigterm`) are left out at their defaults, so a behaviour that does not use
//! them still reads as it always has.

use crate::errors::{BehaviourError, InvalidBehaviour, InvalidHealth};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One container's scripted behaviour:
/// `{"health":HEALTH,"hooks":{NAME:HOOK...},"onSigterm":ON_SIGTERM,"starts":[RUN...],"then":RUN}`.
///
/// Start N of the container (counted across restarts) acts out `starts[N]`, every later
/// start `then`; `health`, `hooks` and `onSigterm` are the same on every start. Unknown
/// top-level fields are ignored, so a newer harness can add fields an older agent does
/// not act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Behaviour {
    /// Health endpoints for probes; without them (and without hooks) nothing listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Lifecycle hook calls the process answers, by name, on the hook port
    /// ([`Behaviour::hook_port`]): `GET /hook/NAME` (an httpGet handler), and
    /// `podcheck-agent hook NAME` (an exec handler), which sends `GET /hook/NAME?via=exec`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hooks: BTreeMap<String, Hook>,
    /// What the process does when SIGTERM arrives.
    #[serde(default, skip_serializing_if = "OnSigterm::is_die")]
    pub on_sigterm: OnSigterm,
    #[serde(default)]
    pub starts: Vec<Run>,
    pub then: Run,
}

/// What the process does when SIGTERM arrives: `"die"` (the default), `"ignore"` or
/// `{"exit":{"afterMs":N,"code":C}}`. In every case the signal is logged when it arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnSigterm {
    /// The default disposition: the process dies of the signal (exit status 143).
    #[default]
    Die,
    /// The signal is ignored: the process carries on, and only SIGKILL ends it.
    Ignore,
    /// A graceful shutdown: `after_ms` spec milliseconds after the signal the process exits
    /// with `code` (unless its run ends it first).
    Exit {
        #[serde(rename = "afterMs")]
        after_ms: u64,
        code: i32,
    },
}

impl OnSigterm {
    /// Whether this is the default, which the JSON leaves out.
    pub fn is_die(&self) -> bool {
        *self == OnSigterm::Die
    }
}

/// How the process answers one named hook call: `{"fail":true,"takesMs":N}`, both
/// optional. The call is answered `takes_ms` spec milliseconds after it arrives: HTTP 200
/// (the exec handler exits 0), or with `fail` HTTP 500 (the exec handler exits 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hook {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub takes_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How one start of the container runs: `"forever"` or `{"exit":{"afterMs":N,"code":C}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Run {
    /// Run until killed.
    Forever,
    /// Exit with `code` `after_ms` spec milliseconds after the start.
    Exit {
        #[serde(rename = "afterMs")]
        after_ms: u64,
        code: i32,
    },
}

/// The health endpoints:
/// `{"endpoints":{NAME:ENDPOINT...},"grpcPort":G,"listenAfterMs":N,"port":P}`.
///
/// From `listen_after_ms` on (spec milliseconds after the start; before it connections are
/// refused), an HTTP server on `port` answers `GET /NAME`, and a gRPC health server
/// (grpc.health.v1) on `grpc_port`, if given, answers `Health/Check` for service NAME.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_port: Option<u16>,
    #[serde(default)]
    pub listen_after_ms: u64,
    pub port: u16,
}

/// One endpoint: `{"answers":[STEP...],"tcpPort":T}`.
///
/// With `tcp_port`, a TCP listener on it is open exactly while the endpoint's answer is not
/// [`Answer::Fail`] (and `listen_after_ms` has passed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// The script, timed from the start: each step lasts its `for_ms`, the first step
    /// without one lasts forever, and when the script runs out the last answer continues
    /// (an empty script always fails).
    pub answers: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
}

/// One step of an endpoint's script: `{"answer":ANSWER,"forMs":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    pub answer: Answer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
}

/// What an endpoint answers: `"ok"`, `"fail"` or `{"slowMs":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer {
    /// HTTP 200, gRPC SERVING, exec exit 0, TCP listening.
    Ok,
    /// HTTP 500, gRPC NOT_SERVING, exec exit 1, TCP not listening.
    Fail,
    /// Answers OK, but only after this many spec milliseconds; TCP listening.
    SlowMs(u64),
}

impl Behaviour {
    /// Runs forever and serves nothing: what a container without a behaviour does.
    pub fn forever() -> Behaviour {
        Behaviour {
            health: None,
            hooks: BTreeMap::new(),
            on_sigterm: OnSigterm::Die,
            starts: Vec::new(),
            then: Run::Forever,
        }
    }

    /// The port hook calls are answered on when there are hooks without health endpoints.
    pub const DEFAULT_HOOK_PORT: u16 = 8080;

    /// The port the process answers hook calls on (`GET /hook/NAME`, and the exec handler
    /// through it): the health port, or [`Behaviour::DEFAULT_HOOK_PORT`] when there are
    /// hooks but no health endpoints. `None` when the process answers no hook.
    pub fn hook_port(&self) -> Option<u16> {
        match &self.health {
            Some(health) => Some(health.port),
            None if !self.hooks.is_empty() => Some(Self::DEFAULT_HOOK_PORT),
            None => None,
        }
    }

    /// Checks what the agent needs to act the behaviour out: servable health endpoints
    /// ([`Health::validate`]), hook names that can be requested as `GET /hook/NAME`, and
    /// a hook port that listens from the start. A hook call may come right after the start
    /// (a postStart handler) and is answered on the health port, so hooks and a
    /// `listenAfterMs` cannot go together.
    pub fn validate(&self) -> Result<(), InvalidBehaviour> {
        if let Some(health) = &self.health {
            health.validate()?;
        }
        for name in self.hooks.keys() {
            if !is_hook_name(name) {
                return Err(InvalidBehaviour::hooks(format!(
                    "hook name {name:?} is not a non-empty string of letters, digits, '-', '_' and '.'"
                )));
            }
        }
        if let Some(health) = self.health.as_ref().filter(|_| !self.hooks.is_empty()) {
            if health.listen_after_ms > 0 {
                return Err(InvalidBehaviour::hooks(
                    "hooks are answered on the health port, which must listen from the start: \
                     health.listenAfterMs must be 0",
                ));
            }
            if let Some(name) = self
                .hooks
                .keys()
                .find(|name| health.endpoints.contains_key(&format!("hook/{name}")))
            {
                return Err(InvalidBehaviour::hooks(format!(
                    "endpoint hook/{name} would take the requests of hook {name}"
                )));
            }
        }
        Ok(())
    }

    /// The run of start `index` (0-based, counted across restarts).
    pub fn run_of_start(&self, index: u32) -> Run {
        usize::try_from(index)
            .ok()
            .and_then(|index| self.starts.get(index))
            .copied()
            .unwrap_or(self.then)
    }

    /// Reads a behaviour from its JSON, telling a malformed `health` apart from a
    /// malformed rest. Only the shape is checked: [`Behaviour::validate`] tells whether the
    /// agent can act it out.
    pub fn from_json(text: &str) -> Result<Behaviour, BehaviourError> {
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|source| BehaviourError::NotJson { source })?;
        let health = match value.as_object_mut().and_then(|o| o.remove("health")) {
            None | Some(serde_json::Value::Null) => None,
            Some(health) => Some(
                Health::deserialize(health).map_err(|source| BehaviourError::Health { source })?,
            ),
        };
        let behaviour =
            Behaviour::deserialize(value).map_err(|source| BehaviourError::Behaviour { source })?;
        Ok(Behaviour {
            health,
            ..behaviour
        })
    }

    /// The JSON the agent reads.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of numbers, strings and string-keyed maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Health {
    /// Checks what the agent needs to serve the endpoints: ports from 1 to 65535, each
    /// used once, and endpoint names that can be requested as `GET /NAME`.
    pub fn validate(&self) -> Result<(), InvalidHealth> {
        if self.port == 0 {
            return Err(InvalidHealth::new("port must be 1 to 65535"));
        }
        let mut ports = vec![self.port];
        if let Some(port) = self.grpc_port {
            if port == 0 {
                return Err(InvalidHealth::new("grpcPort must be 1 to 65535"));
            }
            if port == self.port {
                return Err(InvalidHealth::new(format!(
                    "grpcPort {port} is also the HTTP port"
                )));
            }
            ports.push(port);
        }
        for (name, endpoint) in &self.endpoints {
            if name.is_empty()
                || name
                    .chars()
                    .any(|c| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
            {
                return Err(InvalidHealth::new(format!(
                    "endpoint name {name:?} cannot be requested as GET /<name>"
                )));
            }
            if let Some(port) = endpoint.tcp_port {
                if port == 0 {
                    return Err(InvalidHealth::new(format!(
                        "endpoint {name}: tcpPort must be 1 to 65535"
                    )));
                }
                if ports.contains(&port) {
                    return Err(InvalidHealth::new(format!(
                        "endpoint {name}: port {port} is used twice"
                    )));
                }
                ports.push(port);
            }
        }
        Ok(())
    }
}

/// Whether `name` can name a hook: a non-empty string of ASCII letters, digits, `-`, `_`
/// and `.`, which goes into a request path as it is.
pub fn is_hook_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Answer {
    /// How the agent logs having given this answer.
    pub fn answered(self) -> crate::Answered {
        match self {
            Answer::Ok => crate::Answered::Ok,
            Answer::Fail => crate::Answered::Fail,
            Answer::SlowMs(_) => crate::Answered::Slow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Behaviour {
        Behaviour {
            health: Some(Health {
                endpoints: BTreeMap::from([
                    (
                        "live".to_owned(),
                        Endpoint {
                            answers: vec![
                                Step {
                                    answer: Answer::SlowMs(2500),
                                    for_ms: Some(10_000),
                                },
                                Step {
                                    answer: Answer::Fail,
                                    for_ms: None,
                                },
                            ],
                            tcp_port: Some(9001),
                        },
                    ),
                    (
                        "ready".to_owned(),
                        Endpoint {
                            answers: vec![Step {
                                answer: Answer::Ok,
                                for_ms: None,
                            }],
                            tcp_port: None,
                        },
                    ),
                ]),
                grpc_port: Some(9090),
                listen_after_ms: 3000,
                port: 8081,
            }),
            hooks: BTreeMap::new(),
            on_sigterm: OnSigterm::Die,
            starts: vec![
                Run::Exit {
                    after_ms: 1500,
                    code: 3,
                },
                Run::Forever,
            ],
            then: Run::Exit {
                after_ms: 2000,
                code: 0,
            },
        }
    }

    /// The exact text the harness has always passed, built as a sorted JSON map.
    const EXAMPLE_JSON: &str = concat!(
        r#"{"health":{"endpoints":{"#,
        r#""live":{"answers":[{"answer":{"slowMs":2500},"forMs":10000},{"answer":"fail"}],"tcpPort":9001},"#,
        r#""ready":{"answers":[{"answer":"ok"}]}},"#,
        r#""grpcPort":9090,"listenAfterMs":3000,"port":8081},"#,
        r#""starts":[{"exit":{"afterMs":1500,"code":3}},"forever"],"#,
        r#""then":{"exit":{"afterMs":2000,"code":0}}}"#
    );

    #[test]
    fn a_behaviour_serializes_as_it_always_has() {
        assert_eq!(example().to_json(), EXAMPLE_JSON);
        assert_eq!(
            Behaviour::forever().to_json(),
            r#"{"starts":[],"then":"forever"}"#
        );
    }

    /// A behaviour with hooks and a graceful shutdown, and its exact text.
    fn with_hooks() -> (Behaviour, &'static str) {
        let behaviour = Behaviour {
            health: Some(Health {
                endpoints: BTreeMap::new(),
                grpc_port: None,
                listen_after_ms: 0,
                port: 8081,
            }),
            hooks: BTreeMap::from([
                ("post-start".to_owned(), Hook::default()),
                (
                    "pre_stop.v2".to_owned(),
                    Hook {
                        fail: true,
                        takes_ms: 2500,
                    },
                ),
            ]),
            on_sigterm: OnSigterm::Exit {
                after_ms: 1000,
                code: 0,
            },
            ..Behaviour::forever()
        };
        let text = concat!(
            r#"{"health":{"endpoints":{},"listenAfterMs":0,"port":8081},"#,
            r#""hooks":{"post-start":{},"pre_stop.v2":{"fail":true,"takesMs":2500}},"#,
            r#""onSigterm":{"exit":{"afterMs":1000,"code":0}},"#,
            r#""starts":[],"then":"forever"}"#
        );
        (behaviour, text)
    }

    #[test]
    fn hooks_and_a_sigterm_disposition_serialize_in_key_order() {
        let (behaviour, text) = with_hooks();
        assert_eq!(behaviour.to_json(), text);
        let ignore = Behaviour {
            on_sigterm: OnSigterm::Ignore,
            ..Behaviour::forever()
        };
        assert_eq!(
            ignore.to_json(),
            r#"{"onSigterm":"ignore","starts":[],"then":"forever"}"#
        );
    }

    #[test]
    fn the_default_sigterm_disposition_and_hook_fields_are_left_out() {
        let die = Behaviour {
            on_sigterm: OnSigterm::Die,
            hooks: BTreeMap::new(),
            ..Behaviour::forever()
        };
        assert_eq!(die.to_json(), r#"{"starts":[],"then":"forever"}"#);
        let read = Behaviour::from_json(
            r#"{"then":"forever","onSigterm":"die","hooks":{"a":{"fail":false,"takesMs":0}}}"#,
        )
        .expect("valid");
        assert_eq!(read.on_sigterm, OnSigterm::Die);
        assert_eq!(read.hooks.get("a"), Some(&Hook::default()));
        assert_eq!(
            read.to_json(),
            r#"{"hooks":{"a":{}},"starts":[],"then":"forever"}"#
        );
    }

    #[test]
    fn malformed_hooks_and_sigterm_dispositions_are_refused() {
        for (text, needle) in [
            (r#"{"then":"forever","onSigterm":"linger"}"#, "linger"),
            (
                r#"{"then":"forever","onSigterm":{"exit":{"afterMs":1}}}"#,
                "missing field `code`",
            ),
            (
                r#"{"then":"forever","hooks":{"a":{"takes":5}}}"#,
                "unknown field `takes`",
            ),
            (r#"{"then":"forever","hooks":{"a":{"fail":"yes"}}}"#, "yes"),
        ] {
            let message = Behaviour::from_json(text)
                .expect_err("malformed")
                .to_string();
            assert!(message.starts_with("not a behaviour: "), "{message}");
            assert!(
                message.contains(needle),
                "{message} should mention {needle}"
            );
        }
    }

    #[test]
    fn the_hook_port_is_the_health_port_or_the_default() {
        let (behaviour, _) = with_hooks();
        assert_eq!(behaviour.hook_port(), Some(8081));
        let hooks_only = Behaviour {
            health: None,
            ..behaviour.clone()
        };
        assert_eq!(hooks_only.hook_port(), Some(8080));
        let health_only = Behaviour {
            hooks: BTreeMap::new(),
            ..behaviour
        };
        assert_eq!(health_only.hook_port(), Some(8081));
        assert_eq!(Behaviour::forever().hook_port(), None);
    }

    #[test]
    fn hooks_the_agent_cannot_serve_are_invalid_with_a_reason() {
        let (behaviour, _) = with_hooks();
        assert_eq!(behaviour.validate(), Ok(()));
        assert_eq!(example().validate(), Ok(()));
        let with_hook = |name: &str| Behaviour {
            hooks: BTreeMap::from([(name.to_owned(), Hook::default())]),
            ..Behaviour::forever()
        };
        assert_eq!(with_hook("A-z_0.9").validate(), Ok(()));
        for name in ["", "a b", "pre/stop", "a?b", "é"] {
            let message = with_hook(name)
                .validate()
                .expect_err("invalid name")
                .to_string();
            assert!(message.starts_with("hooks are invalid: "), "{message}");
            assert!(message.contains(&format!("{name:?}")), "{message}");
        }

        let mut late = behaviour.clone();
        if let Some(health) = late.health.as_mut() {
            health.listen_after_ms = 1;
        }
        let message = late.validate().expect_err("late listener").to_string();
        assert!(message.contains("listenAfterMs must be 0"), "{message}");
        // Without hooks a late listener is fine.
        late.hooks.clear();
        assert_eq!(late.validate(), Ok(()));

        let mut shadowed = behaviour.clone();
        if let Some(health) = shadowed.health.as_mut() {
            let endpoint = Endpoint {
                answers: Vec::new(),
                tcp_port: None,
            };
            health
                .endpoints
                .insert("hook/post-start".to_owned(), endpoint);
        }
        let message = shadowed.validate().expect_err("shadowed").to_string();
        assert!(message.contains("hook/post-start"), "{message}");

        let mut bad_health = behaviour;
        if let Some(health) = bad_health.health.as_mut() {
            health.port = 0;
        }
        let message = bad_health.validate().expect_err("bad port").to_string();
        assert!(message.starts_with("health is invalid: "), "{message}");
    }

    #[test]
    fn a_behaviour_round_trips() {
        for behaviour in [example(), Behaviour::forever(), with_hooks().0] {
            assert_eq!(
                Behaviour::from_json(&behaviour.to_json()).ok(),
                Some(behaviour)
            );
        }
    }

    #[test]
    fn omitted_fields_take_their_defaults() {
        let behaviour =
            Behaviour::from_json(r#"{"then":"forever","health":{"port":80},"future":1}"#)
                .expect("valid");
        assert_eq!(
            behaviour,
            Behaviour {
                health: Some(Health {
                    endpoints: BTreeMap::new(),
                    grpc_port: None,
                    listen_after_ms: 0,
                    port: 80,
                }),
                ..Behaviour::forever()
            }
        );
        assert_eq!(
            Behaviour::from_json(r#"{"then":"forever","health":null}"#).ok(),
            Some(Behaviour::forever())
        );
    }

    #[test]
    fn starts_past_the_list_run_then() {
        let behaviour = example();
        assert_eq!(
            behaviour.run_of_start(0),
            Run::Exit {
                after_ms: 1500,
                code: 3
            }
        );
        assert_eq!(behaviour.run_of_start(1), Run::Forever);
        assert_eq!(behaviour.run_of_start(2), behaviour.then);
        assert_eq!(behaviour.run_of_start(u32::MAX), behaviour.then);
    }

    #[test]
    fn a_malformed_health_is_told_apart_from_a_malformed_rest() {
        let health = |health: serde_json::Value| {
            Behaviour::from_json(&json!({"then": "forever", "health": health}).to_string())
                .expect_err("malformed")
                .to_string()
        };
        for (value, needle) in [
            (json!({"endpoints": {}}), "missing field `port`"),
            (json!({"port": 80, "listenAfter": 5}), "listenAfter"),
            (
                json!({"port": 80, "endpoints": {"x": {"answers": [{"answer": "maybe"}]}}}),
                "maybe",
            ),
            (json!({"port": 80, "grpcPort": "81"}), "u16"),
        ] {
            let message = health(value);
            assert!(message.starts_with("health is invalid: "), "{message}");
            assert!(
                message.contains(needle),
                "{message} should mention {needle}"
            );
        }
        for (text, needle) in [
            ("{", "not JSON"),
            (r#"{"starts":[]}"#, "missing field `then`"),
            (r#"{"then":"sometimes"}"#, "sometimes"),
            (r#"{"then":{"exit":{"afterMs":-1,"code":0}}}"#, "-1"),
        ] {
            let message = Behaviour::from_json(text)
                .expect_err("malformed")
                .to_string();
            assert!(!message.contains("health"), "{message}");
            assert!(
                message.contains(needle),
                "{message} should mention {needle}"
            );
        }
    }

    #[test]
    fn health_the_agent_cannot_serve_is_invalid_with_a_reason() {
        let health = |value: serde_json::Value| -> Health {
            serde_json::from_value(value).expect("well-formed")
        };
        assert_eq!(example().health.map(|h| h.validate()), Some(Ok(())));
        for (value, needle) in [
            (json!({"port": 0}), "port must be"),
            (
                json!({"port": 80, "endpoints": {"x": {"tcpPort": 80, "answers": []}}}),
                "used twice",
            ),
            (
                json!({"port": 80, "endpoints": {"x": {"tcpPort": 0, "answers": []}}}),
                "tcpPort must be",
            ),
            (
                json!({"port": 80, "endpoints": {"a b": {"answers": []}}}),
                "cannot be requested",
            ),
            (
                json!({"port": 80, "endpoints": {"": {"answers": []}}}),
                "cannot be requested",
            ),
            (json!({"port": 80, "grpcPort": 0}), "grpcPort"),
            (json!({"port": 80, "grpcPort": 80}), "grpcPort 80"),
            (
                json!({"port": 80, "grpcPort": 81, "endpoints": {"x": {"tcpPort": 81, "answers": []}}}),
                "used twice",
            ),
        ] {
            let message = health(value).validate().expect_err("invalid").to_string();
            assert!(message.starts_with("health is invalid: "), "{message}");
            assert!(
                message.contains(needle),
                "{message} should mention {needle}"
            );
        }
    }
}
