//! Health endpoints the kubelet can probe: an HTTP server, per-endpoint TCP listeners, an
//! optional gRPC health server (in `crate::grpc`), and the client side of the exec probe
//! (`podcheck-agent probe <name>`). The HTTP server also answers lifecycle hook calls
//! (`GET /hook/<name>`), whose exec handler (`podcheck-agent hook <name>`) is here too.
//!
//! Every answer follows a script timed in spec milliseconds from this process's start; the
//! semantics match the oracle's `Endpoint::answer_at`: an entry with `forMs` lasts that
//! long, the first entry without one lasts forever, and when the script runs out the last
//! answer continues (an empty script always fails).
//!
//! The HTTP server is written by hand on purpose: a request must be logged the moment its
//! head has arrived, before a slow answer's wait, and connections must close after one
//! answer; a server library would decide both for us. The exec clients send one fixed
//! request and read one status line, which needs no library either.
//!
//! Every connection gets its own thread, so a slow hook (a preStop that takes its time)
//! never holds up a probe, nor another hook.

use crate::log;
use podcheck_wire::{
    env, Answer, Answered, Behaviour, Endpoint, Event, Health, Hook, HookVia, Probe, Request,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most bytes of a request head (request line and headers) the server reads.
const MAX_HEAD: u64 = 16 * 1024;
/// How long a connection may take to send its request head, in wall time.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `podcheck-agent hook` keeps retrying a refused connection, in wall time: an
/// exec postStart handler may run before the agent it calls has bound its port.
const HOOK_CONNECT_PATIENCE: Duration = Duration::from_secs(2);
/// How long `podcheck-agent hook` waits between two connection attempts.
const HOOK_CONNECT_RETRY: Duration = Duration::from_millis(10);

/// The answer of `endpoint` at `at` spec milliseconds after the start.
pub(crate) fn answer_at(endpoint: &Endpoint, at: f64) -> Answer {
    let mut from: u64 = 0;
    for step in &endpoint.answers {
        match step.for_ms {
            Some(length) if at >= from.saturating_add(length) as f64 => {
                from = from.saturating_add(length)
            }
            _ => return step.answer,
        }
    }
    endpoint.answers.last().map_or(Answer::Fail, |s| s.answer)
}

/// The first time after `at` at which the answer of `endpoint` may change.
fn next_boundary_after(endpoint: &Endpoint, at: f64) -> Option<u64> {
    let mut end: u64 = 0;
    for step in &endpoint.answers {
        end = end.saturating_add(step.for_ms?);
        if end as f64 > at {
            return Some(end);
        }
    }
    None
}

/// Spec time since this process started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub start: Instant,
    /// Wall seconds per spec second.
    pub scale: f64,
}

impl Clock {
    pub(crate) fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0 / self.scale
    }

    pub(crate) fn wall(&self, spec_ms: u64) -> Duration {
        Duration::try_from_secs_f64(spec_ms as f64 / 1000.0 * self.scale).unwrap_or(Duration::MAX)
    }

    /// The instant `spec_ms` after the start; `None` when that is beyond any clock.
    pub(crate) fn deadline(&self, spec_ms: u64) -> Option<Instant> {
        self.start.checked_add(self.wall(spec_ms))
    }
}

/// Sleeps until `deadline`, or forever when there is none.
pub(crate) fn sleep_until(deadline: Option<Instant>) {
    loop {
        let now = Instant::now();
        match deadline {
            Some(deadline) if now >= deadline => return,
            Some(deadline) => std::thread::sleep(deadline - now),
            None => std::thread::sleep(Duration::from_secs(3600)),
        }
    }
}

/// Something the scripted behaviour needs cannot be had: like a misconfigured server, log
/// it and exit.
pub(crate) fn die(message: &str) -> ! {
    log(Event::Error {
        message: message.to_owned(),
    });
    eprintln!("podcheck-agent: {message}");
    std::process::exit(125);
}

/// A listener the scripted behaviour needs cannot be had.
pub(crate) fn die_unbindable(port: u16, err: std::io::Error) -> ! {
    die(&format!("cannot listen on 0.0.0.0:{port}: {err}"))
}

