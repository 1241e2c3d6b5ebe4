//! A target that reports what no Kubernetes implementation can report gets an error that
//! names its fault (the snapshot, the field, the value, why it cannot be), never a failure
//! blaming the runtime's semantics and never a panic; what a real cluster may legally
//! report, however odd, is judged as usual.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck::harness::{run_case_observing, Ending};
use podcheck::targets::model::ModelTarget;
use podcheck::targets::{Capabilities, PodRef, Target, TargetError};
use podcheck_oracle::scenario::{FaultAction, KubeletParams};
use podcheck_oracle::{Observation, Outcome, Scenario, TimingProfile};
use podcheck_reports::{CaseResult, RunReport, RunSettings};

const CRASHES_AFTER_INIT: &str = r#"
name: crashes-after-init
observeFor: 60s
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: crashes-after-init}
  spec:
    initContainers:
      - name: init
    containers:
      - name: app
behaviours:
  init: {then: {exit: {after: 1s, code: 0}}}
  app: {then: {exit: {after: 2s, code: 1}}}
"#;

/// How a [`Lying`] target changes each status it shows once the app has a status: given
/// the status and the pod's creation.
type Lie = fn(&mut PodStatus, &Time);

/// The model target, whose every status from the app's first on is changed by `lie`.
struct Lying {
    model: ModelTarget,
    lie: Lie,
    tolerance_ms: u64,
}

impl Lying {
    fn new(lie: Lie) -> Lying {
        Lying {
            model: ModelTarget::new("", 1).expect("model target"),
            lie,
            tolerance_ms: 0,
        }
    }
}

#[async_trait::async_trait]
impl Target for Lying {
    fn name(&self) -> String {
        "lying".to_owned()
    }
    fn timing(&self) -> TimingProfile {
        TimingProfile {
            tolerance_ms: self.tolerance_ms,
            ..self.model.timing()
        }
    }
    fn capabilities(&self) -> Capabilities {
        self.model.capabilities()
    }
    fn agent_image(&self) -> String {
        self.model.agent_image()
    }
    async fn create(&self, pod: Pod, kubelet: &KubeletParams) -> Result<PodRef, TargetError> {
        self.model.create(pod, kubelet).await
    }
    async fn watch(
        &self,
        pod: &PodRef,
    ) -> Result<futures::stream::BoxStream<'static, Observation>, TargetError> {
        let lie = self.lie;
        let created = pod.created_at.clone();
        let honest = self.model.watch(pod).await?;
        Ok(honest
            .map(move |observation| match observation {
                Observation::Snapshot(mut snapshot) if has_app(&snapshot.status) => {
                    lie(&mut snapshot.status, &created);
                    Observation::Snapshot(snapshot)
                }
                other => other,
            })
            .boxed())
    }
    async fn act(&self, pod: &PodRef, action: &FaultAction) -> Result<(), TargetError> {
        self.model.act(pod, action).await
    }
    async fn logs(&self, pod: &PodRef, c: &str, previous: bool) -> Result<String, TargetError> {
        self.model.logs(pod, c, previous).await
    }
    async fn remove(&self, pod: &PodRef) -> Result<(), TargetError> {
        self.model.remove(pod).await
    }
    async fn cleanup(&self) -> Result<(), TargetError> {
        self.model.cleanup().await
    }
}

fn app(status: &mut PodStatus) -> Option<&mut ContainerStatus> {
    status
        .container_statuses
        .iter_mut()
        .flatten()
        .find(|cs| cs.name == "app")
}

fn has_app(status: &PodStatus) -> bool {
    status
        .container_statuses
        .iter()
        .flatten()
        .any(|cs| cs.name == "app")
}

fn at(created: &Time, secs: i64) -> Time {
    Time(created.0 + jiff::SignedDuration::from_secs(secs))
}

async fn run(target: &Lying) -> CaseResult {
    let scenario = Scenario::from_yaml("target-faults", CRASHES_AFTER_INIT).expect("scenario");
    run_case_observing(target, &scenario, "target-faults", true, Ending::Early).await
}

