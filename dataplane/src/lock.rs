//! One daemon per node: an advisory lock on `<state_dir>/<node>.lock`.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The node lock could not be taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another daemon holds it.
    #[error("another vlnet daemon is already running for node {node} (it holds {path})")]
    Held {
        /// Node name.
        node: String,
        /// Lock file.
        path: PathBuf,
    },
    /// The lock file could not be created.
    #[error("lock file {path}: {source}")]
    Io {
        /// Lock file.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
}

/// Held for the daemon's lifetime; released by the kernel when the process
/// exits, however it exits.
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

/// Path of `node`'s lock file.
#[must_use]
pub fn lock_path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.lock"))
}

impl NodeLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(state_dir: &Path, node: &str) -> Result<Self, LockError> {
        let path = lock_path(state_dir, node);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        crate::store::ensure_state_dir(state_dir).map_err(io_err)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held {
                node: node.to_string(),
                path,
            }),
            Err(TryLockError::Error(e)) => Err(io_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_node_name() {
        let dir = std::env::temp_dir().join(format!("vlnet-lock-test-{}", std::process::id()));
        let first = NodeLock::acquire(&dir, "n1").unwrap();
        let err = NodeLock::acquire(&dir, "n1").unwrap_err().to_string();
        assert!(err.contains("already running for node n1"), "{err}");
        drop(first);
        NodeLock::acquire(&dir, "n1").unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