/// Binds 0.0.0.0:`port`. The standard library sets SO_REUSEADDR on Unix before binding,
/// so a port closed a moment ago can be bound again at once.
pub(crate) fn bind(port: u16) -> TcpListener {
    match TcpListener::bind(("0.0.0.0", port)) {
        Ok(listener) => listener,
        Err(err) => die_unbindable(port, err),
    }
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(err) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
    {
        log(Event::Error {
            message: format!("cannot start thread {name}: {err}"),
        });
    }
}

/// What the HTTP server answers: the health endpoints (none when the behaviour has hooks
/// but no health) and the hooks.
struct Answers {
    health: Health,
    hooks: BTreeMap<String, Hook>,
}

/// The health the HTTP server serves: the behaviour's, or, when it has hooks but no health,
/// none but a listener on the hook port. `None` when nothing listens.
fn served_health(behaviour: &Behaviour) -> Option<Health> {
    match (&behaviour.health, behaviour.hook_port()) {
        (Some(health), _) => Some(health.clone()),
        (None, Some(port)) => Some(Health {
            endpoints: BTreeMap::new(),
            grpc_port: None,
            listen_after_ms: 0,
            port,
        }),
        (None, None) => None,
    }
}

/// The HTTP listener, bound before the start is counted and logged.
pub struct EarlyListener {
    port: u16,
    bound: std::io::Result<TcpListener>,
}

/// Binds the HTTP port at once when it listens from the start (it always does with
/// hooks): a postStart hook call may come the moment the process has started. Failing
/// to bind is reported by [`serve`], after the start is logged, as it always was.
pub fn listen_early(behaviour: &Behaviour) -> Option<EarlyListener> {
    let health = served_health(behaviour)?;
    (health.listen_after_ms == 0).then(|| EarlyListener {
        port: health.port,
        bound: TcpListener::bind(("0.0.0.0", health.port)),
    })
}

/// Starts the HTTP server, the TCP listeners and the gRPC server in background threads;
/// `early` is the HTTP listener when [`listen_early`] bound it.
pub fn serve(behaviour: &Behaviour, early: Option<EarlyListener>, clock: Clock) {
    let Some(health) = served_health(behaviour) else {
        return;
    };
    let health = Arc::new(health);
    if let Some(port) = health.grpc_port {
        let health = Arc::clone(&health);
        spawn("grpc", move || crate::grpc::serve(port, health, clock));
    }
    for (name, endpoint) in &health.endpoints {
        if let Some(port) = endpoint.tcp_port {
            let (name, endpoint) = (name.clone(), endpoint.clone());
            let listen_after = health.listen_after_ms;
            spawn("tcp", move || {
                serve_tcp(&name, port, &endpoint, listen_after, clock)
            });
        }
    }
    let answers = Arc::new(Answers {
        health: Health::clone(&health),
        hooks: behaviour.hooks.clone(),
    });
    spawn("http", move || serve_http(answers, early, clock));
}

