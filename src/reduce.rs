//! Structural reduction of a failing scenario: every way to make it one step simpler
//! (drop a container, a probe, an endpoint, a start, a fault action, a hook, a finalizer;
//! move a fault earlier; replace a value by the simplest one), so that a greedy pass
//! reaches a scenario where no single step keeps the divergence: a 1-minimal
//! counterexample, which proptest's value tree alone does not reach.
//!
//! Reductions are syntactic, and only valid scenarios are returned (a step that would
//! leave a handler calling a hook script it removed, say, is left out); a candidate the
//! oracle cannot predict (a fault moved onto a start window) is dropped by the caller,
//! which predicts every candidate before running it.

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use podcheck_oracle::behaviour::{Answer, Behaviour, Health, OnSigterm, Run};
use podcheck_oracle::scenario::{Fault, FaultAction, KubeletParams};
use podcheck_oracle::{Scenario, SpecDuration};

/// The simplest exit time a reduction tries, and the floor below which durations are not
/// halved further (shorter gains nothing in observation and blurs timing).
const SIMPLEST_DURATION: SpecDuration = SpecDuration::from_secs(1);

/// Every scenario one reduction step away from `scenario`, the biggest steps first.
pub fn reductions(scenario: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    drop_containers(scenario, &mut out);
    drop_init_containers(scenario, &mut out);
    drop_faults(scenario, &mut out);
    drop_finalizers(scenario, &mut out);
    drop_hooks(scenario, &mut out);
    simplify_faults(scenario, &mut out);
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
    simplify_hooks(scenario, &mut out);
    for name in scenario.behaviours.keys() {
        simplify_behaviour(scenario, name, &mut out);
    }
    out.retain(|candidate| candidate != scenario && candidate.validate().is_ok());
    out
}

/// The scenario with its `index`th fault action edited, if the edit changed anything.
fn fault_edited(
    scenario: &Scenario,
    index: usize,
    edit: impl FnOnce(&mut Fault) -> bool,
) -> Option<Scenario> {
    let mut next = scenario.clone();
    let fault = next.faults.get_mut(index)?;
    if !edit(fault) {
        return None;
    }
    // The schedule reads in time order.
    next.faults.sort_by_key(|fault| fault.at);
    Some(next)
}

/// Each fault action dropped (an ephemeral container's addition with its behaviour).
fn drop_faults(scenario: &Scenario, out: &mut Vec<Scenario>) {
    for index in 0..scenario.faults.len() {
        let mut next = scenario.clone();
        let dropped = next.faults.remove(index);
        if let FaultAction::AddEphemeralContainer { name, .. } = &dropped.action {
            next.behaviours.remove(name);
        }
        out.push(next);
    }
}

/// Each init container (or sidecar) dropped, or made a plain init container.
fn drop_init_containers(scenario: &Scenario, out: &mut Vec<Scenario>) {
    let names: Vec<String> = scenario
        .init_containers()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    for name in names {
        let mut next = scenario.clone();
        if let Some(spec) = next.pod.spec.as_mut() {
            if let Some(init) = spec.init_containers.as_mut() {
                init.retain(|c| c.name != name);
            }
            if spec.init_containers.as_ref().is_some_and(Vec::is_empty) {
                spec.init_containers = None;
            }
        }
        next.behaviours.remove(&name);
        out.push(next);
    }
}

/// Each of the pod's finalizers dropped, together with the actions that remove it.
fn drop_finalizers(scenario: &Scenario, out: &mut Vec<Scenario>) {
    for finalizer in scenario.pod.metadata.finalizers.iter().flatten() {
        let mut next = scenario.clone();
        if let Some(finalizers) = next.pod.metadata.finalizers.as_mut() {
            finalizers.retain(|f| f != finalizer);
        }
        if next
            .pod
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(Vec::is_empty)
        {
            next.pod.metadata.finalizers = None;
        }
        next.faults.retain(|fault| {
            !matches!(&fault.action, FaultAction::RemoveFinalizer { finalizer: f } if f == finalizer)
        });
        out.push(next);
    }
}

/// A fault time halved (to whole seconds, not below [`SIMPLEST_DURATION`]), and a time
/// between whole seconds rounded down.
fn earlier_times(at: SpecDuration) -> Vec<SpecDuration> {
    let whole = |millis: u64| SpecDuration::from_secs(millis / 1000);
    let mut times = Vec::new();
    let half = whole(at.as_millis() / 2).max(SIMPLEST_DURATION);
    if half < at {
        times.push(half);
    }
    let rounded = whole(at.as_millis());
    if rounded < at && rounded != half && rounded >= SIMPLEST_DURATION {
        times.push(rounded);
    }
    times
}

