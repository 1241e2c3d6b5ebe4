//! `podcheck run`: suite cases on a target, verdicts on the terminal, reports on disk.

use super::args::RunArgs;
use super::session::{set_up_target, until_interrupted};
use super::terminal::{outln, print_case, FirstError};
use super::{CONFORMANT, INTERRUPTED, NONCONFORMANT, USAGE_OR_TARGET_ERROR};
use anyhow::Context;
use podcheck::runner::{load_cases, run_cases, RunOptions};
use podcheck_oracle::Outcome;
use podcheck_reports::RunReport;
use std::path::Path;

pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let cases = match load_cases(&args.paths) {
        Ok(cases) => cases,
        Err(errors) => {
            for error in errors {
                eprintln!("error: failed to load a scenario: {error}");
            }
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    if cases.is_empty() {
        eprintln!("error: no scenarios found under {:?}", args.paths);
        return Ok(USAGE_OR_TARGET_ERROR);
    }
    let Some(target) = set_up_target(&args.target, args.seed).await else {
        return Ok(USAGE_OR_TARGET_ERROR);
    };
    outln!(
        "podcheck {}: {} cases on target {}",
        env!("CARGO_PKG_VERSION"),
        cases.len(),
        target.name()
    )?;
    let total = cases.len();
    let mut done = 0usize;
    let mut stdout_error = FirstError::default();
    let options = RunOptions {
        keep_traces: true,
        max_horizon: args.max_horizon,
    };
    let run = run_cases(target.as_ref(), &cases, &options, |result| {
        done += 1;
        stdout_error.keep(print_case(result));
        if done % 10 == 0 && done < total {
            stdout_error.keep(outln!("      ... {done}/{total} done"));
        }
    });
    let Some(mut report) = until_interrupted(target.as_ref(), run).await else {
        return Ok(INTERRUPTED);
    };
    let _ = target.cleanup().await;
    stdout_error.into_result()?;
    let totals = report.totals();
    if totals.failed > 0 {
        outln!("violated rules (cases):")?;
        for (rule, cases) in report.violated_rules() {
            outln!("  {rule:<42} {cases}")?;
        }
    }
    outln!(
        "{} passed, {} failed, {} errors, {} skipped in {:.1}s (target {})",
        totals.passed,
        totals.failed,
        totals.errors,
        totals.skipped,
        report.wall_ms as f64 / 1000.0,
        report.target
    )?;
    write_reports(&mut report, &args.output, args.traces)?;
    let output = args.output.display();
    outln!("results: {output}/results.json, {output}/junit.xml, {output}/report.html")?;
    Ok(if totals.failed > 0 {
        NONCONFORMANT
    } else if totals.errors > 0 {
        USAGE_OR_TARGET_ERROR
    } else if totals.skipped == report.cases.len() {
        // Nothing ran: claiming conformance would be a lie.
        eprintln!("error: every case was skipped on target {}", report.target);
        USAGE_OR_TARGET_ERROR
    } else {
        CONFORMANT
    })
}

/// results.json, junit.xml and report.html under `output`; passing cases lose their
/// traces unless `keep_traces`.
fn write_reports(report: &mut RunReport, output: &Path, keep_traces: bool) -> anyhow::Result<()> {
    if !keep_traces {
        for case in &mut report.cases {
            if case.verdict.outcome == Outcome::Pass {
                case.trace = None;
            }
        }
    }
    std::fs::create_dir_all(output)
        .with_context(|| format!("failed to create {}", output.display()))?;
    for (file, text) in [
        ("results.json", report.to_json()?),
        ("junit.xml", report.to_junit()?),
        ("report.html", report.to_html()),
    ] {
        let path = output.join(file);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}
