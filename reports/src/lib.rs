//! Renders podcheck results: JSON (machine-readable, with traces on request), JUnit XML
//! (for CI), and a self-contained HTML conformance report.
//!
//! Reporters only consume results; they never run anything. A new report format is one
//! module here reading a [`RunReport`].

mod errors;
mod html;
mod junit;
mod text;

pub use errors::ReportError;
pub use text::{describe_violations, summarize_violations};

use podcheck_oracle::{rules, Outcome, RuleId, Trace, Verdict};
use serde::Serialize;

/// The result of one case on one target.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseResult {
    pub verdict: Verdict,
    /// Where the scenario came from (a suite file or a generator seed).
    pub source: String,
    pub wall_ms: u64,
    /// The pod manifest the target applied (YAML), where it was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
    /// Why earlier attempts were set aside: failures across which the target's timing
    /// slipped, each followed by another attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reruns: Vec<String>,
    /// Moments of the last attempt where the target's own timing slipped past what its
    /// time scale absorbs; a passing verdict stands whatever they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timing_slips: Vec<String>,
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
            .map(|rule| (rule.id.as_str(), self.cases_violating(rule.id).count()))
            .filter(|(_, cases)| *cases > 0)
            .collect()
    }

    /// The cases with at least one violation of `rule`.
    fn cases_violating(&self, rule: RuleId) -> impl Iterator<Item = &CaseResult> {
        self.cases
            .iter()
            .filter(move |c| c.verdict.violations.iter().any(|v| v.rule == rule))
    }

    /// results.json: the whole report, traces included where the cases kept them.
    pub fn to_json(&self) -> Result<String, ReportError> {
        serde_json::to_string_pretty(self).map_err(ReportError::Json)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use podcheck_oracle::Violation;

    pub fn case(outcome: Outcome, violations: Vec<Violation>, error: Option<&str>) -> CaseResult {
        CaseResult {
            verdict: Verdict {
                scenario: "a<b".to_owned(),
                target: "local".to_owned(),
                outcome,
                violations,
                error: error.map(str::to_owned),
                rules: vec![RuleId::RestartPolicyNever],
                timing_headroom_ms: Some(1500),
                ended_early: None,
            },
            source: "suites/x.yaml".to_owned(),
            wall_ms: 1200,
            manifest: None,
            trace: None,
            reruns: Vec::new(),
            timing_slips: Vec::new(),
        }
    }

    /// One case of each outcome; the failing one violates `restart.policy.never`.
    pub fn report() -> RunReport {
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
    fn json_round_trips_verdicts() {
        let json = report().to_json().expect("serializes");
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["cases"][1]["verdict"]["outcome"], "fail");
        assert_eq!(
            value["cases"][1]["verdict"]["violations"][0]["rule"],
            "restart.policy.never"
        );
    }

    #[test]
    fn violated_rules_count_cases() {
        assert_eq!(report().violated_rules(), [("restart.policy.never", 1)]);
    }
}