/// Each fault action moved earlier, and a delete with its own grace period made a plain
/// delete (the pod's grace period); the pod's own grace period back to the default.
fn simplify_faults(scenario: &Scenario, out: &mut Vec<Scenario>) {
    for (index, fault) in scenario.faults.iter().enumerate() {
        for at in earlier_times(fault.at) {
            out.extend(fault_edited(scenario, index, |f| {
                f.at = at;
                true
            }));
        }
        out.extend(fault_edited(scenario, index, |f| match &mut f.action {
            FaultAction::Delete {
                grace_period_seconds,
            } => grace_period_seconds.take().is_some(),
            _ => false,
        }));
    }
    let mut next = scenario.clone();
    if next
        .pod
        .spec
        .as_mut()
        .and_then(|spec| spec.termination_grace_period_seconds.take())
        .is_some()
    {
        out.push(next);
    }
}

/// A container's postStart (0) or preStop (1) handler.
fn hook_slot(container: &mut Container, point: usize) -> Option<&mut Option<LifecycleHandler>> {
    let lifecycle = container.lifecycle.as_mut()?;
    Some(match point {
        0 => &mut lifecycle.post_start,
        _ => &mut lifecycle.pre_stop,
    })
}

/// The scripted hook call an exec or httpGet handler makes, by name.
fn called_hook(handler: &LifecycleHandler) -> Option<String> {
    if let Some(command) = handler.exec.as_ref().and_then(|e| e.command.as_ref()) {
        return match command.as_slice() {
            [_, verb, name] if verb == "hook" => Some(name.clone()),
            _ => None,
        };
    }
    handler
        .http_get
        .as_ref()
        .and_then(|h| h.path.as_deref())
        .and_then(|path| path.strip_prefix("/hook/"))
        .map(str::to_owned)
}

/// Each lifecycle handler dropped, with the hook script it calls when no other handler of
/// the container calls it; and each script no handler calls.
fn drop_hooks(scenario: &Scenario, out: &mut Vec<Scenario>) {
    for (index, container) in scenario.containers().iter().enumerate() {
        for point in 0..2 {
            let Some(mut next) = edited(scenario, index, |c| {
                let dropped = hook_slot(c, point).and_then(Option::take).is_some();
                if c.lifecycle
                    .as_ref()
                    .is_some_and(|l| l.post_start.is_none() && l.pre_stop.is_none())
                {
                    c.lifecycle = None;
                }
                dropped
            }) else {
                continue;
            };
            let still_called: Vec<String> = next.containers()[index]
                .lifecycle
                .iter()
                .flat_map(|l| [l.post_start.as_ref(), l.pre_stop.as_ref()])
                .flatten()
                .filter_map(called_hook)
                .collect();
            if let Some(behaviour) = next.behaviours.get_mut(&container.name) {
                behaviour
                    .hooks
                    .retain(|name, _| still_called.contains(name));
            }
            out.push(next);
        }
        let Some(behaviour) = scenario.behaviours.get(&container.name) else {
            continue;
        };
        let called: Vec<String> = container
            .lifecycle
            .iter()
            .flat_map(|l| [l.post_start.as_ref(), l.pre_stop.as_ref()])
            .flatten()
            .filter_map(called_hook)
            .collect();
        if behaviour.hooks.keys().any(|name| !called.contains(name)) {
            let mut next = behaviour.clone();
            next.hooks.retain(|name, _| called.contains(name));
            out.push(with_behaviour(scenario, &container.name, next));
        }
    }
}

