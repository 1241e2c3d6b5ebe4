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
//! Init containers (podman 4.3: `libpod/pod_api.go` `startInitContainers`; the experiments
//! are in `docs/fidelity/init-sidecar.md`, "podman 4.3"): `kube play` creates them as
//! `POD-NAME` like the others, with the pod's restart policy, and starting the pod runs them
//! one at a time, each waited for, before it starts the regular containers; one that exits
//! non-zero ends the start with an error, and the regular containers stay created, never
//! started. podman holds the pod's lock all that time, so `podman pod inspect` waits until
//! the start is over: a pod with init containers is created with `kube play --start=false`
//! and started by `podman pod start` in the background, its containers read with
//! `podman inspect` meanwhile, and its phase is Pending (podman is still starting the pod,
//! and cannot be asked for its state). A failed start is shown as the pod's event
//! `PodmanPodStartFailed` with podman's message. Unless the pod has the annotation
//! `io.podman.annotations.init.container.type: always`, podman removes each init container
//! once it exited 0: its status is then what podman's event log says of it (the last
//! `died` event: when podman saw the exit, and the exit code), else the last state the
//! target read while it existed. Nothing is made up. Its log goes with it; the target keeps
//! a second name of the log file from the container's start on, so the workload's record
//! stays in the trace.
//! podman's pod state leaves init containers out, so they play no part in the phase.
//! podman 4.3 knows no `restartPolicy` on a container (its Kubernetes types predate
//! sidecars): a sidecar is an init container that must exit, and one that runs forever
//! keeps the pod starting forever. It refuses init containers with probes or lifecycle
//! hooks: a refusal of the manifest (`pod.accepted`).
//!
//! Ephemeral containers: `kube play` ignores `spec.ephemeralContainers`, but a podman pod
//! takes containers at any time; `kubectl debug` is played as `podman create --pod`, never
//! restarted, in the target container's PID namespace (`--pid container:`), and shown in
//! `ephemeralContainerStatuses`. podman counts such a container in its pod state as any
//! other.
//!
//! Here podman needs lower ulimits (no CAP_SYS_RESOURCE) and the runc runtime; the target
//! uses its own containers.conf through `CONTAINERS_CONF` and never edits the machine's.

use super::{Capabilities, PodRef, Target, TargetError, TargetOptions};
use crate::compile::{EPHEMERAL_ANNOTATION, FAULTS_ANNOTATION, STATE_VOLUME};
use crate::errors::describe;
use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::scenario::{FaultAction, KubeletParams};
use podcheck_oracle::{Observation, PodEvent, PodMetadata, Snapshot, TimingProfile};
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
    containers: SpecContainers,
    /// The manifest's `terminationGracePeriodSeconds`.
    spec_grace_seconds: Option<i64>,
    /// The pod as played, with the behaviours of the ephemeral containers the fault
    /// schedule adds (None: it adds none): what each one is made from.
    ephemeral_template: Option<Arc<Pod>>,
    shared: Arc<Shared>,
}

/// The manifest's containers by kind, each in spec order.
#[derive(Clone, Debug, Default)]
struct SpecContainers {
    /// `spec.initContainers`, sidecars included.
    init: Vec<InitSpec>,
    /// `spec.containers`.
    regular: Vec<String>,
    /// The ephemeral containers added so far ([`PodmanTarget::add_ephemeral_container`]).
    ephemeral: Vec<String>,
}

#[derive(Clone, Debug)]
struct InitSpec {
    name: String,
    /// `restartPolicy: Always` in the manifest (a sidecar to a kubelet; podman 4.3 does not
    /// read the field): its `started`/`ready` follow a regular container's rules.
    sidecar: bool,
}

impl SpecContainers {
    fn of(pod: &Pod) -> SpecContainers {
        let Some(spec) = pod.spec.as_ref() else {
            return SpecContainers::default();
        };
        SpecContainers {
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| InitSpec {
                    name: c.name.clone(),
                    sidecar: c.restart_policy.as_deref() == Some("Always"),
                })
                .collect(),
            regular: spec.containers.iter().map(|c| c.name.clone()).collect(),
            ephemeral: Vec::new(),
        }
    }

    /// These containers with the ephemeral ones added so far.
    fn with_ephemeral(&self, shared: &Shared) -> SpecContainers {
        SpecContainers {
            ephemeral: locked(&shared.ephemeral).clone(),
            ..self.clone()
        }
    }

    /// Every container's name, init containers first.
    fn names(&self) -> impl Iterator<Item = &str> {
        self.init
            .iter()
            .map(|c| c.name.as_str())
            .chain(self.regular.iter().map(String::as_str))
            .chain(self.ephemeral.iter().map(String::as_str))
    }
}

/// What the pod's watch, its deletion and the target share.
#[derive(Default)]
struct Shared {
    /// When the target created the pod (RFC 3339), where podman's event log is read from.
    since: String,
    /// Where the init containers' log files are linked ([`keep_init_logs`]).
    log_dir: PathBuf,
    termination: Mutex<Termination>,
    start: Mutex<PodStart>,
    init: Mutex<InitMemory>,
    /// The ephemeral containers added, in order.
    ephemeral: Mutex<Vec<String>>,
}

