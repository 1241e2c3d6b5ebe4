//! Planted probe bugs that misread the pod spec: the scenario as such a runtime
//! understands it, which the model then plans and plays as if it were the real one.

use super::Deviation;
use crate::behaviour::Answer;
use crate::scenario::Scenario;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The scenario as a runtime with a probe bug understands it, when the bug is one of
/// misreading the probe spec.
pub(super) fn misread(scenario: &Scenario, deviation: Deviation) -> Option<Scenario> {
    let mut scenario = scenario.clone();
    let spec = scenario.pod.spec.as_mut()?;
    let mut changed = false;
    for container in &mut spec.containers {
        let behaviour = scenario.behaviours.get_mut(&container.name);
        let declared_ports: Vec<(String, i32)> = container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone()?, p.container_port)))
            .collect();
        let probes = [
            &mut container.startup_probe,
            &mut container.liveness_probe,
            &mut container.readiness_probe,
        ];
        match deviation {
            Deviation::LivenessBeforeStartup => {
                changed |=
                    container.startup_probe.take().is_some() && container.liveness_probe.is_some();
            }
            Deviation::NoLivenessKill => changed |= container.liveness_probe.take().is_some(),
            Deviation::LivenessIgnoresFailureThreshold => {
                if let Some(probe) = container.liveness_probe.as_mut() {
                    changed |= probe.failure_threshold.filter(|t| *t > 0).unwrap_or(3) > 1;
                    probe.failure_threshold = Some(1);
                }
            }
            Deviation::ReadinessIgnoresFailureThreshold => {
                if let Some(probe) = container.readiness_probe.as_mut() {
                    changed |= probe.failure_threshold.filter(|t| *t > 0).unwrap_or(3) > 1;
                    probe.failure_threshold = Some(1);
                }
            }
            Deviation::StartupFailureIgnored => {
                if let Some(probe) = container.startup_probe.as_mut() {
                    probe.failure_threshold = Some(100_000);
                    changed = true;
                }
            }
            Deviation::IgnoresInitialDelay => {
                for probe in probes.into_iter().flatten() {
                    changed |= probe.initial_delay_seconds.unwrap_or(0) > 0;
                    probe.initial_delay_seconds = None;
                }
            }
            Deviation::ProbePeriodOneSecondLonger => {
                for probe in probes.into_iter().flatten() {
                    probe.period_seconds =
                        Some(probe.period_seconds.filter(|p| *p > 0).unwrap_or(10) + 1);
                    changed = true;
                }
            }
            Deviation::LivenessFailureCountNotReset => {
                let endpoint = container
                    .liveness_probe
                    .as_ref()
                    .and_then(liveness_endpoint);
                let script = behaviour
                    .and_then(|b| b.health.as_mut())
                    .zip(endpoint)
                    .and_then(|(health, name)| health.endpoints.get_mut(&name));
                if let Some(script) = script {
                    let fails: Vec<usize> = (0..script.answers.len())
                        .filter(|i| script.answers[*i].answer == Answer::Fail)
                        .collect();
                    if let (Some(&first), Some(&last)) = (fails.first(), fails.last()) {
                        for scripted in &mut script.answers[first..last] {
                            if scripted.answer != Answer::Fail {
                                scripted.answer = Answer::Fail;
                                changed = true;
                            }
                        }
                    }
                }
            }
            Deviation::IgnoresProbeTimeout => {
                for probe in probes.into_iter().flatten() {
                    probe.timeout_seconds = Some(100_000);
                    changed = true;
                }
            }
            Deviation::ErrorCountsAsFailure => {
                let declared: Vec<String> = container
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| p.name.clone())
                    .collect();
                let unresolved = |port: &mut IntOrString| {
                    if matches!(port, IntOrString::String(name) if !declared.contains(name)) {
                        // A port nothing listens on: a failure rather than an error.
                        *port = IntOrString::Int(1);
                        true
                    } else {
                        false
                    }
                };
                for probe in probes.into_iter().flatten() {
                    if let Some(http) = probe.http_get.as_mut() {
                        changed |= unresolved(&mut http.port);
                    }
                    if let Some(tcp) = probe.tcp_socket.as_mut() {
                        changed |= unresolved(&mut tcp.port);
                    }
                }
            }
            Deviation::HttpStatusIgnored
            | Deviation::ExecExitCodeIgnored
            | Deviation::TcpAlwaysConnects
            | Deviation::GrpcStatusIgnored => {
                let Some(health) = behaviour.and_then(|b| b.health.as_mut()) else {
                    continue;
                };
                for probe in probes.into_iter().flatten() {
                    let endpoint = match deviation {
                        Deviation::HttpStatusIgnored => probe
                            .http_get
                            .as_ref()
                            .filter(|h| h.port == IntOrString::Int(i32::from(health.port)))
                            .and_then(|h| h.path.clone())
                            .map(|p| p.trim_start_matches('/').to_owned()),
                        Deviation::ExecExitCodeIgnored => probe
                            .exec
                            .as_ref()
                            .and_then(|e| e.command.as_ref()?.get(2).cloned()),
                        Deviation::GrpcStatusIgnored => probe
                            .grpc
                            .as_ref()
                            .filter(|g| health.grpc_port.map(i32::from) == Some(g.port))
                            .and_then(|g| g.service.clone()),
                        _ => probe.tcp_socket.as_ref().and_then(|t| {
                            let port = match &t.port {
                                IntOrString::Int(number) => Some(*number),
                                IntOrString::String(name) => declared_ports
                                    .iter()
                                    .find(|(n, _)| n == name)
                                    .map(|(_, p)| *p),
                            };
                            health
                                .endpoints
                                .iter()
                                .find(|(_, e)| port.is_some() && e.tcp_port.map(i32::from) == port)
                                .map(|(name, _)| name.clone())
                        }),
                    };
                    if let Some(endpoint) = endpoint.and_then(|e| health.endpoints.get_mut(&e)) {
                        for scripted in &mut endpoint.answers {
                            if scripted.answer == Answer::Fail {
                                scripted.answer = Answer::Ok;
                                changed = true;
                            }
                        }
                    }
                }
            }
            _ => return None,
        }
    }
    changed.then_some(scenario)
}

/// The health endpoint a liveness probe asks (HTTP path, the agent's exec `probe NAME`,
/// gRPC service).
fn liveness_endpoint(probe: &k8s_openapi::api::core::v1::Probe) -> Option<String> {
    if let Some(http) = &probe.http_get {
        return http
            .path
            .as_ref()
            .map(|p| p.trim_start_matches('/').to_owned());
    }
    if let Some(exec) = &probe.exec {
        return exec.command.as_ref()?.get(2).cloned();
    }
    probe.grpc.as_ref()?.service.clone()
}
