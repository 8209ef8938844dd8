//! Where the registry is kept: a folder (the default) or an object store such as S3
//! (`s3://bucket/prefix`), both read through `object_store`.
//!
//! Object stores have no atomic rename, so every write that could race another is conditional:
//! a new version's files are *created* (refused if present), and `registry.json` is *replaced*
//! only while it is still the version that was read. Two training jobs publishing at once thus
//! get two versions, never one overwriting the other. A folder takes the same two operations
//! with fsync'd temp-file writes (object_store's local store neither syncs nor offers the
//! conditional replace), the replace under a lock file that the OS releases if a writer dies;
//! a folder's object versions are content hashes (its ETags, from inode, time and size, could
//! repeat within one clock tick).

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::atomic::{create_file_atomic, write_atomic};
use crate::error::{RegistryError, Result};

/// A registry's location as people write it: a folder, or a URL (`s3://bucket/prefix`,
/// `file:///abs/folder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on this machine.
    Folder(PathBuf),
    /// An object store URL.
    Url(String),
}

impl Location {
    /// `text` as a location: a URL when it starts with `scheme://` (a `file://` URL names a
    /// folder), otherwise a folder.
    pub fn parse(text: &str) -> Self {
        match text.split_once("://") {
            Some((scheme, _)) if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') => {
                match url::Url::parse(text).ok().filter(|u| u.scheme() == "file").and_then(|u| u.to_file_path().ok()) {
                    Some(folder) => Location::Folder(folder),
                    None => Location::Url(text.to_string()),
                }
            }
            _ => Location::Folder(PathBuf::from(text)),
        }
    }

    /// The folder, when the registry is one.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            Location::Folder(path) => Some(path),
            Location::Url(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Folder(path) => write!(f, "{}", path.display()),
            Location::Url(url) => f.write_str(url),
        }
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        path.to_str().map_or_else(|| Location::Folder(path.to_path_buf()), Location::parse)
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::from(path.as_path())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Self {
        Location::from(path.as_path())
    }
}

/// The version of a stored object that a conditional replace must still find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    e_tag: Option<String>,
    version: Option<String>,
}

impl From<&Version> for UpdateVersion {
    fn from(v: &Version) -> Self {
        UpdateVersion { e_tag: v.e_tag.clone(), version: v.version.clone() }
    }
}

/// The registry's objects, addressed by paths relative to its root (`registry.json`,
/// `btc-log-har/v1/card.json`).
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The registry's root inside the store.
    prefix: ObjectPath,
    location: Location,
    /// A folder, resolved once (absolute, without `.` or `..`): where its writes go.
    folder: Option<PathBuf>,
}

/// The lock file serialising conditional replaces in a folder.
const LOCK_FILE: &str = ".registry.lock";

impl Storage {
    /// The storage at `location` (nothing is read yet; a folder need not exist).
    pub fn open(location: &Location) -> Result<Self> {
        Self::open_with(location, std::iter::empty())
    }

