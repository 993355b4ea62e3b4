//! The WireGuard interface in a process of its own (`vlnet wireguard-device
//! --ifname IF`), so that, like the pinned eBPF programs, it outlives the
//! daemon: a restarted or crashed daemon adopts it through its UAPI socket
//! and encrypted traffic keeps flowing meanwhile. `vlnet ctl teardown` stops
//! it (SIGTERM to the pid in its pid file).

use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{check_ifname, Uapi, WgError};

/// The `vlnet` subcommand that serves one interface.
pub const DEVICE_COMMAND: &str = "wireguard-device";
/// How long a new device may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopped device may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// A device process: adopted (it was already running) or just started.
#[derive(Debug)]
pub struct DeviceProcess {
    /// Its UAPI client.
    pub uapi: Uapi,
    /// Whether it was running before (its settings and peers are kept).
    pub adopted: bool,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> WgError + '_ {
    move |source| WgError::Socket {
        path: path.to_owned(),
        source,
    }
}

/// Adopts the running device of `ifname`, or starts `vlnet wireguard-device`
/// (this executable) in its own process group, logging to `log` and writing
/// its pid to `pid_file`, and waits until it answers.
pub fn ensure_device(ifname: &str, pid_file: &Path, log: &Path) -> Result<DeviceProcess, WgError> {
    check_ifname(ifname)?;
    let uapi = Uapi::new(ifname);
    if uapi.status().is_ok() {
        return Ok(DeviceProcess {
            uapi,
            adopted: true,
        });
    }
    let _ = fs::remove_file(uapi.socket()); // a stale socket of a dead device
    let exe = std::env::current_exe().map_err(io_error(pid_file))?;
    let out = File::create(log).map_err(io_error(log))?;
    let err = out.try_clone().map_err(io_error(log))?;
    let mut child = Command::new(exe)
        .args([DEVICE_COMMAND, "--ifname", ifname])
        // The daemon alone speaks to systemd.
        .env_remove(crate::notify::NOTIFY_SOCKET)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io_error(pid_file))?;
    fs::write(pid_file, format!("{}\n", child.id())).map_err(io_error(pid_file))?;
    // Reap it whenever it exits, so it never lingers as a zombie.
    std::thread::spawn(move || child.wait());
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match uapi.status() {
            Ok(_) => {
                return Ok(DeviceProcess {
                    uapi,
                    adopted: false,
                })
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Stops the device whose pid is in `pid_file` (SIGTERM, then waits) and
/// removes the pid file and the socket of `ifname`. Nothing to stop is fine;
/// without a pid file nothing is touched (the interface is not vlnet's).
pub fn stop_device(ifname: &str, pid_file: &Path) -> Result<(), WgError> {
    let Ok(text) = fs::read_to_string(pid_file) else {
        return Ok(());
    };
    let pid = text.trim().parse::<libc::pid_t>().ok();
    if let Some(pid) = pid.filter(|&p| p > 0 && is_device(p)) {
        // SAFETY: kill has no memory preconditions; the pid was checked to
        // be a wireguard-device process just now.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = fs::remove_file(pid_file);
    let _ = fs::remove_file(Uapi::new(ifname).socket());
    Ok(())
}

/// Whether `pid` runs `… wireguard-device …` (a recycled pid is left alone).
fn is_device(pid: libc::pid_t) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|&b| b == 0)
            .any(|arg| arg == DEVICE_COMMAND.as_bytes())
    })
}
