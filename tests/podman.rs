//! The podman target's harness: every case completes with a verdict (not a harness
//! error), traces hold every container and its log (init containers and sidecars too, also
//! once podman removed them), verdicts are stable from run to run, and nothing of a run is left in
//! podman afterwards (also of a pod whose start never ends). Nothing here asserts what
//! podman gets right or wrong: that is what the verdicts are for.
//!
//! Needs podman and runc: without them the test is ignored (skipped) with the reason
//! printed, except under `CI=true`, where it runs and fails if it cannot.

mod common;

use libtest_mimic::Arguments;
use podcheck::runner::{load_cases, run_cases, RunOptions};
use podcheck::targets::podman::PodmanTarget;
use podcheck::targets::{Target, TargetOptions};
use podcheck_oracle::{Outcome, RuleId, SpecDuration};
use std::collections::BTreeSet;
use std::path::Path;

fn podman(args: &[&str]) -> String {
    std::process::Command::new("podman")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Why the podman target cannot run here, if it cannot: the tools it checks for, which
/// start nothing.
fn podman_missing() -> Result<(), String> {
    for tool in ["podman", "runc"] {
        let runs = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !runs {
            return Err(format!(
                "{tool} not found: install it with `apt-get install podman runc`"
            ));
        }
    }
    Ok(())
}

async fn the_restart_suite_runs_cleanly_and_stably_on_podman() {
    let options = TargetOptions::default();
    let cases = load_cases(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("suites/restart")])
        .expect("suite loads");
    // podman's time cannot be scaled: keep to the cases that finish within seconds.
    let run_options = RunOptions {
        keep_traces: true,
        max_horizon: Some(SpecDuration::from_secs(26)),
        to_horizon: false,
    };
    let mut verdicts = Vec::new();
    for round in 0..2 {
        let target = match PodmanTarget::new(&options).await {
            Ok(target) => target,
            Err(err) => panic!("podman target unavailable: {err}"),
        };
        let report = run_cases(&target, &cases, &run_options, |_| {}).await;
        target.cleanup().await.expect("cleanup");
        let ran: Vec<_> = report
            .cases
            .iter()
            .filter(|c| c.verdict.outcome != Outcome::Skipped)
            .collect();
        assert!(
            ran.len() >= 5,
            "round {round}: only {} cases ran",
            ran.len()
        );
        for case in &ran {
            let v = &case.verdict;
            assert!(
                matches!(v.outcome, Outcome::Pass | Outcome::Fail),
                "{}: harness error {:?}",
                v.scenario,
                v.error
            );
            let trace = case.trace.as_ref().expect("trace kept");
            let last = trace.snapshots.last().expect("snapshots");
            let names: BTreeSet<&str> = last
                .status
                .container_statuses
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            let expected: BTreeSet<String> = cases
                .iter()
                .find(|c| c.scenario.name == v.scenario)
                .map(|c| {
                    c.scenario
                        .containers()
                        .iter()
                        .map(|c| c.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                names,
                expected.iter().map(String::as_str).collect(),
                "{}: every container observed",
                v.scenario
            );
            assert!(
                trace
                    .logs
                    .values()
                    .any(|lines| lines.iter().any(|l| l.contains("\"event\":\"start\""))),
                "{}: agent logs",
                v.scenario
            );
        }
        verdicts.push(
            ran.iter()
                .map(|c| {
                    (
                        c.verdict.scenario.clone(),
                        c.verdict.outcome,
                        c.verdict.violated_rules(),
                    )
                })
                .collect::<Vec<_>>(),
        );
        let leftovers = podman(&["pod", "ps", "--quiet", "--filter", "label=podcheck.io/run"]);
        assert!(leftovers.trim().is_empty(), "pods left behind: {leftovers}");
        let volumes = podman(&["volume", "ls", "--quiet"]);
        assert!(
            !volumes.lines().any(|v| v.ends_with("-state")),
            "volumes left behind: {volumes}"
        );
        assert_eq!(target.name(), "podman");
    }
    assert_eq!(verdicts[0], verdicts[1], "verdicts differ between two runs");
}

/// Every init container is in the trace's `initContainerStatuses` to the end, the ones
/// podman removed once they succeeded included; the pods are removed afterwards, also
/// those whose start never ends (a sidecar that runs forever is an init container podman
/// waits for), and with them their state volumes, which an ephemeral container shares. The
/// cases are watched to their horizons, past the missing conditions.
async fn init_sidecar_and_ephemeral_containers_are_observed_to_the_end_on_podman() {
    let options = TargetOptions::default();
    let suites = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
    let cases = load_cases(&[
        suites.join("init"),
        suites.join("sidecars"),
        suites.join("ephemeral"),
    ])
    .expect("suites load");
    let run_options = RunOptions {
        keep_traces: true,
        max_horizon: Some(SpecDuration::from_secs(32)),
        to_horizon: true,
    };
    let target = match PodmanTarget::new(&options).await {
        Ok(target) => target,
        Err(err) => panic!("podman target unavailable: {err}"),
    };
    let report = run_cases(&target, &cases, &run_options, |_| {}).await;
    target.cleanup().await.expect("cleanup");
    let mut played = 0;
    for case in &report.cases {
        let v = &case.verdict;
        if v.outcome == Outcome::Skipped {
            continue;
        }
        assert!(
            matches!(v.outcome, Outcome::Pass | Outcome::Fail),
            "{}: harness error {:?}",
            v.scenario,
            v.error
        );
        // podman refuses init containers with probes or hooks: a verdict, no trace.
        if v.violated_rules().contains(&RuleId::PodAccepted) {
            continue;
        }
        played += 1;
        let scenario = &cases
            .iter()
            .find(|c| c.scenario.name == v.scenario)
            .expect("the case")
            .scenario;
        let trace = case.trace.as_ref().expect("trace kept");
        let last = trace.snapshots.last().expect("snapshots");
        let shown: Vec<&str> = last
            .status
            .init_container_statuses
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        let spec: Vec<&str> = scenario
            .init_containers()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(shown, spec, "{}: every init container observed", v.scenario);
        // The workload's own record of every init container that ran, also of one podman
        // removed.
        for status in last.status.init_container_statuses.iter().flatten() {
            let ran = status
                .state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some());
            let logged = trace
                .logs
                .get(&status.name)
                .is_some_and(|lines| lines.iter().any(|l| l.contains("\"event\":\"start\"")));
            assert!(
                !ran || logged,
                "{}: the log of init container {}",
                v.scenario,
                status.name
            );
        }
        let regular: BTreeSet<&str> = last
            .status
            .container_statuses
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            scenario
                .containers()
                .iter()
                .all(|c| regular.contains(c.name.as_str())),
            "{}: every regular container observed",
            v.scenario
        );
    }
    assert!(played >= 5, "only {played} cases played");
    let leftovers = podman(&["pod", "ps", "--quiet", "--filter", "label=podcheck.io/run"]);
    assert!(leftovers.trim().is_empty(), "pods left behind: {leftovers}");
    // An ephemeral container mounts the pod's own state volume, which goes with the pod.
    let volumes = podman(&["volume", "ls", "--quiet"]);
    assert!(
        !volumes.lines().any(|v| v.ends_with("-state")),
        "volumes left behind: {volumes}"
    );
}

fn main() {
    let mut args = Arguments::from_args();
    // The verdicts compared depend on podman's timing: one trial at a time.
    args.test_threads.get_or_insert(1);
    let missing = common::skip_reason(podman_missing);
    common::note_skipped(&args, "the podman target's tests", missing.as_ref());
    let trials = vec![
        common::async_trial(
            "the_restart_suite_runs_cleanly_and_stably_on_podman",
            podman_missing,
            the_restart_suite_runs_cleanly_and_stably_on_podman,
        )
        .with_ignored_flag(missing.is_some()),
        common::async_trial(
            "init_sidecar_and_ephemeral_containers_are_observed_to_the_end_on_podman",
            podman_missing,
            init_sidecar_and_ephemeral_containers_are_observed_to_the_end_on_podman,
        )
        .with_ignored_flag(missing.is_some()),
    ];
    libtest_mimic::run(&args, trials).exit();
}
