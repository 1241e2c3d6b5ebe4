//! Any Kubernetes cluster a kubeconfig reaches, through the API server: the target that
//! certifies real clusters and kubelet implementations.
//!
//! A run owns one namespace ([`namespace`]) and creates everything in it; the pod's state
//! comes from a watch, ordered by the API server, and its events from a watch of core/v1
//! Events ([`convert`]). Before any case, the target learns what the cluster is
//! ([`node`]: versions, the nodes' kubelet configuration) and runs a pre-flight pod
//! ([`preflight`]) that proves the agent image runs there.

mod actions;
pub mod convert;
pub mod namespace;
pub mod node;
pub mod preflight;
mod setup;

use super::{Capabilities, PodRef, Target, TargetError, TargetOptions};
use crate::compile::compile;
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{future, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use node::{ClusterInfo, ConfigSource, Placement};
use podcheck_oracle::scenario::{FaultAction, KubeletParams};
use podcheck_oracle::{Observation, TimingProfile};
use setup::{check_permissions, client_for, learn_nodes, read_kubelet_config};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Least tolerance on a cluster. Status time stamps have whole seconds (up to 1 s early);
/// the node's clock is not the harness's (NTP keeps them within a fraction of a second);
/// a pod's first start waits for the scheduler, the sandbox and the image check (a few
/// seconds on a busy node); the watch adds its own latency.
const MIN_TOLERANCE_MS: u64 = 5000;
/// How many cases run at once unless `--jobs` says otherwise: a cluster runs many pods.
const DEFAULT_CONCURRENCY: usize = 16;
/// Longest wait for one API call during set-up and clean-up.
pub(super) const API_TIMEOUT: Duration = Duration::from_secs(20);
/// How many nodes get a pre-flight pod.
const MAX_PREFLIGHT_NODES: usize = 64;
/// How long the pre-flight pod may take to run: a first pull of the agent image.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long clean-up waits for the namespace to disappear.
const NAMESPACE_GONE_TIMEOUT: Duration = Duration::from_secs(120);
/// The pull policy unless `--image-pull-policy` says otherwise: a tag loaded into the
/// nodes is used as it is, and an image in a registry is pulled once.
pub const DEFAULT_PULL_POLICY: &str = "IfNotPresent";

pub struct KubeTarget {
    client: Client,
    options: TargetOptions,
    run_id: String,
    namespace: String,
    image: String,
    pull_policy: String,
    cluster: ClusterInfo,
    counter: AtomicU64,
    lease: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// An API error as a target error, naming what was being done.
fn api_error(action: impl Into<String>, error: kube::Error) -> TargetError {
    let action = action.into();
    match error {
        kube::Error::Api(status) => TargetError::Api {
            action,
            code: status.code,
            reason: status.reason.clone(),
            message: status.message.clone(),
        },
        other => TargetError::Kube {
            action,
            source: Box::new(other),
        },
    }
}

/// A call whose object may already be gone: 404 is no error, just nothing (None).
fn unless_gone<T>(result: Result<T, TargetError>) -> Result<Option<T>, TargetError> {
    match result {
        Err(TargetError::Api { code: 404, .. }) => Ok(None),
        other => other.map(Some),
    }
}

/// Deletion at once, for removing what the run made (never a fault action).
fn delete_now() -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::background()
    }
}

pub(super) async fn within<T>(
    action: &str,
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, TargetError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(|e| api_error(action, e)),
        Err(_) => Err(TargetError::CommandTimedOut {
            command: action.to_owned(),
            timeout,
        }),
    }
}

