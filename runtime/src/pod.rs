//! One pod: its sandbox, its containers, and the worker that restarts them.

use crate::errors::RuntimeError;
use crate::image::AGENT_PATH_IN_IMAGE;
use crate::probe::{self, ContainerView, Kind, PodView, ProbeSpec, ProbeUpdate, WorkerContext};
use crate::{status, sys, Shared, AGENT_IMAGE};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

fn now() -> Time {
    Time(Timestamp::now())
}

/// A pod the runtime runs: its status history and the handle to stop its worker.
pub(crate) struct PodEntry {
    pub uid: String,
    dir: PathBuf,
    history: Arc<Mutex<Vec<(Time, PodStatus)>>>,
    changes: watch::Receiver<usize>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    shared: Arc<Shared>,
}

/// Everything decided from the manifest before any process starts.
struct ContainerSpec {
    name: String,
    image: String,
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: String,
    binds: Vec<(PathBuf, String, bool)>,
    probes: Vec<ProbeSpec>,
    /// The manifest's container, for what probes look up in it (named ports).
    manifest: Container,
}

impl ContainerSpec {
    fn has_probe(&self, kind: Kind) -> bool {
        self.probes.iter().any(|p| p.kind == kind)
    }
}

impl PodEntry {
    pub fn start(shared: Arc<Shared>, pod: Pod) -> Result<Arc<PodEntry>, RuntimeError> {
        let name = pod
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| "pod".to_owned());
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let invalid = |field: &str, reason: String| RuntimeError::InvalidPod {
            pod: name.clone(),
            field: field.to_owned(),
            reason,
        };
        let spec = pod
            .spec
            .as_ref()
            .ok_or_else(|| invalid("spec", "missing".to_owned()))?;
        if spec.containers.is_empty() {
            return Err(invalid(
                "spec.containers",
                "a pod needs at least one container".to_owned(),
            ));
        }
        for (field, present) in [
            (
                "initContainers",
                spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()),
            ),
            (
                "ephemeralContainers",
                spec.ephemeral_containers
                    .as_ref()
                    .is_some_and(|c| !c.is_empty()),
            ),
        ] {
            if present {
                return Err(invalid(
                    &format!("spec.{field}"),
                    "not supported by the local runtime yet".to_owned(),
                ));
            }
        }
        let restart_policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_owned());
        if !matches!(restart_policy.as_str(), "Always" | "OnFailure" | "Never") {
            return Err(invalid(
                "spec.restartPolicy",
                format!("{restart_policy:?} is not Always, OnFailure or Never"),
            ));
        }
        let serial = shared.pod_counter.fetch_add(1, Ordering::Relaxed);
        let uid = format!("{}-{serial:04}", shared.id);
        let dir = shared.dir.join("pods").join(&uid);
        let mut volumes = BTreeMap::new();
        for (index, volume) in spec.volumes.iter().flatten().enumerate() {
            if volume.empty_dir.is_none() {
                return Err(invalid(
                    &format!("spec.volumes[{index}]"),
                    format!(
                        "volume {:?}: only emptyDir volumes are supported by the local runtime",
                        volume.name
                    ),
                ));
            }
            volumes.insert(volume.name.clone(), dir.join("volumes").join(&volume.name));
        }
        let mut containers = Vec::new();
        for (index, container) in spec.containers.iter().enumerate() {
            containers.push(container_spec(container, index, &volumes, &invalid)?);
        }
        for path in volumes.values() {
            std::fs::create_dir_all(path)
                .map_err(|e| RuntimeError::io(format!("create emptyDir {}", path.display()), e))?;
        }
        let history = Arc::new(Mutex::new(Vec::new()));
        let (notify, changes) = watch::channel(0usize);
        let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel();
        let worker = Worker {
            shared: shared.clone(),
            pod_name: name,
            namespace,
            uid: uid.clone(),
            dir: dir.clone(),
            restart_policy,
            containers: containers
                .into_iter()
                .map(|spec| ContainerRun {
                    status: ContainerStatus {
                        name: spec.name.clone(),
                        image: spec.image.clone(),
                        image_id: String::new(),
                        ready: false,
                        started: Some(false),
                        restart_count: 0,
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some("ContainerCreating".to_owned()),
                                message: None,
                            }),
                            ..ContainerState::default()
                        }),
                        ..ContainerStatus::default()
                    },
                    spec,
                    instance: None,
                    pid: None,
                    back_off: None,
                    restart_at: None,
                    oom_kills_before: 0,
                    running_since: None,
                    killing: false,
                })
                .collect(),
            termination_grace: Duration::from_secs(
                spec.termination_grace_period_seconds
                    .filter(|g| *g >= 0)
                    .unwrap_or(30) as u64,
            ),
            view: watch::channel(PodView::default()).0,
            probe_tasks: Vec::new(),
            sandbox_pid: None,
            sandbox_ready: false,
            history: history.clone(),
            notify,
            terminal: None,
        };
        let handle = tokio::spawn(worker.run(stop_receiver));
        Ok(Arc::new(PodEntry {
            uid,
            dir,
            history,
            changes,
            stop: Mutex::new(Some(stop_sender)),
            worker: Mutex::new(Some(handle)),
            shared,
        }))
    }

    pub fn history(&self) -> Vec<(Time, PodStatus)> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.changes.clone()
    }

    pub fn logs(&self, container: &str, previous: bool) -> Result<String, RuntimeError> {
        let dir = self.dir.join("logs").join(container);
        let mut instances: Vec<u32> = std::fs::read_dir(&dir)
            .map_err(|e| RuntimeError::io(format!("read the logs of container {container}"), e))?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        instances.sort_unstable();
        let wanted = if previous {
            instances.iter().rev().nth(1)
        } else {
            instances.last()
        };
        let Some(instance) = wanted else {
            return Ok(String::new());
        };
        let path = dir.join(format!("{instance}.log"));
        std::fs::read_to_string(&path)
            .map_err(|e| RuntimeError::io(format!("read {}", path.display()), e))
    }

    /// Stops the worker, which kills every process and removes the pod's state.
    pub async fn stop(&self) {
        if let Some(stop) = self.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = stop.send(());
        }
        let handle = self.worker.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        self.remove_state();
    }

    /// Synchronous last resort (runtime dropped): kill through the cgroup and clean up.
    pub fn stop_now(&self) {
        if let Some(handle) = self.worker.lock().ok().and_then(|mut w| w.take()) {
            handle.abort();
        }
        self.remove_state();
    }

    fn remove_state(&self) {
        let group = self.shared.cgroup(Path::new(&self.uid));
        self.shared.cgroups.kill_all(&group);
        self.shared.cgroups.remove(&group);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn container_spec(
    container: &Container,
    index: usize,
    volumes: &BTreeMap<String, PathBuf>,
    invalid: &dyn Fn(&str, String) -> RuntimeError,
) -> Result<ContainerSpec, RuntimeError> {
    let field = |rest: &str| format!("spec.containers[{index}].{rest}");
    let image = container.image.clone().unwrap_or_default();
    let mut command: Vec<String> = container.command.clone().unwrap_or_default();
    if command.is_empty() {
        // The agent image's entrypoint.
        command.push(AGENT_PATH_IN_IMAGE.to_owned());
    }
    command.extend(container.args.clone().unwrap_or_default());
    let program = command.remove(0);
    if !program.starts_with('/') {
        return Err(invalid(&field("command"), format!("{program:?}: the local runtime needs an absolute path (images have no PATH lookup)")));
    }
    let mut env = vec![(
        "PATH".to_owned(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
    )];
    for (env_index, var) in container.env.iter().flatten().enumerate() {
        match (&var.value, &var.value_from) {
            (_, Some(_)) => {
                return Err(invalid(
                    &field(&format!("env[{env_index}].valueFrom")),
                    "not supported by the local runtime".to_owned(),
                ))
            }
            (value, None) => env.push((var.name.clone(), value.clone().unwrap_or_default())),
        }
    }
    let mut binds = Vec::new();
    for (mount_index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let source = volumes.get(&mount.name).ok_or_else(|| {
            invalid(
                &field(&format!("volumeMounts[{mount_index}].name")),
                format!("no volume named {:?}", mount.name),
            )
        })?;
        if !mount.mount_path.starts_with('/') || mount.mount_path.split('/').any(|p| p == "..") {
            return Err(invalid(
                &field(&format!("volumeMounts[{mount_index}].mountPath")),
                format!(
                    "{:?} must be an absolute path without '..'",
                    mount.mount_path
                ),
            ));
        }
        binds.push((
            source.clone(),
            mount.mount_path.clone(),
            mount.read_only.unwrap_or(false),
        ));
    }
    let mut probes = Vec::new();
    for (name, probe, kind) in [
        ("startupProbe", &container.startup_probe, Kind::Startup),
        ("livenessProbe", &container.liveness_probe, Kind::Liveness),
        (
            "readinessProbe",
            &container.readiness_probe,
            Kind::Readiness,
        ),
    ] {
        if let Some(probe) = probe {
            probes.push(
                ProbeSpec::parse(probe, kind).map_err(|reason| invalid(&field(name), reason))?,
            );
        }
    }
    Ok(ContainerSpec {
        name: container.name.clone(),
        image,
        program,
        args: command,
        env,
        working_dir: container
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".to_owned()),
        binds,
        probes,
        manifest: container.clone(),
    })
}

/// The kubelet-style back-off entry of one container (client-go `flowcontrol.Backoff`).
#[derive(Clone, Copy, Debug)]
struct BackOff {
    current: Duration,
    last_update: Instant,
}

struct ContainerRun {
    spec: ContainerSpec,
    status: ContainerStatus,
    /// Index of the current (or last) instance, once one was started.
    instance: Option<u32>,
    pid: Option<i32>,
    back_off: Option<BackOff>,
    restart_at: Option<Instant>,
    oom_kills_before: u64,
    running_since: Option<Instant>,
    /// Set once a probe failure had the current instance stopped.
    killing: bool,
}

struct Exit {
    container: usize,
    instance: u32,
    code: i32,
    at: Instant,
    wall: Time,
}

struct Worker {
    shared: Arc<Shared>,
    pod_name: String,
    namespace: String,
    uid: String,
    dir: PathBuf,
    restart_policy: String,
    containers: Vec<ContainerRun>,
    sandbox_pid: Option<i32>,
    sandbox_ready: bool,
    history: Arc<Mutex<Vec<(Time, PodStatus)>>>,
    notify: watch::Sender<usize>,
    terminal: Option<&'static str>,
    /// The pod's terminationGracePeriodSeconds (spec time).
    termination_grace: Duration,
    /// What probe workers see of the containers.
    view: watch::Sender<PodView>,
    probe_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Kubelets identify their probes as `kube-probe/<major>.<minor>`.
const PROBE_USER_AGENT: &str = "kube-probe/1.35";

/// The kubelet never gives a container less than this to stop (`minimumGracePeriodInSeconds`).
const MINIMUM_GRACE: Duration = Duration::from_secs(2);

impl Worker {
    async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let (exits_tx, mut exits) = mpsc::unbounded_channel::<Exit>();
        let (probe_tx, mut probe_updates) = mpsc::unbounded_channel::<ProbeUpdate>();
        self.publish();
        if let Err(err) = self.start_sandbox() {
            for run in &mut self.containers {
                run.status.state = Some(waiting("CreatePodSandboxError", Some(err.to_string())));
            }
            self.publish();
        } else {
            self.publish();
            // Workers exist before the containers start, as the kubelet adds them in SyncPod.
            if let Err(err) = self.start_probe_workers(&probe_tx) {
                for run in &mut self.containers {
                    run.status.state =
                        Some(waiting("CreatePodSandboxError", Some(err.to_string())));
                }
                self.publish();
            } else {
                for index in 0..self.containers.len() {
                    self.start_instance(index, &exits_tx);
                }
                self.publish();
            }
        }
        loop {
            let next_restart = self.containers.iter().filter_map(|c| c.restart_at).min();
            tokio::select! {
                _ = &mut stop => break,
                Some(exit) = exits.recv() => {
                    self.on_exit(exit, &exits_tx);
                }
                Some(update) = probe_updates.recv() => {
                    self.on_probe(update);
                }
                _ = sleep_until(next_restart) => {
                    let now = Instant::now();
                    for index in 0..self.containers.len() {
                        if self.containers[index].restart_at.is_some_and(|at| at <= now) {
                            self.containers[index].restart_at = None;
                            self.start_instance(index, &exits_tx);
                        }
                    }
                    self.publish();
                }
            }
        }
        self.kill_everything().await;
    }

    fn group(&self, rest: &str) -> PathBuf {
        self.shared.cgroup(&Path::new(&self.uid).join(rest))
    }

    fn start_sandbox(&mut self) -> Result<(), RuntimeError> {
        let group = self.group("sandbox");
        self.shared.cgroups.create(&group)?;
        let procs = open_procs(&self.shared.cgroups.procs_files(&group))?;
        let command = sys::sandbox_command(sys::SandboxLaunch {
            agent: self
                .shared
                .agent_image
                .join(AGENT_PATH_IN_IMAGE.trim_start_matches('/')),
            hostname: self.pod_name.clone(),
            cgroup_procs: procs,
        })
        .map_err(|e| RuntimeError::io("prepare the pod sandbox", e))?;
        let child = self
            .shared
            .spawner
            .spawn(command)
            .map_err(|e| RuntimeError::io("start the pod sandbox", e))?;
        self.sandbox_pid = Some(child.id() as i32);
        // Reap it whenever it dies; its exit needs no handling beyond that.
        tokio::task::spawn_blocking(move || {
            let mut child = child;
            let _ = child.wait();
        });
        self.sandbox_ready = true;
        Ok(())
    }

    fn start_probe_workers(
        &mut self,
        updates: &mpsc::UnboundedSender<ProbeUpdate>,
    ) -> Result<(), RuntimeError> {
        if self.containers.iter().all(|c| c.spec.probes.is_empty()) {
            return Ok(());
        }
        let sandbox = self
            .sandbox_pid
            .ok_or_else(|| RuntimeError::io("start probes", std::io::Error::other("no sandbox")))?;
        let netns = Arc::new(
            std::fs::File::open(format!("/proc/{sandbox}/ns/net"))
                .map_err(|e| RuntimeError::io("open the pod's network namespace", e))?,
        );
        let shared = self.shared.clone();
        let spawner: Arc<
            dyn Fn(std::process::Command) -> std::io::Result<std::process::Child> + Send + Sync,
        > = Arc::new(move |command| shared.spawner.spawn(command));
        for (index, run) in self.containers.iter().enumerate() {
            for probe in &run.spec.probes {
                let context = WorkerContext {
                    container: index,
                    spec: run.spec.manifest.clone(),
                    env: run.spec.env.clone(),
                    netns: netns.clone(),
                    spawner: spawner.clone(),
                    time_scale: self.shared.config.time_scale,
                    restart_never: self.restart_policy == "Never",
                    user_agent: PROBE_USER_AGENT.to_owned(),
                    timings: self.shared.probe_timings.clone(),
                };
                self.probe_tasks.push(tokio::spawn(probe::run_worker(
                    context,
                    probe.clone(),
                    self.view.subscribe(),
                    updates.clone(),
                )));
            }
        }
        Ok(())
    }

    /// A probe result crossed its threshold for a container instance.
    fn on_probe(&mut self, update: ProbeUpdate) {
        let Some(run) = self.containers.get_mut(update.container) else {
            return;
        };
        let running = run
            .status
            .state
            .as_ref()
            .is_some_and(|s| s.running.is_some());
        if run.instance != Some(update.instance) || !running || self.terminal.is_some() {
            return;
        }
        match (update.kind, update.success) {
            (Kind::Startup, true) => {
                run.status.started = Some(true);
                if !run.spec.has_probe(Kind::Readiness) {
                    run.status.ready = true;
                }
            }
            (Kind::Readiness, ready) => {
                run.status.ready = ready && run.status.started == Some(true);
            }
            (Kind::Liveness | Kind::Startup, false) => {
                self.kill_container(update.container, update.kind)
            }
            (Kind::Liveness, true) => {}
        }
        self.publish();
    }

    /// Stops a container a probe found unhealthy: SIGTERM, then SIGKILL after the grace
    /// period (the probe's own, else the pod's, never below the kubelet's minimum).
    fn kill_container(&mut self, index: usize, kind: Kind) {
        let pod_grace = self.termination_grace;
        let scale = self.shared.config.time_scale;
        let run = &mut self.containers[index];
        let (Some(pid), Some(instance)) = (run.pid, run.instance) else {
            return;
        };
        if run.killing {
            return;
        }
        run.killing = true;
        let grace = run
            .spec
            .probes
            .iter()
            .find(|p| p.kind == kind)
            .and_then(|p| p.termination_grace)
            .unwrap_or(pod_grace)
            .max(MINIMUM_GRACE);
        sys::kill(pid, libc::SIGTERM);
        let name = run.spec.name.clone();
        let group = self.group(&format!("{name}-{instance}"));
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace.mul_f64(scale)).await;
            shared.cgroups.kill_all(&group);
        });
    }

    fn start_instance(&mut self, index: usize, exits: &mpsc::UnboundedSender<Exit>) {
        let instance = self.containers[index].instance.map_or(0, |i| i + 1);
        match self.spawn_instance(index, instance) {
            Ok(child) => {
                let pid = child.id() as i32;
                let run = &mut self.containers[index];
                run.instance = Some(instance);
                run.pid = Some(pid);
                let previous = run.status.state.take();
                if previous.as_ref().is_some_and(|s| s.terminated.is_some()) {
                    run.status.last_state = previous;
                }
                run.status.restart_count = instance as i32;
                run.status.container_id = Some(format!(
                    "podcheck://{}/{}/{instance}",
                    self.uid, run.spec.name
                ));
                run.status.image_id = format!(
                    "podcheck.local/images/{}",
                    self.shared
                        .agent_image
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("agent")
                );
                run.status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(now()),
                    }),
                    ..ContainerState::default()
                });
                // A new container's initial probe results: startup Unknown (not started),
                // readiness Failure (not ready); without those probes it is started and
                // ready at once.
                let started = !run.spec.has_probe(Kind::Startup);
                run.status.started = Some(started);
                run.status.ready = started && !run.spec.has_probe(Kind::Readiness);
                run.running_since = Some(Instant::now());
                run.killing = false;
                let exits = exits.clone();
                tokio::task::spawn_blocking(move || {
                    let mut child = child;
                    let code = match child.wait() {
                        Ok(status) => {
                            use std::os::unix::process::ExitStatusExt;
                            status
                                .code()
                                .unwrap_or_else(|| 128 + status.signal().unwrap_or(9))
                        }
                        Err(_) => 128 + libc::SIGKILL,
                    };
                    let _ = exits.send(Exit {
                        container: index,
                        instance,
                        code,
                        at: Instant::now(),
                        wall: now(),
                    });
                });
            }
            Err(err) => {
                let run = &mut self.containers[index];
                let reason = if run.spec.image == AGENT_IMAGE {
                    "RunContainerError"
                } else {
                    "ErrImageNeverPull"
                };
                run.status.state = Some(waiting(reason, Some(err.to_string())));
                run.status.ready = false;
                run.status.started = Some(false);
            }
        }
    }

    fn spawn_instance(
        &mut self,
        index: usize,
        instance: u32,
    ) -> Result<std::process::Child, RuntimeError> {
        let sandbox_pid = self.sandbox_pid.ok_or_else(|| {
            RuntimeError::io("start a container", std::io::Error::other("no sandbox"))
        })?;
        let spec = &self.containers[index].spec;
        if spec.image != AGENT_IMAGE {
            return Err(RuntimeError::io(
                format!("find image {:?}", spec.image),
                std::io::Error::other(format!(
                    "only {AGENT_IMAGE} is present on this node and imagePullPolicy cannot pull"
                )),
            ));
        }
        let layer = self
            .dir
            .join("containers")
            .join(&spec.name)
            .join(instance.to_string());
        let (upper, work, merged) = (
            layer.join("upper"),
            layer.join("work"),
            layer.join("merged"),
        );
        for dir in [&upper, &work, &merged] {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::io(format!("create {}", dir.display()), e))?;
        }
        let log_dir = self.dir.join("logs").join(&spec.name);
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| RuntimeError::io(format!("create {}", log_dir.display()), e))?;
        let log_path = log_dir.join(format!("{instance}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| RuntimeError::io(format!("create {}", log_path.display()), e))?;
        let group = self.group(&format!("{}-{instance}", spec.name));
        self.shared.cgroups.create(&group)?;
        self.containers[index].oom_kills_before = self.shared.cgroups.oom_kills(&group);
        let spec = &self.containers[index].spec;
        let command = sys::container_command(sys::ContainerLaunch {
            program: spec.program.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            sandbox_pid,
            cgroup_procs: open_procs(&self.shared.cgroups.procs_files(&group))?,
            image_root: self.shared.agent_image.clone(),
            upper,
            work,
            merged,
            binds: spec.binds.clone(),
            working_dir: spec.working_dir.clone(),
            log,
        })
        .map_err(|e| RuntimeError::io(format!("prepare container {}", spec.name), e))?;
        self.shared
            .spawner
            .spawn(command)
            .map_err(|e| RuntimeError::io(format!("start container {}", spec.name), e))
    }

    fn on_exit(&mut self, exit: Exit, exits: &mpsc::UnboundedSender<Exit>) {
        let config = self.shared.config.clone();
        let scale = |d: Duration| config.scaled(d);
        let kubelet = config.kubelet;
        let group = self.group(&format!(
            "{}-{}",
            self.containers[exit.container].spec.name, exit.instance
        ));
        let oom_killed = self.shared.cgroups.oom_kills(&group)
            > self.containers[exit.container].oom_kills_before;
        // Leftover processes of the instance die with it; then its cgroup goes, off the
        // worker, since the kernel may keep it busy for a moment.
        self.shared.cgroups.kill_all(&group);
        let cgroups = self.shared.cgroups.clone();
        tokio::task::spawn_blocking(move || cgroups.remove(&group));
        let run = &mut self.containers[exit.container];
        if run.instance != Some(exit.instance) {
            return;
        }
        run.pid = None;
        run.running_since = None;
        let started_at = run
            .status
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone());
        let reason = if oom_killed {
            "OOMKilled"
        } else if exit.code == 0 {
            "Completed"
        } else {
            "Error"
        };
        run.status.state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.code,
                reason: Some(reason.to_owned()),
                started_at,
                finished_at: Some(exit.wall.clone()),
                container_id: run.status.container_id.clone(),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        run.status.ready = false;
        run.status.started = Some(false);
        let restart = self.terminal.is_none()
            && match self.restart_policy.as_str() {
                "Always" => true,
                "OnFailure" => exit.code != 0,
                _ => false,
            };
        // Show the termination itself before any restart decision, as the kubelet does.
        self.publish();
        if !restart {
            return;
        }
        let run = &mut self.containers[exit.container];
        let expired = run.back_off.is_none_or(|b| {
            exit.at.saturating_duration_since(b.last_update) > scale(kubelet.back_off_reset_after)
        });
        if expired {
            run.back_off = Some(BackOff {
                current: kubelet.back_off_initial.min(kubelet.back_off_max),
                last_update: Instant::now(),
            });
            self.start_instance(exit.container, exits);
        } else if let Some(back_off) = run.back_off {
            let message = format!(
                "back-off {} restarting failed container={} pod={}_{}({})",
                go_duration(back_off.current),
                run.spec.name,
                self.pod_name,
                self.namespace,
                self.uid
            );
            let terminated = run.status.state.take();
            run.status.last_state = terminated;
            run.status.state = Some(waiting("CrashLoopBackOff", Some(message)));
            run.restart_at = Some(exit.at + scale(back_off.current));
            run.back_off = Some(BackOff {
                current: (back_off.current * 2).min(kubelet.back_off_max),
                last_update: exit.at + scale(back_off.current),
            });
        }
        self.publish();
    }

    /// Builds the pod status from the container states and records it if it changed.
    fn publish(&mut self) {
        let statuses: Vec<ContainerStatus> =
            self.containers.iter().map(|c| c.status.clone()).collect();
        let mut phase = status::phase(&statuses, &self.restart_policy);
        if let Some(terminal) = self.terminal {
            phase = terminal;
        } else if phase == "Succeeded" || phase == "Failed" {
            self.terminal = Some(phase);
            // A terminal pod's sandbox is torn down.
            self.tear_down_sandbox();
        }
        let stamp = now();
        let mut history = match self.history.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut conditions = status::conditions(&statuses, phase, self.sandbox_ready, &stamp);
        if let Some((_, previous)) = history.last() {
            status::carry_transition_times(
                &mut conditions,
                previous.conditions.as_deref().unwrap_or(&[]),
            );
        }
        self.view.send_replace(PodView {
            containers: self
                .containers
                .iter()
                .map(|c| ContainerView {
                    instance: c.instance,
                    running_since: c.running_since,
                    started: c.status.started == Some(true),
                    terminated: c
                        .status
                        .state
                        .as_ref()
                        .is_some_and(|s| s.terminated.is_some()),
                    pid: c.pid,
                })
                .collect(),
            terminal: self.terminal.is_some(),
        });
        let status = PodStatus {
            phase: Some(phase.to_owned()),
            conditions: Some(conditions),
            container_statuses: Some(statuses),
            host_ip: Some("127.0.0.1".to_owned()),
            qos_class: Some("BestEffort".to_owned()),
            start_time: history
                .first()
                .map(|(at, _)| at.clone())
                .or_else(|| Some(stamp.clone())),
            ..PodStatus::default()
        };
        if history.last().is_some_and(|(_, last)| *last == status) {
            return;
        }
        history.push((stamp, status));
        let count = history.len();
        drop(history);
        self.notify.send_replace(count);
    }

    fn tear_down_sandbox(&mut self) {
        if let Some(pid) = self.sandbox_pid.take() {
            sys::kill(pid, libc::SIGKILL);
        }
        let group = self.group("sandbox");
        self.shared.cgroups.kill_all(&group);
        self.sandbox_ready = false;
    }

    async fn kill_everything(&mut self) {
        for task in self.probe_tasks.drain(..) {
            task.abort();
        }
        self.tear_down_sandbox();
        for run in &mut self.containers {
            run.restart_at = None;
            if let Some(pid) = run.pid.take() {
                sys::kill(pid, libc::SIGKILL);
            }
        }
        let group = self.shared.cgroup(Path::new(&self.uid));
        self.shared.cgroups.kill_all(&group);
        // Wait (briefly) for the kernel to empty the groups before removing them.
        for _ in 0..200 {
            if self.shared.cgroups.pids(&group).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.shared.cgroups.remove(&group);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..ContainerState::default()
    }
}

fn open_procs(files: &[PathBuf]) -> Result<Vec<std::fs::File>, RuntimeError> {
    files
        .iter()
        .map(|f| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .map_err(|e| RuntimeError::io(format!("open {}", f.display()), e))
        })
        .collect()
}

/// Go's `time.Duration.String()` rounded to whole seconds, as the kubelet prints back-offs.
fn go_duration(spec: Duration) -> String {
    let secs = spec.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60),
    }
}
