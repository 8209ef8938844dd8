//! `foresight doctor`: finds and opens the native runtimes the bootstrap installs (ONNX Runtime
//! for serving, libtorch for the neural forecaster) and says in one line how to fix what is
//! missing.
//!
//! Lookup order, for each runtime: its environment variable (`ORT_DYLIB_PATH`, `LIBTORCH`),
//! then `.venv/` in the folders above the executable (a build inside the checkout), then in the
//! folders above the working directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use foresight_registry::runtime::{FIX, ORT_VERSION, locate_onnxruntime, onnxruntime_version, search_roots};

/// libtorch version `tch` 0.26 requires.
const TORCH_VERSION: &str = "2.13.0";

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Skip opening libtorch (it is large; ONNX Runtime is always checked).
    #[arg(long)]
    skip_libtorch: bool,
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
