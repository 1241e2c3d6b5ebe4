//! `podcheck fuzz`: random scenarios on a target, the first divergence shrunk and saved.

use super::args::FuzzArgs;
use super::session::{set_up_target, until_interrupted};
use super::terminal::{out, outln, print_case, FirstError};
use super::{CONFORMANT, INTERRUPTED, NONCONFORMANT, USAGE_OR_TARGET_ERROR};
use podcheck::errors::describe;
use podcheck::fuzz::FuzzOptions;
use podcheck_oracle::Outcome;
use podcheck_reports::describe_violations;

pub async fn fuzz(args: FuzzArgs) -> anyhow::Result<u8> {
    let cases = args.cases;
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
        "podcheck fuzz: {cases} random scenarios on target {}, seed {seed}",
        target.name()
    )?;
    outln!(
        "reproduce with: podcheck fuzz --target {} --cases {cases} --seed {seed}",
        args.target.spec("local")
    )?;
    let options = FuzzOptions {
        cases,
        seed,
        out_dir: args.out,
        max_shrink_steps: 64,
        max_horizon: args.max_horizon,
    };
    let mut done = 0u32;
    let mut stdout_error = FirstError::default();
    let fuzzing = podcheck::fuzz::fuzz(target.as_ref(), &options, |result| {
        done += 1;
        if result.verdict.outcome != Outcome::Pass {
            stdout_error.keep(print_case(result));
        } else if done % 10 == 0 {
            stdout_error.keep(outln!("      ... {done}/{cases} conform so far"));
        }
    });
    let Some(report) = until_interrupted(target.as_ref(), fuzzing).await else {
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
    match report.counterexample {
        None => {
            outln!(
                "{} scenarios conform ({} target errors)",
                report.cases_run,
                report.target_errors
            )?;
            Ok(if report.target_errors > 0 {
                USAGE_OR_TARGET_ERROR
            } else {
                CONFORMANT
            })
        }
        Some(found) => {
            outln!(
                "divergence found among {} scenarios; minimal scenario after {} shrinking steps:",
                report.cases_run,
                found.shrink_steps
            )?;
            outln!("{}", found.scenario.to_yaml())?;
            out!("{}", describe_violations(&found.result.verdict))?;
            outln!(
                "saved to {}; replay with: podcheck run {} --target {}",
                found.saved_to.display(),
                found.saved_to.display(),
                args.target.spec("local")
            )?;
            Ok(NONCONFORMANT)
        }
    }
}
