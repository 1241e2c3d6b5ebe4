//! Init containers and native sidecars for generated scenarios: init containers that exit 0
//! (some after failing first), and sidecars that run on (some with probes, some crashing
//! and restarting).

use crate::{probed_container, secs, DECLARED_PORT};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Probe};
use podcheck_oracle::behaviour::{Behaviour, OnSigterm, Run};
use podcheck_oracle::scenario::{Fault, FaultAction};
use podcheck_oracle::{Scenario, SpecDuration};
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

/// An ephemeral container `e0` added to the running pod: its behaviour (a short run or
/// running on), when it is added, and whether it targets the first container.
#[derive(Clone, Debug)]
pub struct EphemeralSpec {
    pub behaviour: Behaviour,
    pub at: SpecDuration,
    pub targets_first: bool,
}

/// How often a generated scenario adds an ephemeral container.
pub const EPHEMERAL_PROBABILITY: f64 = 0.12;

pub fn ephemeral_container() -> impl Strategy<Value = EphemeralSpec> {
    (
        // Mostly a short run: one still running when a Never or OnFailure pod is done is
        // killed with the pod, which is not modelled.
        prop::option::weighted(0.8, (1u64..=4, 0i32..=2)),
        2u64..=8,
        any::<bool>(),
    )
        .prop_map(|(exit, at, targets_first)| EphemeralSpec {
            behaviour: Behaviour {
                then: match exit {
                    Some((after, code)) => Run::Exit {
                        after: secs(after),
                        code,
                    },
                    None => Run::Forever,
                },
                ..Behaviour::forever()
            },
            at: secs(at),
            targets_first,
        })
}

/// Adds `spec`'s ephemeral container to the fault schedule, unless the pod is deleted
/// first (the kubelet starts nothing in a terminating pod; validation refuses it).
pub fn with_ephemeral(mut scenario: Scenario, spec: &EphemeralSpec) -> Scenario {
    let deleted_at = scenario.deleted_at();
    if deleted_at.is_some_and(|deleted| deleted <= spec.at) {
        return scenario;
    }
    let target = spec
        .targets_first
        .then(|| scenario.containers().first().map(|c| c.name.clone()))
        .flatten();
    scenario
        .behaviours
        .insert(EPHEMERAL_NAME.to_owned(), spec.behaviour.clone());
    scenario.faults.push(Fault {
        at: spec.at,
        action: FaultAction::AddEphemeralContainer {
            name: EPHEMERAL_NAME.to_owned(),
            target_container_name: target,
        },
    });
    scenario.faults.sort_by_key(|f| f.at);
    scenario
}

/// The name of a generated ephemeral container.
const EPHEMERAL_NAME: &str = "e0";

/// Drops an ephemeral container's addition that placing the faults at decidable times
/// moved to or past the deletion.
pub fn ephemeral_before_deletion(mut scenario: Scenario) -> Scenario {
    let deleted_at = scenario.deleted_at();
    let Some(deleted_at) = deleted_at else {
        return scenario;
    };
    let dropped: Vec<String> = scenario
        .faults
        .iter()
        .filter_map(|f| match &f.action {
            FaultAction::AddEphemeralContainer { name, .. } if f.at >= deleted_at => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect();
    scenario.faults.retain(|f| {
        !matches!(&f.action, FaultAction::AddEphemeralContainer { name, .. } if dropped.contains(name))
    });
    for name in dropped {
        scenario.behaviours.remove(&name);
    }
    scenario
}
