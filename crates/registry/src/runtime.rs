//! ONNX Runtime: find the shared library the bootstrap installs, load it once per process, and
//! run a registered model on rows of `f64`.
//!
//! Lookup order: `ORT_DYLIB_PATH`, then `.venv/onnxruntime/libonnxruntime.so` in the folders
//! above the executable (a build inside the checkout), then above the working directory.

use std::collections::BTreeMap;
use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;

use crate::card::OnnxSignature;
use crate::error::{RegistryError, Result};

/// ONNX Runtime version the bootstrap pins (the `ort` crate's `api-24` accepts ≥ 1.24).
pub const ORT_VERSION: &str = "1.31.1";
/// The one-line fix for a missing runtime.
pub const FIX: &str = "run ./scripts/bootstrap.sh in the Foresight checkout";

/// Candidate folders: ancestors of the executable, then of the working directory.
pub fn search_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    roots
}

/// Path to ONNX Runtime's shared library.
pub fn locate_onnxruntime() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)
        && p.exists()
    {
        return Ok(p);
    }
    search_roots().into_iter().map(|r| r.join(".venv/onnxruntime/libonnxruntime.so")).find(|p| p.exists()).ok_or_else(|| {
        RegistryError::Runtime(format!(
            "{ORT_VERSION} not found: {FIX}, or set ORT_DYLIB_PATH to libonnxruntime.so.{ORT_VERSION}"
        ))
    })
}

/// Opens the library at `path` and asks it for its version, without initialising `ort`.
pub fn onnxruntime_version(path: &Path) -> Result<String> {
    #[repr(C)]
    struct OrtApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const c_char,
    }
    let fail = |what: String| RegistryError::Runtime(format!("{}: {what}: {FIX}", path.display()));
    // SAFETY: the library is ONNX Runtime, whose C API exports `OrtGetApiBase` returning a
    // pointer to a static `OrtApiBase` with this layout; the version string is static too.
    // The library stays loaded for the process, as ort keeps it.
    unsafe {
        let lib = libloading::Library::new(path).map_err(|e| fail(format!("cannot open ({e})")))?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const OrtApiBase> =
            lib.get(b"OrtGetApiBase\0").map_err(|_| fail("not ONNX Runtime (no OrtGetApiBase)".into()))?;
        let base = get_base();
        if base.is_null() {
            return Err(fail("OrtGetApiBase returned nothing".into()));
        }
        let version = CStr::from_ptr(((*base).get_version_string)()).to_string_lossy().into_owned();
        std::mem::forget(lib);
        Ok(version)
    }
}

/// The process-wide ONNX Runtime environment, loaded on first use from
/// [`locate_onnxruntime`] after checking its version.
pub fn environment() -> Result<&'static Environment> {
    static ENV: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = locate_onnxruntime().map_err(|e| e.to_string())?;
        let version = onnxruntime_version(&path).map_err(|e| e.to_string())?;
        if version != ORT_VERSION {
            return Err(format!("{} is {version}, Foresight pins {ORT_VERSION}: {FIX}", path.display()));
        }
        let builder = ort::init_from(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        builder.with_name("foresight").build().map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| RegistryError::Runtime(e.clone()))
}

/// A model loaded into ONNX Runtime with its signature.
pub struct LoadedModel {
    session: Session,
    signature: OnnxSignature,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel").field("signature", &self.signature).finish_non_exhaustive()
    }
}

fn runtime_error(what: &str) -> impl FnOnce(ort::Error) -> RegistryError + '_ {
    move |e| RegistryError::Runtime(format!("{what}: {e}"))
}

impl LoadedModel {
    /// Loads serialized ONNX bytes whose signature the card gives.
    pub fn from_bytes(bytes: &[u8], signature: &OnnxSignature) -> Result<Self> {
        let env = environment()?;
        // Foresight's models are a few small matrices: one thread per run, and no idle spinning
        // (ONNX Runtime's pool would otherwise busy-wait after each run, taking cores the
        // service and its callers need).
        let session = Session::builder(env)
            .map_err(runtime_error("session"))?
            .with_intra_threads(1)
            .map_err(|e| RegistryError::Runtime(format!("session threads: {e}")))?
            .with_intra_op_spinning(false)
            .map_err(|e| RegistryError::Runtime(format!("session spinning: {e}")))?
            .commit_from_memory(bytes)
            .map_err(runtime_error("loading the model"))?;
        for name in std::iter::once(&signature.input).chain(&signature.outputs) {
            let known = session.inputs().iter().chain(session.outputs()).any(|o| o.name() == name);
            if !known {
                return Err(RegistryError::Runtime(format!("the graph has no input or output named `{name}`, which its card lists")));
            }
        }
        Ok(Self { session, signature: signature.clone() })
    }

    /// A `metadata_props` value of the graph (e.g. `foresight.metrics`), as ONNX Runtime reads it.
    pub fn metadata(&self, key: &str) -> Option<String> {
        self.session.metadata().ok()?.custom(key)
    }

    /// The signature.
    pub fn signature(&self) -> &OnnxSignature {
        &self.signature
    }

    /// Values per batch element: the input shape without its batch axis, multiplied out.
    pub fn row_width(&self) -> usize {
        self.signature.input_shape.iter().skip(1).map(|&d| d.max(1) as usize).product()
    }

    /// Runs `rows` (concatenated batch elements, each [`row_width`](Self::row_width) long) and
    /// returns each output's values, one per batch element.
    pub fn run(&mut self, rows: &[f64]) -> Result<BTreeMap<String, Vec<f64>>> {
        let width = self.row_width();
        if width == 0 || rows.is_empty() || !rows.len().is_multiple_of(width) {
            return Err(RegistryError::Invalid(format!(
                "input `{}`: {} values do not make whole rows of {width}",
                self.signature.input,
                rows.len()
            )));
        }
        let mut shape: Vec<usize> = self.signature.input_shape.iter().map(|&d| d.max(1) as usize).collect();
        shape[0] = rows.len() / width;
        let batch = shape[0];
        let tensor = TensorRef::from_array_view((shape, rows)).map_err(runtime_error("input tensor"))?;
        let outputs = self
            .session
            .run(ort::inputs![self.signature.input.as_str() => tensor])
            .map_err(runtime_error("running the model"))?;
        let mut values = BTreeMap::new();
        for name in &self.signature.outputs {
            let (_, v) = outputs[name.as_str()].try_extract_tensor::<f64>().map_err(runtime_error(name))?;
            if v.len() != batch {
                return Err(RegistryError::Runtime(format!("output `{name}` has {} values for {batch} rows", v.len())));
            }
            values.insert(name.clone(), v.to_vec());
        }
        Ok(values)
    }
}
