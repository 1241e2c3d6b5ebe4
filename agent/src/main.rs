//! podcheck-agent: the workload inside every podcheck container.
//!
//! It acts out one container's scripted behaviour and reports what it does as JSON lines
//! on standard output (the container log), so a trace holds the workload's own view. Both
//! the behaviour and the log lines are defined in `podcheck-wire`; this is the one program
//! that acts the one out and writes the other.
//!
//! Configuration comes from the environment, which every target can set through the pod
//! spec (`podcheck_wire::env`):
//! - `PODCHECK_BEHAVIOUR`: the `podcheck_wire::Behaviour`. Start N (counted across
//!   restarts) acts out `starts[N]`, later starts `then`. Without `health` and `hooks`
//!   nothing listens. All times are spec milliseconds from this process's start (a hook's
//!   from its call, a graceful shutdown's from SIGTERM), so every start replays the script.
//! - `PODCHECK_TIME_SCALE`: wall seconds per spec second (default 1).
//! - `PODCHECK_STATE_DIR`: a directory that outlives container restarts (an emptyDir),
//!   where the agent counts its starts (default `/podcheck-state`).
//! - `PODCHECK_CONTAINER`: the container's name, which keys the start counter.
//!
//! With `health`:
//! - From `listenAfterMs` on (before it connections are refused), an HTTP server on
//!   0.0.0.0:`port` answers `GET /NAME`: 200 for ok, 500 for fail, 200 after the wait for
//!   slow, 404 for an unknown name, always with `Connection: close`. Each request is logged
//!   as a probe event when it arrives (via `exec` when the query has `via=exec`).
//! - An endpoint with `tcpPort` has a TCP listener on 0.0.0.0:T exactly while
//!   `listenAfterMs` has passed and its answer is not fail; each connection is logged as a
//!   probe event via `tcp` and closed at once.
//! - With `grpcPort`, from `listenAfterMs` on a gRPC health server (grpc.health.v1, over
//!   cleartext HTTP/2 with prior knowledge) on 0.0.0.0:G answers `Health/Check`: service
//!   `""` is SERVING, an endpoint's name is SERVING for ok, NOT_SERVING for fail, SERVING
//!   after the wait for slow, and any other service gets gRPC status NOT_FOUND. Other
//!   methods are UNIMPLEMENTED, a request that does not decode INVALID_ARGUMENT. Each
//!   Check is logged like an HTTP request, via `grpc` (`endpoint` is the service, or null
//!   when the request does not decode).
//!
//! With `hooks`, the HTTP server (on the health port, or on 8080 with no endpoints when
//! there is no `health`) listens from the very start, bound before the start is counted,
//! and answers `GET /hook/NAME` (unless `hook/NAME` is an endpoint): it logs `hookStarted`
//! (via `exec` when the query has `via=exec`), takes the hook's `takesMs`, logs `hookEnded`
//! and answers 200, or 500 for a failing hook. A name without a hook is logged as
//! `hookStarted` and `hookEnded` with `ok: false` and answered 404, so a misrouted call
//! shows. Every connection has its own thread: a slow hook holds up neither probes nor
//! other hooks.
//!
//! Invalid `health` or `hooks`, or a port that cannot be bound, ends the agent with code
//! 125.
//!
//! SIGTERM is logged as a signal event when it arrives; then, by `onSigterm`, the process
//! dies of it (`die`, the default: status 143, an exit with code 143 where as PID 1 it
//! cannot die of its own signal), carries on (`ignore`: only SIGKILL ends it), or logs an
//! exit event `afterMs` later and exits with `code` (`exit`; its run may end it first).
//!
//! `podcheck-agent probe NAME` is the exec probe: it sends `GET /NAME?via=exec` to
//! 127.0.0.1:P, prints the status line and exits 0 for 2xx/3xx, 1 for any other status
//! or a failed connection (125 when PODCHECK_BEHAVIOUR has no valid health). It neither
//! counts a start nor logs one.
//!
//! `podcheck-agent hook NAME` is the exec handler of a lifecycle hook: it sends
//! `GET /hook/NAME?via=exec` to 127.0.0.1 on the hook port, prints the status line and
//! exits 0 for 2xx, 1 for any other status or a failed connection (125 when
//! PODCHECK_BEHAVIOUR has no valid hooks). A refused connection is retried every 10 ms for
//! 2 s, as an exec postStart handler may run before the agent listens; the answer is
//! awaited as long as it takes (the kubelet bounds the handler). It neither counts a start
//! nor logs one.
//!
//! Right after its start event, and again whenever the set changes (it looks about once a
//! second of wall time), the agent logs the processes it can see: the agents' main
//! processes named by their `PODCHECK_POD` and `PODCHECK_CONTAINER`, itself included, and
//! how many others (see `podcheck_wire::Event::Processes`).
//!
//! `podcheck-agent pause` instead sleeps until killed: the pod sandbox's holder process.
//! As PID 1 of the pod's PID namespace it inherits the processes whose parent died there;
//! it ignores SIGCHLD, so the kernel reaps them, as the pause container does.

