//! Rendering a [`HostileScenario`] as scenario YAML.

use super::*;
use std::fmt::Write as _;
fn line(out: &mut String, indent: usize, text: &str) {
    let _ = writeln!(out, "{:indent$}{text}", "");
}

fn render_probe(out: &mut String, indent: usize, field: &str, probe: &HostileProbe) {
    line(out, indent, &format!("{field}:"));
    let inner = indent + 2;
    match probe.handler {
        HostileProbeHandler::Exec(endpoint) => line(
            out,
            inner,
            &format!(
                "exec: {{command: [/podcheck-agent, probe, {}]}}",
                endpoint.render()
            ),
        ),
        HostileProbeHandler::ExecOther => line(out, inner, "exec: {command: [cat, /tmp/healthy]}"),
        HostileProbeHandler::HttpGet { endpoint, port } => line(
            out,
            inner,
            &format!(
                "httpGet: {{path: /{}, port: {}}}",
                endpoint.render().trim_matches('"'),
                port.render()
            ),
        ),
        HostileProbeHandler::TcpSocket(port) => line(
            out,
            inner,
            &format!("tcpSocket: {{port: {}}}", port.render()),
        ),
        HostileProbeHandler::Grpc { port, service } => {
            let service = service
                .map(|s| format!(", service: {}", s.render()))
                .unwrap_or_default();
            line(
                out,
                inner,
                &format!("grpc: {{port: {}{service}}}", port.render_number()),
            )
        }
        HostileProbeHandler::Missing => {}
    }
    for (name, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
        (
            "terminationGracePeriodSeconds",
            probe.termination_grace_period_seconds,
        ),
    ] {
        if let Some(value) = value {
            line(out, inner, &format!("{name}: {}", value.render()));
        }
    }
}

fn render_hook(out: &mut String, indent: usize, field: &str, hook: HostileHookHandler) {
    let handler = match hook {
        HostileHookHandler::Exec(name) => format!(
            "exec: {{command: [/podcheck-agent, hook, {}]}}",
            name.render()
        ),
        HostileHookHandler::HttpGet { hook, port } => format!(
            "httpGet: {{path: /hook/{}, port: {}}}",
            hook.render().trim_matches('"'),
            port.render()
        ),
        HostileHookHandler::Sleep(seconds) => format!("sleep: {{seconds: {}}}", seconds.render()),
        HostileHookHandler::TcpSocket(port) => format!("tcpSocket: {{port: {}}}", port.render()),
    };
    line(out, indent, &format!("{field}:"));
    line(out, indent + 2, &handler);
}

fn render_container(out: &mut String, container: &HostileContainer) {
    line(out, 6, &format!("- name: {}", container.name.render()));
    let indent = 8;
    if let Some(policy) = container.restart_policy {
        let policy = match policy {
            HostileContainerRestartPolicy::Always => "Always",
            HostileContainerRestartPolicy::Never => "Never",
            HostileContainerRestartPolicy::Garbage => "Sometimes",
        };
        line(out, indent, &format!("restartPolicy: {policy}"));
    }
    if let Some(port) = container.health_port {
        line(
            out,
            indent,
            &format!(
                "ports: [{{name: health, containerPort: {}}}]",
                port.render_number()
            ),
        );
    }
    for (field, probe) in [
        ("livenessProbe", &container.liveness_probe),
        ("readinessProbe", &container.readiness_probe),
        ("startupProbe", &container.startup_probe),
    ] {
        if let Some(probe) = probe {
            render_probe(out, indent, field, probe);
        }
    }
    if container.post_start.is_some() || container.pre_stop.is_some() {
        line(out, indent, "lifecycle:");
        if let Some(hook) = container.post_start {
            render_hook(out, indent + 2, "postStart", hook);
        }
        if let Some(hook) = container.pre_stop {
            render_hook(out, indent + 2, "preStop", hook);
        }
    }
}

