//! The pod's watch: podman polled until the pod is gone, each change a snapshot, and a
//! deletion's last state shown before the pod's removal.

use super::cli::{pod_exists, run_podman};
use super::convert::{convert, Inspected};
use super::init::note_removed;
use super::logs::keep_init_logs;
use super::{locked, Shared, SpecContainers};
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::{Observation, PodEvent, PodMetadata, Snapshot};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Each poll runs podman twice (~50 ms of CPU each); container times come from podman's
/// own StartedAt/FinishedAt, so the interval only delays when a change is seen.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(200);

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
pub(super) async fn poll(
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

/// The state of one pod's watch.
pub(super) struct Watching {
    conf: PathBuf,
    name: String,
    containers: SpecContainers,
    shared: Arc<Shared>,
    /// The last snapshot yielded.
    previous: Option<Snapshot>,
    ended: bool,
}

impl Watching {
    pub(super) fn new(
        conf: PathBuf,
        name: String,
        containers: SpecContainers,
        shared: Arc<Shared>,
    ) -> Watching {
        Watching {
            conf,
            name,
            containers,
            shared,
            previous: None,
            ended: false,
        }
    }

    /// The next change podman shows, None once the pod is gone.
    pub(super) async fn next(&mut self) -> Option<Observation> {
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
    use super::super::convert::tests::status_of;
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + seconds).expect("time"))
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
}
