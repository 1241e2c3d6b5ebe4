//! What the agent sees of the processes around it: the `processes` event.
//!
//! A container's `/proc` shows the processes of its PID namespace: its own alone, those of
//! every container of the pod with `shareProcessNamespace` (and the sandbox's pause
//! process), those of the target container for an ephemeral container with
//! `targetContainerName`. Reading it tells which of the pod's agents share a namespace
//! with this one, and that no other pod's agent ever does.

use podcheck_wire::{env, AgentProcess};
use std::path::Path;
use std::time::Duration;

/// How often the agent looks again, in wall time: the event says when the set changed to
/// within about this much, and a scan of a container's `/proc` costs next to nothing.
pub(crate) const RESCAN: Duration = Duration::from_secs(1);

/// What one scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Sorted.
    pub agents: Vec<AgentProcess>,
    pub others: u32,
}

/// How a visible process counts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Agent(AgentProcess),
    /// `podcheck-agent probe|hook`, or a process that has exited: not counted, as they
    /// come and go with every probe and hook.
    Transient,
    Other,
}

/// The agent binary's subcommands that are not an agent's main process: the exec
/// helpers, and the sandbox holder (which counts among the others).
const HELPERS: [&str; 2] = ["probe", "hook"];
const SANDBOX: &str = "pause";

/// Classifies a process by its state (the letter in `/proc/PID/stat`), its arguments and
/// its environment.
fn classify(state: char, argv: &[&str], environ: &[(&str, &str)]) -> Kind {
    // Z: a zombie nobody reaped yet; X: dead.
    if matches!(state, 'Z' | 'X') {
        return Kind::Transient;
    }
    let is_agent_binary = argv
        .first()
        .and_then(|program| Path::new(program).file_name())
        .is_some_and(|name| name == "podcheck-agent");
    let subcommand = argv.get(1).copied();
    if is_agent_binary && subcommand.is_some_and(|sub| HELPERS.contains(&sub)) {
        return Kind::Transient;
    }
    let lookup = |name: &str| {
        environ
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    match (
        is_agent_binary && subcommand != Some(SANDBOX),
        lookup(env::CONTAINER),
    ) {
        (true, Some(container)) => Kind::Agent(AgentProcess {
            pod: lookup(env::POD),
            container,
        }),
        _ => Kind::Other,
    }
}

/// The state letter of a `/proc/PID/stat` line: the first field after the command name,
/// which is in parentheses and may itself hold spaces and parentheses.
fn state_of(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// NUL-separated fields, as `cmdline` and `environ` hold them.
fn fields(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|field| !field.is_empty())
        .map(|field| String::from_utf8_lossy(field).into_owned())
        .collect()
}

/// Reads one `/proc/PID` directory; None when the process is gone (or unreadable, as a
/// process that is not there any more is).
fn read_process(dir: &Path) -> Option<Kind> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let state = state_of(&stat)?;
    let argv = fields(&std::fs::read(dir.join("cmdline")).unwrap_or_default());
    // Another user's process may hide its environment: then it is no agent this one can
    // name, and counts among the others.
    let environ = fields(&std::fs::read(dir.join("environ")).unwrap_or_default());
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let environ: Vec<(&str, &str)> = environ
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .collect();
    Some(classify(state, &argv, &environ))
}

