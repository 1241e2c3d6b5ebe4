//! Renders podcheck results: JSON (machine-readable, with traces on request), JUnit XML
//! (for CI), and a self-contained HTML conformance report.
//!
//! Reporters only consume results; they never run anything. A new report format is one
//! module here reading a [`RunReport`].

mod errors;
mod html;
mod junit;
mod text;
pub mod timeline;

pub use errors::ReportError;
pub use html::compare_html;
pub use text::{describe_violations, summarize_violations};
pub use timeline::Timeline;

use podcheck_oracle::{rules, Outcome, RuleId, Trace, Verdict};
use serde::{Deserialize, Serialize};

/// The result of one case on one target.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseResult {
    pub verdict: Verdict,
    /// Where the scenario came from (a suite file or a generator seed).
    pub source: String,
    /// The scenario's description, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
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
    /// What each container showed against the prediction, for every case that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
}

/// A whole run: one target, many cases.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub target: String,
    pub podcheck_version: String,
    pub wall_ms: u64,
    pub cases: Vec<CaseResult>,
    /// How the run was set up, for the report's header and the reproduce commands.
    #[serde(default)]
    pub settings: RunSettings,
}

/// How a run was set up: what a reader needs to know about the target and to reproduce a
/// case. Everything is optional: results from elsewhere may not say.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSettings {
    /// What the target says it is (a cluster's versions, each node's configuration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Wall seconds per spec second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_scale: Option<f64>,
    /// Spec milliseconds added to both ends of every window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_ms: Option<u64>,
    /// The directory the run was started in: case paths are relative to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// The options of `podcheck run` beyond the path that reproduce a case as this run
    /// ran it (`--target model:no-back-off-doubling --seed 3`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_options: String,
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

    /// Reads a results.json back.
    pub fn from_json(text: &str) -> Result<RunReport, ReportError> {
        serde_json::from_str(text).map_err(ReportError::ReadJson)
    }

    /// The command that runs one case again as this run ran it.
    pub fn reproduce_command(&self, case: &CaseResult) -> String {
        let options = if self.settings.run_options.is_empty() {
            format!("--target {}", self.target)
        } else {
            self.settings.run_options.clone()
        };
        format!("podcheck run {} {options}", shell_word(&case.source))
    }
}

/// `word` as one shell word: quoted when it holds anything but plain path characters.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The first source of a rule that has an address.
pub fn rule_source_link(rule: RuleId) -> Option<String> {
    rules::CATALOGUE
        .iter()
        .find(|r| r.id == rule)?
        .sources
        .iter()
        .find_map(|source| timeline::source_link(source))
}

/// The catalogue statement of a rule.
pub fn rule_statement(rule: RuleId) -> &'static str {
    rules::CATALOGUE
        .iter()
        .find(|r| r.id == rule)
        .map_or("", |r| r.statement)
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
            description: None,
            wall_ms: 1200,
            manifest: None,
            trace: None,
            reruns: Vec::new(),
            timing_slips: Vec::new(),
            timeline: None,
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
            settings: RunSettings::default(),
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
    fn results_read_back_as_written() {
        let mut written = report();
        written.settings.seed = Some(7);
        let json = written.to_json().expect("serializes");
        let back = RunReport::from_json(&json).expect("reads back");
        assert_eq!(back.to_json().expect("serializes"), json);
        assert!(RunReport::from_json("{\"target\": 1}").is_err());
    }

    #[test]
    fn reproduce_commands_quote_what_a_shell_would_split() {
        let mut report = report();
        report.settings.run_options = "--target model:no-back-off-doubling".to_owned();
        let mut case = report.cases[1].clone();
        assert_eq!(
            report.reproduce_command(&case),
            "podcheck run suites/x.yaml --target model:no-back-off-doubling"
        );
        case.source = "my suites/it's.yaml".to_owned();
        assert_eq!(
            report.reproduce_command(&case),
            "podcheck run 'my suites/it'\\''s.yaml' --target model:no-back-off-doubling"
        );
    }

    #[test]
    fn violated_rules_count_cases() {
        assert_eq!(report().violated_rules(), [("restart.policy.never", 1)]);
    }
}
