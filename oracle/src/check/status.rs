//! Pod-level status: the phase and the conditions of every snapshot must be what the kubelet
//! derives from that snapshot's container states; a terminal phase is never left.

use super::{secs, Collector};
use crate::derive::{derive_conditions, derive_phase, is_terminal_phase, SpecContainer};
use crate::plan::TERMINAL_PHASE_LAG;
use crate::predict::Prediction;
use crate::rules::RuleId;
use crate::scenario::ContainerKind;
use crate::scenario::RestartPolicy;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};
use std::collections::BTreeSet;

/// The pod's phase across snapshots.
pub(super) struct PhaseWatch {
    policy: RestartPolicy,
    tol: i64,
    /// The terminal phase the pod reached, and when.
    pub(super) terminal: Option<(String, i64)>,
    running_seen: bool,
    phases_seen: BTreeSet<String>,
    /// A phase that disagrees with the container states only counts once the
    /// disagreement outlasts the target's tolerance: a target that assembles its status
    /// from several non-atomic reads (podman) may show a brief lag, and whether a poll
    /// catches it is chance. A disagreement that lasts is reported every time.
    mismatch: Option<PhaseMismatch>,
    /// The phase shown while the container states still allowed a non-terminal phase: the
    /// phase `mergePodStatus` holds back once the kubelet generates a terminal one.
    held: Option<String>,
}

impl PhaseWatch {
    pub(super) fn new(policy: RestartPolicy, tol: i64) -> PhaseWatch {
        PhaseWatch {
            policy,
            tol,
            terminal: None,
            running_seen: false,
            phases_seen: BTreeSet::new(),
            mismatch: None,
            held: None,
        }
    }

