//! The kube target and `podcheck certify` as a user runs them.
//!
//! Without a cluster: what a user sees when the kubeconfig, its context or the API server
//! is wrong (exit 2 and the reason, before any case), and the certification bundle
//! (written from a run on the model target, whose bundle has the same files).
//!
//! With a cluster (`PODCHECK_KUBECONFIG=PATH`, optionally `PODCHECK_CONTEXT`,
//! `PODCHECK_AGENT_IMAGE`): suite cases end in verdicts, nothing of the run is left
//! behind, also after Ctrl-C. Without one these tests are skipped with that reason, under
//! `CI=true` too: CI has no cluster.

mod common;

use libtest_mimic::{Arguments, Failed, Trial};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("podcheck-kube-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn podcheck(args: &[&str], kubeconfig: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podcheck"))
        .args(args)
        .current_dir(manifest_dir())
        .env("KUBECONFIG", kubeconfig)
        .env(
            "HOME",
            kubeconfig.parent().unwrap_or(Path::new("/nonexistent")),
        )
        .stdin(Stdio::null())
        .output()
        .expect("podcheck runs")
}

fn kubeconfig(dir: &Path, server: &str, contexts: &[&str]) -> PathBuf {
    let mut text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n"
    );
    for context in contexts {
        text.push_str(&format!(
            "- name: {context}\n  context:\n    cluster: c\n    user: u\n"
        ));
    }
    if let Some(first) = contexts.first() {
        text.push_str(&format!("current-context: {first}\n"));
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

fn expect_setup_error(output: &Output, needle: &str) -> Result<(), Failed> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() != Some(2) {
        return Err(format!("exit {:?}, expected 2\n{stderr}", output.status.code()).into());
    }
    if !stderr.contains(needle) {
        return Err(format!("stderr lacks {needle:?}:\n{stderr}").into());
    }
    if stdout.contains("PASS") || stdout.contains("FAIL") {
        return Err(format!("cases ran before the target was set up:\n{stdout}").into());
    }
    Ok(())
}

fn a_missing_kubeconfig_is_named() -> Result<(), Failed> {
    let dir = scratch("missing");
    let output = podcheck(
        &[
            "run",
            "suites/restart/never-exit-0-succeeds.yaml",
            "--target",
            "kube",
        ],
        &dir.join("no-such-kubeconfig"),
    );
    expect_setup_error(&output, "cannot read a kubeconfig")?;
    expect_setup_error(&output, "KUBECONFIG")
}

fn an_unknown_context_lists_the_known_ones() -> Result<(), Failed> {
    let dir = scratch("context");
    let config = kubeconfig(&dir, "http://127.0.0.1:9", &["prod", "staging"]);
    let output = podcheck(
        &[
            "run",
            "suites/restart/never-exit-0-succeeds.yaml",
            "--target",
            "kube:dev",
        ],
        &config,
    );
    expect_setup_error(&output, "no context \"dev\"; known: prod, staging")
}

fn an_unreachable_cluster_is_an_error_before_any_case() -> Result<(), Failed> {
    let dir = scratch("unreachable");
    // A port nothing listens on: the connection is refused at once.
    let config = kubeconfig(&dir, "http://127.0.0.1:9", &["prod"]);
    let output = podcheck(
        &["certify", "suites/restart", "--target", "kube", "-o"],
        &config,
    );
    // `-o` without a value is a usage error; the real call follows.
    if output.status.code() != Some(2) {
        return Err("a missing -o value must be a usage error".into());
    }
    let bundle = dir.join("bundle.tar.gz");
    let output = podcheck(
        &[
            "certify",
            "suites/restart",
            "-o",
            &bundle.display().to_string(),
        ],
        &config,
    );
    expect_setup_error(
        &output,
        "cannot reach the API server of context \"prod\" at http://127.0.0.1:9",
    )?;
    if bundle.exists() {
        return Err("a bundle was written for a cluster that was never reached".into());
    }
    Ok(())
}

/// The bundle's files, by path inside the archive.
fn read_bundle(path: &Path) -> Result<std::collections::BTreeMap<String, String>, Failed> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let name = entry
            .path()
            .map_err(|e| e.to_string())?
            .display()
            .to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(|e| e.to_string())?;
        files.insert(name, text);
    }
    Ok(files)
}

