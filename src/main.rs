//! The `podcheck` command.

use anyhow::Context;
use clap::{Parser, Subcommand};
use podcheck::fuzz::{fuzz, FuzzOptions};
use podcheck::runner::{load_cases, run_cases, RunOptions};
use podcheck::targets::{self, TargetOptions};
use podcheck_oracle::{predict, rules, Outcome, Scenario, SpecDuration};
use podcheck_reports::{describe_violations, summarize_violations, CaseResult, RunReport};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes CI can use.
const CONFORMANT: u8 = 0;
const NONCONFORMANT: u8 = 1;
const USAGE_OR_TARGET_ERROR: u8 = 2;
/// As shells report death by SIGINT.
const INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "podcheck",
    version,
    about = "Property-based conformance suite for Kubernetes Pod and container lifecycle semantics"
)]
#[command(
    after_help = "Exit status: 0 conformant, 1 nonconformant (a case failed), 2 usage or target error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct TargetArgs {
    /// Where pods run: `local` (the bundled runtime; needs root), `model` (the oracle
    /// itself), or `model:DEVIATION` (the oracle with a planted bug; see `podcheck deviations`).
    #[arg(long, short = 't', default_value = "local")]
    target: String,
    /// Wall seconds per spec second on the local target (0.05: a 10s back-off lasts 0.5s).
    #[arg(long, default_value_t = 0.05)]
    time_scale: f64,
    /// Timing tolerance in wall milliseconds, added to both ends of every predicted window.
    #[arg(long, default_value_t = 250)]
    tolerance_ms: u64,
    /// How many cases run at once (default: what the target allows).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// The podcheck-agent binary (default: next to podcheck, or $PODCHECK_AGENT).
    #[arg(long, env = "PODCHECK_AGENT")]
    agent: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run suite cases (files or directories of *.yaml) on a target and print verdicts.
    Run {
        /// Scenario files or directories.
        #[arg(default_value = "suites")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
        /// Directory for results.json, junit.xml and report.html.
        #[arg(long, short = 'o', default_value = "podcheck-results")]
        output: PathBuf,
        /// Keep every trace in results.json (failing cases always keep theirs).
        #[arg(long)]
        traces: bool,
        /// Seed of the model target's timing choices.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Skip cases the oracle would watch longer than this (spec time), e.g. `3m` on
        /// targets whose time cannot be scaled.
        #[arg(long, value_parser = SpecDuration::parse)]
        max_horizon: Option<SpecDuration>,
    },
    /// Run random scenarios on a target; shrink the first divergence to a minimal scenario.
    Fuzz {
        #[command(flatten)]
        target: TargetArgs,
        /// How many random scenarios to run.
        #[arg(long, default_value_t = 32)]
        cases: u32,
        /// Seed from which every random choice derives (default: from the clock; printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Where the minimal counterexample is written.
        #[arg(long, default_value = "podcheck-results/counterexamples")]
        out: PathBuf,
        /// Skip scenarios the oracle would watch longer than this (spec time).
        #[arg(long, default_value = "900s", value_parser = SpecDuration::parse)]
        max_horizon: SpecDuration,
    },
    /// Print what the oracle predicts for a scenario.
    Predict {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure a target: pod create-to-Running latency and delete time.
    Bench {
        #[command(flatten)]
        target: TargetArgs,
        /// How many pods to create.
        #[arg(long, default_value_t = 50)]
        pods: usize,
        /// How many pods at a time (1 measures latency without contention).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
    },
    /// Build the agent as an OCI image archive (docker-archive format).
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// List the rules catalogue.
    Rules,
    /// List the planted bugs the model target can act out.
    Deviations,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Write the archive; load it with `podman load -i`, `ctr images import` or
    /// `kind load image-archive`.
    Build {
        /// Where to write the archive.
        #[arg(long, short = 'o', default_value = "podcheck-agent.tar")]
        output: PathBuf,
        /// The image reference stored in the archive.
        #[arg(long, default_value = podcheck::image::AGENT_IMAGE)]
        tag: String,
        /// The static podcheck-agent binary (default: the one built with podcheck).
        #[arg(long, env = "PODCHECK_AGENT")]
        agent: Option<PathBuf>,
    },
}

fn target_options(args: &TargetArgs, seed: u64) -> TargetOptions {
    TargetOptions {
        time_scale: args.time_scale,
        tolerance_wall_ms: args.tolerance_ms,
        seed,
        agent_binary: args.agent.clone(),
        jobs: args.jobs,
    }
}

