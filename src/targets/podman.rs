//! podman as a target: `podman kube play` on the local podman, observed through
//! `podman inspect`.
//!
//! podman is a container engine, not a kubelet: it reports container states, exit codes,
//! restart counts and times, but no pod phase, conditions, readiness or previous
//! instance. The target converts what podman reports into a PodStatus without inventing
//! what podman lacks: the phase is podman's pod state mapped onto Kubernetes phases,
//! `ready`/`started` are "running" (no probes), and lastState and conditions are absent
//! because podman has no such thing. (Reconstructing lastState from earlier polls would
//! make verdicts depend on whether a poll happened to catch a short-lived state.) What
//! podman does differently from Kubernetes is what the verdicts report.
//!
//! Deleting a pod: podman has no API object, so there is no deletionTimestamp,
//! deletionGracePeriodSeconds, finalizer or resourceVersion to show, and the snapshots show
//! none (the checker reports the divergence; the trace's action record says what was asked
//! and when). A delete is played as the kubelet would carry it out with podman's own
//! means: `podman pod stop --time G` (SIGTERM, or the image's stop signal, to every
//! container at once, SIGKILL after G seconds; G is the request's grace period, else the
//! pod's terminationGracePeriodSeconds, else 30), then `podman pod rm`. podman runs no
//! PreStop hook and knows no 2 s minimum between SIGTERM and SIGKILL; that shows in the
//! verdicts. The pod's removal is the object's: the watch then yields a last snapshot
//! with `metadata.gone` and ends. A force delete (or a grace period of 0) removes the
//! object at once, as the API server does: the last state shown is the one before the
//! containers are SIGKILLed (`podman pod stop --time 0`) and the pod removed.
//! Each container's log is read before the pod is removed, so the workload's own record
//! of its stop stays in the trace (a node keeps it too; only the API loses it).
//!
//! Here podman needs lower ulimits (no CAP_SYS_RESOURCE) and the runc runtime; the target
//! uses its own containers.conf through `CONTAINERS_CONF` and never edits the machine's.

