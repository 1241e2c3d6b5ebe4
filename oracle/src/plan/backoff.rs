//! The crash-loop back-off of one container, as the kubelet keeps it: one client-go
//! `flowcontrol.Backoff` entry per container spec, consulted by `doBackOff` whenever the
//! container is to be started again. Sources: docs/fidelity/restart-after-probe-kill.md
//! and docs/fidelity/backoff.md.
//!
//! What a naive reading gets wrong, and this module follows:
//! - `doBackOff` measures from the FinishedAt of the newest *exited* instance in the pod
//!   status the sync started with. After a crash that is the instance that just exited.
//!   After a liveness or startup kill, `SyncPod` kills and starts in the same sync with the
//!   status from before the kill, so it is the instance *before* the killed one: the first
//!   kill restarts at once without touching the entry, and later kills restart at once
//!   until the back-off exceeds the time since the previous exit.
//! - `Next` (double, or start over at the initial value when the entry expired) runs only
//!   when a start is allowed; its time is the entry's `lastUpdate`.
//! - An entry expires 600 s after its `lastUpdate` (`HasExpiredFunc`), and housekeeping
//!   (`HandlePodCleanups`, every 2 s) deletes expired entries with `GC()`, also while the
//!   container waits out its back-off: the restart then comes at the next sync, and the
//!   ladder starts over.
//!
//! Times here are spans on the chain of one container's instances: every moment has an
//! earliest and a latest value counted from pod creation, and the difference of two
//! moments on the chain is known to within the difference of their earliest and of their
//! latest values. A decision whose outcome that uncertainty (plus a margin for timing
//! noise) could flip is reported as undecided rather than guessed.

use super::{restart_slack, AfterExit, RELIST_PERIOD, STATUS_LAG};
use crate::duration::SpecDuration;
use crate::probes::PROBE_TIMING_MARGIN;
use crate::rules::RuleId;
use crate::scenario::BackOffParams;

/// Back-off entries expire when their last update is this old (`crashLoopBackOff.
/// HasExpiredFunc`, pkg/kubelet/kubelet.go: `eventTime.Sub(lastUpdate) > 600*time.Second`,
/// hard-coded regardless of the configured maximum; `2 * MaxContainerBackOff`, also 600 s,
/// before it).
pub const BACK_OFF_RESET_AFTER: SpecDuration = SpecDuration::from_secs(600);

/// How often housekeeping runs the back-off's `GC()` (`housekeepingPeriod`,
/// pkg/kubelet/kubelet.go).
pub const HOUSEKEEPING_PERIOD: SpecDuration = SpecDuration::from_secs(2);

/// The longest gap between two syncs of a pod whose container waits out a back-off: the
/// pod worker requeues after the failed start at `wait.Jitter(backOffPeriod=10s, 0.5)` up
/// to v1.34, and at `Jitter(min(remaining back-off, 60s), 0.5)` since kubernetes#133066.
pub const BACK_OFF_REQUEUE_MAX: SpecDuration = SpecDuration::from_secs(90);

/// Distance from the 600 s expiry within which timing noise could decide whether an entry
/// expired, was collected, or the back-off ran out first.
pub const BACK_OFF_RESET_MARGIN: SpecDuration = SpecDuration::from_secs(30);

/// Distance from the current back-off within which the time since the previous exit leaves
/// undecided whether a probe kill restarts at once.
pub const PROBE_KILL_MARGIN: SpecDuration = PROBE_TIMING_MARGIN;

/// A moment on one container's chain of instances: earliest and latest, from pod creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Moment {
    pub lo: SpecDuration,
    pub hi: SpecDuration,
}

impl Moment {
    pub fn new(lo: SpecDuration, hi: SpecDuration) -> Moment {
        Moment { lo, hi: hi.max(lo) }
    }

    /// How long after `earlier` this moment comes, earliest and latest.
    fn since(self, earlier: Moment) -> (SpecDuration, SpecDuration) {
        let lo = self.lo.saturating_sub(earlier.lo);
        (lo, self.hi.saturating_sub(earlier.hi).max(lo))
    }

    fn plus(self, lo: SpecDuration, hi: SpecDuration) -> Moment {
        Moment::new(self.lo + lo, self.hi + hi)
    }
}