    /// Checks one snapshot's phase against the phase derived from the same snapshot's
    /// container states; a terminal phase is sticky.
    pub(super) fn observe(
        &mut self,
        out: &mut Collector,
        containers: &[SpecContainer<'_>],
        statuses: &[ContainerStatus],
        phase: &str,
        deleted: bool,
        t: i64,
    ) {
        let (policy, tol) = (self.policy, self.tol);
        self.phases_seen.insert(phase.to_owned());
        if phase == "Running" {
            self.running_seen = true;
        }
        let derived = derive_phase(containers, statuses, policy, deleted);
        // A terminal phase is held back until the pod's running sidecars are stopped
        // (mergePodStatus waits for SyncTerminatingPod), however long their stop takes:
        // that is timed by the sidecar rules.
        let sidecar_running = containers.iter().any(|(name, kind)| {
            matches!(kind, ContainerKind::Sidecar | ContainerKind::Ephemeral)
                && statuses.iter().any(|s| {
                    s.name == *name && s.state.as_ref().is_some_and(|st| st.running.is_some())
                })
        });
        let derived = if is_terminal_phase(derived) && sidecar_running && !is_terminal_phase(phase)
        {
            phase
        } else {
            derived
        };
        if let Some((terminal_phase, since)) = &self.terminal {
            if phase != terminal_phase {
                out.add(
                    RuleId::PhaseTerminalNeverLeft,
                    None,
                    format!("phase stays {terminal_phase} (reached at {})", secs(*since)),
                    format!("phase {phase:?}"),
                    Some(t),
                );
            }
        } else if phase != derived {
            let rule = phase_rule(derived, phase, containers, statuses, policy, deleted);
            let since = self.mismatch.as_ref().map_or(t, |m| m.since);
            // The kubelet writes the terminal phase only once the pod worker has stopped
            // the sandbox; until then the API keeps the phase it had (mergePodStatus).
            let held_back = is_terminal_phase(derived) && self.held.as_deref() == Some(phase);
            let allowed = if held_back {
                tol + TERMINAL_PHASE_LAG.as_millis() as i64
            } else {
                tol
            };
            let mismatch = PhaseMismatch {
                rule,
                expected: if held_back {
                    format!(
                        "phase {derived} within {} of container states {} (the kubelet holds phase {phase} back only until the sandbox is stopped)",
                        secs(allowed),
                        describe_states(statuses)
                    )
                } else {
                    format!(
                        "phase {derived} for container states {}",
                        describe_states(statuses)
                    )
                },
                observed: format!("phase {phase:?}"),
                since,
                allowed,
                held_back,
            };
            if mismatch.outlasted(t) {
                out.add(
                    mismatch.rule,
                    None,
                    mismatch.expected.clone(),
                    mismatch.observed.clone(),
                    Some(since),
                );
            }
            self.mismatch = Some(mismatch);
        }
        if phase == derived || self.terminal.is_some() {
            if let Some(m) = self.mismatch.take() {
                if m.outlasted(t) {
                    out.add(m.rule, None, m.expected, m.observed, Some(m.since));
                }
            }
        }
        if !is_terminal_phase(derived) {
            self.held = Some(phase.to_owned());
        }
        if self.terminal.is_none() && is_terminal_phase(phase) {
            self.terminal = Some((phase.to_owned(), t));
        }
    }

    /// A disagreement still going on when observation ends has lasted as long as it could;
    /// when observation ended early (`so_far_end`), only if it has already lasted longer
    /// than it may. A terminal phase held back is allowed its lag even at the end (`end`):
    /// observation that ends within it shows no late phase, as `check_terminal` agrees.
    pub(super) fn report_lasting_mismatch(
        &mut self,
        out: &mut Collector,
        so_far_end: Option<i64>,
        end: i64,
    ) {
        if let Some(m) = self.mismatch.take() {
            let lasted = match so_far_end {
                Some(so_far) => m.outlasted(so_far),
                None => !m.held_back || m.outlasted(end),
            };
            if lasted {
                out.add(m.rule, None, m.expected, m.observed, Some(m.since));
            }
        }
    }

    /// A pod whose containers run long enough must be seen Running.
    pub(super) fn check_running_shown(&self, out: &mut Collector, prediction: &Prediction) {
        if prediction.running_observable && !self.running_seen {
            out.add(
                RuleId::PhaseRunning,
                None,
                "phase Running while the containers run".to_owned(),
                format!(
                    "phases seen: {:?}",
                    self.phases_seen.iter().collect::<Vec<_>>()
                ),
                None,
            );
        }
    }
}

struct PhaseMismatch {
    rule: RuleId,
    expected: String,
    observed: String,
    since: i64,
    /// How long this disagreement may last.
    allowed: i64,
    held_back: bool,
}

impl PhaseMismatch {
    /// A held-back phase may last the whole allowed lag; any other disagreement counts
    /// once it has lasted the target's tolerance (at once for an exact target).
    fn outlasted(&self, t: i64) -> bool {
        if self.held_back {
            t - self.since > self.allowed
        } else {
            t - self.since >= self.allowed
        }
    }
}

fn phase_rule(
    derived: &str,
    observed: &str,
    containers: &[SpecContainer<'_>],
    statuses: &[ContainerStatus],
    policy: RestartPolicy,
    deleted: bool,
) -> RuleId {
    let of_kind = |kind: ContainerKind| {
        containers
            .iter()
            .filter(move |(_, k)| *k == kind)
            .filter_map(|(name, _)| statuses.iter().find(|s| s.name == *name))
    };
    let init_failed = of_kind(ContainerKind::Init).any(|s| {
        let code = |state: Option<&k8s_openapi::api::core::v1::ContainerState>| {
            state
                .and_then(|st| st.terminated.as_ref())
                .map(|t| t.exit_code)
        };
        code(s.state.as_ref())
            .or(code(s.last_state.as_ref()))
            .is_some_and(|c| c != 0)
    });
    let initializing = containers.iter().any(|(_, k)| k.is_init())
        && !crate::derive::has_any_regular_container_started(containers, statuses);
    let sidecars_running = of_kind(ContainerKind::Sidecar).any(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.running.as_ref())
            .is_some()
    });
    let sidecar_failed = of_kind(ContainerKind::Sidecar).any(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0)
    });
    match derived {
        "Failed" if init_failed && policy == RestartPolicy::Never && !deleted => {
            return RuleId::InitNeverFailsPod
        }
        "Pending" if initializing => return RuleId::InitPending,
        // Done while a sidecar still runs.
        "Running" if sidecars_running && is_terminal_phase(observed) => {
            return RuleId::SidecarPhaseIgnored
        }
        // Failed for a sidecar's exit code.
        "Succeeded" if observed == "Failed" && sidecar_failed => {
            return RuleId::SidecarPhaseIgnored
        }
        _ => {}
    }
    let all_stopped = !statuses.is_empty()
        && statuses.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.running.as_ref())
                .is_none()
        });
    match derived {
        "Succeeded" | "Failed" if deleted => RuleId::TerminationPhase,
        "Pending" => RuleId::PhasePending,
        "Succeeded" => RuleId::PhaseSucceeded,
        "Failed" => RuleId::PhaseFailed,
        _ if policy == RestartPolicy::Always && (all_stopped || is_terminal_phase(observed)) => {
            RuleId::PhaseAlwaysNeverTerminal
        }
        _ if policy == RestartPolicy::OnFailure && all_stopped => {
            RuleId::PhaseOnfailureRestartingRunning
        }
        _ => RuleId::PhaseRunning,
    }
}

