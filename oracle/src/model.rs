//! The reference model: what the kubelet does with a pod, as pure functions.
//!
//! Two halves. [`plan_containers`] decides, per container, which instances run and when
//! (restart policy and crash-loop back-off). The `derive_*` functions compute the pod-level
//! status (phase, conditions) that the kubelet generates from a set of container statuses;
//! the checker applies them to every observed snapshot and the model target uses them to
//! produce its own snapshots.

use crate::behaviour::{Behaviour, Run};
use crate::duration::SpecDuration;
use crate::probes::{plan_instance, Ambiguous, Carry, ContainerProbes, ProbePlan};
use crate::scenario::{BackOffParams, RestartPolicy, Scenario};
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};

/// PLEG relist period (`genericPlegRelistPeriod`, pkg/kubelet/kubelet.go): a container's exit
/// is seen by the kubelet at most this late.
pub const RELIST_PERIOD: SpecDuration = SpecDuration::from_secs(1);

/// How late after pod creation every container's first instance may start, on a node whose
/// image is present. Targets add their own tolerance for scheduling and sandbox set-up.
pub const FIRST_START_WITHIN: SpecDuration = SpecDuration::from_secs(2);

/// How late after the last container exits a status update may show the consequence
/// (terminal phase, a restart without back-off, the CrashLoopBackOff waiting state):
/// one PLEG relist and one sync.
pub const STATUS_LAG: SpecDuration = SpecDuration::from_secs(2);

/// Back-off entries expire when a container ran this long since its last restart
/// (`crashLoopBackOff.HasExpiredFunc`, pkg/kubelet/kubelet.go: `eventTime.Sub(lastUpdate) >
/// 600*time.Second`, hard-coded regardless of the configured maximum).
pub const BACK_OFF_RESET_AFTER: SpecDuration = SpecDuration::from_secs(600);

/// How much later than the back-off the kubelet may restart a container.
///
/// The restart happens at the first pod sync after the back-off expired. Up to v1.34 a
/// pod in back-off is requeued after a sync error every `wait.Jitter(backOffPeriod=10s, 0.5)`
/// (pkg/kubelet/pod_workers.go `completeWork`), so up to 15 s late; since kubernetes#133066
/// it is requeued at `Jitter(min(expiry - now, 60s), 0.5)`, so up to half the remaining
/// back-off (at most 30 s) late. The window covers both, plus one relist.
pub fn restart_slack(back_off: SpecDuration) -> SpecDuration {
    let requeue_overshoot = SpecDuration::from_secs(15).max(SpecDuration::from_millis(
        back_off.min(SpecDuration::from_secs(60)).as_millis() / 2,
    ));
    requeue_overshoot + RELIST_PERIOD
}

/// What the kubelet does after an instance exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AfterExit {
    /// The restart policy keeps the container terminated.
    StaysTerminated,
    /// Restarted without back-off: the first restart, or the first after the back-off reset.
    RestartImmediately,
    /// Restarted once the back-off has passed since the exit.
    RestartAfterBackOff(SpecDuration),
}

/// One instance (one `restartCount` value) of a container.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstancePlan {
    /// Equal to the container's restartCount while this instance is current.
    pub index: u32,
    pub run: Run,
    /// Rule that decides when this instance starts.
    pub start_rule: &'static str,
    /// Start window: after pod creation for instance 0, after the previous instance's
    /// exit for later ones.
    pub start_after: (SpecDuration, SpecDuration),
    /// What the kubelet does once this instance exits (None while it runs forever).
    pub after_exit: Option<AfterExit>,
    /// Earliest and latest start counted from pod creation, before target tolerance.
    pub earliest_start: SpecDuration,
    pub latest_start: SpecDuration,
    /// What the container's probes do to this instance; None without probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<ProbePlan>,
}

/// How an instance ends: its process exits, or a probe has it killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    /// Earliest and latest end after the instance's start.
    pub lo: SpecDuration,
    pub hi: SpecDuration,
    pub code: i32,
    pub killed_by: Option<crate::probes::ProbeKind>,
}

