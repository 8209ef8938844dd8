//! Generates the `foresight.v1` servers and clients from `proto/foresight/v1/`, the Open
//! Inference Protocol v2 (`proto/inference/`), and the file
//! descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut protos: Vec<_> = ["calibration", "market_data", "models"].iter().map(|p| dir.join(format!("foresight/v1/{p}.proto"))).collect();
    protos.push(dir.join("inference/grpc_predict_v2.proto"));
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("foresight_descriptor.bin");
    tonic_prost_build::configure().file_descriptor_set_path(descriptors).compile_protos(&protos, &[dir])?;
    Ok(())
}
