//! `podcheck run`: suite cases on a target, verdicts on the terminal, reports on disk.

use super::args::RunArgs;
use super::progress::Progress;
use super::session::{set_up_target, until_interrupted};
use super::terminal::{outln, print_case, FirstError};
use super::{CONFORMANT, INTERRUPTED, NONCONFORMANT, USAGE_OR_TARGET_ERROR};
use anyhow::Context;
use podcheck::runner::{load_cases, run_cases_reporting, RunOptions, SuiteCase};
use podcheck::targets::Target;
use podcheck_oracle::Outcome;
use podcheck_reports::RunReport;
use std::path::{Path, PathBuf};

pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let Some(cases) = load(&args.paths) else {
        return Ok(USAGE_OR_TARGET_ERROR);
    };
    let target = match set_up_target(&args.target, "local", args.seed).await {
        Ok(target) => target,
        Err(code) => return Ok(code),
    };
    let options = RunOptions {
        keep_traces: true,
        max_horizon: args.max_horizon,
        to_horizon: args.to_horizon,
    };
    let Some(mut report) = run_and_print(target.as_ref(), &cases, &options).await? else {
        return Ok(INTERRUPTED);
    };
    report.settings.seed = Some(args.seed);
    report.settings.run_options =
        args.target
            .reproduce_options("local", args.seed, args.to_horizon);
    write_reports(&mut report, &args.output, args.traces)?;
    let output = args.output.display();
    outln!("results: {output}/results.json, {output}/junit.xml, {output}/report.html")?;
    Ok(exit_code(&report))
}

/// The suite cases under `paths`, or None after saying on stderr what is wrong with them.
pub fn load(paths: &[PathBuf]) -> Option<Vec<SuiteCase>> {
    match load_cases(paths) {
        Ok(cases) if cases.is_empty() => {
            eprintln!("error: no scenarios found under {paths:?}");
            None
        }
        Ok(cases) => Some(cases),
        Err(errors) => {
            for error in errors {
                eprintln!("error: failed to load a scenario: {error}");
            }
            None
        }
    }
}

/// Runs the cases with verdicts printed as they come and a summary at the end; cleans the
/// target up. None if interrupted (the target is cleaned up then too).
pub async fn run_and_print(
    target: &dyn Target,
    cases: &[SuiteCase],
    options: &RunOptions,
) -> anyhow::Result<Option<RunReport>> {
    outln!(
        "podcheck {}: {} cases on target {}",
        env!("CARGO_PKG_VERSION"),
        cases.len(),
        target.name()
    )?;
    let total = cases.len();
    let mut done = 0usize;
    let mut stdout_error = FirstError::default();
    let progress = Progress::new(Some(total as u64));
    let run = run_cases_reporting(
        target,
        cases,
        options,
        |case| progress.started(&case.scenario.name),
        |result| {
            done += 1;
            stdout_error.keep(progress.finished(&result.verdict.scenario, || print_case(result)));
            // Off a terminal, a line now and then says how far the run is.
            if !progress.drawn() && done % 10 == 0 && done < total {
                stdout_error.keep(outln!("      ... {done}/{total} done"));
            }
        },
    );
    let finished = until_interrupted(target, run).await;
    progress.finish();
    let Some(report) = finished else {
        return Ok(None);
    };
    if let Err(err) = target.cleanup().await {
        eprintln!(
            "warning: failed to clean up target {}: {}",
            target.name(),
            podcheck::errors::describe(&err)
        );
    }
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
    Ok(Some(report))
}

/// 1 if a case failed, 2 if one could not be judged or none ran, else 0.
pub fn exit_code(report: &RunReport) -> u8 {
    let totals = report.totals();
    if totals.failed > 0 {
        NONCONFORMANT
    } else if totals.errors > 0 {
        USAGE_OR_TARGET_ERROR
    } else if totals.skipped == report.cases.len() {
        // Nothing ran: claiming conformance would be a lie.
        eprintln!("error: every case was skipped on target {}", report.target);
        USAGE_OR_TARGET_ERROR
    } else {
        CONFORMANT
    }
}

/// Passing cases lose their traces unless `keep_traces`.
pub fn drop_passing_traces(report: &mut RunReport, keep_traces: bool) {
    if !keep_traces {
        for case in &mut report.cases {
            if case.verdict.outcome == Outcome::Pass {
                case.trace = None;
            }
        }
    }
}

/// results.json, junit.xml and report.html under `output`; passing cases lose their
/// traces unless `keep_traces`.
fn write_reports(report: &mut RunReport, output: &Path, keep_traces: bool) -> anyhow::Result<()> {
    drop_passing_traces(report, keep_traces);
    std::fs::create_dir_all(output)
        .with_context(|| format!("failed to create {}", output.display()))?;
    for (file, text) in report_files(report)? {
        let path = output.join(file);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

/// The report files of a run, by file name.
pub fn report_files(report: &RunReport) -> anyhow::Result<Vec<(&'static str, String)>> {
    Ok(vec![
        ("results.json", report.to_json()?),
        ("junit.xml", report.to_junit()?),
        ("report.html", report.to_html()),
    ])
}