impl InstancePlan {
    pub fn end(&self) -> Option<End> {
        if let Some((kind, window)) = self.probes.as_ref().and_then(|p| p.kill.as_ref()) {
            return Some(End {
                lo: window.lo,
                hi: window.hi,
                code: crate::probes::KILLED_EXIT_CODE,
                killed_by: Some(*kind),
            });
        }
        match self.run {
            Run::Exit { after, code } => Some(End {
                lo: after,
                hi: after,
                code,
                killed_by: None,
            }),
            Run::Forever => None,
        }
    }
}

/// Every instance of one container the oracle expects up to the horizon.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPlan {
    pub name: String,
    pub instances: Vec<InstancePlan>,
    /// Whether the container settles (runs forever or stays terminated) within the plan;
    /// false for a crash loop that goes on past the horizon.
    pub settles: bool,
    /// Why the probes of some instance have no single prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguity: Option<String>,
}

impl ContainerPlan {
    pub fn last(&self) -> Option<&InstancePlan> {
        self.instances.last()
    }

    /// The exit code the container finally stays terminated with, if it does.
    pub fn final_exit_code(&self) -> Option<i32> {
        let last = self.last()?;
        match (last.after_exit, last.end()) {
            (Some(AfterExit::StaysTerminated), Some(end)) => Some(end.code),
            _ => None,
        }
    }
}

/// The container restart back-off of one container: client-go `flowcontrol.Backoff` as the
/// kubelet configures it (`NewBackOff(initial, max)`, no jitter, 600 s expiry).
#[derive(Clone, Copy, Debug)]
struct BackOffEntry {
    current: SpecDuration,
    /// When `Next` last ran, i.e. when the current instance was started.
    last_update: SpecDuration,
}

/// Plans each container's instances until every container settles or `until` has passed.
///
/// Time stamps inside the plan are nominal (lower bounds): the back-off decisions depend
/// on run lengths measured from the kubelet's own restart time, which the model takes as
/// the earliest start.
pub fn plan_containers(scenario: &Scenario, until: SpecDuration) -> Vec<ContainerPlan> {
    let policy = scenario.restart_policy();
    let back_off = effective_back_off(scenario.kubelet.crash_loop_back_off);
    scenario
        .containers()
        .iter()
        .enumerate()
        .map(|(index, container)| {
            let behaviour = scenario
                .behaviour(&container.name)
                .cloned()
                .unwrap_or_else(Behaviour::forever);
            // Scenarios are validated before they are planned; an unreadable probe here
            // is planned as no probe and reported as an ambiguity.
            let (probes, unreadable) = match scenario.container_probes(container, index) {
                Ok(probes) => (probes, None),
                Err((field, reason)) => (
                    ContainerProbes::default(),
                    Some(format!("{field}: {reason}")),
                ),
            };
            let mut plan = plan_one(
                &container.name,
                &behaviour,
                &probes,
                policy,
                back_off,
                until,
            );
            plan.ambiguity = plan.ambiguity.or(unreadable);
            plan
        })
        .collect()
}

/// `newCrashLoopBackOff`: a configured maximum below the initial back-off lowers the initial.
pub fn effective_back_off(params: BackOffParams) -> BackOffParams {
    BackOffParams {
        initial: params.initial.min(params.max),
        max: params.max,
    }
}

