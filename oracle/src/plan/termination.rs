//! Stopping a container: the kubelet's `killContainer` (pkg/kubelet/kuberuntime/
//! kuberuntime_container.go), as a pod deletion or a failed PostStart hook runs it.
//!
//! The order the kubelet follows, and this module predicts:
//! 1. the grace period: the deletion's `deletionGracePeriodSeconds`, else the pod's
//!    `terminationGracePeriodSeconds` (`setTerminationGracePeriod`), at least 1 s for a
//!    deletion (`calculateEffectiveGracePeriod`, pod_workers.go);
//! 2. PreStop, if the container has one, waited for at most the grace period
//!    (`executePreStopHook`); the whole seconds it took are taken off the grace period
//!    (`gracePeriod - int64(time.Since(start).Seconds())`, truncated); a failed PreStop
//!    is an event (FailedPreStopHook), not a reason to stop;
//! 3. never less than [`MINIMUM_GRACE`] (`minimumGracePeriodInSeconds`) is left;
//! 4. `StopContainer(timeout)`: the runtime sends SIGTERM, and SIGKILL once the timeout
//!    has passed.
//!
//! Times here are spans after the moment the kubelet begins to kill the container; the
//! caller places that moment (the deletion seen, the PostStart hook's failure).
//! See docs/fidelity/termination.md.

use crate::behaviour::{Behaviour, HookResult, OnSigterm};
use crate::duration::SpecDuration;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

/// The least time the kubelet gives a container between SIGTERM and SIGKILL
/// (`minimumGracePeriodInSeconds`, declared in kuberuntime_manager.go, applied in
/// kuberuntime_container.go `killContainer`).
pub const MINIMUM_GRACE: SpecDuration = SpecDuration::from_secs(2);

/// `terminationGracePeriodSeconds` when the pod does not set it (SetDefaults_PodSpec).
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// How long after the API server accepted a deletion the kubelet may begin to kill the
/// pod's containers: the pod watch delivers the update, the pod worker starts
/// `SyncTerminatingPod` at once.
/// `SyncTerminatingPod`, which first waits up to ~2 s for a PLEG cache newer than the
/// update (`podCache.GetNewerThan`).
pub const DELETION_NOTICED_WITHIN: SpecDuration = SpecDuration::from_secs(3);

/// How late after the terminal phase is written the kubelet's final delete may remove the
/// object: it waits for volumes and cgroups to be cleaned up (`TerminatePod` sets
/// `podIsFinished`), typically 1-3 s, and a failed delete is retried at the status
/// manager's next reconcile, every 10 s (status_manager.go `syncPeriod`).
pub const OBJECT_REMOVAL_LAG: SpecDuration = SpecDuration::from_secs(12);

/// How much longer than its scripted time a hook call may take, as the kubelet measures
/// it: the exec into the container, or the HTTP round trip.
pub const HOOK_LAG: SpecDuration = SpecDuration::from_secs(1);

/// How late after SIGTERM (or SIGKILL) the runtime may see the process gone.
pub const SIGNAL_LAG: SpecDuration = SpecDuration::from_secs(1);

/// Distance within which timing noise could decide which of two things comes first (a
/// graceful exit or the SIGKILL, the end of PreStop or of the grace period).
pub const TERMINATION_MARGIN: SpecDuration = SpecDuration::from_secs(1);

/// The exit status of a process that died of SIGTERM (128 + 15).
pub const SIGTERM_EXIT_CODE: i32 = 143;
/// The exit status of a process that died of SIGKILL (128 + 9).
pub const SIGKILL_EXIT_CODE: i32 = 137;

/// Which lifecycle hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HookPoint {
    PostStart,
    PreStop,
}

impl HookPoint {
    pub fn field(self) -> &'static str {
        match self {
            HookPoint::PostStart => "postStart",
            HookPoint::PreStop => "preStop",
        }
    }
}

