//! The narrow seam to the OS: privilege checks, process spawning into namespaces, mounts.
//!
//! Everything that runs between fork and exec is here, and only uses syscalls on data
//! prepared before the fork (no allocation), as `pre_exec` requires.
//!
//! PID namespaces are the exception to "the child enters its namespaces itself": `setns`
//! or `unshare` of a PID namespace only changes where the caller's *children* go, so the
//! [`Spawner`] thread switches its own namespace for children around each fork (see
//! [`PidNamespace`]).

use crate::errors::RuntimeError;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

const CAP_SYS_ADMIN: u32 = 21;

/// Refuses clearly where the runtime cannot work: it needs root's CAP_SYS_ADMIN for
/// namespaces and mounts, and overlayfs for container root filesystems.
pub fn check_privileges() -> Result<(), RuntimeError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|source| {
        RuntimeError::HostUnreadable {
            path: "/proc/self/status".into(),
            source,
        }
    })?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if effective & (1 << CAP_SYS_ADMIN) == 0 {
        return Err(RuntimeError::Unsupported(
            "the local runtime needs CAP_SYS_ADMIN (run as root) to create namespaces, mounts and cgroups; \
             use `--target model` to run without it"
                .to_owned(),
        ));
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        return Err(RuntimeError::Unsupported(
            "the kernel lacks overlayfs, which container root filesystems need (modprobe overlay)"
                .to_owned(),
        ));
    }
    Ok(())
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Makes the child die with the spawning thread and join its cgroups. (Whether the
/// runtime died before the prctl took effect is checked last, by the [`Spawner`].)
fn common_setup(cgroup_procs: &[File]) -> io::Result<()> {
    // SAFETY: prctl/write on fds opened before the fork.
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        for file in cgroup_procs {
            let written = libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1);
            if written != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        // A new session: signals to the runtime's process group do not reach pods.
        libc::setsid();
    }
    Ok(())
}

/// The PID namespace a spawned process lives in (never the runtime's own: nothing the
/// runtime starts sees the node's processes).
pub enum PidNamespace {
    /// A new one, whose PID 1 the process is: it sees only itself and what it starts or
    /// what joins it later.
    New,
    /// The one of a running process (its `/proc/PID/ns/pid`, opened while it runs).
    Join(File),
}

impl PidNamespace {
    /// The PID namespace `pid` is in.
    pub fn of(pid: i32) -> io::Result<PidNamespace> {
        File::open(format!("/proc/{pid}/ns/pid")).map(PidNamespace::Join)
    }
}

/// A prepared process and the PID namespace it is to be forked into.
pub struct Launch {
    pub command: Command,
    pub pid_namespace: PidNamespace,
}

/// What the sandbox holder process needs.
pub struct SandboxLaunch {
    pub agent: std::path::PathBuf,
    pub hostname: String,
    pub cgroup_procs: Vec<File>,
}

/// What a container process needs: a rootfs, the sandbox's namespaces, its cgroups.
pub struct ContainerLaunch {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub sandbox_pid: i32,
    pub cgroup_procs: Vec<File>,
    pub image_root: std::path::PathBuf,
    pub upper: std::path::PathBuf,
    pub work: std::path::PathBuf,
    pub merged: std::path::PathBuf,
    /// (host directory, absolute path inside the container, read-only)
    pub binds: Vec<(std::path::PathBuf, String, bool)>,
    pub working_dir: String,
    pub log: File,
    /// A new namespace of its own, or the pod's (the sandbox's) or a target container's.
    pub pid_namespace: PidNamespace,
}

/// The sandbox holder: PID 1 of the pod's own PID namespace, which the containers of a pod
/// with `shareProcessNamespace` join (as the pause container is in Kubernetes).
pub fn sandbox_command(launch: SandboxLaunch) -> io::Result<Launch> {
    let hostname = launch.hostname.into_bytes();
    let procs = launch.cgroup_procs;
    let mut command = Command::new(&launch.agent);
    command
        .arg("pause")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_clear();
    // SAFETY: the closure only makes syscalls on data moved into it before the fork.
    unsafe {
        command.pre_exec(move || {
            common_setup(&procs)?;
            check(libc::unshare(
                libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC,
            ))?;
            check(libc::sethostname(hostname.as_ptr().cast(), hostname.len()))?;
            loopback_up()
        });
    }
    Ok(Launch {
        command,
        pid_namespace: PidNamespace::New,
    })
}

