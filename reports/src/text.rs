//! Violations as plain text, for the terminal and the reports' failure details.

use podcheck_oracle::{RuleId, Verdict};
use std::fmt::Write as _;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::case;
    use podcheck_oracle::{Outcome, Violation};

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
}
