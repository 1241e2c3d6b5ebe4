//! The pod worker: carries out the kubelet's decisions with real processes, signals,
//! cgroups and a sandbox, and feeds what happens back to them.

use super::ephemeral::Ephemerals;
use super::manifest::ContainerSpec;
use super::{now, ObjectStore, PodUpdate};
use crate::errors::RuntimeError;
use crate::hook::{self, HookContext};
use crate::image::AGENT_PATH_IN_IMAGE;
use crate::kubelet::{self, ContainerKind, Effect, Event, Exit, PodLifecycle, RestartPolicy};
use crate::probe::{self, PodView, ProbeUpdate, WorkerContext, PROBE_USER_AGENT};
use crate::{sys, Shared, AGENT_IMAGE};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How the pod is named: its hostname, and as the kubelet names it in messages.
pub(super) struct PodNames {
    pub name: String,
    /// `format.Pod`: `name_namespace(uid)`.
    pub display: String,
}

/// A postStart hook's result for one container instance.
struct PostStartResult {
    container: usize,
    instance: u32,
    result: Result<(), String>,
}

/// A container instance's end, as its waiter thread saw it.
struct ProcessExit {
    container: usize,
    instance: u32,
    code: i32,
    at: Instant,
    wall: Time,
}

pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    names: PodNames,
    /// `shareProcessNamespace`: containers join the sandbox's PID namespace.
    share_process_namespace: bool,
    uid: String,
    dir: PathBuf,
    pub(super) specs: Vec<ContainerSpec>,
    lifecycle: PodLifecycle,
    /// Each container's OOM kill count before its current instance started.
    oom_kills_before: Vec<u64>,
    sandbox_pid: Option<i32>,
    /// The sandbox's network namespace, which probes and hooks connect from.
    netns: Option<Arc<File>>,
    store: Arc<Mutex<ObjectStore>>,
    /// What probe workers see of the containers.
    view: watch::Sender<PodView>,
    /// Which containers' kills are not over ([`PodLifecycle::holding`]): what a sidecar's
    /// kill waits on for its turn.
    holding: watch::Sender<Vec<bool>>,
    probe_tasks: Vec<JoinHandle<()>>,
    /// Kills under way (preStop, SIGTERM, SIGKILL), by container and instance.
    kills: HashMap<(usize, u32), JoinHandle<()>>,
    /// postStart hooks under way.
    post_starts: Vec<JoinHandle<()>>,
    post_start_results: mpsc::UnboundedSender<PostStartResult>,
    post_start_receiver: Option<mpsc::UnboundedReceiver<PostStartResult>>,
    /// Kills whose preStop hook returned (or was no longer waited for).
    pre_stops_done: mpsc::UnboundedSender<(usize, u32)>,
    pre_stops_receiver: Option<mpsc::UnboundedReceiver<(usize, u32)>>,
    pub(super) ephemerals: Ephemerals,
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        names: PodNames,
        share_process_namespace: bool,
        dir: PathBuf,
        specs: Vec<ContainerSpec>,
        lifecycle: PodLifecycle,
        store: Arc<Mutex<ObjectStore>>,
    ) -> Worker {
        let (post_start_results, receiver) = mpsc::unbounded_channel();
        let (pre_stops_done, pre_stops_receiver) = mpsc::unbounded_channel();
        Worker {
            shared,
            names,
            share_process_namespace,
            uid: lifecycle.uid().to_owned(),
            dir,
            oom_kills_before: vec![0; specs.len()],
            specs,
            lifecycle,
            sandbox_pid: None,
            netns: None,
            store,
            view: watch::channel(PodView::default()).0,
            holding: watch::channel(Vec::new()).0,
            probe_tasks: Vec::new(),
            kills: HashMap::new(),
            post_starts: Vec::new(),
            post_start_results,
            post_start_receiver: Some(receiver),
            pre_stops_done,
            pre_stops_receiver: Some(pre_stops_receiver),
            ephemerals: Ephemerals::new(),
        }
    }

    /// Runs the pod until `stop`; `updates` carries what the kubelet's watch of the pod
    /// object sees (each `deletionGracePeriodSeconds`, each ephemeral container added).
    pub async fn run(
        mut self,
        mut stop: tokio::sync::oneshot::Receiver<()>,
        mut updates: mpsc::UnboundedReceiver<PodUpdate>,
    ) {
        let (exits_tx, mut exits) = mpsc::unbounded_channel::<ProcessExit>();
        let (probe_tx, mut probe_updates) = mpsc::unbounded_channel::<ProbeUpdate>();
        let (Some(mut post_start_results), Some(mut pre_stops_done), Some(mut ephemeral_exits)) = (
            self.post_start_receiver.take(),
            self.pre_stops_receiver.take(),
            self.ephemerals.take_exits(),
        ) else {
            return;
        };
        self.publish();
        let setup = match self.start_sandbox() {
            Err(err) => Event::SandboxFailed {
                message: err.to_string(),
            },
            Ok(()) => {
                self.apply(Event::SandboxStarted, &exits_tx);
                // Workers exist before the containers start, as the kubelet adds them in
                // SyncPod.
                match self.start_probe_workers(&probe_tx) {
                    Err(err) => Event::SandboxFailed {
                        message: err.to_string(),
                    },
                    Ok(()) => Event::SandboxReady,
                }
            }
        };
        self.apply(setup, &exits_tx);
        loop {
            let next_restart = self.lifecycle.next_restart();
            tokio::select! {
                _ = &mut stop => break,
                Some(exit) = exits.recv() => {
                    let exit = self.reap(exit);
                    self.apply(Event::Exited(exit), &exits_tx);
                }
                Some(update) = probe_updates.recv() => {
                    self.apply(Event::Probe(update), &exits_tx);
                }
                Some(done) = post_start_results.recv() => {
                    let event = Event::PostStartDone {
                        container: done.container,
                        instance: done.instance,
                        result: done.result,
                    };
                    self.apply(event, &exits_tx);
                }
                Some((container, instance)) = pre_stops_done.recv() => {
                    self.apply(Event::PreStopDone { container, instance }, &exits_tx);
                }
                Some(update) = updates.recv() => {
                    let event = match update {
                        PodUpdate::Deleted { grace_seconds } => Event::Deleted { grace_seconds },
                        PodUpdate::EphemeralContainerAdded(added) => self.add_ephemeral(*added),
                    };
                    self.apply(event, &exits_tx);
                }
                Some(exit) = ephemeral_exits.recv() => {
                    let event = self.reap_ephemeral(exit);
                    self.apply(event, &exits_tx);
                }
                _ = sleep_until(next_restart) => {
                    self.apply(Event::RestartsDue, &exits_tx);
                }
            }
        }
        self.kill_everything().await;
    }

    /// Lets the kubelet's decisions take in `event`, and carries out what they decide.
    fn apply(&mut self, event: Event, exits: &mpsc::UnboundedSender<ProcessExit>) {
        let effects = self.lifecycle.handle(event, Instant::now());
        self.note_holding();
        for effect in effects {
            match effect {
                Effect::Publish => self.publish(),
                Effect::Start {
                    container,
                    instance,
                } => self.start_instance(container, instance, exits),
                Effect::Kill {
                    container,
                    instance,
                    pid,
                    grace_seconds,
                    after,
                } => self.kill_instance(container, instance, pid, grace_seconds, after),
                Effect::RunPostStart {
                    container,
                    instance,
                    pid,
                } => self.run_post_start(container, instance, pid),
                Effect::Ephemeral(effect) => {
                    if let Some(event) = self.apply_ephemeral(effect) {
                        self.apply(event, exits);
                    }
                }
            }
        }
        self.note_holding();
    }

    /// Lets kills waiting for their turn see which kills are over.
    fn note_holding(&self) {
        let holding = self.lifecycle.holding();
        self.holding.send_if_modified(|current| {
            let changed = *current != holding;
            *current = holding;
            changed
        });
    }

    pub(super) fn group(&self, rest: &str) -> PathBuf {
        self.shared.cgroup(&Path::new(&self.uid).join(rest))
    }

    fn instance_group(&self, container: usize, instance: u32) -> PathBuf {
        self.group(&format!("{}-{instance}", self.specs[container].name))
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
            hostname: self.names.name.clone(),
            cgroup_procs: procs,
        })
        .map_err(|e| RuntimeError::io("prepare the pod sandbox", e))?;
        let child = self
            .shared
            .spawner
            .spawn(command)
            .map_err(|e| RuntimeError::io("start the pod sandbox", e))?;
        let pid = child.id() as i32;
        self.sandbox_pid = Some(pid);
        // Reap it whenever it dies; its exit needs no handling beyond that.
        tokio::task::spawn_blocking(move || {
            let mut child = child;
            let _ = child.wait();
        });
        let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .map_err(|e| RuntimeError::io("open the pod's network namespace", e))?;
        self.netns = Some(Arc::new(netns));
        Ok(())
    }

    fn spawner(&self) -> sys::SpawnFn {
        let shared = self.shared.clone();
        Arc::new(move |command| shared.spawner.spawn(command))
    }

    fn start_probe_workers(
        &mut self,
        updates: &mpsc::UnboundedSender<ProbeUpdate>,
    ) -> Result<(), RuntimeError> {
        if self.specs.iter().all(|c| c.probes.is_empty()) {
            return Ok(());
        }
        let netns = self.netns.clone().ok_or(RuntimeError::NoSandbox {
            action: "start probes",
        })?;
        let spawner = self.spawner();
        for (index, spec) in self.specs.iter().enumerate() {
            for probe in &spec.probes {
                let context = WorkerContext {
                    container: index,
                    spec: spec.manifest.clone(),
                    env: spec.env.clone(),
                    netns: netns.clone(),
                    spawner: spawner.clone(),
                    time_scale: self.shared.config.time_scale,
                    // A sidecar restarts whatever the pod's policy.
                    restart_never: self.lifecycle.restart_policy() == RestartPolicy::Never
                        && spec.kind != ContainerKind::Sidecar,
                    user_agent: PROBE_USER_AGENT.to_owned(),
                    timings: self.shared.probe_timings.clone(),
                    pod: self.uid.clone(),
                    slips: self.shared.slips.clone(),
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

    /// What a hook of this instance runs with; None once the sandbox is gone.
    fn hook_context(&self, container: usize, instance: u32, pid: i32) -> Option<HookContext> {
        let spec = &self.specs[container];
        Some(HookContext {
            container: spec.manifest.clone(),
            pod: self.names.display.clone(),
            env: spec.env.clone(),
            pid,
            cgroup_procs: self
                .shared
                .cgroups
                .procs_files(&self.instance_group(container, instance)),
            netns: self.netns.clone()?,
            spawner: self.spawner(),
            time_scale: self.shared.config.time_scale,
        })
    }

    /// `killContainer`: the preStop hook if there is time for it, bounded by the grace
    /// period; then, for a sidecar, the wait for its turn (`waitForTurn`: until the kills
    /// of the containers it outlives are over, within the grace left); then SIGTERM to the
    /// instance's process; then, after the grace period left (at least the minimum),
    /// SIGKILL to whatever still runs in its cgroup. Replaces a kill of the same instance
    /// under way.
    fn kill_instance(
        &mut self,
        container: usize,
        instance: u32,
        pid: i32,
        grace_seconds: i64,
        after: Vec<usize>,
    ) {
        if let Some(previous) = self.kills.remove(&(container, instance)) {
            previous.abort();
        }
        let group = self.instance_group(container, instance);
        let shared = self.shared.clone();
        let scale = self.shared.config.time_scale;
        self.kills.retain(|_, task| !task.is_finished());
        let pre_stop = self.specs[container]
            .pre_stop
            .clone()
            .filter(|_| kubelet::runs_pre_stop(true, grace_seconds));
        let context = self.hook_context(container, instance, pid);
        let wall =
            move |secs: i64| Duration::from_secs(u64::try_from(secs).unwrap_or(0)).mul_f64(scale);
        let done = self.pre_stops_done.clone();
        let mut holding = self.holding.subscribe();
        let task = tokio::spawn(async move {
            let mut spent = None;
            if let Some(handler) = pre_stop {
                let began = Instant::now();
                // executePreStopHook waits for the hook at most the grace period; a failed
                // hook (FailedPreStopHook) does not stop the kill. The wait goes on even
                // if the container ends meanwhile.
                if let Some(context) = context {
                    let hook = hook::run(&handler, &context);
                    let _ = tokio::time::timeout(wall(grace_seconds), hook).await;
                }
                spent = Some(began.elapsed().div_f64(scale));
                let _ = done.send((container, instance));
            }
            let mut turn = None;
            let left = kubelet::grace_left(grace_seconds, spent);
            if !after.is_empty() && left > 0 {
                let began = Instant::now();
                let over = |holding: &Vec<bool>| {
                    after
                        .iter()
                        .all(|c| !holding.get(*c).copied().unwrap_or(false))
                };
                let _ = tokio::time::timeout(wall(left), holding.wait_for(over)).await;
                turn = Some(began.elapsed().div_f64(scale));
            }
            let timeout = kubelet::stop_timeout(grace_seconds, spent, turn);
            // The process may have ended meanwhile: signal it only while it is still in
            // its cgroup, so that a reused pid is never hit.
            if shared.cgroups.pids(&group).contains(&pid) {
                sys::kill(pid, libc::SIGTERM);
            }
            tokio::time::sleep(wall(timeout)).await;
            shared.cgroups.kill_all(&group);
        });
        self.kills.insert((container, instance), task);
    }

    /// Runs the instance's postStart hook beside its process; the result comes back as
    /// [`Event::PostStartDone`].
    fn run_post_start(&mut self, container: usize, instance: u32, pid: i32) {
        let handler = self.specs[container].post_start.clone();
        let context = self.hook_context(container, instance, pid);
        let results = self.post_start_results.clone();
        self.post_starts.push(tokio::spawn(async move {
            let result = match (handler, context) {
                (Some(handler), Some(context)) => hook::run(&handler, &context).await,
                _ => Err("PostStart handler: the pod sandbox is gone".to_owned()),
            };
            let _ = results.send(PostStartResult {
                container,
                instance,
                result,
            });
        }));
        self.post_starts.retain(|task| !task.is_finished());
    }

    fn start_instance(
        &mut self,
        container: usize,
        instance: u32,
        exits: &mpsc::UnboundedSender<ProcessExit>,
    ) {
        let child = match self.spawn_instance(container, instance) {
            Ok(child) => child,
            Err(err) => {
                let message = err.to_string();
                self.apply(Event::StartFailed { container, message }, exits);
                return;
            }
        };
        let started = Event::Started {
            container,
            instance,
            pid: child.id() as i32,
            wall: now(),
            at: Instant::now(),
        };
        self.apply(started, exits);
        let exits = exits.clone();
        tokio::task::spawn_blocking(move || {
            let code = wait_code(child);
            let _ = exits.send(ProcessExit {
                container,
                instance,
                code,
                at: Instant::now(),
                wall: now(),
            });
        });
    }

    fn spawn_instance(
        &mut self,
        container: usize,
        instance: u32,
    ) -> Result<std::process::Child, RuntimeError> {
        let group = self.instance_group(container, instance);
        let pid_namespace = self.pod_pid_namespace()?;
        let (child, oom_kills_before) =
            self.spawn_container(&self.specs[container], instance, &group, pid_namespace)?;
        self.oom_kills_before[container] = oom_kills_before;
        Ok(child)
    }

    /// The PID namespace of a container without a target: the CRI's NamespaceMode POD
    /// (the sandbox's) with shareProcessNamespace, else CONTAINER (a new one).
    pub(super) fn pod_pid_namespace(&self) -> Result<sys::PidNamespace, RuntimeError> {
        let sandbox_pid = self.sandbox_pid.ok_or(RuntimeError::NoSandbox {
            action: "start a container",
        })?;
        match self.share_process_namespace {
            true => sys::PidNamespace::of(sandbox_pid)
                .map_err(|e| RuntimeError::io("open the pod's PID namespace", e)),
            false => Ok(sys::PidNamespace::New),
        }
    }

    /// Starts instance `instance` of `spec` in the cgroup `group` and `pid_namespace`: its
    /// writable layer, its log, its process. Returns the process and the group's OOM kill
    /// count before it started.
    pub(super) fn spawn_container(
        &self,
        spec: &ContainerSpec,
        instance: u32,
        group: &Path,
        pid_namespace: sys::PidNamespace,
    ) -> Result<(std::process::Child, u64), RuntimeError> {
        let sandbox_pid = self.sandbox_pid.ok_or(RuntimeError::NoSandbox {
            action: "start a container",
        })?;
        if spec.image != AGENT_IMAGE {
            return Err(RuntimeError::ImageNotPresent {
                image: spec.image.clone(),
            });
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
        self.shared.cgroups.create(group)?;
        let oom_kills_before = self.shared.cgroups.oom_kills(group);
        let command = sys::container_command(sys::ContainerLaunch {
            program: spec.program.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            sandbox_pid,
            cgroup_procs: open_procs(&self.shared.cgroups.procs_files(group))?,
            image_root: self.shared.agent_image.clone(),
            upper,
            work,
            merged,
            binds: spec.binds.clone(),
            working_dir: spec.working_dir.clone(),
            log,
            pid_namespace,
        })
        .map_err(|e| RuntimeError::io(format!("prepare container {}", spec.name), e))?;
        let child = self
            .shared
            .spawner
            .spawn(command)
            .map_err(|e| RuntimeError::io(format!("start container {}", spec.name), e))?;
        Ok((child, oom_kills_before))
    }

    /// Cleans up after an instance's process: leftover processes die with it, then its
    /// cgroup goes (off the worker, since the kernel may keep it busy for a moment).
    /// Whether the OOM killer ended it is read first.
    fn reap(&mut self, exit: ProcessExit) -> Exit {
        // A kill under way goes on: its preStop wait is not cut short by the exit.
        let group = self.instance_group(exit.container, exit.instance);
        let oom_killed =
            self.shared.cgroups.oom_kills(&group) > self.oom_kills_before[exit.container];
        self.shared.cgroups.kill_all(&group);
        let cgroups = self.shared.cgroups.clone();
        tokio::task::spawn_blocking(move || cgroups.remove(&group));
        Exit {
            container: exit.container,
            instance: exit.instance,
            code: exit.code,
            oom_killed,
            at: exit.at,
            wall: exit.wall,
        }
    }

    /// Records the pod's status if it changed, after tearing down the sandbox of a pod
    /// that just became terminal.
    ///
    /// Once a deleted pod has terminated, the kubelet deletes the object itself, with no
    /// grace period (the status manager's `syncPod` after `canBeDeleted`).
    fn publish(&mut self) {
        if self.lifecycle.settle() {
            self.tear_down_sandbox();
        }
        let stamp = now();
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let status = self
            .lifecycle
            .pod_status(&stamp, store.first_written(), store.status());
        self.view.send_replace(self.lifecycle.probe_view());
        store.write_status(stamp, status);
        if self.lifecycle.final_delete_due() {
            // Refused only if the object is already gone, which is what it asks for.
            let _ = store.delete(now(), Some(0), true);
        }
    }

    fn tear_down_sandbox(&mut self) {
        if let Some(pid) = self.sandbox_pid.take() {
            sys::kill(pid, libc::SIGKILL);
        }
        let group = self.group("sandbox");
        self.shared.cgroups.kill_all(&group);
    }

    async fn kill_everything(&mut self) {
        for task in self
            .probe_tasks
            .drain(..)
            .chain(self.post_starts.drain(..))
            .chain(self.kills.drain().map(|(_, task)| task))
            .chain(self.ephemerals.drain_kills())
        {
            task.abort();
        }
        self.tear_down_sandbox();
        for pid in self.lifecycle.stop_all() {
            sys::kill(pid, libc::SIGKILL);
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

/// The exit code a container status shows for a child: its own, or 128 + the signal that
/// ended it.
pub(super) fn wait_code(mut child: std::process::Child) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match child.wait() {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(9)),
        Err(_) => 128 + libc::SIGKILL,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