/// Brings `lo` up in the current network namespace, so containers reach each other on
/// localhost.
fn loopback_up() -> io::Result<()> {
    // SAFETY: ioctl on a socket we own, with a zeroed ifreq naming "lo".
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        request.ifr_name[0] = b'l' as libc::c_char;
        request.ifr_name[1] = b'o' as libc::c_char;
        let result = (|| {
            check(libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request))?;
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            check(libc::ioctl(socket, libc::SIOCSIFFLAGS, &request))
        })();
        libc::close(socket);
        result
    }
}

/// A container's main process: the sandbox's network, UTS and IPC namespaces, its own
/// mount namespace over an overlay of its image, with its own `/proc` (of the PID namespace
/// it is in), and that overlay as its root (`pivot_root`: nothing of the host's tree stays
/// reachable, as with runc).
pub fn container_command(launch: ContainerLaunch) -> io::Result<Launch> {
    let open_ns = |kind: &str| File::open(format!("/proc/{}/ns/{kind}", launch.sandbox_pid));
    let namespaces = [open_ns("net")?, open_ns("uts")?, open_ns("ipc")?];
    let merged = cstring(&launch.merged)?;
    let overlay_options = CString::new(format!(
        "lowerdir={},upperdir={},workdir={}",
        launch.image_root.display(),
        launch.upper.display(),
        launch.work.display()
    ))
    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    // Every bind target, with the directories to create on its way, relative to merged.
    let mut binds = Vec::new();
    for (source, target, read_only) in &launch.binds {
        let mut dirs = Vec::new();
        let mut path = launch.merged.clone();
        for part in Path::new(target).components().skip(1) {
            path.push(part);
            dirs.push(cstring(&path)?);
        }
        binds.push((cstring(source)?, dirs, *read_only));
    }
    let dev = cstring(&launch.merged.join("dev"))?;
    let dev_null = cstring(&launch.merged.join("dev/null"))?;
    let host_dev_null = CString::new("/dev/null").map_err(io::Error::other)?;
    let working_dir = CString::new(launch.working_dir.clone())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "workingDir with a NUL byte"))?;
    let procs = launch.cgroup_procs;
    let overlay = CString::new("overlay").map_err(io::Error::other)?;
    let root = CString::new("/").map_err(io::Error::other)?;
    let dot = CString::new(".").map_err(io::Error::other)?;
    let proc_type = CString::new("proc").map_err(io::Error::other)?;
    let proc_dir = CString::new("/proc").map_err(io::Error::other)?;

    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(launch.log.try_clone()?)
        .stderr(launch.log);
    // SAFETY: the closure only makes syscalls on data moved into it before the fork.
    unsafe {
        command.pre_exec(move || {
            common_setup(&procs)?;
            for ns in &namespaces {
                check(libc::setns(ns.as_raw_fd(), 0))?;
            }
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                overlay.as_ptr(),
                merged.as_ptr(),
                overlay.as_ptr(),
                0,
                overlay_options.as_ptr().cast(),
            ))?;
            for (source, dirs, read_only) in &binds {
                for dir in dirs {
                    libc::mkdir(dir.as_ptr(), 0o755);
                }
                let Some(target) = dirs.last() else { continue };
                check(libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                if *read_only {
                    check(libc::mount(
                        std::ptr::null(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ))?;
                }
            }
            libc::mkdir(dev.as_ptr(), 0o755);
            let fd = libc::open(
                dev_null.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            check(libc::mount(
                host_dev_null.as_ptr(),
                dev_null.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
            // pivot_root(".", "."): the old root ends up stacked on the new one, and the
            // lazy unmount takes it (and every host mount below it) out of this namespace.
            check(libc::chdir(merged.as_ptr()))?;
            check(libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int)?;
            check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(root.as_ptr()))?;
            // A proc mount shows the PID namespace of the process that mounts it: this
            // one's, which it already is in (it was forked into it).
            check(libc::mount(
                proc_type.as_ptr(),
                proc_dir.as_ptr(),
                proc_type.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            check(libc::chdir(working_dir.as_ptr()))
        });
    }
    Ok(Launch {
        command,
        pid_namespace: launch.pid_namespace,
    })
}

/// What an exec probe needs: the container to enter and the command to run there.
pub struct ExecLaunch {
    pub container_pid: i32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The `cgroup.procs` files of the container's groups, which the command joins (as a
    /// process exec'd into a container does), so that it dies with the container.
    pub cgroup_procs: Vec<File>,
    /// Whether the command's output is captured (piped) rather than thrown away.
    pub capture_output: bool,
}

/// A command that runs inside a running container: its namespaces (its PID namespace
/// too, so that it sees what the container sees) and its root.
pub fn exec_command(launch: ExecLaunch) -> io::Result<Launch> {
    let Some((program, args)) = launch.argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an empty command",
        ));
    };
    if !program.starts_with('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{program:?}: the local runtime needs an absolute path (images have no PATH lookup)"),
        ));
    }
    let proc_dir = format!("/proc/{}", launch.container_pid);
    let open_ns = |kind: &str| File::open(format!("{proc_dir}/ns/{kind}"));
    // The mount namespace last: after it, paths resolve inside the container.
    let namespaces = [
        open_ns("net")?,
        open_ns("uts")?,
        open_ns("ipc")?,
        open_ns("mnt")?,
    ];
    let pid_namespace = PidNamespace::of(launch.container_pid)?;
    let root = File::open(format!("{proc_dir}/root"))?;
    let dot = CString::new(".").map_err(io::Error::other)?;
    let slash = CString::new("/").map_err(io::Error::other)?;
    let procs = launch.cgroup_procs;
    let output = || match launch.capture_output {
        true => Stdio::piped(),
        false => Stdio::null(),
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(output())
        .stderr(output());
    // SAFETY: the closure only makes syscalls on data moved into it before the fork.
    unsafe {
        command.pre_exec(move || {
            common_setup(&procs)?;
            for ns in &namespaces {
                check(libc::setns(ns.as_raw_fd(), 0))?;
            }
            check(libc::fchdir(root.as_raw_fd()))?;
            check(libc::chroot(dot.as_ptr()))?;
            check(libc::chdir(slash.as_ptr()))
        });
    }
    Ok(Launch {
        command,
        pid_namespace,
    })
}

