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
//! Here podman needs lower ulimits (no CAP_SYS_RESOURCE) and the runc runtime; the target
//! uses its own containers.conf through `CONTAINERS_CONF` and never edits the machine's.

use super::{Capabilities, PodRef, Target, TargetError, TargetOptions};
use crate::compile::STATE_VOLUME;
use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::scenario::{FaultAction, KubeletParams};
use podcheck_oracle::{Observation, Snapshot, TimingProfile};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodmanPod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn remove(&self, name: &str, pod: &PodmanPod) -> Result<(), TargetError> {
        let pod_result = self
            .podman(&["pod", "rm", "--force", "--time", "0", name])
            .await;
        let volume_result = self.podman(&["volume", "rm", "--force", &pod.volume]).await;
        let _ = std::fs::remove_file(&pod.yaml);
        pod_result.and(volume_result).map(|_| ())
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
            "running" => ContainerState {
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
        let containers = self
            .lock()
            .get(&pod.uid)
            .map(|p| p.containers.clone())
            .ok_or_else(|| TargetError::NoSuchPod(pod.uid.clone()))?;
        let name = pod.name.clone();
        let conf = self.dir.join("containers.conf");
        let state = (name, containers, conf, None::<PodStatus>);
        let stream =
            futures::stream::unfold(state, |(name, containers, conf, mut previous)| async move {
                loop {
                    let observed = poll(&conf, &name, &containers).await;
                    let Some(status) = observed else {
                        tokio::time::sleep(POLL_INTERVAL).await;
                        continue;
                    };
                    if previous.as_ref() != Some(&status) {
                        previous = Some(status.clone());
                        let snapshot = Observation::Snapshot(Snapshot::of_status(
                            Time(jiff::Timestamp::now()),
                            status,
                        ));
                        return Some((snapshot, (name, containers, conf, previous)));
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            });
        Ok(Box::pin(stream))
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        _previous: bool,
    ) -> Result<String, TargetError> {
        self.podman(&["logs", &format!("{}-{container}", pod.name)])
            .await
    }

    async fn act(&self, pod: &PodRef, action: &FaultAction) -> Result<(), TargetError> {
        match action {
            FaultAction::KillContainer { container } => self
                .podman(&[
                    "kill",
                    "--signal",
                    "KILL",
                    &format!("{}-{container}", pod.name),
                ])
                .await
                .map(|_| ()),
            other => Err(TargetError::NotApplicable(format!(
                "{} is not performed by this target yet",
                other.name()
            ))),
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
            let _ = self
                .podman(&["pod", "rm", "--force", "--time", "0", id])
                .await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }
}

/// Runs one podman command with the target's containers.conf; a hung podman is an error.
async fn run_podman(conf: &std::path::Path, args: &[&str]) -> Result<String, TargetError> {
    let mut command = tokio::process::Command::new("podman");
    command
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let command_line = || format!("podman {}", args.join(" "));
    let output = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .map_err(|_| TargetError::CommandTimedOut {
            command: command_line(),
            timeout: COMMAND_TIMEOUT,
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
async fn poll(conf: &std::path::Path, name: &str, containers: &[String]) -> Option<PodStatus> {
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
}