/// Scans `proc` (a procfs mount).
pub(crate) fn scan(proc: &Path) -> Seen {
    let mut seen = Seen::default();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return seen;
    };
    for entry in entries.filter_map(Result::ok) {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        match read_process(&entry.path()) {
            Some(Kind::Agent(agent)) => seen.agents.push(agent),
            Some(Kind::Other) => seen.others += 1,
            Some(Kind::Transient) | None => {}
        }
    }
    seen.agents.sort();
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "/podcheck-agent";

    fn agent(pod: Option<&str>, container: &str) -> Kind {
        Kind::Agent(AgentProcess {
            pod: pod.map(str::to_owned),
            container: container.to_owned(),
        })
    }

    #[test]
    fn agents_are_named_by_their_environment_and_helpers_do_not_count() {
        let env = [("PATH", "/bin"), (env::CONTAINER, "app"), (env::POD, "web")];
        assert_eq!(classify('S', &[AGENT], &env), agent(Some("web"), "app"));
        assert_eq!(
            classify('R', &["/usr/local/bin/podcheck-agent"], &env[..2]),
            agent(None, "app"),
            "an agent started without the pod's name"
        );
        // Exec probes and hooks run the agent binary with the container's environment.
        assert_eq!(
            classify('S', &[AGENT, "probe", "live"], &env),
            Kind::Transient
        );
        assert_eq!(
            classify('S', &[AGENT, "hook", "pre-stop"], &env),
            Kind::Transient
        );
        assert_eq!(classify('Z', &[AGENT], &env), Kind::Transient);
        // The sandbox holder and anything else is another process.
        assert_eq!(classify('S', &[AGENT, "pause"], &[]), Kind::Other);
        assert_eq!(
            classify('S', &["/bin/sh", "-c", "sleep 1"], &env),
            Kind::Other
        );
        assert_eq!(
            classify('S', &[AGENT], &[]),
            Kind::Other,
            "no container name"
        );
        assert_eq!(classify('I', &[], &[]), Kind::Other, "a kernel thread");
    }

    #[test]
    fn the_state_comes_after_the_command_name_whatever_it_holds() {
        assert_eq!(state_of("1 (podcheck-agent) S 0 1 1"), Some('S'));
        assert_eq!(state_of("42 (a) b) (c) Z 1 42"), Some('Z'));
        assert_eq!(state_of("garbage"), None);
    }

    fn write_process(proc: &Path, pid: u32, stat: &str, argv: &[&str], environ: &[&str]) {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("create a fake process");
        let joined = |parts: &[&str]| {
            let mut bytes = Vec::new();
            for part in parts {
                bytes.extend_from_slice(part.as_bytes());
                bytes.push(0);
            }
            bytes
        };
        std::fs::write(dir.join("stat"), stat).expect("write stat");
        std::fs::write(dir.join("cmdline"), joined(argv)).expect("write cmdline");
        std::fs::write(dir.join("environ"), joined(environ)).expect("write environ");
    }

    #[test]
    fn a_scan_lists_the_agents_sorted_and_counts_the_rest() {
        let proc = std::env::temp_dir().join(format!(
            "podcheck-agent-proc-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&proc);
        let me = [
            "PODCHECK_CONTAINER=web-b",
            "PODCHECK_POD=p",
            "PODCHECK_BEHAVIOUR={\"then\":\"forever\"}",
        ];
        write_process(&proc, 1, "1 (podcheck-agent) S 0", &[AGENT, "pause"], &[]);
        write_process(&proc, 7, "7 (podcheck-agent) S 0", &[AGENT], &me);
        write_process(
            &proc,
            9,
            "9 (podcheck-agent) S 0",
            &[AGENT],
            &["PODCHECK_CONTAINER=web-a", "PODCHECK_POD=p"],
        );
        write_process(
            &proc,
            12,
            "12 (podcheck-agent) S 0",
            &[AGENT, "probe", "ok"],
            &me,
        );
        write_process(&proc, 13, "13 (podcheck-agent) Z 0", &[], &[]);
        std::fs::create_dir_all(proc.join("self")).expect("create self");
        std::fs::write(proc.join("uptime"), "1.0 1.0").expect("write uptime");
        let seen = scan(&proc);
        let _ = std::fs::remove_dir_all(&proc);
        assert_eq!(
            seen,
            Seen {
                agents: vec![
                    AgentProcess {
                        pod: Some("p".to_owned()),
                        container: "web-a".to_owned()
                    },
                    AgentProcess {
                        pod: Some("p".to_owned()),
                        container: "web-b".to_owned()
                    },
                ],
                others: 1,
            }
        );
        assert_eq!(scan(Path::new("/nonexistent-proc")), Seen::default());
    }
}
