//! Lifecycle hook handlers (postStart, preStop), run as the kubelet's handler runner runs
//! them (pkg/kubelet/lifecycle/handlers.go, `handlerRunner.Run`, Kubernetes 1.35):
//!
//! - exec: the command runs inside the container (its namespaces and root, in its cgroup),
//!   without a timeout (`RunInContainer(ctx, containerID, handler.Exec.Command, 0)`); a
//!   non-zero exit is a failure.
//! - httpGet: one GET to the pod's address (reached from inside the pod's network
//!   namespace) on the port, numeric or a named port of the container, built like an HTTP
//!   probe's request (`NewRequestForHTTPGetAction(..., "lifecycle")`). Only a request that
//!   gets no answer fails: `runHTTPHandler` returns the client's error and never looks at
//!   the status code.
//! - sleep: waits its seconds (scaled), failing only when cancelled.
//! - tcpSocket (accepted by validation for compatibility) is not run: "invalid handler".
//!
//! A failure comes back as the kubelet's message, which a failed postStart shows as the
//! container's Waiting message.

use crate::probe::http_get::{self, Outcome};
use crate::probe::{connect, http_request, resolve_port};
use crate::sys;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

/// Kubelets identify their lifecycle requests as `kube-lifecycle/<major>.<minor>`.
pub(crate) const LIFECYCLE_USER_AGENT: &str = "kube-lifecycle/1.35";

/// A hook request has no timeout of its own: a preStop is bounded by the grace period,
/// a postStart by nothing. This stands for "never" where a bound is needed.
const NO_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// One hook handler, as validated by the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Handler {
    Exec {
        command: Vec<String>,
    },
    HttpGet {
        port: IntOrString,
        path: String,
        headers: Vec<(String, String)>,
    },
    Sleep {
        seconds: i64,
    },
    /// Valid in the API, but the kubelet does not run it.
    TcpSocket {
        port: IntOrString,
        host: String,
    },
}

impl Handler {
    /// Reads a handler the way `validateLifecycleHandler` accepts it: exactly one handler,
    /// an exec command, a sleep within `[0, terminationGracePeriodSeconds]`
    /// (PodLifecycleSleepActionAllowZero, on by default). The error names what is wrong.
    pub fn parse(handler: &LifecycleHandler, grace_seconds: i64) -> Result<Handler, String> {
        let mut handlers = Vec::new();
        if let Some(exec) = &handler.exec {
            let command = exec.command.clone().unwrap_or_default();
            if command.is_empty() {
                return Err("exec.command: Required value".to_owned());
            }
            handlers.push(Handler::Exec { command });
        }
        if let Some(http) = &handler.http_get {
            if http.host.as_deref().is_some_and(|h| !h.is_empty()) {
                return Err("httpGet.host: only the pod's own address is supported".to_owned());
            }
            if http.scheme.as_deref() == Some("HTTPS") {
                return Err("httpGet.scheme: HTTPS is not supported".to_owned());
            }
            let (path, headers) = http_request(http);
            handlers.push(Handler::HttpGet {
                port: http.port.clone(),
                path,
                headers,
            });
        }
        if let Some(tcp) = &handler.tcp_socket {
            handlers.push(Handler::TcpSocket {
                port: tcp.port.clone(),
                host: tcp.host.clone().unwrap_or_default(),
            });
        }
        if let Some(sleep) = &handler.sleep {
            if sleep.seconds < 0 || sleep.seconds > grace_seconds {
                return Err(format!(
                    "sleep.seconds: Invalid value: {}: must be non-negative and less than \
                     terminationGracePeriodSeconds ({grace_seconds})",
                    sleep.seconds
                ));
            }
            handlers.push(Handler::Sleep {
                seconds: sleep.seconds,
            });
        }
        match handlers.len() {
            0 => Err("must specify a handler type".to_owned()),
            1 => Ok(handlers.remove(0)),
            _ => Err("may not specify more than 1 handler type".to_owned()),
        }
    }
}

/// What running a hook of one container instance needs.
#[derive(Clone)]
pub(crate) struct HookContext {
    /// The container's manifest, for named ports.
    pub container: Container,
    /// The pod as the kubelet names it in messages (`format.Pod`: `name_namespace(uid)`).
    pub pod: String,
    pub env: Vec<(String, String)>,
    /// The instance's main process: exec hooks enter its namespaces.
    pub pid: i32,
    /// The instance's `cgroup.procs` files, which exec hooks join.
    pub cgroup_procs: Vec<std::path::PathBuf>,
    pub netns: Arc<File>,
    pub spawner: crate::sys::SpawnFn,
    pub time_scale: f64,
}

/// Runs `handler` once: Ok, or the kubelet's message for the failure.
pub(crate) async fn run(handler: &Handler, context: &HookContext) -> Result<(), String> {
    let name = &context.container.name;
    let pod = &context.pod;
    match handler {
        Handler::Exec { command } => exec(command, context).await.map_err(|(error, output)| {
            format!(
                "Exec lifecycle hook ([{}]) for Container {name:?} in Pod {pod:?} failed - \
                 error: {error}, message: {output:?}",
                command.join(" ")
            )
        }),
        Handler::HttpGet {
            port,
            path,
            headers,
        } => http(port, path, headers, context).await.map_err(|error| {
            format!(
                "HTTP lifecycle hook ({path}) for Container {name:?} in Pod {pod:?} failed - \
                 error: {error}"
            )
        }),
        Handler::Sleep { seconds } => {
            let spec = Duration::from_secs(u64::try_from(*seconds).unwrap_or(0));
            tokio::time::sleep(spec.mul_f64(context.time_scale)).await;
            Ok(())
        }
        Handler::TcpSocket { port, host } => Err(format!(
            "Cannot run handler: invalid handler: &LifecycleHandler{{Exec:nil,HTTPGet:nil,\
             TCPSocket:&TCPSocketAction{{Port:{},Host:{host},}},Sleep:nil,}}",
            go_int_or_string(port)
        )),
    }
}

