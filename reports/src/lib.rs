//! Renders podcheck results: JSON (machine-readable, with traces on request), JUnit XML
//! (for CI), and a self-contained HTML conformance report.
//!
//! Reporters only consume results; they never run anything.

use podcheck_oracle::{rules, Outcome, RuleId, Trace, Verdict};
use serde::Serialize;
use std::fmt::Write as _;

/// The result of one case on one target.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseResult {
    pub verdict: Verdict,
    /// Where the scenario came from (a suite file or a generator seed).
    pub source: String,
    pub wall_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
}

/// A whole run: one target, many cases.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub target: String,
    pub podcheck_version: String,
    pub wall_ms: u64,
    pub cases: Vec<CaseResult>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    pub skipped: usize,
}

impl RunReport {
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for case in &self.cases {
            match case.verdict.outcome {
                Outcome::Pass => totals.passed += 1,
                Outcome::Fail => totals.failed += 1,
                Outcome::Error => totals.errors += 1,
                Outcome::Skipped => totals.skipped += 1,
            }
        }
        totals
    }

    /// Every violated rule with the number of cases that violate it, in catalogue order.
    pub fn violated_rules(&self) -> Vec<(&'static str, usize)> {
        rules::CATALOGUE
            .iter()
            .map(|rule| {
                let cases = self
                    .cases
                    .iter()
                    .filter(|c| c.verdict.violations.iter().any(|v| v.rule == rule.id))
                    .count();
                (rule.id.as_str(), cases)
            })
            .filter(|(_, cases)| *cases > 0)
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn to_junit(&self) -> String {
        let totals = self.totals();
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            xml,
            "<testsuites name=\"podcheck\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            self.cases.len(),
            totals.failed,
            totals.errors,
            totals.skipped,
            self.wall_ms as f64 / 1000.0
        );
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
            escape(&self.target),
            self.cases.len(),
            totals.failed,
            totals.errors,
            totals.skipped
        );
        for case in &self.cases {
            let v = &case.verdict;
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&v.target),
                escape(&v.scenario),
                case.wall_ms as f64 / 1000.0
            );
            match v.outcome {
                Outcome::Pass => xml.push_str("/>\n"),
                Outcome::Fail => {
                    let _ = writeln!(
                        xml,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        escape(
                            &v.violated_rules()
                                .into_iter()
                                .map(RuleId::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        escape(&describe_violations(v))
                    );
                }
                Outcome::Error => {
                    let _ = writeln!(
                        xml,
                        ">\n      <error message=\"{}\"/>\n    </testcase>",
                        escape(v.error.as_deref().unwrap_or("target error"))
                    );
                }
                Outcome::Skipped => {
                    let _ = writeln!(
                        xml,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape(v.error.as_deref().unwrap_or("skipped"))
                    );
                }
            }
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }

    /// A self-contained page: summary, per-rule coverage, per-case verdicts with violations.
    pub fn to_html(&self) -> String {
        let totals = self.totals();
        let mut html = String::new();
        let _ = write!(
            html,
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>podcheck conformance: {target}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;width:100%}}\
             td,th{{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}}.pass{{color:#176117}}.fail{{color:#a31515}}\
             .error{{color:#8a5a00}}.skipped{{color:#666}}code{{font-size:90%}}</style></head><body>\
             <h1>podcheck conformance report</h1><p>Target <b>{target}</b>, podcheck {version}, {cases} cases in {secs:.1}s: \
             <span class=pass>{p} passed</span>, <span class=fail>{f} failed</span>, <span class=error>{e} errors</span>, \
             <span class=skipped>{s} skipped</span>.</p>",
            target = escape(&self.target),
            version = escape(&self.podcheck_version),
            cases = self.cases.len(),
            secs = self.wall_ms as f64 / 1000.0,
            p = totals.passed,
            f = totals.failed,
            e = totals.errors,
            s = totals.skipped
        );
        html.push_str("<h2>Rules</h2><table><tr><th>rule</th><th>statement</th><th>cases</th><th>violated in</th></tr>");
        for rule in rules::CATALOGUE {
            let exercised = self
                .cases
                .iter()
                .filter(|c| c.verdict.rules.contains(&rule.id))
                .count();
            let violated: Vec<&str> = self
                .cases
                .iter()
                .filter(|c| c.verdict.violations.iter().any(|v| v.rule == rule.id))
                .map(|c| c.verdict.scenario.as_str())
                .collect();
            let class = if violated.is_empty() { "pass" } else { "fail" };
            let _ = write!(
                html,
                "<tr><td class={class}><code>{}</code></td><td>{}</td><td>{exercised}</td><td>{}</td></tr>",
                rule.id,
                escape(rule.statement),
                escape(&violated.join(", "))
            );
        }
        html.push_str(
            "</table><h2>Cases</h2><table><tr><th>case</th><th>verdict</th><th>details</th></tr>",
        );
        for case in &self.cases {
            let v = &case.verdict;
            let (class, label) = match v.outcome {
                Outcome::Pass => ("pass", "pass"),
                Outcome::Fail => ("fail", "FAIL"),
                Outcome::Error => ("error", "error"),
                Outcome::Skipped => ("skipped", "skipped"),
            };
            let details = match v.outcome {
                Outcome::Fail => describe_violations(v),
                Outcome::Pass => v
                    .timing_headroom_ms
                    .map(|ms| format!("timing headroom {:.1}s (spec time)", ms as f64 / 1000.0))
                    .unwrap_or_default(),
                _ => v.error.clone().unwrap_or_default(),
            };
            let _ = write!(
                html,
                "<tr><td>{}<br><small>{}</small></td><td class={class}>{label}</td><td><pre>{}</pre></td></tr>",
                escape(&v.scenario),
                escape(&case.source),
                escape(&details)
            );
        }
        html.push_str("</table></body></html>\n");
        html
    }
}

/// One line per violation: rule, container, expected, observed, when.
pub fn describe_violations(verdict: &Verdict) -> String {
    let mut text = String::new();
    for v in &verdict.violations {
        let _ = write!(text, "{}", v.rule);
        if let Some(c) = &v.container {
            let _ = write!(text, " [{c}]");
        }
        let _ = write!(text, ": expected {}; observed {}", v.expected, v.observed);
        if let Some(at) = v.at_ms {
            let _ = write!(text, " (at {:.1}s)", at as f64 / 1000.0);
        }
        if v.occurrences > 1 {
            let _ = write!(text, " ({} snapshots)", v.occurrences);
        }
        text.push('\n');
    }
    text
}

/// At most `limit` lines: all violations if they fit, else one line per rule (with how
/// many violations it has) showing its first violation. The full list stays in the
/// JSON, JUnit and HTML reports.
pub fn summarize_violations(verdict: &Verdict, limit: usize) -> String {
    if verdict.violations.len() <= limit {
        return describe_violations(verdict);
    }
    let mut text = String::new();
    let mut rules: Vec<RuleId> = Vec::new();
    for v in &verdict.violations {
        if !rules.contains(&v.rule) {
            rules.push(v.rule);
        }
    }
    for rule in rules {
        let of_rule: Vec<_> = verdict
            .violations
            .iter()
            .filter(|v| v.rule == rule)
            .collect();
        let first = of_rule[0];
        let _ = write!(text, "{rule}");
        if let Some(c) = &first.container {
            let _ = write!(text, " [{c}]");
        }
        let _ = write!(
            text,
            ": expected {}; observed {}",
            first.expected, first.observed
        );
        if of_rule.len() > 1 {
            let _ = write!(text, " (+{} more)", of_rule.len() - 1);
        }
        text.push('\n');
    }
    text
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use podcheck_oracle::Violation;

    fn case(outcome: Outcome, violations: Vec<Violation>, error: Option<&str>) -> CaseResult {
        CaseResult {
            verdict: Verdict {
                scenario: "a<b".to_owned(),
                target: "local".to_owned(),
                outcome,
                violations,
                error: error.map(str::to_owned),
                rules: vec![RuleId::RestartPolicyNever],
                timing_headroom_ms: Some(1500),
            },
            source: "suites/x.yaml".to_owned(),
            wall_ms: 1200,
            trace: None,
        }
    }

    fn report() -> RunReport {
        let violation = Violation {
            rule: RuleId::RestartPolicyNever,
            container: Some("app".to_owned()),
            expected: "no restart".to_owned(),
            observed: "restartCount 1 & \"more\"".to_owned(),
            at_ms: Some(2500),
            occurrences: 1,
        };
        RunReport {
            target: "local".to_owned(),
            podcheck_version: "0.1.0".to_owned(),
            wall_ms: 3000,
            cases: vec![
                case(Outcome::Pass, vec![], None),
                case(Outcome::Fail, vec![violation], None),
                case(Outcome::Error, vec![], Some("pod <creation> failed")),
                case(Outcome::Skipped, vec![], Some("needs root")),
            ],
        }
    }

    #[test]
    fn junit_counts_outcomes_and_escapes_text() {
        let xml = report().to_junit();
        assert!(
            xml.contains("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"restart.policy.never\">"),
            "{xml}"
        );
        assert!(xml.contains("name=\"a&lt;b\""), "{xml}");
        assert!(xml.contains("&amp; &quot;more&quot;"), "{xml}");
        assert!(!xml.contains("<creation>"), "unescaped text in {xml}");
        assert_eq!(xml.matches("<testcase").count(), 4);
    }

    #[test]
    fn html_marks_violated_rules_and_counts() {
        let html = report().to_html();
        assert!(
            html.contains("1 passed</span>, <span class=fail>1 failed"),
            "{html}"
        );
        assert!(
            html.contains("<td class=fail><code>restart.policy.never</code>"),
            "{html}"
        );
        assert!(!html.contains("<creation>"));
    }

    #[test]
    fn long_violation_lists_are_summarized_per_rule() {
        let violation = |rule: RuleId, n: i64| Violation {
            rule,
            container: None,
            expected: format!("e{n}"),
            observed: format!("o{n}"),
            at_ms: None,
            occurrences: 1,
        };
        let mut result = case(
            Outcome::Fail,
            (0..6)
                .map(|n| violation(RuleId::RestartBackoffDoubling, n))
                .collect(),
            None,
        );
        result
            .verdict
            .violations
            .extend((0..4).map(|n| violation(RuleId::RestartBackoffCap, n)));
        let summary = summarize_violations(&result.verdict, 8);
        assert_eq!(summary.lines().count(), 2, "{summary}");
        assert!(
            summary.contains("restart.backoff.doubling: expected e0; observed o0 (+5 more)"),
            "{summary}"
        );
        assert!(
            summary.contains("restart.backoff.cap: expected e0; observed o0 (+3 more)"),
            "{summary}"
        );
        result.verdict.violations.truncate(3);
        assert_eq!(
            summarize_violations(&result.verdict, 8),
            describe_violations(&result.verdict)
        );
    }

    #[test]
    fn json_round_trips_verdicts() {
        let json = report().to_json();
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["cases"][1]["verdict"]["outcome"], "fail");
        assert_eq!(
            value["cases"][1]["verdict"]["violations"][0]["rule"],
            "restart.policy.never"
        );
    }
}
