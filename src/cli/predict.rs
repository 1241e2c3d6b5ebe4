//! `podcheck predict`: what the oracle expects of a scenario, as text or JSON.

use super::args::PredictArgs;
use super::terminal::outln;
use super::{CONFORMANT, USAGE_OR_TARGET_ERROR};
use podcheck_oracle::plan::termination::StopPlan;
use podcheck_oracle::plan::{AfterExit, CutCause, End, SidecarStop};
use podcheck_oracle::scenario::ContainerKind;
use podcheck_oracle::{predict, Prediction, Scenario};

pub fn print_prediction(args: &PredictArgs) -> anyhow::Result<u8> {
    let scenario = match Scenario::from_file(&args.file) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: failed to load a scenario: {err}");
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    let prediction = match predict(&scenario) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&prediction)?)?;
    } else {
        print_text(&prediction)?;
    }
    Ok(CONFORMANT)
}

/// How the kubelet stops a container for a deletion, in one line.
fn describe_stop(stop: &StopPlan) -> String {
    let pre_stop = match &stop.pre_stop {
        Some(pre_stop) if pre_stop.cut_off => format!(
            "preStop ({:?}) cut off at the {}s grace period, ",
            pre_stop.call.handler, stop.grace_seconds
        ),
        Some(pre_stop) => format!(
            "preStop ({:?}, {}{}), ",
            pre_stop.call.handler,
            pre_stop.call.takes,
            if pre_stop.call.fails { ", fails" } else { "" }
        ),
        None => String::new(),
    };
    let then = if stop.killed {
        format!(
            "SIGKILL [{}, {}] after it",
            stop.sigkill_after.0, stop.sigkill_after.1
        )
    } else {
        format!("exit {} before SIGKILL", stop.exit_code)
    };
    format!(
        "deleted with a {}s grace period: {pre_stop}SIGTERM [{}, {}] after the kubelet sees it, {then}",
        stop.grace_seconds, stop.sigterm.0, stop.sigterm.1
    )
}

fn print_text(prediction: &Prediction) -> std::io::Result<()> {
    outln!(
        "scenario {} (restartPolicy {}), observed for {}",
        prediction.scenario,
        prediction.restart_policy.as_str(),
        prediction.horizon
    )?;
    for plan in &prediction.containers {
        let kind = match plan.kind {
            ContainerKind::Init => " (init container)",
            ContainerKind::Sidecar => " (sidecar)",
            ContainerKind::Ephemeral => " (ephemeral container)",
            ContainerKind::Regular => "",
        };
        outln!("container {}{kind}:", plan.name)?;
        for instance in &plan.instances {
            let from = instance.start_gate.describe(&plan.name);
            let run = match (instance.end(), &instance.cut) {
                (Some(end), Some(cut)) => {
                    if let CutCause::PodCompleted(sidecar) = &cut.cause {
                        let (lo, hi) = sidecar.after_done;
                        outln!(
                            "  instance {}: starts [{}, {}] after {from}, {}: gone [{lo}, {hi}] after the last regular container exits (exit {})",
                            instance.index,
                            instance.start_after.0,
                            instance.start_after.1,
                            describe_stop(&sidecar.stop),
                            end.code
                        )?;
                        continue;
                    }
                    let (lo, hi) = cut.after_action;
                    let how = match &cut.cause {
                        CutCause::Killed => "killed from outside".to_owned(),
                        CutCause::Deleted(stop)
                        | CutCause::PodCompleted(SidecarStop { stop, .. }) => describe_stop(stop),
                    };
                    format!(
                        "{how}: gone [{lo}, {hi}] after the action at {} (exit {})",
                        cut.action_at, end.code
                    )
                }
                (
                    Some(End {
                        killed_by: Some(kind),
                        lo,
                        hi,
                        code,
                        ..
                    }),
                    None,
                ) => format!(
                    "killed by its {kind:?} probe [{lo}, {hi}] after its start (exit {code})"
                ),
                (Some(end), None) if end.post_start_failed => format!(
                    "killed after its failing postStart hook [{}, {}] after its start (exit {})",
                    end.lo, end.hi, end.code
                ),
                (Some(end), None) => format!("runs {}, exits {}", end.lo, end.code),
                (None, _) => "runs forever".to_owned(),
            };
            let then = match instance.after_exit {
                Some(AfterExit::StaysTerminated) => ", stays terminated",
                Some(AfterExit::PodTerminating) => ", not restarted (the pod is being deleted)",
                Some(AfterExit::PodCompleted) => {
                    ", not restarted (stopped: the pod's regular containers are done)"
                }
                _ => "",
            };
            outln!(
                "  instance {}: starts [{}, {}] after {from} ({}); {run}{then}",
                instance.index,
                instance.start_after.0,
                instance.start_after.1,
                instance.start_rule
            )?;
            if let Some(probes) = &instance.probes {
                match &probes.started {
                    Some(w) if w.hi.is_zero() => {}
                    Some(w) => outln!("    started within [{}, {}] after its start", w.lo, w.hi)?,
                    None => outln!("    never started")?,
                }
                for flip in &probes.ready {
                    outln!(
                        "    ready turns {} within [{}, {}] after its start",
                        flip.to,
                        flip.window.lo,
                        flip.window.hi
                    )?;
                }
                if probes.ready.is_empty() && probes.probes.readiness.is_some() {
                    outln!("    never ready")?;
                }
            }
        }
        if !plan.settles {
            outln!("  ... keeps crash-looping")?;
        }
    }
    match prediction.terminal_phase {
        Some(phase) => outln!("pod: becomes {phase}")?,
        None => outln!("pod: never terminal")?,
    }
    let rules: Vec<&str> = prediction.rules.iter().map(|r| r.as_str()).collect();
    outln!("rules: {}", rules.join(", "))
}
