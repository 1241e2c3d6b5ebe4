//! podman's reports in Kubernetes terms: `podman inspect` of the containers and podman's
//! event log of a removed init container, turned into a PodStatus without invented fields.

use super::init::InitMemory;
use super::{InitSpec, SpecContainers};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// podman's view of one container, as `podman inspect` reports it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Inspected {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
    #[serde(default)]
    pub(super) restart_count: i32,
    #[serde(default)]
    pub(super) state: InspectedState,
    #[serde(default)]
    pub(super) image: String,
    #[serde(default)]
    pub(super) host_config: InspectedHostConfig,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InspectedHostConfig {
    #[serde(default)]
    pub(super) log_config: InspectedLogConfig,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InspectedLogConfig {
    /// The container's log file (`k8s-file`), which podman deletes with the container.
    #[serde(default)]
    pub(super) path: String,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InspectedState {
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) exit_code: i32,
    #[serde(default, rename = "OOMKilled")]
    pub(super) oom_killed: bool,
    #[serde(default)]
    pub(super) started_at: String,
    #[serde(default)]
    pub(super) finished_at: String,
}

fn parse_time(text: &str) -> Option<Time> {
    let timestamp: jiff::Timestamp = text.parse().ok()?;
    // podman reports "0001-01-01T00:00:00Z" for never.
    (timestamp.as_second() > 0).then_some(Time(timestamp))
}

/// One container's state as podman reports it, in Kubernetes terms. `created` is podman's
/// "not started yet": a kubelet shows such a container waiting, as `PodInitializing` in a
/// pod with init containers and `ContainerCreating` otherwise (`waiting_reason`).
fn container_state(container: &Inspected, waiting_reason: &str) -> ContainerState {
    let state = &container.state;
    match state.status.as_str() {
        // "stopping": podman has sent the stop signal and the process has not exited
        // yet; a kubelet's container stays Running until then too.
        "running" | "stopping" => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: parse_time(&state.started_at),
            }),
            ..ContainerState::default()
        },
        "exited" | "stopped" => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: state.exit_code,
                reason: Some(terminated_reason(state.exit_code, state.oom_killed).to_owned()),
                started_at: parse_time(&state.started_at),
                finished_at: parse_time(&state.finished_at),
                container_id: Some(format!("podman://{}", container.id)),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        },
        other => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(
                    if other == "created" || other == "configured" || other.is_empty() {
                        waiting_reason.to_owned()
                    } else {
                        format!("podman:{other}")
                    },
                ),
                message: None,
            }),
            ..ContainerState::default()
        },
    }
}

fn terminated_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// `started` and `ready` as the kubelet's prober manager sets them without probes (podman
/// runs none): a regular or sidecar container is both while it runs; a regular init
/// container is `started` while it runs and `ready` once it exited 0 (`UpdatePodStatus`,
/// docs/fidelity/init-sidecar-ephemeral-source.md S4).
fn with_flags(mut status: ContainerStatus, regular_init: bool) -> ContainerStatus {
    let state = status.state.as_ref();
    let running = state.is_some_and(|s| s.running.is_some());
    let succeeded = state
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0);
    status.started = Some(running);
    status.ready = if regular_init { succeeded } else { running };
    status
}

fn container_status(name: &str, container: &Inspected, waiting_reason: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.to_owned(),
        image: crate::image::AGENT_IMAGE.to_owned(),
        image_id: container.image.clone(),
        container_id: Some(format!("podman://{}", container.id)),
        restart_count: container.restart_count,
        state: Some(container_state(container, waiting_reason)),
        ..ContainerStatus::default()
    }
}

