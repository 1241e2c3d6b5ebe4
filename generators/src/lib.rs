//! Generators of podcheck scenarios: proptest strategies (they shrink towards small pods,
//! short runs, exit code 0 and the smallest fault schedule), `arbitrary` for
//! coverage-guided fuzzers, and invalid scenarios paired with the field validation must
//! name.
//!
//! About a third of generated scenarios carry a fault schedule (kills from outside, a
//! deletion, a finalizer and its removal) with SIGTERM dispositions and preStop hooks on
//! their containers ([`faults`]).
//!
//! # Cargo features
//!
//! - `quickcheck`: [`quickcheck::Arbitrary`](::quickcheck::Arbitrary) for
//!   [`QuickScenario`], for properties written with the `quickcheck` crate; it shrinks
//!   through the same byte encoding as the `arbitrary` impl.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, GRPCAction, HTTPGetAction, Pod, PodSpec, Probe,
    ResourceRequirements, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podcheck_oracle::behaviour::{Answer, Behaviour, Endpoint, Health, Run, Scripted};
use podcheck_oracle::probes::ProbeKind;
use podcheck_oracle::scenario::{CrashLoopBackOffConfig, FeatureGates, KubeletParams, Scenario};
use podcheck_oracle::SpecDuration;
use proptest::prelude::*;
use std::collections::BTreeMap;

pub mod faults;
mod fuzzing;
pub mod init;
#[cfg(feature = "quickcheck")]
mod quick;

pub use faults::{
    fault_schedule, hook, on_sigterm, termination, with_termination, Termination,
    GENERATE_POST_START,
};
pub use fuzzing::ArbitraryScenario;
#[cfg(feature = "quickcheck")]
pub use quick::QuickScenario;

/// Exit codes worth distinguishing: success, ordinary failures, and codes that look like
/// signals (137 = 128 + SIGKILL, which is *not* an OOM kill).
pub const EXIT_CODES: &[i32] = &[0, 1, 2, 3, 42, 137, 143, 255];

pub fn run() -> impl Strategy<Value = Run> {
    prop_oneof![
        12 => (1u64..=40, one_of(EXIT_CODES)).prop_map(|(half_secs, code)| Run::Exit {
            after: SpecDuration::from_millis(half_secs * 500),
            code,
        }),
        4 => Just(Run::Forever),
        // Rarely, a run long enough (past 600s) to reset the crash-loop back-off; never
        // within the oracle's ambiguity margin of the threshold.
        1 => (640u64..=720, one_of(EXIT_CODES)).prop_map(|(secs, code)| Run::Exit {
            after: SpecDuration::from_secs(secs),
            code,
        }),
        // Rarely, a run between 300s and 600s: long, but not long enough to expire the
        // back-off entry.
        1 => (320u64..=560, one_of(EXIT_CODES)).prop_map(|(secs, code)| Run::Exit {
            after: SpecDuration::from_secs(secs),
            code,
        }),
    ]
}

pub fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        12 => (prop::collection::vec(run(), 0..4), run()).prop_map(|(starts, then)| Behaviour {
            starts,
            then,
            ..Behaviour::forever()
        }),
        // Rarely, crashes up to the back-off's cap and then a run that ends while the
        // entry is still live, so the wait after it may outlast the entry's 600s.
        1 => (5usize..=7, 380u64..=560, run()).prop_map(|(crashes, secs, then)| {
            let crash = Run::Exit {
                after: SpecDuration::from_secs(1),
                code: 1,
            };
            let mut starts = vec![crash; crashes];
            starts.push(Run::Exit {
                after: SpecDuration::from_secs(secs),
                code: 1,
            });
            Behaviour {
                starts,
                then,
                ..Behaviour::forever()
            }
        }),
    ]
}

