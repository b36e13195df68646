//! Writing an output folder all at once: everything goes into a temporary folder beside
//! the destination, which is renamed into place only when every file is written. A failed
//! run leaves nothing behind, and an existing folder is replaced only when asked.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub struct StagedDir {
    staging: tempfile::TempDir,
    dest: PathBuf,
}

impl StagedDir {
    /// Prepares to write `dest`. Fails early (before any work) if `dest` exists and is not
    /// an empty folder and `replace` is false, or if its parent cannot be written.
    pub fn new(dest: &Path, replace: bool) -> Result<StagedDir> {
        if dest.exists() {
            let empty_dir = dest.is_dir()
                && std::fs::read_dir(dest)
                    .with_context(|| format!("cannot read output folder {}", dest.display()))?
                    .next()
                    .is_none();
            if !dest.is_dir() {
                bail!("output path {} exists and is not a folder", dest.display());
            }
            if !empty_dir && !replace {
                bail!(
                    "output folder {} already exists and is not empty (pass --force to replace it)",
                    dest.display()
                );
            }
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // `-o out/model` with no `out/` yet is the common case: make the parents.
        if !parent.is_dir() {
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("cannot create output folder {}", dest.display()))?;
        }
        let staging = tempfile::Builder::new()
            .prefix(".compc-out-")
            .tempdir_in(&parent)
            .with_context(|| format!("cannot create output folder {}", dest.display()))?;
        Ok(StagedDir {
            staging,
            dest: dest.to_path_buf(),
        })
    }

    /// Where to write the files.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Moves the staged folder into place (replacing an existing one).
    pub fn commit(self) -> Result<PathBuf> {
        let staged = self.staging.keep();
        if self.dest.exists() {
            let old = staged.with_extension("old");
            std::fs::rename(&self.dest, &old)
                .with_context(|| format!("cannot replace {}", self.dest.display()))?;
            if let Err(e) = std::fs::rename(&staged, &self.dest) {
                let _ = std::fs::rename(&old, &self.dest);
                let _ = std::fs::remove_dir_all(&staged);
                return Err(e)
                    .with_context(|| format!("cannot move output into {}", self.dest.display()));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else if let Err(e) = std::fs::rename(&staged, &self.dest) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(e)
                .with_context(|| format!("cannot move output into {}", self.dest.display()));
        }
        Ok(self.dest)
    }
}