/// `podman pod start` of a pod with init containers, run in the background (see the module
/// documentation).
#[derive(Default)]
struct PodStart {
    task: Option<tokio::task::JoinHandle<()>>,
    /// The command has not returned: podman holds the pod's lock (it is running the init
    /// containers), and `podman pod inspect` or `pod stop` would wait for it.
    under_way: bool,
    /// What podman said when the start failed, and when, until the watch shows it.
    failure: Option<(Time, String)>,
}

/// What the target saw of the init containers, which podman removes once they succeeded.
#[derive(Default)]
struct InitMemory {
    /// Each init container's last status read from podman.
    last: HashMap<String, ContainerStatus>,
    /// The init containers podman removed, each with the status that stands for it from
    /// then on (see [`status_after_removal`]; None: the target knows nothing of it).
    removed: HashMap<String, Option<ContainerStatus>>,
    /// A second name of each init container's log file, kept by the target.
    log_links: HashMap<String, PathBuf>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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

    /// `kubectl debug` as podman does it: a container added to the running pod with
    /// `podman create --pod` (podman 4.3's `kube play` ignores `spec.ephemeralContainers`,
    /// and podman has no ephemeral containers of its own; a pod takes containers at any
    /// time), never restarted (`--restart no`, the ephemeral container's policy), in the
    /// process namespace of `target` with `--pid container:` (the pod's PID namespace is per
    /// container, as `kube play` makes it), made from the pod's first container as
    /// `compile::ephemeral_container` makes it for the API. Acknowledged once podman has
    /// it, as the API server acknowledges before the kubelet starts it; `podman start`
    /// follows in the background.
    async fn add_ephemeral_container(
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
        for mount in container.volume_mounts.iter().flatten() {
            args.push("--volume".to_owned());
            args.push(format!("{}:{}", mount.name, mount.mount_path));
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodmanPod>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn remove(&self, name: &str, pod: &PodmanPod) -> Result<(), TargetError> {
        // A deletion under way finishes first (its removal would race this one); it ends
        // by itself, at most the grace period after it began.
        let task = locked(&pod.shared.termination).task.take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // A start still under way would hold the removal back (see [`end_start`]).
        end_start(&pod.shared).await;
        let _ = std::fs::remove_dir_all(&pod.shared.log_dir);
        // `--ignore`: a deleted pod is gone already. Stopped first: see [`remove_pod`].
        let pod_result = remove_pod(&self.dir.join("containers.conf"), name).await;
        let volume_result = self.podman(&["volume", "rm", "--force", &pod.volume]).await;
        let _ = std::fs::remove_file(&pod.yaml);
        pod_result.and(volume_result).map(|_| ())
    }
}

/// Takes the harness's own annotations off the manifest: the fault schedule is for targets
/// that play it out themselves (the model), here the harness performs it; the ephemeral
/// containers' behaviours are for targets that add them, which podman cannot (see
/// [`Target::act`]). podman 4.3's `kube play` refuses any annotation value longer than 63
/// characters ("value length exceeds Kubernetetes max 63", pkg/domain/infra/abi/play.go,
/// `define.MaxKubeAnnotation`), where the API server allows 256 KiB for all of a pod's
/// annotations together (apimachinery's ValidateAnnotations): with them, every pod with more
/// than one fault or with an ephemeral container would be refused for something that is
/// not the scenario's.
fn without_harness_annotations(pod: &mut Pod) {
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.remove(FAULTS_ANNOTATION);
        annotations.remove(EPHEMERAL_ANNOTATION);
        if annotations.is_empty() {
            pod.metadata.annotations = None;
        }
    }
}

/// What `kube play` says when it refuses a pod for what the manifest asks (podman 4.3,
/// pkg/domain/infra/abi/play.go): init containers with probes or lifecycle hooks, which the
/// API server accepts on sidecars (`restartPolicy: Always`).
const REFUSALS: &[&str] = &[
    "cannot create an init container that has either of lifecycle, livenessProbe, \
     readinessProbe, or startupProbe set",
];

/// A `kube play` failure: the target's refusal of the pod when podman says it refuses what
/// the manifest asks ([`REFUSALS`]), otherwise an error (`kube play` fails alike for
/// trouble of its own), not a verdict on the pod.
fn refusal_or_error(err: TargetError) -> TargetError {
    match &err {
        TargetError::Command { stderr, .. }
            if REFUSALS.iter().any(|refusal| stderr.contains(refusal)) =>
        {
            TargetError::rejected(format!("podman kube play: {}", stderr.trim()))
        }
        _ => err,
    }
}

/// Runs `podman pod start` for a pod with init containers and records how it ended. No
/// time limit: podman waits for each init container to exit, which a sidecar never does
/// (podman 4.3 reads no `restartPolicy` on a container), and ending the command early
/// would change what podman does; a deletion or the removal ends it ([`end_start`]).
async fn start_pod(conf: PathBuf, name: String, shared: Arc<Shared>) {
    let result = run_podman_command(&conf, &["pod", "start", &name], None).await;
    let mut start = locked(&shared.start);
    start.under_way = false;
    if let Err(err) = result {
        let message = match err {
            TargetError::Command { stderr, .. } => stderr,
            other => describe(&other),
        };
        start.failure = Some((Time(jiff::Timestamp::now()), message));
    }
}

/// Ends the target's `podman pod start` if it is still under way, so that a stop or a
/// removal does not wait for it: podman has no other way to cancel a pod's start (a user
/// interrupts the `kube play`), and its `pod stop` waits for the pod's lock, which the
/// start holds until the init containers are done. The lock is a robust mutex that the
/// kernel releases when the command dies (libpod/lock/shm/shm_lock.c). The containers keep
/// running; the stop that follows stops them.
async fn end_start(shared: &Shared) {
    let task = locked(&shared.start).task.take();
    if let Some(task) = task {
        task.abort();
        let _ = task.await;
    }
    locked(&shared.start).under_way = false;
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
    #[serde(default)]
    host_config: InspectedHostConfig,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedHostConfig {
    #[serde(default)]
    log_config: InspectedLogConfig,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedLogConfig {
    /// The container's log file (`k8s-file`), which podman deletes with the container.
    #[serde(default)]
    path: String,
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

/// One container's state as podman reports it, in Kubernetes terms. `created` is podman's
/// "not started yet": a kubelet shows such a container waiting, as `PodInitializing` in a
/// pod with init containers and `ContainerCreating` otherwise (`waiting_reason`).
fn container_state(container: &Inspected, waiting_reason: &str) -> ContainerState {
    let state = &container.state;
    match state.status.as_str() {
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
                reason: Some(terminated_reason(state.exit_code, state.oom_killed).to_owned()),
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
                        waiting_reason.to_owned()
                    } else {
                        format!("podman:{other}")
                    },
                ),
                message: None,
            }),
            ..ContainerState::default()
        },
    }
}

