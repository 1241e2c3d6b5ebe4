//! The agent's health endpoints, probed from outside with plain std sockets, and its gRPC
//! health server, probed with an h2 client (in `mod grpc`).
//!
//! Every script boundary is at least a second of wall time away from where it is probed.
//! The agent's clock starts between `spawned` (before the spawn) and `started` (when its
//! "start" line is read), so "agent time is at most X" is checked with `spawned` and "agent
//! time is at least X" with `started`.

use podcheck_wire::LogEvent;
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
            .map(|line| typed_log_line(line))
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
    for line in stdout.lines() {
        typed_log_line(line);
    }
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

/// The gRPC health server (grpc.health.v1), asked with a bare HTTP/2 client as a gRPC client
/// without TLS would.
mod grpc {
    use super::*;
    use bytes::Bytes;
    use h2::client::SendRequest;
    use http::{HeaderMap, Request};

    const CHECK: &str = "/grpc.health.v1.Health/Check";
    const SERVING: u8 = 1;
    const NOT_SERVING: u8 = 2;

    /// A gRPC length-prefixed message, uncompressed.
    fn frame(message: &[u8]) -> Bytes {
        let length = u32::try_from(message.len()).expect("short message");
        let mut framed = vec![0];
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(message);
        Bytes::from(framed)
    }

    /// `HealthCheckRequest { service }`, framed; the empty service is left out, as protobuf
    /// encoders do.
    fn check_request(service: &str) -> Bytes {
        let mut message = Vec::new();
        if !service.is_empty() {
            message.push(0x0a);
            message.push(u8::try_from(service.len()).expect("a short service name"));
            message.extend_from_slice(service.as_bytes());
        }
        frame(&message)
    }

    /// What came back: the HTTP status, the headers, the data and the trailers.
    struct Reply {
        http: u16,
        headers: HeaderMap,
        data: Vec<u8>,
        trailers: Option<HeaderMap>,
    }

    impl Reply {
        fn header(map: &HeaderMap, name: &str) -> Option<String> {
            map.get(name)
                .map(|v| v.to_str().expect("ASCII header").to_owned())
        }

        /// From the trailers, or from the headers of a trailers-only response.
        fn grpc(&self, name: &str) -> Option<String> {
            match &self.trailers {
                Some(trailers) => Reply::header(trailers, name),
                None => Reply::header(&self.headers, name),
            }
        }

        fn grpc_status(&self) -> Option<u32> {
            self.grpc("grpc-status")
                .map(|s| s.parse().expect("numeric grpc-status"))
        }

        /// Asserts a well-formed OK reply and returns its serving status.
        fn serving_status(&self) -> u8 {
            assert_eq!(self.http, 200);
            assert_eq!(
                Reply::header(&self.headers, "content-type").as_deref(),
                Some("application/grpc")
            );
            assert_eq!(self.grpc_status(), Some(0), "{:?}", self.trailers);
            match self.data[..] {
                [0, 0, 0, 0, 2, 0x08, status] => status,
                _ => panic!("not a HealthCheckResponse: {:02x?}", self.data),
            }
        }
    }

    /// One HTTP/2 connection (h2c with prior knowledge) on a runtime of its own.
    struct Client {
        runtime: tokio::runtime::Runtime,
        send: SendRequest<Bytes>,
    }

    impl Client {
        /// Connects to `port`, retrying refused connections until `PATIENCE` passes.
        fn connect(port: u16) -> Client {
            let stream = connect_eventually(port);
            stream.set_nonblocking(true).expect("nonblocking");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let send = runtime.block_on(async {
                let stream = tokio::net::TcpStream::from_std(stream).expect("tokio stream");
                let (send, connection) = h2::client::handshake(stream)
                    .await
                    .expect("HTTP/2 handshake");
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                send
            });
            Client { runtime, send }
        }