/// A lifecycle handler as the kubelet runs it (pkg/kubelet/lifecycle/handlers.go).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HookHandler {
    /// `exec` running `/podcheck-agent hook NAME` in the container.
    Exec { name: String },
    /// `httpGet` of `/hook/NAME` on the container's hook port.
    Http { name: String },
    /// `sleep` for the given time, in the kubelet; the container sees nothing.
    Sleep(SpecDuration),
    /// `tcpSocket`: accepted by validation for backward compatibility, refused by the
    /// kubelet when it runs the hook (`invalid handler`), so the hook fails at once.
    TcpSocket,
}

impl HookHandler {
    /// The name the workload logs the call under, for handlers the workload answers.
    pub fn logged_name(&self) -> Option<&str> {
        match self {
            HookHandler::Exec { name } | HookHandler::Http { name } => Some(name),
            HookHandler::Sleep(_) | HookHandler::TcpSocket => None,
        }
    }
}

/// One hook call: its handler, how long it takes and whether it fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookCall {
    pub point: HookPoint,
    pub handler: HookHandler,
    /// How long the call takes before the kubelet has its answer (without [`HOOK_LAG`]).
    pub takes: SpecDuration,
    pub fails: bool,
}

/// The exec command that calls the workload's hook NAME.
pub const HOOK_COMMAND: &str = "/podcheck-agent";

/// Reads a container's PostStart or PreStop handler against the workload's scripted hook
/// calls. Err names the field and the reason.
pub fn resolve_hook(
    container: &Container,
    behaviour: &Behaviour,
    point: HookPoint,
    field: &str,
) -> Result<Option<HookCall>, (String, String)> {
    let Some(lifecycle) = container.lifecycle.as_ref() else {
        return Ok(None);
    };
    let handler = match point {
        HookPoint::PostStart => lifecycle.post_start.as_ref(),
        HookPoint::PreStop => lifecycle.pre_stop.as_ref(),
    };
    let Some(handler) = handler else {
        return Ok(None);
    };
    let field = format!("{field}.lifecycle.{}", point.field());
    let (handler, script) = read_handler(handler, behaviour, &field)?;
    let (takes, fails) = match (&handler, script) {
        (HookHandler::Sleep(duration), _) => (*duration, false),
        (HookHandler::TcpSocket, _) => (SpecDuration::ZERO, true),
        // runHTTPHandler returns only the transport's error: any answer, 500 included,
        // is a success (kubernetes#78286).
        (HookHandler::Http { .. }, Some(script)) => (script.takes, false),
        (_, Some(script)) => (script.takes, script.result == HookResult::Fail),
        (_, None) => (SpecDuration::ZERO, true),
    };
    Ok(Some(HookCall {
        point,
        handler,
        takes,
        fails,
    }))
}