fn terminated_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// `started` and `ready` as the kubelet's prober manager sets them without probes (podman
/// runs none): a regular or sidecar container is both while it runs; a regular init
/// container is `started` while it runs and `ready` once it exited 0 (`UpdatePodStatus`,
/// docs/fidelity/init-sidecar-ephemeral-source.md S4).
fn with_flags(mut status: ContainerStatus, regular_init: bool) -> ContainerStatus {
    let state = status.state.as_ref();
    let running = state.is_some_and(|s| s.running.is_some());
    let succeeded = state
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0);
    status.started = Some(running);
    status.ready = if regular_init { succeeded } else { running };
    status
}

fn container_status(name: &str, container: &Inspected, waiting_reason: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.to_owned(),
        image: crate::image::AGENT_IMAGE.to_owned(),
        image_id: container.image.clone(),
        container_id: Some(format!("podman://{}", container.id)),
        restart_count: container.restart_count,
        state: Some(container_state(container, waiting_reason)),
        ..ContainerStatus::default()
    }
}

/// Converts podman's container states into a PodStatus (see the module documentation).
/// `pod_state` is podman's state of the pod, None while podman is still starting it (it
/// holds the pod's lock meanwhile). An init container that podman shows no more (removed,
/// or being removed) is shown as `memory` has it.
fn convert(
    spec: &SpecContainers,
    pod_prefix: &str,
    pod_state: Option<&str>,
    inspected: &[Inspected],
    memory: &InitMemory,
) -> PodStatus {
    let find = |name: &str| {
        let podman_name = format!("{pod_prefix}-{name}");
        inspected.iter().find(|c| c.name == podman_name)
    };
    let waiting_reason = if spec.init.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let mut init_statuses = Vec::new();
    for init in &spec.init {
        let shown = match (memory.removed.get(&init.name), find(&init.name)) {
            (Some(removed), _) => removed.clone(),
            (None, Some(container)) if container.state.status != "removing" => Some(with_flags(
                container_status(&init.name, container, waiting_reason),
                !init.sidecar,
            )),
            _ => memory.last.get(&init.name).cloned(),
        };
        init_statuses.extend(shown);
    }
    let statuses: Vec<ContainerStatus> = spec
        .regular
        .iter()
        .filter_map(|name| {
            let container = find(name)?;
            Some(with_flags(
                container_status(name, container, waiting_reason),
                false,
            ))
        })
        .collect();
    // Never ready, `started` unset: the prober manager does not touch them (E5).
    let ephemeral_statuses: Vec<ContainerStatus> = spec
        .ephemeral
        .iter()
        .filter_map(|name| {
            let container = find(name)?;
            Some(container_status(name, container, waiting_reason))
        })
        .collect();
    let all_exited_zero = statuses.iter().all(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    });
    let phase = match pod_state {
        // podman is still running the init containers: the pod is not started yet.
        None | Some("Created" | "") => "Pending",
        Some("Running" | "Degraded") => "Running",
        Some("Exited" | "Stopped") if all_exited_zero => "Succeeded",
        Some("Exited" | "Stopped") => "Failed",
        _ => "Unknown",
    };
    PodStatus {
        phase: Some(phase.to_owned()),
        init_container_statuses: (!spec.init.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ephemeral_container_statuses: (!spec.ephemeral.is_empty()).then_some(ephemeral_statuses),
        ..PodStatus::default()
    }
}