        /// Calls `path` with a body sent as one DATA frame per chunk.
        fn call(&mut self, path: &str, chunks: Vec<Bytes>) -> Reply {
            let send = self.send.clone();
            let call = async move {
                let mut send = send.ready().await.expect("connection ready");
                let request = Request::post(format!("http://127.0.0.1{path}"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .header("user-agent", "kube-probe/1.35")
                    .body(())
                    .expect("request");
                let (response, mut body) = send
                    .send_request(request, chunks.is_empty())
                    .expect("send request");
                let count = chunks.len();
                for (index, chunk) in chunks.into_iter().enumerate() {
                    body.send_data(chunk, index + 1 == count)
                        .expect("send data");
                }
                let (head, mut body) = response.await.expect("response").into_parts();
                let mut data = Vec::new();
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.expect("response data");
                    let _ = body.flow_control().release_capacity(chunk.len());
                    data.extend_from_slice(&chunk);
                }
                let trailers = body.trailers().await.expect("trailers");
                Reply {
                    http: head.status.as_u16(),
                    headers: head.headers,
                    data,
                    trailers,
                }
            };
            self.runtime
                .block_on(async { tokio::time::timeout(PATIENCE, call).await })
                .expect("no reply in time")
        }

        fn check(&mut self, service: &str) -> Reply {
            self.call(CHECK, vec![check_request(service)])
        }

        /// Starts a Check whose body never ends, and lets the connection go at once.
        fn abandon_a_check(self) {
            let send = self.send.clone();
            self.runtime.block_on(async move {
                let mut send = send.ready().await.expect("connection ready");
                let request = Request::post(format!("http://127.0.0.1{CHECK}"))
                    .header("content-type", "application/grpc")
                    .body(())
                    .expect("request");
                let (_, mut body) = send.send_request(request, false).expect("send request");
                body.send_data(Bytes::from_static(&[0, 0, 0]), false)
                    .expect("send data");
                // Time for the connection task to send it; then the connection is dropped.
                tokio::time::sleep(ms(100)).await;
            });
            drop(self);
        }
    }

    fn health(http: u16, grpc: u16, endpoints: Value) -> Value {
        json!({"then": "forever", "health": {"port": http, "grpcPort": grpc, "endpoints": endpoints}})
    }

    #[test]
    fn grpc_check_follows_the_script() {
        let [http, grpc] = free_ports();
        let agent = Agent::spawn(&health(
            http,
            grpc,
            json!({"h": {"answers": [{"answer": "ok", "forMs": spec(2000)}, {"answer": "fail"}]}}),
        ));
        let mut client = Client::connect(grpc);
        let reply = client.check("h");
        agent.assert_before(2000);
        assert_eq!(reply.serving_status(), SERVING);
        assert_eq!(client.check("").serving_status(), SERVING);

        let unknown = client.check("nope");
        assert_eq!(unknown.http, 200);
        assert_eq!(unknown.grpc_status(), Some(5));
        assert_eq!(
            unknown.grpc("grpc-message").as_deref(),
            Some("unknown service")
        );
        assert!(unknown.data.is_empty(), "{:02x?}", unknown.data);

        agent.sleep_until_at_least(2400);
        assert_eq!(client.check("h").serving_status(), NOT_SERVING);
        assert_eq!(client.check("").serving_status(), SERVING);
        assert_eq!(
            Client::connect(grpc).check("h").serving_status(),
            NOT_SERVING
        );

        let events = wait_for_probe_events(&agent, "grpc", "h", 3);
        let answers: Vec<&Value> = events.iter().map(|e| &e["answer"]).collect();
        assert_eq!(answers, [&json!("ok"), &json!("fail"), &json!("fail")]);
        assert_eq!(events[0]["userAgent"], "kube-probe/1.35");
        let empty = wait_for_probe_events(&agent, "grpc", "", 2);
        assert!(empty.iter().all(|e| e["answer"] == "ok"), "{empty:?}");
        let unknown = wait_for_probe_events(&agent, "grpc", "nope", 1);
        assert_eq!(unknown[0]["answer"], "unknown");
        assert!(probe_events(&agent, "http", "h").is_empty());
    }

    #[test]
    fn grpc_port_is_refused_before_listen_after() {
        let [http, grpc] = free_ports();
        let mut behaviour = health(http, grpc, json!({"h": {"answers": [{"answer": "ok"}]}}));
        behaviour["health"]["listenAfterMs"] = json!(spec(1500));
        let agent = Agent::spawn(&behaviour);
        std::thread::sleep(ms(200));
        assert_refused(grpc);
        agent.assert_before(1500);
        let mut client = Client::connect(grpc);
        assert!(
            agent.spawned.elapsed() >= ms(1500),
            "listening after {:?}",
            agent.spawned.elapsed()
        );
        assert_eq!(client.check("h").serving_status(), SERVING);
    }

    #[test]
    fn grpc_slow_answers_are_logged_at_once_and_answered_after_the_scaled_delay() {
        let [http, grpc] = free_ports();
        let agent = Agent::spawn(&health(
            http,
            grpc,
            json!({"ready": {"answers": [{"answer": {"slowMs": spec(2000)}}]}}),
        ));
        let mut client = Client::connect(grpc);
        assert_eq!(client.check("").serving_status(), SERVING); // the server is up
        let asked = Instant::now();
        let waiting = std::thread::spawn(move || client.check("ready"));
        let event = agent.wait_for_log(|e| {
            e["event"] == "probe" && e["via"] == "grpc" && e["endpoint"] == "ready"
        });
        assert_eq!(event["answer"], "slow");
        assert!(
            !waiting.is_finished(),
            "answered before the slow wait was over"
        );
        let reply = waiting.join().expect("request thread");
        assert!(
            asked.elapsed() >= ms(2000),
            "answered after {:?}",
            asked.elapsed()
        );
        assert_eq!(reply.serving_status(), SERVING);
    }

