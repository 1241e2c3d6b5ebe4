//! What the kube target finds out before it creates anything: the client for the context,
//! the run's permissions, and the nodes with their kubelet configuration.

use super::node::{self, ConfigSource, NodeInfo};
use super::{within, TargetError, API_TIMEOUT};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use podcheck_oracle::scenario::KubeletParams;

/// What podcheck needs to be allowed to do, checked before anything is created.
const PERMISSIONS: &[(&str, &str, &str, bool)] = &[
    ("create", "namespaces", "", false),
    ("delete", "namespaces", "", false),
    ("create", "pods", "", true),
    ("watch", "pods", "", true),
    ("delete", "pods", "", true),
    ("get", "pods", "log", true),
    ("watch", "events", "", true),
];

/// The kubeconfig's context named `context`, or its current one.
pub(super) async fn client_for(
    context: Option<&str>,
) -> Result<(Client, String, String), TargetError> {
    let kubeconfig = Kubeconfig::read().map_err(|e| {
        TargetError::Setup(format!(
            "cannot read a kubeconfig ({e}); set KUBECONFIG or create ~/.kube/config, as for kubectl"
        ))
    })?;
    let known: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
    let name = match context {
        Some(name) => name.to_owned(),
        None => kubeconfig.current_context.clone().ok_or_else(|| {
            TargetError::Setup(format!(
                "the kubeconfig has no current context; name one with --target kube:CONTEXT (known: {})",
                known.join(", ")
            ))
        })?,
    };
    if !known.contains(&name) {
        return Err(TargetError::Setup(format!(
            "the kubeconfig has no context {name:?}; known: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    let options = KubeConfigOptions {
        context: Some(name.clone()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| TargetError::Setup(format!("cannot use context {name:?}: {e}")))?;
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| {
        TargetError::Setup(format!("cannot make a client for context {name:?}: {e}"))
    })?;
    Ok((client, name, server))
}

/// SelfSubjectAccessReviews of everything a run does, so that a missing permission is
/// named before anything is created. An API server without the review API is let through:
/// the first call that is refused names what is missing.
pub(super) async fn check_permissions(client: &Client, context: &str) -> Result<(), TargetError> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for &(verb, resource, subresource, namespaced) in PERMISSIONS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource: (!subresource.is_empty()).then(|| subresource.to_owned()),
                    // Any namespace: the run's does not exist yet.
                    namespace: namespaced.then(String::new),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let Ok(Ok(answer)) =
            tokio::time::timeout(API_TIMEOUT, reviews.create(&PostParams::default(), &review))
                .await
        else {
            return Ok(());
        };
        let Some(status) = answer.status else {
            return Ok(());
        };
        if !status.allowed {
            let what = if subresource.is_empty() {
                resource.to_owned()
            } else {
                format!("{resource}/{subresource}")
            };
            denied.push(format!("{verb} {what}"));
        }
    }
    if denied.is_empty() {
        Ok(())
    } else {
        Err(TargetError::Setup(format!(
            "context {context:?} is not allowed to {}; podcheck needs to create and delete \
             namespaces, and to create, watch and delete pods, read their logs and watch \
             events in them",
            denied.join(", ")
        )))
    }
}

/// The KubeletConfiguration file `--kubelet-config` names, as JSON.
pub(super) fn read_kubelet_config(
    path: &std::path::Path,
) -> Result<serde_json::Value, TargetError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TargetError::io(format!("read {}", path.display()), e))?;
    serde_saphyr::from_str(&text).map_err(|e| {
        TargetError::Setup(format!(
            "{}: not a KubeletConfiguration: {e}",
            path.display()
        ))
    })
}

/// Every schedulable node with its kubelet version and configuration; the reason if the
/// nodes cannot be listed.
pub(super) async fn learn_nodes(
    client: &Client,
    option: Option<&(std::path::PathBuf, serde_json::Value)>,
    assumed: KubeletParams,
) -> Result<(Vec<NodeInfo>, Option<String>), TargetError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = match within(
        "list nodes",
        API_TIMEOUT,
        nodes.list(&ListParams::default()),
    )
    .await
    {
        Ok(list) => list.items,
        Err(err) => return Ok((Vec::new(), Some(crate::errors::describe(&err)))),
    };
    let schedulable: Vec<&Node> = list.iter().filter(|n| accepts_pods(n)).collect();
    let chosen = if schedulable.is_empty() {
        list.iter().collect()
    } else {
        schedulable
    };
    let mut infos = Vec::new();
    for node in chosen {
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = node.status.as_ref().and_then(|s| s.node_info.clone());
        let version = info
            .as_ref()
            .map(|i| i.kubelet_version.clone())
            .unwrap_or_default();
        let (kubelet, config_source) = match option {
            Some((path, config)) => (
                node::kubelet_params(config, &version).map_err(|e| {
                    TargetError::Setup(format!("{} on node {name}: {e}", path.display()))
                })?,
                ConfigSource::Option(path.display().to_string()),
            ),
            None => match configz(client, &name, &version).await {
                Ok(params) => (params, ConfigSource::Configz),
                Err(why) => (
                    node::kubelet_params(&serde_json::Value::Null, &version).unwrap_or(assumed),
                    ConfigSource::AssumedDefaults(why),
                ),
            },
        };
        infos.push(NodeInfo {
            back_off: node::describe(&kubelet.back_off()),
            kubelet,
            config_source,
            kubelet_version: version,
            container_runtime_version: info
                .as_ref()
                .map(|i| i.container_runtime_version.clone())
                .unwrap_or_default(),
            os_image: info.map(|i| i.os_image).unwrap_or_default(),
            name,
        });
    }
    Ok((infos, None))
}

/// Whether the scheduler would put an ordinary pod on the node.
fn accepts_pods(node: &Node) -> bool {
    let Some(spec) = node.spec.as_ref() else {
        return true;
    };
    spec.unschedulable != Some(true)
        && !spec
            .taints
            .iter()
            .flatten()
            .any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
}

/// The node's kubelet configuration from its `/configz`, through the API server's proxy.
async fn configz(client: &Client, node: &str, version: &str) -> Result<KubeletParams, String> {
    let request = http::Request::get(format!("/api/v1/nodes/{node}/proxy/configz"))
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let body = within("read configz", API_TIMEOUT, client.request_text(request))
        .await
        .map_err(|e| {
            format!(
                "its /configz is not readable: {}",
                crate::errors::describe(&e)
            )
        })?;
    node::from_configz(&body, version).map_err(|e| format!("its /configz: {e}"))
}
