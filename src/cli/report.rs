//! `podcheck report`: one page from several runs' results.json, side by side.

use super::args::ReportArgs;
use super::terminal::outln;
use super::{CONFORMANT, USAGE_OR_TARGET_ERROR};
use anyhow::Context;
use podcheck_reports::{compare_html, RunReport};
use std::error::Error as _;
use std::path::Path;

pub fn report(args: &ReportArgs) -> anyhow::Result<u8> {
    let mut runs = Vec::new();
    for path in &args.results {
        match read_results(path) {
            Ok(run) => runs.push((path.display().to_string(), run)),
            Err(why) => {
                eprintln!("error: {why}");
                return Ok(USAGE_OR_TARGET_ERROR);
            }
        }
    }
    let html = compare_html(&runs);
    std::fs::write(&args.output, html)
        .with_context(|| format!("failed to write {}", args.output.display()))?;
    outln!("report of {} run(s): {}", runs.len(), args.output.display())?;
    Ok(CONFORMANT)
}

/// A results.json, or what is wrong with it, naming the file.
fn read_results(path: &Path) -> Result<RunReport, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("failed to read {}: {err}", path.display()))?;
    RunReport::from_json(&text).map_err(|err| {
        let detail = err.source().map(ToString::to_string).unwrap_or_default();
        format!(
            "{} is not a podcheck results.json (written by `podcheck run`): {detail}",
            path.display()
        )
    })
}