/// Whether a span is longer than `limit`; Err when the span or `margin` straddles it.
fn longer_than(
    span: (SpecDuration, SpecDuration),
    limit: SpecDuration,
    margin: SpecDuration,
    what: &str,
) -> Result<bool, String> {
    if span.0 > limit + margin {
        Ok(true)
    } else if span.1 + margin <= limit {
        Ok(false)
    } else {
        Err(format!(
            "{what} lasts {} to {}, within {margin} of {limit}",
            span.0, span.1
        ))
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// `entry.backoff`: what the container waits if it is refused a start now.
    current: SpecDuration,
    /// When `Next` last ran.
    last_update: Moment,
}

/// The kubelet's decision after an instance ended, when the restart policy restarts it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Restart {
    pub after_exit: AfterExit,
    pub rule: RuleId,
    /// The next instance's start window, after the exit.
    pub window: (SpecDuration, SpecDuration),
}

/// One container's back-off entry and the FinishedAt of its newest exited instance.
#[derive(Clone, Copy, Debug)]
pub(super) struct CrashLoop {
    params: BackOffParams,
    entry: Option<Entry>,
    newest_exit: Option<Moment>,
}

impl CrashLoop {
    pub fn new(params: BackOffParams) -> CrashLoop {
        CrashLoop {
            params,
            entry: None,
            newest_exit: None,
        }
    }

    /// An instance ended at `finished`. `killed` is true when a liveness or startup probe
    /// had it killed (the kubelet restarts it in the same sync as the kill).
    pub fn after_end(&mut self, finished: Moment, killed: bool) -> Result<Restart, String> {
        let previous_exit = self.newest_exit.replace(finished);
        if killed {
            self.after_kill(previous_exit, finished)
        } else {
            self.after_crash(finished)
        }
    }

    /// The instance was not restarted (the restart policy); it still is the newest exited.
    pub fn stays_terminated(&mut self, finished: Moment) {
        self.newest_exit = Some(finished);
    }

    /// Whether `GC()` or `hasExpired` would have dropped the entry by `at`.
    fn expired_by(&self, at: Moment) -> Result<bool, String> {
        match self.entry {
            None => Ok(true),
            Some(entry) => longer_than(
                at.since(entry.last_update),
                BACK_OFF_RESET_AFTER,
                BACK_OFF_RESET_MARGIN,
                "the time since the back-off's last update",
            ),
        }
    }

    /// `Next(key, eventTime)` at `now`: start over when the entry expired at `event`,
    /// else double up to the maximum.
    fn next(&mut self, event: Moment, now: Moment) -> Result<(), String> {
        let current = match self.entry {
            Some(entry) if !self.expired_by(event)? => (entry.current * 2).min(self.params.max),
            _ => self.params.initial,
        };
        self.entry = Some(Entry {
            current,
            last_update: now,
        });
        Ok(())
    }

    /// The sync after a crash: `doBackOff` with the instance that just exited.
    fn after_crash(&mut self, finished: Moment) -> Result<Restart, String> {
        let had_entry = self.entry.is_some();
        if self.expired_by(finished)? {
            self.next(finished, finished)?;
            return Ok(Restart {
                after_exit: AfterExit::RestartImmediately,
                rule: if had_entry {
                    RuleId::RestartBackoffReset
                } else {
                    RuleId::RestartBackoffFirstImmediate
                },
                window: (SpecDuration::ZERO, STATUS_LAG),
            });
        }
        self.wait_out(finished)
    }

