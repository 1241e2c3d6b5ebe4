//! junit.xml: one test suite per run, one test case per scenario.

use crate::{describe_violations, ReportError, RunReport};
use podcheck_oracle::{Outcome, RuleId};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

impl RunReport {
    /// A failing case's failure names the rules it violates and lists each violation.
    pub fn to_junit(&self) -> Result<String, ReportError> {
        let mut suite = TestSuite::new(self.target.as_str());
        suite.add_properties(self.junit_properties());
        for case in &self.cases {
            let v = &case.verdict;
            let status = match v.outcome {
                Outcome::Pass => TestCaseStatus::success(),
                Outcome::Fail => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status
                        .set_message(
                            v.violated_rules()
                                .into_iter()
                                .map(RuleId::as_str)
                                .collect::<Vec<_>>()
                                .join(", "),
                        )
                        .set_description(describe_violations(v));
                    status
                }
                Outcome::Error => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                    status.set_message(v.error.as_deref().unwrap_or("target error"));
                    status
                }
                Outcome::Skipped => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(v.error.as_deref().unwrap_or("skipped"));
                    status
                }
            };
            let mut test_case = TestCase::new(v.scenario.as_str(), status);
            test_case
                .set_classname(v.target.as_str())
                .set_time(Duration::from_millis(case.wall_ms));
            suite.add_test_case(test_case);
        }
        let mut report = Report::new("podcheck");
        report
            .set_time(Duration::from_millis(self.wall_ms))
            .add_test_suite(suite);
        report.to_string().map_err(ReportError::Junit)
    }

    /// What CI shows beside the verdicts: the target, podcheck's version, the seed and the
    /// time scale the run used, where known.
    fn junit_properties(&self) -> Vec<Property> {
        let settings = &self.settings;
        let mut properties = vec![
            Property::new("target", self.target.as_str()),
            Property::new("podcheck.version", self.podcheck_version.as_str()),
        ];
        if let Some(seed) = settings.seed {
            properties.push(Property::new("seed", seed.to_string()));
        }
        if let Some(scale) = settings.time_scale {
            properties.push(Property::new("time-scale", scale.to_string()));
        }
        if let Some(tolerance) = settings.tolerance_ms {
            properties.push(Property::new("tolerance-ms", tolerance.to_string()));
        }
        properties.extend(
            settings
                .environment
                .iter()
                .enumerate()
                .map(|(index, line)| Property::new(format!("environment.{index}"), line.as_str())),
        );
        properties
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::report;
    use quick_junit::{NonSuccessKind, Report, TestCaseStatus};

    #[test]
    fn junit_counts_outcomes_and_escapes_text() {
        let xml = report().to_junit().expect("serializes");
        for count in [
            "tests=\"4\"",
            "failures=\"1\"",
            "errors=\"1\"",
            "skipped=\"1\"",
        ] {
            assert_eq!(xml.matches(count).count(), 2, "{count} in {xml}");
        }
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
    fn junit_properties_name_target_version_seed_and_time_scale() {
        let mut report = report();
        report.settings.seed = Some(7);
        report.settings.time_scale = Some(0.05);
        let xml = report.to_junit().expect("serializes");
        let parsed = Report::deserialize_from_str(&xml).expect("well-formed JUnit");
        let properties: Vec<(String, String)> = parsed.test_suites[0]
            .properties
            .iter()
            .map(|p| (p.name.to_string(), p.value.to_string()))
            .collect();
        for (name, value) in [
            ("target", "local"),
            ("podcheck.version", "0.1.0"),
            ("seed", "7"),
            ("time-scale", "0.05"),
        ] {
            assert!(
                properties.contains(&(name.to_owned(), value.to_owned())),
                "{name}={value} in {properties:?}"
            );
        }
    }

    #[test]
    fn junit_reads_back_with_one_test_case_per_case() {
        let xml = report().to_junit().expect("serializes");
        let parsed = Report::deserialize_from_str(&xml).expect("well-formed JUnit");
        let cases = &parsed.test_suites[0].test_cases;
        assert_eq!(cases.len(), 4);
        assert_eq!(cases[0].name.as_str(), "a<b");
        assert!(matches!(cases[0].status, TestCaseStatus::Success { .. }));
        match &cases[1].status {
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Failure,
                message,
                description,
                ..
            } => {
                assert_eq!(message.as_deref(), Some("restart.policy.never"));
                assert!(description.as_deref().is_some_and(
                    |d| d.starts_with("restart.policy.never [app]: expected no restart")
                ));
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(matches!(
            cases[2].status,
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Error,
                ..
            }
        ));
        assert!(matches!(cases[3].status, TestCaseStatus::Skipped { .. }));
    }
}
