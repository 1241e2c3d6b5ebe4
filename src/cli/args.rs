//! The command line: what each subcommand accepts.

use clap::{Args, Parser, Subcommand};
use podcheck::targets::{TargetOptions, TARGET_HELP};
use podcheck_oracle::SpecDuration;
use podcheck_reports::shell_word;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "podcheck",
    version,
    about = "Property-based conformance suite for Kubernetes Pod and container lifecycle semantics"
)]
#[command(
    after_help = "Exit status: 0 conformant, 1 nonconformant (a case failed), 2 usage or target error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `--time-scale` unless given.
pub const DEFAULT_TIME_SCALE: f64 = 0.05;
/// `--tolerance-ms` unless given.
pub const DEFAULT_TOLERANCE_MS: u64 = 250;

#[derive(Args, Clone)]
pub struct TargetArgs {
    #[arg(long, short = 't', help = TARGET_HELP, long_help = format!("{TARGET_HELP}. Default: local (kube for certify)"))]
    pub target: Option<String>,
    /// Wall seconds per spec second on the local target (0.05: a 10s back-off lasts 0.5s).
    #[arg(long, default_value_t = DEFAULT_TIME_SCALE)]
    pub time_scale: f64,
    /// Timing tolerance in wall milliseconds, added to both ends of every predicted window.
    #[arg(long, default_value_t = DEFAULT_TOLERANCE_MS)]
    pub tolerance_ms: u64,
    /// How many cases run at once (default: what the target allows).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// The podcheck-agent binary (default: next to podcheck, or $PODCHECK_AGENT).
    #[arg(long, env = "PODCHECK_AGENT")]
    pub agent: Option<PathBuf>,
    /// kube: where the cluster's nodes find the agent image that `podcheck image build`
    /// wrote (pushed to a registry, or loaded into the nodes).
    #[arg(long, env = "PODCHECK_AGENT_IMAGE", value_name = "REF", default_value = podcheck::image::AGENT_IMAGE)]
    pub agent_image: String,
    /// kube: the agent image's pull policy.
    #[arg(long, default_value = podcheck::targets::kube::DEFAULT_PULL_POLICY, value_parser = ["IfNotPresent", "Never", "Always"])]
    pub image_pull_policy: String,
    /// kube: the nodes' KubeletConfiguration file (feature gates, crashLoopBackOff), if
    /// their configz cannot be read through the API server.
    #[arg(long, value_name = "FILE")]
    pub kubelet_config: Option<PathBuf>,
}

impl TargetArgs {
    /// The target named, or the subcommand's default.
    pub fn spec<'a>(&'a self, default: &'a str) -> &'a str {
        self.target.as_deref().unwrap_or(default)
    }

    /// The options of `podcheck run` that set the target up as these arguments do, for a
    /// command that reproduces one case: the target, and every setting not at its default.
    pub fn reproduce_options(&self, default: &str, seed: u64, to_horizon: bool) -> String {
        let mut options = format!("--target {}", shell_word(self.spec(default)));
        if self.time_scale != DEFAULT_TIME_SCALE {
            options += &format!(" --time-scale {}", self.time_scale);
        }
        if self.tolerance_ms != DEFAULT_TOLERANCE_MS {
            options += &format!(" --tolerance-ms {}", self.tolerance_ms);
        }
        if self.agent_image != podcheck::image::AGENT_IMAGE {
            options += &format!(" --agent-image {}", shell_word(&self.agent_image));
        }
        if let Some(config) = &self.kubelet_config {
            options += &format!(
                " --kubelet-config {}",
                shell_word(&config.display().to_string())
            );
        }
        if seed != 0 {
            options += &format!(" --seed {seed}");
        }
        if to_horizon {
            options += " --to-horizon";
        }
        options
    }