/// Each lie, and the field its error must name.
const LIES: &[(Lie, &str)] = &[
    (
        |status, _| {
            if let Some(cs) = app(status) {
                cs.restart_count = -1;
            }
        },
        "status.containerStatuses[app].restartCount is -1; a restart count is never negative",
    ),
    (
        |status, _| {
            for cs in status.init_container_statuses.iter_mut().flatten() {
                cs.restart_count = i32::MIN;
            }
        },
        "status.initContainerStatuses[init].restartCount is -2147483648",
    ),
    (
        // What a third-party kubelet reported: a start 78 s before the pod's creation.
        |status, created| {
            if let Some(cs) = app(status) {
                cs.state = Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(at(created, -78)),
                    }),
                    ..ContainerState::default()
                });
            }
        },
        "status.containerStatuses[app].state.running.startedAt is ",
    ),
    (
        |status, created| {
            if let Some(cs) = app(status) {
                cs.last_state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 1,
                        started_at: Some(at(created, 40)),
                        finished_at: Some(at(created, 20)),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                });
            }
        },
        "status.containerStatuses[app].lastState.terminated.finishedAt is ",
    ),
    (
        // The far ends of the calendar reach the timeline too: it must not panic either.
        |status, _| {
            if let Some(cs) = app(status) {
                cs.last_state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 1,
                        started_at: Some(Time(jiff::Timestamp::MIN)),
                        finished_at: Some(Time(jiff::Timestamp::MAX)),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                });
            }
        },
        "status.containerStatuses[app].lastState.terminated.startedAt is -009999-01-02T01:59:59Z",
    ),
    (
        |status, created| status.start_time = Some(at(created, -3600)),
        "status.startTime is ",
    ),
    (
        |status, _| status.phase = Some("Runing".to_owned()),
        r#"status.phase is "Runing"; a pod's phase is one of Pending, Running, Succeeded, Failed, Unknown"#,
    ),
    (
        |status, _| {
            let ghost = app(status).map(|cs| ContainerStatus {
                name: "ghost".to_owned(),
                ..cs.clone()
            });
            status
                .container_statuses
                .get_or_insert_with(Vec::new)
                .extend(ghost);
        },
        "status.containerStatuses[ghost] is the status of a container named \"ghost\"",
    ),
    (
        |status, _| {
            let twin = app(status).cloned();
            status
                .container_statuses
                .get_or_insert_with(Vec::new)
                .extend(twin);
        },
        "status.containerStatuses[app] is a second status of container app",
    ),
];

#[tokio::test]
async fn nonsense_from_a_target_is_an_error_naming_the_field_never_a_failure() {
    for (lie, field) in LIES {
        let result = run(&Lying::new(*lie)).await;
        let verdict = &result.verdict;
        assert_eq!(verdict.outcome, Outcome::Error, "{field}: {verdict:?}");
        assert!(verdict.violations.is_empty(), "{field}: {verdict:?}");
        let message = verdict.error.as_deref().unwrap_or_default();
        assert!(
            message.starts_with("target fault: snapshot at +") && message.contains(field),
            "{field:?} not in {message}"
        );
        // The trace and its timeline stay, to show what the target sent.
        assert!(result.trace.is_some() && result.timeline.is_some());
    }
}

