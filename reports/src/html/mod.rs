//! report.html: one self-contained page. Per case a timeline (inline SVG) of what each
//! container showed against the predicted windows, the violations pinned on it, and for a
//! failing case what reproduces it. Failing cases come first; filters by verdict, rule and
//! area. `compare` puts several runs side by side.

mod compare;
mod page;
mod svg;

pub use compare::compare_html;

use crate::timeline::Timeline;
use crate::{CaseResult, RunReport};
use maud::{html, Markup};
use podcheck_oracle::{rules, Outcome, RuleId};
use std::collections::BTreeSet;

impl RunReport {
    /// The header, the filters, the rules and every case with its timeline.
    pub fn to_html(&self) -> String {
        let totals = self.totals();
        let mut cases: Vec<(usize, &CaseResult)> = self.cases.iter().enumerate().collect();
        cases.sort_by_key(|(index, case)| (outcome_order(case.verdict.outcome), *index));
        let exercised = self.exercised_rules();
        let areas: BTreeSet<&str> = exercised.iter().map(|rule| area(*rule)).collect();
        let body = html! {
            h1 { "podcheck conformance report" }
            (self.about())
            p {
                (self.cases.len()) " cases in " (seconds(self.wall_ms as f64)) "s: "
                span.pass { (totals.passed) " passed" } ", "
                span.fail { (totals.failed) " failed" } ", "
                span.error { (totals.errors) " errors" } ", "
                span.skipped { (totals.skipped) " skipped" } "."
            }
            form id="filters" hidden {
                label { "verdict " select name="verdict" {
                    option value="" { "all" }
                    @for (value, label) in [("fail", "failed"), ("error", "error"), ("pass", "passed"), ("skipped", "skipped")] {
                        option value=(value) { (label) }
                    }
                } }
                label { "rule " select name="rule" {
                    option value="" { "all" }
                    @for rule in &exercised { option value=(rule.as_str()) { (rule.as_str()) } }
                } }
                label { "area " select name="area" {
                    option value="" { "all" }
                    @for area in &areas { option value=(area) { (area) } }
                } }
                output id="shown" {}
            }
            h2 { "Cases" }
            (svg::legend())
            @for (index, case) in cases {
                (self.case_section(index, case))
            }
            h2 { "Rules" }
            (self.rules_table())
        };
        page::page(
            &format!("podcheck conformance: {}", self.target),
            true,
            body,
        )
    }

    /// Target, versions, node configuration, podcheck version, seed, time scale.
    fn about(&self) -> Markup {
        let settings = &self.settings;
        html! {
            ul.about {
                li { "target " b { (self.target) } ", podcheck " (self.podcheck_version) }
                @for line in &settings.environment { li { (line) } }
                @if let Some(seed) = settings.seed { li { "seed " (seed) } }
                @if let Some(scale) = settings.time_scale {
                    li {
                        "time scale " (scale) " (wall seconds per spec second)"
                        @if let Some(tolerance) = settings.tolerance_ms {
                            ", tolerance " (svg::secs(tolerance as i64)) " of spec time on both ends of every window"
                        }
                    }
                }
                @if let Some(directory) = &settings.directory { li { "paths relative to " code { (directory) } } }
            }
        }
    }

    /// Every rule some case exercised or violated, in catalogue order.
    fn exercised_rules(&self) -> Vec<RuleId> {
        let mut seen: BTreeSet<RuleId> = BTreeSet::new();
        for case in &self.cases {
            seen.extend(case.verdict.rules.iter().copied());
            seen.extend(case.verdict.violations.iter().map(|v| v.rule));
        }
        RuleId::ALL
            .iter()
            .copied()
            .filter(|r| seen.contains(r))
            .collect()
    }

    /// One case: verdict, violations, timeline, and what reproduces it.
    fn case_section(&self, index: usize, case: &CaseResult) -> Markup {
        let v = &case.verdict;
        let (class, label) = outcome_label(v.outcome);
        let mut rules: BTreeSet<&str> = v.rules.iter().map(|r| r.as_str()).collect();
        rules.extend(v.violations.iter().map(|x| x.rule.as_str()));
        let areas: BTreeSet<&str> = rules
            .iter()
            .map(|r| r.split('.').next().unwrap_or(r))
            .collect();
        let failing = v.outcome == Outcome::Fail;
        html! {
            section.case id=(format!("case-{index}")) data-verdict=(class)
                data-rules=(rules.into_iter().collect::<Vec<_>>().join(" "))
                data-areas=(areas.into_iter().collect::<Vec<_>>().join(" ")) {
                h3 { span class=(format!("badge {class}")) { (label) } (v.scenario) " " small { (case.source) } }
                @if let Some(description) = &case.description { p.desc { (description) } }
                // The picture first: the numbered pins on it point into the list below.
                @if let Some(timeline) = &case.timeline {
                    @let id_prefix = format!("case-{index}");
                    @if failing || v.outcome == Outcome::Error {
                        (timeline_figure(timeline, &id_prefix))
                    } @else {
                        details { summary { "timeline" } (timeline_figure(timeline, &id_prefix)) }
                    }
                }
                @match v.outcome {
                    Outcome::Fail => { (violation_list(case, &format!("case-{index}"))) },
                    Outcome::Pass => {
                        @if let Some(ms) = v.timing_headroom_ms {
                            p { "timing headroom " (seconds(ms as f64)) "s (spec time)" }
                        }
                    },
                    _ => { pre { (v.error.as_deref().unwrap_or_default()) } },
                }
                @if let Some(why) = &v.ended_early { p { "ended early: " (why) } }
                @for why in &case.reruns { p { "rerun: " (why) } }
                @if !case.timing_slips.is_empty() {
                    details { summary { (case.timing_slips.len()) " timing slip(s) of the target" }
                        ul { @for slip in &case.timing_slips { li { (slip) } } }
                    }
                }
                @if failing { (self.reproducer(case)) }
            }
        }
    }

