//! `vlnet lab demo`: a vlnet node and a kernel-vxlan node (an unmodified
//! Proxmox host's VTEP) on one underlay, a VM behind each; ARP, ping and
//! iperf3 across the tunnel in both directions, the wire checked with tshark,
//! and a summary. Everything it builds is removed when it ends, also when it
//! is interrupted (SIGINT/SIGTERM: the current step finishes, then the
//! guards clean up).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::interrupt::Interrupt;
use super::probe::{self, Capture};
use super::scenario::{vm_ip, Scenario, Vtep, VNI};
use super::Datapath;

/// Seconds of iperf3 per direction.
const IPERF_SECS: u32 = 3;

/// Progress lines, and the check for an interruption between steps.
struct Progress {
    started: Instant,
    interrupt: Interrupt,
}

/// Steps the demo announces.
const STEPS: u32 = 5;

impl Progress {
    fn new() -> Result<Self> {
        Ok(Self {
            started: Instant::now(),
            interrupt: Interrupt::install()?,
        })
    }

    /// Announces step `n`, unless the demo was interrupted.
    fn step(&self, n: u32, what: &str) -> Result<()> {
        self.interrupt.check()?;
        println!(
            "[{n}/{STEPS}] {what}  ({:.1} s)",
            self.started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

/// Runs the demo; needs root.
pub fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "vlnet lab demo needs root (namespaces, BPF)"
    );
    let binary = std::env::current_exe().context("locating the vlnet binary")?;
    let progress = Progress::new()?;
    progress.step(
        1,
        "building the underlay: host A runs vlnet, host B the kernel vxlan driver",
    )?;
    let s = Scenario::build("demo", &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel], &binary)?;
    let (a, b) = (&s.sites[0], &s.sites[1]);

    progress.step(2, "ping across VXLAN in both directions (ARP first)")?;
    let port = a.host.switch_port().to_string();
    let capture = Capture::start(
        s.underlay.switch(),
        &port,
        "udp port 4789",
        &["ip.src", "ip.dst", "vxlan.vni"],
        Some(20),
        Duration::from_secs(4),
    )?;
    let ab = probe::ping(a.vm.ns(), vm_ip(1), 20, Duration::from_millis(10))?;
    let ba = probe::ping(b.vm.ns(), vm_ip(0), 20, Duration::from_millis(10))?;
    let wire = capture.finish()?;

    progress.step(3, "iperf3 TCP across VXLAN in both directions")?;
    let _server_b = probe::iperf3_server(b.vm.ns(), vm_ip(1), 5201)?;
    let _server_a = probe::iperf3_server(a.vm.ns(), vm_ip(0), 5202)?;
    let tput_ab = probe::iperf3_client(a.vm.ns(), vm_ip(1), IPERF_SECS, 1, 5201)?;
    let tput_ba = probe::iperf3_client(b.vm.ns(), vm_ip(0), IPERF_SECS, 1, 5202)?;

    progress.step(4, "reading vlnet's counters")?;
    let daemon = a.daemon.as_ref().context("site A runs vlnet")?;
    let status = daemon.ctl(&["status"])?;
    let peers = daemon.ctl(&["peers"])?;
    let fdb = daemon.ctl(&["fdb"])?;

    println!("\n== vlnet node (host A) ==\n{status}\n{peers}\n{fdb}");
    if std::env::var_os("VLNET_DEMO_LOG").is_some() {
        println!("{}", daemon.log());
    }
    let vnis = wire.column("vxlan.vni");
    println!("== summary ==");
    println!("{:<34} {:>12} {:>12}", "", "A (vlnet)→B", "B (kernel)→A");
    println!(
        "{:<34} {:>12} {:>12}",
        "ping received / sent",
        format!("{}/{}", ab.received, ab.sent),
        format!("{}/{}", ba.received, ba.sent)
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "ping RTT avg (ms)",
        format!("{:.3}", ab.rtt_avg_ms.unwrap_or(f64::NAN)),
        format!("{:.3}", ba.rtt_avg_ms.unwrap_or(f64::NAN))
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "iperf3 TCP (Gbit/s)",
        format!("{:.2}", tput_ab.bits_per_second / 1e9),
        format!("{:.2}", tput_ba.bits_per_second / 1e9)
    );
    println!(
        "wire: {} VXLAN frames captured on host A's underlay port, VNI {} on all: {}",
        vnis.len(),
        VNI,
        !vnis.is_empty() && vnis.iter().all(|v| *v == VNI.to_string())
    );
    progress.step(5, "cleaning up (namespaces, links, pinned programs)")?;
    drop(s);
    ensure!(
        ab.received == ab.sent && ba.received == ba.sent,
        "pings were lost across the tunnel"
    );
    println!(
        "demo finished in {:.1} s",
        progress.started.elapsed().as_secs_f64()
    );
    Ok(())
}
