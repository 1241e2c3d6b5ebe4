//! `podcheck certify`: every applicable suite case on a cluster, and one bundle that a
//! cluster's owner can hand over: what ran, what it showed, what was assumed.

use super::args::CertifyArgs;
use super::run::{exit_code, load, report_files, run_and_print};
use super::session::set_up_target;
use super::terminal::outln;
use super::{INTERRUPTED, USAGE_OR_TARGET_ERROR};
use anyhow::Context;
use podcheck::runner::RunOptions;
use podcheck_oracle::rules;
use podcheck_reports::RunReport;
use std::path::Path;

pub async fn certify(args: CertifyArgs) -> anyhow::Result<u8> {
    let Some(cases) = load(&args.paths) else {
        return Ok(USAGE_OR_TARGET_ERROR);
    };
    let started = jiff::Timestamp::now();
    let target = match set_up_target(&args.target, "kube", args.seed).await {
        Ok(target) => target,
        Err(code) => return Ok(code),
    };
    let environment = target.environment();
    let options = RunOptions {
        keep_traces: true,
        max_horizon: args.max_horizon,
        to_horizon: false,
    };
    let Some(mut report) = run_and_print(target.as_ref(), &cases, &options).await? else {
        return Ok(INTERRUPTED);
    };
    report.settings.seed = Some(args.seed);
    report.settings.run_options = args.target.reproduce_options("kube", args.seed, false);
    let about = serde_json::json!({
        "podcheckVersion": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().collect::<Vec<_>>(),
        "started": started.to_string(),
        "finished": jiff::Timestamp::now().to_string(),
        "seed": args.seed,
        "maxHorizon": args.max_horizon.map(|h| h.to_string()),
        "suites": args.paths,
        "environment": environment,
    });
    write_bundle(&args.output, &report, &about)?;
    outln!("certification bundle: {}", args.output.display())?;
    Ok(exit_code(&report))
}

/// Every file of the bundle, under one directory named after the bundle.
pub fn bundle_files(
    report: &RunReport,
    about: &serde_json::Value,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files: Vec<(String, Vec<u8>)> = report_files(report)?
        .into_iter()
        .map(|(name, text)| (name.to_owned(), text.into_bytes()))
        .collect();
    files.push((
        "environment.json".to_owned(),
        serde_json::to_vec_pretty(about)?,
    ));
    let catalogue: Vec<serde_json::Value> = rules::CATALOGUE
        .iter()
        .map(|rule| {
            serde_json::json!({
                "id": rule.id.as_str(),
                "statement": rule.statement,
                "sources": rule.sources,
            })
        })
        .collect();
    files.push((
        "rules.json".to_owned(),
        serde_json::to_vec_pretty(&catalogue)?,
    ));
    for case in &report.cases {
        if let Some(manifest) = &case.manifest {
            files.push((
                format!("manifests/{}.yaml", case.verdict.scenario),
                manifest.clone().into_bytes(),
            ));
        }
    }
    let totals = report.totals();
    let readme = format!(
        "podcheck {version} certification of target {target}\n\n\
         {passed} passed, {failed} failed, {errors} errors, {skipped} not applicable or skipped, \
         of {total} cases, in {secs:.0}s.\n\n\
         report.html      the report; open it in a browser\n\
         results.json     every verdict, with the trace of each failing case\n\
         junit.xml        the verdicts for CI systems\n\
         manifests/       every pod manifest applied, by case\n\
         environment.json the target: API server and kubelet versions, node configuration \
         and where it came from, agent image, podcheck version and command line\n\
         rules.json       the rules checked, with their sources\n",
        version = env!("CARGO_PKG_VERSION"),
        target = report.target,
        passed = totals.passed,
        failed = totals.failed,
        errors = totals.errors,
        skipped = totals.skipped,
        total = report.cases.len(),
        secs = report.wall_ms as f64 / 1000.0,
    );
    files.push(("README.txt".to_owned(), readme.into_bytes()));
    Ok(files)
}

/// Writes the bundle next to its final path and renames it, so an interrupted write leaves
/// no truncated bundle.
pub fn write_bundle(
    output: &Path,
    report: &RunReport,
    about: &serde_json::Value,
) -> anyhow::Result<()> {
    let root = output
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".tar.gz").trim_end_matches(".tgz"))
        .filter(|n| !n.is_empty())
        .unwrap_or("podcheck-certification")
        .to_owned();
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    let partial = output.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("failed to create {}", partial.display()))?;
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::default(),
    ));
    let mtime = jiff::Timestamp::now().as_second().max(0) as u64;
    for (name, bytes) in bundle_files(report, about)? {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        archive
            .append_data(&mut header, format!("{root}/{name}"), bytes.as_slice())
            .with_context(|| format!("failed to add {name} to {}", partial.display()))?;
    }
    archive
        .into_inner()
        .and_then(|gz| gz.finish())
        .with_context(|| format!("failed to write {}", partial.display()))?;
    std::fs::rename(&partial, output)
        .with_context(|| format!("failed to write {}", output.display()))?;
    Ok(())
}
