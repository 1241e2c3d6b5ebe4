//! The oracle's promise to a scenario's author, checked on any text: a scenario that
//! `predict` accepts passes on the `model` target, whatever timing the model draws inside
//! its windows. A scenario the oracle cannot predict must be refused (a validation error
//! naming the field, or a `PredictError`), never accepted and then failed on the model:
//! such a verdict would blame a conformant target for the oracle's own gap.
//!
//! [`check_scenario_text`] parses and validates the text, predicts, and plays an accepted
//! scenario on the model with the earliest, the latest and several seeded timings, and
//! through the harness with the model target, as `podcheck run --target model` does (the
//! scenario round-trips through the compiled manifest). The fuzz target (`fuzz/`) and the
//! hostile-input tests call it; it does not catch panics of the code under test, so those
//! reach the fuzzer as crashes.

use crate::harness::run_case;
use crate::targets::model::ModelTarget;
use podcheck_oracle::simulate::{simulate, Choices, Earliest, Latest, Seeded};
use podcheck_oracle::{
    check, predict, Outcome, PredictError, Prediction, Scenario, ScenarioError, Violation,
};
use std::fmt;

/// What the oracle made of a scenario text that keeps its promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// The text is not a scenario the oracle can predict, and it says so.
    Refused(Refusal),
    /// Predicted, and every model run passed.
    Accepted,
}

/// Why the oracle refused a scenario text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not YAML of a scenario, or a scenario that validation refuses.
    Invalid(ScenarioError),
    /// A valid scenario without a single prediction.
    Unpredictable(PredictError),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Invalid(err) => write!(f, "invalid: {err}"),
            Refusal::Unpredictable(err) => write!(f, "cannot predict: {err}"),
        }
    }
}

/// How a model run drew its timings, or that it went through the harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelRun {
    Earliest,
    Latest,
    Seeded(u64),
    /// `run_case` with `ModelTarget::new("", seed)`: what `podcheck run --target model
    /// --seed SEED` does with the case.
    Harness {
        seed: u64,
    },
}

impl fmt::Display for ModelRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRun::Earliest => write!(f, "earliest timings"),
            ModelRun::Latest => write!(f, "latest timings"),
            ModelRun::Seeded(seed) => write!(f, "seeded timings ({seed})"),
            ModelRun::Harness { seed } => {
                write!(f, "podcheck run --target model --seed {seed}")
            }
        }
    }
}

/// One model run of an accepted scenario that did not pass.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedRun {
    pub run: ModelRun,
    pub outcome: Outcome,
    pub violations: Vec<Violation>,
    pub error: Option<String>,
}

/// A scenario that `predict` accepted and the model failed.
#[derive(Clone, Debug, PartialEq)]
pub struct InvariantBroken {
    /// The text as given.
    pub text: String,
    /// The scenario as the oracle read it.
    pub scenario: Box<Scenario>,
    pub failed: Vec<FailedRun>,
}

impl InvariantBroken {
    /// The scenario as the oracle read it, as YAML.
    pub fn scenario_yaml(&self) -> String {
        self.scenario.to_yaml()
    }
}

impl fmt::Display for InvariantBroken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "predict accepted scenario {} but the model failed it:",
            self.scenario.name
        )?;
        for failed in &self.failed {
            writeln!(f, "- {}: {:?}", failed.run, failed.outcome)?;
            if let Some(error) = &failed.error {
                writeln!(f, "    error: {error}")?;
            }
            for violation in &failed.violations {
                writeln!(
                    f,
                    "    {} {}at {}: expected {}; observed {}",
                    violation.rule,
                    violation
                        .container
                        .as_deref()
                        .map(|c| format!("({c}) "))
                        .unwrap_or_default(),
                    violation
                        .at_ms
                        .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms")),
                    violation.expected,
                    violation.observed
                )?;
            }
        }
        writeln!(f, "the text:\n{}", self.text)?;
        write!(f, "as read:\n{}", self.scenario_yaml())
    }
}

impl std::error::Error for InvariantBroken {}

/// How many seeded timing draws an accepted scenario is simulated with, besides the
/// earliest and the latest.
pub const SEEDED_RUNS: u64 = 4;

/// The seeds the harness runs the scenario with on the model target.
pub const HARNESS_SEEDS: [u64; 2] = [0, 7];

