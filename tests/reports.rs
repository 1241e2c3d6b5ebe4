//! The reports as their readers get them: report.html opened in a real browser (headless
//! Chromium) and junit.xml checked against the schema CI systems read.
//!
//! - `browser/hostile-content-runs-no-script`: a report whose case name, description,
//!   violation text and workload log hold `</script>`, quotes, `<img onerror>` and control
//!   characters runs no script of theirs; the page's own filter script runs (allowed by its
//!   hash), and the DOM holds one timeline per case that ran.
//! - `browser/a-1000-case-report-stays-small`: its size and how long Chromium takes to load
//!   it, printed; both within bounds.
//! - `junit/valid-against-the-ci-schema`: `xmllint --schema tests/fixtures/junit.xsd`.
//!
//! Without `chromium` or `xmllint` these are skipped with the reason, except under
//! `CI=true`, where they must run.

mod common;

use common::{note_skipped, skip_reason};
use libtest_mimic::{Arguments, Failed, Trial};
use podcheck::runner::{load_cases, run_cases, RunOptions};
use podcheck::targets::model::ModelTarget;
use podcheck_oracle::Outcome;
use podcheck_reports::RunReport;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs a script when it loads: the title changes, which the DOM then shows.
const INJECTED: &str = "</script><script>document.title='PWNED-SCRIPT'</script>\"' \
    <img src=x onerror=\"document.title='PWNED-IMG'\">\u{1}\u{7}\u{1b}[31m";

/// Upper bounds for a report of 1,000 cases: what a person can still mail and open.
const MAX_REPORT_BYTES: usize = 25 * 1024 * 1024;
const MAX_LOAD_TIME: Duration = Duration::from_secs(30);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "podcheck-reports-test-{}-{name}",
        std::process::id()
    ))
}

fn command_exists(program: &str, version_arg: &str) -> Result<(), String> {
    Command::new(program)
        .arg(version_arg)
        .output()
        .map_err(|e| format!("`{program}` is not installed ({e}); apt-get install it"))
        .map(|_| ())
}

fn chromium() -> Result<(), String> {
    command_exists("chromium", "--version")
}

fn xmllint() -> Result<(), String> {
    command_exists("xmllint", "--version")
}

/// The restart suite on the model with a planted bug: real timelines, passing and failing.
fn restart_report() -> Result<RunReport, Failed> {
    let cases = load_cases(&[manifest_dir().join("suites/restart")])
        .map_err(|errors| format!("suites load: {errors:?}"))?;
    let target = ModelTarget::new("no-back-off-doubling", 0).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let options = RunOptions {
        keep_traces: true,
        ..RunOptions::default()
    };
    Ok(runtime.block_on(run_cases(&target, &cases, &options, |_| {})))
}

