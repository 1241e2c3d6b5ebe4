//! Compiles a scenario into the Pod manifest a target runs: every container becomes the
//! agent, told its behaviour through the environment, with a state volume that outlives
//! container restarts.

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, EnvVar, Pod, Volume, VolumeMount};
use podcheck_oracle::behaviour::{Answer, Behaviour, Endpoint, Health, Run, Scripted};
use podcheck_oracle::Scenario;
use podcheck_oracle::SpecDuration;
use serde_json::json;
use std::collections::BTreeMap;

/// Name of the emptyDir volume the harness adds to every pod.
pub const STATE_VOLUME: &str = "podcheck-state";
pub const STATE_DIR: &str = "/podcheck-state";
/// Label every podcheck pod carries, so targets can find (and clean up) their pods.
pub const CASE_LABEL: &str = "podcheck.io/case";

/// The agent's wire format of a behaviour (see agent/src/main.rs).
pub fn behaviour_json(behaviour: &Behaviour) -> String {
    let run = |run: &Run| match run {
        Run::Forever => json!("forever"),
        Run::Exit { after, code } => json!({"exit": {"afterMs": after.as_millis(), "code": code}}),
    };
    let mut wire = json!({
        "starts": behaviour.starts.iter().map(run).collect::<Vec<_>>(),
        "then": run(&behaviour.then),
    });
    if let (Some(health), Some(object)) = (&behaviour.health, wire.as_object_mut()) {
        let endpoints: serde_json::Map<String, serde_json::Value> = health
            .endpoints
            .iter()
            .map(|(name, endpoint)| {
                let answers: Vec<serde_json::Value> = endpoint
                    .answers
                    .iter()
                    .map(|scripted| {
                        let mut entry = json!({"answer": match scripted.answer {
                            Answer::Ok => json!("ok"),
                            Answer::Fail => json!("fail"),
                            Answer::Slow(delay) => json!({"slowMs": delay.as_millis()}),
                        }});
                        if let (Some(length), Some(entry)) = (scripted.for_, entry.as_object_mut())
                        {
                            entry.insert("forMs".to_owned(), json!(length.as_millis()));
                        }
                        entry
                    })
                    .collect();
                let mut wire = json!({"answers": answers});
                if let (Some(port), Some(wire)) = (endpoint.tcp_port, wire.as_object_mut()) {
                    wire.insert("tcpPort".to_owned(), json!(port));
                }
                (name.clone(), wire)
            })
            .collect();
        let mut wire = json!({
            "port": health.port,
            "listenAfterMs": health.listen_after.as_millis(),
            "endpoints": endpoints,
        });
        if let (Some(port), Some(wire)) = (health.grpc_port, wire.as_object_mut()) {
            wire.insert("grpcPort".to_owned(), json!(port));
        }
        object.insert("health".to_owned(), wire);
    }
    wire.to_string()
}

fn health_from_json(value: &serde_json::Value) -> Option<Health> {
    let millis = |v: &serde_json::Value| v.as_u64().map(SpecDuration::from_millis);
    let mut endpoints = BTreeMap::new();
    for (name, endpoint) in value.get("endpoints")?.as_object()? {
        let answers = endpoint
            .get("answers")?
            .as_array()?
            .iter()
            .map(|entry| {
                let answer = match entry.get("answer")? {
                    serde_json::Value::String(text) if text == "ok" => Answer::Ok,
                    serde_json::Value::String(text) if text == "fail" => Answer::Fail,
                    other => Answer::Slow(millis(other.get("slowMs")?)?),
                };
                let for_ = match entry.get("forMs") {
                    Some(length) => Some(millis(length)?),
                    None => None,
                };
                Some(Scripted { answer, for_ })
            })
            .collect::<Option<Vec<_>>>()?;
        let tcp_port = match endpoint.get("tcpPort") {
            Some(port) => Some(u16::try_from(port.as_u64()?).ok()?),
            None => None,
        };
        endpoints.insert(name.clone(), Endpoint { tcp_port, answers });
    }
    Some(Health {
        port: u16::try_from(value.get("port")?.as_u64()?).ok()?,
        listen_after: millis(value.get("listenAfterMs")?)?,
        grpc_port: match value.get("grpcPort") {
            Some(port) => Some(u16::try_from(port.as_u64()?).ok()?),
            None => None,
        },
        endpoints,
    })
}

/// Reads a behaviour back from the agent's wire format.
pub fn behaviour_from_json(text: &str) -> Option<Behaviour> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let run = |value: &serde_json::Value| -> Option<Run> {
        if value.as_str() == Some("forever") {
            return Some(Run::Forever);
        }
        let exit = value.get("exit")?;
        Some(Run::Exit {
            after: podcheck_oracle::SpecDuration::from_millis(exit.get("afterMs")?.as_u64()?),
            code: i32::try_from(exit.get("code")?.as_i64()?).ok()?,
        })
    };
    Some(Behaviour {
        starts: value
            .get("starts")?
            .as_array()?
            .iter()
            .map(run)
            .collect::<Option<Vec<_>>>()?,
        then: run(value.get("then")?)?,
        health: match value.get("health") {
            Some(health) => Some(health_from_json(health)?),
            None => None,
        },
    })
}

/// The manifest for `scenario` on a target with the given image and time scale.
pub fn compile(scenario: &Scenario, image: &str, time_scale: f64) -> Pod {
    let mut pod = scenario.pod.clone();
    pod.metadata.name = Some(scenario.pod_name().to_owned());
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(CASE_LABEL.to_owned(), scenario.name.clone());
    let Some(spec) = pod.spec.as_mut() else {
        return pod;
    };
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: STATE_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    });
    for container in &mut spec.containers {
        let behaviour = scenario
            .behaviour(&container.name)
            .cloned()
            .unwrap_or_else(Behaviour::forever);
        container.image = Some(image.to_owned());
        container.image_pull_policy = Some("Never".to_owned());
        container.command = None;
        container.args = None;
        let env = container.env.get_or_insert_with(Vec::new);
        for (name, value) in [
            ("PODCHECK_BEHAVIOUR", behaviour_json(&behaviour)),
            ("PODCHECK_TIME_SCALE", time_scale.to_string()),
            ("PODCHECK_STATE_DIR", STATE_DIR.to_owned()),
            ("PODCHECK_CONTAINER", container.name.clone()),
        ] {
            env.push(EnvVar {
                name: name.to_owned(),
                value: Some(value),
                value_from: None,
            });
        }
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: STATE_VOLUME.to_owned(),
                mount_path: STATE_DIR.to_owned(),
                ..VolumeMount::default()
            });
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_round_trips_through_the_agent_format() {
        let behaviour = Behaviour {
            starts: vec![
                Run::Exit {
                    after: SpecDuration::from_millis(1500),
                    code: 3,
                },
                Run::Forever,
            ],
            then: Run::Exit {
                after: SpecDuration::from_secs(2),
                code: 0,
            },
            health: Some(Health {
                port: 8081,
                listen_after: SpecDuration::from_secs(3),
                grpc_port: Some(9090),
                endpoints: BTreeMap::from([(
                    "live".to_owned(),
                    Endpoint {
                        tcp_port: Some(9001),
                        answers: vec![
                            Scripted {
                                answer: Answer::Slow(SpecDuration::from_millis(2500)),
                                for_: Some(SpecDuration::from_secs(10)),
                            },
                            Scripted {
                                answer: Answer::Fail,
                                for_: None,
                            },
                        ],
                    },
                )]),
            }),
        };
        assert_eq!(
            behaviour_from_json(&behaviour_json(&behaviour)),
            Some(behaviour)
        );
    }
}
