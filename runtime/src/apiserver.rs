//! The pod object as the API server keeps it: finalizers, graceful deletion and removal.
//!
//! The local runtime has no API server, yet what a client sees of a deleted pod comes from
//! one: its `deletionTimestamp` and `deletionGracePeriodSeconds`, whether it still exists.
//! This is the API server's part of pod deletion, written from its source (Kubernetes
//! 1.35): `rest.BeforeDelete` (staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go),
//! the pod strategy's `CheckGracefulDelete` (pkg/registry/core/pod/strategy.go), and the
//! generic store's `Delete`, `updateForGracefulDeletionAndFinalizers`, `markAsDeleting` and
//! `ShouldDeleteDuringUpdate` (staging/src/k8s.io/apiserver/pkg/registry/generic/registry/
//! store.go). Pure: times come in, nothing is read from a clock.
//!
//! Durations are spec seconds, as the API speaks; the caller's `wall` turns them into the
//! wall time a timestamp moves by (the runtime's time scale).

pub(crate) mod ephemeral;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What a client sees of the pod object's metadata at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectState {
    /// The object's version: it changes with every write (status or metadata).
    pub resource_version: String,
    pub deletion_timestamp: Option<Time>,
    pub deletion_grace_period_seconds: Option<i64>,
    pub finalizers: Vec<String>,
    /// The object no longer exists: this is its last state, as a watch's DELETED event
    /// carries it.
    pub gone: bool,
}

/// One version of the pod object as a watch delivers it: metadata, the part of the spec
/// that changes (its ephemeral containers) and status, stamped with the wall time it was
/// written.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSnapshot {
    pub at: Time,
    pub object: ObjectState,
    /// `spec.ephemeralContainers`.
    pub ephemeral_containers: Vec<k8s_openapi::api::core::v1::EphemeralContainer>,
    pub status: k8s_openapi::api::core::v1::PodStatus,
}

/// Why the API server refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The object does not exist (any more): 404.
    NotFound,
    /// A patch that removes a finalizer the object does not have.
    NoSuchFinalizer(String),
}

/// What a delete request did to the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// The object was updated: deletion timestamp and grace period set or shortened, or
    /// marked for deletion while finalizers remain. The node sees the new
    /// `deletionGracePeriodSeconds`.
    Updated { grace_seconds: i64 },
    /// The object was removed from storage (after an update that set its grace period,
    /// which the node sees first).
    Removed { grace_seconds: i64 },
    /// A graceful deletion was already pending with a grace period no longer than the
    /// requested one: nothing changed (`pendingGraceful`).
    Pending,
}

/// The pod object's lifecycle metadata, as stored.
#[derive(Clone, Debug)]
pub(crate) struct PodObject {
    finalizers: Vec<String>,
    deletion_timestamp: Option<Timestamp>,
    deletion_grace_seconds: Option<i64>,
    /// `spec.terminationGracePeriodSeconds` after defaulting.
    spec_grace_seconds: i64,
    gone: bool,
}

impl PodObject {
    pub fn new(finalizers: Vec<String>, spec_grace_seconds: i64) -> PodObject {
        PodObject {
            finalizers,
            deletion_timestamp: None,
            deletion_grace_seconds: None,
            spec_grace_seconds,
            gone: false,
        }
    }

    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Marks the object removed, or (to show the update written just before a removal)
    /// not yet.
    pub fn set_gone(&mut self, gone: bool) {
        self.gone = gone;
    }

    pub fn state(&self, resource_version: u64) -> ObjectState {
        ObjectState {
            resource_version: resource_version.to_string(),
            deletion_timestamp: self.deletion_timestamp.map(Time),
            deletion_grace_period_seconds: self.deletion_grace_seconds,
            finalizers: self.finalizers.clone(),
            gone: self.gone,
        }
    }

