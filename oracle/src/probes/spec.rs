//! Probe specs: a container's probes defaulted as the API server does, checked against
//! its behaviour, and what each one reaches in the pod (an endpoint, a port, a constant).

use super::{Handler, ProbeKind, ProbeResult, AGENT_PROGRAM, PROBE_TIMING_MARGIN};
use crate::behaviour::{Answer, Behaviour};
use crate::duration::SpecDuration;
use crate::errors::FieldError;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

/// What a probe reaches in the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Reach {
    /// Always the same outcome: a port nothing listens on, a missing named port.
    Constant(ProbeResult),
    /// `GET /<endpoint>` on the health port (exec probes go the same way); None: no such
    /// endpoint (404).
    Endpoint(Option<String>),
    /// A TCP connection to the health port.
    HealthPort,
    /// A TCP connection to an endpoint's own port.
    TcpEndpoint(String),
    /// A gRPC health check of a service on the gRPC port ("" is the server as a whole).
    GrpcService(String),
}

/// One probe of one container, defaulted as the API server does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeModel {
    pub kind: ProbeKind,
    pub handler: Handler,
    pub period: SpecDuration,
    pub timeout: SpecDuration,
    pub initial_delay: SpecDuration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    pub(super) reach: Reach,
    /// Whether a gRPC dial waits for a listener until the timeout, as `grpc.WithBlock()`
    /// makes the kubelet's do; false only to act out a runtime that fails at once.
    #[serde(skip)]
    pub(super) dial_waits: bool,
    /// Why the probe's outcome has no single prediction, if it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ambiguity: Option<String>,
}