    /// As [`Storage::open`], with S3 settings given here (`aws_endpoint`, `aws_allow_http`,
    /// ...; see `object_store`'s `AmazonS3ConfigKey`) over those of the environment.
    pub fn open_with(location: &Location, settings: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut resolved = None;
        let (store, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match location {
            Location::Folder(folder) => {
                let folder = resolved.insert(absolute(folder)?);
                let prefix = ObjectPath::from_absolute_path(folder).map_err(|e| store_error(location, e))?;
                (Arc::new(object_store::local::LocalFileSystem::new()), prefix)
            }
            Location::Url(text) => {
                let url = url::Url::parse(text).map_err(|e| RegistryError::Invalid(format!("registry URL `{text}`: {e}")))?;
                if !matches!(url.scheme(), "s3" | "s3a") {
                    return Err(RegistryError::Invalid(format!("registry URL `{text}`: a folder, file:// or s3:// (an S3-compatible store)")));
                }
                // S3 settings come from the environment as for the AWS tools: AWS_REGION,
                // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT (S3-compatible
                // stores), AWS_ALLOW_HTTP...
                let mut options: std::collections::BTreeMap<String, String> =
                    std::env::vars().filter(|(k, _)| k.starts_with("AWS_")).map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
                options.extend(settings.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)));
                let (store, prefix) = object_store::parse_url_opts(&url, options).map_err(|e| store_error(location, e))?;
                (Arc::from(store), prefix)
            }
        };
        Ok(Self { store, prefix, location: location.clone(), folder: resolved })
    }

    /// Where the registry is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// `relative` as people should read it: a file's path, or the object's URL.
    pub fn describe(&self, relative: &str) -> String {
        match &self.location {
            Location::Folder(folder) => folder.join(relative).display().to_string(),
            Location::Url(url) => format!("{}/{relative}", url.trim_end_matches('/')),
        }
    }

    fn path(&self, relative: &str) -> ObjectPath {
        relative.split('/').filter(|p| !p.is_empty()).fold(self.prefix.clone(), |path, part| path.join(part))
    }

    /// The object's bytes and version; `None` when there is none.
    pub fn get(&self, relative: &str) -> Result<Option<(Vec<u8>, Version)>> {
        let (store, path) = (self.store.clone(), self.path(relative));
        let got = block(async move {
            let result = store.get(&path).await?;
            let version = Version { e_tag: result.meta.e_tag.clone(), version: result.meta.version.clone() };
            Ok::<_, object_store::Error>((result.bytes().await?.to_vec(), version))
        })?;
        match got {
            Ok((bytes, _)) if self.folder.is_some() => {
                let version = content_version(&bytes);
                Ok(Some((bytes, version)))
            }
            Ok(got) => Ok(Some(got)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// The object's version without its bytes; `None` when there is none.
    pub fn version(&self, relative: &str) -> Result<Option<Version>> {
        if self.folder.is_some() {
            return Ok(self.get(relative)?.map(|(_, version)| version));
        }
        let (store, path) = (self.store.clone(), self.path(relative));
        match block(async move { store.head(&path).await })? {
            Ok(meta) => Ok(Some(Version { e_tag: meta.e_tag, version: meta.version })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// Every object under the folder `relative` (`""`: the whole registry), as paths relative
    /// to it, in no particular order.
    pub fn list(&self, relative: &str) -> Result<Vec<String>> {
        let (store, path) = (self.store.clone(), self.path(relative));
        let listed = block(async move {
            let under = (!path.as_ref().is_empty()).then_some(&path);
            let objects: Vec<_> = store.list(under).try_collect().await?;
            Ok::<_, object_store::Error>(objects.into_iter().filter_map(|o| o.location.prefix_match(&path).map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"))).collect())
        })?;
        match listed {
            Ok(paths) => Ok(paths),
            // A folder that does not exist holds nothing.
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// Stores `bytes` at `relative` only if nothing is there: `false` when something was.
    pub fn create(&self, relative: &str, bytes: &[u8]) -> Result<bool> {
        if let Some(folder) = &self.folder {
            return create_file_atomic(&folder.join(relative), bytes);
        }
        match self.put_with(relative, bytes, PutMode::Create)? {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// Replaces `relative` with `bytes` only if it is still at `expected` (`None`: only if there
    /// is nothing there yet). The new version; `None` when another writer changed it first.
    pub fn replace(&self, relative: &str, bytes: &[u8], expected: Option<&Version>) -> Result<Option<Version>> {
        if let Some(folder) = &self.folder {
            std::fs::create_dir_all(folder).map_err(RegistryError::io(folder))?;
            let lock_path = folder.join(LOCK_FILE);
            let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(RegistryError::io(&lock_path))?;
            lock.lock().map_err(RegistryError::io(&lock_path))?;
            if self.version(relative)?.as_ref() != expected {
                return Ok(None);
            }
            write_atomic(&folder.join(relative), bytes)?;
            return Ok(Some(content_version(bytes))); // (the lock is released when `lock` is dropped)
        }
        let mode = expected.map_or(PutMode::Create, |v| PutMode::Update(v.into()));
        match self.put_with(relative, bytes, mode)? {
            Ok(result) => Ok(Some(Version { e_tag: result.e_tag, version: result.version })),
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(self.error(relative, e)),
        }
    }

    /// Stores `bytes` at `relative`, replacing whatever is there.
    pub fn put(&self, relative: &str, bytes: &[u8]) -> Result<()> {
        if let Some(folder) = &self.folder {
            return write_atomic(&folder.join(relative), bytes);
        }
        self.put_with(relative, bytes, PutMode::Overwrite)?.map(|_| ()).map_err(|e| self.error(relative, e))
    }

    fn put_with(&self, relative: &str, bytes: &[u8], mode: PutMode) -> Result<object_store::Result<object_store::PutResult>> {
        let (store, path, payload) = (self.store.clone(), self.path(relative), PutPayload::from(bytes.to_vec()));
        block(async move { store.put_opts(&path, payload, PutOptions { mode, ..Default::default() }).await })
    }

    fn error(&self, relative: &str, e: object_store::Error) -> RegistryError {
        RegistryError::Store { object: self.describe(relative), message: e.to_string() }
    }
}

/// A folder's object version: the sha256 of its bytes.
fn content_version(bytes: &[u8]) -> Version {
    Version { e_tag: Some(crate::verify::sha256_hex(bytes)), version: None }
}

/// `folder` as an absolute path without `.` or `..` (which object store paths do not take),
/// whether or not it exists yet.
fn absolute(folder: &Path) -> Result<PathBuf> {
    if let Ok(real) = folder.canonicalize() {
        return Ok(real);
    }
    let mut clean = PathBuf::new();
    for part in std::path::absolute(folder).map_err(RegistryError::io(folder))?.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    Ok(clean)
}

fn store_error(location: &Location, e: impl fmt::Display) -> RegistryError {
    RegistryError::Store { object: location.to_string(), message: e.to_string() }
}

/// Runs `future` to completion on the registry's own I/O runtime and waits for it. The
/// registry's API stays blocking (training, the CLI and the service's reload thread call it
/// from plain threads), and this works from any thread, inside another runtime or not.
fn block<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Result<T> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("registry-io").enable_all().build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| RegistryError::Runtime(format!("the registry's I/O thread: {e}")))?;
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv().map_err(|_| RegistryError::Runtime("a registry read or write stopped before it finished".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_folders_unless_they_have_a_scheme() {
        assert_eq!(Location::parse("models"), Location::Folder("models".into()));
        assert_eq!(Location::parse("/srv/foresight/models"), Location::Folder("/srv/foresight/models".into()));
        assert_eq!(Location::parse("s3://bucket/models"), Location::Url("s3://bucket/models".into()));
        assert_eq!(Location::from(Path::new("file:///tmp/m")), Location::Folder("/tmp/m".into()));
        let e = Storage::open(&Location::parse("ftp://host/models")).unwrap_err().to_string();
        assert!(e.contains("ftp://host/models") && e.contains("s3://"), "{e}");
    }

    #[test]
    fn a_folder_creates_once_and_replaces_only_the_version_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&Location::Folder(dir.path().join("registry"))).unwrap();
        assert_eq!(storage.get("registry.json").unwrap(), None, "a missing folder is empty");
        assert_eq!(storage.list("").unwrap(), Vec::<String>::new());
        assert!(storage.create("m/v1/model.onnx", b"one").unwrap());
        assert!(!storage.create("m/v1/model.onnx", b"two").unwrap(), "a version is never overwritten");
        assert_eq!(storage.get("m/v1/model.onnx").unwrap().unwrap().0, b"one");

        let first = storage.replace("registry.json", b"1", None).unwrap().expect("nothing there yet");
        assert_eq!(storage.replace("registry.json", b"x", None).unwrap(), None, "something is there now");
        let second = storage.replace("registry.json", b"2", Some(&first)).unwrap().expect("still the version read");
        assert_ne!(first, second);
        // Rewritten with the same size in the same instant: still another version.
        let third = storage.replace("registry.json", b"3", Some(&second)).unwrap().expect("the version read");
        assert_eq!(storage.replace("registry.json", b"4", Some(&second)).unwrap(), None);
        let second = storage.replace("registry.json", b"2", Some(&third)).unwrap().unwrap();
        assert_eq!(storage.replace("registry.json", b"stale", Some(&first)).unwrap(), None, "a stale writer is refused");
        assert_eq!(storage.get("registry.json").unwrap().unwrap(), (b"2".to_vec(), second));
        let mut listed = storage.list("").unwrap();
        listed.sort();
        assert_eq!(listed, [".registry.lock", "m/v1/model.onnx", "registry.json"]);
        assert_eq!(storage.list("m").unwrap(), ["v1/model.onnx"]);
        // The same folder however it is written.
        let other = Storage::open(&Location::Folder(dir.path().join("absent/../registry/."))).unwrap();
        assert_eq!(other.get("registry.json").unwrap().unwrap().0, b"2");
    }
}