impl KubeTarget {
    /// Connects, checks permissions, learns the cluster, removes dead runs' namespaces,
    /// creates this run's and runs the pre-flight pod. Any failure is an error before the
    /// first case, and leaves nothing behind.
    pub async fn new(
        context: Option<&str>,
        options: &TargetOptions,
    ) -> Result<KubeTarget, TargetError> {
        let (client, context, server) = client_for(context).await?;
        let version = within(
            "reach the API server",
            API_TIMEOUT,
            client.apiserver_version(),
        )
        .await
        .map_err(|e| {
            TargetError::Setup(format!(
                "cannot reach the API server of context {context:?} at {server}: {}",
                crate::errors::describe(&e)
            ))
        })?;
        check_permissions(&client, &context).await?;
        let option = match &options.kubelet_config {
            Some(path) => Some((path.clone(), read_kubelet_config(path)?)),
            None => None,
        };
        // Where the nodes cannot be listed, the API server's version stands for theirs.
        let assumed = match &option {
            Some((path, config)) => node::kubelet_params(config, &version.git_version)
                .map_err(|e| TargetError::Setup(format!("{}: {e}", path.display())))?,
            None => node::kubelet_params(&serde_json::Value::Null, &version.git_version)
                .unwrap_or_default(),
        };
        let (nodes, nodes_unlisted) = learn_nodes(&client, option.as_ref(), assumed).await?;
        let cluster = ClusterInfo {
            context,
            server,
            server_version: version.git_version,
            nodes,
            nodes_unlisted,
            assumed_kubelet: assumed,
        };
        let now = Timestamp::now();
        let run_id = namespace::run_id(now, std::process::id());
        let target = KubeTarget {
            namespace: namespace::namespace_name(&run_id),
            client,
            options: options.clone(),
            run_id,
            image: options
                .agent_image
                .clone()
                .unwrap_or_else(|| crate::image::AGENT_IMAGE.to_owned()),
            pull_policy: options
                .image_pull_policy
                .clone()
                .unwrap_or_else(|| DEFAULT_PULL_POLICY.to_owned()),
            cluster,
            counter: AtomicU64::new(0),
            lease: Mutex::new(None),
        };
        target.remove_stale_namespaces().await;
        // From the namespace on, the run owns something: an interruption cleans it up.
        let owned = async {
            target.create_namespace(now).await?;
            target.preflight().await
        };
        let outcome = tokio::select! {
            outcome = owned => outcome,
            signal = crate::interrupt::interrupted() => Err(TargetError::Interrupted(signal)),
        };
        if let Err(err) = outcome {
            let _ = target.cleanup().await;
            return Err(err);
        }
        Ok(target)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    /// Namespaces of runs that were killed before they could clean up.
    async fn remove_stale_namespaces(&self) {
        let params = ListParams::default().labels(&namespace::managed_selector());
        let Ok(list) = within(
            "list namespaces",
            API_TIMEOUT,
            self.namespaces().list(&params),
        )
        .await
        else {
            return;
        };
        let now = Timestamp::now();
        for ns in list.items {
            let Some(name) = ns.metadata.name.clone() else {
                continue;
            };
            if let Some(reason) = namespace::stale_reason(&ns, &self.run_id, now) {
                eprintln!("removing namespace {name} of an earlier run: {reason}");
                let _ = within(
                    "delete a stale namespace",
                    API_TIMEOUT,
                    self.namespaces().delete(&name, &DeleteParams::background()),
                )
                .await;
            }
        }
    }

    async fn create_namespace(&self, now: Timestamp) -> Result<(), TargetError> {
        let object = namespace::namespace(&self.run_id, env!("CARGO_PKG_VERSION"), now);
        within(
            &format!("create namespace {}", self.namespace),
            API_TIMEOUT,
            self.namespaces().create(&PostParams::default(), &object),
        )
        .await?;
        let client = self.client.clone();
        let name = self.namespace.clone();
        let renewal = tokio::spawn(async move {
            let namespaces: Api<Namespace> = Api::all(client);
            loop {
                tokio::time::sleep(namespace::LEASE_RENEWAL).await;
                let patch = Patch::Merge(namespace::lease_patch(Timestamp::now()));
                let _ = namespaces
                    .patch(&name, &PatchParams::default(), &patch)
                    .await;
            }
        });
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(renewal);
        Ok(())
    }

    /// The manifest as this cluster runs it: in the run's namespace, under a name unique in
    /// the run, labelled with the run, with the chosen pull policy, on a node with the
    /// kubelet configuration the case needs.
    fn prepare(&self, mut pod: Pod, placement: &Placement) -> Pod {
        let base = pod
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| "pod".to_owned());
        let suffix = format!("-{}", self.counter.fetch_add(1, Ordering::Relaxed));
        let keep = base.len().min(63 - suffix.len());
        let name = format!("{}{suffix}", base[..keep].trim_end_matches('-'));
        pod.metadata.name = Some(name);
        pod.metadata.namespace = Some(self.namespace.clone());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(namespace::RUN_LABEL.to_owned(), self.run_id.clone());
        if let Some(spec) = pod.spec.as_mut() {
            for container in &mut spec.containers {
                container.image_pull_policy = Some(self.pull_policy.clone());
            }
            if let Placement::Node(node) = placement {
                spec.node_selector
                    .get_or_insert_with(Default::default)
                    .insert("kubernetes.io/hostname".to_owned(), node.clone());
            }
        }
        pod
    }