fn read_handler<'b>(
    handler: &LifecycleHandler,
    behaviour: &'b Behaviour,
    field: &str,
) -> Result<(HookHandler, Option<&'b crate::behaviour::HookScript>), (String, String)> {
    let kinds = [
        handler.exec.is_some(),
        handler.http_get.is_some(),
        handler.sleep.is_some(),
        handler.tcp_socket.is_some(),
    ]
    .into_iter()
    .filter(|set| *set)
    .count();
    // validateHandler (pkg/apis/core/validation/validation.go): exactly one handler type.
    if kinds != 1 {
        return Err((
            field.to_owned(),
            if kinds == 0 {
                "must specify a handler type".to_owned()
            } else {
                "may not specify more than 1 handler type".to_owned()
            },
        ));
    }
    let script = |name: &str, at: String| match behaviour.hooks.get(name) {
        Some(script) => Ok(Some(script)),
        None => Err((
            at,
            format!("the workload has no hook {name:?}: add it to the behaviour's hooks"),
        )),
    };
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        let at = format!("{field}.exec.command");
        return match command.as_slice() {
            [program, verb, name] if program == HOOK_COMMAND && verb == "hook" => {
                let found = script(name, at)?;
                Ok((HookHandler::Exec { name: name.clone() }, found))
            }
            _ => Err((
                at,
                format!("an exec hook runs the workload's hook call: [{HOOK_COMMAND}, hook, NAME]"),
            )),
        };
    }
    if let Some(http) = &handler.http_get {
        let at = format!("{field}.httpGet");
        let path = http.path.as_deref().unwrap_or("/");
        let Some(name) = path.strip_prefix("/hook/") else {
            return Err((
                format!("{at}.path"),
                "an httpGet hook calls the workload's /hook/NAME".to_owned(),
            ));
        };
        if http.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Err((
                format!("{at}.scheme"),
                "the workload answers hook calls over plain HTTP".to_owned(),
            ));
        }
        if http.host.is_some() {
            return Err((
                format!("{at}.host"),
                "a hook call to another host is not modelled".to_owned(),
            ));
        }
        let port = behaviour.hook_port().unwrap_or_default();
        match &http.port {
            IntOrString::Int(p) if i64::from(*p) == i64::from(port) => {}
            _ => {
                return Err((
                    format!("{at}.port"),
                    format!("the workload answers hook calls on port {port} (its health port) only; named ports are not modelled for hooks"),
                ))
            }
        }
        let found = script(name, format!("{at}.path"))?;
        return Ok((
            HookHandler::Http {
                name: name.to_owned(),
            },
            found,
        ));
    }
    if let Some(sleep) = &handler.sleep {
        // validateSleepAction: seconds must be non-negative (and, since the
        // PodLifecycleSleepActionAllowZero gate, may be 0).
        if sleep.seconds < 0 {
            return Err((
                format!("{field}.sleep.seconds"),
                "must be greater than or equal to 0".to_owned(),
            ));
        }
        let seconds = u64::try_from(sleep.seconds).unwrap_or_default();
        return Ok((HookHandler::Sleep(SpecDuration::from_secs(seconds)), None));
    }
    Ok((HookHandler::TcpSocket, None))
}

/// How one container stops once the kubelet begins to kill it, as spans after that
/// moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopPlan {
    /// The grace period the kill was given, in whole seconds.
    pub grace_seconds: i64,
    pub pre_stop: Option<PreStopPlan>,
    /// When SIGTERM is sent, earliest and latest.
    pub sigterm: (SpecDuration, SpecDuration),
    /// What is left of the grace period once SIGTERM is sent (the StopContainer
    /// timeout), earliest and latest.
    pub sigkill_after: (SpecDuration, SpecDuration),
    /// When the process is gone, earliest and latest.
    pub end: (SpecDuration, SpecDuration),
    pub exit_code: i32,
    /// SIGKILL ends it (the grace ran out).
    pub killed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreStopPlan {
    pub call: HookCall,
    /// The kubelet stops waiting for it at the end of the grace period.
    pub cut_off: bool,
}

/// What could not be predicted, and why.
pub type Undecidable = String;

