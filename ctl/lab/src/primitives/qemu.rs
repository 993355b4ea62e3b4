//! Real QEMU guests for live-migration experiments: a Debian cloud kernel
//! with a busybox initramfs (built here, in memory, as a `newc` cpio) that
//! loads virtio-net, configures one address and serves a TCP sink on
//! [`GUEST_SINK_PORT`]; QEMU under TCG with a tap in a host's bridge; live
//! migration between two hosts' QEMUs over a Unix socket or TCP
//! ([`MigrationUri`]), driven through QMP. Its memory and what runs in it:
//! [`GuestMemory`].
//!
//! `tests/install-deps.sh` puts the kernel and modules in [`GUEST_DIR`]
//! (QEMU and busybox come from Debian's `qemu-system-x86` and
//! `busybox-static`).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::primitives::guest_memory::{GuestMemory, LOAD_READY, LOAD_SCRIPT};
use crate::primitives::netns::{ChildGuard, LabError};
use crate::primitives::probe::wait_listening;
use crate::primitives::tempdir::TempDir;
use crate::primitives::topology::Host;

/// Where the guest kernel (`vmlinuz`) and its modules (`*.ko`) are.
pub const GUEST_DIR: &str = "/var/cache/vlnet/guest";
/// The static busybox the initramfs runs.
pub const BUSYBOX: &str = "/bin/busybox";
/// Modules that make virtio-net work, in load order.
pub const GUEST_MODULES: [&str; 8] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];
/// The guest's TCP sink: busybox `nc` reads and discards every connection
/// to this port (a throughput probe's far end; the guest has no iperf3).
pub const GUEST_SINK_PORT: u16 = 5001;
/// The limit on a loaded guest's migration stream (`max-bandwidth`, bytes/s):
/// none that this machine reaches, so the network is the limit, not QEMU's
/// default of 128 MiB/s.
const LOADED_MAX_BANDWIDTH: u64 = 100 << 30;
/// Pages per GiB QEMU samples to estimate a guest's dirty rate (its most).
const DIRTY_SAMPLE_PAGES: u32 = 4096;
/// How long QEMU may take to create its tap and QMP socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The guest's `/init`: load the modules, set the address given on the
/// kernel command line (`vlnet.ip=A.B.C.D/N`), serve the TCP sink on
/// `SINK_PORT` (in the background, which needs `/dev/null`), start the
/// memory load if the command line asks for one (`LOAD`), then idle.
const INIT: &str = "#!/bin/busybox sh
b=/bin/busybox
/bin/busybox mkdir -p /proc /sys
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in MODULES; do /bin/busybox insmod /lib/$m.ko; done
ip=$(/bin/busybox sed -n 's/.*vlnet.ip=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
/bin/busybox ip link set lo up
/bin/busybox ip link set eth0 up
/bin/busybox ip addr add $ip dev eth0
/bin/busybox nc -ll -p SINK_PORT -e /bin/busybox dd of=/dev/null bs=64k &
echo vlnet-guest-ready
LOAD
while true; do /bin/busybox sleep 3600; done
";

/// A kernel and an initramfs, ready to boot.
pub struct GuestImage {
    kernel: PathBuf,
    initramfs: PathBuf,
    _dir: TempDir,
}

/// Appends one `newc` cpio entry.
fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 1, 0, data.len(), 0, 0, 0, 0, 0
    );
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A `newc` cpio archive of `(name, mode, data)` entries (directories have
/// mode `0o040755` and no data), with its trailer.
#[must_use]
pub fn cpio_newc(entries: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, (name, mode, data)) in (1u32..).zip(entries) {
        cpio_entry(&mut out, ino, name, *mode, data);
    }
    cpio_entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

fn read(path: &Path) -> Result<Vec<u8>, LabError> {
    std::fs::read(path).map_err(|e| {
        LabError::Invalid(format!(
            "{}: {e} (run tests/install-deps.sh to fetch the guest kernel)",
            path.display()
        ))
    })
}

impl GuestImage {
    /// Builds the initramfs from [`BUSYBOX`] and the modules in `guest_dir`.
    pub fn build(guest_dir: &Path) -> Result<Self, LabError> {
        if !guest_dir.join("vmlinuz").is_file() {
            return Err(LabError::Invalid(format!(
                "no guest kernel in {}: run `bash tests/install-deps.sh` as root \
                 (it installs QEMU and puts a kernel and its virtio modules there)",
                guest_dir.display()
            )));
        }
        let dir = TempDir::new("vlt-guest")?;
        let modules = GUEST_MODULES.join(" ");
        let mut entries = vec![
            ("bin", 0o040_755, Vec::new()),
            ("lib", 0o040_755, Vec::new()),
            ("dev", 0o040_755, Vec::new()),
            ("bin/busybox", 0o100_755, read(Path::new(BUSYBOX))?),
            (
                "init",
                0o100_755,
                INIT.replace("MODULES", &modules)
                    .replace("SINK_PORT", &GUEST_SINK_PORT.to_string())
                    .replace("LOAD", &LOAD_SCRIPT.replace("LOAD_READY", LOAD_READY))
                    .into_bytes(),
            ),
        ];
        let names: Vec<String> = GUEST_MODULES
            .iter()
            .map(|m| format!("lib/{m}.ko"))
            .collect();
        for (module, name) in GUEST_MODULES.iter().zip(&names) {
            entries.push((
                name,
                0o100_644,
                read(&guest_dir.join(format!("{module}.ko")))?,
            ));
        }
        let initramfs = dir.path().join("initramfs.cpio");
        std::fs::write(&initramfs, cpio_newc(&entries))
            .map_err(|e| LabError::io("writing the initramfs", e))?;
        Ok(Self {
            kernel: guest_dir.join("vmlinuz"),
            initramfs,
            _dir: dir,
        })
    }
}

/// A QEMU guest with a tap in a host's bridge; killed on drop.
pub struct Qemu {
    child: ChildGuard,
    qmp: PathBuf,
    console: PathBuf,
    migrate_timeout: Duration,
}

/// What a live migration took, as QEMU reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MigrationReport {
    /// From `migrate` to completion, ms.
    pub total_ms: f64,
    /// The guest was stopped this long, ms.
    pub downtime_ms: f64,
    /// Guest memory the stream carried (`ram.transferred`), MiB.
    pub ram_mib: f64,
}

