//! The oracle run as a target: it "runs" a pod by simulating the model, drawing timings
//! inside the model's windows from a seed. It checks the checker; with a planted
//! deviation it shows that the suite catches that bug.

use super::{Capabilities, PodRef, Target, TargetError};
use crate::compile::{behaviour_from_json, CASE_LABEL, FAULTS_ANNOTATION, OBSERVE_FOR_ANNOTATION};
use async_trait::async_trait;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use podcheck_oracle::predict::MAX_HORIZON;
use podcheck_oracle::scenario::{FaultAction, KubeletParams};
use podcheck_oracle::simulate::{simulate, Deviation, Seeded};
use podcheck_oracle::{predict, Observation, Scenario, SpecDuration, TimingProfile, Trace};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

pub struct ModelTarget {
    deviation: Option<Deviation>,
    seed: u64,
    traces: Mutex<HashMap<String, Trace>>,
}

impl ModelTarget {
    pub fn new(deviation: &str, seed: u64) -> Result<ModelTarget, TargetError> {
        let deviation = match deviation {
            "" => None,
            name => Some(Deviation::parse(name).ok_or_else(|| {
                let known: Vec<String> = Deviation::ALL.iter().map(|d| d.name()).collect();
                TargetError::UnknownDeviation {
                    name: name.to_owned(),
                    known: known.join(", "),
                }
            })?),
        };
        Ok(ModelTarget {
            deviation,
            seed,
            traces: Mutex::new(HashMap::new()),
        })
    }

    fn traces(&self) -> std::sync::MutexGuard<'_, HashMap<String, Trace>> {
        self.traces.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the scenario back out of a compiled manifest: the model target sees only what
/// any target sees.
fn scenario_of(pod: &Pod, kubelet: &KubeletParams) -> Result<Scenario, TargetError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut behaviours = BTreeMap::new();
    let containers = pod.spec.iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    });
    for container in containers {
        let text = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == podcheck_wire::env::BEHAVIOUR)
            .and_then(|e| e.value.clone())
            .ok_or_else(|| {
                TargetError::rejected(format!(
                    "container {} has no {}",
                    container.name,
                    podcheck_wire::env::BEHAVIOUR
                ))
            })?;
        let behaviour = behaviour_from_json(&text).ok_or_else(|| {
            TargetError::rejected(format!(
                "container {}: malformed {}",
                container.name,
                podcheck_wire::env::BEHAVIOUR
            ))
        })?;
        behaviours.insert(container.name.clone(), behaviour);
    }
    // The ephemeral containers' behaviours come with the manifest too.
    let ephemeral: BTreeMap<String, String> = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::compile::EPHEMERAL_ANNOTATION))
        .map(|text| {
            serde_json::from_str(text).map_err(|err| {
                TargetError::rejected(format!(
                    "malformed {} annotation: {err}",
                    crate::compile::EPHEMERAL_ANNOTATION
                ))
            })
        })
        .transpose()?
        .unwrap_or_default();
    for (name, text) in ephemeral {
        let behaviour = behaviour_from_json(&text).ok_or_else(|| {
            TargetError::rejected(format!("ephemeral container {name}: malformed behaviour"))
        })?;
        behaviours.insert(name, behaviour);
    }
    let faults = match pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(FAULTS_ANNOTATION))
    {
        Some(text) => serde_json::from_str(text).map_err(|err| {
            TargetError::rejected(format!("malformed {FAULTS_ANNOTATION} annotation: {err}"))
        })?,
        None => Vec::new(),
    };
    let observe_for = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OBSERVE_FOR_ANNOTATION))
        .map(|text| {
            SpecDuration::parse(text).map_err(|err| {
                TargetError::rejected(format!(
                    "malformed {OBSERVE_FOR_ANNOTATION} annotation: {err}"
                ))
            })
        })
        .transpose()?;
    let scenario = Scenario {
        name: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CASE_LABEL).cloned())
            .unwrap_or(name),
        description: None,
        rules: Vec::new(),
        kubelet: *kubelet,
        observe_for,
        pod: pod.clone(),
        behaviours,
        faults,
    };
    Ok(scenario)
}

fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The first probe port given by name rather than number.
fn named_probe_port(pod: &Pod) -> Option<String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    pod.spec
        .iter()
        .flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        })
        .flat_map(|c| [&c.liveness_probe, &c.readiness_probe, &c.startup_probe])
        .flatten()
        .flat_map(|probe| {
            [
                probe.http_get.as_ref().map(|h| &h.port),
                probe.tcp_socket.as_ref().map(|t| &t.port),
            ]
        })
        .flatten()
        .find_map(|port| match port {
            IntOrString::String(name) => Some(name.clone()),
            IntOrString::Int(_) => None,
        })
}

#[async_trait]
impl Target for ModelTarget {
    fn name(&self) -> String {
        match self.deviation {
            Some(d) => format!("model:{}", d.name()),
            None => "model".to_owned(),
        }
    }

    fn timing(&self) -> TimingProfile {
        TimingProfile {
            time_scale: 1.0,
            tolerance_ms: 0,
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            concurrency: 64,
            virtual_clock: true,
            launch_spacing: std::time::Duration::ZERO,
        }
    }

    fn agent_image(&self) -> String {
        podcheck_runtime::AGENT_IMAGE.to_owned()
    }

    async fn create(&self, pod: Pod, kubelet: &KubeletParams) -> Result<PodRef, TargetError> {
        if self.deviation == Some(Deviation::RejectsNamedPorts) {
            if let Some(port) = named_probe_port(&pod) {
                return Err(TargetError::rejected(format!(
                    "failed to decode: invalid type: string {port:?}, expected i32"
                )));
            }
        }
        let mut scenario = scenario_of(&pod, kubelet)?;
        // Played over the scenario's own window when it sets one. Otherwise as long as any
        // case may watch it; where that far ahead has no single prediction, as long as the
        // scenario's own prediction watches it.
        let prediction = match scenario.observe_for {
            Some(_) => predict(&scenario).map_err(|e| TargetError::Rejected(Box::new(e)))?,
            None => {
                scenario.observe_for = Some(MAX_HORIZON);
                match predict(&scenario) {
                    Ok(prediction) => prediction,
                    Err(_) => {
                        scenario.observe_for = None;
                        predict(&scenario).map_err(|e| TargetError::Rejected(Box::new(e)))?
                    }
                }
            }
        };
        let mut choices = Seeded(self.seed ^ hash(&scenario.name));
        let trace = simulate(&scenario, &prediction, &mut choices, self.deviation);
        let uid = format!("model-{:x}", hash(&scenario.name) ^ self.seed);
        let reference = PodRef {
            name: scenario.pod_name().to_owned(),
            uid: uid.clone(),
            created_at: trace.created_at.clone(),
            node: "model".to_owned(),
            applied: None,
        };
        self.traces().insert(uid, trace);
        Ok(reference)
    }

    async fn watch(&self, pod: &PodRef) -> Result<BoxStream<'static, Observation>, TargetError> {
        let trace = self
            .traces()
            .get(&pod.uid)
            .cloned()
            .ok_or_else(|| TargetError::NoSuchPod(pod.uid.clone()))?;
        let observations = trace.snapshots.into_iter().map(Observation::Snapshot);
        Ok(Box::pin(futures::stream::iter(observations)))
    }

    /// The simulation is drawn when the pod is created, fault schedule included (from the
    /// manifest's annotation), so an action is acknowledged when it is due.
    async fn act(&self, _pod: &PodRef, action: &FaultAction) -> Result<(), TargetError> {
        match action {
            FaultAction::RestartNodeAgent => Err(TargetError::NotApplicable(
                "the model has no node agent to restart".to_owned(),
            )),
            _ => Ok(()),
        }
    }

    /// The simulated workload's log of the container's latest instance (the model has no
    /// log of earlier ones).
    async fn logs(
        &self,
        pod: &PodRef,
        container: &str,
        previous: bool,
    ) -> Result<String, TargetError> {
        if previous {
            return Ok(String::new());
        }
        let traces = self.traces();
        let trace = traces
            .get(&pod.uid)
            .ok_or_else(|| TargetError::NoSuchPod(pod.uid.clone()))?;
        Ok(trace
            .logs
            .get(container)
            .map(|lines| lines.join("\n"))
            .unwrap_or_default())
    }

    async fn remove(&self, pod: &PodRef) -> Result<(), TargetError> {
        self.traces().remove(&pod.uid);
        Ok(())
    }

    async fn cleanup(&self) -> Result<(), TargetError> {
        self.traces().clear();
        Ok(())
    }
}