fn serve_http(answers: Arc<Answers>, early: Option<EarlyListener>, clock: Clock) {
    let listener = match early {
        Some(EarlyListener {
            bound: Ok(listener),
            ..
        }) => listener,
        Some(EarlyListener {
            port,
            bound: Err(err),
        }) => die_unbindable(port, err),
        None => {
            sleep_until(clock.deadline(answers.health.listen_after_ms));
            bind(answers.health.port)
        }
    };
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let answers = Arc::clone(&answers);
                spawn("http-conn", move || handle_http(stream, &answers, clock));
            }
            // Out of descriptors or an aborted handshake: let the moment pass.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn handle_http(stream: TcpStream, answers: &Answers, clock: Clock) {
    let health = &answers.health;
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut head = BufReader::new(&stream).take(MAX_HEAD);
    let mut line = Vec::new();
    match head.read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => return, // a connection without a request
        Ok(_) => {}
    }
    let request_line = String::from_utf8_lossy(&line).trim().to_owned();
    let mut user_agent = String::new();
    loop {
        line.clear();
        match head.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let header = String::from_utf8_lossy(&line);
        let header = header.trim();
        if header.is_empty() {
            break;
        }
        if let Some((key, value)) = header.split_once(':') {
            if key.trim().eq_ignore_ascii_case("user-agent") {
                user_agent = value.trim().to_owned();
            }
        }
    }
    let arrived = clock.now_ms();

    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next());
    let (path, query) = match target {
        Some(target) => target.split_once('?').unwrap_or((target, "")),
        None => ("", ""),
    };
    let name = path.strip_prefix('/').unwrap_or(path);
    let via_exec = query
        .split('&')
        .any(|param| param == podcheck_wire::EXEC_QUERY);
    if method == "GET" && !health.endpoints.contains_key(name) {
        if let Some(hook) = path.strip_prefix(podcheck_wire::HOOK_PATH_PREFIX) {
            let via = if via_exec {
                HookVia::Exec
            } else {
                HookVia::Http
            };
            let (status, body) = call_hook(hook, via, &answers.hooks, clock);
            respond(&stream, status, &body);
            return;
        }
    }
    let answer = match (method, target) {
        ("GET", Some(_)) => health.endpoints.get(name).map(|e| answer_at(e, arrived)),
        _ => None,
    };
    let request = Request {
        endpoint: target.map(|_| name.to_owned()),
        answer: answer.map_or(Answered::Unknown, Answer::answered),
        user_agent,
    };
    log(Event::Probe(if via_exec {
        Probe::Exec(request)
    } else {
        Probe::Http(request)
    }));
    let (status, body) = match (method, target, answer) {
        (_, None, _) => ("400 Bad Request", "bad request".to_owned()),
        (m, _, _) if m != "GET" => ("405 Method Not Allowed", format!("{m} not allowed")),
        (_, _, None) => ("404 Not Found", format!("no endpoint {name}")),
        (_, _, Some(Answer::Fail)) => ("500 Internal Server Error", format!("{name}: fail")),
        (_, _, Some(Answer::Ok)) => ("200 OK", format!("{name}: ok")),
        (_, _, Some(Answer::SlowMs(ms))) => {
            std::thread::sleep(clock.wall(ms));
            ("200 OK", format!("{name}: ok after {ms}ms"))
        }
    };
    respond(&stream, status, &body);
}

/// Acts out one hook call: logs it, takes the hook's time, logs its end and returns the
/// answer. A name without a hook is logged as a failed call and answered 404 at once, so
/// a call the scenario did not mean to make shows in the log.
fn call_hook(
    name: &str,
    via: HookVia,
    hooks: &BTreeMap<String, Hook>,
    clock: Clock,
) -> (&'static str, String) {
    log(Event::HookStarted {
        name: name.to_owned(),
        via,
    });
    let hook = hooks.get(name);
    if let Some(hook) = hook {
        std::thread::sleep(clock.wall(hook.takes_ms));
    }
    let ok = hook.is_some_and(|hook| !hook.fail);
    // Logged before the answer is written, so the end precedes whatever the answer sets
    // off (after a preStop the kubelet sends SIGTERM).
    log(Event::HookEnded {
        name: name.to_owned(),
        ok,
    });
    match hook {
        None => ("404 Not Found", format!("no hook {name}")),
        Some(_) if ok => ("200 OK", format!("hook {name}: ok")),
        Some(_) => ("500 Internal Server Error", format!("hook {name}: fail")),
    }
}

