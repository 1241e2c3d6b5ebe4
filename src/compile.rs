//! Compiles a scenario into the Pod manifest a target runs: every container becomes the
//! agent, told its behaviour through the environment, with a state volume that outlives
//! container restarts. The fields set here (image, pull policy, command, environment,
//! volumes) are refused in scenarios (`podcheck_oracle::fields`), so nothing of the
//! scenario's is overwritten.

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, EphemeralContainer, Pod, Volume, VolumeMount,
};
use podcheck_oracle::behaviour::{
    Answer, Behaviour, Endpoint, Health, HookResult, HookScript, OnSigterm, Run, Scripted,
};
use podcheck_oracle::Scenario;
use podcheck_oracle::SpecDuration;
use podcheck_wire as wire;

/// Name of the emptyDir volume the harness adds to every pod.
pub const STATE_VOLUME: &str = "podcheck-state";
pub const STATE_DIR: &str = "/podcheck-state";
/// Label every podcheck pod carries, so targets can find (and clean up) their pods.
pub const CASE_LABEL: &str = "podcheck.io/case";
/// Annotation holding the scenario's fault schedule (JSON), on pods that have one: a
/// target that plays the scenario out by itself (the model) reads it; a real one ignores it.
pub const FAULTS_ANNOTATION: &str = "podcheck.io/faults";
/// Annotation holding the behaviours of the ephemeral containers the fault schedule adds
/// (JSON: name → the agent's behaviour), which targets read to build each one
/// ([`ephemeral_container`]) when its action comes.
pub const EPHEMERAL_ANNOTATION: &str = "podcheck.io/ephemeral-behaviours";
/// Annotation holding the scenario's `observeFor`, on pods whose scenario sets one: the
/// model plays the pod out over the window the harness checks; a real target ignores it.
pub const OBSERVE_FOR_ANNOTATION: &str = "podcheck.io/observe-for";

/// The agent's wire format of a behaviour.
pub fn behaviour_json(behaviour: &Behaviour) -> String {
    to_wire(behaviour).to_json()
}

/// Reads a behaviour back from the agent's wire format.
pub fn behaviour_from_json(text: &str) -> Option<Behaviour> {
    wire::Behaviour::from_json(text).ok().map(from_wire)
}

fn to_wire(behaviour: &Behaviour) -> wire::Behaviour {
    let run = |run: &Run| match *run {
        Run::Forever => wire::Run::Forever,
        Run::Exit { after, code } => wire::Run::Exit {
            after_ms: after.as_millis(),
            code,
        },
    };
    let endpoint = |endpoint: &Endpoint| wire::Endpoint {
        answers: endpoint
            .answers
            .iter()
            .map(|scripted| wire::Step {
                answer: match scripted.answer {
                    Answer::Ok => wire::Answer::Ok,
                    Answer::Fail => wire::Answer::Fail,
                    Answer::Slow(delay) => wire::Answer::SlowMs(delay.as_millis()),
                },
                for_ms: scripted.for_.map(SpecDuration::as_millis),
            })
            .collect(),
        tcp_port: endpoint.tcp_port,
    };
    wire::Behaviour {
        hooks: behaviour
            .hooks
            .iter()
            .map(|(name, hook)| {
                let hook = wire::Hook {
                    fail: hook.result == HookResult::Fail,
                    takes_ms: hook.takes.as_millis(),
                };
                (name.clone(), hook)
            })
            .collect(),
        on_sigterm: match behaviour.on_sigterm {
            OnSigterm::Die => wire::OnSigterm::Die,
            OnSigterm::Ignore => wire::OnSigterm::Ignore,
            OnSigterm::Exit { after, code } => wire::OnSigterm::Exit {
                after_ms: after.as_millis(),
                code,
            },
        },
        health: behaviour.health.as_ref().map(|health| wire::Health {
            endpoints: health
                .endpoints
                .iter()
                .map(|(name, e)| (name.clone(), endpoint(e)))
                .collect(),
            grpc_port: health.grpc_port,
            listen_after_ms: health.listen_after.as_millis(),
            port: health.port,
        }),
        starts: behaviour.starts.iter().map(run).collect(),
        then: run(&behaviour.then),
    }
}