pub(super) fn describe_states(statuses: &[ContainerStatus]) -> String {
    let parts: Vec<String> = statuses
        .iter()
        .map(|s| {
            let state = s.state.as_ref();
            let text = if state.and_then(|x| x.running.as_ref()).is_some() {
                "running".to_owned()
            } else if let Some(t) = state.and_then(|x| x.terminated.as_ref()) {
                format!("terminated({})", t.exit_code)
            } else if let Some(w) = state.and_then(|x| x.waiting.as_ref()) {
                format!("waiting({})", w.reason.as_deref().unwrap_or(""))
            } else {
                "unknown".to_owned()
            };
            format!("{}={text}", s.name)
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn check_conditions(
    out: &mut Collector,
    policy: RestartPolicy,
    containers: &[SpecContainer<'_>],
    statuses: &[ContainerStatus],
    phase: &str,
    conditions: &[PodCondition],
    deleted: bool,
    t: i64,
) {
    let any_running = statuses.iter().any(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.running.as_ref())
            .is_some()
    });
    // Conditions are generated from the phase the kubelet computes from the container
    // states (generateAPIPodStatus), and mergePodStatus holds back only the phase: while a
    // terminal phase is held back, they may already be the terminal ones.
    let derived = derive_phase(containers, statuses, policy, deleted);
    let held_back = is_terminal_phase(derived) && !is_terminal_phase(phase);
    let terminal_set = held_back.then(|| derive_conditions(containers, statuses, derived, true));
    // Every version generates PodCompleted for a Succeeded pod; only a Failed one had
    // ContainersNotReady before PodFailed existed, the same as for the phase held back.
    let only_terminal_set = held_back && derived == "Succeeded";
    let initializing = containers.iter().any(|(_, k)| k.is_init());
    for (position, expected) in derive_conditions(containers, statuses, phase, true)
        .into_iter()
        .enumerate()
    {
        let rule = match expected.type_ {
            "PodScheduled" => RuleId::ConditionPodScheduled,
            "PodReadyToStartContainers" => RuleId::ConditionPodReadyToStartContainers,
            "Initialized" if initializing && expected.status == "False" => RuleId::InitPending,
            "Initialized" => RuleId::ConditionInitialized,
            "ContainersReady" => RuleId::ConditionContainersReady,
            _ => RuleId::ConditionReady,
        };
        let found = conditions.iter().find(|c| c.type_ == expected.type_);
        // Sandbox state is not visible in container states: only demand it where a
        // running container proves the sandbox exists (the end of a terminal pod is
        // checked separately).
        if expected.type_ == "PodReadyToStartContainers" && !any_running {
            continue;
        }
        let matches_one = |expected: &crate::derive::ExpectedCondition| {
            found.is_some_and(|c| {
                c.status == expected.status
                    && (expected.type_ == "PodReadyToStartContainers"
                        || c.reason.as_deref() == expected.reason)
                    && (expected.message.is_none() || c.message == expected.message)
            })
        };
        // SetContainerStartup writes a sidecar's `started` on its own; Initialized follows
        // with the sync the result sets off: until then it may still name the sidecar.
        let sidecar_started = containers.iter().any(|(name, kind)| {
            *kind == ContainerKind::Sidecar
                && statuses
                    .iter()
                    .any(|s| s.name == *name && s.started == Some(true))
        });
        let before_startup = (expected.type_ == "Initialized" && sidecar_started).then(|| {
            let unstarted: Vec<ContainerStatus> = statuses
                .iter()
                .map(|s| {
                    let sidecar = containers
                        .iter()
                        .any(|(name, kind)| *name == s.name && *kind == ContainerKind::Sidecar);
                    let mut s = s.clone();
                    if sidecar {
                        s.started = Some(false);
                    }
                    s
                })
                .collect();
            derive_conditions(containers, &unstarted, phase, true)
                .into_iter()
                .nth(position)
        });
        let stale_initialized = before_startup.flatten().is_some_and(|c| matches_one(&c));
        let matches = stale_initialized
            || (matches_one(&expected) && !only_terminal_set)
            || terminal_set
                .as_ref()
                .and_then(|set| set.get(position))
                .is_some_and(matches_one);
        if !matches {
            // Ready while a sidecar is not: the sidecar's readiness was left out.
            let sidecar_left_out = containers.iter().any(|(name, kind)| {
                *kind == ContainerKind::Sidecar
                    && statuses.iter().any(|s| s.name == *name && !s.ready)
                    && found.is_some_and(|c| {
                        c.status == "True"
                            || !c
                                .message
                                .as_deref()
                                .unwrap_or_default()
                                .split(['[', ']', ' '])
                                .any(|word| word == *name)
                    })
            });
            let rule = match expected.type_ {
                "Ready" | "ContainersReady" if sidecar_left_out => RuleId::SidecarReadiness,
                _ => rule,
            };
            let expected = match terminal_set.as_ref().and_then(|set| set.get(position)) {
                Some(terminal) if only_terminal_set => terminal.clone(),
                _ => expected,
            };
            let describe = |c: &PodCondition| {
                format!(
                    "{}={} reason={:?}{}",
                    c.type_,
                    c.status,
                    c.reason.as_deref().unwrap_or(""),
                    c.message
                        .as_deref()
                        .map(|m| format!(" message={m:?}"))
                        .unwrap_or_default()
                )
            };
            out.add(
                rule,
                None,
                format!(
                    "{} in phase {phase} with containers {}",
                    describe(&expected.to_pod_condition()),
                    describe_states(statuses)
                ),
                found.map_or_else(|| format!("no {} condition", expected.type_), describe),
                Some(t),
            );
        }
    }
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str());
    let containers_ready = conditions
        .iter()
        .find(|c| c.type_ == "ContainersReady")
        .map(|c| c.status.as_str());
    if ready == Some("True") && containers_ready != Some("True") {
        out.add(
            RuleId::ConditionReady,
            None,
            "Ready=True only with ContainersReady=True".to_owned(),
            format!("Ready=True, ContainersReady={containers_ready:?}"),
            Some(t),
        );
    }
}
