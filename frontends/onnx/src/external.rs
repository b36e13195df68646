//! External tensor data (`data_location = EXTERNAL`): the location is resolved inside the
//! model's folder and the file is memory-mapped once, so a multi-gigabyte model is read in
//! place instead of copied.
//!
//! The location comes from the (possibly hostile) model file, so it must stay inside the
//! model's folder: absolute paths, `..` components and symlinks leading outside are refused.

use crate::error::ImportError;
use compc_ir::WeightData;
use memmap2::Mmap;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// One mapping per data file, shared by every tensor stored in it.
pub struct ExternalFiles {
    base_dir: Option<PathBuf>,
    canonical_base: Option<PathBuf>,
    maps: HashMap<PathBuf, Arc<Mmap>>,
}

/// The `external_data` entries of one tensor.
pub struct ExternalRef<'a> {
    pub location: &'a str,
    pub offset: Option<&'a str>,
    pub length: Option<&'a str>,
}

impl ExternalFiles {
    pub fn new(base_dir: Option<&Path>) -> Self {
        ExternalFiles {
            base_dir: base_dir.map(Path::to_path_buf),
            canonical_base: None,
            maps: HashMap::new(),
        }
    }

    /// A new set of mappings resolving in the same folder (for a body graph).
    pub fn child(&self) -> ExternalFiles {
        ExternalFiles::new(self.base_dir.as_deref())
    }

    /// Maps `want` bytes of external data for tensor `name` without copying them.
    pub fn data(
        &mut self,
        name: &str,
        ext: &ExternalRef<'_>,
        want: u64,
    ) -> Result<WeightData, ImportError> {
        let err = |what: String| ImportError::ExternalData {
            name: name.to_string(),
            location: ext.location.to_string(),
            what,
        };
        let path = self.resolve(ext.location).map_err(err)?;
        let map = self.map(&path).map_err(err)?;
        let offset = parse_u64(ext.offset, "offset").map_err(err)?.unwrap_or(0);
        let file_len = map.len() as u64;
        let len = match parse_u64(ext.length, "length").map_err(err)? {
            Some(l) => l,
            None => file_len.saturating_sub(offset),
        };
        if len != want {
            return Err(err(format!(
                "holds {len} bytes but the tensor's type and shape need {want}"
            )));
        }
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(err(format!(
                "offset {offset} + length {len} runs past the end of the file ({file_len} bytes)"
            )));
        }
        // Both fit in usize now: they lie within a mapping that exists.
        Ok(WeightData::Mapped {
            map,
            offset: offset as usize,
            len: len as usize,
        })
    }

    /// The canonical path of `location`, checked to lie inside the model's folder.
    fn resolve(&mut self, location: &str) -> Result<PathBuf, String> {
        let Some(base) = &self.base_dir else {
            return Err(
                "the model was read from memory without a folder to look for it in".to_string(),
            );
        };
        if location.is_empty() {
            return Err("the location is empty".into());
        }
        let rel = Path::new(location);
        for c in rel.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err("the location may not contain `..`".into());
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(
                        "the location must be relative to the model's folder, not absolute".into(),
                    );
                }
            }
        }
        let canonical_base = match &self.canonical_base {
            Some(c) => c.clone(),
            None => {
                let c = base
                    .canonicalize()
                    .map_err(|e| format!("cannot resolve the model's folder: {e}"))?;
                self.canonical_base = Some(c.clone());
                c
            }
        };
        let full = base
            .join(rel)
            .canonicalize()
            .map_err(|e| format!("cannot open: {e}"))?;
        if !full.starts_with(&canonical_base) {
            return Err(format!(
                "resolves to {}, outside the model's folder",
                full.display()
            ));
        }
        Ok(full)
    }

    fn map(&mut self, path: &Path) -> Result<Arc<Mmap>, String> {
        if let Some(m) = self.maps.get(path) {
            return Ok(m.clone());
        }
        let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let meta = file.metadata().map_err(|e| format!("cannot open: {e}"))?;
        if !meta.is_file() {
            return Err("is not a regular file".into());
        }
        // SAFETY: the mapping is read-only. Another process truncating the file while it is
        // mapped would fault on access; that is the accepted cost of not copying weights,
        // and the backend never writes to a file it has mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))?;
        let map = Arc::new(map);
        self.maps.insert(path.to_path_buf(), map.clone());
        Ok(map)
    }
}

fn parse_u64(v: Option<&str>, what: &str) -> Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{what} `{s}` is not a non-negative integer")),
    }
}