fn plan_one(
    name: &str,
    behaviour: &Behaviour,
    probes: &ContainerProbes,
    policy: RestartPolicy,
    back_off: BackOffParams,
    until: SpecDuration,
) -> ContainerPlan {
    let mut instances = Vec::new();
    let mut carry = Carry::default();
    let mut ambiguity = None;
    let mut entry: Option<BackOffEntry> = None;
    let (mut earliest, mut latest) = (SpecDuration::ZERO, FIRST_START_WITHIN);
    let mut start_after = (SpecDuration::ZERO, FIRST_START_WITHIN);
    let mut start_rule = "container.state.running";
    let mut index = 0u32;
    loop {
        let run = behaviour.run_for_start(index);
        let mut plan = InstancePlan {
            index,
            run,
            start_rule,
            start_after,
            after_exit: None,
            earliest_start: earliest,
            latest_start: latest,
            probes: None,
        };
        if !probes.is_empty() {
            let exits_at = match run {
                Run::Exit { after, .. } => Some(after),
                Run::Forever => None,
            };
            match plan_instance(probes, behaviour.health.as_ref(), carry, exits_at) {
                Ok((probe_plan, carry_out)) => {
                    plan.probes = Some(probe_plan);
                    carry = carry_out;
                }
                Err(Ambiguous(reason)) => {
                    ambiguity = Some(format!("instance {index}: {reason}"));
                }
            }
        }
        let Some(end) = plan.end() else {
            instances.push(plan);
            return ContainerPlan {
                name: name.to_owned(),
                instances,
                settles: true,
                ambiguity,
            };
        };
        let code = end.code;
        let finished = earliest + end.lo;
        let finished_latest = latest + end.hi;
        if !policy.restarts_after(code) || ambiguity.is_some() {
            plan.after_exit = Some(AfterExit::StaysTerminated);
            instances.push(plan);
            return ContainerPlan {
                name: name.to_owned(),
                instances,
                settles: true,
                ambiguity,
            };
        }
        // doBackOff: in back-off while now - FinishedAt < entry.backoff, unless the entry
        // expired; once out of it, Next() doubles (or re-initialises) the entry and the
        // container starts.
        let expired =
            entry.is_none_or(|e| finished.saturating_sub(e.last_update) > BACK_OFF_RESET_AFTER);
        let (wait, rule) = match entry {
            Some(e) if !expired => (
                e.current,
                if e.current >= back_off.max {
                    "restart.backoff.cap"
                } else {
                    "restart.backoff.doubling"
                },
            ),
            Some(_) => (SpecDuration::ZERO, "restart.backoff.reset"),
            None => (SpecDuration::ZERO, "restart.backoff.first-immediate"),
        };
        let next_start = finished + wait;
        entry = Some(match entry {
            Some(e) if !expired => BackOffEntry {
                current: (e.current * 2).min(back_off.max),
                last_update: next_start,
            },
            _ => BackOffEntry {
                current: back_off.initial,
                last_update: next_start,
            },
        });
        let slack = if wait == SpecDuration::ZERO {
            STATUS_LAG
        } else {
            restart_slack(wait)
        };
        plan.after_exit = Some(if wait == SpecDuration::ZERO {
            AfterExit::RestartImmediately
        } else {
            AfterExit::RestartAfterBackOff(wait)
        });
        instances.push(plan);
        earliest = next_start;
        latest = finished_latest + wait + slack;
        start_after = (wait, wait + slack);
        start_rule = rule;
        index += 1;
        if earliest > until {
            return ContainerPlan {
                name: name.to_owned(),
                instances,
                settles: false,
                ambiguity,
            };
        }
    }
}

/// Whether the back-off reset decision of some instance lies so close to the 600 s
/// threshold that timing noise could flip it; such scenarios have no single prediction.
pub fn reset_is_ambiguous(plans: &[ContainerPlan], margin: SpecDuration) -> bool {
    plans.iter().any(|plan| {
        plan.instances.iter().skip(1).any(|instance| {
            instance.end().is_some_and(|end| {
                end.lo <= BACK_OFF_RESET_AFTER + margin && end.hi + margin >= BACK_OFF_RESET_AFTER
            })
        })
    })
}

