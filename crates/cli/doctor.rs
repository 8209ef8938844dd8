//! `foresight doctor`: finds and opens the native runtimes the bootstrap installs (ONNX Runtime
//! for serving, libtorch for the neural forecaster) and says in one line how to fix what is
//! missing.
//!
//! Lookup order, for each runtime: its environment variable (`ORT_DYLIB_PATH`, `LIBTORCH`),
//! then `.venv/` in the folders above the executable (a build inside the checkout), then in the
//! folders above the working directory.

use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

/// ONNX Runtime version the bootstrap pins (the `ort` crate's `api-24` accepts ≥ 1.24).
const ORT_VERSION: &str = "1.31.1";
/// libtorch version `tch` 0.26 requires.
const TORCH_VERSION: &str = "2.13.0";
const FIX: &str = "run ./scripts/bootstrap.sh in the Foresight checkout";

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Skip opening libtorch (it is large; ONNX Runtime is always checked).
    #[arg(long)]
    skip_libtorch: bool,
}

/// Candidate folders: ancestors of the executable, then of the working directory.
fn search_roots() -> Vec<PathBuf> {
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
pub fn locate_onnxruntime() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)
        && p.exists()
    {
        return Ok(p);
    }
    search_roots()
        .into_iter()
        .map(|r| r.join(".venv/onnxruntime/libonnxruntime.so"))
        .find(|p| p.exists())
        .with_context(|| format!("ONNX Runtime {ORT_VERSION} not found: {FIX}, or set ORT_DYLIB_PATH to libonnxruntime.so.{ORT_VERSION}"))
}

/// Path to the libtorch folder (with `lib/libtorch_cpu.so`).
pub fn locate_libtorch() -> anyhow::Result<PathBuf> {
    let has_lib = |p: &Path| p.join("lib/libtorch_cpu.so").exists();
    if let Some(p) = std::env::var_os("LIBTORCH").map(PathBuf::from)
        && has_lib(&p)
    {
        return Ok(p);
    }
    search_roots()
        .into_iter()
        .map(|r| r.join(".venv/libtorch"))
        .find(|p| has_lib(p))
        .with_context(|| format!("libtorch {TORCH_VERSION} not found: {FIX}, or set LIBTORCH to a libtorch {TORCH_VERSION} folder"))
}

/// Opens ONNX Runtime and asks it for its version.
fn onnxruntime_version(path: &Path) -> anyhow::Result<String> {
    #[repr(C)]
    struct OrtApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "C" fn() -> *const c_char,
    }
    // SAFETY: the library is ONNX Runtime, whose C API exports `OrtGetApiBase` returning a
    // pointer to a static `OrtApiBase` with this layout; the version string is static too.
    // The library stays loaded for the process, as ort would keep it.
    unsafe {
        let lib = libloading::Library::new(path).with_context(|| format!("cannot open {}: {FIX}", path.display()))?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const OrtApiBase> = lib
            .get(b"OrtGetApiBase\0")
            .with_context(|| format!("{} is not ONNX Runtime: {FIX}", path.display()))?;
        let base = get_base();
        if base.is_null() {
            bail!("{}: OrtGetApiBase returned nothing: {FIX}", path.display());
        }
        let version = CStr::from_ptr(((*base).get_version_string)()).to_string_lossy().into_owned();
        std::mem::forget(lib);
        Ok(version)
    }
}

/// Opens `libtorch_cpu.so` (and so every library it needs) and reads the wheel's version.
fn libtorch_version(dir: &Path) -> anyhow::Result<String> {
    let lib = dir.join("lib/libtorch_cpu.so");
    // SAFETY: loading runs libtorch's static initialisers, which have no preconditions.
    unsafe { libloading::Library::new(&lib) }
        .with_context(|| format!("cannot open {} (missing CUDA runtime wheels?): {FIX}", lib.display()))?;
    let text = std::fs::read_to_string(dir.join("version.py")).unwrap_or_default();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("__version__ = "))
        .map(|v| v.trim_matches(['\'', '"']).to_string())
        .unwrap_or_else(|| "unknown".into());
    Ok(version)
}

pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let ort = locate_onnxruntime()?;
    let version = onnxruntime_version(&ort)?;
    if version != ORT_VERSION {
        bail!("ONNX Runtime at {} is {version}, Foresight pins {ORT_VERSION}: {FIX}", ort.display());
    }
    println!("onnxruntime {version}  {}", ort.display());
    if !args.skip_libtorch {
        let torch = locate_libtorch()?;
        let version = libtorch_version(&torch)?;
        if !version.starts_with(TORCH_VERSION) {
            bail!("libtorch at {} is {version}, tch 0.26 needs {TORCH_VERSION}: {FIX}", torch.display());
        }
        println!("libtorch    {version}  {}", torch.display());
    }
    println!("ok");
    Ok(())
}
