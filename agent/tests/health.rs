//! The agent's health endpoints, probed from outside with plain std sockets.
//!
//! Every script boundary is at least a second of wall time away from where it is probed.
//! The agent's clock starts between `spawned` (before the spawn) and `started` (when its
//! "start" line is read), so "agent time is at most X" is checked with `spawned` and "agent
//! time is at least X" with `started`.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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

/// `n` distinct ports that were free a moment ago.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("0.0.0.0:0").expect("bind port 0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

fn temp_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "podcheck-agent-health-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ))
}

/// A running agent, killed (and its state dir removed) when dropped.
struct Agent {
    child: Child,
    state_dir: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    spawned: Instant,
    started: Instant,
}

impl Agent {
    fn spawn(behaviour: &Value) -> Agent {
        let state_dir = temp_dir();
        let spawned = Instant::now();
        let mut child = Command::new(AGENT)
            .env("PODCHECK_BEHAVIOUR", behaviour.to_string())
            .env("PODCHECK_TIME_SCALE", SCALE.to_string())
            .env("PODCHECK_STATE_DIR", &state_dir)
            .env("PODCHECK_CONTAINER", "main")
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
        let mut agent = Agent {
            child,
            state_dir,
            lines,
            spawned,
            started: spawned,
        };
        agent.wait_for_log(|e| e["event"] == "start");
        agent.started = Instant::now();
        agent
    }

    fn log(&self) -> Vec<Value> {
        self.lines
            .lock()
            .expect("log lock")
            .iter()
            .map(|line| serde_json::from_str(line).expect("log lines are JSON"))
            .collect()
    }

    fn wait_for_log(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(event) = self.log().into_iter().find(&wanted) {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "not logged; log: {:?}",
                self.log()
            );
            std::thread::sleep(ms(5));
        }
    }

    /// Sleeps until the agent's clock has surely reached `wall_ms`.
    fn sleep_until_at_least(&self, wall_ms: u64) {
        let target = self.started + ms(wall_ms);
        let now = Instant::now();
        if target > now {
            std::thread::sleep(target - now);
        }
    }

    /// Asserts the agent's clock has surely not reached `wall_ms` yet.
    fn assert_before(&self, wall_ms: u64) {
        assert!(
            self.spawned.elapsed() < ms(wall_ms),
            "the machine is too slow for this test: {:?} since the spawn",
            self.spawned.elapsed()
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

/// Connects to 127.0.0.1:`port`, retrying refused connections until `PATIENCE` passes.
fn connect_eventually(port: u16) -> TcpStream {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => return stream,
            Err(err) if err.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(ms(10))
            }
            Err(err) => panic!("cannot connect to {port}: {err}"),
        }
    }
}

fn assert_refused(port: u16) {
    match TcpStream::connect(("127.0.0.1", port)) {
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}"),
        Ok(_) => panic!("port {port} accepted a connection"),
    }
}

