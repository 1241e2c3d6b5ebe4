//! Init containers, native sidecars and ephemeral containers: their start gates, the
//! restart policy of each kind, the sidecars' stop once the pod is done and on deletion, and
//! the ephemeral containers added by fault actions.

use super::*;

/// A pod deleted before its regular containers have started: the kubelet's `TerminatePod`
/// turns the phase Failed and the waiting containers ContainerStatusUnknown while the
/// object may already be gone; not modelled.
pub(super) fn refuse_deletion_while_initializing(
    plans: &mut [ContainerPlan],
    deletion: &termination::Deletion,
) {
    if !plans.iter().any(|p| p.kind.is_init()) {
        return;
    }
    let margin = TERMINATION_MARGIN;
    let initializing = plans
        .iter()
        .filter(|p| p.kind == ContainerKind::Regular)
        .any(|p| {
            p.instances
                .first()
                .is_none_or(|first| first.latest_start + margin > deletion.at)
        });
    if !initializing {
        return;
    }
    if let Some(plan) = plans.iter_mut().find(|p| p.kind == ContainerKind::Regular) {
        plan.undecided = Some(Undecided {
            at: deletion.at,
            reason: format!(
                "the deletion at {} may come before the regular containers have started, while the pod initializes, where the kubelet's TerminatePod fails the waiting containers; not modelled",
                deletion.at
            ),
            fault: true,
        });
        plan.settles = false;
    }
}

/// Why the target's process may exit while the ephemeral container `plan` still runs (the
/// kernel then kills every process of the target's PID namespace), if it may.
pub(super) fn target_may_go_first(
    plan: &ContainerPlan,
    target_plan: &ContainerPlan,
    deletion: Option<&termination::Deletion>,
) -> Option<String> {
    let margin = TERMINATION_MARGIN;
    let target = target_plan.name.as_str();
    let instance = plan.instances.first()?;
    let ephemeral_end = instance.ends().map(|(_, hi)| hi);
    // The target's instance running when the ephemeral container starts.
    let running = target_plan.instances.iter().find(|i| {
        i.latest_start + margin <= instance.earliest_start
            && i.ends().is_none_or(|(lo, _)| lo > instance.earliest_start)
    });
    let Some(running) = running else {
        return Some(format!(
            "its target {target} may not be running when it starts; not modelled"
        ));
    };
    let target_end = match (&running.cut, deletion) {
        // On deletion both are stopped at once: the target must outlive it.
        (
            Some(Cut {
                cause: CutCause::Deleted(stop),
                ..
            }),
            Some(deletion),
        ) => {
            let own = match instance.cut.as_ref().map(|c| &c.cause) {
                Some(CutCause::Deleted(own)) => own.end.1,
                _ => SpecDuration::ZERO,
            };
            if stop.end.0 < own + margin {
                return Some(format!(
                    "its target {target} may exit before it when the pod is deleted at {}, and the kernel then kills it with the target's PID namespace; not modelled",
                    deletion.at
                ));
            }
            return None;
        }
        _ => running.ends().map(|(lo, _)| lo),
    };
    match (target_end, ephemeral_end) {
        (Some(target_end), Some(end)) if target_end >= end + margin => None,
        (None, _) => None,
        _ => Some(format!(
            "its target {target} may exit while it runs, and the kernel then kills it with the target's PID namespace; not modelled"
        )),
    }
}

/// How long after the API accepted an ephemeral container the kubelet starts it: the pod
/// update reaches the pod worker, whose next sync starts it (E3).
pub const EPHEMERAL_START_WITHIN: SpecDuration = SpecDuration::from_secs(3);

