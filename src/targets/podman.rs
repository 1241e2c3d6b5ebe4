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

mod cli;
mod convert;
mod faults;
mod init;
mod logs;
mod watch;

use super::{Capabilities, PodRef, Target, TargetError, TargetOptions};
use crate::compile::{EPHEMERAL_ANNOTATION, FAULTS_ANNOTATION, STATE_VOLUME};
use async_trait::async_trait;
use cli::{remove_pod, run_podman};
use faults::Termination;
use futures::stream::BoxStream;
use init::{end_start, start_pod, InitMemory, PodStart};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use logs::kept_init_log;
use podcheck_oracle::scenario::{FaultAction, KubeletParams};
use podcheck_oracle::{Observation, TimingProfile};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use watch::Watching;

/// Label on every pod this target creates, valued with the run's id, for cleanup.
pub const RUN_LABEL: &str = "podcheck.io/run";
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
    /// Where the init containers' log files are linked ([`logs::keep_init_logs`]).
    log_dir: PathBuf,
    termination: Mutex<Termination>,
    start: Mutex<PodStart>,
    init: Mutex<InitMemory>,
    /// The ephemeral containers added, in order.
    ephemeral: Mutex<Vec<String>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
        let watching = Watching::new(
            self.dir.join("containers.conf"),
            pod.name.clone(),
            containers,
            shared,
        );
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
            FaultAction::Delete { .. } | FaultAction::ForceDelete => self.delete(pod, action),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
