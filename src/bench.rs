//! `podcheck bench`: wall-clock figures of a target, measured rather than asserted.

use crate::compile::compile;
use crate::targets::{Target, TargetError};
use futures::StreamExt;
use podcheck_oracle::{Observation, Scenario};
use std::time::{Duration, Instant};

const RUN_FOREVER: &str = r#"
name: bench
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: bench}
  spec:
    containers:
      - name: app
behaviours:
  app: {then: forever}
"#;

#[derive(Debug, Clone)]
pub struct Latencies {
    pub samples: Vec<Duration>,
}

impl Latencies {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    pub fn mean(&self) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        self.samples.iter().sum::<Duration>() / self.samples.len() as u32
    }
}

/// Wall time from `create` until the target first reports phase Running, per pod, and the
/// time to delete each pod; `concurrency` pods at a time.
pub async fn create_to_running(
    target: &dyn Target,
    pods: usize,
    concurrency: usize,
) -> Result<(Latencies, Latencies), TargetError> {
    let scenario =
        Scenario::from_yaml("bench", RUN_FOREVER).expect("the built-in bench scenario is valid");
    let results: Vec<Result<(Duration, Duration), TargetError>> = futures::stream::iter(0..pods)
        .map(|index| {
            let mut scenario = scenario.clone();
            scenario.name = format!("bench-{index}");
            async move {
                let pod = compile(&scenario, &target.agent_image(), target.timing().time_scale);
                let started = Instant::now();
                let reference = target.create(pod, &scenario.kubelet).await?;
                let mut stream = target.watch(&reference).await?;
                let mut running = None;
                while let Some(observation) =
                    tokio::time::timeout(Duration::from_secs(30), stream.next())
                        .await
                        .map_err(|_| {
                            TargetError::Broken("no Running phase within 30s".to_owned())
                        })?
                {
                    let Observation::Snapshot(snapshot) = observation else {
                        continue;
                    };
                    if snapshot.status.phase.as_deref() == Some("Running") {
                        running = Some(started.elapsed());
                        break;
                    }
                }
                let running =
                    running.ok_or_else(|| TargetError::Broken("the pod never ran".to_owned()))?;
                let deleting = Instant::now();
                target.remove(&reference).await?;
                Ok((running, deleting.elapsed()))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut create = Vec::new();
    let mut delete = Vec::new();
    for result in results {
        let (c, d) = result?;
        create.push(c);
        delete.push(d);
    }
    Ok((Latencies { samples: create }, Latencies { samples: delete }))
}

/// One container per probe handler, each probed for readiness every spec second.
const PROBED: &str = r#"
name: bench-probes
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: bench-probes}
  spec:
    containers:
      - name: http
        readinessProbe:
          httpGet: {path: /h, port: 8080}
          periodSeconds: 1
      - name: tcp
        readinessProbe:
          tcpSocket: {port: 9081}
          periodSeconds: 1
      - name: exec
        readinessProbe:
          exec: {command: [/podcheck-agent, probe, h]}
          periodSeconds: 1
      - name: grpc
        readinessProbe:
          grpc: {port: 9083, service: h}
          periodSeconds: 1
behaviours:
  http:
    then: forever
    health: {port: 8080, endpoints: {h: {answers: [{answer: ok}]}}}
  tcp:
    then: forever
    health: {port: 8081, endpoints: {h: {tcpPort: 9081, answers: [{answer: ok}]}}}
  exec:
    then: forever
    health: {port: 8082, endpoints: {h: {answers: [{answer: ok}]}}}
  grpc:
    then: forever
    health: {port: 8083, grpcPort: 9083, endpoints: {h: {answers: [{answer: ok}]}}}
"#;

/// Runs a pod whose containers are probed over HTTP, TCP and exec for `wall` and returns
/// how long the target took per probe, by handler (empty where it cannot tell).
pub async fn probe_overhead(
    target: &dyn Target,
    wall: Duration,
) -> Result<Vec<(&'static str, Latencies)>, TargetError> {
    let scenario = Scenario::from_yaml("bench-probes", PROBED)
        .expect("the built-in probe bench scenario is valid");
    let pod = compile(&scenario, &target.agent_image(), target.timing().time_scale);
    let before = target.probe_timings().len();
    let reference = target.create(pod, &scenario.kubelet).await?;
    tokio::time::sleep(wall).await;
    target.remove(&reference).await?;
    let timings = target.probe_timings();
    Ok(["http", "tcp", "exec", "grpc"]
        .into_iter()
        .map(|handler| {
            let samples = timings
                .iter()
                .skip(before)
                .filter(|(h, _)| *h == handler)
                .map(|(_, d)| *d)
                .collect();
            (handler, Latencies { samples })
        })
        .filter(|(_, l)| !l.samples.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_scenarios_are_valid_and_predictable() {
        for (name, text) in [("bench", RUN_FOREVER), ("bench-probes", PROBED)] {
            let scenario = Scenario::from_yaml(name, text).expect("valid");
            podcheck_oracle::predict(&scenario).expect("predictable");
        }
    }
}