/// When every regular container of a Never or OnFailure pod has terminated for good (or a
/// regular init container failed under Never), earliest and latest: the pod is done.
pub(super) fn pod_done(plans: &[ContainerPlan]) -> Option<(SpecDuration, SpecDuration)> {
    let finished = |p: &&ContainerPlan| {
        p.last()
            .is_some_and(|last| last.after_exit == Some(AfterExit::StaysTerminated))
    };
    let init_failed = plans
        .iter()
        .filter(|p| p.kind == ContainerKind::Init)
        .find(|p| finished(p) && p.final_exit_code().is_some_and(|code| code != 0));
    if let Some(plan) = init_failed {
        return plan.last()?.ends();
    }
    let regular: Vec<&ContainerPlan> = plans
        .iter()
        .filter(|p| p.kind == ContainerKind::Regular)
        .collect();
    if regular.is_empty() || !regular.iter().all(finished) {
        return None;
    }
    regular
        .iter()
        .filter_map(|p| p.last()?.ends())
        .reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)))
}

/// The ephemeral container that fault `fault` adds: started once after its addition,
/// never restarted (E3); stopped with the others on deletion (E7).
pub(super) fn plan_ephemeral(
    scenario: &Scenario,
    fault: usize,
    name: &str,
    done: Option<(SpecDuration, SpecDuration)>,
    deletion: Option<&termination::Deletion>,
    until: SpecDuration,
) -> ContainerPlan {
    let at = scenario
        .faults
        .get(fault)
        .map_or(SpecDuration::ZERO, |f| f.at);
    let mut plan = ContainerPlan {
        name: name.to_owned(),
        kind: ContainerKind::Ephemeral,
        target_container: None,
        instances: Vec::new(),
        settles: true,
        ambiguity: None,
        undecided: None,
    };
    let margin = TERMINATION_MARGIN;
    // A pod that is done starts nothing.
    if let Some((lo, hi)) = done {
        if hi + TERMINAL_PHASE_LAG + margin <= at {
            return plan;
        }
        if lo < at + EPHEMERAL_START_WITHIN + margin {
            plan.undecided = Some(Undecided {
                at,
                reason: format!(
                    "it is added at {at}, too close to the moment the pod is done ({lo} to {hi})"
                ),
                fault: true,
            });
            plan.settles = false;
            return plan;
        }
    }
    let container = k8s_openapi::api::core::v1::Container {
        name: name.to_owned(),
        ..Default::default()
    };
    let pod_container = crate::scenario::PodContainer {
        kind: ContainerKind::Ephemeral,
        container: &container,
        field: format!("faults[{fault}].action.addEphemeralContainer"),
    };
    let behaviour = scenario
        .behaviour(name)
        .cloned()
        .unwrap_or_else(Behaviour::forever);
    let stops = stops_of(scenario, deletion, &pod_container, &behaviour);
    let hooks = ContainerHooks {
        post_start: None,
        post_start_kill: None,
    };
    let gate = StartGate::Added {
        name: name.to_owned(),
        at,
    };
    let first = FirstStart {
        rule: RuleId::EphemeralStarted,
        opens: (at, at),
        after: (SpecDuration::ZERO, EPHEMERAL_START_WITHIN),
        gate,
    };
    let to_plan = ContainerToPlan {
        name,
        kind: ContainerKind::Ephemeral,
        behaviour: &behaviour,
        probes: &ContainerProbes::default(),
        hooks: &hooks,
        policy: RestartPolicy::Never,
    };
    let mut plan = plan_one(to_plan, first, scenario.kubelet.back_off(), until, stops);
    plan.target_container = match scenario.faults.get(fault).map(|f| &f.action) {
        Some(crate::scenario::FaultAction::AddEphemeralContainer {
            target_container_name,
            ..
        }) => target_container_name.clone(),
        _ => None,
    };
    // One still running when the pod is done is killed with the pod: not modelled.
    if let (Some((lo, hi)), Some(last)) = (done, plan.last()) {
        // Whether a deletion or its own exit ends it, it must be gone before the pod is.
        let runs_past = last.earliest_start <= hi + margin
            && last.ends().is_none_or(|(_, end)| end + margin > lo);
        if runs_past {
            plan.undecided = Some(Undecided {
                at: lo,
                reason: format!(
                    "it still runs when the pod is done ({lo} to {hi}) and is killed with it; not modelled"
                ),
                fault: true,
            });
            plan.settles = false;
        }
    }
    plan
}