/// Hook calls that take less time: a scripted call's `takes` to 0 and halved (whole
/// seconds), a failing call made to succeed, a sleep handler's seconds to 0 and halved.
fn simplify_hooks(scenario: &Scenario, out: &mut Vec<Scenario>) {
    for (name, behaviour) in &scenario.behaviours {
        for (hook, script) in &behaviour.hooks {
            let shorter = [
                SpecDuration::ZERO,
                SpecDuration::from_secs(script.takes.as_millis() / 2000),
            ];
            for takes in shorter.into_iter().filter(|t| *t < script.takes) {
                let mut next = behaviour.clone();
                if let Some(s) = next.hooks.get_mut(hook) {
                    s.takes = takes;
                }
                out.push(with_behaviour(scenario, name, next));
            }
            if !script.result.is_ok() {
                let mut next = behaviour.clone();
                if let Some(s) = next.hooks.get_mut(hook) {
                    s.result = Default::default();
                }
                out.push(with_behaviour(scenario, name, next));
            }
        }
    }
    for index in 0..container_count(scenario) {
        for point in 0..2 {
            for halve in [false, true] {
                out.extend(edited(scenario, index, |c| {
                    let Some(sleep) = hook_slot(c, point)
                        .and_then(|h| h.as_mut())
                        .and_then(|h| h.sleep.as_mut())
                    else {
                        return false;
                    };
                    let seconds = if halve { sleep.seconds / 2 } else { 0 };
                    let changed = seconds < sleep.seconds;
                    sleep.seconds = seconds;
                    changed
                }));
            }
        }
    }
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
    if behaviour.on_sigterm != OnSigterm::Die {
        let mut next = behaviour.clone();
        next.on_sigterm = OnSigterm::Die;
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

    const FAULTY: &str = "name: faulty
pod:
  apiVersion: v1
  kind: Pod
  metadata:
    name: faulty
    finalizers: [podcheck.io/hold]
  spec:
    terminationGracePeriodSeconds: 20
    containers:
      - name: a
        lifecycle:
          preStop:
            exec: {command: [/podcheck-agent, hook, drain]}
      - name: b
        lifecycle:
          preStop:
            sleep: {seconds: 4}
behaviours:
  a:
    then: forever
    onSigterm: {exit: {after: 3s, code: 0}}
    hooks:
      drain: {takes: 6s, result: fail}
  b: {then: forever, onSigterm: ignore}
faults:
  - {at: 7s, action: {killContainer: {container: b}}}
  - {at: 24.5s, action: {delete: {gracePeriodSeconds: 15}}}
  - {at: 50s, action: {removeFinalizer: {finalizer: podcheck.io/hold}}}
";

    #[test]
    fn fault_schedules_hooks_and_sigterm_handling_have_reductions() {
        let faulty = scenario(FAULTY);
        podcheck_oracle::predict(&faulty).expect("the example is predictable");
        let candidates = reductions(&faulty);
        for candidate in &candidates {
            assert_eq!(candidate.validate(), Ok(()), "{}", candidate.to_yaml());
        }
        let has = |what: &str, found: &dyn Fn(&Scenario) -> bool| {
            assert!(candidates.iter().any(found), "no reduction that {what}");
        };
        let delete_at = |s: &Scenario| {
            s.faults
                .iter()
                .find(|f| matches!(f.action, FaultAction::Delete { .. }))
                .map(|f| (f.at, f.action.clone()))
        };
        for index in 0..3 {
            let dropped = &faulty.faults[index];
            has("drops one action", &|c| {
                c.faults.len() == 2 && !c.faults.contains(dropped)
            });
        }
        has("moves the delete earlier, to whole seconds", &|c| {
            delete_at(c).is_some_and(|(at, _)| at == SpecDuration::from_secs(12))
        });
        has("rounds the delete's time down", &|c| {
            delete_at(c).is_some_and(|(at, _)| at == SpecDuration::from_secs(24))
        });
        has("drops the delete's own grace period", &|c| {
            delete_at(c).is_some_and(|(_, action)| {
                action
                    == FaultAction::Delete {
                        grace_period_seconds: None,
                    }
            })
        });
        has("drops the finalizer with its removal", &|c| {
            c.pod.metadata.finalizers.is_none()
                && c.faults.len() == 2
                && !c
                    .faults
                    .iter()
                    .any(|f| matches!(f.action, FaultAction::RemoveFinalizer { .. }))
        });
        has("drops the pod's grace period", &|c| {
            c.pod
                .spec
                .as_ref()
                .is_some_and(|s| s.termination_grace_period_seconds.is_none())
        });
        let a = |c: &Scenario| c.behaviours.get("a").cloned();
        let drain = |c: &Scenario| a(c).and_then(|b| b.hooks.get("drain").copied());
        let lifecycle = |c: &Scenario, name: &str| {
            c.containers()
                .iter()
                .find(|container| container.name == name)
                .map(|container| container.lifecycle.clone())
        };
        has("makes a process die of SIGTERM", &|c| {
            a(c).is_some_and(|b| b.on_sigterm == OnSigterm::Die)
        });
        has("drops a preStop hook and its script", &|c| {
            lifecycle(c, "a") == Some(None) && a(c).is_some_and(|b| b.hooks.is_empty())
        });
        has("drops a sleep handler", &|c| {
            lifecycle(c, "b") == Some(None)
        });
        has("makes a hook call instant", &|c| {
            drain(c).is_some_and(|h| h.takes.is_zero())
        });
        has("halves a hook call", &|c| {
            drain(c).is_some_and(|h| h.takes == SpecDuration::from_secs(3))
        });
        has("makes a failing hook call succeed", &|c| {
            drain(c).is_some_and(|h| h.result.is_ok())
        });
        has("shortens a sleep", &|c| {
            lifecycle(c, "b")
                .flatten()
                .and_then(|l| l.pre_stop)
                .and_then(|h| h.sleep)
                .is_some_and(|s| s.seconds == 2)
        });
        // Dropping container b drops the kill of it too.
        has("drops a container with its kill", &|c| {
            c.containers().len() == 1
                && !c
                    .faults
                    .iter()
                    .any(|f| matches!(f.action, FaultAction::KillContainer { .. }))
        });
    }

    /// A scenario without a script for its handler, a kill of a missing container or a
    /// removal of a finalizer the pod lacks is never offered.
    #[test]
    fn reductions_keep_scenarios_valid() {
        let faulty = scenario(FAULTY);
        let mut frontier = vec![faulty];
        let mut seen = 0;
        while let Some(next) = frontier.pop() {
            for candidate in reductions(&next) {
                assert_eq!(candidate.validate(), Ok(()), "{}", candidate.to_yaml());
                seen += 1;
                if seen < 400 {
                    frontier.push(candidate);
                }
            }
        }
        assert!(seen >= 400);
    }

    /// The greedy pass the fuzzer runs, with "still deletes the pod" as the divergence:
    /// it ends at one container deleted once, plainly, early.
    #[test]
    fn greedy_reduction_of_a_deletion_ends_at_one_plain_early_delete() {
        let deletes = |s: &Scenario| {
            s.faults
                .iter()
                .any(|f| matches!(f.action, FaultAction::Delete { .. }))
        };
        let mut current = scenario(FAULTY);
        let mut steps = 0;
        while let Some(smaller) = reductions(&current)
            .into_iter()
            .find(|c| deletes(c) && podcheck_oracle::predict(c).is_ok())
        {
            current = smaller;
            steps += 1;
            assert!(steps < 200, "the reduction does not end");
        }
        assert_eq!(current.containers().len(), 1, "{}", current.to_yaml());
        assert_eq!(current.faults.len(), 1, "{}", current.to_yaml());
        assert_eq!(
            current.faults[0].action,
            FaultAction::Delete {
                grace_period_seconds: None
            }
        );
        assert!(current.faults[0].at <= SpecDuration::from_secs(6));
        assert_eq!(current.pod.metadata.finalizers, None);
        assert!(current.containers()[0].lifecycle.is_none());
        let behaviour = current.behaviours.values().next().expect("a behaviour");
        assert_eq!(behaviour.on_sigterm, OnSigterm::Die);
        assert!(behaviour.hooks.is_empty());
    }

    #[test]
    fn init_containers_and_ephemeral_containers_can_be_dropped() {
        let s = scenario(
            "name: x\npod:\n  spec:\n    initContainers: [{name: init}, {name: side, restartPolicy: Always}]\n    containers: [{name: app}]\nbehaviours:\n  init: {then: {exit: {after: 1s, code: 0}}}\n  side: {then: forever}\n  app: {then: forever}\n  debug: {then: {exit: {after: 2s, code: 0}}}\nfaults:\n  - {at: 6s, action: {addEphemeralContainer: {name: debug, targetContainerName: app}}}\n",
        );
        let candidates = reductions(&s);
        for dropped in ["init", "side"] {
            assert!(
                candidates
                    .iter()
                    .any(|c| c.init_containers().iter().all(|i| i.name != dropped)
                        && !c.behaviours.contains_key(dropped)),
                "no reduction drops {dropped}"
            );
        }
        assert!(candidates
            .iter()
            .any(|c| c.faults.is_empty() && !c.behaviours.contains_key("debug")));
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