/// One of `items`, shrinking towards the first. (`prop::sample::select` shrinks a 64-bit
/// index by bisection, which wastes dozens of real runs per shrink before the value moves.)
pub fn one_of<T: Clone + std::fmt::Debug + 'static>(
    items: &'static [T],
) -> impl Strategy<Value = T> {
    (0..items.len()).prop_map(move |i| items[i].clone())
}

pub fn restart_policy() -> impl Strategy<Value = Option<&'static str>> {
    one_of(&[None, Some("Always"), Some("OnFailure"), Some("Never")])
}

/// The kubelet's default back-off, a configured maximum (KubeletCrashLoopBackOffMax), or
/// the reduced decay (ReduceDefaultCrashLoopBackOffDecay), as nodes are configured.
pub fn kubelet() -> impl Strategy<Value = KubeletParams> {
    prop_oneof![
        4 => Just(KubeletParams::default()),
        1 => one_of(&[5u64, 20, 40, 60]).prop_map(|max| KubeletParams {
            feature_gates: FeatureGates {
                kubelet_crash_loop_back_off_max: true,
                ..FeatureGates::default()
            },
            crash_loop_back_off: CrashLoopBackOffConfig {
                max_container_restart_period: Some(SpecDuration::from_secs(max)),
            },
        }),
        1 => Just(KubeletParams {
            feature_gates: FeatureGates {
                reduce_default_crash_loop_back_off_decay: true,
                ..FeatureGates::default()
            },
            ..KubeletParams::default()
        }),
    ]
}

/// Builds a scenario from its parts; container names are c0, c1, ...
pub fn assemble(
    name: &str,
    policy: Option<&str>,
    kubelet: KubeletParams,
    behaviours: Vec<Behaviour>,
) -> Scenario {
    let name = name.to_owned();
    let containers = (0..behaviours.len())
        .map(|i| Container {
            name: format!("c{i}"),
            ..Container::default()
        })
        .collect();
    let behaviours: BTreeMap<String, Behaviour> = behaviours
        .into_iter()
        .enumerate()
        .map(|(i, b)| (format!("c{i}"), b))
        .collect();
    Scenario {
        name: name.clone(),
        description: None,
        rules: Vec::new(),
        kubelet,
        observe_for: None,
        pod: Pod {
            metadata: ObjectMeta {
                name: Some(name),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                restart_policy: policy.map(str::to_owned),
                containers,
                ..PodSpec::default()
            }),
            ..Pod::default()
        },
        behaviours,
        faults: Vec::new(),
    }
}

/// The health endpoint every generated probe addresses (as `/h`, or its TCP port).
const ENDPOINT: &str = "h";
/// A port name generated containers declare for their health port, and one they do not.
pub(crate) const DECLARED_PORT: &str = "health";
const UNDECLARED_PORT: &str = "missing";

pub(crate) fn secs(s: u64) -> SpecDuration {
    SpecDuration::from_secs(s)
}

/// A health script: up to three answers (ok, fail, slow) of 5 to 60 s, the last one lasting.
pub fn health(port: u16) -> impl Strategy<Value = Health> {
    let answer = prop_oneof![
        4 => Just(Answer::Ok),
        3 => Just(Answer::Fail),
        // Slow answers are 3s or 9s and timeouts 1, 5 or 6s: never within the oracle's
        // 2s ambiguity margin of each other.
        1 => one_of(&[3u64, 9]).prop_map(|s| Answer::Slow(secs(s))),
    ];
    (
        prop::collection::vec((answer, 5u64..=60), 1..=3),
        prop_oneof![4 => Just(0u64), 1 => 1u64..=30],
        any::<bool>(),
    )
        .prop_map(move |(answers, listen_after, tcp)| {
            let last = answers.len() - 1;
            let answers = answers
                .into_iter()
                .enumerate()
                .map(|(index, (answer, length))| Scripted {
                    answer,
                    for_: (index < last).then(|| secs(length)),
                })
                .collect();
            Health {
                port,
                listen_after: secs(listen_after),
                grpc_port: Some(port + 2000),
                endpoints: BTreeMap::from([(
                    ENDPOINT.to_owned(),
                    Endpoint {
                        tcp_port: tcp.then_some(port + 1000),
                        answers,
                    },
                )]),
            }
        })
}

