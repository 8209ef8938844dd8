//! The `foresight` binary links libtorch through foresight-train (the neural forecaster): an
//! rpath to the libtorch tch built against lets it start without LD_LIBRARY_PATH.

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
