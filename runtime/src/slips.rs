//! Timing slips: moments where the runtime itself ran later than its scaled clock can
//! absorb, so that a decision it took on a short scaled duration (a probe's timeout, an
//! answer window of the workload) may have come out as it would not on a node running in
//! real time. A probe timeout of 1 s is 50 ms of wall time at the default scale; a 2-core
//! machine that stalls the runtime for that long turns a prompt answer into a failure.
//!
//! The runtime never acts on a slip. It only keeps them, so that whoever judges a run can
//! tell a verdict taken on a disturbed clock from one taken on a clean one.

use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// Lateness, in spec time, past which a pod's probe counts as slipped: well under the
/// shortest duration a pod spec can give a probe (1 s).
const PROBE_SLIP_SPEC: Duration = Duration::from_millis(400);

/// Lateness, in spec time, past which a stall of the whole runtime counts as a slip: the
/// order of the windows' tolerance. Shorter stalls of a busy machine are frequent and
/// matter only to probes, whose own lateness is measured.
const STALL_SPEC: Duration = Duration::from_secs(4);

/// How often the monitor checks that the runtime's executor still runs on time.
const MONITOR_PERIOD: Duration = Duration::from_millis(20);

/// Slips kept; older ones are dropped first.
const SLIPS_KEPT: usize = 10_000;

/// One moment the runtime ran late.
#[derive(Clone, Debug)]
struct Slip {
    at: jiff::Timestamp,
    /// The pod whose work ran late, or None when the whole runtime stalled.
    pod: Option<String>,
    what: String,
}

/// The slips of one runtime.
#[derive(Debug)]
pub(crate) struct Slips {
    probe_threshold: Duration,
    stall_threshold: Duration,
    entries: Mutex<VecDeque<Slip>>,
}

impl Slips {
    pub fn new(time_scale: f64) -> Slips {
        Slips {
            probe_threshold: PROBE_SLIP_SPEC.mul_f64(time_scale),
            stall_threshold: STALL_SPEC.mul_f64(time_scale),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// Records a slip of `pod`'s work (None: the whole runtime's).
    pub fn record(&self, pod: Option<&str>, what: String) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == SLIPS_KEPT {
            entries.pop_front();
        }
        entries.push_back(Slip {
            at: jiff::Timestamp::now(),
            pod: pod.map(str::to_owned),
            what,
        });
    }

    /// Records `what` if something due at `due` ran late: a pod's probe by more than the
    /// probe threshold, the whole runtime (`pod` None) by more than the stall threshold.
    pub fn late(&self, pod: Option<&str>, due: Instant, what: impl FnOnce() -> String) {
        let late = due.elapsed();
        let threshold = match pod {
            Some(_) => self.probe_threshold,
            None => self.stall_threshold,
        };
        if late > threshold {
            self.record(pod, format!("{} {} ms late", what(), late.as_millis()));
        }
    }

    /// The slips that may have touched `pod` since `since`, its own and the runtime's: when
    /// each happened and what ran late.
    pub fn of_pod_since(
        &self,
        pod: &str,
        since: jiff::Timestamp,
    ) -> Vec<(jiff::Timestamp, String)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .filter(|slip| slip.at >= since && slip.pod.as_deref().is_none_or(|p| p == pod))
            .map(|slip| (slip.at, slip.what.clone()))
            .collect()
    }
}

/// Wakes every [`MONITOR_PERIOD`] and records a runtime-wide slip whenever a wake-up came
/// late: the executor, or the whole machine, did not run the runtime's tasks on time.
/// Ends with the runtime.
pub(crate) async fn monitor(slips: Weak<Slips>) {
    let mut ticker = tokio::time::interval(MONITOR_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let due = ticker.tick().await.into_std();
        let Some(slips) = slips.upgrade() else {
            return;
        };
        slips.late(None, due, || "the runtime's executor woke".to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slip_touches_its_own_pod_and_runtime_wide_slips_touch_every_pod() {
        let slips = Slips::new(0.05);
        let before = jiff::Timestamp::now();
        slips.record(
            Some("a"),
            "a's liveness probe ran to its timeout".to_owned(),
        );
        slips.record(None, "the runtime's executor woke 40 ms late".to_owned());
        let of_a = slips.of_pod_since("a", before);
        let of_b = slips.of_pod_since("b", before);
        assert_eq!(of_a.len(), 2);
        assert_eq!(of_b.len(), 1);
        assert_eq!(of_b[0].1, "the runtime's executor woke 40 ms late");
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
        assert!(slips.of_pod_since("a", later).is_empty());
    }

    #[test]
    fn lateness_under_the_threshold_is_no_slip() {
        // 400 ms of spec time at scale 0.05 is 20 ms of wall time.
        let slips = Slips::new(0.05);
        let before = jiff::Timestamp::now();
        slips.late(Some("a"), Instant::now(), || "a probe ticked".to_owned());
        assert!(slips.of_pod_since("a", before).is_empty());
        let long_ago = Instant::now() - Duration::from_millis(30);
        slips.late(Some("a"), long_ago, || "a probe ticked".to_owned());
        // 4 s of spec time, 200 ms of wall time, for a stall of the whole runtime.
        slips.late(None, long_ago, || "the runtime woke".to_owned());
        let recorded = slips.of_pod_since("a", before);
        assert_eq!(recorded.len(), 1);
        assert!(recorded[0].1.starts_with("a probe ticked"), "{recorded:?}");
        slips.late(None, Instant::now() - Duration::from_millis(250), || {
            "the runtime woke".to_owned()
        });
        assert_eq!(slips.of_pod_since("b", before).len(), 1);
    }
}
