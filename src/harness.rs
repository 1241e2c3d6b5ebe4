//! Runs one scenario on one target: predict, create, observe, check, clean up.

use crate::compile::compile;
use crate::targets::{PodRef, Target, TargetError};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::plan::AfterExit;
use podcheck_oracle::predict::SETTLE;
use podcheck_oracle::{check, predict, Prediction, Run, Scenario, Trace, Verdict};
use podcheck_reports::CaseResult;
use std::collections::BTreeMap;
use std::time::Duration;

fn wall_now() -> Time {
    Time(jiff::Timestamp::now())
}

fn spec_to_wall(spec_ms: u64, scale: f64) -> Duration {
    Duration::from_secs_f64(spec_ms as f64 / 1000.0 * scale)
}

/// Whether the pod is in the state the prediction says it settles in (every container at
/// its last planned instance, running forever or terminated for good; a predicted
/// terminal phase reached). None for scenarios that never settle (crash loops).
fn settled(prediction: &Prediction, status: &PodStatus) -> bool {
    // Probe effects are timed from instance starts the harness does not track here: a
    // pod with probes is watched to its horizon, which the prediction sizes to them.
    if prediction
        .containers
        .iter()
        .any(|c| !c.settles || c.instances.iter().any(|i| i.probes.is_some()))
    {
        return false;
    }
    if let Some(phase) = prediction.terminal_phase {
        if status.phase.as_deref() != Some(phase) {
            return false;
        }
        // Wait for the sandbox teardown where the target reports it at all.
        let sandbox_up = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "PodReadyToStartContainers" && c.status != "False");
        if sandbox_up {
            return false;
        }
    }
    let statuses = status.container_statuses.as_deref().unwrap_or(&[]);
    prediction.containers.iter().all(|plan| {
        let Some(last) = plan.last() else { return true };
        let Some(cs) = statuses.iter().find(|s| s.name == plan.name) else {
            return false;
        };
        let state = cs.state.as_ref();
        cs.restart_count == last.index as i32
            && match (last.run, last.after_exit) {
                (Run::Forever, _) => state.and_then(|s| s.running.as_ref()).is_some(),
                (_, Some(AfterExit::StaysTerminated)) => {
                    state.and_then(|s| s.terminated.as_ref()).is_some()
                }
                _ => false,
            }
    })
}

/// Runs `scenario` on `target` and checks it. Target trouble becomes an error or skipped
/// verdict, never a semantic failure.
pub async fn run_case(
    target: &dyn Target,
    scenario: &Scenario,
    source: &str,
    keep_trace: bool,
) -> CaseResult {
    let started = std::time::Instant::now();
    let target_name = target.name();
    let finish = |verdict: Verdict, trace: Option<Trace>| CaseResult {
        verdict,
        source: source.to_owned(),
        wall_ms: started.elapsed().as_millis() as u64,
        trace: if keep_trace { trace } else { None },
    };
    let prediction = match predict(scenario) {
        Ok(p) => p,
        Err(err) => {
            return finish(
                Verdict::error(
                    &scenario.name,
                    &target_name,
                    format!("cannot predict: {err}"),
                ),
                None,
            )
        }
    };
    let timing = target.timing();
    let pod = compile(scenario, &target.agent_image(), timing.time_scale);
    let reference = match target.create(pod, &scenario.kubelet).await {
        Ok(r) => r,
        Err(TargetError::NotApplicable(reason)) => {
            return finish(Verdict::skipped(&scenario.name, &target_name, reason), None)
        }
        Err(err) => {
            return finish(
                Verdict::error(
                    &scenario.name,
                    &target_name,
                    format!("failed to create the pod: {err}"),
                ),
                None,
            )
        }
    };
    let observed = observe(target, &reference, &prediction).await;
    let mut trace = match observed {
        Ok(trace) => trace,
        Err(err) => {
            let _ = target.delete(&reference).await;
            return finish(
                Verdict::error(
                    &scenario.name,
                    &target_name,
                    format!("failed to observe the pod: {err}"),
                ),
                None,
            );
        }
    };
    for container in scenario.containers() {
        if let Ok(log) = target.logs(&reference, &container.name, false).await {
            trace.logs.insert(
                container.name.clone(),
                log.lines().map(str::to_owned).collect(),
            );
        }
    }
    let deleted = target.delete(&reference).await;
    let mut verdict = check(&prediction, &trace);
    if let Err(err) = deleted {
        if verdict.error.is_none() {
            verdict.error = Some(format!("failed to delete the pod afterwards: {err}"));
        }
    }
    finish(verdict, Some(trace))
}

async fn observe(
    target: &dyn Target,
    reference: &PodRef,
    prediction: &Prediction,
) -> Result<Trace, TargetError> {
    let timing = target.timing();
    let virtual_clock = target.capabilities().virtual_clock;
    let horizon = spec_to_wall(prediction.horizon.as_millis(), timing.time_scale);
    let settle = spec_to_wall(SETTLE.as_millis() + timing.tolerance_ms, timing.time_scale);
    let created = reference.created_at.clone();
    let deadline_at = Time(created.0 + jiff::SignedDuration::try_from(horizon).unwrap_or_default());
    let mut stream = target.watch(reference).await?;
    let mut snapshots = Vec::new();
    let wall_deadline = tokio::time::Instant::now() + horizon;
    let mut stop_at = wall_deadline;
    loop {
        let next = if virtual_clock {
            stream.next().await
        } else {
            match tokio::time::timeout_at(stop_at, stream.next()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        };
        let Some(snapshot) = next else { break };
        if virtual_clock && snapshot.at.0 > deadline_at.0 {
            break;
        }
        let is_settled = settled(prediction, &snapshot.status);
        snapshots.push(snapshot);
        if !virtual_clock {
            stop_at = if is_settled {
                (tokio::time::Instant::now() + settle).min(wall_deadline)
            } else {
                wall_deadline
            };
        }
    }
    let ended_at = if virtual_clock {
        deadline_at
    } else {
        wall_now()
    };
    Ok(Trace {
        target: target.name(),
        timing,
        created_at: created,
        ended_at,
        snapshots,
        logs: BTreeMap::new(),
    })
}
