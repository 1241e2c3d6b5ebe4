//! The fault actions podman can play: a kill from outside, a deletion as a kubelet carries
//! it out with podman's means, and an ephemeral container added to the running pod.

use super::cli::{remove_pod, run_podman, run_podman_within, COMMAND_TIMEOUT};
use super::init::end_start;
use super::logs::kept_init_log;
use super::watch::{poll, POLL_INTERVAL};
use super::{locked, PodRef, PodmanTarget, Shared, SpecContainers, TargetError};
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::scenario::FaultAction;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `terminationGracePeriodSeconds` when the pod does not set it (the API's default).
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// How often the last state before a removal is read again when podman's two views of
/// the pod disagree (a container changing state between the two commands).
const LAST_STATE_ATTEMPTS: usize = 5;

/// A deletion the harness asked for, as the target carries it out (see the `podman` module
/// documentation), shared by the task that performs it and the pod's watch.
#[derive(Default)]
pub(super) struct Termination {
    /// Stops the containers and removes the pod; None until a deletion is asked for.
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
    /// The pod's status once its containers stopped, read just before podman removed it,
    /// and when: the object's last state, as a kubelet writes it before the object goes.
    pub(super) last_status: Option<(Time, PodStatus)>,
    /// The removal has begun: what podman shows from here on is the pod being taken
    /// apart (containers "removing", then missing), not a state the pod object has.
    pub(super) removing: bool,
    /// Each container's log, read before the pod was removed.
    pub(super) logs: HashMap<String, String>,
}

/// How many seconds podman waits between the stop signal and SIGKILL for a deletion
/// action (None for another action): the request's grace period, else the pod's
/// `terminationGracePeriodSeconds`, else 30, as the API server sets
/// deletionGracePeriodSeconds; 0 for a force delete. podman 4.3's `kube play` does not
/// read terminationGracePeriodSeconds itself (every container gets podman's stop timeout
/// of 10 s; `kube play` reads it from podman 4.7 on, containers/podman#19914), so the
/// target passes the grace period with `--time`.
fn stop_timeout_seconds(action: &FaultAction, spec_grace_seconds: Option<i64>) -> Option<u64> {
    let seconds = match action {
        FaultAction::Delete {
            grace_period_seconds,
        } => grace_period_seconds
            .or(spec_grace_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS),
        FaultAction::ForceDelete => 0,
        _ => return None,
    };
    Some(u64::try_from(seconds).unwrap_or(0))
}

impl PodmanTarget {
    /// SIGKILLs the container's process from the host, as the kernel's OOM killer or a
    /// `kill -9` on the node does. Not `podman kill`: podman marks a container it was
    /// told to kill as stopped by the user, and its restart policy never restarts such a
    /// container, where a process killed from outside is restarted
    /// (`restartPolicy: Always`); the fault is the outside kill.
    pub(super) async fn kill_from_outside(&self, container: &str) -> Result<(), TargetError> {
        let pid = self
            .podman(&["inspect", "--format", "{{.State.Pid}}", container])
            .await?;
        let pid = pid.trim();
        if pid.parse::<u32>().map_or(true, |pid| pid == 0) {
            return Err(TargetError::Broken(format!(
                "container {container} has no running process to kill (pid {pid:?})"
            )));
        }
        let output = tokio::process::Command::new("kill")
            .args(["-s", "KILL", pid])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| TargetError::io("run kill", e))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(TargetError::Command {
                command: format!("kill -s KILL {pid}"),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// `kubectl debug` as podman does it: a container added to the running pod with
    /// `podman create --pod` (podman 4.3's `kube play` ignores `spec.ephemeralContainers`,
    /// and podman has no ephemeral containers of its own; a pod takes containers at any
    /// time), never restarted (`--restart no`, the ephemeral container's policy), in the
    /// process namespace of `target` with `--pid container:` (the pod's PID namespace is per
    /// container, as `kube play` makes it), made from the pod's first container as
    /// `compile::ephemeral_container` makes it for the API. Acknowledged once podman has
    /// it, as the API server acknowledges before the kubelet starts it; `podman start`
    /// follows in the background.
    pub(super) async fn add_ephemeral_container(
        &self,
        pod: &PodRef,
        name: &str,
        target: Option<&str>,
    ) -> Result<(), TargetError> {
        let record = self
            .lock()
            .get(&pod.uid)
            .cloned()
            .ok_or_else(|| TargetError::NoSuchPod(pod.uid.clone()))?;
        let container = record
            .ephemeral_template
            .as_deref()
            .and_then(|template| crate::compile::ephemeral_container_of(template, name, target))
            .ok_or_else(|| {
                TargetError::Broken(format!(
                    "the pod has no behaviour for ephemeral container {name}"
                ))
            })?;
        let podman_name = format!("{}-{name}", pod.name);
        let mut args: Vec<String> = [
            "create",
            "--pod",
            &pod.name,
            "--name",
            &podman_name,
            "--restart",
            "no",
            "--pull",
            "never",
            "--log-driver",
            "k8s-file",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        if let Some(target) = target {
            args.push("--pid".to_owned());
            args.push(format!("container:{}-{target}", pod.name));
        }
        for var in container.env.iter().flatten() {
            if let Some(value) = &var.value {
                args.push("--env".to_owned());
                args.push(format!("{}={value}", var.name));
            }
        }
        // The pod's state volume goes by the pod's own name here (`create` renames it), so
        // the ephemeral container shares the pod's volume and `remove` deletes it; under
        // the manifest's name it would be one volume for all pods, left behind.
        for mount in container.volume_mounts.iter().flatten() {
            let volume = if mount.name == crate::compile::STATE_VOLUME {
                record.volume.as_str()
            } else {
                mount.name.as_str()
            };
            args.push("--volume".to_owned());
            args.push(format!("{volume}:{}", mount.mount_path));
        }
        args.push(
            container
                .image
                .unwrap_or_else(|| crate::image::AGENT_IMAGE.to_owned()),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.podman(&args).await?;
        locked(&record.shared.ephemeral).push(name.to_owned());
        let conf = self.dir.join("containers.conf");
        // A start that fails shows in the watch: the container stays created.
        tokio::spawn(async move {
            let _ = run_podman(&conf, &["start", &podman_name]).await;
        });
        Ok(())
    }

    /// Plays a deletion action (see the `podman` module documentation): the pod's stop and
    /// removal run in the background, within the grace period the API server would set.
    pub(super) fn delete(&self, pod: &PodRef, action: &FaultAction) -> Result<(), TargetError> {
        let record = self
            .lock()
            .get(&pod.uid)
            .cloned()
            .ok_or_else(|| TargetError::NoSuchPod(pod.uid.clone()))?;
        let grace_seconds = stop_timeout_seconds(action, record.spec_grace_seconds)
            .unwrap_or(DEFAULT_GRACE_SECONDS as u64);
        let mut termination = locked(&record.shared.termination);
        // A second deletion changes nothing the target can show: the first one's
        // stop is under way.
        if termination.task.is_none() {
            let task = terminate(
                self.dir.join("containers.conf"),
                pod.name.clone(),
                record.containers.clone(),
                grace_seconds,
                record.shared.clone(),
            );
            termination.task = Some(tokio::spawn(task));
        }
        // Acknowledged once podman was asked, as an API server acknowledges a
        // DELETE before the node acts on it.
        Ok(())
    }
}

/// A deletion, carried out. With a grace period, as a kubelet does it: the containers are
/// stopped with `grace_seconds` between the stop signal and SIGKILL, their last state and
/// logs are kept, and the pod is removed. Without one (a force delete), as the API server
/// does it: the object goes at once, so its last state is the last one the watch saw, and
/// the kill (SIGKILL, `--time 0`) and the removal come after it. Failures are not reported
/// here: the watch shows what podman did.
async fn terminate(
    conf: PathBuf,
    name: String,
    containers: SpecContainers,
    grace_seconds: u64,
    shared: Arc<Shared>,
) {
    let mut last = None;
    if grace_seconds == 0 {
        // The object is gone already: nothing podman shows from here on is a state of it.
        locked(&shared.termination).removing = true;
        end_start(&shared).await;
    } else {
        // A pod still running its init containers is stopped as it is (see [`end_start`]).
        end_start(&shared).await;
        let time = grace_seconds.to_string();
        let within = Duration::from_secs(grace_seconds) + COMMAND_TIMEOUT;
        let _ = run_podman_within(&conf, &["pod", "stop", "--time", &time, &name], within).await;
        for _ in 0..LAST_STATE_ATTEMPTS {
            last = poll(&conf, &name, &containers, &shared).await;
            if last.is_some() {
                break;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    let read_at = Time(jiff::Timestamp::now());
    let mut logs = HashMap::new();
    for container in containers.with_ephemeral(&shared).names() {
        let read = run_podman(&conf, &["logs", &format!("{name}-{container}")]).await;
        if let Some(log) = read.ok().or_else(|| kept_init_log(&shared, container)) {
            logs.insert(container.to_owned(), log);
        }
    }
    {
        let mut termination = locked(&shared.termination);
        termination.last_status = last.map(|status| (read_at, status));
        termination.logs = logs;
        termination.removing = true;
    }
    let _ = remove_pod(&conf, &name).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_stop_with_the_grace_period_the_api_server_would_set() {
        let delete = |grace| FaultAction::Delete {
            grace_period_seconds: grace,
        };
        // The request's grace period first, then the pod's, then 30.
        assert_eq!(stop_timeout_seconds(&delete(Some(5)), Some(60)), Some(5));
        assert_eq!(stop_timeout_seconds(&delete(None), Some(9)), Some(9));
        assert_eq!(stop_timeout_seconds(&delete(None), None), Some(30));
        assert_eq!(stop_timeout_seconds(&delete(Some(0)), Some(9)), Some(0));
        assert_eq!(
            stop_timeout_seconds(&FaultAction::ForceDelete, Some(9)),
            Some(0)
        );
        let kill = FaultAction::KillContainer {
            container: "app".to_owned(),
        };
        assert_eq!(stop_timeout_seconds(&kill, Some(9)), None);
    }
}
