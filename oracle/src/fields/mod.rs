//! The pod fields the oracle models, each with the rules that cover it or the reason it
//! changes nothing a kubelet shows. Every other field of the pod is refused, naming its
//! path: a field the model ignored would leave the scenario half-predicted (a `resources`
//! limit the workload exceeds ends in an OOM kill the prediction never mentions).
//!
//! The check walks the pod as JSON, so a field that a newer k8s-openapi adds is refused
//! until someone lists it in the tables (`tables.rs`). An empty list or object counts as
//! absent, as it does to the API server (`omitempty`); `null` likewise.
//!
//! A new modelled field: an entry in `POD_FIELDS`, `CONTAINER_FIELDS` or `PROBE_FIELDS`
//! with the rules whose predictions depend on it. `podcheck rules` prints the list.

use crate::errors::FieldError;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

mod tables;

use tables::UNMODELLED;
pub use tables::{modelled_fields, ModelledField};

/// Refuses the first field of `pod` the oracle does not model, naming its path.
pub fn check_pod(pod: &Pod) -> Result<(), FieldError> {
    let value = serde_json::to_value(pod).map_err(|err| {
        FieldError::new(
            "pod",
            format!("cannot be read back as JSON to check its fields: {err}"),
        )
    })?;
    match first_unmodelled(&value) {
        Some((path, pattern)) => Err(FieldError::new(path, refusal(&pattern))),
        None => Ok(()),
    }
}

/// Refuses the first field of the pod as written (before k8s-openapi read it) that is not
/// modelled. Run after [`check_pod`] passed on the parsed pod, what it finds is a field
/// k8s-openapi does not know and dropped: a misspelt field, or one newer than the API
/// version podcheck reads.
pub fn check_written_pod(written: &Value) -> Result<(), FieldError> {
    match first_unmodelled(written) {
        Some((path, pattern)) if lookup_unmodelled(&pattern).is_some() => {
            Err(FieldError::new(path, refusal(&pattern)))
        }
        Some((path, _)) => Err(FieldError::new(
            path,
            "unknown field: not part of a core/v1 Pod as podcheck reads it, so it would be dropped silently (the API server's strict field validation, kubectl's default, refuses it too)",
        )),
        None => Ok(()),
    }
}

fn refusal(pattern: &str) -> String {
    let what = lookup_unmodelled(pattern).unwrap_or(
        "the field is not in the oracle's list of modelled fields (`podcheck rules` prints it)",
    );
    format!("not modelled by the oracle: {what}; the scenario would be half-predicted")
}

fn lookup_unmodelled(pattern: &str) -> Option<&'static str> {
    if modelled_fields().iter().any(|field| field.path == pattern) {
        return None;
    }
    let relative = pattern.strip_prefix("pod.")?;
    // An init container's field does what the same field of a container does.
    let as_container = relative
        .strip_prefix("spec.initContainers[]")
        .map(|rest| format!("spec.containers[]{rest}"));
    let relative = as_container.as_deref().unwrap_or(relative);
    UNMODELLED
        .iter()
        .find(|(path, _)| *path == relative)
        .map(|(_, what)| *what)
}

/// The first present field of `pod` (as its path and its pattern) that is neither a
/// modelled field nor on the way to one.
fn first_unmodelled(pod: &Value) -> Option<(String, String)> {
    walk(pod, "pod", "pod")
}

fn walk(value: &Value, path: &str, pattern: &str) -> Option<(String, String)> {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                if is_absent(member) {
                    continue;
                }
                let path = format!("{path}.{key}");
                let pattern = format!("{pattern}.{key}");
                match classify(&pattern) {
                    Listing::Refused => return Some((path, pattern)),
                    Listing::FreeKeys => continue,
                    Listing::Modelled => {}
                }
                if let Some(found) = walk(member, &path, &pattern) {
                    return Some(found);
                }
            }
            None
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            walk(item, &format!("{path}[{index}]"), &format!("{pattern}[]"))
        }),
        _ => None,
    }
}

/// Empty lists and objects are the same as absent ones to the API server.
fn is_absent(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(members) => members.is_empty(),
        _ => false,
    }
}