/// Headless Chromium's DOM of a page after it loaded, and how long that took.
fn dump_dom(page: &Path) -> Result<(String, Duration), Failed> {
    // One profile per page: tests run at once, and Chromium locks its profile.
    let stem = page.file_stem().and_then(|s| s.to_str()).unwrap_or("page");
    let profile = scratch(&format!("chromium-profile-{stem}"));
    let started = Instant::now();
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .map_err(|e| format!("chromium: {e}"))?;
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&profile);
    if !output.status.success() {
        return Err(format!(
            "chromium failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok((String::from_utf8_lossy(&output.stdout).into_owned(), took))
}

fn hostile_content_runs_no_script() -> Result<(), Failed> {
    let mut report = restart_report()?;
    report.target = format!("model {INJECTED}");
    for case in &mut report.cases {
        case.verdict.scenario = format!("{}{INJECTED}", case.verdict.scenario);
        case.description = Some(format!("description {INJECTED}"));
        for violation in &mut case.verdict.violations {
            violation.observed = format!("{}{INJECTED}", violation.observed);
        }
        if let Some(timeline) = case.timeline.as_mut() {
            for lane in &mut timeline.lanes {
                for tick in &mut lane.ticks {
                    tick.label = format!("log {INJECTED}");
                }
            }
        }
    }
    let with_timeline = report.cases.iter().filter(|c| c.timeline.is_some()).count();
    let failing = report.totals().failed;
    if failing == 0 || with_timeline != report.cases.len() {
        return Err(format!("expected failing cases, each with a timeline: {failing} failing, {with_timeline} timelines of {}", report.cases.len()).into());
    }
    let page = scratch("hostile.html");
    std::fs::write(&page, report.to_html()).map_err(|e| e.to_string())?;
    let (dom, _) = dump_dom(&page)?;
    let _ = std::fs::remove_file(&page);
    if dom.contains("PWNED-SCRIPT</title>") || dom.contains("PWNED-IMG</title>") {
        return Err("a script from the report's content ran".into());
    }
    if dom.contains("<img") {
        return Err("the content made an <img> element".into());
    }
    // The page's own script ran: it shows the filters.
    if !dom.contains("<form id=\"filters\">") {
        return Err("the page's filter script did not run (its hash must be allowed)".into());
    }
    let timelines = dom.matches("<svg class=\"timeline\"").count();
    let cases = dom.matches("<section class=\"case\"").count();
    let fail_badges = dom.matches("<span class=\"badge fail\">").count();
    if (timelines, cases, fail_badges) != (with_timeline, report.cases.len(), failing) {
        return Err(format!(
            "the DOM holds {timelines} timelines, {cases} cases, {fail_badges} failing; expected {with_timeline}, {}, {failing}",
            report.cases.len()
        )
        .into());
    }
    Ok(())
}

fn thousand_case_report_stays_small() -> Result<(), Failed> {
    let base = restart_report()?;
    let mut report = base.clone();
    report.cases = (0..1000)
        .map(|index| {
            let mut case = base.cases[index % base.cases.len()].clone();
            case.verdict.scenario = format!("{}-{index}", case.verdict.scenario);
            case.trace = None;
            case
        })
        .collect();
    let html = report.to_html();
    let page = scratch("thousand.html");
    std::fs::write(&page, &html).map_err(|e| e.to_string())?;
    let empty = scratch("empty.html");
    std::fs::write(&empty, "<!DOCTYPE html><title>empty</title>").map_err(|e| e.to_string())?;
    let (_, baseline) = dump_dom(&empty)?;
    let (dom, took) = dump_dom(&page)?;
    let _ = std::fs::remove_file(&page);
    let _ = std::fs::remove_file(&empty);
    let failing = report
        .cases
        .iter()
        .filter(|c| c.verdict.outcome == Outcome::Fail)
        .count();
    eprintln!(
        "1,000-case report ({failing} failing): {:.1} MiB; Chromium loads it in {:.2}s ({:.2}s for an empty page)",
        html.len() as f64 / 1024.0 / 1024.0,
        took.as_secs_f64(),
        baseline.as_secs_f64()
    );
    if dom.matches("<svg class=\"timeline\"").count() != 1000 {
        return Err("not every case has its timeline in the DOM".into());
    }
    if html.len() > MAX_REPORT_BYTES || took > MAX_LOAD_TIME {
        return Err(format!(
            "{} bytes, {took:?} to load: over {MAX_REPORT_BYTES} bytes or {MAX_LOAD_TIME:?}",
            html.len()
        )
        .into());
    }
    Ok(())
}

fn junit_valid_against_the_ci_schema() -> Result<(), Failed> {
    let mut report = restart_report()?;
    report.settings.seed = Some(0);
    // Text a case may carry: markup, quotes, control characters.
    report.cases[0].verdict.scenario = format!("case {INJECTED}");
    let xml = report.to_junit().map_err(|e| e.to_string())?;
    let file = scratch("junit.xml");
    std::fs::write(&file, &xml).map_err(|e| e.to_string())?;
    let output = Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(manifest_dir().join("tests/fixtures/junit.xsd"))
        .arg(&file)
        .output()
        .map_err(|e| format!("xmllint: {e}"))?;
    let _ = std::fs::remove_file(&file);
    if !output.status.success() {
        return Err(format!(
            "junit.xml is not valid: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let no_chromium = skip_reason(chromium);
    let no_xmllint = skip_reason(xmllint);
    note_skipped(&args, "the browser tests", no_chromium.as_ref());
    note_skipped(&args, "the JUnit schema test", no_xmllint.as_ref());
    let trials = vec![
        Trial::test("browser/hostile-content-runs-no-script", || {
            chromium()?;
            hostile_content_runs_no_script()
        })
        .with_ignored_flag(no_chromium.is_some()),
        Trial::test("browser/a-1000-case-report-stays-small", || {
            chromium()?;
            thousand_case_report_stays_small()
        })
        .with_ignored_flag(no_chromium.is_some()),
        Trial::test("junit/valid-against-the-ci-schema", || {
            xmllint()?;
            junit_valid_against_the_ci_schema()
        })
        .with_ignored_flag(no_xmllint.is_some()),
    ];
    libtest_mimic::run(&args, trials).exit();
}
