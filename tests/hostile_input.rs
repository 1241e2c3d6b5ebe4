//! Hostile scenario text: the suite files with values replaced by out-of-range ones (0,
//! -1, huge numbers, huge and tiny durations, empty strings, nulls), lines dropped or
//! duplicated and values swapped between keys. Whatever of it the oracle accepts must pass
//! on the model under every timing drawn, and nothing may panic (`podcheck::selfcheck`).
//! The inputs the fuzzer (`fuzz/`, docs/fuzzing.md) found are replayed from
//! `fuzz/regressions/`, so they stay fixed without cargo-fuzz.

use podcheck::hostile::{mutate, HostileDuration, HostileInt, HostileValue, TextMutation};
use podcheck::selfcheck::{check_scenario_text, Acceptance};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

/// Every suite file: (path relative to the crate, text).
fn suite_files() -> &'static [(String, String)] {
    static FILES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        yaml_files(&root.join("suites"), &mut paths);
        paths
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
                let name = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                (name, text)
            })
            .collect()
    })
}

/// The values a mutation writes: the edges of integers and durations and the wrong types.
fn hostile_value() -> impl Strategy<Value = HostileValue> {
    use HostileDuration as D;
    use HostileInt as I;
    prop::sample::select(vec![
        HostileValue::Int(I::Zero),
        HostileValue::Int(I::MinusOne),
        HostileValue::Int(I::Small(0)),
        HostileValue::Int(I::Small(2)),
        HostileValue::Int(I::I32Max),
        HostileValue::Int(I::I32Min),
        HostileValue::Int(I::I64Max),
        HostileValue::Int(I::PastI64),
        HostileValue::Int(I::Fraction(1)),
        HostileValue::Int(I::Quoted(3)),
        HostileValue::Int(I::Any(65536)),
        HostileValue::Duration(D::Zero),
        HostileValue::Duration(D::Millis(1)),
        HostileValue::Duration(D::Millis(999)),
        HostileValue::Duration(D::Secs(1)),
        HostileValue::Duration(D::Secs(300)),
        HostileValue::Duration(D::MinSecs(1, 30)),
        HostileValue::Duration(D::Hour),
        HostileValue::Duration(D::PastADay),
        HostileValue::Duration(D::Tiny),
        HostileValue::Duration(D::Huge),
        HostileValue::Duration(D::HugeBare),
        HostileValue::Duration(D::HugeHours),
        HostileValue::Duration(D::Exponent),
        HostileValue::Duration(D::Negative),
        HostileValue::Duration(D::BareFraction(0, 5)),
        HostileValue::EmptyString,
        HostileValue::Null,
        HostileValue::EmptyList,
        HostileValue::EmptyMap,
    ])
}

fn text_mutation() -> impl Strategy<Value = TextMutation> {
    let line = any::<u16>();
    prop_oneof![
        1 => line.prop_map(TextMutation::DropLine),
        1 => line.prop_map(TextMutation::DuplicateLine),
        4 => (line, hostile_value()).prop_map(|(n, v)| TextMutation::ReplaceValue(n, v)),
        4 => (line, hostile_value()).prop_map(|(n, v)| TextMutation::ReplaceNthValue(n, v)),
        2 => (line, line).prop_map(|(a, b)| TextMutation::SwapValues(a, b)),
    ]
}

/// A suite file (by index) and the edits made to it.
fn mutated_suite_file() -> impl Strategy<Value = (usize, Vec<TextMutation>)> {
    (
        0..suite_files().len(),
        prop::collection::vec(text_mutation(), 1..=3),
    )
}

/// Asserts the invariant on one text.
fn assert_invariant(source: &str, text: &str) -> Result<(), TestCaseError> {
    match check_scenario_text(source, text) {
        Ok(_) => Ok(()),
        Err(broken) => Err(TestCaseError::fail(format!("{source}: {broken}"))),
    }
}

proptest! {
    // About 45 edited texts per suite file; a debug build checks them in well under a
    // minute. Failures are kept in tests/hostile_input.proptest-regressions.
    #![proptest_config(Config { cases: 4000, ..Config::default() })]

    #[test]
    fn an_edited_suite_file_is_refused_or_passes_on_the_model((index, mutations) in mutated_suite_file()) {
        let (source, text) = &suite_files()[index];
        let edited = mutate(text, &mutations);
        assert_invariant(source, &edited)?;
    }
}

/// The suite files as they are: every one is accepted, and passes (the edits above start
/// from cases the oracle predicts).
#[test]
fn every_suite_file_is_accepted_and_passes() {
    for (source, text) in suite_files() {
        match check_scenario_text(source, text) {
            Ok(Acceptance::Accepted) => {}
            Ok(Acceptance::Refused(refusal)) => panic!("{source} is refused: {refusal}"),
            Err(broken) => panic!("{source}: {broken}"),
        }
    }
}

/// What the fuzzer found, minimized, stays fixed: each file of `fuzz/regressions/` is
/// refused or passes on the model, without a panic.
#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut paths = Vec::new();
    yaml_files(&dir, &mut paths);
    assert!(!paths.is_empty(), "no regressions in {}", dir.display());
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        let source = path.display().to_string();
        if let Err(failure) = assert_invariant(&source, &text) {
            panic!("{failure}");
        }
    }
}
