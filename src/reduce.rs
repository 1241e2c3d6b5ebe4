//! Structural reduction of a failing scenario: every way to make it one step simpler
//! (drop a container, a probe, an endpoint, a start, a fault; replace a value by the
//! simplest one), so that a greedy pass reaches a scenario where no single step keeps the
//! divergence: a 1-minimal counterexample, which proptest's value tree alone does not
//! reach.
//!
//! Reductions are syntactic; a candidate the oracle refuses (a probe left without its
//! endpoint) is dropped by the caller, which predicts every candidate before running it.

use k8s_openapi::api::core::v1::{Container, Probe};
use podcheck_oracle::behaviour::{Answer, Behaviour, Health, Run};
use podcheck_oracle::scenario::KubeletParams;
use podcheck_oracle::{Scenario, SpecDuration};

/// The simplest exit time a reduction tries, and the floor below which durations are not
/// halved further (shorter gains nothing in observation and blurs timing).
const SIMPLEST_DURATION: SpecDuration = SpecDuration::from_secs(1);

/// Every scenario one reduction step away from `scenario`, the biggest steps first.
pub fn reductions(scenario: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    drop_containers(scenario, &mut out);
    if !scenario.faults.is_empty() {
        for index in 0..scenario.faults.len() {
            let mut next = scenario.clone();
            next.faults.remove(index);
            out.push(next);
        }
    }
    if scenario.kubelet != KubeletParams::default() {
        let mut next = scenario.clone();
        next.kubelet = KubeletParams::default();
        out.push(next);
    }
    if scenario.observe_for.is_some() {
        let mut next = scenario.clone();
        next.observe_for = None;
        out.push(next);
    }
    drop_probes(scenario, &mut out);
    drop_ports(scenario, &mut out);
    simplify_probe_fields(scenario, &mut out);
    for name in scenario.behaviours.keys() {
        simplify_behaviour(scenario, name, &mut out);
    }
    out.retain(|candidate| candidate != scenario);
    out
}

