//! Crash-safe writes: a reader sees the old file or the new one, never half of either.
//!
//! Files are written to a temporary file in the destination folder, flushed to disk (`fsync`)
//! and renamed over the target; the folder is then synced so the rename itself survives a power
//! cut. Whole model versions are staged in a temporary folder and renamed into place the same way.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{RegistryError, Result};

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of the folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path)?;
    std::fs::create_dir_all(dir).map_err(RegistryError::io(dir))?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(RegistryError::io(dir))?;
    tmp.write_all(bytes).map_err(RegistryError::io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(RegistryError::io(tmp.path()))?;
    tmp.persist(path).map_err(|e| RegistryError::Io { file: path.to_path_buf(), source: e.error })?;
    sync_dir(dir)
}

/// Serializes `value` as pretty JSON (with a final newline) and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| RegistryError::Format { file: path.to_path_buf(), message: e.to_string() })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Creates folder `target` with the given files, atomically: the files are written and synced
/// in a sibling temporary folder which is then renamed to `target`. Fails if `target` exists.
pub fn create_dir_atomic(target: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let dir = parent(target)?;
    std::fs::create_dir_all(dir).map_err(RegistryError::io(dir))?;
    if target.exists() {
        return Err(RegistryError::Invalid(format!("{} already exists; versions are never overwritten", target.display())));
    }
    let staging = tempfile::Builder::new().prefix(".staging-").tempdir_in(dir).map_err(RegistryError::io(dir))?;
    for (name, bytes) in files {
        let path = staging.path().join(name);
        let mut file = File::create(&path).map_err(RegistryError::io(&path))?;
        file.write_all(bytes).map_err(RegistryError::io(&path))?;
        file.sync_all().map_err(RegistryError::io(&path))?;
    }
    sync_dir(staging.path())?;
    let staged = staging.keep();
    std::fs::rename(&staged, target).map_err(|source| {
        let _ = std::fs::remove_dir_all(&staged);
        RegistryError::Io { file: target.to_path_buf(), source }
    })?;
    sync_dir(dir)
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
    fn a_version_folder_appears_whole_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m/v1");
        create_dir_atomic(&target, &[("model.onnx", b"abc"), ("card.json", b"{}")]).unwrap();
        assert_eq!(std::fs::read(target.join("model.onnx")).unwrap(), b"abc");
        let err = create_dir_atomic(&target, &[("model.onnx", b"xyz")]).unwrap_err();
        assert!(err.to_string().contains("never overwritten"), "{err}");
        assert_eq!(std::fs::read(target.join("model.onnx")).unwrap(), b"abc");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("m")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("v1")], "no staging folder left behind");
    }
}