/// An unconnected, non-blocking TCP socket that belongs to the network namespace `netns`
/// (a probe connects to the pod's own address from inside the pod's network).
pub fn tcp_socket_in(netns: &File) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let netns = netns.try_clone()?;
    // setns changes only the calling thread's namespace: do it on a thread of its own.
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace fd; socket(2) returns a fresh fd we own.
        unsafe {
            check(libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET))?;
            let fd = libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(std::os::fd::OwnedFd::from_raw_fd(fd))
        }
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

type SpawnJob = (Launch, mpsc::Sender<io::Result<Child>>);

/// How probes, hooks and the pod worker start processes: through the runtime's
/// [`Spawner`].
pub type SpawnFn = std::sync::Arc<dyn Fn(Launch) -> io::Result<Child> + Send + Sync>;

/// Spawns every pod process from one long-lived thread.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, not the process;
/// spawning from async worker or blocking-pool threads would kill containers whenever
/// such a thread retires. This thread lives as long as the runtime, so its children die
/// with the runtime, also when the harness is killed.
///
/// It is also the one thread whose namespace for children changes: for each launch it
/// enters (or creates) the launch's PID namespace, forks, and returns to the runtime's.
pub struct Spawner {
    jobs: mpsc::Sender<SpawnJob>,
}