fn render_behaviour(out: &mut String, name: &str, behaviour: &HostileBehaviour) {
    line(out, 2, &format!("{name}:"));
    let indent = 4;
    if !behaviour.starts.is_empty() {
        line(out, indent, "starts:");
        for run in behaviour.starts.iter().take(MAX_LIST) {
            line(out, indent + 2, &format!("- {}", run.render()));
        }
    }
    line(out, indent, &format!("then: {}", behaviour.then.render()));
    match behaviour.on_sigterm {
        None => {}
        Some(HostileOnSigterm::Die) => line(out, indent, "onSigterm: die"),
        Some(HostileOnSigterm::Ignore) => line(out, indent, "onSigterm: ignore"),
        Some(HostileOnSigterm::Exit { after, code }) => line(
            out,
            indent,
            &format!(
                "onSigterm: {{exit: {{after: {}, code: {}}}}}",
                after.render(),
                code.render()
            ),
        ),
    }
    if let Some(health) = &behaviour.health {
        line(out, indent, "health:");
        let inner = indent + 2;
        if let Some(port) = health.port {
            line(out, inner, &format!("port: {}", port.render_number()));
        }
        if let Some(after) = health.listen_after {
            line(out, inner, &format!("listenAfter: {}", after.render()));
        }
        if let Some(port) = health.grpc_port {
            line(out, inner, &format!("grpcPort: {}", port.render_number()));
        }
        if health.endpoints.is_empty() {
            line(out, inner, "endpoints: {}");
        } else {
            line(out, inner, "endpoints:");
        }
        for endpoint in health.endpoints.iter().take(MAX_LIST) {
            line(out, inner + 2, &format!("{}:", endpoint.name.render()));
            if let Some(port) = endpoint.tcp_port {
                line(
                    out,
                    inner + 4,
                    &format!("tcpPort: {}", port.render_number()),
                );
            }
            if endpoint.answers.is_empty() {
                line(out, inner + 4, "answers: []");
                continue;
            }
            line(out, inner + 4, "answers:");
            for (answer, length) in endpoint.answers.iter().take(MAX_LIST) {
                let answer = match answer {
                    HostileAnswer::Ok => "ok".to_owned(),
                    HostileAnswer::Fail => "fail".to_owned(),
                    HostileAnswer::Slow(delay) => format!("{{slow: {}}}", delay.render()),
                };
                let length = length
                    .map(|d| format!(", for: {}", d.render()))
                    .unwrap_or_default();
                line(out, inner + 6, &format!("- {{answer: {answer}{length}}}"));
            }
        }
    }
    if !behaviour.hooks.is_empty() {
        line(out, indent, "hooks:");
        for (name, takes, fails) in behaviour.hooks.iter().take(MAX_LIST) {
            let mut fields = Vec::new();
            if let Some(takes) = takes {
                fields.push(format!("takes: {}", takes.render()));
            }
            if *fails {
                fields.push("result: fail".to_owned());
            }
            line(
                out,
                indent + 2,
                &format!("{}: {{{}}}", name.render(), fields.join(", ")),
            );
        }
    }
}

impl HostileScenario {
    /// The regular containers rendered.
    fn containers(&self) -> Vec<&HostileContainer> {
        std::iter::once(&self.container)
            .chain(self.more_containers.iter())
            .take(MAX_LIST)
            .collect()
    }

