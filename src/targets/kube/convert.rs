//! What the API server sends, as a trace: pod objects from the watch become snapshots,
//! core/v1 Events about the pod become trace events. Both carry the time the harness
//! received them: the API server's own time stamps have whole seconds only, and the
//! harness's clock is the one the rest of the trace uses.

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher;
use podcheck_oracle::{PodEvent, PodMetadata, Snapshot};

/// A pod object as the watch delivered it.
pub fn snapshot(pod: &Pod, received: Time) -> Snapshot {
    Snapshot {
        at: received,
        metadata: PodMetadata {
            resource_version: pod.metadata.resource_version.clone(),
            deletion_timestamp: pod.metadata.deletion_timestamp.clone(),
            deletion_grace_period_seconds: pod.metadata.deletion_grace_period_seconds,
            finalizers: pod.metadata.finalizers.clone().unwrap_or_default(),
            gone: false,
        },
        status: pod.status.clone().unwrap_or_default(),
    }
}

/// The last state of a pod the watch reported deleted: the object is gone.
pub fn gone(pod: &Pod, received: Time) -> Snapshot {
    let mut last = snapshot(pod, received);
    last.metadata.gone = true;
    last
}

/// One pod followed through a watcher's events (a watch with a field selector on its
/// name): each new version of the object becomes a snapshot, and its removal a last
/// snapshot with `gone`, after which the follower shows nothing more. The removal comes as
/// a DELETED event, or, when the watch had to be started again (a dropped connection, an
/// expired resourceVersion), as a new listing without the pod: kube-rs's watcher reports
/// no deletion that happened while it was away.
pub struct PodFollower {
    name: String,
    last_version: Option<String>,
    /// The last object seen, for the last snapshot of a removal noticed by a relist.
    last: Option<Pod>,
    /// Within a relist (between Init and InitDone): whether it listed the pod.
    relist: Option<bool>,
    ended: bool,
}

impl PodFollower {
    pub fn new(name: &str) -> PodFollower {
        PodFollower {
            name: name.to_owned(),
            last_version: None,
            last: None,
            relist: None,
            ended: false,
        }
    }

    /// The pod is gone: nothing more will come.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// What `event`, received at `received`, shows of the pod, if anything new.
    pub fn follow(&mut self, event: watcher::Event<Pod>, received: Time) -> Option<Snapshot> {
        if self.ended {
            return None;
        }
        match event {
            watcher::Event::Init => {
                self.relist = Some(false);
                None
            }
            watcher::Event::InitDone => {
                let listed = self.relist.take().unwrap_or(true);
                match (&self.last, listed) {
                    (Some(last), false) => {
                        self.ended = true;
                        Some(gone(last, received))
                    }
                    _ => None,
                }
            }
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) if self.is_ours(&pod) => {
                if let Some(listed) = self.relist.as_mut() {
                    *listed = true;
                }
                let version = pod.metadata.resource_version.clone();
                let repeated = version.is_some() && version == self.last_version;
                self.last_version = version;
                let snapshot = (!repeated).then(|| snapshot(&pod, received));
                self.last = Some(pod);
                snapshot
            }
            watcher::Event::Delete(pod) if self.is_ours(&pod) => {
                self.ended = true;
                Some(gone(&pod, received))
            }
            _ => None,
        }
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        pod.metadata.name.as_deref() == Some(self.name.as_str())
    }
}

/// A core/v1 Event about the pod `pod_name` with uid `pod_uid`, or None for an event about
/// something else (another object, or an earlier pod of the same name).
pub fn event(event: &Event, pod_name: &str, pod_uid: &str, received: Time) -> Option<PodEvent> {
    let involved = &event.involved_object;
    let other_uid = involved
        .uid
        .as_deref()
        .is_some_and(|uid| !uid.is_empty() && !pod_uid.is_empty() && uid != pod_uid);
    if involved.name.as_deref() != Some(pod_name)
        || involved.kind.as_deref().is_some_and(|k| k != "Pod")
        || other_uid
    {
        return None;
    }
    Some(PodEvent {
        at: received,
        type_: event.type_.clone().unwrap_or_else(|| "Normal".to_owned()),
        reason: event.reason.clone().unwrap_or_default(),
        message: event.message.clone().unwrap_or_default(),
        container: involved.field_path.as_deref().and_then(container_of),
    })
}

