//! Random scenarios against a target; on a divergence, shrink to a minimal scenario and
//! save it as a suite file that replays the failure.

use crate::harness::run_case;
use crate::target::Target;
use podcheck_oracle::{predict, Outcome, Scenario};
use podcheck_reports::{describe_violations, CaseResult};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

pub struct FuzzOptions {
    pub cases: u32,
    pub seed: u64,
    pub out_dir: PathBuf,
}

pub struct Counterexample {
    pub scenario: Scenario,
    pub result: CaseResult,
    pub saved_to: PathBuf,
}

pub struct FuzzReport {
    pub cases_run: u32,
    pub target_errors: u32,
    pub counterexample: Option<Counterexample>,
}

/// The proptest RNG for a seed: every random choice of a fuzz run derives from it.
pub fn rng_for(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(
            &(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes(),
        );
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Runs random scenarios on `target` (blocking the current thread on `handle` per case).
pub fn fuzz(
    target: &dyn Target,
    handle: &tokio::runtime::Handle,
    options: &FuzzOptions,
    progress: impl FnMut(&CaseResult),
) -> Result<FuzzReport, String> {
    let config = Config {
        cases: options.cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        max_global_rejects: options.cases.saturating_mul(4).max(64),
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng_for(options.seed));
    let progress = RefCell::new(progress);
    let cases_run = RefCell::new(0u32);
    let target_errors = RefCell::new(0u32);
    let last_failure: RefCell<Option<CaseResult>> = RefCell::new(None);
    let outcome = runner.run(&podcheck_generators::scenario(), |scenario| {
        if predict(&scenario).is_err() {
            return Err(TestCaseError::reject("no single prediction"));
        }
        let result = handle.block_on(run_case(target, &scenario, "generated", true));
        *cases_run.borrow_mut() += 1;
        (progress.borrow_mut())(&result);
        match result.verdict.outcome {
            Outcome::Fail => {
                let message = describe_violations(&result.verdict);
                *last_failure.borrow_mut() = Some(result);
                Err(TestCaseError::fail(message))
            }
            Outcome::Error => {
                *target_errors.borrow_mut() += 1;
                Ok(())
            }
            _ => Ok(()),
        }
    });
    let counterexample = match outcome {
        Ok(()) => None,
        Err(TestError::Abort(reason)) => return Err(format!("fuzzing stopped: {reason}")),
        Err(TestError::Fail(_, minimal)) => {
            // Replay the minimal scenario once more for its own result and trace.
            let result =
                handle.block_on(run_case(target, &minimal, "minimal counterexample", true));
            let result = if result.verdict.outcome == Outcome::Fail {
                result
            } else {
                last_failure.borrow_mut().take().unwrap_or(result)
            };
            let saved_to = save_counterexample(&minimal, &result, options)?;
            Some(Counterexample {
                scenario: minimal,
                result,
                saved_to,
            })
        }
    };
    Ok(FuzzReport {
        cases_run: cases_run.into_inner(),
        target_errors: target_errors.into_inner(),
        counterexample,
    })
}

fn save_counterexample(
    scenario: &Scenario,
    result: &CaseResult,
    options: &FuzzOptions,
) -> Result<PathBuf, String> {
    let mut scenario = scenario.clone();
    scenario.name = format!("fuzz-{:016x}", options.seed);
    scenario.pod.metadata.name = Some(scenario.name.clone());
    scenario.rules = result
        .verdict
        .violated_rules()
        .into_iter()
        .map(str::to_owned)
        .collect();
    scenario.description = Some(format!(
        "Minimal counterexample found by `podcheck fuzz --seed {}` on target {}:\n{}",
        options.seed,
        result.verdict.target,
        describe_violations(&result.verdict)
    ));
    std::fs::create_dir_all(&options.out_dir)
        .map_err(|e| format!("failed to create {}: {e}", options.out_dir.display()))?;
    let path = Path::new(&options.out_dir).join(format!("{}.yaml", scenario.name));
    std::fs::write(&path, scenario.to_yaml())
        .map_err(|e| format!("failed to write {}: {e}", path.display()))?;
    Ok(path)
}
