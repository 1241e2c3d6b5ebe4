//! A progress bar on a terminal (cases done of all, which are running, elapsed time, time
//! left); nothing on a pipe or file, where the commands print their plain lines instead.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, IsTerminal};
use std::sync::Mutex;

/// How many running cases the bar names; the rest are counted.
const NAMED_RUNNING: usize = 3;

pub struct Progress {
    bar: Option<ProgressBar>,
    running: Mutex<Vec<String>>,
}

impl Progress {
    /// A bar of `total` cases (a spinner when the total is unknown) if stdout is a terminal.
    pub fn new(total: Option<u64>) -> Progress {
        Progress::drawn_if(io::stdout().is_terminal(), total)
    }

    fn drawn_if(terminal: bool, total: Option<u64>) -> Progress {
        let bar = terminal.then(|| {
            let template = match total {
                Some(_) => "{bar:30} {pos}/{len} done, {elapsed} elapsed, ETA {eta}  {wide_msg}",
                None => "{spinner} {pos} done, {elapsed} elapsed  {wide_msg}",
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stdout());
            bar.set_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(250));
            bar
        });
        Progress {
            bar,
            running: Mutex::new(Vec::new()),
        }
    }

    /// Whether a bar is drawn (stdout is a terminal).
    pub fn drawn(&self) -> bool {
        self.bar.is_some()
    }

    /// A case started.
    pub fn started(&self, name: &str) {
        if let Ok(mut running) = self.running.lock() {
            running.push(name.to_owned());
            self.show_running(&running);
        }
    }

    /// A case finished: `print` writes its lines above the bar.
    pub fn finished(&self, name: &str, print: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        if let Ok(mut running) = self.running.lock() {
            if let Some(index) = running.iter().position(|n| n == name) {
                running.remove(index);
            }
            self.show_running(&running);
        }
        match &self.bar {
            Some(bar) => {
                let printed = bar.suspend(print);
                bar.inc(1);
                printed
            }
            None => print(),
        }
    }

    fn show_running(&self, running: &[String]) {
        let Some(bar) = &self.bar else { return };
        if running.is_empty() {
            bar.set_message("");
            return;
        }
        let mut message = format!(
            "running {}: {}",
            running.len(),
            running
                .iter()
                .take(NAMED_RUNNING)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        if running.len() > NAMED_RUNNING {
            message.push_str(", …");
        }
        bar.set_message(message);
    }

    /// Removes the bar, leaving the lines printed above it.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_lines_print_as_they_come_and_no_bar_is_drawn() {
        let progress = Progress::drawn_if(false, Some(2));
        assert!(!progress.drawn());
        progress.started("a");
        let mut printed = false;
        progress
            .finished("a", || {
                printed = true;
                Ok(())
            })
            .expect("prints");
        assert!(printed);
    }

    #[test]
    fn the_bar_names_the_cases_running_now() {
        let progress = Progress::drawn_if(true, Some(5));
        if let Some(bar) = &progress.bar {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        for name in ["a", "b", "c", "d"] {
            progress.started(name);
        }
        progress.finished("b", || Ok(())).expect("prints");
        let bar = progress.bar.as_ref().expect("a bar");
        assert_eq!(bar.message(), "running 3: a, c, d");
        assert_eq!(bar.position(), 1);
        progress.started("e");
        assert_eq!(bar.message(), "running 4: a, c, d, …");
        progress.finish();
    }
}