/// `intstr.IntOrString` as Go's `%v` prints it: `{Type IntVal StrVal}`.
fn go_int_or_string(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(number) => format!("{{0 {number} }}"),
        IntOrString::String(name) => format!("{{1 0 {name}}}"),
    }
}

/// Runs an exec hook; the error is the runtime's, with the command's output.
async fn exec(command: &[String], context: &HookContext) -> Result<(), (String, String)> {
    let failed = |error: String| (error, String::new());
    if !sys::has_namespaces(context.pid) {
        return Err(failed("container is not running".to_owned()));
    }
    let cgroup_procs = context
        .cgroup_procs
        .iter()
        .map(|path| std::fs::OpenOptions::new().write(true).open(path))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| failed(format!("join the container's cgroup: {e}")))?;
    let launch = sys::ExecLaunch {
        container_pid: context.pid,
        argv: command.to_vec(),
        env: context.env.clone(),
        cgroup_procs,
        capture_output: true,
    };
    let prepared = sys::exec_command(launch).map_err(|e| failed(e.to_string()))?;
    let child = (context.spawner)(prepared).map_err(|e| failed(e.to_string()))?;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    use std::os::unix::process::ExitStatusExt;
    let code = output
        .status
        .code()
        .unwrap_or_else(|| 128 + output.status.signal().unwrap_or(0));
    // CRI's ExecSync error, as the kubelet's remote runtime client words it.
    Err((
        format!(
            "command '{}' exited with {code}: {}",
            command.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ),
        text,
    ))
}

/// Sends an httpGet hook's request; any answer is a success.
async fn http(
    port: &IntOrString,
    path: &str,
    headers: &[(String, String)],
    context: &HookContext,
) -> Result<(), String> {
    let port = resolve_port(&context.container, port).map_err(|e| e.to_string())?;
    let get = http_get::HttpGet {
        port,
        path,
        headers,
        user_agent: LIFECYCLE_USER_AGENT,
    };
    let connect = |port| connect(&context.netns, port);
    match http_get::probe(connect, get, NO_TIMEOUT).await {
        // An answer with any status, and an answer whose body cannot be read (the body is
        // discarded, its errors ignored), are successes.
        Outcome::Success | Outcome::Warning(_) | Outcome::Error(_) => Ok(()),
        Outcome::Failure(crate::errors::ProbeError::Status(_)) => Ok(()),
        Outcome::Failure(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction, TCPSocketAction};

    #[test]
    fn a_handler_is_exactly_one_action_and_a_sleep_fits_in_the_grace_period() {
        let exec = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["/podcheck-agent".to_owned(), "hook".to_owned()]),
            }),
            ..LifecycleHandler::default()
        };
        assert!(matches!(
            Handler::parse(&exec, 30),
            Ok(Handler::Exec { .. })
        ));
        let sleep = |seconds| LifecycleHandler {
            sleep: Some(SleepAction { seconds }),
            ..LifecycleHandler::default()
        };
        assert_eq!(
            Handler::parse(&sleep(0), 30),
            Ok(Handler::Sleep { seconds: 0 })
        );
        assert_eq!(
            Handler::parse(&sleep(30), 30),
            Ok(Handler::Sleep { seconds: 30 })
        );
        assert!(Handler::parse(&sleep(31), 30).is_err());
        assert!(Handler::parse(&sleep(-1), 30).is_err());
        assert_eq!(
            Handler::parse(&LifecycleHandler::default(), 30),
            Err("must specify a handler type".to_owned())
        );
        let both = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(8080),
                ..HTTPGetAction::default()
            }),
            ..sleep(1)
        };
        assert!(Handler::parse(&both, 30).is_err());
    }

    #[tokio::test]
    async fn a_tcp_socket_handler_is_not_run_but_fails_as_an_invalid_handler() {
        let tcp = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(8080),
                host: None,
            }),
            ..LifecycleHandler::default()
        };
        let handler = Handler::parse(&tcp, 30).expect("valid in the API");
        let context = HookContext {
            container: Container::default(),
            pod: "web_default(uid)".to_owned(),
            env: Vec::new(),
            pid: 0,
            cgroup_procs: Vec::new(),
            netns: Arc::new(File::open("/dev/null").expect("/dev/null")),
            spawner: Arc::new(|_| Err(std::io::Error::other("nothing is spawned"))),
            time_scale: 1.0,
        };
        let message = run(&handler, &context).await.expect_err("never run");
        assert!(
            message.starts_with("Cannot run handler: invalid handler: &LifecycleHandler{"),
            "{message}"
        );
        assert!(message.contains("Port:{0 8080 }"), "{message}");
    }
}