    /// The scenario as YAML text, as a person would write it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        line(&mut out, 0, "name: hostile");
        if let Some(observe_for) = self.observe_for {
            line(
                &mut out,
                0,
                &format!("observeFor: {}", observe_for.render()),
            );
        }
        if let Some(kubelet) = self.kubelet {
            line(&mut out, 0, "kubelet:");
            let mut gates = Vec::new();
            if let Some(on) = kubelet.crash_loop_back_off_max {
                gates.push(format!("KubeletCrashLoopBackOffMax: {on}"));
            }
            if let Some(on) = kubelet.reduce_default_decay {
                gates.push(format!("ReduceDefaultCrashLoopBackOffDecay: {on}"));
            }
            line(
                &mut out,
                2,
                &format!("featureGates: {{{}}}", gates.join(", ")),
            );
            if let Some(period) = kubelet.max_container_restart_period {
                line(
                    &mut out,
                    2,
                    &format!(
                        "crashLoopBackOff: {{maxContainerRestartPeriod: {}}}",
                        period.render()
                    ),
                );
            }
        }
        line(&mut out, 0, "pod:");
        line(&mut out, 2, "apiVersion: v1");
        line(&mut out, 2, "kind: Pod");
        line(&mut out, 2, "metadata:");
        line(&mut out, 4, "name: hostile");
        if self.finalizer {
            line(&mut out, 4, &format!("finalizers: [{FINALIZER}]"));
        }
        line(&mut out, 2, "spec:");
        if let Some(policy) = self.restart_policy {
            let policy = match policy {
                HostilePodRestartPolicy::Always => "Always",
                HostilePodRestartPolicy::OnFailure => "OnFailure",
                HostilePodRestartPolicy::Never => "Never",
                HostilePodRestartPolicy::Garbage => "Sometimes",
            };
            line(&mut out, 4, &format!("restartPolicy: {policy}"));
        }
        if let Some(grace) = self.termination_grace_period_seconds {
            line(
                &mut out,
                4,
                &format!("terminationGracePeriodSeconds: {}", grace.render()),
            );
        }
        if !self.init_containers.is_empty() {
            line(&mut out, 4, "initContainers:");
            for container in self.init_containers.iter().take(MAX_LIST) {
                render_container(&mut out, container);
            }
        }
        let containers = self.containers();
        if containers.is_empty() {
            line(&mut out, 4, "containers: []");
        } else {
            line(&mut out, 4, "containers:");
            for container in &containers {
                render_container(&mut out, container);
            }
        }
        // Each container's behaviour, then the others; a name is written once.
        let mut written: Vec<String> = Vec::new();
        line(&mut out, 0, "behaviours:");
        let containers = self
            .init_containers
            .iter()
            .take(MAX_LIST)
            .chain(containers)
            .map(|c| (c.name, &c.behaviour));
        let others = self
            .other_behaviours
            .iter()
            .take(MAX_LIST)
            .map(|(name, behaviour)| (*name, behaviour));
        for (name, behaviour) in containers.chain(others) {
            let name = name.render();
            if !written.contains(&name) {
                render_behaviour(&mut out, &name, behaviour);
                written.push(name);
            }
        }
        if written.is_empty() {
            out.push_str("  {}\n");
        }
        if !self.faults.is_empty() {
            line(&mut out, 0, "faults:");
        }
        for fault in self.faults.iter().take(MAX_LIST) {
            let action = match fault.action {
                HostileFaultAction::KillContainer(name) => {
                    format!("{{killContainer: {{container: {}}}}}", name.render())
                }
                HostileFaultAction::Delete(None) => "{delete: {}}".to_owned(),
                HostileFaultAction::Delete(Some(grace)) => {
                    format!("{{delete: {{gracePeriodSeconds: {}}}}}", grace.render())
                }
                HostileFaultAction::ForceDelete => "forceDelete".to_owned(),
                HostileFaultAction::RemoveFinalizer(known) => format!(
                    "{{removeFinalizer: {{finalizer: {}}}}}",
                    if known {
                        FINALIZER
                    } else {
                        "example.com/other"
                    }
                ),
                HostileFaultAction::RestartNodeAgent => "restartNodeAgent".to_owned(),
                HostileFaultAction::AddEphemeralContainer { name, target } => format!(
                    "{{addEphemeralContainer: {{name: {}{}}}}}",
                    name.render(),
                    target
                        .map(|t| format!(", targetContainerName: {}", t.render()))
                        .unwrap_or_default()
                ),
            };
            line(
                &mut out,
                2,
                &format!("- {{at: {}, action: {action}}}", fault.at.render()),
            );
        }
        out
    }
}