    /// `DELETE` with `gracePeriodSeconds` (None when the request leaves it out), at `now`;
    /// `terminal` when the pod's phase is Succeeded or Failed; `wall` turns spec seconds
    /// into the wall time timestamps move by.
    pub fn delete(
        &mut self,
        now: Timestamp,
        grace_seconds: Option<i64>,
        terminal: bool,
        wall: impl Fn(i64) -> SignedDuration,
    ) -> Result<Deleted, Refusal> {
        if self.gone {
            return Err(Refusal::NotFound);
        }
        // `BeforeDelete`, then the store's update: both see the same object here, since
        // nothing else writes between them.
        let graceful = match (self.deletion_timestamp, self.deletion_grace_seconds) {
            (Some(timestamp), Some(existing)) if existing != 0 => {
                // "if we are already being deleted, we may only shorten the deletion grace
                // period"
                let Some(requested) = grace_seconds else {
                    return Ok(Deleted::Pending);
                };
                if requested >= existing {
                    return Ok(Deleted::Pending);
                }
                // "Move the existing deletionTimestamp back by existing
                // object.DeletionGracePeriod, then forward by options.DeletionGracePeriod."
                let mut period = requested;
                let mut moved = timestamp - wall(existing) + wall(requested);
                // "Prevent shortening the grace period moving deletionTimestamp into the
                // past": a graceful request keeps at least 1 s, so the node still makes the
                // final delete.
                if moved < now {
                    moved = now;
                    if period != 0 {
                        period = 1;
                    }
                }
                self.deletion_timestamp = Some(moved);
                self.deletion_grace_seconds = Some(period);
                Some(period)
            }
            // Already deleting with no grace period left (or none recorded): "we force
            // deletion immediately" (BeforeDelete returns not graceful).
            (Some(_), _) => None,
            (None, _) => {
                // `CheckGracefulDelete`: the requested period, else the pod's; 0 for a pod
                // that already terminated; a negative one becomes 1. (The local runtime's
                // pods are always bound to its node, so "not scheduled" never applies.)
                let mut period = grace_seconds.unwrap_or(self.spec_grace_seconds);
                if terminal {
                    period = 0;
                }
                if period < 0 {
                    period = 1;
                }
                self.deletion_timestamp = Some(now + wall(period));
                self.deletion_grace_seconds = Some(period);
                Some(period)
            }
        };
        let pending_finalizers = !self.finalizers.is_empty();
        match graceful {
            // `updateForGracefulDeletionAndFinalizers`: "If there are pending finalizers,
            // we never delete the object immediately", nor with a grace period left.
            Some(period) if pending_finalizers || period > 0 => Ok(Deleted::Updated {
                grace_seconds: period,
            }),
            Some(period) => {
                self.gone = true;
                Ok(Deleted::Removed {
                    grace_seconds: period,
                })
            }
            None if pending_finalizers => {
                self.mark_as_deleting(now);
                Ok(Deleted::Updated { grace_seconds: 0 })
            }
            None => {
                self.gone = true;
                Ok(Deleted::Removed {
                    grace_seconds: self.deletion_grace_seconds.unwrap_or(0),
                })
            }
        }
    }

    /// `markAsDeleting`: the deletion timestamp becomes now unless it is already earlier,
    /// and the grace period 0.
    fn mark_as_deleting(&mut self, now: Timestamp) {
        if self
            .deletion_timestamp
            .is_none_or(|existing| existing > now)
        {
            self.deletion_timestamp = Some(now);
        }
        self.deletion_grace_seconds = Some(0);
    }

    /// A patch that removes `finalizer`. The update removes the object when no finalizer
    /// is left and its deletion has no grace period left (`ShouldDeleteDuringUpdate`).
    /// Returns whether the object is gone.
    pub fn remove_finalizer(&mut self, finalizer: &str) -> Result<bool, Refusal> {
        if self.gone {
            return Err(Refusal::NotFound);
        }
        let Some(index) = self.finalizers.iter().position(|f| f == finalizer) else {
            return Err(Refusal::NoSuchFinalizer(finalizer.to_owned()));
        };
        self.finalizers.remove(index);
        let delete_now = self.finalizers.is_empty()
            && self.deletion_timestamp.is_some()
            && self.deletion_grace_seconds.is_none_or(|g| g == 0);
        if delete_now {
            self.gone = true;
        }
        Ok(delete_now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + secs).expect("a valid time")
    }

    fn unscaled(secs: i64) -> SignedDuration {
        SignedDuration::from_secs(secs)
    }

    fn object(finalizers: &[&str]) -> PodObject {
        PodObject::new(finalizers.iter().map(|f| (*f).to_owned()).collect(), 30)
    }

    #[test]
    fn a_graceful_delete_sets_the_timestamp_to_request_plus_grace() {
        let mut pod = object(&[]);
        let deleted = pod.delete(at(0), Some(10), false, unscaled);
        assert_eq!(deleted, Ok(Deleted::Updated { grace_seconds: 10 }));
        let state = pod.state(2);
        assert_eq!(state.deletion_timestamp, Some(Time(at(10))));
        assert_eq!(state.deletion_grace_period_seconds, Some(10));
        assert!(!state.gone);
    }

    #[test]
    fn without_a_requested_grace_period_the_pods_own_applies_scaled_to_wall_time() {
        let mut pod = object(&[]);
        let half = |secs: i64| SignedDuration::from_millis(secs * 500);
        assert_eq!(
            pod.delete(at(0), None, false, half),
            Ok(Deleted::Updated { grace_seconds: 30 })
        );
        assert_eq!(pod.state(1).deletion_timestamp, Some(Time(at(15))));
    }

