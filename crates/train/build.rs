//! Generates the ONNX protobuf types (the subset in `proto/onnx/`) that the exporter writes, and
//! lets this crate's tests find libtorch at run time (an rpath to the libtorch tch built against).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/onnx");
    let proto = proto_dir.join("onnx_subset.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    // A protoc from the environment wins; else the one the protoc-bin-vendored crate ships.
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    prost_build::Config::new().compile_protos(&[proto], &[proto_dir])?;
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    Ok(())
}
