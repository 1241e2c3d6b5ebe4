//! The checker accepts every trace the model allows and flags each planted bug with the
//! rule it breaks.

use podcheck_oracle::simulate::{simulate, Deviation, Earliest, Latest, Seeded};
use podcheck_oracle::{check, predict, Outcome, Scenario};
use std::path::Path;

fn suite(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../suites/restart")
        .join(format!("{name}.yaml"));
    match Scenario::from_file(&path) {
        Ok(s) => s,
        Err(err) => panic!("{err}"),
    }
}

#[test]
fn model_traces_pass_at_both_extremes() {
    for name in ["never-exit-1-fails", "always-crash-loop-backoff"] {
        let scenario = suite(name);
        let prediction = predict(&scenario).expect("predictable");
        for trace in [
            simulate(&scenario, &prediction, &mut Earliest, None),
            simulate(&scenario, &prediction, &mut Latest, None),
            simulate(&scenario, &prediction, &mut Seeded(7), None),
        ] {
            let verdict = check(&prediction, &trace);
            assert_eq!(
                verdict.outcome,
                Outcome::Pass,
                "{name}: {:#?}",
                verdict.violations
            );
        }
    }
}

/// Each planted bug, a suite case that exposes it, and the rule it must be flagged with.
const PLANTED: &[(Deviation, &str, &str)] = &[
    (
        Deviation::NoBackOffDoubling,
        "always-crash-loop-backoff",
        "restart.backoff.doubling",
    ),
    (
        Deviation::BackOffOnFirstRestart,
        "always-crash-loop-backoff",
        "restart.backoff.first-immediate",
    ),
    (
        Deviation::NoBackOffCap,
        "backoff-cap-configured",
        "restart.backoff.cap",
    ),
    (
        Deviation::NoBackOffCap,
        "backoff-cap-default",
        "restart.backoff.cap",
    ),
    (
        Deviation::NoBackOffReset,
        "backoff-reset-after-long-run",
        "restart.backoff.reset",
    ),
    (
        Deviation::RestartUnderNever,
        "never-exit-1-fails",
        "restart.policy.never",
    ),
    (
        Deviation::RestartAfterSuccessOnFailure,
        "onfailure-exit-0-not-restarted",
        "restart.policy.onfailure",
    ),
    (
        Deviation::LeaveTerminalPhase,
        "never-exit-0-succeeds",
        "phase.terminal-never-left",
    ),
    (
        Deviation::OomKilledForEveryFailure,
        "never-exit-1-fails",
        "container.state.terminated",
    ),
    (
        Deviation::ReadyWhileTerminated,
        "never-one-exits-other-runs",
        "container.ready.no-probe",
    ),
    (
        Deviation::NoCrashLoopBackOffState,
        "always-crash-loop-backoff",
        "container.state.waiting.crashloop",
    ),
    (
        Deviation::RunningBeforeStart,
        "run-forever-ready",
        "phase.pending",
    ),
];

#[test]
fn every_planted_bug_is_flagged_with_its_rule_whatever_the_timing() {
    for &(deviation, case, rule) in PLANTED {
        let scenario = suite(case);
        let prediction = predict(&scenario).expect("predictable");
        let mut runs: Vec<Box<dyn podcheck_oracle::simulate::Choices>> =
            vec![Box::new(Earliest), Box::new(Latest)];
        runs.extend(
            (0..20)
                .map(|seed| Box::new(Seeded(seed)) as Box<dyn podcheck_oracle::simulate::Choices>),
        );
        for mut choices in runs {
            let trace = simulate(&scenario, &prediction, choices.as_mut(), Some(deviation));
            let verdict = check(&prediction, &trace);
            assert_eq!(
                verdict.outcome,
                Outcome::Fail,
                "{deviation:?} on {case} passed"
            );
            assert!(
                verdict.violated_rules().contains(rule),
                "{deviation:?} on {case}: expected {rule}, got {:?}",
                verdict.violations
            );
        }
    }
}

#[test]
fn every_deviation_has_a_planted_case() {
    for deviation in Deviation::ALL {
        assert!(
            PLANTED.iter().any(|(d, _, _)| d == deviation),
            "{deviation:?} is never planted"
        );
    }
}

#[test]
fn every_suite_case_passes_on_the_model_whatever_the_timing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites/restart");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("suite dir") {
        let path = entry.expect("entry").path();
        let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let prediction = predict(&scenario).expect("predictable");
        for seed in 0..50 {
            let trace = simulate(&scenario, &prediction, &mut Seeded(seed), None);
            let verdict = check(&prediction, &trace);
            assert_eq!(
                verdict.outcome,
                Outcome::Pass,
                "{}: seed {seed}: {:#?}",
                scenario.name,
                verdict.violations
            );
        }
        for trace in [
            simulate(&scenario, &prediction, &mut Earliest, None),
            simulate(&scenario, &prediction, &mut Latest, None),
        ] {
            let verdict = check(&prediction, &trace);
            assert_eq!(
                verdict.outcome,
                Outcome::Pass,
                "{}: {:#?}",
                scenario.name,
                verdict.violations
            );
        }
        count += 1;
    }
    assert!(count >= 10);
}
