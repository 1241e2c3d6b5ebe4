//! Crash-loop back-off: the kubelet keeps one client-go `flowcontrol.Backoff` entry per
//! container, which `doBackOff` consults whenever the container is to start again.
//!
//! - After a crash, the back-off counts from the exit: the first restart is immediate and
//!   creates the entry at the initial back-off; each later one waits the entry's delay,
//!   which then doubles up to the cap. An entry last updated longer ago than the reset
//!   period has expired and starts over.
//! - After a liveness or startup kill, the kubelet kills and starts in one sync with the
//!   status from before the kill, so the back-off counts from the exit *before* the killed
//!   instance: the first kill restarts at once without an entry, later kills restart at
//!   once unless the delay is longer than the time since that exit (then the delay is
//!   waited out from the kill).
//! - Housekeeping deletes an expired entry even while a container waits: the container
//!   then starts at once and the ladder starts over.

use super::Timing;
use std::time::Duration;
use tokio::time::Instant;

/// One container's back-off entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// What the container waits when it is refused a start (spec time).
    delay: Duration,
    /// When `Next` last ran: a start (wall).
    last_update: Instant,
}

/// When a container that must restart starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Restart {
    /// At once.
    Now,
    /// At `at` (wall), refused until then with the back-off `delay` (spec time), which
    /// the Waiting message names.
    After { delay: Duration, at: Instant },
}

/// The back-off of one container.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CrashLoop {
    entry: Option<Entry>,
    /// When the newest exited instance finished (wall).
    newest_exit: Option<Instant>,
}

impl CrashLoop {
    /// Decides when a container whose instance ended at `exited_at` starts again; `killed`
    /// when a probe failure had it stopped; `now` is when the decision is taken.
    pub fn restart(
        &mut self,
        timing: &Timing,
        exited_at: Instant,
        killed: bool,
        now: Instant,
    ) -> Restart {
        let previous_exit = self.newest_exit.replace(exited_at);
        if self.expired(timing, now) {
            // Housekeeping has deleted the entry by now.
            self.entry = None;
        }
        if killed {
            let Some(previous_exit) = previous_exit else {
                return Restart::Now;
            };
            if let Some(entry) = self.entry {
                let since_previous = now.saturating_duration_since(previous_exit);
                if !self.expired(timing, previous_exit) && since_previous < timing.wall(entry.delay)
                {
                    return self.wait_out(timing, exited_at);
                }
            }
            self.next(timing, previous_exit, now);
            return Restart::Now;
        }
        if self.entry.is_none() || self.expired(timing, exited_at) {
            self.next(timing, exited_at, now);
            return Restart::Now;
        }
        self.wait_out(timing, exited_at)
    }

    /// Forgets the newest exit: the container is not restarted any more.
    pub fn record_exit(&mut self, exited_at: Instant) {
        self.newest_exit = Some(exited_at);
    }

    /// Whether the entry, if any, had expired at `at`: `hasExpired` and `GC()`.
    fn expired(&self, timing: &Timing, at: Instant) -> bool {
        self.entry.is_some_and(|entry| {
            at.saturating_duration_since(entry.last_update)
                > timing.wall(timing.kubelet.back_off_reset_after)
        })
    }

    /// `Next(key, event)` at `now`: start over when the entry expired at `event`, else
    /// double up to the maximum.
    fn next(&mut self, timing: &Timing, event: Instant, now: Instant) {
        let kubelet = &timing.kubelet;
        let delay = match self.entry {
            Some(entry) if !self.expired(timing, event) => {
                (entry.delay * 2).min(kubelet.back_off_max)
            }
            _ => kubelet.back_off_initial.min(kubelet.back_off_max),
        };
        self.entry = Some(Entry {
            delay,
            last_update: now,
        });
    }

    /// Waits the delay out from `exit`, or until housekeeping deletes the entry if that
    /// comes first.
    fn wait_out(&mut self, timing: &Timing, exit: Instant) -> Restart {
        let Some(entry) = self.entry else {
            self.next(timing, exit, exit);
            return Restart::Now;
        };
        let back_off_ends = exit + timing.wall(entry.delay);
        let collected = entry.last_update + timing.wall(timing.kubelet.back_off_reset_after);
        let at = back_off_ends.min(collected);
        if collected < back_off_ends {
            self.entry = None;
        }
        self.next(timing, exit, at);
        Restart::After {
            delay: entry.delay,
            at,
        }
    }
}

/// The Waiting message of a container in back-off, worded as the kubelet's.
pub(crate) fn waiting_message(delay: Duration, container: &str, pod: &str) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={pod}",
        go_duration(delay)
    )
}

/// Go's `time.Duration.String()` rounded to whole seconds, as the kubelet prints back-offs.
pub(crate) fn go_duration(spec: Duration) -> String {
    let secs = spec.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60),
    }
}
