//! What the API server sends, as a trace: pod objects from the watch become snapshots,
//! core/v1 Events about the pod become trace events. Both carry the time the harness
//! received them: the API server's own time stamps have whole seconds only, and the
//! harness's clock is the one the rest of the trace uses.

use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podcheck_oracle::{PodEvent, PodMetadata, Snapshot};

/// A pod object as the watch delivered it.
pub fn snapshot(pod: &Pod, received: Time) -> Snapshot {
    Snapshot {
        at: received,
        metadata: metadata(pod, false),
        status: pod.status.clone().unwrap_or_default(),
    }
}

/// The last state of a pod the watch reported deleted: the object is gone.
pub fn gone(pod: &Pod, received: Time) -> Snapshot {
    Snapshot {
        at: received,
        metadata: metadata(pod, true),
        status: pod.status.clone().unwrap_or_default(),
    }
}

fn metadata(pod: &Pod, gone: bool) -> PodMetadata {
    let meta = &pod.metadata;
    PodMetadata {
        resource_version: meta.resource_version.clone(),
        deletion_timestamp: meta.deletion_timestamp.clone(),
        deletion_grace_period_seconds: meta.deletion_grace_period_seconds,
        finalizers: meta.finalizers.clone().unwrap_or_default(),
        gone,
    }
}

/// A core/v1 Event about the pod `pod_name`, or None for an event about something else.
pub fn event(event: &Event, pod_name: &str, received: Time) -> Option<PodEvent> {
    let involved = &event.involved_object;
    if involved.name.as_deref() != Some(pod_name)
        || involved.kind.as_deref().is_some_and(|k| k != "Pod")
    {
        return None;
    }
    Some(PodEvent {
        at: received,
        type_: event.type_.clone().unwrap_or_else(|| "Normal".to_owned()),
        reason: event.reason.clone().unwrap_or_default(),
        message: event.message.clone().unwrap_or_default(),
        container: involved.field_path.as_deref().and_then(container_of),
    })
}

/// The container a field path names: `spec.containers{app}`, `spec.initContainers{init}`,
/// `spec.ephemeralContainers{debug}`.
pub fn container_of(field_path: &str) -> Option<String> {
    let (_, rest) = field_path.split_once('{')?;
    let (name, _) = rest.split_once('}')?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Drops what a watch repeats: the same object version again (a relist after a
/// reconnect), or an Event object whose count and message did not change.
#[derive(Default)]
pub struct Repeats {
    last_pod_version: Option<String>,
    events: std::collections::HashMap<String, (i32, String, Option<String>)>,
}

impl Repeats {
    pub fn new_pod_version(&mut self, pod: &Pod) -> bool {
        let version = pod.metadata.resource_version.clone();
        if version.is_some() && version == self.last_pod_version {
            return false;
        }
        self.last_pod_version = version;
        true
    }

    pub fn new_event(&mut self, event: &Event) -> bool {
        let key = event.metadata.name.clone().unwrap_or_default();
        let seen = (
            event.count.unwrap_or(1),
            event.message.clone().unwrap_or_default(),
            event.metadata.resource_version.clone(),
        );
        self.events.insert(key, seen.clone()) != Some(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_name_their_container() {
        assert_eq!(container_of("spec.containers{app}").as_deref(), Some("app"));
        assert_eq!(
            container_of("spec.initContainers{init-1}").as_deref(),
            Some("init-1")
        );
        assert_eq!(container_of("spec.containers{}"), None);
        assert_eq!(container_of(""), None);
        assert_eq!(container_of("spec.containers{app"), None);
    }
}