/// A probe of kind `kind` on the generated health endpoint: any handler, any field.
pub fn probe(kind: ProbeKind, port: u16) -> impl Strategy<Value = Probe> {
    let handler = prop_oneof![
        4 => Just(0u8), // httpGet by number
        1 => Just(1u8), // httpGet by declared name
        1 => Just(2u8), // httpGet by a name the container does not declare: an error
        2 => Just(3u8), // tcpSocket on the endpoint's own port (or the health port)
        2 => Just(4u8), // exec
        2 => Just(5u8), // grpc, the endpoint's service or the whole server ("")
        1 => Just(6u8),
    ];
    let success_threshold = match kind {
        ProbeKind::Readiness => (1i32..=3).boxed(),
        _ => Just(1i32).boxed(),
    };
    (
        handler,
        1i32..=10,
        one_of(&[1i32, 5, 6]),
        prop_oneof![3 => Just(0i32), 1 => 1i32..=20],
        success_threshold,
        1i32..=5,
    )
        .prop_map(move |(handler, period, timeout, delay, success, failure)| {
            let http = |port: IntOrString| HTTPGetAction {
                path: Some(format!("/{ENDPOINT}")),
                port,
                ..HTTPGetAction::default()
            };
            let mut probe = Probe {
                period_seconds: Some(period),
                timeout_seconds: Some(timeout),
                initial_delay_seconds: Some(delay).filter(|d| *d > 0),
                success_threshold: Some(success),
                failure_threshold: Some(failure),
                ..Probe::default()
            };
            match handler {
                0 => probe.http_get = Some(http(IntOrString::Int(i32::from(port)))),
                1 => probe.http_get = Some(http(IntOrString::String(DECLARED_PORT.to_owned()))),
                2 => probe.http_get = Some(http(IntOrString::String(UNDECLARED_PORT.to_owned()))),
                3 => {
                    probe.tcp_socket = Some(TCPSocketAction {
                        port: IntOrString::Int(i32::from(port) + 1000),
                        ..TCPSocketAction::default()
                    })
                }
                5 | 6 => {
                    probe.grpc = Some(GRPCAction {
                        port: i32::from(port) + 2000,
                        service: Some(if handler == 5 {
                            ENDPOINT.to_owned()
                        } else {
                            String::new()
                        }),
                    })
                }
                _ => {
                    probe.exec = Some(ExecAction {
                        command: Some(vec![
                            podcheck_oracle::probes::AGENT_PROGRAM.to_owned(),
                            "probe".to_owned(),
                            ENDPOINT.to_owned(),
                        ]),
                    })
                }
            }
            probe
        })
}

/// The probes of one container: each kind present or not.
pub fn container_probes(port: u16) -> impl Strategy<Value = [Option<Probe>; 3]> {
    (
        prop::option::weighted(0.3, probe(ProbeKind::Startup, port)),
        prop::option::weighted(0.5, probe(ProbeKind::Liveness, port)),
        prop::option::weighted(0.5, probe(ProbeKind::Readiness, port)),
    )
        .prop_map(|(startup, liveness, readiness)| [startup, liveness, readiness])
}

/// A container's behaviour and probes; container `index` serves health on 8080 + index.
pub fn probed_container(index: u16) -> impl Strategy<Value = (Behaviour, [Option<Probe>; 3])> {
    let port = 8080 + index;
    (
        behaviour(),
        prop::option::weighted(0.5, (health(port), container_probes(port))),
    )
        .prop_map(|(mut behaviour, probes)| match probes {
            Some((health, probes)) => {
                behaviour.health = Some(health);
                (behaviour, probes)
            }
            None => (behaviour, [None, None, None]),
        })
}

