//! Generates the `foresight.v1` server and client from `proto/foresight/v1/`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let proto = dir.join("foresight/v1/calibration.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    tonic_prost_build::configure().compile_protos(&[proto], &[dir])?;
    Ok(())
}
