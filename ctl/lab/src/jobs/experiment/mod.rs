//! `vlnet lab experiment …`: measurements repeated over several settings and
//! written to a directory as `results.json`, `results.csv`, `report.md` and
//! SVG plots.
//!
//! `vlnet lab experiment migration` live-migrates a real QEMU guest (TCG,
//! busybox) from host A to host B `--runs` times per setting while a user
//! at B's site watches it: QEMU's migration time and downtime, the user's
//! pings lost across the move and the longest gap in them, the user's RTT
//! and TCP throughput to the guest before and after. The guest is idle and
//! 256 MiB, or as big as `--guest-mem` with a memory load dirtying
//! `--dirty` MiB/s ([`GuestMemory`]). Settings and their topologies: see
//! [`setting::Setting`] and [`testbed`]. Progress goes to stderr. Everything
//! it builds is removed when it ends, fails or is interrupted (SIGINT or
//! SIGTERM are checked between steps; the lab's guards clean up).
//!
//! # Layout
//! - [`setting`]: the settings and `--over` (pure).
//! - [`testbed`]: building each setting's hosts and user.
//! - [`measure`]: one run's measurements (the guest: [`crate::beds::guest`]).
//! - [`results`]: run results, summaries, JSON and CSV (pure).
//! - [`report`]: `report.md` (pure).
//! - [`plots`]: the SVG plots.

pub mod measure;
pub mod plots;
pub mod report;
pub mod results;
pub mod setting;
pub mod testbed;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};

use self::measure::measure_run;
use self::results::{Parameters, Results, RunResult, PING_INTERVAL_MS};
use self::setting::{Over, Setting};
use self::testbed::Testbed;
use crate::beds::guest::{Guest, USER_TCP_TIME};
use crate::cli::MigrationArgs;
use crate::primitives::guest_memory::GuestMemory;
use crate::primitives::interrupt::Interrupt;
use crate::primitives::qemu::{GuestImage, GUEST_DIR};
use crate::TempDir;

/// `./vlnet-experiment-<unix seconds>`.
#[must_use]
pub fn default_out_dir() -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from(format!("vlnet-experiment-{secs}"))
}

/// The guest's memory `args` ask for: `--guest-mem` loaded with `--dirty`,
/// or the default, idle.
fn guest_memory(args: &MigrationArgs) -> GuestMemory {
    args.guest_mem.map_or_else(GuestMemory::default, |mib| {
        GuestMemory::loaded(mib, args.dirty)
    })
}

/// Progress lines on stderr, timed from the start.
struct Progress(Instant);

impl Progress {
    fn say(&self, what: &str) {
        eprintln!("[{:7.1} s] {what}", self.0.elapsed().as_secs_f64());
    }
}

/// `runs` migrations over `setting`; the test-bed is removed before it
/// returns.
fn run_setting(
    setting: Setting,
    args: &MigrationArgs,
    image: &GuestImage,
    vlnet: &Path,
    interrupt: &Interrupt,
    progress: &Progress,
) -> Result<Vec<RunResult>> {
    progress.say(&format!("{}: building the test-bed", setting.name()));
    let bed = Testbed::build(setting, args.wan_delay, vlnet)?;
    let dir = TempDir::new(&format!("{}-qemu", setting.tag()))?;
    interrupt.check()?;
    progress.say(&format!("{}: booting the guest on host A", setting.name()));
    let mut guest = Guest::boot(&bed, image, guest_memory(args), dir.path(), interrupt)?;
    let wan_delay = if setting.has_wan() {
        args.wan_delay
    } else {
        Duration::ZERO
    };
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        interrupt.check()?;
        if run > 1 {
            progress.say(&format!("{}: guest back to host A", setting.name()));
            guest.return_home(interrupt)?;
        }
        progress.say(&format!(
            "{}: run {run}/{}: measuring, migrating A → B, measuring",
            setting.name(),
            args.runs
        ));
        let r = measure_run(&mut guest, setting, run, wan_delay)?;
        progress.say(&format!(
            "{}: run {run}: migration {:.0} ms ({:.0} MiB), downtime {:.1} ms, {} of {} pings lost \
             (outage {:.0} ms), RTT {} → {} ms",
            setting.name(),
            r.migration_ms,
            r.ram_mib,
            r.downtime_ms,
            r.pings_lost,
            r.pings_sent,
            r.outage_ms,
            r.rtt_before_ms.map_or_else(|| "–".into(), |v| format!("{v:.2}")),
            r.rtt_after_ms.map_or_else(|| "–".into(), |v| format!("{v:.2}")),
        ));
        runs.push(r);
    }
    progress.say(&format!("{}: removing the test-bed", setting.name()));
    Ok(runs)
}

/// Runs `vlnet lab experiment migration`; needs root, QEMU and the guest
/// kernel (`tests/install-deps.sh`).
pub fn run_migration(args: &MigrationArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "vlnet lab experiment needs root (namespaces, BPF, taps)"
    );
    let interrupt = Interrupt::install()?;
    let progress = Progress(Instant::now());
    let vlnet = std::env::current_exe().context("locating the vlnet binary")?;
    let settings = Over::expand(&args.over);
    let out = args.out.clone().unwrap_or_else(default_out_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let image = GuestImage::build(Path::new(GUEST_DIR))?;
    let mut runs = Vec::new();
    for &setting in &settings {
        runs.extend(run_setting(
            setting, args, &image, &vlnet, &interrupt, &progress,
        )?);
    }
    let results = Results::new(
        Parameters {
            settings,
            runs: args.runs,
            wan_delay_ms: args.wan_delay.as_secs_f64() * 1e3,
            throughput_secs: USER_TCP_TIME.as_secs_f64(),
            ping_interval_ms: PING_INTERVAL_MS,
            guest_memory: guest_memory(args),
        },
        runs,
    );
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("results.json", &results.to_json()?)?;
    write("results.csv", &results.to_csv())?;
    let plots = plots::write(&results, &out)?;
    write("report.md", &report::render(&results, &plots))?;
    progress.say(&format!("results in {}", out.display()));
    Ok(())
}
