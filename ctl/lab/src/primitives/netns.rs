//! [`NetNs`]: an RAII network namespace, and [`ChildGuard`] for processes
//! spawned in one.
//!
//! A namespace is named `vlt-<tag>-<pid>-<n>` (see [`unique_suffix`]), gets its
//! loopback up, and on drop every process inside it is killed before it is
//! deleted. [`NetNs`] is a cheap shared handle: the namespace goes away when
//! the last clone is dropped, which is how a VM keeps its host alive and a
//! host its switch.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Prefix of every namespace (and temp dir) the lab creates.
pub const NAME_PREFIX: &str = "vlt-";

/// How long [`NetNs::run`] lets a command run before killing it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a dropping namespace waits for its processes to die.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// Poll period while waiting for a child process.
const POLL: Duration = Duration::from_millis(10);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Everything that can go wrong while building or driving a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A program could not be started at all.
    #[error("could not start `{command}`: {source} (is it installed? are we root?)")]
    Spawn {
        /// The command line.
        command: String,
        /// Why `exec` failed.
        #[source]
        source: io::Error,
    },
    /// A program ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A program ran longer than allowed and was killed.
    #[error("`{command}` did not finish within {after:?} and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit it exceeded.
        after: Duration,
    },
    /// A program's output was not what we know how to read.
    #[error("could not read the output of {what}: {detail}")]
    Parse {
        /// Which program or report.
        what: String,
        /// What was wrong, with the offending text.
        detail: String,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A vlnet daemon did not become ready.
    #[error("vlnet node `{node}` not ready after {waited:?}: {reason}\n--- daemon log (tail) ---\n{log_tail}")]
    NotReady {
        /// The node name.
        node: String,
        /// How long we waited.
        waited: Duration,
        /// The last readiness failure (or the daemon's exit status).
        reason: String,
        /// The end of the daemon's log.
        log_tail: String,
    },
    /// The caller asked for something the lab does not support.
    #[error("invalid lab setup: {0}")]
    Invalid(String),
    /// SIGINT or SIGTERM arrived (see [`Interrupt`](crate::primitives::interrupt::Interrupt)).
    #[error("interrupted; everything built so far is being removed")]
    Interrupted,
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// `<pid>-<n>`, unique within this machine for the life of this process.
#[must_use]
pub fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// `<prefix><pid>n<n>`: an interface name unique on this machine for the
/// life of this process (WireGuard's UAPI socket path is machine-wide, not
/// per namespace). A prefix of up to 3 letters stays within Linux's 15
/// characters for 7-digit pids and fewer than 10,000 names.
#[must_use]
pub fn unique_ifname(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}n{n}", std::process::id())
}

/// A command line as text, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` with piped stdout/stderr, killing it after `timeout`. The exit
/// status is not checked.
pub(crate) fn output_within(cmd: &mut Command, timeout: Duration) -> Result<Output, LabError> {
    output_with_input(cmd, None, timeout)
}

/// [`output_within`], with `input` (if any) written to the child's standard
/// input, which is then closed; without, standard input is `/dev/null`.
fn output_with_input(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, LabError> {
    let command = describe(cmd);
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // On a thread, so a child that does not read cannot block us; the
        // pipe closes when the thread ends.
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &input);
        });
    }
    // Read both pipes concurrently so a chatty child cannot block on a full pipe.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::Timeout {
                    command,
                    after: timeout,
                });
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::io(format!("waiting for `{command}`"), e));
            }
        }
    };
    let join = |h: thread::JoinHandle<Vec<u8>>| h.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout: join(out),
        stderr: join(err),
    })
}