/// Parses, validates and predicts `text`; an accepted scenario must pass every model run.
/// `source` names the text in messages (a file name).
pub fn check_scenario_text(source: &str, text: &str) -> Result<Acceptance, InvariantBroken> {
    let scenario = match Scenario::from_yaml(source, text) {
        Ok(scenario) => scenario,
        Err(err) => return Ok(Acceptance::Refused(Refusal::Invalid(err))),
    };
    check_scenario(source, text, scenario)
}

/// [`check_scenario_text`] from the scenario as read.
pub fn check_scenario(
    source: &str,
    text: &str,
    scenario: Scenario,
) -> Result<Acceptance, InvariantBroken> {
    let prediction = match predict(&scenario) {
        Ok(prediction) => prediction,
        Err(err) => return Ok(Acceptance::Refused(Refusal::Unpredictable(err))),
    };
    let mut failed = simulated_failures(&scenario, &prediction, text);
    failed.extend(harness_failures(source, &scenario));
    if failed.is_empty() {
        Ok(Acceptance::Accepted)
    } else {
        Err(InvariantBroken {
            text: text.to_owned(),
            scenario: Box::new(scenario),
            failed,
        })
    }
}

/// FNV-1a: seeds that differ from text to text yet are reproducible from it.
fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn simulated_failures(scenario: &Scenario, prediction: &Prediction, text: &str) -> Vec<FailedRun> {
    let base = text_hash(text);
    let seeded = (0..SEEDED_RUNS).map(|i| ModelRun::Seeded(base.wrapping_add(i)));
    [ModelRun::Earliest, ModelRun::Latest]
        .into_iter()
        .chain(seeded)
        .filter_map(|run| {
            let mut seeded;
            let choices: &mut dyn Choices = match run {
                ModelRun::Earliest => &mut Earliest,
                ModelRun::Latest => &mut Latest,
                ModelRun::Seeded(seed) => {
                    seeded = Seeded(seed);
                    &mut seeded
                }
                ModelRun::Harness { .. } => return None,
            };
            let trace = simulate(scenario, prediction, choices, None);
            let verdict = check(prediction, &trace);
            if verdict.outcome == Outcome::Pass {
                return None;
            }
            Some(FailedRun {
                run,
                outcome: verdict.outcome,
                violations: verdict.violations,
                error: verdict.error,
            })
        })
        .collect()
}

thread_local! {
    /// One runtime per thread for the harness runs: building one per scenario would cost
    /// more than the model run itself.
    static RUNTIME: Result<tokio::runtime::Runtime, String> =
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|err| err.to_string());
}

fn harness_failures(source: &str, scenario: &Scenario) -> Vec<FailedRun> {
    HARNESS_SEEDS
        .iter()
        .filter_map(|&seed| {
            let run = ModelRun::Harness { seed };
            let failure = |outcome, violations, error| FailedRun {
                run,
                outcome,
                violations,
                error,
            };
            let target = match ModelTarget::new("", seed) {
                Ok(target) => target,
                Err(err) => {
                    return Some(failure(Outcome::Error, Vec::new(), Some(err.to_string())))
                }
            };
            let result = RUNTIME.with(|runtime| match runtime {
                Ok(runtime) => Ok(runtime.block_on(run_case(&target, scenario, source, false))),
                Err(err) => Err(format!("cannot start the async runtime: {err}")),
            });
            match result {
                Ok(result) if result.verdict.outcome == Outcome::Pass => None,
                Ok(result) => Some(failure(
                    result.verdict.outcome,
                    result.verdict.violations,
                    result.verdict.error,
                )),
                Err(error) => Some(failure(Outcome::Error, Vec::new(), Some(error))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suite_case_is_accepted_and_garbage_refused() {
        let text = "name: x\npod:\n  spec:\n    containers: [{name: app}]\nbehaviours:\n  app: {then: {exit: {after: 2s, code: 1}}}\n";
        assert_eq!(
            check_scenario_text("x.yaml", text),
            Ok(Acceptance::Accepted)
        );
        assert!(matches!(
            check_scenario_text("x.yaml", "name: [unclosed"),
            Ok(Acceptance::Refused(Refusal::Invalid(_)))
        ));
    }
}