/// Writes one answer and closes the writing side.
fn respond(stream: &TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    // The client may have given up already; that changes nothing here.
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

/// Keeps `port` listening exactly while the endpoint's answer is not `fail` (and
/// `listen_after` has passed), waking only at the script's boundaries.
fn serve_tcp(name: &str, port: u16, endpoint: &Endpoint, listen_after: u64, clock: Clock) {
    let mut listener: Option<TcpListener> = None;
    let mut at = clock.now_ms();
    loop {
        let listening = at >= listen_after as f64 && answer_at(endpoint, at) != Answer::Fail;
        let next = [
            (at < listen_after as f64).then_some(listen_after),
            next_boundary_after(endpoint, at),
        ]
        .into_iter()
        .flatten()
        .min();
        let deadline = next.and_then(|b| clock.deadline(b));
        if listening {
            let socket = listener.get_or_insert_with(|| {
                let socket = bind(port);
                if let Err(err) = socket.set_nonblocking(true) {
                    die_unbindable(port, err);
                }
                socket
            });
            if wait_readable(socket, deadline) {
                accept_all(socket, name);
            }
        } else {
            listener = None; // closed: connections are refused
            sleep_until(deadline);
        }
        // Past a boundary, evaluate exactly at it: float rounding of the elapsed time
        // must not make the script look as if the boundary had not come yet.
        at = match (next, deadline) {
            (Some(boundary), Some(deadline)) if Instant::now() >= deadline => {
                clock.now_ms().max(boundary as f64)
            }
            _ => clock.now_ms(),
        };
    }
}

/// Waits until `listener` has a connection to accept (true) or `deadline` passes (false).
fn wait_readable(listener: &TcpListener, deadline: Option<Instant>) -> bool {
    let timeout_ms = match deadline {
        None => -1,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up, so a wake-up is never before the deadline.
            (left.as_nanos().div_ceil(1_000_000)).min(i32::MAX as u128) as i32
        }
    };
    let mut poll = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
    ready > 0 && poll.revents & libc::POLLIN != 0
}

fn accept_all(listener: &TcpListener, name: &str) {
    while let Ok((stream, _)) = listener.accept() {
        log(Event::Probe(Probe::Tcp {
            endpoint: name.to_owned(),
        }));
        drop(stream);
    }
}