impl ProbeModel {
    /// The health endpoint this probe's requests are logged under, if any.
    pub fn endpoint(&self) -> Option<&str> {
        match &self.reach {
            Reach::Endpoint(Some(name)) | Reach::TcpEndpoint(name) => Some(name),
            Reach::GrpcService(name) if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

/// A container's probes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProbes {
    pub startup: Option<ProbeModel>,
    pub liveness: Option<ProbeModel>,
    pub readiness: Option<ProbeModel>,
}

impl ContainerProbes {
    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.liveness.is_none() && self.readiness.is_none()
    }

    /// Makes every gRPC probe fail at once when its dial is refused, instead of retrying
    /// until its timeout: a runtime with that defect, for planted bugs.
    pub fn without_dial_retries(&mut self) {
        for probe in [&mut self.startup, &mut self.liveness, &mut self.readiness]
            .into_iter()
            .flatten()
        {
            probe.dial_waits = false;
        }
    }

    /// Reads and checks a container's probes against its behaviour; errors name the
    /// field and say why the oracle cannot predict it.
    pub fn resolve(
        container: &Container,
        behaviour: &Behaviour,
        others: &[(&Container, &Behaviour)],
        path: &str,
    ) -> Result<ContainerProbes, FieldError> {
        let mut probes = ContainerProbes::default();
        for (name, probe, kind) in crate::validation::container_probes(container) {
            let Some(probe) = probe else { continue };
            let model = resolve_probe(
                probe,
                kind,
                container,
                behaviour,
                others,
                &format!("{path}.{name}"),
            )?;
            match kind {
                ProbeKind::Startup => probes.startup = Some(model),
                ProbeKind::Liveness => probes.liveness = Some(model),
                ProbeKind::Readiness => probes.readiness = Some(model),
            }
        }
        Ok(probes)
    }
}

fn seconds(value: Option<i32>, default: u64) -> SpecDuration {
    // SetDefaults_Probe turns 0 into the default; validation already refused negatives.
    match value {
        Some(v) if v > 0 => SpecDuration::from_secs(v as u64),
        _ => SpecDuration::from_secs(default),
    }
}

fn not_modelled(field: String, what: &str) -> Result<ProbeModel, FieldError> {
    Err(FieldError::new(
        field,
        format!("{what} is not modelled by the oracle yet; the scenario would be half-predicted"),
    ))
}

fn resolve_probe(
    probe: &Probe,
    kind: ProbeKind,
    container: &Container,
    behaviour: &Behaviour,
    others: &[(&Container, &Behaviour)],
    path: &str,
) -> Result<ProbeModel, FieldError> {
    let health = behaviour.health.as_ref();
    let at = |field: &str| format!("{path}.{field}");
    let port_of = |port: &IntOrString| -> Option<i32> {
        match port {
            IntOrString::Int(number) => Some(*number),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        }
    };
    let foreign = |port: i32, field: String| -> Result<(), FieldError> {
        let used_elsewhere = others.iter().any(|(_, b)| {
            b.health.as_ref().is_some_and(|h| {
                i32::from(h.port) == port
                    || h.grpc_port.map(i32::from) == Some(port)
                    || h.endpoints
                        .values()
                        .any(|e| e.tcp_port.map(i32::from) == Some(port))
            })
        });
        if used_elsewhere {
            Err(FieldError::new(
                field,
                format!("port {port} belongs to another container's health endpoints; probes across containers are not modelled")))
        } else {
            Ok(())
        }
    };
    let endpoint_name = |name: &str| -> Option<String> {
        health.and_then(|h| h.endpoints.contains_key(name).then(|| name.to_owned()))
    };
    let (handler, reach) = if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        match command.as_slice() {
            [program, verb, name] if program == AGENT_PROGRAM && verb == "probe" => {
                let reach = if health.is_some() {
                    Reach::Endpoint(endpoint_name(name))
                } else {
                    Reach::Constant(ProbeResult::Failure)
                };
                (Handler::Exec, reach)
            }
            _ => {
                return not_modelled(
                    at("exec.command"),
                    "an exec probe other than [\"/podcheck-agent\", \"probe\", ENDPOINT]",
                )
            }
        }
    } else if let Some(http) = &probe.http_get {
        if http.host.as_deref().is_some_and(|h| !h.is_empty()) {
            return not_modelled(at("httpGet.host"), "a probe host other than the pod IP");
        }
        if http.scheme.as_deref() == Some("HTTPS") {
            return not_modelled(at("httpGet.scheme"), "HTTPS");
        }
        let reach = match port_of(&http.port) {
            // `port %q not found`: an error, which the kubelet discards.
            None => Reach::Constant(ProbeResult::Error),
            Some(port) => {
                foreign(port, at("httpGet.port"))?;
                match health {
                    Some(h) if i32::from(h.port) == port => {
                        let target = http.path.as_deref().unwrap_or("/");
                        let target = target.split('?').next().unwrap_or("");
                        Reach::Endpoint(endpoint_name(target.trim_start_matches('/')))
                    }
                    _ => Reach::Constant(ProbeResult::Failure),
                }
            }
        };
        (Handler::Http, reach)
    } else if let Some(tcp) = &probe.tcp_socket {
        if tcp.host.as_deref().is_some_and(|h| !h.is_empty()) {
            return not_modelled(at("tcpSocket.host"), "a probe host other than the pod IP");
        }
        let reach = match port_of(&tcp.port) {
            None => Reach::Constant(ProbeResult::Error),
            Some(port) => {
                foreign(port, at("tcpSocket.port"))?;
                match health {
                    Some(h) if i32::from(h.port) == port => Reach::HealthPort,
                    Some(h) => h
                        .endpoints
                        .iter()
                        .find(|(_, e)| e.tcp_port.map(i32::from) == Some(port))
                        .map_or(Reach::Constant(ProbeResult::Failure), |(name, _)| {
                            Reach::TcpEndpoint(name.clone())
                        }),
                    None => Reach::Constant(ProbeResult::Failure),
                }
            }
        };
        (Handler::Tcp, reach)
    } else if let Some(grpc) = &probe.grpc {
        foreign(grpc.port, at("grpc.port"))?;
        let reach = match health {
            Some(h) if h.grpc_port.map(i32::from) == Some(grpc.port) => {
                Reach::GrpcService(grpc.service.clone().unwrap_or_default())
            }
            _ => Reach::Constant(ProbeResult::Failure),
        };
        (Handler::Grpc, reach)
    } else {
        return Err(FieldError::new(
            path.to_owned(),
            "must specify a handler type".to_owned(),
        ));
    };
    let mut model = ProbeModel {
        kind,
        handler,
        period: seconds(probe.period_seconds, 10),
        timeout: seconds(probe.timeout_seconds, 1),
        initial_delay: SpecDuration::from_secs(
            probe.initial_delay_seconds.unwrap_or(0).max(0) as u64
        ),
        success_threshold: probe.success_threshold.filter(|t| *t > 0).unwrap_or(1) as u32,
        failure_threshold: probe.failure_threshold.filter(|t| *t > 0).unwrap_or(3) as u32,
        reach,
        dial_waits: true,
        ambiguity: None,
    };
    // A slow answer within the margin of the timeout could go either way.
    if let Some(health) = health {
        for (name, endpoint) in &health.endpoints {
            if model.reach != Reach::Endpoint(Some(name.clone()))
                && model.reach != Reach::GrpcService(name.clone())
            {
                continue;
            }
            for scripted in &endpoint.answers {
                if let Answer::Slow(delay) = scripted.answer {
                    let distance = if delay > model.timeout {
                        delay - model.timeout
                    } else {
                        model.timeout - delay
                    };
                    if distance < PROBE_TIMING_MARGIN {
                        model.ambiguity = Some(format!(
                            "{}: endpoint {name:?} answers after {delay}, within {PROBE_TIMING_MARGIN} of the {} timeout: timing noise would decide the outcome",
                            at("timeoutSeconds"),
                            model.timeout
                        ));
                    }
                }
            }
        }
    }
    Ok(model)
}
