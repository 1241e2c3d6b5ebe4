//! The agent's lifecycle behaviour, from outside: hook calls (through the exec handler
//! `podcheck-agent hook NAME` and as plain HTTP), and what it does on SIGTERM.
//!
//! Log timestamps are the agent's wall clock, so spacing between two of its lines is
//! checked against the scaled spec time exactly; everything that should happen "soon" may
//! take up to `PATIENCE`.

use podcheck_wire::LogEvent;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AGENT: &str = env!("CARGO_BIN_EXE_podcheck-agent");
/// Wall seconds per spec second: 100 spec ms are 1 wall ms.
const SCALE: f64 = 0.01;
/// How long anything that should happen soon may take.
const PATIENCE: Duration = Duration::from_secs(10);

/// Spec milliseconds lasting `wall_ms` of wall time.
fn spec(wall_ms: u64) -> u64 {
    (wall_ms as f64 / SCALE) as u64
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

fn temp_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "podcheck-agent-lifecycle-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ))
}

fn agent_command(behaviour: &Value, state_dir: &PathBuf) -> Command {
    let mut command = Command::new(AGENT);
    command
        .env("PODCHECK_BEHAVIOUR", behaviour.to_string())
        .env("PODCHECK_TIME_SCALE", SCALE.to_string())
        .env("PODCHECK_STATE_DIR", state_dir)
        .env("PODCHECK_CONTAINER", "main")
        .env("PODCHECK_POD", "lifecycle");
    command
}

/// A running agent, killed (and its state dir removed) when dropped.
struct Agent {
    child: Child,
    state_dir: PathBuf,
    behaviour: Value,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn spawn(behaviour: Value) -> Agent {
        let state_dir = temp_dir();
        let mut child = agent_command(&behaviour, &state_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("log lock").push(line);
            }
        });
        let agent = Agent {
            child,
            state_dir,
            behaviour,
            lines,
        };
        agent.wait_for_log(|e| e["event"] == "start");
        agent
    }

    /// The log, without the `processes` events: these tests run the agent in the
    /// machine's PID namespace, where they come whenever any process on the machine
    /// starts or ends ([`every_event`](Self::every_event) has them).
    fn log(&self) -> Vec<Value> {
        self.every_event()
            .into_iter()
            .filter(|e| e["event"] != "processes")
            .collect()
    }

    fn every_event(&self) -> Vec<Value> {
        self.lines
            .lock()
            .expect("log lock")
            .iter()
            .map(|line| typed_log_line(line))
            .collect()
    }

    /// Waits until `n` lines match `wanted` and returns them.
    fn wait_for_logs(&self, n: usize, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found: Vec<Value> = self.every_event().into_iter().filter(&wanted).collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{n} lines not logged; log: {:?}",
                self.log()
            );
            std::thread::sleep(ms(5));
        }
    }

    fn wait_for_log(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_logs(1, wanted).remove(0)
    }

    /// Runs `podcheck-agent hook <name>` against this agent.
    fn hook(&self, name: &str) -> Output {
        run_hook(&self.behaviour, name)
    }

    fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: signals our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the agent to end, for at most `PATIENCE`.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for agent") {
                return status;
            }
            assert!(Instant::now() < deadline, "the agent did not end");
            std::thread::sleep(ms(5));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait for agent").is_none()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn run_hook(behaviour: &Value, name: &str) -> Output {
    let state_dir = temp_dir();
    let output = agent_command(behaviour, &state_dir)
        .args(["hook", name])
        .output()
        .expect("run hook");
    assert!(
        !state_dir.exists(),
        "the hook handler must not touch the state dir"
    );
    output
}

fn exit_code_and_stdout(output: &Output) -> (i32, String) {
    (
        output.status.code().expect("the hook handler exited"),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    )
}

/// Reads a log line as JSON, after checking it is one of the events `podcheck-wire`
/// defines and says nothing that the typed event does not.
fn typed_log_line(line: &str) -> Value {
    let event = LogEvent::parse(line).unwrap_or_else(|err| panic!("{line}: {err}"));
    let value: Value = serde_json::from_str(line).expect("log lines are JSON");
    assert_eq!(
        serde_json::to_value(&event).expect("an event serializes"),
        value,
        "{line}"
    );
    value
}

fn ts(event: &Value) -> u64 {
    event["tsMs"].as_u64().expect("tsMs")
}

fn is_hook(event: &Value, kind: &str, name: &str) -> bool {
    event["event"] == kind && event["name"] == name
}