/// Resolves on Ctrl-C or SIGTERM (a CI timeout), so targets can remove what they created.
async fn interrupted() -> &'static str {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => "SIGTERM",
    }
}

/// Runs `work` unless Ctrl-C or SIGTERM comes first; then removes what the target
/// created and returns None.
async fn until_interrupted<T>(
    target: &dyn targets::Target,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        signal = interrupted() => {
            eprintln!("interrupted by {signal}: cleaning up");
            let _ = target.cleanup().await;
            None
        }
    }
}

async fn set_up_target(args: &TargetArgs, seed: u64) -> Option<Box<dyn targets::Target>> {
    match targets::from_spec(&args.target, &target_options(args, seed)).await {
        Ok(target) => Some(target),
        Err(err) => {
            eprintln!("error: failed to set up target {}: {err}", args.target);
            None
        }
    }
}

fn print_result(result: &CaseResult) {
    let v = &result.verdict;
    let label = match v.outcome {
        Outcome::Pass => "PASS ",
        Outcome::Fail => "FAIL ",
        Outcome::Error => "ERROR",
        Outcome::Skipped => "SKIP ",
    };
    let mut out = std::io::stdout().lock();
    let headroom = v
        .timing_headroom_ms
        .filter(|_| v.outcome == Outcome::Pass)
        .map(|ms| format!("  headroom {:.1}s", ms as f64 / 1000.0))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{label} {:<44} {:>6.1}s  {}{headroom}",
        v.scenario,
        result.wall_ms as f64 / 1000.0,
        result.source
    );
    match v.outcome {
        Outcome::Fail => {
            for line in summarize_violations(v, 8).lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
        Outcome::Error | Outcome::Skipped => {
            let _ = writeln!(out, "      {}", v.error.as_deref().unwrap_or(""));
        }
        Outcome::Pass => {}
    }
}

