//! The side-by-side page: several runs (a local runtime, podman, a cluster) on one page, a
//! rules × targets matrix and each case's verdicts across targets with their timelines on
//! demand, so a runtime's divergences from the reference and from the others show at once.

use super::{outcome_label, page, svg, timeline_figure, violation_list};
use crate::{CaseResult, RunReport};
use maud::html;
use podcheck_oracle::{rules, Outcome, RuleId};

/// What one run shows of one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleStatus {
    /// Some case exercised the rule and none violated it.
    Pass,
    /// Some case violated it.
    Fail,
    /// The cases that exercise it elsewhere were skipped on this target.
    NotApplicable,
    /// No case of this run exercised it.
    NotRun,
}

impl RuleStatus {
    fn class_and_label(self) -> (&'static str, &'static str) {
        match self {
            RuleStatus::Pass => ("pass", "pass"),
            RuleStatus::Fail => ("fail", "FAIL"),
            RuleStatus::NotApplicable => ("na", "n/a"),
            RuleStatus::NotRun => ("notrun", "not run"),
        }
    }
}

/// Whether a case exercised or violated `rule`.
fn touches(case: &CaseResult, rule: RuleId) -> bool {
    case.verdict.rules.contains(&rule) || case.verdict.violations.iter().any(|v| v.rule == rule)
}

/// What `run` shows of `rule`, given every run (a skipped case carries no rules: which
/// rules it was for comes from the runs that ran it).
fn rule_status(rule: RuleId, run: &RunReport, runs: &[RunReport]) -> RuleStatus {
    if run
        .cases
        .iter()
        .any(|c| c.verdict.violations.iter().any(|v| v.rule == rule))
    {
        return RuleStatus::Fail;
    }
    if run.cases.iter().any(|c| {
        matches!(c.verdict.outcome, Outcome::Pass | Outcome::Fail)
            && c.verdict.rules.contains(&rule)
    }) {
        return RuleStatus::Pass;
    }
    let skipped_here = run.cases.iter().any(|c| {
        c.verdict.outcome == Outcome::Skipped
            && runs.iter().any(|other| {
                other
                    .cases
                    .iter()
                    .any(|o| o.verdict.scenario == c.verdict.scenario && touches(o, rule))
            })
    });
    if skipped_here {
        RuleStatus::NotApplicable
    } else {
        RuleStatus::NotRun
    }
}

/// The column heading of each run: its target, numbered when two runs share one.
fn run_names(runs: &[RunReport]) -> Vec<String> {
    runs.iter()
        .enumerate()
        .map(|(index, run)| {
            if runs.iter().filter(|r| r.target == run.target).count() > 1 {
                format!("{} ({})", run.target, index + 1)
            } else {
                run.target.clone()
            }
        })
        .collect()
}

/// Every scenario of any run, those failing somewhere first, otherwise in run order.
fn scenario_names(runs: &[RunReport]) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for run in runs {
        for case in &run.cases {
            if !names.contains(&case.verdict.scenario.as_str()) {
                names.push(&case.verdict.scenario);
            }
        }
    }
    let fails_somewhere = |name: &str| {
        runs.iter().any(|run| {
            run.cases
                .iter()
                .any(|c| c.verdict.scenario == name && c.verdict.outcome != Outcome::Pass)
        })
    };
    names.sort_by_key(|name| !fails_somewhere(name));
    names
}