    /// The sync that kills a probe-failed instance and starts the next one, with the
    /// status from before the kill: `doBackOff` sees the instance before the killed one
    /// as the newest exited.
    fn after_kill(
        &mut self,
        previous_exit: Option<Moment>,
        killed: Moment,
    ) -> Result<Restart, String> {
        let immediate = Restart {
            after_exit: AfterExit::RestartImmediately,
            rule: RuleId::RestartBackoffProbeKill,
            window: (SpecDuration::ZERO, STATUS_LAG),
        };
        if self.expired_by(killed)? {
            // Housekeeping collected the entry while the killed instance ran.
            self.entry = None;
        }
        let Some(previous_exit) = previous_exit else {
            // Nothing exited before: no back-off, and `Next` is not called.
            return Ok(immediate);
        };
        let Some(entry) = self.entry else {
            self.next(previous_exit, killed)?;
            return Ok(immediate);
        };
        if self.expired_by(previous_exit)? {
            self.next(previous_exit, killed)?;
            return Ok(immediate);
        }
        let ran_past_back_off = longer_than(
            killed.since(previous_exit),
            entry.current,
            PROBE_KILL_MARGIN,
            "the time from the previous exit to the kill",
        );
        match ran_past_back_off {
            Ok(true) => {
                self.next(previous_exit, killed)?;
                Ok(immediate)
            }
            Ok(false) => {
                // The start is refused; the killed instance is now the newest exited,
                // and later syncs wait the back-off out from its FinishedAt.
                let mut restart = self.wait_out(killed)?;
                if restart.rule != RuleId::RestartBackoffCollected {
                    restart.rule = RuleId::RestartBackoffProbeKill;
                }
                Ok(restart)
            }
            Err(reason) => {
                // Timing decides between the two; both double the entry (`Next` at the
                // kill, or once the back-off is over), so only when differs.
                let blocked = self.wait_out(killed)?;
                if blocked.after_exit != AfterExit::RestartAfterBackOff(entry.current) {
                    return Err(reason);
                }
                if let Some(entry) = self.entry.as_mut() {
                    entry.last_update.lo = killed.lo;
                }
                Ok(Restart {
                    after_exit: AfterExit::RestartAtOnceOrAfterBackOff(entry.current),
                    rule: RuleId::RestartBackoffProbeKill,
                    window: (SpecDuration::ZERO, blocked.window.1),
                })
            }
        }
    }

