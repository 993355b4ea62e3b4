//! FDB rules that need no kernel: ageing of learned entries and turning map
//! entries into records.

use std::net::Ipv4Addr;

use vlnet_ebpf::abi::{vlnet_fdb_entry, vlnet_fdb_key, VLNET_FDB_CONTROL, VLNET_FDB_STATIC};

use crate::mac::MacAddr;
use crate::model::{FdbKind, FdbRecord};

/// Nanoseconds per second.
const NS_PER_SEC: u64 = 1_000_000_000;

/// `CLOCK_MONOTONIC` in nanoseconds: the clock `bpf_ktime_get_ns()` reads.
#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or_default() * NS_PER_SEC
        + u64::try_from(ts.tv_nsec).unwrap_or_default()
}

/// Whether an entry is static (config / control plane).
#[must_use]
pub fn is_static(entry: &vlnet_fdb_entry) -> bool {
    entry.flags & VLNET_FDB_STATIC != 0
}

/// How an entry got there, from its flags.
#[must_use]
pub fn kind(entry: &vlnet_fdb_entry) -> FdbKind {
    if is_static(entry) {
        FdbKind::Static
    } else if entry.flags & VLNET_FDB_CONTROL != 0 {
        FdbKind::Control
    } else {
        FdbKind::Learned
    }
}

/// Keys of learned entries not confirmed for more than `ageing_secs` at `now_ns`.
#[must_use]
pub fn expired(
    entries: &[(vlnet_fdb_key, vlnet_fdb_entry)],
    now_ns: u64,
    ageing_secs: u64,
) -> Vec<vlnet_fdb_key> {
    let limit = ageing_secs.saturating_mul(NS_PER_SEC);
    entries
        .iter()
        .filter(|(_, e)| kind(e) == FdbKind::Learned && now_ns.saturating_sub(e.updated_ns) > limit)
        .map(|(k, _)| *k)
        .collect()
}

/// Records for `vlnet ctl fdb`, optionally one VNI's, sorted by VNI and MAC.
#[must_use]
pub fn records(
    entries: &[(vlnet_fdb_key, vlnet_fdb_entry)],
    vni: Option<u32>,
    now_ns: u64,
) -> Vec<FdbRecord> {
    let mut out: Vec<FdbRecord> = entries
        .iter()
        .filter(|(k, _)| vni.is_none_or(|v| v == k.vni))
        .map(|(k, e)| FdbRecord {
            vni: k.vni,
            mac: MacAddr(k.mac).to_string(),
            vtep: Ipv4Addr::from(u32::from_be(e.vtep_be)),
            kind: kind(e),
            age_secs: now_ns.saturating_sub(e.updated_ns) / NS_PER_SEC,
        })
        .collect();
    out.sort_by(|a, b| (a.vni, &a.mac).cmp(&(b.vni, &b.mac)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlnet_ebpf::abi::VLNET_FDB_LEARNED;

    fn entry(flags: u32, updated_ns: u64) -> vlnet_fdb_entry {
        vlnet_fdb_entry {
            vtep_be: u32::from(Ipv4Addr::new(198, 18, 0, 2)).to_be(),
            flags,
            updated_ns,
        }
    }

    fn key(vni: u32, last: u8) -> vlnet_fdb_key {
        vlnet_fdb_key {
            vni,
            mac: [2, 0, 0, 0, 0, last],
            pad: [0; 2],
        }
    }

    #[test]
    fn only_old_learned_entries_expire() {
        let now = 1_000 * NS_PER_SEC;
        let entries = [
            (
                key(100, 1),
                entry(VLNET_FDB_LEARNED, now - 301 * NS_PER_SEC),
            ),
            (
                key(100, 2),
                entry(VLNET_FDB_LEARNED, now - 299 * NS_PER_SEC),
            ),
            (key(100, 3), entry(VLNET_FDB_STATIC, 0)),
            (key(100, 4), entry(VLNET_FDB_CONTROL, 0)),
        ];
        assert_eq!(expired(&entries, now, 300), vec![key(100, 1)]);
    }

    #[test]
    fn records_filter_sort_and_format() {
        let now = 10 * NS_PER_SEC;
        let entries = [
            (key(200, 1), entry(VLNET_FDB_LEARNED, 4 * NS_PER_SEC)),
            (key(100, 2), entry(VLNET_FDB_STATIC, 0)),
            (key(100, 1), entry(VLNET_FDB_LEARNED, 9 * NS_PER_SEC)),
            (key(100, 3), entry(VLNET_FDB_CONTROL, 0)),
        ];
        let all = records(&entries, None, now);
        assert_eq!(
            all.iter().map(|r| r.vni).collect::<Vec<_>>(),
            [100, 100, 100, 200]
        );
        assert_eq!(all[0].mac, "02:00:00:00:00:01");
        assert_eq!(all[0].age_secs, 1);
        assert_eq!(all[1].kind, FdbKind::Static);
        assert_eq!(all[2].kind, FdbKind::Control);
        assert_eq!(all[3].vtep, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(records(&entries, Some(200), now).len(), 1);
    }
}
