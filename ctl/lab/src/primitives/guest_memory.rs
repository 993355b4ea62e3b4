//! How much memory a QEMU guest has and what it does with it
//! ([`GuestMemory`]): by default [`DEFAULT_GUEST_MEM_MIB`] and idle, so
//! nearly all of it is zero pages, which a live migration sends as a flag
//! each; with a [`MemoryLoad`], half of it holds data from boot on and part
//! of that keeps changing, as a working guest's memory does, so a migration
//! must copy it all and then chase what changed while it copied.
//!
//! The load is busybox only (the guest has nothing else), [`LOAD_SCRIPT`]
//! in the guest's `/init`: it reads `vlnet.fill=` and `vlnet.dirty=` from
//! the kernel command line ([`GuestMemory::kernel_args`]), fills a tmpfs
//! file of `fill` MiB with `yes | dd`, says [`LOAD_READY`] on the console,
//! then every quarter second rewrites the next `dirty`/4 MiB of it in place
//! (`dd conv=notrunc`), wrapping around and alternating two contents so
//! every pass changes the pages it writes.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The guest's memory without `--guest-mem`, MiB (what the lab always used).
pub const DEFAULT_GUEST_MEM_MIB: u32 = 256;
/// The guest memory this 2-core, 24 GiB machine runs twice at once (source
/// and destination QEMU during a migration), MiB.
pub const GUEST_MEM_MIB: RangeInclusive<u32> = 64..=4096;
/// What the guest prints on its console once its load has filled its memory.
pub const LOAD_READY: &str = "vlnet-load-ready";

/// How long a migration may take before it counts as failed: 30 s, plus
/// 60 ms per MiB of guest memory (a loaded 4 GiB guest copies 2 GiB; at the
/// lab's slowest encrypted path, about 0.2 Gbit/s, that takes 90 s).
const MIGRATE_TIMEOUT_BASE: Duration = Duration::from_secs(30);
/// See [`MIGRATE_TIMEOUT_BASE`].
const MIGRATE_TIMEOUT_PER_MIB: Duration = Duration::from_millis(60);

/// The part of the guest's `/init` that runs the load, in the background,
/// when the kernel command line has `vlnet.fill=`; `$b` is busybox.
pub const LOAD_SCRIPT: &str = "
fill=$($b sed -n 's/.*vlnet.fill=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
dirty=$($b sed -n 's/.*vlnet.dirty=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
if [ -n \"$fill\" ]; then (
  $b mkdir -p /load
  $b mount -t tmpfs -o size=$((fill + dirty + 4))m load /load
  $b yes vlnet-a | $b dd of=/load/a bs=256k count=$dirty iflag=fullblock 2>/dev/null
  $b yes vlnet-b | $b dd of=/load/b bs=256k count=$dirty iflag=fullblock 2>/dev/null
  $b yes vlnet-b | $b dd of=/load/ws bs=1M count=$fill iflag=fullblock 2>/dev/null
  echo LOAD_READY
  off=0; src=a; blocks=$((fill * 4))
  while [ \"$dirty\" -gt 0 ]; do
    $b dd if=/load/$src of=/load/ws bs=256k count=$dirty seek=$off conv=notrunc 2>/dev/null
    off=$((off + dirty))
    if [ $((off + dirty)) -gt $blocks ]; then
      off=0
      if [ $src = a ]; then src=b; else src=a; fi
    fi
    $b sleep 0.25
  done
) & fi
";

/// A guest's memory: its size and its load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMemory {
    /// QEMU's `-m`, MiB.
    pub mib: u32,
    /// What keeps the memory busy; `None`: nothing (an idle guest).
    pub load: Option<MemoryLoad>,
}

/// A memory-dirtying workload in the guest (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLoad {
    /// MiB filled with data at boot (a tmpfs file).
    pub fill_mib: u32,
    /// MiB of it rewritten per second (in quarter-second steps).
    pub dirty_mib_per_s: u32,
}

impl Default for GuestMemory {
    /// [`DEFAULT_GUEST_MEM_MIB`], idle.
    fn default() -> Self {
        Self {
            mib: DEFAULT_GUEST_MEM_MIB,
            load: None,
        }
    }
}

impl GuestMemory {
    /// `mib` of memory, half of it filled and `dirty_mib_per_s` of that
    /// rewritten per second (at most the filled part).
    #[must_use]
    pub fn loaded(mib: u32, dirty_mib_per_s: u32) -> Self {
        let fill_mib = mib / 2;
        Self {
            mib,
            load: Some(MemoryLoad {
                fill_mib,
                dirty_mib_per_s: dirty_mib_per_s.min(fill_mib),
            }),
        }
    }

    /// What the kernel command line carries for [`LOAD_SCRIPT`]: nothing
    /// for an idle guest.
    #[must_use]
    pub fn kernel_args(&self) -> String {
        self.load.map_or_else(String::new, |l| {
            format!(
                " vlnet.fill={} vlnet.dirty={}",
                l.fill_mib, l.dirty_mib_per_s
            )
        })
    }

    /// How long a migration of this guest may take.
    #[must_use]
    pub fn migrate_timeout(&self) -> Duration {
        MIGRATE_TIMEOUT_BASE + MIGRATE_TIMEOUT_PER_MIB * self.mib
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_guest_has_no_load_arguments() {
        let idle = GuestMemory::default();
        assert_eq!(idle.mib, 256);
        assert_eq!(idle.kernel_args(), "");
    }

    #[test]
    fn a_loaded_guest_fills_half_and_dirties_at_most_that() {
        let m = GuestMemory::loaded(1024, 8);
        assert_eq!(m.kernel_args(), " vlnet.fill=512 vlnet.dirty=8");
        let m = GuestMemory::loaded(64, 100);
        assert_eq!(
            m.load,
            Some(MemoryLoad {
                fill_mib: 32,
                dirty_mib_per_s: 32
            })
        );
    }

    #[test]
    fn bigger_guests_get_longer_to_migrate() {
        let small = GuestMemory::default().migrate_timeout();
        let big = GuestMemory::loaded(4096, 8).migrate_timeout();
        assert!(
            small >= Duration::from_secs(30) && big > small * 5,
            "{small:?} {big:?}"
        );
    }
}
