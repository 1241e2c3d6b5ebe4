//! Every suite case on every target as its own test: `model/<area>/<case>` and
//! `local/<area>/<case>`. Listing reads the suite files only; no target starts.
//!
//! Local cases need root. Without it they are ignored (skipped) with the reason printed,
//! except under `CI=true`, where they run and fail loudly: CI must exercise them.

mod common;

use libtest_mimic::{Arguments, Failed, Trial};
use podcheck::fuzz::{fuzz, FuzzOptions};
use podcheck::harness::run_case;
use podcheck::runner::{load_cases, SuiteCase};
use podcheck::targets::{self, TargetOptions};
use podcheck_oracle::Outcome;
use podcheck_reports::describe_violations;
use std::path::{Path, PathBuf};

const TARGETS: &[&str] = &["model", "local"];

fn suites_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("suites")
}

fn run(target_spec: &str, case: &SuiteCase) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start tokio: {e}"))?;
    runtime.block_on(async {
        let target = targets::from_spec(target_spec, &TargetOptions::default())
            .await
            .map_err(|e| format!("failed to set up target {target_spec}: {e}"))?;
        let source = case.path.display().to_string();
        let result = run_case(target.as_ref(), &case.scenario, &source, true).await;
        let _ = target.cleanup().await;
        let verdict = &result.verdict;
        match verdict.outcome {
            Outcome::Pass => Ok(()),
            Outcome::Fail => Err(format!(
                "{} on {}:\n{}\nreplay: podcheck run {} --target {}",
                verdict.scenario,
                verdict.target,
                describe_violations(verdict),
                source,
                target_spec
            )
            .into()),
            Outcome::Error | Outcome::Skipped => Err(format!(
                "{} on {}: target error: {}",
                verdict.scenario,
                verdict.target,
                verdict.error.as_deref().unwrap_or("unknown")
            )
            .into()),
        }
    })
}

/// How many random scenarios each run checks on `local` against the model.
const RANDOM_CASES: u32 = 24;

/// `local` agrees with the model on random scenarios. The seed changes every run (set
/// PODCHECK_SEED to replay one); a divergence is shrunk and saved.
fn random_agreement() -> Result<(), Failed> {
    let seed = std::env::var("PODCHECK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
    eprintln!("random scenarios from seed {seed} (replay: PODCHECK_SEED={seed})");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start tokio: {e}"))?;
    runtime.block_on(async {
        let target = targets::from_spec("local", &TargetOptions::default())
            .await
            .map_err(|e| format!("failed to set up target local: {e}"))?;
        let options = FuzzOptions {
            cases: Some(RANDOM_CASES),
            // Long horizons make some draws slow: stop drawing in time to finish (and
            // shrink a divergence) within the test's timeout (.config/nextest.toml).
            duration: Some(std::time::Duration::from_secs(90)),
            stop_at_first: true,
            seed,
            out_dir: std::env::temp_dir().join("podcheck-counterexamples"),
            max_shrink_steps: 32,
            max_horizon: podcheck::fuzz::DEFAULT_MAX_HORIZON,
        };
        let report = fuzz(target.as_ref(), &options, |_| {}).await;
        let _ = target.cleanup().await;
        let report = report.map_err(|e| format!("seed {seed}: {e}"))?;
        if report.target_errors > 0 {
            return Err(format!("seed {seed}: {} target errors", report.target_errors).into());
        }
        match report.first() {
            None => Ok(()),
            Some(found) => Err(format!(
                "seed {seed}: local diverges from the model; minimal scenario (saved to {}):\n{}\n{}",
                found.saved_to.display(),
                found.scenario.to_yaml(),
                describe_violations(&found.result.verdict)
            )
            .into()),
        }
    })
}

fn main() {
    let args = Arguments::from_args();
    let cases = match load_cases(&[suites_dir()]) {
        Ok(cases) => cases,
        Err(errors) => {
            for error in errors {
                eprintln!("error: failed to load a scenario: {error}");
            }
            std::process::exit(2);
        }
    };
    let unavailable = common::no_root();
    common::note_skipped(&args, "local cases", unavailable.as_ref());
    let mut trials = Vec::new();
    for &target in TARGETS {
        for case in &cases {
            let area = case
                .path
                .parent()
                .and_then(|p| p.strip_prefix(suites_dir()).ok())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let name = format!("{target}/{area}/{}", case.scenario.name);
            let case = case.clone();
            let trial = Trial::test(name, move || run(target, &case));
            let ignored = target == "local" && unavailable.is_some();
            trials.push(trial.with_ignored_flag(ignored));
        }
    }
    trials.push(
        Trial::test("local/random/agrees-with-model", random_agreement)
            .with_ignored_flag(unavailable.is_some()),
    );
    libtest_mimic::run(&args, trials).exit();
}