use super::{Capabilities, PodRef, Target, TargetError, TargetOptions};
use crate::compile::{FAULTS_ANNOTATION, STATE_VOLUME};
use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::scenario::{FaultAction, KubeletParams};
use podcheck_oracle::{Observation, PodMetadata, Snapshot, TimingProfile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Label on every pod this target creates, valued with the run's id, for cleanup.
pub const RUN_LABEL: &str = "podcheck.io/run";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Each poll runs podman twice (~50 ms of CPU each); container times come from podman's
/// own StartedAt/FinishedAt, so the interval only delays when a change is seen.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Least tolerance on podman: `kube play` sets up a pod (infra container, conmon) before
/// the first container starts, which takes up to a second or two on a loaded machine.
const MIN_TOLERANCE_MS: u64 = 2000;
/// `terminationGracePeriodSeconds` when the pod does not set it (the API's default).
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// How often the last state before a removal is read again when podman's two views of
/// the pod disagree (a container changing state between the two commands).
const LAST_STATE_ATTEMPTS: usize = 5;

const CONTAINERS_CONF: &str = r#"# Written by podcheck for its podman target.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
"#;

#[derive(Clone)]
struct PodmanPod {
    yaml: PathBuf,
    volume: String,
    containers: Vec<String>,
    /// The manifest's `terminationGracePeriodSeconds`.
    spec_grace_seconds: Option<i64>,
    termination: Arc<Mutex<Termination>>,
}

/// A deletion the harness asked for, as the target carries it out (see the module
/// documentation), shared by the task that performs it and the pod's watch.
#[derive(Default)]
struct Termination {
    /// Stops the containers and removes the pod; None until a deletion is asked for.
    task: Option<tokio::task::JoinHandle<()>>,
    /// The pod's status once its containers stopped, read just before podman removed it,
    /// and when: the object's last state, as a kubelet writes it before the object goes.
    last_status: Option<(Time, PodStatus)>,
    /// The removal has begun: what podman shows from here on is the pod being taken
    /// apart (containers "removing", then missing), not a state the pod object has.
    removing: bool,
    /// Each container's log, read before the pod was removed.
    logs: HashMap<String, String>,
}

fn lock_termination(termination: &Mutex<Termination>) -> std::sync::MutexGuard<'_, Termination> {
    termination.lock().unwrap_or_else(|p| p.into_inner())
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

pub struct PodmanTarget {
    options: TargetOptions,
    dir: PathBuf,
    run_id: String,
    pods: Mutex<HashMap<String, PodmanPod>>,
}

fn install_hint() -> String {
    "podman not found: install it with `apt-get install podman runc` (Debian/Ubuntu)".to_owned()
}

impl PodmanTarget {
    pub async fn new(options: &TargetOptions) -> Result<PodmanTarget, TargetError> {
        let run_id = format!(
            "{:x}{:x}",
            std::process::id(),
            jiff::Timestamp::now().as_millisecond() & 0xffff
        );
        let dir = std::env::temp_dir().join(format!("podcheck-podman-{run_id}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| TargetError::io(format!("create {}", dir.display()), e))?;
        std::fs::write(dir.join("containers.conf"), CONTAINERS_CONF)
            .map_err(|e| TargetError::io("write containers.conf", e))?;
        let target = PodmanTarget {
            options: options.clone(),
            dir,
            run_id,
            pods: Mutex::new(HashMap::new()),
        };
        match target.podman(&["--version"]).await {
            Ok(_) => {}
            Err(TargetError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(TargetError::NotApplicable(install_hint()))
            }
            Err(err) => return Err(err),
        }
        if !std::process::Command::new("runc")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Err(TargetError::NotApplicable(
                "runc not found: install it with `apt-get install runc`".to_owned(),
            ));
        }
        target.load_agent_image().await?;
        Ok(target)
    }

    async fn podman(&self, args: &[&str]) -> Result<String, TargetError> {
        run_podman(&self.dir.join("containers.conf"), args).await
    }

    async fn load_agent_image(&self) -> Result<(), TargetError> {
        let agent = super::local::find_agent(self.options.agent_binary.as_ref())?;
        let archive = self.dir.join("podcheck-agent.tar");
        let image = crate::image::build_agent_archive(&agent, &archive, crate::image::AGENT_IMAGE)
            .map_err(TargetError::Image)?;
        // Loading the same archive again is cheap for podman (layers are shared), and it
        // guarantees the tag points at this build of the agent.
        let archive_path = archive.display().to_string();
        self.podman(&["load", "--quiet", "-i", &archive_path])
            .await?;
        let id = self
            .podman(&[
                "image",
                "inspect",
                "--format",
                "{{.Id}}",
                crate::image::AGENT_IMAGE,
            ])
            .await?;
        if !image.config_digest.ends_with(id.trim()) {
            return Err(TargetError::Broken(format!(
                "podman has image {} for {}, expected {}",
                id.trim(),
                crate::image::AGENT_IMAGE,
                image.config_digest
            )));
        }
        Ok(())
    }

    /// SIGKILLs the container's process from the host, as the kernel's OOM killer or a
    /// `kill -9` on the node does. Not `podman kill`: podman marks a container it was
    /// told to kill as stopped by the user, and its restart policy never restarts such a
    /// container, where a process killed from outside is restarted
    /// (`restartPolicy: Always`); the fault is the outside kill.
    async fn kill_from_outside(&self, container: &str) -> Result<(), TargetError> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodmanPod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn remove(&self, name: &str, pod: &PodmanPod) -> Result<(), TargetError> {
        // A deletion under way finishes first (its removal would race this one); it ends
        // by itself, at most the grace period after it began.
        let task = lock_termination(&pod.termination).task.take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // `--ignore`: a deleted pod is gone already. Stopped first: see [`remove_pod`].
        let pod_result = remove_pod(&self.dir.join("containers.conf"), name).await;
        let volume_result = self.podman(&["volume", "rm", "--force", &pod.volume]).await;
        let _ = std::fs::remove_file(&pod.yaml);
        pod_result.and(volume_result).map(|_| ())
    }
}

/// Takes the fault schedule's annotation off the manifest: it is for targets that play
/// the schedule out themselves (the model); here the harness performs it. podman 4.3's
/// `kube play` refuses any annotation value longer than 63 characters ("value length
/// exceeds Kubernetetes max 63", pkg/domain/infra/abi/play.go, `define.MaxKubeAnnotation`),
/// where the API server allows 256 KiB for all of a pod's annotations together
/// (apimachinery's ValidateAnnotations): with it, every pod with more than one fault would
/// be refused for something that is not the scenario's.
fn without_fault_schedule(pod: &mut Pod) {
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.remove(FAULTS_ANNOTATION);
        if annotations.is_empty() {
            pod.metadata.annotations = None;
        }
    }
}

/// podman's view of one container, as `podman inspect` reports it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    restart_count: i32,
    #[serde(default)]
    state: InspectedState,
    #[serde(default)]
    image: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedState {
    #[serde(default)]
    status: String,
    #[serde(default)]
    exit_code: i32,
    #[serde(default, rename = "OOMKilled")]
    oom_killed: bool,
    #[serde(default)]
    started_at: String,
    #[serde(default)]
    finished_at: String,
}

fn parse_time(text: &str) -> Option<Time> {
    let timestamp: jiff::Timestamp = text.parse().ok()?;
    // podman reports "0001-01-01T00:00:00Z" for never.
    (timestamp.as_second() > 0).then_some(Time(timestamp))
}

/// Converts podman's container states into a PodStatus (see the module documentation).
fn convert(
    spec_names: &[String],
    pod_prefix: &str,
    pod_state: &str,
    inspected: &[Inspected],
) -> PodStatus {
    let mut statuses = Vec::new();
    for name in spec_names {
        let podman_name = format!("{pod_prefix}-{name}");
        let Some(container) = inspected.iter().find(|c| c.name == podman_name) else {
            continue;
        };
        let state = &container.state;
        let converted = match state.status.as_str() {
            // "stopping": podman has sent the stop signal and the process has not exited
            // yet; a kubelet's container stays Running until then too.
            "running" | "stopping" => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: parse_time(&state.started_at),
                }),
                ..ContainerState::default()
            },
            "exited" | "stopped" => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: state.exit_code,
                    reason: Some(
                        if state.oom_killed {
                            "OOMKilled"
                        } else if state.exit_code == 0 {
                            "Completed"
                        } else {
                            "Error"
                        }
                        .to_owned(),
                    ),
                    started_at: parse_time(&state.started_at),
                    finished_at: parse_time(&state.finished_at),
                    container_id: Some(format!("podman://{}", container.id)),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            },
            other => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(
                        if other == "created" || other == "configured" || other.is_empty() {
                            "ContainerCreating".to_owned()
                        } else {
                            format!("podman:{other}")
                        },
                    ),
                    message: None,
                }),
                ..ContainerState::default()
            },
        };
        let running = converted.running.is_some();
        statuses.push(ContainerStatus {
            name: name.clone(),
            image: crate::image::AGENT_IMAGE.to_owned(),
            image_id: container.image.clone(),
            container_id: Some(format!("podman://{}", container.id)),
            restart_count: container.restart_count,
            ready: running,
            started: Some(running),
            state: Some(converted),
            ..ContainerStatus::default()
        });
    }
    let all_exited_zero = statuses.iter().all(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    });
    let phase = match pod_state {
        "Created" | "" => "Pending",
        "Running" | "Degraded" => "Running",
        "Exited" | "Stopped" if all_exited_zero => "Succeeded",
        "Exited" | "Stopped" => "Failed",
        _ => "Unknown",
    };
    PodStatus {
        phase: Some(phase.to_owned()),
        container_statuses: Some(statuses),
        ..PodStatus::default()
    }
}