/// Converts podman's container states into a PodStatus (see the `podman` module
/// documentation).
/// `pod_state` is podman's state of the pod, None while podman is still starting it (it
/// holds the pod's lock meanwhile). An init container that podman shows no more (removed,
/// or being removed) is shown as `memory` has it.
pub(super) fn convert(
    spec: &SpecContainers,
    pod_prefix: &str,
    pod_state: Option<&str>,
    inspected: &[Inspected],
    memory: &InitMemory,
) -> PodStatus {
    let find = |name: &str| {
        let podman_name = format!("{pod_prefix}-{name}");
        inspected.iter().find(|c| c.name == podman_name)
    };
    let waiting_reason = if spec.init.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let mut init_statuses = Vec::new();
    for init in &spec.init {
        let shown = match (memory.removed.get(&init.name), find(&init.name)) {
            (Some(removed), _) => removed.clone(),
            (None, Some(container)) if container.state.status != "removing" => Some(with_flags(
                container_status(&init.name, container, waiting_reason),
                !init.sidecar,
            )),
            _ => memory.last.get(&init.name).cloned(),
        };
        init_statuses.extend(shown);
    }
    let statuses: Vec<ContainerStatus> = spec
        .regular
        .iter()
        .filter_map(|name| {
            let container = find(name)?;
            Some(with_flags(
                container_status(name, container, waiting_reason),
                false,
            ))
        })
        .collect();
    // Never ready, `started` unset: the prober manager does not touch them (E5).
    let ephemeral_statuses: Vec<ContainerStatus> = spec
        .ephemeral
        .iter()
        .filter_map(|name| {
            let container = find(name)?;
            Some(container_status(name, container, waiting_reason))
        })
        .collect();
    let all_exited_zero = statuses.iter().all(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    });
    let phase = match pod_state {
        // podman is still running the init containers: the pod is not started yet.
        None | Some("Created" | "") => "Pending",
        Some("Running" | "Degraded") => "Running",
        Some("Exited" | "Stopped") if all_exited_zero => "Succeeded",
        Some("Exited" | "Stopped") => "Failed",
        _ => "Unknown",
    };
    PodStatus {
        phase: Some(phase.to_owned()),
        init_container_statuses: (!spec.init.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ephemeral_container_statuses: (!spec.ephemeral.is_empty()).then_some(ephemeral_statuses),
        ..PodStatus::default()
    }
}

/// podman's record of one container's starts and exits (`podman events`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub(super) struct PodmanEvent {
    #[serde(default, rename = "ID")]
    pub(super) id: String,
    #[serde(default, rename = "Status")]
    pub(super) status: String,
    #[serde(default, rename = "Time")]
    pub(super) time: String,
    /// Left out of podman's JSON when 0.
    #[serde(default, rename = "ContainerExitCode")]
    pub(super) exit_code: i32,
}

