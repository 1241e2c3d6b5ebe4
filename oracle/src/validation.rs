//! The API server's validation of what the oracle does not model yet, so that an invalid
//! manifest is refused for the reason Kubernetes gives, not as "not modelled".
//!
//! Probes: `validateProbe`, `validateLivenessProbe`, `validateReadinessProbe`,
//! `validateStartupProbe` and `validateHandler` in pkg/apis/core/validation/validation.go,
//! applied after `SetDefaults_Probe` (pkg/apis/core/v1/defaults.go), which turns a 0 in
//! timeout, period and thresholds into the default. See docs/fidelity/probes.md.

use crate::duration::SpecDuration;
use crate::errors::FieldError;
use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// A container's probes with their field names, in the order the API server validates them.
pub fn container_probes(
    container: &k8s_openapi::api::core::v1::Container,
) -> [(&'static str, &Option<Probe>, ProbeKind); 3] {
    [
        (
            "livenessProbe",
            &container.liveness_probe,
            ProbeKind::Liveness,
        ),
        (
            "readinessProbe",
            &container.readiness_probe,
            ProbeKind::Readiness,
        ),
        ("startupProbe", &container.startup_probe, ProbeKind::Startup),
    ]
}

/// The first validation error of `probe` at `path`, as (field path, reason).
pub fn validate_probe(probe: &Probe, kind: ProbeKind, path: &str) -> Result<(), FieldError> {
    let at = |field: &str| format!("{path}.{field}");
    let handlers = [
        ("exec", probe.exec.is_some()),
        ("httpGet", probe.http_get.is_some()),
        ("tcpSocket", probe.tcp_socket.is_some()),
        ("grpc", probe.grpc.is_some()),
    ];
    let mut set = handlers
        .iter()
        .filter(|(_, present)| *present)
        .map(|(name, _)| *name);
    if set.next().is_none() {
        return Err(FieldError::new(
            path.to_owned(),
            "must specify a handler type".to_owned(),
        ));
    }
    if let Some(second) = set.next() {
        return Err(FieldError::new(
            at(second),
            "may not specify more than 1 handler type".to_owned(),
        ));
    }
    if let Some(exec) = &probe.exec {
        if exec.command.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(FieldError::new(
                at("exec.command"),
                "Required value".to_owned(),
            ));
        }
    }
    if let Some(http) = &probe.http_get {
        validate_port(&http.port, &at("httpGet.port"))?;
        if let Some(scheme) = http.scheme.as_deref() {
            if !matches!(scheme, "HTTP" | "HTTPS") {
                return Err(FieldError::new(
                    at("httpGet.scheme"),
                    format!("Unsupported value: {scheme:?}: supported values: \"HTTP\", \"HTTPS\""),
                ));
            }
        }
        for (index, header) in http.http_headers.iter().flatten().enumerate() {
            if header.name.is_empty() || !header.name.bytes().all(is_token_byte) {
                return Err(FieldError::new(at(&format!("httpGet.httpHeaders[{index}].name")), format!("{:?}: a valid HTTP header must consist of alphanumeric characters, '-', '_' or '.'", header.name)));
            }
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        validate_port(&tcp.port, &at("tcpSocket.port"))?;
    }
    if let Some(grpc) = &probe.grpc {
        if !(1..=65535).contains(&grpc.port) {
            return Err(FieldError::new(
                at("grpc.port"),
                format!("{}: must be between 1 and 65535, inclusive", grpc.port),
            ));
        }
    }
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(value) = value.filter(|v| *v < 0) {
            return Err(FieldError::new(
                at(field),
                format!("{value}: must be greater than or equal to 0"),
            ));
        }
    }
    if let Some(grace) = probe.termination_grace_period_seconds.filter(|g| *g <= 0) {
        return Err(FieldError::new(
            at("terminationGracePeriodSeconds"),
            format!("{grace}: must be greater than 0"),
        ));
    }
    // Defaulting turns an absent or 0 successThreshold into 1 before these checks.
    let success_threshold = probe.success_threshold.filter(|t| *t != 0).unwrap_or(1);
    match kind {
        ProbeKind::Liveness | ProbeKind::Startup if success_threshold != 1 => Err(FieldError::new(
            at("successThreshold"),
            format!("{success_threshold}: must be 1"),
        )),
        ProbeKind::Readiness if probe.termination_grace_period_seconds.is_some() => {
            Err(FieldError::new(
                at("terminationGracePeriodSeconds"),
                "must not be set for readinessProbes".to_owned(),
            ))
        }
        _ => Ok(()),
    }?;
    // What the API server accepts but scenario time does not hold.
    let longest = SpecDuration::MAX.as_millis() / 1000;
    for (field, value) in [
        (
            "initialDelaySeconds",
            probe.initial_delay_seconds.map(i64::from),
        ),
        ("timeoutSeconds", probe.timeout_seconds.map(i64::from)),
        ("periodSeconds", probe.period_seconds.map(i64::from)),
        (
            "terminationGracePeriodSeconds",
            probe.termination_grace_period_seconds,
        ),
    ] {
        if let Some(value) = value.filter(|v| u64::try_from(*v).is_ok_and(|v| v > longest)) {
            return Err(FieldError::new(
                at(field),
                format!(
                    "{value}s is longer than the maximum of {} of scenario time",
                    SpecDuration::MAX
                ),
            ));
        }
    }
    Ok(())
}