#[async_trait]
impl Target for PodmanTarget {
    fn name(&self) -> String {
        "podman".to_owned()
    }

    fn timing(&self) -> TimingProfile {
        // podman's own delays (restarts) are wall time: nothing here can scale them, so
        // spec time is wall time and the agent runs unscaled.
        self.options.wall_clock(MIN_TOLERANCE_MS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            concurrency: self.options.jobs.unwrap_or(8),
            virtual_clock: false,
            launch_spacing: std::time::Duration::from_millis(100),
        }
    }

    fn agent_image(&self) -> String {
        crate::image::AGENT_IMAGE.to_owned()
    }

    fn runs_kubelet(&self, kubelet: &KubeletParams) -> bool {
        kubelet.is_default()
    }

    async fn create(&self, mut pod: Pod, kubelet: &KubeletParams) -> Result<PodRef, TargetError> {
        if !kubelet.is_default() {
            return Err(TargetError::NotApplicable(
                "podman's restart back-off cannot be configured".to_owned(),
            ));
        }
        let base = pod
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| "pod".to_owned());
        let name = format!("{base}-{}", self.run_id);
        pod.metadata.name = Some(name.clone());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(RUN_LABEL.to_owned(), self.run_id.clone());
        without_fault_schedule(&mut pod);
        // podman turns an emptyDir into a named volume shared by every pod that uses the
        // name; give each pod its own, or concurrent pods would share their state.
        let volume = format!("{name}-state");
        let mut containers = Vec::new();
        if let Some(spec) = pod.spec.as_mut() {
            for v in spec
                .volumes
                .iter_mut()
                .flatten()
                .filter(|v| v.name == STATE_VOLUME)
            {
                v.name = volume.clone();
            }
            for container in &mut spec.containers {
                containers.push(container.name.clone());
                for mount in container
                    .volume_mounts
                    .iter_mut()
                    .flatten()
                    .filter(|m| m.name == STATE_VOLUME)
                {
                    mount.name = volume.clone();
                }
            }
        }
        let yaml = self.dir.join(format!("{name}.yaml"));
        let text =
            serde_saphyr::to_string(&pod).map_err(|e| TargetError::rejected(e.to_string()))?;
        std::fs::write(&yaml, text)
            .map_err(|e| TargetError::io(format!("write {}", yaml.display()), e))?;
        let created_at = Time(jiff::Timestamp::now());
        let yaml_path = yaml.display().to_string();
        let record = PodmanPod {
            yaml,
            volume,
            containers,
            spec_grace_seconds: pod
                .spec
                .as_ref()
                .and_then(|spec| spec.termination_grace_period_seconds),
            termination: Arc::default(),
        };
        // Recorded before playing, so that a cleanup during `kube play` removes it too.
        self.lock().insert(name.clone(), record.clone());
        if let Err(err) = self
            .podman(&["kube", "play", "--log-driver", "k8s-file", &yaml_path])
            .await
        {
            self.lock().remove(&name);
            let _ = self.remove(&name, &record).await;
            // `kube play` fails alike for a pod it cannot run and for trouble of its own:
            // an error, not a verdict on the pod.
            return Err(err);
        }
        Ok(PodRef {
            name: name.clone(),
            uid: name,
            created_at,
            node: "podman".to_owned(),
            applied: Some(Box::new(pod)),
        })
    }

    async fn watch(&self, pod: &PodRef) -> Result<BoxStream<'static, Observation>, TargetError> {
        let (containers, termination) = self
            .lock()
            .get(&pod.uid)
            .map(|p| (p.containers.clone(), p.termination.clone()))
            .ok_or_else(|| TargetError::NoSuchPod(pod.uid.clone()))?;
        let watching = Watching {
            conf: self.dir.join("containers.conf"),
            name: pod.name.clone(),
            containers,
            termination,
            previous: None,
            ended: false,
        };
        let stream = futures::stream::unfold(watching, |mut watching| async move {
            let observation = watching.next().await?;
            Some((observation, watching))
        });
        Ok(Box::pin(stream))
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        _previous: bool,
    ) -> Result<String, TargetError> {
        let kept = self.lock().get(&pod.uid).and_then(|record| {
            lock_termination(&record.termination)
                .logs
                .get(container)
                .cloned()
        });
        match kept {
            Some(log) => Ok(log),
            None => {
                self.podman(&["logs", &format!("{}-{container}", pod.name)])
                    .await
            }
        }
    }

    async fn act(&self, pod: &PodRef, action: &FaultAction) -> Result<(), TargetError> {
        match action {
            FaultAction::KillContainer { container } => {
                self.kill_from_outside(&format!("{}-{container}", pod.name))
                    .await
            }
            FaultAction::Delete { .. } | FaultAction::ForceDelete => {
                let record = self
                    .lock()
                    .get(&pod.uid)
                    .cloned()
                    .ok_or_else(|| TargetError::NoSuchPod(pod.uid.clone()))?;
                let grace_seconds = stop_timeout_seconds(action, record.spec_grace_seconds)
                    .unwrap_or(DEFAULT_GRACE_SECONDS as u64);
                let mut termination = lock_termination(&record.termination);
                // A second deletion changes nothing the target can show: the first one's
                // stop is under way.
                if termination.task.is_none() {
                    let task = terminate(
                        self.dir.join("containers.conf"),
                        pod.name.clone(),
                        record.containers.clone(),
                        grace_seconds,
                        record.termination.clone(),
                    );
                    termination.task = Some(tokio::spawn(task));
                }
                // Acknowledged once podman was asked, as an API server acknowledges a
                // DELETE before the node acts on it.
                Ok(())
            }
            FaultAction::RemoveFinalizer { .. } => Err(TargetError::NotApplicable(
                "podman has no finalizers: `kube play` ignores metadata.finalizers, and a \
                 podman pod's removal waits for nothing"
                    .to_owned(),
            )),
            FaultAction::RestartNodeAgent => Err(TargetError::NotApplicable(
                "podman has no node agent to restart: no daemon supervises the containers \
                 (each has its own conmon, and `podman` runs only while a command does)"
                    .to_owned(),
            )),
            FaultAction::AddEphemeralContainer { .. } => Err(TargetError::NotApplicable(
                "podman has no ephemeral containers: a podman pod takes no containers after \
                 `kube play` has made it through any call like the ephemeralcontainers \
                 subresource"
                    .to_owned(),
            )),
        }
    }

    async fn remove(&self, pod: &PodRef) -> Result<(), TargetError> {
        let record = self.lock().remove(&pod.uid);
        match record {
            Some(record) => self.remove(&pod.uid, &record).await,
            None => Ok(()),
        }
    }

    async fn cleanup(&self) -> Result<(), TargetError> {
        let records: Vec<(String, PodmanPod)> = self.lock().drain().collect();
        // Deletions under way are cut short (on Ctrl-C, waiting out their grace periods
        // would keep the user waiting); the removal below kills what they were stopping.
        for (_, record) in &records {
            if let Some(task) = lock_termination(&record.termination).task.take() {
                task.abort();
            }
        }
        let mut result = Ok(());
        for (name, record) in records {
            if let Err(err) = self.remove(&name, &record).await {
                result = Err(err);
            }
        }
        // Anything else of this run (a pod whose create was interrupted).
        let filter = format!("label={RUN_LABEL}={}", self.run_id);
        let leftovers = self
            .podman(&["pod", "ps", "--quiet", "--filter", &filter])
            .await
            .unwrap_or_default();
        for id in leftovers.split_whitespace() {
            let _ = remove_pod(&self.dir.join("containers.conf"), id).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }
}

