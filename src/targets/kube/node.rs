//! What the cluster is: the API server's version, its nodes' kubelet versions, and the
//! kubelet configuration each node runs with, as far as it changes what the oracle
//! predicts (the restart back-off's feature gates and `crashLoopBackOff`).
//!
//! A case names the kubelet configuration it needs; it runs on a node that has it and is
//! "not applicable" on a cluster that has none. The configuration comes from
//! `--kubelet-config` (the node's KubeletConfiguration file), else from each node's
//! `/configz` through the API server's node proxy, else the kubelet's defaults are
//! assumed, and the bundle says which.

use podcheck_oracle::scenario::{
    BackOffParams, CrashLoopBackOffConfig, FeatureGates, KubeletParams,
};
use podcheck_oracle::SpecDuration;
use serde::Serialize;

/// Where a node's kubelet configuration came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "from", content = "detail")]
pub enum ConfigSource {
    /// `--kubelet-config FILE`.
    Option(String),
    /// The node's `/configz`, read through the API server's node proxy.
    Configz,
    /// Neither was available (the reason): the kubelet's defaults are assumed.
    AssumedDefaults(String),
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    pub kubelet_version: String,
    pub container_runtime_version: String,
    pub os_image: String,
    pub kubelet: KubeletParams,
    pub back_off: String,
    pub config_source: ConfigSource,
}

/// Everything the run assumed about the cluster; it goes into the certification bundle.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    pub context: String,
    pub server: String,
    pub server_version: String,
    pub nodes: Vec<NodeInfo>,
    /// Why the nodes could not be listed, if they could not (no permission): cases then
    /// run wherever the scheduler puts them, under the configuration assumed for all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes_unlisted: Option<String>,
    /// The configuration assumed when the nodes are unknown.
    pub assumed_kubelet: KubeletParams,
}

/// Where a case's pod may run.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// Every node (or the unknown nodes) has the configuration the case needs.
    Anywhere,
    /// Only this node has it.
    Node(String),
}

impl ClusterInfo {
    /// Where a case that needs `kubelet` can run, or why it cannot run here.
    pub fn placement(&self, kubelet: &KubeletParams) -> Result<Placement, String> {
        let needed = kubelet.back_off();
        if self.nodes.is_empty() {
            let assumed = self.assumed_kubelet.back_off();
            return if assumed == needed {
                Ok(Placement::Anywhere)
            } else {
                Err(format!(
                    "the case needs a restart back-off of {}; the cluster's nodes are assumed to use {}",
                    describe(&needed),
                    describe(&assumed)
                ))
            };
        }
        let matching: Vec<&NodeInfo> = self
            .nodes
            .iter()
            .filter(|n| n.kubelet.back_off() == needed)
            .collect();
        match matching.first() {
            None => {
                let mut have: Vec<String> = self.nodes.iter().map(|n| n.back_off.clone()).collect();
                have.sort();
                have.dedup();
                Err(format!(
                    "the case needs a restart back-off of {}; the cluster's nodes use {}",
                    describe(&needed),
                    have.join(", ")
                ))
            }
            Some(_) if matching.len() == self.nodes.len() => Ok(Placement::Anywhere),
            Some(node) => Ok(Placement::Node(node.name.clone())),
        }
    }
}

pub fn describe(back_off: &BackOffParams) -> String {
    format!("{} initial, {} maximum", back_off.initial, back_off.max)
}

/// Why a KubeletConfiguration could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct KubeletConfigError {
    pub field: String,
    pub reason: String,
}

/// `(major, minor)` of a kubelet version such as `v1.35.2` or `v1.35.0-eks-1`.
pub fn minor_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A feature gate's default on a kubelet of this version (pkg/features/kube_features.go):
/// KubeletCrashLoopBackOffMax is alpha (off) in 1.32-1.34 and beta (on) from 1.35;
/// ReduceDefaultCrashLoopBackOffDecay is alpha (off) from 1.33. An unknown version gets
/// the oldest default.
pub fn gate_default(gate: &str, kubelet_version: &str) -> bool {
    match (gate, minor_version(kubelet_version)) {
        ("KubeletCrashLoopBackOffMax", Some((major, minor))) => (major, minor) >= (1, 35),
        _ => false,
    }
}

