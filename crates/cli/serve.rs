//! `foresight serve ...`: a convenience for people that runs the `foresight-serve` binary found
//! beside `foresight` with the same arguments. The service is its own binary (ONNX Runtime
//! only): deploy that one; this command only saves typing its path.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Arguments for foresight-serve (see `foresight serve --help`), e.g. `--config foresight.toml`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// `foresight-serve` in the folder of the running `foresight`.
fn service_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the foresight binary")?;
    let binary = exe.with_file_name(format!("foresight-serve{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        binary.exists(),
        "{} not found: build it with `cargo build -p foresight-serve` (the same profile as foresight)",
        binary.display()
    );
    Ok(binary)
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let binary = service_binary()?;
    let status = Command::new(&binary).args(&args.args).status().with_context(|| format!("running {}", binary.display()))?;
    anyhow::ensure!(status.success(), "foresight-serve exited with {status}");
    Ok(())
}