    async fn submit(&self, pod: &Pod) -> Result<(PodRef, Pod), TargetError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let created_at = Time(Timestamp::now());
        let created = self
            .pods()
            .create(&PostParams::default(), pod)
            .await
            .map_err(|e| match e {
                // Invalid or undecodable: the API server refuses the pod itself. A policy
                // of the cluster's (an admission webhook, Pod Security) refuses it too, but
                // says nothing about the API: an error naming the policy.
                kube::Error::Api(status)
                    if (status.code == 422 || status.code == 400)
                        && !status.message.contains("admission webhook") =>
                {
                    TargetError::rejected(status.message.clone())
                }
                other => api_error(format!("create pod {name}"), other),
            })?;
        let reference = PodRef {
            name,
            uid: created.metadata.uid.clone().unwrap_or_default(),
            created_at,
            node: String::new(),
            applied: Some(Box::new(pod.clone())),
        };
        Ok((reference, created))
    }

    /// One pre-flight pod on every node that takes pods (the first
    /// [`MAX_PREFLIGHT_NODES`]), all at once: each node proves it can run the agent, and
    /// has the image when the cases start, so no case's first start waits for a pull.
    async fn preflight(&self) -> Result<(), TargetError> {
        let placements: Vec<Placement> = if self.cluster.nodes.is_empty() {
            vec![Placement::Anywhere]
        } else {
            self.cluster
                .nodes
                .iter()
                .take(MAX_PREFLIGHT_NODES)
                .map(|node| Placement::Node(node.name.clone()))
                .collect()
        };
        let results: Vec<Result<(), TargetError>> = futures::stream::iter(&placements)
            .map(|placement| self.preflight_on(placement))
            .buffer_unordered(DEFAULT_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn preflight_on(&self, placement: &Placement) -> Result<(), TargetError> {
        let pod = self.prepare(compile(&preflight::scenario(), &self.image, 1.0), placement);
        let on = match placement {
            Placement::Node(node) => format!(" on node {node}"),
            Placement::Anywhere => String::new(),
        };
        let (reference, _) = self.submit(&pod).await.map_err(|e| {
            TargetError::Setup(format!(
                "cannot create the pre-flight pod{on} in namespace {}: {}",
                self.namespace,
                crate::errors::describe(&e)
            ))
        })?;
        let result = self.await_preflight(&reference).await;
        let _ = self.remove(&reference).await;
        result.map_err(|e| match e {
            TargetError::Setup(why) if !on.is_empty() => {
                TargetError::Setup(format!("{why} (pre-flight{on})"))
            }
            other => other,
        })
    }

    async fn await_preflight(&self, reference: &PodRef) -> Result<(), TargetError> {
        let params =
            watcher::Config::default().fields(&format!("metadata.name={}", reference.name));
        let mut states = watcher(self.pods(), params).default_backoff().boxed();
        let mut last = "no status yet".to_owned();
        let deadline = tokio::time::Instant::now() + PREFLIGHT_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, states.next()).await;
            let Ok(Some(event)) = next else {
                return Err(TargetError::Setup(format!(
                    "the pre-flight pod {} in namespace {} did not run the agent within {}s ({last}); {}",
                    reference.name,
                    self.namespace,
                    PREFLIGHT_TIMEOUT.as_secs(),
                    preflight::image_hint(&self.image)
                )));
            };
            let pod = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                _ => continue,
            };
            if pod.metadata.name.as_deref() != Some(reference.name.as_str()) {
                continue;
            }
            match preflight::progress(&pod, &self.image) {
                preflight::Progress::Waiting(why) => last = why,
                preflight::Progress::Failed(why) => return Err(TargetError::Setup(why)),
                preflight::Progress::Running => break,
            }
        }
        // Running: the agent logs its start at once; give the log a moment to arrive.
        for _ in 0..20 {
            let log = self
                .logs(reference, "agent", false)
                .await
                .unwrap_or_default();
            if preflight::agent_answered(&log) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(TargetError::Setup(format!(
            "the pre-flight pod runs image {} but the podcheck agent in it did not log its start \
             within 10s; the image must be the one `podcheck image build` writes",
            self.image
        )))
    }
}

