//! The pod worker: carries out the kubelet's decisions with real processes, signals,
//! cgroups and a sandbox, and feeds what happens back to them.

use super::manifest::ContainerSpec;
use super::now;
use crate::errors::RuntimeError;
use crate::image::AGENT_PATH_IN_IMAGE;
use crate::kubelet::{Effect, Event, Exit, PodLifecycle, RestartPolicy};
use crate::probe::{self, PodView, ProbeUpdate, WorkerContext, PROBE_USER_AGENT};
use crate::{sys, Shared, AGENT_IMAGE};
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Where the pod's statuses go: its history, and a counter that changes with it.
pub(super) struct StatusLog {
    pub history: Arc<Mutex<Vec<(Time, PodStatus)>>>,
    pub notify: watch::Sender<usize>,
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
    shared: Arc<Shared>,
    pod_name: String,
    uid: String,
    dir: PathBuf,
    specs: Vec<ContainerSpec>,
    lifecycle: PodLifecycle,
    /// Each container's OOM kill count before its current instance started.
    oom_kills_before: Vec<u64>,
    sandbox_pid: Option<i32>,
    statuses: StatusLog,
    /// What probe workers see of the containers.
    view: watch::Sender<PodView>,
    probe_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        pod_name: String,
        dir: PathBuf,
        specs: Vec<ContainerSpec>,
        lifecycle: PodLifecycle,
        statuses: StatusLog,
    ) -> Worker {
        Worker {
            shared,
            pod_name,
            uid: lifecycle.uid().to_owned(),
            dir,
            oom_kills_before: vec![0; specs.len()],
            specs,
            lifecycle,
            sandbox_pid: None,
            statuses,
            view: watch::channel(PodView::default()).0,
            probe_tasks: Vec::new(),
        }
    }

    pub async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let (exits_tx, mut exits) = mpsc::unbounded_channel::<ProcessExit>();
        let (probe_tx, mut probe_updates) = mpsc::unbounded_channel::<ProbeUpdate>();
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
                _ = sleep_until(next_restart) => {
                    self.apply(Event::RestartsDue, &exits_tx);
                }
            }
        }
        self.kill_everything().await;
    }

    /// Lets the kubelet's decisions take in `event`, and carries out what they decide.
    fn apply(&mut self, event: Event, exits: &mpsc::UnboundedSender<ProcessExit>) {
        for effect in self.lifecycle.handle(event, Instant::now()) {
            match effect {
                Effect::Publish => self.publish(),
                Effect::Start {
                    container,
                    instance,
                } => self.start_instance(container, instance, exits),
                Effect::Stop {
                    container,
                    instance,
                    pid,
                    grace,
                } => self.stop_instance(container, instance, pid, grace),
            }
        }
    }

    fn group(&self, rest: &str) -> PathBuf {
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
        Ok(())
    }

    fn start_probe_workers(
        &mut self,
        updates: &mpsc::UnboundedSender<ProbeUpdate>,
    ) -> Result<(), RuntimeError> {
        if self.specs.iter().all(|c| c.probes.is_empty()) {
            return Ok(());
        }
        let sandbox = self.sandbox_pid.ok_or(RuntimeError::NoSandbox {
            action: "start probes",
        })?;
        let netns = Arc::new(
            std::fs::File::open(format!("/proc/{sandbox}/ns/net"))
                .map_err(|e| RuntimeError::io("open the pod's network namespace", e))?,
        );
        let shared = self.shared.clone();
        let spawner: Arc<
            dyn Fn(std::process::Command) -> std::io::Result<std::process::Child> + Send + Sync,
        > = Arc::new(move |command| shared.spawner.spawn(command));
        for (index, spec) in self.specs.iter().enumerate() {
            for probe in &spec.probes {
                let context = WorkerContext {
                    container: index,
                    spec: spec.manifest.clone(),
                    env: spec.env.clone(),
                    netns: netns.clone(),
                    spawner: spawner.clone(),
                    time_scale: self.shared.config.time_scale,
                    restart_never: self.lifecycle.restart_policy() == RestartPolicy::Never,
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

    /// SIGTERM now; whatever still runs of the instance is killed after `grace` (wall).
    fn stop_instance(&mut self, container: usize, instance: u32, pid: i32, grace: Duration) {
        sys::kill(pid, libc::SIGTERM);
        let group = self.instance_group(container, instance);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            shared.cgroups.kill_all(&group);
        });
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
        let sandbox_pid = self.sandbox_pid.ok_or(RuntimeError::NoSandbox {
            action: "start a container",
        })?;
        let spec = &self.specs[container];
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
        let group = self.instance_group(container, instance);
        self.shared.cgroups.create(&group)?;
        self.oom_kills_before[container] = self.shared.cgroups.oom_kills(&group);
        let spec = &self.specs[container];
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

    /// Cleans up after an instance's process: leftover processes die with it, then its
    /// cgroup goes (off the worker, since the kernel may keep it busy for a moment).
    /// Whether the OOM killer ended it is read first.
    fn reap(&mut self, exit: ProcessExit) -> Exit {
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
    fn publish(&mut self) {
        if self.lifecycle.settle() {
            self.tear_down_sandbox();
        }
        let stamp = now();
        let mut history = match self.statuses.history.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        let status = self.lifecycle.pod_status(
            &stamp,
            history.first().map(|(at, _)| at),
            history.last().map(|(_, status)| status),
        );
        self.view.send_replace(self.lifecycle.probe_view());
        if history.last().is_some_and(|(_, last)| *last == status) {
            return;
        }
        history.push((stamp, status));
        let count = history.len();
        drop(history);
        self.statuses.notify.send_replace(count);
    }

    fn tear_down_sandbox(&mut self) {
        if let Some(pid) = self.sandbox_pid.take() {
            sys::kill(pid, libc::SIGKILL);
        }
        let group = self.group("sandbox");
        self.shared.cgroups.kill_all(&group);
    }

    async fn kill_everything(&mut self) {
        for task in self.probe_tasks.drain(..) {
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
