//! Init containers and native sidecars for generated scenarios: init containers that exit 0
//! (some after failing first), and sidecars that run on (some with probes, some crashing
//! and restarting).

use crate::{probed_container, secs, DECLARED_PORT};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Probe};
use podcheck_oracle::behaviour::{Behaviour, OnSigterm, Run};
use podcheck_oracle::Scenario;
use proptest::prelude::*;

/// One generated init container: a sidecar or not, its behaviour and, for a sidecar, its
/// probes (startup, liveness, readiness).
#[derive(Clone, Debug)]
pub struct InitSpec {
    pub sidecar: bool,
    pub behaviour: Behaviour,
    pub probes: [Option<Probe>; 3],
}

/// How often a generated scenario has init containers.
pub const INIT_PROBABILITY: f64 = 0.3;

/// The first port of the sidecars' health endpoints: sidecar `i` serves on this + `i`,
/// clear of the regular containers' 8080 + index.
const SIDECAR_PORT_OFFSET: u16 = 20;

/// A regular init container: exits 0 after a while, sometimes after failing first.
fn init_behaviour() -> impl Strategy<Value = Behaviour> {
    (prop::collection::vec((1u64..=3, 1i32..=2), 0..=2), 1u64..=5).prop_map(|(failures, after)| {
        Behaviour {
            starts: failures
                .into_iter()
                .map(|(after, code)| Run::Exit {
                    after: secs(after),
                    code,
                })
                .collect(),
            then: Run::Exit {
                after: secs(after),
                code: 0,
            },
            ..Behaviour::forever()
        }
    })
}

/// One to two init containers, each a sidecar with probability 0.4.
pub fn init_containers() -> impl Strategy<Value = Vec<InitSpec>> {
    (1usize..=2).prop_flat_map(|count| {
        (0..count)
            .map(|index| {
                let port_index = SIDECAR_PORT_OFFSET + index as u16;
                (
                    prop::bool::weighted(0.4),
                    init_behaviour(),
                    probed_container(port_index),
                    // Probe scripts often have no single prediction: fewer sidecars
                    // carry them than regular containers do.
                    prop::bool::weighted(0.4),
                )
                    .prop_map(
                        move |(sidecar, init, (probed_behaviour, probes), probed)| {
                            let probes = if probed { probes } else { [None, None, None] };
                            // A sidecar runs on; it may crash once first.
                            let mut behaviour = Behaviour {
                                starts: match probed_behaviour.starts.first() {
                                    Some(Run::Exit { after, code }) => vec![Run::Exit {
                                        after: *after + secs(2),
                                        code: *code,
                                    }],
                                    _ => Vec::new(),
                                },
                                then: Run::Forever,
                                health: probed.then_some(probed_behaviour.health).flatten(),
                                ..Behaviour::forever()
                            };
                            if sidecar {
                                // A sidecar dies of SIGTERM: one that outlives it is refused
                                // where its stop waits for the regular containers.
                                behaviour.on_sigterm = OnSigterm::Die;
                                InitSpec {
                                    sidecar,
                                    behaviour,
                                    probes,
                                }
                            } else {
                                InitSpec {
                                    sidecar,
                                    behaviour: init,
                                    probes: [None, None, None],
                                }
                            }
                        },
                    )
            })
            .collect::<Vec<_>>()
    })
}

/// Puts `specs` on the pod as init containers `i0`, `i1`, ... ahead of its containers.
pub fn with_init(mut scenario: Scenario, specs: &[InitSpec]) -> Scenario {
    let Some(spec) = scenario.pod.spec.as_mut() else {
        return scenario;
    };
    let mut init = Vec::new();
    for (index, generated) in specs.iter().enumerate() {
        let name = format!("i{index}");
        let [startup, liveness, readiness] = generated.probes.clone();
        let probed = startup.is_some() || liveness.is_some() || readiness.is_some();
        init.push(Container {
            name: name.clone(),
            restart_policy: generated.sidecar.then(|| "Always".to_owned()),
            ports: probed.then(|| {
                vec![ContainerPort {
                    name: Some(DECLARED_PORT.to_owned()),
                    container_port: 8080 + i32::from(SIDECAR_PORT_OFFSET) + index as i32,
                    ..ContainerPort::default()
                }]
            }),
            startup_probe: startup,
            liveness_probe: liveness,
            readiness_probe: readiness,
            ..Container::default()
        });
        scenario
            .behaviours
            .insert(name, generated.behaviour.clone());
    }
    spec.init_containers = Some(init);
    scenario
}
