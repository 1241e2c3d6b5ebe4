//! Random scenarios against a target; on a divergence, shrink to a minimal scenario and
//! save it as a suite file that replays the failure.
//!
//! Every random choice derives from one seed (printed with a reproduce command). Cases
//! run concurrently, as many as the target allows; shrinking is sequential, one real run
//! per step, following proptest's simplify/complicate protocol.

use crate::harness::run_case;
use crate::targets::Target;
use futures::StreamExt;
use podcheck_oracle::{predict, Outcome, Scenario, SpecDuration};
use podcheck_reports::{describe_violations, CaseResult};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FuzzError {
    #[error("failed to generate a scenario: {0}")]
    Generate(String),
    #[error("the generator keeps producing unpredictable scenarios ({rejected} refused)")]
    Unpredictable { rejected: u32 },
    #[error("failed to {action}")]
    Save {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct FuzzOptions {
    pub cases: u32,
    pub seed: u64,
    pub out_dir: PathBuf,
    /// Upper bound on shrinking steps (each one a real run on the target).
    pub max_shrink_steps: u32,
    /// Scenarios the oracle would watch longer than this (spec time) are not drawn.
    pub max_horizon: SpecDuration,
}

/// Long enough for a back-off reset (a 600s run) and a few restarts; 45s of wall time at
/// the default time scale.
pub const DEFAULT_MAX_HORIZON: SpecDuration = SpecDuration::from_secs(900);

pub struct Counterexample {
    pub scenario: Scenario,
    pub result: CaseResult,
    pub saved_to: PathBuf,
    pub shrink_steps: u32,
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

/// Scenario value trees for a seed, skipping scenarios the oracle cannot predict or would
/// watch for longer than `max_horizon`.
pub fn draw(
    seed: u64,
    cases: u32,
    max_horizon: SpecDuration,
) -> Result<Vec<Box<dyn ValueTree<Value = Scenario>>>, FuzzError> {
    let mut runner = TestRunner::new_with_rng(Config::default(), rng_for(seed));
    let strategy = podcheck_generators::scenario().boxed();
    let mut trees = Vec::new();
    let mut rejected = 0u32;
    while trees.len() < cases as usize {
        let tree = strategy
            .new_tree(&mut runner)
            .map_err(|reason| FuzzError::Generate(reason.to_string()))?;
        if predict(&tree.current()).is_ok_and(|p| p.horizon <= max_horizon) {
            trees.push(Box::new(tree) as Box<dyn ValueTree<Value = Scenario>>);
        } else {
            rejected += 1;
            if rejected > cases.saturating_mul(10).max(100) {
                return Err(FuzzError::Unpredictable { rejected });
            }
        }
    }
    Ok(trees)
}

/// Distinct names, so that concurrent pods of one run do not collide on a target.
fn named(mut scenario: Scenario, index: usize) -> Scenario {
    scenario.name = format!("generated-{index}");
    scenario.pod.metadata.name = Some(scenario.name.clone());
    scenario
}

fn fails(result: &CaseResult) -> bool {
    result.verdict.outcome == Outcome::Fail
}

pub async fn fuzz(
    target: &dyn Target,
    options: &FuzzOptions,
    mut progress: impl FnMut(&CaseResult),
) -> Result<FuzzReport, FuzzError> {
    let mut trees = draw(options.seed, options.cases, options.max_horizon)?;
    let concurrency = target.capabilities().concurrency.max(1);
    let scenarios: Vec<Scenario> = trees
        .iter()
        .enumerate()
        .map(|(index, t)| named(t.current(), index))
        .collect();
    let mut results: Vec<(usize, CaseResult)> = futures::stream::iter(scenarios.iter().enumerate())
        .map(|(index, scenario)| async move {
            let source = format!("generated #{index} of seed {}", options.seed);
            (index, run_case(target, scenario, &source, true).await)
        })
        .buffer_unordered(concurrency)
        .inspect(|(_, result)| progress(result))
        .collect()
        .await;
    results.sort_by_key(|(index, _)| *index);
    let target_errors = results
        .iter()
        .filter(|(_, r)| r.verdict.outcome == Outcome::Error)
        .count() as u32;
    let Some((index, first)) = results.into_iter().find(|(_, r)| fails(r)) else {
        return Ok(FuzzReport {
            cases_run: options.cases,
            target_errors,
            counterexample: None,
        });
    };
    let tree = &mut trees[index];
    let mut best = (named(tree.current(), index), first);
    let mut steps = 0u32;
    if tree.simplify() {
        while steps < options.max_shrink_steps {
            steps += 1;
            let candidate = named(tree.current(), index);
            let result = match predict(&candidate) {
                Ok(p) if p.horizon <= options.max_horizon => {
                    Some(run_case(target, &candidate, "shrinking", true).await)
                }
                _ => None,
            };
            match result {
                Some(result) if fails(&result) => {
                    best = (candidate, result);
                    if !tree.simplify() {
                        break;
                    }
                }
                _ => {
                    if !tree.complicate() {
                        break;
                    }
                }
            }
        }
    }
    let (scenario, result) = best;
    let saved_to = save_counterexample(&scenario, &result, options)?;
    Ok(FuzzReport {
        cases_run: options.cases,
        target_errors,
        counterexample: Some(Counterexample {
            scenario,
            result,
            saved_to,
            shrink_steps: steps,
        }),
    })
}

fn save_counterexample(
    scenario: &Scenario,
    result: &CaseResult,
    options: &FuzzOptions,
) -> Result<PathBuf, FuzzError> {
    let mut scenario = scenario.clone();
    scenario.name = format!("fuzz-{:016x}", options.seed);
    scenario.pod.metadata.name = Some(scenario.name.clone());
    scenario.rules = result.verdict.violated_rules().into_iter().collect();
    scenario.description = Some(format!(
        "Minimal counterexample found by `podcheck fuzz --seed {}` on target {}:\n{}",
        options.seed,
        result.verdict.target,
        describe_violations(&result.verdict)
    ));
    std::fs::create_dir_all(&options.out_dir).map_err(|source| FuzzError::Save {
        action: format!("create {}", options.out_dir.display()),
        source,
    })?;
    let path = Path::new(&options.out_dir).join(format!("{}.yaml", scenario.name));
    std::fs::write(&path, scenario.to_yaml()).map_err(|source| FuzzError::Save {
        action: format!("write {}", path.display()),
        source,
    })?;
    Ok(path)
}