fn certify_writes_a_bundle_with_everything_it_assumed() -> Result<(), Failed> {
    let dir = scratch("bundle");
    let bundle = dir.join("cert.tar.gz");
    let output = podcheck(
        &[
            "certify",
            "suites/restart",
            "--target",
            "model",
            "-o",
            &bundle.display().to_string(),
        ],
        &dir.join("unused"),
    );
    if output.status.code() != Some(0) {
        return Err(format!(
            "certify on model: {:?}\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let files = read_bundle(&bundle)?;
    for name in [
        "results.json",
        "junit.xml",
        "report.html",
        "environment.json",
        "rules.json",
        "README.txt",
    ] {
        let path = format!("cert/{name}");
        if files.get(&path).is_none_or(|text| text.is_empty()) {
            return Err(format!("{path} missing or empty; bundle has {:?}", files.keys()).into());
        }
    }
    let cases = std::fs::read_dir(manifest_dir().join("suites/restart"))
        .map_err(|e| e.to_string())?
        .count();
    let manifests = files
        .keys()
        .filter(|k| k.starts_with("cert/manifests/"))
        .count();
    if manifests != cases {
        return Err(format!("{manifests} manifests for {cases} cases").into());
    }
    let manifest = &files["cert/manifests/never-exit-0-succeeds.yaml"];
    if !manifest.contains("image: podcheck.local/agent")
        || !manifest.contains("restartPolicy: Never")
    {
        return Err(format!("the manifest is not the applied pod:\n{manifest}").into());
    }
    let environment: serde_json::Value =
        serde_json::from_str(&files["cert/environment.json"]).map_err(|e| e.to_string())?;
    if environment["podcheckVersion"] != env!("CARGO_PKG_VERSION")
        || environment["environment"]["target"] != "model"
    {
        return Err(format!("environment.json: {environment}").into());
    }
    let rules: serde_json::Value =
        serde_json::from_str(&files["cert/rules.json"]).map_err(|e| e.to_string())?;
    let sourced = rules.as_array().is_some_and(|r| {
        !r.is_empty()
            && r.iter()
                .all(|r| r["sources"].as_array().is_some_and(|s| !s.is_empty()))
    });
    if !sourced {
        return Err("every rule in rules.json carries its sources".into());
    }
    if !files["cert/README.txt"].contains("0 failed") {
        return Err(format!("README.txt: {}", files["cert/README.txt"]).into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = vec![
        Trial::test(
            "kube/setup/missing-kubeconfig",
            a_missing_kubeconfig_is_named,
        ),
        Trial::test(
            "kube/setup/unknown-context",
            an_unknown_context_lists_the_known_ones,
        ),
        Trial::test(
            "kube/setup/unreachable",
            an_unreachable_cluster_is_an_error_before_any_case,
        ),
        Trial::test(
            "certify/bundle",
            certify_writes_a_bundle_with_everything_it_assumed,
        ),
    ];
    trials.extend(cluster::trials(&args));
    libtest_mimic::run(&args, trials).exit();
}

mod cluster {
    //! Tests against a real cluster, named by `PODCHECK_KUBECONFIG`.

    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use kube::api::ListParams;
    use kube::{Api, Client};

    /// Short cases: one that completes, one that restarts once, one that crash-loops.
    const CASES: &[&str] = &[
        "suites/restart/never-exit-0-succeeds.yaml",
        "suites/restart/never-exit-1-fails.yaml",
        "suites/restart/always-crash-then-run.yaml",
    ];

    fn needs_cluster() -> Result<(), String> {
        match std::env::var_os("PODCHECK_KUBECONFIG") {
            Some(path) if Path::new(&path).is_file() => Ok(()),
            Some(path) => Err(format!("PODCHECK_KUBECONFIG={} is not a file", Path::new(&path).display())),
            None => Err("they need a cluster: set PODCHECK_KUBECONFIG to its kubeconfig (and PODCHECK_CONTEXT, PODCHECK_AGENT_IMAGE if not the defaults)".to_owned()),
        }
    }

    fn kubeconfig() -> PathBuf {
        PathBuf::from(std::env::var_os("PODCHECK_KUBECONFIG").unwrap_or_default())
    }

    fn target() -> String {
        match std::env::var("PODCHECK_CONTEXT") {
            Ok(context) => format!("kube:{context}"),
            Err(_) => "kube".to_owned(),
        }
    }

    fn run_args(output: &Path, cases: &[&str]) -> Vec<String> {
        let mut args = vec!["run".to_owned()];
        args.extend(cases.iter().map(|c| c.to_string()));
        args.extend([
            "--target".to_owned(),
            target(),
            "-o".to_owned(),
            output.display().to_string(),
        ]);
        if let Ok(image) = std::env::var("PODCHECK_AGENT_IMAGE") {
            args.extend(["--agent-image".to_owned(), image]);
        }
        args
    }

    /// Namespaces and pods any podcheck run left on the cluster (none is running now).
    async fn leftovers() -> Result<Vec<String>, Failed> {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(kubeconfig()).map_err(|e| e.to_string())?,
            &kube::config::KubeConfigOptions {
                context: std::env::var("PODCHECK_CONTEXT").ok(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let client = Client::try_from(config).map_err(|e| e.to_string())?;
        let mut left = Vec::new();
        let selector = ListParams::default().labels("app.kubernetes.io/managed-by=podcheck");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in namespaces
            .list(&selector)
            .await
            .map_err(|e| e.to_string())?
        {
            left.push(format!(
                "namespace {}",
                ns.metadata.name.unwrap_or_default()
            ));
        }
        let pods: Api<Pod> = Api::all(client);
        let run_pods = ListParams::default().labels("podcheck.io/run");
        for pod in pods.list(&run_pods).await.map_err(|e| e.to_string())? {
            left.push(format!(
                "pod {}/{}",
                pod.metadata.namespace.unwrap_or_default(),
                pod.metadata.name.unwrap_or_default()
            ));
        }
        Ok(left)
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, Failed> {
        Ok(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(future))
    }

    fn suite_cases_end_in_verdicts_and_leave_nothing() -> Result<(), Failed> {
        let dir = scratch("cluster-run");
        let args = run_args(&dir, CASES);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = podcheck(&args, &kubeconfig());
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !matches!(output.status.code(), Some(0 | 1)) {
            return Err(format!(
                "exit {:?}: not a verdict\n{stdout}\n{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let results: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("results.json")).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let cases = results["cases"].as_array().cloned().unwrap_or_default();
        if cases.len() != CASES.len() {
            return Err(format!("{} results for {} cases", cases.len(), CASES.len()).into());
        }
        for case in &cases {
            let outcome = case["verdict"]["outcome"].as_str().unwrap_or_default();
            if !matches!(outcome, "pass" | "fail") {
                return Err(format!(
                    "{}: {outcome}: {}",
                    case["verdict"]["scenario"], case["verdict"]["error"]
                )
                .into());
            }
            let snapshots = case["trace"]["snapshots"].as_array().map_or(0, Vec::len);
            let versions = case["trace"]["snapshots"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|s| s["metadata"]["resourceVersion"].is_string());
            if snapshots == 0 || !versions {
                return Err(format!(
                    "{}: snapshots from the watch carry resourceVersions",
                    case["verdict"]["scenario"]
                )
                .into());
            }
        }
        let left = block_on(leftovers())??;
        if !left.is_empty() {
            return Err(format!("left behind: {left:?}").into());
        }
        Ok(())
    }

    /// Starts a run of one long case, waits until `ready` says the run got far enough,
    /// sends SIGINT as Ctrl-C does, and checks the exit status and what is left.
    fn interrupt_when(what: &str, ready: impl Fn(&[String]) -> bool) -> Result<(), Failed> {
        let dir = scratch("cluster-interrupt");
        let args = run_args(&dir, &["suites/restart/always-crash-loop-backoff.yaml"]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_podcheck"))
            .args(&args)
            .current_dir(manifest_dir())
            .env("KUBECONFIG", kubeconfig())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        loop {
            let left = block_on(leftovers())??;
            if ready(&left) {
                break;
            }
            if started.elapsed() > std::time::Duration::from_secs(180) {
                let _ = child.kill();
                return Err(format!("the run did not get {what} within 180s").into());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status();
        if !sent.is_ok_and(|s| s.success()) {
            return Err("could not send SIGINT".into());
        }
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if output.status.code() != Some(130) {
            return Err(format!(
                "Ctrl-C {what}: exit {:?}, expected 130\n{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let left = block_on(leftovers())??;
        if !left.is_empty() {
            return Err(format!("left behind after Ctrl-C {what}: {left:?}").into());
        }
        Ok(())
    }

    /// One trial, in order: the steps share the cluster, and each checks that it holds
    /// nothing of podcheck's afterwards.
    fn runs_end_in_verdicts_and_leave_nothing() -> Result<(), Failed> {
        needs_cluster()?;
        let before = block_on(leftovers())??;
        if !before.is_empty() {
            return Err(format!("the cluster already holds podcheck objects: {before:?}").into());
        }
        suite_cases_end_in_verdicts_and_leave_nothing()?;
        // During set-up: the namespace exists, the pre-flight runs.
        interrupt_when("during set-up", |left| {
            left.iter().any(|l| l.starts_with("namespace "))
        })?;
        // During a case: its pod exists.
        interrupt_when("during a case", |left| {
            left.iter()
                .any(|l| l.starts_with("pod ") && l.contains("/always-crash-loop-backoff-"))
        })
    }

    pub fn trials(args: &Arguments) -> Vec<Trial> {
        let missing = needs_cluster().err();
        common::note_skipped(args, "the tests against a cluster", missing.as_ref());
        vec![Trial::test(
            "kube/cluster/runs-end-in-verdicts-and-leave-nothing",
            runs_end_in_verdicts_and_leave_nothing,
        )
        .with_ignored_flag(missing.is_some())]
    }
}
