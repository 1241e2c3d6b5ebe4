//! What the harness tells the agent to do: the behaviour of one container.
//!
//! Every struct declares its fields in alphabetical order. The harness used to build this
//! JSON as a `serde_json` map, which sorts its keys; declaring the same order keeps the
//! serialized form byte for byte what the agent has always been given.

use crate::errors::{BehaviourError, InvalidHealth};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One container's scripted behaviour:
/// `{"health":HEALTH,"starts":[RUN...],"then":RUN}`.
///
/// Start N of the container (counted across restarts) acts out `starts[N]`, every later
/// start `then`. Unknown top-level fields are ignored, so a newer harness can add fields
/// an older agent does not act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Behaviour {
    /// Health endpoints for probes; without them nothing listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default)]
    pub starts: Vec<Run>,
    pub then: Run,
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
            starts: Vec::new(),
            then: Run::Forever,
        }
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
    /// malformed rest. Only the shape is checked: [`Health::validate`] tells whether the
    /// agent can serve the endpoints.
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

    #[test]
    fn a_behaviour_round_trips() {
        for behaviour in [example(), Behaviour::forever()] {
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
