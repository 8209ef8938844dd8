//! Crash-safe writes: a reader sees the old file or the new one, never half of either.
//!
//! Files are written to a temporary file in the destination folder, flushed to disk (`fsync`)
//! and renamed over the target; the folder is then synced so the rename itself survives a power
//! cut. A file that must not be overwritten (a model version's) is hard-linked into place instead,
//! which fails when the target exists.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{RegistryError, Result};

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path)?;
    std::fs::create_dir_all(dir).map_err(RegistryError::io(dir))?;
    let mut tmp = temporary_in(dir)?;
    tmp.write_all(bytes).map_err(RegistryError::io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(RegistryError::io(tmp.path()))?;
    tmp.persist(path).map_err(|e| RegistryError::Io { file: path.to_path_buf(), source: e.error })?;
    sync_dir(dir)
}

/// Writes `bytes` to `path` only if nothing is there (temp file, fsync, hard link, fsync of
/// the folder): `false`, and nothing written, when `path` exists.
pub fn create_file_atomic(path: &Path, bytes: &[u8]) -> Result<bool> {
    let dir = parent(path)?;
    std::fs::create_dir_all(dir).map_err(RegistryError::io(dir))?;
    let mut tmp = temporary_in(dir)?;
    tmp.write_all(bytes).map_err(RegistryError::io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(RegistryError::io(tmp.path()))?;
    // A hard link, unlike a rename, fails when the target exists.
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(RegistryError::Io { file: path.to_path_buf(), source }),
    }
}

/// Serializes `value` as pretty JSON (with a final newline) and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| RegistryError::Format { file: path.to_path_buf(), message: e.to_string() })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// A temporary file in `dir` that becomes a registry file: readable by all, as a file created
/// plainly would be (a temporary file is private to its owner), so that a service running as
/// another user can read what training wrote.
fn temporary_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder.tempfile_in(dir).map_err(RegistryError::io(dir))
}

fn parent(path: &Path) -> Result<&Path> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p),
        _ => Ok(Path::new(".")),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(RegistryError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("registry.json")]);
    }

    #[test]
    fn a_created_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m/v1/model.onnx");
        assert!(create_file_atomic(&target, b"abc").unwrap());
        assert!(!create_file_atomic(&target, b"xyz").unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"abc");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("m/v1")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("model.onnx")], "no temporary file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644, "readable by a service running as another user");
        }
    }
}