fn from_wire(behaviour: wire::Behaviour) -> Behaviour {
    let run = |run: wire::Run| match run {
        wire::Run::Forever => Run::Forever,
        wire::Run::Exit { after_ms, code } => Run::Exit {
            after: SpecDuration::from_millis(after_ms),
            code,
        },
    };
    let endpoint = |endpoint: wire::Endpoint| Endpoint {
        tcp_port: endpoint.tcp_port,
        answers: endpoint
            .answers
            .into_iter()
            .map(|step| Scripted {
                answer: match step.answer {
                    wire::Answer::Ok => Answer::Ok,
                    wire::Answer::Fail => Answer::Fail,
                    wire::Answer::SlowMs(ms) => Answer::Slow(SpecDuration::from_millis(ms)),
                },
                for_: step.for_ms.map(SpecDuration::from_millis),
            })
            .collect(),
    };
    Behaviour {
        on_sigterm: match behaviour.on_sigterm {
            wire::OnSigterm::Die => OnSigterm::Die,
            wire::OnSigterm::Ignore => OnSigterm::Ignore,
            wire::OnSigterm::Exit { after_ms, code } => OnSigterm::Exit {
                after: SpecDuration::from_millis(after_ms),
                code,
            },
        },
        hooks: behaviour
            .hooks
            .into_iter()
            .map(|(name, hook)| {
                let hook = HookScript {
                    takes: SpecDuration::from_millis(hook.takes_ms),
                    result: if hook.fail {
                        HookResult::Fail
                    } else {
                        HookResult::Ok
                    },
                };
                (name, hook)
            })
            .collect(),
        starts: behaviour.starts.into_iter().map(run).collect(),
        then: run(behaviour.then),
        health: behaviour.health.map(|health| Health {
            port: health.port,
            listen_after: SpecDuration::from_millis(health.listen_after_ms),
            grpc_port: health.grpc_port,
            endpoints: health
                .endpoints
                .into_iter()
                .map(|(name, e)| (name, endpoint(e)))
                .collect(),
        }),
    }
}

/// The manifest for `scenario` on a target with the given image and time scale.
pub fn compile(scenario: &Scenario, image: &str, time_scale: f64) -> Pod {
    let mut pod = scenario.pod.clone();
    pod.metadata.name = Some(scenario.pod_name().to_owned());
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(CASE_LABEL.to_owned(), scenario.name.clone());
    let ephemeral: std::collections::BTreeMap<String, String> = scenario
        .ephemeral_containers()
        .into_iter()
        .map(|(_, name)| {
            let behaviour = scenario
                .behaviour(&name)
                .cloned()
                .unwrap_or_else(Behaviour::forever);
            (name, behaviour_json(&behaviour))
        })
        .collect();
    if !ephemeral.is_empty() {
        if let Ok(text) = serde_json::to_string(&ephemeral) {
            pod.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(EPHEMERAL_ANNOTATION.to_owned(), text);
        }
    }
    if let Some(observe_for) = scenario.observe_for {
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(OBSERVE_FOR_ANNOTATION.to_owned(), observe_for.to_string());
    }
    if !scenario.faults.is_empty() {
        if let Ok(faults) = serde_json::to_string(&scenario.faults) {
            pod.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(FAULTS_ANNOTATION.to_owned(), faults);
        }
    }
    let pod_name = scenario.pod_name().to_owned();
    let Some(spec) = pod.spec.as_mut() else {
        return pod;
    };
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: STATE_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    });
    let init = spec.init_containers.iter_mut().flatten();
    for container in init.chain(spec.containers.iter_mut()) {
        let behaviour = scenario
            .behaviour(&container.name)
            .cloned()
            .unwrap_or_else(Behaviour::forever);
        container.image = Some(image.to_owned());
        container.image_pull_policy = Some("Never".to_owned());
        container.command = None;
        container.args = None;
        let env = agent_env(&pod_name, &container.name, &behaviour, time_scale);
        container.env.get_or_insert_with(Vec::new).extend(env);
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(state_mount());
    }
    pod
}