/// The parts of a KubeletConfiguration (as the kubelet's file or its `/configz`'s
/// `kubeletconfig` object) that change predictions, on a kubelet of `kubelet_version`
/// (a gate the configuration does not list is at that version's default). Every other
/// field is ignored: it is the node's business, not a case's.
pub fn kubelet_params(
    config: &serde_json::Value,
    kubelet_version: &str,
) -> Result<KubeletParams, KubeletConfigError> {
    let error = |field: &str, reason: String| KubeletConfigError {
        field: field.to_owned(),
        reason,
    };
    let gates = config.get("featureGates");
    let gate = |name: &str| -> Result<bool, KubeletConfigError> {
        match gates.and_then(|g| g.get(name)) {
            None | Some(serde_json::Value::Null) => Ok(gate_default(name, kubelet_version)),
            Some(serde_json::Value::Bool(on)) => Ok(*on),
            Some(other) => Err(error(
                &format!("featureGates.{name}"),
                format!("expected true or false, found {other}"),
            )),
        }
    };
    let max = match config
        .get("crashLoopBackOff")
        .and_then(|c| c.get("maxContainerRestartPeriod"))
    {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => Some(go_duration(text).ok_or_else(|| {
            error(
                "crashLoopBackOff.maxContainerRestartPeriod",
                format!("{text:?} is not a duration such as \"1m0s\""),
            )
        })?),
        Some(other) => {
            return Err(error(
                "crashLoopBackOff.maxContainerRestartPeriod",
                format!("expected a duration string, found {other}"),
            ))
        }
    };
    let params = KubeletParams {
        feature_gates: FeatureGates {
            kubelet_crash_loop_back_off_max: gate("KubeletCrashLoopBackOffMax")?,
            reduce_default_crash_loop_back_off_decay: gate("ReduceDefaultCrashLoopBackOffDecay")?,
        },
        crash_loop_back_off: CrashLoopBackOffConfig {
            max_container_restart_period: max,
        },
    };
    params.validate().map_err(|e| error(&e.field, e.reason))?;
    Ok(params)
}

/// The kubelet's `/configz` body: `{"kubeletconfig": {...}}`.
pub fn from_configz(
    body: &str,
    kubelet_version: &str,
) -> Result<KubeletParams, KubeletConfigError> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| KubeletConfigError {
        field: "configz".to_owned(),
        reason: format!("not JSON: {e}"),
    })?;
    let config = value
        .get("kubeletconfig")
        .ok_or_else(|| KubeletConfigError {
            field: "configz".to_owned(),
            reason: "no kubeletconfig object".to_owned(),
        })?;
    kubelet_params(config, kubelet_version)
}

