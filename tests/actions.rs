//! The harness acts: a scenario's fault schedule is performed on a real target at its spec
//! time, recorded in the trace with its request and acknowledgement times, and the
//! target's reaction shows in the snapshots. The local cases need root: without it they
//! are ignored with the reason, except under `CI=true`.

mod common;

use futures::StreamExt;
use libtest_mimic::Arguments;
use podcheck::compile::compile;
use podcheck::harness::{observe, observe_until, Ending};
use podcheck::targets::{self, Capabilities, PodRef, Target, TargetError, TargetOptions};
use podcheck_oracle::scenario::{Fault, FaultAction, KubeletParams};
use podcheck_oracle::{
    check, predict, ActionResult, Observation, RuleId, Scenario, Snapshot, SpecDuration,
    TimingProfile,
};

const FOREVER: &str = r#"
name: killed-from-outside
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: killed-from-outside}
  spec:
    containers:
      - name: app
behaviours:
  app: {then: forever}
"#;

fn kill_app_at(secs: u64) -> Fault {
    Fault {
        at: SpecDuration::from_secs(secs),
        action: FaultAction::KillContainer {
            container: "app".to_owned(),
        },
    }
}

async fn a_scheduled_kill_is_performed_on_time_and_recorded() {
    let scenario = Scenario::from_yaml("actions", FOREVER).expect("scenario");
    let prediction = predict(&scenario).expect("prediction");
    let target = targets::from_spec("local", &TargetOptions::default())
        .await
        .expect("local target");
    let timing = target.timing();
    let pod = compile(&scenario, &target.agent_image(), timing.time_scale);
    let reference = target.create(pod, &scenario.kubelet).await.expect("create");
    let fault = kill_app_at(3);
    let trace = observe(
        target.as_ref(),
        &reference,
        &prediction,
        std::slice::from_ref(&fault),
    )
    .await
    .expect("observe");
    target.remove(&reference).await.expect("remove");
    target.cleanup().await.expect("cleanup");

    assert_eq!(trace.actions.len(), 1, "{:?}", trace.actions);
    let record = &trace.actions[0];
    assert_eq!(record.action, fault.action);
    assert_eq!(record.result, ActionResult::Done);
    let requested = trace.spec_ms(&record.requested_at);
    let acknowledged = trace.spec_ms(record.acknowledged_at.as_ref().expect("acknowledged"));
    let tolerance = timing.tolerance_ms as i64;
    assert!(
        (requested - 3000).abs() <= tolerance,
        "requested at {requested} spec ms, due at 3000 (tolerance {tolerance})"
    );
    assert!(acknowledged >= requested);

    // The kubelet part sees a death by SIGKILL (137, Error) and, under Always, restarts
    // the container at once (the first restart has no back-off).
    let statuses = trace
        .snapshots
        .iter()
        .flat_map(|s| s.status.container_statuses.iter().flatten());
    let killed = statuses
        .clone()
        .filter_map(|s| s.last_state.as_ref()?.terminated.as_ref())
        .chain(
            statuses
                .clone()
                .filter_map(|s| s.state.as_ref()?.terminated.as_ref()),
        )
        .next()
        .expect("the kill shows as a termination");
    assert_eq!(killed.exit_code, 137);
    assert_eq!(killed.reason.as_deref(), Some("Error"));
    let finished = trace.spec_ms(killed.finished_at.as_ref().expect("finishedAt"));
    assert!(finished >= requested - tolerance, "finished at {finished}");
    assert!(
        statuses.clone().any(|s| s.restart_count == 1
            && s.state
                .as_ref()
                .is_some_and(|state| state.running.is_some())),
        "the killed container is restarted"
    );
}

async fn actions_a_target_cannot_perform_are_not_applicable() {
    let target = targets::from_spec("model", &TargetOptions::default())
        .await
        .expect("model target");
    let scenario = Scenario::from_yaml("actions", FOREVER).expect("scenario");
    let pod = compile(&scenario, &target.agent_image(), 1.0);
    let reference = target.create(pod, &scenario.kubelet).await.expect("create");
    let prediction = predict(&scenario).expect("prediction");
    // The model has no node agent to restart.
    let restart = Fault {
        at: SpecDuration::from_secs(3),
        action: FaultAction::RestartNodeAgent,
    };
    let trace = observe(
        target.as_ref(),
        &reference,
        &prediction,
        std::slice::from_ref(&restart),
    )
    .await
    .expect("observe");
    assert!(
        matches!(&trace.actions[..], [record] if matches!(record.result, ActionResult::NotApplicable(_))),
        "{:?}",
        trace.actions
    );
    assert_eq!(trace.spec_ms(&trace.actions[0].requested_at), 3000);
    let direct = target.act(&reference, &restart.action).await;
    assert!(matches!(direct, Err(TargetError::NotApplicable(_))));
}