    #[test]
    fn a_second_delete_may_only_shorten_the_grace_period_counted_from_the_first_request() {
        let mut pod = object(&[]);
        pod.delete(at(0), Some(30), false, unscaled)
            .expect("deleted");
        assert_eq!(
            pod.delete(at(5), Some(40), false, unscaled),
            Ok(Deleted::Pending)
        );
        assert_eq!(
            pod.delete(at(5), None, false, unscaled),
            Ok(Deleted::Pending)
        );
        assert_eq!(
            pod.delete(at(5), Some(10), false, unscaled),
            Ok(Deleted::Updated { grace_seconds: 10 })
        );
        assert_eq!(pod.state(3).deletion_timestamp, Some(Time(at(10))));
        // Shortened below the time already spent: now, with 1 s kept for the node.
        assert_eq!(
            pod.delete(at(8), Some(2), false, unscaled),
            Ok(Deleted::Updated { grace_seconds: 1 })
        );
        assert_eq!(pod.state(4).deletion_timestamp, Some(Time(at(8))));
    }

    #[test]
    fn a_force_delete_removes_the_object_at_once_unless_finalizers_remain() {
        let mut plain = object(&[]);
        assert_eq!(
            plain.delete(at(0), Some(0), false, unscaled),
            Ok(Deleted::Removed { grace_seconds: 0 })
        );
        assert!(plain.state(2).gone);
        assert_eq!(
            plain.delete(at(1), Some(0), false, unscaled),
            Err(Refusal::NotFound)
        );

        let mut kept = object(&["example.com/keep"]);
        assert_eq!(
            kept.delete(at(0), Some(0), false, unscaled),
            Ok(Deleted::Updated { grace_seconds: 0 })
        );
        let state = kept.state(2);
        assert_eq!(state.deletion_timestamp, Some(Time(at(0))));
        assert_eq!(state.deletion_grace_period_seconds, Some(0));
        assert!(!state.gone);
        assert_eq!(kept.remove_finalizer("example.com/keep"), Ok(true));
        assert!(kept.state(3).gone);
    }

    #[test]
    fn the_nodes_final_delete_removes_the_object_or_leaves_it_to_its_finalizers() {
        let mut plain = object(&[]);
        plain
            .delete(at(0), Some(30), false, unscaled)
            .expect("deleted");
        assert_eq!(
            plain.delete(at(4), Some(0), true, unscaled),
            Ok(Deleted::Removed { grace_seconds: 0 })
        );

        let mut kept = object(&["a", "b"]);
        kept.delete(at(0), Some(30), false, unscaled)
            .expect("deleted");
        assert_eq!(
            kept.delete(at(4), Some(0), true, unscaled),
            Ok(Deleted::Updated { grace_seconds: 0 })
        );
        // The timestamp cannot move into the past: it becomes the time of the final delete.
        assert_eq!(kept.state(3).deletion_timestamp, Some(Time(at(4))));
        assert_eq!(kept.remove_finalizer("a"), Ok(false));
        assert_eq!(
            kept.remove_finalizer("a"),
            Err(Refusal::NoSuchFinalizer("a".to_owned()))
        );
        assert_eq!(kept.remove_finalizer("b"), Ok(true));
    }

    #[test]
    fn removing_the_last_finalizer_during_a_graceful_deletion_leaves_the_object_to_the_node() {
        let mut pod = object(&["a"]);
        pod.delete(at(0), Some(30), false, unscaled)
            .expect("deleted");
        assert_eq!(pod.remove_finalizer("a"), Ok(false));
        assert!(!pod.state(3).gone);
        assert_eq!(
            pod.delete(at(5), Some(0), true, unscaled),
            Ok(Deleted::Removed { grace_seconds: 0 })
        );
    }

    #[test]
    fn removing_finalizers_of_a_pod_nobody_deleted_keeps_it() {
        let mut pod = object(&["a"]);
        assert_eq!(pod.remove_finalizer("a"), Ok(false));
        assert!(!pod.state(2).gone);
    }

    #[test]
    fn a_terminated_pod_is_deleted_without_grace_and_negative_periods_become_one_second() {
        let mut done = object(&[]);
        assert_eq!(
            done.delete(at(0), Some(30), true, unscaled),
            Ok(Deleted::Removed { grace_seconds: 0 })
        );
        let mut negative = object(&[]);
        assert_eq!(
            negative.delete(at(0), Some(-5), false, unscaled),
            Ok(Deleted::Updated { grace_seconds: 1 })
        );
    }
}