/// Sends `GET path` to 127.0.0.1:`port`; returns the status code.
fn get(port: u16, path: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kube-lifecycle/1.35\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

#[test]
fn exec_hooks_are_answered_after_their_time_and_logged_at_both_ends() {
    let port = free_port();
    let agent = Agent::spawn(json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {}},
        "hooks": {
            "pre-stop": {"takesMs": spec(300)},
            "broken": {"fail": true}
        }
    }));

    let asked = Instant::now();
    let output = agent.hook("pre-stop");
    assert!(
        asked.elapsed() >= ms(300),
        "answered after {:?}",
        asked.elapsed()
    );
    assert_eq!(
        exit_code_and_stdout(&output),
        (0, "HTTP/1.1 200 OK".to_owned())
    );
    let started = agent.wait_for_log(|e| is_hook(e, "hookStarted", "pre-stop"));
    let ended = agent.wait_for_log(|e| is_hook(e, "hookEnded", "pre-stop"));
    assert_eq!(started["via"], "exec");
    assert_eq!(ended["ok"], true);
    assert!(
        ts(&ended) - ts(&started) >= 300,
        "{started} .. {ended}: shorter than the hook takes"
    );

    assert_eq!(
        exit_code_and_stdout(&agent.hook("broken")),
        (1, "HTTP/1.1 500 Internal Server Error".to_owned())
    );
    let ended = agent.wait_for_log(|e| is_hook(e, "hookEnded", "broken"));
    assert_eq!(ended["ok"], false);

    // A hook the behaviour does not have: answered 404, and logged so the misrouting shows.
    assert_eq!(
        exit_code_and_stdout(&agent.hook("post-start")),
        (1, "HTTP/1.1 404 Not Found".to_owned())
    );
    let started = agent.wait_for_log(|e| is_hook(e, "hookStarted", "post-start"));
    assert_eq!(started["via"], "exec");
    let ended = agent.wait_for_log(|e| is_hook(e, "hookEnded", "post-start"));
    assert_eq!(ended["ok"], false);

    // An httpGet handler's call is the same request without the exec marker.
    assert_eq!(get(port, "/hook/pre-stop"), 200);
    let started = agent.wait_for_logs(2, |e| is_hook(e, "hookStarted", "pre-stop"));
    assert_eq!(started[1]["via"], "http");
    assert!(
        agent.log().iter().all(|e| e["event"] != "probe"),
        "hook calls are not probes: {:?}",
        agent.log()
    );
}

#[test]
fn a_slow_hook_holds_up_neither_probes_nor_other_hooks() {
    let port = free_port();
    let agent = Agent::spawn(json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {"live": {"answers": [{"answer": "ok"}]}}},
        "hooks": {"slow": {"takesMs": spec(3000)}, "quick": {}}
    }));
    let behaviour = agent.behaviour.clone();
    let asked = Instant::now();
    let slow = std::thread::spawn(move || run_hook(&behaviour, "slow"));
    agent.wait_for_log(|e| is_hook(e, "hookStarted", "slow"));

    assert_eq!(get(port, "/live"), 200);
    assert_eq!(exit_code_and_stdout(&agent.hook("quick")).0, 0);
    assert!(
        asked.elapsed() < ms(3000),
        "the probe and the quick hook waited for the slow hook: {:?}",
        asked.elapsed()
    );
    assert!(!slow.is_finished(), "the slow hook ended early");
    assert_eq!(exit_code_and_stdout(&slow.join().expect("slow hook")).0, 0);
}

#[test]
fn an_exec_hook_waits_for_an_agent_that_is_not_listening_yet() {
    let port = free_port();
    let behaviour = json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {}},
        "hooks": {"post-start": {}}
    });
    // As an exec postStart handler may: called before the agent has started.
    let early = {
        let behaviour = behaviour.clone();
        std::thread::spawn(move || run_hook(&behaviour, "post-start"))
    };
    std::thread::sleep(ms(300));
    let agent = Agent::spawn(behaviour);
    assert_eq!(
        exit_code_and_stdout(&early.join().expect("hook")),
        (0, "HTTP/1.1 200 OK".to_owned())
    );
    agent.wait_for_log(|e| is_hook(e, "hookEnded", "post-start") && e["ok"] == true);
}

#[test]
fn an_exec_hook_gives_up_two_seconds_after_the_first_refusal() {
    let behaviour = json!({
        "then": "forever",
        "health": {"port": free_port(), "endpoints": {}},
        "hooks": {"post-start": {}}
    });
    let asked = Instant::now();
    let (code, stdout) = exit_code_and_stdout(&run_hook(&behaviour, "post-start"));
    let waited = asked.elapsed();
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("cannot connect"), "{stdout}");
    assert!(
        waited >= ms(2000) && waited < PATIENCE,
        "gave up after {waited:?}"
    );

    // Without hooks, or with a name that cannot be one, there is nothing to call.
    let (code, stdout) = exit_code_and_stdout(&run_hook(&json!({"then": "forever"}), "a"));
    assert_eq!(code, 125, "{stdout}");
    let (code, stdout) = exit_code_and_stdout(&run_hook(&behaviour, "a b"));
    assert_eq!(code, 125, "{stdout}");
}

