//! Probe workers: the kubelet's prober, one worker per container and probe.
//!
//! Written from the Kubernetes documentation and pkg/kubelet/prober: a worker ticks every
//! `periodSeconds` from its own start; it waits while the container is not running, before
//! `initialDelaySeconds` have passed since the container started, and (liveness,
//! readiness) until the container is started; it counts consecutive results and reports a
//! result once its threshold is reached; a probe that cannot be run is discarded. The
//! worker outlives container restarts, and so do its counters.

mod grpc;
pub(crate) mod http_get;

use crate::errors::ProbeError;
use crate::sys;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Startup => "startup",
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
        }
    }
}

#[derive(Clone, Debug)]
enum Action {
    Http {
        port: IntOrString,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        port: IntOrString,
    },
    Exec {
        command: Vec<String>,
    },
    Grpc {
        port: i32,
        service: String,
    },
}

/// One probe of a container, with the API server's defaults applied.
#[derive(Clone, Debug)]
pub(crate) struct ProbeSpec {
    pub kind: Kind,
    action: Action,
    period: Duration,
    timeout: Duration,
    initial_delay_secs: u64,
    success_threshold: u32,
    failure_threshold: u32,
    /// Probe-level terminationGracePeriodSeconds (liveness and startup).
    pub termination_grace: Option<Duration>,
}

