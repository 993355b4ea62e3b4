//! What the daemon must remember across restarts, on disk under `state_dir`:
//! a directory only root may enter ([`STATE_DIR_MODE`]), files only root may
//! read ([`STATE_FILE_MODE`]), each replaced atomically (fresh temp file,
//! fsync, rename, fsync of the directory).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Mode of the state directory: it holds private keys.
pub const STATE_DIR_MODE: u32 = 0o700;
/// Mode of every state file.
pub const STATE_FILE_MODE: u32 = 0o600;

/// Creates the state directory (and missing parents) with
/// [`STATE_DIR_MODE`], or tightens an existing one that lets group or others
/// in, saying so in the log.
pub fn ensure_state_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                fs::set_permissions(dir, Permissions::from_mode(STATE_DIR_MODE))?;
                tracing::warn!(
                    dir = %dir.display(),
                    was = format!("{mode:04o}"),
                    now = format!("{STATE_DIR_MODE:04o}"),
                    "the state directory let other users in; tightened it"
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(STATE_DIR_MODE)
            .create(dir),
        Err(e) => Err(e),
    }
}

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

/// The temporary file `save_json` writes before renaming it over `path`.
#[must_use]
pub fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("json.tmp")
}

/// Writes a JSON state file atomically, mode [`STATE_FILE_MODE`] (some files
/// hold private keys; a umask can only take bits away): the temporary file
/// is created afresh with that mode (a leftover one is removed first, so
/// neither its mode nor a descriptor someone opened on it earlier
/// survives), written, fsynced and renamed over `path`, and the directory
/// fsynced. One writer per file: a concurrent save fails (the temporary file
/// exists) rather than mixing contents.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let tmp = temp_path(path);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(STATE_FILE_MODE)
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
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn round_trips_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(dir.path(), "n1");
        assert_eq!(NodeState::load(&path).unwrap(), NodeState::default());
        let state = NodeState {
            created_bridges: ["vnet100".to_string()].into(),
        };
        state.save(&path).unwrap();
        assert_eq!(NodeState::load(&path).unwrap(), state);
    }

    #[test]
    fn a_leftover_temp_file_keeps_neither_its_mode_nor_its_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let tmp = temp_path(&path);
        fs::write(&tmp, b"stale").unwrap();
        fs::set_permissions(&tmp, Permissions::from_mode(0o666)).unwrap();
        // Someone opened the leftover while it was world-readable.
        let mut early = File::open(&tmp).unwrap();
        let leftover_inode = fs::metadata(&tmp).unwrap().ino();

        save_json(&path, &"secret").unwrap();
        assert_eq!(mode(&path), STATE_FILE_MODE);
        assert_ne!(fs::metadata(&path).unwrap().ino(), leftover_inode);
        let mut seen = String::new();
        std::io::Read::read_to_string(&mut early, &mut seen).unwrap();
        assert_eq!(seen, "stale", "the early reader sees nothing new");
        assert_eq!(load_json::<String>(&path).unwrap(), "secret");
        assert!(!tmp.exists(), "temporary file left behind");
    }

    #[test]
    fn the_state_dir_is_created_private_and_a_loose_one_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("var/lib/vlnet");
        ensure_state_dir(&state).unwrap();
        assert_eq!(mode(&state), STATE_DIR_MODE);
        assert_eq!(mode(&dir.path().join("var/lib")), STATE_DIR_MODE);

        let loose = dir.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, Permissions::from_mode(0o755)).unwrap();
        ensure_state_dir(&loose).unwrap();
        assert_eq!(mode(&loose), STATE_DIR_MODE);

        // A private one is left as it is.
        let tight = dir.path().join("tight");
        fs::create_dir(&tight).unwrap();
        fs::set_permissions(&tight, Permissions::from_mode(0o500)).unwrap();
        ensure_state_dir(&tight).unwrap();
        assert_eq!(mode(&tight), 0o500);
        fs::set_permissions(&tight, Permissions::from_mode(0o700)).unwrap();
    }
}