fn container_names(scenario: &Scenario) -> Vec<String> {
    scenario
        .containers()
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

fn drop_containers(scenario: &Scenario, out: &mut Vec<Scenario>) {
    let names = container_names(scenario);
    if names.len() < 2 {
        return;
    }
    for name in names {
        let mut next = scenario.clone();
        if let Some(spec) = next.pod.spec.as_mut() {
            spec.containers.retain(|c| c.name != name);
        }
        next.behaviours.remove(&name);
        next.faults.retain(|f| match &f.action {
            podcheck_oracle::scenario::FaultAction::KillContainer { container } => {
                *container != name
            }
            _ => true,
        });
        out.push(next);
    }
}

/// The scenario with its `index`th container edited, if the edit changed anything.
fn edited(
    scenario: &Scenario,
    index: usize,
    edit: impl FnOnce(&mut Container) -> bool,
) -> Option<Scenario> {
    let mut next = scenario.clone();
    let container = next.pod.spec.as_mut()?.containers.get_mut(index)?;
    edit(container).then_some(next)
}

/// A container's liveness, readiness or startup probe (kinds 0, 1, 2).
fn probe_slot(container: &mut Container, kind: usize) -> &mut Option<Probe> {
    match kind {
        0 => &mut container.liveness_probe,
        1 => &mut container.readiness_probe,
        _ => &mut container.startup_probe,
    }
}

fn container_count(scenario: &Scenario) -> usize {
    scenario.pod.spec.as_ref().map_or(0, |s| s.containers.len())
}

fn drop_probes(scenario: &Scenario, out: &mut Vec<Scenario>) {
    for index in 0..container_count(scenario) {
        for kind in 0..3 {
            out.extend(edited(scenario, index, |c| {
                probe_slot(c, kind).take().is_some()
            }));
        }
    }
}

/// Each container's declared ports removed (a probe that names one then errors, which
/// is a different scenario the reduction keeps only if it still diverges the same way).
fn drop_ports(scenario: &Scenario, out: &mut Vec<Scenario>) {
    for index in 0..container_count(scenario) {
        out.extend(edited(scenario, index, |c| c.ports.take().is_some()));
    }
}

/// Each tuning field of each probe back to its default (the field removed).
fn simplify_probe_fields(scenario: &Scenario, out: &mut Vec<Scenario>) {
    type Field = fn(&mut Probe) -> bool;
    const FIELDS: &[Field] = &[
        |p| p.initial_delay_seconds.take().is_some(),
        |p| p.period_seconds.take().is_some(),
        |p| p.timeout_seconds.take().is_some(),
        |p| p.failure_threshold.take().is_some(),
        |p| p.success_threshold.take().is_some(),
    ];
    for index in 0..container_count(scenario) {
        for kind in 0..3 {
            for field in FIELDS {
                out.extend(edited(scenario, index, |c| {
                    probe_slot(c, kind).as_mut().is_some_and(field)
                }));
            }
        }
    }
}

fn simpler_runs(run: &Run) -> Vec<Run> {
    match *run {
        Run::Forever => Vec::new(),
        Run::Exit { after, code } => {
            let mut runs = Vec::new();
            if after > SIMPLEST_DURATION {
                runs.push(Run::Exit {
                    after: SIMPLEST_DURATION,
                    code,
                });
                let half = SpecDuration::from_millis(after.as_millis() / 2);
                if half > SIMPLEST_DURATION {
                    runs.push(Run::Exit { after: half, code });
                }
            }
            let simplest_code = if code == 0 { 0 } else { 1 };
            if code != simplest_code {
                runs.push(Run::Exit {
                    after,
                    code: simplest_code,
                });
            }
            runs
        }
    }
}

fn with_behaviour(scenario: &Scenario, name: &str, behaviour: Behaviour) -> Scenario {
    let mut next = scenario.clone();
    next.behaviours.insert(name.to_owned(), behaviour);
    next
}

fn simplify_behaviour(scenario: &Scenario, name: &str, out: &mut Vec<Scenario>) {
    let Some(behaviour) = scenario.behaviours.get(name) else {
        return;
    };
    // Fewer starts: drop each scripted start.
    for index in 0..behaviour.starts.len() {
        let mut next = behaviour.clone();
        next.starts.remove(index);
        out.push(with_behaviour(scenario, name, next));
    }
    for (index, run) in behaviour.starts.iter().enumerate() {
        for simpler in simpler_runs(run) {
            let mut next = behaviour.clone();
            next.starts[index] = simpler;
            out.push(with_behaviour(scenario, name, next));
        }
    }
    for simpler in simpler_runs(&behaviour.then) {
        let mut next = behaviour.clone();
        next.then = simpler;
        out.push(with_behaviour(scenario, name, next));
    }
    if let Some(health) = &behaviour.health {
        simplify_health(scenario, name, behaviour, health, out);
    }
}

fn simplify_health(
    scenario: &Scenario,
    name: &str,
    behaviour: &Behaviour,
    health: &Health,
    out: &mut Vec<Scenario>,
) {
    let mut push = |health: Option<Health>| {
        let mut next = behaviour.clone();
        next.health = health;
        out.push(with_behaviour(scenario, name, next));
    };
    push(None);
    if !health.listen_after.is_zero() {
        push(Some(Health {
            listen_after: SpecDuration::ZERO,
            ..health.clone()
        }));
    }
    if health.grpc_port.is_some() {
        push(Some(Health {
            grpc_port: None,
            ..health.clone()
        }));
    }
    for (endpoint, served) in &health.endpoints {
        let mut fewer = health.clone();
        fewer.endpoints.remove(endpoint);
        push(Some(fewer));
        if served.tcp_port.is_some() {
            let mut no_tcp = health.clone();
            if let Some(e) = no_tcp.endpoints.get_mut(endpoint) {
                e.tcp_port = None;
            }
            push(Some(no_tcp));
        }
        // Fewer answers: drop each scripted step but the last.
        for index in 0..served.answers.len().saturating_sub(1) {
            let mut shorter = health.clone();
            if let Some(e) = shorter.endpoints.get_mut(endpoint) {
                e.answers.remove(index);
            }
            push(Some(shorter));
        }
        // Simpler answers: a slow answer becomes a plain success or failure.
        for (index, step) in served.answers.iter().enumerate() {
            if let Answer::Slow(_) = step.answer {
                for plain in [Answer::Ok, Answer::Fail] {
                    let mut simpler = health.clone();
                    if let Some(e) = simpler.endpoints.get_mut(endpoint) {
                        e.answers[index].answer = plain;
                    }
                    push(Some(simpler));
                }
            }
        }
    }
}

/// How big a scenario reads: among candidates of the same horizon, the reduction pass
/// tries the smaller first.
pub fn size(scenario: &Scenario) -> usize {
    scenario.to_yaml().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> Scenario {
        Scenario::from_yaml("test", text).expect("scenario")
    }

    const BIG: &str = "name: big
kubelet:
  featureGates: {ReduceDefaultCrashLoopBackOffDecay: true}
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: big}
  spec:
    restartPolicy: Always
    containers:
      - name: a
        readinessProbe:
          httpGet: {path: /live, port: 8080}
          periodSeconds: 3
          initialDelaySeconds: 3
          failureThreshold: 2
      - name: b
behaviours:
  a:
    starts: [{exit: {after: 1s, code: 3}}]
    then: forever
    health:
      endpoints:
        live:
          answers: [{answer: ok, for: 20s}, {answer: fail}]
  b:
    then: {exit: {after: 4s, code: 0}}
";

    #[test]
    fn every_reduction_is_one_step_smaller_and_most_stay_predictable() {
        let big = scenario(BIG);
        podcheck_oracle::predict(&big).expect("the example is predictable");
        let candidates = reductions(&big);
        assert!(candidates.len() >= 12, "{} reductions", candidates.len());
        let predictable = candidates
            .iter()
            .filter(|c| podcheck_oracle::predict(c).is_ok())
            .count();
        assert!(
            predictable * 2 > candidates.len(),
            "{predictable} predictable"
        );
        for candidate in &candidates {
            assert_ne!(candidate, &big);
            assert!(size(candidate) <= size(&big) + 8, "{}", candidate.to_yaml());
        }
        // Some expected steps.
        assert!(candidates.iter().any(|c| c.containers().len() == 1));
        assert!(candidates
            .iter()
            .any(|c| c.kubelet == KubeletParams::default()));
        assert!(candidates
            .iter()
            .any(|c| c.containers()[0].readiness_probe.is_none()));
        assert!(candidates
            .iter()
            .any(|c| c.behaviours.get("a").is_some_and(|b| b.starts.is_empty())));
    }

    #[test]
    fn the_simplest_scenario_has_no_reduction() {
        let simplest = scenario(
            "name: s
pod:
  apiVersion: v1
  kind: Pod
  metadata: {name: s}
  spec:
    containers:
      - name: app
behaviours:
  app: {then: forever}
",
        );
        assert!(reductions(&simplest).is_empty());
    }
}