/// Puts each container's probes on the pod, declaring the health port by name.
pub fn with_probes(mut scenario: Scenario, probes: Vec<[Option<Probe>; 3]>) -> Scenario {
    let Some(spec) = scenario.pod.spec.as_mut() else {
        return scenario;
    };
    for (index, (container, [startup, liveness, readiness])) in
        spec.containers.iter_mut().zip(probes).enumerate()
    {
        if startup.is_none() && liveness.is_none() && readiness.is_none() {
            continue;
        }
        container.ports = Some(vec![ContainerPort {
            name: Some(DECLARED_PORT.to_owned()),
            container_port: 8080 + index as i32,
            ..ContainerPort::default()
        }]);
        container.startup_probe = startup;
        container.liveness_probe = liveness;
        container.readiness_probe = readiness;
    }
    scenario
}

/// How often a generated scenario has a fault schedule (and SIGTERM dispositions and
/// hooks on its containers).
pub const FAULTS_PROBABILITY: f64 = 0.35;

/// Valid scenarios: 1 to 3 containers, every restart policy, scripted exits and runs, for
/// about half the containers health endpoints with probes of every kind, and for about a
/// third of the scenarios a fault schedule ([`faults::termination`]). All are named
/// `generated`; callers that run several at once rename them. (A random name would only
/// cost shrinking steps.)
pub fn scenario() -> impl Strategy<Value = Scenario> {
    (
        restart_policy(),
        kubelet(),
        (1u16..=3).prop_flat_map(|count| {
            (
                (0..count).map(probed_container).collect::<Vec<_>>(),
                faults::post_start_hooks(usize::from(count)),
                prop::option::weighted(FAULTS_PROBABILITY, termination(usize::from(count))),
                prop::option::weighted(init::INIT_PROBABILITY, init::init_containers()),
                prop::option::weighted(init::EPHEMERAL_PROBABILITY, init::ephemeral_container()),
            )
        }),
    )
        .prop_map(
            |(policy, kubelet, (containers, post_starts, termination, init, ephemeral))| {
                let (behaviours, probes): (Vec<_>, Vec<_>) = containers.into_iter().unzip();
                let scenario =
                    with_probes(assemble("generated", policy, kubelet, behaviours), probes);
                let scenario = match &termination {
                    Some(termination) => with_termination(scenario, termination),
                    None => scenario,
                };
                let scenario = faults::with_post_starts(scenario, &post_starts);
                let scenario = match &init {
                    Some(init) => init::with_init(scenario, init),
                    None => scenario,
                };
                let scenario = match &ephemeral {
                    Some(ephemeral) => init::with_ephemeral(scenario, ephemeral),
                    None => scenario,
                };
                init::ephemeral_before_deletion(faults::at_decidable_times(scenario))
            },
        )
}

fn exec_probe() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["/podcheck-agent".to_owned(), "probe".to_owned()]),
        }),
        ..Probe::default()
    }
}