#[async_trait]
impl Target for KubeTarget {
    fn name(&self) -> String {
        format!("kube:{}", self.cluster.context)
    }

    fn timing(&self) -> TimingProfile {
        // A cluster's time cannot be scaled: spec time is wall time.
        self.options.wall_clock(MIN_TOLERANCE_MS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            concurrency: self.options.jobs.unwrap_or(DEFAULT_CONCURRENCY),
            virtual_clock: false,
            launch_spacing: std::time::Duration::ZERO,
        }
    }

    fn agent_image(&self) -> String {
        self.image.clone()
    }

    fn runs_kubelet(&self, kubelet: &KubeletParams) -> bool {
        self.cluster.placement(kubelet).is_ok()
    }

    fn summary(&self) -> Vec<String> {
        let cluster = &self.cluster;
        let mut lines = vec![format!(
            "cluster: context {}, API server {} at {}, namespace {}",
            cluster.context, cluster.server_version, cluster.server, self.namespace
        )];
        for node in &cluster.nodes {
            let source = match &node.config_source {
                ConfigSource::Option(path) => format!("from {path}"),
                ConfigSource::Configz => "from its configz".to_owned(),
                ConfigSource::AssumedDefaults(why) => format!("kubelet defaults assumed: {why}"),
            };
            lines.push(format!(
                "node {}: kubelet {}, {}; restart back-off {} ({source})",
                node.name, node.kubelet_version, node.container_runtime_version, node.back_off
            ));
        }
        if let Some(why) = &cluster.nodes_unlisted {
            lines.push(format!(
                "nodes not listed ({why}): restart back-off {} assumed",
                node::describe(&cluster.assumed_kubelet.back_off())
            ));
        }
        lines
    }

    fn environment(&self) -> serde_json::Value {
        serde_json::json!({
            "target": self.name(),
            "namespace": self.namespace,
            "runId": self.run_id,
            "agentImage": self.image,
            "imagePullPolicy": self.pull_policy,
            "cluster": self.cluster,
        })
    }

    async fn create(&self, pod: Pod, kubelet: &KubeletParams) -> Result<PodRef, TargetError> {
        let placement = self
            .cluster
            .placement(kubelet)
            .map_err(TargetError::NotApplicable)?;
        let pod = self.prepare(pod, &placement);
        let (reference, _) = self.submit(&pod).await?;
        Ok(reference)
    }