async fn killing_a_container_that_does_not_run_is_an_error_not_a_success() {
    let target = targets::from_spec("local", &TargetOptions::default())
        .await
        .expect("local target");
    let scenario = Scenario::from_yaml("actions", FOREVER).expect("scenario");
    let pod = compile(&scenario, &target.agent_image(), target.timing().time_scale);
    let reference = target.create(pod, &scenario.kubelet).await.expect("create");
    let missing = FaultAction::KillContainer {
        container: "nope".to_owned(),
    };
    let result = target.act(&reference, &missing).await;
    target.remove(&reference).await.expect("remove");
    target.cleanup().await.expect("cleanup");
    assert!(matches!(result, Err(TargetError::Runtime(_))), "{result:?}");
}

/// A delete through the target: acknowledged by the runtime's API server part, then the
/// watch shows the deletion's metadata, the terminal phase, and ends with the object gone.
async fn a_delete_is_acknowledged_and_the_watch_ends_with_the_pod_gone() {
    let target = targets::from_spec("local", &TargetOptions::default())
        .await
        .expect("local target");
    let scenario = Scenario::from_yaml("actions", FOREVER).expect("scenario");
    let pod = compile(&scenario, &target.agent_image(), target.timing().time_scale);
    let reference = target.create(pod, &scenario.kubelet).await.expect("create");
    let mut watch = target.watch(&reference).await.expect("watch");
    // Running first.
    loop {
        let Some(Observation::Snapshot(snapshot)) = watch.next().await else {
            panic!("the watch ended before the pod ran");
        };
        if snapshot.status.phase.as_deref() == Some("Running") {
            break;
        }
    }
    let delete = FaultAction::Delete {
        grace_period_seconds: Some(3),
    };
    target.act(&reference, &delete).await.expect("acknowledged");
    let mut snapshots = Vec::new();
    let collect = async {
        while let Some(observation) = watch.next().await {
            if let Observation::Snapshot(snapshot) = observation {
                snapshots.push(snapshot);
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), collect)
        .await
        .expect("the watch ends");
    let not_found = target.act(&reference, &FaultAction::ForceDelete).await;
    let restart = target.act(&reference, &FaultAction::RestartNodeAgent).await;
    target.remove(&reference).await.expect("remove");
    target.cleanup().await.expect("cleanup");

    let first = snapshots.first().expect("snapshots after the delete");
    assert_eq!(first.metadata.deletion_grace_period_seconds, Some(3));
    assert!(first.metadata.deletion_timestamp.is_some());
    let last = snapshots.last().expect("a last snapshot");
    assert!(last.metadata.gone, "{last:#?}");
    assert_eq!(last.status.phase.as_deref(), Some("Failed"), "SIGTERM: 143");
    assert!(snapshots[..snapshots.len() - 1]
        .iter()
        .all(|s| !s.metadata.gone));
    let versions: Vec<u64> = snapshots
        .iter()
        .filter_map(|s| s.metadata.resource_version.as_deref()?.parse().ok())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert!(
        matches!(not_found, Err(TargetError::Runtime(_))),
        "a gone pod cannot be deleted: {not_found:?}"
    );
    assert!(matches!(restart, Err(TargetError::NotApplicable(_))));
}

/// A wall-clock target whose pod never starts its container: one Pending snapshot, then
/// nothing, for as long as it is watched.
struct NeverStarts;

#[async_trait::async_trait]
impl Target for NeverStarts {
    fn name(&self) -> String {
        "never-starts".to_owned()
    }
    fn timing(&self) -> TimingProfile {
        TimingProfile {
            time_scale: 1.0,
            tolerance_ms: 500,
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
    async fn create(
        &self,
        _pod: k8s_openapi::api::core::v1::Pod,
        _kubelet: &KubeletParams,
    ) -> Result<PodRef, TargetError> {
        Ok(PodRef {
            name: "p".to_owned(),
            uid: "p".to_owned(),
            created_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            node: "node".to_owned(),
            applied: None,
        })
    }
    async fn watch(
        &self,
        pod: &PodRef,
    ) -> Result<futures::stream::BoxStream<'static, Observation>, TargetError> {
        let waiting: k8s_openapi::api::core::v1::PodStatus =
            serde_json::from_value(serde_json::json!({
                "phase": "Pending",
                "containerStatuses": [{
                    "name": "app", "image": "agent", "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"waiting": {"reason": "ContainerCreating"}}
                }]
            }))
            .expect("status");
        let first = Observation::Snapshot(Snapshot::of_status(pod.created_at.clone(), waiting));
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

/// A wall-clock case ends once what it saw breaks a rule for good, unless it is watched to
/// its horizon (`run --to-horizon`): then it is watched to the end and the verdict holds
/// the same violation.
async fn a_wall_clock_case_ends_early_unless_watched_to_its_horizon() {
    let scenario = Scenario::from_yaml("actions", FOREVER).expect("scenario");
    let prediction = predict(&scenario).expect("prediction");
    let horizon_ms = prediction.horizon.as_millis() as i64;
    let target = NeverStarts;
    let pod = compile(&scenario, &target.agent_image(), 1.0);
    let early = {
        let reference = target
            .create(pod.clone(), &scenario.kubelet)
            .await
            .expect("create");
        observe_until(&target, &reference, &prediction, &[], Ending::Early)
            .await
            .expect("observe")
    };
    assert!(early.ended_early.is_some(), "{early:?}");
    assert!(early.spec_ms(&early.ended_at) < horizon_ms);
    let reference = target.create(pod, &scenario.kubelet).await.expect("create");
    let full = observe_until(&target, &reference, &prediction, &[], Ending::AtHorizon)
        .await
        .expect("observe");
    assert!(full.ended_early.is_none());
    assert!(full.spec_ms(&full.ended_at) >= horizon_ms);
    assert!(check(&prediction, &full)
        .violated_rules()
        .contains(&RuleId::ContainerStateRunning));
}

const CRASHES: &str = r#"
name: crashes
observeFor: 60s
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: crashes}
  spec:
    containers:
      - name: app
behaviours:
  app: {then: {exit: {after: 1s, code: 1}}}
"#;

/// When an [`Attempts`] target's timing slips, in spec seconds after the pod's creation.
#[derive(Clone, Copy)]
enum SlipsAt {
    Never,
    /// Once, at the creation: long before anything could go wrong.
    Creation,
    /// Every 5 s for two minutes: whatever fails, a slip came shortly before.
    Throughout,
}

/// The model target whose attempts at a case run in turn on the given deviations (the
/// last one for every further attempt), reporting timing slips as `slips` says: a stand-in
/// for a scaled target on a machine that stalls.
struct Attempts {
    targets: Vec<targets::model::ModelTarget>,
    current: std::sync::atomic::AtomicUsize,
    created: std::sync::atomic::AtomicUsize,
    slips: SlipsAt,
}

impl Attempts {
    fn new(deviations: &[&str], slips: SlipsAt) -> Attempts {
        Attempts {
            targets: deviations
                .iter()
                .map(|d| targets::model::ModelTarget::new(d, 1).expect("model target"))
                .collect(),
            current: 0.into(),
            created: 0.into(),
            slips,
        }
    }

    fn target(&self) -> &targets::model::ModelTarget {
        &self.targets[self.current.load(std::sync::atomic::Ordering::SeqCst)]
    }
}

#[async_trait::async_trait]
impl Target for Attempts {
    fn name(&self) -> String {
        "attempts".to_owned()
    }
    fn timing(&self) -> TimingProfile {
        self.target().timing()
    }
    fn capabilities(&self) -> Capabilities {
        self.target().capabilities()
    }
    fn agent_image(&self) -> String {
        self.target().agent_image()
    }
    async fn create(
        &self,
        pod: k8s_openapi::api::core::v1::Pod,
        kubelet: &KubeletParams,
    ) -> Result<PodRef, TargetError> {
        use std::sync::atomic::Ordering::SeqCst;
        let attempt = self.created.fetch_add(1, SeqCst);
        self.current
            .store(attempt.min(self.targets.len() - 1), SeqCst);
        self.target().create(pod, kubelet).await
    }
    async fn watch(
        &self,
        pod: &PodRef,
    ) -> Result<futures::stream::BoxStream<'static, Observation>, TargetError> {
        self.target().watch(pod).await
    }
    async fn act(&self, pod: &PodRef, action: &FaultAction) -> Result<(), TargetError> {
        self.target().act(pod, action).await
    }
    async fn logs(&self, pod: &PodRef, c: &str, previous: bool) -> Result<String, TargetError> {
        self.target().logs(pod, c, previous).await
    }
    async fn remove(&self, pod: &PodRef) -> Result<(), TargetError> {
        self.target().remove(pod).await
    }
    async fn cleanup(&self) -> Result<(), TargetError> {
        Ok(())
    }
    fn timing_slips(&self, pod: &PodRef) -> Vec<targets::TimingSlip> {
        let seconds: Vec<i64> = match self.slips {
            SlipsAt::Never => Vec::new(),
            SlipsAt::Creation => vec![0],
            SlipsAt::Throughout => (0..24).map(|i| i * 5).collect(),
        };
        seconds
            .into_iter()
            .map(|s| targets::TimingSlip {
                at: pod.created_at.0 + jiff::SignedDuration::from_secs(s),
                what: format!("a probe ticked 30 ms late at {s}s"),
            })
            .collect()
    }
}

/// A failure whose violations could all be the effects of the target's timing slips is run
/// again, up to three attempts: a runtime that is wrong fails every one of them and the
/// verdict says so; one that failed on noise passes the next and the result keeps why the
/// first was set aside; without a slip shortly before the violations, a failure stands at
/// once.
async fn a_failure_across_a_timing_slip_is_run_again_and_a_wrong_target_fails_every_attempt() {
    use podcheck::harness::{run_case_observing, MAX_ATTEMPTS};
    use podcheck_oracle::Outcome;
    let scenario = Scenario::from_yaml("crashes", CRASHES).expect("scenario");
    let run = |target: Attempts| {
        let scenario = scenario.clone();
        async move {
            let result =
                run_case_observing(&target, &scenario, "crashes", false, Ending::Early).await;
            let attempts = target.created.load(std::sync::atomic::Ordering::SeqCst);
            (result, attempts)
        }
    };

    let doubling = ["no-back-off-doubling"];
    let (wrong, attempts) = run(Attempts::new(&doubling, SlipsAt::Throughout)).await;
    assert_eq!(wrong.verdict.outcome, Outcome::Fail, "{:?}", wrong.verdict);
    assert_eq!(attempts, MAX_ATTEMPTS);
    assert_eq!(wrong.reruns.len(), MAX_ATTEMPTS - 1, "{:?}", wrong.reruns);
    assert!(
        wrong.reruns[0].starts_with("attempt 1 failed (restart.backoff.doubling")
            && wrong.reruns[0].contains("a probe ticked 30 ms late at"),
        "{:?}",
        wrong.reruns
    );
    assert_eq!(wrong.timing_slips.len(), 24);

    let (noisy, attempts) = run(Attempts::new(
        &["no-back-off-doubling", ""],
        SlipsAt::Throughout,
    ))
    .await;
    assert_eq!(noisy.verdict.outcome, Outcome::Pass, "{:?}", noisy.verdict);
    assert_eq!(attempts, 2);
    assert_eq!(noisy.reruns.len(), 1);

    // The back-off's violations come 20 s and more after the creation: a slip at the
    // creation explains none of them.
    for slips in [SlipsAt::Never, SlipsAt::Creation] {
        let (clean, attempts) = run(Attempts::new(&["no-back-off-doubling", ""], slips)).await;
        assert_eq!(clean.verdict.outcome, Outcome::Fail);
        assert_eq!(attempts, 1);
        assert!(clean.reruns.is_empty());
    }
}

fn main() {
    let args = Arguments::from_args();
    let no_root = common::no_root();
    common::note_skipped(
        &args,
        "fault actions on the local runtime",
        no_root.as_ref(),
    );
    let mut trials = common::async_trials!(
        common::root,
        no_root.is_some(),
        [
            a_scheduled_kill_is_performed_on_time_and_recorded,
            killing_a_container_that_does_not_run_is_an_error_not_a_success,
            a_delete_is_acknowledged_and_the_watch_ends_with_the_pod_gone,
        ]
    );
    trials.extend(common::async_trials!(
        common::anywhere,
        false,
        [
            actions_a_target_cannot_perform_are_not_applicable,
            a_wall_clock_case_ends_early_unless_watched_to_its_horizon,
            a_failure_across_a_timing_slip_is_run_again_and_a_wrong_target_fails_every_attempt,
        ]
    ));
    libtest_mimic::run(&args, trials).exit();
}
