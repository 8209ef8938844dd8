//! Helpers: paths to bundled data and running the built `foresight` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback port (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on loopback `port`, up to `within`.
pub fn wait_for_port(port: u16, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// A bundled data file.
pub fn data(name: &str) -> PathBuf {
    root().join("data").join(name)
}

/// Runs `foresight` with `args`.
pub fn foresight(args: &[&str]) -> Output {
    foresight_env(args, &[])
}

/// Runs `foresight` with `args` and environment variables `env`.
pub fn foresight_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_foresight")).args(args).envs(env.iter().copied()).output().expect("foresight runs")
}

/// Runs `foresight` and insists it succeeds; returns stdout.
#[track_caller]
pub fn foresight_ok(args: &[&str]) -> String {
    foresight_ok_env(args, &[])
}

/// As [`foresight_ok`], with environment variables `env`.
#[track_caller]
pub fn foresight_ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = foresight_env(args, env);
    assert!(
        out.status.success(),
        "foresight {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `foresight` and insists it fails with exit code 2 and an `error:` message (after any
/// `[..s]` progress lines); returns the message.
#[track_caller]
pub fn foresight_err(args: &[&str]) -> String {
    let out = foresight(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "foresight {args:?} should fail: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let message: String = stderr.split_inclusive('\n').skip_while(|l| l.starts_with('[')).collect();
    assert!(message.starts_with("error: "), "{stderr}");
    message
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("file exists")).expect("valid JSON")
}

/// `a` and `b` agree to `rel` relative (absolute near zero).
#[track_caller]
pub fn assert_close(what: &str, a: f64, b: f64, rel: f64) {
    let scale = a.abs().max(b.abs()).max(1e-12);
    assert!((a - b).abs() <= rel * scale, "{what}: {a} vs {b}");
}

/// Makes `model` the champion of the registry at `registry` past the promotion rule, as
/// `foresight models promote --force "<reason>"` does: the evidence against the current
/// champion is computed on the card's own data and logged with the reason.
pub fn force_promote(registry: &Path, model: &str, reason: &str) -> foresight_registry::store::Promotion {
    force_promote_in(&mut foresight_registry::Registry::open(registry).unwrap(), model, reason)
}

/// As [`force_promote`], in an open registry (a folder or an object store).
pub fn force_promote_in(reg: &mut foresight_registry::Registry, model: &str, reason: &str) -> foresight_registry::store::Promotion {
    use foresight_train::promotion::{MarginSettings, PromotionData, promotion_evidence};
    let model: foresight_registry::ModelRef = model.parse().unwrap();
    let card = reg.card(&model).unwrap();
    let data = PromotionData::load(&root().join(&card.training.data[0].path), None).unwrap();
    let evidence = promotion_evidence(reg, &model, &data, &MarginSettings::default()).unwrap();
    reg.promote(&model, &evidence, &foresight_registry::promotion::PromotionRule::default(), Some(reason)).unwrap()
}
