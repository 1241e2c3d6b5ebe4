//! Probe workers: the kubelet's prober, one worker per container and probe.
//!
//! Written from the Kubernetes documentation and pkg/kubelet/prober: a worker ticks every
//! `periodSeconds` from its own start; it waits while the container is not running, before
//! `initialDelaySeconds` have passed since the container started, and (liveness,
//! readiness) until the container is started; it counts consecutive results and reports a
//! result once its threshold is reached; a probe that cannot be run is discarded. The
//! worker outlives container restarts, and so do its counters.

mod http_get;

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
            Action::Http {
                port: http.port.clone(),
                path: http
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".to_owned()),
                headers: http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
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
    pub spawner:
        Arc<dyn Fn(std::process::Command) -> std::io::Result<std::process::Child> + Send + Sync>,
    pub time_scale: f64,
    pub restart_never: bool,
    pub user_agent: String,
    pub timings: Arc<std::sync::Mutex<Vec<(&'static str, Duration)>>>,
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
        ticker.tick().await;
        if view.has_changed().is_err() {
            return;
        }
        let snapshot = view.borrow_and_update().clone();
        if snapshot.terminal {
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
        if let Ok(mut timings) = context.timings.lock() {
            if timings.len() < TIMINGS_KEPT {
                let handler = match probe.action {
                    Action::Http { .. } => "http",
                    Action::Tcp { .. } => "tcp",
                    Action::Exec { .. } => "exec",
                    Action::Grpc { .. } => "grpc",
                };
                timings.push((handler, began.elapsed()));
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
) -> Result<bool, String> {
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
            let attempt = grpc_health_check(&context.netns, port, service, &context.user_agent);
            Ok(matches!(
                tokio::time::timeout(timeout, attempt).await,
                Ok(Ok(SERVING))
            ))
        }
        Action::Exec { command } => {
            let pid = pid.ok_or("the container is not running")?;
            let launch = sys::ExecLaunch {
                container_pid: pid,
                argv: command.clone(),
                env: context.env.clone(),
            };
            let command = sys::exec_command(launch).map_err(|e| e.to_string())?;
            let child = (context.spawner)(command).map_err(|e| e.to_string())?;
            let child_pid = child.id() as i32;
            let wait = tokio::task::spawn_blocking(move || {
                let mut child = child;
                child.wait()
            });
            match tokio::time::timeout(timeout, wait).await {
                Ok(Ok(Ok(status))) => Ok(status.success()),
                Ok(_) => Err("lost the exec probe's process".to_owned()),
                Err(_) => {
                    // Timed out: a failure (ExecProbeTimeout), and the command is stopped.
                    sys::kill(child_pid, libc::SIGKILL);
                    Ok(false)
                }
            }
        }
    }
}

/// A named port is looked up in the container's own ports; a missing one is an error.
fn resolve_port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(number) => *number,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("port {name:?} not found"))?,
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// Calls `grpc.health.v1.Health/Check` for `service` over cleartext HTTP/2 and returns the
/// serving status, or an error for anything short of a well-formed OK answer.
async fn grpc_health_check(
    netns: &Arc<File>,
    port: u16,
    service: &str,
    user_agent: &str,
) -> Result<u64, String> {
    let stream = connect(netns, port).await.map_err(|e| e.to_string())?;
    let (client, connection) = h2::client::handshake(stream)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let result = async {
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://127.0.0.1:{port}/grpc.health.v1.Health/Check"
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", user_agent)
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, mut body) = client
            .send_request(request, false)
            .map_err(|e| e.to_string())?;
        body.send_data(grpc_frame(&health_check_request(service)), true)
            .map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()));
        }
        let trailers_only = response.headers().get("grpc-status").cloned();
        let mut data = response.into_body();
        let mut message = Vec::new();
        while let Some(chunk) = data.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = data.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let trailers = data.trailers().await.map_err(|e| e.to_string())?;
        let status = trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status").cloned())
            .or(trailers_only);
        if status.as_ref().and_then(|s| s.to_str().ok()) != Some("0") {
            return Err(format!("grpc-status {status:?}"));
        }
        serving_status(&message).ok_or_else(|| "an unreadable HealthCheckResponse".to_owned())
    }
    .await;
    driver.abort();
    result
}

/// A gRPC length-prefixed message (uncompressed).
fn grpc_frame(message: &[u8]) -> bytes::Bytes {
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    bytes::Bytes::from(frame)
}

/// `HealthCheckRequest { string service = 1; }`, protobuf-encoded.
fn health_check_request(service: &str) -> Vec<u8> {
    if service.is_empty() {
        return Vec::new();
    }
    let mut message = vec![0x0A];
    push_varint(&mut message, service.len() as u64);
    message.extend_from_slice(service.as_bytes());
    message
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The `status` (field 1) of a framed `HealthCheckResponse`; absent means UNKNOWN (0).
fn serving_status(frame: &[u8]) -> Option<u64> {
    let (header, message) = (frame.get(..5)?, frame.get(5..)?);
    if header[0] != 0 {
        return None;
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let message = message.get(..length)?;
    let mut at = 0;
    let mut status = 0;
    while at < message.len() {
        let key = read_varint(message, &mut at)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = read_varint(message, &mut at)?,
            (_, 0) => {
                read_varint(message, &mut at)?;
            }
            (_, 2) => {
                let skip = read_varint(message, &mut at)? as usize;
                at = at.checked_add(skip)?;
            }
            (_, 1) => at += 8,
            (_, 5) => at += 4,
            _ => return None,
        }
    }
    Some(status)
}

/// A TCP connection to the pod's own address, made from inside its network namespace.
async fn connect(netns: &Arc<File>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.clone();
    let socket = tokio::task::spawn_blocking(move || sys::tcp_socket_in(&netns))
        .await
        .map_err(std::io::Error::other)??;
    let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_health_messages_encode_and_decode() {
        assert_eq!(health_check_request(""), Vec::<u8>::new());
        assert_eq!(health_check_request("h"), vec![0x0A, 1, b'h']);
        let frame = grpc_frame(&[0x08, 2]);
        assert_eq!(&frame[..], &[0, 0, 0, 0, 2, 0x08, 2]);
        assert_eq!(serving_status(&frame), Some(2));
        // An empty message is UNKNOWN; an unknown field is skipped.
        assert_eq!(serving_status(&grpc_frame(&[])), Some(0));
        assert_eq!(
            serving_status(&grpc_frame(&[0x12, 1, b'x', 0x08, 1])),
            Some(1)
        );
        assert_eq!(serving_status(&[0, 0, 0]), None);
    }
}
