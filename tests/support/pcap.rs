//! A tshark capture written to a file while a test runs, then read back
//! with display filters (`tshark -r FILE -Y FILTER -T fields -e …` or
//! `-V`): for protocols whose messages must be seen whole, such as BGP over
//! TCP, which tshark reassembles only when it reads the whole stream.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use vlnet_lab::{ChildGuard, NetNs};

/// What tshark logs once the interface is open and the filter set.
const CAPTURE_STARTED: &str = "Capture started";

/// How long [`PcapCapture::stop`] lets tshark read what the kernel holds.
const DRAIN: Duration = Duration::from_secs(1);

/// A running capture; [`PcapCapture::stop`] ends it.
pub struct PcapCapture {
    guard: ChildGuard,
    log: std::thread::JoinHandle<String>,
    pcap: Pcap,
}

impl PcapCapture {
    /// Starts `tshark -i iface -f filter -w FILE` in `ns`; returns once it
    /// captures (≤ 10 s).
    pub fn start(ns: &NetNs, iface: &str, filter: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vlt-pcap")
            .tempdir()
            .unwrap();
        let path = dir.path().join("capture.pcapng");
        let mut cmd = ns.cmd("tshark");
        cmd.args(["-n", "-i", iface, "-f", filter, "-w"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(&mut cmd).unwrap();
        let stderr = guard.child_mut().stderr.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut log = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(CAPTURE_STARTED) {
                    let _ = ready_tx.send(());
                }
                log.push_str(&line);
                log.push('\n');
            }
            log
        });
        assert!(
            ready_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "tshark did not start capturing on {iface} in {}",
            ns.name()
        );
        Self {
            guard,
            log,
            pcap: Pcap {
                _dir: dir,
                path,
                log: String::new(),
            },
        }
    }

    /// Stops tshark and returns the file. Waits [`DRAIN`] first: on SIGINT
    /// tshark writes what dumpcap has read and exits, but packets dumpcap has
    /// not read yet are lost (a capture stopped right after a packet came
    /// was seen to hold nothing).
    pub fn stop(mut self) -> Pcap {
        std::thread::sleep(DRAIN);
        let pid = i32::try_from(self.guard.id()).unwrap();
        // SAFETY: signals the capture this test started, by its pid.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let status = self.guard.wait_within(Duration::from_secs(10)).unwrap();
        assert!(status.is_some(), "tshark did not stop on SIGINT");
        self.pcap.log = self.log.join().unwrap_or_default();
        self.pcap
    }
}

/// A capture file, removed on drop.
pub struct Pcap {
    _dir: tempfile::TempDir,
    path: PathBuf,
    log: String,
}

impl Pcap {
    /// `tshark -r FILE -Y display_filter -T fields -e …`: one row per
    /// packet, one column per field (a field present several times in a
    /// packet is comma-joined).
    pub fn fields(&self, display_filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
        let mut args = vec!["-T", "fields"];
        for f in fields {
            args.extend(["-e", f]);
        }
        self.read(display_filter, &args)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }

    /// What tshark logged while capturing (for failure messages).
    pub fn log(&self) -> &str {
        &self.log
    }

    /// `tshark -r FILE -Y display_filter -V`: the packets' full dissection.
    pub fn verbose(&self, display_filter: &str) -> String {
        self.read(display_filter, &["-V"])
    }

    fn read(&self, display_filter: &str, args: &[&str]) -> String {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&self.path)
            .args(["-Y", display_filter])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tshark -r -Y {display_filter}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}
