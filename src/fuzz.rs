//! Random scenarios against a target; every distinct divergence (by the rule a failing
//! case violates first) reduced to a minimal scenario and saved as a suite file that
//! replays the failure.
//!
//! Every random choice derives from one seed (printed with a reproduce command). Cases
//! run concurrently, as many as the target allows. Reduction is structural
//! ([`crate::reduce`]): proptest's value tree shrinks one real run at a time and stops at
//! local minima of its own encoding, far from the smallest pod that shows a divergence.

use crate::harness::run_case;
use crate::reduce::{reductions, size};
use crate::targets::Target;
use futures::StreamExt;
use podcheck_oracle::scenario::KubeletParams;
use podcheck_oracle::{predict, Outcome, RuleId, Scenario, SpecDuration};
use podcheck_reports::{describe_violations, CaseResult};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FuzzError {
    #[error("failed to generate a scenario: {0}")]
    Generate(String),
    #[error(
        "the generator keeps producing scenarios this run cannot use ({rejected} refused): \
         not predictable, longer than --max-horizon, or needing a kubelet configuration the \
         target does not have"
    )]
    Unpredictable { rejected: u32 },
    #[error("failed to {action}")]
    Save {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct FuzzOptions {
    /// How many random scenarios to run at most (None: as many as `duration` allows).
    pub cases: Option<u32>,
    /// Stop drawing scenarios once this much wall time has passed.
    pub duration: Option<std::time::Duration>,
    /// Stop at the first divergence (and shrink only it).
    pub stop_at_first: bool,
    pub seed: u64,
    pub out_dir: PathBuf,
    /// Upper bound on reduction rounds per divergence (each round runs its candidates
    /// concurrently on the target).
    pub max_shrink_steps: u32,
    /// Scenarios the oracle would watch longer than this (spec time) are not drawn.
    pub max_horizon: SpecDuration,
}

/// Long enough for a back-off reset (a 600s run) and a few restarts; 45s of wall time at
/// the default time scale.
pub const DEFAULT_MAX_HORIZON: SpecDuration = SpecDuration::from_secs(900);

/// The smallest scenario found that still shows one divergence.
pub struct Counterexample {
    pub scenario: Scenario,
    pub result: CaseResult,
    pub saved_to: PathBuf,
    /// Reduction rounds that made it smaller.
    pub shrink_steps: u32,
    /// Wall time spent reducing it.
    pub shrink_time: std::time::Duration,
}

/// One distinct way the target diverges: the rule its cases violate first.
pub struct Divergence {
    pub rule: RuleId,
    /// How many random scenarios showed it.
    pub scenarios: u32,
    pub counterexample: Counterexample,
}

pub struct FuzzReport {
    pub cases_run: u32,
    pub target_errors: u32,
    /// How many of the scenarios drawn exercised each rule (what their predictions involve).
    pub coverage: BTreeMap<RuleId, u32>,
    /// How many distinct pairs of rules the scenarios drawn exercised together.
    pub rule_pairs: usize,
    /// Every distinct divergence, in the order first seen.
    pub divergences: Vec<Divergence>,
    /// Rules a scenario violated once but not again when rerun (timing noise), with how
    /// many scenarios showed each: not divergences.
    pub unconfirmed: Vec<(RuleId, u32)>,
}

impl FuzzReport {
    /// The first divergence, as `--stop-at-first` reports it.
    pub fn first(&self) -> Option<&Counterexample> {
        self.divergences.first().map(|d| &d.counterexample)
    }
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

/// How many acceptable scenarios each draw considers before taking the one that reaches
/// what this run has reached least.
const CANDIDATES_PER_DRAW: usize = 4;

/// Draws scenarios for a fuzz run: only those the oracle can predict, watches no longer
/// than `max_horizon`, and the target can run (`runs`); each draw takes, of a few such
/// scenarios, the one whose rules and pairs of rules this run has exercised least
/// (coverage-guided), so that rare rules and their combinations come up early.
pub struct Drawer<F> {
    runner: TestRunner,
    strategy: proptest::strategy::BoxedStrategy<Scenario>,
    max_horizon: SpecDuration,
    runs: F,
    guided: bool,
    /// How many drawn scenarios exercise each rule, and each pair of rules.
    pub coverage: BTreeMap<RuleId, u32>,
    pub pairs: BTreeMap<(RuleId, RuleId), u32>,
}

impl<F: Fn(&KubeletParams) -> bool> Drawer<F> {
    pub fn new(seed: u64, max_horizon: SpecDuration, runs: F) -> Self {
        Drawer {
            runner: TestRunner::new_with_rng(Config::default(), rng_for(seed)),
            strategy: podcheck_generators::scenario().boxed(),
            max_horizon,
            runs,
            guided: true,
            coverage: BTreeMap::new(),
            pairs: BTreeMap::new(),
        }
    }

    /// Draws as the generator does, without guidance.
    pub fn unguided(mut self) -> Self {
        self.guided = false;
        self
    }

    /// The next scenario and the rules its prediction exercises.
    pub fn next_scenario(&mut self) -> Result<(Scenario, Vec<RuleId>), FuzzError> {
        let wanted = if self.guided { CANDIDATES_PER_DRAW } else { 1 };
        let mut candidates = Vec::with_capacity(wanted);
        let mut rejected = 0u32;
        while candidates.len() < wanted {
            let tree = self
                .strategy
                .new_tree(&mut self.runner)
                .map_err(|reason| FuzzError::Generate(reason.to_string()))?;
            let scenario = tree.current();
            let prediction = predict(&scenario)
                .ok()
                .filter(|p| p.horizon <= self.max_horizon && (self.runs)(&scenario.kubelet));
            match prediction {
                Some(prediction) => candidates.push((scenario, prediction.rules)),
                None => {
                    rejected += 1;
                    if rejected > MAX_REFUSED_IN_A_ROW {
                        return Err(FuzzError::Unpredictable { rejected });
                    }
                }
            }
        }
        let best = (0..candidates.len())
            .map(|i| (i, self.novelty(&candidates[i].1)))
            .fold((0, f64::MIN), |best, (i, score)| {
                if score > best.1 {
                    (i, score)
                } else {
                    best
                }
            })
            .0;
        let (scenario, rules) = candidates.swap_remove(best);
        for (i, rule) in rules.iter().enumerate() {
            *self.coverage.entry(*rule).or_insert(0) += 1;
            for other in &rules[i + 1..] {
                *self.pairs.entry((*rule, *other)).or_insert(0) += 1;
            }
        }
        Ok((scenario, rules))
    }

    /// How new a scenario exercising `rules` would be to this run: a rule never reached
    /// counts most, a pair of rules never reached together next.
    fn novelty(&self, rules: &[RuleId]) -> f64 {
        let rarity = |count: u32| 1.0 / (1.0 + f64::from(count));
        let single: f64 = rules
            .iter()
            .map(|r| rarity(self.coverage.get(r).copied().unwrap_or(0)))
            .sum();
        let paired: f64 = rules
            .iter()
            .enumerate()
            .flat_map(|(i, a)| rules[i + 1..].iter().map(move |b| (*a, *b)))
            .map(|pair| rarity(self.pairs.get(&pair).copied().unwrap_or(0)))
            .sum();
        4.0 * single + paired
    }
}

/// Scenarios the generator may produce in a row that the run cannot use before it gives up.
const MAX_REFUSED_IN_A_ROW: u32 = 2000;

/// When each case may create its pod: at least the target's launch spacing after the
/// one before, so that pod churn stays what the target sustains.
struct Pacer {
    spacing: std::time::Duration,
    last: Option<tokio::time::Instant>,
}

impl Pacer {
    fn new(spacing: std::time::Duration) -> Self {
        Pacer {
            spacing,
            last: None,
        }
    }

    fn next(&mut self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let at = self.last.map_or(now, |last| (last + self.spacing).max(now));
        self.last = Some(at);
        at
    }
}

/// Distinct names, so that concurrent pods of one run do not collide on a target.
fn named(mut scenario: Scenario, index: usize) -> Scenario {
    scenario.name = format!("generated-{index}");
    scenario.pod.metadata.name = Some(scenario.name.clone());
    scenario
}

/// The rule a failing case violates first: what tells one divergence from another (the
/// checker lists the cause of a failure first).
fn divergence_rule(result: &CaseResult) -> Option<RuleId> {
    (result.verdict.outcome == Outcome::Fail)
        .then(|| result.verdict.violations.first().map(|v| v.rule))
        .flatten()
}

/// Runs random scenarios (as many at once as the target allows, each slot refilled as soon
/// as its case ends) until `cases` have run or `duration` is over, groups the failing ones
/// by the rule they violate first, and reduces one of each group to a minimal scenario,
/// saved as a suite file.
pub async fn fuzz(
    target: &dyn Target,
    options: &FuzzOptions,
    progress: impl FnMut(&CaseResult),
) -> Result<FuzzReport, FuzzError> {
    fuzz_reporting(target, options, |_| {}, progress).await
}

/// [`fuzz`], calling `on_start` with each drawn scenario's name as it starts (a progress
/// display's "running now").
pub async fn fuzz_reporting(
    target: &dyn Target,
    options: &FuzzOptions,
    on_start: impl Fn(&str),
    mut progress: impl FnMut(&CaseResult),
) -> Result<FuzzReport, FuzzError> {
    let on_start = &on_start;
    let started = std::time::Instant::now();
    let concurrency = target.capabilities().concurrency.max(1);
    let mut drawer = Drawer::new(options.seed, options.max_horizon, |kubelet| {
        target.runs_kubelet(kubelet)
    });
    let mut groups: Vec<(RuleId, u32, Scenario, CaseResult)> = Vec::new();
    let mut cases_run = 0u32;
    let mut target_errors = 0u32;
    let mut drawn = 0u32;
    let mut draw_error = None;
    let mut running = futures::stream::FuturesUnordered::new();
    let mut pacer = Pacer::new(target.capabilities().launch_spacing);
    loop {
        let stop_drawing = draw_error.is_some()
            || options.cases.is_some_and(|cases| drawn >= cases)
            || options
                .duration
                .is_some_and(|duration| started.elapsed() >= duration)
            || (options.stop_at_first && !groups.is_empty());
        while !stop_drawing && running.len() < concurrency {
            match drawer.next_scenario() {
                Ok((scenario, _)) => {
                    let index = drawn;
                    drawn += 1;
                    let scenario = named(scenario, index as usize);
                    let source = format!("generated #{index} of seed {}", options.seed);
                    let launch_at = pacer.next();
                    running.push(async move {
                        tokio::time::sleep_until(launch_at).await;
                        on_start(&scenario.name);
                        let result = run_case(target, &scenario, &source, true).await;
                        (scenario, result)
                    });
                }
                Err(err) => {
                    draw_error = Some(err);
                    break;
                }
            }
            if options.cases.is_some_and(|cases| drawn >= cases) {
                break;
            }
        }
        let Some((scenario, result)) = running.next().await else {
            break;
        };
        progress(&result);
        cases_run += 1;
        if result.verdict.outcome == Outcome::Error {
            target_errors += 1;
        }
        if let Some(rule) = divergence_rule(&result) {
            match groups.iter_mut().find(|g| g.0 == rule) {
                Some(group) => group.1 += 1,
                None => groups.push((rule, 1, scenario, result)),
            }
        }
    }
    if let (Some(err), 0) = (draw_error, cases_run) {
        return Err(err);
    }
    if options.stop_at_first {
        groups.truncate(1);
    }
    let mut divergences = Vec::new();
    let mut unconfirmed = Vec::new();
    for (rule, scenarios, scenario, result) in groups {
        // A divergence is reported only if it shows again: one that does not was timing
        // noise on a loaded machine, never a verdict on the target.
        if !reproduces(target, &scenario, rule).await {
            unconfirmed.push((rule, scenarios));
            continue;
        }
        let reduced = reduce(target, options, rule, scenario, result).await;
        let saved_to = save_counterexample(&reduced.scenario, &reduced.result, rule, options)?;
        divergences.push(Divergence {
            rule,
            scenarios,
            counterexample: Counterexample {
                saved_to,
                ..reduced
            },
        });
    }
    Ok(FuzzReport {
        cases_run,
        target_errors,
        coverage: drawer.coverage,
        rule_pairs: drawer.pairs.len(),
        divergences,
        unconfirmed,
    })
}

/// How many more runs a failing scenario must fail in, with the same rule, to count.
pub const CONFIRMATIONS: usize = 2;

/// Whether `scenario` violates `rule` again on each of [`CONFIRMATIONS`] more runs.
async fn reproduces(target: &dyn Target, scenario: &Scenario, rule: RuleId) -> bool {
    for _ in 0..CONFIRMATIONS {
        let result = run_case(target, scenario, "confirming", false).await;
        if !shows(&result, rule) {
            return false;
        }
    }
    true
}

/// Whether a case failed with `rule` among its violations.
fn shows(result: &CaseResult, rule: RuleId) -> bool {
    result.verdict.outcome == Outcome::Fail && result.verdict.violated_rules().contains(&rule)
}

/// Greedy structural reduction: each round runs every one-step-simpler candidate the
/// oracle can predict (shortest horizon first, as many at once as the target allows) and
/// keeps the first, in that order, that still violates `rule` (and does again on reruns); it stops when none does
/// (the scenario is 1-minimal for [`reductions`]) or after `max_shrink_steps` rounds.
async fn reduce(
    target: &dyn Target,
    options: &FuzzOptions,
    rule: RuleId,
    scenario: Scenario,
    result: CaseResult,
) -> Counterexample {
    let started = std::time::Instant::now();
    let concurrency = target.capabilities().concurrency.max(1);
    let mut pacer = Pacer::new(target.capabilities().launch_spacing);
    let mut best = (scenario, result);
    let mut steps = 0u32;
    while steps < options.max_shrink_steps {
        let mut candidates: Vec<(SpecDuration, Scenario)> = reductions(&best.0)
            .into_iter()
            .filter_map(|candidate| {
                let horizon = predict(&candidate).ok()?.horizon;
                (horizon <= options.max_horizon).then_some((horizon, candidate))
            })
            .collect();
        candidates.sort_by_key(|(horizon, candidate)| (*horizon, size(candidate)));
        let mut kept = None;
        for chunk in candidates.chunks(concurrency) {
            let launches: Vec<tokio::time::Instant> = chunk.iter().map(|_| pacer.next()).collect();
            let mut results: Vec<(usize, CaseResult)> =
                futures::stream::iter(chunk.iter().zip(launches).enumerate())
                    .map(|(index, ((_, candidate), launch_at))| async move {
                        tokio::time::sleep_until(launch_at).await;
                        (index, run_case(target, candidate, "reducing", true).await)
                    })
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
            results.sort_by_key(|(index, _)| *index);
            for (index, result) in results.into_iter().filter(|(_, r)| shows(r, rule)) {
                if reproduces(target, &chunk[index].1, rule).await {
                    kept = Some((chunk[index].1.clone(), result));
                    break;
                }
            }
            if kept.is_some() {
                break;
            }
        }
        match kept {
            Some(smaller) => {
                best = smaller;
                steps += 1;
            }
            None => break,
        }
    }
    Counterexample {
        scenario: best.0,
        result: best.1,
        saved_to: PathBuf::new(),
        shrink_steps: steps,
        shrink_time: started.elapsed(),
    }
}

fn save_counterexample(
    scenario: &Scenario,
    result: &CaseResult,
    rule: RuleId,
    options: &FuzzOptions,
) -> Result<PathBuf, FuzzError> {
    let mut scenario = scenario.clone();
    scenario.name = format!(
        "fuzz-{:016x}-{}",
        options.seed,
        rule.as_str().replace('.', "-")
    );
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
    // Beside the scenario, the pod as the target ran it, ready for `kubectl apply`.
    if let Some(manifest) = result
        .manifest
        .as_deref()
        .and_then(|m| applicable(m, &scenario.name))
    {
        let pod_path = path.with_extension("pod.yaml");
        std::fs::write(&pod_path, manifest).map_err(|source| FuzzError::Save {
            action: format!("write {}", pod_path.display()),
            source,
        })?;
    }
    Ok(path)
}

/// An applied manifest as a user applies it again: named like the reproducer, without the
/// run's namespace and label.
fn applicable(manifest: &str, name: &str) -> Option<String> {
    let mut pod: k8s_openapi::api::core::v1::Pod = serde_saphyr::from_str(manifest).ok()?;
    pod.metadata.name = Some(name.to_owned());
    pod.metadata.namespace = None;
    if let Some(labels) = pod.metadata.labels.as_mut() {
        labels.remove(crate::targets::kube::namespace::RUN_LABEL);
        labels.remove(crate::targets::podman::RUN_LABEL);
    }
    serde_saphyr::to_string(&pod).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::model::ModelTarget;

    fn options(out: &str, seed: u64) -> FuzzOptions {
        FuzzOptions {
            cases: Some(64),
            duration: None,
            stop_at_first: false,
            seed,
            out_dir: std::env::temp_dir()
                .join(format!("podcheck-fuzz-test-{out}-{}", std::process::id())),
            max_shrink_steps: 64,
            max_horizon: DEFAULT_MAX_HORIZON,
        }
    }

    /// On a target with a planted bug, the bug's divergence is its own group, and its
    /// reproducer is 1-minimal: no single reduction of it still shows the divergence.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_planted_bug_is_its_own_group_with_a_one_minimal_reproducer() {
        let target = ModelTarget::new("no-back-off-doubling", 0).expect("model");
        let options = options("planted", 5);
        let report = fuzz(&target, &options, |_| {}).await.expect("fuzz");
        let group = report
            .divergences
            .iter()
            .find(|d| d.rule == RuleId::RestartBackoffDoubling)
            .expect("the planted divergence is reported");
        assert!(group.scenarios >= 1);
        let minimal = &group.counterexample.scenario;
        assert_eq!(minimal.containers().len(), 1, "{}", minimal.to_yaml());
        let saved = std::fs::read_to_string(&group.counterexample.saved_to).expect("saved");
        assert!(
            Scenario::from_yaml("saved", &saved).is_ok(),
            "a replayable suite file"
        );
        for candidate in reductions(minimal) {
            if predict(&candidate).is_err() {
                continue;
            }
            let result = run_case(&target, &candidate, "check", false).await;
            assert!(
                !result
                    .verdict
                    .violated_rules()
                    .contains(&RuleId::RestartBackoffDoubling),
                "a smaller scenario still diverges:\n{}",
                candidate.to_yaml()
            );
        }
        let _ = std::fs::remove_dir_all(&options.out_dir);
    }

    #[test]
    fn only_scenarios_the_target_can_run_are_drawn() {
        let mut drawer = Drawer::new(7, DEFAULT_MAX_HORIZON, |kubelet: &KubeletParams| {
            *kubelet == KubeletParams::default()
        });
        for _ in 0..64 {
            let (scenario, _) = drawer.next_scenario().expect("draw");
            assert_eq!(scenario.kubelet, KubeletParams::default());
            assert!(predict(&scenario).is_ok_and(|p| p.horizon <= DEFAULT_MAX_HORIZON));
        }
    }

    /// Guided drawing reaches more rules and pairs of rules in the same number of
    /// scenarios than the generator alone, over several seeds.
    #[test]
    fn guided_drawing_reaches_more_rule_combinations() {
        let reach = |guided: bool| {
            (0..4u64)
                .map(|seed| {
                    let drawer = Drawer::new(seed, DEFAULT_MAX_HORIZON, |_: &KubeletParams| true);
                    let mut drawer = if guided { drawer } else { drawer.unguided() };
                    for _ in 0..48 {
                        drawer.next_scenario().expect("draw");
                    }
                    (drawer.coverage.len(), drawer.pairs.len())
                })
                .fold((0, 0), |(r, p), (dr, dp)| (r + dr, p + dp))
        };
        let (guided, plain) = (reach(true), reach(false));
        assert!(
            guided.0 >= plain.0 && guided.1 > plain.1,
            "guided {guided:?} vs generator alone {plain:?} (rules, pairs)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_correct_model_shows_no_divergence() {
        let target = ModelTarget::new("", 0).expect("model");
        let report = fuzz(&target, &options("correct", 5), |_| {})
            .await
            .expect("fuzz");
        assert!(
            report.divergences.is_empty(),
            "{:?}",
            report
                .divergences
                .iter()
                .map(|d| (
                    d.rule,
                    d.counterexample.result.verdict.violations.clone(),
                    d.counterexample.scenario.to_yaml()
                ))
                .collect::<Vec<_>>()
        );
        assert_eq!(report.cases_run, 64);
        // 64 random scenarios reach most of the catalogue; every one reaches pod.accepted.
        assert!(report.coverage.len() * 4 > podcheck_oracle::rules::CATALOGUE.len() * 3);
        assert_eq!(report.coverage.get(&RuleId::PodAccepted), Some(&64));
    }
}