    pub fn options(&self, seed: u64) -> TargetOptions {
        TargetOptions {
            time_scale: self.time_scale,
            tolerance_wall_ms: self.tolerance_ms,
            seed,
            agent_binary: self.agent.clone(),
            jobs: self.jobs,
            agent_image: Some(self.agent_image.clone()),
            image_pull_policy: Some(self.image_pull_policy.clone()),
            kubelet_config: self.kubelet_config.clone(),
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run suite cases (files or directories of *.yaml) on a target and print verdicts.
    Run(RunArgs),
    /// Run random scenarios on a target; reduce every distinct divergence to a minimal scenario.
    Fuzz(FuzzArgs),
    /// Certify a cluster: run every applicable suite case on it and write one bundle
    /// (results, JUnit, HTML report, the manifests applied, the cluster's versions and node
    /// configuration, the rule catalogue) as a .tar.gz.
    Certify(CertifyArgs),
    /// Print what the oracle predicts for a scenario.
    Predict(PredictArgs),
    /// Measure a target: pod create-to-Running latency and delete time.
    Bench(BenchArgs),
    /// Build the agent as an OCI image archive (docker-archive format).
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Render one page from several runs' results.json (a local runtime, podman, a
    /// cluster): a rules × targets matrix and each case's verdicts and timelines side by side.
    Report(ReportArgs),
    /// List the rules catalogue.
    Rules,
    /// List the planted bugs the model target can act out.
    Deviations,
}

#[derive(Args)]
pub struct RunArgs {
    /// Scenario files or directories.
    #[arg(default_value = "suites")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Directory for results.json, junit.xml and report.html.
    #[arg(long, short = 'o', default_value = "podcheck-results")]
    pub output: PathBuf,
    /// Keep every trace in results.json (failing cases always keep theirs).
    #[arg(long)]
    pub traces: bool,
    /// Seed of the model target's timing choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip cases the oracle would watch longer than this (spec time), e.g. `3m` on
    /// targets whose time cannot be scaled.
    #[arg(long, value_parser = SpecDuration::parse)]
    pub max_horizon: Option<SpecDuration>,
    /// Watch every case to its horizon, also after a violation nothing later can undo (a
    /// wall-clock case otherwise ends there): on a target that lacks what the first rules
    /// read, such as podman's missing conditions, the rest of each case shows only so.
    #[arg(long)]
    pub to_horizon: bool,
}

#[derive(Args)]
pub struct CertifyArgs {
    /// Scenario files or directories.
    #[arg(default_value = "suites")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// The bundle to write.
    #[arg(long, short = 'o', default_value = "podcheck-certification.tar.gz")]
    pub output: PathBuf,
    /// Seed of the model target's timing choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip cases the oracle would watch longer than this (spec time).
    #[arg(long, value_parser = SpecDuration::parse)]
    pub max_horizon: Option<SpecDuration>,
}

#[derive(Args)]
pub struct FuzzArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How many random scenarios to run [default: 32, or no limit with --duration].
    #[arg(long)]
    pub cases: Option<u32>,
    /// Keep drawing random scenarios for this long (wall time, e.g. `5m`); cases still
    /// running then finish.
    #[arg(long, value_parser = SpecDuration::parse)]
    pub duration: Option<SpecDuration>,
    /// Stop at the first divergence and reduce only it.
    #[arg(long)]
    pub stop_at_first: bool,
    /// Seed from which every random choice derives (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the minimal counterexamples are written.
    #[arg(long, default_value = "podcheck-results/counterexamples")]
    pub out: PathBuf,
    /// Skip scenarios the oracle would watch longer than this (spec time).
    #[arg(long, default_value = "900s", value_parser = SpecDuration::parse)]
    pub max_horizon: SpecDuration,
}

#[derive(Args)]
pub struct ReportArgs {
    /// results.json files written by `podcheck run` (or found in a certification bundle).
    #[arg(required = true, value_name = "RESULTS.json")]
    pub results: Vec<PathBuf>,
    /// The page to write.
    #[arg(long, short = 'o', default_value = "podcheck-report.html")]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct PredictArgs {
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How many pods to create.
    #[arg(long, default_value_t = 50)]
    pub pods: usize,
    /// How many pods at a time (1 measures latency without contention).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Write the archive; load it with `podman load -i`, `ctr images import` or
    /// `kind load image-archive`.
    Build(ImageBuildArgs),
}

#[derive(Args)]
pub struct ImageBuildArgs {
    /// Where to write the archive.
    #[arg(long, short = 'o', default_value = "podcheck-agent.tar")]
    pub output: PathBuf,
    /// The image reference stored in the archive.
    #[arg(long, default_value = podcheck::image::AGENT_IMAGE)]
    pub tag: String,
    /// The static podcheck-agent binary (default: the one built with podcheck).
    #[arg(long, env = "PODCHECK_AGENT")]
    pub agent: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_target_option_lists_every_target() {
        let cli = Cli::command();
        let mut with_target = Vec::new();
        for sub in cli.get_subcommands() {
            if let Some(arg) = sub.get_arguments().find(|a| a.get_id() == "target") {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                for target in [
                    "`local`",
                    "`podman`",
                    "`kube`",
                    "`kube:CONTEXT`",
                    "`model`",
                    "`model:DEVIATION`",
                ] {
                    assert!(
                        help.contains(target),
                        "{}: --target help lacks {target}: {help}",
                        sub.get_name()
                    );
                }
                with_target.push(sub.get_name().to_owned());
            }
        }
        assert_eq!(with_target, ["run", "fuzz", "certify", "bench"]);
    }

    #[test]
    fn reproduce_options_name_the_target_and_every_setting_not_at_its_default() {
        let parsed = Cli::try_parse_from([
            "podcheck",
            "run",
            "--target",
            "model:no-back-off-doubling",
            "--time-scale",
            "0.1",
        ])
        .expect("parses");
        let Command::Run(args) = parsed.command else {
            panic!("a run");
        };
        assert_eq!(
            args.target.reproduce_options("local", 3, true),
            "--target model:no-back-off-doubling --time-scale 0.1 --seed 3 --to-horizon"
        );
        let parsed = Cli::try_parse_from(["podcheck", "run"]).expect("parses");
        let Command::Run(args) = parsed.command else {
            panic!("a run");
        };
        assert_eq!(
            args.target.reproduce_options("local", 0, false),
            "--target local"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
