//! The run's namespace: its name, its labels, and the lease that tells a later run whether
//! the run that made it is still alive.
//!
//! Every object a run creates lives in one namespace, so deleting the namespace removes
//! them all. A run renews a lease annotation on its namespace while it works; a namespace
//! whose lease has run out belongs to a run that was killed (SIGKILL, a lost CI machine)
//! and the next run removes it. A live run of another user on the same cluster keeps its
//! lease fresh and is left alone.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

/// On every namespace podcheck creates, the Kubernetes convention for "who manages this".
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "podcheck";
/// The run's id, also the namespace's suffix.
pub const RUN_LABEL: &str = "podcheck.io/run";
pub const VERSION_LABEL: &str = "podcheck.io/version";
/// When the lease runs out (RFC 3339); renewed every [`LEASE_RENEWAL`].
pub const LEASE_ANNOTATION: &str = "podcheck.io/lease-expires";
/// How long a namespace outlives the last renewal of its run. Long enough that a run
/// stalled by a slow API server keeps its namespace, short enough that the next CI job
/// finds a killed run's namespace stale.
pub const LEASE: SignedDuration = SignedDuration::from_secs(180);
pub const LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_secs(30);

/// The label selector that finds every namespace podcheck made, whatever the run.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// A run id that is a valid label value and namespace suffix, readable as a time: the
/// UTC second the run started and 16 bits from the process id and the clock, so runs
/// started in the same second on different machines differ.
pub fn run_id(now: Timestamp, pid: u32) -> String {
    let civil = now.to_zoned(jiff::tz::TimeZone::UTC);
    let salt = (pid ^ now.subsec_nanosecond() as u32) & 0xffff;
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{salt:04x}",
        civil.year(),
        civil.month(),
        civil.day(),
        civil.hour(),
        civil.minute(),
        civil.second()
    )
}

pub fn namespace_name(run_id: &str) -> String {
    format!("podcheck-{run_id}")
}

/// The namespace object of a run, its lease running from `now`.
pub fn namespace(run_id: &str, version: &str, now: Timestamp) -> Namespace {
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (RUN_LABEL.to_owned(), run_id.to_owned()),
        (VERSION_LABEL.to_owned(), label_value(version)),
    ]);
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace_name(run_id)),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                LEASE_ANNOTATION.to_owned(),
                lease_expiry(now),
            )])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The merge patch that renews a lease at `now`.
pub fn lease_patch(now: Timestamp) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {LEASE_ANNOTATION: lease_expiry(now)}}})
}

fn lease_expiry(now: Timestamp) -> String {
    (now + LEASE).to_string()
}

/// A version as a label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending with an alphanumeric (a `+build` suffix becomes `_build`).
fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// Why a namespace found by [`managed_selector`] should be removed now, or None to leave
/// it: it is this run's own, a live run's (lease not yet run out), or already going away.
pub fn stale_reason(namespace: &Namespace, own_run: &str, now: Timestamp) -> Option<String> {
    let meta = &namespace.metadata;
    let labels = meta.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    if label(MANAGED_BY_LABEL) != Some(MANAGED_BY) || label(RUN_LABEL) == Some(own_run) {
        return None;
    }
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let lease = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEASE_ANNOTATION))
        .and_then(|text| text.parse::<Timestamp>().ok());
    match lease {
        Some(expiry) if expiry < now => Some(format!("its run's lease ran out at {expiry}")),
        Some(_) => None,
        // No readable lease: judge by age, as if the lease was taken at creation.
        None => {
            let created = meta.creation_timestamp.as_ref()?.0;
            (created + LEASE < now).then(|| format!("it has no lease and was created at {created}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn run_ids_name_valid_namespaces_and_labels() {
        let id = run_id(at("2026-11-28T22:15:30.123456789Z"), 4242);
        assert!(id.starts_with("20261128-221530-"), "{id}");
        let name = namespace_name(&id);
        assert!(podcheck_oracle::scenario::is_dns_label(&name), "{name}");
        let other = run_id(at("2026-11-28T22:15:30.123456789Z"), 4243);
        assert_ne!(id, other, "two processes in the same second");
    }

    #[test]
    fn a_runs_namespace_carries_who_made_it_and_a_lease() {
        let now = at("2026-11-28T22:00:00Z");
        let ns = namespace("r1", "0.1.0+dirty", now);
        let labels = ns.metadata.labels.clone().expect("labels");
        assert_eq!(labels[MANAGED_BY_LABEL], "podcheck");
        assert_eq!(labels[RUN_LABEL], "r1");
        assert_eq!(labels[VERSION_LABEL], "0.1.0_dirty");
        assert_eq!(
            ns.metadata.annotations.expect("annotations")[LEASE_ANNOTATION],
            "2026-11-28T22:03:00Z"
        );
        assert_eq!(managed_selector(), "app.kubernetes.io/managed-by=podcheck");
    }

    fn found(run: &str, lease: Option<&str>, created: &str, deleting: bool) -> Namespace {
        let mut ns = namespace(run, "0.1.0", at(created));
        ns.metadata.creation_timestamp = Some(Time(at(created)));
        let annotations = ns.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match lease {
            Some(lease) => {
                annotations.insert(LEASE_ANNOTATION.to_owned(), lease.to_owned());
            }
            None => {
                annotations.remove(LEASE_ANNOTATION);
            }
        }
        if deleting {
            ns.metadata.deletion_timestamp = Some(Time(at(created)));
        }
        ns
    }

    #[test]
    fn only_namespaces_of_dead_runs_are_selected_for_removal() {
        let now = at("2026-11-28T22:00:00Z");
        let expired = found(
            "old",
            Some("2026-11-28T21:59:59Z"),
            "2026-11-28T20:00:00Z",
            false,
        );
        assert!(stale_reason(&expired, "me", now).is_some_and(|r| r.contains("ran out")));
        let live = found(
            "other",
            Some("2026-11-28T22:01:00Z"),
            "2026-11-28T20:00:00Z",
            false,
        );
        assert_eq!(
            stale_reason(&live, "me", now),
            None,
            "a live run keeps its own"
        );
        let mine = found(
            "me",
            Some("2026-11-28T21:00:00Z"),
            "2026-11-28T20:00:00Z",
            false,
        );
        assert_eq!(stale_reason(&mine, "me", now), None, "never this run's own");
        let going = found(
            "old",
            Some("2026-11-28T21:00:00Z"),
            "2026-11-28T20:00:00Z",
            true,
        );
        assert_eq!(
            stale_reason(&going, "me", now),
            None,
            "already being deleted"
        );
        let no_lease_old = found("old", None, "2026-11-28T21:00:00Z", false);
        assert!(stale_reason(&no_lease_old, "me", now).is_some());
        let no_lease_new = found("new", None, "2026-11-28T21:59:00Z", false);
        assert_eq!(stale_reason(&no_lease_new, "me", now), None);
        let garbled = found("old", Some("tomorrow"), "2026-11-28T21:00:00Z", false);
        assert!(stale_reason(&garbled, "me", now).is_some(), "judged by age");
        let mut foreign = expired.clone();
        foreign
            .metadata
            .labels
            .as_mut()
            .expect("labels")
            .insert(MANAGED_BY_LABEL.to_owned(), "helm".to_owned());
        assert_eq!(stale_reason(&foreign, "me", now), None, "not podcheck's");
    }

    #[test]
    fn the_lease_patch_moves_the_expiry() {
        let patch = lease_patch(at("2026-11-28T22:00:00Z"));
        assert_eq!(
            patch["metadata"]["annotations"][LEASE_ANNOTATION],
            "2026-11-28T22:03:00Z"
        );
    }
}
