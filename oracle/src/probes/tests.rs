use super::*;
use crate::behaviour::{Answer, Behaviour, Endpoint, Health, Scripted};
use k8s_openapi::api::core::v1::{Container, ContainerPort, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

fn secs(s: u64) -> SpecDuration {
    SpecDuration::from_secs(s)
}

fn health(answers: Vec<Scripted>) -> Health {
    Health {
        port: 8080,
        listen_after: SpecDuration::ZERO,
        grpc_port: None,
        endpoints: BTreeMap::from([(
            "live".to_owned(),
            Endpoint {
                tcp_port: None,
                answers,
            },
        )]),
    }
}

fn http_probe(port: IntOrString, period: i32, failure: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/live".to_owned()),
            port,
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        ..Probe::default()
    }
}

fn resolve(container: &Container, behaviour: &Behaviour) -> ContainerProbes {
    match ContainerProbes::resolve(container, behaviour, &[], "c") {
        Ok(probes) => probes,
        Err(err) => panic!("probes do not resolve: {err:?}"),
    }
}

fn behaviour(health: Health) -> Behaviour {
    Behaviour {
        health: Some(health),
        ..Behaviour::forever()
    }
}

#[test]
fn liveness_kills_within_threshold_periods_of_the_first_failure() {
    let health = health(vec![
        Scripted {
            answer: Answer::Ok,
            for_: Some(secs(30)),
        },
        Scripted {
            answer: Answer::Fail,
            for_: None,
        },
    ]);
    let container = Container {
        name: "app".to_owned(),
        liveness_probe: Some(http_probe(IntOrString::Int(8080), 10, 3)),
        ..Container::default()
    };
    let probes = resolve(&container, &behaviour(health.clone()));
    let (plan, _) = plan_instance(&probes, Some(&health), Carry::default(), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (kind, window) = plan.kill.clone().unwrap_or_else(|| panic!("no kill"));
    assert_eq!(kind, ProbeKind::Liveness);
    // Failures from 30s; three ticks 10s apart: the third between 50s and 60s.
    assert_eq!(window.lo, secs(49));
    assert_eq!(window.hi, secs(63));
    // Without a startup probe the container is started as soon as it runs.
    assert_eq!(plan.started.map(|w| (w.lo, w.hi)), Some((secs(0), secs(0))));
}

#[test]
fn a_missing_named_port_is_an_error_that_never_kills() {
    let health = health(vec![Scripted {
        answer: Answer::Fail,
        for_: None,
    }]);
    let container = Container {
        name: "app".to_owned(),
        ports: Some(vec![ContainerPort {
            container_port: 8080,
            name: Some("http".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(http_probe(IntOrString::String("metrics".to_owned()), 5, 1)),
        ..Container::default()
    };
    let probes = resolve(&container, &behaviour(health.clone()));
    let (plan, _) = plan_instance(&probes, Some(&health), Carry::default(), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(plan.kill.is_none());
    // The same probe by the declared name fails and kills.
    let named = Container {
        liveness_probe: Some(http_probe(IntOrString::String("http".to_owned()), 5, 1)),
        ..container
    };
    let probes = resolve(&named, &behaviour(health.clone()));
    let (plan, _) = plan_instance(&probes, Some(&health), Carry::default(), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(plan.kill.is_some());
}

#[test]
fn a_short_blip_near_the_threshold_is_refused() {
    let health = health(vec![
        Scripted {
            answer: Answer::Ok,
            for_: Some(secs(30)),
        },
        Scripted {
            answer: Answer::Fail,
            for_: Some(secs(25)),
        },
        Scripted {
            answer: Answer::Ok,
            for_: None,
        },
    ]);
    let container = Container {
        name: "app".to_owned(),
        liveness_probe: Some(http_probe(IntOrString::Int(8080), 10, 3)),
        ..Container::default()
    };
    let probes = resolve(&container, &behaviour(health.clone()));
    assert!(plan_instance(&probes, Some(&health), Carry::default(), None).is_err());
}

fn grpc_liveness(port: i32, period: i32, timeout: i32, failure: i32) -> Container {
    Container {
        name: "app".to_owned(),
        liveness_probe: Some(Probe {
            grpc: Some(k8s_openapi::api::core::v1::GRPCAction {
                port,
                service: None,
            }),
            period_seconds: Some(period),
            timeout_seconds: Some(timeout),
            failure_threshold: Some(failure),
            ..Probe::default()
        }),
        ..Container::default()
    }
}

fn grpc_health(listen_after: u64) -> Health {
    Health {
        port: 8080,
        listen_after: secs(listen_after),
        grpc_port: Some(9090),
        endpoints: BTreeMap::new(),
    }
}

#[test]
fn a_grpc_probe_to_a_port_without_a_server_fails_only_at_its_timeout() {
    let health = grpc_health(0);
    // Port 9191 never listens: every dial is retried until the 5s timeout, so attempts
    // come every 5s (not every 2s) and each result is known 5s after it was sent.
    let probes = resolve(&grpc_liveness(9191, 2, 5, 3), &behaviour(health.clone()));
    let (plan, _) = plan_instance(&probes, Some(&health), Carry::default(), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (_, window) = plan.kill.clone().unwrap_or_else(|| panic!("no kill"));
    // Three attempts of 5s each end at 15s at the earliest; the first may come at 5s
    // (the tick after the gate, held back by nothing), the third ends by 20s.
    assert_eq!(window.lo, secs(14));
    assert_eq!(window.hi, secs(23));
    assert_eq!(
        window.late_rules,
        vec![RuleId::ProbeLivenessRestart, RuleId::ProbeTimeout]
    );
    assert!(plan.liveness_dial_waits);

    // A runtime that fails the refused dial at once kills within 3 periods.
    let mut fast = probes.clone();
    fast.without_dial_retries();
    let (plan, _) = plan_instance(&fast, Some(&health), Carry::default(), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let (_, window) = plan.kill.unwrap_or_else(|| panic!("no kill"));
    assert_eq!((window.lo, window.hi), (secs(3), secs(9)));
}

#[test]
fn a_grpc_dial_waiting_for_a_late_listener_spaces_failures_by_the_timeout() {
    // Nothing listens for 15s: with a 10s timeout only two attempts can fail before the
    // server is up (at 0s and 10s at the earliest), fewer than the threshold of 3.
    let health = grpc_health(15);
    let probes = resolve(&grpc_liveness(9090, 2, 10, 3), &behaviour(health.clone()));
    let (plan, _) = plan_instance(&probes, Some(&health), Carry::default(), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(plan.kill.is_none());
    // A runtime that fails at once reaches three failures long before 15s.
    let mut fast = probes.clone();
    fast.without_dial_retries();
    let (plan, _) = plan_instance(&fast, Some(&health), Carry::default(), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(plan.kill.is_some());

    // With the listener at 25s a third failure may or may not fit (at 20s, its dial still
    // running when the server comes up): no single prediction.
    let health = grpc_health(25);
    assert!(plan_instance(&probes, Some(&health), Carry::default(), None).is_err());
}
