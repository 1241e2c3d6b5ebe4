//! report.html: one self-contained page (no script, no external resource).

use crate::{describe_violations, RunReport};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use podcheck_oracle::{rules, Outcome};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}\
    table{border-collapse:collapse;width:100%}\
    td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}\
    .pass{color:#176117}.fail{color:#a31515}.error{color:#8a5a00}.skipped{color:#666}\
    code{font-size:90%}";

impl RunReport {
    /// Summary, per-rule coverage, per-case verdicts with violations.
    pub fn to_html(&self) -> String {
        let totals = self.totals();
        let page = html! {
            (DOCTYPE)
            html {
                head {
                    meta charset="utf-8";
                    title { "podcheck conformance: " (self.target) }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    h1 { "podcheck conformance report" }
                    p {
                        "Target " b { (self.target) } ", podcheck " (self.podcheck_version) ", "
                        (self.cases.len()) " cases in " (seconds(self.wall_ms as f64)) "s: "
                        span.pass { (totals.passed) " passed" } ", "
                        span.fail { (totals.failed) " failed" } ", "
                        span.error { (totals.errors) " errors" } ", "
                        span.skipped { (totals.skipped) " skipped" } "."
                    }
                    h2 { "Rules" }
                    (self.rules_table())
                    h2 { "Cases" }
                    (self.cases_table())
                }
            }
        };
        page.into_string() + "\n"
    }

    /// Every catalogue rule: how many cases exercise it and which violate it.
    fn rules_table(&self) -> Markup {
        html! {
            table {
                tr { th { "rule" } th { "statement" } th { "cases" } th { "violated in" } }
                @for rule in rules::CATALOGUE {
                    @let exercised = self
                        .cases
                        .iter()
                        .filter(|c| c.verdict.rules.contains(&rule.id))
                        .count();
                    @let violated: Vec<&str> = self
                        .cases_violating(rule.id)
                        .map(|c| c.verdict.scenario.as_str())
                        .collect();
                    tr {
                        td class=(if violated.is_empty() { "pass" } else { "fail" }) {
                            code { (rule.id) }
                        }
                        td { (rule.statement) }
                        td { (exercised) }
                        td { (violated.join(", ")) }
                    }
                }
            }
        }
    }

    /// Every case with its verdict and its violations, error or timing headroom.
    fn cases_table(&self) -> Markup {
        html! {
            table {
                tr { th { "case" } th { "verdict" } th { "details" } }
                @for case in &self.cases {
                    @let v = &case.verdict;
                    @let (class, label) = match v.outcome {
                        Outcome::Pass => ("pass", "pass"),
                        Outcome::Fail => ("fail", "FAIL"),
                        Outcome::Error => ("error", "error"),
                        Outcome::Skipped => ("skipped", "skipped"),
                    };
                    @let details = match v.outcome {
                        Outcome::Fail => describe_violations(v),
                        Outcome::Pass => v
                            .timing_headroom_ms
                            .map(|ms| format!("timing headroom {}s (spec time)", seconds(ms as f64)))
                            .unwrap_or_default(),
                        _ => v.error.clone().unwrap_or_default(),
                    };
                    tr {
                        td { (v.scenario) br; small { (case.source) } }
                        td class=(class) { (label) }
                        td { pre { (details) } }
                    }
                }
            }
        }
    }
}

/// Milliseconds as seconds with one decimal.
fn seconds(ms: f64) -> String {
    format!("{:.1}", ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use crate::tests::report;

    #[test]
    fn html_marks_violated_rules_and_counts() {
        let html = report().to_html();
        assert!(
            html.contains("1 passed</span>, <span class=\"fail\">1 failed"),
            "{html}"
        );
        assert!(
            html.contains("<td class=\"fail\"><code>restart.policy.never</code>"),
            "{html}"
        );
        assert!(!html.contains("<creation>"));
    }
}
