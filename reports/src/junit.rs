//! junit.xml: one test suite per run, one test case per scenario.

use crate::{describe_violations, ReportError, RunReport};
use podcheck_oracle::{Outcome, RuleId};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

impl RunReport {
    /// A failing case's failure names the rules it violates and lists each violation.
    pub fn to_junit(&self) -> Result<String, ReportError> {
        let mut suite = TestSuite::new(self.target.as_str());
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