impl ProbeSpec {
    /// Reads a probe from the manifest; the error names what the runtime cannot run.
    pub fn parse(probe: &Probe, kind: Kind) -> Result<ProbeSpec, String> {
        let action = if let Some(http) = &probe.http_get {
            if http.host.as_deref().is_some_and(|h| !h.is_empty()) {
                return Err("httpGet.host: only the pod's own address is supported".to_owned());
            }
            if http.scheme.as_deref() == Some("HTTPS") {
                return Err("httpGet.scheme: HTTPS is not supported".to_owned());
            }
            let (path, headers) = http_request(http);
            Action::Http {
                port: http.port.clone(),
                path,
                headers,
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            if tcp.host.as_deref().is_some_and(|h| !h.is_empty()) {
                return Err("tcpSocket.host: only the pod's own address is supported".to_owned());
            }
            Action::Tcp {
                port: tcp.port.clone(),
            }
        } else if let Some(exec) = &probe.exec {
            Action::Exec {
                command: exec.command.clone().unwrap_or_default(),
            }
        } else if let Some(grpc) = &probe.grpc {
            Action::Grpc {
                port: grpc.port,
                service: grpc.service.clone().unwrap_or_default(),
            }
        } else {
            return Err("no handler".to_owned());
        };
        let seconds = |value: Option<i32>, default: u64| {
            Duration::from_secs(value.filter(|v| *v > 0).map_or(default, |v| v as u64))
        };
        Ok(ProbeSpec {
            kind,
            action,
            period: seconds(probe.period_seconds, 10),
            timeout: seconds(probe.timeout_seconds, 1),
            initial_delay_secs: probe.initial_delay_seconds.unwrap_or(0).max(0) as u64,
            success_threshold: probe.success_threshold.filter(|t| *t > 0).unwrap_or(1) as u32,
            failure_threshold: probe.failure_threshold.filter(|t| *t > 0).unwrap_or(3) as u32,
            termination_grace: probe
                .termination_grace_period_seconds
                .filter(|g| *g > 0)
                .map(|g| Duration::from_secs(g as u64)),
        })
    }
}

/// What a probe worker needs to know about its container, published by the pod worker.
#[derive(Clone, Debug, Default)]
pub(crate) struct ContainerView {
    pub instance: Option<u32>,
    /// When the current instance started, while it runs.
    pub running_since: Option<Instant>,
    pub started: bool,
    pub terminated: bool,
    pub pid: Option<i32>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PodView {
    pub containers: Vec<ContainerView>,
    pub terminal: bool,
    /// The pod was deleted: liveness and startup probes stop (`StopLivenessAndStartup`),
    /// readiness goes on.
    pub terminating: bool,
}

/// A probe result that crossed its threshold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbeUpdate {
    pub container: usize,
    pub instance: u32,
    pub kind: Kind,
    pub success: bool,
}

/// Everything a worker uses; cheap to clone per worker.
#[derive(Clone)]
pub(crate) struct WorkerContext {
    pub container: usize,
    pub spec: Container,
    pub env: Vec<(String, String)>,
    pub netns: Arc<File>,
    pub spawner: crate::sys::SpawnFn,
    pub time_scale: f64,
    pub restart_never: bool,
    pub user_agent: String,
    pub timings: Arc<std::sync::Mutex<Vec<(&'static str, Duration)>>>,
    /// The pod's uid, for the slips this worker records.
    pub pod: String,
    pub slips: Arc<crate::slips::Slips>,
}

/// Kubelets identify their probes as `kube-probe/<major>.<minor>`.
pub(crate) const PROBE_USER_AGENT: &str = "kube-probe/1.35";

/// Probe timings kept for `probe_timings`; older ones are dropped beyond this.
const TIMINGS_KEPT: usize = 100_000;

impl WorkerContext {
    fn scaled(&self, spec: Duration) -> Duration {
        spec.mul_f64(self.time_scale)
    }
}

/// Runs one probe worker until the pod is terminal, its container will not run again,
/// or the pod worker goes away.
pub(crate) async fn run_worker(
    context: WorkerContext,
    probe: ProbeSpec,
    mut view: watch::Receiver<PodView>,
    updates: mpsc::UnboundedSender<ProbeUpdate>,
) {
    let mut ticker = tokio::time::interval(context.scaled(probe.period));
    // Go's ticker drops ticks a slow receiver missed, rather than bursting.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seen: Option<u32> = None;
    // The kubelet's worker starts with lastResult = Success (the zero value).
    let mut last_success = true;
    let mut run = 0u32;
    let mut on_hold = false;
    loop {
        let due = ticker.tick().await.into_std();
        context.slips.late(Some(&context.pod), due, || {
            format!(
                "{} probe of container {} ticked",
                probe.kind.name(),
                context.spec.name
            )
        });
        if view.has_changed().is_err() {
            return;
        }
        let snapshot = view.borrow_and_update().clone();
        if snapshot.terminal || (snapshot.terminating && probe.kind != Kind::Readiness) {
            return;
        }
        let Some(container) = snapshot.containers.get(context.container).cloned() else {
            return;
        };
        let Some(instance) = container.instance else {
            continue;
        };
        if seen != Some(instance) {
            // A new container: resume probing (its initial result is set by the pod worker).
            seen = Some(instance);
            on_hold = false;
        }
        if on_hold {
            continue;
        }
        let Some(since) = container.running_since else {
            if container.terminated && context.restart_never {
                return;
            }
            continue;
        };
        // initialDelaySeconds against whole seconds since the start, as the kubelet does.
        let elapsed_secs = (since.elapsed().as_secs_f64() / context.time_scale) as u64;
        if elapsed_secs < probe.initial_delay_secs {
            continue;
        }
        match (probe.kind, container.started) {
            (Kind::Startup, true) => continue,
            (Kind::Liveness | Kind::Readiness, false) => continue,
            _ => {}
        }
        let began = Instant::now();
        let result = execute(&context, &probe, container.pid).await;
        let took = began.elapsed();
        let timeout = context.scaled(probe.timeout);
        if took >= timeout {
            // A failure the kubelet would count too; but at a scaled timeout it may be the
            // machine's stall rather than the workload's slowness.
            context.slips.record(
                Some(&context.pod),
                format!(
                    "{} probe of container {} ran to its timeout ({} ms)",
                    probe.kind.name(),
                    context.spec.name,
                    timeout.as_millis()
                ),
            );
        }
        if let Ok(mut timings) = context.timings.lock() {
            if timings.len() < TIMINGS_KEPT {
                let handler = match probe.action {
                    Action::Http { .. } => "http",
                    Action::Tcp { .. } => "tcp",
                    Action::Exec { .. } => "exec",
                    Action::Grpc { .. } => "grpc",
                };
                timings.push((handler, took));
            }
        }
        let Ok(success) = result else {
            // An error is not a result: the attempt is thrown away.
            continue;
        };
        if success == last_success {
            run += 1;
        } else {
            last_success = success;
            run = 1;
        }
        let threshold = if success {
            probe.success_threshold
        } else {
            probe.failure_threshold
        };
        if run < threshold {
            continue;
        }
        let update = ProbeUpdate {
            container: context.container,
            instance,
            kind: probe.kind,
            success,
        };
        if updates.send(update).is_err() {
            return;
        }
        if (probe.kind == Kind::Liveness && !success) || probe.kind == Kind::Startup {
            on_hold = true;
            run = 0;
        }
    }
}

/// Runs the probe once: Ok(success) or Err when it could not be run at all.
async fn execute(
    context: &WorkerContext,
    probe: &ProbeSpec,
    pid: Option<i32>,
) -> Result<bool, ProbeError> {
    let timeout = context.scaled(probe.timeout);
    match &probe.action {
        Action::Http {
            port,
            path,
            headers,
        } => {
            let get = http_get::HttpGet {
                port: resolve_port(&context.spec, port)?,
                path,
                headers,
                user_agent: &context.user_agent,
            };
            let connect = |port| connect(&context.netns, port);
            http_get::probe(connect, get, timeout).await.result()
        }
        Action::Tcp { port } => {
            let port = resolve_port(&context.spec, port)?;
            Ok(matches!(
                tokio::time::timeout(timeout, connect(&context.netns, port)).await,
                Ok(Ok(_))
            ))
        }
        Action::Grpc { port, service } => {
            // Every outcome of a gRPC probe is a success or a failure, never an error
            // (pkg/probe/grpc: "any failure is considered as a probe failure").
            let Ok(port) = u16::try_from(*port) else {
                return Ok(false);
            };
            let connect = |port| connect(&context.netns, port);
            let attempt = grpc::is_serving(
                connect,
                port,
                service,
                &context.user_agent,
                context.time_scale,
            );
            Ok(matches!(
                tokio::time::timeout(timeout, attempt).await,
                Ok(Ok(true))
            ))
        }
        Action::Exec { command } => {
            let pid = pid.ok_or(ProbeError::NotRunning)?;
            let launch = sys::ExecLaunch {
                container_pid: pid,
                argv: command.clone(),
                env: context.env.clone(),
                cgroup_procs: Vec::new(),
                capture_output: false,
            };
            let command = sys::exec_command(launch)
                .map_err(|e| ProbeError::io("prepare the exec probe's command", e))?;
            let child = (context.spawner)(command)
                .map_err(|e| ProbeError::io("start the exec probe's command", e))?;
            let child_pid = child.id() as i32;
            let wait = tokio::task::spawn_blocking(move || {
                let mut child = child;
                child.wait()
            });
            let outcome = match tokio::time::timeout(timeout, wait).await {
                Ok(Ok(Ok(status))) => Ok(status.success()),
                Ok(Ok(Err(e))) => Err(ProbeError::io("wait for the exec probe's command", e)),
                Ok(Err(e)) => Err(ProbeError::io(
                    "wait for the exec probe's command",
                    std::io::Error::other(e),
                )),
                Err(_) => {
                    // Timed out: a failure (ExecProbeTimeout), and the command is stopped.
                    sys::kill(child_pid, libc::SIGKILL);
                    Ok(false)
                }
            };
            // CRI ExecSync on a container whose process is gone fails ("container is in
            // CONTAINER_EXITED state"): an error, which the worker discards, not a failed
            // command. The command may have run before the process died, and failed
            // because nothing answered any more: that attempt is an error too.
            if matches!(outcome, Ok(false)) && !sys::has_namespaces(pid) {
                return Err(ProbeError::NotRunning);
            }
            outcome
        }
    }
}

/// A named port is looked up in the container's own ports; a missing one is an error.
/// The path (`/` when empty) and headers of an httpGet, as the kubelet sends them, for
/// probes and hooks alike.
pub(crate) fn http_request(
    http: &k8s_openapi::api::core::v1::HTTPGetAction,
) -> (String, Vec<(String, String)>) {
    let path = http
        .path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    let headers = http
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    (path, headers)
}

pub(crate) fn resolve_port(container: &Container, port: &IntOrString) -> Result<u16, ProbeError> {
    let number = match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| ProbeError::NoSuchPort(name.clone()))?,
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or(ProbeError::InvalidPort(number))
}

/// A TCP connection to the pod's own address, made from inside its network namespace.
pub(crate) async fn connect(
    netns: &Arc<File>,
    port: u16,
) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.clone();
    let socket = tokio::task::spawn_blocking(move || sys::tcp_socket_in(&netns))
        .await
        .map_err(std::io::Error::other)??;
    let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}
