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
        // Housekeeping deletes an entry once it has expired (`GC()` every 2 s), so the
        // expiry `doBackOff` checks at an earlier event time only finds deleted entries.
        if self.expired(timing, now) {
            self.entry = None;
        }
        let in_back_off = match (killed, previous_exit) {
            // Nothing exited before the killed instance: no back-off, and no `Next`.
            (true, None) => return Restart::Now,
            // Checked against the exit before the kill, which the status the sync started
            // with shows as the newest exited instance.
            (true, Some(previous)) => self
                .entry
                .filter(|entry| now.saturating_duration_since(previous) < timing.wall(entry.delay)),
            (false, _) => self.entry,
        };
        match in_back_off {
            Some(entry) => self.wait_out(timing, entry, exited_at),
            None => {
                self.next(timing, now);
                Restart::Now
            }
        }
    }

    /// Whether the entry, if any, had expired at `at`: `hasExpired` and `GC()`.
    fn expired(&self, timing: &Timing, at: Instant) -> bool {
        self.entry.is_some_and(|entry| {
            at.saturating_duration_since(entry.last_update)
                > timing.wall(timing.kubelet.back_off_reset_after)
        })
    }

    /// `Next` at `now`: the initial delay for a new entry, else double up to the maximum.
    fn next(&mut self, timing: &Timing, now: Instant) {
        let kubelet = &timing.kubelet;
        let delay = match self.entry {
            Some(entry) => (entry.delay * 2).min(kubelet.back_off_max),
            None => kubelet.back_off_initial.min(kubelet.back_off_max),
        };
        self.entry = Some(Entry {
            delay,
            last_update: now,
        });
    }

    /// Waits `entry`'s delay out from `exit`, or until housekeeping deletes the entry if
    /// that comes first; the Waiting message names the delay either way.
    fn wait_out(&mut self, timing: &Timing, entry: Entry, exit: Instant) -> Restart {
        let back_off_ends = exit + timing.wall(entry.delay);
        let collected = entry.last_update + timing.wall(timing.kubelet.back_off_reset_after);
        let at = back_off_ends.min(collected);
        if collected < back_off_ends {
            self.entry = None;
        }
        self.next(timing, at);
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
