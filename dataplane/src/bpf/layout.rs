//! Whether the maps a previous daemon pinned fit this build's programs.
//!
//! An upgrade keeps the pinned maps (their FDB, counters, flows) and swaps
//! the programs around them; that is only sound if the new programs read
//! the maps as the old ones wrote them. Two checks, before anything is
//! loaded: the layout version the pins were made with (a `layout-<N>`
//! directory beside them) must be this build's `VLNET_MAP_LAYOUT` from the
//! ABI header, and every pinned map must have the type and sizes the object
//! declares (a forgotten version bump is still caught). A mismatch is
//! refused with what to do; nothing is migrated.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aya::maps::MapData;
use vlnet_ebpf::abi::VLNET_MAP_LAYOUT;

use super::BpfError;

/// Prefix of the directory that records the pins' layout.
const MARKER: &str = "layout-";

/// The layout the pins in `pin_dir` were made with: `Ok(None)` if there are
/// no pinned maps (a fresh node); `Some(0)` for maps pinned before layouts
/// were recorded.
fn pinned_layout(pin_dir: &Path) -> io::Result<Option<u32>> {
    let maps = pin_dir.join("maps");
    let any_map = match fs::read_dir(&maps) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    if !any_map {
        return Ok(None);
    }
    for entry in fs::read_dir(pin_dir)? {
        let name = entry?.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_prefix(MARKER)) {
            return Ok(Some(n.parse().unwrap_or(0)));
        }
    }
    Ok(Some(0))
}

/// Refuses pins that this build cannot adopt (see the module docs).
pub fn check(node: &str, pin_dir: &Path, object: &[u8]) -> Result<(), BpfError> {
    let io_err = |path: PathBuf| move |source| BpfError::Bpffs { path, source };
    let Some(pinned) = pinned_layout(pin_dir).map_err(io_err(pin_dir.to_path_buf()))? else {
        return Ok(());
    };
    if pinned != VLNET_MAP_LAYOUT {
        return Err(BpfError::LayoutChanged {
            node: node.to_owned(),
            pinned,
            built: VLNET_MAP_LAYOUT,
        });
    }
    let object = aya_obj::Object::parse(object)
        .map_err(|e| BpfError::Layout(format!("reading the object's maps: {e}")))?;
    for (name, map) in &object.maps {
        let path = pin_dir.join("maps").join(name);
        if !path.exists() {
            continue; // new in this build: created and pinned on load
        }
        let info = MapData::from_pin(&path)
            .and_then(|m| m.info())
            .map_err(|e| BpfError::Layout(format!("reading pinned map {name}: {e}")))?;
        let pinned = (
            info.map_type().map_or(u32::MAX, |t| t as u32),
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        );
        let built = (
            map.map_type(),
            map.key_size(),
            loaded_value_size(map.map_type(), map.value_size()),
            map.max_entries(),
        );
        // A zero size in the object is filled in on load (per-CPU arrays
        // of events, say): nothing to compare.
        let same = pinned.0 == built.0
            && pinned.1 == built.1
            && pinned.2 == built.2
            && (built.3 == 0 || pinned.3 == built.3);
        if !same {
            return Err(BpfError::MapChanged {
                node: node.to_owned(),
                map: name.clone(),
                pinned: describe(pinned),
                built: describe(built),
            });
        }
    }
    Ok(())
}

/// The value size a map of `map_type` declared with `value_size` gets when
/// aya creates it: device maps are widened from an ifindex to an ifindex
/// and a program (`struct bpf_devmap_val`).
fn loaded_value_size(map_type: u32, value_size: u32) -> u32 {
    const DEVMAP: u32 = 14;
    const DEVMAP_HASH: u32 = 25;
    if matches!(map_type, DEVMAP | DEVMAP_HASH) && value_size == 4 {
        8
    } else {
        value_size
    }
}

fn describe((kind, key, value, entries): (u32, u32, u32, u32)) -> String {
    format!("type {kind}, key {key} B, value {value} B, {entries} entries")
}

/// Records that the pins in `pin_dir` have this build's layout.
pub fn record(pin_dir: &Path) -> io::Result<()> {
    let ours = format!("{MARKER}{VLNET_MAP_LAYOUT}");
    for entry in fs::read_dir(pin_dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(MARKER) && name != ours {
            fs::remove_dir(pin_dir.join(name.as_ref()))?;
        }
    }
    match fs::create_dir(pin_dir.join(ours)) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_recorded_and_unrecorded_pins() {
        let dir = std::env::temp_dir().join(format!("vlt-layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("maps")).unwrap();
        assert_eq!(pinned_layout(&dir).unwrap(), None, "no maps yet");
        fs::write(dir.join("maps/vlnet_fdb"), b"").unwrap();
        assert_eq!(
            pinned_layout(&dir).unwrap(),
            Some(0),
            "maps without a record"
        );
        record(&dir).unwrap();
        assert_eq!(pinned_layout(&dir).unwrap(), Some(VLNET_MAP_LAYOUT));
        fs::create_dir(dir.join("layout-0")).unwrap();
        record(&dir).unwrap();
        assert!(!dir.join("layout-0").exists(), "one record only");
        fs::remove_dir_all(&dir).unwrap();
    }
}