/// Where a migration stream goes: a destination QEMU's `-incoming` and the
/// source's `migrate` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationUri {
    /// A Unix socket (both QEMUs see the same file system, whatever their
    /// network namespaces).
    Unix(PathBuf),
    /// TCP to this address: the stream crosses the network between the
    /// hosts' namespaces.
    Tcp(SocketAddrV4),
}

impl MigrationUri {
    /// QEMU's form: `unix:PATH` or `tcp:IP:PORT`.
    #[must_use]
    pub fn uri(&self) -> String {
        match self {
            Self::Unix(path) => format!("unix:{}", path.to_string_lossy()),
            Self::Tcp(addr) => format!("tcp:{addr}"),
        }
    }
}

/// What [`Qemu::start`] needs.
pub struct GuestSpec<'a> {
    /// The image.
    pub image: &'a GuestImage,
    /// A name unique within `dir` (files) and ≤ 11 characters (the tap).
    pub name: &'a str,
    /// The guest's MAC.
    pub mac: &'a str,
    /// The guest's address and prefix.
    pub ip: (Ipv4Addr, u8),
    /// Where QMP and console files go.
    pub dir: &'a Path,
    /// Wait for an incoming migration there instead of booting.
    pub incoming: Option<&'a MigrationUri>,
    /// Its memory, and the load in it.
    pub memory: GuestMemory,
}

/// QEMU's command line for `spec`, without the program: `console`, `qmp`
/// and `tap` are the console file, the QMP socket and the tap's name.
fn qemu_args(spec: &GuestSpec<'_>, console: &Path, qmp: &Path, tap: &str) -> Vec<String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let (ip, prefix) = spec.ip;
    let mut args = vec![
        "-nodefaults".to_owned(),
        "-m".into(),
        spec.memory.mib.to_string(),
        "-smp".into(),
        "1".into(),
        "-display".into(),
        "none".into(),
        "-kernel".into(),
        path(&spec.image.kernel),
        "-initrd".into(),
        path(&spec.image.initramfs),
        "-append".into(),
        format!(
            "console=ttyS0 panic=-1 quiet vlnet.ip={ip}/{prefix}{}",
            spec.memory.kernel_args()
        ),
        "-serial".into(),
        format!("file:{}", path(console)),
        "-netdev".into(),
        format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
        "-device".into(),
        format!("virtio-net-pci,netdev=n0,mac={},romfile=", spec.mac),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", path(qmp)),
    ];
    if let Some(incoming) = spec.incoming {
        args.push("-incoming".into());
        args.push(incoming.uri());
    }
    args
}

