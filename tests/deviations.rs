//! Every planted bug of the model target is caught through the path a user runs:
//! `podcheck run suites --target model:DEVIATION` must exit 1 (nonconformant), and in every
//! case that fails, the first violation reported (the earliest seen, the one a user reads
//! first) must name the rule the bug breaks (`Deviation::expected_rule`). One test per
//! deviation: `deviation/<name>`.

use libtest_mimic::{Arguments, Failed, Trial};
use podcheck_oracle::simulate::Deviation;
use podcheck_oracle::{Outcome, RuleId, Verdict, Violation};
use std::path::Path;
use std::process::Command;

const NONCONFORMANT: i32 = 1;

/// The rules of the first observation a verdict reports. One observation can fall under
/// several rules when the checker cannot tell which was broken (a kill that never came
/// breaks the liveness restart and the handler that should have failed). Those come as
/// violations with the same time, container, expectation and observation.
fn first_observation(violations: &[Violation]) -> Vec<RuleId> {
    let Some(first) = violations.first() else {
        return Vec::new();
    };
    violations
        .iter()
        .take_while(|v| {
            v.at_ms == first.at_ms
                && v.container == first.container
                && v.expected == first.expected
                && v.observed == first.observed
        })
        .map(|v| v.rule)
        .collect()
}

#[derive(serde::Deserialize)]
struct Report {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    verdict: Verdict,
}

fn misattributed(deviation: Deviation, verdict: &Verdict) -> Option<String> {
    let expected = deviation.expected_rule();
    let first = first_observation(&verdict.violations);
    let accepted = deviation.reported_instead(&verdict.scenario, &verdict.rules);
    if first.contains(&expected) || accepted.is_some_and(|rule| first.contains(&rule)) {
        return None;
    }
    Some(format!(
        "{}: first reported {:?}, expected {expected}\n  {:?}",
        verdict.scenario,
        first.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        verdict.violations.first()
    ))
}

fn caught(deviation: Deviation) -> Result<(), Failed> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let results = std::env::temp_dir().join(format!(
        "podcheck-deviation-{}-{}",
        deviation.name(),
        std::process::id()
    ));
    let target = format!("model:{}", deviation.name());
    let output = Command::new(env!("CARGO_BIN_EXE_podcheck"))
        .current_dir(root)
        .args(["run", "suites", "--target", &target, "-o"])
        .arg(&results)
        .output()
        .map_err(|e| format!("failed to run podcheck: {e}"))?;
    let report = std::fs::read_to_string(results.join("results.json"));
    let _ = std::fs::remove_dir_all(&results);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() != Some(NONCONFORMANT) {
        return Err(format!(
            "`podcheck run suites --target {target}` exited with {} instead of {NONCONFORMANT}: \
             the suite does not catch this planted bug\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        )
        .into());
    }
    let report: Report = serde_json::from_str(
        &report.map_err(|e| format!("no results.json from `podcheck run`: {e}"))?,
    )
    .map_err(|e| format!("unreadable results.json: {e}"))?;
    let wrong: Vec<String> = report
        .cases
        .iter()
        .map(|case| &case.verdict)
        .filter(|verdict| verdict.outcome == Outcome::Fail)
        .filter_map(|verdict| misattributed(deviation, verdict))
        .collect();
    if !wrong.is_empty() {
        return Err(format!(
            "{target}: the first violation does not name the rule the bug breaks:\n{}",
            wrong.join("\n")
        )
        .into());
    }
    Ok(())
}

fn main() {
    let arguments = Arguments::from_args();
    let trials = Deviation::ALL
        .iter()
        .map(|&deviation| {
            Trial::test(format!("deviation/{}", deviation.name()), move || {
                caught(deviation)
            })
        })
        .collect();
    libtest_mimic::run(&arguments, trials).exit();
}