/// A scenario broken in one known way, with the field validation must name.
pub fn invalid_scenario() -> impl Strategy<Value = (Scenario, String)> {
    (scenario(), 0usize..10).prop_map(|(mut scenario, breakage)| {
        let spec = scenario.pod.spec.get_or_insert_with(PodSpec::default);
        let field = match breakage {
            0 => {
                spec.restart_policy = Some("Sometimes".to_owned());
                "pod.spec.restartPolicy".to_owned()
            }
            1 => {
                let first = spec.containers[0].clone();
                spec.containers.push(first);
                format!("pod.spec.containers[{}].name", spec.containers.len() - 1)
            }
            2 => {
                spec.containers[0].name = "Not_A_Label".to_owned();
                "pod.spec.containers[0].name".to_owned()
            }
            3 => {
                scenario
                    .behaviours
                    .insert("ghost".to_owned(), Behaviour::forever());
                "behaviours.ghost".to_owned()
            }
            4 => {
                spec.containers.clear();
                "pod.spec.containers".to_owned()
            }
            // Probes Kubernetes' validation refuses (validateProbe and its wrappers).
            5 => {
                spec.containers[0].liveness_probe = Some(Probe {
                    success_threshold: Some(2),
                    ..exec_probe()
                });
                "pod.spec.containers[0].livenessProbe.successThreshold".to_owned()
            }
            6 => {
                spec.containers[0].readiness_probe = Some(Probe {
                    tcp_socket: Some(TCPSocketAction {
                        port: IntOrString::Int(8080),
                        ..TCPSocketAction::default()
                    }),
                    ..exec_probe()
                });
                "pod.spec.containers[0].readinessProbe.tcpSocket".to_owned()
            }
            7 => {
                spec.containers[0].startup_probe = Some(Probe::default());
                "pod.spec.containers[0].startupProbe".to_owned()
            }
            // A field the oracle does not model, on a valid container.
            8 => {
                spec.containers[0].resources = Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([(
                        "memory".to_owned(),
                        Quantity("64Mi".to_owned()),
                    )])),
                    ..ResourceRequirements::default()
                });
                "pod.spec.containers[0].resources".to_owned()
            }
            _ => {
                spec.containers[0].readiness_probe = Some(Probe {
                    termination_grace_period_seconds: Some(10),
                    ..exec_probe()
                });
                "pod.spec.containers[0].readinessProbe.terminationGracePeriodSeconds".to_owned()
            }
        };
        (scenario, field)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::{Arbitrary, Unstructured};
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};

    proptest! {
        #![proptest_config(Config { cases: 512, ..Config::default() })]

        #[test]
        fn generated_scenarios_are_valid(scenario in scenario()) {
            prop_assert_eq!(scenario.validate(), Ok(()));
        }

        #[test]
        fn invalid_scenarios_are_refused_naming_the_field((scenario, field) in invalid_scenario()) {
            let result = scenario.validate();
            prop_assert!(result.is_err(), "accepted a broken scenario");
            let named = result.unwrap_err().field;
            prop_assert_eq!(named, field);
        }

        #[test]
        fn generated_scenarios_round_trip_through_yaml(scenario in scenario()) {
            let yaml = scenario.to_yaml();
            let parsed = Scenario::from_yaml("generated", &yaml);
            prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, yaml);
            prop_assert_eq!(parsed.unwrap(), scenario);
        }
    }

    /// How many of `draws` generated scenarios the oracle predicts, overall and among
    /// those with a fault schedule, with the reasons of the refusals.
    fn acceptance(draws: usize) -> (usize, usize, usize, usize, BTreeMap<String, usize>) {
        let mut runner = TestRunner::deterministic();
        let strategy = scenario();
        let (mut accepted, mut with_faults, mut accepted_with_faults) = (0, 0, 0);
        let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..draws {
            let scenario = strategy.new_tree(&mut runner).expect("generate").current();
            let faulty = !scenario.faults.is_empty();
            with_faults += usize::from(faulty);
            match podcheck_oracle::predict(&scenario) {
                Ok(_) => {
                    accepted += 1;
                    accepted_with_faults += usize::from(faulty);
                }
                Err(err) => {
                    let kind = match err {
                        podcheck_oracle::PredictError::AmbiguousProbe { .. } => "ambiguous probe",
                        podcheck_oracle::PredictError::UndecidedRestart { .. } => {
                            "undecided restart"
                        }
                        podcheck_oracle::PredictError::UndecidedFault { ref reason, .. } => {
                            if std::env::var("SHOW_REFUSALS").is_ok() {
                                eprintln!("REFUSED {reason}");
                            }
                            "undecided fault"
                        }
                        podcheck_oracle::PredictError::ObservationWindow { .. } => {
                            "observation window"
                        }
                    };
                    *refusals
                        .entry(format!(
                            "{kind}{}",
                            if faulty { " (with faults)" } else { "" }
                        ))
                        .or_default() += 1;
                }
            }
        }
        (accepted, draws, accepted_with_faults, with_faults, refusals)
    }

    /// The share of generated scenarios `predict` accepts: printed (run with
    /// `--nocapture`), and held above where it stands today so that a generator change
    /// that makes most fault schedules undecidable fails here. Scenarios without faults
    /// sit near 68% (probe scripts whose timing decides a threshold); fault schedules
    /// are placed at decidable moments ([`faults::at_decidable_times`]) and reach about as
    /// much. With init containers and ephemeral containers the whole stands near 64%:
    /// deletions that may come while the pod initializes are refused as not modelled, and
    /// so is an ephemeral container still running when the pod is done
    /// (`SHOW_REFUSALS=1` prints each undecided fault's reason).
    #[test]
    fn most_generated_scenarios_are_predictable() {
        let (accepted, draws, accepted_with_faults, with_faults, refusals) = acceptance(3000);
        let ratio = accepted as f64 / draws as f64;
        let faulty_ratio = accepted_with_faults as f64 / with_faults.max(1) as f64;
        println!(
            "predict accepts {accepted} of {draws} generated scenarios ({:.1}%); \
             {accepted_with_faults} of the {with_faults} with faults ({:.1}%); refused: {refusals:?}",
            100.0 * ratio,
            100.0 * faulty_ratio,
        );
        let share = with_faults as f64 / draws as f64;
        assert!(
            // Ephemeral containers are added by fault actions too.
            (0.25..=0.5).contains(&share),
            "{:.1}% of the scenarios have faults",
            100.0 * share
        );
        assert!(ratio >= 0.62, "only {:.1}% predictable", 100.0 * ratio);
        assert!(
            faulty_ratio >= 0.5,
            "only {:.1}% of fault schedules predictable",
            100.0 * faulty_ratio
        );
    }

    /// The smallest scenario the strategy shrinks to when `fails` holds.
    fn shrunk(fails: impl Fn(&Scenario) -> bool) -> Scenario {
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 2000,
                failure_persistence: None,
                ..Config::default()
            },
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        );
        match runner.run(&scenario(), |scenario| {
            prop_assert!(!fails(&scenario));
            Ok(())
        }) {
            Err(proptest::test_runner::TestError::Fail(_, minimal)) => minimal,
            other => panic!("no failing scenario drawn: {other:?}"),
        }
    }

    fn has_hooks_or_dispositions(scenario: &Scenario) -> bool {
        scenario.containers().iter().any(|c| c.lifecycle.is_some())
            || scenario.behaviours.values().any(|b| {
                !b.hooks.is_empty() || b.on_sigterm != podcheck_oracle::behaviour::OnSigterm::Die
            })
    }

    #[test]
    fn a_schedule_that_fails_by_deleting_shrinks_to_one_early_plain_delete() {
        use podcheck_oracle::scenario::FaultAction;
        let minimal = shrunk(|s| {
            s.faults.iter().any(|f| {
                matches!(
                    f.action,
                    FaultAction::Delete { .. } | FaultAction::ForceDelete
                )
            })
        });
        assert_eq!(minimal.faults.len(), 1, "{}", minimal.to_yaml());
        assert_eq!(
            minimal.faults[0].action,
            FaultAction::Delete {
                grace_period_seconds: None
            },
            "{}",
            minimal.to_yaml()
        );
        assert!(minimal.faults[0].at <= secs(8), "{}", minimal.to_yaml());
        assert_eq!(minimal.containers().len(), 1);
        assert_eq!(minimal.pod.metadata.finalizers, None);
        assert_eq!(
            minimal
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds),
            None
        );
        assert!(
            !has_hooks_or_dispositions(&minimal),
            "{}",
            minimal.to_yaml()
        );
    }

    #[test]
    fn a_kill_shrinks_to_one_early_kill_of_one_container() {
        use podcheck_oracle::scenario::FaultAction;
        let minimal = shrunk(|s| {
            s.faults
                .iter()
                .any(|f| matches!(f.action, FaultAction::KillContainer { .. }))
        });
        assert_eq!(minimal.faults.len(), 1, "{}", minimal.to_yaml());
        assert_eq!(
            minimal.faults[0].action,
            FaultAction::KillContainer {
                container: "c0".to_owned()
            }
        );
        assert!(minimal.faults[0].at <= secs(8), "{}", minimal.to_yaml());
        assert_eq!(minimal.containers().len(), 1);
        assert!(
            !has_hooks_or_dispositions(&minimal),
            "{}",
            minimal.to_yaml()
        );
    }

    #[test]
    fn a_hook_shrinks_to_an_instant_successful_exec_hook_and_no_faults() {
        let minimal = shrunk(|s| {
            s.containers()
                .iter()
                .any(|c| c.lifecycle.as_ref().is_some_and(|l| l.pre_stop.is_some()))
        });
        assert!(minimal.faults.is_empty(), "{}", minimal.to_yaml());
        let hook = minimal.containers()[0]
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .expect("the preStop hook");
        assert!(hook.exec.is_some(), "{}", minimal.to_yaml());
        let behaviour = &minimal.behaviours["c0"];
        assert_eq!(
            behaviour.hooks.get(faults::PRE_STOP_HOOK),
            Some(&podcheck_oracle::behaviour::HookScript::default()),
            "{}",
            minimal.to_yaml()
        );
        assert_eq!(
            behaviour.on_sigterm,
            podcheck_oracle::behaviour::OnSigterm::Die
        );
    }

    #[test]
    fn a_sigterm_disposition_shrinks_to_ignoring_it() {
        use podcheck_oracle::behaviour::OnSigterm;
        let minimal = shrunk(|s| {
            s.behaviours
                .values()
                .any(|b| b.on_sigterm != OnSigterm::Die)
        });
        assert_eq!(minimal.containers().len(), 1);
        assert_eq!(minimal.behaviours["c0"].on_sigterm, OnSigterm::Ignore);
        assert!(minimal.faults.is_empty(), "{}", minimal.to_yaml());
        assert!(minimal.containers()[0].lifecycle.is_none());
    }

    #[test]
    fn arbitrary_scenarios_are_valid() {
        let bytes: Vec<u8> = (0..16384u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut u = Unstructured::new(&bytes);
        let (mut checked, mut with_faults, mut with_hooks) = (0, 0, 0);
        for _ in 0..200 {
            let Ok(ArbitraryScenario(scenario)) = ArbitraryScenario::arbitrary(&mut u) else {
                break;
            };
            assert_eq!(scenario.validate(), Ok(()), "{}", scenario.to_yaml());
            checked += 1;
            with_faults += usize::from(!scenario.faults.is_empty());
            with_hooks += usize::from(has_hooks_or_dispositions(&scenario));
        }
        assert!(
            checked >= 100,
            "only {checked} scenarios drawn from the bytes"
        );
        assert!(
            with_faults * 5 >= checked && with_hooks * 10 >= checked,
            "{with_faults} with faults, {with_hooks} with hooks or SIGTERM dispositions of {checked}"
        );
    }

    /// Bytes of 0 (and bytes run out) draw the simplest scenario, so that a fuzzer's input
    /// minimizer minimizes the scenario too.
    #[test]
    fn zero_bytes_draw_the_simplest_scenario() {
        let ArbitraryScenario(scenario) =
            ArbitraryScenario::arbitrary(&mut Unstructured::new(&[0; 64])).expect("drawn");
        assert_eq!(scenario.containers().len(), 1);
        assert!(scenario.faults.is_empty());
        assert!(!has_hooks_or_dispositions(&scenario));
        let ArbitraryScenario(empty) =
            ArbitraryScenario::arbitrary(&mut Unstructured::new(&[])).expect("drawn");
        assert_eq!(empty, scenario);
    }
}
