//! The `podcheck` command as a user runs it: its output read by a program that stops
//! early (`podcheck rules | head -3`). The command must finish quietly, with the exit
//! status it would have had, and write its report files.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs podcheck with stdout connected to a reader that has already gone: every write
/// to it fails with a broken pipe, as `head` leaves it once it has read its lines.
fn run_with_stdout_closed(args: &[&str]) -> Output {
    let (reader, writer) = UnixStream::pair().expect("socket pair");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_podcheck"))
        .args(args)
        .current_dir(manifest_dir())
        .stdout(Stdio::from(OwnedFd::from(writer)))
        .stderr(Stdio::piped())
        .output()
        .expect("podcheck runs")
}

fn assert_quiet_success(args: &[&str]) -> Output {
    let output = run_with_stdout_closed(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "podcheck {args:?} with stdout closed: {}\n{stderr}",
        output.status
    );
    output
}

#[test]
fn listing_commands_exit_quietly_when_the_reader_stops() {
    assert_quiet_success(&["rules"]);
    assert_quiet_success(&["deviations"]);
}

#[test]
fn predict_exits_quietly_when_the_reader_stops() {
    let scenario = "suites/restart/always-crash-loop-backoff.yaml";
    assert_quiet_success(&["predict", scenario]);
    assert_quiet_success(&["predict", "--json", scenario]);
}

#[test]
fn run_finishes_and_writes_its_reports_when_the_reader_stops() {
    let output_dir: PathBuf =
        std::env::temp_dir().join(format!("podcheck-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&output_dir);
    let output_arg = output_dir.display().to_string();
    assert_quiet_success(&[
        "run",
        "suites/restart",
        "--target",
        "model",
        "--output",
        &output_arg,
    ]);
    for file in ["results.json", "junit.xml", "report.html"] {
        let written = std::fs::metadata(output_dir.join(file)).map(|m| m.len());
        assert!(
            written.as_ref().is_ok_and(|len| *len > 0),
            "{file} not written: {written:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&output_dir);
}

#[test]
fn a_failing_run_still_fails_when_the_reader_stops() {
    let output_dir: PathBuf =
        std::env::temp_dir().join(format!("podcheck-cli-test-failing-{}", std::process::id()));
    let output_arg = output_dir.display().to_string();
    let output = run_with_stdout_closed(&[
        "run",
        "suites/restart",
        "--target",
        "model:no-back-off-doubling",
        "--output",
        &output_arg,
    ]);
    let _ = std::fs::remove_dir_all(&output_dir);
    assert_eq!(
        output.status.code(),
        Some(1),
        "nonconformant: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_scenario_with_a_field_the_oracle_does_not_model_is_a_usage_error_naming_it() {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "podcheck-cli-test-resources-{}.yaml",
        std::process::id()
    ));
    let scenario = "name: limited\npod:\n  spec:\n    containers:\n      - name: app\n        resources: {limits: {memory: 64Mi}}\nbehaviours:\n  app: {then: forever}\n";
    std::fs::write(&path, scenario).expect("scenario written");
    let output = Command::new(env!("CARGO_BIN_EXE_podcheck"))
        .args(["predict", &path.display().to_string()])
        .current_dir(manifest_dir())
        .output()
        .expect("podcheck runs");
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`pod.spec.containers[0].resources`") && stderr.contains("not modelled"),
        "{stderr}"
    );
}

/// `podcheck` with stdout and stderr captured, run from the repository.
fn podcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podcheck"))
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .expect("podcheck runs")
}

#[test]
fn report_puts_runs_side_by_side_and_names_a_file_it_cannot_read() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("podcheck-cli-test-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (target, out) in [
        ("model", "correct"),
        ("model:no-back-off-doubling", "buggy"),
    ] {
        let out = dir.join(out).display().to_string();
        podcheck(&[
            "run",
            "suites/restart/always-crash-loop-backoff.yaml",
            "--target",
            target,
            "--output",
            &out,
        ]);
    }
    let page = dir.join("side-by-side.html");
    let correct = dir.join("correct/results.json").display().to_string();
    let buggy = dir.join("buggy/results.json").display().to_string();
    let output = podcheck(&[
        "report",
        &correct,
        &buggy,
        "-o",
        &page.display().to_string(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let html = std::fs::read_to_string(&page).expect("the page is written");
    assert!(
        html.contains("<th>model</th><th>model:no-back-off-doubling</th>"),
        "one column per run"
    );
    assert!(
        html.contains("<td class=\"fail\">FAIL</td>"),
        "the buggy run fails"
    );

    let malformed = dir.join("malformed.json");
    std::fs::write(&malformed, "{\"target\": \"local\", \"cases\": [").expect("written");
    let malformed = malformed.display().to_string();
    let output = podcheck(&["report", &correct, &malformed]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&malformed) && stderr.contains("is not a podcheck results.json"),
        "{stderr}"
    );
    let missing = dir.join("missing.json").display().to_string();
    let output = podcheck(&["report", &missing]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("failed to read {missing}")),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `text` as a scenario file of its own and runs `podcheck run FILE --target model`.
fn run_scenario_text(stem: &str, text: &str) -> (Output, String) {
    let dir = std::env::temp_dir().join(format!("podcheck-cli-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let path = dir.join(format!("{stem}.yaml"));
    std::fs::write(&path, text).expect("scenario written");
    let output = Command::new(env!("CARGO_BIN_EXE_podcheck"))
        .args([
            "run",
            &path.display().to_string(),
            "--target",
            "model",
            "-o",
        ])
        .arg(dir.join("results"))
        .current_dir(manifest_dir())
        .output()
        .expect("podcheck runs");
    let _ = std::fs::remove_dir_all(&dir);
    (output, path.display().to_string())
}

/// A suite file with one line replaced, as a user's edit would leave it.
fn suite_file_with(path: &str, old: &str, new: &str) -> String {
    let text = std::fs::read_to_string(manifest_dir().join(path)).expect("suite file");
    assert_eq!(text.matches(old).count(), 1, "{old:?} in {path}");
    text.replace(old, new)
}

#[test]
fn an_observation_window_too_short_to_show_the_pod_running_is_refused_naming_file_line_and_field() {
    for window in ["0", "0.001", "2s"] {
        let text = suite_file_with(
            "suites/restart/run-forever-ready.yaml",
            "behaviours:\n",
            &format!("observeFor: {window}\nbehaviours:\n"),
        );
        let line = text
            .lines()
            .position(|l| l.starts_with("observeFor"))
            .expect("written")
            + 1;
        let (output, path) = run_scenario_text("too-short", &text);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "observeFor {window}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{path}:{line}: field `observeFor`"))
                && stderr.contains("observe for at least"),
            "observeFor {window}: {stderr}"
        );
    }
}

#[test]
fn a_duration_past_the_maximum_is_refused_naming_file_line_and_field() {
    let text = suite_file_with(
        "suites/restart/always-crash-then-run.yaml",
        "exit: {after: 1s, code: 2}",
        "exit: {after: 999999999999999999992s, code: 2}",
    );
    let line = text
        .lines()
        .position(|l| l.contains("99999"))
        .expect("written")
        + 1;
    let (output, path) = run_scenario_text("too-long", &text);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{path}:{line}: field `behaviours.app.starts[1].exit.after`"
        )) && stderr.contains("longer than the maximum of 24h"),
        "{stderr}"
    );
}