/// How a container whose process behaves as `on_sigterm` stops under a kill with
/// `grace_seconds` and `pre_stop`.
pub fn plan_stop(
    grace_seconds: i64,
    pre_stop: Option<&HookCall>,
    on_sigterm: OnSigterm,
) -> Result<StopPlan, Undecidable> {
    // executePreStopHook runs only while `gracePeriod > 0`.
    let pre_stop = pre_stop.filter(|_| grace_seconds > 0);
    let grace = SpecDuration::from_secs(u64::try_from(grace_seconds.max(0)).unwrap_or_default());
    let (pre_stop_plan, sigterm, sigkill_after) = match pre_stop {
        None => (
            None,
            (SpecDuration::ZERO, SpecDuration::ZERO),
            (grace.max(MINIMUM_GRACE), grace.max(MINIMUM_GRACE)),
        ),
        Some(call) => {
            let (lo, hi) = (call.takes, call.takes + HOOK_LAG);
            if hi + TERMINATION_MARGIN <= grace {
                let left = |took: SpecDuration| {
                    let whole = SpecDuration::from_secs(took.as_millis() / 1000);
                    grace.saturating_sub(whole).max(MINIMUM_GRACE)
                };
                (
                    Some(PreStopPlan {
                        call: call.clone(),
                        cut_off: false,
                    }),
                    (lo, hi),
                    (left(hi), left(lo)),
                )
            } else if lo >= grace + TERMINATION_MARGIN {
                (
                    Some(PreStopPlan {
                        call: call.clone(),
                        cut_off: true,
                    }),
                    (grace, grace + HOOK_LAG),
                    (MINIMUM_GRACE, MINIMUM_GRACE),
                )
            } else {
                return Err(format!(
                    "its preStop hook takes {} to {}, too close to the {grace_seconds}s grace period to tell whether it is cut off",
                    secs(lo),
                    secs(hi)
                ));
            }
        }
    };
    let kill = (
        sigterm.0 + sigkill_after.0,
        sigterm.1 + sigkill_after.1 + SIGNAL_LAG,
    );
    let (end, exit_code, killed) = match on_sigterm {
        OnSigterm::Die => (
            (sigterm.0, sigterm.1 + SIGNAL_LAG),
            SIGTERM_EXIT_CODE,
            false,
        ),
        OnSigterm::Ignore => (kill, SIGKILL_EXIT_CODE, true),
        OnSigterm::Exit { after, code } => {
            if after + TERMINATION_MARGIN <= sigkill_after.0 {
                (
                    (sigterm.0 + after, sigterm.1 + after + SIGNAL_LAG),
                    code,
                    false,
                )
            } else if after >= sigkill_after.1 + TERMINATION_MARGIN {
                (kill, SIGKILL_EXIT_CODE, true)
            } else {
                return Err(format!(
                    "its process exits {} after SIGTERM, too close to the SIGKILL {} to {} after it",
                    secs(after),
                    secs(sigkill_after.0),
                    secs(sigkill_after.1)
                ));
            }
        }
    };
    Ok(StopPlan {
        grace_seconds,
        pre_stop: pre_stop_plan,
        sigterm,
        sigkill_after,
        end,
        exit_code,
        killed,
    })
}

/// The pod's deletion, as the fault schedule asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deletion {
    /// The index of the action in the fault schedule.
    pub fault: usize,
    pub at: SpecDuration,
    /// The `deletionGracePeriodSeconds` the API server sets: the request's
    /// `gracePeriodSeconds`, else the pod's `terminationGracePeriodSeconds`
    /// (`CheckGracefulDelete`, pkg/registry/core/pod/strategy.go); 0 for a force delete.
    pub api_grace_seconds: i64,
    /// The grace period the kubelet kills the containers with
    /// (`calculateEffectiveGracePeriod`, pod_workers.go): the API's, and never less than
    /// 1 s, so 1 s for a force delete (since 1.31, kubernetes#124063; 1.22-1.30 fell back
    /// to the pod's own, kubernetes#120449).
    pub node_grace_seconds: i64,
    pub force: bool,
    /// The pod's `metadata.finalizers` at creation.
    pub finalizers: Vec<String>,
}

impl Deletion {
    /// The first `delete` or `forceDelete` of the schedule (validation allows one).
    pub fn of(scenario: &crate::Scenario) -> Option<Deletion> {
        use crate::scenario::FaultAction;
        let spec_grace = scenario.grace_period_seconds();
        let (fault, at, api_grace_seconds) =
            scenario
                .faults
                .iter()
                .enumerate()
                .find_map(|(index, fault)| match &fault.action {
                    FaultAction::Delete {
                        grace_period_seconds,
                    } => Some((index, fault.at, grace_period_seconds.unwrap_or(spec_grace))),
                    FaultAction::ForceDelete => Some((index, fault.at, 0)),
                    _ => None,
                })?;
        let node_grace_seconds = api_grace_seconds.max(1);
        Some(Deletion {
            fault,
            at,
            api_grace_seconds,
            node_grace_seconds,
            force: api_grace_seconds == 0,
            finalizers: scenario.pod.metadata.finalizers.clone().unwrap_or_default(),
        })
    }

