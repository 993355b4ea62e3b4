//! What the daemon must remember across restarts, on disk under `state_dir`
//! (atomic writes: temp file, fsync, rename).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state file atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
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
