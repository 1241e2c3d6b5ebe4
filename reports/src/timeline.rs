//! A case's timeline: what each container showed over spec time against what the oracle
//! predicted, small enough to keep for every case (segments, not snapshots).
//!
//! The harness computes it from the scenario, the prediction and the trace; reports draw
//! it. Times are spec milliseconds since the pod's creation.

use serde::{Deserialize, Serialize};

/// Everything a report draws of one case.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// Until when the target was observed.
    pub observed_until_ms: i64,
    /// How long the oracle would have watched (observation may have ended earlier).
    pub horizon_ms: i64,
    /// The tolerance the target adds to both ends of every window (already in the bands).
    pub tolerance_ms: i64,
    /// The pod's phase over time, and when it was being deleted or gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseSegment>,
    /// One lane per container: init containers and sidecars, regular, ephemeral.
    pub lanes: Vec<Lane>,
    /// The fault actions the harness performed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultMarker>,
    /// Each violation at the moment it was seen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<ViolationPin>,
}

/// The pod's phase from `from_ms` until `until_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseSegment {
    pub from_ms: i64,
    pub until_ms: i64,
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`, or `Gone` once the object
    /// no longer exists; ` (deleting)` follows while a deletion timestamp is set.
    pub phase: String,
}

/// Which list of the pod spec a container is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LaneKind {
    Init,
    Sidecar,
    Regular,
    Ephemeral,
}

impl LaneKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LaneKind::Init => "init",
            LaneKind::Sidecar => "sidecar",
            LaneKind::Regular => "container",
            LaneKind::Ephemeral => "ephemeral",
        }
    }
}

/// One container: what it showed, what was predicted, what its workload logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lane {
    pub container: String,
    pub kind: LaneKind,
    /// Observed states, in time order, each of one instance (restartCount value).
    #[serde(default)]
    pub states: Vec<StateSegment>,
    /// When each instance was seen to start, and how far outside its predicted window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub starts: Vec<ObservedStart>,
    /// Observed flips of `started` and `ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flips: Vec<FlagFlip>,
    /// The predicted windows, tolerance included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predicted: Vec<Band>,
    /// Probe answers, hook calls, signals, starts and exits from the workload's own log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ticks: Vec<Tick>,
}

/// An instance's state from `from_ms` until `until_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateSegment {
    pub from_ms: i64,
    pub until_ms: i64,
    pub instance: u32,
    pub state: State,
}

/// A container state as the status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    Waiting {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    Running,
    Terminated {
        exit_code: i32,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
}

impl State {
    /// How a person reads it: `Waiting CrashLoopBackOff`, `Running`, `Terminated 1 Error`.
    pub fn describe(&self) -> String {
        match self {
            State::Waiting { reason } if reason.is_empty() => "Waiting".to_owned(),
            State::Waiting { reason } => format!("Waiting {reason}"),
            State::Running => "Running".to_owned(),
            State::Terminated { exit_code, reason } if reason.is_empty() => {
                format!("Terminated {exit_code}")
            }
            State::Terminated { exit_code, reason } => format!("Terminated {exit_code} {reason}"),
        }
    }
}

/// An instance's observed start against its predicted start window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedStart {
    pub instance: u32,
    pub at_ms: i64,
    /// The predicted window (tolerance included), when the plan has this instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<(i64, i64)>,
}

impl ObservedStart {
    /// How far outside its window the start came: negative when early, positive when
    /// late, zero inside (or without a window).
    pub fn off_by_ms(&self) -> i64 {
        match self.window {
            Some((lo, _)) if self.at_ms < lo => self.at_ms - lo,
            Some((_, hi)) if self.at_ms > hi => self.at_ms - hi,
            _ => 0,
        }
    }
}

/// `started` or `ready` turned `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagFlip {
    pub at_ms: i64,
    pub flag: Flag,
    pub to: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Flag {
    Started,
    Ready,
}

/// A window in which the oracle expects something of one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Band {
    pub instance: u32,
    pub what: Expected,
    pub from_ms: i64,
    pub until_ms: i64,
    /// The rule that decides the window.
    pub rule: String,
    /// What is expected, in words (`restart after the 20s back-off`).
    pub label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Expected {
    /// The instance starts.
    Start,
    /// The instance exits or is killed.
    End,
    /// `started` turns true.
    Started,
    /// `ready` turns true.
    Ready,
    /// `ready` turns false.
    NotReady,
}

/// One line of the workload's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tick {
    pub at_ms: i64,
    pub kind: TickKind,
    /// Whether the answer or call succeeded, where that means anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// `live ok`, `pre-stop`, `SIGTERM`, `exit 1`.
    pub label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TickKind {
    Probe,
    Hook,
    Signal,
    Start,
    Exit,
    Error,
}

/// A fault action the harness performed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultMarker {
    /// When the harness asked the target.
    pub at_ms: i64,
    /// When the scenario scheduled it.
    pub due_ms: i64,
    /// The action as `kubectl` would say it (`delete --grace-period=20`).
    pub action: String,
    /// `done`, or why not.
    pub result: String,
}

/// A violation, pinned at the moment it was seen, with what the rule says and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViolationPin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<i64>,
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub expected: String,
    pub observed: String,
    /// The rule's statement in the catalogue.
    pub statement: String,
    /// A link to the rule's first source that has one (documentation or kubelet source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A link for a catalogue source: documentation URLs as they are, kubelet and client-go
/// source files on GitHub; None for sources without an address (the seed).
pub fn source_link(source: &str) -> Option<String> {
    if source.starts_with("https://") {
        return Some(
            source
                .split_whitespace()
                .next()
                .unwrap_or(source)
                .to_owned(),
        );
    }
    let (repository, branch) = if let Some(rest) = source.strip_prefix("kubernetes ") {
        (("kubernetes/kubernetes", rest), "master")
    } else if let Some(rest) = source.strip_prefix("client-go ") {
        (("kubernetes/client-go", rest), "master")
    } else if let Some(rest) = source.strip_prefix("containerd ") {
        (("containerd/containerd", rest), "main")
    } else {
        return None;
    };
    let (repository, rest) = repository;
    // The path is the first word; what follows names functions in it.
    let path = rest.split_whitespace().next()?.trim_end_matches([',', ';']);
    path.contains('/')
        .then(|| format!("https://github.com/{repository}/blob/{branch}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_link_to_documentation_and_kubelet_source() {
        assert_eq!(
            source_link("kubernetes pkg/kubelet/kubelet_pods.go getPhase").as_deref(),
            Some(
                "https://github.com/kubernetes/kubernetes/blob/master/pkg/kubelet/kubelet_pods.go"
            )
        );
        assert_eq!(
            source_link("https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/")
                .as_deref(),
            Some("https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/")
        );
        assert_eq!(source_link("seed: Probes"), None);
    }

    #[test]
    fn a_start_outside_its_window_says_by_how_much() {
        let start = |at_ms| ObservedStart {
            instance: 2,
            at_ms,
            window: Some((20_000, 36_000)),
        };
        assert_eq!(start(12_500).off_by_ms(), -7_500);
        assert_eq!(start(25_000).off_by_ms(), 0);
        assert_eq!(start(40_000).off_by_ms(), 4_000);
    }
}
