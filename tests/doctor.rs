//! `foresight doctor` finds the runtimes the bootstrap installed, and without them says how to
//! fix it in one line.

use std::process::Command;

use crate::util::foresight_ok;

#[test]
fn finds_and_opens_the_bootstrapped_runtimes() {
    let out = foresight_ok(&["doctor"]);
    assert!(out.contains("onnxruntime 1.31.1"), "{out}");
    assert!(out.contains("libtorch    2.13.0"), "{out}");
}

#[test]
fn without_runtimes_it_fails_with_the_fix() {
    // A copy of the binary outside the checkout, run from outside it, with no variables set.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("foresight");
    std::fs::copy(env!("CARGO_BIN_EXE_foresight"), &exe).unwrap();
    let out = Command::new(&exe)
        .arg("doctor")
        .current_dir(dir.path())
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("LIBTORCH")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("run ./scripts/bootstrap.sh"), "{stderr}");
}