/// `podcheck-agent probe <name>`: asks this container's own HTTP endpoint, as an exec
/// probe. Exits 0 on a 2xx/3xx status, 1 on any other status or a failed connection,
/// 125 when the probe cannot even be set up.
pub fn probe_command(name: Option<String>) -> ExitCode {
    let Some(name) = name else {
        println!("usage: podcheck-agent probe <endpoint>");
        return ExitCode::from(125);
    };
    let port = match configured_port() {
        Ok(port) => port,
        Err(message) => {
            println!("podcheck-agent probe: {message}");
            return ExitCode::from(125);
        }
    };
    let target = format!("/{name}?{}", podcheck_wire::EXEC_QUERY);
    match ask(port, &target, "podcheck-agent-probe", Duration::ZERO) {
        Ok(status_line) => {
            println!("{status_line}");
            match status_code(&status_line) {
                Some(200..=399) => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
        Err(message) => {
            println!("podcheck-agent probe: {message}");
            ExitCode::from(1)
        }
    }
}

/// `podcheck-agent hook <name>`: the exec handler of a lifecycle hook, which calls hook
/// `<name>` of this container's agent on the hook port. Exits 0 on a 2xx status, 1 on any
/// other status or a failed connection, 125 when the call cannot even be set up.
///
/// A refused connection is retried for [`HOOK_CONNECT_PATIENCE`]: an exec postStart
/// handler may run before the agent has bound its port. The answer is awaited without a
/// limit, as a hook may take long; the kubelet bounds the handler.
pub fn hook_command(name: Option<String>) -> ExitCode {
    let Some(name) = name else {
        println!("usage: podcheck-agent hook <name>");
        return ExitCode::from(125);
    };
    if !podcheck_wire::is_hook_name(&name) {
        println!("podcheck-agent hook: {name:?} cannot name a hook");
        return ExitCode::from(125);
    }
    let port = match configured_hook_port() {
        Ok(port) => port,
        Err(message) => {
            println!("podcheck-agent hook: {message}");
            return ExitCode::from(125);
        }
    };
    let target = format!(
        "{}{name}?{}",
        podcheck_wire::HOOK_PATH_PREFIX,
        podcheck_wire::EXEC_QUERY
    );
    match ask(port, &target, "podcheck-agent-hook", HOOK_CONNECT_PATIENCE) {
        Ok(status_line) => {
            println!("{status_line}");
            match status_code(&status_line) {
                Some(200..=299) => ExitCode::SUCCESS,
                _ => ExitCode::from(1),
            }
        }
        Err(message) => {
            println!("podcheck-agent hook: {message}");
            ExitCode::from(1)
        }
    }
}

fn status_code(status_line: &str) -> Option<u16> {
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
}

fn configured_behaviour() -> Result<Behaviour, String> {
    let text =
        std::env::var(env::BEHAVIOUR).map_err(|_| format!("{} is not set", env::BEHAVIOUR))?;
    let behaviour =
        Behaviour::from_json(&text).map_err(|err| format!("{}: {err}", env::BEHAVIOUR))?;
    behaviour
        .validate()
        .map_err(|err| format!("{}: {err}", env::BEHAVIOUR))?;
    Ok(behaviour)
}

fn configured_port() -> Result<u16, String> {
    let health = configured_behaviour()?
        .health
        .ok_or_else(|| format!("{} has no health", env::BEHAVIOUR))?;
    Ok(health.port)
}

fn configured_hook_port() -> Result<u16, String> {
    configured_behaviour()?
        .hook_port()
        .ok_or_else(|| format!("{} has no hooks", env::BEHAVIOUR))
}

/// Sends `GET <target>` to 127.0.0.1:`port` and returns the status line. A refused
/// connection is retried every [`HOOK_CONNECT_RETRY`] until `retry_refused_for` has
/// passed.
fn ask(
    port: u16,
    target: &str,
    user_agent: &str,
    retry_refused_for: Duration,
) -> Result<String, String> {
    let address = format!("127.0.0.1:{port}");
    let give_up = Instant::now() + retry_refused_for;
    let mut stream = loop {
        match TcpStream::connect(&address) {
            Ok(stream) => break stream,
            Err(err) if err.kind() == ErrorKind::ConnectionRefused && Instant::now() < give_up => {
                std::thread::sleep(HOOK_CONNECT_RETRY)
            }
            Err(err) => return Err(format!("cannot connect to {address}: {err}")),
        }
    };
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send to {address}: {e}"))?;
    let mut status_line = String::new();
    BufReader::new(&stream)
        .take(MAX_HEAD)
        .read_line(&mut status_line)
        .map_err(|e| format!("no answer from {address}: {e}"))?;
    let status_line = status_line.trim();
    if status_line.is_empty() {
        return Err(format!("{address} closed the connection without an answer"));
    }
    Ok(status_line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint(answers: serde_json::Value) -> Endpoint {
        serde_json::from_value(json!({ "answers": answers })).expect("endpoint")
    }

    #[test]
    fn answers_follow_the_script_and_the_last_one_lasts() {
        let e = endpoint(json!([
            {"answer": "ok", "forMs": 100},
            {"answer": "fail", "forMs": 50},
            {"answer": {"slowMs": 7}, "forMs": 10}
        ]));
        assert_eq!(answer_at(&e, 0.0), Answer::Ok);
        assert_eq!(answer_at(&e, 99.9), Answer::Ok);
        assert_eq!(answer_at(&e, 100.0), Answer::Fail);
        assert_eq!(answer_at(&e, 150.0), Answer::SlowMs(7));
        assert_eq!(answer_at(&e, 1e9), Answer::SlowMs(7));
        assert_eq!(next_boundary_after(&e, 0.0), Some(100));
        assert_eq!(next_boundary_after(&e, 100.0), Some(150));
        assert_eq!(next_boundary_after(&e, 159.0), Some(160));
        assert_eq!(next_boundary_after(&e, 160.0), None);
    }

    #[test]
    fn an_entry_without_for_lasts_forever_and_an_empty_script_fails() {
        let e = endpoint(json!([{"answer": "fail", "forMs": 10}, {"answer": "ok"}]));
        assert_eq!(answer_at(&e, 5.0), Answer::Fail);
        assert_eq!(answer_at(&e, 1e12), Answer::Ok);
        assert_eq!(next_boundary_after(&e, 10.0), None);
        assert_eq!(answer_at(&endpoint(json!([])), 0.0), Answer::Fail);
    }
}