/// The container a field path names: `spec.containers{app}`, `spec.initContainers{init}`,
/// `spec.ephemeralContainers{debug}`.
pub fn container_of(field_path: &str) -> Option<String> {
    let (_, rest) = field_path.split_once('{')?;
    let (name, _) = rest.split_once('}')?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Drops what an Event watch repeats (a relist after a reconnect): an Event object whose
/// count and message did not change.
#[derive(Default)]
pub struct Repeats {
    events: std::collections::HashMap<String, (i32, String, Option<String>)>,
}

impl Repeats {
    pub fn new_event(&mut self, event: &Event) -> bool {
        let key = event.metadata.name.clone().unwrap_or_default();
        let seen = (
            event.count.unwrap_or(1),
            event.message.clone().unwrap_or_default(),
            event.metadata.resource_version.clone(),
        );
        self.events.insert(key, seen.clone()) != Some(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::WatchEvent;
    use podcheck_oracle::{check, predict, Observation, Outcome, RuleId, Scenario, Trace};

    fn recorded<T: serde::de::DeserializeOwned>(text: &str) -> Vec<(String, T)> {
        text.lines()
            .map(|line| {
                let event: serde_json::Value = serde_json::from_str(line).expect("a watch event");
                let kind = event["type"].as_str().expect("type").to_owned();
                let object = serde_json::from_value(event["object"].clone()).expect("object");
                (kind, object)
            })
            .collect()
    }

    fn at(seconds: f64) -> Time {
        Time(Timestamp::from_millisecond((seconds * 1000.0) as i64).expect("time"))
    }

    /// The watch's pod objects as the kube target turns them into observations.
    fn observe(events: &[(String, Pod)], arrivals: &[Time]) -> Vec<Observation> {
        let name = events
            .first()
            .and_then(|(_, pod)| pod.metadata.name.clone())
            .unwrap_or_default();
        let mut follower = PodFollower::new(&name);
        let mut out = Vec::new();
        for ((kind, pod), received) in events.iter().zip(arrivals) {
            let event = match kind.as_str() {
                "DELETED" => watcher::Event::Delete(pod.clone()),
                _ => watcher::Event::Apply(pod.clone()),
            };
            out.extend(
                follower
                    .follow(event, received.clone())
                    .map(Observation::Snapshot),
            );
            if follower.ended() {
                break;
            }
        }
        out
    }

    fn terminating_pod(version: &str, grace: i64, finalizers: &[&str]) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".to_owned());
        pod.metadata.resource_version = Some(version.to_owned());
        pod.metadata.deletion_timestamp = Some(at(1_795_904_030.0));
        pod.metadata.deletion_grace_period_seconds = Some(grace);
        pod.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        pod
    }

    #[test]
    fn the_deletion_metadata_comes_with_every_snapshot() {
        let mut follower = PodFollower::new("p");
        let shown = follower
            .follow(
                watcher::Event::Apply(terminating_pod("7", 30, &["podcheck.io/hold"])),
                at(1_795_904_001.0),
            )
            .expect("a snapshot");
        assert_eq!(
            shown.metadata,
            PodMetadata {
                resource_version: Some("7".to_owned()),
                deletion_timestamp: Some(at(1_795_904_030.0)),
                deletion_grace_period_seconds: Some(30),
                finalizers: vec!["podcheck.io/hold".to_owned()],
                gone: false,
            }
        );
    }

    #[test]
    fn a_pod_missing_from_a_relist_is_gone() {
        let mut follower = PodFollower::new("p");
        let t = |s: f64| at(1_795_904_000.0 + s);
        assert!(follower
            .follow(watcher::Event::Apply(terminating_pod("7", 0, &[])), t(1.0))
            .is_some());
        // The connection dropped; the pod was deleted meanwhile; the relist lacks it.
        assert!(follower.follow(watcher::Event::Init, t(2.0)).is_none());
        let last = follower
            .follow(watcher::Event::InitDone, t(3.0))
            .expect("the pod is gone");
        assert!(last.metadata.gone && follower.ended());
        assert_eq!(last.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(last.at, t(3.0));
        assert!(follower
            .follow(watcher::Event::Apply(terminating_pod("9", 0, &[])), t(4.0))
            .is_none());
    }

    #[test]
    fn a_relist_that_still_has_the_pod_shows_only_what_changed() {
        let mut follower = PodFollower::new("p");
        let t = |s: f64| at(1_795_904_000.0 + s);
        let pod = terminating_pod("7", 30, &[]);
        assert!(follower
            .follow(watcher::Event::Apply(pod.clone()), t(1.0))
            .is_some());
        assert!(follower.follow(watcher::Event::Init, t(2.0)).is_none());
        assert!(follower
            .follow(watcher::Event::InitApply(pod), t(2.5))
            .is_none());
        assert!(follower.follow(watcher::Event::InitDone, t(3.0)).is_none());
        assert!(!follower.ended());
        // Another pod's events say nothing about this one.
        let mut other = terminating_pod("8", 30, &[]);
        other.metadata.name = Some("q".to_owned());
        assert!(follower
            .follow(watcher::Event::Delete(other), t(4.0))
            .is_none());
        assert!(!follower.ended());
    }

    use jiff::Timestamp;

    #[test]
    fn recorded_watch_events_parse_as_the_api_types() {
        // What kube-rs decodes: the fixtures are real watch events.
        let text = include_str!("../../../tests/fixtures/kube/pod-watch-succeeded.jsonl");
        for line in text.lines() {
            let event: WatchEvent<Pod> = serde_json::from_str(line).expect("WatchEvent<Pod>");
            assert!(matches!(
                event,
                WatchEvent::Added(_) | WatchEvent::Modified(_)
            ));
        }
    }

    /// A recorded pod watch, its events arriving a second apart from `first` (Unix seconds).
    fn pod_watch(text: &str, first: f64) -> (Vec<(String, Pod)>, Vec<Time>) {
        let events: Vec<(String, Pod)> = recorded(text);
        let arrivals = (0..events.len()).map(|i| at(first + i as f64)).collect();
        (events, arrivals)
    }

    #[test]
    fn every_version_of_the_pod_becomes_one_snapshot_in_server_order() {
        let (events, arrivals) = pod_watch(
            include_str!("../../../tests/fixtures/kube/pod-watch-succeeded.jsonl"),
            1_795_904_400.0,
        );
        let observations = observe(&events, &arrivals);
        let phases: Vec<String> = observations
            .iter()
            .filter_map(|o| match o {
                Observation::Snapshot(s) => Some(s.status.phase.clone().unwrap_or_default()),
                Observation::Event(_) => None,
            })
            .collect();
        // Exactly what the API server sent, in its order: this server even leaves Succeeded.
        assert_eq!(
            phases,
            [
                "Pending",
                "Pending",
                "Pending",
                "Succeeded",
                "Running",
                "Succeeded"
            ]
        );
        let versions: Vec<String> = observations
            .iter()
            .filter_map(|o| match o {
                Observation::Snapshot(s) => s.metadata.resource_version.clone(),
                Observation::Event(_) => None,
            })
            .collect();
        assert_eq!(versions, ["310", "315", "317", "322", "323", "328"]);
        let Some(Observation::Snapshot(last)) = observations.last() else {
            panic!("snapshots");
        };
        assert_eq!(last.at, arrivals[5], "the time the harness received it");
        let terminated = last.status.container_statuses.as_ref().expect("statuses")[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("terminated");
        assert_eq!(
            (terminated.exit_code, terminated.reason.as_deref()),
            (0, Some("Completed"))
        );
    }

    #[test]
    fn a_repeated_version_is_dropped_and_deletion_ends_the_watch_with_the_pod_gone() {
        let (events, arrivals) = pod_watch(
            include_str!("../../../tests/fixtures/kube/pod-watch-delete-grace0.jsonl"),
            1_795_904_000.0,
        );
        let observations = observe(&events, &arrivals);
        // Seven events: ADDED and MODIFIED of version 112 are one state.
        assert_eq!(observations.len(), events.len() - 1);
        let Some(Observation::Snapshot(last)) = observations.last() else {
            panic!("snapshots");
        };
        assert!(last.metadata.gone);
        assert_eq!(last.metadata.resource_version.as_deref(), Some("118"));
    }

    #[test]
    fn events_of_an_earlier_pod_with_the_same_name_are_not_this_pods() {
        let events: Vec<(String, Event)> = recorded(include_str!(
            "../../../tests/fixtures/kube/events-watch-crashloop.jsonl"
        ));
        let uid = "47effb85";
        let this_uid = events
            .iter()
            .filter_map(|(_, e)| e.involved_object.uid.clone())
            .find(|u| u.starts_with(uid))
            .expect("the new pod's uid");
        let mut repeats = Repeats::default();
        let received = at(1_795_904_320.0);
        let reasons: Vec<String> = events
            .iter()
            .filter(|(_, e)| repeats.new_event(e))
            .filter_map(|(_, e)| event(e, "crash", &this_uid, received.clone()))
            .map(|e| e.reason)
            .collect();
        assert_eq!(
            reasons,
            [
                "Scheduled",
                "Scheduled",
                "Started",
                "Pulled",
                "Created",
                "BackOff"
            ],
            "the five events of the earlier pod are left out"
        );
        let (_, first) = &events[0];
        assert!(
            event(first, "other", &this_uid, received).is_none(),
            "another pod's"
        );
        assert!(!repeats.new_event(first), "the same event again is no news");
    }

    /// The recorded crash loop, converted and checked as the kube target's run would be:
    /// the checker sees what the server sent (the restart count climbing each second with
    /// no restart, no PodReadyToStartContainers condition) as divergences.
    #[test]
    fn a_recorded_crash_loop_is_checked_against_the_oracle() {
        let events: Vec<(String, Pod)> = recorded(include_str!(
            "../../../tests/fixtures/kube/pod-watch-crashloop.jsonl"
        ));
        let arrivals: Vec<Time> =
            include_str!("../../../tests/fixtures/kube/pod-watch-crashloop.arrivals")
                .lines()
                .map(|l| at(l.trim().parse().expect("seconds")))
                .collect();
        assert_eq!(arrivals.len(), events.len());
        let created = events[0]
            .1
            .metadata
            .creation_timestamp
            .clone()
            .expect("created");
        let mut trace = Trace {
            target: "kube:recorded".to_owned(),
            timing: podcheck_oracle::TimingProfile {
                time_scale: 1.0,
                tolerance_ms: 5000,
            },
            created_at: created,
            ended_at: arrivals[arrivals.len() - 1].clone(),
            snapshots: Vec::new(),
            events: Vec::new(),
            actions: Vec::new(),
            logs: Default::default(),
            ended_early: None,
        };
        for observation in observe(&events, &arrivals) {
            if let Observation::Snapshot(snapshot) = observation {
                trace.snapshots.push(snapshot);
            }
        }
        let scenario = Scenario::from_yaml(
            "recorded crash loop",
            "name: crash
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: crash}
  spec:
    restartPolicy: Always
    containers:
      - name: c
behaviours:
  c:
    then: {exit: {after: 3s, code: 3}}
",
        )
        .expect("scenario");
        let prediction = predict(&scenario).expect("prediction");
        let verdict = check(&prediction, &trace);
        assert_eq!(verdict.outcome, Outcome::Fail, "{verdict:#?}");
        let rules = verdict.violated_rules();
        assert!(
            rules.contains(&RuleId::ConditionPodReadyToStartContainers),
            "{rules:?}"
        );
        assert!(
            rules.iter().any(|r| matches!(
                r,
                RuleId::ContainerRestartCount
                    | RuleId::RestartBackoffDoubling
                    | RuleId::RestartBackoffFirstImmediate
            )),
            "a restart count that climbs without restarts: {rules:#?}"
        );
    }

    #[test]
    fn field_paths_name_their_container() {
        assert_eq!(container_of("spec.containers{app}").as_deref(), Some("app"));
        assert_eq!(
            container_of("spec.initContainers{init-1}").as_deref(),
            Some("init-1")
        );
        assert_eq!(container_of("spec.containers{}"), None);
        assert_eq!(container_of(""), None);
        assert_eq!(container_of("spec.containers{app"), None);
    }
}