/// Runs one podman command with the target's containers.conf; a hung podman is an error.
async fn run_podman(conf: &Path, args: &[&str]) -> Result<String, TargetError> {
    run_podman_within(conf, args, COMMAND_TIMEOUT).await
}

/// [`run_podman`] for a command that may take longer by design (a stop that waits out a
/// grace period).
async fn run_podman_within(
    conf: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<String, TargetError> {
    let mut command = tokio::process::Command::new("podman");
    command
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let command_line = || format!("podman {}", args.join(" "));
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| TargetError::CommandTimedOut {
            command: command_line(),
            timeout,
        })?
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

/// podman's pod, as `podman pod inspect` reports it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedPod {
    #[serde(default)]
    state: String,
    #[serde(default)]
    containers: Vec<InspectedPodContainer>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedPodContainer {
    #[serde(default)]
    name: String,
    #[serde(default)]
    state: String,
}

/// One consistent observation: the containers' details, then the pod's state. The two
/// commands are not atomic, so an observation whose pod-level container states disagree
/// with the details is discarded (None) and the caller polls again.
async fn poll(conf: &Path, name: &str, containers: &[String]) -> Option<PodStatus> {
    let mut args = vec![
        "inspect".to_owned(),
        "--format".to_owned(),
        "json".to_owned(),
    ];
    args.extend(containers.iter().map(|c| format!("{name}-{c}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let inspected: Vec<Inspected> =
        serde_json::from_str(&run_podman(conf, &args).await.ok()?).ok()?;
    let text = run_podman(conf, &["pod", "inspect", name]).await.ok()?;
    let pod: InspectedPod = serde_json::from_str::<InspectedPod>(&text)
        .or_else(|_| {
            serde_json::from_str::<Vec<InspectedPod>>(&text)
                .map(|mut v| v.pop().unwrap_or_default())
        })
        .ok()?;
    let consistent = inspected.iter().all(|c| {
        pod.containers
            .iter()
            .any(|p| p.name == c.name && p.state == c.state.status)
    });
    consistent.then(|| convert(containers, name, &pod.state, &inspected))
}

/// Whether podman still has the pod (None: podman did not say).
async fn pod_exists(conf: &Path, name: &str) -> Option<bool> {
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
async fn remove_pod(conf: &Path, name: &str) -> Result<(), TargetError> {
    let stopped = run_podman(conf, &["pod", "stop", "--ignore", "--time", "0", name]).await;
    let removed = run_podman(
        conf,
        &["pod", "rm", "--force", "--ignore", "--time", "0", name],
    )
    .await;
    // A failed stop matters only if the removal failed too.
    removed.or(stopped.map(|_| String::new())).map(|_| ())
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
    containers: Vec<String>,
    grace_seconds: u64,
    termination: Arc<Mutex<Termination>>,
) {
    let mut last = None;
    if grace_seconds == 0 {
        // The object is gone already: nothing podman shows from here on is a state of it.
        lock_termination(&termination).removing = true;
    } else {
        let time = grace_seconds.to_string();
        let within = Duration::from_secs(grace_seconds) + COMMAND_TIMEOUT;
        let _ = run_podman_within(&conf, &["pod", "stop", "--time", &time, &name], within).await;
        for _ in 0..LAST_STATE_ATTEMPTS {
            last = poll(&conf, &name, &containers).await;
            if last.is_some() {
                break;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    let read_at = Time(jiff::Timestamp::now());
    let mut logs = HashMap::new();
    for container in &containers {
        if let Ok(log) = run_podman(&conf, &["logs", &format!("{name}-{container}")]).await {
            logs.insert(container.clone(), log);
        }
    }
    {
        let mut termination = lock_termination(&termination);
        termination.last_status = last.map(|status| (read_at, status));
        termination.logs = logs;
        termination.removing = true;
    }
    let _ = remove_pod(&conf, &name).await;
}

/// The state of one pod's watch.
struct Watching {
    conf: PathBuf,
    name: String,
    containers: Vec<String>,
    termination: Arc<Mutex<Termination>>,
    /// The last snapshot yielded.
    previous: Option<Snapshot>,
    ended: bool,
}

impl Watching {
    /// The next change podman shows, None once the pod is gone.
    async fn next(&mut self) -> Option<Observation> {
        if self.ended {
            return None;
        }
        loop {
            let (removing, last) = {
                let mut termination = lock_termination(&self.termination);
                (termination.removing, termination.last_status.take())
            };
            if removing {
                if let Some(last) = last_before_removal(self.previous.as_ref(), last) {
                    return Some(self.yielded(last));
                }
                if pod_exists(&self.conf, &self.name).await == Some(false) {
                    return Some(self.gone());
                }
            } else if let Some(status) = poll(&self.conf, &self.name, &self.containers).await {
                // A removal that began while this poll ran may have changed what it read
                // (a force delete's kill): the removal's own last state stands instead.
                if lock_termination(&self.termination).removing {
                    continue;
                }
                if self.previous.as_ref().map(|p| &p.status) != Some(&status) {
                    let snapshot = Snapshot::of_status(Time(jiff::Timestamp::now()), status);
                    return Some(self.yielded(snapshot));
                }
            } else if pod_exists(&self.conf, &self.name).await == Some(false) {
                // A removal that began while podman held this poll back (it does while a
                // stop is under way) shows its last state first.
                if lock_termination(&self.termination).removing {
                    continue;
                }
                // Removed by someone else: gone all the same.
                return Some(self.gone());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn yielded(&mut self, snapshot: Snapshot) -> Observation {
        self.previous = Some(snapshot.clone());
        Observation::Snapshot(snapshot)
    }

    fn gone(&mut self) -> Observation {
        self.ended = true;
        Observation::Snapshot(gone_snapshot(
            self.previous.as_ref(),
            Time(jiff::Timestamp::now()),
        ))
    }
}

/// The pod's status read just before its removal, as a snapshot, unless the watch has
/// shown that status already or has seen the pod at that moment or later.
fn last_before_removal(
    previous: Option<&Snapshot>,
    last: Option<(Time, PodStatus)>,
) -> Option<Snapshot> {
    let (read_at, status) = last?;
    let news = previous.is_none_or(|p| p.at.0 < read_at.0 && p.status != status);
    news.then(|| Snapshot::of_status(read_at, status))
}

/// The watch's last snapshot: the pod is gone. podman keeps no object, so nothing but
/// `gone` is set; the status is the last one shown, as a DELETED watch event carries the
/// object's last state.
fn gone_snapshot(previous: Option<&Snapshot>, at: Time) -> Snapshot {
    Snapshot {
        at,
        metadata: PodMetadata {
            gone: true,
            ..PodMetadata::default()
        },
        status: previous.map(|p| p.status.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(
        name: &str,
        status: &str,
        exit_code: i32,
        oom_killed: bool,
        restarts: i32,
    ) -> Inspected {
        Inspected {
            id: format!("id-{name}"),
            name: format!("p-{name}"),
            restart_count: restarts,
            image: "sha256:abc".to_owned(),
            state: InspectedState {
                status: status.to_owned(),
                exit_code,
                oom_killed,
                started_at: "2026-01-01T00:00:01.5Z".to_owned(),
                finished_at: "0001-01-01T00:00:00Z".to_owned(),
            },
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn podman_states_become_container_states_without_invented_fields() {
        let inspected = vec![
            container("run", "running", 0, false, 2),
            container("ok", "exited", 0, false, 0),
            container("bad", "exited", 3, false, 0),
            container("oom", "exited", 137, true, 0),
            container("new", "created", 0, false, 0),
        ];
        let status = convert(
            &names(&["run", "ok", "bad", "oom", "new"]),
            "p",
            "Degraded",
            &inspected,
        );
        let statuses = status.container_statuses.expect("statuses");
        let state = |i: usize| statuses[i].state.clone().expect("state");
        assert!(state(0).running.is_some() && statuses[0].ready && statuses[0].restart_count == 2);
        assert_eq!(
            state(1).terminated.and_then(|t| t.reason).as_deref(),
            Some("Completed")
        );
        assert_eq!(
            state(2).terminated.map(|t| (t.exit_code, t.reason)),
            Some((3, Some("Error".to_owned())))
        );
        assert_eq!(
            state(3).terminated.and_then(|t| t.reason).as_deref(),
            Some("OOMKilled")
        );
        assert_eq!(
            state(4).waiting.and_then(|w| w.reason).as_deref(),
            Some("ContainerCreating")
        );
        assert!(
            statuses.iter().all(|s| s.last_state.is_none()),
            "podman reports no previous instance"
        );
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.conditions.is_none(), "podman reports no conditions");
        // "0001-01-01" means never.
        assert!(state(1).terminated.and_then(|t| t.finished_at).is_none());
    }

    #[test]
    fn podman_pod_states_map_onto_phases() {
        let done = vec![container("a", "exited", 0, false, 0)];
        let failed = vec![container("a", "exited", 1, false, 0)];
        assert_eq!(
            convert(&names(&["a"]), "p", "Exited", &done)
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            convert(&names(&["a"]), "p", "Exited", &failed)
                .phase
                .as_deref(),
            Some("Failed")
        );
        assert_eq!(
            convert(&names(&["a"]), "p", "Created", &done)
                .phase
                .as_deref(),
            Some("Pending")
        );
        assert_eq!(
            convert(&names(&["a"]), "p", "Paused", &done)
                .phase
                .as_deref(),
            Some("Unknown")
        );
    }

    #[test]
    fn a_stopping_container_is_still_running() {
        // podman shows "stopping" from the stop signal until the process exits.
        let status = convert(
            &names(&["app"]),
            "p",
            "Running",
            &[container("app", "stopping", 0, false, 0)],
        );
        let statuses = status.container_statuses.expect("statuses");
        let state = statuses[0].state.clone().expect("state");
        assert!(state.running.is_some(), "{state:?}");
        assert!(state.terminated.is_none() && state.waiting.is_none());
    }

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

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + seconds).expect("time"))
    }

    fn status_of(state: &str, code: i32) -> PodStatus {
        convert(
            &names(&["app"]),
            "p",
            if state == "running" {
                "Running"
            } else {
                "Exited"
            },
            &[container("app", state, code, false, 0)],
        )
    }

    #[test]
    fn the_last_state_before_removal_is_shown_once_and_in_time_order() {
        let running = Snapshot::of_status(at(10), status_of("running", 0));
        let exited = status_of("exited", 143);
        // The watch last saw the container running: the stopped state read before the
        // removal is news, at the time it was read.
        let shown = last_before_removal(Some(&running), Some((at(14), exited.clone())))
            .expect("the last state");
        assert_eq!((shown.at, shown.status), (at(14), exited.clone()));
        // The watch saw the pod after that read: nothing older is shown after it.
        let later = Snapshot::of_status(at(15), status_of("running", 0));
        assert!(last_before_removal(Some(&later), Some((at(14), exited.clone()))).is_none());
        // The watch already shows that state.
        let same = Snapshot::of_status(at(13), exited.clone());
        assert!(last_before_removal(Some(&same), Some((at(14), exited.clone()))).is_none());
        // Nothing was read (podman could not say).
        assert!(last_before_removal(Some(&running), None).is_none());
        assert!(last_before_removal(None, Some((at(14), exited))).is_some());
    }

    #[test]
    fn a_removed_pod_is_gone_with_its_last_state_and_no_invented_metadata() {
        let stopped = Snapshot::of_status(at(14), status_of("exited", 137));
        let gone = gone_snapshot(Some(&stopped), at(15));
        assert!(gone.metadata.gone);
        assert_eq!(gone.at, at(15));
        assert_eq!(
            gone.status, stopped.status,
            "the last state, as DELETED carries it"
        );
        // podman has no API object: no deletionTimestamp, grace period, finalizers or
        // resourceVersion to show.
        assert_eq!(
            gone.metadata,
            PodMetadata {
                gone: true,
                ..PodMetadata::default()
            }
        );
        assert!(gone_snapshot(None, at(1)).metadata.gone);
    }

    #[test]
    fn the_fault_schedule_annotation_is_not_played() {
        let mut pod = Pod::default();
        pod.metadata.annotations = Some(
            [
                (FAULTS_ANNOTATION.to_owned(), "x".repeat(200)),
                ("example.com/keep".to_owned(), "yes".to_owned()),
            ]
            .into(),
        );
        without_fault_schedule(&mut pod);
        let annotations = pod
            .metadata
            .annotations
            .clone()
            .expect("the scenario's own");
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["example.com/keep"]);
        pod.metadata.annotations = Some([(FAULTS_ANNOTATION.to_owned(), "[]".to_owned())].into());
        without_fault_schedule(&mut pod);
        assert!(pod.metadata.annotations.is_none());
    }
}