    #[test]
    fn grpc_refuses_other_methods_and_bad_requests_and_survives_broken_connections() {
        let [http, grpc] = free_ports();
        let agent = Agent::spawn(&health(
            http,
            grpc,
            json!({"live": {"answers": [{"answer": "ok"}]}}),
        ));
        let mut client = Client::connect(grpc);

        let watch = client.call("/grpc.health.v1.Health/Watch", vec![check_request("")]);
        assert_eq!(watch.http, 200);
        assert_eq!(watch.grpc_status(), Some(12));
        assert!(watch.trailers.is_none(), "not trailers-only");
        assert!(watch.data.is_empty());

        // One message over three DATA frames.
        let split = vec![
            Bytes::from_static(&[0, 0, 0]),
            Bytes::from_static(&[0, 6, 0x0a]),
            Bytes::from_static(b"\x04live"),
        ];
        assert_eq!(client.call(CHECK, split).serving_status(), SERVING);
        // Unknown fields around the service are skipped.
        let extra: &[u8] = &[
            0x10, 0x96, 0x01, 0x2a, 0x01, b'x', 0x0a, 0x04, b'l', b'i', b'v', b'e', 0x35, 1, 2, 3,
            4,
        ];
        assert_eq!(
            client.call(CHECK, vec![frame(extra)]).serving_status(),
            SERVING
        );

        for body in [
            vec![],
            vec![Bytes::from_static(&[0, 0, 0, 0, 9, 0x0a])],
            vec![frame(b"\x08\x01")],
            vec![Bytes::from_static(&[1, 0, 0, 0, 0])],
        ] {
            let reply = client.call(CHECK, body.clone());
            assert_eq!(reply.grpc_status(), Some(3), "{body:?}");
        }

        // Connections that break must not stop the server.
        let mut raw = connect_eventually(grpc);
        raw.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        let _ = raw.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n");
        let _ = raw.read_to_end(&mut Vec::new());
        drop(connect_eventually(grpc));
        Client::connect(grpc).abandon_a_check();

        assert_eq!(client.check("live").serving_status(), SERVING);
        assert_eq!(
            Client::connect(grpc).check("live").serving_status(),
            SERVING
        );
        let events = wait_for_probe_events(&agent, "grpc", "live", 4);
        assert!(events.iter().all(|e| e["answer"] == "ok"), "{events:?}");
        let undecodable = agent
            .log()
            .into_iter()
            .filter(|e| e["via"] == "grpc" && e["endpoint"].is_null())
            .count();
        assert!(undecodable >= 4, "{:?}", agent.log());
    }

    #[test]
    fn grpc_port_must_be_distinct_and_bindable() {
        let [http, tcp] = free_ports();
        let (code, stdout) = run_to_end(&health(http, http, json!({})));
        assert_eq!(code, Some(125), "{stdout}");
        assert!(stdout.contains("grpcPort"), "{stdout}");
        assert!(!stdout.contains("\"start\""), "{stdout}");
        let (code, stdout) = run_to_end(&health(
            http,
            tcp,
            json!({"live": {"tcpPort": tcp, "answers": [{"answer": "ok"}]}}),
        ));
        assert_eq!(code, Some(125), "{stdout}");
        assert!(stdout.contains("used twice"), "{stdout}");

        let busy = TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = busy.local_addr().expect("addr").port();
        let (code, stdout) = run_to_end(&health(http, port, json!({})));
        assert_eq!(code, Some(125), "{stdout}");
        assert!(stdout.contains("\"event\":\"error\""), "{stdout}");
        assert!(stdout.contains(&format!("0.0.0.0:{port}")), "{stdout}");
    }

    #[test]
    fn sigterm_is_still_logged_and_fatal_while_serving_grpc() {
        use std::os::unix::process::ExitStatusExt;
        let [http, grpc] = free_ports();
        let mut agent = Agent::spawn(&health(
            http,
            grpc,
            json!({"live": {"answers": [{"answer": "ok"}]}}),
        ));
        assert_eq!(
            Client::connect(grpc).check("live").serving_status(),
            SERVING
        );
        let pid = libc::pid_t::try_from(agent.child.id()).expect("pid");
        // SAFETY: signals our own child, which has not been reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = agent.child.wait().expect("wait for agent");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
        agent.wait_for_log(|e| e["event"] == "signal" && e["signal"] == "SIGTERM");
    }
}
