//! Crash-loop back-off: the kubelet keeps one client-go `flowcontrol.Backoff` entry per
//! container. The first restart is immediate; each later one waits the entry's delay,
//! which starts at the initial back-off and doubles up to the cap; an entry untouched
//! for longer than the reset period counts as expired and starts over.

use super::Timing;
use std::time::Duration;
use tokio::time::Instant;

/// One container's back-off entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// What the next delayed restart waits (spec time).
    delay: Duration,
    /// When the entry last changed: a restart's time (wall).
    last_update: Instant,
}

/// When a container that must restart starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Restart {
    /// At once: the container's first restart, or the first after its entry expired.
    Now,
    /// After `delay` (spec time), which ends at `at` (wall).
    After { delay: Duration, at: Instant },
}

/// The back-off of one container.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CrashLoop {
    entry: Option<Entry>,
}

impl CrashLoop {
    /// Decides when a container that exited at `exited_at` restarts; `now` is when the
    /// decision is taken.
    pub fn restart(&mut self, timing: &Timing, exited_at: Instant, now: Instant) -> Restart {
        let kubelet = &timing.kubelet;
        let expired = self.entry.is_none_or(|entry| {
            exited_at.saturating_duration_since(entry.last_update)
                > timing.wall(kubelet.back_off_reset_after)
        });
        match self.entry {
            Some(entry) if !expired => {
                let at = exited_at + timing.wall(entry.delay);
                self.entry = Some(Entry {
                    delay: (entry.delay * 2).min(kubelet.back_off_max),
                    last_update: at,
                });
                Restart::After {
                    delay: entry.delay,
                    at,
                }
            }
            _ => {
                self.entry = Some(Entry {
                    delay: kubelet.back_off_initial.min(kubelet.back_off_max),
                    last_update: now,
                });
                Restart::Now
            }
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