#[test]
fn hooks_need_a_health_port_that_listens_from_the_start() {
    let state_dir = temp_dir();
    let output = agent_command(
        &json!({
            "then": "forever",
            "health": {"port": free_port(), "listenAfterMs": 1, "endpoints": {}},
            "hooks": {"post-start": {}}
        }),
        &state_dir,
    )
    .output()
    .expect("run agent");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(125), "{stdout}");
    assert!(stdout.contains("listenAfterMs must be 0"), "{stdout}");
    assert!(!stdout.contains("\"start\""), "{stdout}");
    let _ = std::fs::remove_dir_all(&state_dir);
}

#[test]
fn sigterm_with_exit_logs_the_signal_then_exits_with_the_code_after_the_delay() {
    let port = free_port();
    let mut agent = Agent::spawn(json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {}},
        "hooks": {"pre-stop": {"takesMs": spec(200)}},
        "onSigterm": {"exit": {"afterMs": spec(500), "code": 7}}
    }));
    // The kubelet's order: the preStop hook, then SIGTERM.
    assert_eq!(exit_code_and_stdout(&agent.hook("pre-stop")).0, 0);
    agent.sigterm();
    let signal = agent.wait_for_log(|e| e["event"] == "signal");
    assert_eq!(signal["signal"], "SIGTERM");
    assert!(agent.is_running(), "exited before the delay");
    let status = agent.wait();
    assert_eq!(status.code(), Some(7), "{status:?}");

    agent.wait_for_log(|e| e["event"] == "exit");
    let log = agent.log();
    let kinds: Vec<&str> = log.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        kinds,
        ["start", "hookStarted", "hookEnded", "signal", "exit"],
        "{log:?}"
    );
    let exit = &log[4];
    assert_eq!(exit["code"], 7);
    assert!(
        ts(exit) - ts(&signal) >= 500,
        "{signal} .. {exit}: shorter than the delay"
    );
}

#[test]
fn a_run_that_ends_before_the_graceful_exit_ends_the_process() {
    let mut agent = Agent::spawn(json!({
        "then": {"exit": {"afterMs": spec(400), "code": 3}},
        "onSigterm": {"exit": {"afterMs": spec(5000), "code": 0}}
    }));
    agent.sigterm();
    let status = agent.wait();
    assert_eq!(status.code(), Some(3), "{status:?}");
    agent.wait_for_log(|e| e["event"] == "exit");
    let exits: Vec<Value> = agent
        .log()
        .into_iter()
        .filter(|e| e["event"] == "exit")
        .collect();
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0]["code"], 3);
}

#[test]
fn sigterm_with_ignore_is_logged_and_only_sigkill_ends_the_process() {
    let mut agent = Agent::spawn(json!({"then": "forever", "onSigterm": "ignore"}));
    agent.sigterm();
    agent.wait_for_log(|e| e["event"] == "signal");
    std::thread::sleep(ms(300));
    assert!(agent.is_running(), "SIGTERM ended an ignoring process");
    agent.sigterm();
    agent.wait_for_logs(2, |e| e["event"] == "signal");
    std::thread::sleep(ms(100));
    assert!(agent.is_running(), "a second SIGTERM ended it");

    agent.signal(libc::SIGKILL);
    let status = agent.wait();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(
        agent.log().iter().all(|e| e["event"] != "exit"),
        "{:?}",
        agent.log()
    );
}

#[test]
fn sigterm_with_die_ends_the_process_at_once() {
    let port = free_port();
    let mut agent = Agent::spawn(json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {}},
        "hooks": {"pre-stop": {}},
        "onSigterm": "die"
    }));
    assert_eq!(exit_code_and_stdout(&agent.hook("pre-stop")).0, 0);
    agent.sigterm();
    let status = agent.wait();
    // Killed by the signal; as PID 1 of a PID namespace, exit 143 instead.
    assert!(
        status.signal() == Some(libc::SIGTERM) || status.code() == Some(143),
        "{status:?}"
    );
    agent.wait_for_log(|e| e["event"] == "signal");
    let log = agent.log();
    assert_eq!(log.last().map(|e| &e["event"]), Some(&json!("signal")));
}

#[test]
fn the_processes_it_sees_are_logged_right_after_the_start_naming_itself() {
    let agent = Agent::spawn(json!({"then": "forever"}));
    let first = agent.wait_for_log(|e| e["event"] == "processes");
    let events = agent.every_event();
    assert_eq!(
        events.iter().position(|e| e["event"] == "processes"),
        Some(1),
        "right after the start: {events:?}"
    );
    let me = json!({"pod": "lifecycle", "container": "main"});
    assert!(
        first["agents"]
            .as_array()
            .is_some_and(|agents| agents.contains(&me)),
        "{first}"
    );
    // Outside a PID namespace of its own it sees the machine's processes, this test's
    // among them.
    assert!(first["others"].as_u64().is_some_and(|n| n >= 1), "{first}");
}
