//! The workload's logs that podman would lose: an init container's log file goes with the
//! container, so the target keeps a second name of it and reads it as `podman logs` would.

use super::convert::Inspected;
use super::{locked, Shared, SpecContainers};
use std::path::Path;

/// Gives each init container's log file a second name in the target's directory, once the
/// file exists (podman creates it when the container starts): podman deletes the file with
/// the container, which it does as soon as an init container succeeded, and the link keeps
/// what the workload wrote up to then. Best effort: a link across file systems fails, and
/// that container's log is then gone with it.
pub(super) fn keep_init_logs(
    containers: &SpecContainers,
    name: &str,
    shared: &Shared,
    inspected: &[Inspected],
) {
    let mut memory = locked(&shared.init);
    for init in &containers.init {
        if memory.log_links.contains_key(&init.name) {
            continue;
        }
        let podman_name = format!("{name}-{}", init.name);
        let Some(path) = inspected
            .iter()
            .find(|c| c.name == podman_name)
            .map(|c| Path::new(&c.host_config.log_config.path))
            .filter(|path| path.is_file())
        else {
            continue;
        };
        let link = shared.log_dir.join(format!("{}.log", init.name));
        let linked = std::fs::create_dir_all(&shared.log_dir)
            .and_then(|()| std::fs::hard_link(path, &link))
            .is_ok();
        if linked {
            memory.log_links.insert(init.name.clone(), link);
        }
    }
}

/// An init container's log as the target kept it ([`keep_init_logs`]).
pub(super) fn kept_init_log(shared: &Shared, container: &str) -> Option<String> {
    let link = locked(&shared.init).log_links.get(container).cloned()?;
    std::fs::read_to_string(link)
        .ok()
        .map(|text| k8s_file_messages(&text))
}

/// The messages of a `k8s-file` log as `podman logs` shows them: each line is
/// `TIME STREAM TAG MESSAGE`, TAG `F` for a full line and `P` for part of a longer one.
pub(super) fn k8s_file_messages(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut fields = line.splitn(4, ' ');
        let (Some(_time), Some(_stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        out.push_str(fields.next().unwrap_or(""));
        if tag != "P" {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_log_reads_as_podman_logs_shows_it() {
        let text = "2026-11-29T08:20:29.706+00:00 stdout F {\"event\":\"start\"}\n\
                    2026-11-29T08:20:29.707+00:00 stdout P {\"event\":\n\
                    2026-11-29T08:20:29.708+00:00 stdout F \"exit\"}\n\
                    2026-11-29T08:20:29.709+00:00 stderr F \n";
        assert_eq!(
            k8s_file_messages(text),
            "{\"event\":\"start\"}\n{\"event\":\"exit\"}\n\n"
        );
    }
}
