//! [`TempDir`]: a directory under the system temp dir, removed on drop.

use std::path::{Path, PathBuf};

use crate::primitives::netns::{unique_suffix, LabError, NAME_PREFIX};

/// A fresh directory `<tmp>/vlt-<tag>-<pid>-<n>`, removed with its contents
/// when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory (it must not exist yet).
    pub fn new(tag: &str) -> Result<Self, LabError> {
        Self::at(std::env::temp_dir().join(format!("{NAME_PREFIX}{tag}-{}", unique_suffix())))
    }

    /// Creates exactly `path` (it must not exist yet) and owns it.
    pub fn at(path: PathBuf) -> Result<Self, LabError> {
        std::fs::create_dir(&path)
            .map_err(|e| LabError::io(format!("creating {}", path.display()), e))?;
        Ok(Self { path })
    }

    /// The directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("lab: could not remove {}: {e}", self.path.display());
        }
    }
}