/// A Go `time.Duration` string as Kubernetes serialises durations: `1m0s`, `300ms`,
/// `1h2m3.5s`.
pub fn go_duration(text: &str) -> Option<SpecDuration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(SpecDuration::ZERO);
    }
    let mut total_ns: u128 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let per_unit_ns: f64 = match unit {
            "h" => 3600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        let value: f64 = number.parse().ok()?;
        if !value.is_finite() || value < 0.0 {
            return None;
        }
        let ns = value * per_unit_ns;
        if ns > u64::MAX as f64 {
            return None;
        }
        total_ns += ns.round() as u128;
        rest = tail;
    }
    u64::try_from(total_ns / 1_000_000)
        .ok()
        .map(SpecDuration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations_parse_as_kubernetes_writes_them() {
        assert_eq!(go_duration("1m0s"), Some(SpecDuration::from_secs(60)));
        assert_eq!(go_duration("5m0s"), Some(SpecDuration::from_secs(300)));
        assert_eq!(go_duration("300ms"), Some(SpecDuration::from_millis(300)));
        assert_eq!(
            go_duration("1h2m3.5s"),
            Some(SpecDuration::from_millis(3_723_500))
        );
        assert_eq!(go_duration("0"), Some(SpecDuration::ZERO));
        for bad in ["", "10", "1d", "-1s", "s", "1e400s"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_kubelet_configuration_gives_the_back_off_it_implies() {
        let defaults =
            kubelet_params(&json!({"kind": "KubeletConfiguration"}), "v1.34.1").expect("ok");
        assert_eq!(defaults, KubeletParams::default());
        let capped = kubelet_params(
            &json!({
                "featureGates": {"KubeletCrashLoopBackOffMax": true, "SomethingElse": true},
                "crashLoopBackOff": {"maxContainerRestartPeriod": "1m0s"},
                "syncFrequency": "1m0s"
            }),
            "v1.34.1",
        )
        .expect("ok");
        assert_eq!(capped.back_off().max, SpecDuration::from_secs(60));
        let reduced = kubelet_params(
            &json!({
                "featureGates": {"ReduceDefaultCrashLoopBackOffDecay": true}
            }),
            "v1.35.0",
        )
        .expect("ok");
        assert_eq!(reduced.back_off().initial, SpecDuration::from_secs(1));
    }

    #[test]
    fn a_gate_the_configuration_omits_is_at_the_kubelet_versions_default() {
        let capped = json!({"crashLoopBackOff": {"maxContainerRestartPeriod": "30s"}});
        // Beta and on by default from 1.35: the cap applies without listing the gate.
        let on = kubelet_params(&capped, "v1.35.1-gke.100").expect("valid on 1.35");
        assert_eq!(on.back_off().max, SpecDuration::from_secs(30));
        // Alpha before: the kubelet refuses the field without the gate.
        assert!(kubelet_params(&capped, "v1.34.3").is_err());
        assert!(kubelet_params(&capped, "unknown").is_err());
        let off = json!({"featureGates": {"KubeletCrashLoopBackOffMax": false}});
        assert!(
            !kubelet_params(&off, "v1.35.0")
                .expect("ok")
                .feature_gates
                .kubelet_crash_loop_back_off_max
        );
        assert_eq!(minor_version("v1.35.0-rusternetes"), Some((1, 35)));
        assert_eq!(minor_version("1.9"), Some((1, 9)));
        assert_eq!(minor_version("main"), None);
    }

    #[test]
    fn a_configuration_the_kubelet_would_refuse_is_an_error_naming_the_field() {
        let err = kubelet_params(
            &json!({
                "crashLoopBackOff": {"maxContainerRestartPeriod": "1m0s"}
            }),
            "v1.34.0",
        )
        .expect_err("needs the gate before 1.35");
        assert!(err.field.contains("maxContainerRestartPeriod"), "{err}");
        let err = kubelet_params(
            &json!({"featureGates": {"KubeletCrashLoopBackOffMax": "yes"}}),
            "v1.35.0",
        )
        .expect_err("not a bool");
        assert_eq!(err.field, "featureGates.KubeletCrashLoopBackOffMax");
        let err = from_configz("{}", "v1.35.0").expect_err("no kubeletconfig");
        assert_eq!(err.field, "configz");
        assert!(from_configz(r#"{"kubeletconfig":{"featureGates":{}}}"#, "v1.35.0").is_ok());
    }

    fn node(name: &str, kubelet: KubeletParams) -> NodeInfo {
        NodeInfo {
            name: name.to_owned(),
            kubelet_version: "v1.35.0".to_owned(),
            container_runtime_version: "containerd://2.1".to_owned(),
            os_image: "Debian".to_owned(),
            back_off: describe(&kubelet.back_off()),
            kubelet,
            config_source: ConfigSource::Configz,
        }
    }

    fn cluster(nodes: Vec<NodeInfo>) -> ClusterInfo {
        ClusterInfo {
            context: "c".to_owned(),
            server: "https://k".to_owned(),
            server_version: "v1.35.0".to_owned(),
            nodes,
            nodes_unlisted: None,
            assumed_kubelet: KubeletParams::default(),
        }
    }

    #[test]
    fn cases_run_on_nodes_with_their_configuration_or_not_at_all() {
        let reduced = KubeletParams {
            feature_gates: FeatureGates {
                reduce_default_crash_loop_back_off_decay: true,
                ..FeatureGates::default()
            },
            ..KubeletParams::default()
        };
        let uniform = cluster(vec![node("a", KubeletParams::default())]);
        assert_eq!(
            uniform.placement(&KubeletParams::default()),
            Ok(Placement::Anywhere)
        );
        let refusal = uniform.placement(&reduced).expect_err("not applicable");
        assert!(
            refusal.contains("1s initial, 1m maximum") || refusal.contains("1s initial"),
            "{refusal}"
        );
        let mixed = cluster(vec![
            node("a", KubeletParams::default()),
            node("b", reduced),
        ]);
        assert_eq!(
            mixed.placement(&reduced),
            Ok(Placement::Node("b".to_owned()))
        );
        let unknown = cluster(Vec::new());
        assert_eq!(
            unknown.placement(&KubeletParams::default()),
            Ok(Placement::Anywhere)
        );
        assert!(unknown.placement(&reduced).is_err());
    }
}