fn write_reports(
    report: &mut RunReport,
    output: &PathBuf,
    keep_traces: bool,
) -> anyhow::Result<()> {
    if !keep_traces {
        for case in &mut report.cases {
            if case.verdict.outcome == Outcome::Pass {
                case.trace = None;
            }
        }
    }
    std::fs::create_dir_all(output)
        .with_context(|| format!("failed to create {}", output.display()))?;
    for (file, text) in [
        ("results.json", report.to_json()),
        ("junit.xml", report.to_junit()),
        ("report.html", report.to_html()),
    ] {
        let path = output.join(file);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

async fn run(
    paths: Vec<PathBuf>,
    args: TargetArgs,
    output: PathBuf,
    traces: bool,
    seed: u64,
    max_horizon: Option<SpecDuration>,
) -> anyhow::Result<u8> {
    let cases = match load_cases(&paths) {
        Ok(cases) => cases,
        Err(errors) => {
            for error in errors {
                eprintln!("error: failed to load a scenario: {error}");
            }
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    if cases.is_empty() {
        eprintln!("error: no scenarios found under {paths:?}");
        return Ok(USAGE_OR_TARGET_ERROR);
    }
    let Some(target) = set_up_target(&args, seed).await else {
        return Ok(USAGE_OR_TARGET_ERROR);
    };
    println!(
        "podcheck {}: {} cases on target {}",
        env!("CARGO_PKG_VERSION"),
        cases.len(),
        target.name()
    );
    let total = cases.len();
    let mut done = 0usize;
    let options = RunOptions {
        keep_traces: true,
        max_horizon,
    };
    let run = run_cases(target.as_ref(), &cases, &options, |result| {
        done += 1;
        print_result(result);
        if done % 10 == 0 && done < total {
            println!("      ... {done}/{total} done");
        }
    });
    let Some(mut report) = until_interrupted(target.as_ref(), run).await else {
        return Ok(INTERRUPTED);
    };
    let _ = target.cleanup().await;
    let totals = report.totals();
    if totals.failed > 0 {
        println!("violated rules (cases):");
        for (rule, cases) in report.violated_rules() {
            println!("  {rule:<42} {cases}");
        }
    }
    println!(
        "{} passed, {} failed, {} errors, {} skipped in {:.1}s (target {})",
        totals.passed,
        totals.failed,
        totals.errors,
        totals.skipped,
        report.wall_ms as f64 / 1000.0,
        report.target
    );
    write_reports(&mut report, &output, traces)?;
    println!(
        "results: {}/results.json, {}/junit.xml, {}/report.html",
        output.display(),
        output.display(),
        output.display()
    );
    Ok(if totals.failed > 0 {
        NONCONFORMANT
    } else if totals.errors > 0 {
        USAGE_OR_TARGET_ERROR
    } else if totals.skipped == report.cases.len() {
        // Nothing ran: claiming conformance would be a lie.
        eprintln!("error: every case was skipped on target {}", report.target);
        USAGE_OR_TARGET_ERROR
    } else {
        CONFORMANT
    })
}

async fn run_fuzz(
    args: TargetArgs,
    cases: u32,
    seed: Option<u64>,
    out: PathBuf,
    max_horizon: SpecDuration,
) -> anyhow::Result<u8> {
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let Some(target) = set_up_target(&args, seed).await else {
        return Ok(USAGE_OR_TARGET_ERROR);
    };
    println!(
        "podcheck fuzz: {cases} random scenarios on target {}, seed {seed}",
        target.name()
    );
    println!(
        "reproduce with: podcheck fuzz --target {} --cases {cases} --seed {seed}",
        args.target
    );
    let options = FuzzOptions {
        cases,
        seed,
        out_dir: out,
        max_shrink_steps: 64,
        max_horizon,
    };
    let mut done = 0u32;
    let fuzzing = fuzz(target.as_ref(), &options, |result| {
        done += 1;
        if result.verdict.outcome != Outcome::Pass {
            print_result(result);
        } else if done % 10 == 0 {
            println!("      ... {done}/{cases} conform so far");
        }
    });
    let Some(report) = until_interrupted(target.as_ref(), fuzzing).await else {
        return Ok(INTERRUPTED);
    };
    let _ = target.cleanup().await;
    let report = match report {
        Ok(r) => r,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    match report.counterexample {
        None => {
            println!(
                "{} scenarios conform ({} target errors)",
                report.cases_run, report.target_errors
            );
            Ok(if report.target_errors > 0 {
                USAGE_OR_TARGET_ERROR
            } else {
                CONFORMANT
            })
        }
        Some(found) => {
            println!(
                "divergence found among {} scenarios; minimal scenario after {} shrinking steps:",
                report.cases_run, found.shrink_steps
            );
            println!("{}", found.scenario.to_yaml());
            print!("{}", describe_violations(&found.result.verdict));
            println!(
                "saved to {}; replay with: podcheck run {} --target {}",
                found.saved_to.display(),
                found.saved_to.display(),
                args.target
            );
            Ok(NONCONFORMANT)
        }
    }
}

async fn bench(args: TargetArgs, pods: usize, concurrency: usize) -> anyhow::Result<u8> {
    let Some(target) = set_up_target(&args, 0).await else {
        return Ok(USAGE_OR_TARGET_ERROR);
    };
    let started = std::time::Instant::now();
    let measured = podcheck::bench::create_to_running(target.as_ref(), pods, concurrency).await;
    let probes =
        podcheck::bench::probe_overhead(target.as_ref(), std::time::Duration::from_secs(5)).await;
    let _ = target.cleanup().await;
    let (create, delete) = match measured {
        Ok(m) => m,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!(
        "target {}: {pods} pods, {concurrency} at a time, {:.1}s in all",
        target.name(),
        started.elapsed().as_secs_f64()
    );
    for (label, l) in [("create to Running", &create), ("delete", &delete)] {
        println!(
            "  {label:<18} mean {:7.2} ms  p50 {:7.2} ms  p90 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms",
            ms(l.mean()),
            ms(l.percentile(50.0)),
            ms(l.percentile(90.0)),
            ms(l.percentile(99.0)),
            ms(l.percentile(100.0))
        );
    }
    match probes {
        Ok(probes) => {
            for (handler, l) in &probes {
                println!(
                    "  probe {handler:<12} mean {:7.2} ms  p50 {:7.2} ms  p90 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms  ({} probes)",
                    ms(l.mean()),
                    ms(l.percentile(50.0)),
                    ms(l.percentile(90.0)),
                    ms(l.percentile(99.0)),
                    ms(l.percentile(100.0)),
                    l.samples.len()
                );
            }
        }
        Err(err) => eprintln!("warning: the probe measurement failed: {err}"),
    }
    Ok(CONFORMANT)
}

fn print_prediction(file: PathBuf, json: bool) -> anyhow::Result<u8> {
    let scenario = match Scenario::from_file(&file) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: failed to load a scenario: {err}");
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    let prediction = match predict(&scenario) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(USAGE_OR_TARGET_ERROR);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&prediction)?);
        return Ok(CONFORMANT);
    }
    println!(
        "scenario {} (restartPolicy {}), observed for {}",
        prediction.scenario,
        prediction.restart_policy.as_str(),
        prediction.horizon
    );
    for plan in &prediction.containers {
        println!("container {}:", plan.name);
        for instance in &plan.instances {
            let from = if instance.index == 0 {
                "pod creation".to_owned()
            } else {
                format!("exit of instance {}", instance.index - 1)
            };
            let run = match instance.end() {
                Some(end) if end.killed_by.is_some() => format!(
                    "killed by its {:?} probe [{}, {}] after its start (exit {})",
                    end.killed_by
                        .unwrap_or(podcheck_oracle::probes::ProbeKind::Liveness),
                    end.lo,
                    end.hi,
                    end.code
                ),
                Some(end) => format!("runs {}, exits {}", end.lo, end.code),
                None => "runs forever".to_owned(),
            };
            let then = match instance.after_exit {
                Some(podcheck_oracle::plan::AfterExit::StaysTerminated) => ", stays terminated",
                _ => "",
            };
            println!(
                "  instance {}: starts [{}, {}] after {from} ({}); {run}{then}",
                instance.index, instance.start_after.0, instance.start_after.1, instance.start_rule
            );
            if let Some(probes) = &instance.probes {
                match &probes.started {
                    Some(w) if w.hi.is_zero() => {}
                    Some(w) => println!("    started within [{}, {}] after its start", w.lo, w.hi),
                    None => println!("    never started"),
                }
                for flip in &probes.ready {
                    println!(
                        "    ready turns {} within [{}, {}] after its start",
                        flip.to, flip.window.lo, flip.window.hi
                    );
                }
                if probes.ready.is_empty() && probes.probes.readiness.is_some() {
                    println!("    never ready");
                }
            }
        }
        if !plan.settles {
            println!("  ... keeps crash-looping");
        }
    }
    match prediction.terminal_phase {
        Some(phase) => println!("pod: becomes {phase}"),
        None => println!("pod: never terminal"),
    }
    let rules: Vec<&str> = prediction.rules.iter().map(|r| r.as_str()).collect();
    println!("rules: {}", rules.join(", "));
    Ok(CONFORMANT)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(err) => {
            eprintln!("error: failed to start the async runtime: {err}");
            return ExitCode::from(USAGE_OR_TARGET_ERROR);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                paths,
                target,
                output,
                traces,
                seed,
                max_horizon,
            } => run(paths, target, output, traces, seed, max_horizon).await,
            Command::Fuzz {
                target,
                cases,
                seed,
                out,
                max_horizon,
            } => run_fuzz(target, cases, seed, out, max_horizon).await,
            Command::Predict { file, json } => print_prediction(file, json),
            Command::Bench {
                target,
                pods,
                concurrency,
            } => bench(target, pods, concurrency).await,
            Command::Image {
                command: ImageCommand::Build { output, tag, agent },
            } => {
                let agent = match targets::local::find_agent(agent.as_ref()) {
                    Ok(agent) => agent,
                    Err(err) => {
                        eprintln!("error: {err}");
                        return Ok(USAGE_OR_TARGET_ERROR);
                    }
                };
                match podcheck::image::build_agent_archive(&agent, &output, &tag) {
                    Ok(image) => {
                        println!(
                            "{} -> {} ({} bytes)",
                            image.reference,
                            output.display(),
                            image.size
                        );
                        println!("image id {}", image.config_digest);
                        Ok(CONFORMANT)
                    }
                    Err(err) => {
                        eprintln!("error: {err}");
                        Ok(USAGE_OR_TARGET_ERROR)
                    }
                }
            }
            Command::Rules => {
                for rule in rules::CATALOGUE {
                    println!("{:<42} {}", rule.id, rule.statement);
                    for source in rule.sources {
                        println!("{:<42}   - {source}", "");
                    }
                }
                Ok(CONFORMANT)
            }
            Command::Deviations => {
                for deviation in podcheck_oracle::simulate::Deviation::ALL {
                    println!("model:{}", deviation.name());
                }
                Ok(CONFORMANT)
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(USAGE_OR_TARGET_ERROR)
        }
    }
}
