//! The pre-flight pod: before any case, one pod proves that the cluster's nodes can run
//! the agent image and that the agent answers. Without it, every case of a run on a
//! cluster that cannot pull the image would end in the same unhelpful error.

use k8s_openapi::api::core::v1::Pod;
use podcheck_oracle::Scenario;

pub const PREFLIGHT_POD: &str = "podcheck-preflight";

/// One container that runs the agent forever: it is up once the agent has logged its
/// start.
pub fn scenario() -> Scenario {
    const TEXT: &str = "name: podcheck-preflight
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: podcheck-preflight}
  spec:
    restartPolicy: Never
    terminationGracePeriodSeconds: 0
    containers:
      - name: agent
behaviours:
  agent: {then: forever}
";
    // A constant the tests parse: it cannot fail at run time.
    Scenario::from_yaml("pre-flight pod", TEXT).unwrap_or_else(|e| panic!("{e}"))
}

/// How to get the agent image onto a cluster, for every message that says it is missing.
pub fn image_hint(image: &str) -> String {
    format!(
        "make the agent image available to the cluster's nodes and name it with --agent-image: \
         build it with `podcheck image build -o podcheck-agent.tar --tag {image}`, then either \
         push it to a registry the nodes pull from (`skopeo copy docker-archive:podcheck-agent.tar \
         docker://REGISTRY/podcheck-agent:TAG`, then --agent-image REGISTRY/podcheck-agent:TAG) \
         or load it into every node (`kind load image-archive podcheck-agent.tar`, \
         `k3s ctr images import podcheck-agent.tar`, `podman load -i podcheck-agent.tar` for a \
         kubelet backed by podman)"
    )
}

/// What the pre-flight pod shows so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not there yet; keep watching.
    Waiting(String),
    /// The agent's container runs.
    Running,
    /// It will not get there: why, and what to do.
    Failed(String),
}

/// Judges one state of the pre-flight pod.
pub fn progress(pod: &Pod, image: &str) -> Progress {
    let Some(status) = pod.status.as_ref() else {
        return Progress::Waiting("no status yet".to_owned());
    };
    if let Some(unschedulable) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Progress::Waiting(format!(
            "not scheduled: {}",
            unschedulable.message.clone().unwrap_or_default()
        ));
    }
    let Some(container) = status.container_statuses.iter().flatten().next() else {
        return Progress::Waiting(format!(
            "phase {}, no container status yet",
            status.phase.as_deref().unwrap_or("unknown")
        ));
    };
    let state = container.state.clone().unwrap_or_default();
    if state.running.is_some() {
        return Progress::Running;
    }
    if let Some(waiting) = state.waiting {
        let reason = waiting.reason.unwrap_or_default();
        let message = waiting.message.unwrap_or_default();
        return match reason.as_str() {
            "ErrImagePull"
            | "ImagePullBackOff"
            | "ErrImageNeverPull"
            | "InvalidImageName"
            | "ImageInspectError"
            | "RegistryUnavailable"
            | "SignatureValidationFailed" => Progress::Failed(format!(
                "the cluster's node cannot get the agent image {image} ({reason}: {message}); {}",
                image_hint(image)
            )),
            "CreateContainerConfigError"
            | "CreateContainerError"
            | "RunContainerError"
            | "CrashLoopBackOff" => Progress::Failed(format!(
                "the agent image {image} does not start on the cluster's node ({reason}: \
                 {message}); the image must hold the static agent built by `podcheck image \
                 build` for the node's architecture"
            )),
            _ => Progress::Waiting(format!("container waiting: {reason} {message}")),
        };
    }
    if let Some(terminated) = state.terminated {
        return Progress::Failed(format!(
            "the agent exited at once with code {} ({}) instead of running; its log says \
             why (`kubectl logs {PREFLIGHT_POD}` in the run's namespace)",
            terminated.exit_code,
            terminated.reason.unwrap_or_default()
        ));
    }
    Progress::Waiting("container state unknown".to_owned())
}

/// Whether the agent's log shows that it started and acts out its behaviour.
pub fn agent_answered(log: &str) -> bool {
    log.lines().any(|line| {
        podcheck_wire::LogEvent::parse(line)
            .is_ok_and(|event| matches!(event.event, podcheck_wire::Event::Start { .. }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
        PodCondition, PodStatus,
    };

    fn pod(state: ContainerState) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "agent".to_owned(),
                    state: Some(state),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn waiting(reason: &str) -> Pod {
        pod(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_owned()),
                message: Some("rpc error: not found".to_owned()),
            }),
            ..ContainerState::default()
        })
    }

    #[test]
    fn the_preflight_scenario_is_valid() {
        let scenario = scenario();
        assert_eq!(scenario.pod_name(), PREFLIGHT_POD);
        assert!(podcheck_oracle::predict(&scenario).is_ok());
    }

    #[test]
    fn a_missing_image_says_how_to_make_it_available() {
        for reason in ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"] {
            let Progress::Failed(message) = progress(&waiting(reason), "reg.example/agent:1")
            else {
                panic!("{reason} is final");
            };
            assert!(message.contains("reg.example/agent:1"), "{message}");
            assert!(message.contains(reason), "{message}");
            assert!(message.contains("podcheck image build"), "{message}");
            assert!(message.contains("--agent-image"), "{message}");
            assert!(message.contains("kind load image-archive"), "{message}");
        }
    }

    #[test]
    fn an_image_that_does_not_run_the_agent_is_named() {
        let Progress::Failed(message) = progress(&waiting("CreateContainerError"), "x:1") else {
            panic!("final");
        };
        assert!(message.contains("does not start"), "{message}");
        let exited = pod(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 127,
                reason: Some("Error".to_owned()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        });
        let Progress::Failed(message) = progress(&exited, "x:1") else {
            panic!("final");
        };
        assert!(message.contains("code 127"), "{message}");
    }

    #[test]
    fn pulling_and_scheduling_are_waited_for() {
        assert!(matches!(
            progress(&waiting("ContainerCreating"), "x"),
            Progress::Waiting(_)
        ));
        assert_eq!(
            progress(&Pod::default(), "x"),
            Progress::Waiting("no status yet".to_owned())
        );
        let unscheduled = Pod {
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".to_owned(),
                    status: "False".to_owned(),
                    reason: Some("Unschedulable".to_owned()),
                    message: Some("0/3 nodes are available".to_owned()),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        let Progress::Waiting(why) = progress(&unscheduled, "x") else {
            panic!("waiting");
        };
        assert!(why.contains("0/3 nodes"), "{why}");
        assert_eq!(
            progress(
                &pod(ContainerState {
                    running: Some(Default::default()),
                    ..ContainerState::default()
                }),
                "x"
            ),
            Progress::Running
        );
    }

    #[test]
    fn the_agent_answers_when_it_logged_its_start() {
        assert!(agent_answered(
            "{\"tsMs\":1,\"event\":\"start\",\"start\":0,\"run\":\"forever\"}\n"
        ));
        assert!(!agent_answered("exec format error\n"));
        assert!(!agent_answered(""));
    }
}