/// Every report shows each such case as an error with its message, and renders the
/// nonsense in its trace and timeline without panicking.
#[tokio::test]
async fn a_target_fault_shows_as_an_error_in_every_report() {
    let mut cases = Vec::new();
    for (lie, _) in LIES {
        cases.push(run(&Lying::new(*lie)).await);
    }
    let report = RunReport {
        target: "lying".to_owned(),
        podcheck_version: "0.1.0".to_owned(),
        wall_ms: 0,
        cases,
        settings: RunSettings::default(),
    };
    let totals = report.totals();
    assert_eq!((totals.errors, totals.failed), (LIES.len(), 0));
    let junit = report.to_junit().expect("junit");
    let json = report.to_json().expect("json");
    let html = report.to_html();
    assert_eq!(junit.matches("<error").count(), LIES.len(), "{junit}");
    assert_eq!(json.matches(r#""outcome": "error""#).count(), LIES.len());
    for (_, expected) in LIES {
        // The field's path: the rest of a message may be escaped differently by each format.
        let field = expected.split(" is ").next().unwrap_or(expected);
        for (format, text) in [("junit", &junit), ("json", &json), ("html", &html)] {
            assert!(
                text.contains("target fault: snapshot at +") && text.contains(field),
                "{field} not in {format}"
            );
        }
    }
}

/// What the API shows of every time: whole seconds, truncated.
fn truncate(time: &mut Option<Time>) {
    if let Some(time) = time {
        let whole = jiff::Timestamp::from_second(time.0.as_second()).expect("in range");
        *time = Time(whole);
    }
}

fn truncate_state(state: &mut Option<ContainerState>) {
    if let Some(state) = state {
        if let Some(running) = &mut state.running {
            truncate(&mut running.started_at);
        }
        if let Some(terminated) = &mut state.terminated {
            truncate(&mut terminated.started_at);
            truncate(&mut terminated.finished_at);
        }
    }
}

#[tokio::test]
async fn what_a_real_cluster_may_report_is_judged_not_refused() {
    // Whole seconds, as every cluster shows times: within a second's tolerance the model's
    // pod still passes.
    let mut truncating = Lying::new(|status, _| {
        truncate(&mut status.start_time);
        for condition in status.conditions.iter_mut().flatten() {
            truncate(&mut condition.last_transition_time);
        }
        let lists = [
            &mut status.init_container_statuses,
            &mut status.container_statuses,
        ];
        for cs in lists.into_iter().flatten().flatten() {
            truncate_state(&mut cs.state);
            truncate_state(&mut cs.last_state);
        }
    });
    truncating.tolerance_ms = 1_000;
    let result = run(&truncating).await;
    assert_eq!(
        result.verdict.outcome,
        Outcome::Pass,
        "{:?}",
        result.verdict
    );

    // `Unknown` is a phase: not the one predicted, so a failure of the phase rules.
    let result = run(&Lying::new(|status, _| {
        status.phase = Some("Unknown".to_owned());
    }))
    .await;
    assert_eq!(
        result.verdict.outcome,
        Outcome::Fail,
        "{:?}",
        result.verdict
    );
    assert!(result.verdict.error.is_none());
}

/// A wall-clock target that shows one status, a running app with a negative restart count,
/// and then nothing for as long as it is watched.
struct ShowsOneNegativeCount;

#[async_trait::async_trait]
impl Target for ShowsOneNegativeCount {
    fn name(&self) -> String {
        "shows-one-negative-count".to_owned()
    }
    fn timing(&self) -> TimingProfile {
        TimingProfile {
            time_scale: 1.0,
            tolerance_ms: 0,
        }
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            concurrency: 1,
            virtual_clock: false,
            launch_spacing: std::time::Duration::ZERO,
        }
    }
    fn agent_image(&self) -> String {
        "agent".to_owned()
    }
    async fn create(&self, _pod: Pod, _kubelet: &KubeletParams) -> Result<PodRef, TargetError> {
        Ok(PodRef {
            name: "p".to_owned(),
            uid: "p".to_owned(),
            created_at: Time(jiff::Timestamp::now()),
            node: "node".to_owned(),
            applied: None,
        })
    }
    async fn watch(
        &self,
        pod: &PodRef,
    ) -> Result<futures::stream::BoxStream<'static, Observation>, TargetError> {
        let status: PodStatus = serde_json::from_value(serde_json::json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "image": "agent", "imageID": "", "ready": true,
                "restartCount": -1, "started": true,
                "state": {"running": {"startedAt": pod.created_at.0.to_string()}}
            }]
        }))
        .expect("status");
        let first = Observation::Snapshot(podcheck_oracle::Snapshot::of_status(
            pod.created_at.clone(),
            status,
        ));
        Ok(futures::stream::once(async move { first })
            .chain(futures::stream::pending())
            .boxed())
    }
    async fn act(&self, _pod: &PodRef, _action: &FaultAction) -> Result<(), TargetError> {
        Ok(())
    }
    async fn logs(&self, _pod: &PodRef, _c: &str, _previous: bool) -> Result<String, TargetError> {
        Ok(String::new())
    }
    async fn remove(&self, _pod: &PodRef) -> Result<(), TargetError> {
        Ok(())
    }
    async fn cleanup(&self) -> Result<(), TargetError> {
        Ok(())
    }
}

/// Observing a wall-clock target stops at the first report that cannot be, as at a
/// definite violation: the case ends with the error, not at its horizon.
#[tokio::test]
async fn a_wall_clock_observation_stops_at_the_first_nonsense() {
    let scenario = Scenario::from_yaml(
        "runs-forever",
        r#"
name: runs-forever
observeFor: 30s
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: runs-forever}
  spec:
    containers:
      - name: app
behaviours:
  app: {then: forever}
"#,
    )
    .expect("scenario");
    let result = run_case_observing(
        &ShowsOneNegativeCount,
        &scenario,
        "runs-forever",
        true,
        Ending::Early,
    )
    .await;
    let field = "status.containerStatuses[app].restartCount is -1";
    assert_eq!(
        result.verdict.outcome,
        Outcome::Error,
        "{:?}",
        result.verdict
    );
    assert!(
        result
            .verdict
            .error
            .as_deref()
            .unwrap_or_default()
            .contains(field),
        "{:?}",
        result.verdict
    );
    let ended_early = result.trace.and_then(|t| t.ended_early).unwrap_or_default();
    assert!(
        ended_early.starts_with("the target reported what cannot be: target fault: ")
            && ended_early.contains(field),
        "{ended_early}"
    );
}