/// The side-by-side page of `runs`, each with the file it came from.
pub fn compare_html(runs: &[(String, RunReport)]) -> String {
    let files: Vec<&str> = runs.iter().map(|(file, _)| file.as_str()).collect();
    let reports: Vec<RunReport> = runs.iter().map(|(_, run)| run.clone()).collect();
    let names = run_names(&reports);
    let body = html! {
        h1 { "podcheck: targets side by side" }
        @for ((name, run), file) in names.iter().zip(&reports).zip(&files) {
            @let totals = run.totals();
            h4 { (name) " " small { "from " code { (file) } } }
            ul.about {
                li { "podcheck " (run.podcheck_version) ", " (run.cases.len()) " cases: "
                    (totals.passed) " passed, " (totals.failed) " failed, " (totals.errors) " errors, " (totals.skipped) " skipped" }
                @for line in &run.settings.environment { li { (line) } }
                @if let Some(scale) = run.settings.time_scale { li { "time scale " (scale) @if let Some(seed) = run.settings.seed { ", seed " (seed) } } }
            }
        }
        h2 { "Rules × targets" }
        table.matrix {
            tr { th { "rule" } @for name in &names { th { (name) } } }
            @for rule in rules::CATALOGUE {
                @let statuses: Vec<RuleStatus> = reports.iter().map(|run| rule_status(rule.id, run, &reports)).collect();
                @if statuses.iter().any(|s| *s != RuleStatus::NotRun) {
                    tr {
                        td { code title=(rule.statement) { (rule.id) } }
                        @for status in statuses {
                            @let (class, label) = status.class_and_label();
                            td class=(class) { (label) }
                        }
                    }
                }
            }
        }
        h2 { "Cases" }
        (svg::legend())
        table.matrix {
            tr { th { "case" } @for name in &names { th { (name) } } }
            @for (row, scenario) in scenario_names(&reports).into_iter().enumerate() {
                @let cells: Vec<Option<&CaseResult>> = reports.iter().map(|run| run.cases.iter().find(|c| c.verdict.scenario == scenario)).collect();
                tr {
                    td { a href=(format!("#row-{row}")) { (scenario) } }
                    @for cell in &cells {
                        @match cell {
                            Some(case) => {
                                @let (class, label) = outcome_label(case.verdict.outcome);
                                td class=(class) { (label) }
                            },
                            None => { td.notrun { "not run" } },
                        }
                    }
                }
            }
        }
        @for (row, scenario) in scenario_names(&reports).into_iter().enumerate() {
            section.case id=(format!("row-{row}")) {
                h3 { (scenario) }
                @for (column, (name, run)) in names.iter().zip(&reports).enumerate() {
                    @if let Some(case) = run.cases.iter().find(|c| c.verdict.scenario == scenario) {
                        @let (class, label) = outcome_label(case.verdict.outcome);
                        @let id_prefix = format!("row-{row}-{column}");
                        details open[case.verdict.outcome == Outcome::Fail] {
                            summary { span class=(format!("badge {class}")) { (label) } (name) }
                            @if let Some(timeline) = &case.timeline { (timeline_figure(timeline, &id_prefix)) }
                            @match case.verdict.outcome {
                                Outcome::Fail => { (violation_list(case, &id_prefix)) },
                                Outcome::Error | Outcome::Skipped => { pre { (case.verdict.error.as_deref().unwrap_or_default()) } },
                                Outcome::Pass => {},
                            }
                            @if case.verdict.outcome == Outcome::Fail { pre { (run.reproduce_command(case)) } }
                        }
                    }
                }
            }
        }
    };
    page::page("podcheck: targets side by side", false, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::report;

    #[test]
    fn the_matrix_says_pass_fail_not_applicable_and_not_run() {
        let failing = report();
        let mut skipping = report();
        for case in &mut skipping.cases {
            case.verdict.outcome = Outcome::Skipped;
            case.verdict.rules.clear();
            case.verdict.violations.clear();
        }
        skipping.target = "podman".to_owned();
        let mut passing = report();
        passing.cases.truncate(1);
        let runs = [failing, skipping, passing];
        let rule = RuleId::RestartPolicyNever;
        assert_eq!(rule_status(rule, &runs[0], &runs), RuleStatus::Fail);
        assert_eq!(
            rule_status(rule, &runs[1], &runs),
            RuleStatus::NotApplicable
        );
        assert_eq!(rule_status(rule, &runs[2], &runs), RuleStatus::Pass);
        assert_eq!(
            rule_status(RuleId::PhaseFailed, &runs[2], &runs),
            RuleStatus::NotRun
        );
    }

    #[test]
    fn the_page_has_one_column_per_run_and_escapes_names() {
        let mut podman = report();
        podman.target = "podman".to_owned();
        let html = compare_html(&[
            ("local/results.json".to_owned(), report()),
            ("podman/<results>.json".to_owned(), podman),
        ]);
        assert!(html.contains("<th>local</th><th>podman</th>"), "{html}");
        assert!(html.contains("podman/&lt;results&gt;.json"), "{html}");
        assert!(!html.contains("<results>"));
        assert!(
            !html.contains("<script"),
            "the side-by-side page needs no script"
        );
    }
}