/// When every regular container of a Never or OnFailure pod has terminated for good, the
/// kubelet kills the pod (`computePodActions`: KillPod, no init container started):
/// the sidecars still running are stopped, the last in the spec first
/// (kuberuntime_termination_order.go), each with the pod's grace period.
pub(super) fn stop_sidecars_when_done(
    scenario: &Scenario,
    plans: &mut [ContainerPlan],
    deletion: Option<&termination::Deletion>,
) {
    let margin = TERMINATION_MARGIN;
    let regular: Vec<&ContainerPlan> = plans
        .iter()
        .filter(|p| p.kind == ContainerKind::Regular)
        .collect();
    // A failed init container under Never kills the pod the same way; an init container
    // still failing, or a regular container still running, leaves the pod going.
    let init_failed = plans.iter().any(|p| {
        p.kind == ContainerKind::Init
            && p.last().is_some_and(|last| {
                last.after_exit == Some(AfterExit::StaysTerminated)
                    && last.end().is_some_and(|end| end.code != 0)
            })
    });
    let done = if init_failed {
        plans
            .iter()
            .filter(|p| p.kind == ContainerKind::Init)
            .filter_map(|p| p.last()?.ends())
            .next_back()
    } else if !regular.is_empty()
        && regular.iter().all(|p| {
            p.last()
                .is_some_and(|last| last.after_exit == Some(AfterExit::StaysTerminated))
        })
    {
        regular
            .iter()
            .filter_map(|p| p.last()?.ends())
            .reduce(|a, b| (a.0.max(b.0), a.1.max(b.1)))
    } else {
        None
    };
    let Some((done_lo, done_hi)) = done else {
        return;
    };
    // A deletion before the pod is done stops the sidecars its own way; one too close to
    // that moment may come before or after the kubelet kills the pod.
    if let Some(deletion) = deletion {
        if deletion.at + margin <= done_lo {
            return;
        }
        if deletion.at < done_hi + NEXT_CONTAINER_WITHIN + margin {
            if let Some(plan) = plans.iter_mut().find(|p| p.kind == ContainerKind::Sidecar) {
                plan.undecided = Some(Undecided {
                    at: deletion.at,
                    reason: format!(
                        "the deletion at {} may come before or after the kubelet stops the sidecars once the regular containers are done ({done_lo} to {done_hi})",
                        deletion.at
                    ),
                    fault: true,
                });
                plan.settles = false;
            }
            return;
        }
    }
    let grace = scenario.grace_period_seconds();
    let fields: BTreeMap<String, String> = scenario
        .pod_containers()
        .into_iter()
        .map(|c| (c.container.name.clone(), c.field))
        .collect();
    // Each sidecar's SIGTERM waits until the sidecars after it are gone.
    let mut waits_until = done_hi + NEXT_CONTAINER_WITHIN;
    for plan in plans
        .iter_mut()
        .rev()
        .filter(|p| p.kind == ContainerKind::Sidecar)
    {
        let container = scenario
            .init_containers()
            .iter()
            .find(|c| c.name == plan.name);
        let behaviour = scenario
            .behaviour(&plan.name)
            .cloned()
            .unwrap_or_else(Behaviour::forever);
        let field = fields.get(&plan.name).cloned().unwrap_or_default();
        let stop = container
            .ok_or_else(|| "not in the pod spec".to_owned())
            .and_then(|container| {
                let pre_stop = termination::resolve_hook(
                    container,
                    &behaviour,
                    termination::HookPoint::PreStop,
                    &field,
                )
                .map_err(|(field, reason)| format!("{field}: {reason}"))?;
                termination::plan_stop(grace, pre_stop.as_ref(), behaviour.on_sigterm)
            });
        // The instance the regular containers waited for started before them.
        let gated = match sidecar_started(plan) {
            Ok(Some(StartGate::Started { instance, .. })) => Some(instance),
            _ => None,
        };
        let running_at = |instance: &InstancePlan| {
            (instance.latest_start + margin <= done_lo || gated == Some(instance.index))
                && instance
                    .ends()
                    .is_none_or(|(lo, _)| lo >= waits_until + margin)
        };
        let Some(position) = plan.instances.iter().position(running_at) else {
            // Not running when the pod is done: a restart it waits for does not come.
            let undecided = plan.instances.iter().find(|i| {
                i.latest_start + margin > done_lo && i.earliest_start < waits_until + margin
                    || i.ends()
                        .is_some_and(|(lo, hi)| hi + margin > done_lo && lo < waits_until + margin)
            });
            if let Some(instance) = undecided {
                plan.undecided = Some(Undecided {
                    at: done_lo,
                    reason: format!(
                        "instance {} starts or ends too close to the moment the regular containers are done ({done_lo} to {done_hi}), after which the sidecar is stopped",
                        instance.index
                    ),
                    fault: false,
                });
                plan.settles = false;
                continue;
            }
            // Waiting out a back-off when the pod is done: TerminatePod shows it
            // ContainerStatusUnknown (137); not modelled.
            let waiting = plan.instances.iter().any(|i| {
                i.ends().is_some_and(|(_, hi)| hi <= done_lo)
                    && i.after_exit.is_some_and(AfterExit::restarts)
            });
            if waiting {
                plan.undecided = Some(Undecided {
                    at: done_lo,
                    reason: "it waits out a back-off when the regular containers are done, and the kubelet's TerminatePod then shows it ContainerStatusUnknown; not modelled".to_owned(),
                    fault: false,
                });
                plan.settles = false;
            }
            continue;
        };
        // The sidecar's stop begins only when the ones after it are gone, within its own
        // grace period: one that is not gone at once may be SIGKILLed with what is left.
        let waited = waits_until.saturating_sub(done_hi + NEXT_CONTAINER_WITHIN);
        let stop = stop.and_then(|stop| {
            if grace == 0 {
                return Err("with no grace period the kubelet stops the sidecars at once, in no order; not modelled".to_owned());
            }
            let grace_left = SpecDuration::from_secs(u64::try_from(grace).unwrap_or(0)).saturating_sub(waited);
            let reaction = stop.end.1.saturating_sub(stop.sigterm.1);
            if reaction + margin > termination::MINIMUM_GRACE
                && stop.end.1 + margin > grace_left
                && !waited.is_zero()
            {
                return Err(format!(
                    "it takes up to {} to stop, while only {grace_left} of its grace period may be left after the sidecars behind it; not modelled",
                    stop.end.1
                ));
            }
            Ok(stop)
        });
        let stop = match stop {
            Ok(stop) => stop,
            Err(reason) => {
                plan.undecided = Some(Undecided {
                    at: done_lo,
                    reason: format!("stopped once the regular containers are done, but {reason}"),
                    fault: false,
                });
                plan.settles = false;
                continue;
            }
        };
        plan.instances.truncate(position + 1);
        let instance = &mut plan.instances[position];
        let after_done = (stop.end.0, (waits_until - done_hi) + stop.end.1);
        let after_action = (after_done.0, (done_hi - done_lo) + after_done.1);
        waits_until = done_hi + after_done.1;
        if let Some(probes) = instance.probes.as_mut() {
            probes.kill = None;
        }
        instance.cut = Some(Cut {
            fault: None,
            code: stop.exit_code,
            cause: CutCause::PodCompleted(SidecarStop { stop, after_done }),
            after_action,
            action_at: done_lo,
        });
        instance.after_exit = Some(AfterExit::PodCompleted);
        plan.settles = true;
        plan.undecided = None;
    }
}

