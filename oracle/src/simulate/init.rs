//! Init containers, sidecars and ephemeral containers on the model target: the sidecars'
//! stop once the regular containers' exits are played, and the status list of each kind.

use super::*;
use k8s_openapi::api::core::v1::ContainerStatus;

/// A sidecar instance the kubelet stops once the regular containers are done.
pub(super) struct DeferredStop {
    pub(super) container: usize,
    pub(super) index: u32,
    pub(super) start: u64,
    pub(super) stop: crate::plan::termination::StopPlan,
    /// When the pod was deleted, for a stop of the deletion.
    pub(super) deleted_at: Option<u64>,
}

/// Stops the sidecars once the last regular container (or, under Never, the failed init
/// container) has exited as this run played it: the sync that sees that exit kills the
/// pod, the last sidecar of the spec first, each one's SIGTERM after the one behind it is
/// gone.
#[allow(clippy::too_many_arguments)]
pub(super) fn stop_sidecars(
    scenario: &Scenario,
    planned: &Prediction,
    exits: &BTreeMap<(&str, u32), u64>,
    deferred: Vec<DeferredStop>,
    choices: &mut dyn Choices,
    deviation: Option<Deviation>,
    logs: &mut BTreeMap<String, Vec<String>>,
    push: &mut dyn FnMut(u64, Event),
) {
    if deferred.is_empty() {
        return;
    }
    let done = planned
        .containers
        .iter()
        .filter(|plan| plan.ends_the_pod())
        .filter_map(|plan| {
            exits
                .get(&(plan.name.as_str(), plan.last()?.index))
                .copied()
        })
        .max()
        .unwrap_or(0);
    if deviation == Some(Deviation::SidecarKeepsPodRunning)
        && deferred.iter().all(|d| d.deleted_at.is_none())
    {
        return;
    }
    let with_regular = deviation == Some(Deviation::SidecarsStoppedWithRegular);
    let mut next_free = match deferred.first().and_then(|d| d.deleted_at) {
        // The kubelet stops every container once it sees the deletion; the sidecars'
        // SIGTERM waits for the regular containers to be gone.
        Some(at) => {
            let notice = at
                + choices.pick(
                    0,
                    crate::plan::termination::DELETION_NOTICED_WITHIN.as_millis(),
                );
            if with_regular {
                // As soon as any container can be stopped.
                at
            } else {
                notice.max(done)
            }
        }
        None => done + choices.pick(0, crate::plan::NEXT_CONTAINER_WITHIN.as_millis()),
    };
    let order: Vec<&DeferredStop> = if deviation == Some(Deviation::SidecarsStoppedInSpecOrder) {
        deferred.iter().collect()
    } else {
        deferred.iter().rev().collect()
    };
    for stop in order {
        let Some(plan) = planned.containers.get(stop.container) else {
            continue;
        };
        let behaviour = scenario.behaviours.get(&plan.name);
        let drawn =
            termination::draw_requested_stop(&stop.stop, next_free, behaviour, choices, deviation);
        if !with_regular {
            next_free = drawn.finish.max(next_free);
        }
        let lines = logs.entry(plan.name.clone()).or_insert_with(|| {
            vec![log::start_line(
                stop.index,
                behaviour.map_or(crate::behaviour::Run::Forever, |b| {
                    b.run_for_start(stop.index)
                }),
                stop.start,
            )]
        });
        lines.extend(drawn.log.iter().map(ToString::to_string));
        lines.sort_by_key(|l| podcheck_wire::LogEvent::parse(l).map_or(0, |e| e.ts_ms));
        push(
            drawn.finish,
            Event::Exit {
                container: stop.container,
                index: stop.index,
                code: drawn.code,
            },
        );
    }
}

/// The statuses of one status list (`initContainerStatuses`...), in spec order; an
/// ephemeral container shows once it has been added (its state is set).
pub(super) fn split_statuses(
    names: &[derive::SpecContainer<'_>],
    statuses: &[ContainerStatus],
    list: &str,
) -> Vec<ContainerStatus> {
    names
        .iter()
        .zip(statuses)
        .filter(|((_, kind), _)| kind.status_list() == list)
        .filter(|(_, status)| status.state.is_some())
        .map(|(_, status)| status.clone())
        .collect()
}
