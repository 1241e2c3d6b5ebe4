//! `podcheck fuzz`: random scenarios on a target; every distinct divergence reduced to a
//! minimal scenario, saved, and listed in a final table.

use super::args::FuzzArgs;
use super::progress::Progress;
use super::session::{set_up_target, until_interrupted};
use super::terminal::{out, outln, print_case, FirstError};
use super::{CONFORMANT, INTERRUPTED, NONCONFORMANT, USAGE_OR_TARGET_ERROR};
use podcheck::errors::describe;
use podcheck::fuzz::FuzzOptions;
use podcheck_oracle::Outcome;
use podcheck_reports::describe_violations;

/// How many scenarios a run without --cases or --duration draws.
const DEFAULT_CASES: u32 = 32;

pub async fn fuzz(args: FuzzArgs) -> anyhow::Result<u8> {
    let cases = match (args.cases, args.duration) {
        (None, None) => Some(DEFAULT_CASES),
        (cases, _) => cases,
    };
    let budget = match (cases, args.duration) {
        (Some(cases), Some(duration)) => format!("up to {cases} random scenarios for {duration}"),
        (Some(cases), None) => format!("{cases} random scenarios"),
        (None, Some(duration)) => format!("random scenarios for {duration}"),
        (None, None) => String::new(),
    };
    let limits: String = [
        cases.map(|c| format!(" --cases {c}")),
        args.duration.map(|d| format!(" --duration {d}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let target = match set_up_target(&args.target, "local", seed).await {
        Ok(target) => target,
        Err(code) => return Ok(code),
    };
    outln!(
        "podcheck fuzz: {budget} on target {}, seed {seed}",
        target.name()
    )?;
    outln!(
        "reproduce with: podcheck fuzz --target {}{limits} --seed {seed}",
        args.target.spec("local")
    )?;
    let options = FuzzOptions {
        cases,
        duration: args
            .duration
            .map(|d| std::time::Duration::from_millis(d.as_millis())),
        stop_at_first: args.stop_at_first,
        seed,
        out_dir: args.out,
        max_shrink_steps: 64,
        max_horizon: args.max_horizon,
    };
    let mut done = 0u32;
    let mut stdout_error = FirstError::default();
    // The bar counts the drawn scenarios (not the reductions after) against --cases, or
    // spins under --duration.
    let progress = Progress::new(options.cases.map(u64::from));
    let on_start = |name: &str| progress.started(name);
    let fuzzing = podcheck::fuzz::fuzz_reporting(target.as_ref(), &options, on_start, |result| {
        done += 1;
        let failed = result.verdict.outcome != Outcome::Pass;
        stdout_error.keep(progress.finished(&result.verdict.scenario, || {
            if failed {
                print_case(result)
            } else {
                Ok(())
            }
        }));
        if !failed && !progress.drawn() && done % 10 == 0 {
            stdout_error.keep(match options.cases {
                Some(cases) => outln!("      ... {done}/{cases} run so far"),
                None => outln!("      ... {done} run so far"),
            });
        }
    });
    let finished = until_interrupted(target.as_ref(), fuzzing).await;
    progress.finish();
    let Some(report) = finished else {
        return Ok(INTERRUPTED);
    };
    let _ = target.cleanup().await;
    stdout_error.into_result()?;
    let report = match report {
        Ok(r) => r,
        Err(err) => {
            eprintln!("error: {}", describe(&err));
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    let never: Vec<&str> = podcheck_oracle::rules::CATALOGUE
        .iter()
        .filter(|rule| !report.coverage.contains_key(&rule.id))
        .map(|rule| rule.id.as_str())
        .collect();
    outln!(
        "rules exercised: {} of {} ({} pairs of rules together){}",
        report.coverage.len(),
        podcheck_oracle::rules::CATALOGUE.len(),
        report.rule_pairs,
        if never.is_empty() {
            String::new()
        } else {
            format!("; never: {}", never.join(", "))
        }
    )?;
    for (rule, scenarios) in &report.unconfirmed {
        outln!(
            "not reproduced: {rule} ({scenarios} scenario(s)) failed once but not on {} reruns; timing noise, not counted",
            podcheck::fuzz::CONFIRMATIONS
        )?;
    }
    if report.divergences.is_empty() {
        outln!(
            "{} scenarios conform ({} target errors)",
            report.cases_run,
            report.target_errors
        )?;
        return Ok(if report.target_errors > 0 {
            USAGE_OR_TARGET_ERROR
        } else {
            CONFORMANT
        });
    }
    let spec = args.target.spec("local");
    for divergence in &report.divergences {
        let found = &divergence.counterexample;
        outln!()?;
        outln!(
            "{}: {} scenario(s); reduced in {} steps, {:.1}s, to:",
            divergence.rule,
            divergence.scenarios,
            found.shrink_steps,
            found.shrink_time.as_secs_f64()
        )?;
        outln!("{}", found.scenario.to_yaml())?;
        out!("{}", describe_violations(&found.result.verdict))?;
    }
    outln!()?;
    outln!(
        "{} distinct divergence(s) among {} scenarios ({} target errors):",
        report.divergences.len(),
        report.cases_run,
        report.target_errors
    )?;
    outln!(
        "  {:<42} {:>9}  reproducer / replay",
        "rule violated first",
        "scenarios"
    )?;
    for divergence in &report.divergences {
        let file = divergence.counterexample.saved_to.display();
        outln!(
            "  {:<42} {:>9}  {file}",
            divergence.rule.as_str(),
            divergence.scenarios
        )?;
        outln!(
            "  {:<42} {:>9}  podcheck run {file} --target {spec}",
            "",
            ""
        )?;
    }
    Ok(NONCONFORMANT)
}