    /// The manifest, the scenario file and the command that reproduce a failing case.
    fn reproducer(&self, case: &CaseResult) -> Markup {
        html! {
            details.reproduce {
                summary { "reproduce" }
                p { "scenario " code { (case.source) } ", run again with:" }
                pre { (self.reproduce_command(case)) }
                @if let Some(manifest) = &case.manifest {
                    p { "the pod the target ran, for " code { "kubectl apply -f -" } ":" }
                    pre { (manifest) }
                }
            }
        }
    }

    /// Every catalogue rule: how many cases exercise it and which violate it.
    fn rules_table(&self) -> Markup {
        html! {
            table {
                tr { th { "rule" } th { "statement" } th { "cases" } th { "violated in" } }
                @for rule in rules::CATALOGUE {
                    @let exercised = self.cases.iter().filter(|c| c.verdict.rules.contains(&rule.id)).count();
                    @let violated: Vec<(usize, &str)> = self.cases.iter().enumerate()
                        .filter(|(_, c)| c.verdict.violations.iter().any(|v| v.rule == rule.id))
                        .map(|(index, c)| (index, c.verdict.scenario.as_str()))
                        .collect();
                    tr {
                        td class=(if violated.is_empty() { "pass" } else { "fail" }) { code { (rule.id) } }
                        td { (rule.statement) }
                        td { (exercised) }
                        td { @for (index, name) in violated { a href=(format!("#case-{index}")) { (name) } " " } }
                    }
                }
            }
        }
    }
}

/// The timeline with the time it covers.
pub(crate) fn timeline_figure(timeline: &Timeline, id_prefix: &str) -> Markup {
    html! {
        figure {
            (svg::timeline_svg(timeline, id_prefix))
            figcaption {
                "observed for " (svg::secs(timeline.observed_until_ms)) " of spec time"
                @if timeline.observed_until_ms < timeline.horizon_ms { " (of the " (svg::secs(timeline.horizon_ms)) " horizon)" }
                @if timeline.tolerance_ms > 0 { "; windows include the target's tolerance of " (svg::secs(timeline.tolerance_ms)) }
            }
        }
    }
}

/// The violations, numbered as on the timeline, each with its rule's statement and source.
pub(crate) fn violation_list(case: &CaseResult, id_prefix: &str) -> Markup {
    let pins = case.timeline.as_ref().map(|t| t.violations.as_slice());
    html! {
        ol.violations {
            @for (index, v) in case.verdict.violations.iter().enumerate() {
                @let pin = pins.and_then(|p| p.get(index));
                li id=(format!("{id_prefix}-v-{}", index + 1)) {
                    code { (v.rule) } @if let Some(c) = &v.container { " [" (c) "]" }
                    @if let Some(at) = v.at_ms { " at " (svg::secs(at)) }
                    ": expected " (v.expected) "; observed " (v.observed)
                    @if v.occurrences > 1 { " (" (v.occurrences) " snapshots)" }
                    // What the rule says, once per rule: a crash loop breaks one rule many times.
                    @if case.verdict.violations[..index].iter().all(|earlier| earlier.rule != v.rule) {
                        br;
                        span.statement {
                            (pin.map_or(crate::rule_statement(v.rule), |p| p.statement.as_str()))
                            @if let Some(link) = pin.and_then(|p| p.source.clone()).or_else(|| crate::rule_source_link(v.rule)) {
                                " " a href=(link) { "source" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The area of a rule: its id up to the first dot (`restart`, `probe`, `phase`).
fn area(rule: RuleId) -> &'static str {
    let id = rule.as_str();
    id.split('.').next().unwrap_or(id)
}

fn outcome_order(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Fail => 0,
        Outcome::Error => 1,
        Outcome::Pass => 2,
        Outcome::Skipped => 3,
    }
}

pub(crate) fn outcome_label(outcome: Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Pass => ("pass", "pass"),
        Outcome::Fail => ("fail", "FAIL"),
        Outcome::Error => ("error", "error"),
        Outcome::Skipped => ("skipped", "skipped"),
    }
}

/// Milliseconds as seconds with one decimal.
fn seconds(ms: f64) -> String {
    format!("{:.1}", ms / 1000.0)
}

#[cfg(test)]
mod tests;