/// How long each sidecar's SIGTERM may wait, at the most, after the kubelet begins to
/// stop the pod for its deletion: until every regular container and every sidecar after it
/// in the spec are gone (kuberuntime_termination_order.go). None where some container's
/// stop has no single prediction.
pub(super) fn sidecar_deletion_waits(
    scenario: &Scenario,
    deletion: &termination::Deletion,
) -> BTreeMap<String, SpecDuration> {
    let forever = Behaviour::forever();
    let stop_hi = |pod_container: &crate::scenario::PodContainer<'_>| {
        let behaviour = scenario
            .behaviour(&pod_container.container.name)
            .unwrap_or(&forever);
        deletion
            .stop_plan(pod_container.container, &pod_container.field, behaviour)
            .ok()
            .map(|plan| plan.end.1)
    };
    let containers = scenario.pod_containers();
    let regular = containers
        .iter()
        .filter(|c| c.kind == ContainerKind::Regular)
        .map(stop_hi)
        .try_fold(SpecDuration::ZERO, |most, hi| hi.map(|hi| most.max(hi)));
    let mut waits = BTreeMap::new();
    let Some(mut wait) = regular else {
        return waits;
    };
    for sidecar in containers
        .iter()
        .rev()
        .filter(|c| c.kind == ContainerKind::Sidecar)
    {
        waits.insert(sidecar.container.name.clone(), wait);
        match stop_hi(sidecar) {
            Some(hi) => wait = wait + hi,
            None => break,
        }
    }
    waits
}