    async fn watch(&self, pod: &PodRef) -> Result<BoxStream<'static, Observation>, TargetError> {
        let name = pod.name.clone();
        let uid = pod.uid.clone();
        // A watch that is not allowed would otherwise retry silently until the horizon.
        within(
            &format!("get pod {name}"),
            API_TIMEOUT,
            self.pods().get(&name),
        )
        .await?;
        let pods = watcher(
            self.pods(),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
        )
        .default_backoff()
        .map(Either::Pod);
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let events = watcher(
            events,
            watcher::Config::default().fields(&format!("involvedObject.name={name}")),
        )
        .default_backoff()
        .map(Either::Event);
        let merged = futures::stream::select(pods, events);
        let follower = convert::PodFollower::new(&name);
        let stream = merged
            .scan(
                (convert::Repeats::default(), follower),
                move |(repeats, follower), item| {
                    // The watch ends with the pod: its Events after that are not shown.
                    if follower.ended() {
                        return future::ready(None);
                    }
                    let now = Time(Timestamp::now());
                    let observation = match item {
                        Either::Pod(Ok(event)) => {
                            follower.follow(event, now).map(Observation::Snapshot)
                        }
                        Either::Event(Ok(
                            watcher::Event::Apply(e) | watcher::Event::InitApply(e),
                        )) if repeats.new_event(&e) => {
                            convert::event(&e, &name, &uid, now).map(Observation::Event)
                        }
                        _ => None,
                    };
                    future::ready(Some(observation))
                },
            )
            .filter_map(future::ready);
        Ok(Box::pin(stream))
    }

    /// Each action returns once the API server has answered: the kubelet acts on it
    /// afterwards, and the watch shows what it did.
    async fn act(&self, pod: &PodRef, action: &FaultAction) -> Result<(), TargetError> {
        match action {
            FaultAction::KillContainer { .. } => Err(TargetError::NotApplicable(
                "the Kubernetes API has no call that kills a container's process from outside \
                 the kubelet"
                    .to_owned(),
            )),
            FaultAction::Delete { .. } | FaultAction::ForceDelete => self.delete(pod, action).await,
            FaultAction::RemoveFinalizer { finalizer } => {
                self.remove_finalizer(&pod.name, finalizer).await
            }
            FaultAction::RestartNodeAgent => Err(TargetError::NotApplicable(
                "the Kubernetes API has no call that restarts a node's kubelet".to_owned(),
            )),
            FaultAction::AddEphemeralContainer {
                name,
                target_container_name,
            } => {
                self.add_ephemeral_container(&pod.name, name, target_container_name.as_deref())
                    .await
            }
        }
    }

    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        previous: bool,
    ) -> Result<String, TargetError> {
        let params = LogParams {
            container: Some(container.to_owned()),
            previous,
            ..LogParams::default()
        };
        within(
            &format!("read the log of {}/{container}", pod.name),
            API_TIMEOUT,
            self.pods().logs(&pod.name, &params),
        )
        .await
    }

    async fn remove(&self, pod: &PodRef) -> Result<(), TargetError> {
        // A pod created with finalizers may still hold them (the case ended before its
        // removeFinalizer): without them it goes with its deletion.
        let had_finalizers = pod.applied.as_ref().is_some_and(|p| {
            p.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        });
        if had_finalizers {
            unless_gone(self.drop_finalizers(&pod.name).await)?;
        }
        let (pods, params) = (self.pods(), delete_now());
        let action = format!("delete pod {}", pod.name);
        let deleted = within(&action, API_TIMEOUT, pods.delete(&pod.name, &params)).await;
        unless_gone(deleted).map(|_| ())
    }

    /// Deletes every pod of the run, then its namespace, and waits until the namespace is
    /// gone. Safe to call more than once.
    async fn cleanup(&self) -> Result<(), TargetError> {
        if let Some(renewal) = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take() {
            renewal.abort();
        }
        // Pods first, at once: a namespace's deletion would give each its grace period.
        // Finalizers go before: a pod that keeps one keeps the namespace.
        let (pods, namespaces, params) = (self.pods(), self.namespaces(), delete_now());
        let all = ListParams::default();
        if let Ok(list) = within("list the run's pods", API_TIMEOUT, pods.list(&all)).await {
            for pod in list.items {
                let held = pod
                    .metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| !f.is_empty());
                if let (true, Some(name)) = (held, pod.metadata.name.as_deref()) {
                    let _ = self.drop_finalizers(name).await;
                }
            }
        }
        let _ = within(
            "delete the run's pods",
            API_TIMEOUT,
            pods.delete_collection(&params, &all),
        )
        .await;
        let action = format!("delete namespace {}", self.namespace);
        let deleted = within(
            &action,
            API_TIMEOUT,
            namespaces.delete(&self.namespace, &params),
        );
        if unless_gone(deleted.await)?.is_none() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + NAMESPACE_GONE_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let found = within(
                "get the namespace",
                API_TIMEOUT,
                namespaces.get(&self.namespace),
            );
            if matches!(unless_gone(found.await), Ok(None)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(TargetError::Broken(format!(
            "namespace {} was still there {}s after its deletion; the next run removes it",
            self.namespace,
            NAMESPACE_GONE_TIMEOUT.as_secs()
        )))
    }
}

/// One item of the merged watch: the pod, or an Event. Short-lived, one at a time.
#[allow(clippy::large_enum_variant)]
enum Either {
    Pod(Result<watcher::Event<Pod>, watcher::Error>),
    Event(Result<watcher::Event<Event>, watcher::Error>),
}