/// The ephemeral container `name` of a compiled pod, as `kubectl debug` would add it: its
/// behaviour from [`EPHEMERAL_ANNOTATION`], the image, pull policy and time scale of the
/// pod's first container. None when the pod has no behaviour for it.
pub fn ephemeral_container_of(
    pod: &Pod,
    name: &str,
    target: Option<&str>,
) -> Option<EphemeralContainer> {
    let behaviours: std::collections::BTreeMap<String, String> = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EPHEMERAL_ANNOTATION))
        .and_then(|text| serde_json::from_str(text).ok())?;
    let behaviour = behaviour_from_json(behaviours.get(name)?)?;
    let template = pod.spec.as_ref()?.containers.first()?;
    let env_value = |key: &str| {
        template
            .env
            .iter()
            .flatten()
            .find(|var| var.name == key)
            .and_then(|var| var.value.clone())
    };
    let time_scale = env_value(wire::env::TIME_SCALE)?.parse().ok()?;
    let pod_name = env_value(wire::env::POD)
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let mut container = ephemeral_container(
        &pod_name,
        name,
        target,
        &behaviour,
        template.image.as_deref().unwrap_or_default(),
        time_scale,
    );
    container.image_pull_policy = template.image_pull_policy.clone();
    Some(container)
}

/// An ephemeral container of the pod `pod_name` (as [`compile`] named it) that runs the
/// agent acting out `behaviour`, in the namespaces of `target` when given: what a client
/// adds through the pod's `ephemeralcontainers` subresource.
pub fn ephemeral_container(
    pod_name: &str,
    name: &str,
    target: Option<&str>,
    behaviour: &Behaviour,
    image: &str,
    time_scale: f64,
) -> EphemeralContainer {
    EphemeralContainer {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("Never".to_owned()),
        env: Some(agent_env(pod_name, name, behaviour, time_scale)),
        volume_mounts: Some(vec![state_mount()]),
        target_container_name: target.map(str::to_owned),
        ..EphemeralContainer::default()
    }
}

/// The environment that tells the agent of container `container` its behaviour and who
/// it is.
fn agent_env(
    pod_name: &str,
    container: &str,
    behaviour: &Behaviour,
    time_scale: f64,
) -> Vec<EnvVar> {
    [
        (wire::env::BEHAVIOUR, behaviour_json(behaviour)),
        (wire::env::TIME_SCALE, time_scale.to_string()),
        (wire::env::STATE_DIR, STATE_DIR.to_owned()),
        (wire::env::CONTAINER, container.to_owned()),
        (wire::env::POD, pod_name.to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    })
    .collect()
}

/// The state volume, where the agent counts its starts.
fn state_mount() -> VolumeMount {
    VolumeMount {
        name: STATE_VOLUME.to_owned(),
        mount_path: STATE_DIR.to_owned(),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
            ..Behaviour::forever()
        };
        // The exact text the agent has always been given (keys sorted, as a JSON map had
        // them).
        assert_eq!(
            behaviour_json(&behaviour),
            concat!(
                r#"{"health":{"endpoints":{"live":{"answers":[{"answer":{"slowMs":2500},"forMs":10000},{"answer":"fail"}],"tcpPort":9001}},"#,
                r#""grpcPort":9090,"listenAfterMs":3000,"port":8081},"#,
                r#""starts":[{"exit":{"afterMs":1500,"code":3}},"forever"],"then":{"exit":{"afterMs":2000,"code":0}}}"#
            )
        );
        assert_eq!(
            behaviour_from_json(&behaviour_json(&behaviour)),
            Some(behaviour)
        );
    }

    #[test]
    fn sigterm_dispositions_and_hooks_round_trip_through_the_agent_format() {
        let hooks = BTreeMap::from([
            ("post-start".to_owned(), HookScript::default()),
            (
                "pre-stop".to_owned(),
                HookScript {
                    takes: SpecDuration::from_millis(2500),
                    result: HookResult::Fail,
                },
            ),
        ]);
        let graceful = Behaviour {
            on_sigterm: OnSigterm::Exit {
                after: SpecDuration::from_secs(3),
                code: 143,
            },
            hooks,
            ..Behaviour::forever()
        };
        assert_eq!(
            behaviour_json(&graceful),
            concat!(
                r#"{"hooks":{"post-start":{},"pre-stop":{"fail":true,"takesMs":2500}},"#,
                r#""onSigterm":{"exit":{"afterMs":3000,"code":143}},"starts":[],"then":"forever"}"#
            )
        );
        let ignoring = Behaviour {
            on_sigterm: OnSigterm::Ignore,
            ..Behaviour::forever()
        };
        assert_eq!(
            behaviour_json(&ignoring),
            r#"{"onSigterm":"ignore","starts":[],"then":"forever"}"#
        );
        for behaviour in [graceful, ignoring, Behaviour::forever()] {
            assert_eq!(
                behaviour_from_json(&behaviour_json(&behaviour)),
                Some(behaviour)
            );
        }
    }
}