/// A sidecar's stop for the pod's deletion: its SIGTERM (and so its end) may come as late
/// as `wait` after the kubelet begins; a PreStop hook, which runs at once while the
/// SIGTERM waits, is not modelled.
pub(super) fn sidecar_deletion_stop(
    plan: Result<StopPlan, String>,
    wait: Option<SpecDuration>,
) -> Result<StopPlan, String> {
    let mut plan = plan?;
    let Some(wait) = wait else {
        return Err("another container's stop has no single prediction, and the sidecar's SIGTERM waits for it".to_owned());
    };
    if plan.pre_stop.is_some() {
        return Err("its preStop hook runs at once while its SIGTERM waits for the regular containers; not modelled".to_owned());
    }
    if plan.killed && !wait.is_zero() {
        return Err("its SIGKILL comes at the end of the grace period counted from the start of the pod's stop, while its SIGTERM waits for the regular containers; not modelled".to_owned());
    }
    // After the wait only what is left of the grace period remains, never under 2 s: a
    // process that takes longer than that to exit after SIGTERM may be SIGKILLed first.
    let grace = SpecDuration::from_secs(u64::try_from(plan.grace_seconds).unwrap_or(0));
    let reaction = plan.end.1.saturating_sub(plan.sigterm.1);
    if reaction + TERMINATION_MARGIN > termination::MINIMUM_GRACE
        && plan.end.1 + wait + TERMINATION_MARGIN > grace
        && !wait.is_zero()
    {
        return Err(format!(
            "it takes up to {} to exit after SIGTERM, which may come {wait} after the kill began, past what is left of its {grace} grace period; not modelled",
            plan.end.1
        ));
    }
    plan.sigterm.1 = plan.sigterm.1 + wait;
    plan.end.1 = plan.end.1 + wait;
    Ok(plan)
}

/// How long after its gate opens the kubelet starts the next init container, or the
/// regular containers once initialization is done.
pub const NEXT_CONTAINER_WITHIN: SpecDuration = STATUS_LAG;

/// The restart policy the kubelet applies to a container of `kind` in a pod with
/// `policy`: init containers are only ever restarted after a failure
/// (`computeInitContainerActions`: restartOnFailure unless Never), sidecars always.
pub fn container_policy(kind: ContainerKind, policy: RestartPolicy) -> RestartPolicy {
    match (kind, policy) {
        (ContainerKind::Regular, policy) => policy,
        // Never restarted (E3).
        (ContainerKind::Ephemeral, _) => RestartPolicy::Never,
        (ContainerKind::Sidecar, _) => RestartPolicy::Always,
        (ContainerKind::Init, RestartPolicy::Never) => RestartPolicy::Never,
        (ContainerKind::Init, _) => RestartPolicy::OnFailure,
    }
}

