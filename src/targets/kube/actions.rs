//! The fault actions the API can perform: a deletion as the scenario asks for it, a
//! finalizer's removal, an ephemeral container added as `kubectl debug` adds it.

use super::{within, KubeTarget, PodRef, TargetError, API_TIMEOUT};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use podcheck_oracle::scenario::FaultAction;

/// The DELETE of a deletion action: `gracePeriodSeconds` as the scenario gives it (none:
/// the API server takes the pod's terminationGracePeriodSeconds), 0 for a force delete, as
/// `kubectl delete --force --grace-period=0` sends it.
fn deletion_params(action: &FaultAction) -> Result<DeleteParams, TargetError> {
    let grace_period_seconds = match action {
        FaultAction::Delete {
            grace_period_seconds: None,
        } => None,
        FaultAction::Delete {
            grace_period_seconds: Some(grace),
        } => Some(u32::try_from(*grace).map_err(|_| {
            TargetError::Broken(format!("grace period {grace} is out of the API's range"))
        })?),
        FaultAction::ForceDelete => Some(0),
        other => {
            return Err(TargetError::Broken(format!(
                "{} is not a deletion",
                other.name()
            )))
        }
    };
    Ok(DeleteParams {
        grace_period_seconds,
        ..DeleteParams::default()
    })
}

/// The merge patch that removes `finalizer` from the pod's finalizers (None if it has no
/// such finalizer): the remaining list, and the version it was computed from.
fn finalizer_removal(pod: &Pod, finalizer: &str) -> Option<serde_json::Value> {
    let mut finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
    let index = finalizers.iter().position(|f| f == finalizer)?;
    finalizers.remove(index);
    Some(serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": pod.metadata.resource_version,
        }
    }))
}

impl KubeTarget {
    /// Sends the DELETE of a deletion action; the kubelet acts on it afterwards.
    pub(super) async fn delete(
        &self,
        pod: &PodRef,
        action: &FaultAction,
    ) -> Result<(), TargetError> {
        let params = deletion_params(action)?;
        within(
            &format!("{action} pod {}", pod.name),
            API_TIMEOUT,
            self.pods().delete(&pod.name, &params),
        )
        .await
        .map(|_| ())
    }

    /// Removes one entry of the pod's finalizers, as `kubectl patch --type=merge` with the
    /// remaining list would; the patch carries the object's resourceVersion, so a change
    /// in between (the kubelet's status writes) makes the API server refuse it (409) and
    /// the removal is tried again on the new version.
    pub(super) async fn remove_finalizer(
        &self,
        name: &str,
        finalizer: &str,
    ) -> Result<(), TargetError> {
        const ATTEMPTS: usize = 5;
        let action = format!("remove finalizer {finalizer} of pod {name}");
        for _ in 0..ATTEMPTS {
            let current = match within(&action, API_TIMEOUT, self.pods().get(name)).await {
                // The object the finalizer should have held is gone already: nothing is left
                // to remove, and the trace's gone snapshot is what the checker judges.
                Err(TargetError::Api { code: 404, .. }) => return Ok(()),
                other => other?,
            };
            let patch = finalizer_removal(&current, finalizer).ok_or_else(|| {
                TargetError::Broken(format!("pod {name} has no finalizer {finalizer}"))
            })?;
            let patched = within(
                &action,
                API_TIMEOUT,
                self.pods()
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
            match patched {
                Err(TargetError::Api { code: 409, .. }) => continue,
                other => return other.map(|_| ()),
            }
        }
        Err(TargetError::Broken(format!(
            "failed to {action}: the pod changed under each of {ATTEMPTS} attempts"
        )))
    }

    /// Adds an ephemeral container through the pod's `ephemeralcontainers` subresource, as
    /// `kubectl debug` does, built from the manifest the run applied.
    pub(super) async fn add_ephemeral_container(
        &self,
        name: &str,
        container: &str,
        target: Option<&str>,
    ) -> Result<(), TargetError> {
        let action = format!("add ephemeral container {container} to pod {name}");
        let current = within(&action, API_TIMEOUT, self.pods().get(name)).await?;
        let ephemeral = crate::compile::ephemeral_container_of(&current, container, target)
            .ok_or_else(|| {
                TargetError::Broken(format!(
                    "failed to {action}: the pod carries no behaviour for it"
                ))
            })?;
        let patch = serde_json::json!({ "spec": { "ephemeralContainers": [ephemeral] } });
        within(
            &action,
            API_TIMEOUT,
            self.pods().patch_subresource(
                "ephemeralcontainers",
                name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            ),
        )
        .await
        .map(|_| ())
    }

    /// Removes every finalizer of a pod the run made, so that its deletion removes it.
    pub(super) async fn drop_finalizers(&self, name: &str) -> Result<(), TargetError> {
        let patch = serde_json::json!({ "metadata": { "finalizers": null } });
        within(
            &format!("remove the finalizers of pod {name}"),
            API_TIMEOUT,
            self.pods()
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_send_the_grace_period_the_scenario_gives() {
        let delete = |grace| FaultAction::Delete {
            grace_period_seconds: grace,
        };
        let grace = |action: &FaultAction| {
            deletion_params(action)
                .expect("a deletion")
                .grace_period_seconds
        };
        // None: the API server takes the pod's terminationGracePeriodSeconds.
        assert_eq!(grace(&delete(None)), None);
        assert_eq!(grace(&delete(Some(5))), Some(5));
        assert_eq!(grace(&delete(Some(0))), Some(0));
        assert_eq!(grace(&FaultAction::ForceDelete), Some(0));
        assert!(deletion_params(&delete(Some(-1))).is_err());
        assert!(deletion_params(&FaultAction::RestartNodeAgent).is_err());
    }

    #[test]
    fn a_finalizer_removal_keeps_the_others_and_names_the_version() {
        let mut pod = Pod::default();
        pod.metadata.resource_version = Some("42".to_owned());
        pod.metadata.finalizers = Some(vec![
            "example.com/a".to_owned(),
            "podcheck.io/hold".to_owned(),
            "example.com/b".to_owned(),
        ]);
        assert_eq!(
            finalizer_removal(&pod, "podcheck.io/hold"),
            Some(serde_json::json!({
                "metadata": {
                    "finalizers": ["example.com/a", "example.com/b"],
                    "resourceVersion": "42",
                }
            }))
        );
        assert_eq!(finalizer_removal(&pod, "podcheck.io/other"), None);
        pod.metadata.finalizers = Some(vec!["podcheck.io/hold".to_owned()]);
        assert_eq!(
            finalizer_removal(&pod, "podcheck.io/hold")
                .map(|p| p["metadata"]["finalizers"].clone()),
            Some(serde_json::json!([]))
        );
    }
}