/// The phase the kubelet computes from container statuses (`getPhase`,
/// pkg/kubelet/kubelet_pods.go), for pods without init containers.
pub fn derive_phase(
    container_names: &[&str],
    statuses: &[ContainerStatus],
    policy: RestartPolicy,
) -> &'static str {
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for name in container_names {
        let Some(status) = statuses.iter().find(|s| s.name == *name) else {
            unknown += 1;
            continue;
        };
        let state = status.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
            stopped += 1;
            if terminated.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.and_then(|s| s.waiting.as_ref()).is_some() {
            let has_last_termination = status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some();
            if has_last_termination {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 && unknown == 0 {
        "Running"
    } else if running == 0 && stopped > 0 && unknown == 0 {
        match policy {
            RestartPolicy::Always => "Running",
            _ if stopped == succeeded => "Succeeded",
            RestartPolicy::Never => "Failed",
            RestartPolicy::OnFailure => "Running",
        }
    } else {
        "Pending"
    }
}

pub fn is_terminal_phase(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// The conditions the kubelet generates (pkg/kubelet/status/generate.go) for a pod without
/// init containers, probes or readiness gates. `sandbox_ready` is whether the pod sandbox
/// (network namespace) exists: true from sandbox creation until a terminal pod is torn down.
pub fn derive_conditions(
    container_names: &[&str],
    statuses: &[ContainerStatus],
    phase: &str,
    sandbox_ready: bool,
) -> Vec<ExpectedCondition> {
    let unready: Vec<&str> = container_names
        .iter()
        .copied()
        .filter(|name| !statuses.iter().any(|s| s.name == *name && s.ready))
        .collect();
    let unknown: Vec<&str> = container_names
        .iter()
        .copied()
        .filter(|name| !statuses.iter().any(|s| s.name == *name))
        .collect();
    let containers_ready = match phase {
        "Succeeded" if unknown.is_empty() => {
            ExpectedCondition::new("ContainersReady", "False", Some("PodCompleted"))
        }
        "Failed" => ExpectedCondition::new("ContainersReady", "False", Some("PodFailed")),
        _ if unready.is_empty() && unknown.is_empty() => {
            ExpectedCondition::new("ContainersReady", "True", None)
        }
        _ => {
            let mut parts = Vec::new();
            if !unknown.is_empty() {
                parts.push(format!(
                    "containers with unknown status: [{}]",
                    unknown.join(" ")
                ));
            }
            let unready_known: Vec<&str> = unready
                .iter()
                .copied()
                .filter(|n| !unknown.contains(n))
                .collect();
            if !unready_known.is_empty() {
                parts.push(format!(
                    "containers with unready status: [{}]",
                    unready_known.join(" ")
                ));
            }
            let mut condition =
                ExpectedCondition::new("ContainersReady", "False", Some("ContainersNotReady"));
            condition.message = Some(parts.join(", "));
            condition
        }
    };
    let mut ready = containers_ready.clone();
    ready.type_ = "Ready";
    let initialized = if phase == "Succeeded" {
        ExpectedCondition::new("Initialized", "True", Some("PodCompleted"))
    } else {
        ExpectedCondition::new("Initialized", "True", None)
    };
    vec![
        ExpectedCondition::new(
            "PodReadyToStartContainers",
            if sandbox_ready { "True" } else { "False" },
            None,
        ),
        initialized,
        ready,
        containers_ready,
        ExpectedCondition::new("PodScheduled", "True", None),
    ]
}

/// A condition as the model expects it; `reason` None means "no reason".
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExpectedCondition {
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub message: Option<String>,
}

impl ExpectedCondition {
    fn new(type_: &'static str, status: &'static str, reason: Option<&'static str>) -> Self {
        ExpectedCondition {
            type_,
            status,
            reason,
            message: None,
        }
    }

    pub fn to_pod_condition(&self) -> PodCondition {
        PodCondition {
            type_: self.type_.to_owned(),
            status: self.status.to_owned(),
            reason: self.reason.map(str::to_owned),
            message: self.message.clone(),
            ..PodCondition::default()
        }
    }
}

/// The terminated reason the container runtime reports for an exit that was not an OOM
/// kill (containerd `toCRIContainerStatus`; the kubelet copies it verbatim).
pub fn terminated_reason(exit_code: i32) -> &'static str {
    if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Go's `time.Duration.String()` for whole seconds, as in the CrashLoopBackOff message.
pub fn go_duration(d: SpecDuration) -> String {
    let secs = d.as_millis() / 1000;
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60)
    }
}