/// The gate after an init container: its instance that exited 0; None when it never
/// does within the plan (it failed under Never, or crash-loops past the horizon).
pub(super) fn completed(plan: &ContainerPlan) -> Option<StartGate> {
    let last = plan.last()?;
    let succeeded = last.after_exit == Some(AfterExit::StaysTerminated)
        && last.end().is_some_and(|end| end.code == 0);
    succeeded.then(|| StartGate::Exited {
        container: plan.name.clone(),
        instance: last.index,
    })
}

/// The gate after a sidecar: the first of its instances that is seen started, which it
/// must be before it ends (`computeInitContainerActions` moves past a sidecar only once
/// its status says started); None when none is. An instance that may as well end before
/// as after it is seen started (a liveness kill or an exit as early as its start) leaves
/// whether the containers after it start to timing: undecided.
pub(super) fn sidecar_started(plan: &ContainerPlan) -> Result<Option<StartGate>, Undecided> {
    for instance in &plan.instances {
        let Some((lo, hi)) = instance.started_after() else {
            continue;
        };
        let end = instance.end();
        if end
            .as_ref()
            .is_none_or(|end| hi + TERMINATION_MARGIN <= end.lo)
        {
            return Ok(Some(StartGate::Started {
                container: plan.name.clone(),
                instance: instance.index,
            }));
        }
        if end.is_some_and(|end| lo < end.hi + TERMINATION_MARGIN) {
            return Err(Undecided {
                at: instance.earliest_start + lo,
                reason: format!(
                    "instance {} may end before or after it is seen started ({lo} to {hi} after its start), so whether the containers after it start then is up to timing",
                    instance.index
                ),
                fault: false,
            });
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use crate::predict::{predict, PredictError};
    use crate::scenario::Scenario;

    /// A sidecar whose liveness probe (failureThreshold 1, on an endpoint nobody serves)
    /// kills every instance about when it turns started; `initialDelay` puts its first
    /// probe later.
    fn crash_looping_sidecar(initial_delay: u32) -> Scenario {
        let yaml = format!(
            r#"
name: gate
pod:
  apiVersion: v1
  kind: Pod
  metadata: {{name: gate}}
  spec:
    restartPolicy: Never
    initContainers:
      - name: side
        restartPolicy: Always
        livenessProbe:
          httpGet: {{path: /h, port: 8080}}
          failureThreshold: 1
          initialDelaySeconds: {initial_delay}
    containers:
      - name: app
behaviours:
  side: {{then: forever}}
  app: {{then: {{exit: {{after: 1s, code: 0}}}}}}
"#
        );
        Scenario::from_yaml("gate", &yaml).expect("scenario")
    }

    /// Found by random scenarios on the local runtime: the model gated the app on the
    /// first sidecar instance sure to be seen started, and predicted it never starts when
    /// none is, while the kubelet starts it behind whichever instance it saw started.
    #[test]
    fn a_sidecar_that_may_end_before_it_is_seen_started_leaves_the_next_start_undecided() {
        let refused = predict(&crash_looping_sidecar(0));
        assert!(
            matches!(&refused, Err(PredictError::UndecidedRestart { container, reason, .. })
                if container == "side" && reason.contains("instance 0 may end before or after it is seen started")),
            "{refused:?}"
        );
        let prediction = predict(&crash_looping_sidecar(10)).expect("a later first probe");
        let app = prediction
            .containers
            .iter()
            .find(|c| c.name == "app")
            .expect("app");
        assert_eq!(
            app.instances[0].start_gate,
            crate::plan::StartGate::Started {
                container: "side".to_owned(),
                instance: 0
            }
        );
    }
}
