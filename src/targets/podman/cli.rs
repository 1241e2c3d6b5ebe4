//! Running podman: one command at a time, with the target's own containers.conf, within a
//! time limit; and the pod-level commands the target's parts share.

use super::TargetError;
use std::path::Path;
use std::time::Duration;

/// How long a podman command may take unless it waits by design.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs one podman command with the target's containers.conf; a hung podman is an error.
pub(super) async fn run_podman(conf: &Path, args: &[&str]) -> Result<String, TargetError> {
    run_podman_within(conf, args, COMMAND_TIMEOUT).await
}

/// [`run_podman`] for a command that may take longer by design (a stop that waits out a
/// grace period).
pub(super) async fn run_podman_within(
    conf: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<String, TargetError> {
    run_podman_command(conf, args, Some(timeout)).await
}

/// Runs one podman command, within `timeout` if there is one; the command is killed when
/// the future is dropped.
pub(super) async fn run_podman_command(
    conf: &Path,
    args: &[&str],
    timeout: Option<Duration>,
) -> Result<String, TargetError> {
    let mut command = tokio::process::Command::new("podman");
    command
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let command_line = || format!("podman {}", args.join(" "));
    let output = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, command.output())
            .await
            .map_err(|_| TargetError::CommandTimedOut {
                command: command_line(),
                timeout,
            })?,
        None => command.output().await,
    }
    .map_err(|e| TargetError::io("run podman", e))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(TargetError::Command {
            command: command_line(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Whether podman still has the pod (None: podman did not say).
pub(super) async fn pod_exists(conf: &Path, name: &str) -> Option<bool> {
    match run_podman(conf, &["pod", "exists", name]).await {
        Ok(_) => Some(true),
        // `podman pod exists` answers 1 for no such pod, 125 when it failed.
        Err(TargetError::Command { status, .. }) if status.code() == Some(1) => Some(false),
        Err(_) => None,
    }
}

/// Removes a pod at once, whatever its state. Stopped first with `--time 0`, then removed:
/// podman 4.3's `pod rm --force --time 0` of a running pod takes about 3.5 s here, the stop
/// and the removal together about 0.4 s.
pub(super) async fn remove_pod(conf: &Path, name: &str) -> Result<(), TargetError> {
    let stopped = run_podman(conf, &["pod", "stop", "--ignore", "--time", "0", name]).await;
    let removed = run_podman(
        conf,
        &["pod", "rm", "--force", "--ignore", "--time", "0", name],
    )
    .await;
    // A failed stop matters only if the removal failed too.
    removed.or(stopped.map(|_| String::new())).map(|_| ())
}