/// `ValidatePortNumOrName`: 1..=65535, or an IANA service name.
fn validate_port(port: &IntOrString, path: &str) -> Result<(), FieldError> {
    match port {
        IntOrString::Int(number) if (1..=65535).contains(number) => Ok(()),
        IntOrString::Int(number) => Err(FieldError::new(path.to_owned(), format!("{number}: must be between 1 and 65535, inclusive"))),
        IntOrString::String(name) if is_port_name(name) => Ok(()),
        IntOrString::String(name) => Err(FieldError::new(
            path.to_owned(),
            format!("{name:?}: must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), at most 15 characters, with at least one letter, not starting or ending with a hyphen, and no two adjacent hyphens"))),
    }
}

/// IANA_SVC_NAME as `IsValidPortName` checks it.
fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// RFC 7230 token characters, which HTTP header names consist of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, GRPCAction, HTTPGetAction, TCPSocketAction};

    fn exec_probe() -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".to_owned()]),
            }),
            ..Probe::default()
        }
    }

    fn field(result: Result<(), FieldError>) -> Option<String> {
        result.err().map(|error| error.field)
    }

    #[test]
    fn valid_probes_pass() {
        assert_eq!(
            validate_probe(&exec_probe(), ProbeKind::Liveness, "p"),
            Ok(())
        );
        let http = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http-alt".to_owned()),
                ..HTTPGetAction::default()
            }),
            success_threshold: Some(3),
            ..Probe::default()
        };
        assert_eq!(validate_probe(&http, ProbeKind::Readiness, "p"), Ok(()));
        let liveness_with_grace = Probe {
            termination_grace_period_seconds: Some(5),
            ..exec_probe()
        };
        assert_eq!(
            validate_probe(&liveness_with_grace, ProbeKind::Liveness, "p"),
            Ok(())
        );
        let zero_threshold = Probe {
            success_threshold: Some(0),
            ..exec_probe()
        };
        assert_eq!(
            validate_probe(&zero_threshold, ProbeKind::Startup, "p"),
            Ok(()),
            "0 is defaulted to 1"
        );
    }

    #[test]
    fn invalid_probes_name_the_field_kubernetes_names() {
        let none = Probe::default();
        assert_eq!(
            field(validate_probe(&none, ProbeKind::Liveness, "p")).as_deref(),
            Some("p")
        );
        let two = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(80),
                ..TCPSocketAction::default()
            }),
            ..exec_probe()
        };
        assert_eq!(
            field(validate_probe(&two, ProbeKind::Liveness, "p")).as_deref(),
            Some("p.tcpSocket")
        );
        let liveness = Probe {
            success_threshold: Some(2),
            ..exec_probe()
        };
        assert_eq!(
            validate_probe(&liveness, ProbeKind::Liveness, "p"),
            Err(FieldError::new(
                "p.successThreshold".to_owned(),
                "2: must be 1".to_owned()
            ))
        );
        let readiness = Probe {
            termination_grace_period_seconds: Some(5),
            ..exec_probe()
        };
        assert_eq!(
            validate_probe(&readiness, ProbeKind::Readiness, "p"),
            Err(FieldError::new(
                "p.terminationGracePeriodSeconds".to_owned(),
                "must not be set for readinessProbes".to_owned()
            ))
        );
        let negative = Probe {
            period_seconds: Some(-1),
            ..exec_probe()
        };
        assert_eq!(
            field(validate_probe(&negative, ProbeKind::Readiness, "p")).as_deref(),
            Some("p.periodSeconds")
        );
        let grace = Probe {
            termination_grace_period_seconds: Some(0),
            ..exec_probe()
        };
        assert_eq!(
            field(validate_probe(&grace, ProbeKind::Liveness, "p")).as_deref(),
            Some("p.terminationGracePeriodSeconds")
        );
        let port = Probe {
            grpc: Some(GRPCAction {
                port: 0,
                service: None,
            }),
            ..Probe::default()
        };
        assert_eq!(
            field(validate_probe(&port, ProbeKind::Liveness, "p")).as_deref(),
            Some("p.grpc.port")
        );
        let name = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("Not-A-Name".to_owned()),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        };
        assert_eq!(
            field(validate_probe(&name, ProbeKind::Liveness, "p")).as_deref(),
            Some("p.httpGet.port")
        );
        let empty = Probe {
            exec: Some(ExecAction { command: None }),
            ..Probe::default()
        };
        assert_eq!(
            field(validate_probe(&empty, ProbeKind::Liveness, "p")).as_deref(),
            Some("p.exec.command")
        );
    }
}
