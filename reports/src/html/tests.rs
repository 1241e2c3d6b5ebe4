use crate::tests::report;
use crate::timeline::{
    Band, Expected, Lane, LaneKind, ObservedStart, State, StateSegment, Timeline,
};
use crate::RunReport;

/// A crash loop whose third instance started 7.5s before its window opened.
fn early_restart() -> Timeline {
    let segment = |from_ms, until_ms, instance, state| StateSegment {
        from_ms,
        until_ms,
        instance,
        state,
    };
    let exited = State::Terminated {
        exit_code: 1,
        reason: "Error".to_owned(),
    };
    Timeline {
        observed_until_ms: 40_000,
        horizon_ms: 60_000,
        tolerance_ms: 0,
        phases: Vec::new(),
        lanes: vec![Lane {
            container: "app".to_owned(),
            kind: LaneKind::Regular,
            states: vec![
                segment(0, 2_000, 0, State::Running),
                segment(2_000, 2_000, 0, exited.clone()),
                segment(2_000, 4_000, 1, State::Running),
                segment(4_000, 14_000, 1, exited),
                segment(14_000, 40_000, 2, State::Running),
            ],
            starts: vec![
                ObservedStart {
                    instance: 1,
                    at_ms: 2_000,
                    window: Some((2_000, 4_000)),
                },
                ObservedStart {
                    instance: 2,
                    at_ms: 14_000,
                    window: Some((21_500, 40_000)),
                },
            ],
            flips: Vec::new(),
            predicted: vec![Band {
                instance: 2,
                what: Expected::Start,
                from_ms: 21_500,
                until_ms: 40_000,
                rule: "restart.backoff.doubling".to_owned(),
                label: "restart after the 20s back-off".to_owned(),
            }],
            ticks: Vec::new(),
        }],
        faults: Vec::new(),
        violations: Vec::new(),
    }
}

fn with_timeline(mut report: RunReport) -> RunReport {
    report.cases[1].timeline = Some(early_restart());
    report
}

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

#[test]
fn failing_cases_come_first_with_what_reproduces_them() {
    let mut report = report();
    report.cases[1].manifest = Some("kind: Pod\nmetadata: {name: a}\n".to_owned());
    report.settings.run_options = "--target local --time-scale 0.1".to_owned();
    let html = report.to_html();
    let failing = html.find("id=\"case-1\"").expect("the failing case");
    let passing = html.find("id=\"case-0\"").expect("the passing case");
    assert!(failing < passing, "failing cases first");
    assert!(
        html.contains("podcheck run suites/x.yaml --target local --time-scale 0.1"),
        "{html}"
    );
    assert!(html.contains("kind: Pod\nmetadata: {name: a}"), "{html}");
    assert_eq!(html.matches("<details class=\"reproduce\">").count(), 1);
}

#[test]
fn an_early_restart_is_drawn_with_how_early_it_came() {
    let html = with_timeline(report()).to_html();
    assert_eq!(html.matches("<svg class=\"timeline\"").count(), 1, "{html}");
    assert!(html.contains("restart 2: 7.5s early"), "{html}");
    // The one inside its window gets a plain marker, no label.
    assert!(!html.contains("restart 1:"), "{html}");
}

#[test]
fn filters_name_every_exercised_rule_and_area() {
    let html = report().to_html();
    assert!(
        html.contains("<option value=\"restart.policy.never\">"),
        "{html}"
    );
    assert!(html.contains("<option value=\"restart\">"), "{html}");
    assert!(
        html.contains("data-rules=\"restart.policy.never\" data-areas=\"restart\""),
        "{html}"
    );
}

#[test]
fn hostile_text_is_escaped_everywhere_and_only_the_page_script_exists() {
    let hostile = "</script><script>alert(1)</script>\"'<img src=x onerror=alert(2)>\u{1}";
    let mut report = with_timeline(report());
    for case in &mut report.cases {
        case.verdict.scenario = hostile.to_owned();
        case.description = Some(hostile.to_owned());
        case.source = hostile.to_owned();
        case.manifest = Some(hostile.to_owned());
    }
    report.target = hostile.to_owned();
    report.settings.environment = vec![hostile.to_owned()];
    if let Some(timeline) = report.cases[1].timeline.as_mut() {
        timeline.lanes[0].container = hostile.to_owned();
    }
    report.cases[1].verdict.violations[0].observed = hostile.to_owned();
    let html = report.to_html();
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("alert(1)</script>"), "{html}");
    assert_eq!(html.matches("<script").count(), 1, "{html}");
}