/// podman's record of one container's starts and exits (`podman events`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct PodmanEvent {
    #[serde(default, rename = "ID")]
    id: String,
    #[serde(default, rename = "Status")]
    status: String,
    #[serde(default, rename = "Time")]
    time: String,
    /// Left out of podman's JSON when 0.
    #[serde(default, rename = "ContainerExitCode")]
    exit_code: i32,
}

/// The status that stands for an init container podman removed (see the module
/// documentation): podman removes one only after it exited 0, but what it exited with and
/// when is podman's to say, in its event log: the last `died` event (its time is when
/// podman saw the exit, up to a few hundred milliseconds after the process ended), the
/// `start` events before it (restarts under OnFailure). Without such a record (events not
/// kept by the machine's podman), the last status the target read while the container
/// existed stands, even if it shows the container running: the target saw no more. None
/// when there is neither.
fn status_after_removal(
    init: &InitSpec,
    last: Option<&ContainerStatus>,
    events: &[PodmanEvent],
) -> Option<ContainerStatus> {
    let Some(died_at) = events.iter().rposition(|e| e.status == "died") else {
        return last.cloned();
    };
    let died = &events[died_at];
    let starts = events[..died_at]
        .iter()
        .filter(|e| e.status == "start")
        .count();
    let restart_count = i32::try_from(starts.saturating_sub(1)).unwrap_or(i32::MAX);
    // The target read this very instance's end itself: podman's own FinishedAt is the
    // exit, where the event is when podman noticed it.
    let read_end = last.filter(|l| {
        l.restart_count == restart_count
            && l.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == died.exit_code)
    });
    if let Some(read_end) = read_end {
        return Some(read_end.clone());
    }
    let last_start = events[..died_at].iter().rev().find(|e| e.status == "start");
    // podman's own StartedAt, where the target read it for this very instance.
    let read_start = last
        .filter(|l| l.restart_count == restart_count)
        .and_then(|l| l.state.as_ref())
        .and_then(|s| {
            s.running
                .as_ref()
                .and_then(|r| r.started_at.clone())
                .or_else(|| s.terminated.as_ref().and_then(|t| t.started_at.clone()))
        });
    let container_id = format!("podman://{}", died.id);
    let status = ContainerStatus {
        name: init.name.clone(),
        image: crate::image::AGENT_IMAGE.to_owned(),
        image_id: last.map(|l| l.image_id.clone()).unwrap_or_default(),
        container_id: Some(container_id.clone()),
        restart_count: last.map_or(restart_count, |l| l.restart_count.max(restart_count)),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: died.exit_code,
                reason: Some(terminated_reason(died.exit_code, false).to_owned()),
                started_at: read_start.or_else(|| last_start.and_then(|e| parse_time(&e.time))),
                finished_at: parse_time(&died.time),
                container_id: Some(container_id),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    };
    Some(with_flags(status, !init.sidecar))
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
        let ephemeral_behaviours = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(EPHEMERAL_ANNOTATION))
            .cloned();
        without_harness_annotations(&mut pod);
        // podman turns an emptyDir into a named volume shared by every pod that uses the
        // name; give each pod its own, or concurrent pods would share their state.
        let volume = format!("{name}-state");
        if let Some(spec) = pod.spec.as_mut() {
            for v in spec
                .volumes
                .iter_mut()
                .flatten()
                .filter(|v| v.name == STATE_VOLUME)
            {
                v.name = volume.clone();
            }
            let init = spec.init_containers.iter_mut().flatten();
            for container in init.chain(spec.containers.iter_mut()) {
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
        let containers = SpecContainers::of(&pod);
        let ephemeral_template = ephemeral_behaviours.map(|behaviours| {
            let mut template = pod.clone();
            template
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(EPHEMERAL_ANNOTATION.to_owned(), behaviours);
            Arc::new(template)
        });
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
            ephemeral_template,
            shared: Arc::new(Shared {
                since: created_at.0.to_string(),
                log_dir: self.dir.join("logs").join(&name),
                ..Shared::default()
            }),
        };
        // Recorded before playing, so that a cleanup during `kube play` removes it too.
        self.lock().insert(name.clone(), record.clone());
        // With init containers, podman's start runs them and holds the pod's lock until the
        // last one exited: started in the background, so that the watch sees them run.
        let with_init = !record.containers.init.is_empty();
        let mut play = vec!["kube", "play", "--log-driver", "k8s-file"];
        if with_init {
            play.push("--start=false");
        }
        play.push(&yaml_path);
        if let Err(err) = self.podman(&play).await {
            self.lock().remove(&name);
            let _ = self.remove(&name, &record).await;
            return Err(refusal_or_error(err));
        }
        if with_init {
            let mut start = locked(&record.shared.start);
            start.under_way = true;
            start.task = Some(tokio::spawn(start_pod(
                self.dir.join("containers.conf"),
                name.clone(),
                record.shared.clone(),
            )));
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
        let (containers, shared) = self
            .lock()
            .get(&pod.uid)
            .map(|p| (p.containers.clone(), p.shared.clone()))
            .ok_or_else(|| TargetError::NoSuchPod(pod.uid.clone()))?;
        let watching = Watching {
            conf: self.dir.join("containers.conf"),
            name: pod.name.clone(),
            containers,
            shared,
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
        let shared = self
            .lock()
            .get(&pod.uid)
            .map(|record| record.shared.clone());
        let kept = shared
            .as_ref()
            .and_then(|shared| locked(&shared.termination).logs.get(container).cloned());
        if let Some(log) = kept {
            return Ok(log);
        }
        let read = self
            .podman(&["logs", &format!("{}-{container}", pod.name)])
            .await;
        match (
            read,
            shared.and_then(|shared| kept_init_log(&shared, container)),
        ) {
            // An init container podman removed: its log as the target kept it.
            (Err(_), Some(log)) => Ok(log),
            (read, _) => read,
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
            FaultAction::AddEphemeralContainer {
                name,
                target_container_name,
            } => {
                self.add_ephemeral_container(pod, name, target_container_name.as_deref())
                    .await
            }
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
            if let Some(task) = locked(&record.shared.termination).task.take() {
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
    run_podman_command(conf, args, Some(timeout)).await
}

/// Runs one podman command, within `timeout` if there is one; the command is killed when
/// the future is dropped.
async fn run_podman_command(
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
/// with the details is discarded (None) and the caller polls again. While the target's
/// `podman pod start` is under way, podman would make `pod inspect` wait for it: the pod's
/// state is not asked (see [`convert`]).
async fn poll(
    conf: &Path,
    name: &str,
    containers: &SpecContainers,
    shared: &Shared,
) -> Option<PodStatus> {
    let containers = &containers.with_ephemeral(shared);
    // Read first: a start that ends while the containers are read leaves the phase Pending
    // for one more poll rather than asking podman for a state it is still changing.
    let starting = locked(&shared.start).under_way;
    let inspected = match inspect(conf, name, containers, shared).await {
        Some(inspected) => inspected,
        // `podman inspect` of several containers fails as a whole when one of them is
        // gone: an init container podman removed since the last poll.
        None if note_removed(conf, name, containers, shared).await => {
            inspect(conf, name, containers, shared).await?
        }
        None => return None,
    };
    let pod_state = if starting {
        None
    } else {
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
        if !consistent {
            return None;
        }
        Some(pod.state)
    };
    keep_init_logs(containers, name, shared, &inspected);
    let mut memory = locked(&shared.init);
    let status = convert(containers, name, pod_state.as_deref(), &inspected, &memory);
    for shown in status.init_container_statuses.iter().flatten() {
        let read = inspected
            .iter()
            .any(|c| c.name == format!("{name}-{}", shown.name) && c.state.status != "removing");
        if read && !memory.removed.contains_key(&shown.name) {
            memory.last.insert(shown.name.clone(), shown.clone());
        }
    }
    Some(status)
}

/// Gives each init container's log file a second name in the target's directory, once the
/// file exists (podman creates it when the container starts): podman deletes the file with
/// the container, which it does as soon as an init container succeeded, and the link keeps
/// what the workload wrote up to then. Best effort: a link across file systems fails, and
/// that container's log is then gone with it.
fn keep_init_logs(
    containers: &SpecContainers,
    name: &str,
    shared: &Shared,
    inspected: &[Inspected],
) {
    let mut memory = locked(&shared.init);
    for init in &containers.init {
        if memory.log_links.contains_key(&init.name) {
            continue;
        }
        let podman_name = format!("{name}-{}", init.name);
        let Some(path) = inspected
            .iter()
            .find(|c| c.name == podman_name)
            .map(|c| Path::new(&c.host_config.log_config.path))
            .filter(|path| path.is_file())
        else {
            continue;
        };
        let link = shared.log_dir.join(format!("{}.log", init.name));
        let linked = std::fs::create_dir_all(&shared.log_dir)
            .and_then(|()| std::fs::hard_link(path, &link))
            .is_ok();
        if linked {
            memory.log_links.insert(init.name.clone(), link);
        }
    }
}

/// An init container's log as the target kept it ([`keep_init_logs`]).
fn kept_init_log(shared: &Shared, container: &str) -> Option<String> {
    let link = locked(&shared.init).log_links.get(container).cloned()?;
    std::fs::read_to_string(link)
        .ok()
        .map(|text| k8s_file_messages(&text))
}

/// The messages of a `k8s-file` log as `podman logs` shows them: each line is
/// `TIME STREAM TAG MESSAGE`, TAG `F` for a full line and `P` for part of a longer one.
fn k8s_file_messages(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut fields = line.splitn(4, ' ');
        let (Some(_time), Some(_stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        out.push_str(fields.next().unwrap_or(""));
        if tag != "P" {
            out.push('\n');
        }
    }
    out
}

/// `podman inspect` of every container podman has not removed.
async fn inspect(
    conf: &Path,
    name: &str,
    containers: &SpecContainers,
    shared: &Shared,
) -> Option<Vec<Inspected>> {
    let mut args = vec![
        "inspect".to_owned(),
        "--format".to_owned(),
        "json".to_owned(),
    ];
    {
        let memory = locked(&shared.init);
        args.extend(
            containers
                .names()
                .filter(|c| !memory.removed.contains_key(*c))
                .map(|c| format!("{name}-{c}")),
        );
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serde_json::from_str(&run_podman(conf, &args).await.ok()?).ok()
}

/// Finds the init containers podman removed since the last poll and fixes the status
/// that stands for each. False when podman did not say, or no init container is missing
/// (the inspection failed for another reason), or a regular container is: podman removes
/// those only with the pod.
async fn note_removed(
    conf: &Path,
    name: &str,
    containers: &SpecContainers,
    shared: &Shared,
) -> bool {
    let filter = format!("pod={name}");
    let Ok(listing) = run_podman(
        conf,
        &["ps", "--all", "--filter", &filter, "--format", "{{.Names}}"],
    )
    .await
    else {
        return false;
    };
    let exists = |container: &str| {
        let podman_name = format!("{name}-{container}");
        listing.lines().any(|line| line.trim() == podman_name)
    };
    if containers.regular.iter().any(|c| !exists(c)) {
        return false;
    }
    let missing: Vec<&InitSpec> = {
        let memory = locked(&shared.init);
        containers
            .init
            .iter()
            .filter(|c| !memory.removed.contains_key(&c.name) && !exists(&c.name))
            .collect()
    };
    for init in &missing {
        let events = container_events(conf, &format!("{name}-{}", init.name), &shared.since)
            .await
            .unwrap_or_default();
        let mut memory = locked(&shared.init);
        let status = status_after_removal(init, memory.last.get(&init.name), &events);
        memory.removed.insert(init.name.clone(), status);
    }
    !missing.is_empty()
}

/// podman's `start` and `died` events of one container since `since`, oldest first (None:
/// podman did not say).
async fn container_events(conf: &Path, container: &str, since: &str) -> Option<Vec<PodmanEvent>> {
    let filter = format!("container={container}");
    let text = run_podman(
        conf,
        &[
            "events",
            "--stream=false",
            "--since",
            since,
            "--filter",
            &filter,
            "--filter",
            "event=start",
            "--filter",
            "event=died",
            "--format",
            "json",
        ],
    )
    .await
    .ok()?;
    Some(
        text.lines()
            .filter_map(|line| serde_json::from_str::<PodmanEvent>(line).ok())
            .collect(),
    )
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

/// The state of one pod's watch.
struct Watching {
    conf: PathBuf,
    name: String,
    containers: SpecContainers,
    shared: Arc<Shared>,
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
            // podman's word on a start that failed (an init container that exited
            // non-zero), as the event it is: what the containers show is in the snapshots.
            let failure = locked(&self.shared.start).failure.take();
            if let Some((at, message)) = failure {
                return Some(Observation::Event(PodEvent {
                    at,
                    type_: "Warning".to_owned(),
                    reason: "PodmanPodStartFailed".to_owned(),
                    message,
                    container: None,
                }));
            }
            let (removing, last) = {
                let mut termination = locked(&self.shared.termination);
                (termination.removing, termination.last_status.take())
            };
            if removing {
                if let Some(last) = last_before_removal(self.previous.as_ref(), last) {
                    return Some(self.yielded(last));
                }
                if pod_exists(&self.conf, &self.name).await == Some(false) {
                    return Some(self.gone());
                }
            } else if let Some(status) =
                poll(&self.conf, &self.name, &self.containers, &self.shared).await
            {
                // A removal that began while this poll ran may have changed what it read
                // (a force delete's kill): the removal's own last state stands instead.
                if locked(&self.shared.termination).removing {
                    continue;
                }
                if self.previous.as_ref().map(|p| &p.status) != Some(&status) {
                    let snapshot = Snapshot::of_status(Time(jiff::Timestamp::now()), status);
                    return Some(self.yielded(snapshot));
                }
            } else if pod_exists(&self.conf, &self.name).await == Some(false) {
                // A removal that began while podman held this poll back (it does while a
                // stop is under way) shows its last state first.
                if locked(&self.shared.termination).removing {
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
            host_config: InspectedHostConfig::default(),
        }
    }

    fn names(list: &[&str]) -> SpecContainers {
        SpecContainers {
            regular: list.iter().map(|s| s.to_string()).collect(),
            ..SpecContainers::default()
        }
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
            Some("Degraded"),
            &inspected,
            &InitMemory::default(),
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
            convert(
                &names(&["a"]),
                "p",
                Some("Exited"),
                &done,
                &InitMemory::default()
            )
            .phase
            .as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            convert(
                &names(&["a"]),
                "p",
                Some("Exited"),
                &failed,
                &InitMemory::default()
            )
            .phase
            .as_deref(),
            Some("Failed")
        );
        assert_eq!(
            convert(
                &names(&["a"]),
                "p",
                Some("Created"),
                &done,
                &InitMemory::default()
            )
            .phase
            .as_deref(),
            Some("Pending")
        );
        assert_eq!(
            convert(
                &names(&["a"]),
                "p",
                Some("Paused"),
                &done,
                &InitMemory::default()
            )
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
            Some("Running"),
            &[container("app", "stopping", 0, false, 0)],
            &InitMemory::default(),
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
            Some(if state == "running" {
                "Running"
            } else {
                "Exited"
            }),
            &[container("app", state, code, false, 0)],
            &InitMemory::default(),
        )
    }

    fn with_init(init: &[(&str, bool)], regular: &[&str]) -> SpecContainers {
        SpecContainers {
            init: init
                .iter()
                .map(|(name, sidecar)| InitSpec {
                    name: name.to_string(),
                    sidecar: *sidecar,
                })
                .collect(),
            regular: regular.iter().map(|s| s.to_string()).collect(),
            ephemeral: Vec::new(),
        }
    }

    fn state_of(status: &ContainerStatus) -> ContainerState {
        status.state.clone().expect("state")
    }

    #[test]
    fn init_containers_are_reported_apart_with_the_kubelets_flags() {
        let spec = with_init(&[("migrate", false), ("shipper", true)], &["app"]);
        let inspected = vec![
            container("migrate", "running", 0, false, 0),
            container("shipper", "created", 0, false, 0),
            container("app", "created", 0, false, 0),
        ];
        // podman is still starting the pod (its init containers): Pending.
        let status = convert(&spec, "p", None, &inspected, &InitMemory::default());
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let init = status
            .init_container_statuses
            .clone()
            .expect("init statuses");
        assert_eq!(
            init.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["migrate", "shipper"]
        );
        let regular = status.container_statuses.clone().expect("statuses");
        assert_eq!(regular.len(), 1, "init containers are not regular ones");
        // A running regular init container is started, not ready (S4).
        assert_eq!((init[0].started, init[0].ready), (Some(true), false));
        // Every container not started yet waits as PodInitializing in a pod with init
        // containers, the init containers included (S1).
        for waiting in [&init[1], &regular[0]] {
            assert_eq!(
                state_of(waiting).waiting.and_then(|w| w.reason).as_deref(),
                Some("PodInitializing")
            );
        }
        // Once it exited 0, a regular init container is ready and no more started; a
        // sidecar's flags follow a regular container's.
        let inspected = vec![
            container("migrate", "exited", 0, false, 0),
            container("shipper", "running", 0, false, 0),
            container("app", "created", 0, false, 0),
        ];
        let status = convert(&spec, "p", None, &inspected, &InitMemory::default());
        let init = status.init_container_statuses.expect("init statuses");
        assert_eq!((init[0].started, init[0].ready), (Some(false), true));
        assert_eq!((init[1].started, init[1].ready), (Some(true), true));
        // A pod without init containers has no init statuses and keeps ContainerCreating.
        let plain = convert(
            &names(&["app"]),
            "p",
            Some("Created"),
            &[container("app", "created", 0, false, 0)],
            &InitMemory::default(),
        );
        assert!(plain.init_container_statuses.is_none());
        let waiting = state_of(&plain.container_statuses.expect("statuses")[0]).waiting;
        assert_eq!(
            waiting.and_then(|w| w.reason).as_deref(),
            Some("ContainerCreating")
        );
    }

    #[test]
    fn the_phase_ignores_init_containers_as_podman_does() {
        // podman's pod state leaves init containers out (libpod/pod_api.go, Status): a
        // failed init container does not make the pod Failed, and the regular containers
        // alone decide Succeeded.
        let spec = with_init(&[("migrate", false)], &["job"]);
        let inspected = vec![
            container("migrate", "exited", 2, false, 0),
            container("job", "exited", 0, false, 0),
        ];
        let status = convert(
            &spec,
            "p",
            Some("Exited"),
            &inspected,
            &InitMemory::default(),
        );
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn ephemeral_containers_are_reported_apart_never_ready_and_out_of_the_phase() {
        let spec = SpecContainers {
            regular: vec!["app".to_owned()],
            ephemeral: vec!["debug".to_owned(), "later".to_owned()],
            ..SpecContainers::default()
        };
        let inspected = vec![
            container("app", "exited", 0, false, 0),
            container("debug", "running", 0, false, 0),
        ];
        let status = convert(
            &spec,
            "p",
            Some("Degraded"),
            &inspected,
            &InitMemory::default(),
        );
        let ephemeral = status
            .ephemeral_container_statuses
            .expect("ephemeral statuses");
        // "later" is not in podman yet: not shown.
        assert_eq!(ephemeral.len(), 1);
        assert!(state_of(&ephemeral[0]).running.is_some());
        assert!(!ephemeral[0].ready && ephemeral[0].started.is_none());
        assert_eq!(status.container_statuses.expect("statuses").len(), 1);
        assert!(convert(
            &names(&["app"]),
            "p",
            Some("Running"),
            &[],
            &InitMemory::default()
        )
        .ephemeral_container_statuses
        .is_none());
    }

    fn event(status: &str, time: &str, exit_code: i32) -> PodmanEvent {
        PodmanEvent {
            id: "abc".to_owned(),
            status: status.to_owned(),
            time: time.to_owned(),
            exit_code,
        }
    }

    #[test]
    fn a_removed_init_container_shows_what_podman_recorded_of_it() {
        let spec = with_init(&[("migrate", false)], &["app"]);
        let migrate = &spec.init[0];
        let last_read = with_flags(
            container_status(
                "migrate",
                &container("migrate", "running", 0, false, 1),
                "PodInitializing",
            ),
            true,
        );
        let events = vec![
            event("start", "2026-01-01T00:00:00.5Z", 0),
            event("died", "2026-01-01T00:00:01Z", 1),
            event("start", "2026-01-01T00:00:01.2Z", 0),
            event("died", "2026-01-01T00:00:04.25Z", 0),
        ];
        let removed = status_after_removal(migrate, Some(&last_read), &events).expect("a status");
        let terminated = state_of(&removed).terminated.expect("terminated");
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        assert_eq!(
            terminated.finished_at,
            Some(Time("2026-01-01T00:00:04.25Z".parse().expect("time")))
        );
        // The start the target read itself, for this very instance (restart 1).
        assert_eq!(
            terminated.started_at,
            Some(Time("2026-01-01T00:00:01.5Z".parse().expect("time")))
        );
        assert_eq!(removed.restart_count, 1);
        assert!(removed.ready && removed.started == Some(false));
        // The end the target read itself (podman's FinishedAt) stands.
        let mut exited = container("migrate", "exited", 0, false, 1);
        exited.state.finished_at = "2026-01-01T00:00:04.01Z".to_owned();
        let read = with_flags(
            container_status("migrate", &exited, "PodInitializing"),
            true,
        );
        assert_eq!(
            status_after_removal(migrate, Some(&read), &events),
            Some(read.clone())
        );
        // Without podman's record the last read stands, as it was: nothing is made up.
        assert_eq!(
            status_after_removal(migrate, Some(&last_read), &[]),
            Some(last_read.clone())
        );
        assert_eq!(status_after_removal(migrate, None, &[]), None);
        // Never read, but recorded: podman's events alone.
        let from_events = status_after_removal(migrate, None, &events).expect("a status");
        assert_eq!(
            state_of(&from_events).terminated.and_then(|t| t.started_at),
            Some(Time("2026-01-01T00:00:01.2Z".parse().expect("time")))
        );
        assert_eq!(from_events.restart_count, 1);
    }

    #[test]
    fn a_removed_init_container_keeps_its_status_and_one_being_removed_its_last() {
        let spec = with_init(&[("migrate", false), ("seed", false)], &["app"]);
        let done = status_after_removal(
            &spec.init[0],
            None,
            &[
                event("start", "2026-01-01T00:00:00Z", 0),
                event("died", "2026-01-01T00:00:03Z", 0),
            ],
        );
        let seed_running = with_flags(
            container_status(
                "seed",
                &container("seed", "running", 0, false, 0),
                "PodInitializing",
            ),
            true,
        );
        let memory = InitMemory {
            last: [("seed".to_owned(), seed_running.clone())].into(),
            removed: [("migrate".to_owned(), done.clone())].into(),
            log_links: HashMap::new(),
        };
        // migrate is gone from podman; seed is being removed.
        let inspected = vec![
            container("seed", "removing", 0, false, 0),
            container("app", "running", 0, false, 0),
        ];
        let status = convert(&spec, "p", Some("Running"), &inspected, &memory);
        let init = status.init_container_statuses.expect("init statuses");
        assert_eq!(init, vec![done.expect("migrate"), seed_running]);
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
    fn the_harness_annotations_are_not_played() {
        let mut pod = Pod::default();
        pod.metadata.annotations = Some(
            [
                (FAULTS_ANNOTATION.to_owned(), "x".repeat(200)),
                (EPHEMERAL_ANNOTATION.to_owned(), "y".repeat(200)),
                ("example.com/keep".to_owned(), "yes".to_owned()),
            ]
            .into(),
        );
        without_harness_annotations(&mut pod);
        let annotations = pod
            .metadata
            .annotations
            .clone()
            .expect("the scenario's own");
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["example.com/keep"]);
        pod.metadata.annotations = Some([(FAULTS_ANNOTATION.to_owned(), "[]".to_owned())].into());
        without_harness_annotations(&mut pod);
        assert!(pod.metadata.annotations.is_none());
    }

    fn failed(stderr: &str) -> TargetError {
        use std::os::unix::process::ExitStatusExt;
        TargetError::Command {
            command: "podman kube play x.yaml".to_owned(),
            status: std::process::ExitStatus::from_raw(125 << 8),
            stderr: stderr.to_owned(),
        }
    }

    #[test]
    fn kube_play_refusing_the_manifest_is_a_rejection_and_other_failures_errors() {
        let refused = failed(
            "Error: cannot create an init container that has either of lifecycle, \
             livenessProbe, readinessProbe, or startupProbe set",
        );
        assert!(matches!(
            refusal_or_error(refused),
            TargetError::Rejected(_)
        ));
        let trouble = failed("Error: open /var/lib/containers: permission denied");
        assert!(matches!(
            refusal_or_error(trouble),
            TargetError::Command { .. }
        ));
    }

    #[test]
    fn a_kept_log_reads_as_podman_logs_shows_it() {
        let text = "2026-11-29T08:20:29.706+00:00 stdout F {\"event\":\"start\"}\n\
                    2026-11-29T08:20:29.707+00:00 stdout P {\"event\":\n\
                    2026-11-29T08:20:29.708+00:00 stdout F \"exit\"}\n\
                    2026-11-29T08:20:29.709+00:00 stderr F \n";
        assert_eq!(
            k8s_file_messages(text),
            "{\"event\":\"start\"}\n{\"event\":\"exit\"}\n\n"
        );
    }
}