    /// The container waits out `entry.current` from `exit`, unless housekeeping collects
    /// the entry first: then the next sync starts it and the ladder starts over.
    fn wait_out(&mut self, exit: Moment) -> Result<Restart, String> {
        let Some(entry) = self.entry else {
            return Err("no back-off entry to wait out".to_owned());
        };
        let back_off = entry.current;
        let collected_at = entry
            .last_update
            .plus(BACK_OFF_RESET_AFTER, BACK_OFF_RESET_AFTER);
        let (run_lo, run_hi) = exit.since(entry.last_update);
        let collected_first = longer_than(
            (run_lo + back_off, run_hi + back_off),
            BACK_OFF_RESET_AFTER,
            BACK_OFF_RESET_MARGIN,
            "the time from the back-off's last update to the end of the back-off",
        )?;
        let normal_hi = back_off + restart_slack(back_off);
        if !collected_first {
            self.next(exit, exit.plus(back_off, normal_hi))?;
            return Ok(Restart {
                after_exit: AfterExit::RestartAfterBackOff(back_off),
                rule: if back_off >= self.params.max {
                    RuleId::RestartBackoffCap
                } else {
                    RuleId::RestartBackoffDoubling
                },
                window: (back_off, normal_hi),
            });
        }
        let (wait_lo, _) = collected_at.since(exit);
        let wait_hi = (wait_lo + HOUSEKEEPING_PERIOD + BACK_OFF_REQUEUE_MAX + RELIST_PERIOD)
            .min(normal_hi)
            .max(wait_lo);
        self.entry = None;
        self.next(exit, exit.plus(wait_lo, wait_hi))?;
        Ok(Restart {
            after_exit: AfterExit::RestartWhenBackOffCollected {
                back_off,
                after: wait_lo,
                latest: wait_hi,
            },
            rule: RuleId::RestartBackoffCollected,
            window: (wait_lo, wait_hi),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> SpecDuration {
        SpecDuration::from_secs(secs)
    }

    fn at(secs: u64) -> Moment {
        Moment::new(s(secs), s(secs))
    }

    fn default_loop() -> CrashLoop {
        CrashLoop::new(BackOffParams {
            initial: s(10),
            max: s(300),
        })
    }

    #[test]
    fn crashes_restart_at_once_then_double_up_to_the_cap() {
        let mut crash_loop = default_loop();
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            now += 1;
            let restart = crash_loop.after_end(at(now), false).expect("decided");
            waits.push(restart.window.0.as_millis() / 1000);
            now += restart.window.0.as_millis() / 1000;
        }
        assert_eq!(waits, vec![0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn the_first_probe_kills_restart_at_once_and_the_entry_appears_at_the_second() {
        let mut crash_loop = default_loop();
        // Killed 20 s after each start, restarted at once each time.
        let first = crash_loop.after_end(at(20), true).expect("decided");
        assert_eq!(first.after_exit, AfterExit::RestartImmediately);
        assert_eq!(first.rule, RuleId::RestartBackoffProbeKill);
        assert!(crash_loop.entry.is_none(), "no Next on the first kill");
        let second = crash_loop.after_end(at(40), true).expect("decided");
        assert_eq!(second.after_exit, AfterExit::RestartImmediately);
        assert_eq!(crash_loop.entry.map(|e| e.current), Some(s(10)));
        // 20 s since the previous exit is longer than 10 s: at once, and doubled to 20.
        let third = crash_loop.after_end(at(60), true).expect("decided");
        assert_eq!(third.after_exit, AfterExit::RestartImmediately);
        assert_eq!(crash_loop.entry.map(|e| e.current), Some(s(20)));
        // 20 s against a 20 s back-off: timing decides between at once and after 20 s.
        let fourth = crash_loop.after_end(at(80), true).expect("decided");
        assert_eq!(
            fourth.after_exit,
            AfterExit::RestartAtOnceOrAfterBackOff(s(20))
        );
        assert_eq!(fourth.window.0, SpecDuration::ZERO);
        assert!(fourth.window.1 > s(20));
        assert_eq!(crash_loop.entry.map(|e| e.current), Some(s(40)));
    }

    #[test]
    fn a_kill_sooner_than_the_back_off_waits_it_out_from_the_kill() {
        let mut crash_loop = default_loop();
        crash_loop.after_end(at(1), false).expect("decided"); // entry 10 s
        crash_loop.after_end(at(2), false).expect("decided"); // waits 10, entry 20 s
                                                              // Restarted at 12 and killed at 15: 13 s since the exit at 2 is under 20 s.
        let restart = crash_loop.after_end(at(15), true).expect("decided");
        assert_eq!(restart.after_exit, AfterExit::RestartAfterBackOff(s(20)));
        assert_eq!(restart.rule, RuleId::RestartBackoffProbeKill);
        assert_eq!(restart.window.0, s(20));
    }

    #[test]
    fn housekeeping_collects_an_entry_while_the_container_waits() {
        let mut crash_loop = default_loop();
        // Six 1 s crashes: restarts at 1, 12, 33, 74, 155, 316 (waits 0..160).
        let mut start = 0;
        for _ in 0..6 {
            let restart = crash_loop.after_end(at(start + 1), false).expect("decided");
            start += 1 + restart.window.0.as_millis() / 1000;
        }
        assert_eq!(start, 316);
        // A 400 s run: 400 s since the last update is not expired, and the 300 s back-off
        // would end at 1016, after the entry is collected at 916.
        let restart = crash_loop.after_end(at(716), false).expect("decided");
        let AfterExit::RestartWhenBackOffCollected {
            back_off,
            after,
            latest,
        } = restart.after_exit
        else {
            panic!("the entry is collected first: {restart:?}");
        };
        assert_eq!((back_off, after), (s(300), s(200)));
        assert_eq!(restart.rule, RuleId::RestartBackoffCollected);
        assert_eq!(restart.window, (after, latest));
        assert!(latest > s(200) && latest < s(300));
        // The ladder starts over: the next crash waits the initial back-off.
        let next = crash_loop.after_end(at(917), false).expect("decided");
        assert_eq!(next.after_exit, AfterExit::RestartAfterBackOff(s(10)));
    }

    #[test]
    fn runs_near_the_expiry_are_undecided() {
        let mut crash_loop = default_loop();
        crash_loop.after_end(at(1), false).expect("decided");
        assert!(crash_loop.after_end(at(1 + 590), false).is_err());
        let mut crash_loop = default_loop();
        crash_loop.after_end(at(1), false).expect("decided");
        let restart = crash_loop.after_end(at(1 + 700), false).expect("decided");
        assert_eq!(restart.rule, RuleId::RestartBackoffReset);
    }
}