    /// A deletion with no grace period and no finalizer removes the object at once: the
    /// API shows nothing of what the node does afterwards.
    pub fn object_gone_at_once(&self) -> bool {
        self.api_grace_seconds == 0 && self.finalizers.is_empty()
    }

    /// How the kubelet stops `container` (at `field`, `pod.spec.containers[0]`) for this
    /// deletion.
    pub fn stop_plan(
        &self,
        container: &Container,
        field: &str,
        behaviour: &Behaviour,
    ) -> Result<StopPlan, Undecidable> {
        let pre_stop = resolve_hook(container, behaviour, HookPoint::PreStop, field)
            .map_err(|(field, reason)| format!("{field}: {reason}"))?;
        plan_stop(
            self.node_grace_seconds,
            pre_stop.as_ref(),
            behaviour.on_sigterm,
        )
    }
}

fn secs(d: SpecDuration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(takes: u64) -> HookCall {
        HookCall {
            point: HookPoint::PreStop,
            handler: HookHandler::Exec {
                name: "drain".to_owned(),
            },
            takes: SpecDuration::from_secs(takes),
            fails: false,
        }
    }

    fn s(secs: u64) -> SpecDuration {
        SpecDuration::from_secs(secs)
    }

    #[test]
    fn without_pre_stop_an_unprepared_process_dies_of_sigterm_at_once() {
        let plan = plan_stop(30, None, OnSigterm::Die).expect("plan");
        assert_eq!(plan.sigterm, (s(0), s(0)));
        assert_eq!(plan.exit_code, SIGTERM_EXIT_CODE);
        assert!(!plan.killed);
        assert_eq!(plan.end, (s(0), SIGNAL_LAG));
    }

    #[test]
    fn a_process_that_ignores_sigterm_is_killed_when_the_grace_period_ends() {
        let plan = plan_stop(30, None, OnSigterm::Ignore).expect("plan");
        assert!(plan.killed);
        assert_eq!(plan.exit_code, SIGKILL_EXIT_CODE);
        assert_eq!(plan.end, (s(30), s(30) + SIGNAL_LAG));
    }

    #[test]
    fn pre_stop_time_counts_against_the_grace_period_in_whole_seconds() {
        let plan = plan_stop(20, Some(&call(8)), OnSigterm::Ignore).expect("plan");
        // The kubelet measures 8 to 9 s and takes off 8 or 9 whole seconds.
        assert_eq!(plan.sigterm, (s(8), s(9)));
        assert_eq!(plan.sigkill_after, (s(11), s(12)));
        assert_eq!(plan.end, (s(19), s(21) + SIGNAL_LAG));
    }

    #[test]
    fn a_pre_stop_that_outlasts_the_grace_period_is_cut_off_and_two_seconds_remain() {
        let plan = plan_stop(5, Some(&call(10)), OnSigterm::Ignore).expect("plan");
        assert!(plan.pre_stop.as_ref().is_some_and(|p| p.cut_off));
        assert_eq!(plan.sigterm, (s(5), s(5) + HOOK_LAG));
        assert_eq!(plan.sigkill_after, (MINIMUM_GRACE, MINIMUM_GRACE));
    }

    #[test]
    fn a_graceful_exit_inside_the_grace_period_keeps_its_code() {
        let exit = OnSigterm::Exit {
            after: s(3),
            code: 0,
        };
        let plan = plan_stop(30, None, exit).expect("plan");
        assert_eq!(plan.exit_code, 0);
        assert!(!plan.killed);
        let late = OnSigterm::Exit {
            after: s(40),
            code: 0,
        };
        assert!(plan_stop(30, None, late).expect("plan").killed);
        let close = OnSigterm::Exit {
            after: s(30),
            code: 0,
        };
        assert!(plan_stop(30, None, close).is_err());
    }

    #[test]
    fn a_pre_stop_too_close_to_the_grace_period_has_no_single_prediction() {
        assert!(plan_stop(10, Some(&call(9)), OnSigterm::Die).is_err());
    }
}
