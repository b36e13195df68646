//! Writing files: the external data file is streamed weight by weight (mapped input
//! weights are copied straight from their mapping), then the model. Each file goes to a
//! temporary name in the target folder, is synced, and renamed into place, so a failed
//! export leaves no half-written file behind.

use crate::error::ExportError;
use crate::model::Built;
use compc_ir::Graph;
use protobuf::Message;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub fn write_data(g: &Graph, built: &Built, path: &Path) -> Result<(), ExportError> {
    atomic_write(path, |f| {
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut pos = 0u64;
        for c in &built.chunks {
            let bytes = built.inits[c.init].weight(g).bytes()?;
            let pad = c.offset - pos;
            w.write_all(&vec![0u8; pad as usize])?;
            w.write_all(bytes)?;
            pos = c.offset + bytes.len() as u64;
        }
        w.flush()?;
        Ok(())
    })
}

pub fn write_model(built: &Built, path: &Path) -> Result<(), ExportError> {
    atomic_write(path, |f| {
        let mut w = BufWriter::with_capacity(1 << 20, f);
        built
            .model
            .write_to_writer(&mut w)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        w.flush()?;
        Ok(())
    })
}

#[derive(Debug)]
enum WriteError {
    Io(std::io::Error),
    Export(ExportError),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

impl From<compc_ir::WeightError> for WriteError {
    fn from(e: compc_ir::WeightError) -> Self {
        WriteError::Export(e.into())
    }
}

fn atomic_write(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), WriteError>,
) -> Result<(), ExportError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| ExportError::io(path, std::io::Error::other("not a file path")))?;
    let (tmp, mut f) =
        create_temp(&dir, &file_name.to_string_lossy()).map_err(|e| ExportError::io(path, e))?;
    let result = fill(&mut f).and_then(|()| f.sync_all().map_err(WriteError::Io));
    drop(f);
    let result = result.and_then(|()| std::fs::rename(&tmp, path).map_err(WriteError::Io));
    match result {
        Ok(()) => {
            // Makes the rename itself durable; not every platform can open a folder.
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(match e {
                WriteError::Io(e) => ExportError::io(path, e),
                WriteError::Export(e) => e,
            })
        }
    }
}

fn create_temp(dir: &Path, name: &str) -> std::io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut i = 0u32;
    loop {
        let tmp = dir.join(format!(".{name}.{pid}.{i}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && i < 1000 => i += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Refuses to write over a file some weight of `g` is memory-mapped from. Writing goes
/// through a rename, which would leave the mapping intact on Unix, but overwriting the
/// source of a model is never what the caller meant.
pub fn check_not_source(g: &Graph, targets: &[&Path]) -> Result<(), ExportError> {
    let sources = mapped_sources(g);
    for t in targets {
        if !t.exists() {
            continue;
        }
        for s in &sources {
            if same_file(t, s) {
                return Err(ExportError::WouldOverwriteSource {
                    path: t.to_path_buf(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The files behind the graph's memory-mapped weights. A mapping does not remember its
/// file, so on Linux the kernel's list of this process's mappings is asked.
#[cfg(target_os = "linux")]
fn mapped_sources(g: &Graph) -> Vec<PathBuf> {
    use compc_ir::WeightData;
    let mut addrs: Vec<usize> = g
        .weights
        .iter()
        .filter_map(|(_, w)| match w.data() {
            WeightData::Mapped { map, .. } if !map.is_empty() => Some(map.as_ptr() as usize),
            _ => None,
        })
        .collect();
    if addrs.is_empty() {
        return Vec::new();
    }
    addrs.sort_unstable();
    addrs.dedup();
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let mut fields = line.splitn(6, ' ');
        let range = fields.next().unwrap_or("");
        let path = fields.nth(4).map(str::trim).unwrap_or("");
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        else {
            continue;
        };
        if path.starts_with('/') && addrs.iter().any(|&a| a >= lo && a < hi) {
            let p = PathBuf::from(path);
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(not(target_os = "linux"))]
fn mapped_sources(_g: &Graph) -> Vec<PathBuf> {
    Vec::new()
}