impl Spawner {
    pub fn start() -> Result<Spawner, RuntimeError> {
        let own =
            File::open("/proc/self/ns/pid").map_err(|source| RuntimeError::HostUnreadable {
                path: "/proc/self/ns/pid".into(),
                source,
            })?;
        let runtime = RuntimeProcess::open();
        let (jobs, receiver) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("podcheck-spawner".to_owned())
            .spawn(move || {
                let mut stuck: Option<String> = None;
                for (launch, reply) in receiver {
                    let result = match &stuck {
                        Some(reason) => Err(io::Error::other(reason.clone())),
                        None => spawn_in_namespace(launch, &own, &runtime, &mut stuck),
                    };
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| RuntimeError::io("start the process spawner thread", e))?;
        Ok(Spawner { jobs })
    }

    pub fn spawn(&self, launch: Launch) -> io::Result<Child> {
        let (reply, answer) = mpsc::channel();
        self.jobs
            .send((launch, reply))
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        answer
            .recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }
}

/// The runtime's own process, as its children check for it right before their exec.
struct RuntimeProcess {
    /// A pidfd: it becomes readable once the process has exited. Without one (kernels
    /// before 5.3), a child can only tell by being reparented to PID 1, which a child in a
    /// PID namespace of its own cannot see.
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl RuntimeProcess {
    fn open() -> RuntimeProcess {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open on our own pid; a non-negative result is a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
        let pidfd = i32::try_from(fd)
            .ok()
            .filter(|fd| *fd >= 0)
            // SAFETY: the fd was just returned by pidfd_open and is owned by nobody else.
            .map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        RuntimeProcess { pidfd }
    }
}

/// Adds the last step before exec: a child whose runtime died before its
/// `PR_SET_PDEATHSIG` took effect ends itself, or nobody would ever kill it.
fn exit_if_runtime_died(command: &mut Command, runtime: &RuntimeProcess) {
    let pidfd = runtime.pidfd.as_ref().map(|fd| fd.as_raw_fd());
    // SAFETY: the closure only makes syscalls on an fd opened before the fork.
    unsafe {
        command.pre_exec(move || {
            match pidfd {
                Some(fd) => {
                    let mut poll = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    if libc::poll(&mut poll, 1, 0) > 0 && poll.revents & libc::POLLIN != 0 {
                        libc::_exit(1);
                    }
                }
                None if libc::getppid() == 1 => libc::_exit(1),
                None => {}
            }
            Ok(())
        });
    }
}

/// Forks `launch` into its PID namespace from the spawner thread, which returns to the
/// runtime's namespace (`own`) afterwards. Should that return fail, every later child
/// would land in a pod's namespace: `stuck` then refuses them.
fn spawn_in_namespace(
    launch: Launch,
    own: &File,
    runtime: &RuntimeProcess,
    stuck: &mut Option<String>,
) -> io::Result<Child> {
    let Launch {
        mut command,
        pid_namespace,
    } = launch;
    exit_if_runtime_died(&mut command, runtime);
    // SAFETY: unshare/setns of a PID namespace change only this thread's namespace for
    // children; the files are open namespace fds.
    unsafe {
        match &pid_namespace {
            PidNamespace::New => check(libc::unshare(libc::CLONE_NEWPID))?,
            PidNamespace::Join(namespace) => {
                check(libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWPID))?
            }
        }
    };
    let child = command.spawn();
    // SAFETY: as above, with the runtime's own namespace, which a thread may always
    // return to.
    if let Err(err) = check(unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) }) {
        *stuck = Some(format!(
            "the spawner thread could not return to the runtime's PID namespace: {err}"
        ));
    }
    child
}

pub fn kill(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) on a pid we spawned; errors (already gone) are irrelevant.
    unsafe {
        libc::kill(pid, signal);
    }
}

pub fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Whether `pid` is a live process with namespaces to enter: false once it has exited,
/// also while it is a zombie nobody has reaped yet (its namespaces are gone at exit).
pub fn has_namespaces(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}/ns/mnt")).exists()
}

/// Whether `dir` is on a tmpfs (statfs magic TMPFS_MAGIC).
pub fn is_tmpfs(dir: &Path) -> bool {
    let Ok(path) = cstring(dir) else { return false };
    // SAFETY: statfs into a zeroed struct with a valid C path.
    unsafe {
        let mut info: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &mut info) == 0 && info.f_type == libc::TMPFS_MAGIC
    }
}

#[cfg(test)]
mod tests {
    use super::has_namespaces;

    /// An exec probe into a container whose process exited must see it gone, also before
    /// the process is reaped: a zombie has no namespaces to enter.
    #[test]
    fn an_exited_process_has_no_namespaces_even_unreaped() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while has_namespaces(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let gone_before_reaping = !has_namespaces(pid);
        let _ = child.wait();
        assert!(gone_before_reaping, "a zombie still shows namespaces");
        assert!(has_namespaces(std::process::id() as i32));
    }
}