/// The status that stands for an init container podman removed (see the `podman` module
/// documentation): podman removes one only after it exited 0, but what it exited with and
/// when is podman's to say, in its event log: the last `died` event (its time is when
/// podman saw the exit, up to a few hundred milliseconds after the process ended), the
/// `start` events before it (restarts under OnFailure). Without such a record (events not
/// kept by the machine's podman), the last status the target read while the container
/// existed stands, even if it shows the container running: the target saw no more. None
/// when there is neither.
pub(super) fn status_after_removal(
    init: &InitSpec,
    last: Option<&ContainerStatus>,
    events: &[PodmanEvent],
) -> Option<ContainerStatus> {
    let Some(died_at) = events.iter().rposition(|e| e.status == "died") else {
        return last.cloned();
    };
    let died = &events[died_at];
    let starts = events[..died_at]
        .iter()
        .filter(|e| e.status == "start")
        .count();
    let restart_count = i32::try_from(starts.saturating_sub(1)).unwrap_or(i32::MAX);
    // The target read this very instance's end itself: podman's own FinishedAt is the
    // exit, where the event is when podman noticed it.
    let read_end = last.filter(|l| {
        l.restart_count == restart_count
            && l.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == died.exit_code)
    });
    if let Some(read_end) = read_end {
        return Some(read_end.clone());
    }
    let last_start = events[..died_at].iter().rev().find(|e| e.status == "start");
    // podman's own StartedAt, where the target read it for this very instance.
    let read_start = last
        .filter(|l| l.restart_count == restart_count)
        .and_then(|l| l.state.as_ref())
        .and_then(|s| {
            s.running
                .as_ref()
                .and_then(|r| r.started_at.clone())
                .or_else(|| s.terminated.as_ref().and_then(|t| t.started_at.clone()))
        });
    let container_id = format!("podman://{}", died.id);
    let status = ContainerStatus {
        name: init.name.clone(),
        image: crate::image::AGENT_IMAGE.to_owned(),
        image_id: last.map(|l| l.image_id.clone()).unwrap_or_default(),
        container_id: Some(container_id.clone()),
        restart_count: last.map_or(restart_count, |l| l.restart_count.max(restart_count)),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: died.exit_code,
                reason: Some(terminated_reason(died.exit_code, false).to_owned()),
                started_at: read_start.or_else(|| last_start.and_then(|e| parse_time(&e.time))),
                finished_at: parse_time(&died.time),
                container_id: Some(container_id),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    };
    Some(with_flags(status, !init.sidecar))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::collections::HashMap;

    fn container(
        name: &str,
        status: &str,
        exit_code: i32,
        oom_killed: bool,
        restarts: i32,
    ) -> Inspected {
        Inspected {
            id: format!("id-{name}"),
            name: format!("p-{name}"),
            restart_count: restarts,
            image: "sha256:abc".to_owned(),
            state: InspectedState {
                status: status.to_owned(),
                exit_code,
                oom_killed,
                started_at: "2026-01-01T00:00:01.5Z".to_owned(),
                finished_at: "0001-01-01T00:00:00Z".to_owned(),
            },
            host_config: InspectedHostConfig::default(),
        }
    }

    fn names(list: &[&str]) -> SpecContainers {
        SpecContainers {
            regular: list.iter().map(|s| s.to_string()).collect(),
            ..SpecContainers::default()
        }
    }

    #[test]
    fn podman_states_become_container_states_without_invented_fields() {
        let inspected = vec![
            container("run", "running", 0, false, 2),
            container("ok", "exited", 0, false, 0),
            container("bad", "exited", 3, false, 0),
            container("oom", "exited", 137, true, 0),
            container("new", "created", 0, false, 0),
        ];
        let status = convert(
            &names(&["run", "ok", "bad", "oom", "new"]),
            "p",
            Some("Degraded"),
            &inspected,
            &InitMemory::default(),
        );
        let statuses = status.container_statuses.expect("statuses");
        let state = |i: usize| statuses[i].state.clone().expect("state");
        assert!(state(0).running.is_some() && statuses[0].ready && statuses[0].restart_count == 2);
        assert_eq!(
            state(1).terminated.and_then(|t| t.reason).as_deref(),
            Some("Completed")
        );
        assert_eq!(
            state(2).terminated.map(|t| (t.exit_code, t.reason)),
            Some((3, Some("Error".to_owned())))
        );
        assert_eq!(
            state(3).terminated.and_then(|t| t.reason).as_deref(),
            Some("OOMKilled")
        );
        assert_eq!(
            state(4).waiting.and_then(|w| w.reason).as_deref(),
            Some("ContainerCreating")
        );
        assert!(
            statuses.iter().all(|s| s.last_state.is_none()),
            "podman reports no previous instance"
        );
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.conditions.is_none(), "podman reports no conditions");
        // "0001-01-01" means never.
        assert!(state(1).terminated.and_then(|t| t.finished_at).is_none());
    }

    #[test]
    fn podman_pod_states_map_onto_phases() {
        let done = vec![container("a", "exited", 0, false, 0)];
        let failed = vec![container("a", "exited", 1, false, 0)];
        assert_eq!(
            convert(
                &names(&["a"]),
                "p",
                Some("Exited"),
                &done,
                &InitMemory::default()
            )
            .phase
            .as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            convert(
                &names(&["a"]),
                "p",
                Some("Exited"),
                &failed,
                &InitMemory::default()
            )
            .phase
            .as_deref(),
            Some("Failed")
        );
        assert_eq!(
            convert(
                &names(&["a"]),
                "p",
                Some("Created"),
                &done,
                &InitMemory::default()
            )
            .phase
            .as_deref(),
            Some("Pending")
        );
        assert_eq!(
            convert(
                &names(&["a"]),
                "p",
                Some("Paused"),
                &done,
                &InitMemory::default()
            )
            .phase
            .as_deref(),
            Some("Unknown")
        );
    }

    #[test]
    fn a_stopping_container_is_still_running() {
        // podman shows "stopping" from the stop signal until the process exits.
        let status = convert(
            &names(&["app"]),
            "p",
            Some("Running"),
            &[container("app", "stopping", 0, false, 0)],
            &InitMemory::default(),
        );
        let statuses = status.container_statuses.expect("statuses");
        let state = statuses[0].state.clone().expect("state");
        assert!(state.running.is_some(), "{state:?}");
        assert!(state.terminated.is_none() && state.waiting.is_none());
    }

    pub(in crate::targets::podman) fn status_of(state: &str, code: i32) -> PodStatus {
        convert(
            &names(&["app"]),
            "p",
            Some(if state == "running" {
                "Running"
            } else {
                "Exited"
            }),
            &[container("app", state, code, false, 0)],
            &InitMemory::default(),
        )
    }

    fn with_init(init: &[(&str, bool)], regular: &[&str]) -> SpecContainers {
        SpecContainers {
            init: init
                .iter()
                .map(|(name, sidecar)| InitSpec {
                    name: name.to_string(),
                    sidecar: *sidecar,
                })
                .collect(),
            regular: regular.iter().map(|s| s.to_string()).collect(),
            ephemeral: Vec::new(),
        }
    }

    fn state_of(status: &ContainerStatus) -> ContainerState {
        status.state.clone().expect("state")
    }

    #[test]
    fn init_containers_are_reported_apart_with_the_kubelets_flags() {
        let spec = with_init(&[("migrate", false), ("shipper", true)], &["app"]);
        let inspected = vec![
            container("migrate", "running", 0, false, 0),
            container("shipper", "created", 0, false, 0),
            container("app", "created", 0, false, 0),
        ];
        // podman is still starting the pod (its init containers): Pending.
        let status = convert(&spec, "p", None, &inspected, &InitMemory::default());
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let init = status
            .init_container_statuses
            .clone()
            .expect("init statuses");
        assert_eq!(
            init.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["migrate", "shipper"]
        );
        let regular = status.container_statuses.clone().expect("statuses");
        assert_eq!(regular.len(), 1, "init containers are not regular ones");
        // A running regular init container is started, not ready (S4).
        assert_eq!((init[0].started, init[0].ready), (Some(true), false));
        // Every container not started yet waits as PodInitializing in a pod with init
        // containers, the init containers included (S1).
        for waiting in [&init[1], &regular[0]] {
            assert_eq!(
                state_of(waiting).waiting.and_then(|w| w.reason).as_deref(),
                Some("PodInitializing")
            );
        }
        // Once it exited 0, a regular init container is ready and no more started; a
        // sidecar's flags follow a regular container's.
        let inspected = vec![
            container("migrate", "exited", 0, false, 0),
            container("shipper", "running", 0, false, 0),
            container("app", "created", 0, false, 0),
        ];
        let status = convert(&spec, "p", None, &inspected, &InitMemory::default());
        let init = status.init_container_statuses.expect("init statuses");
        assert_eq!((init[0].started, init[0].ready), (Some(false), true));
        assert_eq!((init[1].started, init[1].ready), (Some(true), true));
        // A pod without init containers has no init statuses and keeps ContainerCreating.
        let plain = convert(
            &names(&["app"]),
            "p",
            Some("Created"),
            &[container("app", "created", 0, false, 0)],
            &InitMemory::default(),
        );
        assert!(plain.init_container_statuses.is_none());
        let waiting = state_of(&plain.container_statuses.expect("statuses")[0]).waiting;
        assert_eq!(
            waiting.and_then(|w| w.reason).as_deref(),
            Some("ContainerCreating")
        );
    }

    #[test]
    fn the_phase_ignores_init_containers_as_podman_does() {
        // podman's pod state leaves init containers out (libpod/pod_api.go, Status): a
        // failed init container does not make the pod Failed, and the regular containers
        // alone decide Succeeded.
        let spec = with_init(&[("migrate", false)], &["job"]);
        let inspected = vec![
            container("migrate", "exited", 2, false, 0),
            container("job", "exited", 0, false, 0),
        ];
        let status = convert(
            &spec,
            "p",
            Some("Exited"),
            &inspected,
            &InitMemory::default(),
        );
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn ephemeral_containers_are_reported_apart_never_ready_and_out_of_the_phase() {
        let spec = SpecContainers {
            regular: vec!["app".to_owned()],
            ephemeral: vec!["debug".to_owned(), "later".to_owned()],
            ..SpecContainers::default()
        };
        let inspected = vec![
            container("app", "exited", 0, false, 0),
            container("debug", "running", 0, false, 0),
        ];
        let status = convert(
            &spec,
            "p",
            Some("Degraded"),
            &inspected,
            &InitMemory::default(),
        );
        let ephemeral = status
            .ephemeral_container_statuses
            .expect("ephemeral statuses");
        // "later" is not in podman yet: not shown.
        assert_eq!(ephemeral.len(), 1);
        assert!(state_of(&ephemeral[0]).running.is_some());
        assert!(!ephemeral[0].ready && ephemeral[0].started.is_none());
        assert_eq!(status.container_statuses.expect("statuses").len(), 1);
        assert!(convert(
            &names(&["app"]),
            "p",
            Some("Running"),
            &[],
            &InitMemory::default()
        )
        .ephemeral_container_statuses
        .is_none());
    }

    fn event(status: &str, time: &str, exit_code: i32) -> PodmanEvent {
        PodmanEvent {
            id: "abc".to_owned(),
            status: status.to_owned(),
            time: time.to_owned(),
            exit_code,
        }
    }

    #[test]
    fn a_removed_init_container_shows_what_podman_recorded_of_it() {
        let spec = with_init(&[("migrate", false)], &["app"]);
        let migrate = &spec.init[0];
        let last_read = with_flags(
            container_status(
                "migrate",
                &container("migrate", "running", 0, false, 1),
                "PodInitializing",
            ),
            true,
        );
        let events = vec![
            event("start", "2026-01-01T00:00:00.5Z", 0),
            event("died", "2026-01-01T00:00:01Z", 1),
            event("start", "2026-01-01T00:00:01.2Z", 0),
            event("died", "2026-01-01T00:00:04.25Z", 0),
        ];
        let removed = status_after_removal(migrate, Some(&last_read), &events).expect("a status");
        let terminated = state_of(&removed).terminated.expect("terminated");
        assert_eq!(terminated.exit_code, 0);
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        assert_eq!(
            terminated.finished_at,
            Some(Time("2026-01-01T00:00:04.25Z".parse().expect("time")))
        );
        // The start the target read itself, for this very instance (restart 1).
        assert_eq!(
            terminated.started_at,
            Some(Time("2026-01-01T00:00:01.5Z".parse().expect("time")))
        );
        assert_eq!(removed.restart_count, 1);
        assert!(removed.ready && removed.started == Some(false));
        // The end the target read itself (podman's FinishedAt) stands.
        let mut exited = container("migrate", "exited", 0, false, 1);
        exited.state.finished_at = "2026-01-01T00:00:04.01Z".to_owned();
        let read = with_flags(
            container_status("migrate", &exited, "PodInitializing"),
            true,
        );
        assert_eq!(
            status_after_removal(migrate, Some(&read), &events),
            Some(read.clone())
        );
        // Without podman's record the last read stands, as it was: nothing is made up.
        assert_eq!(
            status_after_removal(migrate, Some(&last_read), &[]),
            Some(last_read.clone())
        );
        assert_eq!(status_after_removal(migrate, None, &[]), None);
        // Never read, but recorded: podman's events alone.
        let from_events = status_after_removal(migrate, None, &events).expect("a status");
        assert_eq!(
            state_of(&from_events).terminated.and_then(|t| t.started_at),
            Some(Time("2026-01-01T00:00:01.2Z".parse().expect("time")))
        );
        assert_eq!(from_events.restart_count, 1);
    }

    #[test]
    fn a_removed_init_container_keeps_its_status_and_one_being_removed_its_last() {
        let spec = with_init(&[("migrate", false), ("seed", false)], &["app"]);
        let done = status_after_removal(
            &spec.init[0],
            None,
            &[
                event("start", "2026-01-01T00:00:00Z", 0),
                event("died", "2026-01-01T00:00:03Z", 0),
            ],
        );
        let seed_running = with_flags(
            container_status(
                "seed",
                &container("seed", "running", 0, false, 0),
                "PodInitializing",
            ),
            true,
        );
        let memory = InitMemory {
            last: [("seed".to_owned(), seed_running.clone())].into(),
            removed: [("migrate".to_owned(), done.clone())].into(),
            log_links: HashMap::new(),
        };
        // migrate is gone from podman; seed is being removed.
        let inspected = vec![
            container("seed", "removing", 0, false, 0),
            container("app", "running", 0, false, 0),
        ];
        let status = convert(&spec, "p", Some("Running"), &inspected, &memory);
        let init = status.init_container_statuses.expect("init statuses");
        assert_eq!(init, vec![done.expect("migrate"), seed_running]);
    }
}