/// Sends `GET path` and returns the status code and the body.
fn get(stream: TcpStream, path: &str) -> (u16, String) {
    let mut stream = stream;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kube-probe/1.35\r\nAccept: */*\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    assert!(
        response.contains("Connection: close\r\n"),
        "response {response:?}"
    );
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn probe_events(agent: &Agent, via: &str, endpoint: &str) -> Vec<Value> {
    agent
        .log()
        .into_iter()
        .filter(|e| e["event"] == "probe" && e["via"] == via && e["endpoint"] == endpoint)
        .collect()
}

/// Waits until `n` probe events for `via` and `endpoint` are logged (the log is read by
/// another thread, so a line written before an answer may be read after it).
fn wait_for_probe_events(agent: &Agent, via: &str, endpoint: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = probe_events(agent, via, endpoint);
        if events.len() >= n || Instant::now() >= deadline {
            assert_eq!(events.len(), n, "{events:?}");
            return events;
        }
        std::thread::sleep(ms(5));
    }
}

/// Runs `podcheck-agent probe <name>` with `behaviour`; returns the exit code and stdout.
fn exec_probe(behaviour: &Value, name: &str, state_dir: &PathBuf) -> (i32, String) {
    let output = Command::new(AGENT)
        .args(["probe", name])
        .env("PODCHECK_BEHAVIOUR", behaviour.to_string())
        .env("PODCHECK_TIME_SCALE", SCALE.to_string())
        .env("PODCHECK_STATE_DIR", state_dir)
        .env("PODCHECK_CONTAINER", "main")
        .output()
        .expect("run probe");
    (
        output.status.code().expect("probe exited"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn http_answers_ok_then_fail_at_the_script_boundary() {
    let [port] = free_ports();
    let agent = Agent::spawn(&json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {
            "live": {"answers": [{"answer": "ok", "forMs": spec(1500)}, {"answer": "fail"}]}
        }}
    }));
    let (status, body) = get(connect_eventually(port), "/live");
    agent.assert_before(1500);
    assert_eq!(status, 200, "{body}");
    agent.sleep_until_at_least(1800);
    assert_eq!(get(connect_eventually(port), "/live?x=1").0, 500);

    let events = wait_for_probe_events(&agent, "http", "live", 2);
    assert_eq!(events[0]["answer"], "ok");
    assert_eq!(events[1]["answer"], "fail");
    assert_eq!(events[0]["userAgent"], "kube-probe/1.35");
}

#[test]
fn unknown_paths_are_not_found() {
    let [port] = free_ports();
    let agent = Agent::spawn(&json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {"live": {"answers": [{"answer": "ok"}]}}}
    }));
    assert_eq!(get(connect_eventually(port), "/ready").0, 404);
    assert_eq!(get(connect_eventually(port), "/").0, 404);
    assert_eq!(get(connect_eventually(port), "/live/").0, 404);
    assert_eq!(get(connect_eventually(port), "/live").0, 200);
    let event = agent.wait_for_log(|e| e["event"] == "probe" && e["endpoint"] == "ready");
    assert_eq!(event["answer"], "unknown");
    assert_eq!(event["via"], "http");
}

#[test]
fn slow_answers_are_logged_at_once_and_answered_after_the_scaled_delay() {
    let [port] = free_ports();
    let agent = Agent::spawn(&json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {
            "ready": {"answers": [{"answer": {"slowMs": spec(1000)}}]}
        }}
    }));
    let stream = connect_eventually(port);
    let asked = Instant::now();
    let waiting = std::thread::spawn(move || get(stream, "/ready"));
    let event = agent.wait_for_log(|e| e["event"] == "probe" && e["endpoint"] == "ready");
    assert_eq!(event["answer"], "slow");
    assert!(
        !waiting.is_finished(),
        "answered before the slow wait was over"
    );
    let (status, _) = waiting.join().expect("request thread");
    assert_eq!(status, 200);
    assert!(
        asked.elapsed() >= ms(1000),
        "answered after {:?}",
        asked.elapsed()
    );
}

#[test]
fn nothing_listens_before_listen_after() {
    let [port] = free_ports();
    let agent = Agent::spawn(&json!({
        "then": "forever",
        "health": {"port": port, "listenAfterMs": spec(1500), "endpoints": {
            "live": {"answers": [{"answer": "ok"}]}
        }}
    }));
    std::thread::sleep(ms(200));
    assert_refused(port);
    agent.assert_before(1500);
    let stream = connect_eventually(port);
    assert!(
        agent.spawned.elapsed() >= ms(1500),
        "listening after {:?}",
        agent.spawned.elapsed()
    );
    assert_eq!(get(stream, "/live").0, 200);
}

#[test]
fn tcp_port_listens_exactly_while_the_answer_is_not_fail() {
    let [http, tcp] = free_ports();
    let agent = Agent::spawn(&json!({
        "then": "forever",
        "health": {"port": http, "endpoints": {
            "ready": {"tcpPort": tcp, "answers": [
                {"answer": "ok", "forMs": spec(1500)},
                {"answer": "fail", "forMs": spec(1500)},
                {"answer": {"slowMs": 1}}
            ]}
        }}
    }));
    drop(connect_eventually(tcp));
    agent.assert_before(1500);
    agent.wait_for_log(|e| e["event"] == "probe" && e["via"] == "tcp" && e["endpoint"] == "ready");

    agent.sleep_until_at_least(1800);
    assert_refused(tcp);
    assert_eq!(get(connect_eventually(http), "/ready").0, 500);
    agent.assert_before(3000);

    agent.sleep_until_at_least(3300);
    drop(connect_eventually(tcp));
    wait_for_probe_events(&agent, "tcp", "ready", 2);
}

#[test]
fn exec_probe_exits_by_the_status_and_logs_via_exec() {
    let [port] = free_ports();
    let behaviour = json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {
            "live": {"answers": [{"answer": "ok", "forMs": spec(2000)}, {"answer": "fail"}]}
        }}
    });
    let agent = Agent::spawn(&behaviour);
    drop(connect_eventually(port)); // the server is up
    let probe_state = temp_dir();

    let (code, stdout) = exec_probe(&behaviour, "live", &probe_state);
    agent.assert_before(2000);
    assert_eq!((code, stdout.trim()), (0, "HTTP/1.1 200 OK"));
    let (code, stdout) = exec_probe(&behaviour, "nothing", &probe_state);
    assert_eq!((code, stdout.trim()), (1, "HTTP/1.1 404 Not Found"));

    agent.sleep_until_at_least(2300);
    let (code, stdout) = exec_probe(&behaviour, "live", &probe_state);
    assert_eq!(
        (code, stdout.trim()),
        (1, "HTTP/1.1 500 Internal Server Error")
    );

    let events = wait_for_probe_events(&agent, "exec", "live", 2);
    assert_eq!(events[0]["answer"], "ok");
    assert_eq!(events[1]["answer"], "fail");
    assert_eq!(events[0]["userAgent"], "podcheck-agent-probe");
    assert!(probe_events(&agent, "http", "live").is_empty());
    assert!(
        !probe_state.exists(),
        "the probe must not touch the state dir"
    );
    let starts = agent.log().into_iter().filter(|e| e["event"] == "start");
    assert_eq!(starts.count(), 1);
}

#[test]
fn exec_probe_fails_when_nothing_listens() {
    let [port] = free_ports();
    let behaviour = json!({
        "then": "forever",
        "health": {"port": port, "endpoints": {"live": {"answers": [{"answer": "ok"}]}}}
    });
    let state = temp_dir();
    let (code, stdout) = exec_probe(&behaviour, "live", &state);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("cannot connect"), "{stdout}");
    assert!(!stdout.contains("\"start\""), "{stdout}");
    assert!(!state.exists(), "the probe must not touch the state dir");

    let (code, stdout) = exec_probe(&json!({"then": "forever"}), "live", &state);
    assert_eq!(code, 125, "{stdout}");
}

/// Runs the agent to its end (killing it after `PATIENCE`); returns its code and stdout.
fn run_to_end(behaviour: &Value) -> (Option<i32>, String) {
    let state = temp_dir();
    let mut child = Command::new(AGENT)
        .env("PODCHECK_BEHAVIOUR", behaviour.to_string())
        .env("PODCHECK_TIME_SCALE", SCALE.to_string())
        .env("PODCHECK_STATE_DIR", &state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        match child.try_wait().expect("wait for agent") {
            Some(status) => break status,
            None if Instant::now() < deadline => std::thread::sleep(ms(10)),
            None => {
                let _ = child.kill();
                break child.wait().expect("wait for killed agent");
            }
        }
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let _ = std::fs::remove_dir_all(&state);
    (status.code(), stdout)
}

#[test]
fn invalid_health_and_busy_ports_exit_125() {
    let (code, stdout) = run_to_end(&json!({"then": "forever", "health": {"endpoints": {}}}));
    assert_eq!(code, Some(125));
    assert!(stdout.contains("health is invalid"), "{stdout}");
    assert!(!stdout.contains("\"start\""), "{stdout}");
    let (code, stdout) = run_to_end(&json!({"then": "forever", "health": {"port": 8080,
        "endpoints": {"live": {"answers": [{"answer": "sometimes"}]}}}}));
    assert_eq!(code, Some(125));
    assert!(stdout.contains("sometimes"), "{stdout}");

    let busy = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let (code, stdout) = run_to_end(&json!({"then": "forever",
        "health": {"port": port, "endpoints": {}}}));
    assert_eq!(code, Some(125), "{stdout}");
    assert!(stdout.contains("\"event\":\"error\""), "{stdout}");
    assert!(stdout.contains(&format!("0.0.0.0:{port}")), "{stdout}");
}

#[test]
fn scripted_exits_still_happen_while_serving_health() {
    let [port] = free_ports();
    let (code, stdout) = run_to_end(&json!({
        "starts": [{"exit": {"afterMs": spec(500), "code": 3}}],
        "then": "forever",
        "health": {"port": port, "endpoints": {"live": {"answers": [{"answer": "ok"}]}}}
    }));
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains("\"event\":\"exit\""), "{stdout}");
}

#[test]
fn sigterm_is_still_logged_and_fatal_while_serving_health() {
    use std::os::unix::process::ExitStatusExt;
    let [http, tcp] = free_ports();
    let mut agent = Agent::spawn(&json!({
        "then": "forever",
        "health": {"port": http, "endpoints": {
            "ready": {"tcpPort": tcp, "answers": [{"answer": "ok"}]}
        }}
    }));
    assert_eq!(get(connect_eventually(http), "/ready").0, 200);
    drop(connect_eventually(tcp));
    let pid = libc::pid_t::try_from(agent.child.id()).expect("pid");
    // SAFETY: signals our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = agent.child.wait().expect("wait for agent");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    agent.wait_for_log(|e| e["event"] == "signal" && e["signal"] == "SIGTERM");
}
