//! Loads suites and runs their cases on a target, concurrently, emitting results as they
//! finish. Reporters consume the events; the runner never prints.

use crate::harness::{run_case_observing, Ending};
use crate::targets::Target;
use futures::StreamExt;
use podcheck_oracle::scenario::FieldLocations;
use podcheck_oracle::{predict, Scenario, ScenarioError, SpecDuration, Verdict};
use podcheck_reports::{CaseResult, RunReport, RunSettings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct SuiteCase {
    pub scenario: Scenario,
    pub path: PathBuf,
}

/// Every `*.yaml` scenario under the given files and directories, sorted by path. All
/// malformed files are reported at once, each with its file, line and field.
pub fn load_cases(paths: &[PathBuf]) -> Result<Vec<SuiteCase>, Vec<ScenarioError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        collect_yaml(path, &mut files, &mut errors);
    }
    files.sort();
    files.dedup();
    let mut cases = Vec::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        match Scenario::from_file(&file) {
            Ok(scenario) => {
                if let Some(first) = names.insert(scenario.name.clone(), file.clone()) {
                    errors.push(ScenarioError::Invalid {
                        source_name: file.display().to_string(),
                        line: std::fs::read_to_string(&file)
                            .ok()
                            .and_then(|text| FieldLocations::of(&text).line_of("name")),
                        field: "name".to_owned(),
                        reason: format!(
                            "{:?} is already the name of {}",
                            scenario.name,
                            first.display()
                        ),
                    });
                    continue;
                }
                cases.push(SuiteCase {
                    scenario,
                    path: file,
                });
            }
            Err(err) => errors.push(err),
        }
    }
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(errors)
    }
}

fn collect_yaml(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<ScenarioError>) {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => match std::fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries.filter_map(|e| e.ok()) {
                    let child = entry.path();
                    // `NAME.pod.yaml` beside a reproducer is its plain pod manifest.
                    let manifest = child
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(".pod.yaml"));
                    if child.is_dir()
                        || (!manifest
                            && child.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                    {
                        collect_yaml(&child, files, errors);
                    }
                }
            }
            Err(e) => errors.push(ScenarioError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        },
        Ok(_) => files.push(path.to_path_buf()),
        Err(e) => errors.push(ScenarioError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Keep every trace in the results (failing cases keep theirs regardless).
    pub keep_traces: bool,
    /// Skip cases the oracle would watch longer than this (spec time).
    pub max_horizon: Option<SpecDuration>,
    /// Watch every case to its horizon on wall-clock targets, also after a violation that
    /// nothing later can undo: on a target that lacks what the first rules read (podman
    /// reports no conditions), the rest of the case is seen only this way.
    pub to_horizon: bool,
}

fn too_long(scenario: &Scenario, max_horizon: Option<SpecDuration>) -> Option<String> {
    let max = max_horizon?;
    let horizon = predict(scenario).ok()?.horizon;
    (horizon > max).then(|| {
        format!("observing it takes {horizon} of spec time, more than --max-horizon {max}")
    })
}

/// Runs every case, at most the target's concurrency at once, calling `on_result` as each
/// finishes; the report lists cases in their original order.
pub async fn run_cases(
    target: &dyn Target,
    cases: &[SuiteCase],
    options: &RunOptions,
    on_result: impl FnMut(&CaseResult),
) -> RunReport {
    run_cases_reporting(target, cases, options, |_| {}, on_result).await
}

/// [`run_cases`], calling `on_start` as each case starts (a progress display's "running
/// now").
pub async fn run_cases_reporting(
    target: &dyn Target,
    cases: &[SuiteCase],
    options: &RunOptions,
    on_start: impl Fn(&SuiteCase),
    mut on_result: impl FnMut(&CaseResult),
) -> RunReport {
    let on_start = &on_start;
    let keep_traces = options.keep_traces;
    let started = std::time::Instant::now();
    let concurrency = target.capabilities().concurrency.max(1);
    let mut results: Vec<(usize, CaseResult)> = futures::stream::iter(cases.iter().enumerate())
        .map(|(index, case)| async move {
            on_start(case);
            let source = relative_to_current_dir(&case.path);
            if let Some(reason) = too_long(&case.scenario, options.max_horizon) {
                let verdict = Verdict::skipped(&case.scenario.name, &target.name(), reason);
                return (
                    index,
                    CaseResult {
                        verdict,
                        source,
                        description: case.scenario.description.clone(),
                        wall_ms: 0,
                        manifest: None,
                        trace: None,
                        reruns: Vec::new(),
                        timing_slips: Vec::new(),
                        timeline: None,
                    },
                );
            }
            (
                index,
                run_case_observing(
                    target,
                    &case.scenario,
                    &source,
                    keep_traces,
                    if options.to_horizon {
                        Ending::AtHorizon
                    } else {
                        Ending::Early
                    },
                )
                .await,
            )
        })
        .buffer_unordered(concurrency)
        .inspect(|(_, result)| on_result(result))
        .collect()
        .await;
    results.sort_by_key(|(index, _)| *index);
    let timing = target.timing();
    RunReport {
        target: target.name(),
        podcheck_version: env!("CARGO_PKG_VERSION").to_owned(),
        wall_ms: started.elapsed().as_millis() as u64,
        cases: results.into_iter().map(|(_, r)| r).collect(),
        settings: RunSettings {
            environment: target.summary(),
            seed: None,
            time_scale: Some(timing.time_scale),
            tolerance_ms: Some(timing.tolerance_ms),
            directory: std::env::current_dir()
                .ok()
                .map(|dir| dir.display().to_string()),
            run_options: format!("--target {}", target.name()),
        },
    }
}

/// `path` as a person in the run's directory names it: relative to the current directory
/// when it lies under it, else as given.
pub fn relative_to_current_dir(path: &Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|dir| {
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            dir.join(path)
        };
        absolute.strip_prefix(&dir).ok().map(Path::to_path_buf)
    });
    relative
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