enum Listing {
    /// A modelled field, or an object or list that holds some.
    Modelled,
    /// A modelled map whose entries are not checked.
    FreeKeys,
    Refused,
}

fn classify(pattern: &str) -> Listing {
    let mut listing = Listing::Refused;
    for field in modelled_fields() {
        if field.path == pattern {
            return if field.free_keys {
                Listing::FreeKeys
            } else {
                Listing::Modelled
            };
        }
        let holds = field
            .path
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['));
        if holds {
            listing = Listing::Modelled;
        }
    }
    listing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scenario;

    /// A valid scenario of one container `app` whose container carries `extra` (YAML
    /// mapping entries at the container's indentation), with `spec_extra` in the pod spec.
    fn scenario_yaml(container_extra: &str, spec_extra: &str) -> String {
        format!(
            "name: x\npod:\n  metadata:\n    name: x\n  spec:\n{spec_extra}    containers:\n      - name: app\n{container_extra}behaviours:\n  app: {{then: forever}}\n"
        )
    }

    fn refused_field(yaml: &str) -> Option<(String, String)> {
        match Scenario::from_yaml("x.yaml", yaml) {
            Err(crate::ScenarioError::Invalid { field, reason, .. }) => Some((field, reason)),
            Ok(_) => None,
            Err(other) => panic!("not a field error: {other}\n{yaml}"),
        }
    }

    #[test]
    fn each_unmodelled_container_field_is_refused_naming_its_path() {
        for (extra, field) in [
            ("        image: busybox\n", "image"),
            ("        imagePullPolicy: Never\n", "imagePullPolicy"),
            ("        command: [sleep, '10']\n", "command"),
            ("        args: ['10']\n", "args"),
            ("        env: [{name: A, value: b}]\n", "env"),
            ("        resources: {limits: {memory: 64Mi}}\n", "resources"),
            (
                "        securityContext: {runAsUser: 1000}\n",
                "securityContext",
            ),
            (
                "        lifecycle: {preStop: {httpGet: {path: /hook/x, port: 8080, httpHeaders: [{name: a, value: b}]}}}\n",
                "lifecycle.preStop.httpGet.httpHeaders",
            ),
            (
                "        lifecycle: {postStart: {httpGet: {path: /hook/x, port: 8080}}}\n",
                "lifecycle.postStart.httpGet",
            ),
            (
                "        volumeMounts: [{name: v, mountPath: /v}]\n",
                "volumeMounts",
            ),
            (
                "        terminationMessagePolicy: FallbackToLogsOnError\n",
                "terminationMessagePolicy",
            ),
            ("        tty: true\n", "tty"),
            ("        restartPolicy: Always\n", "restartPolicy"),
            (
                "        ports: [{containerPort: 80, hostPort: 8080}]\n",
                "ports[0].hostPort",
            ),
        ] {
            let (named, reason) = refused_field(&scenario_yaml(extra, ""))
                .unwrap_or_else(|| panic!("{field} was accepted"));
            assert_eq!(named, format!("pod.spec.containers[0].{field}"));
            assert!(
                reason.starts_with("not modelled by the oracle: ")
                    && reason.ends_with("; the scenario would be half-predicted"),
                "{field}: {reason}"
            );
        }
    }

    #[test]
    fn each_unmodelled_pod_field_is_refused_naming_its_path() {
        for (extra, field) in [
            ("    hostNetwork: true\n", "spec.hostNetwork"),
            (
                "    activeDeadlineSeconds: 30\n",
                "spec.activeDeadlineSeconds",
            ),
            (
                "    readinessGates: [{conditionType: x}]\n",
                "spec.readinessGates",
            ),
            ("    volumes: [{name: v, emptyDir: {}}]\n", "spec.volumes"),
            (
                "    securityContext: {runAsUser: 1000}\n",
                "spec.securityContext",
            ),
            ("    nodeName: elsewhere\n", "spec.nodeName"),
            (
                "    shareProcessNamespace: true\n",
                "spec.shareProcessNamespace",
            ),
        ] {
            let named = refused_field(&scenario_yaml("", extra)).map(|(field, _)| field);
            assert_eq!(named, Some(format!("pod.{field}")));
        }
        let annotated = "name: x\npod:\n  metadata:\n    annotations: {a: b}\n  spec:\n    containers: [{name: app}]\nbehaviours:\n  app: {then: forever}\n";
        assert_eq!(
            refused_field(annotated).map(|(field, _)| field).as_deref(),
            Some("pod.metadata.annotations")
        );
    }

    #[test]
    fn resources_are_refused_for_what_a_kubelet_does_with_them() {
        let (_, reason) = refused_field(&scenario_yaml(
            "        resources: {requests: {cpu: 100m}}\n",
            "",
        ))
        .expect("refused");
        assert!(
            reason.contains("qosClass") && reason.contains("OOMKilled"),
            "{reason}"
        );
    }

    #[test]
    fn a_field_k8s_openapi_does_not_know_is_refused_not_dropped() {
        let (field, reason) = refused_field(&scenario_yaml(
            "        readinesProbe: {periodSeconds: 1}\n",
            "",
        ))
        .expect("a misspelt probe must not be dropped silently");
        assert_eq!(field, "pod.spec.containers[0].readinesProbe");
        assert!(reason.starts_with("unknown field"), "{reason}");
    }

    #[test]
    fn empty_values_count_as_absent() {
        let yaml = scenario_yaml(
            "        resources: {}\n        env: []\n",
            "    volumes: []\n",
        );
        assert_eq!(refused_field(&yaml), None);
    }

    #[test]
    fn every_modelled_field_is_accepted() {
        // One container per probe handler, each with all three probes and every field.
        let handlers = [
            ("http", 8080, "httpGet: {path: /live, port: health, host: '', scheme: HTTP, httpHeaders: [{name: X-A, value: b}]}"),
            ("tcp", 8081, "tcpSocket: {port: 9001, host: ''}"),
            ("grpc", 8082, "grpc: {port: 9090, service: live}"),
            ("exec", 8083, "exec: {command: [/podcheck-agent, probe, live]}"),
        ];
        let mut containers = String::new();
        let mut behaviours = String::new();
        for (name, port, handler) in handlers {
            containers.push_str(&format!(
                "      - name: {name}\n        ports: [{{name: health, containerPort: {port}, protocol: TCP}}]\n"
            ));
            let hooks = match name {
                "http" => (
                    "preStop: {exec: {command: [/podcheck-agent, hook, drain]}}",
                    "\n    hooks: {drain: {takes: 1s}}",
                ),
                "tcp" => (
                    "preStop: {httpGet: {path: /hook/drain, port: 8081, scheme: HTTP}}",
                    "\n    hooks: {drain: {}}",
                ),
                "grpc" => ("preStop: {sleep: {seconds: 2}}", ""),
                _ => ("preStop: {tcpSocket: {port: 8083, host: ''}}", ""),
            };
            containers.push_str(&format!("        lifecycle: {{{}}}\n", hooks.0));
            for (kind, extra) in [
                (
                    "livenessProbe",
                    "successThreshold: 1, terminationGracePeriodSeconds: 5",
                ),
                ("readinessProbe", "successThreshold: 2"),
                (
                    "startupProbe",
                    "successThreshold: 1, terminationGracePeriodSeconds: 5",
                ),
            ] {
                containers.push_str(&format!(
                    "        {kind}: {{{handler}, initialDelaySeconds: 1, timeoutSeconds: 1, periodSeconds: 3, failureThreshold: 3, {extra}}}\n"
                ));
            }
            let extra_ports = match name {
                "tcp" => ", tcpPort: 9001",
                _ => "",
            };
            let grpc = if name == "grpc" {
                ", grpcPort: 9090"
            } else {
                ""
            };
            behaviours.push_str(&format!(
                "  {name}:\n    then: forever\n    health: {{port: {port}{grpc}, endpoints: {{live: {{answers: [{{answer: ok}}]{extra_ports}}}}}}}{}\n",
                hooks.1
            ));
        }
        // PostStart hooks, one handler each, on containers without probes.
        for (name, port, hook, behaviour) in [
            (
                "ps-exec",
                8090,
                "exec: {command: [/podcheck-agent, hook, up]}",
                "hooks: {up: {takes: 1s}}",
            ),
            ("ps-sleep", 8092, "sleep: {seconds: 1}", "hooks: {up: {}}"),
            (
                "ps-tcp",
                8093,
                "tcpSocket: {port: 8093, host: ''}",
                "hooks: {up: {}}",
            ),
        ] {
            containers.push_str(&format!(
                "      - name: {name}\n        lifecycle: {{postStart: {{{hook}}}}}\n"
            ));
            behaviours.push_str(&format!(
                "  {name}:\n    then: forever\n    health: {{port: {port}, endpoints: {{live: {{answers: [{{answer: ok}}]}}}}}}\n    {behaviour}\n"
            ));
        }
        // The same containers again as sidecars, which may carry probes and hooks, on
        // ports of their own.
        let shift_ports = |text: &str| {
            let mut shifted = text.to_owned();
            for port in [8080, 8081, 8082, 8083, 8090, 8092, 8093, 9001, 9090] {
                shifted = shifted.replace(&port.to_string(), &(port + 100).to_string());
            }
            shifted
        };
        let init_containers = shift_ports(&containers).replace(
            "      - name: ",
            "      - restartPolicy: Always\n        name: i-",
        );
        let mut init_behaviours = shift_ports(&behaviours);
        for name in [
            "http", "tcp", "grpc", "exec", "ps-exec", "ps-sleep", "ps-tcp",
        ] {
            init_behaviours =
                init_behaviours.replace(&format!("\n  {name}:\n"), &format!("\n  i-{name}:\n"));
            if init_behaviours.starts_with(&format!("  {name}:\n")) {
                init_behaviours = format!("  i-{}", &init_behaviours[2..]);
            }
        }
        let yaml = format!(
            "name: x\npod:\n  apiVersion: v1\n  kind: Pod\n  metadata:\n    name: x\n    labels: {{team: a, app.kubernetes.io/name: b}}\n    finalizers: [podcheck.io/hold]\n  spec:\n    restartPolicy: OnFailure\n    terminationGracePeriodSeconds: 10\n    initContainers:\n{init_containers}    containers:\n{containers}behaviours:\n{behaviours}{init_behaviours}"
        );
        let scenario = Scenario::from_yaml("x.yaml", &yaml);
        assert!(scenario.is_ok(), "{scenario:?}\n{yaml}");
        // Every listed field is present in the scenario above, so the test covers the list.
        let written: Value = serde_saphyr::from_str(&yaml).expect("yaml");
        let mut present = std::collections::BTreeSet::new();
        collect_patterns(&written["pod"], "pod", &mut present);
        for field in modelled_fields() {
            assert!(
                present.contains(&field.path),
                "{} is listed but not exercised",
                field.path
            );
        }
    }

    fn collect_patterns(
        value: &Value,
        pattern: &str,
        into: &mut std::collections::BTreeSet<String>,
    ) {
        into.insert(pattern.to_owned());
        match value {
            Value::Object(members) => {
                for (key, member) in members {
                    collect_patterns(member, &format!("{pattern}.{key}"), into);
                }
            }
            Value::Array(items) => {
                for item in items {
                    collect_patterns(item, &format!("{pattern}[]"), into);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn api_server_errors_come_before_not_modelled() {
        // An invalid probe on the second container is reported as Kubernetes would,
        // although the first container carries an unmodelled field.
        let yaml = "name: x\npod:\n  spec:\n    containers:\n      - {name: a, image: busybox}\n      - name: b\n        livenessProbe: {periodSeconds: 1}\nbehaviours:\n  a: {then: forever}\n  b: {then: forever}\n";
        assert_eq!(
            refused_field(yaml).map(|(field, _)| field).as_deref(),
            Some("pod.spec.containers[1].livenessProbe")
        );
    }

    #[test]
    fn every_listed_field_names_rules_or_a_reason_and_unmodelled_ones_are_not_listed() {
        for field in modelled_fields() {
            assert!(!field.why.is_empty(), "{}", field.path);
            assert!(
                lookup_unmodelled(&field.path).is_none(),
                "{} is both modelled and refused",
                field.path
            );
        }
        for (path, _) in UNMODELLED {
            assert!(
                matches!(classify(&format!("pod.{path}")), Listing::Refused),
                "pod.{path} is listed as unmodelled but accepted"
            );
        }
    }
}