/// Reads a child's pipe to its end on a thread of its own, so the child
/// never blocks on a full pipe; join the handle for the bytes (`None`, a
/// stream that was not piped, reads nothing).
pub fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = pipe {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs `cmd` (bounded by `timeout`) and returns its stdout, or
/// [`LabError::Failed`] with the command, status and stderr.
pub(crate) fn checked(cmd: &mut Command, timeout: Duration) -> Result<String, LabError> {
    checked_with_input(cmd, None, timeout)
}

/// [`checked`], with `input` (if any) written to the command's standard
/// input.
pub(crate) fn checked_with_input(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<String, LabError> {
    let output = output_with_input(cmd, input, timeout)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Failed {
            command: describe(cmd),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs a command in the caller's (root) namespace and returns its stdout.
pub fn run_host(args: &[&str]) -> Result<String, LabError> {
    let (program, rest) = args
        .split_first()
        .ok_or_else(|| LabError::Invalid("empty command".into()))?;
    checked(Command::new(program).args(rest), DEFAULT_TIMEOUT)
}

/// An RAII network namespace `vlt-<tag>-<pid>-<n>` with loopback up.
///
/// Cloning shares the namespace; the last drop kills every process inside it
/// and deletes it.
#[derive(Clone)]
pub struct NetNs {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    path: PathBuf,
}

impl fmt::Debug for NetNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NetNs").field(&self.inner.name).finish()
    }
}

impl NetNs {
    /// Creates `vlt-<tag>-<pid>-<n>` and brings its loopback up. `tag` is
    /// lower-case ASCII letters, digits and `-`.
    pub fn new(tag: &str) -> Result<Self, LabError> {
        if tag.is_empty()
            || !tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(LabError::Invalid(format!(
                "namespace tag `{tag}`: use lower-case letters, digits and '-'"
            )));
        }
        let name = format!("{NAME_PREFIX}{tag}-{}", unique_suffix());
        run_host(&["ip", "netns", "add", &name])?;
        // From here on the guard owns it, so a failure below still deletes it.
        let ns = Self {
            inner: Arc::new(Inner {
                path: Path::new("/run/netns").join(&name),
                name,
            }),
        };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns list` shows it.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `/run/netns/<name>`.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Deletes the namespace (its processes killed, its interfaces gone) and
    /// creates an empty one under the same name, loopback up: a host whose
    /// container or network config was rebuilt. This handle and its clones
    /// then refer to the new namespace.
    pub fn recreate(&self) -> Result<(), LabError> {
        kill_all_in(self.name());
        run_host(&["ip", "netns", "del", self.name()])?;
        run_host(&["ip", "netns", "add", self.name()])?;
        self.run(&["ip", "link", "set", "lo", "up"]).map(drop)
    }

    /// A command that runs `program` inside this namespace with
    /// `ip netns exec`: in a mount namespace of its own with a fresh `/sys`
    /// (no BPF filesystem), as operators often start things.
    #[must_use]
    pub fn ip_netns_exec(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name()]).arg(program);
        cmd
    }

    /// A command that runs `program` inside this namespace (network namespace
    /// only; the mount namespace, and so `/sys/fs/bpf`, stays the host's).
    #[must_use]
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut net = std::ffi::OsString::from("--net=");
        net.push(self.path());
        let mut cmd = Command::new("nsenter");
        cmd.arg(net).arg("--").arg(program);
        cmd
    }

    fn cmd_args(&self, args: &[&str]) -> Result<Command, LabError> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| LabError::Invalid("empty command".into()))?;
        let mut cmd = self.cmd(program);
        cmd.args(rest);
        Ok(cmd)
    }

    /// Runs `args` inside the namespace (at most [`DEFAULT_TIMEOUT`]) and
    /// returns its stdout; fails with the command, status and stderr.
    pub fn run(&self, args: &[&str]) -> Result<String, LabError> {
        self.run_within(args, DEFAULT_TIMEOUT)
    }

    /// [`run`](Self::run) with an explicit time limit.
    pub fn run_within(&self, args: &[&str], timeout: Duration) -> Result<String, LabError> {
        checked(&mut self.cmd_args(args)?, timeout)
    }

    /// Runs `args` inside the namespace (bounded by `timeout`) and returns its
    /// output without judging the exit status (for ping, whose status 1 means
    /// "some replies missing").
    pub fn output_within(&self, args: &[&str], timeout: Duration) -> Result<Output, LabError> {
        output_within(&mut self.cmd_args(args)?, timeout)
    }

    /// Starts `args` inside the namespace with stdio to `/dev/null`; the
    /// returned guard kills it on drop.
    pub fn spawn(&self, args: &[&str]) -> Result<ChildGuard, LabError> {
        let mut cmd = self.cmd_args(args)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        ChildGuard::spawn(&mut cmd)
    }

    /// Runs `f` on a fresh thread that has joined this namespace
    /// (`setns(2)`, network namespace only) and returns its result. For work
    /// the kernel does in the caller's namespace: `BPF_PROG_TEST_RUN` (whose
    /// frames start on that namespace's loopback), ifindex lookups, XDP
    /// attachment by ifindex. The calling thread's namespace is untouched.
    pub fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        let file = std::fs::File::open(self.path())
            .map_err(|e| LabError::io(format!("opening {}", self.path().display()), e))?;
        thread::scope(|scope| {
            scope
                .spawn(move || {
                    use std::os::fd::AsRawFd as _;
                    // SAFETY: `file` is an open namespace file; setns only
                    // changes this (scoped, short-lived) thread's namespace.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        return Err(LabError::io(
                            format!("setns into {}", self.name()),
                            io::Error::last_os_error(),
                        ));
                    }
                    Ok(f())
                })
                .join()
                .map_err(|_| LabError::Invalid(format!("a thread in {} panicked", self.name())))?
        })
    }

    /// Ids of the processes whose network namespace this is.
    pub fn pids(&self) -> Result<Vec<u32>, LabError> {
        pids_of(self.name())
    }

    /// Sets a sysctl inside the namespace (only `net.*` keys are per
    /// namespace), e.g. `("net.ipv6.conf.all.disable_ipv6", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }
}

fn pids_of(name: &str) -> Result<Vec<u32>, LabError> {
    let out = run_host(&["ip", "netns", "pids", name])?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// SIGKILLs every process in namespace `name`, waiting (bounded) for them
/// to go.
fn kill_all_in(name: &str) {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let pids = pids_of(name).unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        let mut kill = Command::new("kill");
        kill.arg("-KILL").args(pids.iter().map(u32::to_string));
        let _ = output_within(&mut kill, Duration::from_secs(5));
        if Instant::now() >= deadline {
            eprintln!("lab: processes {pids:?} survive in {name}");
            break;
        }
        thread::sleep(POLL);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        if let Err(e) = run_host(&["ip", "netns", "del", &self.name]) {
            eprintln!("lab: could not delete namespace {}: {e}", self.name);
        }
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    command: String,
    reaped: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` (with whatever stdio it was given).
    pub fn spawn(cmd: &mut Command) -> Result<Self, LabError> {
        let command = describe(cmd);
        let child = cmd.spawn().map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
        Ok(Self {
            child,
            command,
            reaped: None,
        })
    }

    /// The process id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command line it was started with.
    #[must_use]
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The underlying child, e.g. to take its stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Its exit status if it has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, LabError> {
        if self.reaped.is_none() {
            self.reaped = self
                .child
                .try_wait()
                .map_err(|e| LabError::io(format!("waiting for `{}`", self.command), e))?;
        }
        Ok(self.reaped)
    }

    /// Waits at most `timeout` for it to exit; `None` if it is still running.
    pub fn wait_within(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL);
        }
    }

    /// Sends SIGKILL (if still running) and reaps it. Idempotent.
    pub fn kill(&mut self) {
        if self.reaped.is_none() {
            let _ = self.child.kill();
            self.reaped = self.child.wait().ok();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_unique() {
        let a = unique_suffix();
        let b = unique_suffix();
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{}-", std::process::id())));
        assert_ne!(unique_ifname("vg"), unique_ifname("vg"));
        assert!(unique_ifname("vgo").len() <= 15);
    }

    #[test]
    fn output_within_kills_on_timeout() {
        let err =
            output_within(Command::new("sleep").arg("5"), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, LabError::Timeout { .. }), "{err}");
    }

    #[test]
    fn checked_reports_command_status_and_stderr() {
        let err = checked(
            Command::new("sh").args(["-c", "echo nope >&2; exit 3"]),
            DEFAULT_TIMEOUT,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains('3'), "{msg}");
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn rejects_bad_tags() {
        assert!(matches!(NetNs::new("Bad Tag"), Err(LabError::Invalid(_))));
    }
}
