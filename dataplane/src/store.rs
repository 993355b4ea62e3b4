//! What the daemon must remember across restarts, on disk under `state_dir`
//! (atomic writes: temp file, fsync, rename).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Reads a JSON state file; a missing file gives `T::default()`.
pub fn load_json<T: DeserializeOwned + Default>(path: &Path) -> io::Result<T> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Writes a JSON state file atomically (temp file, fsync, rename, fsync of
/// the directory), readable by root only: some files hold private keys.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(value).map_err(io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Persistent node state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Bridges vlnet created (and so removes on teardown); bridges that
    /// existed before vlnet are never deleted.
    pub created_bridges: BTreeSet<String>,
}

/// Path of `node`'s state file.
#[must_use]
pub fn state_path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.state.json"))
}

impl NodeState {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> io::Result<Self> {
        load_json(path)
    }

    /// Writes the state file atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        save_json(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_is_empty() {
        let dir = std::env::temp_dir().join(format!("vlnet-store-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = state_path(&dir, "n1");
        assert_eq!(NodeState::load(&path).unwrap(), NodeState::default());
        let state = NodeState {
            created_bridges: ["vnet100".to_string()].into(),
        };
        state.save(&path).unwrap();
        assert_eq!(NodeState::load(&path).unwrap(), state);
        fs::remove_dir_all(dir).unwrap();
    }
}