impl Qemu {
    /// Starts QEMU in `host`'s namespace with a tap `tap<name>` in `bridge`;
    /// with a TCP `incoming`, returns once QEMU listens there.
    pub fn start(host: &Host, bridge: &str, spec: &GuestSpec<'_>) -> Result<Self, LabError> {
        let tap = format!("tap{}", spec.name);
        let qmp = spec.dir.join(format!("{}.qmp", spec.name));
        let console = spec.dir.join(format!("{}.console", spec.name));
        let args = qemu_args(spec, &console, &qmp, &tap);
        let args: Vec<&str> = std::iter::once("qemu-system-x86_64")
            .chain(args.iter().map(String::as_str))
            .collect();
        let child = host.ns().spawn(&args)?;
        let mut qemu = Self {
            child,
            qmp,
            console,
            migrate_timeout: spec.memory.migrate_timeout(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !(qemu.qmp.exists() && host.ns().run(&["ip", "link", "show", &tap]).is_ok()) {
            if Instant::now() > deadline {
                return Err(LabError::Invalid(format!(
                    "QEMU did not create {tap} and its QMP socket within {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        host.ns()
            .run(&["ip", "link", "set", &tap, "master", bridge, "up"])?;
        if let Some(MigrationUri::Tcp(addr)) = spec.incoming {
            wait_listening(host.ns(), addr.port(), &mut qemu.child)?;
        }
        Ok(qemu)
    }

    /// What the guest printed on its serial console so far.
    #[must_use]
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Lifts QEMU's default limit on the migration stream (128 MiB/s) so
    /// that the network is the limit.
    pub fn lift_migration_limit(&self) -> Result<(), LabError> {
        Qmp::connect(&self.qmp)?.execute(
            "migrate-set-parameters",
            &json!({ "max-bandwidth": LOADED_MAX_BANDWIDTH }),
        )?;
        Ok(())
    }

    /// QEMU's estimate of how fast the guest changes its memory over
    /// `secs` seconds (`calc-dirty-rate`, sampling page contents), MiB/s.
    pub fn dirty_rate(&self, secs: u32) -> Result<f64, LabError> {
        let mut qmp = Qmp::connect(&self.qmp)?;
        qmp.execute(
            "calc-dirty-rate",
            &json!({ "calc-time": secs, "sample-pages": DIRTY_SAMPLE_PAGES }),
        )?;
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs) + 10);
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let info = qmp.execute("query-dirty-rate", &json!({}))?;
            if info["status"] == "measured" {
                return info["dirty-rate"].as_f64().ok_or_else(|| LabError::Parse {
                    what: "query-dirty-rate".into(),
                    detail: info.to_string(),
                });
            }
            if Instant::now() > deadline {
                return Err(LabError::Invalid(format!("dirty rate unmeasured: {info}")));
            }
        }
    }

    /// Live-migrates the guest to the QEMU listening on `to` (started with
    /// `incoming`) and waits for completion.
    pub fn migrate(&self, to: &MigrationUri) -> Result<MigrationReport, LabError> {
        let mut qmp = Qmp::connect(&self.qmp)?;
        qmp.execute("migrate", &json!({ "uri": to.uri() }))?;
        let deadline = Instant::now() + self.migrate_timeout;
        loop {
            let info = qmp.execute("query-migrate", &json!({}))?;
            let total_ms = info["total-time"].as_f64().unwrap_or(0.0);
            match info["status"].as_str() {
                // QEMU says "completed" a moment before it fills in the
                // times (total-time 0): ask again until they are there.
                Some("completed") if total_ms > 0.0 => {
                    return Ok(MigrationReport {
                        total_ms,
                        downtime_ms: info["downtime"].as_f64().unwrap_or(0.0),
                        ram_mib: mib(info["ram"]["transferred"].as_u64().unwrap_or(0)),
                    })
                }
                Some("failed" | "cancelled") => {
                    return Err(LabError::Invalid(format!("migration failed: {info}")))
                }
                _ if Instant::now() > deadline => {
                    return Err(LabError::Invalid(format!("migration unfinished: {info}")))
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Stops QEMU.
    pub fn stop(mut self) {
        self.child.kill();
    }
}

/// `bytes` in MiB.
#[allow(clippy::cast_precision_loss, reason = "a size in MiB, not exact bytes")]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// A QMP session (JSON lines over a Unix socket).
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn connect(path: &Path) -> Result<Self, LabError> {
        let stream = UnixStream::connect(path).map_err(|e| LabError::io("connecting to QMP", e))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| LabError::io("QMP timeout", e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| LabError::io("QMP socket", e))?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
        };
        qmp.read()?; // the greeting
        qmp.execute("qmp_capabilities", &json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value, LabError> {
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| LabError::io("reading QMP", e))?;
        serde_json::from_str(&line).map_err(|e| LabError::Parse {
            what: "QMP".into(),
            detail: format!("{e}: {line:?}"),
        })
    }

    /// Runs a command and returns its `return` value (events are skipped).
    fn execute(&mut self, command: &str, arguments: &Value) -> Result<Value, LabError> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}").map_err(|e| LabError::io("writing QMP", e))?;
        loop {
            let answer = self.read()?;
            if let Some(value) = answer.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = answer.get("error") {
                return Err(LabError::Invalid(format!("QMP {command}: {error}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_uris() {
        let unix = MigrationUri::Unix(PathBuf::from("/tmp/m.sock"));
        assert_eq!(unix.uri(), "unix:/tmp/m.sock");
        let tcp = MigrationUri::Tcp(SocketAddrV4::new(Ipv4Addr::new(198, 19, 0, 2), 4444));
        assert_eq!(tcp.uri(), "tcp:198.19.0.2:4444");
    }

    #[test]
    fn the_guest_memory_reaches_qemu_and_the_load_its_kernel() {
        let image = GuestImage {
            kernel: PathBuf::from("/k"),
            initramfs: PathBuf::from("/i"),
            _dir: TempDir::new("vlt-qa").unwrap(),
        };
        let spec = |memory| GuestSpec {
            image: &image,
            name: "g0",
            mac: "52:54:00:00:00:64",
            ip: (Ipv4Addr::new(192, 0, 2, 100), 24),
            dir: Path::new("/d"),
            incoming: None,
            memory,
        };
        let args = |memory| {
            let (console, qmp) = (Path::new("/d/c"), Path::new("/d/q"));
            qemu_args(&spec(memory), console, qmp, "tapg0").join(" ")
        };
        let idle = args(GuestMemory::default());
        assert!(idle.contains("-m 256 "), "{idle}");
        assert!(idle.contains("vlnet.ip=192.0.2.100/24 -serial"), "{idle}");
        let loaded = args(GuestMemory::loaded(1024, 8));
        assert!(loaded.contains("-m 1024 "), "{loaded}");
        assert!(
            loaded.contains("vlnet.ip=192.0.2.100/24 vlnet.fill=512 vlnet.dirty=8 -serial"),
            "{loaded}"
        );
    }

    #[test]
    fn the_init_script_runs_the_load_and_says_when_memory_is_full() {
        let init = INIT.replace("LOAD", &LOAD_SCRIPT.replace("LOAD_READY", LOAD_READY));
        assert!(init.contains("vlnet.fill="), "{init}");
        assert!(init.contains(&format!("echo {LOAD_READY}\n")), "{init}");
        assert!(!init.contains("LOAD_READY"), "{init}");
        assert!(init.starts_with("#!/bin/busybox sh\nb=/bin/busybox\n"));
    }

    #[test]
    fn a_missing_guest_kernel_says_how_to_get_it() {
        let err = GuestImage::build(Path::new("/nonexistent/vlnet-guest"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/vlnet-guest"), "{err}");
        assert!(err.contains("tests/install-deps.sh"), "{err}");
    }

    #[test]
    fn newc_entries_are_aligned_and_terminated() {
        let archive = cpio_newc(&[("init", 0o100_755, b"#!/bin/sh\n".to_vec())]);
        assert!(archive.starts_with(b"070701"));
        assert_eq!(archive.len() % 4, 0);
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("init\0"));
        assert!(text.contains("TRAILER!!!"));
        // Header: 6 + 13 fields of 8 hex digits; namesize of "init" is 5.
        assert_eq!(&archive[94..102], b"00000005");
        assert_eq!(&archive[54..62], b"0000000a", "file size");
    }
}