mod grpc;
mod health;
mod processes;

use podcheck_wire::{env, Behaviour, Event, LogEvent, OnSigterm, Run, Signal};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Writes `event` to the log, stamped with the wall clock.
fn log(event: Event) {
    let line = LogEvent {
        ts_ms: now_ms(),
        event,
    };
    let mut out = std::io::stdout().lock();
    // A closed log is no reason to change behaviour: the exit code is the contract.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(message: &str) -> ExitCode {
    log(Event::Error {
        message: message.to_owned(),
    });
    eprintln!("podcheck-agent: {message}");
    ExitCode::from(125)
}

/// Counts this start in the state directory and returns its 0-based index.
fn count_start(state_dir: &Path, container: &str) -> Result<u32, String> {
    fs::create_dir_all(state_dir)
        .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    let path = state_dir.join(format!("{container}.starts"));
    let previous = match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u32>()
            .map_err(|e| format!("{} is corrupt: {e}", path.display()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let temporary = path.with_extension("starts.tmp");
    let mut file = fs::File::create(&temporary)
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    // No fsync: the rename is atomic, and the counter only has to survive a container
    // restart, not a power loss; an fsync on a busy disk would add visible latency.
    write!(file, "{}", previous + 1)
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    fs::rename(&temporary, &path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    Ok(previous)
}

/// Logs the exit and ends the process with `code`. When the run's end and a graceful
/// shutdown come at once, only the first is logged and acted on.
fn exit_with(code: i32) -> ! {
    static EXITING: AtomicBool = AtomicBool::new(false);
    if EXITING.swap(true, Ordering::SeqCst) {
        sleep_forever(); // the other one is ending the process
    }
    log(Event::Exit { code });
    // An exit code is a byte; codes outside it exit 255.
    std::process::exit(i32::from(u8::try_from(code).unwrap_or(255)))
}

/// Blocks SIGTERM in this thread, and so in every thread started after, until
/// [`watch_sigterm`] takes it: a SIGTERM that arrives while the agent sets up waits for
/// the disposition the behaviour asks for.
fn block_sigterm() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is a valid argument for sigemptyset, which initializes it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: plain libc signal-set and signal-mask calls on a local, initialized set.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

/// Logs every SIGTERM when it arrives, then acts out `on_sigterm`.
fn watch_sigterm(set: libc::sigset_t, on_sigterm: OnSigterm, clock: health::Clock) {
    std::thread::spawn(move || {
        let mut shutting_down = false;
        loop {
            let mut signal = 0;
            // SAFETY: sigwait on an initialized set whose signals are blocked in every
            // thread.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                return;
            }
            log(Event::Signal {
                signal: Signal::Sigterm,
            });
            match on_sigterm {
                OnSigterm::Die => die_of_sigterm(&set),
                OnSigterm::Ignore => {}
                // A later SIGTERM neither hurries nor delays the shutdown under way.
                OnSigterm::Exit { .. } if shutting_down => {}
                OnSigterm::Exit { after_ms, code } => {
                    shutting_down = true;
                    let delay = clock.wall(after_ms);
                    let spawned = std::thread::Builder::new()
                        .name("shutdown".to_owned())
                        .spawn(move || {
                            std::thread::sleep(delay);
                            exit_with(code)
                        });
                    if spawned.is_err() {
                        // Without a thread, shut down here (later signals go unlogged).
                        std::thread::sleep(delay);
                        exit_with(code);
                    }
                }
            }
        }
    });
}

/// Dies of SIGTERM as an unprepared process would (or exits 143 where, as PID 1, it cannot
/// die of its own signal).
fn die_of_sigterm(set: &libc::sigset_t) -> ! {
    // SAFETY: restores the default disposition, unblocks the signal in this thread and
    // raises it; nothing here touches memory.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, set, std::ptr::null_mut());
        libc::raise(libc::SIGTERM);
        // As PID 1 of a PID namespace (a container on a real node) the kernel ignores a
        // default-disposition signal (SIGNAL_UNKILLABLE in sig_task_ignored): exit with
        // the status a death by SIGTERM reports.
        libc::_exit(128 + libc::SIGTERM)
    }
}

/// Logs what the agent sees now, then again whenever that changes, from a thread of its
/// own.
fn watch_processes() {
    let proc = Path::new("/proc");
    let mut seen = processes::scan(proc);
    log(Event::Processes {
        agents: seen.agents.clone(),
        others: seen.others,
    });
    let watcher = std::thread::Builder::new()
        .name("processes".to_owned())
        .spawn(move || loop {
            std::thread::sleep(processes::RESCAN);
            let now = processes::scan(proc);
            if now != seen {
                log(Event::Processes {
                    agents: now.agents.clone(),
                    others: now.others,
                });
                seen = now;
            }
        });
    // Without a thread the first scan stands alone; the behaviour goes on regardless.
    drop(watcher);
}

/// The pod sandbox's holder process (see the module documentation).
fn pause() -> ! {
    // SAFETY: sets a signal disposition; no memory is touched.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
    sleep_forever()
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() -> ExitCode {
    let started = Instant::now();
    match std::env::args().nth(1).as_deref() {
        Some("pause") => pause(),
        Some("probe") => return health::probe_command(std::env::args().nth(2)),
        Some("hook") => return health::hook_command(std::env::args().nth(2)),
        _ => {}
    }
    let sigterm = block_sigterm();
    let behaviour = match std::env::var(env::BEHAVIOUR) {
        Ok(text) => match Behaviour::from_json(&text) {
            Ok(behaviour) => behaviour,
            Err(err) => return fail(&format!("{}: {err}", env::BEHAVIOUR)),
        },
        Err(_) => Behaviour::forever(),
    };
    if let Err(err) = behaviour.validate() {
        return fail(&format!("{}: {err}", env::BEHAVIOUR));
    }
    let scale = match std::env::var(env::TIME_SCALE)
        .ok()
        .map(|s| s.parse::<f64>())
    {
        None => 1.0,
        Some(Ok(scale)) if scale > 0.0 && scale.is_finite() => scale,
        Some(_) => return fail(&format!("{} must be a positive number", env::TIME_SCALE)),
    };
    let clock = health::Clock {
        start: started,
        scale,
    };
    // First of all listen, for a hook call that comes right after the start.
    let early = health::listen_early(&behaviour);
    watch_sigterm(sigterm, behaviour.on_sigterm, clock);
    let state_dir = PathBuf::from(
        std::env::var(env::STATE_DIR).unwrap_or_else(|_| "/podcheck-state".to_owned()),
    );
    let container = std::env::var(env::CONTAINER).unwrap_or_else(|_| "container".to_owned());
    let start = match count_start(&state_dir, &container) {
        Ok(n) => n,
        Err(message) => return fail(&message),
    };
    let run = behaviour.run_of_start(start);
    log(Event::Start { start, run });
    watch_processes();
    health::serve(&behaviour, early, clock);
    match run {
        Run::Forever => sleep_forever(),
        Run::Exit { after_ms, code } => {
            std::thread::sleep(clock.wall(after_ms));
            exit_with(code)
        }
    }
}
